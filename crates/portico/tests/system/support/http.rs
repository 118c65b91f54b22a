//! A minimal blocking HTTP/1.1 client for system tests: one keep-alive connection, bodies
//! framed by Content-Length, chunked encoding, or connection close. Enough to talk to
//! Portico like curl would, with no dependency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use portico_testkit::http::Resp;

/// True when the response says `Connection: close`.
fn closes(resp: &Resp) -> bool {
    resp.header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

type IoResult<T> = std::io::Result<T>;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// One client connection (keep-alive).
pub struct Conn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    closed: bool,
}

impl Conn {
    /// Connect with a 5 s connect timeout and a 10 s read/write timeout.
    pub fn connect(addr: SocketAddr) -> IoResult<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Conn::over(addr, s)
    }

    /// [`Conn::connect`] from the local address `from` (e.g. 127.0.0.2: another client).
    pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> IoResult<Conn> {
        let domain = socket2::Domain::for_address(addr);
        let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        sock.bind(&SocketAddr::new(from, 0).into())?;
        sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
        Conn::over(addr, sock.into())
    }

    fn over(addr: SocketAddr, s: TcpStream) -> IoResult<Conn> {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        let writer = s.try_clone()?;
        Ok(Conn {
            addr,
            reader: BufReader::new(s),
            writer,
            closed: false,
        })
    }

    /// True once the server said `Connection: close` (or closed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// `GET path` on this connection.
    pub fn get(&mut self, path: &str) -> IoResult<Resp> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.writer.write_all(head.as_bytes())?;
        self.read_response(false)
    }

    /// Send a raw request head (must end with `\r\n\r\n`) and `body`, then read the answer.
    pub fn request_raw(&mut self, head: &str, body: &[u8]) -> IoResult<Resp> {
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        self.read_response(head.starts_with("HEAD "))
    }

    /// A second handle on the socket for writing (e.g. streaming a body from a thread
    /// while this one reads the response).
    pub fn writer(&self) -> IoResult<TcpStream> {
        self.writer.try_clone()
    }

    /// Read one response (status line, headers, body).
    pub fn read_response(&mut self, head_only: bool) -> IoResult<Resp> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let l = self.line()?;
            if l.is_empty() {
                break;
            }
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header {l:?}")))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
        if !no_body {
            resp.body = self.read_body(&resp)?;
        }
        if closes(&resp) {
            self.closed = true;
        }
        Ok(resp)
    }

    fn read_body(&mut self, resp: &Resp) -> IoResult<Vec<u8>> {
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            let mut body = Vec::new();
            loop {
                let size_line = self.line()?;
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    return Ok(body);
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..])?;
                if !self.line()?.is_empty() {
                    return Err(bad("missing CRLF after chunk"));
                }
            }
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("bad content-length {len:?}")))?;
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body)?;
            return Ok(body);
        }
        let mut body = Vec::new();
        self.reader.read_to_end(&mut body)?;
        self.closed = true;
        Ok(body)
    }

    fn line(&mut self) -> IoResult<String> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            self.closed = true;
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by server",
            ));
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        String::from_utf8(buf).map_err(|_| bad("non-UTF-8 header line"))
    }
}

/// The status of one `GET /` with `Connection: close` on a fresh connection, reading only
/// the status line, or `None` (no connection, or no answer within 3 s): a probe that is
/// cheap enough to run while a flood holds every descriptor.
pub fn probe_status(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> IoResult<Resp> {
    Conn::connect(addr)?.get(path)
}

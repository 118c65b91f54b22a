//! Helpers for the proxy's integration tests: a small blocking HTTP/1.1 client on raw
//! sockets (so tests see exactly what goes over the wire) and echo backends.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use portico_testkit::echo::EchoServer;
pub use portico_testkit::http::Resp;

/// Every socket read in tests gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An echo backend on 127.0.0.1:0.
pub fn echo(name: &str) -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().unwrap(), name).expect("echo backend")
}

/// One client connection.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect to proxy");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Conn {
            reader: BufReader::new(s),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream().write_all(raw).expect("write request");
    }

    /// `GET path` with `Host: host`, keep-alive.
    pub fn get(&mut self, host: &str, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        self.read_response(false)
    }

    /// Read one response (a HEAD response has no body).
    pub fn read_response(&mut self, head: bool) -> Resp {
        let (status, headers) = loop {
            let (status, headers) = self.read_head();
            if status != 100 {
                break (status, headers);
            }
        };
        let r = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 || status == 101 {
            return r;
        }
        let mut r = r;
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            r.body = self.read_chunked();
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.trim().parse().expect("content-length");
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).expect("body");
            r.body = body;
        } else {
            self.reader.read_to_end(&mut r.body).expect("body to eof");
        }
        r
    }

    /// Read a status line and headers.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1."), "status line: {line:?}");
        let status: u16 = line[9..12].parse().expect("status");
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header line");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        (status, headers)
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                .expect("chunk size hex");
            if size == 0 {
                let mut end = String::new();
                self.reader.read_line(&mut end).expect("chunk end");
                return body;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).expect("chunk");
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// Whether the server closes the connection within the timeout, whatever it sends first.
    pub fn eof_within(&mut self, timeout: Duration) -> bool {
        self.stream().set_read_timeout(Some(timeout)).unwrap();
        let mut rest = Vec::new();
        let r = self.reader.read_to_end(&mut rest).is_ok();
        self.stream().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        r
    }

    /// Whether the server closed the connection (EOF within the timeout).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream().set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        let r = matches!(self.reader.read(&mut b), Ok(0));
        self.stream().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        r
    }
}

/// One request on a new connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    Conn::open(addr).get(host, path)
}

/// A site proxying everything to `servers`, with extra upstream and route keys.
pub fn proxy_config(servers: &[SocketAddr], upstream_extra: &str, route_extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[upstreams.app]\nservers = [{}]\n{upstream_extra}\n\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\"{route_extra} }}]\n",
        list.join(", ")
    )
}

/// Send `raw` on a new connection: the status of the first response (None: no response),
/// whether the proxy closed the connection afterwards (EOF or reset) within 5 s, and all it
/// sent.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> (Option<u16>, bool, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The proxy may answer and close before taking everything: a failed write is part of
    // the answer.
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok());
    (status, closed, text)
}

/// Read a WebSocket's receiving half in a task until it ends (tungstenite answers pings
/// while it reads), handing each message to the returned channel. Abort the task when done.
pub fn read_in_task<S>(
    mut rx: S,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<tokio_tungstenite::tungstenite::Message>,
)
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Send
        + Unpin
        + 'static,
{
    use futures_util::StreamExt;
    let (got_tx, got) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if got_tx.send(m).is_err() {
                break;
            }
        }
    });
    (reader, got)
}

//! PROXY protocol (HAProxy's spec, versions 1 and 2): a strict, incremental decoder for
//! headers received from clients and an encoder for headers sent to servers.
//!
//! [`decode`] takes the bytes received so far and says: a complete header (and its length),
//! "need more bytes", or an error as soon as the bytes cannot start a valid header — so a
//! client sending garbage is closed at once rather than at the timeout. It never reads past
//! the header: the bytes after it belong to the stream.
//!
//! Both planes use it: the stream plane on `[[streams]]` listeners with
//! `accept_proxy_protocol` (and the encoder toward servers with `proxy_protocol`), the HTTP
//! plane on site listeners with `accept_proxy_protocol`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why bytes are not a valid PROXY header (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("bad PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("bad PROXY v2 header: {0}")]
    V2(&'static str),
}

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (from the spec).
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header accepted (16-byte fixed part + addresses + TLVs). The spec allows up to
/// 64 KiB of TLVs; real senders use a few hundred bytes.
pub const V2_MAX_LEN: usize = 4096;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAddrs {
    /// The original client (`src`) and the address it connected to (`dst`).
    Tcp { src: SocketAddr, dst: SocketAddr },
    /// v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family other than TCP/IP (UDP, unix, unspecified):
    /// keep the socket's own addresses.
    Unknown,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: u8,
    pub addrs: ProxyAddrs,
    /// Bytes the header took; the stream starts after them.
    pub len: usize,
}

/// Decode a PROXY header (v1 or v2, detected) at the start of `buf`. `Ok(None)`: need more
/// bytes (and what is there is a valid beginning).
pub fn decode(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => decode_v1(buf),
        Some(b'\r') => decode_v2(buf),
        Some(_) => Err(ProxyHeaderError::NotProxy),
    }
}

fn decode_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(ProxyHeaderError::NotProxy);
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyHeaderError::V1("no CRLF within 107 bytes"));
        }
        // A lone '\n' or '\r' followed by something other than '\n' can never become valid.
        if let Some(i) = buf.iter().position(|&b| b == b'\n' || b == b'\r')
            && (buf[i] == b'\n' || i + 1 < buf.len())
        {
            return Err(ProxyHeaderError::V1("bad line end"));
        }
        return Ok(None);
    };
    let len = end + 2;
    if len > V1_MAX_LEN {
        return Err(ProxyHeaderError::V1("longer than 107 bytes"));
    }
    if buf[PREFIX.len()..end]
        .iter()
        .any(|&b| !(0x20..0x7f).contains(&b))
    {
        return Err(ProxyHeaderError::V1("control or non-ASCII byte"));
    }
    let line = std::str::from_utf8(&buf[PREFIX.len()..end])
        .map_err(|_| ProxyHeaderError::V1("not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let addrs = match parts.as_slice() {
        ["UNKNOWN", ..] => ProxyAddrs::Unknown,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *proto == "TCP6";
            let src_ip = v1_ip(src, v6)?;
            let dst_ip = v1_ip(dst, v6)?;
            ProxyAddrs::Tcp {
                src: SocketAddr::new(src_ip, v1_port(sport)?),
                dst: SocketAddr::new(dst_ip, v1_port(dport)?),
            }
        }
        ["TCP4" | "TCP6", ..] => return Err(ProxyHeaderError::V1("wrong number of fields")),
        _ => return Err(ProxyHeaderError::V1("unknown protocol")),
    };
    Ok(Some(ProxyHeader {
        version: 1,
        addrs,
        len,
    }))
}

fn v1_ip(s: &str, v6: bool) -> Result<IpAddr, ProxyHeaderError> {
    let ip = if v6 {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| ProxyHeaderError::V1("bad address"))
}

fn v1_port(s: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyHeaderError::V1("bad port"));
    }
    s.parse().map_err(|_| ProxyHeaderError::V1("bad port"))
}

fn decode_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyHeaderError::NotProxy);
    }
    if buf.len() < 16 {
        if let Some(&ver_cmd) = buf.get(12)
            && (ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1)
        {
            return Err(ProxyHeaderError::V2("bad version or command"));
        }
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::V2("bad version"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyHeaderError::V2("bad command")),
    };
    let fam = buf[13];
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if len > V2_MAX_LEN {
        return Err(ProxyHeaderError::V2("header too long"));
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return Err(ProxyHeaderError::V2("bad address family"));
    }
    let addr_len = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if body_len < addr_len {
        return Err(ProxyHeaderError::V2("length shorter than the addresses"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    check_tlvs(&body[addr_len..])?;
    let addrs = if local || transport != 1 {
        ProxyAddrs::Unknown
    } else {
        match family {
            1 => {
                let ip = |o: usize| {
                    IpAddr::V4(Ipv4Addr::new(
                        body[o],
                        body[o + 1],
                        body[o + 2],
                        body[o + 3],
                    ))
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                ProxyAddrs::Tcp {
                    src: SocketAddr::new(ip(0), port(8)),
                    dst: SocketAddr::new(ip(4), port(10)),
                }
            }
            2 => {
                let ip = |o: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&body[o..o + 16]);
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                ProxyAddrs::Tcp {
                    src: SocketAddr::new(ip(0), port(32)),
                    dst: SocketAddr::new(ip(16), port(34)),
                }
            }
            _ => ProxyAddrs::Unknown,
        }
    };
    Ok(Some(ProxyHeader {
        version: 2,
        addrs,
        len,
    }))
}

/// TLVs must tile the rest of the header exactly (type, 2-byte length, value).
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyHeaderError> {
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(ProxyHeaderError::V2("truncated TLV"));
        }
        let n = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        tlvs = tlvs
            .get(3 + n..)
            .ok_or(ProxyHeaderError::V2("TLV longer than the header"))?;
    }
    Ok(())
}

/// Both addresses in one family: an IPv4 address next to an IPv6 one is written as
/// IPv4-mapped IPv6.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (src.is_ipv4(), dst.is_ipv4()) {
        (true, true) | (false, false) => (src, dst),
        _ => (v6(src), v6(dst)),
    }
}

/// `PROXY TCP4 SRC DST SPORT DPORT\r\n` (or TCP6).
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 `PROXY` header over TCP, no TLVs.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&six(s).octets());
            out.extend_from_slice(&six(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// Why [`read_header`] found no header.
#[derive(Debug, thiserror::Error)]
pub enum ReadHeaderError {
    #[error(transparent)]
    Bad(#[from] ProxyHeaderError),
    #[error("the client closed before a complete PROXY header")]
    Closed,
    #[error("no complete PROXY header in time")]
    Timeout,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Read a PROXY header off `stream` before `deadline`, consuming exactly its bytes: what
/// follows (an HTTP request, a TLS ClientHello) stays in the socket for the next reader, so
/// the caller needs no buffer of its own.
///
/// Each round peeks at what has arrived: a complete header is then read for its length; a
/// valid beginning that is not complete yet is consumed whole (every byte of it belongs to
/// the header), so the next peek waits for new bytes instead of spinning. Usually one peek
/// and one read.
pub async fn read_header(
    stream: &mut tokio::net::TcpStream,
    deadline: tokio::time::Instant,
) -> Result<ProxyHeader, ReadHeaderError> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut got: Vec<u8> = Vec::with_capacity(128);
        let mut peeked = [0u8; 256];
        loop {
            let room = V2_MAX_LEN.saturating_sub(got.len()).min(peeked.len());
            let n = stream.peek(&mut peeked[..room]).await?;
            if n == 0 {
                return Err(ReadHeaderError::Closed);
            }
            let before = got.len();
            got.extend_from_slice(&peeked[..n]);
            match decode(&got)? {
                Some(h) => {
                    // h.len <= got.len() = before + n: the rest fits in what was peeked.
                    stream.read_exact(&mut peeked[..h.len - before]).await?;
                    return Ok(h);
                }
                None => {
                    // All `n` bytes are header bytes: take them out of the socket.
                    stream.read_exact(&mut peeked[..n]).await?;
                }
            }
        }
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| ReadHeaderError::Timeout)?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "proxy_protocol_tests.rs"]
mod tests;

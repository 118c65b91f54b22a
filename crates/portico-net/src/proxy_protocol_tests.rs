//! Unit tests of the PROXY protocol codec: every example of the spec, byte-at-a-time
//! feeding, and the strictness rules.

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, dst: &str) -> ProxyAddrs {
    ProxyAddrs::Tcp {
        src: sa(src),
        dst: sa(dst),
    }
}

#[test]
fn v1_examples() {
    let h = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    let got = decode(h).unwrap().unwrap();
    assert_eq!(got.version, 1);
    assert_eq!(got.len, 47);
    assert_eq!(got.addrs, tcp("192.168.0.1:56324", "192.168.0.11:443"));
    let h = b"PROXY TCP6 ::1 2001:db8::2 65535 0\r\n";
    assert_eq!(
        decode(h).unwrap().unwrap().addrs,
        tcp("[::1]:65535", "[2001:db8::2]:0")
    );
    let h = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_eq!(decode(h).unwrap().unwrap().addrs, ProxyAddrs::Unknown);
    assert_eq!(decode(b"PROXY UNKNOWN\r\n").unwrap().unwrap().len, 15);
}

#[test]
fn v1_incremental_then_complete() {
    let h = b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\n";
    for i in 0..h.len() {
        assert_eq!(decode(&h[..i]).unwrap(), None, "prefix {i}");
    }
    assert!(decode(h).unwrap().is_some());
}

#[test]
fn v1_strict() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000 extra\r\n",
        b"PROXY TCP4 10.0.0.1  10.0.0.2 1000 2000\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 01000 2000\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 65536 2000\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 -1 2000\r\n",
        b"PROXY TCP4 ::1 10.0.0.2 1 2\r\n",
        b"PROXY TCP6 10.0.0.1 ::2 1 2\r\n",
        b"PROXY TCP4 010.0.0.1 10.0.0.2 1 2\r\n",
        b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n",
        b"PROXY TCP4 10.0.0.1\r10.0.0.2",
        b"proxy TCP4 10.0.0.1 10.0.0.2 1 2\r\n",
        b"PROXX",
        b"PROXY UNKNOWN \x00\x00\n\r\n",
        b"PROXY UNKNOWN caf\xc3\xa9\r\n",
        b"GET / HTTP/1.1\r\n",
        b"\r\n\r\n\x00\r\nQUIX",
    ];
    for b in bad {
        assert!(decode(b).is_err(), "{:?}", String::from_utf8_lossy(b));
    }
    // 107 bytes without CRLF.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(107, b'a');
    assert!(decode(&long).is_err());
    long.truncate(106);
    assert_eq!(decode(&long).unwrap(), None);
}

fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn v2_examples() {
    let body = [127, 0, 0, 2, 127, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50];
    let mut h = v2(0x21, 0x11, &body);
    h.extend_from_slice(b"payload");
    let got = decode(&h).unwrap().unwrap();
    assert_eq!(got.len, 28);
    assert_eq!(got.version, 2);
    assert_eq!(got.addrs, tcp("127.0.0.2:8080", "127.0.0.1:80"));
    for i in 0..28 {
        assert_eq!(decode(&h[..i]).unwrap(), None, "prefix {i}");
    }
    // LOCAL with no address, UNSPEC, UDP, unix: the socket's addresses are kept.
    assert_eq!(
        decode(&v2(0x20, 0x00, &[])).unwrap().unwrap().addrs,
        ProxyAddrs::Unknown
    );
    assert_eq!(
        decode(&v2(0x21, 0x00, &[])).unwrap().unwrap().addrs,
        ProxyAddrs::Unknown
    );
    assert_eq!(
        decode(&v2(0x21, 0x12, &body)).unwrap().unwrap().addrs,
        ProxyAddrs::Unknown
    );
    assert_eq!(
        decode(&v2(0x21, 0x31, &[0; 216])).unwrap().unwrap().addrs,
        ProxyAddrs::Unknown
    );
    // TLVs after the addresses (e.g. ALPN, authority) are skipped.
    let mut with_tlv = body.to_vec();
    with_tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x02, 0x00, 0x00]);
    let got = decode(&v2(0x21, 0x11, &with_tlv)).unwrap().unwrap();
    assert_eq!(got.len, 16 + with_tlv.len());
}

#[test]
fn v2_strict() {
    let body = [127, 0, 0, 2, 127, 0, 0, 1, 0, 1, 0, 2];
    assert!(
        decode(&v2(0x11, 0x11, &body)).is_err(),
        "version 1 in a v2 header"
    );
    assert!(decode(&v2(0x22, 0x11, &body)).is_err(), "command 2");
    assert!(decode(&v2(0x21, 0x41, &body)).is_err(), "family 4");
    assert!(decode(&v2(0x21, 0x13, &body)).is_err(), "transport 3");
    assert!(
        decode(&v2(0x21, 0x11, &body[..11])).is_err(),
        "short addresses"
    );
    assert!(
        decode(&v2(0x21, 0x21, &body)).is_err(),
        "IPv6 needs 36 bytes"
    );
    let mut tlv = body.to_vec();
    tlv.extend_from_slice(&[0x01, 0x00, 0x05, b'h']);
    assert!(decode(&v2(0x21, 0x11, &tlv)).is_err(), "TLV past the end");
    tlv.truncate(14);
    assert!(decode(&v2(0x21, 0x11, &tlv)).is_err(), "truncated TLV");
    // An early wrong version byte fails before the rest arrives.
    assert!(decode(&v2(0x31, 0x11, &body)[..13]).is_err());
    let huge = v2(0x21, 0x11, &vec![0; V2_MAX_LEN]);
    assert!(decode(&huge[..16]).is_err(), "too long is refused at once");
}

#[test]
fn encode_round_trips() {
    let cases = [
        ("127.0.0.2:5000", "127.0.0.1:6201"),
        ("[2001:db8::1]:5000", "[::1]:443"),
        ("127.0.0.2:5000", "[::1]:443"),
    ];
    for (s, d) in cases {
        let (s, d) = (sa(s), sa(d));
        for (enc, ver) in [(encode_v1(s, d), 1), (encode_v2(s, d), 2)] {
            let got = decode(&enc).unwrap().unwrap();
            assert_eq!(got.version, ver);
            assert_eq!(got.len, enc.len());
            let ProxyAddrs::Tcp { src, dst } = got.addrs else {
                panic!("tcp expected")
            };
            let canon = |a: SocketAddr| match a.ip() {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
                    None => a,
                },
                IpAddr::V4(_) => a,
            };
            assert_eq!((canon(src), canon(dst)), (s, d));
        }
    }
    assert_eq!(
        encode_v1(sa("1.2.3.4:5"), sa("6.7.8.9:10")),
        b"PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n"
    );
}

/// `read_header` on a real socket: the header arriving in pieces (v1) or whole with the
/// request behind it (v2) is consumed exactly; the next bytes are the stream's.
#[tokio::test]
async fn read_header_consumes_exactly_the_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let deadline = || tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    // v1 in three pieces.
    let sender = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        for piece in [
            &b"PROXY TCP4 19"[..],
            b"2.0.2.1 10.0.0.1 5",
            b"6324 443\r\nGET /",
        ] {
            c.write_all(piece).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        c
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let h = read_header(&mut s, deadline()).await.unwrap();
    assert_eq!(h.addrs, tcp("192.0.2.1:56324", "10.0.0.1:443"));
    let _c = sender.await.unwrap();
    let mut rest = [0u8; 5];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"GET /");
    // v2 with the request in the same segment.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bytes = encode_v2(sa("[2001:db8::7]:1000"), sa("[::1]:80"));
    bytes.extend_from_slice(b"\x16\x03\x01");
    c.write_all(&bytes).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let h = read_header(&mut s, deadline()).await.unwrap();
    assert_eq!(h.addrs, tcp("[2001:db8::7]:1000", "[::1]:80"));
    let mut rest = [0u8; 3];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"\x16\x03\x01");
    // Garbage: refused at once; silence: the deadline.
    let mut c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    c2.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    assert!(matches!(
        read_header(&mut s, deadline()).await,
        Err(ReadHeaderError::Bad(ProxyHeaderError::NotProxy))
    ));
    let _c3 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
    assert!(matches!(
        read_header(&mut s, soon).await,
        Err(ReadHeaderError::Timeout)
    ));
}

//! Unit tests of the SNI peek (hand-built ClientHellos, split over records and fed byte by
//! byte) and of route selection.

use super::*;

/// A ClientHello with the given extensions (type, data).
fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[1; 32]);
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[1, 0]);
    let mut ext_bytes = Vec::new();
    for (kind, data) in exts {
        ext_bytes.extend_from_slice(&kind.to_be_bytes());
        ext_bytes.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        ext_bytes.extend_from_slice(data);
    }
    body.extend_from_slice(&u16::try_from(ext_bytes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&ext_bytes);
    let mut hs = vec![1];
    hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    hs
}

fn sni_ext(name: &str) -> (u16, Vec<u8>) {
    let mut entry = vec![0];
    entry.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    entry.extend_from_slice(name.as_bytes());
    let mut data = u16::try_from(entry.len()).unwrap().to_be_bytes().to_vec();
    data.extend_from_slice(&entry);
    (0, data)
}

/// Wrap handshake bytes into records of at most `max` bytes.
fn records(hs: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in hs.chunks(max) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn finds_the_name() {
    let hs = hello(&[
        (10, vec![0, 2, 0, 29]),
        sni_ext("A.Example.COM."),
        (16, vec![0, 3, 2, b'h', b'2']),
    ]);
    let bytes = records(&hs, 16384);
    assert_eq!(
        server_name(&bytes),
        Ok(Peek::Done(Some("a.example.com".into())))
    );
    for i in 0..bytes.len() {
        assert_eq!(server_name(&bytes[..i]), Ok(Peek::Incomplete), "prefix {i}");
    }
    // Split over many records.
    let split = records(&hs, 7);
    assert_eq!(
        server_name(&split),
        Ok(Peek::Done(Some("a.example.com".into())))
    );
}

#[test]
fn trickled_one_byte_records_are_bounded() {
    let hs = hello(&[sni_ext("a.example.com")]);
    // One record per handshake byte: past MAX_RECORDS, refused (a ClientHello fits in two).
    let tiny = records(&hs, 1);
    assert!(hs.len() > MAX_RECORDS);
    assert_eq!(
        server_name(&tiny),
        Err(SniError::Malformed(
            "ClientHello split into too many records"
        ))
    );
    // Byte by byte over records of up to 7 bytes, each prefix gives the right answer.
    let split = records(&hs, 7);
    for i in 0..split.len() {
        assert_eq!(server_name(&split[..i]), Ok(Peek::Incomplete), "prefix {i}");
    }
    assert_eq!(
        server_name(&split),
        Ok(Peek::Done(Some("a.example.com".into())))
    );
    // Bytes after the ClientHello (the client's next record) change nothing.
    let mut more = records(&hs, 16384);
    more.extend_from_slice(&[0x14, 3, 3, 0, 1, 1]);
    assert_eq!(
        server_name(&more),
        Ok(Peek::Done(Some("a.example.com".into())))
    );
}

#[test]
fn no_sni() {
    let bytes = records(&hello(&[(10, vec![0, 2, 0, 29])]), 16384);
    assert_eq!(server_name(&bytes), Ok(Peek::Done(None)));
}

#[test]
fn refusals() {
    assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Err(SniError::NotTls));
    assert_eq!(server_name(b"\x16\x02"), Err(SniError::NotTls));
    assert_eq!(
        server_name(b"\x16\x03\x01\x00\x00"),
        Err(SniError::Malformed("bad record length"))
    );
    // A ServerHello (type 2) where a ClientHello should be.
    let mut hs = hello(&[sni_ext("a.test")]);
    hs[0] = 2;
    assert!(matches!(
        server_name(&records(&hs, 16384)),
        Err(SniError::Malformed(_))
    ));
    // Extension length past the end.
    let mut hs = hello(&[sni_ext("a.test")]);
    let n = hs.len();
    hs[n - 8] = 0xff;
    assert!(server_name(&records(&hs, 16384)).is_err());
    // A name with a space.
    assert!(server_name(&records(&hello(&[sni_ext("a b")]), 16384)).is_err());
    // A handshake announced longer than the peek limit.
    let huge = [0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff];
    assert_eq!(server_name(&huge), Err(SniError::TooLong));
}

#[test]
fn routes() {
    let routes = vec![
        (
            HostPattern::Exact("a.example.com".into()),
            "exact".to_string(),
        ),
        (
            HostPattern::Suffix(".example.com".into()),
            "wild".to_string(),
        ),
        (
            HostPattern::Suffix(".b.example.com".into()),
            "longer".to_string(),
        ),
        (HostPattern::Any, "default".to_string()),
    ];
    assert_eq!(route(&routes, Some("a.example.com")), Some("exact"));
    assert_eq!(route(&routes, Some("x.example.com")), Some("wild"));
    assert_eq!(route(&routes, Some("x.b.example.com")), Some("longer"));
    assert_eq!(route(&routes, Some("other.test")), Some("default"));
    assert_eq!(route(&routes, None), Some("default"));
    assert_eq!(route(&routes[..3], Some("other.test")), None);
    assert_eq!(route(&routes[..3], None), None);
}

//! Codec tests, including adverts captured from keepalived 2.2.7 on the wire.

#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const NODE_A: &str = "10.200.0.11";
const GROUP: &str = "224.0.0.18";

/// keepalived, `vrrp_version 2`, VRID 51, priority 150, advert_int 1, auth PASS "s3cr3t".
const KEEPALIVED_V2: [u8; 20] = [
    0x21, 0x33, 0x96, 0x01, 0x01, 0x01, 0x32, 0x84, 0x0a, 0xc8, 0x00, 0x64, 0x73, 0x33, 0x63, 0x72,
    0x33, 0x74, 0x00, 0x00,
];
/// keepalived, `vrrp_version 3`, VRID 51, priority 150, advert_int 1, from 10.200.0.11.
const KEEPALIVED_V3: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x41, 0xd9, 0x0a, 0xc8, 0x00, 0x64,
];

fn vip() -> Vec<IpAddr> {
    vec![v4("10.200.0.100")]
}

#[test]
fn decodes_keepalived_v2_with_password() {
    let a = decode(&KEEPALIVED_V2, v4(NODE_A), v4(GROUP)).unwrap();
    assert_eq!(a.version, VrrpVersion::V2);
    assert_eq!((a.vrid, a.priority, a.interval_cs), (51, 150, 100));
    assert_eq!(a.auth, Auth::simple("s3cr3t"));
    assert_eq!(a.addresses, vip());
}

#[test]
fn decodes_keepalived_v3_with_pseudo_header() {
    let a = decode(&KEEPALIVED_V3, v4(NODE_A), v4(GROUP)).unwrap();
    assert_eq!(a.version, VrrpVersion::V3);
    assert_eq!((a.vrid, a.priority, a.interval_cs), (51, 150, 100));
    assert_eq!(a.auth, Auth::None);
    // The same bytes from another source fail: the checksum covers the pseudo-header.
    assert_eq!(
        decode(&KEEPALIVED_V3, v4("10.200.0.12"), v4(GROUP)),
        Err(DecodeError::Checksum)
    );
}

#[test]
fn encodes_byte_identical_to_keepalived() {
    let v2 = Advert {
        version: VrrpVersion::V2,
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        auth: Auth::simple("s3cr3t"),
        addresses: vip(),
    };
    assert_eq!(encode(&v2, v4(NODE_A), v4(GROUP)).unwrap(), KEEPALIVED_V2);
    let v3 = Advert {
        version: VrrpVersion::V3,
        auth: Auth::None,
        ..v2
    };
    assert_eq!(encode(&v3, v4(NODE_A), v4(GROUP)).unwrap(), KEEPALIVED_V3);
}

#[test]
fn ipv6_round_trip_and_pseudo_header() {
    let src: IpAddr = "fe80::1".parse().unwrap();
    let dst = IpAddr::V6(MCAST_V6);
    let a = Advert {
        version: VrrpVersion::V3,
        vrid: 7,
        priority: 200,
        interval_cs: 10,
        auth: Auth::None,
        addresses: vec!["fd00::100".parse().unwrap(), "fd00::101".parse().unwrap()],
    };
    let buf = encode(&a, src, dst).unwrap();
    assert_eq!(buf.len(), 8 + 32);
    assert_eq!(decode(&buf, src, dst).unwrap(), a);
    assert_eq!(
        decode(&buf, "fe80::2".parse().unwrap(), dst),
        Err(DecodeError::Checksum)
    );
    let v2 = Advert {
        version: VrrpVersion::V2,
        interval_cs: 100,
        ..a
    };
    assert_eq!(encode(&v2, src, dst), Err(EncodeError::V2OverIpv6));
}

#[test]
fn rejects_malformed_packets() {
    let (s, d) = (v4(NODE_A), v4(GROUP));
    assert_eq!(
        decode(&KEEPALIVED_V3[..7], s, d),
        Err(DecodeError::TooShort(7))
    );
    let mut p = KEEPALIVED_V3;
    p[0] = 0x41;
    assert_eq!(decode(&p, s, d), Err(DecodeError::Version(4)));
    let mut p = KEEPALIVED_V3;
    p[0] = 0x32;
    assert_eq!(decode(&p, s, d), Err(DecodeError::Type(2)));
    let mut p = KEEPALIVED_V3;
    p[3] = 2;
    assert!(matches!(decode(&p, s, d), Err(DecodeError::Length { .. })));
    let mut p = KEEPALIVED_V3;
    p[3] = 0;
    assert_eq!(decode(&p, s, d), Err(DecodeError::NoAddresses));
    let mut p = KEEPALIVED_V2;
    p[19] = 1;
    assert_eq!(decode(&p, s, d), Err(DecodeError::Checksum));
    assert!(matches!(
        decode(&KEEPALIVED_V2[..12], s, d),
        Err(DecodeError::Length { .. })
    ));
    assert_eq!(
        decode(&KEEPALIVED_V3, s, "ff02::12".parse().unwrap()),
        Err(DecodeError::MixedFamilies)
    );
    // A v2 packet that claims IPv6.
    assert_eq!(
        decode(
            &KEEPALIVED_V2,
            "fe80::1".parse().unwrap(),
            "ff02::12".parse().unwrap()
        ),
        Err(DecodeError::V2OverIpv6)
    );
}

#[test]
fn rejects_unknown_auth_type_and_zero_interval() {
    let (s, d) = (v4(NODE_A), v4(GROUP));
    let base = Advert {
        version: VrrpVersion::V2,
        vrid: 1,
        priority: 100,
        interval_cs: 100,
        auth: Auth::None,
        addresses: vip(),
    };
    let mut p = encode(&base, s, d).unwrap();
    p[4] = 2; // AH, removed by RFC 3768
    p[6..8].copy_from_slice(&[0, 0]);
    let sum = checksum(&[], &p);
    p[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(decode(&p, s, d), Err(DecodeError::AuthType(2)));
    let v3 = Advert {
        version: VrrpVersion::V3,
        ..base
    };
    let mut p = encode(&v3, s, d).unwrap();
    p[4..6].copy_from_slice(&[0, 0]);
    p[6..8].copy_from_slice(&[0, 0]);
    let sum = checksum(&pseudo_header(s, d, p.len()), &p);
    p[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(decode(&p, s, d), Err(DecodeError::ZeroInterval));
}

#[test]
fn encode_validates_intervals_and_families() {
    let (s, d) = (v4(NODE_A), v4(GROUP));
    let a = Advert {
        version: VrrpVersion::V2,
        vrid: 1,
        priority: 100,
        interval_cs: 10,
        auth: Auth::None,
        addresses: vip(),
    };
    assert_eq!(encode(&a, s, d), Err(EncodeError::Interval(10)));
    let a = Advert {
        version: VrrpVersion::V3,
        interval_cs: 0x1000,
        ..a
    };
    assert_eq!(encode(&a, s, d), Err(EncodeError::Interval(0x1000)));
    let a = Advert {
        interval_cs: 100,
        addresses: vec!["fd00::1".parse().unwrap()],
        ..a
    };
    assert!(matches!(encode(&a, s, d), Err(EncodeError::Family(_))));
    let a = Advert {
        addresses: vec![],
        ..a
    };
    assert_eq!(encode(&a, s, d), Err(EncodeError::AddressCount(0)));
}

#[test]
fn long_password_is_truncated_like_keepalived() {
    assert_eq!(Auth::simple("123456789"), Auth::Simple(*b"12345678"));
    assert_eq!(Auth::simple("1111"), Auth::Simple(*b"1111\0\0\0\0"));
}

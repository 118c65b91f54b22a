//! Fuzz the VRRP advert decoder: it must never panic, and whatever it accepts must survive
//! an encode -> decode round trip unchanged.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let (src, dst) = if sel & 1 == 0 {
        (
            IpAddr::V4(Ipv4Addr::new(10, 200, 0, sel)),
            IpAddr::V4(portico_vrrp::packet::MCAST_V4),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(sel))),
            IpAddr::V6(portico_vrrp::packet::MCAST_V6),
        )
    };
    if let Ok(advert) = portico_vrrp::decode(pkt, src, dst) {
        let bytes = portico_vrrp::encode(&advert, src, dst).expect("a decoded advert encodes");
        let again = portico_vrrp::decode(&bytes, src, dst).expect("an encoded advert decodes");
        assert_eq!(again, advert);
    }
});

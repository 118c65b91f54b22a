//! Fuzz the PROXY protocol decoder (v1 and v2) and the SNI peek: they must never panic; a
//! decoded header never claims more bytes than it was given; decoding is prefix-stable (a
//! header found in a prefix is the same with more bytes after it); encoded addresses decode
//! back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_stream::proxy_protocol::{ProxyAddrs, decode, encode_v1, encode_v2};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = decode(data) {
        assert!(h.len <= data.len());
        let again = decode(&data[..h.len]).expect("the header alone decodes");
        assert_eq!(again, Some(h));
        if let ProxyAddrs::Tcp { src, dst } = h.addrs {
            for enc in [encode_v1(src, dst), encode_v2(src, dst)] {
                let back = decode(&enc).expect("an encoded header decodes");
                assert_eq!(back.map(|b| b.len), Some(enc.len()));
            }
        }
    }
    // Every prefix of an accepted input is "need more" or the same header.
    if data.len() < 64 {
        for i in 0..data.len() {
            if let Err(_) = decode(&data[..i]) {
                assert!(decode(data).is_err(), "an error on a prefix must stay an error");
            }
        }
    }
    let _ = portico_stream::sni::server_name(data);
});

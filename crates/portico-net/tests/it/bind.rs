//! Listener groups on real loopback sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use portico_net::{bind_group, ensure_free};

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn port_zero_group_shares_one_port_and_accepts() {
    let (sockets, bound) = bind_group(loopback0(), 3).unwrap();
    assert_eq!(sockets.len(), 3);
    assert_ne!(bound.port(), 0);
    for s in &sockets {
        assert_eq!(s.local_addr().unwrap(), bound);
    }
    // The kernel hands each connection to one of the group's sockets.
    let mut client = TcpStream::connect(bound).unwrap();
    client.write_all(b"x").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    'outer: loop {
        for s in &sockets {
            if let Ok((mut conn, _)) = s.accept() {
                let mut b = [0u8; 1];
                conn.set_nonblocking(false).unwrap();
                conn.read_exact(&mut b).unwrap();
                assert_eq!(&b, b"x");
                break 'outer;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no socket of the group accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_second_group_on_a_taken_address_is_refused() {
    let (_first, bound) = bind_group(loopback0(), 2).unwrap();
    let err = bind_group(bound, 2).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[test]
fn a_plain_listener_of_another_program_is_detected() {
    let other = std::net::TcpListener::bind(loopback0()).unwrap();
    let addr = other.local_addr().unwrap();
    assert!(ensure_free(addr).is_err());
    drop(other);
    assert!(
        ensure_free(addr).is_ok(),
        "free again once the other listener closed"
    );
}

#[test]
fn ipv6_group_is_ipv6_only() {
    let Ok((_v6, bound)) = bind_group("[::1]:0".parse().unwrap(), 1) else {
        eprintln!("skip: no IPv6 loopback here");
        return;
    };
    // The same port on IPv4 is still free: the IPv6 socket does not claim it.
    let v4: SocketAddr = SocketAddr::new("127.0.0.1".parse().unwrap(), bound.port());
    assert!(ensure_free(v4).is_ok());
}

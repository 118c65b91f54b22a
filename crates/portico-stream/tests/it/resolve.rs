//! Server names on the stream plane: a name resolving to several addresses uses all of
//! them, in order (as the HTTP plane), so a server whose first address refuses is still
//! reached on the next. The name comes from a resolver table (no portable system setup has a
//! name with two loopback addresses); the sockets are real.

use std::net::SocketAddr;

use portico_net::{Plumbing, Resolver};

use crate::support::*;

#[test]
fn a_server_name_with_several_addresses_falls_back_to_the_next() {
    // The name's second address serves; its first (same port, 127.0.0.1) refuses: a socket
    // bound there without listening answers a connect with a reset.
    let backend = Backend::spawn_at("127.0.0.2", "second");
    let port = backend.addr.port();
    let first: SocketAddr = ([127, 0, 0, 1], port).into();
    let blocker = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    blocker.bind(&first.into()).unwrap();
    let second = backend.addr;
    let p = Portico::start_on(
        &format!(
            "[upstreams.pool]\nservers = [\"multi.test:{port}\"]\nretries = 0\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"pool\"\n"
        ),
        |server| {
            Plumbing::start(server)
                .unwrap()
                .with_resolver(Resolver::with(move |host, port| {
                    assert_eq!(host, "multi.test");
                    Ok(vec![
                        ([127, 0, 0, 1], port).into(),
                        ([127, 0, 0, 2], port).into(),
                    ])
                }))
        },
    );
    assert_eq!(tag_from("127.0.0.1", p.addr(0)), "second");
    let log = p.log_until(|l| l.contains("end="));
    assert!(log.contains(&format!("-> pool {second} ")), "{log}");
    drop(blocker);
}

//! The `max_connections` gate on the stream plane: connections accepted at the same moment
//! on several listeners never pass the limit (the slot is taken with a compare-and-swap after
//! accept; a connection that loses the race waits, unserved, for a free slot).

use std::io::Read;
use std::time::Duration;

use crate::support::*;

#[test]
fn concurrent_accepts_on_several_listeners_never_pass_max_connections() {
    let backend = Backend::spawn("b");
    // Four listeners, two workers each: eight accept loops, all idle in accept() with the
    // count at 0 when the clients arrive together.
    let p = Portico::start_server(
        "max_connections = 1\nthreads = 2",
        &format!(
            "[upstreams.pool]\nservers = {}\n[[streams]]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\", \"127.0.0.1:0\", \"127.0.0.1:0\"]\nupstream = \"pool\"\n",
            servers(&[&backend])
        ),
    );
    let addrs: Vec<_> = (0..4).map(|i| p.addr(i)).collect();
    let mut clients: Vec<_> = addrs
        .iter()
        .map(|a| connect_from("127.0.0.1".parse().unwrap(), *a))
        .collect();
    wait_until(Duration::from_secs(5), || {
        backend.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    // The others are accepted by the kernel and by their loops but must not be served: give
    // them ample time to (wrongly) reach the backend.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "max_connections = 1 but more stream connections were served at once"
    );
    assert!(p.running.connections() <= 1, "{}", p.running.connections());

    // The served one is the one that got the backend's greeting; closing it lets the next in.
    let served = clients
        .iter_mut()
        .position(|c| {
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).is_ok()
        })
        .expect("one client is served");
    drop(clients.remove(served));
    wait_until(Duration::from_secs(5), || {
        backend.accepted.load(std::sync::atomic::Ordering::SeqCst) == 2
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

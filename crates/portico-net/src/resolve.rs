//! Server names to addresses, and connecting to them: the one way both planes do it.
//!
//! A server written as a name (`app.internal:8080`, `localhost:9000`) is resolved once, when a
//! config is compiled (start-up or reload, blocking), never per connection. Every address of
//! the name is kept, IPv4 first (the resolver's order within each family): the first is the
//! server's address (what balancing, health and the logs name), the others are tried in order
//! when connecting to it fails ([`connect`]), as a name with an `A` and an `AAAA` record, or
//! several `A` records, promises.
//!
//! [`Resolver`] is the system resolver (`getaddrinfo`) unless a caller installs a table of its
//! own: a knob for tests that need a name with several addresses, which no portable system
//! configuration provides.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use portico_config::ServerAddr;
use tokio::net::TcpStream;

/// A lookup function: host and port to addresses.
pub type Lookup = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// How server names are resolved (the system resolver by default). Cheap to clone.
#[derive(Clone, Default)]
pub struct Resolver {
    table: Option<Arc<Lookup>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.table.is_some() {
            "Resolver(custom)"
        } else {
            "Resolver(system)"
        })
    }
}

impl Resolver {
    /// The system resolver.
    pub fn system() -> Resolver {
        Resolver::default()
    }

    /// A resolver that asks `lookup` for names (IP literals never reach it).
    pub fn with(
        lookup: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Resolver {
        Resolver {
            table: Some(Arc::new(lookup)),
        }
    }

    /// Every address of `addr`, IPv4 first, without duplicates; never empty on `Ok`.
    /// Blocking (start-up and reload only).
    pub fn resolve(&self, addr: &ServerAddr) -> io::Result<Vec<SocketAddr>> {
        if let Some(ip) = addr.ip_socket_addr() {
            return Ok(vec![ip]);
        }
        let host = addr.host.as_str();
        let found = match &self.table {
            Some(lookup) => lookup(host, addr.port)?,
            None => (host, addr.port).to_socket_addrs()?.collect(),
        };
        let found = order(found);
        if found.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the name has no address",
            ));
        }
        Ok(found)
    }
}

/// IPv4 first (stable: keeps the resolver's order within each family), duplicates dropped.
fn order(found: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(found.len());
    for a in found {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out.sort_by_key(SocketAddr::is_ipv6);
    out
}

/// Connect to the first of `addrs` that accepts, each within `timeout`, with `TCP_NODELAY`.
/// Returns the stream, the address it reached and what is left of `timeout` for that
/// address (the budget of a TLS handshake that follows: `connect_timeout` covers both); on
/// failure the first address's error (a timeout is `ErrorKind::TimedOut`).
pub async fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr, Duration)> {
    let mut first_error = None;
    for &target in addrs {
        let started = tokio::time::Instant::now();
        let error = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok((s, target, timeout.saturating_sub(started.elapsed())));
            }
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        };
        tracing::debug!(server = %target, error = %error, "connect failed");
        first_error.get_or_insert(error);
    }
    Err(first_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn server(text: &str) -> ServerAddr {
        let (host, port) = text.rsplit_once(':').unwrap();
        ServerAddr {
            host: host.to_string(),
            port: port.parse().unwrap(),
        }
    }

    #[test]
    fn every_address_is_kept_ipv4_first_without_duplicates() {
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let a: SocketAddr = "127.0.0.2:9".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:9".parse().unwrap();
        let r = Resolver::with(move |host, port| {
            assert_eq!((host, port), ("many.test", 9));
            Ok(vec![v6, a, b, a])
        });
        assert_eq!(r.resolve(&server("many.test:9")).unwrap(), vec![a, b, v6]);
        let none = Resolver::with(|_, _| Ok(Vec::new()));
        assert!(none.resolve(&server("none.test:9")).is_err());
        // IP literals are not looked up.
        assert_eq!(
            none.resolve(&server("127.0.0.1:80")).unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
    }

    #[test]
    fn the_system_resolver_knows_localhost() {
        let found = Resolver::system().resolve(&server("localhost:80")).unwrap();
        assert!(
            found.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn connect_falls_back_to_the_next_address() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let (_, reached, _) = connect(&[dead_addr, live_addr], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reached, live_addr);
        let err = connect(&[dead_addr], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}

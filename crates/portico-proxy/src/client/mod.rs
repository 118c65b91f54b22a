//! The client side of a connection: the accept loops with the `max_connections` gate
//! and the start of each accepted connection ([`accept`]), serving it with hyper under the
//! connection's timeouts ([`http`]: HTTP/1.1) and the TLS listeners' handshake, then HTTP/2
//! or HTTP/1.1 by ALPN ([`tls`]).
//!
//! May import: `request` (every request goes to the handler) and the floors below it.
//! Nothing below imports this floor; the server's worker loop starts the accept loops.

pub(crate) mod accept;
pub(crate) mod http;
pub(crate) mod tls;

//! The client side of a connection: the accept loops with the `max_connections` gate
//! ([`accept`]), serving a connection with hyper (HTTP/1.1) and TLS listeners' handshake,
//! then HTTP/2 or HTTP/1.1 by ALPN ([`tls`]).
//!
//! May import: `request` (every request goes to the handler) and the floors below it.
//! Nothing below imports this floor; the server's worker loop starts the accept loops.

pub(crate) mod accept;
pub(crate) mod tls;

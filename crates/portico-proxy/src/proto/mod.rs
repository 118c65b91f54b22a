//! Wire formats, with no state of the server: the request-head scan that catches a
//! doubly framed body ([`framing`]), Portico's own HTTP/1.1 client connection and codec
//! ([`h1`]) and WebSocket frame boundaries ([`ws_frame`]).
//!
//! May import: the ground floor only ([`crate::body`]).

pub(crate) mod framing;
pub(crate) mod h1;
pub mod ws_frame;

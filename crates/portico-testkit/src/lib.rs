//! Portico test support: real backends and an in-process proxy for tests, demos and
//! benchmarks.
//!
//! - [`certs`]: a test CA and leaf certificates (rcgen), shared by the TLS tests.
//! - [`echo`]: the HTTP + WebSocket echo backend behind `portico echo` and `portico demo`.
//! - [`http`]: a parsed HTTP/1.1 response ([`http::Resp`]) for raw-socket test clients.
//! - [`pebble`]: the shared part of the pebble (ACME test CA) harnesses.
//! - [`proxy`]: start the real proxy in-process on `127.0.0.1:0` from TOML text.
//! - [`eventually`]: poll-until-true assertions with a deadline (no sleeps in tests).

pub mod certs;
pub mod echo;
pub mod eventually;
pub mod http;
pub mod pebble;
pub mod proxy;

//! portico-stream's integration tests: one test binary (one link), a module per topic, the
//! shared helpers in [`support`] (the stream server from config text, tagged echo backends,
//! clients from chosen loopback addresses, external peers).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod gate;
mod proxy_protocol;
mod reload;
mod resolve;
mod sni_passthrough;
mod stream_tls;
mod streams;
mod support;
mod upstream_tls;

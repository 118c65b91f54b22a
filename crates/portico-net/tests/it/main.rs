//! portico-net's integration tests: one test binary, a module per topic (real loopback
//! sockets).
#![allow(clippy::unwrap_used)]

mod bind;

//! Integration tests of the TLS crate: certificate files and SNI, upstream TLS, and ACME
//! against a real pebble (a missing pebble fails under CI); shared helpers in [`support`].

mod acme_pebble;
mod acme_retry;
mod cert_files;
mod sni;
mod support;
mod upstream;

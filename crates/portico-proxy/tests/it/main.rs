//! Integration tests of the proxy, in-process on `127.0.0.1:0` with real backends
//! (`portico-testkit`): one module per concern, shared helpers in [`common`] (raw HTTP/1.1
//! client), [`reload_support`] (a proxy reloaded from TOML text) and [`tls_support`].
//! `ws_idle_memory` is its own binary: it measures this process's memory.

mod access_log;
mod actions;
mod common;
mod error_pages;
mod hardening;
mod limits;
mod max_connections_race;
mod policy;
mod policy_auth;
mod policy_real_ip;
mod policy_sticky;
mod proxy_balance;
mod proxy_basic;
mod proxy_errors;
mod proxy_limits;
mod proxy_log;
mod reload;
mod reload_support;
mod reload_ws;
mod retries_many;
mod send_min_rate;
mod slow_upload;
mod smuggling;
mod static_files;
mod tls_default_cert;
mod tls_listen;
mod tls_redirect;
mod tls_reload;
mod tls_support;
mod tls_upstream;
mod tls_websocket;
mod upstream_framing;
mod upstream_malformed;
mod websocket;
mod ws_ping;
mod ws_protocol;

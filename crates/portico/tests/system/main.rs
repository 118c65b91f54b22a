//! System tests of the real `portico` binary next to real third-party peers (pebble, node
//! `ws`/`wscat`, Python `websockets`/kosoku, curl, slowhttptest, nginx, systemd-analyze), one
//! module per scenario.
//! Shared helpers in [`support`]. Run one scenario with
//! `cargo test -p portico --test system seed000`.

mod access_log;
mod admin;
mod admin_chromium;
mod attacks;
mod autobahn;
mod cli;
mod cluster;
mod cluster_acme;
mod compress_system;
mod examples_check;
mod h2_attacks;
mod idle_flood;
mod import;
mod import_harness;
mod import_policy;
mod planes;
mod policy_system;
mod proxy_protocol_sites;
mod reload;
mod reload_other_config;
mod reload_streams;
mod seed000;
mod seed001;
mod seed002;
mod seed003;
mod service;
mod slow_read;
mod slowloris;
mod soak;
mod stream_fds;
mod stream_seed003;
mod support;
mod tls;
mod upgrade;
mod ws_ping;

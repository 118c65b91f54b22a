//! Integration tests of active health checks and pools against real backends: probes,
//! pools, the proxy using them, and the logged transitions; shared helpers in [`support`].

mod active_logs;
mod active_pools;
mod active_probes;
mod active_proxy;
mod support;

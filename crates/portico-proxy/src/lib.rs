//! Portico data plane.
pub mod access_log;
pub mod actions;
pub mod body;

//! Portico data plane.
pub mod body;

//! Integration tests of the cluster crate against real etcd members on loopback.

#![allow(clippy::unwrap_used)]

mod acme;
mod connect;
mod node;

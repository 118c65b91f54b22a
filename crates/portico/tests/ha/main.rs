//! High-availability tests: VRRP between Portico instances and keepalived, in network
//! namespaces this binary creates (root, `ip`, keepalived; a missing one fails under CI).
//! Tests run one at a time ([`support::serial`]): 100 ms adverts must not compete for the
//! cores with another namespace test. Helpers in [`support`].

mod caps;
mod failover;
mod imported;
mod keepalived;
mod measure;
mod seed003;
mod seed004;
mod support;
mod track;
mod upgrade;

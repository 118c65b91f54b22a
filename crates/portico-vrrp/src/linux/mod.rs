//! The Linux driver: raw VRRP sockets, rtnetlink for the virtual addresses, gratuitous ARP
//! and unsolicited NA, all driven by tokio around the sans-IO [`crate::machine`].
//!
//! Needs CAP_NET_RAW (raw and packet sockets) and CAP_NET_ADMIN (addresses); without them
//! [`start`] fails with a [`DriverError`] that says which.

pub mod announce;
pub mod iface;
mod instance;
pub mod netlink;
pub mod sock;

use std::io;

use portico_config::IpPrefix;

pub use crate::machine::Inherited;
pub use instance::{InstanceHandle, Status, start};

/// Why the driver could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("interface {name}: {reason}")]
    Interface { name: String, reason: String },
    #[error("cannot {op} virtual address {addr}: {}{}", io::Error::from_raw_os_error(*.errno), cap_hint(*.errno, "CAP_NET_ADMIN"))]
    Address {
        addr: IpPrefix,
        op: &'static str,
        errno: i32,
    },
    #[error("cannot open the VRRP raw socket on {iface}: {source}{}", cap_hint(source.raw_os_error().unwrap_or(0), "CAP_NET_RAW"))]
    Socket { iface: String, source: io::Error },
}

fn cap_hint(errno: i32, cap: &str) -> String {
    if errno == libc::EPERM || errno == libc::EACCES {
        format!(" (needs {cap}: run as root or grant the capability)")
    } else {
        String::new()
    }
}

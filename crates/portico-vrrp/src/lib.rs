//! Portico VRRP: virtual-IP failover compatible with keepalived.
//!
//! - [`packet`]: the advert codec (v3 per RFC 5798, v2 per RFC 3768 with simple-password
//!   authentication as keepalived speaks it). Pure functions over bytes.
//! - [`machine`]: the sans-IO state machine (Initialize, Backup, Master, Fault). Inputs carry
//!   an explicit `now`; outputs are actions. Tested on a simulated network with a virtual clock.
//!
//! - [`track`]: tracked checks (listeners, upstream, script) -> effective priority.
//! - [`linux`]: the tokio driver (raw sockets, rtnetlink, gratuitous ARP / unsolicited NA).
//!
//! Data flow: the Linux driver (raw IP sockets, netlink, gratuitous ARP / unsolicited NA)
//! receives packets, decodes them with [`packet::decode`], feeds them to a
//! [`machine::Machine`], and carries out the returned [`machine::Action`]s.

pub mod linux;
pub mod machine;
pub mod packet;
pub mod track;

pub use machine::{
    Action, Effective, Inherited, Input, Machine, Params, State, effective_priority,
};
pub use packet::{Advert, Auth, DecodeError, decode, encode};

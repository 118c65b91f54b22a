//! Virtual addresses on and off the interface with rtnetlink (`RTM_NEWADDR`/`RTM_DELADDR`),
//! the same messages `ip addr add/del` sends, without spawning `ip`.
//!
//! One request per call on a fresh `NETLINK_ROUTE` socket, acknowledged by the kernel
//! (`NLM_F_ACK`). Adding an address that is already there and deleting one that is not are
//! both success. IPv6 virtual addresses are added with `IFA_F_NODAD` (as keepalived does):
//! usable at once, no duplicate-address-detection delay.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use portico_config::IpPrefix;
use socket2::{Domain, Protocol, Socket, Type};

use super::DriverError;

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;

/// Adds `prefix` to interface `index`.
pub fn add_address(index: u32, prefix: &IpPrefix) -> Result<(), DriverError> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    match request(&build(RTM_NEWADDR, flags, index, prefix)) {
        Ok(()) => Ok(()),
        Err(e) if e == libc::EEXIST => Ok(()),
        Err(e) => Err(DriverError::Address {
            addr: *prefix,
            op: "add",
            errno: e,
        }),
    }
}

/// Removes `prefix` from interface `index`.
pub fn del_address(index: u32, prefix: &IpPrefix) -> Result<(), DriverError> {
    match request(&build(
        RTM_DELADDR,
        NLM_F_REQUEST | NLM_F_ACK,
        index,
        prefix,
    )) {
        Ok(()) => Ok(()),
        Err(e) if e == libc::EADDRNOTAVAIL || e == libc::ENOENT || e == libc::ENODEV => Ok(()),
        Err(e) => Err(DriverError::Address {
            addr: *prefix,
            op: "remove",
            errno: e,
        }),
    }
}

/// One `ifaddrmsg` request with `IFA_LOCAL` and `IFA_ADDRESS` set to the address.
fn build(kind: u16, flags: u16, index: u32, prefix: &IpPrefix) -> Vec<u8> {
    let (family, octets, ifa_flags) = match prefix.addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 0),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), IFA_F_NODAD),
    };
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0; 4]); // length, filled in below
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns it
    m.extend_from_slice(&[family, prefix.prefix_len, ifa_flags, 0]);
    m.extend_from_slice(&index.to_ne_bytes());
    for attr in [IFA_LOCAL, IFA_ADDRESS] {
        let len = 4 + octets.len() as u16; // 8 or 20, already 4-aligned
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&attr.to_ne_bytes());
        m.extend_from_slice(&octets);
    }
    let total = m.len() as u32;
    m[..4].copy_from_slice(&total.to_ne_bytes());
    m
}

/// Sends one request and waits for its acknowledgement; `Err(errno)` on a kernel error.
fn request(msg: &[u8]) -> Result<(), i32> {
    let io = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )
    .map_err(io)?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    // Unconnected and unaddressed: a netlink datagram goes to the kernel.
    sock.send(msg).map_err(io)?;
    let mut buf = [0u8; 4096];
    let n = (&sock).read(&mut buf).map_err(io)?;
    parse_ack(&buf[..n])
}

fn parse_ack(buf: &[u8]) -> Result<(), i32> {
    if buf.len() < 20 {
        return Err(libc::EPROTO);
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    if kind != NLMSG_ERROR {
        return Err(libc::EPROTO);
    }
    let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
    if code == 0 { Ok(()) } else { Err(-code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_ifaddrmsg() {
        let p = IpPrefix {
            addr: "10.200.0.100".parse().unwrap_or(IpAddr::from([0; 4])),
            prefix_len: 24,
        };
        let m = build(RTM_NEWADDR, NLM_F_REQUEST, 7, &p);
        assert_eq!(m.len(), 16 + 8 + 8 + 8);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 7);
        assert_eq!(&m[28..32], &[10, 200, 0, 100]);
    }

    #[test]
    fn parses_acks_and_errors() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_ack(&ack), Ok(()));
        ack[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse_ack(&ack), Err(libc::EPERM));
        assert_eq!(parse_ack(&ack[..10]), Err(libc::EPROTO));
    }
}

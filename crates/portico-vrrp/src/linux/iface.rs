//! What the driver needs to know about the interface: index, MAC address and our primary
//! address on it (the advert source and the election tie-break).
//!
//! Index and MAC come from `/sys/class/net/IFACE/`. The primary IPv4 address is the source
//! the kernel picks for a datagram bound to the interface (a connected UDP socket, nothing is
//! sent); for IPv6 it is the interface's link-local address from `/proc/net/if_inet6`, as
//! RFC 5798 requires.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::DriverError;
use crate::packet::MCAST_V4;

/// A network interface.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Interface {
    /// Looks the interface up in sysfs.
    pub fn lookup(name: &str) -> Result<Self, DriverError> {
        let err = |what: &str, e: String| DriverError::Interface {
            name: name.to_owned(),
            reason: format!("{what}: {e}"),
        };
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(err("bad name", name.to_owned()));
        }
        let base = format!("/sys/class/net/{name}");
        let index = std::fs::read_to_string(format!("{base}/ifindex"))
            .map_err(|e| err("no such interface", e.to_string()))?
            .trim()
            .parse::<u32>()
            .map_err(|e| err("ifindex", e.to_string()))?;
        let mac_text = std::fs::read_to_string(format!("{base}/address"))
            .map_err(|e| err("address", e.to_string()))?;
        let mac = parse_mac(mac_text.trim()).ok_or_else(|| err("MAC", mac_text.clone()))?;
        Ok(Interface {
            name: name.to_owned(),
            index,
            mac,
        })
    }

    /// Our primary address of the family of `v6`, or an error naming the interface.
    pub fn primary(&self, v6: bool, peer: Option<IpAddr>) -> Result<IpAddr, DriverError> {
        let found = if v6 {
            self.link_local_v6()
        } else {
            self.primary_v4(peer)
        };
        found.ok_or_else(|| DriverError::Interface {
            name: self.name.clone(),
            reason: format!(
                "no {} address to send adverts from",
                if v6 { "IPv6 link-local" } else { "IPv4" }
            ),
        })
    }

    fn primary_v4(&self, peer: Option<IpAddr>) -> Option<IpAddr> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
        sock.bind_device(Some(self.name.as_bytes())).ok()?;
        let dst = match peer {
            Some(IpAddr::V4(p)) => p,
            _ => MCAST_V4,
        };
        sock.connect(&SocketAddr::new(IpAddr::V4(dst), 9).into())
            .ok()?;
        let local = sock.local_addr().ok()?.as_socket()?.ip();
        (local != IpAddr::V4(Ipv4Addr::UNSPECIFIED)).then_some(local)
    }

    fn link_local_v6(&self) -> Option<IpAddr> {
        let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
        text.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // addr ifindex prefixlen scope flags name; scope 0x20 = link
            if f.len() == 6 && f[5] == self.name && f[3] == "20" {
                u128::from_str_radix(f[0], 16)
                    .ok()
                    .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            } else {
                None
            }
        })
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_macs() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:02:03"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:02"), None);
    }

    #[test]
    fn loopback_is_found() {
        let lo = Interface::lookup("lo").expect("lo exists");
        assert_eq!(lo.mac, [0; 6]);
        assert!(Interface::lookup("no-such-if0").is_err());
        assert!(Interface::lookup("../x").is_err());
    }
}

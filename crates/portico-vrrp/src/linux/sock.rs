//! The VRRP socket: a raw IP socket for protocol 112, bound to the interface.
//!
//! Multicast (224.0.0.18 / ff02::12, joined on the interface, loopback off) or unicast to
//! the configured peers. Everything leaves with TTL / hop limit 255 and TOS CS6, as
//! keepalived sends it. The raw socket is driven by tokio through `UdpSocket::from_std`:
//! `sendto`/`recvfrom` are the same system calls for any datagram socket type.
//!
//! Received IPv4 packets carry their IP header: the TTL (must be 255), source and
//! destination are read from it. IPv6 raw sockets deliver the payload only: the source comes
//! from `recvfrom`, the destination is the group (or our link-local address for unicast), and
//! the hop limit is not checked (documented limitation).

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::DriverError;
use super::iface::Interface;
use crate::packet::{self, Advert, IPPROTO_VRRP, MCAST_V4, MCAST_V6};

/// One received VRRP message.
#[derive(Debug)]
pub struct Received<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 only.
    pub ttl: Option<u8>,
    pub payload: &'a [u8],
}

/// A bound, configured VRRP socket.
#[derive(Debug)]
pub struct VrrpSocket {
    sock: tokio::net::UdpSocket,
    ifindex: u32,
    primary: IpAddr,
    /// Empty = multicast.
    peers: Vec<IpAddr>,
}

impl VrrpSocket {
    /// Opens the socket; must run inside a tokio runtime.
    pub fn open(iface: &Interface, primary: IpAddr, peers: &[IpAddr]) -> Result<Self, DriverError> {
        let err = |source: io::Error| DriverError::Socket {
            iface: iface.name.clone(),
            source,
        };
        let v6 = primary.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )
        .map_err(err)?;
        sock.bind_device(Some(iface.name.as_bytes())).map_err(err)?;
        if v6 {
            sock.set_multicast_if_v6(iface.index).map_err(err)?;
            sock.set_multicast_hops_v6(255).map_err(err)?;
            sock.set_unicast_hops_v6(255).map_err(err)?;
            sock.set_multicast_loop_v6(false).map_err(err)?;
            sock.set_tclass_v6(0xc0).map_err(err)?;
            if peers.is_empty() {
                sock.join_multicast_v6(&MCAST_V6, iface.index)
                    .map_err(err)?;
            }
        } else {
            sock.set_multicast_if_v4(&match primary {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => MCAST_V4, // unreachable: v6 handled above
            })
            .map_err(err)?;
            sock.set_multicast_ttl_v4(255).map_err(err)?;
            sock.set_ttl_v4(255).map_err(err)?;
            sock.set_multicast_loop_v4(false).map_err(err)?;
            sock.set_tos_v4(0xc0).map_err(err)?;
            if peers.is_empty() {
                sock.join_multicast_v4_n(&MCAST_V4, &InterfaceIndexOrAddress::Index(iface.index))
                    .map_err(err)?;
            }
        }
        sock.set_nonblocking(true).map_err(err)?;
        let std_sock: std::net::UdpSocket = sock.into();
        let sock = tokio::net::UdpSocket::from_std(std_sock).map_err(err)?;
        Ok(VrrpSocket {
            sock,
            ifindex: iface.index,
            primary,
            peers: peers.to_vec(),
        })
    }

    /// With unicast peers, only adverts from a configured peer count (as keepalived does).
    pub fn accepts(&self, src: IpAddr) -> bool {
        self.peers.is_empty() || self.peers.contains(&src)
    }

    /// Where adverts go: the group, or each unicast peer.
    fn destinations(&self) -> Vec<IpAddr> {
        if !self.peers.is_empty() {
            return self.peers.clone();
        }
        vec![if self.primary.is_ipv6() {
            IpAddr::V6(MCAST_V6)
        } else {
            IpAddr::V4(MCAST_V4)
        }]
    }

    /// Encodes (per destination: the v3 checksum covers it) and sends one advert.
    pub async fn send(&self, advert: &Advert) -> io::Result<()> {
        for dst in self.destinations() {
            let bytes = packet::encode(advert, self.primary, dst)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let to = match dst {
                IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, self.ifindex)),
                a => SocketAddr::new(a, 0),
            };
            self.sock.send_to(&bytes, to).await?;
        }
        Ok(())
    }

    /// Waits for the next VRRP message; malformed IP headers are skipped.
    pub async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Received<'a>> {
        loop {
            let (n, from) = self.sock.recv_from(buf).await?;
            if self.primary.is_ipv6() {
                let dst = if self.peers.is_empty() {
                    IpAddr::V6(MCAST_V6)
                } else {
                    self.primary
                };
                return Ok(Received {
                    src: from.ip(),
                    dst,
                    ttl: None,
                    payload: &buf[..n],
                });
            }
            if let Some((src, dst, ttl, range)) = parse_ipv4(&buf[..n]) {
                return Ok(Received {
                    src,
                    dst,
                    ttl: Some(ttl),
                    payload: &buf[range],
                });
            }
        }
    }
}

/// Source, destination, TTL and the payload range of an IPv4 packet carrying VRRP.
fn parse_ipv4(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, std::ops::Range<usize>)> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != IPPROTO_VRRP {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    if ihl < 20 || total < ihl {
        return None;
    }
    let src = IpAddr::from([p[12], p[13], p[14], p[15]]);
    let dst = IpAddr::from([p[16], p[17], p[18], p[19]]);
    Some((src, dst, p[8], ihl..total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_ipv4_header() {
        let mut p = vec![
            0x45, 0xc0, 0, 32, 0, 0, 0, 0, 255, 112, 0, 0, 10, 200, 0, 11, 224, 0, 0, 18,
        ];
        p.extend_from_slice(&[0x31; 12]);
        let (src, dst, ttl, r) = parse_ipv4(&p).unwrap_or_else(|| panic!("parsed"));
        assert_eq!(src, IpAddr::from([10, 200, 0, 11]));
        assert_eq!(dst, IpAddr::from([224, 0, 0, 18]));
        assert_eq!((ttl, r), (255, 20..32));
        p[9] = 6;
        assert!(parse_ipv4(&p).is_none());
        assert!(parse_ipv4(&p[..10]).is_none());
    }
}

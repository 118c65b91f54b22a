//! The VRRP socket: a raw IP socket for protocol 112, bound to the interface.
//!
//! Multicast (224.0.0.18 / ff02::12, joined on the interface, loopback off) or unicast to
//! the configured peers. Everything leaves with TTL / hop limit 255 and TOS CS6, as
//! keepalived sends it. The raw socket is driven by tokio through `UdpSocket::from_std`:
//! `sendto`/`recvfrom` are the same system calls for any datagram socket type.
//!
//! Received IPv4 packets carry their IP header: the TTL (must be 255), source and
//! destination are read from it. IPv6 raw sockets deliver the payload only: the source comes
//! from `recvmsg`, the destination is the group (or our link-local address for unicast), and
//! the hop limit (must be 255, RFC 5798 §8.1) from the `IPV6_HOPLIMIT` control message the
//! socket asks for (`IPV6_RECVHOPLIMIT`), read by [`hop_limit`].

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use socket2::{
    Domain, InterfaceIndexOrAddress, MaybeUninitSlice, MsgHdrMut, Protocol, SockAddr, SockRef,
    Socket, Type,
};
use tokio::io::Interest;

use super::DriverError;
use super::iface::Interface;
use crate::packet::{self, Advert, IPPROTO_VRRP, MCAST_V4, MCAST_V6};

/// One received VRRP message.
#[derive(Debug)]
pub struct Received<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IPv4 TTL or the IPv6 hop limit; `None` when the kernel did not report it.
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
            sock.set_recv_hoplimit_v6(true).map_err(err)?;
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
            if self.primary.is_ipv6() {
                let (n, src, hops) = self.recv_v6(buf).await?;
                let dst = if self.peers.is_empty() {
                    IpAddr::V6(MCAST_V6)
                } else {
                    self.primary
                };
                return Ok(Received {
                    src,
                    dst,
                    ttl: hops,
                    payload: &buf[..n],
                });
            }
            let (n, _) = self.sock.recv_from(buf).await?;
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

impl VrrpSocket {
    /// One IPv6 datagram into `buf`: its length, source and hop limit (from the control
    /// message).
    async fn recv_v6(&self, buf: &mut [u8]) -> io::Result<(usize, IpAddr, Option<u8>)> {
        let mut control = [0u8; 64];
        self.sock
            .async_io(Interest::READABLE, || {
                // Room for the sender's `sockaddr_in6` (same family and length).
                let mut addr =
                    SockAddr::from(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)));
                let mut bufs = [MaybeUninitSlice::new(as_uninit(buf))];
                let mut msg = MsgHdrMut::new()
                    .with_addr(&mut addr)
                    .with_buffers(&mut bufs)
                    .with_control(as_uninit(&mut control));
                let n = SockRef::from(&self.sock).recvmsg(&mut msg, 0)?;
                let control_len = msg.control_len();
                let src = addr
                    .as_socket()
                    .map(|a| a.ip())
                    .ok_or_else(|| io::Error::other("no source address"))?;
                Ok((
                    n,
                    src,
                    hop_limit(&control[..control_len.min(control.len())]),
                ))
            })
            .await
    }
}

/// `buf` as the possibly-uninitialised bytes `recvmsg` writes into.
#[allow(unsafe_code)]
fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the slice starts initialised.
    // The only writer is the kernel through `recvmsg`, which writes initialised bytes, so
    // `buf` never holds an uninitialised byte when it is read as `[u8]` again.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// The hop limit in the ancillary data of an IPv6 `recvmsg` (an `IPV6_HOPLIMIT` control
/// message, an `int`), walked as the `CMSG_*` macros do: each header is `cmsg_len`
/// (`size_t`), `cmsg_level` and `cmsg_type` (`int`), its data and the next header aligned to
/// `size_t`.
pub(crate) fn hop_limit(control: &[u8]) -> Option<u8> {
    const WORD: usize = size_of::<usize>();
    let align = |n: usize| n.div_ceil(WORD) * WORD;
    let header = align(size_of::<libc::cmsghdr>());
    let mut at = 0;
    while at + header <= control.len() {
        let field = |off: usize, len: usize| control.get(at + off..at + off + len);
        let len = usize::from_ne_bytes(field(0, WORD)?.try_into().ok()?);
        let level = i32::from_ne_bytes(field(WORD, 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(field(WORD + 4, 4)?.try_into().ok()?);
        if len < header {
            return None;
        }
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT {
            let value = i32::from_ne_bytes(field(header, 4)?.try_into().ok()?);
            return u8::try_from(value).ok();
        }
        at += align(len);
    }
    None
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

    /// One control message as the kernel lays it out (`CMSG_SPACE` bytes).
    fn cmsg(level: i32, kind: i32, value: i32) -> Vec<u8> {
        const WORD: usize = size_of::<usize>();
        let header = size_of::<libc::cmsghdr>().div_ceil(WORD) * WORD;
        let mut m = Vec::new();
        m.extend_from_slice(&(header + 4).to_ne_bytes());
        m.extend_from_slice(&level.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(header, 0);
        m.extend_from_slice(&value.to_ne_bytes());
        m.resize((header + 4).div_ceil(WORD) * WORD, 0);
        m
    }

    #[test]
    fn reads_the_hop_limit_control_message() {
        let hops = cmsg(libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT, 255);
        assert_eq!(hop_limit(&hops), Some(255));
        // After another control message (the packet info), and a forged 64.
        let info = cmsg(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, 7);
        let both = [
            info.clone(),
            cmsg(libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT, 64),
        ]
        .concat();
        assert_eq!(hop_limit(&both), Some(64));
        // None, or cut short: not known.
        assert_eq!(hop_limit(&info), None);
        assert_eq!(hop_limit(&[]), None);
        assert_eq!(hop_limit(&hops[..hops.len() - 6]), None);
    }

    /// A real IPv6 raw socket on loopback (needs CAP_NET_RAW; skipped without it, except
    /// under `CI=true`): the hop
    /// limit a sender sets reaches the receiver through `IPV6_RECVHOPLIMIT`.
    #[test]
    fn a_raw_ipv6_socket_reports_the_hop_limit_of_each_packet() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let proto = Some(Protocol::from(i32::from(IPPROTO_VRRP)));
            let Ok(rx) = Socket::new(Domain::IPV6, Type::RAW, proto) else {
                // CI runs as root: there, no raw socket is a failure.
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "no raw IPv6 socket"
                );
                eprintln!("no CAP_NET_RAW: skipped");
                return;
            };
            let tx = Socket::new(Domain::IPV6, Type::RAW, proto).unwrap_or_else(|e| panic!("{e}"));
            rx.set_recv_hoplimit_v6(true)
                .unwrap_or_else(|e| panic!("{e}"));
            rx.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
            let std_sock: std::net::UdpSocket = rx.into();
            let sock = VrrpSocket {
                sock: tokio::net::UdpSocket::from_std(std_sock).unwrap_or_else(|e| panic!("{e}")),
                ifindex: 0,
                primary: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                peers: vec![IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)],
            };
            let to = SockAddr::from(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)));
            let mut buf = [0u8; 64];
            for hops in [255u32, 64] {
                tx.set_unicast_hops_v6(hops)
                    .unwrap_or_else(|e| panic!("{e}"));
                tx.send_to(b"vrrp-ish", &to)
                    .unwrap_or_else(|e| panic!("{e}"));
                let r =
                    tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv(&mut buf))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(r.payload, b"vrrp-ish");
                assert_eq!(r.src, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
                assert_eq!(r.ttl, u8::try_from(hops).ok());
            }
        });
    }
}

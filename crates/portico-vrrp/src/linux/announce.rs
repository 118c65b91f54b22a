//! Telling the segment where a virtual address now lives: gratuitous ARP for IPv4 and
//! unsolicited neighbour advertisements for IPv6.
//!
//! Gratuitous ARP is a 42-byte Ethernet frame (broadcast, ARP request, sender = target =
//! the virtual address, from the interface's real MAC), as keepalived sends it, written to
//! an `AF_PACKET` socket. The unsolicited NA (RFC 4861 7.2.6: override flag, target
//! link-layer address option) goes to ff02::1 from the virtual address with hop limit 255
//! through an ICMPv6 raw socket; the kernel fills in the ICMPv6 checksum.

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::iface::Interface;

const ETH_P_ARP: u16 = 0x0806;

/// The gratuitous ARP request frame announcing `vip` at `mac`.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // Ethernet broadcast
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// The unsolicited neighbour advertisement for `vip` at `mac` (ICMPv6 message, checksum 0).
pub fn na_message(mac: [u8; 6], vip: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // neighbour advertisement
    m[4] = 0x20; // override
    m[8..24].copy_from_slice(&vip.octets());
    m[24] = 2; // option: target link-layer address
    m[25] = 1; // length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// `sockaddr_ll` for sending to the Ethernet broadcast address on interface `index`.
#[allow(unsafe_code)]
fn broadcast_link_addr(index: u32) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's `sockaddr_*` types, which is the
    // contract of `view_as` (it also asserts the size fits the zeroed storage). We only
    // write plain integer fields through the reference.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = index as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` (the rest is zero) and `len` is
    // exactly its size, so the kernel reads only initialised bytes of the right type.
    unsafe { SockAddr::new(storage, len) }
}

/// Sends one announcement for each address in `vips`. Errors are returned per address so the
/// caller can log them; an announcement is best effort.
pub fn announce(iface: &Interface, vips: &[IpAddr]) -> Vec<std::io::Error> {
    let mut errors = Vec::new();
    let v4: Vec<Ipv4Addr> = vips
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            _ => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = vips
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            _ => None,
        })
        .collect();
    if !v4.is_empty() {
        match Socket::new(Domain::PACKET, Type::RAW, None) {
            Ok(sock) => {
                let to = broadcast_link_addr(iface.index);
                for vip in v4 {
                    if let Err(e) = sock.send_to(&garp_frame(iface.mac, vip), &to) {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    for vip in v6 {
        if let Err(e) = send_na(iface, vip) {
            errors.push(e);
        }
    }
    errors
}

fn send_na(iface: &Interface, vip: Ipv6Addr) -> std::io::Result<()> {
    let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    sock.bind_device(Some(iface.name.as_bytes()))?;
    sock.set_multicast_if_v6(iface.index)?;
    sock.set_multicast_hops_v6(255)?;
    sock.bind(&SocketAddr::V6(SocketAddrV6::new(vip, 0, 0, 0)).into())?;
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let to = SocketAddr::V6(SocketAddrV6::new(all_nodes, 0, 0, iface.index));
    sock.send_to(&na_message(iface.mac, vip), &to.into())
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_frame_layout() {
        let mac = [2, 0, 0, 0, 0, 0x11];
        let f = garp_frame(mac, Ipv4Addr::new(10, 200, 0, 100));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1], "ARP request");
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &f[38..42], "sender = target = VIP");
        assert_eq!(&f[32..38], &[0; 6]);
    }

    #[test]
    fn na_layout() {
        let m = na_message(
            [2, 0, 0, 0, 0, 1],
            "fd00::100".parse().unwrap_or(Ipv6Addr::LOCALHOST),
        );
        assert_eq!((m[0], m[4], m[24], m[25]), (136, 0x20, 2, 1));
    }
}

//! VRRP advertisement codec: RFC 5798 (v3, IPv4 and IPv6) and RFC 3768 (v2, IPv4, with
//! keepalived's simple-password authentication).
//!
//! Strict on decode: the version, type, length, address count, address family and checksum
//! must all agree, or the packet is rejected with a [`DecodeError`] saying why. The v3
//! checksum covers the IPv4/IPv6 pseudo-header (so decode needs the source and destination
//! addresses of the IP packet); the v2 checksum covers the VRRP message only.
//!
//! Wire layout (bytes):
//! ```text
//! v3: ver|type  vrid  prio  count  rsvd(4b)|max_adver_int(12b, cs)  checksum  addrs...
//! v2: ver|type  vrid  prio  count  auth_type  adver_int(s)  checksum  addrs...  auth_data[8]
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use portico_config::VrrpVersion;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// IPv4 multicast group of VRRP.
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP.
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Length of the v2 authentication data.
pub const AUTH_LEN: usize = 8;
const HEADER_LEN: usize = 8;

/// VRRPv2 authentication (RFC 3768 keeps only "none" and, for compatibility, simple text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Auth type 0.
    None,
    /// Auth type 1: up to 8 bytes of clear text, zero-padded (keepalived `auth_type PASS`).
    Simple([u8; AUTH_LEN]),
}

impl Auth {
    /// The simple-password form of `pass` as keepalived pads it (truncated to 8 bytes).
    pub fn simple(pass: &str) -> Self {
        let mut data = [0u8; AUTH_LEN];
        for (d, s) in data.iter_mut().zip(pass.as_bytes()) {
            *d = *s;
        }
        Auth::Simple(data)
    }
}

/// One decoded (or to-be-encoded) VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: VrrpVersion,
    pub vrid: u8,
    /// 0 = the master is resigning; 255 = address owner.
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds on the wire; this is
    /// that value times 100).
    pub interval_cs: u16,
    /// Always [`Auth::None`] for v3.
    pub auth: Auth,
    /// The virtual addresses, all of the packet's address family. Never empty.
    pub addresses: Vec<IpAddr>,
}

impl Advert {
    /// The advertisement interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_cs) * 10)
    }
}

/// Why a packet was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported VRRP version {0}")]
    Version(u8),
    #[error("VRRPv2 is IPv4 only")]
    V2OverIpv6,
    #[error("unknown packet type {0} (only 1 = advertisement)")]
    Type(u8),
    #[error("address count is 0")]
    NoAddresses,
    #[error("length {got} does not match {count} addresses (expected {want})")]
    Length { got: usize, want: usize, count: u8 },
    #[error("source and destination are of different address families")]
    MixedFamilies,
    #[error("bad checksum")]
    Checksum,
    #[error("advertisement interval is 0")]
    ZeroInterval,
    #[error("unknown v2 authentication type {0}")]
    AuthType(u8),
}

/// Why an advert could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("an advertisement needs 1 to 255 addresses, got {0}")]
    AddressCount(usize),
    #[error("address {0} is not of the packet's address family")]
    Family(IpAddr),
    #[error("VRRPv2 is IPv4 only")]
    V2OverIpv6,
    #[error("advertisement interval {0} cs does not fit the version's field")]
    Interval(u16),
}

fn addr_len(v6: bool) -> usize {
    if v6 { 16 } else { 4 }
}

/// Encodes `advert` as sent from `src` to `dst` (needed for the v3 pseudo-header checksum).
pub fn encode(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
    let v6 = src.is_ipv6();
    let n = advert.addresses.len();
    if n == 0 || n > 255 {
        return Err(EncodeError::AddressCount(n));
    }
    if let Some(bad) = advert.addresses.iter().find(|a| a.is_ipv6() != v6) {
        return Err(EncodeError::Family(*bad));
    }
    if dst.is_ipv6() != v6 {
        return Err(EncodeError::Family(dst));
    }
    let mut buf = Vec::with_capacity(HEADER_LEN + n * addr_len(v6) + AUTH_LEN);
    let count = n as u8; // n <= 255 checked above
    match advert.version {
        VrrpVersion::V3 => {
            if advert.interval_cs == 0 || advert.interval_cs > 0x0fff {
                return Err(EncodeError::Interval(advert.interval_cs));
            }
            buf.extend_from_slice(&[0x31, advert.vrid, advert.priority, count]);
            buf.extend_from_slice(&advert.interval_cs.to_be_bytes());
        }
        VrrpVersion::V2 => {
            if v6 {
                return Err(EncodeError::V2OverIpv6);
            }
            let secs = advert.interval_cs / 100;
            if secs == 0 || secs > 255 || !advert.interval_cs.is_multiple_of(100) {
                return Err(EncodeError::Interval(advert.interval_cs));
            }
            let auth_type = match advert.auth {
                Auth::None => 0,
                Auth::Simple(_) => 1,
            };
            buf.extend_from_slice(&[0x21, advert.vrid, advert.priority, count, auth_type]);
            buf.push(secs as u8); // secs <= 255 checked above
        }
    }
    buf.extend_from_slice(&[0, 0]);
    for a in &advert.addresses {
        match a {
            IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
        }
    }
    if advert.version == VrrpVersion::V2 {
        match advert.auth {
            Auth::None => buf.extend_from_slice(&[0; AUTH_LEN]),
            Auth::Simple(d) => buf.extend_from_slice(&d),
        }
    }
    let sum = match advert.version {
        VrrpVersion::V3 => checksum(&pseudo_header(src, dst, buf.len()), &buf),
        VrrpVersion::V2 => checksum(&[], &buf),
    };
    buf[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(buf)
}

/// Decodes and verifies one VRRP message (the IP payload) received from `src` for `dst`.
pub fn decode(buf: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(buf.len()));
    }
    let v6 = src.is_ipv6();
    if dst.is_ipv6() != v6 {
        return Err(DecodeError::MixedFamilies);
    }
    let version = match buf[0] >> 4 {
        3 => VrrpVersion::V3,
        2 if !v6 => VrrpVersion::V2,
        2 => return Err(DecodeError::V2OverIpv6),
        v => return Err(DecodeError::Version(v)),
    };
    if buf[0] & 0x0f != 1 {
        return Err(DecodeError::Type(buf[0] & 0x0f));
    }
    let count = buf[3];
    if count == 0 {
        return Err(DecodeError::NoAddresses);
    }
    let alen = addr_len(v6);
    let want = HEADER_LEN
        + usize::from(count) * alen
        + if version == VrrpVersion::V2 {
            AUTH_LEN
        } else {
            0
        };
    if buf.len() != want {
        return Err(DecodeError::Length {
            got: buf.len(),
            want,
            count,
        });
    }
    let sum = match version {
        VrrpVersion::V3 => checksum(&pseudo_header(src, dst, buf.len()), buf),
        VrrpVersion::V2 => checksum(&[], buf),
    };
    if sum != 0 {
        return Err(DecodeError::Checksum);
    }
    let (interval_cs, auth) = match version {
        VrrpVersion::V3 => (u16::from_be_bytes([buf[4], buf[5]]) & 0x0fff, Auth::None),
        VrrpVersion::V2 => {
            let mut data = [0u8; AUTH_LEN];
            data.copy_from_slice(&buf[want - AUTH_LEN..]);
            let auth = match buf[4] {
                0 => Auth::None,
                1 => Auth::Simple(data),
                t => return Err(DecodeError::AuthType(t)),
            };
            (u16::from(buf[5]) * 100, auth)
        }
    };
    if interval_cs == 0 {
        return Err(DecodeError::ZeroInterval);
    }
    let addresses = buf[HEADER_LEN..HEADER_LEN + usize::from(count) * alen]
        .chunks_exact(alen)
        .map(|c| {
            if v6 {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            }
        })
        .collect();
    Ok(Advert {
        version,
        vrid: buf[1],
        priority: buf[2],
        interval_cs,
        auth,
        addresses,
    })
}

/// The IPv4 or IPv6 pseudo-header for protocol 112 and a payload of `len` bytes.
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, IPPROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes()); // len <= 8 + 255*16
        }
        (s, d) => {
            for a in [s, d] {
                match a {
                    IpAddr::V6(a) => p.extend_from_slice(&a.octets()),
                    IpAddr::V4(a) => p.extend_from_slice(&a.to_ipv6_mapped().octets()),
                }
            }
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
        }
    }
    p
}

/// The Internet checksum (RFC 1071) over `pre` then `data`. Over a message that carries a
/// valid checksum it returns 0.
pub fn checksum(pre: &[u8], data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    // `pre` always has an even length, so the two parts can be summed one after the other.
    for part in [pre, data] {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;

//! nginx `ip_hash`: the client's IPv4 /24 (first three octets) or whole IPv6 address picks
//! a server, in proportion to the weights.
//!
//! As in nginx: `hash = 89`, then `hash = (hash * 113 + byte) % 6271` over the address
//! bytes; `hash % total_weight` walks the members' weights (`down` members included, so
//! marking a server down does not move the other clients). When the server is unusable, the
//! hash is stirred again over the same bytes, up to 20 tries; then the pool falls back to
//! round robin. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as IPv4.

use std::net::IpAddr;

use super::{Ctx, Tier, ip_octets};

/// Tries before falling back to round robin (nginx's constant).
const MAX_TRIES: usize = 20;

/// The bytes that identify a client for `ip_hash`: the /24 of IPv4, all of IPv6.
pub(crate) fn client_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    match ip_octets(ip) {
        (buf, 4) => (buf, 3),
        other => other,
    }
}

/// The member `ip` hashes to in `tier`, if it (or a rehash within 20 tries) is usable.
pub(crate) fn choose(tier: &Tier, ctx: &Ctx<'_>, ip: IpAddr) -> Option<usize> {
    if tier.total_weight == 0 {
        return None;
    }
    let (buf, len) = client_bytes(ip);
    let mut hash: u64 = 89;
    for _ in 0..MAX_TRIES {
        for &b in &buf[..len] {
            hash = (hash * 113 + u64::from(b)) % 6271;
        }
        let mut w = hash % tier.total_weight;
        let mut pos = 0;
        while w >= tier.weights[pos] {
            w -= tier.weights[pos];
            pos += 1;
        }
        let i = tier.members[pos];
        if ctx.usable(i) {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testutil::{TestRng, weighted};
    use crate::{PickKey, Pool, Registry};
    use portico_config::Balance;
    use std::net::Ipv4Addr;

    fn pick(pool: &Pool, ip: IpAddr) -> usize {
        let key = PickKey {
            client_ip: ip,
            hash: None,
        };
        pool.pick(&key, &[]).expect("pick").index
    }

    #[test]
    fn same_client_same_server_and_ipv4_groups_by_24() {
        let pool = Pool::new(&weighted(Balance::IpHash, &[1, 1, 1, 1]), &Registry::new());
        let mut rng = TestRng(3);
        let mut seen = [0usize; 4];
        for _ in 0..500 {
            let [a, b, c, d] = rng.next().to_le_bytes()[..4] else {
                unreachable!()
            };
            let ip = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            let s = pick(&pool, ip);
            seen[s] += 1;
            assert_eq!(pick(&pool, ip), s, "stable for {ip}");
            let neighbour = IpAddr::V4(Ipv4Addr::new(a, b, c, d.wrapping_add(77)));
            assert_eq!(pick(&pool, neighbour), s, "same /24 as {ip}");
            let mapped = IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_mapped());
            assert_eq!(pick(&pool, mapped), s, "v4-mapped {ip}");
        }
        assert!(
            seen.iter().all(|&n| n > 60),
            "spread over servers: {seen:?}"
        );
    }

    #[test]
    fn ipv6_uses_the_whole_address() {
        let pool = Pool::new(&weighted(Balance::IpHash, &[1, 1, 1]), &Registry::new());
        let distinct: std::collections::HashSet<usize> = (0..64u16)
            .map(|i| {
                pick(
                    &pool,
                    IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)),
                )
            })
            .collect();
        assert!(distinct.len() > 1, "last bytes matter for IPv6");
    }

    #[test]
    fn unusable_server_moves_only_its_clients() {
        let up = weighted(Balance::IpHash, &[1, 1, 1]);
        let reg = Registry::new();
        let pool = Pool::new(&up, &reg);
        let ips: Vec<IpAddr> = (0..200u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, i, 7, 1)))
            .collect();
        let before: Vec<usize> = ips.iter().map(|&ip| pick(&pool, ip)).collect();
        pool.members()[1].state.set_healthy(false);
        for (ip, &b) in ips.iter().zip(&before) {
            let now = pick(&pool, *ip);
            assert_ne!(now, 1);
            if b != 1 {
                assert_eq!(now, b, "{ip} kept its server");
            }
        }
    }

    #[test]
    fn matches_nginx_hash_walk() {
        // 89 -> (89*113+192)%6271 -> ... computed by hand for 192.168.1.x with 3 servers.
        let mut h: u64 = 89;
        for b in [192u64, 168, 1] {
            h = (h * 113 + b) % 6271;
        }
        let pool = Pool::new(&weighted(Balance::IpHash, &[1, 1, 1]), &Registry::new());
        assert_eq!(
            pick(&pool, "192.168.1.50".parse().expect("ip")),
            (h % 3) as usize
        );
    }
}

//! Consistent hashing for `balance = "hash"`: weighted rendezvous (highest random weight).
//!
//! Each member gets a score `weight / -ln(u)`, where `u` in (0, 1) is a hash of the key and
//! the member's address; the highest usable score wins. Removing one of n members moves only
//! the keys it held (about 1/n); adding one moves about 1/(n+1). An unusable member simply
//! yields to the key's next-best member. The hash (FNV-1a + splitmix64) depends only on the
//! key and the server address, so every node with the same servers agrees.
//!
//! Slow start is ignored here: ramping weights would move keys back and forth.

use super::{Ctx, Tier, splitmix64};

/// FNV-1a, 64 bit: stable across processes and platforms.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn score(key: u64, server: u64, weight: u32) -> f64 {
    let x = splitmix64(splitmix64(key) ^ server);
    // 53 random bits, shifted into the open interval (0, 1).
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight.max(1)) / -u.ln()
}

/// The usable member of `tier` with the highest score for `key`; `server_hash[i]` is
/// [`fnv1a`] of member `i`'s address.
pub(crate) fn choose(tier: &Tier, ctx: &Ctx<'_>, key: u64, server_hash: &[u64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for &i in &tier.members {
        if !ctx.usable(i) {
            continue;
        }
        let s = score(key, server_hash[i], ctx.members[i].spec.weight);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use crate::algo::testutil::{TestRng, spec, upstream};
    use crate::{PickKey, Pool, Registry};
    use portico_config::{Balance, ServerSpec};

    fn servers(n: usize) -> Vec<ServerSpec> {
        (1..=n)
            .map(|i| spec(&format!("10.1.0.{i}:8080"), 1))
            .collect()
    }

    fn owners(pool: &Pool, keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter()
            .map(|k| {
                let key = PickKey {
                    client_ip: "127.0.0.1".parse().expect("ip"),
                    hash: Some(k),
                };
                let i = pool.pick(&key, &[]).expect("pick").index;
                pool.members()[i].id.addr.to_string()
            })
            .collect()
    }

    fn keys(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = TestRng(seed);
        (0..n)
            .map(|_| format!("/path/{}", rng.next()).into_bytes())
            .collect()
    }

    fn moved(a: &[String], b: &[String]) -> f64 {
        a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
    }

    #[test]
    fn removing_one_of_five_moves_about_a_fifth() {
        let ks = keys(10_000, 11);
        let five = Pool::new(&upstream("h", Balance::Hash, servers(5)), &Registry::new());
        let mut four_servers = servers(5);
        four_servers.remove(2);
        let four = Pool::new(
            &upstream("h", Balance::Hash, four_servers),
            &Registry::new(),
        );
        let (a, b) = (owners(&five, &ks), owners(&four, &ks));
        let f = moved(&a, &b);
        assert!((0.15..=0.25).contains(&f), "moved {f}");
        // Only keys of the removed server moved.
        for (x, y) in a.iter().zip(&b) {
            assert!(x == y || x == "10.1.0.3:8080");
        }
    }

    #[test]
    fn adding_a_sixth_moves_about_a_sixth() {
        let ks = keys(10_000, 12);
        let five = Pool::new(&upstream("h", Balance::Hash, servers(5)), &Registry::new());
        let six = Pool::new(&upstream("h", Balance::Hash, servers(6)), &Registry::new());
        let (a, b) = (owners(&five, &ks), owners(&six, &ks));
        let f = moved(&a, &b);
        assert!((0.12..=0.22).contains(&f), "moved {f}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x == y || y == "10.1.0.6:8080",
                "keys only move to the new server"
            );
        }
    }

    #[test]
    fn weights_set_key_shares() {
        let ks = keys(20_000, 13);
        let mut s = servers(2);
        s[0].weight = 3;
        let pool = Pool::new(&upstream("h", Balance::Hash, s), &Registry::new());
        let a = owners(&pool, &ks);
        let share = a.iter().filter(|x| *x == "10.1.0.1:8080").count() as f64 / a.len() as f64;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }

    #[test]
    fn unusable_member_yields_to_next_choice_and_comes_back() {
        let ks = keys(2_000, 14);
        let pool = Pool::new(&upstream("h", Balance::Hash, servers(4)), &Registry::new());
        let before = owners(&pool, &ks);
        pool.members()[0].state.set_healthy(false);
        let during = owners(&pool, &ks);
        for (x, y) in before.iter().zip(&during) {
            assert_ne!(y, "10.1.0.1:8080");
            assert!(x == y || x == "10.1.0.1:8080");
        }
        pool.members()[0].state.set_healthy(true);
        assert_eq!(owners(&pool, &ks), before);
    }

    #[test]
    fn missing_key_uses_client_ip() {
        let pool = Pool::new(&upstream("h", Balance::Hash, servers(5)), &Registry::new());
        let pick = |ip: &str| {
            let key = PickKey {
                client_ip: ip.parse().expect("ip"),
                hash: None,
            };
            pool.pick(&key, &[]).expect("pick").index
        };
        let ips: Vec<String> = (0..50).map(|i| format!("192.0.2.{i}")).collect();
        let first: Vec<usize> = ips.iter().map(|ip| pick(ip)).collect();
        let again: Vec<usize> = ips.iter().map(|ip| pick(ip)).collect();
        assert_eq!(first, again);
        assert!(first.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }
}

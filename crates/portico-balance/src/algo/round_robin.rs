//! Smooth weighted round robin (nginx's algorithm), lock-free.
//!
//! nginx keeps a `current_weight` per server and, on every pick, adds each weight to its
//! current weight, picks the largest and subtracts the total from it. The resulting sequence
//! is periodic with period `sum(weights)` (after dividing by their gcd), so it is computed
//! once when the pool is built ([`smooth_sequence`]) and walked with an atomic ticket.
//! Periods longer than [`MAX_PERIOD`] are scaled down (each weight keeps at least 1), which
//! keeps ratios to within 1/1024 of the sum.
//!
//! When the slot's server is unusable (or rejected by the slow-start ramp), the pick draws
//! further slots at random, so the remaining servers share the traffic in proportion to
//! their weights (see [`super::draw`]).

use super::{Ctx, MAX_PERIOD, Tier, draw};

/// One period of nginx's smooth weighted round robin over `weights` (0 = excluded), as
/// indexes into `weights`. Empty when every weight is 0.
pub(crate) fn smooth_sequence(weights: &[u64]) -> Vec<usize> {
    let g = weights.iter().copied().fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let mut w: Vec<u64> = weights.iter().map(|x| x / g).collect();
    let sum: u64 = w.iter().sum();
    if sum > MAX_PERIOD {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (u128::from(*x) * u128::from(MAX_PERIOD) / u128::from(sum)).max(1) as u64;
        }
        let g = w.iter().copied().fold(0, gcd).max(1);
        w.iter_mut().for_each(|x| *x /= g);
    }
    let total: u64 = w.iter().sum();
    let total_i = i128::from(total);
    let mut current = vec![0i128; w.len()];
    let mut seq = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for (i, &wi) in w.iter().enumerate() {
            if wi == 0 {
                continue;
            }
            current[i] += i128::from(wi);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total_i;
            seq.push(b);
        }
    }
    seq
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The next member of `tier` in smooth-WRR order that is usable.
pub(crate) fn choose(tier: &Tier, ctx: &Ctx<'_>) -> Option<usize> {
    if tier.seq.is_empty() {
        return None;
    }
    draw(tier, ctx, ctx.counters.next_ticket())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testutil::{TestRng, weighted};
    use crate::{PickKey, Pool, Registry};
    use portico_config::Balance;

    fn names(seq: &[usize]) -> String {
        seq.iter().map(|&i| (b'a' + i as u8) as char).collect()
    }

    #[test]
    fn sequence_matches_nginx_for_5_1_1() {
        assert_eq!(names(&smooth_sequence(&[5, 1, 1])), "aabacaa");
    }

    #[test]
    fn sequence_reduces_by_gcd_and_skips_zero_weights() {
        assert_eq!(names(&smooth_sequence(&[10, 0, 2, 2])), "aacadaa");
        assert_eq!(smooth_sequence(&[2, 2]).len(), 2);
        assert!(smooth_sequence(&[0, 0]).is_empty());
        assert!(smooth_sequence(&[]).is_empty());
    }

    #[test]
    fn long_periods_are_capped_and_keep_proportions() {
        let seq = smooth_sequence(&[1000, 999, 1]);
        assert!(seq.len() as u64 <= MAX_PERIOD + 3, "len {}", seq.len());
        let count = |k| seq.iter().filter(|&&i| i == k).count() as f64;
        let ratio = count(0) / count(1);
        assert!((ratio - 1000.0 / 999.0).abs() < 0.01, "ratio {ratio}");
        assert!(count(2) >= 1.0);
    }

    #[test]
    fn random_weights_give_exact_shares_per_period() {
        let mut rng = TestRng(7);
        for _ in 0..50 {
            let n = 1 + (rng.next() % 6) as usize;
            let weights: Vec<u64> = (0..n).map(|_| 1 + rng.next() % 20).collect();
            let seq = smooth_sequence(&weights);
            let g = weights.iter().copied().fold(0, gcd);
            assert_eq!(seq.len() as u64, weights.iter().sum::<u64>() / g);
            for (k, w) in weights.iter().enumerate() {
                let c = seq.iter().filter(|&&i| i == k).count() as u64;
                assert_eq!(c, w / g, "weights {weights:?}");
            }
            // Smoothness: no server appears twice in a row unless it holds more than half.
            for pair in seq.windows(2) {
                if pair[0] == pair[1] {
                    assert!(2 * weights[pair[0]] > weights.iter().sum::<u64>() - weights[pair[0]]);
                }
            }
        }
    }

    #[test]
    fn pool_picks_follow_the_sequence_exactly() {
        let pool = Pool::new(&weighted(Balance::RoundRobin, &[5, 1, 1]), &Registry::new());
        let key = PickKey {
            client_ip: "127.0.0.1".parse().expect("ip"),
            hash: None,
        };
        let picks: Vec<usize> = (0..70)
            .map(|_| pool.pick(&key, &[]).expect("pick").index)
            .collect();
        assert_eq!(names(&picks), "aabacaa".repeat(10));
    }
}

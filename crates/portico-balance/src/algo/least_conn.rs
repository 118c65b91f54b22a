//! Least connections: the usable member with the lowest `active / weight` wins.
//!
//! Weights are the configured weight times the slow-start share. Ties (notably when every
//! server is idle) are broken in smooth-WRR order: the scan starts at the member the
//! round-robin draw would pick, so idle pools behave like `round_robin`.

use super::{Ctx, Tier, draw};

/// The least-loaded usable member of `tier`.
pub(crate) fn choose(tier: &Tier, ctx: &Ctx<'_>) -> Option<usize> {
    let first = draw(tier, ctx, ctx.counters.next_ticket())?;
    let n = tier.members.len();
    let start = tier.members.iter().position(|&m| m == first).unwrap_or(0);
    let mut best = first;
    for k in 1..n {
        let i = tier.members[(start + k) % n];
        if ctx.usable(i) && ctx.less_loaded(i, best) {
            best = i;
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use crate::algo::testutil::{key, weighted};
    use crate::{Picked, Pool, Registry};
    use portico_config::Balance;

    #[test]
    fn idle_pool_follows_weights_like_round_robin() {
        let pool = Pool::new(&weighted(Balance::LeastConn, &[3, 1]), &Registry::new());
        let mut counts = [0usize; 2];
        for _ in 0..400 {
            counts[pool.pick(&key(), &[]).expect("pick").index] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn held_connections_steer_picks_to_the_least_loaded() {
        let pool = Pool::new(&weighted(Balance::LeastConn, &[1, 1, 1]), &Registry::new());
        let mut held: Vec<Picked> = Vec::new();
        for _ in 0..30 {
            held.push(pool.pick(&key(), &[]).expect("pick"));
        }
        let active: Vec<u32> = pool.members().iter().map(|m| m.state.active()).collect();
        assert_eq!(
            active,
            [10, 10, 10],
            "kept balanced while all connections are held"
        );
        // Free five connections on server 1: the next five picks all go there.
        let mut kept = Vec::new();
        let mut freed = 0;
        for p in held.drain(..) {
            if p.index == 1 && freed < 5 {
                freed += 1;
            } else {
                kept.push(p);
            }
        }
        for _ in 0..5 {
            kept.push(pool.pick(&key(), &[]).expect("pick"));
            assert_eq!(kept.last().map(|p| p.index), Some(1));
        }
    }

    #[test]
    fn weights_scale_the_allowed_load() {
        let pool = Pool::new(&weighted(Balance::LeastConn, &[3, 1]), &Registry::new());
        let held: Vec<Picked> = (0..40)
            .map(|_| pool.pick(&key(), &[]).expect("pick"))
            .collect();
        let active: Vec<u32> = pool.members().iter().map(|m| m.state.active()).collect();
        assert_eq!(active, [30, 10]);
        drop(held);
    }
}

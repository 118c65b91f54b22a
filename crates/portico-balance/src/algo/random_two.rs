//! Power of two random choices: draw two members (weighted by weight x slow-start share),
//! keep the one with the lower `active / weight`; on a tie the first draw wins, so an idle
//! pool is spread in proportion to the weights.

use super::{Ctx, Tier, draw};

/// Redraws allowed to find a second member different from the first.
const SECOND_DRAWS: usize = 4;

/// The less loaded of two weighted random usable members of `tier`.
pub(crate) fn choose(tier: &Tier, ctx: &Ctx<'_>) -> Option<usize> {
    let a = draw(tier, ctx, ctx.counters.next_random())?;
    for _ in 0..SECOND_DRAWS {
        match draw(tier, ctx, ctx.counters.next_random()) {
            Some(b) if b != a => return Some(if ctx.less_loaded(b, a) { b } else { a }),
            Some(_) => continue,
            None => break,
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use crate::algo::testutil::{key, weighted};
    use crate::{Picked, Pool, Registry};
    use portico_config::Balance;

    #[test]
    fn idle_picks_follow_weights_within_tolerance() {
        let pool = Pool::new(&weighted(Balance::RandomTwo, &[5, 3, 2]), &Registry::new());
        let n = 20_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[pool.pick(&key(), &[]).expect("pick").index] += 1;
        }
        for (k, w) in [5.0, 3.0, 2.0].iter().enumerate() {
            let share = counts[k] as f64 / n as f64;
            assert!(
                (share - w / 10.0).abs() < 0.03,
                "server {k}: {share} ({counts:?})"
            );
        }
    }

    #[test]
    fn held_connections_balance_load() {
        let pool = Pool::new(
            &weighted(Balance::RandomTwo, &[1, 1, 1, 1]),
            &Registry::new(),
        );
        let held: Vec<Picked> = (0..400)
            .map(|_| pool.pick(&key(), &[]).expect("pick"))
            .collect();
        let active: Vec<u32> = pool.members().iter().map(|m| m.state.active()).collect();
        let (min, max) = (active.iter().min(), active.iter().max());
        // Pure random would spread ~±20; two choices keeps it much tighter.
        assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 12), "{active:?}");
        drop(held);
        assert!(pool.members().iter().all(|m| m.state.active() == 0));
    }
}

//! The `rise` / `fall` counter of one checked server: probe outcomes in, verdict changes out.
//!
//! Sans-IO: the probing task feeds it one outcome per probe and applies the transitions it
//! returns to [`crate::ServerState::set_healthy`]. Rules (HAProxy's and nginx plus's):
//!
//! - A healthy server turns unhealthy after `fall` consecutive failed probes.
//! - An unhealthy server turns healthy after `rise` consecutive successful probes.
//! - Any opposite outcome resets the streak, so flapping never reaches either threshold.
//!
//! The tracker starts from the server's current verdict (healthy for a server never checked
//! before, whatever the registry says after a reload), so a restarted checker neither
//! revives a dead server at once nor takes a live one out.

/// Consecutive-outcome counter for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tracker {
    healthy: bool,
    /// Consecutive outcomes that disagree with `healthy`.
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Tracker {
    /// A tracker starting at `healthy`; `rise` and `fall` below 1 count as 1.
    pub(crate) fn new(healthy: bool, rise: u32, fall: u32) -> Tracker {
        Tracker {
            healthy,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// The current verdict.
    #[cfg(test)]
    pub(crate) fn healthy(&self) -> bool {
        self.healthy
    }

    /// Record one probe outcome; `Some(new verdict)` when it changes the verdict.
    pub(crate) fn record(&mut self, success: bool) -> Option<bool> {
        if success == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.healthy = success;
        self.streak = 0;
        Some(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut Tracker, outcomes: &[bool]) -> Vec<Option<bool>> {
        outcomes.iter().map(|&ok| t.record(ok)).collect()
    }

    #[test]
    fn fall_consecutive_failures_take_a_healthy_server_down() {
        let mut t = Tracker::new(true, 2, 3);
        assert_eq!(feed(&mut t, &[false, false]), [None, None]);
        assert!(t.healthy());
        assert_eq!(t.record(false), Some(false));
        assert!(!t.healthy());
        assert_eq!(t.record(false), None, "already down: no new transition");
    }

    #[test]
    fn rise_consecutive_successes_bring_it_back() {
        let mut t = Tracker::new(false, 2, 3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert!(t.healthy());
        assert_eq!(t.record(true), None);
    }

    #[test]
    fn an_opposite_outcome_resets_the_streak() {
        let mut t = Tracker::new(true, 2, 3);
        let flapping = [false, false, true, false, false, true, false, false, true];
        assert!(feed(&mut t, &flapping).iter().all(Option::is_none));
        assert!(t.healthy(), "never three failures in a row");
        let mut t = Tracker::new(false, 3, 1);
        assert!(
            feed(&mut t, &[true, true, false, true, true, false])
                .iter()
                .all(Option::is_none)
        );
        assert!(!t.healthy());
    }

    #[test]
    fn thresholds_of_one_switch_on_every_change_and_zero_counts_as_one() {
        let mut t = Tracker::new(true, 0, 0);
        assert_eq!(
            feed(&mut t, &[false, false, true, true, false]),
            [Some(false), None, Some(true), None, Some(false)]
        );
    }
}

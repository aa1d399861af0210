//! Which LNS gets the next call.
//!
//! The LAC has a configured list of LNSs, each with a preference (lower is
//! better) and a weight. A call goes to the best preference that has an LNS
//! not locked out, and within it to the least loaded LNS: the fewest calls
//! per unit of weight (ties go to the one listed first). An LNS that failed
//! a call during setup (no answer in time, StopCCN, CDN) is locked out for
//! a while, so the next subscribers do not wait for it too.

use core::net::SocketAddrV4;
use core::time::Duration;

use crate::time::Instant;

/// One LNS of the configured list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LnsEntry {
    /// Where its L2TP listens (port 1701 normally).
    pub address: SocketAddrV4,
    /// Lower is better: the LNSs of the best preference take every call
    /// while any of them is available.
    pub preference: u32,
    /// Share of the calls within a preference (0 counts as 1).
    pub weight: u32,
}

impl LnsEntry {
    /// An LNS at `address` with preference 0 and weight 1.
    pub fn new(address: SocketAddrV4) -> Self {
        LnsEntry {
            address,
            preference: 0,
            weight: 1,
        }
    }
}

/// What the selector knows of one LNS, for `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LnsStatus {
    /// The configured entry.
    pub entry: LnsEntry,
    /// Calls on it now (setting up or up).
    pub sessions: usize,
    /// Locked out until then, if it is.
    pub locked_out_until: Option<Instant>,
}

/// The LNS list with each one's load and lockout.
#[derive(Debug, Clone)]
pub struct Selector {
    lns: Vec<LnsStatus>,
    lockout: Duration,
}

impl Selector {
    /// A selector over `entries` (in configured order) that locks a failed
    /// LNS out for `lockout`.
    pub fn new(entries: impl IntoIterator<Item = LnsEntry>, lockout: Duration) -> Self {
        Selector {
            lns: entries
                .into_iter()
                .map(|entry| LnsStatus {
                    entry,
                    sessions: 0,
                    locked_out_until: None,
                })
                .collect(),
            lockout,
        }
    }

    /// The LNS for a new call at `now`, leaving out those in `exclude`
    /// (already tried for this call). `None` when every LNS is locked out
    /// or excluded.
    pub fn choose(&self, now: Instant, exclude: &[SocketAddrV4]) -> Option<SocketAddrV4> {
        let available = |s: &&LnsStatus| {
            !exclude.contains(&s.entry.address) && s.locked_out_until.is_none_or(|t| t <= now)
        };
        let best = self
            .lns
            .iter()
            .filter(available)
            .map(|s| s.entry.preference)
            .min()?;
        let mut chosen: Option<&LnsStatus> = None;
        for s in self
            .lns
            .iter()
            .filter(available)
            .filter(|s| s.entry.preference == best)
        {
            // sessions / weight compared without division: a/wa < b/wb
            // ⇔ a·wb < b·wa (weights are positive).
            let lighter = chosen.is_none_or(|c| {
                (s.sessions as u128) * u128::from(c.entry.weight.max(1))
                    < (c.sessions as u128) * u128::from(s.entry.weight.max(1))
            });
            if lighter {
                chosen = Some(s);
            }
        }
        chosen.map(|s| s.entry.address)
    }

    /// Lock failed LNSs out for `lockout` from now on (those locked out
    /// already keep their end time).
    pub fn set_lockout(&mut self, lockout: Duration) {
        self.lockout = lockout;
    }

    /// A call went to `address`.
    pub fn add_session(&mut self, address: SocketAddrV4) {
        if let Some(s) = self.find_mut(address) {
            s.sessions += 1;
        }
    }

    /// A call on `address` ended (or moved away).
    pub fn remove_session(&mut self, address: SocketAddrV4) {
        if let Some(s) = self.find_mut(address) {
            s.sessions = s.sessions.saturating_sub(1);
        }
    }

    /// `address` failed a call: no new calls go to it for the lockout
    /// time. Returns the end of the lockout if it was not locked out
    /// already (so the owner reports it once); `None` otherwise or for an
    /// address not in the list.
    pub fn lock_out(&mut self, now: Instant, address: SocketAddrV4) -> Option<Instant> {
        let until = now + self.lockout;
        let s = self.find_mut(address)?;
        let was = s.locked_out_until.is_some_and(|t| t > now);
        s.locked_out_until = Some(until);
        (!was).then_some(until)
    }

    /// Whether `address` is locked out at `now`.
    pub fn is_locked_out(&self, now: Instant, address: SocketAddrV4) -> bool {
        self.lns
            .iter()
            .any(|s| s.entry.address == address && s.locked_out_until.is_some_and(|t| t > now))
    }

    /// Every LNS, in configured order.
    pub fn status(&self) -> &[LnsStatus] {
        &self.lns
    }

    fn find_mut(&mut self, address: SocketAddrV4) -> Option<&mut LnsStatus> {
        self.lns.iter_mut().find(|s| s.entry.address == address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn addr(n: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 1701)
    }

    fn entry(n: u8, preference: u32, weight: u32) -> LnsEntry {
        LnsEntry {
            address: addr(n),
            preference,
            weight,
        }
    }

    const LOCKOUT: Duration = Duration::from_secs(60);

    #[test]
    fn the_best_preference_takes_every_call() {
        let mut s = Selector::new([entry(1, 10, 1), entry(2, 5, 1)], LOCKOUT);
        let now = Instant::ZERO;
        for _ in 0..5 {
            let chosen = s.choose(now, &[]).unwrap();
            assert_eq!(chosen, addr(2));
            s.add_session(chosen);
        }
        // Excluding the preferred one falls back to the next preference.
        assert_eq!(s.choose(now, &[addr(2)]), Some(addr(1)));
        assert_eq!(s.choose(now, &[addr(1), addr(2)]), None);
    }

    #[test]
    fn calls_spread_by_weight_within_a_preference() {
        let mut s = Selector::new([entry(1, 0, 1), entry(2, 0, 3)], LOCKOUT);
        let now = Instant::ZERO;
        for _ in 0..400 {
            let chosen = s.choose(now, &[]).unwrap();
            s.add_session(chosen);
        }
        assert_eq!(s.status()[0].sessions, 100);
        assert_eq!(s.status()[1].sessions, 300);
    }

    #[test]
    fn the_least_loaded_wins_and_ties_go_to_the_first_listed() {
        let mut s = Selector::new([entry(1, 0, 1), entry(2, 0, 1)], LOCKOUT);
        let now = Instant::ZERO;
        assert_eq!(s.choose(now, &[]), Some(addr(1)));
        s.add_session(addr(1));
        s.add_session(addr(1));
        s.add_session(addr(2));
        assert_eq!(s.choose(now, &[]), Some(addr(2)));
        s.remove_session(addr(1));
        assert_eq!(s.choose(now, &[]), Some(addr(1)));
        // Removing more than were added never goes below zero.
        s.remove_session(addr(2));
        s.remove_session(addr(2));
        assert_eq!(s.status()[1].sessions, 0);
        // A zero weight counts as one rather than dividing by zero.
        let mut z = Selector::new([entry(1, 0, 0), entry(2, 0, 1)], LOCKOUT);
        z.add_session(addr(1));
        assert_eq!(z.choose(now, &[]), Some(addr(2)));
    }

    #[test]
    fn a_locked_out_lns_is_skipped_until_the_lockout_expires() {
        let mut s = Selector::new([entry(1, 0, 1), entry(2, 1, 1)], LOCKOUT);
        let t0 = Instant::ZERO + Duration::from_secs(5);
        assert_eq!(s.lock_out(t0, addr(1)), Some(t0 + LOCKOUT));
        // Reported once: a second failure while locked out extends it
        // quietly.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.lock_out(t1, addr(1)), None);
        assert!(s.is_locked_out(t1, addr(1)));
        assert_eq!(s.choose(t1, &[]), Some(addr(2)));
        let before = t1 + (LOCKOUT - Duration::from_millis(1));
        assert_eq!(s.choose(before, &[]), Some(addr(2)));
        let after = t1 + LOCKOUT;
        assert!(!s.is_locked_out(after, addr(1)));
        assert_eq!(s.choose(after, &[]), Some(addr(1)));
        // Everything locked out: nobody.
        s.lock_out(after, addr(1));
        s.lock_out(after, addr(2));
        assert_eq!(s.choose(after, &[]), None);
        // An address not configured is not locked out and not counted.
        assert_eq!(s.lock_out(after, addr(9)), None);
        s.add_session(addr(9));
    }
}

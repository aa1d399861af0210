//! One ordered set of per-session deadlines, so a node with many sessions
//! finds the due ones without scanning them all (STYLE.md: "for many
//! sessions, one ordered structure of deadlines in the node").

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::time::Instant;

/// At most one deadline per key, ordered by time.
#[derive(Debug)]
pub(crate) struct Deadlines<K> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K: Copy + Ord + Hash> Deadlines<K> {
    pub(crate) fn new() -> Self {
        Deadlines {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }

    /// Sets (or clears, with `None`) the deadline of `key`.
    pub(crate) fn set(&mut self, key: K, at: Option<Instant>) {
        let old = self.by_key.get(&key).copied();
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.by_time.remove(&(old, key));
            self.by_key.remove(&key);
        }
        if let Some(at) = at {
            self.by_time.insert((at, key));
            self.by_key.insert(key, at);
        }
    }

    /// The earliest deadline.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// Removes and returns every key whose deadline is at or before `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(&(at, key)) = self.by_time.first() {
            if at > now {
                break;
            }
            self.by_time.pop_first();
            self.by_key.remove(&key);
            due.push(key);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn due_keys_come_out_in_time_order_and_moves_replace() {
        let t = |ms| Instant::ZERO + Duration::from_millis(ms);
        let mut d = Deadlines::new();
        d.set(1u32, Some(t(30)));
        d.set(2, Some(t(10)));
        d.set(3, Some(t(20)));
        d.set(3, Some(t(40)));
        d.set(2, None);
        assert_eq!(d.first(), Some(t(30)));
        assert_eq!(d.take_due(t(35)), vec![1]);
        assert_eq!(d.take_due(t(100)), vec![3]);
        assert_eq!(d.first(), None);
    }
}

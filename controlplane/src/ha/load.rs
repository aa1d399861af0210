//! The LNS's load monitor (issue 6 §3): session count, CPU and memory
//! against configured watermarks, with hysteresis, deciding when to ask the
//! LACs to move sessions to the peer (STPLRQ) and when that pressure is
//! gone. Sans-IO: the owner samples the machine and passes the sample in.
//!
//! Hysteresis is twofold, so that a load hovering around a threshold does
//! not make the LNS send STPLRQs back and forth:
//!
//! * two watermarks per metric: overloaded when any metric reaches its
//!   `high`, relieved only when every metric is at or below its `low`;
//! * a hold time: the condition must last [`LoadConfig::hold`] before the
//!   state changes, so a spike does not count.

use core::fmt;
use core::time::Duration;

use crate::time::Instant;

/// Two thresholds of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermarks {
    /// At or above: overloaded.
    pub high: f64,
    /// At or below (and every other metric too): relieved.
    pub low: f64,
}

/// What is watched; a metric left `None` is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadConfig {
    /// Established sessions.
    pub sessions: Option<Watermarks>,
    /// CPU busy, percent of the machine.
    pub cpu_percent: Option<Watermarks>,
    /// Memory in use, percent of the machine.
    pub memory_percent: Option<Watermarks>,
    /// How long a condition must last before the state changes. Default 5 s.
    pub hold: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            sessions: None,
            cpu_percent: Some(Watermarks {
                high: 90.0,
                low: 70.0,
            }),
            memory_percent: Some(Watermarks {
                high: 90.0,
                low: 80.0,
            }),
            hold: Duration::from_secs(5),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for LoadConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "load monitor: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for LoadConfigError {}

impl LoadConfig {
    /// Check the watermarks: `low` below `high`, both finite and not
    /// negative.
    pub fn validate(&self) -> Result<(), LoadConfigError> {
        for (field, w) in [
            ("sessions", self.sessions),
            ("cpu_percent", self.cpu_percent),
            ("memory_percent", self.memory_percent),
        ] {
            let Some(w) = w else { continue };
            if !(w.low.is_finite() && w.high.is_finite()) || w.low < 0.0 {
                return Err(LoadConfigError {
                    field,
                    reason: "watermarks must be finite and not negative",
                });
            }
            if w.low >= w.high {
                return Err(LoadConfigError {
                    field,
                    reason: "low must be below high, or the state would flap",
                });
            }
        }
        Ok(())
    }
}

/// One observation of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadSample {
    /// Established sessions.
    pub sessions: u64,
    /// CPU busy, percent.
    pub cpu_percent: f64,
    /// Memory in use, percent.
    pub memory_percent: f64,
}

/// Which metrics are over their high watermark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overload {
    /// Sessions.
    pub sessions: bool,
    /// CPU.
    pub cpu: bool,
    /// Memory.
    pub memory: bool,
}

impl Overload {
    fn any(self) -> bool {
        self.sessions || self.cpu || self.memory
    }
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadEvent {
    /// Over a high watermark for the hold time: ask the LACs to move
    /// sessions to the peer.
    Overloaded(Overload),
    /// Every metric at or below its low watermark for the hold time.
    Relieved,
}

/// The monitor (see the module documentation).
#[derive(Debug, Clone)]
pub struct LoadMonitor {
    config: LoadConfig,
    overloaded: bool,
    /// Since when the condition for the other state holds.
    pending_since: Option<Instant>,
}

impl LoadMonitor {
    /// A monitor in the normal state.
    pub fn new(config: LoadConfig) -> Result<Self, LoadConfigError> {
        config.validate()?;
        Ok(LoadMonitor {
            config,
            overloaded: false,
            pending_since: None,
        })
    }

    /// Whether the LNS counts as overloaded now.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    fn over_high(&self, s: &LoadSample) -> Overload {
        let over = |w: Option<Watermarks>, v: f64| w.is_some_and(|w| v >= w.high);
        Overload {
            sessions: over(self.config.sessions, s.sessions as f64),
            cpu: over(self.config.cpu_percent, s.cpu_percent),
            memory: over(self.config.memory_percent, s.memory_percent),
        }
    }

    fn all_under_low(&self, s: &LoadSample) -> bool {
        let under = |w: Option<Watermarks>, v: f64| w.is_none_or(|w| v <= w.low);
        under(self.config.sessions, s.sessions as f64)
            && under(self.config.cpu_percent, s.cpu_percent)
            && under(self.config.memory_percent, s.memory_percent)
    }

    /// Take a sample; returns the change of state it completes, if any.
    pub fn observe(&mut self, now: Instant, sample: LoadSample) -> Option<LoadEvent> {
        let over = self.over_high(&sample);
        let towards_other = if self.overloaded {
            self.all_under_low(&sample)
        } else {
            over.any()
        };
        if !towards_other {
            self.pending_since = None;
            return None;
        }
        let since = *self.pending_since.get_or_insert(now);
        if now - since < self.config.hold {
            return None;
        }
        self.pending_since = None;
        self.overloaded = !self.overloaded;
        Some(if self.overloaded {
            LoadEvent::Overloaded(over)
        } else {
            LoadEvent::Relieved
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn cpu(percent: f64) -> LoadSample {
        LoadSample {
            cpu_percent: percent,
            ..LoadSample::default()
        }
    }

    fn monitor() -> LoadMonitor {
        LoadMonitor::new(LoadConfig {
            sessions: Some(Watermarks {
                high: 1000.0,
                low: 800.0,
            }),
            hold: Duration::from_secs(5),
            ..LoadConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_spike_shorter_than_the_hold_time_does_not_count() {
        let mut m = monitor();
        assert_eq!(m.observe(at(0), cpu(95.0)), None);
        assert_eq!(m.observe(at(4000), cpu(95.0)), None);
        assert_eq!(m.observe(at(4500), cpu(50.0)), None);
        assert_eq!(m.observe(at(9000), cpu(95.0)), None);
        assert!(!m.is_overloaded());
    }

    #[test]
    fn sustained_load_overloads_and_only_the_low_watermark_relieves() {
        let mut m = monitor();
        assert_eq!(m.observe(at(0), cpu(95.0)), None);
        assert_eq!(
            m.observe(at(5000), cpu(95.0)),
            Some(LoadEvent::Overloaded(Overload {
                cpu: true,
                ..Overload::default()
            }))
        );
        // Between the watermarks: still overloaded, however long.
        assert_eq!(m.observe(at(6000), cpu(80.0)), None);
        assert_eq!(m.observe(at(60_000), cpu(80.0)), None);
        assert!(m.is_overloaded());
        // Below low, but sessions over their low: not yet.
        let busy = LoadSample {
            sessions: 900,
            cpu_percent: 10.0,
            memory_percent: 10.0,
        };
        assert_eq!(m.observe(at(61_000), busy), None);
        assert_eq!(m.observe(at(70_000), busy), None);
        assert_eq!(m.observe(at(71_000), cpu(10.0)), None);
        assert_eq!(m.observe(at(76_000), cpu(10.0)), Some(LoadEvent::Relieved));
        assert!(!m.is_overloaded());
    }

    #[test]
    fn the_session_count_alone_can_overload() {
        let mut m = monitor();
        let many = LoadSample {
            sessions: 1000,
            ..LoadSample::default()
        };
        m.observe(at(0), many);
        assert_eq!(
            m.observe(at(5000), many),
            Some(LoadEvent::Overloaded(Overload {
                sessions: true,
                ..Overload::default()
            }))
        );
    }

    #[test]
    fn watermarks_that_would_flap_are_refused() {
        let config = LoadConfig {
            cpu_percent: Some(Watermarks {
                high: 70.0,
                low: 70.0,
            }),
            ..LoadConfig::default()
        };
        assert_eq!(
            LoadMonitor::new(config).map(|_| ()).unwrap_err().field,
            "cpu_percent"
        );
    }
}

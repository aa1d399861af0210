//! The machine's load as the LNS's load monitor wants it (`ha::load`): CPU
//! busy from the deltas of `/proc/stat`'s first line, memory in use from
//! `/proc/meminfo` (1 - MemAvailable/MemTotal, what the kernel says could
//! be given to a new program without swapping). Read by `lnsd` once a
//! second, and only with `[ha.load]`.

use std::path::PathBuf;

/// CPU time counters of `/proc/stat`'s `cpu` line: (busy, total) jiffies.
pub(crate) fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    // user nice system idle iowait irq softirq steal (guest and guest_nice
    // are counted in user and nice already: proc(5)).
    let fields = fields.get(..8).or_else(|| fields.get(..4))?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Memory in use, percent, from `/proc/meminfo`.
pub(crate) fn memory_percent(meminfo: &str) -> Option<f64> {
    let kib = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.get(name.len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let total = kib("MemTotal:")?;
    let available = kib("MemAvailable:")?;
    if total == 0 {
        return None;
    }
    Some(100.0 * (1.0 - available.min(total) as f64 / total as f64))
}

/// CPU busy, percent, between two `cpu_times` readings.
pub(crate) fn cpu_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let busy = after.0.checked_sub(before.0)?;
    let total = after.1.checked_sub(before.1)?;
    (total > 0).then(|| 100.0 * busy.min(total) as f64 / total as f64)
}

/// Reads the machine's load: the first [`MachineLoad::sample`] gives the
/// memory only (CPU needs two readings).
#[derive(Debug)]
pub(crate) struct MachineLoad {
    proc: PathBuf,
    last_cpu: Option<(u64, u64)>,
}

/// One reading: CPU busy since the last one and memory in use, percent
/// (`None`: not readable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) memory_percent: Option<f64>,
}

impl MachineLoad {
    /// Over `/proc`.
    pub(crate) fn new() -> MachineLoad {
        MachineLoad::at("/proc")
    }

    /// Over another directory laid out as `/proc` (tests).
    pub(crate) fn at(proc: impl Into<PathBuf>) -> MachineLoad {
        MachineLoad {
            proc: proc.into(),
            last_cpu: None,
        }
    }

    /// Reads both files now.
    pub(crate) fn sample(&mut self) -> Reading {
        let read = |name: &str| std::fs::read_to_string(self.proc.join(name)).ok();
        let times = read("stat").as_deref().and_then(cpu_times);
        let cpu_percent = match (self.last_cpu, times) {
            (Some(before), Some(after)) => cpu_percent(before, after),
            _ => None,
        };
        if times.is_some() {
            self.last_cpu = times;
        }
        Reading {
            cpu_percent,
            memory_percent: read("meminfo").as_deref().and_then(memory_percent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1\n";
    const MEMINFO: &str =
        "MemTotal:       16000000 kB\nMemFree:         2000000 kB\nMemAvailable:    4000000 kB\n";

    #[test]
    fn cpu_is_busy_over_total_between_readings() {
        let before = cpu_times(STAT).unwrap();
        // busy = 100+5+50+3+2 = 160, total 980.
        assert_eq!(before, (160, 980));
        let after = cpu_times("cpu  140 5 50 840 20 3 2 0 0 0\n").unwrap();
        // 40 more busy jiffies out of 80.
        assert_eq!(cpu_percent(before, after), Some(50.0));
        assert_eq!(cpu_percent(before, before), None, "no time passed");
        assert_eq!(cpu_percent(after, before), None, "counters went back");
        assert_eq!(cpu_times("intr 1\n"), None);
        assert_eq!(cpu_times("cpu  1 x 3 4\n"), None);
        assert_eq!(
            cpu_times("cpu  1 2 3 4\n"),
            Some((6, 10)),
            "an old kernel's four fields"
        );
    }

    #[test]
    fn memory_in_use_is_what_is_not_available() {
        assert_eq!(memory_percent(MEMINFO), Some(75.0));
        assert_eq!(memory_percent("MemTotal: 100 kB\n"), None);
        assert_eq!(memory_percent("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
    }

    #[test]
    fn the_sampler_reads_proc_and_gives_cpu_from_the_second_reading() {
        let dir = std::env::temp_dir().join(format!("lnsd-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), STAT).unwrap();
        std::fs::write(dir.join("meminfo"), MEMINFO).unwrap();
        let mut load = MachineLoad::at(&dir);
        let first = load.sample();
        assert_eq!(first.cpu_percent, None);
        assert_eq!(first.memory_percent, Some(75.0));
        std::fs::write(dir.join("stat"), "cpu  180 5 50 820 20 3 2 0 0 0\n").unwrap();
        assert_eq!(load.sample().cpu_percent, Some(80.0));
        let _ = std::fs::remove_dir_all(&dir);
        // The real /proc gives something sensible.
        let mut real = MachineLoad::new();
        real.sample();
        let r = real.sample();
        assert!(
            r.memory_percent.is_some_and(|m| (0.0..=100.0).contains(&m)),
            "{r:?}"
        );
    }
}

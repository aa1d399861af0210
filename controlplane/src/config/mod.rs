//! The daemons' TOML configuration files: [`LnsConfig`] for `lnsd`,
//! [`LacConfig`] for `lacd`.
//!
//! Every key has a default that works in the lab (README "Configuration"
//! lists them), unknown keys are refused, and every error names the file,
//! the key as a dotted path (`radius.secret`, `lns[1].weight`) and what is
//! wrong with it, so an operator can fix the line without reading code:
//!
//! ```text
//! /etc/lnsd.toml:12: radius.secret: required when radius.auth names a server
//! ```
//!
//! [`LnsConfig::load`] and [`LacConfig::load`] read and check a file;
//! [`LnsConfig::parse`] and [`LacConfig::parse`] do the same on text. [`changes`] compares two
//! configurations key by key, so a daemon reloading its file on SIGHUP can
//! say what changed and which of the changes need a restart.

mod lac;
mod lns;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use lac::{LacConfig, LacDataplane, LacHa, LnsPeer, Pppoe, RelayMode, LAC_RELOADABLE};
pub use lns::{
    Ha, HaLoad, HaPeer, LnsConfig, LnsDataplane, LoadSwitchover, ProxyMode, Radius, LNS_RELOADABLE,
};

/// A configuration file that cannot be used: which file, which key, what is
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `(text)` for [`LnsConfig::parse`] on a string).
    pub file: PathBuf,
    /// The line (1-based) the problem is on, when known.
    pub line: Option<usize>,
    /// The key, as a dotted path (`dataplane.wan`, `lns[0].address`); empty
    /// when the file as a whole is at fault (unreadable, not TOML).
    pub key: String,
    /// What is wrong, and what is accepted instead.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// What semantic checks collect: the key and the problem; the file and the
/// line are filled in by the loader.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) key: String,
    pub(crate) problem: String,
}

pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Reads `path` and parses it as `T` (TOML, unknown keys refused), then
/// runs `validate` on it.
pub(crate) fn load_file<T>(
    path: &Path,
    validate: impl Fn(&T) -> Result<(), Invalid>,
) -> Result<T, ConfigError>
where
    T: for<'de> Deserialize<'de>,
{
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: None,
        key: String::new(),
        problem: format!("cannot read it: {e}"),
    })?;
    parse_text(&text, path, validate)
}

/// Parses `text` (read from `file`) as `T` and validates it.
pub(crate) fn parse_text<T>(
    text: &str,
    file: &Path,
    validate: impl Fn(&T) -> Result<(), Invalid>,
) -> Result<T, ConfigError>
where
    T: for<'de> Deserialize<'de>,
{
    let config: T = toml::from_str(text).map_err(|e| from_toml_error(text, file, &e))?;
    validate(&config).map_err(|i| ConfigError {
        file: file.to_owned(),
        line: find_key_line(text, &i.key),
        key: i.key,
        problem: i.problem,
    })?;
    Ok(config)
}

/// A TOML or serde error with the dotted key it is about, worked out from
/// the span the parser reports: the table header above it and the key on
/// its line (`missing field` errors name the field in the message).
fn from_toml_error(text: &str, file: &Path, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return ConfigError {
            file: file.to_owned(),
            line: None,
            key: String::new(),
            problem: message,
        };
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default();
    let table = table_at(text, line_start);
    let quoted = |marker: &str| {
        let rest = &message[message.find(marker)? + marker.len()..];
        let end = rest.find('`')?;
        Some(rest[..end].to_owned())
    };
    let mut key = if let Some(field) = quoted("missing field `") {
        join_key(&table, &field)
    } else if let Some(field) = quoted("unknown field `") {
        join_key(&table, &field)
    } else {
        match key_on_line(line) {
            Some(k) => join_key(&table, &k),
            None => table,
        }
    };
    if key.is_empty() && message.contains("missing field") {
        key = "(top level)".to_owned();
    }
    ConfigError {
        file: file.to_owned(),
        line: Some(line_no),
        key,
        problem: message,
    }
}

fn join_key(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// The key of a `key = value` line, dotted keys kept, quotes removed.
fn key_on_line(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('#') {
        return None;
    }
    let (key, _) = trimmed.split_once('=')?;
    let key: String = key
        .trim()
        .chars()
        .filter(|c| *c != '"' && *c != '\'')
        .collect();
    (!key.is_empty()).then_some(key)
}

/// The table (`pppoe`, `lns[2]`) the byte offset `at` lies in: the last
/// header before it, with the index of an array-of-tables entry.
fn table_at(text: &str, at: usize) -> String {
    let mut current = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > at {
            break;
        }
        // A header on the line the error points at counts too (an error on
        // the header itself, such as a missing field in that table).
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let index = match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    counts.push((name.clone(), 1));
                    0
                }
            };
            current = format!("{name}[{index}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = name.trim().to_owned();
        }
        offset += line.len();
    }
    current
}

/// The line a dotted key is written on, if it is written at all (a
/// missing key has no line): its table's header, then the key in it.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (t.to_owned(), l),
        None => (String::new(), key),
    };
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    let mut offset = 0;
    let mut fallback = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let here = table_at(text, offset);
        offset += line.len();
        if here == table && key_on_line(line).is_some_and(|k| k == leaf) {
            return Some(i + 1);
        }
        if fallback.is_none() && !table.is_empty() && here == table {
            fallback = Some(i + 1);
        }
    }
    fallback
}

// --- shared sections and checks -------------------------------------------

/// How the fast path's XDP program and AF_XDP sockets attach to an
/// interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Generic XDP, copy mode: any interface, veth included (the lab).
    #[default]
    Skb,
    /// The driver's XDP hook, copying into the UMEM.
    Driver,
    /// The driver's XDP hook and zero-copy (NICs that support it).
    ZeroCopy,
}

/// How fast-path workers wait when idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollMode {
    /// Spin, then yield, then sleep a little: shares cores (the lab, CI).
    #[default]
    Adaptive,
    /// Spin: one core per worker, lowest latency.
    Busy,
}

impl From<PollMode> for dataplane::worker::PollMode {
    fn from(mode: PollMode) -> Self {
        match mode {
            PollMode::Adaptive => dataplane::worker::PollMode::Adaptive,
            PollMode::Busy => dataplane::worker::PollMode::BusyPoll,
        }
    }
}

/// The highest SCHED_RR priority Linux gives (sched_get_priority_max).
const MAX_REALTIME_PRIORITY: u8 = 99;

/// `[control]`: the daemon's local control socket, metrics and logs, and
/// how the control thread is scheduled.
///
/// `realtime_priority` is for a box where the control thread has a core to
/// itself, or shares it with nothing time-critical. The thread sleeps
/// between inputs and each input (an LSORS, a Hello, an ICRP) wakes it; an
/// ordinary thread then waits for a core behind whatever runs there, which
/// on the lab's two shared cores was what remained of the offload lag's
/// 99th percentile (about 2 ms, 0.6 ms with SCHED_RR). HA daemons commonly
/// do this (corosync, keepalived's VRRP process). Only the control thread
/// gets it, never the workers, and a real-time thread with work runs
/// before every ordinary thread on its core: on the lab's cores, shared by
/// three daemons, their workers and the traffic generator, a planned
/// switchover's burst of control work held packets 15-50 ms instead of
/// 3 ms, and a flood of punted frames would take the core. So it is off by
/// default, and with it on the workers belong on other cores
/// (`dataplane.cores`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// The Unix socket `l2tpctl --socket` talks to.
    pub socket: PathBuf,
    /// Where to serve Prometheus metrics (`GET /metrics`); none by
    /// default.
    pub metrics: Option<SocketAddr>,
    /// Log filter (`info`, `debug`, `controlplane::l2tp=trace,info`, the
    /// `RUST_LOG` syntax); `RUST_LOG` in the environment wins over it.
    pub log: Option<String>,
    /// Real-time priority of the control thread (SCHED_RR, 1–99); 0 leaves
    /// it an ordinary thread. See [`Control`] for when to use it.
    pub realtime_priority: u8,
}

impl Control {
    pub(crate) fn with_socket(socket: &str) -> Self {
        Control {
            socket: PathBuf::from(socket),
            metrics: None,
            log: None,
            realtime_priority: 0,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.socket.as_os_str().is_empty() {
            return Err(invalid("control.socket", "must name a path"));
        }
        if self.realtime_priority > MAX_REALTIME_PRIORITY {
            return Err(invalid(
                "control.realtime_priority",
                format!(
                    "{} is out of range: give 1 to {MAX_REALTIME_PRIORITY} (SCHED_RR), or 0 for none",
                    self.realtime_priority
                ),
            ));
        }
        if let Some(log) = &self.log {
            tracing_subscriber::EnvFilter::try_new(log).map_err(|e| {
                invalid(
                    "control.log",
                    format!("not a log filter ({e}); use e.g. \"info\" or \"debug\""),
                )
            })?;
        }
        Ok(())
    }
}

impl Default for Control {
    fn default() -> Self {
        Control::with_socket("/run/l2tpd.sock")
    }
}

/// Seconds as a [`Duration`]; the caller checked they are finite and not
/// negative.
pub(crate) fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// A number of seconds in `min..=max`.
pub(crate) fn check_seconds(key: &str, value: f64, min: f64, max: f64) -> Result<(), Invalid> {
    if !value.is_finite() || value < min || value > max {
        return Err(invalid(
            key,
            format!("{value} seconds is out of range: give {min} to {max}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_name(key: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    Ok(())
}

/// An interface name as Linux accepts it (IFNAMSIZ: 15 bytes, no '/' or
/// whitespace).
pub(crate) fn check_interface(key: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > 15 || value.contains(['/', ' ', '\t']) {
        return Err(invalid(
            key,
            format!("{value:?} is not an interface name (1 to 15 characters, no '/' or spaces)"),
        ));
    }
    Ok(())
}

pub(crate) fn check_secret(key: &str, value: &Option<String>) -> Result<(), Invalid> {
    if value.as_deref().is_some_and(str::is_empty) {
        return Err(invalid(
            key,
            "must not be empty (leave the key out for none)",
        ));
    }
    Ok(())
}

pub(crate) fn check_cores(key: &str, cores: &[usize]) -> Result<(), Invalid> {
    for (i, c) in cores.iter().enumerate() {
        if cores[..i].contains(c) {
            return Err(invalid(key, format!("core {c} is listed twice")));
        }
    }
    Ok(())
}

pub(crate) fn check_unicast(key: &str, a: Ipv4Addr) -> Result<(), Invalid> {
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(invalid(key, format!("{a} is not a unicast address")));
    }
    Ok(())
}

// --- changes between two configurations -------------------------------------

/// What a reload found: every key whose value differs, split into those the
/// daemon applies at once and those that need a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed keys the daemon applies on reload.
    pub apply: Vec<String>,
    /// Changed keys that only take effect after a restart.
    pub restart: Vec<String>,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.restart.is_empty()
    }

    /// Whether `key` (or a key under it) changed and is applied.
    pub fn applies(&self, key: &str) -> bool {
        self.apply.iter().any(|k| under(k, key))
    }
}

/// True when `key` is `prefix` or lies under it (`radius.auth` under
/// `radius`).
fn under(key: &str, prefix: &str) -> bool {
    key == prefix
        || key
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
}

/// The keys whose values differ between `old` and `new`, classified by
/// `reloadable` (keys, or tables whose keys all are).
pub fn changes<T: Serialize>(old: &T, new: &T, reloadable: &[&str]) -> Changes {
    let mut keys = Vec::new();
    match (toml::Value::try_from(old), toml::Value::try_from(new)) {
        (Ok(a), Ok(b)) => diff_values("", &a, &b, &mut keys),
        _ => keys.push("(whole file)".to_owned()),
    }
    let mut out = Changes::default();
    for key in keys {
        if reloadable.iter().any(|r| under(&key, r)) {
            out.apply.push(key);
        } else {
            out.restart.push(key);
        }
    }
    out
}

fn diff_values(path: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let sub = join_key(path, name);
                match (x.get(name), y.get(name)) {
                    (Some(p), Some(q)) => diff_values(&sub, p, q, out),
                    _ => out.push(sub),
                }
            }
        }
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests;

//! `lacd`'s configuration file.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::{
    check_cores, check_interface, check_name, check_seconds, check_secret, check_unicast, invalid,
    seconds, Changes, ConfigError, Control, Invalid, PollMode, XdpMode,
};

/// The keys `lacd` applies on SIGHUP without a restart (keys, or tables
/// whose every key is); every other change waits for a restart.
pub const LAC_RELOADABLE: &[&str] = &[
    "lockout",
    "pppoe.max_sessions_per_mac",
    "pppoe.max_sessions",
    "pppoe.discovery_rate",
    "control.log",
];

/// How the LAC carries a subscriber's PPP to the LNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// Open the call at once and relay LCP, authentication and all to the
    /// LNS.
    #[default]
    Relay,
    /// Negotiate LCP and take the credentials here, then open the call with
    /// proxy LCP and authentication (RFC 2661 §4.4.5).
    Proxy,
}

/// `lacd`'s configuration (see the README's "Configuration" section for
/// every key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LacConfig {
    /// Our IPv4 address and UDP port for L2TP (1701 usual; 0 picks one).
    pub listen: SocketAddrV4,
    /// Our Host Name AVP.
    pub hostname: String,
    /// The tunnel secret shared with the LNSs (RFC 2661 §5.1.1).
    pub secret: Option<String>,
    /// Challenge the LNS and refuse it without the secret.
    pub require_auth: bool,
    /// Seconds between Hellos on an idle tunnel (RFC 2661 §6.5); 0
    /// disables. Fractions allowed (fast failure detection).
    pub hello: f64,
    /// The LNSs, `[[lns]]`.
    pub lns: Vec<LnsPeer>,
    /// Seconds an LNS that failed a call stays out of the selection.
    pub lockout: f64,
    /// Seconds a tunnel and a call get to come up before the LNS counts
    /// as failed.
    pub setup_timeout: f64,
    /// Relay or proxy.
    pub mode: RelayMode,
    /// Frames each fast-path worker holds per session while it moves
    /// between LNSs (the depth of the `ha.hold_rings` rings).
    pub hold_depth: usize,
    /// `[pppoe]`.
    pub pppoe: Pppoe,
    /// `[dataplane]`.
    pub dataplane: LacDataplane,
    /// `[control]`.
    pub control: Control,
    /// `[ha]`: failure and load switchover between an LNS and its peers.
    pub ha: LacHa,
}

/// `[ha]` of a LAC: recover the calls of a failed LNS on the peer it
/// advertised, and move calls when an LNS asks (DESIGN.md §1 items 3 and
/// 4, docs/ha-protocol.md §5). Off: the LAC does not offer HA-Capability
/// and behaves as a plain RFC 2661 LAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LacHa {
    /// Offer HA-Capability to the LNSs and act on what they advertise.
    pub enabled: bool,
    /// Milliseconds between Hellos on the LNS tunnels (replaces `hello`
    /// when HA is on): the failure detector.
    pub hello_ms: u64,
    /// Milliseconds of silence from an LNS after which it counts as dead
    /// and its calls are recovered on its peer.
    pub dead_ms: u64,
    /// Milliseconds an LNS whose host answered with ICMP port unreachable
    /// (its lnsd is gone, the host is up) has to answer a Hello before it
    /// counts as dead, without waiting out `dead_ms`; dead at once if the
    /// Hello is refused too. 0: ignore ICMP.
    pub unreachable_ms: u64,
    /// Recover the calls of a dead LNS on its peer (false: they end, as
    /// without HA, but requested switchovers are still honoured).
    pub failure_switchover: bool,
    /// Grant an LNS's request to move calls (false: deny with "policy").
    pub accept_switchover: bool,
    /// Recovery calls in flight at once on one recovery tunnel.
    pub recovery_window: usize,
    /// Frames the control plane holds per moving session (the path
    /// without workers; the workers' rings are `hold_depth` deep).
    pub hold_limit: usize,
    /// Sessions each fast-path worker can hold at once (its rings, each
    /// `hold_depth` frames): a failure holds every session of the failed
    /// LNS; one beyond this loses its upstream frames until it is moved.
    pub hold_rings: usize,
    /// Seconds a "new sessions only" switchover steers new calls away
    /// from the LNS that asked, unless it cancels sooner.
    pub steer_time: f64,
    /// Milliseconds of upstream a failure switchover sends again to the
    /// peer (what the dead LNS may not have forwarded before it was found
    /// dead; a few frames may arrive twice, none is lost). 0: no replay.
    pub replay_ms: u64,
}

impl Default for LacHa {
    fn default() -> Self {
        LacHa {
            enabled: false,
            hello_ms: 100,
            dead_ms: 300,
            unreachable_ms: 30,
            failure_switchover: true,
            accept_switchover: true,
            recovery_window: 256,
            hold_limit: 64,
            hold_rings: 1024,
            steer_time: 3600.0,
            replay_ms: 500,
        }
    }
}

/// Held frames per worker at most (`ha.hold_rings` × `hold_depth`): each
/// slot is a few bytes of every worker's memory, allocated at start.
const MAX_HOLD_SLOTS: usize = 1 << 24;

impl LacHa {
    /// The Hello interval on the LNS tunnels.
    pub fn hello_interval(&self) -> Duration {
        Duration::from_millis(self.hello_ms)
    }

    /// How long an LNS may stay silent before it counts as dead.
    pub fn dead_interval(&self) -> Duration {
        Duration::from_millis(self.dead_ms)
    }

    /// How long an LNS reported unreachable has to answer, `None` when
    /// such reports are ignored.
    pub fn unreachable_timeout(&self) -> Option<Duration> {
        (self.unreachable_ms > 0).then(|| Duration::from_millis(self.unreachable_ms))
    }

    /// How long "new sessions only" steering lasts at most.
    pub fn steer_duration(&self) -> Duration {
        seconds(self.steer_time)
    }

    /// How much upstream a failure switchover replays at most.
    pub fn replay_window(&self) -> Duration {
        Duration::from_millis(self.replay_ms)
    }

    fn validate(&self, hold_depth: usize) -> Result<(), Invalid> {
        if !(10..=60_000).contains(&self.hello_ms) {
            return Err(invalid(
                "ha.hello_ms",
                "give 10 to 60000 milliseconds (100 detects a dead LNS in about 300 ms)",
            ));
        }
        // A live LNS answers a Hello within its acknowledgement delay (50
        // ms by default): the dead interval must leave room for at least
        // one Hello and its answer, or a healthy LNS is declared dead.
        if self.dead_ms < 2 * self.hello_ms || self.dead_ms > 600_000 {
            return Err(invalid(
                "ha.dead_ms",
                format!(
                    "give {} (twice ha.hello_ms) to 600000 milliseconds; three Hellos (e.g. 300 with hello_ms = 100) is usual",
                    2 * self.hello_ms
                ),
            ));
        }
        // A live LNS answers the probe within its acknowledgement delay and
        // a round trip; longer than the dead interval would only delay.
        if self.unreachable_ms != 0 && !(5..=self.dead_ms).contains(&self.unreachable_ms) {
            return Err(invalid(
                "ha.unreachable_ms",
                format!(
                    "give 0 (ignore ICMP) or 5 to {} (ha.dead_ms) milliseconds; 30 is usual",
                    self.dead_ms
                ),
            ));
        }
        if !(1..=65_535).contains(&self.recovery_window) {
            return Err(invalid("ha.recovery_window", "give 1 to 65535 calls"));
        }
        if !(1..=65_536).contains(&self.hold_limit) {
            return Err(invalid("ha.hold_limit", "give 1 to 65536 frames"));
        }
        if self.hold_rings == 0 || self.hold_rings.saturating_mul(hold_depth) > MAX_HOLD_SLOTS {
            return Err(invalid(
                "ha.hold_rings",
                format!(
                    "give 1 to {} sessions (ha.hold_rings × hold_depth is at most {MAX_HOLD_SLOTS} held frames per worker)",
                    MAX_HOLD_SLOTS / hold_depth.max(1)
                ),
            ));
        }
        check_seconds("ha.steer_time", self.steer_time, 1.0, 7.0 * 86_400.0)?;
        // What a dead LNS got after its last sign of life is lost unless
        // replayed: a window shorter than the dead interval cannot cover it.
        if self.replay_ms != 0 && !(self.dead_ms..=10_000).contains(&self.replay_ms) {
            return Err(invalid(
                "ha.replay_ms",
                format!(
                    "give 0 (no replay) or {} (ha.dead_ms) to 10000 milliseconds; dead_ms + hello_ms + 100 is usual",
                    self.dead_ms
                ),
            ));
        }
        Ok(())
    }
}

/// One `[[lns]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LnsPeer {
    /// `"10.0.0.11"` or `"10.0.0.11:1701"`.
    #[serde(deserialize_with = "lns_address")]
    pub address: SocketAddrV4,
    /// Lower is better: the best preference with an LNS available takes
    /// every call.
    #[serde(default)]
    pub preference: u32,
    /// Share of the calls within a preference.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// An LNS address with the L2TP port (1701) when none is given.
fn lns_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddrV4, D::Error> {
    let text = String::deserialize(d)?;
    if let Ok(a) = text.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    text.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, 1701))
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an IPv4 address or address:port (e.g. \"10.0.0.11\" or \"10.0.0.11:1701\")"
            ))
        })
}

/// `[pppoe]`: the access side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pppoe {
    /// The interface the subscribers' PPPoE arrives on.
    pub interface: String,
    /// Our AC-Name tag.
    pub ac_name: String,
    /// Service-Names we offer; empty: any the subscriber asks for.
    pub service_names: Vec<String>,
    /// Sessions one subscriber MAC may hold.
    pub max_sessions_per_mac: u32,
    /// Sessions in all.
    pub max_sessions: u32,
    /// PADIs answered per second (0: no limit).
    pub discovery_rate: u32,
}

impl Default for Pppoe {
    fn default() -> Self {
        Pppoe {
            interface: "access0".to_owned(),
            ac_name: "lacd".to_owned(),
            service_names: Vec::new(),
            max_sessions_per_mac: 4,
            max_sessions: 16384,
            discovery_rate: 1000,
        }
    }
}

/// `[dataplane]` of a LAC: the AF_XDP fast path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LacDataplane {
    /// Run the fast path.
    pub enabled: bool,
    /// The interface toward the LNSs (the access one is `pppoe.interface`).
    pub wan: String,
    /// How XDP attaches.
    pub xdp_mode: XdpMode,
    /// How workers wait.
    pub poll_mode: PollMode,
    /// CPUs to pin the workers to (worker i on `cores[i % len]`); empty:
    /// no pinning.
    pub cores: Vec<usize>,
    /// Queues per interface, one worker each (veth has one).
    pub queues: u32,
    /// A router toward the LNSs when they are not on the wan link; none:
    /// they are on it.
    pub wan_next_hop: Option<Ipv4Addr>,
}

impl Default for LacDataplane {
    fn default() -> Self {
        LacDataplane {
            enabled: false,
            wan: "wan0".to_owned(),
            xdp_mode: XdpMode::Skb,
            poll_mode: PollMode::Adaptive,
            cores: Vec::new(),
            queues: 1,
            wan_next_hop: None,
        }
    }
}

impl Default for LacConfig {
    fn default() -> Self {
        LacConfig {
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1701),
            hostname: "lacd".to_owned(),
            secret: None,
            require_auth: false,
            hello: 60.0,
            lns: Vec::new(),
            lockout: 60.0,
            setup_timeout: 10.0,
            mode: RelayMode::Relay,
            hold_depth: 256,
            pppoe: Pppoe::default(),
            dataplane: LacDataplane::default(),
            control: Control::with_socket("/run/lacd.sock"),
            ha: LacHa::default(),
        }
    }
}

impl LacConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        super::load_file(path, Self::validate_fields)
    }

    /// Parses and checks `text`, reporting errors against `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        super::parse_text(text, file, Self::validate_fields)
    }

    /// Checks the values (after command-line overrides, say), as if they
    /// came from `file`.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|i| ConfigError {
            file: file.to_owned(),
            line: None,
            key: i.key,
            problem: i.problem,
        })
    }

    fn validate_fields(&self) -> Result<(), Invalid> {
        check_name("hostname", &self.hostname)?;
        check_secret("secret", &self.secret)?;
        if self.require_auth && self.secret.is_none() {
            return Err(invalid("require_auth", "needs `secret`"));
        }
        check_seconds("hello", self.hello, 0.0, 3600.0)?;
        if self.hello > 0.0 && self.hello < 0.05 {
            return Err(invalid("hello", "give 0 (off) or at least 0.05 seconds"));
        }
        if self.lns.is_empty() {
            return Err(invalid(
                "lns",
                "needs at least one [[lns]] with an address (e.g. address = \"10.0.0.11\")",
            ));
        }
        for (i, peer) in self.lns.iter().enumerate() {
            check_unicast(&format!("lns[{i}].address"), *peer.address.ip())?;
            if peer.address.port() == 0 {
                return Err(invalid(format!("lns[{i}].address"), "port 0: give 1701"));
            }
            if self.lns[..i].iter().any(|p| p.address == peer.address) {
                return Err(invalid(
                    format!("lns[{i}].address"),
                    format!("{} is listed twice", peer.address),
                ));
            }
            if peer.weight == 0 {
                return Err(invalid(
                    format!("lns[{i}].weight"),
                    "must be at least 1 (remove the entry to stop using the LNS)",
                ));
            }
        }
        check_seconds("lockout", self.lockout, 0.0, 86_400.0)?;
        check_seconds("setup_timeout", self.setup_timeout, 0.1, 600.0)?;
        if !(1..=65_536).contains(&self.hold_depth) {
            return Err(invalid("hold_depth", "give 1 to 65536 frames"));
        }
        let p = &self.pppoe;
        check_interface("pppoe.interface", &p.interface)?;
        check_name("pppoe.ac_name", &p.ac_name)?;
        // A PPPoE tag's value is at most 65535 bytes (RFC 2516 §5: TAG_LENGTH
        // is 16 bits); a frame holds far less, so keep names short.
        if p.ac_name.len() > 64 {
            return Err(invalid("pppoe.ac_name", "at most 64 bytes"));
        }
        for (i, name) in p.service_names.iter().enumerate() {
            if name.is_empty() || name.len() > 64 {
                return Err(invalid(
                    format!("pppoe.service_names[{i}]"),
                    "1 to 64 bytes (leave the list empty to serve any service name)",
                ));
            }
        }
        if p.max_sessions == 0 {
            return Err(invalid("pppoe.max_sessions", "must be at least 1"));
        }
        if p.max_sessions_per_mac == 0 || p.max_sessions_per_mac > p.max_sessions {
            return Err(invalid(
                "pppoe.max_sessions_per_mac",
                format!("give 1 to pppoe.max_sessions ({})", p.max_sessions),
            ));
        }
        let d = &self.dataplane;
        if d.enabled {
            check_interface("dataplane.wan", &d.wan)?;
            if d.wan == p.interface {
                return Err(invalid("dataplane.wan", "must differ from pppoe.interface"));
            }
            if let Some(a) = d.wan_next_hop {
                check_unicast("dataplane.wan_next_hop", a)?;
            }
            if self.listen.ip().is_unspecified() {
                return Err(invalid(
                    "listen",
                    "the fast path needs the wan address, not 0.0.0.0 (e.g. \"10.0.0.1:1701\")",
                ));
            }
        }
        check_cores("dataplane.cores", &d.cores)?;
        if !(1..=64).contains(&d.queues) {
            return Err(invalid("dataplane.queues", "give 1 to 64"));
        }
        self.ha.validate(self.hold_depth)?;
        self.control.validate()
    }

    /// The Hello interval on the LNS tunnels, `None` when disabled
    /// (`ha.hello_ms` when HA is on).
    pub fn hello_interval(&self) -> Option<Duration> {
        if self.ha.enabled {
            return Some(self.ha.hello_interval());
        }
        (self.hello > 0.0).then(|| seconds(self.hello))
    }

    /// How long an LNS may stay silent before its tunnel is given up
    /// (`ha.dead_ms` when HA is on; else only retransmissions decide).
    pub fn dead_interval(&self) -> Option<Duration> {
        self.ha.enabled.then(|| self.ha.dead_interval())
    }

    /// How long an LNS whose host reports its port unreachable has to
    /// answer (`ha.unreachable_ms` when HA is on).
    pub fn unreachable_timeout(&self) -> Option<Duration> {
        self.ha
            .enabled
            .then(|| self.ha.unreachable_timeout())
            .flatten()
    }

    /// How long a failed LNS stays out of the selection.
    pub fn lockout_duration(&self) -> Duration {
        seconds(self.lockout)
    }

    /// How long a tunnel and call get to come up.
    pub fn setup_timeout_duration(&self) -> Duration {
        seconds(self.setup_timeout)
    }

    /// What differs between `self` (running) and `new` (reloaded).
    pub fn changes(&self, new: &LacConfig) -> Changes {
        super::changes(self, new, LAC_RELOADABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[[lns]]\naddress = \"10.0.0.11\"\n";

    fn refused(text: &str, key: &str, line: usize) -> ConfigError {
        let file = Path::new("lacd.toml");
        let e = LacConfig::parse(text, file).expect_err("should be refused");
        assert_eq!(e.key, key, "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("lacd.toml:{line}: {key}: ")),
            "{e}"
        );
        e
    }

    #[test]
    fn ha_is_off_by_default_and_leaves_the_timers_alone() {
        let c = LacConfig::parse(MIN, Path::new("lacd.toml")).unwrap();
        assert!(!c.ha.enabled);
        assert_eq!(c.hello_interval(), Some(Duration::from_secs(60)));
        assert_eq!(c.dead_interval(), None);
        assert_eq!(c.unreachable_timeout(), None);
    }

    #[test]
    fn ha_sets_fast_hellos_and_the_dead_interval() {
        let text = format!(
            "{MIN}[ha]\nenabled = true\nhello_ms = 50\ndead_ms = 200\naccept_switchover = false\n\
             recovery_window = 16\nhold_limit = 8\nhold_rings = 4096\nsteer_time = 60\n"
        );
        let c = LacConfig::parse(&text, Path::new("lacd.toml")).unwrap();
        assert!(c.ha.enabled);
        assert_eq!(c.hello_interval(), Some(Duration::from_millis(50)));
        assert_eq!(c.dead_interval(), Some(Duration::from_millis(200)));
        assert_eq!(c.unreachable_timeout(), Some(Duration::from_millis(30)));
        assert!(!c.ha.accept_switchover);
        assert!(c.ha.failure_switchover);
        assert_eq!(c.ha.recovery_window, 16);
        assert_eq!(c.ha.hold_limit, 8);
        assert_eq!(c.ha.hold_rings, 4096);
        assert_eq!(c.ha.steer_duration(), Duration::from_secs(60));
        assert_eq!(c.ha.replay_window(), Duration::from_millis(500));
    }

    #[test]
    fn bad_ha_values_name_the_file_line_and_key() {
        // MIN is lines 1-2, [ha] line 3.
        refused(&format!("{MIN}[ha]\nhello_ms = 5\n"), "ha.hello_ms", 4);
        let e = refused(
            &format!("{MIN}[ha]\nhello_ms = 100\ndead_ms = 150\n"),
            "ha.dead_ms",
            5,
        );
        assert!(e.problem.contains("200"), "{e}");
        refused(
            &format!("{MIN}[ha]\nrecovery_window = 0\n"),
            "ha.recovery_window",
            4,
        );
        refused(&format!("{MIN}[ha]\nhold_limit = 0\n"), "ha.hold_limit", 4);
        refused(&format!("{MIN}[ha]\nhold_rings = 0\n"), "ha.hold_rings", 4);
        let e = refused(
            &format!("hold_depth = 65536\n{MIN}[ha]\nhold_rings = 1000\n"),
            "ha.hold_rings",
            5,
        );
        assert!(e.problem.contains("256"), "{e}");
        let e = refused(
            &format!("{MIN}[ha]\nunreachable_ms = 400\n"),
            "ha.unreachable_ms",
            4,
        );
        assert!(e.problem.contains("300"), "{e}");
        let off = LacConfig::parse(
            &format!("{MIN}[ha]\nenabled = true\nunreachable_ms = 0\n"),
            Path::new("lacd.toml"),
        )
        .unwrap();
        assert_eq!(off.unreachable_timeout(), None);
        refused(&format!("{MIN}[ha]\nsteer_time = 0\n"), "ha.steer_time", 4);
        refused(&format!("{MIN}[ha]\nreplay_ms = 100\n"), "ha.replay_ms", 4);
        // Unknown keys are refused as everywhere else.
        let e = LacConfig::parse(&format!("{MIN}[ha]\nhello = 1\n"), Path::new("lacd.toml"))
            .expect_err("unknown key");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn ha_changes_wait_for_a_restart() {
        let old = LacConfig::parse(MIN, Path::new("lacd.toml")).unwrap();
        let new = LacConfig::parse(
            &format!("{MIN}[ha]\nenabled = true\n"),
            Path::new("lacd.toml"),
        )
        .unwrap();
        let changes = old.changes(&new);
        assert!(changes.apply.is_empty(), "{changes:?}");
        assert!(!changes.restart.is_empty(), "{changes:?}");
    }
}

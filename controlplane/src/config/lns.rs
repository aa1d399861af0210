//! `lnsd`'s configuration file.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    check_cores, check_interface, check_name, check_seconds, check_secret, check_unicast, invalid,
    seconds, Changes, ConfigError, Control, Invalid, PollMode, XdpMode,
};
use crate::aaa::pool::AddressPool;
use crate::ha::load::{LoadConfig, Watermarks};
use crate::l2tp;
use crate::lns;
use crate::ppp::ProxyPolicy;

/// With `[ha]`: the receive window lnsd advertises to LACs (see
/// [`LnsConfig::node_config`]).
const LAC_RECEIVE_WINDOW_HA: u16 = 64;
/// With `[ha]`: how long an acknowledgement to a LAC waits for a message
/// to carry it.
const LAC_ACK_DELAY_HA: Duration = Duration::from_millis(10);

/// The keys `lnsd` applies on SIGHUP without a restart (keys, or tables
/// whose every key is); every other change waits for a restart. `users`
/// and `radius` swap the authenticator for new authentications; sessions
/// up stay up (`lns::Node::set_authenticator`). The users file is read
/// again on every SIGHUP, even when `users` names the same file.
pub const LNS_RELOADABLE: &[&str] = &["control.log", "users", "radius"];

/// What to do with the LAC's proxy LCP and authentication (RFC 2661
/// §4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyMode {
    /// Take the LAC's negotiation when acceptable.
    #[default]
    Accept,
    /// Always renegotiate LCP with the subscriber.
    Renegotiate,
}

/// `lnsd`'s configuration (see the README's "Configuration" section for
/// every key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LnsConfig {
    /// IPv4 address and UDP port for L2TP; RADIUS leaves from it too.
    pub listen: SocketAddrV4,
    /// Our Host Name AVP and CHAP name.
    pub hostname: String,
    /// The tunnel secret shared with the LACs (RFC 2661 §5.1.1).
    pub secret: Option<String>,
    /// Challenge every LAC and refuse those without the secret.
    pub require_auth: bool,
    /// Seconds between Hellos on an idle tunnel (RFC 2661 §6.5); 0
    /// disables.
    pub hello: f64,
    /// Proxy LCP and authentication from the LAC.
    pub proxy: ProxyMode,
    /// The local users file (used when `radius.auth` is empty).
    pub users: Option<PathBuf>,
    /// Subscriber address ranges (`a.b.c.d/len` or `first-last`).
    pub pool: Vec<String>,
    /// Our IPCP address; default the pool's first address.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers offered to subscribers (at most two).
    pub dns: Vec<Ipv4Addr>,
    /// `[radius]`.
    pub radius: Radius,
    /// `[dataplane]`.
    pub dataplane: LnsDataplane,
    /// `[control]`.
    pub control: Control,
    /// `[ha]`: peering with other LNSs; absent: no HA.
    pub ha: Option<Ha>,
}

/// `[ha]`: state offload to peer LNSs, adoption of recovered sessions and
/// fencing (DESIGN.md §1 items 2 and 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ha {
    /// Our address as the LACs know it (default: `listen`'s address).
    pub address: Option<Ipv4Addr>,
    /// The peer LNSs (`[[ha.peers]]`: `address`, `secret`).
    pub peers: Vec<HaPeer>,
    /// The peers' L2TP port.
    pub peer_port: u16,
    /// Peer-LNS-Address for HA-capable LACs, in preference order; default
    /// the peers' addresses.
    pub advertise: Vec<Ipv4Addr>,
    /// Seconds between full offload refreshes (bulk syncs); 0: only on
    /// connect.
    pub refresh: u64,
    /// Offload requests unanswered at most. 64: more go out back to back
    /// faster than a busy peer reads them, and past its socket's default
    /// receive buffer (~160 LSORQs) the kernel drops them and the channel
    /// retransmits (a 100,000-session bulk sync with 256: 900-1,700
    /// retransmissions, with 64 none, in the same wall time; `l2bench
    /// hasync`).
    pub window: usize,
    /// LNS-LNS tunnel: seconds between Hellos.
    pub hello: f64,
    /// LNS-LNS tunnel: seconds of silence before the peer is down.
    pub dead: f64,
    /// LNS-LNS tunnel: first retransmission timeout, seconds.
    pub retransmit: f64,
    /// LNS-LNS tunnel: retransmission timeout cap, seconds.
    pub retransmit_cap: f64,
    /// LNS-LNS tunnel: retransmissions before the connection is given up.
    pub retries: u32,
    /// LNS-LNS tunnel: acknowledgement delay, seconds.
    pub ack_delay: f64,
    /// Seconds a session of ours that a peer reports adopted is kept before
    /// it is dropped, unless the LAC releases it first (make-before-break).
    pub grace: f64,
    /// `[ha.load]`: the load monitor; absent: no load switchover.
    pub load: Option<HaLoad>,
}

/// `[ha.load]`: when the LNS counts as overloaded and asks its LACs to move
/// sessions to the peers (STPLRQ, docs/ha-protocol.md §5.4), with two
/// watermarks per metric and a hold time (`ha::load`). A metric whose
/// `_high` is 0 is not watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaLoad {
    /// Established sessions at which the LNS is overloaded; 0: not watched.
    pub sessions_high: u64,
    /// ... and at or below which it is relieved.
    pub sessions_low: u64,
    /// CPU busy, percent of the machine; 0: not watched.
    pub cpu_high: f64,
    /// CPU relieved, percent.
    pub cpu_low: f64,
    /// Memory in use (1 - MemAvailable/MemTotal), percent; 0: not watched.
    pub memory_high: f64,
    /// Memory relieved, percent.
    pub memory_low: f64,
    /// Seconds a condition must last before the state changes.
    pub hold: f64,
    /// What to ask the LACs for when overloaded.
    pub switchover: LoadSwitchover,
}

/// What an overloaded LNS asks its LACs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadSwitchover {
    /// Send new calls to the peers; the sessions up stay.
    #[default]
    New,
    /// Move every session to the peers too.
    All,
}

impl Default for HaLoad {
    fn default() -> Self {
        let d = LoadConfig::default();
        let pair = |w: Option<Watermarks>| w.map_or((0.0, 0.0), |w| (w.high, w.low));
        let (cpu_high, cpu_low) = pair(d.cpu_percent);
        let (memory_high, memory_low) = pair(d.memory_percent);
        HaLoad {
            sessions_high: 0,
            sessions_low: 0,
            cpu_high,
            cpu_low,
            memory_high,
            memory_low,
            hold: d.hold.as_secs_f64(),
            switchover: LoadSwitchover::New,
        }
    }
}

impl HaLoad {
    /// The load monitor's configuration.
    pub fn monitor(&self) -> LoadConfig {
        let watch = |high: f64, low: f64| (high > 0.0).then_some(Watermarks { high, low });
        LoadConfig {
            sessions: watch(self.sessions_high as f64, self.sessions_low as f64),
            cpu_percent: watch(self.cpu_high, self.cpu_low),
            memory_percent: watch(self.memory_high, self.memory_low),
            hold: seconds(self.hold),
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.sessions_high > 0 && self.sessions_low >= self.sessions_high {
            return Err(invalid(
                "ha.load.sessions_low",
                format!(
                    "{} must be below ha.load.sessions_high ({}), or the state would flap",
                    self.sessions_low, self.sessions_high
                ),
            ));
        }
        if self.sessions_high == 0 && self.sessions_low > 0 {
            return Err(invalid(
                "ha.load.sessions_low",
                "needs ha.load.sessions_high (0 there: sessions are not watched)",
            ));
        }
        for (metric, high, low) in [
            ("cpu", self.cpu_high, self.cpu_low),
            ("memory", self.memory_high, self.memory_low),
        ] {
            if !high.is_finite() || !(0.0..=100.0).contains(&high) {
                return Err(invalid(
                    format!("ha.load.{metric}_high"),
                    format!("{high}: give a percentage, 1 to 100 (0: not watched)"),
                ));
            }
            if !low.is_finite() || low < 0.0 || (high > 0.0 && low >= high) {
                return Err(invalid(
                    format!("ha.load.{metric}_low"),
                    format!(
                        "{low}: give a percentage from 0 to below ha.load.{metric}_high ({high}), \
                         or the state would flap"
                    ),
                ));
            }
        }
        check_seconds("ha.load.hold", self.hold, 0.0, 3600.0)?;
        let monitor = self.monitor();
        if monitor.sessions.is_none()
            && monitor.cpu_percent.is_none()
            && monitor.memory_percent.is_none()
        {
            return Err(invalid(
                "ha.load",
                "watches nothing: give sessions_high, cpu_high or memory_high (or remove [ha.load])",
            ));
        }
        monitor
            .validate()
            .map_err(|e| invalid(format!("ha.load.{}", e.field), e.reason))
    }
}

/// One `[[ha.peers]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaPeer {
    /// Its address.
    pub address: Ipv4Addr,
    /// The secret shared with it (tunnel authentication, hidden AVPs).
    pub secret: String,
}

impl Default for Ha {
    fn default() -> Self {
        let link = lns::PeerLink::default();
        Ha {
            address: None,
            peers: Vec::new(),
            peer_port: 1701,
            advertise: Vec::new(),
            refresh: 300,
            window: 64,
            hello: link.hello_interval.as_secs_f64(),
            dead: link.dead_interval.as_secs_f64(),
            retransmit: link.retransmission.initial.as_secs_f64(),
            retransmit_cap: link.retransmission.cap.as_secs_f64(),
            retries: link.retransmission.max_retries,
            ack_delay: link.ack_delay.as_secs_f64(),
            grace: 1.0,
            load: None,
        }
    }
}

/// `[radius]`: authentication and accounting servers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Radius {
    /// Authentication servers in order of preference; empty: the users
    /// file.
    pub auth: Vec<SocketAddr>,
    /// Accounting servers; empty: each auth server at its port + 1.
    pub acct: Vec<SocketAddr>,
    /// The secret shared with the servers.
    pub secret: Option<String>,
    /// Seconds between Interim-Updates; 0: only when the server sends
    /// Acct-Interim-Interval.
    pub interim: u64,
}

/// `[dataplane]` of an LNS: the AF_XDP fast path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LnsDataplane {
    /// Run the fast path; off, the daemon runs the control plane only.
    pub enabled: bool,
    /// The interface toward the LACs (L2TP).
    pub wan: String,
    /// The interface toward the core network (subscribers' IPv4).
    pub core: String,
    /// How XDP attaches.
    pub xdp_mode: XdpMode,
    /// How workers wait.
    pub poll_mode: PollMode,
    /// CPUs to pin the workers to (worker i on `cores[i % len]`); empty:
    /// no pinning.
    pub cores: Vec<usize>,
    /// Queues per interface, one worker each (veth has one).
    pub queues: u32,
    /// The core-side next hop for subscribers' traffic.
    pub core_next_hop: Option<Ipv4Addr>,
}

impl Default for LnsDataplane {
    fn default() -> Self {
        LnsDataplane {
            enabled: false,
            wan: "wan0".to_owned(),
            core: "core0".to_owned(),
            xdp_mode: XdpMode::Skb,
            poll_mode: PollMode::Adaptive,
            cores: Vec::new(),
            queues: 1,
            core_next_hop: None,
        }
    }
}

impl Default for LnsConfig {
    fn default() -> Self {
        LnsConfig {
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1701),
            hostname: "lnsd".to_owned(),
            secret: None,
            require_auth: false,
            hello: 60.0,
            proxy: ProxyMode::Accept,
            users: None,
            pool: vec!["100.64.0.0/22".to_owned()],
            gateway: None,
            dns: Vec::new(),
            radius: Radius::default(),
            dataplane: LnsDataplane::default(),
            control: Control::with_socket("/run/lnsd.sock"),
            ha: None,
        }
    }
}

impl LnsConfig {
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
        if self.listen.port() == 0 {
            return Err(invalid("listen", "needs a port (L2TP is 1701)"));
        }
        check_name("hostname", &self.hostname)?;
        check_secret("secret", &self.secret)?;
        if self.require_auth && self.secret.is_none() {
            return Err(invalid("require_auth", "needs `secret`"));
        }
        check_seconds("hello", self.hello, 0.0, 3600.0)?;
        if let Some(users) = &self.users {
            if users.as_os_str().is_empty() {
                return Err(invalid("users", "must name a file"));
            }
        }
        if self.pool.is_empty() {
            return Err(invalid("pool", "needs at least one range"));
        }
        for (i, range) in self.pool.iter().enumerate() {
            AddressPool::parse(std::slice::from_ref(range)).map_err(|e| {
                invalid(
                    format!("pool[{i}]"),
                    format!("{range:?}: {e} (give \"a.b.c.d/len\" or \"first-last\")"),
                )
            })?;
        }
        self.address_pool().map_err(|e| invalid("pool", e))?;
        if let Some(g) = self.gateway {
            check_unicast("gateway", g)?;
        }
        if self.dns.len() > 2 {
            return Err(invalid("dns", "at most two servers (primary, secondary)"));
        }
        for (i, d) in self.dns.iter().enumerate() {
            check_unicast(&format!("dns[{i}]"), *d)?;
        }
        let r = &self.radius;
        check_secret("radius.secret", &r.secret)?;
        if !r.auth.is_empty() && r.secret.is_none() {
            return Err(invalid(
                "radius.secret",
                "required when radius.auth names a server",
            ));
        }
        if r.auth.is_empty() && !r.acct.is_empty() {
            return Err(invalid(
                "radius.acct",
                "accounting servers need radius.auth (without it the users file authenticates and nothing is accounted)",
            ));
        }
        if r.interim != 0 && r.interim < 10 {
            return Err(invalid(
                "radius.interim",
                "give 0 (only when the server asks) or at least 10 seconds",
            ));
        }
        let d = &self.dataplane;
        if d.enabled {
            check_interface("dataplane.wan", &d.wan)?;
            check_interface("dataplane.core", &d.core)?;
            if d.wan == d.core {
                return Err(invalid("dataplane.core", "must differ from dataplane.wan"));
            }
            match d.core_next_hop {
                None => {
                    return Err(invalid(
                        "dataplane.core_next_hop",
                        "required when dataplane.enabled (the router on the core side, e.g. \"10.1.0.2\")",
                    ))
                }
                Some(a) => check_unicast("dataplane.core_next_hop", a)?,
            }
            if self.listen.ip().is_unspecified() {
                return Err(invalid(
                    "listen",
                    "the fast path needs the wan address, not 0.0.0.0 (e.g. \"10.0.0.11:1701\")",
                ));
            }
        }
        check_cores("dataplane.cores", &d.cores)?;
        if !(1..=64).contains(&d.queues) {
            return Err(invalid("dataplane.queues", "give 1 to 64"));
        }
        if let Some(ha) = &self.ha {
            self.validate_ha(ha)?;
        }
        self.control.validate()
    }

    fn validate_ha(&self, ha: &Ha) -> Result<(), Invalid> {
        if ha.peers.is_empty() {
            return Err(invalid(
                "ha.peers",
                "needs at least one peer ([[ha.peers]] with address and secret)",
            ));
        }
        for (i, p) in ha.peers.iter().enumerate() {
            check_unicast(&format!("ha.peers[{i}].address"), p.address)?;
            if p.secret.is_empty() {
                return Err(invalid(
                    format!("ha.peers[{i}].secret"),
                    "must not be empty: LNS-LNS tunnels are always authenticated",
                ));
            }
            if ha.peers[..i].iter().any(|q| q.address == p.address) {
                return Err(invalid(
                    format!("ha.peers[{i}].address"),
                    format!("{} is listed twice", p.address),
                ));
            }
        }
        match ha.address {
            Some(a) => check_unicast("ha.address", a)?,
            None if self.listen.ip().is_unspecified() => {
                return Err(invalid(
                    "ha.address",
                    "required when listen is 0.0.0.0: our address as the LACs know it (e.g. \"10.0.0.11\")",
                ))
            }
            None => {}
        }
        for (i, a) in ha.advertise.iter().enumerate() {
            check_unicast(&format!("ha.advertise[{i}]"), *a)?;
        }
        if ha.peer_port == 0 {
            return Err(invalid("ha.peer_port", "give the peers' L2TP port (1701)"));
        }
        if !(1..=4096).contains(&ha.window) {
            return Err(invalid("ha.window", "give 1 to 4096"));
        }
        check_seconds("ha.hello", ha.hello, 0.01, 3600.0)?;
        check_seconds("ha.dead", ha.dead, 0.01, 3600.0)?;
        check_seconds("ha.retransmit", ha.retransmit, 0.001, 60.0)?;
        check_seconds("ha.retransmit_cap", ha.retransmit_cap, ha.retransmit, 60.0)?;
        check_seconds("ha.ack_delay", ha.ack_delay, 0.0, ha.retransmit)?;
        if ha.ack_delay >= ha.retransmit {
            return Err(invalid(
                "ha.ack_delay",
                "must be less than ha.retransmit, or every message is retransmitted",
            ));
        }
        check_seconds("ha.grace", ha.grace, 0.0, 60.0)?;
        if ha.retries == 0 {
            return Err(invalid("ha.retries", "give at least 1"));
        }
        if let Some(load) = &ha.load {
            load.validate()?;
        }
        Ok(())
    }

    /// The node's HA settings from `[ha]`, if present.
    pub fn node_ha(&self) -> Option<lns::HaConfig> {
        let ha = self.ha.as_ref()?;
        let peers = ha
            .peers
            .iter()
            .map(|p| l2tp::LnsPeer {
                address: p.address,
                secret: p.secret.as_bytes().to_vec(),
            })
            .collect();
        let mut c = lns::HaConfig::new(ha.address.unwrap_or(*self.listen.ip()), peers);
        if !ha.advertise.is_empty() {
            c.advertise = ha.advertise.clone();
        }
        c.peer_port = ha.peer_port;
        c.adopted_grace = seconds(ha.grace);
        if let Some(load) = &ha.load {
            c.load = Some(load.monitor());
            c.switchover_kind = match load.switchover {
                LoadSwitchover::New => lns::SwitchoverType::NewSessions,
                LoadSwitchover::All => lns::SwitchoverType::All,
            };
        }
        c.offload.window = ha.window;
        c.offload.refresh_interval = (ha.refresh > 0).then(|| Duration::from_secs(ha.refresh));
        // The LNS-LNS receive window holds the whole offload window.
        c.peer_link = lns::PeerLink {
            hello_interval: seconds(ha.hello),
            dead_interval: seconds(ha.dead),
            retransmission: l2tp::Retransmission {
                initial: seconds(ha.retransmit),
                cap: seconds(ha.retransmit_cap),
                max_retries: ha.retries,
            },
            ack_delay: seconds(ha.ack_delay),
            receive_window: u16::try_from(ha.window.max(512)).unwrap_or(u16::MAX),
        };
        Some(c)
    }

    /// The Hello interval, `None` when disabled.
    pub fn hello_interval(&self) -> Option<Duration> {
        (self.hello > 0.0).then(|| seconds(self.hello))
    }

    /// The subscribers' address pool, with the gateway taken out of it when
    /// it lies inside, and the gateway.
    pub fn address_pool(&self) -> Result<(AddressPool, Ipv4Addr), String> {
        let mut pool = AddressPool::parse(&self.pool).map_err(|e| e.to_string())?;
        let gateway = match self.gateway {
            Some(g) => g,
            None => pool
                .ranges()
                .first()
                .ok_or("the pool holds no address")?
                .first(),
        };
        if pool.contains(gateway) {
            pool.reserve(gateway)
                .map_err(|e| format!("gateway {gateway}: {e}"))?;
        }
        Ok((pool, gateway))
    }

    /// The LNS node's configuration (L2TP, PPP, IPCP).
    pub fn node_config(&self, gateway: Ipv4Addr) -> lns::Config {
        let mut config = lns::Config::new(self.hostname.clone(), gateway);
        config.l2tp.secret = self.secret.as_ref().map(|s| s.as_bytes().to_vec());
        config.l2tp.require_authentication = self.require_auth;
        config.l2tp.hello_interval = self.hello_interval();
        config.ppp.proxy = match self.proxy {
            ProxyMode::Accept => ProxyPolicy::Accept,
            ProxyMode::Renegotiate => ProxyPolicy::Renegotiate,
        };
        config.primary_dns = self.dns.first().copied();
        config.secondary_dns = self.dns.get(1).copied();
        config.ha = self.node_ha();
        if config.ha.is_some() {
            // A LAC recovering a dead peer's calls sends an ICRQ and an
            // ICCN per session back to back: let 64 be unacknowledged
            // (RFC 2661 §5.8; a default socket buffer holds that many) and
            // acknowledge within 10 ms, so the last ICCNs of a burst, whose
            // acknowledgement releases the LAC's held upstream, do not wait
            // the default 50 ms for a ZLB.
            config.l2tp.receive_window = LAC_RECEIVE_WINDOW_HA;
            config.l2tp.ack_delay = LAC_ACK_DELAY_HA;
        }
        config
    }

    /// The accounting servers: `radius.acct`, or each auth server at its
    /// port + 1.
    pub fn accounting_servers(&self) -> Vec<SocketAddr> {
        if self.radius.acct.is_empty() {
            self.radius
                .auth
                .iter()
                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
                .collect()
        } else {
            self.radius.acct.clone()
        }
    }

    /// What differs between `self` (running) and `new` (reloaded).
    pub fn changes(&self, new: &LnsConfig) -> Changes {
        super::changes(self, new, LNS_RELOADABLE)
    }
}

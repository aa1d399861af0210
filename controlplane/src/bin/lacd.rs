//! `lacd`: the LAC daemon. It answers PPPoE discovery on the access
//! interface, carries each subscriber's PPP as an L2TP incoming call to an
//! LNS chosen from its list (preference, weight, lockout of failed LNSs),
//! relays or proxies LCP and authentication, and programs the AF_XDP fast
//! path so subscribers' frames go PPPoE ↔ L2TP without the control plane.
//!
//! Configuration: `--config FILE` (TOML, `controlplane::config::LacConfig`;
//! deploy/examples/lacd.toml); the flags override the file's keys. Operator
//! interfaces: the control socket (`l2tpctl`: `show tunnels|sessions|stats`,
//! `clear session ID` with the PPPoE SESSION_ID that `show sessions` lists,
//! `clear tunnel ID`), Prometheus metrics, SIGTERM or SIGINT for a clean
//! stop (PADT to every subscriber, CDN and StopCCN acknowledged within a
//! grace time), SIGHUP to reload the file.
//!
//! The access side: with the fast path (`[dataplane] enabled = true`) the
//! workers hand the control plane PPPoE discovery and the PPP control frames
//! of sessions they do not relay yet, send what it answers, and relay the
//! sessions that are up themselves. Without it lacd takes every frame of the
//! access interface itself ([`access::AccessPort`], an AF_XDP socket behind
//! a steering program that takes everything) and relays all PPP in the
//! control plane: slower, but no worker thread.

mod common;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use controlplane::config::{LacConfig, RelayMode, XdpMode};
use controlplane::ctl::{Clear, HaCommand, Json, Reply, Request, Show};
use controlplane::driver::{os_rng, Driver};
use controlplane::fastpath::lac::LacFastpath;
use controlplane::fastpath::{FastpathConfig, FastpathSummary, Role};
use controlplane::l2tp::codes::{cdn, stop_ccn};
use controlplane::l2tp::{Endpoint, ResultCode, TunnelHandle};
use controlplane::lac::{self, EndCause, LnsEntry, Mode, Stage, SubscriberKey};
use controlplane::metrics::{HaGauges, Metrics, MetricsServer};
use controlplane::ppp::DownCause;
use controlplane::pppoe::RateLimit;
use controlplane::time::Instant;
use dataplane::wire::ethernet;
use serde::Serialize;
use tracing::{error, info, warn};

use common::ops::{self, Logging, Operator, Signals};
use common::{BoxError, L2tpNode};

/// Our Receive Window Size (RFC 2661 §4.4.3): an LNS answers a recovery's
/// ICRQs with ICRPs back to back, and with the RFC's 16 the later ones
/// wait for our acknowledgements. Not much more: a window's worth may
/// arrive back to back, and a default socket receive buffer (some 200 KiB,
/// a kilobyte or more per queued datagram) overflows at a few hundred; a
/// lost message then waits for the LNS's retransmission timeout, longer
/// than a fast dead interval (an LNS with a window of 256 lost its
/// recovery tunnel that way in the lab).
const RECEIVE_WINDOW: u16 = 64;
/// How often the fast path's counters are asked for.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long `show stats` waits for every worker's current counters.
const STATS_WAIT: Duration = Duration::from_millis(50);
/// With a fast path, how long an answered call's ICCN waits for the workers
/// to be programmed at most (`lac::Config::defer_connect`): the glue
/// connects within its own `CONNECT_LIMIT` (200 ms), so this only clears
/// calls of a control loop that is stuck.
const DEFER_CONNECT_LIMIT: Duration = Duration::from_secs(2);

/// How the LAC carries PPP.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// PPP passes through to the LNS.
    Relay,
    /// LCP and authentication here, handed over as proxy AVPs.
    Proxy,
}

/// An L2TPv2 LAC (RFC 2661) for PPPoE subscribers (RFC 2516). Reads its
/// configuration from --config (TOML; see deploy/examples/lacd.toml and the
/// README); the other flags override keys of the file (or of the defaults,
/// without one). Logs go to stderr (RUST_LOG, else the file's control.log,
/// else "info").
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The configuration file. SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Overrides `listen`: IPv4 address and UDP port for L2TP.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddrV4>,

    /// Overrides the `[[lns]]` list (repeat for more; preference 0,
    /// weight 1 each).
    #[arg(long, value_name = "ADDR:PORT")]
    lns: Vec<SocketAddrV4>,

    /// Overrides `secret`: the tunnel secret shared with the LNSs.
    #[arg(long)]
    secret: Option<String>,

    /// Overrides `hostname`.
    #[arg(long)]
    hostname: Option<String>,

    /// Overrides `mode`.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,

    /// Overrides `pppoe.interface`: the access interface.
    #[arg(long, value_name = "IFACE")]
    interface: Option<String>,

    /// Overrides `control.socket`: the control socket for l2tpctl.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Overrides `control.metrics`: serve Prometheus metrics here.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Stop after this many seconds, as on SIGTERM. Without it, lacd runs
    /// until it is told to stop.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,

    /// Probe mode (no PPPoE, no config file): open this many bare incoming
    /// calls on one tunnel to the first --lns, hold them --hold seconds
    /// logging what the LNS sends, close them and exit 0 (1 if they do not
    /// all come up within --timeout). For interop checks against an LNS.
    #[arg(long, value_name = "N")]
    sessions: Option<u32>,

    /// Probe mode: our address and port (default 0.0.0.0:0).
    #[arg(long, value_name = "ADDR:PORT", requires = "sessions")]
    bind: Option<SocketAddrV4>,

    /// Probe mode: challenge the LNS and refuse it without the secret.
    #[arg(long, requires = "secret")]
    require_auth: bool,

    /// Probe mode: seconds to keep the calls up once they all are.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 2,
        requires = "sessions"
    )]
    hold: u64,

    /// Probe mode: seconds the tunnel and every call get to come up.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 20,
        requires = "sessions"
    )]
    timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(sessions) = args.sessions {
        common::init_logging();
        return match probe::run(&args, sessions) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            // Logging is not set up yet: the filter is in the file.
            eprintln!("lacd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logging = Logging::init(config.control.log.as_deref());
    match run(&args, config, logging) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Where errors about the values are reported against.
fn source(args: &Args) -> &Path {
    args.config
        .as_deref()
        .unwrap_or(Path::new("(defaults and command line)"))
}

/// The file (or the defaults) with the flags applied, checked.
fn load_config(args: &Args) -> Result<LacConfig, BoxError> {
    let mut c = match &args.config {
        Some(path) => LacConfig::load(path)?,
        None => LacConfig::default(),
    };
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if !args.lns.is_empty() {
        c.lns = args
            .lns
            .iter()
            .map(|&address| controlplane::config::LnsPeer {
                address,
                preference: 0,
                weight: 1,
            })
            .collect();
    }
    if let Some(v) = &args.secret {
        c.secret = Some(v.clone());
    }
    if args.require_auth {
        c.require_auth = true;
    }
    if let Some(v) = &args.hostname {
        c.hostname = v.clone();
    }
    if let Some(v) = args.mode {
        c.mode = match v {
            ModeArg::Relay => RelayMode::Relay,
            ModeArg::Proxy => RelayMode::Proxy,
        };
    }
    if let Some(v) = &args.interface {
        c.pppoe.interface = v.clone();
    }
    if let Some(v) = &args.socket {
        c.control.socket = v.clone();
    }
    if let Some(v) = args.metrics {
        c.control.metrics = Some(v);
    }
    c.validate(source(args))?;
    Ok(c)
}

/// The access interface's MAC address, from sysfs (in our namespace).
fn interface_mac(interface: &str) -> Result<ethernet::Address, BoxError> {
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("pppoe.interface {interface:?}: cannot read {path}: {e}"))?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("pppoe.interface {interface:?}: {path} holds {text:?}"))?;
    ethernet::Address::from_bytes(&bytes)
        .filter(|_| bytes.len() == 6)
        .ok_or_else(|| format!("pppoe.interface {interface:?}: not an Ethernet address").into())
}

/// The node's configuration from the file's.
fn node_config(config: &LacConfig, mac: ethernet::Address) -> lac::Config {
    let lns = config
        .lns
        .iter()
        .map(|p| LnsEntry {
            address: p.address,
            preference: p.preference,
            weight: p.weight,
        })
        .collect();
    let mut c = lac::Config::new(config.hostname.clone(), mac, lns);
    c.l2tp.secret = config.secret.as_ref().map(|s| s.as_bytes().to_vec());
    c.l2tp.require_authentication = config.require_auth;
    c.l2tp.hello_interval = config.hello_interval();
    if let (Some(hello), Some(dead)) = (c.l2tp.hello_interval, config.dead_interval()) {
        c.detect_failure_within(hello, dead);
    }
    c.l2tp.unreachable_timeout = config.unreachable_timeout();
    c.l2tp.receive_window = RECEIVE_WINDOW;
    if config.ha.enabled {
        let h = &config.ha;
        c.ha = Some(lac::HaPolicy {
            failure_switchover: h.failure_switchover,
            accept_switchover: h.accept_switchover,
            recovery_window: h.recovery_window,
            hold_limit: h.hold_limit,
            steer_time: h.steer_duration(),
            replay_window: h.replay_window(),
            ..lac::HaPolicy::default()
        });
    }
    c.mode = match config.mode {
        RelayMode::Relay => Mode::Relay,
        RelayMode::Proxy => Mode::Proxy,
    };
    c.lockout = config.lockout_duration();
    c.setup_timeout = config.setup_timeout_duration();
    c.local_address = config.listen;
    let p = &config.pppoe;
    c.pppoe.ac_name = p.ac_name.clone();
    c.pppoe.service_names = p.service_names.clone();
    c.pppoe.max_sessions = p.max_sessions as usize;
    c.pppoe.max_sessions_per_mac = p.max_sessions_per_mac as usize;
    if p.discovery_rate > 0 {
        c.pppoe.padi_limit = RateLimit {
            per_second: p.discovery_rate,
            burst: p.discovery_rate.saturating_mul(2),
        };
    } else {
        c.pppoe.padi_limit = RateLimit {
            per_second: u32::MAX,
            burst: u32::MAX,
        };
    }
    c
}

fn start_fastpath(config: &LacConfig, mac: ethernet::Address) -> Result<LacFastpath, BoxError> {
    let d = &config.dataplane;
    let mut fp = FastpathConfig::new(
        Role::Lac,
        vec![config.pppoe.interface.clone(), d.wan.clone()],
        vec![*config.listen.ip()],
    );
    fp.gateway = d.wan_next_hop;
    fp.poll_mode = d.poll_mode.into();
    fp.xdp_mode = match d.xdp_mode {
        XdpMode::Skb => dataplane::io::afxdp::XdpMode::Skb,
        XdpMode::Driver => dataplane::io::afxdp::XdpMode::DriverCopy,
        XdpMode::ZeroCopy => dataplane::io::afxdp::XdpMode::DriverZeroCopy,
    };
    fp.cores = d.cores.clone();
    fp.hold_depth = config.hold_depth;
    fp.hold_rings = config.ha.hold_rings;
    if config.ha.enabled {
        // The workers keep the upstream a failure switchover replays.
        fp.replay_window = config.ha.replay_window();
    }
    fp.queues = d.queues;
    info!(access = %config.pppoe.interface, wan = %d.wan, "starting the fast path");
    LacFastpath::start(fp, mac).map_err(|e| format!("fast path: {e}").into())
}

impl L2tpNode for lac::Node {
    fn endpoint(&self) -> &Endpoint {
        lac::Node::endpoint(self)
    }
    fn endpoint_mut(&mut self) -> &mut Endpoint {
        lac::Node::endpoint_mut(self)
    }
    fn log(event: &lac::Event) {
        log_lac_event(event);
    }
    fn close_tunnel(&mut self, now: Instant, tunnel: TunnelHandle, result: ResultCode) {
        // Its subscribers get a PADT too.
        lac::Node::close_tunnel(self, now, tunnel, result);
    }
}

fn log_lac_event(event: &lac::Event) {
    match event {
        lac::Event::TunnelUp {
            tunnel,
            lns,
            local_tunnel_id,
            peer_tunnel_id,
        } => info!(
            tunnel = tunnel.0,
            %lns, local_tunnel_id, peer_tunnel_id, "tunnel up"
        ),
        lac::Event::TunnelDown {
            tunnel,
            lns,
            reason,
            ..
        } => warn!(tunnel = tunnel.0, %lns, ?reason, "tunnel down"),
        lac::Event::CallAnswered(call) => tracing::debug!(
            subscriber = %call.subscriber.mac,
            pppoe_session = call.subscriber.session_id,
            lns = %call.peer,
            tunnel_ids = ?(call.local_tunnel_id, call.peer_tunnel_id),
            session_ids = ?(call.local_session_id, call.peer_session_id),
            "call answered: programming the fast path before the ICCN"
        ),
        lac::Event::CallAbandoned {
            subscriber,
            local_tunnel_id,
            local_session_id,
        } => tracing::debug!(
            subscriber = %subscriber.mac,
            pppoe_session = subscriber.session_id,
            local_tunnel_id,
            local_session_id,
            "answered call abandoned before it was up"
        ),
        lac::Event::SessionUp(up) => match up.moved_from {
            // Per call at debug: a recovery moves hundreds at once, and the
            // node sums each up in one line ("HA: recovery calls done").
            Some(from) => tracing::debug!(
                subscriber = %up.subscriber.mac,
                pppoe_session = up.subscriber.session_id,
                lns = %up.peer,
                tunnel_ids = ?(up.local_tunnel_id, up.peer_tunnel_id),
                session_ids = ?(up.local_session_id, up.peer_session_id),
                from_ids = ?(from.local_tunnel_id, from.local_session_id),
                epoch = from.epoch,
                make_before_break = from.make_before_break,
                "HA: call moved, up on the new LNS"
            ),
            None => info!(
                subscriber = %up.subscriber.mac,
                pppoe_session = up.subscriber.session_id,
                lns = %up.peer,
                tunnel_ids = ?(up.local_tunnel_id, up.peer_tunnel_id),
                session_ids = ?(up.local_session_id, up.peer_session_id),
                setup_ms = up.setup_time.as_millis() as u64,
                failovers = up.failovers,
                "call up"
            ),
        },
        lac::Event::SessionDown(down) => info!(
            subscriber = %down.subscriber.mac,
            pppoe_session = down.subscriber.session_id,
            lns = ?down.lns,
            cause = ?down.cause,
            was_up = down.was_up,
            "session down"
        ),
        lac::Event::LnsLockedOut { addr, .. } => {
            warn!(lns = %addr, "LNS failed a call: locked out")
        }
        lac::Event::Holding {
            subscriber,
            local_tunnel_id,
            local_session_id,
            replay,
        } => tracing::debug!(
            subscriber = %subscriber.mac,
            pppoe_session = subscriber.session_id,
            local_tunnel_id,
            local_session_id,
            replay_ms = replay.as_millis() as u64,
            "HA: call lost with its LNS, upstream held while it is recovered on a peer"
        ),
        lac::Event::SwitchoverRequested {
            lns,
            kind,
            granted,
            sessions,
        } => {
            if *granted {
                info!(%lns, ?kind, sessions, "HA: switchover requested by the LNS, granted")
            } else {
                warn!(%lns, ?kind, "HA: switchover requested by the LNS, denied")
            }
        }
        lac::Event::SessionReleased {
            subscriber,
            local_tunnel_id,
            local_session_id,
        } => info!(
            subscriber = %subscriber.mac,
            pppoe_session = subscriber.session_id,
            local_tunnel_id,
            local_session_id,
            "HA: moved call's old session released at its LNS"
        ),
    }
}

/// The `reason` label of a session that ended before its call came up.
fn failure_reason(cause: &EndCause) -> &'static str {
    match cause {
        EndCause::SubscriberTerminated => "subscriber_terminated",
        EndCause::LnsDisconnected(_) => "lns_disconnected",
        EndCause::TunnelDown(_) => "tunnel_down",
        EndCause::NoLnsAvailable => "no_lns",
        EndCause::Ppp(DownCause::AuthRefused | DownCause::AuthTimeout) => "auth_failed",
        EndCause::Ppp(_) => "ppp_failed",
        EndCause::AdminClear => "admin_clear",
        EndCause::L2tpError(_) => "l2tp_error",
    }
}

/// One row of `show tunnels`.
#[derive(Serialize)]
struct TunnelRow {
    id: u64,
    local_tid: u16,
    peer_tid: u16,
    lns: String,
    state: String,
    sessions: usize,
    ctl_sent: u64,
    ctl_retransmitted: u64,
}

/// One row of `show sessions`.
#[derive(Serialize)]
struct SessionRow {
    /// The PPPoE SESSION_ID (unique on the access port).
    id: u16,
    mac: String,
    state: String,
    lns: Option<String>,
    tunnel: Option<u64>,
    local_tid: Option<u16>,
    local_sid: Option<u16>,
    peer_sid: Option<u16>,
    uptime_s: u64,
    ppp_up: u64,
    ppp_down: u64,
}

/// The answer to `ha status`.
#[derive(Serialize)]
struct HaStatusReply {
    role: &'static str,
    enabled: bool,
    failure_switchover: Option<bool>,
    accept_switchover: Option<bool>,
    hello_ms: Option<u64>,
    dead_ms: Option<u64>,
    unreachable_ms: Option<u64>,
    /// Subscribers whose call died with its LNS, held while recovered.
    holding: usize,
    /// Subscribers being moved by a load switchover.
    moving: usize,
    /// Of the sessions in the workers, those holding their upstream for a
    /// move.
    fastpath_holding: Option<usize>,
    /// Old ids still reaching moved sessions (make-before-break).
    fastpath_aliases: Option<usize>,
    /// Tunnels gone at the node the workers keep for held sessions.
    fastpath_kept_tunnels: Option<usize>,
    lns: Vec<HaRow>,
}

/// One row of `ha status`: an LNS as the LAC's HA sees it.
#[derive(Serialize)]
struct HaRow {
    lns: String,
    /// Its peers (Peer-LNS-Address), in preference order.
    peers: String,
    /// Seconds new calls still avoid it ("new sessions only" steering).
    steered_s: Option<u64>,
    /// Sessions whose call died with it, held while recovered on a peer.
    holding: usize,
    /// Sessions moving away from it (load switchover, still forwarding).
    moving: usize,
    recoveries_started: u64,
    recoveries_done: u64,
    recoveries_failed: u64,
    switchover_requests: u64,
    switchovers_granted: u64,
    switchovers_denied: u64,
}

fn ha_rows(status: &lac::LacHaStatus, now: Instant) -> Vec<HaRow> {
    status
        .lns
        .iter()
        .map(|l| HaRow {
            lns: l.lns.to_string(),
            peers: if l.peers.is_empty() {
                "-".to_owned()
            } else {
                l.peers
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            steered_s: l
                .steered_until
                .filter(|&t| t > now)
                .map(|t| t.saturating_duration_since(now).as_secs()),
            holding: l.holding,
            moving: l.moving,
            recoveries_started: l.recoveries_started,
            recoveries_done: l.recoveries_done,
            recoveries_failed: l.recoveries_failed,
            switchover_requests: l.switchover_requests,
            switchovers_granted: l.switchovers_granted,
            switchovers_denied: l.switchovers_denied,
        })
        .collect()
}

/// Everything the loop works with.
struct Daemon {
    driver: Driver<lac::Node>,
    fastpath: Option<LacFastpath>,
    /// The access interface when there is no fast path.
    access: Option<access::AccessPort>,
    summary: Option<FastpathSummary>,
    metrics: Metrics,
    /// Kept for its thread: dropping it stops the metrics server.
    _metrics_server: Option<MetricsServer>,
    control_requests: u64,
    logging: Logging,
    config: LacConfig,
}

impl Daemon {
    fn handle(&mut self, request: Request) -> Reply {
        let now = self.driver.now();
        match request {
            Request::Show {
                what: Show::Tunnels,
            } => Reply::ok(&self.tunnels()),
            Request::Show {
                what: Show::Sessions,
            } => Reply::ok(&self.sessions(now)),
            Request::Show { what: Show::Stats } => {
                self.fresh_fastpath_summary();
                Reply::ok(&self.stats())
            }
            Request::Clear {
                what: Clear::Session,
                id,
            } => {
                let node = self.driver.node_mut();
                let Some(key) = node
                    .sessions()
                    .into_iter()
                    .map(|s| s.subscriber)
                    .find(|k| u64::from(k.session_id) == id)
                else {
                    return Reply::error(format!("no session {id} (see show sessions)"));
                };
                node.clear_session(now, key);
                self.flush_access();
                info!(session = id, "session cleared by the operator");
                Reply::ok(&format!("session {id} cleared (CDN to the LNS, PADT)"))
            }
            Request::Clear {
                what: Clear::Tunnel,
                id,
            } => {
                let node = self.driver.node_mut();
                if !node.clear_tunnel(now, TunnelHandle(id)) {
                    return Reply::error(format!("no tunnel {id} (see show tunnels)"));
                }
                self.flush_access();
                info!(tunnel = id, "tunnel cleared by the operator");
                Reply::ok(&format!(
                    "tunnel {id} closing (StopCCN, PADT to its subscribers)"
                ))
            }
            Request::Ha { args } => match HaCommand::parse(&args) {
                Ok(HaCommand::Status) => Reply::ok(&self.ha_status(now)),
                Ok(other) => Reply::error(format!(
                    "ha {other}: an LNS asks for that (run it against lnsd); lacd answers `ha status`"
                )),
                Err(e) => Reply::error(e),
            },
        }
    }

    /// `ha status`: the policy, then one row per LNS (its peers, steering,
    /// sessions holding or moving, recoveries and switchovers), and what
    /// the fast path holds.
    fn ha_status(&self, now: Instant) -> HaStatusReply {
        let status = self.driver.node().ha_status();
        let policy = status.policy.as_ref();
        HaStatusReply {
            role: "lac",
            enabled: status.enabled,
            failure_switchover: policy.map(|p| p.failure_switchover),
            accept_switchover: policy.map(|p| p.accept_switchover),
            hello_ms: self.config.ha.enabled.then_some(self.config.ha.hello_ms),
            dead_ms: self.config.ha.enabled.then_some(self.config.ha.dead_ms),
            unreachable_ms: self
                .config
                .ha
                .enabled
                .then_some(self.config.ha.unreachable_ms),
            holding: status.lns.iter().map(|l| l.holding).sum(),
            moving: status.lns.iter().map(|l| l.moving).sum(),
            fastpath_holding: self.fastpath.as_ref().map(|f| f.holding_sessions()),
            fastpath_aliases: self.fastpath.as_ref().map(|f| f.aliases()),
            fastpath_kept_tunnels: self.fastpath.as_ref().map(|f| f.kept_tunnels()),
            lns: ha_rows(&status, now),
        }
    }

    /// Send what the node queued for the access port now (PADTs after a
    /// clear), not at the next slice. Returns how many punts the fast path
    /// handled.
    fn flush_access(&mut self) -> usize {
        let now = self.driver.now();
        if let Some(fp) = self.fastpath.as_mut() {
            return fp.service(self.driver.node_mut(), now);
        }
        if let Some(port) = self.access.as_mut() {
            port.service(self.driver.node_mut(), now);
        } else {
            let mut buf = Vec::new();
            while self.driver.node_mut().poll_access_frame(&mut buf) {}
        }
        0
    }

    fn tunnels(&self) -> Vec<TunnelRow> {
        let node = self.driver.node();
        node.tunnels()
            .into_iter()
            .map(|t| {
                let stats = node.endpoint().tunnel_stats(t.tunnel).unwrap_or_default();
                TunnelRow {
                    id: t.tunnel.0,
                    local_tid: t.tunnel_ids.0,
                    peer_tid: t.tunnel_ids.1,
                    lns: t.lns.to_string(),
                    state: t
                        .state
                        .map_or("gone".to_owned(), |s| format!("{s:?}").to_lowercase()),
                    sessions: t.sessions,
                    ctl_sent: stats.control.sent,
                    ctl_retransmitted: stats.control.retransmitted,
                }
            })
            .collect()
    }

    fn sessions(&self, now: Instant) -> Vec<SessionRow> {
        self.driver
            .node()
            .sessions()
            .into_iter()
            .map(|s| SessionRow {
                id: s.subscriber.session_id,
                mac: s.subscriber.mac.to_string(),
                state: match s.stage {
                    Stage::Negotiating => "negotiating",
                    Stage::Calling => "calling",
                    Stage::Up => "up",
                }
                .to_owned(),
                lns: s.lns.map(|a| a.to_string()),
                tunnel: s.session.map(|h| h.tunnel.0),
                local_tid: s.tunnel_ids.map(|t| t.0),
                local_sid: s.session_ids.map(|t| t.0),
                peer_sid: s.session_ids.map(|t| t.1),
                uptime_s: now.saturating_duration_since(s.since).as_secs(),
                ppp_up: s.frames.0,
                ppp_down: s.frames.1,
            })
            .collect()
    }

    fn stats(&self) -> Json {
        let node = self.driver.node();
        let s = node.stats();
        let e = node.endpoint().stats();
        let p = node.discovery().stats();
        let d = self.driver.stats();
        let mut out: Vec<(String, Json)> = Vec::new();
        let mut put = |k: &str, v: u64| out.push((k.to_owned(), Json::Number(v.into())));
        put("tunnels", node.endpoint().tunnel_count() as u64);
        put("sessions", node.subscriber_count() as u64);
        put("sessions_up", node.up_count() as u64);
        put("sessions_requested", s.sessions_requested);
        put("sessions_refused", s.sessions_refused);
        put("sessions_down", s.sessions_down);
        put("failovers", s.failovers);
        put("lockouts", s.lockouts);
        put("proxy_authentications", s.proxy_authentications);
        put("access_frames", s.access_frames);
        put("malformed_frames", s.malformed_frames);
        put("unknown_session", s.unknown_session);
        put("queued_frames", s.queued_frames);
        put("queue_overflow", s.queue_overflow);
        put("relayed_upstream", s.upstream_frames);
        put("relayed_downstream", s.downstream_frames);
        put("ha_recoveries_started", s.recoveries_started);
        put("ha_recoveries_done", s.recoveries_done);
        put("ha_recoveries_failed", s.recoveries_failed);
        put("ha_switchover_requests", s.switchover_requests);
        put("ha_switchovers_granted", s.switchovers_granted);
        put("ha_switchovers_denied", s.switchovers_denied);
        put("ha_sessions_moved", s.sessions_moved);
        put("ha_hold_overflow", s.hold_overflow);
        put("ha_messages_malformed", s.ha_messages_malformed);
        put("padi_received", p.padi_received);
        put("pado_sent", p.pado_sent);
        put("padr_received", p.padr_received);
        put("pads_sent", p.pads_sent);
        put("padt_received", p.padt_received);
        put("padt_sent", p.padt_sent);
        put("discovery_dropped", p.dropped_total());
        put("discovery_refused", p.refused_total());
        put("datagrams_received", e.datagrams_received);
        put("udp_sent", d.sent);
        put("udp_received", d.received);
        put("udp_send_errors", d.send_errors);
        put("control_requests", self.control_requests);
        for (i, l) in node.lns_status().iter().enumerate() {
            put(&format!("lns{i}_sessions"), l.sessions as u64);
            put(
                &format!("lns{i}_locked_out"),
                u64::from(l.locked_out_until.is_some_and(|t| t > self.driver.now())),
            );
        }
        if let Some(summary) = &self.summary {
            let k = &summary.counters;
            put("fastpath_workers", summary.workers as u64);
            put("fastpath_sessions", summary.sessions as u64);
            put("fastpath_received", k.received);
            put("fastpath_transmitted", k.transmitted);
            put("fastpath_punted", k.punted.iter().sum());
            put("fastpath_dropped", k.dropped.iter().sum());
            put("fastpath_held", k.held);
            put("fastpath_flushed", k.flushed);
            for (name, n) in k.nonzero() {
                put(&format!("fastpath_{name}"), n);
            }
        }
        if let Some(fp) = &self.fastpath {
            let g = fp.stats();
            put("fastpath_ha_held", g.held);
            put("fastpath_ha_moved", g.moved);
            put("fastpath_ha_flushed", g.flushed);
            put("fastpath_ha_aliased", g.aliased);
            put("fastpath_ha_aliases_removed", g.aliases_removed);
            put("fastpath_ha_moves_reverted", g.moves_reverted);
            put("fastpath_ha_tunnels_kept", g.tunnels_kept);
            put("fastpath_program_errors", g.update_errors);
        }
        Json::Object(out)
    }

    fn refresh_metrics(&mut self) {
        let node = self.driver.node();
        let endpoint = node.endpoint();
        let metrics = &mut self.metrics;
        metrics.set_counts(node.subscriber_count(), endpoint.tunnel_count());
        metrics.observe_tunnels(endpoint.tunnels().filter_map(|t| {
            let s = endpoint.tunnel_stats(t)?;
            Some((t.0, s.control.sent, s.control.retransmitted))
        }));
        metrics.tick(std::time::Instant::now());
    }

    /// `show stats` answers with the workers' counters as of now, not as
    /// of the last periodic report (up to REPORT_EVERY old): an operator
    /// or a test reading them right after traffic stops must see all of
    /// it. Bounded: the control thread waits at most STATS_WAIT.
    fn fresh_fastpath_summary(&mut self) {
        if let Some(fp) = &mut self.fastpath {
            match fp.fastpath().fresh_reports(STATS_WAIT) {
                Ok(summary) => self.summary = Some(summary),
                Err(e) => warn!(error = %e, "fast path reports not requested"),
            }
        }
    }

    /// The HA counters as `l2tp_ha_events_total{event}` (the LNS-side
    /// gauges stay at zero on a LAC).
    fn refresh_ha_metrics(&mut self) {
        if !self.config.ha.enabled {
            return;
        }
        let s = self.driver.node().stats();
        let totals = [
            ("recoveries_started", s.recoveries_started),
            ("recoveries_done", s.recoveries_done),
            ("recoveries_failed", s.recoveries_failed),
            ("switchover_requests", s.switchover_requests),
            ("switchovers_granted", s.switchovers_granted),
            ("switchovers_denied", s.switchovers_denied),
            ("sessions_moved", s.sessions_moved),
            ("hold_overflow", s.hold_overflow),
        ];
        self.metrics.observe_ha(&totals, &HaGauges::default());
    }

    fn refresh_fastpath(&mut self) {
        if let Some(fp) = &mut self.fastpath {
            let summary = fp.fastpath().summary();
            self.metrics.observe_fastpath(&summary.counters);
            self.summary = Some(summary);
            if let Err(e) = fp.fastpath().request_reports() {
                warn!(error = %e, "fast path reports not requested");
            }
        }
    }

    /// SIGHUP: re-read the file, apply what can change at run time (the
    /// log filter, the lockout time), say what needs a restart.
    fn reload(&mut self, args: &Args) {
        if args.config.is_none() {
            warn!("SIGHUP: started without --config, nothing to reload");
            return;
        }
        let new = match load_config(args) {
            Ok(c) => c,
            Err(e) => {
                error!("SIGHUP: configuration not reloaded: {e}");
                return;
            }
        };
        let changes = self.config.changes(&new);
        if changes.is_empty() {
            info!("SIGHUP: configuration unchanged");
            return;
        }
        let mut applied = Vec::new();
        let mut restart = changes.restart.clone();
        for key in &changes.apply {
            match key.as_str() {
                "control.log" => {
                    let what = self.logging.set_filter(new.control.log.as_deref());
                    self.config.control.log = new.control.log.clone();
                    info!(key = "control.log", "{what}");
                    applied.push(key.clone());
                }
                "lockout" => {
                    self.driver.node_mut().set_lockout(new.lockout_duration());
                    self.config.lockout = new.lockout;
                    applied.push(key.clone());
                }
                // The discovery server takes its limits at start.
                _ => restart.push(key.clone()),
            }
        }
        if !restart.is_empty() {
            warn!(
                keys = %restart.join(", "),
                "SIGHUP: these changes take effect only after a restart"
            );
        }
        info!(applied = %applied.join(", "), "SIGHUP: configuration reloaded");
    }

    /// The clean stop: PADT to every subscriber, CDN for every call,
    /// StopCCN for every tunnel, acknowledged within the grace time.
    fn shutdown(&mut self) -> Result<(), BoxError> {
        let now = self.driver.now();
        let node = self.driver.node_mut();
        let keys: Vec<SubscriberKey> = node.sessions().into_iter().map(|s| s.subscriber).collect();
        info!(
            sessions = keys.len(),
            tunnels = node.endpoint().tunnel_count(),
            "stopping: PADT and CDN for every subscriber, StopCCN for every tunnel"
        );
        for key in keys {
            let result = ResultCode::with_message(cdn::ADMINISTRATIVE, "LAC shutting down");
            node.close_session(now, key, result);
        }
        self.flush_access();
        let acknowledged = common::shutdown(&mut self.driver, stop_ccn::SHUTTING_DOWN)?;
        if !acknowledged {
            warn!("not every LNS acknowledged within the grace time");
        }
        if let Some(mut fp) = self.fastpath.take() {
            fp.stop();
        }
        Ok(())
    }
}

fn run(args: &Args, config: LacConfig, logging: Logging) -> Result<(), BoxError> {
    let signals = Signals::install()?;
    let mac = interface_mac(&config.pppoe.interface)?;
    let rng = os_rng()?;
    let mut node_config = node_config(&config, mac);
    if config.dataplane.enabled {
        // The workers must know each session before the LNS has our ICCN
        // (RFC 2661 §7.4.1): its first PPP frames follow it at once.
        node_config.defer_connect = Some(DEFER_CONNECT_LIMIT);
    }
    let node = lac::Node::new(node_config, Instant::ZERO, rng)?;
    let (fastpath, access) = if config.dataplane.enabled {
        (Some(start_fastpath(&config, mac)?), None)
    } else {
        let port = access::AccessPort::open(&config.pppoe.interface).map_err(|e| {
            format!(
                "pppoe.interface {}: cannot take its frames (AF_XDP): {e}",
                config.pppoe.interface
            )
        })?;
        info!(
            access = %config.pppoe.interface,
            queues = port.queues(),
            "no fast path: the control plane relays every PPP frame"
        );
        (None, Some(port))
    };
    let socket = UdpSocket::bind(config.listen)
        .map_err(|e| format!("cannot listen on {} (listen): {e}", config.listen))?;
    let driver = Driver::new(socket, node)?;
    let Operator {
        mut control,
        metrics,
        metrics_server,
    } = Operator::start(&config.control)?;
    info!(
        listen = %driver.local_addr()?,
        host_name = %config.hostname,
        access = %config.pppoe.interface,
        %mac,
        lns = ?config.lns.iter().map(|l| l.address).collect::<Vec<_>>(),
        mode = ?config.mode,
        fastpath = fastpath.is_some(),
        "listening"
    );
    let mut daemon = Daemon {
        driver,
        fastpath,
        access,
        summary: None,
        metrics,
        _metrics_server: metrics_server,
        control_requests: 0,
        logging,
        config,
    };

    ops::schedule_control_thread(daemon.config.control.realtime_priority);
    let slice = if daemon.fastpath.is_some() || daemon.access.is_some() {
        ops::FASTPATH_SLICE
    } else {
        ops::SLICE
    };
    let end = args
        .duration
        .map(|s| daemon.driver.now() + Duration::from_secs(s));
    let mut next_report = daemon.driver.now();
    let mut pace = ops::Pace::Idle;
    loop {
        if signals.terminate_requested() {
            info!("asked to stop");
            break;
        }
        if end.is_some_and(|e| daemon.driver.now() >= e) {
            info!("duration reached");
            break;
        }
        if signals.take_reload() {
            daemon.reload(args);
        }
        let mut received = 0;
        if pace == ops::Pace::Busy {
            received = daemon.driver.receive_waiting(ops::CONTROL_BURST)?;
        }
        let now = daemon.driver.now();
        let until = now + pace.wait(slice);
        let deadline = end.map_or(until, |e| e.min(until));
        let Daemon {
            driver,
            fastpath,
            metrics,
            ..
        } = &mut daemon;
        driver.run_until(deadline, |_, event| {
            if let Some(fp) = fastpath.as_mut() {
                // Before anything else: the tables follow the node.
                fp.program(&event);
            }
            log_lac_event(&event);
            match &event {
                lac::Event::SessionUp(_) => metrics.session_set_up(),
                lac::Event::SessionDown(d) if !d.was_up => {
                    metrics.session_setup_failed(failure_reason(&d.cause))
                }
                _ => {}
            }
            ControlFlow::Continue(())
        })?;
        let punts = daemon.flush_access();
        let waiting = daemon
            .fastpath
            .as_ref()
            .is_some_and(|fp| fp.waiting_for_workers());
        pace = ops::Pace::after(punts > 0 || received > 0, waiting);
        control.poll(|request| daemon.handle(request));
        daemon.control_requests = control.stats().requests;
        if pace == ops::Pace::Idle {
            // Once the burst is served: the scan is over every tunnel.
            daemon.refresh_metrics();
        }
        if daemon.driver.now() >= next_report {
            next_report = daemon.driver.now() + REPORT_EVERY;
            daemon.refresh_fastpath();
            daemon.refresh_ha_metrics();
        }
    }
    daemon.shutdown()
}

/// The probe mode of `--sessions`: the L2TP side alone, as lacd was before
/// it had subscribers (deploy/e2e/interop.sh dials l2tpns with it).
mod probe {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::ops::ControlFlow;
    use std::time::Duration;

    use controlplane::driver::{os_rng, Driver};
    use controlplane::l2tp::codes::{cdn, stop_ccn};
    use controlplane::l2tp::{CallParams, Config, Endpoint, Event, ResultCode};
    use tracing::{info, warn};

    use super::common::{self, BoxError};
    use super::Args;

    pub(super) fn run(args: &Args, count: u32) -> Result<(), BoxError> {
        let lns = *args
            .lns
            .first()
            .ok_or("probe mode (--sessions) needs --lns")?;
        let bind = args
            .bind
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let hostname = args.hostname.clone().unwrap_or_else(|| "lacd".to_owned());
        let mut config = Config::lac(hostname);
        config.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
        config.require_authentication = args.require_auth;
        let endpoint = Endpoint::new(config, os_rng()?)?;
        let socket =
            UdpSocket::bind(bind).map_err(|e| format!("cannot bind {} (--bind): {e}", bind))?;
        let mut driver = Driver::new(socket, endpoint)?;
        info!(local = %driver.local_addr()?, lns = %lns, "connecting");

        let now = driver.now();
        let tunnel = driver.node_mut().connect(now, lns)?;
        let mut sessions = Vec::new();
        for _ in 0..count {
            // The ICRQs wait in the endpoint until the tunnel is up.
            sessions.push(
                driver
                    .node_mut()
                    .open_session(now, tunnel, CallParams::default())?,
            );
        }

        // Up: the tunnel and every session.
        let mut up = 0u32;
        let mut failure = None;
        let deadline = driver.now() + Duration::from_secs(args.timeout);
        driver.run_until(deadline, |_, event| {
            common::log_event(&event);
            match &event {
                Event::SessionUp { .. } => up += 1,
                Event::SessionDown { .. } => failure = Some("a session went down while coming up"),
                Event::TunnelDown { .. } => failure = Some("the tunnel went down while coming up"),
                _ => {}
            }
            if failure.is_some() || up == count {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        if let Some(why) = failure {
            return Err(why.into());
        }
        if up < count {
            return Err(format!(
                "only {up} of {} sessions came up within {} s (--timeout)",
                count, args.timeout
            )
            .into());
        }
        info!(sessions = up, hold_seconds = args.hold, "all sessions up");

        // Hold: log what the LNS sends (its PPP, in data messages).
        let mut lost = false;
        let deadline = driver.now() + Duration::from_secs(args.hold);
        driver.run_until(deadline, |_, event| {
            common::log_event(&event);
            lost |= matches!(event, Event::TunnelDown { .. });
            if lost {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        if lost {
            return Err("the LNS closed the tunnel while the sessions were up".into());
        }

        // Down: CDN for each call, then StopCCN, each acknowledged.
        let now = driver.now();
        for session in sessions {
            if let Err(e) =
                driver
                    .node_mut()
                    .close_session(now, session, ResultCode::new(cdn::ADMINISTRATIVE))
            {
                warn!(session = session.id, "cannot close session: {e}");
            }
        }
        if !common::settle(&mut driver, common::SHUTDOWN_GRACE)? {
            warn!("the LNS did not acknowledge every CDN");
        }
        if !common::shutdown(&mut driver, stop_ccn::GENERAL_REQUEST)? {
            return Err("the LNS did not acknowledge our StopCCN".into());
        }
        Ok(())
    }
}

/// The access interface without a fast path: every frame of it through one
/// AF_XDP socket per receive queue, read and written by the control thread.
mod access {
    use controlplane::lac;
    use controlplane::time::Instant;
    use dataplane::io::afxdp::{
        AfXdpConfig, AfXdpError, AfXdpPort, Steering, SteeringOptions, XdpMode,
    };
    use dataplane::io::{Descriptor, Port};

    /// Frames taken per queue and turn.
    const BURST: usize = 64;
    /// Frames taken per [`AccessPort::service`] at most, so one busy port
    /// does not starve the L2TP side.
    const PER_SERVICE: usize = 1024;
    /// Receive queues looked for at most.
    const MAX_QUEUES: u32 = 64;

    /// The access interface's frames, all of them (the kernel sees none:
    /// the interface carries PPPoE only).
    pub(super) struct AccessPort {
        ports: Vec<AfXdpPort>,
        // Held for as long as the ports: dropping it detaches the program.
        _steering: Steering,
        received: [Descriptor; BURST],
        /// Frames the node sent that found no room.
        pub(super) send_drops: u64,
    }

    impl AccessPort {
        /// Attach the steering program (generic XDP: any interface) to
        /// `interface` and open a socket on each of its receive queues, in
        /// the calling thread's network namespace.
        pub(super) fn open(interface: &str) -> Result<AccessPort, AfXdpError> {
            let steering = Steering::attach_with(
                interface,
                XdpMode::Skb,
                SteeringOptions {
                    everything: true,
                    ..SteeringOptions::default()
                },
            )?;
            let mut ports = vec![AfXdpPort::open(
                &AfXdpConfig::new(interface, 0),
                Some(&steering),
            )?];
            // The queues are found by binding until the kernel refuses a
            // queue id that does not exist.
            for q in 1..MAX_QUEUES {
                match AfXdpPort::open(&AfXdpConfig::new(interface, q), Some(&steering)) {
                    Ok(port) => ports.push(port),
                    Err(_) => break,
                }
            }
            Ok(AccessPort {
                ports,
                _steering: steering,
                received: [Descriptor::default(); BURST],
                send_drops: 0,
            })
        }

        /// Receive queues served.
        pub(super) fn queues(&self) -> usize {
            self.ports.len()
        }

        /// Frames in to the node, the node's frames out.
        pub(super) fn service(&mut self, node: &mut lac::Node, now: Instant) {
            let mut taken = 0;
            for port in &mut self.ports {
                while taken < PER_SERVICE {
                    let n = port.receive(&mut self.received);
                    if n == 0 {
                        break;
                    }
                    taken += n;
                    for d in &self.received[..n] {
                        if let Some(frame) = port.frame(d.frame).get(d.range()) {
                            node.handle_access_frame(now, frame);
                        }
                        port.free(*d);
                    }
                }
            }
            let mut frame = Vec::new();
            let Some(port) = self.ports.first_mut() else {
                return;
            };
            let mut sent = false;
            while node.poll_access_frame(&mut frame) {
                let Some(mut d) = port.alloc() else {
                    self.send_drops += 1;
                    continue;
                };
                let start = d.offset as usize;
                let Some(room) = port.frame_mut(d.frame).get_mut(start..start + frame.len()) else {
                    port.free(d);
                    self.send_drops += 1;
                    continue;
                };
                room.copy_from_slice(&frame);
                d.len = frame.len() as u32;
                if port.transmit(&[d]) == 0 {
                    port.free(d);
                    self.send_drops += 1;
                    continue;
                }
                sent = true;
            }
            if sent {
                port.flush();
            }
        }
    }
}

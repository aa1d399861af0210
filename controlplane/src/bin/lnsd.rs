//! `lnsd`: the LNS daemon. It accepts tunnels and incoming calls from LACs,
//! terminates each subscriber's PPP (LCP, PAP/CHAP, IPCP), authenticates
//! against a local users file or RADIUS, assigns addresses from a pool,
//! forwards the subscribers' IPv4 through the AF_XDP fast path when
//! `[dataplane] enabled = true`, and logs every session up and down with the
//! user and the address.
//!
//! Configuration: `--config FILE` (TOML, `controlplane::config::LnsConfig`;
//! deploy/examples/lnsd.toml); the flags override the file's keys. Operator
//! interfaces: the control socket (`l2tpctl`), Prometheus metrics, SIGTERM
//! or SIGINT for a clean stop (CDN for every call and StopCCN for every
//! tunnel, acknowledged within a grace time), SIGHUP to reload the file.
//!
//! HA (`[ha]`): the node peers with the other LNSs, offloads its sessions
//! and adopts theirs; lnsd logs what happens (adoptions, moves, the LACs'
//! answers to switchover requests), samples the machine's CPU and memory
//! once a second for the load monitor (`[ha.load]`), and answers `l2tpctl
//! ha status|drain|switchover|failback`.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use controlplane::aaa::radius::{Client, ClientConfig, Server};
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::config::{LnsConfig, ProxyMode, XdpMode};
use controlplane::ctl::{
    Clear, ControlServer, HaCommand, Json, Reply, Request, Show, SwitchoverKind,
};
use controlplane::driver::{os_rng, Driver};
use controlplane::fastpath::lns::LnsFastpath;
use controlplane::fastpath::{FastpathConfig, FastpathSummary, Role};
use controlplane::ha::load::LoadSample;
use controlplane::l2tp::codes::stop_ccn;
use controlplane::l2tp::{ResultCode, SessionHandle, TunnelHandle};
use controlplane::lns::{self, EndCause};
use controlplane::metrics::{HaGauges, Metrics, MetricsServer};
use controlplane::ppp::DownCause;
use controlplane::time::Instant;
use dataplane::wire::control::SwitchoverAction;
use serde::Serialize;
use tracing::{error, info, warn};

use common::load::MachineLoad;
use common::ops::{self, Logging, Operator, Signals};
use common::BoxError;

/// How often the fast path's counters are asked for (and the metrics
/// refreshed from them; `show stats` asks afresh).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long `show stats` waits for every worker's current counters.
const STATS_WAIT: Duration = Duration::from_millis(50);
/// How often the metrics are refreshed from the node (a scrape sees values
/// at most this old).
const METRICS_EVERY: Duration = Duration::from_millis(100);
/// How often the machine's load is sampled for the HA load monitor.
const LOAD_EVERY: Duration = Duration::from_secs(1);

/// What to do with the LAC's proxy LCP and authentication (RFC 2661
/// §4.4.5).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proxy {
    /// Take the LAC's negotiation when acceptable.
    Accept,
    /// Always renegotiate LCP with the subscriber.
    Renegotiate,
}

/// An L2TPv2 LNS (RFC 2661) that terminates PPP. Reads its configuration
/// from --config (TOML; see deploy/examples/lnsd.toml and the README); the
/// other flags override keys of the file (or of the defaults, without
/// one). Logs go to stderr (RUST_LOG, else the file's control.log, else
/// "info").
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The configuration file. SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Overrides `listen`: IPv4 address and UDP port for L2TP.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddrV4>,

    /// Overrides `secret`: the tunnel secret shared with the LACs.
    #[arg(long)]
    secret: Option<String>,

    /// Overrides `require_auth` (to true): challenge every LAC.
    #[arg(long)]
    require_auth: bool,

    /// Overrides `hostname`.
    #[arg(long)]
    hostname: Option<String>,

    /// Overrides `hello`: seconds between Hellos, 0 disables.
    #[arg(long, value_name = "SECONDS")]
    hello: Option<u64>,

    /// Overrides `users`: the local users file.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,

    /// Overrides `pool` (repeat for more ranges).
    #[arg(long, value_name = "RANGE")]
    pool: Vec<String>,

    /// Overrides `gateway`.
    #[arg(long, value_name = "ADDR")]
    gateway: Option<Ipv4Addr>,

    /// Overrides `dns` (give it twice for a secondary).
    #[arg(long, value_name = "ADDR")]
    dns: Vec<Ipv4Addr>,

    /// Overrides `radius.auth` (repeat for failover).
    #[arg(long, value_name = "ADDR:PORT")]
    radius: Vec<SocketAddr>,

    /// Overrides `radius.acct`.
    #[arg(long, value_name = "ADDR:PORT")]
    radius_acct: Vec<SocketAddr>,

    /// Overrides `radius.secret`.
    #[arg(long, value_name = "SECRET")]
    radius_secret: Option<String>,

    /// Overrides `radius.interim`.
    #[arg(long, value_name = "SECONDS")]
    interim: Option<u64>,

    /// Overrides `proxy`.
    #[arg(long, value_enum)]
    proxy: Option<Proxy>,

    /// Overrides `control.socket`: the control socket for l2tpctl.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Overrides `control.metrics`: serve Prometheus metrics here.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Stop after this many seconds, as on SIGTERM. Without it, lnsd runs
    /// until it is told to stop.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            // Logging is not set up yet: the filter is in the file.
            eprintln!("lnsd: {e}");
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
fn load_config(args: &Args) -> Result<LnsConfig, BoxError> {
    let mut c = match &args.config {
        Some(path) => LnsConfig::load(path)?,
        None => LnsConfig::default(),
    };
    if let Some(v) = args.listen {
        c.listen = v;
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
    if let Some(v) = args.hello {
        c.hello = v as f64;
    }
    if let Some(v) = &args.users {
        c.users = Some(v.clone());
    }
    if !args.pool.is_empty() {
        c.pool = args.pool.clone();
    }
    if let Some(v) = args.gateway {
        c.gateway = Some(v);
    }
    if !args.dns.is_empty() {
        c.dns = args.dns.clone();
    }
    if !args.radius.is_empty() {
        c.radius.auth = args.radius.clone();
    }
    if !args.radius_acct.is_empty() {
        c.radius.acct = args.radius_acct.clone();
    }
    if let Some(v) = &args.radius_secret {
        c.radius.secret = Some(v.clone());
    }
    if let Some(v) = args.interim {
        c.radius.interim = v;
    }
    if let Some(v) = args.proxy {
        c.proxy = match v {
            Proxy::Accept => ProxyMode::Accept,
            Proxy::Renegotiate => ProxyMode::Renegotiate,
        };
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

/// The users of `config.users` (none without one: everyone is refused).
/// A bad file is an error naming the file and the line.
fn users(config: &LnsConfig) -> Result<Users, BoxError> {
    let Some(path) = &config.users else {
        warn!("neither `users` nor `radius.auth`: every subscriber will be refused");
        return Ok(Users::parse("", "(none)")?);
    };
    let users = Users::load(path)?;
    info!(file = %path.display(), users = users.len(), "local users file");
    Ok(users)
}

/// What authenticates subscribers as `config` says: RADIUS when
/// `radius.auth` names a server, else the users file (whose contents come
/// back too, to tell on reload whether the file changed).
fn authenticator(config: &LnsConfig) -> Result<(Authenticator, Option<Users>), BoxError> {
    if config.radius.auth.is_empty() {
        let users = users(config)?;
        return Ok((Authenticator::local(users.clone()), Some(users)));
    }
    let secret = config
        .radius
        .secret
        .as_ref()
        .ok_or("radius.auth needs radius.secret")?
        .as_bytes()
        .to_vec();
    let server = |address: SocketAddr| Server {
        address,
        secret: secret.clone(),
    };
    let acct = config.accounting_servers();
    let mut client = ClientConfig::new(
        config.radius.auth.iter().copied().map(server).collect(),
        acct.iter().copied().map(server).collect(),
    );
    client.nas_identifier = Some(config.hostname.clone());
    client.nas_ip_address = Some(*config.listen.ip()).filter(|a| !a.is_unspecified());
    client.interim_interval =
        (config.radius.interim > 0).then(|| Duration::from_secs(config.radius.interim));
    info!(auth = ?config.radius.auth, acct = ?acct, "RADIUS");
    let client = Client::new(client, os_rng()?)?;
    Ok((Authenticator::Radius(Box::new(client)), None))
}

/// The CIDR blocks that cover `first..=last` exactly, for the steering
/// program's LPM trie.
fn prefixes(first: Ipv4Addr, last: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    let (mut at, end) = (u64::from(u32::from(first)), u64::from(u32::from(last)));
    let mut out = Vec::new();
    while at <= end {
        // The largest aligned block at `at` that stays within the range.
        let mut size = if at == 0 {
            1u64 << 32
        } else {
            at & at.wrapping_neg()
        };
        while at + size - 1 > end {
            size >>= 1;
        }
        let len = 32 - size.trailing_zeros() as u8;
        out.push((Ipv4Addr::from(at as u32), len));
        at += size;
    }
    out
}

fn start_fastpath(config: &LnsConfig, node: &mut lns::Node) -> Result<LnsFastpath, BoxError> {
    let d = &config.dataplane;
    let (pool, _) = config.address_pool()?;
    let mut fp = FastpathConfig::new(
        Role::Lns,
        vec![d.wan.clone(), d.core.clone()],
        vec![*config.listen.ip()],
    );
    fp.subscriber_prefixes = pool
        .ranges()
        .iter()
        .flat_map(|r| prefixes(r.first(), r.last()))
        .collect();
    fp.gateway = d.core_next_hop;
    fp.poll_mode = d.poll_mode.into();
    fp.xdp_mode = match d.xdp_mode {
        XdpMode::Skb => dataplane::io::afxdp::XdpMode::Skb,
        XdpMode::Driver => dataplane::io::afxdp::XdpMode::DriverCopy,
        XdpMode::ZeroCopy => dataplane::io::afxdp::XdpMode::DriverZeroCopy,
    };
    fp.cores = d.cores.clone();
    fp.queues = d.queues;
    info!(wan = %d.wan, core = %d.core, prefixes = ?fp.subscriber_prefixes, next_hop = ?d.core_next_hop, "starting the fast path");
    LnsFastpath::start(fp, config.listen, node).map_err(|e| format!("fast path: {e}").into())
}

/// What the daemon remembers of tunnels and sessions beyond what the node
/// keeps: the LAC's host name, when things came up, who is on a session.
#[derive(Default)]
struct Book {
    tunnels: HashMap<TunnelHandle, TunnelNote>,
    sessions: HashMap<SessionHandle, SessionNote>,
}

struct TunnelNote {
    host_name: String,
    up_at: Instant,
}

struct SessionNote {
    user: String,
    address: Ipv4Addr,
    up_at: Instant,
    local_session_id: u16,
    peer_session_id: u16,
    /// HA: the ownership epoch of a session adopted from a peer.
    adopted_epoch: Option<u32>,
}

impl Book {
    fn note(&mut self, now: Instant, event: &lns::Event, metrics: &Metrics) {
        match event {
            lns::Event::TunnelUp {
                tunnel,
                peer_host_name,
                ..
            } => {
                self.tunnels.insert(
                    *tunnel,
                    TunnelNote {
                        host_name: peer_host_name.clone(),
                        up_at: now,
                    },
                );
            }
            lns::Event::TunnelDown { tunnel, .. } => {
                self.tunnels.remove(tunnel);
            }
            lns::Event::SessionEstablished(s) => {
                metrics.session_set_up();
                self.sessions.insert(
                    s.session,
                    SessionNote {
                        user: s.username.clone(),
                        address: s.address,
                        up_at: now,
                        local_session_id: s.local_session_id,
                        peer_session_id: s.peer_session_id,
                        adopted_epoch: s.adopted_epoch,
                    },
                );
            }
            lns::Event::SessionDown(s) => {
                self.sessions.remove(&s.session);
                if !s.was_established {
                    metrics.session_setup_failed(failure_reason(&s.cause));
                }
            }
            _ => {}
        }
    }
}

/// The HA offload lag's p50 and p99 in microseconds (0 before any).
fn offload_lag(node: &lns::Node) -> (u64, u64) {
    node.offload_lag().map_or((0, 0), |h| {
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    })
}

/// What an HA command gets from an lnsd without `[ha]`.
const HA_OFF: &str = "HA is off in this lnsd: add an [ha] section (peers) and restart";

/// How long ago `at` was, in whole seconds.
fn ago(now: Instant, at: Instant) -> u64 {
    now.saturating_duration_since(at).as_secs()
}

fn switchover_type(kind: lns::SwitchoverType) -> String {
    match kind {
        lns::SwitchoverType::All => "all".to_owned(),
        lns::SwitchoverType::NewSessions => "new".to_owned(),
        lns::SwitchoverType::Listed => "listed".to_owned(),
        lns::SwitchoverType::Unknown(n) => format!("type {n}"),
    }
}

/// `ha status` as JSON: the node's state as scalars, its peers and its LAC
/// tunnels as tables.
fn ha_status_json(status: &lns::HaStatus, now: Instant) -> Json {
    let mut out: Vec<(String, Json)> = Vec::new();
    let num = |v: u64| Json::Number(v.into());
    let opt = |v: Option<u64>| v.map_or(Json::Null, |v| Json::Number(v.into()));
    let float = |v: f64| {
        serde_json::Number::from_f64((v * 10.0).round() / 10.0).map_or(Json::Null, Json::Number)
    };
    let mut put = |k: &str, v: Json| out.push((k.to_owned(), v));
    put("role", Json::String("lns".to_owned()));
    put("address", Json::String(status.address.to_string()));
    put("in_sync", Json::Bool(status.in_sync));
    put("offload_lag_p50_us", opt(status.lag_p50_us));
    put("offload_lag_p99_us", opt(status.lag_p99_us));
    put("sessions", num(status.sessions as u64));
    put("sessions_adopted", num(status.sessions_adopted as u64));
    put("sessions_stored", num(status.sessions_stored as u64));
    put("draining", Json::Bool(status.draining));
    put("overloaded", Json::Bool(status.overloaded));
    put(
        "load_cpu_percent",
        status.load.map_or(Json::Null, |l| float(l.cpu_percent)),
    );
    put(
        "load_memory_percent",
        status.load.map_or(Json::Null, |l| float(l.memory_percent)),
    );
    for (k, v) in status.stats.counters() {
        // `sessions_adopted` is the gauge above (adopted sessions here now).
        let k = if k == "sessions_adopted" {
            "sessions_adopted_total"
        } else {
            k
        };
        put(k, num(v));
    }
    let peers = status
        .peers
        .iter()
        .map(|p| {
            Json::Object(vec![
                ("peer".to_owned(), Json::String(p.address.to_string())),
                ("connected".to_owned(), Json::Bool(p.connected)),
                ("in_sync".to_owned(), Json::Bool(p.in_sync)),
                ("offloaded".to_owned(), num(p.sessions_offloaded as u64)),
            ])
        })
        .collect();
    put("peers", Json::Array(peers));
    let lacs = status
        .lacs
        .iter()
        .map(|l| {
            let (asked, asked_s) = l
                .switchover
                .requested
                .map_or((Json::Null, Json::Null), |(at, kind)| {
                    (Json::String(switchover_type(kind)), num(ago(now, at)))
                });
            let (answer, reason, answered_s) = l.switchover.answered.as_ref().map_or(
                (Json::Null, Json::Null, Json::Null),
                |(at, reply)| {
                    let granted = reply.action == SwitchoverAction::Granted;
                    (
                        Json::String(if granted { "granted" } else { "denied" }.to_owned()),
                        if reply.reason.is_empty() {
                            Json::Null
                        } else {
                            Json::String(reply.reason.clone())
                        },
                        num(ago(now, *at)),
                    )
                },
            );
            Json::Object(vec![
                ("tunnel".to_owned(), num(l.tunnel.0)),
                ("lac".to_owned(), Json::String(l.remote.to_string())),
                ("ha".to_owned(), Json::Bool(l.ha_capable)),
                ("sessions".to_owned(), num(l.sessions as u64)),
                ("asked".to_owned(), asked),
                ("asked_s_ago".to_owned(), asked_s),
                ("answer".to_owned(), answer),
                ("answered_s_ago".to_owned(), answered_s),
                ("reason".to_owned(), reason),
            ])
        })
        .collect();
    put("lacs", Json::Array(lacs));
    Json::Object(out)
}

/// The `reason` label of a session that ended before PPP came up.
fn failure_reason(cause: &EndCause) -> &'static str {
    match cause {
        EndCause::Ppp(DownCause::AuthFailed) | EndCause::Ppp(DownCause::AuthRefused) => {
            "auth_failed"
        }
        EndCause::Ppp(DownCause::AuthTimeout) => "auth_timeout",
        EndCause::Ppp(DownCause::NegotiationTimeout(_)) => "negotiation_timeout",
        EndCause::Ppp(DownCause::MaxFailure(_)) | EndCause::Ppp(DownCause::Rejected(_)) => {
            "negotiation_failed"
        }
        EndCause::Ppp(DownCause::EchoFailure) => "echo_failure",
        EndCause::Ppp(DownCause::PeerTerminated) => "subscriber_terminated",
        EndCause::Ppp(_) => "ppp_other",
        EndCause::LacDisconnected(_) => "lac_disconnected",
        EndCause::L2tpError(_) => "l2tp_error",
        EndCause::TunnelDown => "tunnel_down",
        EndCause::AdminClear => "admin_clear",
        EndCause::SessionTimeout | EndCause::IdleTimeout => "timeout",
        EndCause::PoolExhausted | EndCause::AddressInUse(_) => "no_address",
        EndCause::Shutdown => "shutdown",
        EndCause::Moved { .. } => "moved",
    }
}

/// One row of `show tunnels`.
#[derive(Serialize)]
struct TunnelRow {
    id: u64,
    local_tid: Option<u16>,
    peer_tid: Option<u16>,
    peer: Option<String>,
    host_name: Option<String>,
    state: String,
    sessions: usize,
    uptime_s: Option<u64>,
    ctl_sent: u64,
    ctl_retransmitted: u64,
}

/// One row of `show sessions`.
#[derive(Serialize)]
struct SessionRow {
    id: u64,
    tunnel: u64,
    local_sid: Option<u16>,
    peer_sid: Option<u16>,
    user: Option<String>,
    address: Option<String>,
    state: String,
    uptime_s: Option<u64>,
    ppp_in: u64,
    ppp_out: u64,
    fastpath: bool,
    /// Traffic counters as the fast path last reported them (its glue
    /// sweeps them into the node): from the subscriber.
    up_pkts: Option<u64>,
    up_bytes: Option<u64>,
    /// To the subscriber.
    down_pkts: Option<u64>,
    down_bytes: Option<u64>,
    /// HA: the ownership epoch when the session was adopted from a peer
    /// LNS (`-`: set up here).
    adopted: Option<u32>,
}

/// Everything the loop works with.
struct Daemon {
    driver: Driver<lns::Node>,
    fastpath: Option<LnsFastpath>,
    /// The fast path's last summary, refreshed every [`REPORT_EVERY`].
    summary: Option<FastpathSummary>,
    book: Book,
    metrics: Metrics,
    /// Kept for its thread: dropping it stops the metrics server.
    _metrics_server: Option<MetricsServer>,
    /// Requests the control socket answered.
    control_requests: u64,
    logging: Logging,
    /// The configuration in effect (reloaded keys included).
    config: LnsConfig,
    /// The users file's contents in force, when it authenticates (not
    /// RADIUS): a reload swaps the authenticator only when they changed.
    users: Option<Users>,
    /// The machine's CPU and memory, read for the load monitor (only with
    /// `[ha.load]`).
    machine_load: Option<MachineLoad>,
}

impl Daemon {
    fn handle(&mut self, request: Request) -> Reply {
        let now = self.driver.now();
        match request {
            Request::Show {
                what: Show::Tunnels,
            } => Reply::ok(&self.tunnels(now)),
            Request::Show {
                what: Show::Sessions,
            } => Reply::ok(&self.sessions(now)),
            Request::Show { what: Show::Stats } => {
                self.fresh_fastpath_summary();
                let radius = self.driver.node_mut().radius_mut().map(|r| r.stats());
                let mut stats = self.stats();
                if let (Json::Object(fields), Some(r)) = (&mut stats, radius) {
                    for (k, v) in [
                        ("radius_requests", r.requests),
                        ("radius_retransmissions", r.retransmissions),
                        ("radius_failovers", r.failovers),
                        ("radius_responses", r.responses),
                        ("radius_timeouts", r.timeouts),
                        ("radius_bad_authenticator", r.bad_authenticator),
                    ] {
                        fields.push((k.to_owned(), Json::Number(v.into())));
                    }
                }
                Reply::ok(&stats)
            }
            Request::Clear {
                what: Clear::Session,
                id,
            } => {
                let node = self.driver.node_mut();
                let Some(handle) = node.sessions().find(|h| h.id == id) else {
                    return Reply::error(format!("no session {id} (see show sessions)"));
                };
                if node.clear_session(now, handle) {
                    info!(session = id, "session cleared by the operator");
                    Reply::ok(&format!("session {id} clearing (LCP Terminate, then CDN)"))
                } else {
                    Reply::error(format!("session {id} is already going down"))
                }
            }
            Request::Clear {
                what: Clear::Tunnel,
                id,
            } => {
                let handle = TunnelHandle(id);
                let node = self.driver.node_mut();
                if !node.endpoint().tunnels().any(|t| t == handle) {
                    return Reply::error(format!("no tunnel {id} (see show tunnels)"));
                }
                let result =
                    ResultCode::with_message(stop_ccn::GENERAL_REQUEST, "cleared by the operator");
                if node.close_tunnel(now, handle, result) {
                    info!(tunnel = id, "tunnel cleared by the operator");
                    Reply::ok(&format!("tunnel {id} closing (StopCCN)"))
                } else {
                    Reply::error(format!("tunnel {id} is already closing"))
                }
            }
            Request::Ha { args } => match HaCommand::parse(&args) {
                Ok(command) => self.ha(now, &command),
                Err(e) => Reply::error(e),
            },
        }
    }

    /// `l2tpctl ha ...`.
    fn ha(&mut self, now: Instant, command: &HaCommand) -> Reply {
        let node = self.driver.node_mut();
        let result = match command {
            HaCommand::Status => {
                return match node.ha_status() {
                    Some(status) => Reply::ok(&ha_status_json(&status, now)),
                    None => Reply::error(HA_OFF),
                }
            }
            HaCommand::Drain => node.ha_drain(now),
            HaCommand::Failback => node.ha_failback(now),
            HaCommand::Switchover { kind, sessions } => {
                let kind = match kind {
                    SwitchoverKind::All => lns::SwitchoverType::All,
                    SwitchoverKind::New => lns::SwitchoverType::NewSessions,
                    SwitchoverKind::Listed => lns::SwitchoverType::Listed,
                };
                // The ids `show sessions` lists, as our Session IDs.
                let mut ids = Vec::with_capacity(sessions.len());
                for &id in sessions {
                    let Some(handle) = node.sessions().find(|h| h.id == id) else {
                        return Reply::error(format!("no session {id} (see show sessions)"));
                    };
                    match node.endpoint().session_ids(handle) {
                        Some((local, _)) => ids.push(local),
                        None => return Reply::error(format!("session {id} has no call yet")),
                    }
                }
                node.ha_switchover(now, kind, &ids)
            }
        };
        match result {
            Ok(asked) => {
                info!(command = %command, lac_tunnels = asked, "HA command from the operator");
                Reply::ok(&format!(
                    "ha {command}: {asked} LAC tunnel(s) asked; their answers show in `ha status` and the log"
                ))
            }
            Err(lns::HaError::NotConfigured) => Reply::error(HA_OFF),
            Err(e) => Reply::error(format!("ha {command}: {e}")),
        }
    }

    fn tunnels(&self, now: Instant) -> Vec<TunnelRow> {
        let endpoint = self.driver.node().endpoint();
        let mut rows: Vec<TunnelRow> = endpoint
            .tunnels()
            .map(|t| {
                let ids = endpoint.tunnel_ids(t);
                let note = self.book.tunnels.get(&t);
                let stats = endpoint.tunnel_stats(t).unwrap_or_default();
                TunnelRow {
                    id: t.0,
                    local_tid: ids.map(|i| i.0),
                    peer_tid: ids.map(|i| i.1),
                    peer: endpoint.tunnel_remote(t).map(|r| r.to_string()),
                    host_name: note.map(|n| n.host_name.clone()),
                    state: endpoint
                        .tunnel_state(t)
                        .map_or("gone".to_owned(), |s| format!("{s:?}").to_lowercase()),
                    sessions: endpoint.session_count(t),
                    uptime_s: note.map(|n| now.saturating_duration_since(n.up_at).as_secs()),
                    ctl_sent: stats.control.sent,
                    ctl_retransmitted: stats.control.retransmitted,
                }
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    fn sessions(&self, now: Instant) -> Vec<SessionRow> {
        let node = self.driver.node();
        let mut rows: Vec<SessionRow> = node
            .sessions()
            .map(|h| {
                let note = self.book.sessions.get(&h);
                let link = node.link(h);
                let stats = link.map(|l| l.stats()).unwrap_or_default();
                let counters = node.session_counters(h).filter(|_| self.fastpath.is_some());
                SessionRow {
                    id: h.id,
                    tunnel: h.tunnel.0,
                    local_sid: note.map(|n| n.local_session_id),
                    peer_sid: note.map(|n| n.peer_session_id),
                    user: note.map(|n| n.user.clone()).or_else(|| {
                        link.and_then(|l| l.state().username)
                            .map(|u| String::from_utf8_lossy(&u).into_owned())
                    }),
                    address: note
                        .map(|n| n.address)
                        .or_else(|| node.session_address(h))
                        .map(|a| a.to_string()),
                    state: if note.is_some() {
                        "up".to_owned()
                    } else {
                        link.map_or("-".to_owned(), |l| {
                            format!("{:?}", l.phase()).to_lowercase()
                        })
                    },
                    uptime_s: note.map(|n| now.saturating_duration_since(n.up_at).as_secs()),
                    ppp_in: stats.frames_received,
                    ppp_out: stats.frames_sent,
                    fastpath: self
                        .fastpath
                        .as_ref()
                        .is_some_and(|fp| fp.session(h).is_some()),
                    up_pkts: counters.map(|c| c.input_packets),
                    up_bytes: counters.map(|c| c.input_octets),
                    down_pkts: counters.map(|c| c.output_packets),
                    down_bytes: counters.map(|c| c.output_octets),
                    adopted: note.and_then(|n| n.adopted_epoch),
                }
            })
            .collect();
        rows.sort_by_key(|r| (r.tunnel, r.id));
        rows
    }

    fn stats(&self) -> Json {
        let node = self.driver.node();
        let s = node.stats();
        let e = node.endpoint().stats();
        let d = self.driver.stats();
        let mut out: Vec<(String, Json)> = Vec::new();
        let mut put = |k: &str, v: u64| out.push((k.to_owned(), Json::Number(v.into())));
        put("tunnels", node.endpoint().tunnel_count() as u64);
        put("sessions", node.session_count() as u64);
        put("sessions_up", node.established_count() as u64);
        put("sessions_set_up", self.metrics.sessions_set_up());
        put("sessions_started", s.sessions_started);
        put("sessions_ended", s.sessions_ended);
        put("auth_rejected", s.auth_rejected);
        put("address_unavailable", s.address_unavailable);
        put("pool_in_use", node.pool().in_use());
        put("pool_available", node.pool().available());
        put("tunnels_accepted", e.tunnels_accepted);
        put("datagrams_received", e.datagrams_received);
        put("malformed", e.malformed + e.malformed_control);
        put("unknown_tunnel", e.unknown_tunnel + e.data_unknown_tunnel);
        put("wrong_source", e.wrong_source + e.data_wrong_source);
        put("data_delivered", e.data_delivered);
        put("udp_sent", d.sent);
        put("udp_received", d.received);
        put("udp_send_errors", d.send_errors);
        put("control_requests", self.control_requests);
        if let Some(summary) = &self.summary {
            let k = &summary.counters;
            put("fastpath_workers", summary.workers as u64);
            put("fastpath_sessions", summary.sessions as u64);
            put("fastpath_received", k.received);
            put("fastpath_transmitted", k.transmitted);
            for path in dataplane::counters::PathKind::ALL {
                put(
                    &format!("fastpath_{}", path.name()),
                    k.forwarded[*path as usize],
                );
            }
            put("fastpath_punted", k.punted.iter().sum());
            put("fastpath_dropped", k.dropped.iter().sum());
            for reason in dataplane::counters::DropReason::ALL {
                let n = k.drops(*reason);
                if n > 0 {
                    put(&format!("drop_{}", reason.name()), n);
                }
            }
            put("fastpath_latency_p50_ns", summary.latency.p50_ns);
            put("fastpath_latency_p99_ns", summary.latency.p99_ns);
        }
        if let Some(h) = node.ha_stats() {
            let (p50, p99) = offload_lag(node);
            put("ha_offload_lag_p50_us", p50);
            put("ha_offload_lag_p99_us", p99);
            put(
                "ha_offloaded_sessions",
                node.offload_store().map_or(0, |s| s.session_count()) as u64,
            );
            for (k, v) in h.counters() {
                put(&format!("ha_{k}"), v);
            }
        }
        if let Some(fp) = &self.fastpath {
            let g = fp.stats();
            put("fastpath_adopted_calls", g.adopted);
            put("fastpath_announcements", g.announcements);
            put("fastpath_announcements_failed", g.announcements_failed);
            put("fastpath_foreign_addresses", g.foreign_addresses);
            put("fastpath_steering_errors", g.steering_errors);
            put("fastpath_ppp_early", g.ppp_early);
            put("fastpath_ppp_unknown", g.ppp_unknown);
        }
        let rate = serde_json::Number::from_f64(self.metrics.setup_rate())
            .map_or(Json::Null, Json::Number);
        out.push(("setup_rate_per_s".to_owned(), rate));
        Json::Object(out)
    }

    /// Refreshes the metrics from the node.
    fn refresh_metrics(&mut self) {
        let node = self.driver.node();
        let endpoint = node.endpoint();
        let metrics = &mut self.metrics;
        metrics.set_counts(node.session_count(), endpoint.tunnel_count());
        metrics.observe_tunnels(endpoint.tunnels().filter_map(|t| {
            let s = endpoint.tunnel_stats(t)?;
            Some((t.0, s.control.sent, s.control.retransmitted))
        }));
        metrics.tick(std::time::Instant::now());
        if let Some(h) = node.ha_stats() {
            let (p50, p99) = offload_lag(node);
            let held = node.offload_store().map_or(0, |s| s.session_count());
            metrics.observe_offload(p50, p99, held);
            let status = node.ha_status();
            let gauges = status
                .as_ref()
                .map_or_else(HaGauges::default, |s| HaGauges {
                    peers_connected: s.peers.iter().filter(|p| p.connected).count(),
                    in_sync: s.in_sync,
                    overloaded: s.overloaded,
                    load_percent: s.load.map(|l| (l.cpu_percent, l.memory_percent)),
                });
            metrics.observe_ha(&h.counters(), &gauges);
        }
    }

    /// Once a second with `[ha.load]`: the machine's CPU and memory to the
    /// node's load monitor (which adds its session count, and asks the
    /// LACs to switch over when overloaded).
    fn sample_load(&mut self) {
        let Some(machine) = &mut self.machine_load else {
            return;
        };
        let reading = machine.sample();
        let sample = LoadSample {
            sessions: 0,
            cpu_percent: reading.cpu_percent.unwrap_or(0.0),
            memory_percent: reading.memory_percent.unwrap_or(0.0),
        };
        let now = self.driver.now();
        match self.driver.node_mut().observe_load(now, sample) {
            Some(lns::LoadEvent::Overloaded(over)) => warn!(
                cpu_percent = sample.cpu_percent,
                memory_percent = sample.memory_percent,
                ?over,
                "HA load monitor: overloaded, the LACs are asked to switch over"
            ),
            Some(lns::LoadEvent::Relieved) => info!(
                cpu_percent = sample.cpu_percent,
                memory_percent = sample.memory_percent,
                "HA load monitor: relieved"
            ),
            None => {}
        }
    }

    /// The LACs' answers to our switchover requests (STPLRP), for the log.
    fn log_switchover_answers(&mut self) {
        while let Some(a) = self.driver.node_mut().poll_switchover_answer() {
            if a.granted {
                info!(
                    tunnel = a.tunnel.0,
                    lac = %a.lac,
                    kind = %switchover_type(a.kind),
                    "HA switchover granted by the LAC"
                );
            } else {
                warn!(
                    tunnel = a.tunnel.0,
                    lac = %a.lac,
                    kind = %switchover_type(a.kind),
                    reason = %a.reason,
                    "HA switchover denied by the LAC"
                );
            }
        }
    }

    /// Takes the workers' last reports into the metrics and `show stats`,
    /// and asks for the next (they answer between bursts; never waited for).
    /// `show stats` answers with the workers' counters as of now, not as
    /// of the last periodic report: an operator or a test reading them right
    /// after traffic stops must see all of it. Bounded by STATS_WAIT.
    fn fresh_fastpath_summary(&mut self) {
        if let Some(fp) = &mut self.fastpath {
            match fp.fastpath().fresh_reports(STATS_WAIT) {
                Ok(summary) => self.summary = Some(summary),
                Err(e) => warn!(error = %e, "fast path reports not requested"),
            }
        }
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

    /// SIGHUP: re-read the file, apply what can change at run time, say what
    /// needs a restart.
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
        let mut applied = Vec::new();
        if changes.applies("control.log") {
            let what = self.logging.set_filter(new.control.log.as_deref());
            self.config.control.log = new.control.log.clone();
            info!(key = "control.log", "{what}");
            applied.push("control.log".to_owned());
        }
        match self.reload_authenticator(&new, changes.applies("users") || changes.applies("radius"))
        {
            Ok(Some(what)) => applied.push(what),
            Ok(None) => {}
            Err(e) => error!(
                "SIGHUP: authentication not reloaded, the users file or RADIUS servers in force stay: {e}"
            ),
        }
        if !changes.restart.is_empty() {
            warn!(
                keys = %changes.restart.join(", "),
                "SIGHUP: these changes take effect only after a restart"
            );
        }
        if applied.is_empty() {
            if changes.restart.is_empty() {
                info!("SIGHUP: configuration unchanged");
            }
            return;
        }
        info!(applied = %applied.join(", "), "SIGHUP: configuration reloaded");
    }

    /// Swap the node's authenticator for the one `new` describes, if it
    /// differs: its `radius` keys changed (`keys_changed`, `users` too), or
    /// the users file's contents did (read again on every reload: editing
    /// it is what SIGHUP is mostly for). Sessions already up stay up;
    /// what happens to authentications and accounting in flight is
    /// [`lns::Node::set_authenticator`]'s. Says what it applied; an error
    /// (a bad users file, with its file:line) leaves the old one in force.
    fn reload_authenticator(
        &mut self,
        new: &LnsConfig,
        keys_changed: bool,
    ) -> Result<Option<String>, BoxError> {
        // The running configuration with the new authentication keys: the
        // RADIUS client's NAS-Identifier and NAS-IP-Address come from keys
        // that wait for a restart.
        let mut wanted = self.config.clone();
        wanted.users = new.users.clone();
        wanted.radius = new.radius.clone();
        let (authenticator, users) = if wanted.radius.auth.is_empty() {
            let users = users(&wanted)?;
            if !keys_changed && self.users.as_ref() == Some(&users) {
                return Ok(None);
            }
            (Authenticator::local(users.clone()), Some(users))
        } else if keys_changed {
            authenticator(&wanted)?
        } else {
            return Ok(None);
        };
        let what = match (&users, &wanted.users) {
            (Some(u), Some(path)) => format!("users ({} from {})", u.len(), path.display()),
            (Some(_), None) => "users (none: every subscriber is refused)".to_owned(),
            (None, _) => format!("radius (auth {:?})", wanted.radius.auth),
        };
        let now = self.driver.now();
        let node = self.driver.node_mut();
        node.set_authenticator(now, authenticator);
        info!(
            draining = node.retired_authenticators(),
            "SIGHUP: new authentications go to {what}; sessions up stay up"
        );
        self.users = users;
        self.config.users = wanted.users;
        self.config.radius = wanted.radius;
        Ok(Some(what))
    }

    /// The clean stop: CDN for every call and StopCCN for every tunnel
    /// (RFC 2661 §5.7: StopCCN alone would clear the calls too; the CDNs
    /// tell the LAC why), acknowledged within the grace time.
    fn shutdown(&mut self) -> Result<(), BoxError> {
        let now = self.driver.now();
        let node = self.driver.node_mut();
        info!(
            sessions = node.session_count(),
            tunnels = node.endpoint().tunnel_count(),
            "stopping: CDN for every call, StopCCN for every tunnel"
        );
        // Accounting Stop with Admin-Reboot (RFC 2866 §5.10: the
        // administrator ending service on the NAS).
        node.shut_down_sessions(now);
        // The CDNs first, acknowledged (or half the grace gone), then the
        // StopCCNs: a StopCCN clears the calls whose CDNs still wait behind
        // the LAC's receive window, and with them their result codes
        // (RFC 2661 §5.7 lets it, but the LAC should hear why each call ended).
        let started = now;
        common::settle_until(&mut self.driver, started + common::SHUTDOWN_GRACE / 2)?;
        let now = self.driver.now();
        let node = self.driver.node_mut();
        let tunnels: Vec<TunnelHandle> = node.endpoint().tunnels().collect();
        for tunnel in tunnels {
            let result = ResultCode::with_message(stop_ccn::SHUTTING_DOWN, "LNS shutting down");
            node.close_tunnel(now, tunnel, result);
        }
        // Wait for the LACs' acknowledgements and for the RADIUS servers to
        // take the accounting Stops of the sessions just ended, within one
        // grace time: a Stop lost here is a session never billed as over.
        let deadline = started + common::SHUTDOWN_GRACE;
        let settled = |driver: &mut Driver<lns::Node>| {
            let acked = common::all_acknowledged(driver.node().endpoint());
            let radius_idle = driver.node().radius_settled();
            (acked, radius_idle)
        };
        while settled(&mut self.driver) != (true, true) && self.driver.now() < deadline {
            let step = (self.driver.now() + Duration::from_millis(50)).min(deadline);
            self.driver.run_until(step, |_, event| {
                common::log_lns_event(&event);
                ControlFlow::Continue(())
            })?;
        }
        let (acked, radius_idle) = settled(&mut self.driver);
        info!(acknowledged = acked, radius_done = radius_idle, stats = ?self.driver.stats(), "shut down");
        if !acked {
            warn!("not every LAC acknowledged within the grace time");
        }
        if !radius_idle {
            warn!("RADIUS requests still unanswered at exit (accounting Stops may be lost)");
        }
        if let Some(mut fp) = self.fastpath.take() {
            fp.stop();
        }
        Ok(())
    }
}

fn run(args: &Args, config: LnsConfig, logging: Logging) -> Result<(), BoxError> {
    let signals = Signals::install()?;
    let (daemon, control) = start(config, logging)?;
    serve(daemon, control, args, &signals)
}

/// Everything up: the node, the fast path if configured, the L2TP socket,
/// the control socket and the metrics.
fn start(config: LnsConfig, logging: Logging) -> Result<(Daemon, ControlServer), BoxError> {
    let (pool, gateway) = config.address_pool().map_err(|e| format!("pool: {e}"))?;
    let (authenticator, users) = authenticator(&config)?;
    let machine_load = config
        .ha
        .as_ref()
        .is_some_and(|ha| ha.load.is_some())
        .then(MachineLoad::new);
    let mut node = lns::Node::new(config.node_config(gateway), authenticator, pool, os_rng()?)?;
    let fastpath = if config.dataplane.enabled {
        Some(start_fastpath(&config, &mut node)?)
    } else {
        None
    };
    let socket = UdpSocket::bind(config.listen)
        .map_err(|e| format!("cannot listen on {} (listen): {e}", config.listen))?;
    let driver = Driver::new(socket, node)?;
    let Operator {
        control,
        metrics,
        metrics_server,
    } = Operator::start(&config.control)?;
    info!(
        listen = %driver.local_addr()?,
        host_name = %config.hostname,
        %gateway,
        pool = ?config.pool,
        fastpath = fastpath.is_some(),
        "listening"
    );
    let daemon = Daemon {
        driver,
        fastpath,
        summary: None,
        book: Book::default(),
        metrics,
        _metrics_server: metrics_server,
        control_requests: 0,
        logging,
        config,
        users,
        machine_load,
    };
    Ok((daemon, control))
}

/// One event of the node: the fast path's tables first (they follow the
/// node), then the log and the book.
fn on_node_event(
    fastpath: &mut Option<LnsFastpath>,
    book: &mut Book,
    metrics: &Metrics,
    now: Instant,
    event: &lns::Event,
) {
    if let Some(fp) = fastpath.as_mut() {
        fp.program(event);
    }
    common::log_lns_event(event);
    book.note(now, event, metrics);
}

/// The control loop, until a signal or `--duration` says stop; then the
/// clean shutdown.
fn serve(
    mut daemon: Daemon,
    mut control: ControlServer,
    args: &Args,
    signals: &Signals,
) -> Result<(), BoxError> {
    ops::schedule_control_thread(daemon.config.control.realtime_priority);
    let slice = if daemon.fastpath.is_some() {
        ops::FASTPATH_SLICE
    } else {
        ops::SLICE
    };
    let end = args
        .duration
        .map(|s| daemon.driver.now() + Duration::from_secs(s));
    let mut next_report = daemon.driver.now();
    let mut next_metrics = daemon.driver.now();
    let mut next_load = daemon.driver.now();
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
        // Event-Timestamp in accounting follows the wall clock; tell the
        // RADIUS client where it is now and then.
        let mut received = 0;
        if pace == ops::Pace::Busy {
            received = daemon.driver.receive_waiting(ops::CONTROL_BURST)?;
        }
        let now = daemon.driver.now();
        if let Ok(wall) = SystemTime::now().duration_since(UNIX_EPOCH) {
            daemon.driver.node_mut().set_wall_clock(now, wall);
        }
        let until = now + pace.wait(slice);
        let deadline = end.map_or(until, |e| e.min(until));
        let Daemon {
            driver,
            fastpath,
            book,
            metrics,
            ..
        } = &mut daemon;
        driver.run_until(deadline, |_, event| {
            on_node_event(fastpath, book, metrics, now, &event);
            ControlFlow::Continue(())
        })?;
        pace = ops::Pace::Idle;
        if let Some(fp) = fastpath.as_mut() {
            let now = driver.now();
            let punts = fp.service(driver.node_mut(), now);
            // Events the glue leaves to its owner: refused updates (the
            // fast path logs them) and barriers lnsd does not use.
            while fp.poll_event().is_some() {}
            pace = ops::Pace::after(punts > 0 || received > 0, fp.waiting_for_workers());
            // What the punted frames produced goes out now, not after the
            // operator's requests and the periodic work below: sessions
            // that came up send their LSORQs to the peers (the offload lag
            // counts from the change), and PPP answers leave sooner. A
            // deadline already passed: sends and hands out events, never
            // waits.
            let now = driver.now();
            driver.run_until(now, |_, event| {
                on_node_event(fastpath, book, metrics, now, &event);
                ControlFlow::Continue(())
            })?;
        }
        daemon.log_switchover_answers();
        control.poll(|request| daemon.handle(request));
        daemon.control_requests = control.stats().requests;
        if daemon.driver.now() >= next_load {
            next_load = daemon.driver.now() + LOAD_EVERY;
            daemon.sample_load();
        }
        if daemon.driver.now() >= next_metrics {
            next_metrics = daemon.driver.now() + METRICS_EVERY;
            daemon.refresh_metrics();
        }
        if daemon.driver.now() >= next_report {
            next_report = daemon.driver.now() + REPORT_EVERY;
            daemon.refresh_fastpath();
        }
    }
    daemon.shutdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pool_range_becomes_the_cidr_blocks_that_cover_it() {
        assert_eq!(
            prefixes(p("100.64.0.0"), p("100.64.3.255")),
            [(p("100.64.0.0"), 22)]
        );
        assert_eq!(
            prefixes(p("10.0.0.10"), p("10.0.0.20")),
            [
                (p("10.0.0.10"), 31),
                (p("10.0.0.12"), 30),
                (p("10.0.0.16"), 30),
                (p("10.0.0.20"), 32),
            ]
        );
        assert_eq!(
            prefixes(p("0.0.0.0"), p("255.255.255.255")),
            [(p("0.0.0.0"), 0)]
        );
        assert_eq!(prefixes(p("1.2.3.4"), p("1.2.3.4")), [(p("1.2.3.4"), 32)]);
    }

    #[test]
    fn flags_override_the_file() {
        let args = Args::parse_from([
            "lnsd",
            "--listen",
            "127.0.0.1:1701",
            "--secret",
            "s",
            "--require-auth",
            "--hostname",
            "demo-lnsd",
            "--socket",
            "/tmp/x.sock",
        ]);
        let c = load_config(&args).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1701");
        assert!(c.require_auth);
        assert_eq!(c.hostname, "demo-lnsd");
        assert_eq!(c.control.socket, Path::new("/tmp/x.sock"));
        let args = Args::parse_from(["lnsd", "--require-auth"]);
        let e = load_config(&args).unwrap_err().to_string();
        assert!(
            e.contains("require_auth") && e.contains("(defaults and command line)"),
            "{e}"
        );
    }
}

/// lnsd in-process over loopback: subscribers come up, `show` over the
/// control socket lists them, a reload applies the log filter, a stop
/// closes the tunnel with StopCCN and removes the socket.
#[cfg(test)]
mod daemon_tests {
    use super::*;
    use controlplane::ctl;
    use controlplane::l2tp::TunnelDownReason;
    use controlplane::subscriber::{self, AuthChoice};

    /// `count` subscribers (all logging in as `user`) calling the LNS at
    /// `lns` from a LAC of their own; whether their PPP came up (false once
    /// the LNS ended a call).
    fn dial(lns: SocketAddrV4, count: usize, user: &str) -> (Driver<subscriber::Node>, bool) {
        let config = subscriber::Config::new(lns, count, user, "lab", AuthChoice::Chap);
        let mut driver = Driver::new(
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap(),
            subscriber::Node::new(config, os_rng().unwrap()).unwrap(),
        )
        .unwrap();
        let now = driver.now();
        driver.node_mut().start(now).unwrap();
        let deadline = driver.now() + Duration::from_secs(10);
        driver
            .run_until(deadline, |node, _| {
                if node.up_count() + node.down_count() >= count {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        let up = driver.node().up_count() == count;
        (driver, up)
    }

    /// Close the LAC's tunnel and wait for the LNS's acknowledgement, so
    /// the LNS's stop does not wait for a LAC nobody runs.
    fn leave(mut driver: Driver<subscriber::Node>) {
        let now = driver.now();
        let tunnels = driver.node().tunnels().to_vec();
        for t in tunnels {
            let result = ResultCode::with_message(stop_ccn::GENERAL_REQUEST, "test done");
            let _ = driver
                .node_mut()
                .endpoint_mut()
                .close_tunnel(now, t, result);
        }
        // The LNS acknowledges at once; our side then keeps the tunnel for
        // its hold time (RFC 2661 §5.7), which nobody needs to wait for.
        let deadline = driver.now() + Duration::from_millis(200);
        driver
            .run_until(deadline, |_, _| ControlFlow::Continue(()))
            .unwrap();
    }

    fn free_udp_port() -> u16 {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn subscribers_show_up_over_the_control_socket_and_a_stop_sends_stopccn() {
        let dir = std::env::temp_dir().join(format!("lnsd-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("users"), "sub0 lab\n").unwrap();
        let socket = dir.join("lnsd.sock");
        let port = free_udp_port();
        let file = dir.join("lnsd.toml");
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\nhostname = \"test-lns\"\nusers = \"{}\"\npool = [\"100.64.0.0/24\"]\n[control]\nsocket = \"{}\"\n",
            dir.join("users").display(),
            socket.display()
        );
        let (stopper, lns) = spawn_lnsd(&dir, "lnsd", &text);

        let lns_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let (mut subscribers, up) = dial(lns_addr, 2, "sub0");
        assert!(up, "both subscribers up");

        let timeout = Duration::from_secs(5);
        let show = |what| {
            let reply = ctl::request(&socket, &Request::Show { what }, timeout).unwrap();
            serde_json::from_str::<serde_json::Value>(reply.result().unwrap()).unwrap()
        };
        // The LNS logs PPP up a moment after the subscriber sees it.
        let mut sessions = show(Show::Sessions);
        for _ in 0..50 {
            if sessions
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["state"] == "up")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            sessions = show(Show::Sessions);
        }
        let rows = sessions.as_array().unwrap();
        assert_eq!(rows.len(), 2, "{sessions}");
        for row in rows {
            assert_eq!(row["state"], "up", "{sessions}");
            assert_eq!(row["user"], "sub0", "{sessions}");
            assert!(row["address"].as_str().unwrap().starts_with("100.64.0."));
        }
        let tunnels = show(Show::Tunnels);
        assert_eq!(tunnels[0]["host_name"], "subscribers", "{tunnels}");
        assert_eq!(tunnels[0]["sessions"], 2, "{tunnels}");
        let stats = show(Show::Stats);
        assert_eq!(stats["sessions_up"], 2, "{stats}");
        assert_eq!(stats["sessions_set_up"], 2, "{stats}");
        let reply = ctl::request(
            &socket,
            &Request::Clear {
                what: Clear::Session,
                id: 999,
            },
            timeout,
        )
        .unwrap();
        assert!(reply.result().unwrap_err().contains("no session 999"));
        // Without [ha], the HA commands say how to turn it on.
        let reply = ctl::request(&socket, &Request::ha(&HaCommand::Status), timeout).unwrap();
        assert!(reply.result().unwrap_err().contains("[ha]"), "{reply:?}");

        // A reload with a new log filter and a new host name: the first is
        // applied, the second waits for a restart; the daemon carries on.
        std::fs::write(
            &file,
            format!("{text}log = \"debug\"\n").replace("test-lns", "other"),
        )
        .unwrap();
        stopper.request_reload();
        assert_eq!(show(Show::Stats)["sessions_up"], 2);

        // Two requests after the reload: the loop has taken the signal by
        // the second answer.
        let reload = || {
            stopper.request_reload();
            show(Show::Stats);
            show(Show::Stats)
        };
        // A users file with a broken line is refused: the old one (sub0)
        // stays in force.
        std::fs::write(
            dir.join("users"),
            "sub1 lab
sub2
",
        )
        .unwrap();
        reload();
        let (sub0_again, up) = dial(lns_addr, 1, "sub0");
        assert!(up, "the old users file should still be in force");
        let (sub1_early, up) = dial(lns_addr, 1, "sub1");
        assert!(!up, "sub1 came from the refused file");
        // sub0 out, sub1 in: sub1 logs in, a new sub0 is refused, and the
        // sessions sub0 opened before stay up.
        std::fs::write(
            dir.join("users"),
            "sub1 lab
",
        )
        .unwrap();
        reload();
        let (sub1, up) = dial(lns_addr, 1, "sub1");
        assert!(up, "sub1 was added to the users file");
        let (sub0_refused, up) = dial(lns_addr, 1, "sub0");
        assert!(!up, "sub0 was removed from the users file");
        let stats = show(Show::Stats);
        assert_eq!(stats["sessions_up"], 4, "{stats}");
        assert_eq!(subscribers.node().up_count(), 2);
        for driver in [sub0_again, sub1_early, sub1, sub0_refused] {
            leave(driver);
        }

        // Stop: StopCCN reaches the subscribers' LAC.
        stopper.request_stop();
        let mut stopped = None;
        let deadline = subscribers.now() + Duration::from_secs(10);
        subscribers
            .run_until(deadline, |_, event| match event {
                subscriber::Event::TunnelDown { reason, .. } => {
                    stopped = Some(reason);
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            })
            .unwrap();
        match stopped {
            Some(TunnelDownReason::StopCcnReceived(r)) => {
                assert_eq!(r.result, stop_ccn::SHUTTING_DOWN)
            }
            other => panic!("no StopCCN: {other:?}"),
        }
        // Let the subscribers' acknowledgement go out.
        let deadline = subscribers.now() + Duration::from_millis(200);
        subscribers
            .run_until(deadline, |_, _| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(lns.join().unwrap(), Ok(()));
        assert!(!socket.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ha_commands_over_the_control_socket() {
        let dir = std::env::temp_dir().join(format!("lnsd-ha-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("lnsd.sock");
        let (port, peer_port) = (free_udp_port(), free_udp_port());
        // A peer on loopback that nobody runs: its connection stays down.
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\npool = [\"100.64.0.0/24\"]\n\
             [control]\nsocket = \"{}\"\n\
             [ha]\npeer_port = {peer_port}\n\
             [[ha.peers]]\naddress = \"127.0.0.2\"\nsecret = \"s\"\n\
             [ha.load]\ncpu_high = 100\ncpu_low = 99\n",
            socket.display()
        );
        let (stopper, lns) = spawn_lnsd(&dir, "lnsd", &text);
        let timeout = Duration::from_secs(5);
        let ha = |words: &[&str]| {
            let command = HaCommand::parse(words).unwrap();
            ctl::request(&socket, &Request::ha(&command), timeout).unwrap()
        };
        let status = ha(&["status"]);
        let json: serde_json::Value = serde_json::from_str(status.result().unwrap()).unwrap();
        assert_eq!(json["role"], "lns", "{json}");
        assert_eq!(json["address"], "127.0.0.1", "{json}");
        assert_eq!(json["in_sync"], false, "{json}");
        assert_eq!(json["sessions"], 0, "{json}");
        assert_eq!(json["draining"], false, "{json}");
        assert_eq!(
            json["peers"][0]["peer"],
            format!("127.0.0.2:{peer_port}"),
            "{json}"
        );
        assert_eq!(json["peers"][0]["connected"], false, "{json}");
        assert_eq!(json["lacs"], serde_json::json!([]), "{json}");
        let table = ctl::render(status.result().unwrap()).unwrap();
        assert!(table.contains("peers:\n  PEER"), "{table}");
        // The load monitor gets a sample a second: memory shows.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let json: serde_json::Value =
                serde_json::from_str(ha(&["status"]).result().unwrap()).unwrap();
            if json["load_memory_percent"].is_number() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no load sample: {json}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // No LAC to ask: the commands say so; unknown sessions are named.
        for words in [
            &["drain"][..],
            &["switchover", "all"],
            &["switchover", "new"],
        ] {
            let reply = ha(words);
            let e = reply.result().unwrap_err();
            assert!(e.contains("no HA-capable LAC"), "{words:?}: {e}");
        }
        let reply = ha(&["switchover", "77"]);
        assert!(
            reply.result().unwrap_err().contains("no session 77"),
            "{reply:?}"
        );
        let reply = ctl::request(
            &socket,
            &Request::Ha {
                args: vec!["reboot".to_owned()],
            },
            timeout,
        )
        .unwrap();
        assert!(
            reply.result().unwrap_err().starts_with("ha reboot:"),
            "{reply:?}"
        );
        let reply = ctl::request(&socket, &Request::Show { what: Show::Stats }, timeout).unwrap();
        let stats: serde_json::Value = serde_json::from_str(reply.result().unwrap()).unwrap();
        assert_eq!(stats["ha_switchover_requests"], 0, "{stats}");
        stopper.request_stop();
        assert_eq!(lns.join().unwrap(), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An lnsd started from `text` (a config file in `dir`), serving on a
    /// thread until `stop`.
    fn spawn_lnsd(
        dir: &Path,
        name: &str,
        text: &str,
    ) -> (Signals, std::thread::JoinHandle<Result<(), String>>) {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let args = Args::parse_from(["lnsd", "--config", file.to_str().unwrap()]);
        let config = load_config(&args).unwrap();
        let (daemon, control) = start(config, Logging::init(None)).unwrap();
        let signals = Signals::manual();
        let stopper = signals.clone();
        let thread = std::thread::spawn(move || {
            serve(daemon, control, &args, &signals).map_err(|e| e.to_string())
        });
        (stopper, thread)
    }

    #[test]
    fn two_peered_lnsd_offload_and_ha_status_shows_it() {
        let dir = std::env::temp_dir().join(format!("lnsd-peers-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("users"), "sub0 lab\n").unwrap();
        let (port1, port2) = (free_udp_port(), free_udp_port());
        // lns1 on 127.0.0.1, lns2 on 127.0.0.2 (loopback both): each peers
        // the other at its port.
        let config = |us: &str, port: u16, peer: &str, peer_port: u16, name: &str| {
            format!(
                "listen = \"{us}:{port}\"\nhostname = \"{name}\"\nusers = \"{}\"\n\
                 pool = [\"100.64.0.0/24\"]\n[control]\nsocket = \"{}\"\n\
                 [ha]\npeer_port = {peer_port}\n\
                 [[ha.peers]]\naddress = \"{peer}\"\nsecret = \"lns1-lns2\"\n",
                dir.join("users").display(),
                dir.join(format!("{name}.sock")).display(),
            )
        };
        let (stop1, lns1) = spawn_lnsd(
            &dir,
            "lns1",
            &config("127.0.0.1", port1, "127.0.0.2", port2, "lns1"),
        );
        let (stop2, lns2) = spawn_lnsd(
            &dir,
            "lns2",
            &config("127.0.0.2", port2, "127.0.0.1", port1, "lns2"),
        );
        let lns1_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port1);
        let (mut subscribers, up) = dial(lns1_addr, 2, "sub0");
        assert!(up, "both subscribers up");

        let status = |name: &str| {
            let socket = dir.join(format!("{name}.sock"));
            let request = Request::ha(&HaCommand::Status);
            let reply = ctl::request(&socket, &request, Duration::from_secs(5)).unwrap();
            serde_json::from_str::<serde_json::Value>(reply.result().unwrap()).unwrap()
        };
        // lns1 connects to lns2 and offloads both sessions; lns2 holds them.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (s1, s2) = loop {
            let (s1, s2) = (status("lns1"), status("lns2"));
            if s1["in_sync"] == true
                && s1["peers"][0]["offloaded"] == 2
                && s2["sessions_stored"] == 2
            {
                break (s1, s2);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not offloaded:\nlns1 {s1}\nlns2 {s2}"
            );
            // The subscribers' side keeps answering (Hellos, echoes).
            let until = subscribers.now() + Duration::from_millis(50);
            subscribers
                .run_until(until, |_, _| ControlFlow::Continue(()))
                .unwrap();
        };
        assert_eq!(s1["sessions"], 2, "{s1}");
        assert_eq!(s1["peers"][0]["connected"], true, "{s1}");
        assert_eq!(s1["peers"][0]["peer"], format!("127.0.0.2:{port2}"), "{s1}");
        assert_eq!(s1["lacs"][0]["sessions"], 2, "{s1}");
        assert_eq!(
            s1["lacs"][0]["ha"], false,
            "the subscribers' LAC is not HA-capable"
        );
        // The lag is of changes acknowledged; a bulk sync on connect has
        // none (null until the first).
        assert!(s1.get("offload_lag_p99_us").is_some(), "{s1}");
        assert_eq!(s2["sessions"], 0, "{s2}");
        // A LAC without HA-Capability cannot be asked to move anything.
        let request = Request::ha(&HaCommand::parse(&["switchover", "all"]).unwrap());
        let reply = ctl::request(&dir.join("lns1.sock"), &request, Duration::from_secs(5)).unwrap();
        assert!(
            reply.result().unwrap_err().contains("no HA-capable LAC"),
            "{reply:?}"
        );
        leave(subscribers);
        stop1.request_stop();
        stop2.request_stop();
        assert_eq!(lns1.join().unwrap(), Ok(()));
        assert_eq!(lns2.join().unwrap(), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

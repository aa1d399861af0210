//! The bridge between the control plane and the fast-path workers.
//!
//! [`Fastpath`] is the one owner of the worker threads of a daemon. It
//! attaches the steering program to each interface, opens one AF_XDP port
//! per (interface, queue), runs one [`Worker`] per queue, and keeps the
//! control plane's end of their queues. Everything else of the control
//! plane talks to the workers through it:
//!
//! * **Table updates** ([`Fastpath::upsert_tunnel`],
//!   [`Fastpath::upsert_session`], ...) go to *every* worker (each holds a
//!   full copy of the tables). A worker whose queue is full gets the update
//!   later from a bounded backlog, drained in order by [`Fastpath::poll`]:
//!   the control thread never blocks, and an update is never dropped
//!   silently (a full backlog is an error to the caller, and counted).
//! * **Barriers**: [`Fastpath::barrier`] gives a token; once every worker
//!   applied everything sent before it, [`Fastpath::poll_event`] returns
//!   [`FastpathEvent::BarrierDone`] with it.
//! * **Punts and injects**: [`Fastpath::poll_punt`] takes the packets the
//!   workers hand up (PPP control frames, packets for unresolved next
//!   hops, ...); give each buffer back with [`Fastpath::recycle`].
//!   [`Fastpath::inject`] sends a packet through a worker.
//! * **Next hops** ([`neighbour`]): the MAC addresses of the LACs, LNSs and
//!   the core gateway come from the kernel's ARP table, pushed to the
//!   workers as they appear or change; [`Fastpath::want_neighbour`] adds
//!   one (the role glue does it for every tunnel peer), a punt for a
//!   missing one re-resolves it.
//! * **Counters**: [`Fastpath::request_reports`] asks every worker for its
//!   counters and latency histogram; [`Fastpath::reports`] holds the latest
//!   answers and [`Fastpath::summary`] their sum, for `show stats` and
//!   metrics.
//!
//! # How a daemon uses it
//!
//! Through the role glue, which owns the [`Fastpath`] and knows what the
//! node's events mean for the tables: [`lns::LnsFastpath`] and
//! [`lac::LacFastpath`]. For the LNS:
//!
//! ```text
//! let config = FastpathConfig {
//!     subscriber_prefixes: vec![(pool_addr, pool_len)],
//!     gateway: Some(core_next_hop),
//!     ..FastpathConfig::new(Role::Lns, vec!["wan0".into(), "core0".into()], vec![tunnel_ip])
//! };
//! // In the daemon's network namespace; turns on the node's connected calls.
//! let mut fp = LnsFastpath::start(config, SocketAddrV4::new(tunnel_ip, 1701), driver.node_mut())?;
//! loop {
//!     driver.run_until(driver.now() + Duration::from_millis(1), |_node, event| {
//!         fp.program(&event);                    // session up/down → tables
//!         ControlFlow::Continue(())
//!     })?;
//!     fp.service(driver.node_mut(), driver.now()); // calls, punts, backlog, counters
//! }
//! let summary = fp.fastpath().fresh_reports(Duration::from_millis(500))?; // show stats
//! fp.stop();                                     // or drop
//! ```
//!
//! The role glue lives in [`lns`] (and [`lac`] for the LAC). Start-up
//! happens in the calling thread's network namespace: interface names
//! resolve, programs attach and the probe socket is made there; the worker
//! threads only use what was opened.

pub mod icmp;
pub mod lac;
pub mod lns;
pub mod neighbour;

use core::net::Ipv4Addr;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::counters::Counters;
pub use dataplane::io::afxdp::SteeringOptions;
use dataplane::io::afxdp::{AfXdpConfig, AfXdpError, AfXdpPort, Steering, XdpMode};
use dataplane::io::Port;
use dataplane::punt::{InjectTarget, PacketBuffer, Punt};
use dataplane::table::{Neighbour, SessionConfig, SessionCounters, SessionKey, TableError, Tunnel};
use dataplane::update::{Channels, Event, Update, WorkerReport};
use dataplane::wire::ethernet;
pub use dataplane::worker::{PollMode, Role};
use dataplane::worker::{Worker, WorkerConfig};

use neighbour::{NeighbourAction, Neighbours, Prober};

/// How often the kernel's ARP table is read while every next hop is known
/// (to notice a changed MAC address).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
/// How often it is read while some next hop is unresolved.
const NEIGHBOUR_RETRY: Duration = Duration::from_millis(200);
/// Events kept for [`Fastpath::poll_event`] at most (oldest dropped).
const MAX_EVENTS: usize = 4096;
/// How long the kernel's routes are trusted for next-hop lookups.
const ROUTES_TTL: Duration = Duration::from_secs(1);

/// What the fast path is started with.
#[derive(Debug, Clone)]
pub struct FastpathConfig {
    /// LNS or LAC.
    pub role: Role,
    /// The interfaces, in port order: port `i` of every worker is on
    /// `interfaces[i]` (LNS: `wan`, `core`; LAC: `access`, `wan`).
    pub interfaces: Vec<String>,
    /// Our tunnel endpoint addresses (L2TP to them is ours).
    pub local_addresses: Vec<Ipv4Addr>,
    /// IPv4 prefixes whose traffic the steering programs send to the
    /// workers (the LNS's subscriber pools).
    pub subscriber_prefixes: Vec<(Ipv4Addr, u8)>,
    /// The core-side gateway (LNS): where upstream IPv4 goes.
    pub gateway: Option<Ipv4Addr>,
    /// What the steering program of each interface sends to the workers
    /// besides the fast-path traffic, in port order (missing: nothing
    /// more). A LAC's access port takes PPPoE discovery, which no kernel
    /// socket serves: [`FastpathConfig::new`] sets that for `Role::Lac`.
    pub steering: Vec<SteeringOptions>,
    /// Queues per interface, one worker each (a veth made without
    /// `numrxqueues` has one). 0: as many as the interfaces have receive
    /// queues, read from `/sys/class/net/IF/queues` (right when /sys is
    /// mounted for the daemon's namespace, as `ip netns exec` does).
    /// Traffic the steering program sees on a queue without a socket goes
    /// to the kernel, not to the workers.
    pub queues: u32,
    /// Spin or back off when idle ([`PollMode::Adaptive`] by default).
    pub poll_mode: PollMode,
    /// Generic (skb) XDP by default, which works on every interface.
    pub xdp_mode: XdpMode,
    /// Pin worker `i` to `cores[i % cores.len()]`; empty: no pinning.
    pub cores: Vec<usize>,
    /// Sessions each worker's table holds.
    pub max_sessions: usize,
    /// Frames per holding ring (LAC switchover).
    pub hold_depth: usize,
    /// Holding rings per worker: sessions one worker holds at once while
    /// they move (LAC switchover).
    pub hold_rings: usize,
    /// Updates kept per worker while its queue is full; beyond this an
    /// update is refused with [`FastpathError::Backlog`].
    pub max_backlog: usize,
    /// Frames each port brings to its worker's UMEM (2 KiB each; a
    /// worker's ports share one UMEM of all their frames, and a port whose
    /// traffic mostly leaves by another gets frames back from it). A LAC
    /// holds what the
    /// subscribers of a dead LNS send, and replays what that LNS may have
    /// missed, in UMEM frames until the move flushes them: a thousand
    /// sessions at 10 packets/s held for half a second take ~5,000 frames
    /// beyond the fill ring's, so the LAC's default is 32,768 (64 MiB a
    /// port); the LNS's 4,096.
    pub umem_frames: u32,
    /// How long each LAC worker keeps what it relayed upstream, to replay it
    /// to a dead LNS's peer (`WorkerConfig::replay_window`); zero (the
    /// default): nothing kept.
    pub replay_window: Duration,
}

impl FastpathConfig {
    /// Defaults for `role` on `interfaces` with `local_addresses`: one queue,
    /// adaptive polling, generic XDP, no pinning, 100,000 sessions.
    pub fn new(role: Role, interfaces: Vec<String>, local_addresses: Vec<Ipv4Addr>) -> Self {
        FastpathConfig {
            role,
            interfaces,
            local_addresses,
            subscriber_prefixes: Vec::new(),
            gateway: None,
            steering: match role {
                // Port 0 is the access port (see `lac`).
                Role::Lac => vec![SteeringOptions {
                    pppoe_discovery: true,
                    ..SteeringOptions::default()
                }],
                Role::Lns => Vec::new(),
            },
            queues: 1,
            poll_mode: PollMode::Adaptive,
            xdp_mode: XdpMode::Skb,
            cores: Vec::new(),
            max_sessions: 100_000,
            hold_depth: 64,
            hold_rings: 1024,
            max_backlog: 1 << 20,
            umem_frames: match role {
                Role::Lac => 32_768,
                Role::Lns => 4096,
            },
            replay_window: Duration::ZERO,
        }
    }

    fn worker_config(&self, id: usize) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.role, self.local_addresses.clone());
        config.id = id;
        config.max_sessions = self.max_sessions;
        config.hold_depth = self.hold_depth.max(1);
        config.hold_rings = self.hold_rings;
        config.replay_window = self.replay_window;
        config.mode = self.poll_mode;
        config.core = (!self.cores.is_empty()).then(|| self.cores[id % self.cores.len()]);
        config
    }
}

/// Why the fast path could not start, or refused something.
#[derive(Debug)]
pub enum FastpathError {
    /// No interfaces, or more than a port number can name.
    Config(String),
    /// Steering or an AF_XDP port could not be set up.
    AfXdp(AfXdpError),
    /// A worker or the probe socket could not be made.
    Io(std::io::Error),
    /// A worker's backlog is full: the update was not queued for it (the
    /// worker is stuck or far behind).
    Backlog {
        /// The worker.
        worker: usize,
    },
}

impl fmt::Display for FastpathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FastpathError::Config(what) => write!(f, "fast path configuration: {what}"),
            FastpathError::AfXdp(e) => write!(f, "fast path: {e}"),
            FastpathError::Io(e) => write!(f, "fast path: {e}"),
            FastpathError::Backlog { worker } => write!(
                f,
                "fast-path worker {worker} is not taking updates (its backlog is full)"
            ),
        }
    }
}

impl std::error::Error for FastpathError {}

impl From<AfXdpError> for FastpathError {
    fn from(e: AfXdpError) -> Self {
        FastpathError::AfXdp(e)
    }
}

impl From<std::io::Error> for FastpathError {
    fn from(e: std::io::Error) -> Self {
        FastpathError::Io(e)
    }
}

/// What the workers answered.
#[derive(Debug)]
pub enum FastpathEvent {
    /// Every worker applied everything sent before [`Fastpath::barrier`]
    /// returned this token.
    BarrierDone(u64),
    /// A worker could not apply an update (table full, invalid entry).
    Refused {
        /// The worker.
        worker: usize,
        /// The update.
        update: Update,
        /// Why.
        error: TableError,
    },
    /// A session's counters on one worker, for [`Fastpath::query_session`].
    SessionCounters {
        /// The worker.
        worker: usize,
        /// The token of the query.
        token: u64,
        /// The session.
        key: SessionKey,
        /// `None` when the worker does not have it.
        counters: Option<SessionCounters>,
    },
}

/// Counters of the bridge itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Updates sent (counted once per worker).
    pub updates: u64,
    /// Updates that waited in a backlog because a queue was full.
    pub deferred: u64,
    /// Updates refused because a backlog was full.
    pub refused: u64,
    /// Punts handed to the control plane.
    pub punts: u64,
    /// Injects the workers' queues or pools would not take.
    pub injects_failed: u64,
    /// Neighbour probes sent.
    pub probes: u64,
    /// Events dropped because nobody polled them.
    pub events_lost: u64,
}

/// The sum of the latest reports of every worker.
#[derive(Debug, Clone)]
pub struct FastpathSummary {
    /// Workers that answered.
    pub workers: usize,
    /// Their counters, added up.
    pub counters: Counters,
    /// Their sampled burst latency (receive to transmit), merged.
    pub latency: LatencySummary,
    /// Sessions in the first worker's table (all hold the same).
    pub sessions: usize,
}

/// Percentiles of the workers' merged latency histograms, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

/// A running worker, seen from the control plane.
struct WorkerHandle {
    channels: Channels,
    /// Updates its queue had no room for, oldest first.
    backlog: VecDeque<Update>,
    thread: Option<JoinHandle<WorkerReport>>,
}

/// The fast path: see the [module documentation](self).
pub struct Fastpath {
    config: FastpathConfig,
    workers: Vec<WorkerHandle>,
    /// Each port's MAC address (the source of frames we inject).
    port_macs: Vec<ethernet::Address>,
    steering: Vec<Steering>,
    stop: Arc<AtomicBool>,
    neighbours: Neighbours,
    prober: Option<Prober>,
    next_neighbour_read: Instant,
    /// When a punt last brought the next read forward.
    last_forced_read: Option<Instant>,
    routes: Vec<neighbour::Route>,
    routes_read_at: Option<Instant>,
    next_token: u64,
    /// Barrier token → workers yet to echo it, and whether to report it
    /// with an event.
    barriers: HashMap<u64, (usize, bool)>,
    events: VecDeque<FastpathEvent>,
    reports: Vec<Option<WorkerReport>>,
    /// Round robin over the workers for punts and injects.
    next_punt: usize,
    next_inject: usize,
    stats: BridgeStats,
}

impl fmt::Debug for Fastpath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fastpath")
            .field("role", &self.config.role)
            .field("interfaces", &self.config.interfaces)
            .field("workers", &self.workers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Fastpath {
    /// Attach steering to every interface, open the AF_XDP ports, start
    /// one worker per queue, set the gateway and the subscriber prefixes.
    /// Everything is opened in the calling thread's network namespace.
    pub fn start(config: FastpathConfig) -> Result<Fastpath, FastpathError> {
        if config.interfaces.is_empty() || config.interfaces.len() > usize::from(u8::MAX) {
            return Err(FastpathError::Config(format!(
                "between 1 and 255 interfaces, not {}",
                config.interfaces.len()
            )));
        }
        if config.local_addresses.is_empty()
            || config.local_addresses.iter().any(|a| a.is_unspecified())
        {
            return Err(FastpathError::Config(format!(
                "local addresses {:?}: the workers match L2TP by our tunnel address, so                  give the specific address the peers send to (not 0.0.0.0)",
                config.local_addresses
            )));
        }
        let mut steering = Vec::with_capacity(config.interfaces.len());
        for (port, interface) in config.interfaces.iter().enumerate() {
            let options = config.steering.get(port).copied().unwrap_or_default();
            let s = Steering::attach_with(interface, config.xdp_mode, options)?;
            for &(addr, len) in &config.subscriber_prefixes {
                s.add_subscriber_prefix(addr, len)?;
            }
            steering.push(s);
        }
        let queues = match config.queues {
            0 => config
                .interfaces
                .iter()
                .filter_map(|i| receive_queues(i))
                .max()
                .unwrap_or(1),
            n => n,
        };
        let mut workers = Vec::new();
        for queue in 0..queues {
            let port_configs: Vec<AfXdpConfig> = config
                .interfaces
                .iter()
                .map(|interface| AfXdpConfig {
                    mode: config.xdp_mode,
                    frames: config.umem_frames,
                    ..AfXdpConfig::new(interface, queue)
                })
                .collect();
            // A worker's ports share one UMEM: what crosses from the
            // access side to the core and back is not copied.
            let group: Vec<_> = port_configs
                .iter()
                .zip(&steering)
                .map(|(c, s)| (c, Some(s)))
                .collect();
            let ports = AfXdpPort::open_group(&group)?;
            let worker = Worker::new(config.worker_config(workers.len()), ports)
                .map_err(|e| FastpathError::Io(std::io::Error::other(e.to_string())))?;
            workers.push(worker);
        }
        let prober = Prober::new()?;
        Fastpath::with_workers(config, workers, steering, Some(prober))
    }

    /// Run `workers` (over any port: tests use memory ports) as the fast
    /// path of `config`; `steering` is detached at stop. No probe socket:
    /// next hops are only learnt from the kernel's table.
    pub fn with_workers<P: Port + Send + 'static>(
        config: FastpathConfig,
        workers: Vec<Worker<P>>,
        steering: Vec<Steering>,
        prober: Option<Prober>,
    ) -> Result<Fastpath, FastpathError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(workers.len());
        let mut workers = workers;
        let port_macs = workers
            .first_mut()
            .map(|w| w.ports_mut().iter().map(|p| p.mac_addr()).collect())
            .unwrap_or_default();
        for (id, mut worker) in workers.into_iter().enumerate() {
            let channels = worker.channels();
            let stop_flag = stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fastpath-{id}"))
                .spawn(move || {
                    worker.run(&stop_flag);
                    worker.report(u64::MAX)
                });
            let thread = match spawned {
                Ok(t) => t,
                Err(e) => {
                    // Stop the ones already running before giving up.
                    stop.store(true, Ordering::Relaxed);
                    for h in &mut handles {
                        join(h);
                    }
                    return Err(FastpathError::Io(e));
                }
            };
            handles.push(WorkerHandle {
                channels,
                backlog: VecDeque::new(),
                thread: Some(thread),
            });
        }
        let now = Instant::now();
        let mut fp = Fastpath {
            neighbours: Neighbours::new(config.interfaces.clone()),
            reports: (0..handles.len()).map(|_| None).collect(),
            workers: handles,
            port_macs,
            steering,
            stop,
            prober,
            next_neighbour_read: now,
            last_forced_read: None,
            routes: Vec::new(),
            routes_read_at: None,
            next_token: 1,
            barriers: HashMap::new(),
            events: VecDeque::new(),
            next_punt: 0,
            next_inject: 0,
            stats: BridgeStats::default(),
            config,
        };
        if let Some(gateway) = fp.config.gateway {
            fp.set_gateway(Some(gateway))?;
        }
        Ok(fp)
    }

    /// What it was started with.
    pub fn config(&self) -> &FastpathConfig {
        &self.config
    }

    /// The MAC address of port `port` (the interface's).
    pub fn port_mac(&self, port: u8) -> Option<ethernet::Address> {
        self.port_macs.get(usize::from(port)).copied()
    }

    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The bridge's own counters.
    pub fn stats(&self) -> BridgeStats {
        self.stats
    }

    /// Updates waiting for room in the workers' queues, over all workers.
    pub fn backlog(&self) -> usize {
        self.workers.iter().map(|w| w.backlog.len()).sum()
    }

    // --- table updates ---------------------------------------------------

    /// Send `update` to every worker (in order after what was sent before).
    /// Fails only when a worker's backlog is full; the other workers still
    /// got it.
    pub fn send(&mut self, update: Update) -> Result<(), FastpathError> {
        let mut result = Ok(());
        for (id, w) in self.workers.iter_mut().enumerate() {
            self.stats.updates += 1;
            if w.backlog.is_empty() {
                match w.channels.send(update) {
                    Ok(()) => continue,
                    Err(_) => self.stats.deferred += 1,
                }
            }
            if w.backlog.len() >= self.config.max_backlog {
                self.stats.refused += 1;
                tracing::error!(
                    worker = id,
                    ?update,
                    "fast-path update refused: backlog full"
                );
                result = Err(FastpathError::Backlog { worker: id });
                continue;
            }
            w.backlog.push_back(update);
        }
        result
    }

    /// Add or replace a tunnel.
    pub fn upsert_tunnel(&mut self, tunnel: Tunnel) -> Result<(), FastpathError> {
        self.send(Update::UpsertTunnel(tunnel))
    }

    /// Remove a tunnel and its sessions.
    pub fn remove_tunnel(&mut self, tunnel_id: u16) -> Result<(), FastpathError> {
        self.send(Update::RemoveTunnel(tunnel_id))
    }

    /// Add or change a session.
    pub fn upsert_session(&mut self, session: SessionConfig) -> Result<(), FastpathError> {
        self.send(Update::UpsertSession(session))
    }

    /// Remove a session.
    pub fn remove_session(&mut self, key: SessionKey) -> Result<(), FastpathError> {
        self.send(Update::RemoveSession(key))
    }

    /// Hold a LAC session's upstream frames, or flush them in order.
    pub fn set_holding(&mut self, key: SessionKey, holding: bool) -> Result<(), FastpathError> {
        self.send(Update::SetHolding { key, holding })
    }

    /// Tell the workers a next hop's MAC address and port (the kernel's
    /// table does this by itself: see [`Fastpath::want_neighbour`]).
    pub fn upsert_neighbour(
        &mut self,
        addr: Ipv4Addr,
        neighbour: Neighbour,
    ) -> Result<(), FastpathError> {
        self.send(Update::UpsertNeighbour { addr, neighbour })
    }

    /// Have every interface's steering program send IPv4 to `addr/len`
    /// (and ARP requests for it) to the workers, beyond
    /// [`FastpathConfig::subscriber_prefixes`]: an LNS adopting a peer's
    /// session keeps the subscriber's address, from the peer's pool.
    pub fn add_subscriber_prefix(&mut self, addr: Ipv4Addr, len: u8) -> Result<(), FastpathError> {
        for s in &self.steering {
            s.add_subscriber_prefix(addr, len)?;
        }
        Ok(())
    }

    /// Undo [`Fastpath::add_subscriber_prefix`].
    pub fn remove_subscriber_prefix(
        &mut self,
        addr: Ipv4Addr,
        len: u8,
    ) -> Result<(), FastpathError> {
        for s in &self.steering {
            s.remove_subscriber_prefix(addr, len)?;
        }
        Ok(())
    }

    /// Set the core-side gateway (and resolve it).
    pub fn set_gateway(&mut self, gateway: Option<Ipv4Addr>) -> Result<(), FastpathError> {
        if let Some(g) = gateway {
            self.want_neighbour(g);
        }
        self.send(Update::SetGateway(gateway))
    }

    /// A token that [`FastpathEvent::BarrierDone`] returns once every
    /// worker applied everything sent before this call.
    pub fn barrier(&mut self) -> Result<u64, FastpathError> {
        self.new_barrier(true)
    }

    /// As [`Fastpath::barrier`], without the event: ask
    /// [`Fastpath::barrier_pending`] (for glue that waits on its own).
    pub fn barrier_quiet(&mut self) -> Result<u64, FastpathError> {
        self.new_barrier(false)
    }

    /// Some worker has not yet echoed barrier `token` (as of the last
    /// [`Fastpath::poll`]).
    pub fn barrier_pending(&self, token: u64) -> bool {
        self.barriers.contains_key(&token)
    }

    fn new_barrier(&mut self, report: bool) -> Result<u64, FastpathError> {
        let token = self.token();
        self.barriers.insert(token, (self.workers.len(), report));
        if let Err(e) = self.send(Update::Barrier(token)) {
            // A worker will never echo it.
            self.barriers.remove(&token);
            return Err(e);
        }
        Ok(token)
    }

    /// Ask every worker for a session's counters
    /// ([`FastpathEvent::SessionCounters`], one per worker).
    pub fn query_session(&mut self, key: SessionKey) -> Result<u64, FastpathError> {
        let token = self.token();
        self.send(Update::QuerySession { key, token })?;
        Ok(token)
    }

    fn token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    // --- next hops --------------------------------------------------------

    /// The workers need `addr`'s MAC address: resolve it now if it is new,
    /// and keep it current.
    pub fn want_neighbour(&mut self, addr: Ipv4Addr) {
        if self.neighbours.want(addr) {
            self.next_neighbour_read = Instant::now();
        }
    }

    /// A worker had no (or a wrong) MAC address for `addr`
    /// (`PuntReason::NeighbourMissing`): resolve it again.
    pub fn resolve_neighbour(&mut self, addr: Ipv4Addr) {
        // Every packet toward an unresolved hop is punted: one being
        // resolved already is retried on its own schedule, and a known one
        // is told again at most every NEIGHBOUR_RETRY.
        if self.neighbours.is_wanted(addr) && self.neighbours.get(addr).is_none() {
            return;
        }
        let now = Instant::now();
        if self
            .last_forced_read
            .is_some_and(|t| now.saturating_duration_since(t) < NEIGHBOUR_RETRY)
        {
            return;
        }
        self.last_forced_read = Some(now);
        self.neighbours.invalidate(addr);
        self.next_neighbour_read = now;
    }

    /// The next hops and what the workers were told about them.
    pub fn neighbours(&self) -> &Neighbours {
        &self.neighbours
    }

    /// Where to send packets for `dst` according to the kernel's routes:
    /// `dst` itself when on a link, else the gateway of its route; `dst`
    /// when there is no route.
    pub fn next_hop(&mut self, dst: Ipv4Addr) -> Ipv4Addr {
        let now = Instant::now();
        if self
            .routes_read_at
            .is_none_or(|t| now.saturating_duration_since(t) >= ROUTES_TTL)
        {
            match neighbour::read_routes() {
                Ok(routes) => self.routes = routes,
                Err(e) => tracing::warn!(error = %e, "cannot read the kernel's routes"),
            }
            self.routes_read_at = Some(now);
        }
        neighbour::route_to(&self.routes, dst).map_or(dst, |(_, hop)| hop)
    }

    fn refresh_neighbours(&mut self, now: Instant) {
        if now < self.next_neighbour_read || self.neighbours.is_empty() {
            return;
        }
        let arp = match neighbour::read_arp() {
            Ok(arp) => arp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kernel's ARP table");
                Vec::new()
            }
        };
        for action in self.neighbours.update(now, &arp) {
            match action {
                NeighbourAction::Upsert(addr, neighbour) => {
                    tracing::debug!(%addr, mac = ?neighbour.mac, port = neighbour.port, "next hop");
                    // A full backlog is logged by send; the next refresh
                    // does not retry it, but a punt for it will.
                    let _ = self.upsert_neighbour(addr, neighbour);
                }
                NeighbourAction::Probe(addr) => {
                    if let Some(prober) = &self.prober {
                        self.stats.probes += 1;
                        if let Err(e) = prober.probe(addr) {
                            tracing::debug!(%addr, error = %e, "neighbour probe not sent");
                        }
                    }
                }
            }
        }
        let wait = if self.neighbours.pending() > 0 {
            NEIGHBOUR_RETRY
        } else {
            NEIGHBOUR_REFRESH
        };
        self.next_neighbour_read = now + wait;
    }

    // --- the control thread's turn ------------------------------------------

    /// Give the workers what their queues had no room for, collect their
    /// answers, and keep the next hops current. Call it every slice of the
    /// control loop (it does not block).
    pub fn poll(&mut self) {
        for w in &mut self.workers {
            while let Some(&update) = w.backlog.front() {
                if w.channels.send(update).is_err() {
                    break;
                }
                w.backlog.pop_front();
            }
        }
        for id in 0..self.workers.len() {
            while let Some(event) = self.workers[id].channels.poll_event() {
                self.on_worker_event(id, event);
            }
        }
        self.refresh_neighbours(Instant::now());
    }

    fn on_worker_event(&mut self, id: usize, event: Event) {
        // An owner that never polls events must not grow this forever.
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_lost += 1;
        }
        match event {
            Event::Barrier { token, .. } => {
                if let Some((left, report)) = self.barriers.get_mut(&token) {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        if *report {
                            self.events.push_back(FastpathEvent::BarrierDone(token));
                        }
                        self.barriers.remove(&token);
                    }
                }
            }
            Event::Report(report) => {
                if let Some(slot) = self.reports.get_mut(id) {
                    *slot = Some(*report);
                }
            }
            Event::SessionCounters {
                worker,
                token,
                key,
                counters,
            } => self.events.push_back(FastpathEvent::SessionCounters {
                worker,
                token,
                key,
                counters,
            }),
            Event::Refused {
                worker,
                update,
                error,
            } => {
                tracing::warn!(
                    worker,
                    ?update,
                    ?error,
                    "fast-path worker refused an update"
                );
                self.events.push_back(FastpathEvent::Refused {
                    worker,
                    update,
                    error,
                })
            }
        }
    }

    /// The next answer of the workers (after [`Fastpath::poll`]).
    pub fn poll_event(&mut self) -> Option<FastpathEvent> {
        self.events.pop_front()
    }

    /// Poll until every worker echoed `token` or `limit` passed; true if
    /// they did. Blocks the caller: for start-up, tests and shutdown, not
    /// for the control loop (which watches for
    /// [`FastpathEvent::BarrierDone`]). Other events stay queued.
    pub fn wait_barrier(&mut self, token: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.poll();
            if let Some(i) = self
                .events
                .iter()
                .position(|e| matches!(e, FastpathEvent::BarrierDone(t) if *t == token))
            {
                self.events.remove(i);
                return true;
            }
            if !self.barriers.contains_key(&token) || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    // --- punts and injects ----------------------------------------------------

    /// The next packet a worker handed up, with the worker's index (give the
    /// buffer back to that worker with [`Fastpath::recycle`]).
    pub fn poll_punt(&mut self) -> Option<(usize, Punt)> {
        let n = self.workers.len();
        for i in 0..n {
            let id = (self.next_punt + i) % n;
            if let Some(punt) = self.workers[id].channels.poll_punt() {
                self.next_punt = (id + 1) % n;
                self.stats.punts += 1;
                return Some((id, punt));
            }
        }
        None
    }

    /// Give a punt's buffer back to the worker it came from.
    pub fn recycle(&mut self, worker: usize, buffer: PacketBuffer) {
        if let Some(w) = self.workers.get(worker) {
            w.channels.recycle(buffer);
        }
    }

    /// Send `packet` through a worker to `target`; false (counted) when the
    /// worker has no buffer or queue room for it, or it does not fit.
    pub fn inject(&mut self, target: InjectTarget, packet: &[u8]) -> bool {
        let n = self.workers.len();
        if n == 0 {
            return false;
        }
        let id = self.next_inject % n;
        self.next_inject = (id + 1) % n;
        let sent = self.workers[id].channels.inject(target, packet);
        if !sent {
            self.stats.injects_failed += 1;
        }
        sent
    }

    // --- counters ----------------------------------------------------------------

    /// Ask every worker for its counters; the answers land in
    /// [`Fastpath::reports`] on a later [`Fastpath::poll`].
    pub fn request_reports(&mut self) -> Result<(), FastpathError> {
        let token = self.token();
        self.send(Update::Report(token))
    }

    /// The latest report of each worker (`None` until it answered once).
    pub fn reports(&self) -> &[Option<WorkerReport>] {
        &self.reports
    }

    /// Ask for reports and poll until every worker answered or `limit`
    /// passed (blocks: for `show stats`, tests and shutdown).
    pub fn fresh_reports(&mut self, limit: Duration) -> Result<FastpathSummary, FastpathError> {
        for r in &mut self.reports {
            *r = None;
        }
        self.request_reports()?;
        let deadline = Instant::now() + limit;
        while self.reports.iter().any(Option::is_none) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
            self.poll();
        }
        Ok(self.summary())
    }

    /// The latest reports added up.
    pub fn summary(&self) -> FastpathSummary {
        summarise(self.reports.iter().flatten())
    }

    // --- shutdown --------------------------------------------------------------

    /// Stop the workers, join them and detach the steering programs;
    /// returns each worker's final report. Idempotent.
    pub fn stop(&mut self) -> Vec<WorkerReport> {
        self.stop.store(true, Ordering::Relaxed);
        let finals = self.workers.iter_mut().filter_map(join).collect();
        // After the ports are closed (their workers returned): the programs
        // go with their links.
        self.steering.clear();
        finals
    }
}

impl Drop for Fastpath {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many receive queues `interface` has, from sysfs.
fn receive_queues(interface: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{interface}/queues")).ok()?;
    let n = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

fn join(w: &mut WorkerHandle) -> Option<WorkerReport> {
    let thread = w.thread.take()?;
    match thread.join() {
        Ok(report) => Some(report),
        Err(_) => {
            tracing::error!("a fast-path worker thread panicked");
            None
        }
    }
}

/// The source and UDP payload of an Ethernet/IPv4/UDP frame (a punted L2TP
/// message, `PuntReason::L2tpControl`), for the node's
/// `handle_datagram`; `None` for anything else or a fragment.
pub fn udp_datagram(frame: &[u8]) -> Option<(core::net::SocketAddrV4, &[u8])> {
    use dataplane::wire::{ipv4, udp};
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::EtherType::Ipv4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != ipv4::Protocol::Udp || ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let src = ip.src_addr();
    let datagram = udp::Packet::new_checked(ip.payload()).ok()?;
    let port = datagram.src_port();
    // The views borrow themselves; take the payload from `frame` at their
    // offsets (tags included in the Ethernet header length).
    let start = eth.header_len() + ip.header_len() + udp::HEADER_LEN;
    let payload = frame.get(start..start + datagram.payload().len())?;
    Some((core::net::SocketAddrV4::new(src, port), payload))
}

/// Add up worker reports.
pub fn summarise<'a>(reports: impl IntoIterator<Item = &'a WorkerReport>) -> FastpathSummary {
    let mut summary = FastpathSummary {
        workers: 0,
        counters: Counters::default(),
        latency: LatencySummary::default(),
        sessions: 0,
    };
    let mut merged = None;
    for r in reports {
        if summary.workers == 0 {
            summary.sessions = r.sessions;
        }
        summary.workers += 1;
        add_counters(&mut summary.counters, &r.counters);
        match &mut merged {
            None => merged = Some(r.latency_ns.clone()),
            Some(h) => {
                // Every worker's histogram has the same bounds: adding
                // cannot fail.
                let _ = h.add(&r.latency_ns);
            }
        }
    }
    if let Some(h) = merged.filter(|h| !h.is_empty()) {
        summary.latency = LatencySummary {
            samples: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        };
    }
    summary
}

/// `into += from`, counter by counter.
pub fn add_counters(into: &mut Counters, from: &Counters) {
    into.received += from.received;
    into.transmitted += from.transmitted;
    for (a, b) in into.forwarded.iter_mut().zip(&from.forwarded) {
        *a += b;
    }
    for (a, b) in into.punted.iter_mut().zip(&from.punted) {
        *a += b;
    }
    for (a, b) in into.dropped.iter_mut().zip(&from.dropped) {
        *a += b;
    }
    into.held += from.held;
    into.flushed += from.flushed;
    into.updates += from.updates;
    into.idle_polls += from.idle_polls;
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::counters::{PathKind, PuntKind};
    use dataplane::io::memory::MemoryPort;
    use dataplane::punt::PuntReason;
    use dataplane::testkit::{self, Encoding, ACCESS_MAC, CORE_MAC};
    use dataplane::update::ChannelSizes;
    use dataplane::wire::ppp;

    /// A fast path of one LNS worker over memory ports with the testkit's
    /// session 0, a tiny update queue, and an LCP frame of session 0
    /// waiting on port 0.
    fn lab(max_backlog: usize) -> Fastpath {
        let mut config = testkit::config(Role::Lns, 1000);
        config.channels = ChannelSizes {
            updates: 4,
            ..ChannelSizes::default()
        };
        let mut ports = [testkit::port(ACCESS_MAC), testkit::port(CORE_MAC)];
        let lcp = testkit::ppp_frame(ppp::Protocol::Lcp, &[1, 1, 0, 4], Encoding::default());
        let frame = testkit::l2tp_frame(
            testkit::peer(),
            testkit::session_key(0),
            &lcp,
            Encoding::default(),
        );
        assert!(ports[0].push_rx(&frame));
        let worker: Worker<MemoryPort> = testkit::worker_with(config, 1, ports);
        let config = FastpathConfig {
            max_backlog,
            ..FastpathConfig::new(
                Role::Lns,
                vec!["acc".into(), "core".into()],
                vec![testkit::LOCAL_ADDR],
            )
        };
        Fastpath::with_workers(config, vec![worker], Vec::new(), None).unwrap()
    }

    fn wait_for_barrier(fp: &mut Fastpath, token: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            fp.poll();
            if let Some(event) = fp.poll_event() {
                match event {
                    FastpathEvent::BarrierDone(t) if t == token => return,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(Instant::now() < deadline, "barrier {token} not echoed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn updates_wait_in_the_backlog_and_a_barrier_says_when_they_are_live() {
        let mut fp = lab(1 << 20);
        for i in 1..200 {
            fp.upsert_session(testkit::session(Role::Lns, i)).unwrap();
        }
        assert!(fp.backlog() > 0, "a queue of 4 took 199 updates at once");
        assert!(fp.stats().deferred > 0);
        let token = fp.barrier().unwrap();
        wait_for_barrier(&mut fp, token);
        assert_eq!(fp.backlog(), 0);
        let summary = fp.fresh_reports(Duration::from_secs(10)).unwrap();
        assert_eq!(summary.workers, 1);
        assert_eq!(summary.sessions, 200);

        // The LCP frame waiting on the port was punted with its session.
        let (worker, punt) = fp.poll_punt().expect("the LCP frame");
        assert_eq!(worker, 0);
        assert_eq!(punt.reason, PuntReason::LnsPpp(testkit::session_key(0)));
        assert_eq!(&punt.buffer.bytes()[..4], &[0xff, 0x03, 0xc0, 0x21]);
        fp.recycle(worker, punt.buffer);
        assert_eq!(summary.counters.punts(PuntKind::LnsPpp), 1);

        // An injected PPP frame leaves in session 0's tunnel.
        assert!(fp.inject(
            InjectTarget::LnsSession(testkit::session_key(0)),
            &[0xc0, 0x21, 2, 1, 0, 4]
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = fp.fresh_reports(Duration::from_secs(10)).unwrap();
            if s.counters.forwards(PathKind::Inject) == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", s.counters);
        }

        let finals = fp.stop();
        assert_eq!(finals.len(), 1);
        assert_eq!(finals[0].sessions, 200);
        assert!(fp.stop().is_empty(), "stop twice");
    }

    #[test]
    fn a_stuck_worker_refuses_updates_once_its_backlog_is_full() {
        let mut fp = lab(8);
        fp.stop();
        let mut refused = 0;
        for i in 1..20 {
            if let Err(FastpathError::Backlog { worker: 0 }) =
                fp.upsert_session(testkit::session(Role::Lns, i))
            {
                refused += 1;
            }
        }
        // 4 in the queue, 8 in the backlog.
        assert_eq!(refused, 19 - 12);
        assert_eq!(fp.stats().refused, 7);
        assert_eq!(fp.backlog(), 8);
    }

    #[test]
    fn a_punted_l2tp_frame_gives_its_datagram() {
        let key = testkit::session_key(0);
        let frame = testkit::l2tp_frame(testkit::peer(), key, &[0xc0, 0x21], Encoding::default());
        let (from, payload) = udp_datagram(&frame).unwrap();
        assert_eq!(from, testkit::peer());
        assert_eq!(&payload[..2], &[0x00, 0x02], "an L2TP data header");
        assert!(payload.ends_with(&[0xc0, 0x21]));
        assert!(udp_datagram(&frame[..20]).is_none());
        let arp_like = [&frame[..12], &[0x08, 0x06], &frame[14..]].concat();
        assert!(udp_datagram(&arp_like).is_none());
    }

    #[test]
    fn reports_add_up() {
        let mut a = Counters {
            received: 1,
            ..Counters::default()
        };
        a.forwarded[PathKind::LnsUpstream as usize] = 2;
        let mut b = a.clone();
        b.dropped[0] = 5;
        add_counters(&mut a, &b);
        assert_eq!(a.received, 2);
        assert_eq!(a.forwards(PathKind::LnsUpstream), 4);
        assert_eq!(a.total_drops(), 5);
    }
}

//! `l2bench hasync`: the LNS-LNS state offload measured for real (issue 6
//! §6): two LNS peerings ([`controlplane::ha::peering::LnsPeering`], the
//! code lnsd runs) on their own L2TP endpoints, each in its own thread with
//! its own UDP socket on loopback, over an authenticated LNS-LNS tunnel
//! with hidden Session-State, with lnsd's defaults (offload window, LAN
//! timers, receive window).
//!
//! 1. The primary is filled with `--sessions` sessions of realistic state
//!    (user names, LCP options and magic numbers, IPCP addresses and DNS,
//!    Acct-Session-Id, Class, counters, timers) while not connected.
//! 2. Both connect (each LNS opens its own connection to the other, as
//!    lnsd does); the primary's bulk sync walks every session: the report
//!    gives its wall time from the connect to the LSORS of bulk-end, the
//!    sessions per second and the bytes each way.
//! 3. Then `--changes` incremental updates (counters moved on), `--rate` a
//!    second in bursts of `--burst`: the offload lag (change → LSORS), as
//!    `l2tpctl ha status` reports it.
//! 4. The peer's store is compared with the primary's sessions: they must
//!    be equal (ids, epoch and Session-State blob).
//!
//! The I/O loop is this module's own (a blocking socket with a short read
//! timeout, everything the node queues sent after each datagram), like
//! lnsd's driver.

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::BTreeSet;
use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use controlplane::config::{Ha, HaPeer, LnsConfig};
use controlplane::driver::Clock;
use controlplane::ha::message::{SessionIdentity, TunnelIdentity};
use controlplane::ha::peering::{LnsPeering, PeeringConfig, PeeringEvent};
use controlplane::ha::state::{Accounting, Counters, L2tpSessionOptions, SessionState, Timeouts};
use controlplane::l2tp::{self, Endpoint};
use controlplane::ppp::{AuthMethod, IpcpResult, LcpOptions, LinkState, Role};
use controlplane::time::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Arguments of `l2bench hasync`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sessions the primary holds and bulk-syncs.
    #[arg(long, default_value_t = 100_000)]
    pub sessions: usize,
    /// Sessions per LAC tunnel at the primary (Session IDs are per tunnel,
    /// 16 bits).
    #[arg(long, default_value_t = 4000)]
    pub sessions_per_tunnel: usize,
    /// Incremental changes after the bulk sync, for the offload lag.
    #[arg(long, default_value_t = 2000)]
    pub changes: usize,
    /// Changes per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Changes made at once (a burst of sessions coming up together).
    #[arg(long, default_value_t = 1)]
    pub burst: usize,
    /// The offload window (LSORQs unanswered at most; lnsd's `[ha]
    /// window`); default lnsd's.
    #[arg(long)]
    pub window: Option<usize>,
    /// Receive buffer of each LNS's socket, bytes (`SO_RCVBUF`, capped by
    /// the kernel at `net.core.rmem_max`). Default: the kernel's, as lnsd
    /// has it; [`controlplane::ha::peering::SOCKET_RECEIVE_BUFFER`] holds
    /// any window.
    #[arg(long)]
    pub receive_buffer: Option<usize>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            sessions: 100_000,
            sessions_per_tunnel: 4000,
            changes: 2000,
            rate: 1000.0,
            burst: 1,
            window: None,
            receive_buffer: None,
            timeout: 120.0,
            json: false,
        }
    }
}

/// What `l2bench hasync` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Sessions bulk-synced.
    pub sessions: usize,
    /// The receive buffer each socket got, bytes (as the kernel reports
    /// it: twice what it grants).
    pub receive_buffer: usize,
    /// LAC tunnels they were on.
    pub tunnels: usize,
    /// The offload window used.
    pub window: usize,
    /// Seconds to build and encode the primary's sessions (not part of
    /// the sync).
    pub fill_s: f64,
    /// Seconds from the connect (SCCRQ) to the LSORS of bulk-end.
    pub bulk_sync_s: f64,
    /// Seconds from bulk-start to the LSORS of bulk-end, as the sender
    /// reports it (`PeeringEvent::BulkSyncDone`).
    pub bulk_walk_s: f64,
    /// Sessions per second over `bulk_sync_s`.
    pub sessions_per_s: f64,
    /// CPU seconds the primary's thread spent on the sync (connect to
    /// bulk-end acknowledged): the sync cannot be faster than the busier
    /// of the two threads, whatever else runs on the machine.
    pub primary_cpu_s: f64,
    /// CPU seconds the peer's thread spent on it (start to bulk-end).
    pub peer_cpu_s: f64,
    /// Entries (tunnels and sessions) the bulk sync carried.
    pub bulk_entries: u64,
    /// UDP payload bytes and datagrams the primary sent during the sync.
    pub primary_bytes: u64,
    /// Datagrams the primary sent during the sync.
    pub primary_datagrams: u64,
    /// UDP payload bytes the peer sent during the sync.
    pub peer_bytes: u64,
    /// Datagrams the peer sent during the sync.
    pub peer_datagrams: u64,
    /// Incremental changes made after the sync.
    pub changes: usize,
    /// Offload lag of those changes (change → LSORS), microseconds.
    pub lag_p50_us: u64,
    /// 99th percentile.
    pub lag_p99_us: u64,
    /// Maximum.
    pub lag_max_us: u64,
    /// Lag samples recorded.
    pub lag_samples: u64,
    /// Times an LNS-LNS control channel had a message wait for the
    /// peer's window (RFC 2661 §5.8, Appendix A), both LNSs.
    pub window_full: u64,
    /// Control messages retransmitted, both LNSs.
    pub retransmitted: u64,
    /// ZLB acknowledgements sent, both LNSs.
    pub zlb_sent: u64,
    /// Sessions the peer's store holds at the end.
    pub stored: usize,
    /// The store holds exactly the primary's sessions (ids, epoch, state).
    pub store_matches: bool,
}

/// Why a measurement failed.
#[derive(Debug)]
pub struct Error(String);

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error(format!("socket: {e}"))
    }
}

/// Run and print the report.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let report = measure(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "hasync: bulk sync of {} sessions ({} tunnels, window {}, receive buffer {} B) \
             in {:.3} s ({:.0} sessions/s; walk {:.3} s; CPU {:.3} s primary, {:.3} s peer); \
             {} + {} bytes in {} + {} datagrams each way",
            report.sessions,
            report.tunnels,
            report.window,
            report.receive_buffer,
            report.bulk_sync_s,
            report.sessions_per_s,
            report.bulk_walk_s,
            report.primary_cpu_s,
            report.peer_cpu_s,
            report.primary_bytes,
            report.peer_bytes,
            report.primary_datagrams,
            report.peer_datagrams,
        );
        println!(
            "hasync: offload lag of {} changes: p50 {} µs, p99 {} µs, max {} µs; \
             store {} sessions, {}; control channels: window full {} times, \
             {} retransmitted, {} ZLBs",
            report.lag_samples,
            report.lag_p50_us,
            report.lag_p99_us,
            report.lag_max_us,
            report.stored,
            if report.store_matches {
                "equal to the primary's"
            } else {
                "DIFFERENT from the primary's"
            },
            report.window_full,
            report.retransmitted,
            report.zlb_sent,
        );
    }
    if !report.store_matches {
        return Err("the peer's store differs from the primary's sessions".into());
    }
    Ok(())
}

/// The shared secret of the LNS-LNS tunnel (authenticated, hidden AVPs).
const SECRET: &str = "l2bench-hasync";

/// The primary's address as the LACs know it (Tunnel-Identity).
const PRIMARY_WAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

/// One LNS: its endpoint for the LNS-LNS tunnels, its peering, its socket.
struct Lns {
    socket: UdpSocket,
    endpoint: Endpoint,
    peering: LnsPeering,
    clock: Clock,
    buf: Vec<u8>,
    read_timeout: Option<Duration>,
    bytes_sent: u64,
    datagrams_sent: u64,
    bulk_done: Option<(Instant, Duration, u64)>,
}

/// CPU time the calling thread has used, seconds.
fn thread_cpu_s() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// (window_full, retransmitted, zlb_sent) over an endpoint's tunnels.
fn channel_counts(endpoint: &Endpoint) -> [u64; 3] {
    endpoint
        .tunnels()
        .filter_map(|t| endpoint.tunnel_stats(t))
        .fold([0; 3], |[w, r, z], s| {
            [
                w + s.control.window_full,
                r + s.control.retransmitted,
                z + s.control.zlb_sent,
            ]
        })
}

/// The longest a turn blocks waiting for a datagram: timers are checked
/// at least this often.
const MAX_WAIT: Duration = Duration::from_millis(1);

impl Lns {
    fn new(
        socket: UdpSocket,
        peer: SocketAddrV4,
        window: Option<usize>,
        seed: u64,
    ) -> Result<Lns, Error> {
        // lnsd's own settings for `[ha]` with one peer and every other key
        // at its default (LnsConfig::node_ha): the offload window and
        // refresh, and the LNS-LNS tunnel's LAN timers and receive window.
        let ha = LnsConfig {
            listen: SocketAddrV4::new(PRIMARY_WAN, 1701),
            ha: Some(Ha {
                peers: vec![HaPeer {
                    address: *peer.ip(),
                    secret: SECRET.to_owned(),
                }],
                peer_port: peer.port(),
                window: window.unwrap_or(Ha::default().window),
                ..Ha::default()
            }),
            ..LnsConfig::default()
        }
        .node_ha()
        .ok_or_else(|| Error("no [ha] settings".into()))?;
        // The LNS-LNS endpoint as the node builds it from them
        // (lns::HaConfig's peer side): authenticated with the peer's
        // secret, Session-State hidden.
        let link = ha.peer_link;
        let config = l2tp::Config {
            hello_interval: Some(link.hello_interval),
            dead_interval: Some(link.dead_interval),
            retransmission: link.retransmission,
            ack_delay: link.ack_delay,
            receive_window: link.receive_window,
            tie_breaker: false,
            accept_calls: false,
            ha: Some(l2tp::HaConfig {
                lns_peers: ha.peers.clone(),
                defer_recovery_calls: false,
                ..l2tp::HaConfig::default()
            }),
            ..l2tp::Config::lns("hasync")
        };
        let endpoint = Endpoint::new(config, Box::new(ChaCha8Rng::seed_from_u64(seed)))
            .map_err(|e| Error(format!("endpoint: {e}")))?;
        let peering = LnsPeering::new(PeeringConfig {
            peers: vec![peer],
            offload: ha.offload,
            reconnect_after: ha.reconnect_after,
        });
        Ok(Lns {
            socket,
            endpoint,
            peering,
            clock: Clock::new(),
            buf: vec![0; 65_535],
            read_timeout: None,
            bytes_sent: 0,
            datagrams_sent: 0,
            bulk_done: None,
        })
    }

    /// Everything the endpoint and the peering have to say, then what it
    /// queued goes out.
    fn pump(&mut self, now: Instant) -> Result<(), Error> {
        while let Some(e) = self.endpoint.poll_event() {
            self.peering.handle_event(now, &mut self.endpoint, &e);
        }
        self.peering.flush(now, &mut self.endpoint);
        while let Some(e) = self.peering.poll_event() {
            if let PeeringEvent::BulkSyncDone { entries, took, .. } = e {
                self.bulk_done = Some((now, took, entries));
            }
        }
        while let Some(t) = self.endpoint.poll_transmit(now) {
            match self.socket.send_to(&t.payload, t.remote) {
                Ok(n) => {
                    self.bytes_sent += n as u64;
                    self.datagrams_sent += 1;
                }
                // Loopback does not lose; a full socket buffer is the
                // control channel's to retransmit.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Timers that are due, then one datagram (or a wait until the next
    /// timer, at most [`MAX_WAIT`]).
    fn turn(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        if self.peering.poll_timeout().is_some_and(|t| t <= now) {
            self.peering.handle_timeout(now, &mut self.endpoint);
        }
        self.pump(now)?;
        let next = [self.endpoint.poll_timeout(), self.peering.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let wait = next.map_or(MAX_WAIT, |t| {
            t.saturating_duration_since(self.clock.now())
                .clamp(Duration::from_micros(50), MAX_WAIT)
        });
        // One system call fewer per datagram: the timeout is only set when
        // it changes, which is rare (mostly MAX_WAIT).
        if self.read_timeout != Some(wait) {
            self.socket.set_read_timeout(Some(wait))?;
            self.read_timeout = Some(wait);
        }
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, SocketAddr::V4(from))) => {
                let now = self.clock.now();
                if let Some(datagram) = self.buf.get(..n) {
                    self.endpoint.handle_datagram(now, from, datagram);
                }
                self.pump(now)
            }
            Ok((_, SocketAddr::V6(_))) => Ok(()),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionRefused => Ok(()),
                _ => Err(e.into()),
            },
        }
    }
}

/// The session state of subscriber `n`: what an LNS offloads once LCP,
/// CHAP and IPCP are up and accounting started.
pub fn subscriber_state(n: usize) -> SessionState {
    let id = u32::try_from(n).unwrap_or(u32::MAX);
    let [a, b, c, d] = id.to_be_bytes();
    let mut state = SessionState::new(LinkState {
        role: Role::Server,
        lcp_local: LcpOptions {
            mru: 1492,
            auth: Some(AuthMethod::ChapMd5),
            magic_number: id.wrapping_mul(2_654_435_761) | 1,
            ..LcpOptions::default()
        },
        lcp_peer: LcpOptions {
            mru: 1492,
            magic_number: id.wrapping_mul(40_503).rotate_left(7) | 1,
            pfc: true,
            acfc: true,
            ..LcpOptions::default()
        },
        auth_method: Some(AuthMethod::ChapMd5),
        username: Some(format!("sub{n}@isp.example").into_bytes()),
        ipcp: Some(IpcpResult {
            local: Some(Ipv4Addr::new(100, 64, 0, 1)),
            peer: Some(Ipv4Addr::new(100, 64 + (b & 0x3f), c, d.max(2))),
            primary_dns: Some(Ipv4Addr::new(192, 0, 2, 53)),
            secondary_dns: Some(Ipv4Addr::new(192, 0, 2, 54)),
        }),
        ipv6cp: None,
    });
    state.l2tp = L2tpSessionOptions {
        sequencing: false,
        peer_receive_window: None,
        next_ns: 0,
        next_nr: 0,
    };
    state.accounting = Accounting {
        session_id: format!("0b00000a-{a:02x}{b:02x}{c:02x}{d:02x}"),
        start_time_unix: 1_795_000_000 + u64::from(id),
        counters: Counters {
            input_octets: u64::from(id) * 1000,
            output_octets: u64::from(id) * 4000,
            input_packets: u64::from(id) * 10,
            output_packets: u64::from(id) * 30,
        },
        class: vec![format!("class-{}", n % 16).into_bytes()],
    };
    state.timeouts = Timeouts {
        session: Some(Duration::from_secs(86_400)),
        idle: Some(Duration::from_secs(1800)),
        interim: Some(Duration::from_secs(300)),
    };
    state
}

/// Where subscriber `n` lives at the primary: its tunnel and session.
fn placement(n: usize, per_tunnel: usize) -> (TunnelIdentity, SessionIdentity) {
    let tunnel = u16::try_from(n / per_tunnel + 1).unwrap_or(u16::MAX);
    let session = u16::try_from(n % per_tunnel + 1).unwrap_or(u16::MAX);
    (
        TunnelIdentity {
            lns_tunnel_id: tunnel,
            lac_tunnel_id: tunnel.wrapping_add(1000),
            lac: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701),
            primary_lns: PRIMARY_WAN,
        },
        SessionIdentity {
            lns_session_id: session,
            lac_session_id: session.wrapping_add(7),
        },
    )
}

type Held = BTreeSet<(u16, u16, u32, Vec<u8>)>;

/// What the peer thread publishes as it goes: (bytes, datagrams) sent,
/// read by the primary when its bulk sync is done.
#[derive(Default)]
struct PeerSent {
    bytes: AtomicU64,
    datagrams: AtomicU64,
    /// CPU time (ns) the peer's thread used from its start to the
    /// bulk-end of the primary's sync; 0 until then.
    sync_cpu_ns: AtomicU64,
}

/// Bring both LNSs up in their threads, sync, change, compare.
pub fn measure(args: &Args) -> Result<Report, Error> {
    let per_tunnel = args.sessions_per_tunnel.clamp(1, usize::from(u16::MAX));
    let tunnels = args.sessions.div_ceil(per_tunnel);
    if tunnels > usize::from(u16::MAX) {
        return Err(Error(format!(
            "{} sessions at {per_tunnel} a tunnel need more than 65535 tunnels",
            args.sessions
        )));
    }
    let primary_socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 0))?;
    let peer_socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0))?;
    let addr = |s: &UdpSocket| match s.local_addr() {
        Ok(SocketAddr::V4(a)) => Ok(a),
        Ok(other) => Err(Error(format!("bound to {other}, not IPv4"))),
        Err(e) => Err(e.into()),
    };
    let mut receive_buffer = 0;
    for socket in [&primary_socket, &peer_socket] {
        if let Some(size) = args.receive_buffer {
            rustix::net::sockopt::set_socket_recv_buffer_size(socket, size)
                .map_err(|e| Error(format!("SO_RCVBUF: {e}")))?;
        }
        receive_buffer = rustix::net::sockopt::socket_recv_buffer_size(socket)
            .map_err(|e| Error(format!("SO_RCVBUF: {e}")))?;
    }
    let primary_addr = addr(&primary_socket)?;
    let peer_addr = addr(&peer_socket)?;
    let limit = Duration::from_secs_f64(args.timeout.max(1.0));

    let mut primary = Lns::new(primary_socket, peer_addr, args.window, 1)?;
    let mut peer = Lns::new(peer_socket, primary_addr, args.window, 2)?;

    // 1. Fill the primary while it is not connected.
    let fill_started = std::time::Instant::now();
    let now = primary.clock.now();
    for n in 0..args.sessions {
        let (tunnel, session) = placement(n, per_tunnel);
        primary
            .peering
            .session_update(now, tunnel, session, 1, &subscriber_state(n))
            .map_err(|e| Error(format!("session {n}: {e}")))?;
    }
    let fill_s = fill_started.elapsed().as_secs_f64();

    // The peer: connects back (as lnsd does) and answers until told to
    // stop; then hands back what its store holds.
    let stop = Arc::new(AtomicBool::new(false));
    let peer_sent = Arc::new(PeerSent::default());
    let peer_thread = {
        let stop = Arc::clone(&stop);
        let sent = Arc::clone(&peer_sent);
        std::thread::Builder::new()
            .name("hasync-peer".into())
            .spawn(move || -> Result<(Held, [u64; 3]), Error> {
                let cpu_started = thread_cpu_s();
                let now = peer.clock.now();
                peer.peering.start(now, &mut peer.endpoint);
                let mut synced = false;
                while !stop.load(Ordering::Relaxed) {
                    peer.turn()?;
                    sent.bytes.store(peer.bytes_sent, Ordering::Relaxed);
                    sent.datagrams.store(peer.datagrams_sent, Ordering::Relaxed);
                    if !synced && peer.peering.store().stats().bulk_syncs > 0 {
                        synced = true;
                        let cpu = (thread_cpu_s() - cpu_started) * 1e9;
                        sent.sync_cpu_ns.store(cpu as u64, Ordering::Relaxed);
                    }
                }
                let held = peer
                    .peering
                    .store()
                    .tunnels()
                    .flat_map(|t| {
                        let tunnel = t.identity.lns_tunnel_id;
                        t.sessions.values().map(move |s| {
                            (tunnel, s.identity.lns_session_id, s.epoch, s.blob.clone())
                        })
                    })
                    .collect();
                Ok((held, channel_counts(&peer.endpoint)))
            })?
    };
    let primary_result =
        drive_primary(&mut primary, peer_addr, args, per_tunnel, limit, &peer_sent);
    stop.store(true, Ordering::Relaxed);
    let (held, peer_counts) = peer_thread
        .join()
        .map_err(|_| Error("the peer thread panicked".into()))??;
    let sync = primary_result?;

    let expected: Held = primary
        .peering
        .sender(peer_addr)
        .map(|s| {
            s.expected()
                .map(|(t, s, e, b)| (t.lns_tunnel_id, s.lns_session_id, e, b.to_vec()))
                .collect()
        })
        .unwrap_or_default();
    let lag = primary.peering.lag();
    let counts = channel_counts(&primary.endpoint);
    let [window_full, retransmitted, zlb_sent] = [0, 1, 2].map(|i| counts[i] + peer_counts[i]);
    let lag_at = |q: f64| lag.as_ref().map_or(0, |h| h.value_at_quantile(q));
    Ok(Report {
        sessions: args.sessions,
        receive_buffer,
        tunnels,
        window: args.window.unwrap_or(Ha::default().window),
        fill_s,
        bulk_sync_s: sync.wall.as_secs_f64(),
        bulk_walk_s: sync.walk.as_secs_f64(),
        sessions_per_s: args.sessions as f64 / sync.wall.as_secs_f64().max(1e-9),
        primary_cpu_s: sync.cpu,
        // Final once the thread is joined (it is set after the LSORS of
        // bulk-end left, which the primary may see first).
        peer_cpu_s: peer_sent.sync_cpu_ns.load(Ordering::Relaxed) as f64 * 1e-9,
        bulk_entries: sync.entries,
        primary_bytes: sync.primary_bytes,
        primary_datagrams: sync.primary_datagrams,
        peer_bytes: sync.peer_bytes,
        peer_datagrams: sync.peer_datagrams,
        changes: args.changes,
        lag_p50_us: lag_at(0.5),
        lag_p99_us: lag_at(0.99),
        lag_max_us: lag.as_ref().map_or(0, |h| h.max()),
        lag_samples: lag.as_ref().map_or(0, |h| h.len()),
        window_full,
        retransmitted,
        zlb_sent,
        stored: held.len(),
        store_matches: held == expected,
    })
}

struct Sync {
    cpu: f64,
    wall: Duration,
    walk: Duration,
    entries: u64,
    primary_bytes: u64,
    primary_datagrams: u64,
    /// What the peer had sent when the bulk sync was done.
    peer_bytes: u64,
    peer_datagrams: u64,
}

/// The primary's side: connect, bulk sync, incremental changes, until the
/// peer holds everything.
fn drive_primary(
    primary: &mut Lns,
    peer: SocketAddrV4,
    args: &Args,
    per_tunnel: usize,
    limit: Duration,
    peer_sent: &PeerSent,
) -> Result<Sync, Error> {
    let started = primary.clock.now();
    let cpu_started = thread_cpu_s();
    let deadline = started + limit;
    primary.peering.start(started, &mut primary.endpoint);
    while primary.bulk_done.is_none() {
        if primary.clock.now() >= deadline {
            return Err(Error(format!(
                "no bulk sync within {limit:?} (the peer connected: {})",
                primary.peering.peer_connected(peer)
            )));
        }
        primary.turn()?;
    }
    let Some((done_at, walk, entries)) = primary.bulk_done else {
        return Err(Error("no bulk sync".into()));
    };
    let sync = Sync {
        cpu: thread_cpu_s() - cpu_started,
        wall: done_at - started,
        walk,
        entries,
        primary_bytes: primary.bytes_sent,
        primary_datagrams: primary.datagrams_sent,
        peer_bytes: peer_sent.bytes.load(Ordering::Relaxed),
        peer_datagrams: peer_sent.datagrams.load(Ordering::Relaxed),
    };

    // 3. Incremental changes at the rate, in bursts.
    let burst = args.burst.max(1);
    let every = Duration::from_secs_f64(burst as f64 / args.rate.max(1e-3));
    let mut next_burst = primary.clock.now();
    let mut made = 0usize;
    let sessions = args.sessions.max(1);
    loop {
        let now = primary.clock.now();
        if now >= deadline {
            return Err(Error(format!(
                "the incremental changes were not all acknowledged within {limit:?}"
            )));
        }
        if made < args.changes && now >= next_burst {
            for _ in 0..burst.min(args.changes - made) {
                // Spread over the table; the counters move on, so the state
                // differs from what the bulk sync carried.
                let n = (made * 7919) % sessions;
                let (tunnel, session) = placement(n, per_tunnel);
                let mut state = subscriber_state(n);
                state.accounting.counters.input_octets += 1 + made as u64;
                primary
                    .peering
                    .session_update(now, tunnel, session, 1, &state)
                    .map_err(|e| Error(format!("change {made}: {e}")))?;
                made += 1;
            }
            next_burst += every;
            primary.pump(now)?;
        }
        if made >= args.changes && primary.peering.sender(peer).is_some_and(|s| s.in_sync()) {
            return Ok(sync);
        }
        primary.turn()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_encode_and_decode_and_placements_are_distinct() {
        let mut seen = BTreeSet::new();
        for n in [0, 1, 3999, 4000, 99_999] {
            let s = subscriber_state(n);
            let blob = s.encode().unwrap();
            assert_eq!(SessionState::decode(&blob).unwrap(), s);
            let (t, s) = placement(n, 4000);
            assert!(s.lns_session_id != 0);
            assert!(seen.insert((t.lns_tunnel_id, s.lns_session_id)));
        }
    }
}

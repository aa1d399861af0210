//! The threads of `l2bench run` and how they meet.
//!
//! * The **subscribers' thread** enters `--netns` and runs a [`Side`]: the
//!   PPPoE emulator on a raw port ([`PppoeSide`]) or the L2TP subscribers
//!   on a UDP socket ([`super::l2tp::L2tpSide`]). It brings the sessions
//!   up, sends the upstream streams and receives the downstream ones.
//! * The **traffic thread** enters `--traffic-netns` and, on a UDP socket
//!   bound to `--traffic-addr`:9000, receives the upstream streams and
//!   sends the downstream ones to every subscriber address.
//! * The **main thread** prints the progress line, moves the run from
//!   bring-up to traffic to drain to stop ([`Shared::phase`]), and builds
//!   the report from what the two threads hand back.
//!
//! The clock is CLOCK_MONOTONIC everywhere (the probes' timestamps, the
//! control plane's [`Instant`]), so the threads agree on when the traffic
//! starts and stops without talking.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use controlplane::time::Instant;
use hdrhistogram::Histogram;

use super::emulator::{Emulator, EmulatorConfig, Stage};
use super::port::{self, L2Port, PacketSocket, PortDrops, XdpL2};
use super::report::{
    DirectionReport, EventReport, Percentiles, PortDropsReport, Report, StreamReport,
    SubscriberReport, TimelinePoint,
};
use super::stream::{self, monotonic_ns, Probe, Receiver, SentState};
use super::traffic::{self, Pacer, PORT};
use super::{Args, Io, Mode};

/// Bring-up: sessions are being set up.
pub const SETUP: u8 = 0;
/// Traffic runs from `traffic_start_ns` to `traffic_end_ns`.
pub const TRAFFIC: u8 = 1;
/// Senders stopped; receivers take what is still in flight.
pub const DRAIN: u8 = 2;
/// Everyone hands back their results.
pub const STOP: u8 = 3;

/// Packets a sender sends at once at most (catching up after a stall).
const BURST: u64 = 64;

/// How often the threads publish their counts for the progress line.
const PUBLISH_INTERVAL_NS: u64 = 10_000_000;

/// What the threads share.
#[derive(Debug, Default)]
pub struct Shared {
    /// [`SETUP`], [`TRAFFIC`], [`DRAIN`] or [`STOP`].
    pub phase: AtomicU8,
    /// When senders start, CLOCK_MONOTONIC ns (set with `TRAFFIC`).
    pub traffic_start_ns: AtomicU64,
    /// When senders stop.
    pub traffic_end_ns: AtomicU64,
    /// Subscribers up now.
    pub sessions_up: AtomicUsize,
    /// Subscribers that came up or failed for good.
    pub sessions_settled: AtomicUsize,
    /// When the last subscriber came up (ns), for the setup rate.
    pub last_up_ns: AtomicU64,
    /// Upstream packets sent so far.
    pub up_sent: AtomicU64,
    /// Upstream packets received so far.
    pub up_received: AtomicU64,
    /// Downstream packets sent so far.
    pub down_sent: AtomicU64,
    /// Downstream packets received so far.
    pub down_received: AtomicU64,
    /// When the event command was started (CLOCK_MONOTONIC ns; 0: not
    /// yet), for the receivers' gaps after it.
    pub event_ns: AtomicU64,
    /// Each subscriber's address, as its side last saw it.
    pub addresses: Mutex<Vec<Option<Ipv4Addr>>>,
}

impl Shared {
    fn current_phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn publish_address(&self, index: usize, address: Option<Ipv4Addr>) {
        if let Ok(mut a) = self.addresses.lock() {
            if let Some(slot) = a.get_mut(index) {
                *slot = address;
            }
        }
    }
}

/// One side of the subscribers: the session machinery and its port.
pub trait Side {
    /// Start bringing the subscribers up.
    fn start(&mut self, now: Instant);
    /// Receive what is waiting: control to the state machines, test
    /// packets to `downstream`. Returns whether anything came.
    fn receive(&mut self, now: Instant, downstream: &mut Receiver) -> bool;
    /// Send what the state machines have to send.
    fn flush(&mut self, now: Instant);
    /// Run the timers that are due.
    fn handle_timeout(&mut self, now: Instant);
    /// The next timer.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Changes since the last call: (subscriber, its address if up now).
    fn poll_change(&mut self) -> Option<(usize, Option<Ipv4Addr>)>;
    /// Subscribers up now, and settled (came up or failed for good).
    fn counts(&self) -> (usize, usize);
    /// Send one upstream test packet for subscriber `index`.
    fn send_upstream(&mut self, index: usize, to: Ipv4Addr, probe: &Probe, payload: usize) -> bool;
    /// Hang everyone up.
    fn hang_up(&mut self, now: Instant);
    /// Every subscriber for the report.
    fn subscribers(&self) -> Vec<SubscriberReport>;
    /// What the port lost on our side so far.
    fn drops(&mut self) -> PortDrops;
}

/// PPPoE subscribers on a raw port.
#[derive(Debug)]
pub struct PppoeSide<P: L2Port> {
    /// The subscribers.
    pub emulator: Emulator,
    /// Their port.
    pub port: P,
    buf: Vec<u8>,
    frame: Vec<u8>,
    changes: std::collections::VecDeque<(usize, Option<Ipv4Addr>)>,
}

impl<P: L2Port> PppoeSide<P> {
    /// The emulator on `port`.
    pub fn new(emulator: Emulator, port: P) -> Self {
        PppoeSide {
            emulator,
            port,
            buf: vec![0; 2048],
            frame: Vec::new(),
            changes: Default::default(),
        }
    }

    fn collect_events(&mut self) {
        while let Some(event) = self.emulator.poll_event() {
            let index = match event {
                super::emulator::Event::Up(i) | super::emulator::Event::Down(i) => i,
            };
            let address = self
                .emulator
                .status(index)
                .filter(|s| s.stage == Stage::Up)
                .and_then(|s| s.address);
            self.changes.push_back((index, address));
        }
    }
}

impl<P: L2Port> Side for PppoeSide<P> {
    fn start(&mut self, now: Instant) {
        self.emulator.start(now);
        self.collect_events();
    }

    fn receive(&mut self, now: Instant, downstream: &mut Receiver) -> bool {
        let mut any = false;
        for _ in 0..BURST {
            let Some(n) = self.port.receive(&mut self.buf) else {
                break;
            };
            any = true;
            let frame = &self.buf[..n];
            let data = traffic::read_session(frame).and_then(|s| traffic::read_ppp_udp(s.ppp));
            match data {
                Some(payload) => downstream.receive(payload, now.as_nanos()),
                None => {
                    self.emulator.handle_frame(now, frame);
                }
            }
        }
        self.collect_events();
        any
    }

    fn flush(&mut self, _now: Instant) {
        while self.emulator.poll_frame(&mut self.frame) {
            self.port.send(&self.frame);
        }
        self.port.flush();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.emulator.handle_timeout(now);
        self.collect_events();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.emulator.poll_timeout()
    }

    fn poll_change(&mut self) -> Option<(usize, Option<Ipv4Addr>)> {
        self.changes.pop_front()
    }

    fn counts(&self) -> (usize, usize) {
        (self.emulator.up_count(), self.emulator.settled_count())
    }

    fn send_upstream(&mut self, index: usize, to: Ipv4Addr, probe: &Probe, payload: usize) -> bool {
        let Some(status) = self.emulator.status(index) else {
            return false;
        };
        let (Some((ac_mac, session_id)), Some(src)) = (status.session, status.address) else {
            return false;
        };
        let Some(n) = traffic::write_pppoe_udp(
            &mut self.buf,
            status.mac,
            ac_mac,
            session_id,
            src,
            to,
            probe,
            payload,
        ) else {
            return false;
        };
        // Sent or not, the packet was offered: a full socket buffer is
        // the bench's own loss and shows as such.
        self.port.send(&self.buf[..n]);
        true
    }

    fn hang_up(&mut self, now: Instant) {
        self.emulator.hang_up_all(now);
        self.collect_events();
    }

    fn drops(&mut self) -> PortDrops {
        self.port.drops()
    }

    fn subscribers(&self) -> Vec<SubscriberReport> {
        (0..self.emulator.len())
            .filter_map(|i| {
                let s = self.emulator.status(i)?;
                Some(SubscriberReport {
                    index: i,
                    mac: Some(format!("{}", MacText(s.mac.0))),
                    session_id: s.session.map(|(_, id)| id),
                    address: s.address.map(|a| a.to_string()),
                    setup_ms: s.setup_time.map(|d| d.as_secs_f64() * 1e3),
                    local_magic: s.local_magic,
                    peer_magic: s.peer_magic,
                    flaps: s.flaps,
                    renegotiations: s.renegotiations,
                    up_at_end: s.stage == Stage::Up,
                    down_cause: s.down_cause.clone(),
                    ..SubscriberReport::default()
                })
            })
            .collect()
    }
}

struct MacText([u8; 6]);

impl core::fmt::Display for MacText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// What the subscribers' thread hands back.
#[derive(Debug)]
pub struct SideResult {
    /// Upstream, per subscriber.
    pub upstream_sent: Vec<SentState>,
    /// Downstream as received.
    pub downstream: Receiver,
    /// Every subscriber.
    pub subscribers: Vec<SubscriberReport>,
    /// Sessions up when the traffic stopped.
    pub up_at_end: usize,
    /// The port's own losses.
    pub drops: PortDrops,
}

/// What the traffic thread hands back.
#[derive(Debug)]
pub struct TrafficResult {
    /// Downstream, per subscriber.
    pub downstream_sent: Vec<SentState>,
    /// Upstream as received.
    pub upstream: Receiver,
}

fn now() -> Instant {
    Instant::from_nanos(monotonic_ns())
}

/// Which subscribers send, and to whom: the ones with an address when the
/// traffic starts, in the order the senders go round them.
///
/// That order is scrambled (the same way every run): a stream's phase in
/// the round must say nothing of when its session was set up. Daemons
/// work through sessions in setup order (a failure switchover's recovery
/// calls do), and in setup order each stream's packet would come just
/// before its session's turn, which hides most of the hold from the gaps
/// and latencies (in the lab the longest gap after a kill -9 looked 50 ms
/// shorter than a subscriber whose packet came first could see).
fn streams(addresses: &[Option<Ipv4Addr>]) -> Vec<(usize, Ipv4Addr)> {
    let mut streams: Vec<_> = addresses
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (i, a)))
        .collect();
    // Fibonacci hashing: consecutive indices land far apart.
    streams.sort_by_key(|&(i, _)| (i as u32).wrapping_mul(0x9e37_79b9));
    streams
}

/// The subscribers' thread: run `side` through the phases.
pub fn run_side(
    side: &mut dyn Side,
    shared: &Shared,
    subscribers: usize,
    traffic_addr: Option<Ipv4Addr>,
    rate: u64,
    payload: usize,
) -> Result<SideResult, hdrhistogram::CreationError> {
    let mut downstream = Receiver::new(subscribers)?;
    let mut sent = vec![SentState::default(); subscribers];
    let mut addresses: Vec<Option<Ipv4Addr>> = vec![None; subscribers];
    let mut active: Vec<(usize, Ipv4Addr)> = Vec::new();
    let mut pacer: Option<Pacer> = None;
    let mut turn = 0usize;
    let mut next_publish_ns = 0u64;
    side.start(now());
    loop {
        let t = now();
        // Before receiving: a packet sent after the event is counted as
        // such on arrival.
        downstream.set_event(shared.event_ns.load(Ordering::Acquire));
        let mut busy = side.receive(t, &mut downstream);
        if side.poll_timeout().is_some_and(|d| d <= t) {
            side.handle_timeout(t);
        }
        while let Some((index, address)) = side.poll_change() {
            if address.is_some() && addresses.get(index).is_some_and(Option::is_none) {
                shared.last_up_ns.store(t.as_nanos(), Ordering::Relaxed);
            }
            if let Some(slot) = addresses.get_mut(index) {
                *slot = address;
            }
            shared.publish_address(index, address);
        }
        // The counts walk every subscriber: a hundred times a second is
        // plenty for the main thread.
        if t.as_nanos() >= next_publish_ns {
            next_publish_ns = t.as_nanos() + PUBLISH_INTERVAL_NS;
            let (up, settled) = side.counts();
            shared.sessions_up.store(up, Ordering::Relaxed);
            shared.sessions_settled.store(settled, Ordering::Relaxed);
            shared
                .down_received
                .store(downstream.received(), Ordering::Relaxed);
        }
        let phase = shared.current_phase();
        if phase == TRAFFIC {
            if let Some(to) = traffic_addr {
                let start = shared.traffic_start_ns.load(Ordering::Acquire);
                let end = shared.traffic_end_ns.load(Ordering::Acquire);
                let p = pacer.get_or_insert_with(|| {
                    // The streams are the subscribers up at the start;
                    // one that goes down later keeps its stream (its
                    // packets are then lost, which is the point).
                    active = streams(&addresses);
                    Pacer::new(rate, start, BURST)
                });
                let now_ns = monotonic_ns();
                if now_ns >= start && now_ns < end && !active.is_empty() {
                    for _ in 0..p.due(now_ns) {
                        let (index, _) = active[turn % active.len()];
                        turn = turn.wrapping_add(1);
                        let Some(tx) = sent.get_mut(index) else {
                            continue;
                        };
                        let probe = Probe {
                            subscriber: index as u32,
                            sequence: tx.sent,
                            sent_ns: monotonic_ns(),
                        };
                        if side.send_upstream(index, to, &probe, payload) {
                            tx.next_after(probe.sent_ns, shared.event_ns.load(Ordering::Relaxed));
                            shared.up_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        busy = true;
                    }
                }
            }
        }
        if phase == STOP {
            break;
        }
        side.flush(t);
        if !busy {
            thread::sleep(Duration::from_micros(100));
        }
    }
    let up_at_end = side.counts().0;
    let drops = side.drops();
    let subscribers_report = side.subscribers();
    Ok(SideResult {
        upstream_sent: sent,
        downstream,
        subscribers: subscribers_report,
        up_at_end,
        drops,
    })
}

/// The traffic thread: receive upstream, send downstream, on `socket`.
pub fn run_traffic(
    socket: &UdpSocket,
    shared: &Shared,
    subscribers: usize,
    rate: u64,
    payload: usize,
) -> Result<TrafficResult, Box<dyn std::error::Error + Send + Sync>> {
    socket.set_nonblocking(true)?;
    port::grow_buffers(socket);
    let mut upstream = Receiver::new(subscribers)?;
    let mut sent = vec![SentState::default(); subscribers];
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; payload.max(stream::PROBE_LEN)];
    let mut next_publish_ns = 0u64;
    let mut active: Vec<(usize, Ipv4Addr)> = Vec::new();
    let mut pacer: Option<Pacer> = None;
    let mut turn = 0usize;
    loop {
        let mut busy = false;
        upstream.set_event(shared.event_ns.load(Ordering::Acquire));
        for _ in 0..BURST {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    busy = true;
                    upstream.receive(&buf[..n], monotonic_ns());
                }
                Err(_) => break,
            }
        }
        let now_ns = monotonic_ns();
        if now_ns >= next_publish_ns {
            next_publish_ns = now_ns + PUBLISH_INTERVAL_NS;
            shared
                .up_received
                .store(upstream.received(), Ordering::Relaxed);
        }
        let phase = shared.current_phase();
        if phase == STOP {
            break;
        }
        if phase == TRAFFIC {
            let start = shared.traffic_start_ns.load(Ordering::Acquire);
            let end = shared.traffic_end_ns.load(Ordering::Acquire);
            let now_ns = monotonic_ns();
            if now_ns >= start {
                let p = pacer.get_or_insert_with(|| {
                    active = shared
                        .addresses
                        .lock()
                        .map(|a| streams(&a))
                        .unwrap_or_default();
                    Pacer::new(rate, start, BURST)
                });
                if now_ns < end && !active.is_empty() {
                    for _ in 0..p.due(now_ns) {
                        let (index, address) = active[turn % active.len()];
                        turn = turn.wrapping_add(1);
                        let Some(tx) = sent.get_mut(index) else {
                            continue;
                        };
                        let probe = Probe {
                            subscriber: index as u32,
                            sequence: tx.sent,
                            sent_ns: monotonic_ns(),
                        };
                        probe.emit(&mut out);
                        match socket.send_to(&out, SocketAddrV4::new(address, PORT)) {
                            // A full socket buffer: not sent, try the next
                            // one later (the sequence number is not used).
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            // Sent, or refused by the kernel (no route,
                            // unreachable): offered either way.
                            _ => {
                                tx.next_after(
                                    probe.sent_ns,
                                    shared.event_ns.load(Ordering::Relaxed),
                                );
                                shared.down_sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        busy = true;
                    }
                }
            }
        }
        if !busy {
            thread::sleep(Duration::from_micros(100));
        }
    }
    Ok(TrafficResult {
        downstream_sent: sent,
        upstream,
    })
}

type ThreadResult<T> = Result<T, String>;

/// Spawn a thread that enters `netns` (if any) first.
fn spawn_in<T: Send + 'static>(
    name: &str,
    netns: Option<String>,
    f: impl FnOnce() -> ThreadResult<T> + Send + 'static,
) -> io::Result<thread::JoinHandle<ThreadResult<T>>> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Some(ns) = &netns {
                port::enter_netns(ns).map_err(|e| e.to_string())?;
            }
            f()
        })
}

fn join<T>(h: thread::JoinHandle<ThreadResult<T>>, what: &str) -> Result<T, String> {
    h.join()
        .map_err(|_| format!("the {what} thread panicked"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// Run the whole scenario of `args` and build the report.
pub fn run(args: &Args) -> Result<Report, Box<dyn std::error::Error>> {
    let n = args.subscribers;
    let shared = Arc::new(Shared {
        addresses: Mutex::new(vec![None; n]),
        ..Shared::default()
    });
    let payload = args.payload.max(stream::PROBE_LEN);
    let started_ns = monotonic_ns();

    // The traffic side first, so its socket is bound before any session
    // is up (errors show before the long part).
    let traffic = match args.traffic_addr {
        Some(addr) => {
            let shared = shared.clone();
            let rate = args.rate;
            Some(spawn_in(
                "traffic",
                args.traffic_netns.clone(),
                move || {
                    let socket = UdpSocket::bind(SocketAddrV4::new(addr, PORT))
                        .map_err(|e| format!("cannot bind {addr}:{PORT}: {e}"))?;
                    run_traffic(&socket, &shared, n, rate, payload).map_err(|e| e.to_string())
                },
            )?)
        }
        None => None,
    };

    let side = {
        let shared = shared.clone();
        let args = args.clone();
        spawn_in("subscribers", args.netns.clone(), move || {
            let mut side = make_side(&args)?;
            run_side(
                side.as_mut(),
                &shared,
                n,
                args.traffic_addr,
                args.rate,
                payload,
            )
            .map_err(|e| e.to_string())
            .inspect(|_| {
                if !args.no_hang_up {
                    hang_up(side.as_mut());
                }
            })
        })?
    };

    // Bring-up.
    let setup_deadline = started_ns + (args.setup_timeout.max(0.0) * 1e9) as u64;
    let mut progress = Progress::new(args.quiet, started_ns);
    loop {
        // A thread that ended already failed (no interface, no address to
        // bind): say so now rather than after the whole run.
        if side.is_finished() || traffic.as_ref().is_some_and(|t| t.is_finished()) {
            break;
        }
        let settled = shared.sessions_settled.load(Ordering::Relaxed);
        if settled >= n || monotonic_ns() >= setup_deadline {
            break;
        }
        progress.tick(&shared, n, false);
        thread::sleep(Duration::from_millis(20));
    }
    let setup_end_ns = monotonic_ns();

    // Traffic.
    let failed = |side: &thread::JoinHandle<_>| {
        side.is_finished() || traffic.as_ref().is_some_and(|t| t.is_finished())
    };
    let with_traffic = args.traffic_addr.is_some() && args.duration > 0.0 && !failed(&side);
    let mut traffic_s = 0.0;
    let mut event = None;
    if with_traffic {
        let start = monotonic_ns() + 200_000_000;
        let end = start + (args.duration * 1e9) as u64;
        shared.traffic_start_ns.store(start, Ordering::Release);
        shared.traffic_end_ns.store(end, Ordering::Release);
        shared.phase.store(TRAFFIC, Ordering::Release);
        let event_at_ns = args.event_at.map(|s| start + (s.max(0.0) * 1e9) as u64);
        while monotonic_ns() < end && !failed(&side) {
            progress.tick(&shared, n, true);
            if let (Some(at), Some(command), None) =
                (event_at_ns, args.event_command.as_deref(), event.as_ref())
            {
                if monotonic_ns() >= at {
                    event = Some(Event::start(command, &shared, start)?);
                }
            }
            if let Some(e) = event.as_mut() {
                e.poll();
            }
            thread::sleep(Duration::from_millis(if event_at_ns.is_some() {
                1
            } else {
                20
            }));
        }
        traffic_s = (end - start) as f64 / 1e9;
        // What is in flight arrives within the drain.
        shared.phase.store(DRAIN, Ordering::Release);
        thread::sleep(Duration::from_millis(500));
    }
    progress.tick(&shared, n, with_traffic);
    progress.finish();
    shared.phase.store(STOP, Ordering::Release);

    let side = join(side, "subscribers")?;
    let traffic = match traffic {
        Some(t) => Some(join(t, "traffic")?),
        None => None,
    };

    let mut report = Report {
        mode: match args.mode {
            Mode::Pppoe => "pppoe",
            Mode::L2tp => "l2tp",
        }
        .to_string(),
        sessions_requested: n,
        sessions_up_at_end: side.up_at_end,
        duration_s: traffic_s,
        rate_pps: if with_traffic { args.rate } else { 0 },
        payload_bytes: payload,
        ..Report::default()
    };
    let mut setup = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for s in &side.subscribers {
        if let Some(ms) = s.setup_ms {
            report.sessions_up += 1;
            setup.saturating_record(((ms * 1e3) as u64).max(1));
        }
        if s.flaps > 0 {
            report.sessions_flapped += 1;
        }
        report.renegotiations += u64::from(s.renegotiations);
    }
    report.setup_ms = Percentiles::of(&setup, 1e-3);
    let last_up = shared.last_up_ns.load(Ordering::Relaxed);
    let setup_phase_ns = if last_up > started_ns {
        last_up - started_ns
    } else {
        setup_end_ns - started_ns
    };
    report.setup_phase_s = setup_phase_ns as f64 / 1e9;
    if report.setup_phase_s > 0.0 {
        report.setup_rate_per_s = report.sessions_up as f64 / report.setup_phase_s;
    }
    let active = side
        .subscribers
        .iter()
        .filter(|s| s.setup_ms.is_some())
        .count();
    if with_traffic && args.rate > 0 {
        report.stream_interval_ms = active as f64 * 1e3 / args.rate as f64;
    }
    report.event = event.map(Event::finish);
    let mut downstream_rx = side.downstream;
    let mut subscribers = side.subscribers;
    if let Some(mut t) = traffic {
        report.upstream = DirectionReport::new(&side.upstream_sent, &mut t.upstream, traffic_s);
        report.downstream = DirectionReport::new(&t.downstream_sent, &mut downstream_rx, traffic_s);
        // Each subscriber's own streams (closed by DirectionReport::new),
        // so that a script can tell the moved sessions from the others.
        for s in &mut subscribers {
            s.upstream = StreamReport::of(
                side.upstream_sent.get(s.index),
                t.upstream.streams.get(s.index),
            );
            s.downstream = StreamReport::of(
                t.downstream_sent.get(s.index),
                downstream_rx.streams.get(s.index),
            );
        }
    }
    report.port_drops = PortDropsReport {
        send: side.drops.send,
        receive: side.drops.receive,
    };
    report.subscribers = subscribers;
    report.timeline = progress.timeline;
    Ok(report)
}

/// The event command while it runs.
struct Event {
    command: String,
    child: std::process::Child,
    started_ns: u64,
    started_unix_s: f64,
    traffic_start_ns: u64,
    ended: Option<(Option<i32>, u64)>,
}

impl Event {
    /// Start `command` now and tell the receivers when.
    fn start(
        command: &str,
        shared: &Shared,
        traffic_start_ns: u64,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        use std::os::fd::AsFd;
        use std::process::{Command, Stdio};
        // Its output goes to stderr, with the progress lines, so that
        // stdout stays the summary.
        let stdout = std::io::stderr().as_fd().try_clone_to_owned()?;
        let started_ns = monotonic_ns();
        let started_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        shared.event_ns.store(started_ns, Ordering::Release);
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .spawn()
            .map_err(|e| format!("cannot run the event command: {e}"))?;
        eprintln!(
            "event: `{command}` at {:.2} s of traffic",
            started_ns.saturating_sub(traffic_start_ns) as f64 / 1e9
        );
        Ok(Event {
            command: command.to_string(),
            child,
            started_ns,
            started_unix_s,
            traffic_start_ns,
            ended: None,
        })
    }

    /// Whether it ended; remembers when.
    fn poll(&mut self) {
        if self.ended.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.ended = Some((status.code(), monotonic_ns()));
            }
        }
    }

    /// Wait for it a bounded time (10 s), kill it if it still runs, and
    /// say what happened.
    fn finish(mut self) -> EventReport {
        let deadline = monotonic_ns() + 10_000_000_000;
        while self.ended.is_none() && monotonic_ns() < deadline {
            self.poll();
            thread::sleep(Duration::from_millis(10));
        }
        if self.ended.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.ended = Some((None, monotonic_ns()));
        }
        let (exit_status, ended_ns) = self.ended.unwrap_or((None, self.started_ns));
        EventReport {
            command: self.command,
            at_s: self.started_ns.saturating_sub(self.traffic_start_ns) as f64 / 1e9,
            at_unix_s: self.started_unix_s,
            exit_status,
            ran_ms: ended_ns.saturating_sub(self.started_ns) as f64 / 1e6,
        }
    }
}

/// Hang everyone up and give the frames a moment to leave.
fn hang_up(side: &mut dyn Side) {
    side.hang_up(now());
    side.flush(now());
    let until = monotonic_ns() + 200_000_000;
    while monotonic_ns() < until {
        let t = now();
        if side.poll_timeout().is_some_and(|d| d <= t) {
            side.handle_timeout(t);
        }
        side.flush(t);
        thread::sleep(Duration::from_millis(5));
    }
}

fn make_side(args: &Args) -> ThreadResult<Box<dyn Side>> {
    match args.mode {
        Mode::Pppoe => {
            let mut config =
                EmulatorConfig::new(args.subscribers, &args.password, args.auth.into());
            config.first = args.first_subscriber;
            config.max_setting_up = args.max_setting_up;
            let emulator = Emulator::new(config, args.seed);
            Ok(match args.io {
                Io::Packet => {
                    let port = PacketSocket::open(&args.interface).map_err(|e| {
                        format!("cannot open a raw socket on {}: {e}", args.interface)
                    })?;
                    Box::new(PppoeSide::new(emulator, port))
                }
                Io::Afxdp => {
                    let port = XdpL2::open(&args.interface, None)
                        .map_err(|e| format!("cannot open AF_XDP on {}: {e}", args.interface))?;
                    Box::new(PppoeSide::new(emulator, port))
                }
            })
        }
        Mode::L2tp => super::l2tp::L2tpSide::open(args).map(|s| Box::new(s) as Box<dyn Side>),
    }
}

/// The one-line progress display on stderr, once a second.
#[derive(Debug)]
struct Progress {
    quiet: bool,
    start_ns: u64,
    last_ns: u64,
    last: (u64, u64),
    printed: bool,
    terminal: bool,
    timeline: Vec<TimelinePoint>,
}

impl Progress {
    fn new(quiet: bool, start_ns: u64) -> Self {
        Progress {
            quiet,
            start_ns,
            last_ns: monotonic_ns(),
            last: (0, 0),
            printed: false,
            terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            timeline: Vec::new(),
        }
    }

    fn tick(&mut self, shared: &Shared, n: usize, traffic: bool) {
        let now = monotonic_ns();
        if now - self.last_ns < 1_000_000_000 {
            return;
        }
        let secs = (now - self.last_ns) as f64 / 1e9;
        self.last_ns = now;
        let up = shared.sessions_up.load(Ordering::Relaxed);
        let up_rx = shared.up_received.load(Ordering::Relaxed);
        let down_rx = shared.down_received.load(Ordering::Relaxed);
        let up_tx = shared.up_sent.load(Ordering::Relaxed);
        let down_tx = shared.down_sent.load(Ordering::Relaxed);
        let point = TimelinePoint {
            t_s: (now - self.start_ns) as f64 / 1e9,
            sessions_up: up,
            upstream_pps: (up_rx - self.last.0.min(up_rx)) as f64 / secs,
            downstream_pps: (down_rx - self.last.1.min(down_rx)) as f64 / secs,
        };
        self.last = (up_rx, down_rx);
        self.timeline.push(point);
        if self.quiet {
            return;
        }
        let line = if traffic {
            // Loss so far, approximate: what is in flight counts as lost.
            let lost = up_tx.saturating_sub(up_rx) + down_tx.saturating_sub(down_rx);
            format!(
                "sessions {up}/{n} up | upstream {:.0} pps | downstream {:.0} pps | lost so far ≤{lost}",
                point.upstream_pps, point.downstream_pps,
            )
        } else {
            format!("sessions {up}/{n} up")
        };
        if self.terminal {
            // One line, rewritten in place.
            eprint!("\r\x1b[2K{line}");
            self.printed = true;
        } else {
            // A log file: one line per second.
            eprintln!("{line}");
        }
    }

    fn finish(&mut self) {
        if self.printed {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_senders_go_round_every_stream_once_in_an_order_unrelated_to_setup() {
        // 1000 subscribers, every tenth without an address.
        let addresses: Vec<_> = (0..1000u32)
            .map(|i| (i % 10 != 3).then(|| Ipv4Addr::from(0x6440_0000 + i)))
            .collect();
        let order = streams(&addresses);
        let mut indices: Vec<_> = order.iter().map(|&(i, _)| i).collect();
        // Each stream keeps its own address.
        assert!(order.iter().all(|&(i, a)| addresses[i] == Some(a)));
        // The first tenth of a round reaches across all of setup order.
        let first = &indices[..90];
        let spread = first.iter().max().unwrap() - first.iter().min().unwrap();
        assert!(spread > 900, "{spread}");
        indices.sort_unstable();
        let expected: Vec<_> = (0..1000).filter(|i| i % 10 != 3).collect();
        assert_eq!(indices, expected);
    }
}

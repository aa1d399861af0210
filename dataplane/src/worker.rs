//! A poll-mode worker: one thread, its own ports, tables and counters.
//!
//! Each [`Worker::poll`] receives a burst from every port, runs each packet
//! to completion ([`crate::path`]), transmits what was forwarded, sends up
//! to a burst of control-plane injects, and every `update_interval` polls
//! applies at most `updates_per_interval` table updates. The clock is read
//! at the start of a poll that would be the `latency_sample_interval`-th
//! busy one, and again after it transmitted: the difference (how long the
//! burst spent in the worker) goes into a histogram. Other polls read it
//! only when the replay history is kept (its timestamps).
//!
//! Nothing in a poll allocates, locks or logs, except answering a
//! [`Update::Report`] (a boxed copy of the counters and the histogram, at
//! the control plane's request, at an update point).

use core::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::counters::{Counters, DropReason, PathKind};
use crate::fragment::Fragments;
use crate::io::{Descriptor, Port};
use crate::lac::HoldRings;
pub use crate::path::Role;
use crate::path::{Datapath, Verdict};
use crate::punt::{Inject, InjectTarget, Punt, PuntReason};
use crate::replay::Replay;
use crate::table::{Handover, Lookup, SessionKey, TableError, Tables};
use crate::update::{ChannelSizes, Channels, Event, Update, WorkerReport};

/// The largest burst a worker takes from a port at once.
pub const MAX_BURST: usize = 64;

/// How many packets ahead of the one processed the burst prefetch asks
/// for a map slot.
const SLOT_AHEAD: usize = 8;

/// How many packets ahead it asks for a session (found through a slot
/// asked for `SLOT_AHEAD - SESSION_AHEAD` packets earlier).
const SESSION_AHEAD: usize = 4;

/// How a worker waits when there is nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Spin: lowest latency, one core burnt per worker (benchmarks,
    /// dedicated machines).
    BusyPoll,
    /// Spin briefly, then yield, then sleep a little: for machines where
    /// workers share cores with other processes (the lab, CI).
    Adaptive,
}

/// Everything a worker is configured with.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its index, echoed in events.
    pub id: usize,
    /// LNS or LAC.
    pub role: Role,
    /// Packets per receive burst, 1..=64 (32 or 64 are the usual).
    pub burst: usize,
    /// Session table size.
    pub max_sessions: usize,
    /// Neighbour table size.
    pub max_neighbours: usize,
    /// Our tunnel endpoint addresses: IPv4 to them is L2TP (or punted).
    pub local_addresses: Vec<Ipv4Addr>,
    /// Apply updates every this many polls.
    pub update_interval: u32,
    /// Apply at most this many updates each time.
    pub updates_per_interval: usize,
    /// Holding rings (sessions that can hold at once).
    pub hold_rings: usize,
    /// Frames per holding ring.
    pub hold_depth: usize,
    /// LAC: keep the session frames relayed upstream during this long, to
    /// replay them to another LNS when theirs is found dead
    /// ([`Update::HoldTunnel`], [`crate::replay`]). Zero (the default):
    /// nothing is recorded.
    pub replay_window: Duration,
    /// Bytes of the replay history (allocated at start when
    /// `replay_window` is not zero; the oldest records are overwritten).
    /// Each frame takes its PPP length plus some 20 bytes.
    pub replay_bytes: usize,
    /// Record the burst latency every this many polls that received
    /// something.
    pub latency_sample_interval: u32,
    /// Check UDP checksums of L2TP datagrams (off: the inner packet has its
    /// own checksums, and summing every payload costs more than the rest of
    /// the path).
    pub verify_udp_checksum: bool,
    /// TTL of the IPv4 headers we build.
    pub outer_ttl: u8,
    /// Spin or back off.
    pub mode: PollMode,
    /// Pin the worker's thread to this core.
    pub core: Option<usize>,
    /// Prefetch the session map slot and the session of the packets a
    /// few places ahead of the one being processed (on by default: it
    /// costs some 115-130 instructions a packet, 3-8 ns when the tables fit
    /// the cache, and halves the time of every path when they do not; off
    /// for comparisons, or on a machine whose tables fit its cache).
    pub prefetch: bool,
    /// Queue and pool sizes.
    pub channels: ChannelSizes,
}

impl WorkerConfig {
    /// Defaults for a worker of `role` with `local_addresses`.
    pub fn new(role: Role, local_addresses: Vec<Ipv4Addr>) -> WorkerConfig {
        WorkerConfig {
            id: 0,
            role,
            burst: 32,
            max_sessions: 100_000,
            max_neighbours: 1024,
            local_addresses,
            update_interval: 16,
            updates_per_interval: 64,
            hold_rings: 1024,
            hold_depth: 64,
            replay_window: Duration::ZERO,
            replay_bytes: 8 << 20,
            latency_sample_interval: 64,
            verify_udp_checksum: false,
            outer_ttl: 64,
            mode: PollMode::Adaptive,
            core: None,
            prefetch: true,
            channels: ChannelSizes::default(),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Worker<P: Port> {
    id: usize,
    ports: Vec<P>,
    dp: Datapath,
    channels: Channels,
    burst: usize,
    rx: [Descriptor; MAX_BURST],
    /// What each packet of the burst will look up (for prefetching).
    lookups: [Lookup; MAX_BURST],
    tx: Vec<Vec<Descriptor>>,
    /// Each port's [`Port::memory`], read once.
    memories: Vec<crate::io::MemoryId>,
    /// Polls until updates are applied next (counted down: a division
    /// per poll cost more than the check).
    polls_to_update: u32,
    update_interval: u32,
    updates_per_interval: usize,
    /// Busy polls until the next latency sample, this one included.
    busy_polls_to_sample: u32,
    latency_sample_interval: u32,
    latency: Histogram<u64>,
    pending_event: Option<Event>,
    mode: PollMode,
    core: Option<usize>,
    prefetch: bool,
    /// A packet being fragmented, copied aside (as long as the largest
    /// frame of any port).
    scratch: Vec<u8>,
    /// Zero of the worker's clock (replay timestamps).
    epoch: Instant,
}

/// Latency histogram range: 1 ns to 10 s, 3 significant digits.
const LATENCY_MAX_NS: u64 = 10_000_000_000;

impl<P: Port> Worker<P> {
    /// A worker over `ports` (index = the port number tables refer to).
    /// Allocates everything it will ever use.
    pub fn new(
        config: WorkerConfig,
        ports: Vec<P>,
    ) -> Result<Worker<P>, hdrhistogram::CreationError> {
        let burst = config.burst.clamp(1, MAX_BURST);
        let port_macs = ports.iter().map(|p| p.mac_addr()).collect();
        let ports_frame_size = ports.iter().map(|p| p.frame_size()).max().unwrap_or(0);
        // A poll can forward every packet of every port's burst, plus a
        // burst of injects, to one port.
        let tx_capacity = burst * (ports.len() + 1);
        let tx = ports
            .iter()
            .map(|_| Vec::with_capacity(tx_capacity))
            .collect();
        let memories = ports.iter().map(|p| p.memory()).collect();
        Ok(Worker {
            id: config.id,
            dp: Datapath {
                role: config.role,
                tables: Tables::new(config.max_sessions, config.max_neighbours),
                counters: Counters::default(),
                port_macs,
                local_addresses: config.local_addresses,
                verify_udp_checksum: config.verify_udp_checksum,
                outer_ttl: config.outer_ttl,
                next_ident: 0,
                holds: HoldRings::new(
                    config.hold_rings,
                    config.hold_depth.max(1),
                    Replay::new(config.replay_window, config.replay_bytes),
                ),
            },
            ports,
            channels: Channels::new(config.channels),
            burst,
            rx: [Descriptor::default(); MAX_BURST],
            lookups: [Lookup::None; MAX_BURST],
            tx,
            memories,
            polls_to_update: config.update_interval.max(1),
            update_interval: config.update_interval.max(1),
            updates_per_interval: config.updates_per_interval.max(1),
            busy_polls_to_sample: config.latency_sample_interval.max(1),
            latency_sample_interval: config.latency_sample_interval.max(1),
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)?,
            pending_event: None,
            mode: config.mode,
            core: config.core,
            prefetch: config.prefetch,
            scratch: vec![0; ports_frame_size],
            epoch: Instant::now(),
        })
    }

    /// The control plane's end of this worker's queues.
    pub fn channels(&self) -> Channels {
        self.channels.clone()
    }

    /// The ports (tests fill and drain memory ports through this).
    pub fn ports_mut(&mut self) -> &mut [P] {
        &mut self.ports
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.dp.counters
    }

    /// The packet processing state (unit tests).
    #[cfg(test)]
    pub(crate) fn dp_for_tests(&self) -> &Datapath {
        &self.dp
    }

    /// The packet processing state, writable (unit tests).
    #[cfg(test)]
    pub(crate) fn dp_mut_for_tests(&mut self) -> &mut Datapath {
        &mut self.dp
    }

    /// The tables.
    pub fn tables(&self) -> &Tables {
        &self.dp.tables
    }

    /// Apply every queued update now (start-up, tests), however many.
    pub fn apply_all_updates(&mut self) {
        while self.pending_event.is_none() && !self.channels.updates.is_empty() {
            self.apply_updates();
        }
    }

    /// One iteration: receive, process, transmit; returns the number of
    /// packets received.
    pub fn poll(&mut self) -> usize {
        // The clock only when something reads it: a clock read costs a
        // burst of 32 some 1 ns a packet on this VM's TSC (more elsewhere).
        let sampled = self.busy_polls_to_sample == 1;
        let replay = self.dp.holds.replay.on();
        let started = (sampled || replay).then(Instant::now);
        if let Some(started) = started.filter(|_| replay) {
            self.dp.holds.replay.now = self.clock_ns(started);
        }
        let mut received = 0;
        for port in 0..self.ports.len() {
            let n = self.ports[port].receive(&mut self.rx[..self.burst]);
            received += n;
            if self.prefetch {
                self.prefetch_start(port, n);
            }
            for i in 0..n {
                if self.prefetch {
                    self.prefetch_ahead(port, i, n);
                }
                let mut d = self.rx[i];
                let verdict = self
                    .dp
                    .process(self.ports[port].frame_mut(d.frame), &mut d, port);
                self.dispose(port, d, verdict);
            }
        }
        self.dp.counters.received += received as u64;
        let injected = self.poll_injects();
        self.transmit_all();
        self.polls_to_update -= 1;
        if self.polls_to_update == 0 {
            self.polls_to_update = self.update_interval;
            self.apply_updates();
        }
        if received + injected == 0 {
            self.dp.counters.idle_polls += 1;
        } else {
            self.busy_polls_to_sample -= 1;
            if self.busy_polls_to_sample == 0 {
                self.busy_polls_to_sample = self.latency_sample_interval;
                if let Some(started) = started.filter(|_| sampled) {
                    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.latency.saturating_record(ns.max(1));
                }
            }
        }
        received
    }

    /// Before a burst of `n` packets from `port` is processed: start
    /// loading the map slots the first [`SLOT_AHEAD`] packets' sessions
    /// are found by, and (those of the first [`SESSION_AHEAD`] having had
    /// the longest to arrive) their sessions.
    #[inline]
    fn prefetch_start(&mut self, port: usize, n: usize) {
        for i in 0..n.min(SLOT_AHEAD) {
            self.prefetch_slot(port, i);
        }
        for i in 0..n.min(SESSION_AHEAD) {
            self.dp.tables.prefetch_session(self.lookups[i]);
        }
    }

    /// While packet `i` of a burst of `n` is processed: start loading
    /// the map slot of packet `i + SLOT_AHEAD`, and the session of packet
    /// `i + SESSION_AHEAD`, whose slot was asked for some packets ago.
    /// Software pipelining (as VPP's graph nodes do): with a table far
    /// bigger than the cache the packets do not wait for memory one after
    /// the other, and each load has a packet's worth of work to hide in.
    #[inline]
    fn prefetch_ahead(&mut self, port: usize, i: usize, n: usize) {
        if i + SLOT_AHEAD < n {
            self.prefetch_slot(port, i + SLOT_AHEAD);
        }
        if i + SESSION_AHEAD < n {
            self.dp
                .tables
                .prefetch_session(self.lookups[i + SESSION_AHEAD]);
        }
    }

    #[inline(always)]
    fn prefetch_slot(&mut self, port: usize, i: usize) {
        let d = &self.rx[i];
        let lookup = self.dp.lookup_of(self.ports[port].frame(d.frame), d);
        self.lookups[i] = lookup;
        self.dp.tables.prefetch_lookup(lookup);
    }

    /// Poll until `stop` is set, pinned and waiting as configured.
    pub fn run(&mut self, stop: &AtomicBool) {
        if let Some(core) = self.core {
            // Best effort: an unpinned worker still works, only slower.
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        let mut idle: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            if self.poll() > 0 {
                idle = 0;
                continue;
            }
            idle = idle.saturating_add(1);
            match self.mode {
                PollMode::BusyPoll => core::hint::spin_loop(),
                PollMode::Adaptive => back_off(idle),
            }
        }
    }

    /// Run on a thread of its own until `stop` is set; the thread gives the
    /// worker back.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<Self>>
    where
        P: Send + 'static,
    {
        std::thread::Builder::new()
            .name(format!("fastpath-{}", self.id))
            .spawn(move || {
                self.run(&stop);
                self
            })
    }

    #[inline(always)]
    fn dispose(&mut self, in_port: usize, d: Descriptor, verdict: Verdict) {
        match verdict {
            Verdict::Forward(out) => self.forward(in_port, out, d),
            Verdict::Hold(ring) => self.hold(in_port, d, ring),
            Verdict::Drop(reason) => self.drop_packet(in_port, d, reason),
            Verdict::Punt(reason) => {
                self.punt(in_port, d, reason);
                self.ports[in_port].free(d);
            }
            Verdict::DropAndPunt(drop, reason) => {
                self.punt(in_port, d, reason);
                self.drop_packet(in_port, d, drop);
            }
            Verdict::Fragment { session, mru } => self.fragment(in_port, d, session, mru),
        }
    }

    /// Keep a holding session's frame in its ring, in arrival order,
    /// untouched: it is encapsulated when flushed, for whichever tunnel
    /// carries the session by then.
    #[cold]
    #[inline(never)]
    fn hold(&mut self, in_port: usize, d: Descriptor, ring: u32) {
        if self.dp.holds.push(ring, in_port, d) {
            self.dp.counters.held += 1;
        } else {
            self.drop_packet(in_port, d, DropReason::HoldingOverflow);
        }
    }

    /// Cut the IPv4 packet `d` into fragments of at most `mru` bytes and
    /// send each into session `session` (RFC 791 §3.2). The first fragment
    /// keeps the packet's frame; the others are written into frames of the
    /// port the first one leaves by, from a copy of the packet.
    #[cold]
    #[inline(never)]
    fn fragment(&mut self, in_port: usize, d: Descriptor, session: usize, mru: u16) {
        let mut scratch = core::mem::take(&mut self.scratch);
        self.fragment_from(&mut scratch, in_port, d, session, mru);
        self.scratch = scratch;
    }

    fn fragment_from(
        &mut self,
        scratch: &mut [u8],
        in_port: usize,
        mut d: Descriptor,
        session: usize,
        mru: u16,
    ) {
        let len = d.len as usize;
        let plan = match (
            self.ports[in_port].frame(d.frame).get(d.range()),
            scratch.get_mut(..len),
        ) {
            (Some(packet), Some(copy)) => {
                copy.copy_from_slice(packet);
                Fragments::new(copy, mru)
            }
            _ => None,
        };
        let Some(plan) = plan else {
            return self.drop_packet(in_port, d, DropReason::FragmentationUnsupported);
        };
        self.dp.counters.fragmented += 1;
        let ip_start = d.offset as usize;
        let frame = self.ports[in_port].frame_mut(d.frame);
        let Some(total) = frame
            .get_mut(ip_start..)
            .and_then(|header| plan.write_header(0, header))
        else {
            return self.drop_packet(in_port, d, DropReason::EncapsulationFailed);
        };
        d.len = total as u32;
        let verdict = self
            .dp
            .lns_encapsulate_ipv4(frame, &mut d, session, ip_start, total);
        let Verdict::Forward(out) = verdict else {
            return self.dispose(in_port, d, verdict);
        };
        self.dispose(in_port, d, verdict);
        if out >= self.ports.len() {
            return;
        }
        let data = &scratch[plan.original_header_len()..len];
        for k in 1..plan.count() {
            let Some(mut f) = self.ports[out].alloc() else {
                return self.dp.counters.drop_packet(DropReason::NoFrame);
            };
            let ip_start = f.offset as usize;
            let header_len = plan.header_len(k);
            let range = plan.data_range(k);
            let frame = self.ports[out].frame_mut(f.frame);
            let written = match frame.get_mut(ip_start..ip_start + header_len + range.len()) {
                Some(buf) => {
                    let (header, body) = buf.split_at_mut(header_len);
                    body.copy_from_slice(&data[range]);
                    plan.write_header(k, header)
                }
                None => None,
            };
            let Some(total) = written else {
                return self.drop_packet(out, f, DropReason::NoFrame);
            };
            f.len = total as u32;
            let verdict = self
                .dp
                .lns_encapsulate_ipv4(frame, &mut f, session, ip_start, total);
            self.dispose(out, f, verdict);
        }
    }

    #[cold]
    #[inline(never)]
    fn drop_packet(&mut self, port: usize, d: Descriptor, reason: DropReason) {
        self.dp.counters.drop_packet(reason);
        self.ports[port].free(d);
    }

    #[inline]
    fn forward(&mut self, in_port: usize, out: usize, d: Descriptor) {
        if out >= self.ports.len() {
            return self.drop_packet(in_port, d, DropReason::NoNeighbour);
        }
        if self.memories[out] != self.memories[in_port] {
            return self.copy_forward(in_port, out, d);
        }
        self.queue_tx(out, d);
    }

    #[inline]
    fn queue_tx(&mut self, out: usize, d: Descriptor) {
        if self.tx[out].len() == self.tx[out].capacity() {
            self.transmit(out);
        }
        self.tx[out].push(d);
    }

    /// Rule 4 of the port contract: ports with separate memories copy.
    #[inline]
    fn copy_forward(&mut self, in_port: usize, out: usize, d: Descriptor) {
        let (src, dst) = two_mut(&mut self.ports, in_port, out);
        let Some(mut copy) = dst.alloc() else {
            return self.drop_packet(in_port, d, DropReason::NoFrame);
        };
        copy.len = d.len;
        // Keep the new frame's headroom when the packet fits after it.
        if copy.range().end > dst.frame_size() {
            copy.offset = (dst.frame_size() as u32).saturating_sub(d.len);
        }
        let copied = match (
            src.frame(d.frame).get(d.range()),
            dst.frame_mut(copy.frame).get_mut(copy.range()),
        ) {
            (Some(from), Some(to)) => {
                to.copy_from_slice(from);
                true
            }
            _ => false,
        };
        src.free(d);
        if copied {
            self.queue_tx(out, copy);
        } else {
            self.drop_packet(out, copy, DropReason::NoFrame);
        }
    }

    fn transmit(&mut self, port: usize) {
        let queued = &self.tx[port];
        if queued.is_empty() {
            return;
        }
        let accepted = self.ports[port].transmit(queued);
        self.dp.counters.transmitted += accepted as u64;
        for i in accepted..self.tx[port].len() {
            let d = self.tx[port][i];
            self.drop_packet(port, d, DropReason::TxRingFull);
        }
        self.tx[port].clear();
    }

    fn transmit_all(&mut self) {
        for port in 0..self.ports.len() {
            if !self.tx[port].is_empty() {
                self.transmit(port);
                self.ports[port].flush();
            }
        }
        // Rule 4 of the port contract: a port that shares its memory with
        // the one before it evens out their free frames (the transmitting
        // one gets the frames back that the receiving one needs).
        for port in 1..self.ports.len() {
            if self.memories[port] == self.memories[port - 1] {
                let (before, this) = two_mut(&mut self.ports, port - 1, port);
                before.balance(this);
            }
        }
    }

    /// Copy a packet into a pooled buffer for the control plane.
    #[cold]
    #[inline(never)]
    fn punt(&mut self, port: usize, d: Descriptor, reason: PuntReason) {
        let Some(mut buffer) = self.channels.pool.pop() else {
            return self.dp.counters.drop_packet(DropReason::PuntPoolEmpty);
        };
        let bytes = self.ports[port]
            .frame(d.frame)
            .get(d.range())
            .unwrap_or(&[]);
        if !buffer.set(bytes) {
            self.channels.recycle(buffer);
            return self.dp.counters.drop_packet(DropReason::PuntPoolEmpty);
        }
        let punt = Punt {
            reason,
            port: port as u8,
            buffer,
        };
        match self.channels.punts.push(punt) {
            Ok(()) => self.dp.counters.punted[reason.kind() as usize] += 1,
            Err(punt) => {
                self.channels.recycle(punt.buffer);
                self.dp.counters.drop_packet(DropReason::PuntQueueFull);
            }
        }
    }

    /// Send up to a burst of control-plane packets.
    fn poll_injects(&mut self) -> usize {
        let mut n = 0;
        while n < self.burst {
            let Some(inject) = self.channels.injects.pop() else {
                break;
            };
            n += 1;
            self.inject(&inject);
            self.channels.recycle(inject.buffer);
        }
        n
    }

    #[cold]
    #[inline(never)]
    fn inject(&mut self, inject: &Inject) {
        let bytes = inject.buffer.bytes();
        let port = match inject.target {
            InjectTarget::Port(port) => Some(usize::from(port)),
            InjectTarget::LnsSession(key) => self.lns_session_port(key),
            InjectTarget::LacSubscriber(key) => self.lac_subscriber_port(key),
        };
        let Some(port) = port.filter(|&p| p < self.ports.len()) else {
            return self.dp.counters.drop_packet(DropReason::InjectInvalid);
        };
        let Some(mut d) = self.ports[port].alloc() else {
            return self.dp.counters.drop_packet(DropReason::NoFrame);
        };
        d.len = bytes.len() as u32;
        let Some(to) = self.ports[port].frame_mut(d.frame).get_mut(d.range()) else {
            return self.drop_packet(port, d, DropReason::InjectInvalid);
        };
        to.copy_from_slice(bytes);
        let start = d.offset as usize;
        let frame = self.ports[port].frame_mut(d.frame);
        let verdict = match inject.target {
            InjectTarget::Port(_) => Verdict::Forward(port),
            InjectTarget::LnsSession(key) | InjectTarget::LacSubscriber(key) => {
                match self.dp.tables.session_or_alias_index(key) {
                    None => Verdict::Drop(DropReason::InjectInvalid),
                    Some(index) if matches!(inject.target, InjectTarget::LnsSession(_)) => self
                        .dp
                        .l2tp_encapsulate(frame, &mut d, index, start, bytes.len()),
                    Some(index) => {
                        self.dp
                            .pppoe_encapsulate(frame, &mut d, index, start, bytes.len())
                    }
                }
            }
        };
        if let Verdict::Forward(_) = verdict {
            self.dp.forwarded(PathKind::Inject);
        }
        self.dispose(port, d, verdict);
    }

    fn lns_session_port(&self, key: SessionKey) -> Option<usize> {
        let tables = &self.dp.tables;
        let session = tables.session(tables.session_or_alias_index(key)?)?;
        let tunnel = tables.tunnel(session.config.key.tunnel_id)?;
        Some(usize::from(tables.neighbour(tunnel.next_hop)?.port))
    }

    fn lac_subscriber_port(&self, key: SessionKey) -> Option<usize> {
        let tables = &self.dp.tables;
        let session = tables.session(tables.session_or_alias_index(key)?)?;
        Some(usize::from(session.config.pppoe?.port))
    }

    /// Apply a bounded number of updates, answering through the event
    /// queue. When the event queue is full the answer waits, and so do the
    /// updates after it, so that barriers keep their meaning.
    fn apply_updates(&mut self) {
        if let Some(event) = self.pending_event.take() {
            if let Err(event) = self.channels.events.push(event) {
                self.pending_event = Some(event);
                return;
            }
        }
        for _ in 0..self.updates_per_interval {
            let Some(update) = self.channels.updates.pop() else {
                return;
            };
            self.dp.counters.updates += 1;
            if let Some(event) = self.apply(update) {
                if let Err(event) = self.channels.events.push(event) {
                    self.pending_event = Some(event);
                    return;
                }
            }
        }
    }

    fn apply(&mut self, update: Update) -> Option<Event> {
        let ports = self.ports.len();
        let result = match update {
            Update::UpsertTunnel(tunnel) => self.dp.tables.upsert_tunnel(tunnel),
            Update::RemoveTunnel(id) => {
                self.dp.tables.remove_tunnel(id);
                for index in 0..self.dp.tables.session_slots() {
                    let Some(s) = self.dp.tables.session(index) else {
                        continue;
                    };
                    if s.config.key.tunnel_id == id {
                        self.remove_session_at(index);
                    } else if let Some(alias) = self
                        .dp
                        .tables
                        .handover(index)
                        .and_then(|h| h.alias())
                        .filter(|a| a.key.tunnel_id == id)
                    {
                        // A session that moved away from this tunnel stays.
                        self.dp.tables.remove_alias(alias.key);
                    }
                }
                Ok(())
            }
            Update::UpsertSession(config) => {
                if config.pppoe.is_some_and(|p| usize::from(p.port) >= ports) {
                    Err(TableError::Invalid)
                } else {
                    self.dp.tables.upsert_session(config).map(|_| ())
                }
            }
            Update::RemoveSession(key) => {
                if let Some(index) = self.dp.tables.session_index(key) {
                    self.remove_session_at(index);
                } else {
                    self.dp.tables.remove_alias(key);
                }
                Ok(())
            }
            Update::AliasSession { alias, target } => {
                self.dp.tables.alias_session(alias, target).map(|_| ())
            }
            Update::SetHolding { key, holding } => self.set_holding(key, holding),
            Update::HoldTunnel {
                tunnel_id,
                replay_ns,
            } => {
                let now = self.clock_ns(Instant::now());
                crate::replay::hold_tunnel(
                    &mut self.dp,
                    &mut self.ports,
                    tunnel_id,
                    replay_ns,
                    now,
                );
                Ok(())
            }
            Update::UpsertNeighbour { addr, neighbour } => {
                if usize::from(neighbour.port) >= ports {
                    Err(TableError::Invalid)
                } else {
                    self.dp.tables.upsert_neighbour(addr, neighbour)
                }
            }
            Update::RemoveNeighbour(addr) => {
                self.dp.tables.remove_neighbour(addr);
                Ok(())
            }
            Update::SetGateway(gateway) => {
                self.dp.tables.set_gateway(gateway);
                Ok(())
            }
            Update::Barrier(token) => {
                return Some(Event::Barrier {
                    worker: self.id,
                    token,
                })
            }
            Update::Report(token) => return Some(Event::Report(Box::new(self.report(token)))),
            Update::QuerySession { key, token } => {
                let tables = &self.dp.tables;
                let counters = tables
                    .session_index(key)
                    .and_then(|i| tables.session(i))
                    .map(|s| s.counters);
                return Some(Event::SessionCounters {
                    worker: self.id,
                    token,
                    key,
                    counters,
                });
            }
        };
        match result {
            Ok(()) => None,
            Err(error) => Some(Event::Refused {
                worker: self.id,
                update,
                error,
            }),
        }
    }

    /// The worker's clock at `at`: nanoseconds since it started.
    fn clock_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Move the worker's clock forward by `by` (replay tests).
    #[cfg(test)]
    pub(crate) fn advance_clock(&mut self, by: Duration) {
        if let Some(epoch) = self.epoch.checked_sub(by) {
            self.epoch = epoch;
        }
    }

    /// The counters and latency now.
    pub fn report(&self, token: u64) -> WorkerReport {
        WorkerReport {
            worker: self.id,
            token,
            counters: self.dp.counters.clone(),
            latency_ns: self.latency.clone(),
            sessions: self.dp.tables.session_count(),
        }
    }

    fn remove_session_at(&mut self, index: usize) {
        if let Some((
            _,
            Handover {
                ring: Some(ring), ..
            },
        )) = self.dp.tables.remove_session_at(index)
        {
            while let Some((port, d)) = self.dp.holds.pop(ring) {
                self.ports[port].free(d);
            }
            self.dp.holds.release(ring);
        }
    }

    /// Start holding, or flush what was held in order and stop.
    fn set_holding(&mut self, key: SessionKey, holding: bool) -> Result<(), TableError> {
        let index = self
            .dp
            .tables
            .session_index(key)
            .ok_or(TableError::Invalid)?;
        if !self.dp.tables.set_holding(index, holding) {
            return Err(TableError::Invalid);
        }
        let ring = {
            let Some(ring) = self.dp.tables.ring_mut(index) else {
                return Err(TableError::Invalid);
            };
            if holding {
                if ring.is_none() {
                    *ring = self.dp.holds.take();
                }
                return Ok(());
            }
            ring.take()
        };
        if let Some(ring) = ring {
            while let Some((port, mut d)) = self.dp.holds.pop(ring) {
                self.dp.counters.flushed += 1;
                let verdict = self
                    .dp
                    .process(self.ports[port].frame_mut(d.frame), &mut d, port);
                self.dispose(port, d, verdict);
            }
            self.dp.holds.release(ring);
            self.transmit_all();
        }
        Ok(())
    }
}

/// Spin for a while, then yield, then sleep briefly: an idle worker costs
/// little on a shared machine and still answers within a fraction of a
/// millisecond.
#[cold]
fn back_off(idle: u32) {
    if idle < 64 {
        core::hint::spin_loop();
    } else if idle < 128 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Two distinct elements of a slice, both writable.
fn two_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (left, right) = items.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = items.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

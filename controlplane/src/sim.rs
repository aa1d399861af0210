//! A deterministic simulation of sans-IO nodes on a lossy network, after
//! quinn-proto's test `Pair`.
//!
//! Nodes (anything implementing [`Node`], e.g. an [`crate::l2tp::Endpoint`])
//! sit at IPv4 socket addresses. What they transmit crosses a simulated link
//! that, from a seeded RNG, drops, duplicates, delays and reorders datagrams,
//! and partitions can cut pairs of nodes apart. Time does not pass by itself:
//! [`Sim::step`] jumps straight to the next thing that happens (a delivery or
//! a node's timer), so a scenario of minutes runs in milliseconds and the same
//! seed always gives the same run.
//!
//! The link counts what it did ([`LinkStats`]) and can record every datagram
//! with its fate ([`Sim::record_trace`]), so tests can check the nodes'
//! counters against what the network really did.
//!
//! An [`Adversary`] ([`Sim::set_adversary`]) sees every datagram before the
//! link does and may rewrite it (payload, source, destination), drop it or
//! duplicate it: corruption, spoofing and port rewriting for robustness tests
//! and the fuzz targets.
//!
//! ```
//! use controlplane::l2tp::{Config, Endpoint, Event};
//! use controlplane::sim::{LinkConditions, Sim};
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use core::time::Duration;
//! # struct Rng(u64);
//! # impl rand_core::RngCore for Rng {
//! #     fn next_u32(&mut self) -> u32 { self.next_u64() as u32 }
//! #     fn next_u64(&mut self) -> u64 { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); self.0 >> 11 }
//! #     fn fill_bytes(&mut self, d: &mut [u8]) { rand_core::impls::fill_bytes_via_next(self, d) }
//! #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> { self.fill_bytes(d); Ok(()) }
//! # }
//! let lac_addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
//! let lns_addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1701);
//! let mut sim = Sim::new(Box::new(Rng(7)), LinkConditions::delay(Duration::from_millis(5)));
//! let lac = sim.add_node(lac_addr, Endpoint::new(Config::lac("lac"), Box::new(Rng(1))).unwrap());
//! let lns = sim.add_node(lns_addr, Endpoint::new(Config::lns("lns"), Box::new(Rng(2))).unwrap());
//! let now = sim.now();
//! sim.node_mut(lac).connect(now, lns_addr).unwrap();
//! let up = sim
//!     .run_until(now + Duration::from_secs(5), |sim| {
//!         sim.events(lns).iter().any(|(_, e)| matches!(e, Event::TunnelUp { .. }))
//!     })
//!     .unwrap();
//! assert!(up);
//! ```

use core::fmt;
use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, HashSet};

use rand_core::RngCore;

pub use crate::node::Node;
use crate::time::Instant;

/// What the link does to datagrams in one direction. Probabilities are
/// per datagram, from 0.0 to 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConditions {
    /// One-way delay of every datagram.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`; enough of it reorders.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice (each copy has its own
    /// delay).
    pub duplicate: f64,
    /// Probability a datagram is held back by `reorder_delay` on top of its
    /// delay, so that later ones overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
}

impl LinkConditions {
    /// A perfect link with a fixed delay.
    pub fn delay(delay: Duration) -> Self {
        LinkConditions {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
        }
    }
}

impl Default for LinkConditions {
    /// 1 ms, perfect.
    fn default() -> Self {
        LinkConditions::delay(Duration::from_millis(1))
    }
}

/// A datagram on its way, as an [`Adversary`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Source address (rewrite it to spoof).
    pub from: SocketAddrV4,
    /// Destination address.
    pub to: SocketAddrV4,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// What an [`Adversary`] does with a datagram after it had its way with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Hand it to the link.
    Pass,
    /// Drop it.
    Drop,
    /// Hand two copies to the link.
    Duplicate,
}

/// Sees (and may change) every datagram before the link: `now` and the
/// datagram, returns its fate.
pub type Adversary = Box<dyn FnMut(Instant, &mut Datagram) -> Tamper>;

/// What the link did, counted per datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams the nodes sent.
    pub sent: u64,
    /// Changed by the adversary (payload or addresses).
    pub altered: u64,
    /// Dropped by the adversary.
    pub adversary_dropped: u64,
    /// Duplicated by the adversary (one extra copy each; the copies then
    /// take their chances with the link separately).
    pub adversary_duplicated: u64,
    /// Lost to `loss`.
    pub lost: u64,
    /// Cut by a partition.
    pub partitioned: u64,
    /// Sent twice (one extra copy each).
    pub duplicated: u64,
    /// Held back by `reorder`.
    pub reordered: u64,
    /// Copies handed to a node.
    pub delivered: u64,
    /// Copies addressed to no node.
    pub undeliverable: u64,
    /// Copies that reached the host of a killed node ([`Sim::kill`]),
    /// which answered port unreachable.
    pub refused: u64,
    /// Datagrams a killed node's timers still produced; never sent.
    pub muted: u64,
}

/// What became of a datagram, in the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A node sent it (every datagram has this record first).
    Sent,
    /// The adversary changed it; the record has the new bytes and
    /// addresses, which the later records of the datagram share.
    Altered,
    /// The adversary dropped it.
    AdversaryDropped,
    /// Lost to `loss`.
    Lost,
    /// Cut by a partition.
    Partitioned,
    /// A second copy was scheduled.
    Duplicated,
    /// A copy reached its node.
    Delivered,
    /// A copy was addressed to no node.
    Undeliverable,
    /// A copy reached the host of a killed node: its kernel answers port
    /// unreachable ([`Node::handle_unreachable`] at the sender, one link
    /// delay later).
    Refused,
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// When.
    pub at: Instant,
    /// What.
    pub fate: Fate,
    /// Sender.
    pub from: SocketAddrV4,
    /// Destination.
    pub to: SocketAddrV4,
    /// The datagram (same bytes in every record of one datagram, except
    /// those before [`Fate::Altered`]).
    pub payload: Vec<u8>,
}

/// The simulation ran more steps than its limit: probably a node whose timer
/// never advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimit {
    /// Steps taken.
    pub steps: u64,
    /// Simulated time reached.
    pub now: Instant,
}

impl fmt::Display for StepLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation stopped after {} steps at t={} ns: a timer that never advances?",
            self.steps,
            self.now.as_nanos()
        )
    }
}

impl std::error::Error for StepLimit {}

/// Index of a node in its [`Sim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

struct SimNode<N: Node> {
    address: SocketAddrV4,
    node: N,
    events: Vec<(Instant, N::Event)>,
}

struct InFlight {
    from: SocketAddrV4,
    to: SocketAddrV4,
    /// With `unreachable`: the refused datagram, as the ICMP quotes it.
    payload: Vec<u8>,
    /// Not a datagram: `from`'s host reports `to`'s datagram refused.
    unreachable: bool,
}

/// Nodes on a simulated network: see the [module documentation](self).
pub struct Sim<N: Node> {
    now: Instant,
    nodes: Vec<SimNode<N>>,
    by_address: HashMap<SocketAddrV4, usize>,
    conditions: LinkConditions,
    links: HashMap<(SocketAddrV4, SocketAddrV4), LinkConditions>,
    partitions: HashSet<(SocketAddrV4, SocketAddrV4)>,
    /// Nodes whose process is gone while their host is up ([`Sim::kill`]).
    killed: HashSet<SocketAddrV4>,
    /// Deliveries by (time, order of scheduling).
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    next_seq: u64,
    rng: Box<dyn RngCore>,
    adversary: Option<Adversary>,
    stats: LinkStats,
    record: bool,
    trace: Vec<TraceRecord>,
    steps: u64,
    /// Steps one `run_until` may take.
    pub max_steps: u64,
}

impl<N: Node> fmt::Debug for Sim<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<N: Node> Sim<N> {
    /// An empty network at time zero. `rng` decides the link's fates;
    /// `conditions` apply to every direction without its own
    /// ([`Sim::set_link`]).
    pub fn new(rng: Box<dyn RngCore>, conditions: LinkConditions) -> Self {
        Sim {
            now: Instant::ZERO,
            nodes: Vec::new(),
            by_address: HashMap::new(),
            conditions,
            links: HashMap::new(),
            partitions: HashSet::new(),
            killed: HashSet::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            rng,
            adversary: None,
            stats: LinkStats::default(),
            record: false,
            trace: Vec::new(),
            steps: 0,
            max_steps: 1_000_000,
        }
    }

    /// Put a node at `address`. A second node at the same address replaces
    /// the first as the destination of datagrams.
    pub fn add_node(&mut self, address: SocketAddrV4, node: N) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(SimNode {
            address,
            node,
            events: Vec::new(),
        });
        self.by_address.insert(address, id);
        NodeId(id)
    }

    /// Simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A node. Panics if `id` is not from this simulation (test code).
    pub fn node(&self, id: NodeId) -> &N {
        &self.nodes[id.0].node
    }

    /// A node, to give it commands. What it sends as a result goes on the
    /// link at the next step.
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        &mut self.nodes[id.0].node
    }

    /// A node's address.
    pub fn address(&self, id: NodeId) -> SocketAddrV4 {
        self.nodes[id.0].address
    }

    /// Every event a node reported so far, with when.
    pub fn events(&self, id: NodeId) -> &[(Instant, N::Event)] {
        &self.nodes[id.0].events
    }

    /// Take the events a node reported so far.
    pub fn take_events(&mut self, id: NodeId) -> Vec<(Instant, N::Event)> {
        core::mem::take(&mut self.nodes[id.0].events)
    }

    /// Conditions for datagrams from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: SocketAddrV4, to: SocketAddrV4, conditions: LinkConditions) {
        self.links.insert((from, to), conditions);
    }

    /// Conditions for every direction without its own.
    pub fn set_default_link(&mut self, conditions: LinkConditions) {
        self.conditions = conditions;
    }

    /// Cut `a` and `b` apart, both directions, from now on. Datagrams already
    /// in flight still arrive.
    pub fn partition(&mut self, a: SocketAddrV4, b: SocketAddrV4) {
        self.partitions.insert((a, b));
        self.partitions.insert((b, a));
    }

    /// The node at `address` dies while its host stays up (`kill -9` of a
    /// daemon): it receives nothing and what it would send is dropped, and
    /// its host answers every datagram sent to it with port unreachable
    /// (as a kernel does with ICMP), which reaches the sender one link
    /// delay later unless the way back is cut. Unlike a partition, which
    /// is silent.
    pub fn kill(&mut self, address: SocketAddrV4) {
        self.killed.insert(address);
    }

    /// Undo [`Sim::kill`]: the node runs again with the state it had.
    pub fn revive(&mut self, address: SocketAddrV4) {
        self.killed.remove(&address);
    }

    /// Undo [`Sim::partition`].
    pub fn heal(&mut self, a: SocketAddrV4, b: SocketAddrV4) {
        self.partitions.remove(&(a, b));
        self.partitions.remove(&(b, a));
    }

    /// Put an adversary on the link from now on (`None` removes it). It sees
    /// every datagram, injected ones included, before loss, partitions and
    /// delay.
    pub fn set_adversary(&mut self, adversary: Option<Adversary>) {
        self.adversary = adversary;
    }

    /// Record every datagram and its fate from now on.
    pub fn record_trace(&mut self, on: bool) {
        self.record = on;
    }

    /// The recorded trace.
    pub fn trace(&self) -> &[TraceRecord] {
        &self.trace
    }

    /// What the link did so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Datagrams on the link now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Put a datagram on the link as if `from` had sent it (e.g. a data
    /// message built with `Endpoint::send_data`, or a crafted one).
    pub fn inject(&mut self, from: SocketAddrV4, to: SocketAddrV4, payload: Vec<u8>) {
        self.send(from, to, payload);
    }

    /// Collect what every node wants to send and its events.
    fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            let now = self.now;
            let from = self.nodes[i].address;
            let mut payload = Vec::new();
            while let Some(to) = self.nodes[i].node.poll_transmit(now, &mut payload) {
                if self.killed.contains(&from) {
                    self.stats.muted += 1;
                    continue;
                }
                match to {
                    SocketAddr::V4(to) => self.send(from, to, core::mem::take(&mut payload)),
                    // The simulated network is IPv4 only: nobody is there.
                    SocketAddr::V6(_) => {
                        self.stats.undeliverable += 1;
                    }
                }
            }
            while let Some(e) = self.nodes[i].node.poll_event() {
                self.nodes[i].events.push((now, e));
            }
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits as a fraction in [0, 1).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.next_u64() % nanos.saturating_add(1))
    }

    fn note(&mut self, fate: Fate, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
        if self.record {
            self.trace.push(TraceRecord {
                at: self.now,
                fate,
                from,
                to,
                payload: payload.to_vec(),
            });
        }
    }

    fn send(&mut self, from: SocketAddrV4, to: SocketAddrV4, payload: Vec<u8>) {
        self.stats.sent += 1;
        self.note(Fate::Sent, from, to, &payload);
        let Some(adversary) = self.adversary.as_mut() else {
            self.transmit(from, to, payload);
            return;
        };
        let mut d = Datagram {
            from,
            to,
            payload: payload.clone(),
        };
        let tamper = adversary(self.now, &mut d);
        if d.from != from || d.to != to || d.payload != payload {
            self.stats.altered += 1;
            self.note(Fate::Altered, d.from, d.to, &d.payload);
        }
        match tamper {
            Tamper::Pass => self.transmit(d.from, d.to, d.payload),
            Tamper::Drop => {
                self.stats.adversary_dropped += 1;
                self.note(Fate::AdversaryDropped, d.from, d.to, &d.payload);
            }
            Tamper::Duplicate => {
                self.stats.adversary_duplicated += 1;
                self.transmit(d.from, d.to, d.payload.clone());
                self.transmit(d.from, d.to, d.payload);
            }
        }
    }

    fn transmit(&mut self, from: SocketAddrV4, to: SocketAddrV4, payload: Vec<u8>) {
        self.transmit_as(from, to, payload, false);
    }

    /// [`Sim::transmit`], of a datagram or (`unreachable`) of `from`'s
    /// host's report that it refused one of `to`'s: the same link fates.
    fn transmit_as(
        &mut self,
        from: SocketAddrV4,
        to: SocketAddrV4,
        payload: Vec<u8>,
        unreachable: bool,
    ) {
        if self.partitions.contains(&(from, to)) {
            self.stats.partitioned += 1;
            self.note(Fate::Partitioned, from, to, &payload);
            return;
        }
        let c = self
            .links
            .get(&(from, to))
            .copied()
            .unwrap_or(self.conditions);
        if self.chance(c.loss) {
            self.stats.lost += 1;
            self.note(Fate::Lost, from, to, &payload);
            return;
        }
        let copies = if self.chance(c.duplicate) {
            self.stats.duplicated += 1;
            self.note(Fate::Duplicated, from, to, &payload);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = c.delay + self.jitter(c.jitter);
            if self.chance(c.reorder) {
                self.stats.reordered += 1;
                delay += c.reorder_delay;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let copy = InFlight {
                from,
                to,
                payload: payload.clone(),
                unreachable,
            };
            self.in_flight.insert((self.now + delay, seq), copy);
        }
    }

    /// When the next thing happens: a delivery or a node's timer.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let delivery = self.in_flight.keys().next().map(|&(at, _)| at);
        let timer = self
            .nodes
            .iter()
            .filter_map(|n| n.node.poll_timeout())
            .min();
        [delivery, timer].into_iter().flatten().min()
    }

    /// Jump to the next wakeup if it is no later than `limit`, deliver what
    /// is due and run the timers that are due. Returns false (and leaves the
    /// time at `limit` or unchanged) if nothing happens by `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let Some(next) = self.next_wakeup() else {
            self.now = self.now.max(limit);
            return false;
        };
        if next > limit {
            self.now = self.now.max(limit);
            return false;
        }
        self.steps += 1;
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let d = entry.remove();
            match self.by_address.get(&d.to).copied() {
                // A dead process hears no reports either.
                Some(_) if self.killed.contains(&d.to) && d.unreachable => {}
                Some(_) if self.killed.contains(&d.to) => {
                    self.stats.refused += 1;
                    self.note(Fate::Refused, d.from, d.to, &d.payload);
                    // Quoted whole: Linux quotes the refused datagram up
                    // to 576 bytes of ICMP (RFC 1122 §3.2.2 asks for 8
                    // octets past the IP header), more than the L2TP
                    // header a LAC reads.
                    self.transmit_as(d.to, d.from, d.payload, true);
                }
                Some(i) if d.unreachable => {
                    self.nodes[i]
                        .node
                        .handle_unreachable(now, SocketAddr::V4(d.from), &d.payload);
                }
                Some(i) => {
                    self.stats.delivered += 1;
                    self.note(Fate::Delivered, d.from, d.to, &d.payload);
                    self.nodes[i]
                        .node
                        .handle_datagram(now, SocketAddr::V4(d.from), &d.payload);
                }
                None => {
                    self.stats.undeliverable += 1;
                    self.note(Fate::Undeliverable, d.from, d.to, &d.payload);
                }
            }
        }
        for n in &mut self.nodes {
            if n.node.poll_timeout().is_some_and(|t| t <= now) {
                n.node.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Run until `done` holds (checked after every step) or until `deadline`,
    /// whichever comes first. Returns whether `done` held.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<bool, StepLimit> {
        let start = self.steps;
        loop {
            self.flush();
            if done(self) {
                return Ok(true);
            }
            if !self.step(deadline) {
                return Ok(done(self));
            }
            if self.steps - start > self.max_steps {
                return Err(StepLimit {
                    steps: self.steps - start,
                    now: self.now,
                });
            }
        }
    }

    /// Run until `deadline`, whatever happens.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), StepLimit> {
        let deadline = self.now + duration;
        self.run_until(deadline, |_| false).map(|_| ())
    }
}

//! The LAC node's HA in simulation (DESIGN.md §3, docs/ha-protocol.md
//! §5.4-5.6): a `lac::Node` with PPPoE subscribers (a discovery client and
//! a PPP client link each, frames in memory) and two peered HA `lns::Node`s
//! on a simulated network with 1 ms links. Every subscriber sends a
//! numbered IPv4 packet upstream every 10 ms through the node's slow path,
//! and a "core" sends one downstream to whichever LNS announced the
//! subscriber's address last (the gratuitous ARP of an adoption).
//!
//! Each scenario asserts: no session lost (no PADT, no SessionDown), no LCP
//! or IPCP renegotiation seen by the subscribers (no Configure-Request after
//! up), no upstream packet delivered by both LNSs, and the upstream packets
//! of each subscriber delivered in order (held frames flushed in order).

#![cfg(test)]

use core::cell::RefCell;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::ha::message::{HaMessage, SwitchoverRequest};
use controlplane::l2tp::{LnsPeer, SessionHandle, TunnelState};
use controlplane::lac::{self, HaPolicy, Mode, SubscriberKey, SwitchoverType};
use controlplane::lns;
use controlplane::ppp::AuthMethod;
use controlplane::sim::{self, LinkConditions, NodeId, Sim};
use controlplane::time::Instant;
use dataplane::wire::l2tp as l2tp_wire;
use dataplane::wire::{ppp as ppp_wire, ppp_cp};

#[path = "support/ha_net.rs"]
mod ha_net;
#[path = "support/lac_parties.rs"]
mod lac_parties;
#[path = "support/pppoe_subscribers.rs"]
mod pppoe_subscribers;

use ha_net::{rng, LAC, LNS1, LNS2};
use lac_parties::{PartyEvent, Scheduled};
use pppoe_subscribers::{session_frame, subscriber_ppp, Cpe, SessionWatch, Subscribers};

const PEER_SECRET: &[u8] = b"lns1-lns2";
/// Subscribers per scenario.
const N: usize = 24;
/// Traffic: one packet each way per subscriber this often.
const TICK: Duration = Duration::from_millis(10);
/// Marks our test packets (after a 20-byte IPv4 header).
const MARK: &[u8; 4] = b"HAT!";

/// A PPP IPv4 frame (Protocol field first) carrying `id` and `seq`.
fn ipv4_frame(address_control: bool, dst: Ipv4Addr, id: u16, seq: u32) -> Vec<u8> {
    let mut f = Vec::new();
    if address_control {
        f.extend_from_slice(&[0xff, 0x03]);
    }
    f.extend_from_slice(&[0x00, 0x21]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&34u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[16..20].copy_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(MARK);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f
}

/// `(id, seq, destination)` of one of our IPv4 frames (with or without
/// Address and Control).
fn read_ipv4_frame(ppp: &[u8]) -> Option<(u16, u32, Ipv4Addr)> {
    let ppp = ppp.strip_prefix(&[0xff, 0x03]).unwrap_or(ppp);
    let ip = ppp.strip_prefix(&[0x00, 0x21])?;
    let rest = ip.get(20..)?.strip_prefix(MARK)?;
    let id = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
    let seq = u32::from_be_bytes(rest.get(2..6)?.try_into().ok()?);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Some((id, seq, dst))
}

// --- the core and what the LNSs forward ---------------------------------------

/// What both LNSs share in the test: who owns each subscriber address
/// downstream, and every upstream packet an LNS took in.
#[derive(Default)]
struct Core {
    traffic: bool,
    /// Address → (LNS index, its session): the last to announce it.
    owner: HashMap<Ipv4Addr, (usize, SessionHandle)>,
    /// Downstream packets sent per address.
    down_sent: HashMap<Ipv4Addr, u32>,
    /// Upstream packets taken in: (LNS index, subscriber, seq, when).
    up_seen: Vec<(usize, u16, u32, Instant)>,
}

/// An LNS node with the test's view of its forwarding.
struct LnsBox {
    node: lns::Node,
    index: usize,
    core: Rc<RefCell<Core>>,
    next_tick: Instant,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl LnsBox {
    /// An upstream data message the node takes as its session's (an
    /// established session with those ids): forwarded.
    fn observe(&mut self, now: Instant, payload: &[u8]) {
        let Ok(packet) = l2tp_wire::Packet::new_checked(payload) else {
            return;
        };
        if packet.is_control() {
            return;
        }
        let Some((id, seq, _)) = read_ipv4_frame(packet.payload()) else {
            return;
        };
        let Some(session) = self
            .node
            .session_by_ids(packet.tunnel_id(), packet.session_id())
        else {
            return;
        };
        if self.node.session_address(session).is_none() {
            return;
        }
        self.core
            .borrow_mut()
            .up_seen
            .push((self.index, id, seq, now));
    }

    fn send_downstream(&mut self) {
        let mut core = self.core.borrow_mut();
        if !core.traffic {
            return;
        }
        let mut mine: Vec<(Ipv4Addr, SessionHandle)> = core
            .owner
            .iter()
            .filter(|(_, (i, _))| *i == self.index)
            .map(|(a, (_, s))| (*a, *s))
            .collect();
        mine.sort();
        for (address, session) in mine {
            let seq = core.down_sent.get(&address).copied().unwrap_or(0) + 1;
            let frame = ipv4_frame(true, address, 0, seq);
            if let Ok(t) = self.node.endpoint_mut().send_data(session, &frame) {
                core.down_sent.insert(address, seq);
                self.transmits
                    .push_back((SocketAddr::V4(t.remote), t.payload));
            }
        }
    }
}

impl sim::Node for LnsBox {
    type Event = lns::Event;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        if from == SocketAddr::V4(LAC) {
            self.observe(now, payload);
        }
        sim::Node::handle_datagram(&mut self.node, now, from, payload);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick <= now {
            self.send_downstream();
            self.next_tick = now + TICK;
        }
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            sim::Node::handle_timeout(&mut self.node, now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.node.poll_timeout(), Some(self.next_tick)]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((to, payload)) = self.transmits.pop_front() {
            buf.clear();
            buf.extend_from_slice(&payload);
            return Some(to);
        }
        sim::Node::poll_transmit(&mut self.node, now, buf)
    }

    fn poll_event(&mut self) -> Option<lns::Event> {
        let event = sim::Node::poll_event(&mut self.node)?;
        let mut core = self.core.borrow_mut();
        match &event {
            // The gratuitous ARP of a new or adopted session draws the
            // address's downstream here.
            lns::Event::SessionEstablished(s) => {
                core.owner.insert(s.address, (self.index, s.session));
            }
            lns::Event::SessionDown(d) => {
                if let Some(a) = d.address {
                    if core.owner.get(&a) == Some(&(self.index, d.session)) {
                        core.owner.remove(&a);
                    }
                }
            }
            _ => {}
        }
        Some(event)
    }
}

// --- the LAC and its subscribers ----------------------------------------------

/// What a subscriber saw of its session and its test traffic.
#[derive(Default)]
struct Traffic {
    /// LCP or IPCP Configure-Requests received after PPP was up.
    configure_requests_after_up: usize,
    /// LCP Terminate-Requests received.
    terminate_requests: usize,
    /// Upstream packets sent.
    up_sent: u32,
    /// Downstream packets received (their seq), in order of arrival.
    down_seen: Vec<u32>,
}

impl SessionWatch for Traffic {
    fn session_frame(cpe: &mut Cpe<Traffic>, _session_id: u16, ppp: &[u8]) -> bool {
        if let Some((_, seq, _)) = read_ipv4_frame(ppp) {
            cpe.record.down_seen.push(seq);
            return false;
        }
        if cpe.up.is_some() && configure_request(ppp).is_some() {
            cpe.record.configure_requests_after_up += 1;
        }
        if terminate_request(ppp) {
            cpe.record.terminate_requests += 1;
        }
        true
    }
}

impl Cpe<Traffic> {
    fn address(&self) -> Option<Ipv4Addr> {
        self.up.as_ref().and_then(|s| s.ipcp).and_then(|r| r.local)
    }

    fn is_up(&self) -> bool {
        self.up.is_some() && self.down.is_none() && !self.pppoe_down
    }
}

struct Site {
    lac: lac::Node,
    subscribers: Subscribers<Traffic>,
    /// Answered calls and when the "fast path" connects them.
    answered: Scheduled<SessionHandle>,
    /// Planned moves whose new call is up, and when the "fast path" has
    /// switched to it and lets the old call go (`lac::Node::release_moved`).
    switched: Scheduled<SubscriberKey>,
    /// The "fast path" calls `release_moved` (else the node releases by
    /// itself after `defer_connect`).
    release_on_switch: bool,
    /// `release_moved` calls that released an old call.
    released_by_glue: usize,
    now: Instant,
    traffic: bool,
    next_tick: Instant,
}

fn configure_request(ppp: &[u8]) -> Option<ppp_wire::Protocol> {
    let p = ppp_wire::Packet::new_checked(ppp).ok()?;
    let protocol = p.protocol();
    if !matches!(protocol, ppp_wire::Protocol::Lcp | ppp_wire::Protocol::Ipcp) {
        return None;
    }
    let cp = ppp_cp::Packet::new_checked(p.payload()).ok()?;
    (cp.code() == ppp_cp::Code::ConfigureRequest).then_some(protocol)
}

fn terminate_request(ppp: &[u8]) -> bool {
    ppp_wire::Packet::new_checked(ppp).is_ok_and(|p| {
        p.protocol() == ppp_wire::Protocol::Lcp
            && ppp_cp::Packet::new_checked(p.payload())
                .is_ok_and(|cp| cp.code() == ppp_cp::Code::TerminateRequest)
    })
}

impl Site {
    fn add_cpe(&mut self, now: Instant, index: usize) {
        let mut ppp = subscriber_ppp(index, AuthMethod::ChapMd5);
        // Keepalives during the switchover: the echoes held at the LAC
        // must be answered by the new LNS with the same magic number.
        ppp.lcp.echo_interval = Some(Duration::from_millis(250));
        ppp.lcp.echo_failures = 4;
        self.subscribers.add(now, index, ppp);
        self.shuttle(now);
    }

    fn shuttle(&mut self, now: Instant) {
        self.subscribers.shuttle(&mut self.lac, now);
    }

    /// One numbered packet upstream from every subscriber that is up.
    fn send_traffic(&mut self, now: Instant) {
        for (i, cpe) in self.subscribers.cpes.iter_mut().enumerate() {
            if !cpe.is_up() {
                continue;
            }
            let (Some((ac_mac, session_id)), Some(_)) = (cpe.session, cpe.address()) else {
                continue;
            };
            cpe.record.up_sent += 1;
            let ppp = ipv4_frame(
                false,
                Ipv4Addr::new(198, 51, 100, 1),
                i as u16,
                cpe.record.up_sent,
            );
            let frame = session_frame(cpe.mac, ac_mac, session_id, &ppp);
            self.lac.handle_access_frame(now, &frame);
        }
    }
}

impl sim::Node for Site {
    type Event = lac::Event;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.now = now;
        sim::Node::handle_datagram(&mut self.lac, now, from, payload);
        self.shuttle(now);
    }

    fn handle_unreachable(&mut self, now: Instant, remote: SocketAddr, refused: &[u8]) {
        self.now = now;
        sim::Node::handle_unreachable(&mut self.lac, now, remote, refused);
        self.shuttle(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for session in self.answered.take_due(now) {
            self.lac.connect_call(now, session);
        }
        for subscriber in self.switched.take_due(now) {
            if self.lac.release_moved(now, subscriber) {
                self.released_by_glue += 1;
            }
        }
        if self.traffic && self.next_tick <= now {
            self.send_traffic(now);
            self.next_tick = now + TICK;
        }
        if self.lac.poll_timeout().is_some_and(|t| t <= now) {
            self.lac.handle_timeout(now);
        }
        self.subscribers.handle_timeout(now);
        self.shuttle(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let tick = self.traffic.then_some(self.next_tick);
        [
            self.subscribers.poll_timeout(),
            self.lac.poll_timeout(),
            tick,
            self.answered.next_due(),
            self.switched.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        sim::Node::poll_transmit(&mut self.lac, now, buf)
    }

    fn poll_event(&mut self) -> Option<lac::Event> {
        let event = sim::Node::poll_event(&mut self.lac)?;
        if let lac::Event::CallAnswered(call) = &event {
            // A fast path programs the call in about a millisecond.
            self.answered
                .push(call.session, self.now + Duration::from_millis(1));
        }
        if let lac::Event::SessionUp(up) = &event {
            if self.release_on_switch && up.moved_from.is_some_and(|m| m.make_before_break) {
                // The workers switch to the new call within a millisecond.
                self.switched
                    .push(up.subscriber, self.now + Duration::from_millis(1));
            }
        }
        Some(event)
    }
}

// --- the world ------------------------------------------------------------------

/// The LNSs and the LAC site.
type Party = lac_parties::Party<LnsBox, Site>;

fn lns_node(
    name: &str,
    us: SocketAddrV4,
    peer: SocketAddrV4,
    seed: u64,
    configure: impl FnOnce(&mut lns::Config),
) -> lns::Node {
    let mut config = lns::Config::new(name, Ipv4Addr::new(100, 64, 0, 1));
    config.l2tp.ack_delay = Duration::from_millis(10);
    config.l2tp.receive_window = 256;
    config.ppp.lcp.echo_interval = Some(Duration::from_millis(500));
    config.ha = Some(lns::HaConfig::new(
        *us.ip(),
        vec![LnsPeer {
            address: *peer.ip(),
            secret: PEER_SECRET.to_vec(),
        }],
    ));
    configure(&mut config);
    let users: String = (0..1100).map(|i| format!("sub{i} lab\n")).collect();
    // Both LNSs draw from the same range: the peer holds the primary's
    // addresses as framed ones and never hands them out again.
    lns::Node::new(
        config,
        Authenticator::local(Users::parse(&users, "users").unwrap()),
        AddressPool::parse(&["100.64.0.0/21"]).unwrap(),
        rng(seed),
    )
    .unwrap()
}

fn lac_config(policy: HaPolicy, hello: Duration, dead: Duration) -> lac::Config {
    let mut config = lac_parties::site_config();
    // Fast failure detection (DESIGN.md §1 item 4) as lacd sets it up:
    // Hello every 100 ms, dead after 300 ms of silence.
    config.l2tp.ack_delay = Duration::from_millis(10);
    config.detect_failure_within(hello, dead);
    config.l2tp.receive_window = 256;
    config.defer_connect = Some(Duration::from_millis(200));
    // The lacd default: a host that refuses our port gets 30 ms to answer.
    config.l2tp.unreachable_timeout = Some(Duration::from_millis(30));
    config.ha = Some(policy);
    config
}

struct Lab {
    sim: Sim<Party>,
    site: NodeId,
    lns: [NodeId; 2],
    core: Rc<RefCell<Core>>,
}

impl Lab {
    /// Hello every 100 ms, dead after 300 ms of silence.
    fn new(policy: HaPolicy) -> Lab {
        Lab::with_timers(
            policy,
            Duration::from_millis(100),
            Duration::from_millis(300),
        )
    }

    fn with_timers(policy: HaPolicy, hello: Duration, dead: Duration) -> Lab {
        Lab::build(lac_config(policy, hello, dead))
    }

    fn build(config: lac::Config) -> Lab {
        Lab::build_with(config, |_| {})
    }

    /// With LNS1's configuration changed by `lns1`.
    fn build_with(config: lac::Config, lns1: impl FnOnce(&mut lns::Config)) -> Lab {
        let mut sim = Sim::new(rng(99), LinkConditions::delay(Duration::from_millis(1)));
        sim.max_steps = 20_000_000;
        let core = Rc::new(RefCell::new(Core::default()));
        let boxed = |index, node| {
            Party::Lns(Box::new(LnsBox {
                node,
                index,
                core: core.clone(),
                next_tick: Instant::ZERO,
                transmits: VecDeque::new(),
            }))
        };
        let lns1 = sim.add_node(LNS1, boxed(0, lns_node("lns1", LNS1, LNS2, 1, lns1)));
        let lns2 = sim.add_node(LNS2, boxed(1, lns_node("lns2", LNS2, LNS1, 2, |_| {})));
        let site = Site {
            lac: lac::Node::new(config, Instant::ZERO, rng(3)).unwrap(),
            subscribers: Subscribers::new(4),
            answered: Scheduled::new(),
            switched: Scheduled::new(),
            release_on_switch: true,
            released_by_glue: 0,
            now: Instant::ZERO,
            traffic: false,
            next_tick: Instant::ZERO,
        };
        let site = sim.add_node(LAC, Party::Site(Box::new(site)));
        Lab {
            sim,
            site,
            lns: [lns1, lns2],
            core,
        }
    }

    fn site(&self) -> &Site {
        self.sim.node(self.site).site()
    }

    fn site_mut(&mut self) -> &mut Site {
        self.sim.node_mut(self.site).site_mut()
    }

    fn lns(&self, i: usize) -> &lns::Node {
        &self.sim.node(self.lns[i]).lns().node
    }

    fn lns_mut(&mut self, i: usize) -> &mut lns::Node {
        &mut self.sim.node_mut(self.lns[i]).lns_mut().node
    }

    fn lac(&self) -> &lac::Node {
        &self.site().lac
    }

    fn lac_events(&self) -> Vec<&lac::Event> {
        lac_parties::lac_events(&self.sim, self.site)
    }

    fn lns_events(&self, i: usize) -> Vec<&lns::Event> {
        lac_parties::lns_events(&self.sim, self.lns[i])
    }

    fn run_for(&mut self, d: Duration) {
        self.sim.run_for(d).unwrap();
    }

    #[track_caller]
    fn run_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Lab) -> bool) {
        let deadline = self.sim.now() + limit;
        loop {
            if done(self) {
                return;
            }
            assert!(
                self.sim.now() < deadline,
                "{what}: not after {limit:?} (LAC {:?})",
                self.lac().stats()
            );
            let step_to = (self.sim.now() + Duration::from_millis(1)).min(deadline);
            self.sim.run_until(step_to, |_| false).unwrap();
        }
    }

    fn add_subscribers(&mut self, n: usize) {
        let now = self.sim.now();
        let site = self.site_mut();
        let first = site.subscribers.cpes.len();
        for i in first..first + n {
            site.add_cpe(now, i);
        }
    }

    fn up_at(&self, i: usize) -> usize {
        self.lns(i).established_count()
    }

    /// `n` subscribers up at LNS1, offloaded to LNS2, traffic flowing.
    fn start(&mut self, n: usize) {
        self.add_subscribers(n);
        self.run_until(Duration::from_secs(10), "every subscriber up", |l| {
            l.site()
                .subscribers
                .cpes
                .iter()
                .filter(|c| c.is_up())
                .count()
                == n
                && l.lac().up_count() == n
                && l.up_at(0) == n
        });
        self.run_until(Duration::from_secs(5), "offload in sync", |l| {
            l.lns(0).offload_in_sync() && l.stored_at_lns2() == n
        });
        self.set_traffic(true);
        self.run_for(Duration::from_millis(200));
    }

    /// The sessions LNS2's offload store holds.
    fn stored_at_lns2(&self) -> usize {
        self.lns(1)
            .offload_store()
            .map_or(0, |s| s.tunnels().map(|t| t.sessions.len()).sum())
    }

    /// The LNS1-LNS2 link (cut while the subscribers came up) comes back:
    /// run until LNS2's bulk sync has stored some of the sessions.
    #[track_caller]
    fn heal_until_bulk_sync_under_way(&mut self) {
        self.sim.heal(LNS1, LNS2);
        self.run_until(Duration::from_secs(5), "bulk sync under way", |l| {
            l.stored_at_lns2() > 0
        });
    }

    fn set_traffic(&mut self, on: bool) {
        self.core.borrow_mut().traffic = on;
        let now = self.sim.now();
        let site = self.site_mut();
        site.traffic = on;
        site.next_tick = now;
    }

    /// Stop the traffic and let what is in flight arrive.
    fn drain(&mut self) {
        self.set_traffic(false);
        self.run_for(Duration::from_millis(100));
    }

    fn kill_lns1(&mut self) {
        ha_net::kill_lns1(&mut self.sim);
    }

    /// LNS1 dies; run until the LAC has recovered all `n` calls at a peer
    /// (`what`, within `limit`). How long that took after the cut.
    #[track_caller]
    fn kill_lns1_and_recover(&mut self, limit: Duration, what: &str, n: usize) -> Duration {
        self.kill_lns1();
        let killed = self.sim.now();
        self.run_until(limit, what, |l| l.moved_ups(false) == n);
        self.sim.now().saturating_duration_since(killed)
    }

    /// LNS1 came back: with traffic on, run until it has dropped its stale
    /// sessions, then `settle` more; drain and check that all `N` stayed at
    /// LNS2 and no upstream was lost.
    #[track_caller]
    fn run_until_lns1_fenced(&mut self, settle: Duration) {
        self.set_traffic(true);
        self.run_until(
            Duration::from_secs(5),
            "LNS1 drops its stale sessions",
            |l| l.up_at(0) == 0,
        );
        self.run_for(settle);
        self.drain();
        let report = self.check(N);
        assert_eq!(self.up_at(1), N);
        assert_eq!(report.up_lost, 0, "lost after LNS1 came back: {report:?}");
    }

    /// Let the traffic run on for 300 ms, drain it and check the `n`
    /// subscribers.
    #[track_caller]
    fn settle_and_check(&mut self, n: usize) -> Report {
        self.run_for(Duration::from_millis(300));
        self.drain();
        self.check(n)
    }

    fn revive_lns1(&mut self) {
        ha_net::revive_lns1(&mut self.sim);
    }

    /// The operator asks LNS1 for a switchover (STPLRQ to the LAC with
    /// LNS2 as the peer).
    fn switchover(&mut self, kind: SwitchoverType, sessions: &[u16]) {
        let now = self.sim.now();
        let sent = self.lns_mut(0).ha_switchover(now, kind, sessions).unwrap();
        assert_eq!(sent, 1);
    }

    /// An STPLRQ from LNS1 built by hand (through its endpoint).
    fn stplrq(&mut self, kind: SwitchoverType, peers: Vec<Ipv4Addr>, sessions: Vec<u16>) {
        let now = self.sim.now();
        let lns = self.lns_mut(0);
        let tunnel = lns
            .endpoint()
            .tunnels()
            .find(|&t| lns.endpoint().tunnel_state(t) == Some(TunnelState::Established))
            .expect("LNS1 has a tunnel to the LAC");
        let message = HaMessage::SwitchoverRequest(SwitchoverRequest {
            peers,
            kind,
            sessions,
        })
        .to_control(false);
        lns.endpoint_mut()
            .send_ha_message(now, tunnel, None, message)
            .unwrap();
    }

    fn holding_events(&self) -> usize {
        self.lac_events()
            .iter()
            .filter(|e| matches!(e, lac::Event::Holding { .. }))
            .count()
    }

    fn released_events(&self) -> usize {
        self.lac_events()
            .iter()
            .filter(|e| matches!(e, lac::Event::SessionReleased { .. }))
            .count()
    }

    fn moved_ups(&self, make_before_break: bool) -> usize {
        self.lac_events()
            .iter()
            .filter(|e| {
                matches!(e, lac::Event::SessionUp(up)
                    if up.moved_from.is_some_and(|m| m.make_before_break == make_before_break))
            })
            .count()
    }

    /// Nobody lost their session or renegotiated, no session was forwarded
    /// by both LNSs in the same period (a subscriber's upstream changes LNS
    /// only when its call moved, never back and forth), every subscriber's
    /// upstream arrived in order. A packet may arrive twice only as a
    /// failure switchover's replay: once through the dead LNS before it
    /// died, once through the peer (never twice through the same LNS, and
    /// no more than the LAC replayed). Returns the upstream packets lost,
    /// the duplicates and the longest upstream gap (between packets
    /// arriving for the first time).
    #[track_caller]
    fn check(&self, n: usize) -> Report {
        let site = self.site();
        assert_eq!(site.subscribers.cpes.len(), n);
        for (i, cpe) in site.subscribers.cpes.iter().enumerate() {
            assert!(
                cpe.is_up(),
                "subscriber {i} lost its session: {:?}",
                cpe.down
            );
            assert!(!cpe.renegotiated, "subscriber {i} renegotiated");
            assert_eq!(
                cpe.record.configure_requests_after_up, 0,
                "subscriber {i} saw a Configure-Request after up"
            );
            assert_eq!(
                cpe.record.terminate_requests, 0,
                "subscriber {i} saw a Terminate-Request"
            );
        }
        assert_eq!(self.lac().subscriber_count(), n);
        assert_eq!(self.lac().up_count(), n);
        assert!(
            !self
                .lac_events()
                .iter()
                .any(|e| matches!(e, lac::Event::SessionDown(_))),
            "a session ended at the LAC"
        );
        let mut moves: HashMap<SubscriberKey, usize> = HashMap::new();
        for e in self.lac_events() {
            if let lac::Event::SessionUp(up) = e {
                if up.moved_from.is_some() {
                    *moves.entry(up.subscriber).or_default() += 1;
                }
            }
        }
        let core = self.core.borrow();
        let mut report = Report::default();
        let mut by_sub: HashMap<u16, Vec<(usize, u32, Instant)>> = HashMap::new();
        for &(lns, id, seq, at) in &core.up_seen {
            by_sub.entry(id).or_default().push((lns, seq, at));
        }
        for (i, cpe) in site.subscribers.cpes.iter().enumerate() {
            let seen = by_sub.remove(&(i as u16)).unwrap_or_default();
            // Packet → the LNS that delivered it first.
            let mut first: HashMap<u32, usize> = HashMap::new();
            let mut last = 0;
            let mut last_new_at: Option<Instant> = None;
            let mut switches = 0;
            for (k, &(lns, seq, at)) in seen.iter().enumerate() {
                if k > 0 && seen[k - 1].0 != lns {
                    switches += 1;
                }
                if let Some(&by) = first.get(&seq) {
                    assert_ne!(
                        by,
                        lns,
                        "subscriber {i}: packet {seq} forwarded twice by LNS{}",
                        lns + 1
                    );
                    report.up_duplicates += 1;
                    continue;
                }
                first.insert(seq, lns);
                assert!(
                    seq > last,
                    "subscriber {i}: packet {seq} after {last} (LNS{})",
                    lns + 1
                );
                last = seq;
                if let Some(before) = last_new_at {
                    report.longest_gap =
                        report.longest_gap.max(at.saturating_duration_since(before));
                }
                last_new_at = Some(at);
            }
            let moved = cpe.key().and_then(|k| moves.get(&k).copied()).unwrap_or(0);
            assert!(
                switches <= moved,
                "subscriber {i}: its upstream went from one LNS to the other {switches} times \
                 for {moved} moves (both LNSs forwarded it in the same period)"
            );
            report.up_sent += u64::from(cpe.record.up_sent);
            report.up_lost += u64::from(cpe.record.up_sent) - first.len() as u64;
            // Downstream: in order, and what was sent arrived.
            let mut last = 0;
            for &seq in &cpe.record.down_seen {
                assert!(seq > last, "subscriber {i}: downstream {seq} after {last}");
                last = seq;
            }
            let sent = cpe
                .address()
                .and_then(|a| core.down_sent.get(&a).copied())
                .unwrap_or(0);
            report.down_sent += u64::from(sent);
            report.down_lost += u64::from(sent) - cpe.record.down_seen.len() as u64;
        }
        assert!(
            report.up_duplicates <= self.lac().stats().replayed_frames,
            "{} duplicates but {} frames replayed",
            report.up_duplicates,
            self.lac().stats().replayed_frames
        );
        report
    }
}

#[derive(Debug, Default)]
struct Report {
    up_sent: u64,
    up_lost: u64,
    /// Upstream packets that arrived twice (replayed after a failure).
    up_duplicates: u64,
    down_sent: u64,
    down_lost: u64,
    longest_gap: Duration,
}

fn policy() -> HaPolicy {
    HaPolicy::default()
}

// --- failure switchover ---------------------------------------------------------

#[test]
fn a_dead_primary_s_sessions_are_recovered_at_its_peer_and_fenced_when_it_returns() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    let lns1_tunnel = lab.lac().tunnels()[0].tunnel_ids.0;

    let echo_replies = |lab: &Lab| -> u64 {
        lab.site()
            .subscribers
            .cpes
            .iter()
            .map(|c| c.link.as_ref().unwrap().stats().echo_replies_received)
            .sum()
    };

    // (a) LNS1 dies: the LAC hears nothing for 300 ms, holds every
    // subscriber's upstream, recovers the calls at LNS2 and flushes,
    // starting with a replay of what it sent since LNS1 was last heard
    // from (C6): nothing is lost, a few packets arrive twice.
    let recovered_after =
        lab.kill_lns1_and_recover(Duration::from_secs(3), "every call recovered", N);
    let replies_at_recovery = echo_replies(&lab);
    lab.run_for(Duration::from_millis(500));
    // The subscribers' LCP echoes (held with their data) are answered by
    // LNS2 with LNS1's magic number: the links never noticed.
    assert!(echo_replies(&lab) >= replies_at_recovery + N as u64);
    lab.drain();
    let report = lab.check(N);
    assert_eq!(lab.holding_events(), N);
    assert!(lab.lac_events().iter().all(|e| match e {
        lac::Event::Holding {
            local_tunnel_id,
            replay,
            ..
        } => {
            // 300 ms of silence (LNS1's downstream kept it heard until the
            // cut) + the 20 ms margin, less than the 500 ms window.
            *local_tunnel_id == lns1_tunnel
                && *replay >= Duration::from_millis(320)
                && *replay <= Duration::from_millis(340)
        }
        _ => true,
    }));
    let stats = lab.lac().stats();
    assert_eq!(stats.recoveries_started, N as u64);
    assert_eq!(stats.recoveries_done, N as u64);
    assert_eq!(stats.recoveries_failed, 0);
    assert_eq!(stats.hold_overflow, 0);
    assert_eq!(lab.up_at(1), N);
    assert_eq!(lab.lns(1).ha_stats().unwrap().sessions_adopted, N as u64);
    assert!(lab.lac().sessions().iter().all(|s| s.lns == Some(LNS2)));
    let status = lab.lac().ha_status();
    let lns1 = status.lns.iter().find(|s| s.lns == LNS1).unwrap();
    assert_eq!(lns1.peers, vec![*LNS2.ip()]);
    assert_eq!(lns1.recoveries_done, N as u64);
    assert_eq!((lns1.holding, lns1.moving), (0, 0));
    println!(
        "kill primary: {N} sessions recovered {} ms after the cut; longest upstream gap {} ms; \
         upstream lost {} of {}, {} arrived twice ({} replayed by the LAC)",
        recovered_after.as_millis(),
        report.longest_gap.as_millis(),
        report.up_lost,
        report.up_sent,
        report.up_duplicates,
        stats.replayed_frames
    );
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert!(report.longest_gap < Duration::from_millis(600));

    // (d) LNS1 comes back: its stale sessions are fenced silently (the
    // subscribers hear nothing) and everything stays at LNS2.
    let seen_before = lab.core.borrow().up_seen.len();
    lab.revive_lns1();
    lab.run_until_lns1_fenced(Duration::from_millis(500));
    let causes: Vec<_> = lab
        .lns_events(0)
        .into_iter()
        .filter_map(|e| match e {
            lns::Event::SessionDown(d) => Some(d.cause.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(causes.len(), N);
    assert!(
        lab.core.borrow().up_seen[seen_before..]
            .iter()
            .all(|(lns, ..)| *lns == 1),
        "LNS1 forwarded after it came back"
    );
    println!(
        "primary returns: its {N} stale sessions end ({:?}), none at the subscribers",
        causes[0]
    );
}

#[test]
fn a_killed_primary_is_found_from_its_host_s_port_unreachable_well_before_the_dead_interval() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    // kill -9 of lnsd: LNS1 goes quiet, and its host answers the LAC's next
    // datagram (upstream data, every 10 ms here) with port unreachable. The
    // LAC probes with a Hello, which is refused too, quoting the Hello: the
    // tunnel is down a round trip later, without waiting out the 30 ms
    // probe, let alone the 300 ms of silence.
    lab.sim.kill(LNS1);
    let killed = lab.sim.now();
    lab.run_until(Duration::from_secs(3), "every call recovered", |l| {
        l.moved_ups(false) == N
    });
    let recovered_after = lab.sim.now().saturating_duration_since(killed);
    let down_after = lab
        .sim
        .events(lab.site)
        .iter()
        .find_map(|(at, e)| match e {
            PartyEvent::Lac(lac::Event::TunnelDown { lns, .. }) if *lns == LNS1 => Some(*at),
            _ => None,
        })
        .expect("the tunnel to LNS1 went down")
        .saturating_duration_since(killed);
    let report = lab.settle_and_check(N);
    println!(
        "kill -9 primary: tunnel down {} ms and {N} sessions recovered {} ms after the kill \
         ({} datagrams refused); longest upstream gap {} ms; upstream lost {} of {}",
        down_after.as_millis(),
        recovered_after.as_millis(),
        lab.sim.stats().refused,
        report.longest_gap.as_millis(),
        report.up_lost,
        report.up_sent,
    );
    assert!(lab.sim.stats().refused > 0);
    // The next datagram (10 ms), its report and the refused probe (3 ms of
    // links): under the 30 ms a silent probe would take.
    assert!(down_after < Duration::from_millis(20), "{down_after:?}");
    // Dead interval alone: at least 200 ms. Then the recovery's round trips.
    assert!(
        recovered_after < Duration::from_millis(80),
        "{recovered_after:?}"
    );
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert!(
        report.longest_gap < Duration::from_millis(150),
        "{report:?}"
    );
    assert_eq!(lab.lac().stats().recoveries_done, N as u64);
    assert_eq!(lab.up_at(1), N);

    // The lnsd comes back with its state (as after a partition): fenced
    // silently, the sessions stay at LNS2.
    lab.sim.revive(LNS1);
    lab.run_until_lns1_fenced(Duration::from_millis(300));
}

/// The Message Type of an L2TP control message (RFC 2661 §3.1, §4.4.1:
/// the first AVP, right after a header with L and S set), read raw: the
/// adversary sees what a hidden-AVP tunnel's parser would refuse.
fn raw_message_type(payload: &[u8]) -> Option<u16> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*payload.get(i)?, *payload.get(i + 1)?]));
    let control = payload.first()? & 0x80 != 0;
    (control && u16_at(14)? == 0 && u16_at(16)? == 0).then_some(())?;
    u16_at(18)
}

#[test]
fn a_lost_first_message_of_each_kind_toward_the_peer_costs_no_session() {
    // The lab once lost the first message toward LNS2 to a stale ICMP
    // error on the LAC's socket. One SCCRQ, one ICRQ and one ICCN of the
    // recovery are dropped here: each is retransmitted within the dead
    // interval, the peer stays heard, and every call is recovered.
    let mut lab = Lab::new(policy());
    lab.start(N);
    let dropped = Rc::new(RefCell::new(Vec::new()));
    let seen = dropped.clone();
    lab.sim.set_adversary(Some(Box::new(move |_, d| {
        let kind = raw_message_type(&d.payload);
        // SCCRQ 1, ICRQ 10, ICCN 12 (RFC 2661 §3.2).
        let first = matches!(kind, Some(1 | 10 | 12)) && !seen.borrow().contains(&kind);
        if d.from == LAC && d.to == LNS2 && first {
            seen.borrow_mut().push(kind);
            return sim::Tamper::Drop;
        }
        sim::Tamper::Pass
    })));
    let recovered_after =
        lab.kill_lns1_and_recover(Duration::from_secs(5), "every call recovered", N);
    assert_eq!(*dropped.borrow(), [Some(1), Some(10), Some(12)]);
    let report = lab.settle_and_check(N);
    let stats = lab.lac().stats();
    assert_eq!(stats.recoveries_done, N as u64);
    assert_eq!(stats.recoveries_failed, 0);
    assert_eq!(report.up_lost, 0, "{report:?}");
    println!(
        "three lost recovery messages: {N} sessions recovered {} ms after the cut, longest gap {} ms",
        recovered_after.as_millis(),
        report.longest_gap.as_millis()
    );
}

#[test]
fn a_hello_lost_on_a_quiet_tunnel_does_not_make_a_live_primary_dead() {
    // For half a second the LAC hears LNS1 only through the control
    // channel (LNS1's data toward it is lost: the subscribers' echo
    // replies, fewer than their failure limit), so it probes LNS1 with a
    // Hello, and that Hello is lost too. Its retransmission must come
    // before the 300 ms dead interval, or LNS1 counts as dead and every
    // session moves for one lost datagram.
    let mut lab = Lab::new(policy());
    lab.start(N);
    let until = lab.sim.now() + Duration::from_millis(500);
    let hellos_lost = Rc::new(RefCell::new(0));
    let seen = hellos_lost.clone();
    lab.sim.set_adversary(Some(Box::new(move |now, d| {
        if now >= until {
            return sim::Tamper::Pass;
        }
        let data = d.payload.first().is_some_and(|b| b & 0x80 == 0);
        if d.from == LNS1 && d.to == LAC && data {
            return sim::Tamper::Drop;
        }
        // Hello 6 (RFC 2661 §3.2).
        let hello = raw_message_type(&d.payload) == Some(6);
        if d.from == LAC && d.to == LNS1 && hello && *seen.borrow() == 0 {
            *seen.borrow_mut() += 1;
            return sim::Tamper::Drop;
        }
        sim::Tamper::Pass
    })));
    lab.run_for(Duration::from_secs(2));
    assert_eq!(*hellos_lost.borrow(), 1);
    assert_eq!(lab.holding_events(), 0, "LNS1 was taken for dead");
    assert_eq!(lab.lac().stats().recoveries_started, 0);
    assert_eq!(lab.up_at(0), N);
    lab.drain();
    let report = lab.check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
}

#[test]
fn a_forged_port_unreachable_for_a_live_primary_moves_nothing() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    let peer_tunnel = lab
        .lac()
        .tunnels()
        .iter()
        .find(|t| t.lns == LNS1)
        .expect("a tunnel to LNS1")
        .tunnel_ids
        .1;
    let session = lab.lac().sessions()[0].session_ids.expect("session up").1;
    let control = |tunnel: u16, ns: u16| {
        let mut quote = vec![0; 12];
        l2tp_wire::HeaderRepr::control(tunnel, 0, ns, 0)
            .emit(&mut quote, 0)
            .unwrap();
        quote
    };
    let mut data = vec![0; 6];
    l2tp_wire::HeaderRepr::data(peer_tunnel, session)
        .emit(&mut data, 0)
        .unwrap();
    // Anyone can forge ICMP, quoting anything an off-path forger can know
    // or guess: nothing, a data message of a real session, or a control
    // message of the tunnel with an Ns not in flight (the channel is idle
    // between rounds). Each only starts a probe, which LNS1 answers.
    let quotes = [Vec::new(), data, control(peer_tunnel, 0x8000)];
    let forge = |lab: &mut Lab, quote: &[u8]| {
        let now = lab.sim.now();
        let site = lab.site;
        sim::Node::handle_unreachable(lab.sim.node_mut(site), now, SocketAddr::V4(LNS1), quote);
    };
    for round in 0..6 {
        forge(&mut lab, &quotes[round % quotes.len()]);
        // While the probe is in flight, quotes of every Ns the LAC can
        // have used so far, under another tunnel's ID.
        for ns in 0..1024 {
            forge(&mut lab, &control(peer_tunnel ^ 0x5555, ns));
        }
        lab.run_for(Duration::from_millis(100));
    }
    let report = lab.settle_and_check(N);
    assert_eq!(lab.holding_events(), 0);
    assert_eq!(lab.lac().stats().recoveries_started, 0);
    assert_eq!(lab.up_at(0), N);
    assert_eq!((report.up_lost, report.down_lost), (0, 0), "{report:?}");
}

#[test]
fn a_lac_primary_partition_moves_the_sessions_and_the_primary_fences_itself() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    // (b) Only the LAC-LNS1 link fails; LNS1 and LNS2 still talk.
    lab.sim.partition(LAC, LNS1);
    let cut = lab.sim.now();
    lab.run_until(Duration::from_secs(3), "every call recovered", |l| {
        l.moved_ups(false) == N
    });
    let seen_at_recovery = lab.core.borrow().up_seen.len();
    // LNS2 offloads the adopted sessions back; LNS1 finds the higher
    // epochs and drops its copies silently.
    lab.run_until(Duration::from_secs(5), "LNS1 fenced", |l| l.up_at(0) == 0);
    let report = lab.settle_and_check(N);
    assert_eq!(lab.up_at(1), N);
    assert!(lab.lns(0).ha_stats().unwrap().sessions_fenced >= 1);
    assert!(
        lab.core.borrow().up_seen[seen_at_recovery..]
            .iter()
            .all(|(lns, ..)| *lns == 1),
        "LNS1 forwarded after the recovery"
    );
    assert!(
        !lab.core
            .borrow()
            .up_seen
            .iter()
            // What was on the wire at the cut (1 ms links) still arrives.
            .any(|(lns, _, _, at)| *lns == 0 && *at > cut + Duration::from_millis(1)),
        "LNS1 forwarded after the cut"
    );
    assert_eq!(report.up_lost, 0, "{report:?}");
    println!(
        "LAC-primary partition: longest upstream gap {} ms, upstream lost {} of {}, {} arrived twice",
        report.longest_gap.as_millis(),
        report.up_lost,
        report.up_sent,
        report.up_duplicates
    );
}

#[test]
fn an_lns_lns_partition_moves_nothing() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    // (c) Only LNS1-LNS2 fails: the LAC still reaches LNS1.
    lab.sim.partition(LNS1, LNS2);
    lab.run_for(Duration::from_secs(2));
    lab.sim.heal(LNS1, LNS2);
    lab.run_for(Duration::from_millis(500));
    lab.drain();
    let report = lab.check(N);
    assert_eq!(lab.holding_events(), 0);
    assert_eq!(lab.lac().stats().recoveries_started, 0);
    assert_eq!((lab.up_at(0), lab.up_at(1)), (N, 0));
    assert_eq!(report.up_lost, 0);
    assert_eq!(report.down_lost, 0);
    println!(
        "LNS-LNS partition: nothing moved; longest upstream gap {} ms",
        report.longest_gap.as_millis()
    );
}

#[test]
fn a_failure_during_the_peer_s_bulk_sync_recovers_what_was_offloaded_and_ends_the_rest() {
    let mut lab = Lab::new(policy());
    // The LNS-LNS link is down while the subscribers come up: LNS2 has
    // nothing of theirs.
    lab.sim.partition(LNS1, LNS2);
    lab.add_subscribers(N);
    lab.run_until(Duration::from_secs(10), "every subscriber up", |l| {
        l.lac().up_count() == N && l.up_at(0) == N
    });
    lab.set_traffic(true);
    // (g) The link comes back and LNS1 dies while the bulk sync runs.
    lab.heal_until_bulk_sync_under_way();
    lab.kill_lns1();
    let offloaded = lab.stored_at_lns2();
    lab.run_until(Duration::from_secs(5), "every subscriber settled", |l| {
        l.lac().stats().recoveries_done + l.lac().stats().recoveries_failed == N as u64
    });
    lab.run_for(Duration::from_millis(300));
    lab.drain();
    let stats = lab.lac().stats();
    let ended: Vec<_> = lab
        .lac_events()
        .into_iter()
        .filter_map(|e| match e {
            lac::Event::SessionDown(d) => Some(d.subscriber),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len() as u64, stats.recoveries_failed);
    assert_eq!(lab.lac().subscriber_count() as u64, stats.recoveries_done);
    for cpe in &lab.site().subscribers.cpes {
        let ended_here = cpe.key().is_some_and(|k| ended.contains(&k));
        if ended_here {
            // Ended cleanly: PADT, not left hanging.
            assert!(cpe.pppoe_down, "an ended subscriber got its PADT");
        } else {
            assert!(cpe.is_up() && !cpe.renegotiated);
            assert_eq!(cpe.record.configure_requests_after_up, 0);
        }
    }
    println!(
        "failure during bulk sync: {offloaded} of {N} offloaded when LNS1 died; {} recovered, {} ended (PADT)",
        stats.recoveries_done, stats.recoveries_failed
    );
}

// --- load switchover --------------------------------------------------------------

#[test]
fn a_switchover_of_all_sessions_moves_every_call_without_loss() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    // (e) STPLRQ All: make-before-break.
    lab.switchover(SwitchoverType::All, &[]);
    let asked = lab.sim.now();
    lab.run_until(Duration::from_secs(3), "every call moved", |l| {
        l.released_events() == N
    });
    let moved_after = lab.sim.now().saturating_duration_since(asked);
    lab.run_until(Duration::from_secs(3), "LNS1 released them", |l| {
        l.up_at(0) == 0
    });
    let report = lab.settle_and_check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert_eq!(report.down_lost, 0, "{report:?}");
    assert_eq!(lab.moved_ups(true), N);
    assert_eq!(lab.holding_events(), 0);
    assert_eq!(lab.up_at(1), N);
    let stats = lab.lac().stats();
    assert_eq!(
        (
            stats.switchover_requests,
            stats.switchovers_granted,
            stats.sessions_moved
        ),
        (1, 1, N as u64)
    );
    assert!(lab.lac_events().iter().any(|e| matches!(
        e,
        lac::Event::SwitchoverRequested {
            granted: true,
            sessions,
            kind: SwitchoverType::All,
            ..
        } if *sessions == N
    )));
    assert_eq!(lab.lns(0).ha_stats().unwrap().sessions_moved, N as u64);
    // "All" steers new calls away too.
    assert!(lab
        .lac()
        .ha_status()
        .lns
        .iter()
        .any(|s| s.lns == LNS1 && s.steered_until.is_some()));
    lab.add_subscribers(1);
    lab.run_until(Duration::from_secs(5), "the new subscriber up", |l| {
        l.lac().up_count() == N + 1 && l.up_at(1) == N + 1 && l.site().subscribers.cpes[N].is_up()
    });
    let key = lab.site().subscribers.cpes[N].key().unwrap();
    assert_eq!(lab.lac().session(key).unwrap().lns, Some(LNS2));
    println!(
        "switchover all: {N} calls moved in {} ms; longest upstream gap {} ms; lost upstream {} of {}, downstream {} of {}",
        moved_after.as_millis(),
        report.longest_gap.as_millis(),
        report.up_lost,
        report.up_sent,
        report.down_lost,
        report.down_sent
    );
}

/// For each planned move, how long after the new call's SessionUp the old
/// call was released (SessionReleased), longest first.
fn release_delays(lab: &Lab) -> Vec<Duration> {
    let mut up_at: HashMap<SubscriberKey, Instant> = HashMap::new();
    let mut delays = Vec::new();
    for (at, e) in lab.sim.events(lab.site) {
        match e {
            PartyEvent::Lac(lac::Event::SessionUp(up))
                if up.moved_from.is_some_and(|m| m.make_before_break) =>
            {
                up_at.insert(up.subscriber, *at);
            }
            PartyEvent::Lac(lac::Event::SessionReleased { subscriber, .. }) => {
                let since = up_at
                    .remove(subscriber)
                    .expect("released after its SessionUp");
                delays.push(at.saturating_duration_since(since));
            }
            _ => {}
        }
    }
    delays.sort_by(|a, b| b.cmp(a));
    delays
}

#[test]
fn a_planned_move_releases_the_old_call_once_the_fast_path_switched() {
    // With a fast path (defer_connect), the workers switch to the new call
    // a moment after SessionUp; until the glue says so (release_moved) the
    // old call stays up at the old LNS, so that what the workers still send
    // there is forwarded, not dropped after a CDN.
    let mut lab = Lab::new(policy());
    lab.start(N);
    lab.switchover(SwitchoverType::All, &[]);
    lab.run_until(Duration::from_secs(3), "every call moved", |l| {
        l.released_events() == N && l.up_at(0) == 0
    });
    lab.run_for(Duration::from_millis(100));
    lab.drain();
    let report = lab.check(N);
    assert_eq!((report.up_lost, report.down_lost), (0, 0), "{report:?}");
    assert_eq!(lab.site().released_by_glue, N);
    let delays = release_delays(&lab);
    assert_eq!(delays.len(), N);
    // The glue's millisecond, and not a moment before it.
    assert!(
        delays.iter().all(|d| *d >= Duration::from_millis(1)),
        "{delays:?}"
    );
    assert!(delays[0] <= Duration::from_millis(2), "{delays:?}");
    let with_glue = delays[0];
    assert_eq!(lab.lac().stats().sessions_moved, N as u64);
    // Nothing is left to release.
    let key = lab.site().subscribers.cpes[0].key().unwrap();
    let now = lab.sim.now();
    assert!(!lab.site_mut().lac.release_moved(now, key));

    // A glue that never says so: the node releases by itself once
    // defer_connect (200 ms) has passed.
    let mut lab = Lab::new(policy());
    lab.site_mut().release_on_switch = false;
    lab.start(N);
    lab.switchover(SwitchoverType::All, &[]);
    lab.run_until(Duration::from_secs(3), "every new call up", |l| {
        l.moved_ups(true) == N
    });
    assert!(lab.released_events() < N);
    assert!(lab.up_at(0) > 0, "the old calls stay up at LNS1 meanwhile");
    lab.run_until(Duration::from_secs(3), "every call released", |l| {
        l.released_events() == N && l.up_at(0) == 0
    });
    lab.drain();
    let report = lab.check(N);
    assert_eq!((report.up_lost, report.down_lost), (0, 0), "{report:?}");
    let delays = release_delays(&lab);
    assert_eq!(delays.len(), N);
    assert!(
        delays
            .iter()
            .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(201)),
        "{delays:?}"
    );
    println!(
        "planned move: old call released at most {} ms after the new call's SessionUp (glue), {} ms (no glue)",
        with_glue.as_millis(),
        delays[0].as_millis()
    );
}

#[test]
fn a_switchover_of_listed_sessions_moves_only_those() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    let keys: Vec<SubscriberKey> = lab.site().subscribers.cpes[..2]
        .iter()
        .map(|c| c.key().unwrap())
        .collect();
    let lns_sids: Vec<u16> = keys
        .iter()
        .map(|k| lab.lac().session(*k).unwrap().session_ids.unwrap().1)
        .collect();
    lab.switchover(SwitchoverType::Listed, &lns_sids);
    lab.run_until(Duration::from_secs(3), "the two calls moved", |l| {
        l.released_events() == 2
    });
    lab.run_for(Duration::from_millis(500));
    lab.drain();
    let report = lab.check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert_eq!(report.down_lost, 0, "{report:?}");
    assert_eq!((lab.up_at(0), lab.up_at(1)), (N - 2, 2));
    for s in lab.lac().sessions() {
        let expected = if keys.contains(&s.subscriber) {
            LNS2
        } else {
            LNS1
        };
        assert_eq!(s.lns, Some(expected));
    }
    // Listed does not steer.
    assert!(lab
        .lac()
        .ha_status()
        .lns
        .iter()
        .all(|s| s.steered_until.is_none()));
    println!(
        "switchover listed: 2 calls moved; longest upstream gap {} ms, no loss",
        report.longest_gap.as_millis()
    );
}

#[test]
fn new_sessions_only_steers_new_calls_until_cancelled() {
    let mut lab = Lab::new(policy());
    lab.start(4);
    lab.switchover(SwitchoverType::NewSessions, &[]);
    lab.run_for(Duration::from_millis(50));
    assert!(lab.lac_events().iter().any(|e| matches!(
        e,
        lac::Event::SwitchoverRequested {
            granted: true,
            sessions: 0,
            kind: SwitchoverType::NewSessions,
            ..
        }
    )));
    lab.add_subscribers(1);
    lab.run_until(Duration::from_secs(5), "the fifth subscriber up", |l| {
        l.lac().up_count() == 5 && l.up_at(1) == 1 && l.site().subscribers.cpes[4].is_up()
    });
    let fifth = lab.site().subscribers.cpes[4].key().unwrap();
    assert_eq!(lab.lac().session(fifth).unwrap().lns, Some(LNS2));
    assert_eq!((lab.up_at(0), lab.up_at(1)), (4, 1), "nothing else moved");

    // Failback: "new sessions only" with no peer cancels the steering.
    let now = lab.sim.now();
    lab.lns_mut(0).ha_failback(now).unwrap();
    lab.run_for(Duration::from_millis(50));
    lab.add_subscribers(1);
    lab.run_until(Duration::from_secs(5), "the sixth subscriber up", |l| {
        l.lac().up_count() == 6 && l.up_at(0) == 5 && l.site().subscribers.cpes[5].is_up()
    });
    let sixth = lab.site().subscribers.cpes[5].key().unwrap();
    assert_eq!(lab.lac().session(sixth).unwrap().lns, Some(LNS1));
    lab.drain();
    let report = lab.check(6);
    assert_eq!(report.up_lost, 0);
    assert_eq!(lab.lac().stats().switchovers_granted, 2);
}

#[test]
fn a_lac_that_does_not_accept_switchovers_denies_and_moves_nothing() {
    let mut lab = Lab::new(HaPolicy {
        accept_switchover: false,
        ..policy()
    });
    lab.start(N);
    lab.switchover(SwitchoverType::All, &[]);
    lab.run_for(Duration::from_millis(500));
    lab.drain();
    let report = lab.check(N);
    assert_eq!(report.up_lost, 0);
    assert!(lab.lac_events().iter().any(|e| matches!(
        e,
        lac::Event::SwitchoverRequested {
            granted: false,
            sessions: 0,
            ..
        }
    )));
    let stats = lab.lac().stats();
    assert_eq!((stats.switchovers_denied, stats.recoveries_started), (1, 0));
    assert_eq!((lab.up_at(0), lab.up_at(1)), (N, 0));
}

#[test]
fn a_malformed_or_unexpected_ha_message_is_counted_and_ignored() {
    let mut lab = Lab::new(policy());
    lab.start(2);
    // An LSORQ has no business at a LAC; an STPLRP without its action is
    // malformed.
    let now = lab.sim.now();
    let lns = lab.lns_mut(0);
    let tunnel = lns.endpoint().tunnels().next().unwrap();
    for message in [
        dataplane::wire::control::ControlMessage::new(
            dataplane::wire::control::MessageType::Stplrp,
            0,
            0,
        ),
        dataplane::wire::control::ControlMessage::new(
            dataplane::wire::control::MessageType::Lsorq,
            0,
            0,
        ),
    ] {
        lns.endpoint_mut()
            .send_ha_message(now, tunnel, None, message)
            .unwrap();
    }
    lab.run_for(Duration::from_millis(300));
    lab.drain();
    lab.check(2);
    assert_eq!(lab.lac().stats().ha_messages_malformed, 2);
}

#[test]
fn a_drain_and_a_failback_move_every_call_away_and_back_without_loss() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    let now = lab.sim.now();
    lab.lns_mut(0).ha_drain(now).unwrap();
    lab.run_until(Duration::from_secs(3), "every call moved to LNS2", |l| {
        l.released_events() == N && l.up_at(0) == 0 && l.up_at(1) == N
    });
    lab.run_for(Duration::from_millis(300));
    // Back: LNS2 hands its adopted sessions back to their primary (a
    // Listed switchover to LNS1); then LNS1 lifts its steering (a "new
    // sessions" STPLRQ with no peer). LNS1 now holds them adopted from
    // LNS2, but they are home (it started their accounting): its failback
    // must not send them away again.
    let now = lab.sim.now();
    lab.lns_mut(1).ha_failback(now).unwrap();
    lab.run_until(Duration::from_secs(3), "every call back at LNS1", |l| {
        l.released_events() == 2 * N && l.up_at(0) == N && l.up_at(1) == 0
    });
    let now = lab.sim.now();
    lab.lns_mut(0).ha_failback(now).unwrap();
    lab.run_for(Duration::from_millis(300));
    assert_eq!(
        (lab.up_at(0), lab.released_events()),
        (N, 2 * N),
        "moved again"
    );
    assert!(lab
        .lac()
        .ha_status()
        .lns
        .iter()
        .all(|s| s.steered_until.is_none()));
    lab.drain();
    let report = lab.check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert_eq!(report.down_lost, 0, "{report:?}");
    let at: Vec<_> = lab.lac().sessions().iter().map(|s| s.lns).collect();
    assert!(at.iter().all(|l| *l == Some(LNS1)), "{at:?}");
    assert_eq!(lab.lac().stats().sessions_moved, 2 * N as u64);
    println!(
        "drain and failback: {N} calls there and back; longest upstream gap {} ms, no loss ({} up, {} down)",
        report.longest_gap.as_millis(),
        report.up_sent,
        report.down_sent
    );
}

#[test]
fn a_switchover_to_no_usable_peer_or_of_an_unknown_type_is_denied() {
    let mut lab = Lab::new(policy());
    lab.start(4);
    // The only peer named is LNS1 itself; then a type we do not know.
    lab.stplrq(SwitchoverType::All, vec![*LNS1.ip()], Vec::new());
    lab.stplrq(SwitchoverType::Unknown(9), vec![*LNS2.ip()], Vec::new());
    let report = lab.settle_and_check(4);
    assert_eq!(report.up_lost, 0);
    let stats = lab.lac().stats();
    assert_eq!(
        (
            stats.switchover_requests,
            stats.switchovers_denied,
            stats.recoveries_started
        ),
        (2, 2, 0)
    );
    assert_eq!((lab.up_at(0), lab.up_at(1)), (4, 0));
}

#[test]
fn the_primary_dying_during_a_planned_move_turns_it_into_a_failure_switchover() {
    // One recovery call at a time: the move takes longer than the 300 ms
    // the LAC needs to find LNS1 dead.
    let mut lab = Lab::new(HaPolicy {
        recovery_window: 1,
        ..policy()
    });
    lab.start(N);
    for (a, b) in [(LAC, LNS2), (LNS2, LAC)] {
        lab.sim
            .set_link(a, b, LinkConditions::delay(Duration::from_millis(5)));
    }
    lab.switchover(SwitchoverType::All, &[]);
    lab.run_until(Duration::from_secs(2), "the first call moved", |l| {
        l.released_events() > 0
    });
    lab.kill_lns1();
    lab.run_until(Duration::from_secs(3), "every call at LNS2", |l| {
        l.lac().sessions().iter().all(|s| s.lns == Some(LNS2)) && l.up_at(1) == N
    });
    lab.run_for(Duration::from_millis(500));
    lab.drain();
    let report = lab.check(N);
    let stats = lab.lac().stats();
    assert_eq!(stats.recoveries_done, N as u64);
    assert_eq!(stats.recoveries_failed, 0);
    assert!(
        lab.holding_events() > 0,
        "LNS1 died before the move was over"
    );
    assert_eq!(lab.released_events() + lab.holding_events(), N);
    println!(
        "primary dies during a planned move: {} released before, {} held after; longest upstream gap {} ms",
        lab.released_events(),
        lab.holding_events(),
        report.longest_gap.as_millis()
    );
}

#[test]
fn with_no_peer_left_the_held_subscribers_end_cleanly() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    // One subscriber hangs up while held; then nobody answers at all.
    lab.kill_lns1();
    lab.sim.partition(LAC, LNS2);
    let cut = lab.sim.now();
    lab.run_until(Duration::from_secs(2), "every call held", |l| {
        l.holding_events() == N
    });
    let now = lab.sim.now();
    let site = lab.site_mut();
    site.subscribers.cpes[0].discovery.close(now);
    site.shuttle(now);
    lab.run_until(Duration::from_secs(5), "every subscriber ended", |l| {
        l.lac().subscriber_count() == 0
    });
    let took = lab.sim.now().saturating_duration_since(cut);
    let stats = lab.lac().stats();
    assert_eq!(stats.recoveries_done, 0);
    assert_eq!(stats.recoveries_failed, N as u64 - 1);
    let first = lab.site().subscribers.cpes[0].key().unwrap();
    let ended: Vec<&lac::SessionEnded> = lab
        .lac_events()
        .into_iter()
        .filter_map(|e| match e {
            lac::Event::SessionDown(d) => Some(&**d),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), N);
    for d in ended {
        if d.subscriber == first {
            assert_eq!(d.cause, lac::EndCause::SubscriberTerminated);
        } else {
            assert!(matches!(d.cause, lac::EndCause::TunnelDown(_)) && d.was_up);
        }
    }
    // PADT to each of the others.
    assert!(lab.site().subscribers.cpes[1..]
        .iter()
        .all(|c| c.pppoe_down));
    println!(
        "no peer answers: {N} subscribers ended {} ms after the cut",
        took.as_millis()
    );
}

#[test]
fn with_50_ms_hellos_and_a_150_ms_dead_interval_the_failure_gap_is_under_200_ms() {
    let mut lab = Lab::with_timers(
        policy(),
        Duration::from_millis(50),
        Duration::from_millis(150),
    );
    lab.start(N);
    let recovered_after =
        lab.kill_lns1_and_recover(Duration::from_secs(3), "every call recovered", N);
    let report = lab.settle_and_check(N);
    println!(
        "kill primary, 50/150 ms timers: {N} sessions recovered {} ms after the cut; \
         longest upstream gap {} ms; upstream lost {} of {}",
        recovered_after.as_millis(),
        report.longest_gap.as_millis(),
        report.up_lost,
        report.up_sent
    );
    assert!(report.longest_gap < Duration::from_millis(200));
}

#[test]
fn in_proxy_mode_the_recovery_calls_carry_the_proxy_avps_and_nothing_is_renegotiated() {
    let mut config = lac_config(
        policy(),
        Duration::from_millis(100),
        Duration::from_millis(300),
    );
    config.mode = Mode::Proxy;
    config.ppp.lcp.authenticate_peer = vec![AuthMethod::ChapMd5];
    let mut lab = Lab::build(config);
    lab.start(8);
    lab.sim.record_trace(true);
    lab.kill_lns1();
    lab.run_until(Duration::from_secs(3), "every call recovered", |l| {
        l.moved_ups(false) == 8
    });
    // Every recovery call's ICCN to LNS2 has the proxy LCP and
    // authentication of the original call (RFC 2661 §4.4.5).
    let ctx = dataplane::wire::control::Context {
        secret: None,
        ha_vendor_id: dataplane::wire::control::HA_VENDOR_ID,
    };
    let proxied = lab
        .sim
        .trace()
        .iter()
        .filter(|r| r.fate == sim::Fate::Sent && r.from == LAC && r.to == LNS2)
        .filter_map(|r| dataplane::wire::control::ControlMessage::parse(&r.payload, &ctx).ok())
        .filter(|m| m.message_type == Some(dataplane::wire::control::MessageType::Iccn))
        .filter(|m| {
            m.avps.iter().any(|a| {
                matches!(
                    a.avp,
                    dataplane::wire::control::Avp::LastReceivedLcpConfReq(_)
                )
            }) && m
                .avps
                .iter()
                .any(|a| matches!(a.avp, dataplane::wire::control::Avp::ProxyAuthenType(2)))
        })
        .count();
    assert_eq!(proxied, 8);
    let report = lab.settle_and_check(8);
    assert_eq!(lab.up_at(1), 8);
    println!(
        "proxy mode, kill primary: longest upstream gap {} ms",
        report.longest_gap.as_millis()
    );
}

#[test]
fn a_peer_that_does_not_answer_is_passed_over_for_the_next() {
    // LNS1 names a peer that is not there first, then LNS2.
    const GHOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 13);
    let config = lac_config(
        policy(),
        Duration::from_millis(100),
        Duration::from_millis(300),
    );
    let mut lab = Lab::build_with(config, |c| {
        if let Some(ha) = c.ha.as_mut() {
            ha.advertise = vec![GHOST, *LNS2.ip()];
        }
    });
    lab.start(N);
    let status = lab.lac().ha_status();
    assert_eq!(status.lns[0].peers, vec![GHOST, *LNS2.ip()]);
    let took = lab.kill_lns1_and_recover(Duration::from_secs(5), "every call recovered at LNS2", N);
    let report = lab.settle_and_check(N);
    assert_eq!(lab.up_at(1), N);
    assert_eq!(lab.lac().stats().recoveries_failed, 0);
    println!(
        "first peer silent: recovered at the second {} ms after the cut (gap {} ms)",
        took.as_millis(),
        report.longest_gap.as_millis()
    );
}

#[test]
fn an_overloaded_primary_has_its_sessions_moved_without_loss() {
    let config = lac_config(
        policy(),
        Duration::from_millis(100),
        Duration::from_millis(300),
    );
    let mut lab = Lab::build_with(config, |c| {
        if let Some(ha) = c.ha.as_mut() {
            ha.load = Some(controlplane::ha::load::LoadConfig {
                sessions: Some(controlplane::ha::load::Watermarks {
                    high: N as f64,
                    low: 2.0,
                }),
                cpu_percent: None,
                memory_percent: None,
                hold: Duration::from_millis(100),
            });
            ha.switchover_kind = SwitchoverType::All;
        }
    });
    lab.start(N);
    // lnsd samples its load every second; here every 50 ms.
    let sample = controlplane::ha::load::LoadSample {
        sessions: 0,
        cpu_percent: 10.0,
        memory_percent: 10.0,
    };
    for _ in 0..6 {
        let now = lab.sim.now();
        lab.lns_mut(0).observe_load(now, sample);
        lab.run_for(Duration::from_millis(50));
    }
    lab.run_until(Duration::from_secs(3), "every call moved", |l| {
        l.released_events() == N && l.up_at(0) == 0
    });
    let report = lab.settle_and_check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert_eq!(report.down_lost, 0, "{report:?}");
    assert_eq!(lab.up_at(1), N);
    println!(
        "overload: {N} calls moved off LNS1; longest upstream gap {} ms, no loss",
        report.longest_gap.as_millis()
    );
}

/// The lab's figure in simulation: a thousand subscribers (2 s in a
/// release build, longer in debug: run with `--ignored`). 344 ms from the
/// cut to the last call recovered, with 100 ms Hellos and a 300 ms dead
/// interval; nothing held was dropped.
#[test]
#[ignore]
fn a_thousand_subscribers_are_recovered_when_the_primary_dies() {
    const MANY: usize = 1000;
    let mut lab = Lab::new(policy());
    lab.start(MANY);
    let recovered_after =
        lab.kill_lns1_and_recover(Duration::from_secs(5), "every call recovered", MANY);
    let report = lab.settle_and_check(MANY);
    println!(
        "kill primary, {MANY} subscribers: all recovered {} ms after the cut; longest upstream gap {} ms; \
         upstream lost {} of {}; held frames dropped {}",
        recovered_after.as_millis(),
        report.longest_gap.as_millis(),
        report.up_lost,
        report.up_sent,
        lab.lac().stats().hold_overflow
    );
}

#[test]
fn a_repeated_switchover_request_moves_each_call_once() {
    let mut lab = Lab::new(policy());
    lab.start(N);
    lab.switchover(SwitchoverType::All, &[]);
    lab.switchover(SwitchoverType::All, &[]);
    // A long list of sessions (as many as an AVP holds, RFC 2661 §4.1:
    // 1023 octets), most of them unknown.
    let many: Vec<u16> = (1..=500).collect();
    lab.stplrq(SwitchoverType::Listed, vec![*LNS2.ip()], many);
    lab.run_until(Duration::from_secs(3), "every call moved", |l| {
        l.released_events() == N && l.up_at(0) == 0
    });
    let report = lab.settle_and_check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert_eq!(report.down_lost, 0, "{report:?}");
    let moved: Vec<usize> = lab
        .lac_events()
        .iter()
        .filter_map(|e| match e {
            lac::Event::SwitchoverRequested {
                granted: true,
                sessions,
                ..
            } => Some(*sessions),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec![N, 0, 0], "{:?}", lab.lac().stats());
    assert_eq!(lab.lac().stats().sessions_moved, N as u64);
}

#[test]
fn a_planned_switchover_during_bulk_sync_moves_what_was_offloaded_and_keeps_the_rest() {
    let mut lab = Lab::new(policy());
    lab.sim.partition(LNS1, LNS2);
    lab.add_subscribers(N);
    lab.run_until(Duration::from_secs(10), "every subscriber up", |l| {
        l.lac().up_count() == N
            && l.up_at(0) == N
            && l.site().subscribers.cpes.iter().all(|c| c.is_up())
    });
    lab.set_traffic(true);
    lab.heal_until_bulk_sync_under_way();
    lab.switchover(SwitchoverType::All, &[]);
    lab.run_until(Duration::from_secs(3), "every move settled", |l| {
        let s = l.lac().stats();
        s.recoveries_done + s.recoveries_failed == N as u64
    });
    lab.run_for(Duration::from_millis(300));
    lab.drain();
    // Nothing lost either way: a move the peer cannot take leaves the
    // call where it was.
    let report = lab.check(N);
    assert_eq!(report.up_lost, 0, "{report:?}");
    assert_eq!(report.down_lost, 0, "{report:?}");
    let stats = lab.lac().stats();
    assert_eq!(lab.up_at(1) as u64, stats.recoveries_done);
    assert_eq!(lab.up_at(0) as u64, stats.recoveries_failed);
    println!(
        "planned switchover during bulk sync: {} moved, {} stayed (not offloaded yet), no loss",
        stats.recoveries_done, stats.recoveries_failed
    );
}

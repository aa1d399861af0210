//! The LNS fast-path glue taking over a failed peer's sessions (HA failure
//! switchover, docs/ha-protocol.md §5.5), in simulation: LNS1 serves the
//! subscribers and offloads them to LNS2; LNS1 dies; the LAC recovers every
//! call at LNS2, whose `LnsFastpath` (one worker over memory ports) must
//! have each adopted session programmed with the subscriber's address and
//! MRU before its ICRP leaves (the LAC flushes its held frames right after),
//! and announces each address on the core port once it is up.
//!
//! LNS2 runs as `lnsd` runs it: every node event goes to
//! `LnsFastpath::program` first, and `LnsFastpath::service` follows every
//! turn of the node. The LAC is an L2TP endpoint with PPP clients driven by
//! hand (the LAC node's own switchover is not part of this).

#![cfg(test)]

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::fastpath::lns::LnsFastpath;
use controlplane::fastpath::{Fastpath, FastpathConfig, Role as FastpathRole};
use controlplane::l2tp::{
    self, CallParams, Endpoint, HaConfig, LnsPeer, RecoveryTunnel, Retransmission, SessionHandle,
    SessionState, TunnelHandle,
};
use controlplane::lns;
use controlplane::node::Node as SansIo;
use controlplane::ppp::{self, AuthMethod, Credentials, PppConfig, PppLink, Role};
use controlplane::sim::{LinkConditions, NodeId, Sim};
use controlplane::time::Instant;
use dataplane::io::memory::MemoryPort;
use dataplane::testkit::{self, ACCESS_MAC, CORE_MAC};
use dataplane::worker::Worker;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
const LNS1: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 1701);
const LNS2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 12), 1701);
const PEER_SECRET: &[u8] = b"lns1-lns2";
const SUBSCRIBERS: usize = 6;

fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

// --- the LAC, by hand -------------------------------------------------------

/// A PPP client on an L2TP session.
struct Sub {
    link: Option<PppLink>,
    session: Option<SessionHandle>,
    /// LNS1's Session ID of its first session (Recovery-Session).
    primary_session_id: u16,
    ups: usize,
    downs: usize,
    /// The ownership epoch of its recovered session.
    recovered: Option<u32>,
}

struct Lac {
    endpoint: Endpoint,
    subs: Vec<Sub>,
    by_session: HashMap<SessionHandle, usize>,
    /// The primary tunnel: handle, our Tunnel ID, LNS1's, its peers.
    primary: Option<(TunnelHandle, u16, u16, Vec<Ipv4Addr>)>,
    primary_down: bool,
    recovery: Option<TunnelHandle>,
    transmits: VecDeque<(SocketAddrV4, Vec<u8>)>,
    ppp: PppConfig,
    rng: Box<dyn RngCore + Send>,
}

impl Lac {
    fn new() -> Lac {
        let config = l2tp::Config {
            ha: Some(HaConfig::default()),
            hello_interval: Some(Duration::from_millis(100)),
            dead_interval: Some(Duration::from_millis(300)),
            retransmission: Retransmission {
                initial: Duration::from_millis(100),
                cap: Duration::from_millis(100),
                max_retries: 3,
            },
            ack_delay: Duration::from_millis(10),
            ..l2tp::Config::lac("lac")
        };
        let mut ppp = PppConfig::client(Credentials {
            username: b"sub".to_vec(),
            password: b"pw".to_vec(),
        });
        ppp.lcp.authenticate_self = vec![AuthMethod::ChapMd5];
        Lac {
            endpoint: Endpoint::new(config, rng(7)).unwrap(),
            subs: Vec::new(),
            by_session: HashMap::new(),
            primary: None,
            primary_down: false,
            recovery: None,
            transmits: VecDeque::new(),
            ppp,
            rng: rng(8),
        }
    }

    fn dial(&mut self, now: Instant, n: usize) {
        let tunnel = self.endpoint.connect(now, LNS1).unwrap();
        for _ in 0..n {
            let s = self
                .endpoint
                .open_session(now, tunnel, CallParams::default())
                .unwrap();
            self.by_session.insert(s, self.subs.len());
            self.subs.push(Sub {
                link: None,
                session: Some(s),
                primary_session_id: 0,
                ups: 0,
                downs: 0,
                recovered: None,
            });
        }
    }

    /// Failure switchover: a tunnel to LNS1's first peer with
    /// Recovery-Tunnel; its TunnelUp sends one recovery ICRQ per session.
    fn recover(&mut self, now: Instant) {
        let (_, lac_tid, lns_tid, peers) = self.primary.clone().unwrap();
        let recovery = RecoveryTunnel {
            primary_lns: *LNS1.ip(),
            lns_tunnel_id: lns_tid,
            lac_tunnel_id: lac_tid,
        };
        let peer = SocketAddrV4::new(peers[0], 1701);
        self.recovery = Some(
            self.endpoint
                .connect_for_recovery(now, peer, recovery)
                .unwrap(),
        );
    }

    fn service(&mut self, now: Instant, index: usize) {
        let sub = &mut self.subs[index];
        let (Some(link), Some(session)) = (sub.link.as_mut(), sub.session) else {
            return;
        };
        loop {
            while let Some(frame) = link.poll_transmit(now) {
                if let Ok(t) = self.endpoint.send_data(session, &frame) {
                    self.transmits.push_back((t.remote, t.payload));
                }
            }
            match link.poll_event() {
                Some(ppp::Event::Up(_)) => sub.ups += 1,
                Some(ppp::Event::Down { .. }) => sub.downs += 1,
                Some(_) => {}
                None => break,
            }
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(e) = self.endpoint.poll_event() {
            match e {
                l2tp::Event::TunnelUp {
                    tunnel,
                    local_tunnel_id,
                    peer,
                    ..
                } => {
                    if self.primary.is_none() {
                        self.primary = Some((
                            tunnel,
                            local_tunnel_id,
                            peer.tunnel_id,
                            peer.peer_lns_addresses.clone(),
                        ));
                    } else if Some(tunnel) == self.recovery {
                        for i in 0..self.subs.len() {
                            let call = CallParams {
                                recovery_session: Some(self.subs[i].primary_session_id),
                                ..CallParams::default()
                            };
                            let s = self.endpoint.open_session(now, tunnel, call).unwrap();
                            self.by_session.insert(s, i);
                        }
                    }
                }
                l2tp::Event::TunnelDown { tunnel, .. }
                    if self.primary.as_ref().is_some_and(|p| p.0 == tunnel) =>
                {
                    self.primary_down = true;
                }
                l2tp::Event::SessionUp {
                    session,
                    peer_session_id,
                    call,
                    ..
                } => {
                    let Some(&i) = self.by_session.get(&session) else {
                        continue;
                    };
                    if Some(session.tunnel) == self.recovery {
                        // The session moves; PPP carries on untouched.
                        self.subs[i].recovered = call.ownership_epoch;
                        self.subs[i].session = Some(session);
                    } else {
                        self.subs[i].primary_session_id = peer_session_id;
                        let mut seed = [0u8; 32];
                        self.rng.fill_bytes(&mut seed);
                        let mut link = PppLink::new(
                            Role::Client,
                            self.ppp.clone(),
                            Box::new(ChaCha8Rng::from_seed(seed)),
                        );
                        link.open(now);
                        self.subs[i].link = Some(link);
                        self.service(now, i);
                    }
                }
                l2tp::Event::Data { session, payload } => {
                    let Some(&i) = self.by_session.get(&session) else {
                        continue;
                    };
                    if self.subs[i].session != Some(session) {
                        continue;
                    }
                    if let Some(link) = self.subs[i].link.as_mut() {
                        link.handle_frame(now, &payload);
                    }
                    self.service(now, i);
                }
                _ => {}
            }
        }
    }
}

impl SansIo for Lac {
    type Event = ();

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        if let SocketAddr::V4(from) = from {
            self.endpoint.handle_datagram(now, from, payload);
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        for i in 0..self.subs.len() {
            let due = self.subs[i]
                .link
                .as_ref()
                .and_then(PppLink::poll_timeout)
                .is_some_and(|t| t <= now);
            if due {
                if let Some(link) = self.subs[i].link.as_mut() {
                    link.handle_timeout(now);
                }
                self.service(now, i);
            }
        }
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let links = self
            .subs
            .iter()
            .filter_map(|s| s.link.as_ref().and_then(PppLink::poll_timeout))
            .min();
        [self.endpoint.poll_timeout(), links]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, payload) = match self.transmits.pop_front() {
            Some(t) => t,
            None => {
                let t = self.endpoint.poll_transmit(now)?;
                (t.remote, t.payload)
            }
        };
        buf.clear();
        buf.extend_from_slice(&payload);
        Some(SocketAddr::V4(to))
    }

    fn poll_event(&mut self) -> Option<()> {
        None
    }
}

// --- LNS2: the node and its fast path, as lnsd runs them ---------------------

struct FastLns {
    node: lns::Node,
    fp: LnsFastpath,
    /// The last time the node was turned (the glue has no timers of its
    /// own: while it waits for the worker, the node is turned every 1 ms).
    now: Instant,
    /// ICRPs of adopted calls checked against the fast path's tables.
    checked: usize,
    /// Adopted calls answered before the fast path had their address.
    unprogrammed: Vec<String>,
}

impl FastLns {
    fn turn(&mut self, now: Instant) {
        self.now = now;
        self.fp.service(&mut self.node, now);
    }

    /// Every adopted call whose ICRP is out (no longer idle) must be in
    /// the fast path with its address and MRU.
    fn check_adopted(&mut self) {
        let sessions: Vec<SessionHandle> = self.node.sessions().collect();
        for h in sessions {
            let Some(adopted) = self.node.adopted_call(h) else {
                continue;
            };
            if self.node.endpoint().session_state(h) == Some(SessionState::Idle) {
                continue;
            }
            self.checked += 1;
            let programmed = self.fp.session(h).map(|c| (c.subscriber_addr, c.mru));
            if programmed != Some((Some(adopted.address), adopted.mru)) {
                self.unprogrammed
                    .push(format!("{h:?}: {adopted:?} programmed as {programmed:?}"));
            }
        }
    }
}

impl SansIo for FastLns {
    type Event = lns::Event;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        SansIo::handle_datagram(&mut self.node, now, from, payload);
        self.turn(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if SansIo::poll_timeout(&self.node).is_some_and(|t| t <= now) {
            SansIo::handle_timeout(&mut self.node, now);
        }
        self.turn(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let glue = self
            .fp
            .waiting_for_workers()
            .then(|| self.now + Duration::from_millis(1));
        [SansIo::poll_timeout(&self.node), glue]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.check_adopted();
        SansIo::poll_transmit(&mut self.node, now, buf)
    }

    fn poll_event(&mut self) -> Option<lns::Event> {
        let event = SansIo::poll_event(&mut self.node)?;
        // Before anything else, as lnsd does: the tables follow the node.
        self.fp.program(&event);
        Some(event)
    }
}

enum Party {
    Lns(Box<lns::Node>),
    Fast(Box<FastLns>),
    Lac(Box<Lac>),
}

impl SansIo for Party {
    type Event = ();

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        match self {
            Party::Lns(n) => SansIo::handle_datagram(&mut **n, now, from, payload),
            Party::Fast(n) => SansIo::handle_datagram(&mut **n, now, from, payload),
            Party::Lac(n) => SansIo::handle_datagram(&mut **n, now, from, payload),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Lns(n) => SansIo::handle_timeout(&mut **n, now),
            Party::Fast(n) => SansIo::handle_timeout(&mut **n, now),
            Party::Lac(n) => SansIo::handle_timeout(&mut **n, now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Lns(n) => SansIo::poll_timeout(&**n),
            Party::Fast(n) => SansIo::poll_timeout(&**n),
            Party::Lac(n) => SansIo::poll_timeout(&**n),
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Party::Lns(n) => SansIo::poll_transmit(&mut **n, now, buf),
            Party::Fast(n) => SansIo::poll_transmit(&mut **n, now, buf),
            Party::Lac(n) => SansIo::poll_transmit(&mut **n, now, buf),
        }
    }

    fn poll_event(&mut self) -> Option<()> {
        // Events are drained so the fast path follows LNS2's; nothing
        // else needs them here.
        match self {
            Party::Lns(n) => SansIo::poll_event(&mut **n).map(drop),
            Party::Fast(n) => SansIo::poll_event(&mut **n).map(drop),
            Party::Lac(n) => SansIo::poll_event(&mut **n),
        }
    }
}

fn lns_node(name: &str, us: SocketAddrV4, peer: SocketAddrV4, seed: u64) -> lns::Node {
    let mut config = lns::Config::new(name, Ipv4Addr::new(100, 64, 0, 1));
    config.ha = Some(lns::HaConfig::new(
        *us.ip(),
        vec![LnsPeer {
            address: *peer.ip(),
            secret: PEER_SECRET.to_vec(),
        }],
    ));
    let mut node = lns::Node::new(
        config,
        Authenticator::local(Users::parse("sub pw\n", "users").unwrap()),
        AddressPool::parse(&["100.64.0.0/24"]).unwrap(),
        rng(seed),
    )
    .unwrap();
    node.set_wall_clock(Instant::ZERO, Duration::from_secs(1_800_000_000));
    node
}

/// LNS2 with a fast path of one worker over memory ports.
fn fast_lns() -> FastLns {
    let mut node = lns_node("lns2", LNS2, LNS1, 3);
    let worker: Worker<MemoryPort> = testkit::worker_with(
        testkit::config(FastpathRole::Lns, 64),
        0,
        [testkit::port(ACCESS_MAC), testkit::port(CORE_MAC)],
    );
    let config = FastpathConfig::new(
        FastpathRole::Lns,
        vec!["wan".into(), "core".into()],
        vec![*LNS2.ip()],
    );
    let fp = Fastpath::with_workers(config, vec![worker], Vec::new(), None).unwrap();
    let fp = LnsFastpath::with_fastpath(fp, LNS2, &mut node);
    FastLns {
        node,
        fp,
        now: Instant::ZERO,
        checked: 0,
        unprogrammed: Vec::new(),
    }
}

struct World {
    sim: Sim<Party>,
    lac: NodeId,
    lns1: NodeId,
    lns2: NodeId,
}

impl World {
    fn lac(&self) -> &Lac {
        match self.sim.node(self.lac) {
            Party::Lac(n) => n,
            _ => unreachable!(),
        }
    }

    fn lac_mut(&mut self) -> &mut Lac {
        match self.sim.node_mut(self.lac) {
            Party::Lac(n) => n,
            _ => unreachable!(),
        }
    }

    fn lns1(&self) -> &lns::Node {
        match self.sim.node(self.lns1) {
            Party::Lns(n) => n,
            _ => unreachable!(),
        }
    }

    fn lns2(&self) -> &FastLns {
        match self.sim.node(self.lns2) {
            Party::Fast(n) => n,
            _ => unreachable!(),
        }
    }

    fn lns2_mut(&mut self) -> &mut FastLns {
        match self.sim.node_mut(self.lns2) {
            Party::Fast(n) => n,
            _ => unreachable!(),
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        loop {
            for id in [self.lac, self.lns1, self.lns2] {
                self.sim.take_events(id);
            }
            if done(self) {
                return true;
            }
            if !self.sim.step(deadline) {
                return done(self);
            }
        }
    }
}

#[test]
fn adopted_sessions_are_programmed_before_their_icrp_and_announced_once_up() {
    let mut sim = Sim::new(rng(1), LinkConditions::delay(Duration::from_millis(1)));
    sim.max_steps = 20_000_000;
    let lns1 = sim.add_node(LNS1, Party::Lns(Box::new(lns_node("lns1", LNS1, LNS2, 2))));
    let lns2 = sim.add_node(LNS2, Party::Fast(Box::new(fast_lns())));
    let lac = sim.add_node(LAC, Party::Lac(Box::new(Lac::new())));
    let mut w = World {
        sim,
        lac,
        lns1,
        lns2,
    };

    // Subscribers up at LNS1, every session offloaded to LNS2.
    let now = w.sim.now();
    w.lac_mut().dial(now, SUBSCRIBERS);
    assert!(
        w.run_until(Duration::from_secs(20), |w| {
            w.lac().subs.iter().all(|s| s.ups == 1)
                && w.lns2()
                    .node
                    .offload_store()
                    .is_some_and(|s| s.session_count() == SUBSCRIBERS)
        }),
        "subscribers up at LNS1 and offloaded"
    );
    let addresses: HashMap<Ipv4Addr, u16> = {
        let n = w.lns1();
        n.sessions()
            .filter_map(|h| Some((n.session_address(h)?, n.link(h)?.state().lcp_peer.mru)))
            .collect()
    };
    assert_eq!(addresses.len(), SUBSCRIBERS);
    assert_eq!(w.lns2().fp.session_count(), 0, "nothing at LNS2 yet");

    // LNS1 dies; the LAC notices and recovers every call at LNS2.
    w.sim.partition(LAC, LNS1);
    w.sim.partition(LNS1, LNS2);
    assert!(w.run_until(Duration::from_secs(3), |w| w.lac().primary_down));
    let now = w.sim.now();
    w.lac_mut().recover(now);
    assert!(
        w.run_until(Duration::from_secs(5), |w| {
            w.lac().subs.iter().all(|s| s.recovered.is_some())
                && w.lns2().node.established_count() == SUBSCRIBERS
        }),
        "recovered: {:?}",
        w.lac().subs.iter().map(|s| s.recovered).collect::<Vec<_>>()
    );

    // Each ICRP left with the session already in the fast path's tables,
    // with the address and MRU the subscriber had at LNS1.
    let lns2 = w.lns2();
    assert!(
        lns2.checked >= SUBSCRIBERS,
        "{} ICRPs checked",
        lns2.checked
    );
    assert_eq!(lns2.unprogrammed, Vec::<String>::new());
    assert_eq!(lns2.fp.stats().adopted, SUBSCRIBERS as u64);
    assert_eq!(lns2.fp.stats().update_errors, 0);
    for h in lns2.node.sessions() {
        let config = lns2.fp.session(h).expect("programmed");
        let address = config.subscriber_addr.expect("with its address");
        assert_eq!(addresses.get(&address), Some(&config.mru), "{config:?}");
    }
    // No renegotiation: the clients never saw their links go down.
    assert!(w.lac().subs.iter().all(|s| s.ups == 1 && s.downs == 0));

    // Once up, each address is announced on the core port (the worker
    // answers the barrier in real time: turn until it has).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.lns2().fp.stats().announcements < SUBSCRIBERS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            w.lns2().fp.stats()
        );
        let now = w.sim.now();
        w.lns2_mut().turn(now);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(w.lns2().fp.stats().announcements_failed, 0);
    w.lns2_mut().fp.stop();
}

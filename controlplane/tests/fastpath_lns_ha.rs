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
use std::collections::HashMap;

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::fastpath::lns::LnsFastpath;
use controlplane::fastpath::{Fastpath, FastpathConfig, Role as FastpathRole};
use controlplane::l2tp::{SessionHandle, SessionState};
use controlplane::lns;
use controlplane::node::Node as SansIo;
use controlplane::sim::{LinkConditions, NodeId, Sim};
use controlplane::time::Instant;
use dataplane::io::memory::MemoryPort;
use dataplane::testkit::{self, ACCESS_MAC, CORE_MAC};
use dataplane::worker::Worker;

#[path = "support/ha_net.rs"]
mod ha_net;
#[path = "support/ha_parties.rs"]
mod ha_parties;

use ha_net::{rng, LAC, LNS1, LNS2};
use ha_parties::{lac_config, peered_ha_config, subscriber_ppp, Lac};

const SUBSCRIBERS: usize = 6;

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

type Party = ha_parties::Party<FastLns>;

fn lns_node(name: &str, us: SocketAddrV4, peer: SocketAddrV4, seed: u64) -> lns::Node {
    let mut config = lns::Config::new(name, Ipv4Addr::new(100, 64, 0, 1));
    config.ha = Some(peered_ha_config(us, peer));
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
        self.sim.node(self.lac).lac()
    }

    fn lac_mut(&mut self) -> &mut Lac {
        self.sim.node_mut(self.lac).lac_mut()
    }

    fn lns1(&self) -> &lns::Node {
        self.sim.node(self.lns1).lns()
    }

    fn lns2(&self) -> &FastLns {
        self.sim.node(self.lns2).other()
    }

    fn lns2_mut(&mut self) -> &mut FastLns {
        self.sim.node_mut(self.lns2).other_mut()
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        loop {
            // Events are drained so the fast path follows LNS2's (it is
            // programmed as they are polled); nothing else needs them here.
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
    let lns2 = sim.add_node(LNS2, Party::Other(Box::new(fast_lns())));
    let lac = sim.add_node(
        LAC,
        Party::Lac(Box::new(Lac::new(lac_config(), subscriber_ppp()))),
    );
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

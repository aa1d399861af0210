//! Two LNSs that are each other's peer (DESIGN.md §1: "every LNS can be a
//! primary for its own tunnels and the peer of another LNS at the same
//! time"), each running `ha::peering::LnsPeering` on its endpoint: both
//! offload their sessions to the other at once over authenticated
//! connections, survive a cut of the LNS-LNS link (reconnect, bulk resync),
//! and refuse LSORQs from an address that is not a configured peer.

#![cfg(test)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use controlplane::ha::message::{HaMessage, OffloadRequest, SessionIdentity, TunnelIdentity};
use controlplane::ha::peering::{LnsPeering, PeeringConfig, PeeringEvent};
use controlplane::ha::state::SessionState;
use controlplane::l2tp::{Config, Endpoint, Event, HaConfig, LnsPeer};
use controlplane::ppp::{LcpOptions, LinkState, Role};
use controlplane::sim::{LinkConditions, NodeId, Sim};
use dataplane::wire::control::OffloadOperation;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 1701);
const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 12), 1701);
const SECRET: &[u8] = b"a-b";

fn rng(seed: u64) -> Box<ChaCha8Rng> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

fn endpoint(name: &str, peer: SocketAddrV4, seed: u64) -> Endpoint {
    let config = Config {
        ha: Some(HaConfig {
            lns_peers: vec![LnsPeer {
                address: *peer.ip(),
                secret: SECRET.to_vec(),
            }],
            ..HaConfig::default()
        }),
        hello_interval: Some(Duration::from_millis(200)),
        dead_interval: Some(Duration::from_millis(600)),
        receive_window: 512,
        ..Config::lns(name)
    };
    Endpoint::new(config, rng(seed)).unwrap()
}

fn state(n: u16) -> SessionState {
    SessionState::new(LinkState {
        role: Role::Server,
        lcp_local: LcpOptions {
            magic_number: u32::from(n) + 1,
            ..LcpOptions::default()
        },
        lcp_peer: LcpOptions::default(),
        auth_method: None,
        username: Some(format!("sub{n}").into_bytes()),
        ipcp: None,
        ipv6cp: None,
    })
}

struct Lns {
    node: NodeId,
    peering: LnsPeering,
    wan: Ipv4Addr,
    events: Vec<PeeringEvent>,
}

struct Pair {
    sim: Sim<Endpoint>,
    lns: [Lns; 2],
}

impl Pair {
    fn new() -> Pair {
        let mut sim = Sim::new(rng(1), LinkConditions::delay(Duration::from_millis(1)));
        let a = sim.add_node(A, endpoint("a", B, 2));
        let b = sim.add_node(B, endpoint("b", A, 3));
        let peering = |peer| {
            LnsPeering::new(PeeringConfig {
                peers: vec![peer],
                ..PeeringConfig::default()
            })
        };
        let mut pair = Pair {
            sim,
            lns: [
                Lns {
                    node: a,
                    peering: peering(B),
                    wan: Ipv4Addr::new(10, 0, 0, 11),
                    events: Vec::new(),
                },
                Lns {
                    node: b,
                    peering: peering(A),
                    wan: Ipv4Addr::new(10, 0, 0, 12),
                    events: Vec::new(),
                },
            ],
        };
        let now = pair.sim.now();
        for l in &mut pair.lns {
            l.peering.start(now, pair.sim.node_mut(l.node));
        }
        pair
    }

    fn pump(&mut self) {
        let now = self.sim.now();
        for l in &mut self.lns {
            for (_, e) in self.sim.take_events(l.node) {
                let endpoint = self.sim.node_mut(l.node);
                let mine = l.peering.handle_event(now, endpoint, &e);
                assert!(mine, "only peering traffic here: {e:?}");
            }
            let endpoint = self.sim.node_mut(l.node);
            if l.peering.poll_timeout().is_some_and(|t| t <= now) {
                l.peering.handle_timeout(now, endpoint);
            }
            l.peering.flush(now, endpoint);
            while let Some(e) = l.peering.poll_event() {
                l.events.push(e);
            }
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Pair) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            let timer = self
                .lns
                .iter()
                .filter_map(|l| l.peering.poll_timeout())
                .min();
            let until = timer.map_or(deadline, |t| t.min(deadline));
            let stepped = self.sim.step(until);
            if !stepped && self.sim.now() >= deadline {
                self.pump();
                return done(self);
            }
        }
    }

    fn in_sync(&self) -> bool {
        [(0, B), (1, A)]
            .iter()
            .all(|&(i, peer)| self.lns[i].peering.sender(peer).unwrap().in_sync())
    }

    /// LNS `i` has `count` sessions of its own, offloaded.
    fn sessions(&mut self, i: usize, count: u16) {
        let now = self.sim.now();
        let l = &mut self.lns[i];
        for n in 0..count {
            let tunnel = TunnelIdentity {
                lns_tunnel_id: 1,
                lac_tunnel_id: 2,
                lac: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701),
                primary_lns: l.wan,
            };
            let session = SessionIdentity {
                lns_session_id: n + 1,
                lac_session_id: n + 100,
            };
            l.peering
                .session_update(now, tunnel, session, 1, &state(n))
                .unwrap();
        }
    }

    /// What `holder` holds of `primary`'s sessions.
    fn held(&self, holder: usize, primary: usize) -> usize {
        let wan = self.lns[primary].wan;
        self.lns[holder]
            .peering
            .store()
            .tunnel(wan, 1)
            .map_or(0, |t| t.sessions.len())
    }
}

#[test]
fn two_lnss_offload_to_each_other_at_once_and_resync_after_a_cut() {
    let mut p = Pair::new();
    p.sessions(0, 50);
    p.sessions(1, 30);
    assert!(p.run_until(Duration::from_secs(5), |p| p.in_sync()
        && p.held(1, 0) == 50
        && p.held(0, 1) == 30));
    for l in &p.lns {
        assert!(l
            .events
            .iter()
            .any(|e| matches!(e, PeeringEvent::BulkSyncDone { .. })));
    }
    let adopted = p.lns[1]
        .peering
        .store()
        .session(p.lns[0].wan, 1, 7)
        .unwrap();
    assert_eq!(adopted.state, state(6));

    // Cut the LNS-LNS link: both see the peer go, and reconnect after.
    p.sim.partition(A, B);
    assert!(
        p.run_until(Duration::from_secs(5), |p| p.lns.iter().all(|l| l
            .events
            .iter()
            .any(|e| matches!(e, PeeringEvent::PeerDown(_)))))
    );
    // Changes meanwhile: A loses 10 sessions, B gains 5.
    let now = p.sim.now();
    for s in 1..=10 {
        p.lns[0].peering.session_removed(now, 1, s);
    }
    p.sessions(1, 35);
    p.sim.heal(A, B);
    assert!(p.run_until(Duration::from_secs(10), |p| p.in_sync()
        && p.held(1, 0) == 40
        && p.held(0, 1) == 35));
    // Incremental changes after the resync: acknowledged within a round
    // trip of the 1 ms link.
    for n in 20..40 {
        p.sessions(0, n);
        p.run_until(Duration::from_millis(5), |_| false);
    }
    assert!(p.run_until(Duration::from_secs(2), |p| p.in_sync()));
    let lag = p.lns[0].peering.lag().unwrap();
    assert!(
        lag.value_at_quantile(0.99) <= 2_100,
        "{}",
        lag.value_at_quantile(0.99)
    );
    println!(
        "peering: {} offloads from A, lag p50 {} µs, p99 {} µs",
        lag.len(),
        lag.value_at_quantile(0.5),
        lag.value_at_quantile(0.99)
    );
}

#[test]
fn lsorqs_from_an_address_that_is_not_a_peer_are_not_taken() {
    let mut p = Pair::new();
    assert!(p.run_until(Duration::from_secs(5), |p| p.in_sync()));
    // A LAC (not a configured peer) with a tunnel to A sends an LSORQ.
    let lac_addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
    let lac = p.sim.add_node(
        lac_addr,
        Endpoint::new(
            Config {
                ha: Some(HaConfig::default()),
                ..Config::lac("lac")
            },
            rng(9),
        )
        .unwrap(),
    );
    let now = p.sim.now();
    let tunnel = p.sim.node_mut(lac).connect(now, A).unwrap();
    // Not through pump: A's owner would pass the LAC's events to its node.
    p.sim.run_for(Duration::from_secs(1)).unwrap();
    let request = HaMessage::OffloadRequest(OffloadRequest {
        operation: OffloadOperation::BulkStart,
        tunnel: None,
        session: None,
        epoch: None,
        state: None,
    });
    let now = p.sim.now();
    p.sim
        .node_mut(lac)
        .send_ha_message(now, tunnel, None, request.to_control(false))
        .unwrap();
    p.sim.run_for(Duration::from_secs(1)).unwrap();
    let now = p.sim.now();
    let a = p.lns[0].node;
    let requests_before = p.lns[0].peering.store().stats().requests;
    for (_, e) in p.sim.take_events(a) {
        let endpoint = p.sim.node_mut(a);
        let mine = p.lns[0].peering.handle_event(now, endpoint, &e);
        if matches!(e, Event::Message { .. }) {
            assert!(
                !mine,
                "an LSORQ from a LAC is the node's business, not the store's"
            );
        }
    }
    assert_eq!(p.lns[0].peering.store().stats().requests, requests_before);
}

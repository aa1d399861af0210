//! LNS-to-LNS state offload on the simulated network (DESIGN.md §1 item 2):
//! a primary LNS's `OffloadSender` and a peer LNS's `OffloadStore`, each
//! behind an `l2tp::Endpoint`, over an authenticated LNS-LNS tunnel. Bulk
//! sync, incremental changes, loss, reconnects, fencing by Ownership-Epoch,
//! the periodic refresh, and a bulk sync of 100,000 sessions.

#![cfg(test)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use controlplane::ha::message::{HaMessage, SessionIdentity, TunnelIdentity};
use controlplane::ha::offload::{OffloadConfig, OffloadSender, OffloadStore, SenderEvent};
use controlplane::ha::state::SessionState;
use controlplane::l2tp::{
    Config, Endpoint, Event, HaConfig, Retransmission, TunnelDownReason, TunnelHandle,
};
use controlplane::ppp::{AuthMethod, IpcpResult, LcpOptions, LinkState, Role};
use controlplane::sim::{LinkConditions, NodeId, Sim};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The LNSs' core-side addresses (the lab's), where they talk to each other.
const PRIMARY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 1701);
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 12), 1701);
/// The primary's address as the LAC knows it (wan side).
const PRIMARY_WAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
const SECRET: &[u8] = b"lns-peering-secret";

fn rng(seed: u64) -> Box<ChaCha8Rng> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

/// An LNS that peers with another: HA on, tunnel authentication required.
fn lns(name: &str, secret: Option<&[u8]>) -> Config {
    Config {
        secret: secret.map(<[u8]>::to_vec),
        require_authentication: secret.is_some(),
        ha: Some(HaConfig::default()),
        receive_window: 512,
        ..Config::lns(name)
    }
}

fn tunnel(id: u16) -> TunnelIdentity {
    TunnelIdentity {
        lns_tunnel_id: id,
        lac_tunnel_id: id.wrapping_add(1000),
        lac: LAC,
        primary_lns: PRIMARY_WAN,
    }
}

fn session(id: u16) -> SessionIdentity {
    SessionIdentity {
        lns_session_id: id,
        lac_session_id: id ^ 0x5555,
    }
}

/// A subscriber's state after CHAP and IPCP; `n` makes it distinct.
fn state(n: u32, version: u32) -> SessionState {
    let mut s = SessionState::new(LinkState {
        role: Role::Server,
        lcp_local: LcpOptions {
            mru: 1492,
            auth: Some(AuthMethod::ChapMd5),
            magic_number: n.wrapping_mul(2_654_435_761),
            ..LcpOptions::default()
        },
        lcp_peer: LcpOptions {
            mru: 1492,
            magic_number: n ^ 0xdead_beef,
            ..LcpOptions::default()
        },
        auth_method: Some(AuthMethod::ChapMd5),
        username: Some(format!("sub{n}").into_bytes()),
        ipcp: Some(IpcpResult {
            local: Some(Ipv4Addr::new(100, 64, 0, 1)),
            peer: Some(Ipv4Addr::from(0x6440_0000 + n)),
            primary_dns: Some(Ipv4Addr::new(9, 9, 9, 9)),
            secondary_dns: None,
        }),
        ipv6cp: None,
    });
    s.accounting.session_id = format!("{n:016X}");
    s.accounting.start_time_unix = 1_700_000_000 + u64::from(n);
    s.accounting.counters.input_octets = u64::from(version) * 1000;
    s
}

/// The two LNSs, the sender at the primary and the store at the peer,
/// and the glue an LNS node will have: TunnelUp/Down to the sender, LSORQ
/// to the store, LSORS back to the sender.
struct Pair {
    sim: Sim<Endpoint>,
    primary: NodeId,
    peer: NodeId,
    sender: OffloadSender,
    store: OffloadStore,
    link: Option<TunnelHandle>,
    sender_events: Vec<SenderEvent>,
    downs: usize,
}

impl Pair {
    fn new(seed: u64, link: LinkConditions, config: OffloadConfig) -> Pair {
        Pair::with_timers(seed, link, config, |c| c)
    }

    /// With the LNS-LNS tunnel's configuration adjusted by `tune`.
    fn with_timers(
        seed: u64,
        link: LinkConditions,
        config: OffloadConfig,
        tune: fn(Config) -> Config,
    ) -> Pair {
        let mut sim = Sim::new(rng(seed), link);
        sim.max_steps = 50_000_000;
        let primary = sim.add_node(
            PRIMARY,
            Endpoint::new(tune(lns("lns1", Some(SECRET))), rng(seed + 1)).unwrap(),
        );
        let peer = sim.add_node(
            PEER,
            Endpoint::new(tune(lns("lns2", Some(SECRET))), rng(seed + 2)).unwrap(),
        );
        Pair {
            sim,
            primary,
            peer,
            sender: OffloadSender::new(config),
            store: OffloadStore::new(),
            link: None,
            sender_events: Vec::new(),
            downs: 0,
        }
    }

    fn connect(&mut self) {
        let now = self.sim.now();
        self.sim.node_mut(self.primary).connect(now, PEER).unwrap();
    }

    fn pump(&mut self) {
        let now = self.sim.now();
        for (_, e) in self.sim.take_events(self.primary) {
            match e {
                Event::TunnelUp { tunnel, peer, .. } => {
                    assert!(peer.ha.is_some(), "the peer LNS is HA-capable");
                    self.link = Some(tunnel);
                    self.sender.connected(now);
                }
                Event::TunnelDown { tunnel, .. } if Some(tunnel) == self.link => {
                    self.link = None;
                    self.downs += 1;
                    self.sender.disconnected();
                }
                Event::Message { message, .. } => {
                    if let Ok(HaMessage::OffloadReply(r)) = HaMessage::from_control(&message) {
                        self.sender.handle_reply(now, &r);
                    }
                }
                _ => {}
            }
        }
        for (_, e) in self.sim.take_events(self.peer) {
            if let Event::Message {
                tunnel, message, ..
            } = e
            {
                let Ok(HaMessage::OffloadRequest(r)) = HaMessage::from_control(&message) else {
                    continue;
                };
                let source = *self.sim.node(self.peer).tunnel_remote(tunnel).unwrap().ip();
                let reply = self.store.handle_request(source, &r);
                self.sim
                    .node_mut(self.peer)
                    .send_ha_message(
                        now,
                        tunnel,
                        None,
                        HaMessage::OffloadReply(reply).to_control(false),
                    )
                    .unwrap();
            }
        }
        if let Some(t) = self.link {
            while let Some(request) = self.sender.poll_request(now) {
                // Session-State hidden (RFC 2661 §4.3): the tunnel has a secret.
                let m = HaMessage::OffloadRequest(request).to_control(true);
                self.sim
                    .node_mut(self.primary)
                    .send_ha_message(now, t, None, m)
                    .unwrap();
            }
        }
        while let Some(e) = self.sender.poll_event() {
            self.sender_events.push(e);
        }
    }

    /// Run until `done` or `limit` of simulated time has passed.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Pair) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            let refresh = self.sender.poll_timeout();
            let until = refresh.map_or(deadline, |r| r.min(deadline));
            let stepped = self.sim.step(until);
            let now = self.sim.now();
            if refresh.is_some_and(|r| r <= now) {
                self.sender.handle_timeout(now);
            } else if !stepped && now >= deadline {
                self.pump();
                return done(self);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    fn sync(&mut self, limit: Duration) {
        assert!(
            self.run_until(limit, |p| p.sender.in_sync()),
            "in sync within {limit:?}: {:?}",
            self.sender.stats()
        );
    }

    /// The store holds exactly what the sender says the peer should.
    #[track_caller]
    fn assert_store_matches(&self) {
        let expected: BTreeSet<(TunnelIdentity, SessionIdentity, u32, Vec<u8>)> = self
            .sender
            .expected()
            .map(|(t, s, e, b)| (t, s, e, b.to_vec()))
            .collect();
        let held: BTreeSet<(TunnelIdentity, SessionIdentity, u32, Vec<u8>)> = self
            .store
            .tunnels()
            .flat_map(|t| {
                t.sessions
                    .values()
                    .map(move |s| (t.identity, s.identity, s.epoch, s.blob.clone()))
            })
            .collect();
        assert_eq!(held.len(), expected.len());
        assert!(held == expected, "the store differs from the sender's map");
        assert_eq!(self.store.session_count(), self.sender.session_count());
    }
}

fn lossy(seed_loss: f64) -> LinkConditions {
    let mut link = LinkConditions::delay(Duration::from_millis(1));
    link.jitter = Duration::from_micros(500);
    link.loss = seed_loss;
    link.duplicate = 0.02;
    link.reorder = 0.05;
    link
}

/// Changes before, during and after the bulk sync over a link that loses
/// `loss` of the datagrams; at the end the store holds exactly the sender's
/// map.
fn converge_over(loss: f64, tune: fn(Config) -> Config, timers: &str) {
    let mut p = Pair::with_timers(11, lossy(loss), OffloadConfig::default(), tune);
    // State before the peer connects: carried by the bulk sync.
    let now = p.sim.now();
    for n in 0..200u32 {
        let t = (n % 4) as u16 + 1;
        let s = (n + 1) as u16;
        p.sender
            .add_or_update(now, tunnel(t), session(s), 1, &state(n, 0))
            .unwrap();
    }
    p.connect();
    let mut dice = ChaCha8Rng::seed_from_u64(99);
    // Changes while the bulk sync runs and after: updates, removes, new
    // sessions, a whole tunnel going.
    for round in 0..40u32 {
        p.run_for(Duration::from_millis(20));
        let now = p.sim.now();
        for _ in 0..20 {
            let n = dice.next_u32() % 300;
            let t = (n % 4) as u16 + 1;
            let s = (n + 1) as u16;
            match dice.next_u32() % 3 {
                0 => p.sender.remove(now, t, s),
                _ => p
                    .sender
                    .add_or_update(now, tunnel(t), session(s), 1, &state(n, round))
                    .unwrap(),
            }
        }
        if round == 25 {
            p.sender.remove_tunnel(now, 3);
        }
    }
    p.sync(Duration::from_secs(120));
    p.assert_store_matches();
    assert!(p.sim.stats().lost > 0, "the link lost datagrams");
    assert_eq!(p.downs, 0);
    let lag = p.sender.lag();
    assert!(!lag.is_empty());
    println!(
        "offload lag over a 1 ms link with {}% loss, {timers} timers: {} changes, p50 {} µs, p99 {} µs, max {} µs",
        loss * 100.0,
        lag.len(),
        lag.value_at_quantile(0.5),
        lag.value_at_quantile(0.99),
        lag.max()
    );
    assert_eq!(p.sender.stats().bulk_syncs, 1);
    assert_eq!(p.sender.stats().replies_out_of_order, 0);
}

/// Retransmission timers for an LNS-LNS tunnel on a LAN: the lag under loss
/// is the control channel's retransmission timeout (RFC 2661 §5.8 recommends
/// 1 s, for any path).
fn lan_timers(c: Config) -> Config {
    Config {
        retransmission: Retransmission {
            initial: Duration::from_millis(50),
            cap: Duration::from_secs(1),
            max_retries: 10,
        },
        ack_delay: Duration::from_millis(5),
        ..c
    }
}

#[test]
fn after_changes_and_losses_the_store_equals_the_senders_map() {
    converge_over(0.1, |c| c, "RFC");
    converge_over(0.1, lan_timers, "LAN");
}

#[test]
fn after_changes_and_a_little_loss_the_store_equals_the_senders_map() {
    converge_over(0.01, |c| c, "RFC");
    converge_over(0.01, lan_timers, "LAN");
}

#[test]
fn incremental_changes_on_a_clean_link_are_acknowledged_within_a_round_trip() {
    // A LAN between the LNSs: 100 µs each way.
    let mut p = Pair::new(
        12,
        LinkConditions::delay(Duration::from_micros(100)),
        OffloadConfig::default(),
    );
    p.connect();
    p.sync(Duration::from_secs(5));
    // 1,000 sessions come up one by one, 1 ms apart, then half go.
    for n in 0..1000u32 {
        let now = p.sim.now();
        p.sender
            .add_or_update(now, tunnel(1), session(n as u16 + 1), 1, &state(n, 0))
            .unwrap();
        p.run_for(Duration::from_millis(1));
    }
    for n in (0..1000u16).step_by(2) {
        let now = p.sim.now();
        p.sender.remove(now, 1, n + 1);
        p.run_for(Duration::from_millis(1));
    }
    p.sync(Duration::from_secs(5));
    p.assert_store_matches();
    let lag = p.sender.lag();
    println!(
        "offload lag over a 100 µs link: {} changes, p50 {} µs, p99 {} µs, max {} µs",
        lag.len(),
        lag.value_at_quantile(0.5),
        lag.value_at_quantile(0.99),
        lag.max()
    );
    // One round trip, nothing queued: the LSORS is the acknowledgement.
    assert!(
        lag.value_at_quantile(0.99) <= 1_000,
        "{}",
        lag.value_at_quantile(0.99)
    );
}

#[test]
fn a_peer_without_the_shared_secret_is_refused() {
    let mut p = Pair::new(
        3,
        LinkConditions::delay(Duration::from_millis(1)),
        OffloadConfig::default(),
    );
    let intruder_addr = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 66), 1701);
    let wrong_addr = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 67), 1701);
    let intruder = p.sim.add_node(
        intruder_addr,
        Endpoint::new(lns("x", None), rng(7)).unwrap(),
    );
    let wrong = p.sim.add_node(
        wrong_addr,
        Endpoint::new(lns("y", Some(b"not-the-secret")), rng(8)).unwrap(),
    );
    let now = p.sim.now();
    p.sim.node_mut(intruder).connect(now, PEER).unwrap();
    p.sim.node_mut(wrong).connect(now, PEER).unwrap();
    p.run_for(Duration::from_secs(5));
    for node in [intruder, wrong] {
        let reason = p
            .sim
            .events(node)
            .iter()
            .find_map(|(_, e)| match e {
                Event::TunnelDown { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("refused");
        assert!(
            matches!(
                reason,
                TunnelDownReason::StopCcnReceived(_) | TunnelDownReason::AuthenticationFailed(_)
            ),
            "{reason:?}"
        );
        assert!(!p
            .sim
            .events(node)
            .iter()
            .any(|(_, e)| matches!(e, Event::TunnelUp { .. })));
    }
    // The peer never had a tunnel up with either (events were taken by
    // pump: nothing was delivered to the store).
    assert_eq!(p.store.stats().requests, 0);
    assert_eq!(
        p.sim.node(p.peer).tunnel_count(),
        p.sim.node(p.peer).tunnels().count()
    );
    // The real primary still gets in.
    p.connect();
    p.sync(Duration::from_secs(5));
}

#[test]
fn a_reconnect_resyncs_and_the_bulk_end_removes_what_went_meanwhile() {
    let mut p = Pair::new(
        5,
        LinkConditions::delay(Duration::from_millis(1)),
        OffloadConfig::default(),
    );
    let now = p.sim.now();
    for n in 0..100u32 {
        p.sender
            .add_or_update(now, tunnel(1), session(n as u16 + 1), 1, &state(n, 0))
            .unwrap();
    }
    p.connect();
    p.sync(Duration::from_secs(5));
    p.assert_store_matches();
    // Cut the LNS-LNS link until the tunnel fails.
    p.sim.partition(PRIMARY, PEER);
    assert!(p.run_until(Duration::from_secs(120), |p| p.link.is_none()));
    let now = p.sim.now();
    for s in 1..=30u16 {
        p.sender.remove(now, 1, s);
    }
    for n in 100..120u32 {
        p.sender
            .add_or_update(now, tunnel(2), session(n as u16), 1, &state(n, 0))
            .unwrap();
    }
    assert_eq!(p.store.session_count(), 100, "the store keeps what it had");
    p.sim.heal(PRIMARY, PEER);
    p.connect();
    p.sync(Duration::from_secs(10));
    p.assert_store_matches();
    assert_eq!(p.store.session_count(), 90);
    assert_eq!(p.sender.stats().bulk_syncs, 2);
}

#[test]
fn an_adopted_session_fences_the_primary_that_offers_it_again() {
    let mut p = Pair::new(
        6,
        LinkConditions::delay(Duration::from_millis(1)),
        OffloadConfig::default(),
    );
    let now = p.sim.now();
    for n in 0..10u32 {
        p.sender
            .add_or_update(now, tunnel(1), session(n as u16 + 1), 7, &state(n, 0))
            .unwrap();
    }
    p.connect();
    p.sync(Duration::from_secs(5));
    // The LAC moved session 3 to the peer (failure switchover).
    let adopted = p.store.adopt(PRIMARY_WAN, 1, 3).expect("held");
    assert_eq!(adopted.epoch, 8);
    assert_eq!(adopted.state, state(2, 0));
    assert_eq!(
        p.store
            .find_session(PRIMARY_WAN, 3)
            .map(|(t, s)| (t.identity, s.epoch)),
        Some((tunnel(1), 8))
    );
    // The primary still thinks it has it and offers an update.
    let now = p.sim.now();
    p.sender
        .add_or_update(now, tunnel(1), session(3), 7, &state(2, 1))
        .unwrap();
    p.sync(Duration::from_secs(5));
    assert!(p.sender_events.contains(&SenderEvent::Fenced {
        tunnel: tunnel(1),
        session: session(3),
        epoch: 8
    }));
    // It forgot it; the peer keeps its own, unchanged.
    assert_eq!(p.sender.session_count(), 9);
    let held = p.store.session(PRIMARY_WAN, 1, 3).unwrap();
    assert!(held.adopted);
    assert_eq!(held.state, state(2, 0));
    // A bulk sync (refresh) does not remove it either.
    p.sender.connected(p.sim.now());
    p.sync(Duration::from_secs(5));
    assert!(p.store.session(PRIMARY_WAN, 1, 3).is_some());
    assert_eq!(p.store.stats().stale_refused, 1);
}

#[test]
fn the_periodic_refresh_runs_a_bulk_sync() {
    let config = OffloadConfig {
        refresh_interval: Some(Duration::from_secs(10)),
        ..OffloadConfig::default()
    };
    let mut p = Pair::new(8, LinkConditions::delay(Duration::from_millis(1)), config);
    let now = p.sim.now();
    p.sender
        .add_or_update(now, tunnel(1), session(1), 1, &state(1, 0))
        .unwrap();
    p.connect();
    p.sync(Duration::from_secs(5));
    p.run_for(Duration::from_secs(25));
    assert_eq!(p.sender.stats().bulk_syncs, 3);
    p.assert_store_matches();
}

#[test]
fn a_bulk_sync_of_100000_sessions() {
    const SESSIONS: u32 = 100_000;
    // One switch between the LNSs: 50 µs each way.
    let mut p = Pair::new(
        21,
        LinkConditions::delay(Duration::from_micros(50)),
        OffloadConfig {
            window: 256,
            refresh_interval: None,
        },
    );
    let now = p.sim.now();
    for n in 0..SESSIONS {
        let t = (n / 10_000) as u16 + 1;
        let s = (n % 10_000) as u16 + 1;
        p.sender
            .add_or_update(now, tunnel(t), session(s), 1, &state(n, 0))
            .unwrap();
    }
    // Start once the tunnel is up, to time the sync alone.
    p.connect();
    assert!(p.run_until(Duration::from_secs(5), |p| p.link.is_some()));
    let started = p.sim.now();
    let wall = std::time::Instant::now();
    p.sync(Duration::from_secs(600));
    let simulated = p.sim.now() - started;
    let wall = wall.elapsed();
    assert_eq!(p.store.session_count(), SESSIONS as usize);
    p.assert_store_matches();
    println!(
        "bulk sync of {SESSIONS} sessions (window 256, 100 µs RTT, hidden Session-State): \
         simulated {:.3} s, wall {:.3} s, {} LSORQs",
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        p.sender.stats().requests
    );
}

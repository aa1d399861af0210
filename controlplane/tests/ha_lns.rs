//! The LNS node's HA integration in simulation (DESIGN.md §1 items 2 and 4,
//! docs/ha-protocol.md §5): two `lns::Node`s peered, and a LAC endpoint
//! with PPP clients, driven by hand here (the LAC node's own switchover is
//! not part of this). Sessions up at LNS1 are offloaded to LNS2; LNS1 dies
//! (is partitioned off); the LAC recovers every session at LNS2, which
//! adopts them with the same address and LCP magic numbers while the PPP
//! clients see nothing; LNS1 comes back, learns of the higher epochs and
//! drops its sessions silently.

#![cfg(test)]

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::radius::packet::{packet_digest, AttributeType, Code, Packet, Repr};
use controlplane::aaa::radius::AcctStatus;
use controlplane::aaa::radius::{self, ClientConfig, Counters, Server};
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::ha::message::SwitchoverRequest;
use controlplane::l2tp::{self, SessionHandle, TunnelHandle};
use controlplane::lns::{
    self, AdoptedCall, ConnectedCall, EndCause, HaError, LoadConfig, LoadEvent, LoadSample,
    SwitchoverType, Watermarks,
};
use controlplane::ppp;
use controlplane::sim::{self, LinkConditions, NodeId, Sim};
use controlplane::time::Instant;

#[path = "support/ha_net.rs"]
mod ha_net;
#[path = "support/ha_parties.rs"]
mod ha_parties;

use ha_net::{rng, LAC, LNS1, LNS2};
use ha_parties::{lac_config, peered_ha_config, subscriber_ppp, Lac, LacEvent, PartyEvent};

/// The LAC of these tests: a window for many sessions, and PPP echoes
/// every second, to show the peer answers them after a move.
fn lac() -> Lac {
    let mut ppp = subscriber_ppp();
    ppp.lcp.echo_interval = Some(Duration::from_secs(1));
    Lac::new(
        l2tp::Config {
            receive_window: 256,
            ..lac_config()
        },
        ppp,
    )
}

// --- the world --------------------------------------------------------------

type Party = ha_parties::Party<RadiusServer>;
type Ev = PartyEvent<()>;

const RADIUS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 1812);
const RADIUS_SECRET: &str = "radius-secret";

/// One accounting record as the RADIUS server got it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AcctRecord {
    at: Instant,
    from: SocketAddr,
    /// Acct-Status-Type (RFC 2866 §5.1): 1 Start, 2 Stop, 3 Interim-Update.
    status: u32,
    session_id: String,
    session_time: Option<u32>,
    input_octets: Option<u32>,
}

/// A RADIUS server that accepts every subscriber (no Framed-IP-Address:
/// the LNS's pool) and acknowledges and records every accounting record.
#[derive(Default)]
struct RadiusServer {
    records: Vec<AcctRecord>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl RadiusServer {
    fn handle(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        let Ok(request) = Packet::new_checked(payload) else {
            return;
        };
        let u32_of = |kind| request.attribute(kind).and_then(radius::packet::value_u32);
        let code = match request.code() {
            Code::AccessRequest => Code::AccessAccept,
            Code::AccountingRequest => {
                self.records.push(AcctRecord {
                    at: now,
                    from,
                    status: u32_of(AttributeType::ACCT_STATUS_TYPE).unwrap_or(0),
                    session_id: String::from_utf8_lossy(
                        request
                            .attribute(AttributeType::ACCT_SESSION_ID)
                            .unwrap_or_default(),
                    )
                    .into_owned(),
                    session_time: u32_of(AttributeType::ACCT_SESSION_TIME),
                    input_octets: u32_of(AttributeType::ACCT_INPUT_OCTETS),
                });
                Code::AccountingResponse
            }
            _ => return,
        };
        let mut bytes = Repr {
            code,
            identifier: request.identifier(),
            authenticator: [0; 16],
            attributes: Vec::new(),
        }
        .to_bytes()
        .unwrap();
        // RFC 2865 §3 / RFC 2866 §4.2: Response Authenticator over the
        // response with the request's authenticator and the secret.
        let digest = packet_digest(&bytes, &request.authenticator(), RADIUS_SECRET.as_bytes());
        bytes[4..20].copy_from_slice(&digest);
        self.out.push_back((from, bytes));
    }

    fn records_from(&self, lns: SocketAddrV4, status: u32) -> Vec<&AcctRecord> {
        self.records
            .iter()
            .filter(|r| r.from == SocketAddr::V4(lns) && r.status == status)
            .collect()
    }
}

impl sim::Node for RadiusServer {
    type Event = ();

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.handle(now, from, payload);
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, bytes) = self.out.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(to)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_event(&mut self) -> Option<()> {
        None
    }
}

/// How the world's LNSs are set up.
#[derive(Clone, Default)]
struct Opts {
    /// Offload window.
    window: usize,
    /// Authenticate and account through [`RadiusServer`] (Interim-Updates
    /// every 10 s) instead of a users file.
    radius: bool,
    /// LNS1's load monitor.
    load: Option<LoadConfig>,
    /// The periodic refresh (bulk sync) interval.
    refresh: Option<Duration>,
    /// LNS2 reports its calls to a (pretend) fast path.
    lns2_reports_calls: bool,
}

fn lns_node(name: &str, us: SocketAddrV4, peer: SocketAddrV4, opts: &Opts, seed: u64) -> lns::Node {
    let mut config = lns::Config::new(name, Ipv4Addr::new(100, 64, 0, 1));
    let mut ha = peered_ha_config(us, peer);
    ha.offload.window = opts.window;
    if let Some(refresh) = opts.refresh {
        ha.offload.refresh_interval = Some(refresh);
    }
    if us == LNS1 {
        ha.load = opts.load;
    }
    config.ha = Some(ha);
    let authenticator = if opts.radius {
        // One port for both (the simulated network knows one address per
        // node); the client tells the answers apart by their Code.
        let server = |_port| Server {
            address: SocketAddr::V4(RADIUS),
            secret: RADIUS_SECRET.as_bytes().to_vec(),
        };
        let client_config = ClientConfig {
            interim_interval: Some(Duration::from_secs(10)),
            nas_ip_address: Some(*us.ip()),
            ..ClientConfig::new(vec![server(1812)], vec![server(1813)])
        };
        Authenticator::Radius(Box::new(
            radius::Client::new(client_config, rng(seed + 100)).unwrap(),
        ))
    } else {
        Authenticator::local(Users::parse("sub pw\n", "users").unwrap())
    };
    // Both LNSs draw from the same range (the peer must take the
    // primary's addresses as framed ones, not hand them out again).
    let mut node = lns::Node::new(
        config,
        authenticator,
        AddressPool::parse(&["100.64.0.0/21"]).unwrap(),
        rng(seed),
    )
    .unwrap();
    // Session time is carried over in wall-clock seconds.
    node.set_wall_clock(Instant::ZERO, Duration::from_secs(1_800_000_000));
    if us == LNS2 && opts.lns2_reports_calls {
        node.report_connected_calls(true);
    }
    node
}

struct World {
    sim: Sim<Party>,
    lac: NodeId,
    lns1: NodeId,
    lns2: NodeId,
    radius: Option<NodeId>,
    lns1_events: Vec<lns::Event>,
    lns2_events: Vec<lns::Event>,
    lac_events: Vec<LacEvent>,
    /// LNS2's reported calls: when, the call, its adoption.
    lns2_calls: Vec<(Instant, ConnectedCall, Option<AdoptedCall>)>,
    /// Release LNS2's reported calls as soon as they are reported (a fast
    /// path that programs at once).
    auto_release: bool,
}

impl World {
    fn new(window: usize) -> World {
        World::with(Opts {
            window,
            ..Opts::default()
        })
    }

    fn with(opts: Opts) -> World {
        let mut sim = Sim::new(rng(1), LinkConditions::delay(Duration::from_millis(1)));
        sim.max_steps = 20_000_000;
        let lns1 = sim.add_node(
            LNS1,
            Party::Lns(Box::new(lns_node("lns1", LNS1, LNS2, &opts, 2))),
        );
        let lns2 = sim.add_node(
            LNS2,
            Party::Lns(Box::new(lns_node("lns2", LNS2, LNS1, &opts, 3))),
        );
        let lac = sim.add_node(LAC, Party::Lac(Box::new(lac())));
        let radius = opts
            .radius
            .then(|| sim.add_node(RADIUS, Party::Other(Box::default())));
        World {
            sim,
            lac,
            lns1,
            lns2,
            radius,
            lns1_events: Vec::new(),
            lns2_events: Vec::new(),
            lac_events: Vec::new(),
            lns2_calls: Vec::new(),
            auto_release: true,
        }
    }

    fn lns(&self, id: NodeId) -> &lns::Node {
        self.sim.node(id).lns()
    }

    fn lns_mut(&mut self, id: NodeId) -> &mut lns::Node {
        self.sim.node_mut(id).lns_mut()
    }

    fn radius(&self) -> &RadiusServer {
        self.sim.node(self.radius.unwrap()).other()
    }

    fn lac(&self) -> &Lac {
        self.sim.node(self.lac).lac()
    }

    fn lac_mut(&mut self) -> &mut Lac {
        self.sim.node_mut(self.lac).lac_mut()
    }

    fn collect(&mut self) {
        let now = self.sim.now();
        let release = self.auto_release;
        let lns2 = self.lns_mut(self.lns2);
        let mut calls = Vec::new();
        while let Some(call) = lns2.poll_connected_call() {
            calls.push((now, call, lns2.adopted_call(call.session)));
            if release {
                lns2.release_call(now, call.session);
            }
        }
        self.lns2_calls.extend(calls);
        for (id, out) in [(self.lns1, 1), (self.lns2, 2), (self.lac, 0)] {
            for (_, e) in self.sim.take_events(id) {
                match (e, out) {
                    (Ev::Lns(e), 1) => self.lns1_events.push(e),
                    (Ev::Lns(e), _) => self.lns2_events.push(e),
                    (Ev::Lac(e), _) => self.lac_events.push(e),
                    (Ev::Other(()), _) => {}
                }
            }
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        loop {
            self.collect();
            if done(self) {
                return true;
            }
            if !self.sim.step(deadline) {
                self.collect();
                return done(self);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// A world whose LNS2 reports its calls to a (pretend) fast path that
    /// releases them only when the test says so.
    fn with_calls_held_at_lns2() -> World {
        let mut w = World::with(Opts {
            window: 256,
            lns2_reports_calls: true,
            ..Opts::default()
        });
        w.auto_release = false;
        w
    }

    /// Waits for the LAC to see its tunnel to LNS1 go down (the 300 ms
    /// dead interval).
    fn await_primary_down(&mut self) {
        let primary = self.lac().primary.as_ref().unwrap().0;
        assert!(self.run_until(Duration::from_secs(2), |w| w
            .lac_events
            .contains(&LacEvent::TunnelDown(primary))));
    }

    /// The LAC starts recovering its sessions at LNS1's peer; returns when.
    fn recover(&mut self) -> Instant {
        let now = self.sim.now();
        self.lac_mut().recover(now);
        now
    }

    /// Waits up to `limit` for every subscriber's session to be recovered
    /// at the peer with the next ownership epoch, 2.
    fn await_every_session_recovered(&mut self, limit: Duration) {
        assert!(self.run_until(limit, |w| {
            w.lac().subs.iter().all(|s| s.recovered == Some(2))
        }));
    }

    fn subs_up(&self) -> usize {
        self.lac().subs.iter().filter(|s| s.ups > 0).count()
    }

    fn kill_lns1(&mut self) {
        self.sim.partition(LAC, LNS1);
        self.sim.partition(LNS1, LNS2);
    }

    fn revive_lns1(&mut self) {
        self.sim.heal(LAC, LNS1);
        self.sim.heal(LNS1, LNS2);
    }

    /// Every session LNS1 holds, as LNS2's store should hold it: (LNS1's
    /// Tunnel ID, Session ID) → (address, LNS magic).
    fn lns1_sessions(&self) -> BTreeMap<(u16, u16), (Ipv4Addr, u32)> {
        let n = self.lns(self.lns1);
        let tunnel_ids: HashMap<TunnelHandle, u16> = n
            .endpoint()
            .tunnels()
            .filter_map(|t| Some((t, n.endpoint().tunnel_ids(t)?.0)))
            .collect();
        n.sessions()
            .filter_map(|h| {
                let link = n.link(h)?.state();
                let local_sid = self.lns1_events.iter().find_map(|e| match e {
                    lns::Event::SessionEstablished(s) if s.session == h => Some(s.local_session_id),
                    _ => None,
                })?;
                Some((
                    (*tunnel_ids.get(&h.tunnel)?, local_sid),
                    (n.session_address(h)?, link.lcp_local.magic_number),
                ))
            })
            .collect()
    }

    fn store_sessions(&self) -> BTreeMap<(u16, u16), (Ipv4Addr, u32)> {
        let store = self.lns(self.lns2).offload_store().unwrap();
        store
            .tunnels()
            .filter(|t| t.identity.primary_lns == *LNS1.ip())
            .flat_map(|t| {
                t.sessions.iter().map(move |(sid, s)| {
                    (
                        (t.identity.lns_tunnel_id, *sid),
                        (
                            s.state.link.peer_ipv4().unwrap(),
                            s.state.link.lcp_local.magic_number,
                        ),
                    )
                })
            })
            .collect()
    }
}

fn bring_up(w: &mut World, n: usize) {
    let now = w.sim.now();
    w.lac_mut().dial(now, n);
    assert!(
        w.run_until(Duration::from_secs(20), |w| w.subs_up() == n),
        "every subscriber up at LNS1: {} of {n}",
        w.subs_up()
    );
}

/// Brings `n` subscribers up at LNS1 and waits until LNS2's store holds
/// every one of their sessions.
fn bring_up_offloaded(w: &mut World, n: usize) {
    bring_up(w, n);
    assert!(w.run_until(Duration::from_secs(5), |w| w.store_sessions().len() == n));
}

/// The Session IDs LNS1 gave its established sessions, in the order they
/// came up.
fn lns1_session_ids(w: &World) -> Vec<u16> {
    w.lns1_events
        .iter()
        .filter_map(|e| match e {
            lns::Event::SessionEstablished(s) => Some(s.local_session_id),
            _ => None,
        })
        .collect()
}

/// LNS1 dropped all `N` sessions as moved to its peer at epoch 2: no CDN
/// to the LAC and no accounting Stop (the peer accounts for them now).
fn assert_lns1_dropped_every_moved_session_silently(w: &World) {
    let downs: Vec<&lns::EndedSession> = w
        .lns1_events
        .iter()
        .filter_map(|e| match e {
            lns::Event::SessionDown(s) => Some(&**s),
            _ => None,
        })
        .collect();
    assert_eq!(downs.len(), N);
    assert!(downs
        .iter()
        .all(|d| d.cause == EndCause::Moved { epoch: 2 } && d.cdn.is_none()));
    assert!(!w.lns1_events.iter().any(|e| matches!(
        e,
        lns::Event::Accounting {
            status: AcctStatus::Stop,
            ..
        }
    )));
}

/// No subscriber's PPP went down or came up again, and LNS2 holds all `N`
/// sessions.
fn assert_subscribers_untouched_and_at_lns2(w: &World) {
    let subs = &w.lac().subs;
    assert!(subs.iter().all(|s| s.ups == 1 && s.downs == 0));
    assert_eq!(w.lns(w.lns2).established_count(), N);
}

const N: usize = 12;

#[test]
fn sessions_at_the_primary_are_offloaded_and_a_session_down_is_removed() {
    let mut w = World::new(256);
    bring_up(&mut w, N);
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.lns(w.lns1).offload_in_sync() && w.store_sessions().len() == N
    }));
    assert_eq!(w.store_sessions(), w.lns1_sessions());
    assert_eq!(
        w.lac().primary.as_ref().unwrap().3,
        vec![*LNS2.ip()],
        "LNS1 advertised its peer"
    );
    let lag = w.lns(w.lns1).offload_lag().unwrap();
    assert!(!lag.is_empty());
    println!(
        "offload lag p50 {} us, p99 {} us (1 ms links)",
        lag.value_at_quantile(0.5),
        lag.value_at_quantile(0.99)
    );

    // A subscriber hangs up: the peer forgets its session.
    let now = w.sim.now();
    w.lac_mut().hang_up(now, 0);
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.lns(w.lns1).established_count() == N - 1 && w.store_sessions().len() == N - 1
    }));
    assert_eq!(w.store_sessions(), w.lns1_sessions());
}

#[test]
fn the_peer_adopts_every_session_of_a_dead_primary_and_the_primary_is_fenced_when_it_returns() {
    let mut w = World::new(256);
    bring_up_offloaded(&mut w, N);
    let before = w.lns1_sessions();
    let client_magics: Vec<(u32, u32)> = w
        .lac()
        .subs
        .iter()
        .map(|s| {
            let st = s.link.as_ref().unwrap().state();
            (st.lcp_local.magic_number, st.lcp_peer.magic_number)
        })
        .collect();
    let echoes_before: u64 = w
        .lac()
        .subs
        .iter()
        .map(|s| s.link.as_ref().unwrap().stats().echo_replies_received)
        .sum();

    // LNS1 dies. The LAC notices (300 ms dead interval) and recovers at
    // the peer it was given.
    w.kill_lns1();
    w.await_primary_down();
    w.recover();
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.lac().subs.iter().all(|s| s.recovered.is_some())
    }));
    assert!(w.lac().subs.iter().all(|s| s.recovered == Some(2)));

    // LNS2 holds them: same addresses and the primary's magic numbers.
    let lns2 = w.lns(w.lns2);
    assert_eq!(lns2.established_count(), N);
    assert_eq!(lns2.ha_stats().unwrap().sessions_adopted, N as u64);
    let mut adopted: Vec<(Ipv4Addr, u32)> = lns2
        .sessions()
        .map(|h| {
            (
                lns2.session_address(h).unwrap(),
                lns2.link(h).unwrap().state().lcp_local.magic_number,
            )
        })
        .collect();
    adopted.sort();
    let mut expected: Vec<(Ipv4Addr, u32)> = before.values().copied().collect();
    expected.sort();
    assert_eq!(adopted, expected);
    // Each reported as established (adopted), with an accounting
    // Interim-Update under the primary's Acct-Session-Id, never a Start.
    let adopted_events: Vec<&lns::EstablishedSession> = w
        .lns2_events
        .iter()
        .filter_map(|e| match e {
            lns::Event::SessionEstablished(s) => Some(&**s),
            _ => None,
        })
        .collect();
    assert_eq!(adopted_events.len(), N);
    assert!(adopted_events.iter().all(|s| s.adopted_epoch == Some(2)));
    assert!(!w.lns2_events.iter().any(|e| matches!(
        e,
        lns::Event::Accounting {
            status: AcctStatus::Start,
            ..
        }
    )));
    assert_eq!(
        w.lns2_events
            .iter()
            .filter(|e| matches!(
                e,
                lns::Event::Accounting {
                    status: AcctStatus::InterimUpdate,
                    ..
                }
            ))
            .count(),
        N
    );
    // The addresses are held at LNS2: not handed out again.
    for (a, _) in &expected {
        assert!(lns2.pool().is_in_use(*a));
    }

    // The PPP clients saw nothing: no renegotiation, no down, the same
    // magic numbers, and their echoes are answered by LNS2.
    w.run_for(Duration::from_secs(5));
    let subs = &w.lac().subs;
    assert!(subs.iter().all(|s| s.ups == 1 && s.downs == 0));
    let after: Vec<(u32, u32)> = subs
        .iter()
        .map(|s| {
            let st = s.link.as_ref().unwrap().state();
            (st.lcp_local.magic_number, st.lcp_peer.magic_number)
        })
        .collect();
    assert_eq!(after, client_magics);
    let echoes_after: u64 = subs
        .iter()
        .map(|s| s.link.as_ref().unwrap().stats().echo_replies_received)
        .sum();
    assert!(
        echoes_after >= echoes_before + 4 * N as u64,
        "echoes answered after the move: {echoes_before} -> {echoes_after}"
    );
    assert!(subs
        .iter()
        .all(|s| s.link.as_ref().unwrap().phase() == ppp::Phase::Network));

    // LNS1 comes back: its peering reconnects, its bulk sync meets the
    // higher epochs, and it drops every session silently.
    let cdns_before = w
        .lac_events
        .iter()
        .filter(|e| matches!(e, LacEvent::CdnReceived(_)))
        .count();
    w.revive_lns1();
    assert!(w.run_until(Duration::from_secs(10), |w| {
        w.lns(w.lns1).session_count() == 0
    }));
    assert_lns1_dropped_every_moved_session_silently(&w);
    assert_eq!(w.lns(w.lns1).ha_stats().unwrap().sessions_fenced, N as u64);
    // LNS2 holds their addresses (adopted), and LNS1, back with an empty
    // pool, keeps them out of it rather than giving them to new
    // subscribers.
    assert!(w.run_until(Duration::from_secs(3), |w| {
        w.lns(w.lns1).pool().in_use() == N as u64
    }));
    w.run_for(Duration::from_secs(3));
    let cdns_after = w
        .lac_events
        .iter()
        .filter(|e| matches!(e, LacEvent::CdnReceived(_)))
        .count();
    assert_eq!(cdns_before, cdns_after, "no CDN reached the LAC");
    assert_subscribers_untouched_and_at_lns2(&w);
}

#[test]
fn a_switchover_during_the_bulk_sync_adopts_what_was_offloaded_and_refuses_the_rest() {
    // One LSORQ at a time over a slow LNS-LNS link: the bulk sync takes a
    // while.
    let mut w = World::new(1);
    w.sim.partition(LNS1, LNS2);
    bring_up(&mut w, N);
    assert_eq!(w.store_sessions().len(), 0);
    w.sim
        .set_link(LNS1, LNS2, LinkConditions::delay(Duration::from_millis(20)));
    w.sim
        .set_link(LNS2, LNS1, LinkConditions::delay(Duration::from_millis(20)));
    w.sim.heal(LNS1, LNS2);
    assert!(
        w.run_until(Duration::from_secs(10), |w| w.store_sessions().len()
            >= N / 2)
    );
    w.kill_lns1();
    let offloaded = w.store_sessions().len();
    assert!(offloaded < N, "the bulk sync was still running");
    w.await_primary_down();
    let offloaded = w.store_sessions().len();
    let now = w.recover();
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.lac()
            .subs
            .iter()
            .all(|s| s.recovered.is_some() || s.refused)
    }));
    // Refused at once (CDN to the ICRQ), so the LAC places fresh calls
    // without waiting: the whole recovery took a few round trips of the
    // 1 ms links, not a timer.
    let took = w.sim.now() - now;
    assert!(took < Duration::from_millis(100), "recovery took {took:?}");
    let recovered = w
        .lac()
        .subs
        .iter()
        .filter(|s| s.recovered.is_some())
        .count();
    let refused = w.lac().subs.iter().filter(|s| s.refused).count();
    assert_eq!(recovered, offloaded);
    assert_eq!(refused, N - offloaded);
    let stats = w.lns(w.lns2).ha_stats().unwrap();
    assert_eq!(stats.sessions_adopted, offloaded as u64);
    assert_eq!(stats.recoveries_refused, (N - offloaded) as u64);
    assert_eq!(w.lns(w.lns2).established_count(), offloaded);
}

#[test]
fn sessions_the_lac_moves_away_and_releases_are_dropped_silently_at_the_primary() {
    let mut w = World::new(256);
    bring_up_offloaded(&mut w, N);
    // The LAC moves every session to the peer while the primary is alive
    // (as for a granted STPLRQ), then releases the old ones.
    w.recover();
    w.await_every_session_recovered(Duration::from_secs(5));
    assert_eq!(w.lns(w.lns1).established_count(), N, "make before break");
    let now = w.sim.now();
    w.lac_mut().release_old(now);
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.lns(w.lns1).session_count() == 0
    }));
    assert_lns1_dropped_every_moved_session_silently(&w);
    assert_eq!(w.lns(w.lns1).ha_stats().unwrap().sessions_moved, N as u64);
    // Their addresses went with them: LNS1 keeps them out of its pool, so
    // no new subscriber of its own gets one while LNS2 routes it.
    assert_eq!(w.lns(w.lns1).pool().in_use(), N as u64, "held for LNS2");
    // The subscribers noticed nothing, and LNS2 answers their echoes.
    w.run_for(Duration::from_secs(5));
    assert_subscribers_untouched_and_at_lns2(&w);
    assert_eq!(
        w.lns(w.lns1).pool().in_use(),
        N as u64,
        "still held for LNS2"
    );
    // One hangs up at LNS2: LNS2's offload removes it, and LNS1 has its
    // address back.
    let now = w.sim.now();
    w.lac_mut().hang_up(now, 0);
    assert!(
        w.run_until(Duration::from_secs(15), |w| {
            w.lns(w.lns1).pool().in_use() == N as u64 - 1
        }),
        "LNS1 holds {} addresses",
        w.lns(w.lns1).pool().in_use()
    );
    assert_eq!(w.lns(w.lns1).ha_stats().unwrap().address_conflicts, 0);
}

#[test]
fn a_primary_cut_off_from_the_lac_alone_drops_the_sessions_its_peer_adopted_within_a_second() {
    let mut w = World::new(256);
    bring_up_offloaded(&mut w, N);
    // Only the LAC-primary link fails; LNS1 and LNS2 still talk.
    w.sim.partition(LAC, LNS1);
    w.await_primary_down();
    w.recover();
    w.await_every_session_recovered(Duration::from_secs(5));
    let recovered_at = w.sim.now();
    // LNS2 offloads what it adopted on to LNS1, which finds its own
    // sessions there with a higher epoch: dropped long before its PPP
    // echoes to the subscribers would have failed (10 s × 3), once the
    // grace left for a make-before-break move is over.
    assert!(w.run_until(Duration::from_secs(2), |w| {
        w.lns(w.lns1).session_count() == 0
    }));
    println!(
        "primary dropped its {N} moved sessions {:.0} ms after the last recovery",
        (w.sim.now() - recovered_at).as_secs_f64() * 1000.0
    );
    assert_lns1_dropped_every_moved_session_silently(&w);
    w.run_for(Duration::from_secs(40));
    assert_subscribers_untouched_and_at_lns2(&w);
}

// --- load switchover, operator commands (issue 6 §3) -------------------------

fn stplrqs(w: &World) -> Vec<SwitchoverRequest> {
    w.lac_events
        .iter()
        .filter_map(|e| match e {
            LacEvent::SwitchoverRequested(_, r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_overloaded_lns_asks_the_lac_to_steer_new_calls_to_its_peer_and_hears_the_denial() {
    let mut w = World::with(Opts {
        window: 256,
        load: Some(LoadConfig {
            sessions: Some(Watermarks {
                high: 10.0,
                low: 5.0,
            }),
            cpu_percent: None,
            memory_percent: None,
            hold: Duration::from_secs(1),
        }),
        ..Opts::default()
    });
    bring_up(&mut w, N);
    w.lac_mut().stplrp = Err("policy".to_owned());
    let idle = LoadSample::default();
    let now = w.sim.now();
    // The node counts its own sessions: 12 established, over the high
    // watermark, but not yet for the hold time.
    assert_eq!(w.lns_mut(w.lns1).observe_load(now, idle), None);
    assert!(stplrqs(&w).is_empty());
    w.run_for(Duration::from_millis(1000));
    let now = w.sim.now();
    assert!(matches!(
        w.lns_mut(w.lns1).observe_load(now, idle),
        Some(LoadEvent::Overloaded(o)) if o.sessions && !o.cpu
    ));
    assert!(w.run_until(Duration::from_secs(1), |w| !stplrqs(w).is_empty()));
    assert_eq!(
        stplrqs(&w),
        vec![SwitchoverRequest {
            peers: vec![*LNS2.ip()],
            kind: SwitchoverType::NewSessions,
            sessions: Vec::new(),
        }]
    );
    // The LAC's denial comes back.
    w.run_for(Duration::from_millis(100));
    let answer = w.lns_mut(w.lns1).poll_switchover_answer().unwrap();
    assert!(!answer.granted);
    assert_eq!(answer.reason, "policy");
    assert_eq!(answer.kind, SwitchoverType::NewSessions);
    assert_eq!(answer.lac, LAC);
    let status = w.lns(w.lns1).ha_status().unwrap();
    assert!(status.overloaded);
    assert_eq!(status.load.unwrap().sessions, N as u64);
    assert_eq!(status.stats.switchover_requests, 1);
    assert_eq!(status.stats.switchovers_denied, 1);
    assert_eq!(status.lacs.len(), 1);
    assert!(status.lacs[0].ha_capable);
    assert_eq!(status.lacs[0].sessions, N);
    assert_eq!(
        status.lacs[0].switchover.requested.map(|r| r.1),
        Some(SwitchoverType::NewSessions)
    );
    assert!(!status.lacs[0]
        .switchover
        .answered
        .as_ref()
        .unwrap()
        .1
        .reason
        .is_empty());
    // Still overloaded: no second request.
    let now = w.sim.now();
    assert_eq!(w.lns_mut(w.lns1).observe_load(now, idle), None);
    w.run_for(Duration::from_millis(100));
    assert_eq!(stplrqs(&w).len(), 1);
}

#[test]
fn the_operators_switchover_of_listed_sessions_names_only_the_lns_sessions_that_exist() {
    let mut w = World::new(256);
    bring_up(&mut w, N);
    let ids = lns1_session_ids(&w);
    assert_eq!(ids.len(), N);
    let missing = (1..=u16::MAX).find(|id| !ids.contains(id)).unwrap();
    let now = w.sim.now();
    assert_eq!(
        w.lns_mut(w.lns1)
            .ha_switchover(now, SwitchoverType::Listed, &[missing]),
        Err(HaError::NoSuchSession(vec![missing]))
    );
    assert_eq!(
        w.lns_mut(w.lns1)
            .ha_switchover(now, SwitchoverType::Listed, &[ids[3], missing, ids[1]]),
        Ok(1)
    );
    assert!(w.run_until(Duration::from_secs(1), |w| !stplrqs(w).is_empty()));
    let mut expected = vec![ids[1], ids[3]];
    expected.sort_unstable();
    assert_eq!(
        stplrqs(&w),
        vec![SwitchoverRequest {
            peers: vec![*LNS2.ip()],
            kind: SwitchoverType::Listed,
            sessions: expected,
        }]
    );
    w.run_for(Duration::from_millis(100));
    let answer = w.lns_mut(w.lns1).poll_switchover_answer().unwrap();
    assert!(answer.granted);
    assert_eq!(answer.kind, SwitchoverType::Listed);

    // A drain asks for everything; the failback lifts the steering.
    let now = w.sim.now();
    assert_eq!(w.lns_mut(w.lns1).ha_drain(now), Ok(1));
    assert!(w.lns(w.lns1).ha_status().unwrap().draining);
    let now = w.sim.now();
    // LNS1 holds no adopted session: only the steering is lifted.
    assert_eq!(w.lns_mut(w.lns1).ha_failback(now), Ok(1));
    assert!(w.run_until(Duration::from_secs(1), |w| stplrqs(w).len() == 3));
    let kinds: Vec<(SwitchoverType, Vec<Ipv4Addr>)> =
        stplrqs(&w).into_iter().map(|r| (r.kind, r.peers)).collect();
    assert_eq!(
        kinds[1..],
        [
            (SwitchoverType::All, vec![*LNS2.ip()]),
            (SwitchoverType::NewSessions, vec![]),
        ]
    );
    assert!(!w.lns(w.lns1).ha_status().unwrap().draining);
}

/// A Session-List longer than one AVP holds (RFC 2661 §4.1: 1023 octets)
/// goes in several STPLRQs, each one readable, none lost.
#[test]
fn a_switchover_of_more_sessions_than_one_session_list_holds_goes_in_several_requests() {
    const MANY: usize = lns::MAX_LISTED * 2 + 1;
    let mut w = World::new(256);
    bring_up(&mut w, MANY);
    let mut ids = lns1_session_ids(&w);
    ids.sort_unstable();
    assert_eq!(ids.len(), MANY);
    let now = w.sim.now();
    assert_eq!(
        w.lns_mut(w.lns1)
            .ha_switchover(now, SwitchoverType::Listed, &ids),
        Ok(3)
    );
    assert!(w.run_until(Duration::from_secs(1), |w| stplrqs(w).len() == 3));
    let lists: Vec<Vec<u16>> = stplrqs(&w).into_iter().map(|r| r.sessions).collect();
    assert_eq!(
        lists.iter().map(Vec::len).collect::<Vec<_>>(),
        [lns::MAX_LISTED, lns::MAX_LISTED, 1]
    );
    assert_eq!(lists.concat(), ids);
    assert_eq!(w.lns(w.lns1).endpoint().stats().encode_errors, 0);
}

#[test]
fn failback_asks_the_lac_to_move_adopted_sessions_back_to_their_primary() {
    let mut w = World::new(256);
    bring_up_offloaded(&mut w, N);
    w.recover();
    w.await_every_session_recovered(Duration::from_secs(5));
    let adopted: Vec<u16> = {
        let mut v: Vec<u16> = w
            .lns2_events
            .iter()
            .filter_map(|e| match e {
                lns::Event::SessionEstablished(s) if s.adopted_epoch.is_some() => {
                    Some(s.local_session_id)
                }
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(adopted.len(), N);
    assert_eq!(w.lns(w.lns2).ha_status().unwrap().sessions_adopted, N);
    let now = w.sim.now();
    assert_eq!(w.lns_mut(w.lns2).ha_failback(now), Ok(2));
    assert!(w.run_until(Duration::from_secs(1), |w| stplrqs(w).len() == 2));
    assert_eq!(
        stplrqs(&w),
        vec![
            SwitchoverRequest {
                peers: vec![*LNS1.ip()],
                kind: SwitchoverType::Listed,
                sessions: adopted,
            },
            SwitchoverRequest {
                peers: vec![],
                kind: SwitchoverType::NewSessions,
                sessions: vec![],
            },
        ]
    );
}

// --- adoption into a fast path before the ICRP (C4) ---------------------------

#[test]
fn an_adopted_call_is_reported_with_its_address_and_its_icrp_waits_for_the_release() {
    let mut w = World::with_calls_held_at_lns2();
    bring_up_offloaded(&mut w, N);
    let before = w.lns1_sessions();
    w.kill_lns1();
    w.await_primary_down();
    w.recover();
    assert!(w.run_until(Duration::from_secs(2), |w| w.lns2_calls.len() == N));
    // Reported with the primary's addresses and the subscribers' MRU; no
    // ICRP yet, so the LAC has not connected anything.
    w.run_for(Duration::from_millis(200));
    assert_eq!(w.lns2_calls.len(), N);
    assert!(w.lac().subs.iter().all(|s| s.recovered.is_none()));
    let mut reported: Vec<Ipv4Addr> = w
        .lns2_calls
        .iter()
        .map(|(_, _, a)| {
            let a = a.expect("reported as adopted");
            assert_eq!(a.epoch, 2);
            assert_eq!(a.mru, 1500);
            a.address
        })
        .collect();
    reported.sort();
    let mut expected: Vec<Ipv4Addr> = before.values().map(|v| v.0).collect();
    expected.sort();
    assert_eq!(reported, expected);
    // The fast path has them: release; the ICRPs go, with the epoch.
    let now = w.sim.now();
    let calls: Vec<ConnectedCall> = w.lns2_calls.iter().map(|c| c.1).collect();
    for c in &calls {
        assert!(w.lns_mut(w.lns2).release_call(now, c.session));
    }
    w.await_every_session_recovered(Duration::from_secs(2));
    // Established as adopted, with the ids reported before, and not
    // reported a second time.
    w.run_for(Duration::from_millis(100));
    assert_eq!(w.lns2_calls.len(), N);
    for e in &w.lns2_events {
        if let lns::Event::SessionEstablished(s) = e {
            let c = calls.iter().find(|c| c.session == s.session).unwrap();
            assert_eq!(
                (c.tunnel_id, c.session_id, c.peer_session_id),
                (s.tunnel_ids.0, s.local_session_id, s.peer_session_id)
            );
            assert_eq!(s.adopted_epoch, Some(2));
        }
    }
    w.run_for(Duration::from_secs(3));
    assert!(w.lac().subs.iter().all(|s| s.ups == 1 && s.downs == 0));
}

#[test]
fn an_adopted_call_never_released_is_refused_and_its_adoption_undone() {
    let mut w = World::with_calls_held_at_lns2();
    bring_up_offloaded(&mut w, N);
    w.recover();
    assert!(w.run_until(Duration::from_secs(3), |w| {
        w.lac().subs.iter().all(|s| s.refused)
    }));
    assert_eq!(w.lns2_calls.len(), N);
    let lns2 = w.lns_mut(w.lns2);
    let abandoned: Vec<SessionHandle> =
        core::iter::from_fn(|| lns2.poll_abandoned_call()).collect();
    assert_eq!(abandoned.len(), N);
    let lns2 = w.lns(w.lns2);
    assert_eq!(lns2.pool().in_use(), 0, "the reserved addresses went back");
    assert_eq!(lns2.established_count(), 0);
    // The store holds them as the primary's again, at epoch 1: LNS1 is
    // not fenced for a move that did not happen.
    let store = lns2.offload_store().unwrap();
    for t in store.tunnels() {
        for s in t.sessions.values() {
            assert_eq!((s.epoch, s.adopted), (1, false));
        }
    }
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.lns(w.lns1).established_count(), N);
    assert_eq!(w.lns(w.lns1).ha_stats().unwrap().sessions_fenced, 0);
}

// --- accounting and counters across a move -----------------------------------

#[test]
fn counters_set_at_the_primary_ride_the_refresh_and_the_adopting_peer_accounts_on_from_them() {
    let mut w = World::with(Opts {
        window: 256,
        radius: true,
        refresh: Some(Duration::from_secs(10)),
        ..Opts::default()
    });
    bring_up_offloaded(&mut w, N);
    assert_eq!(w.radius().records_from(LNS1, 1).len(), N, "one Start each");
    // The fast path's sweep gives LNS1 the counters, past the interval at
    // which they go into the offloaded state.
    w.run_for(lns::ha::COUNTERS_OFFLOAD_INTERVAL);
    let now = w.sim.now();
    let sessions: Vec<SessionHandle> = w.lns(w.lns1).sessions().collect();
    for (i, h) in sessions.iter().enumerate() {
        let c = Counters {
            input_octets: 1_000_000 + i as u64,
            output_octets: 2_000_000,
            input_packets: 1000,
            output_packets: 2000,
        };
        w.lns_mut(w.lns1).set_counters(now, *h, c);
    }
    let stored_input = |w: &World| -> Vec<u64> {
        let store = w.lns(w.lns2).offload_store().unwrap();
        store
            .tunnels()
            .flat_map(|t| t.sessions.values())
            .map(|s| s.state.accounting.counters.input_octets)
            .collect()
    };
    // No LSORQ of their own: the peer still has the old ones a moment
    // later...
    w.run_for(Duration::from_millis(500));
    assert!(stored_input(&w).iter().all(|&o| o < 1_000_000));
    // ... and the next refresh carries them.
    assert!(w.run_until(Duration::from_secs(15), |w| stored_input(w)
        .iter()
        .all(|&o| o >= 1_000_000)));

    // LNS1 dies; LNS2 adopts and accounts on: an Interim-Update at once
    // under the primary's Acct-Session-Id with the carried counters and
    // the session time since the original start, never a Start.
    let started_at = w.radius().records_from(LNS1, 1)[0].at;
    w.kill_lns1();
    w.await_primary_down();
    w.recover();
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.radius().records_from(LNS2, 3).len() == N
    }));
    let adopted_at = w.sim.now();
    assert!(w.radius().records_from(LNS2, 1).is_empty(), "no Start");
    let primary_ids: Vec<String> = w
        .radius()
        .records_from(LNS1, 1)
        .iter()
        .map(|r| r.session_id.clone())
        .collect();
    let expected_time = (adopted_at - started_at).as_secs() as u32;
    for r in w.radius().records_from(LNS2, 3) {
        assert!(primary_ids.contains(&r.session_id));
        assert!(r.input_octets.unwrap() >= 1_000_000);
        let t = r.session_time.unwrap();
        assert!(
            t + 2 >= expected_time && t <= expected_time + 1,
            "session time {t} s, expected about {expected_time} s"
        );
    }
    // LNS2 keeps the counters it adopted, and its own data plane's,
    // counting from zero, add to them.
    let lns2 = w.lns(w.lns2);
    let adopted: Vec<(SessionHandle, Counters)> = lns2
        .sessions()
        .map(|h| (h, lns2.session_counters(h).unwrap()))
        .collect();
    assert!(adopted.iter().all(|(_, c)| c.input_octets >= 1_000_000));
    let now = w.sim.now();
    let here = Counters {
        input_octets: 10,
        output_octets: 20,
        input_packets: 1,
        output_packets: 2,
    };
    for (h, _) in &adopted {
        w.lns_mut(w.lns2).set_counters(now, *h, here);
    }
    let lns2 = w.lns(w.lns2);
    for (h, carried) in &adopted {
        let c = lns2.session_counters(*h).unwrap();
        assert_eq!(c.input_octets, carried.input_octets + 10);
        assert_eq!(c.output_packets, carried.output_packets + 2);
    }
}

#[test]
fn a_fenced_primary_sends_no_stop_and_no_more_interim_updates_for_the_moved_sessions() {
    let mut w = World::with(Opts {
        window: 256,
        radius: true,
        ..Opts::default()
    });
    bring_up_offloaded(&mut w, N);
    w.kill_lns1();
    w.await_primary_down();
    w.recover();
    w.await_every_session_recovered(Duration::from_secs(5));
    w.revive_lns1();
    assert!(w.run_until(Duration::from_secs(10), |w| {
        w.lns(w.lns1).session_count() == 0
    }));
    let fenced_at = w.sim.now();
    assert_eq!(w.lns(w.lns1).ha_stats().unwrap().sessions_fenced, N as u64);
    // Interim-Updates every 10 s: wait for a few rounds.
    w.run_for(Duration::from_secs(25));
    let r = w.radius();
    assert!(r.records_from(LNS1, 2).is_empty(), "no Stop from LNS1");
    assert!(
        r.records_from(LNS1, 3)
            .iter()
            .all(|rec| rec.at <= fenced_at),
        "no Interim-Update from LNS1 after the fence"
    );
    // LNS2 accounts them now: its Interim-Updates go on.
    assert!(r
        .records_from(LNS2, 3)
        .iter()
        .any(|rec| rec.at > fenced_at + Duration::from_secs(5)));
    assert!(r.records_from(LNS2, 2).is_empty());
}

//! A failure switchover built from the HA pieces, on the simulated network:
//! a LAC, a primary LNS and a peer LNS (three `l2tp::Endpoint`s), the
//! primary offloading its sessions to the peer (`OffloadSender` →
//! `OffloadStore`), the LAC-primary link cut, the LAC recovering the tunnel
//! and its sessions at the peer (Recovery-Tunnel, Recovery-Session), the
//! peer adopting them from the offloaded state (Ownership-Epoch in the ICRP,
//! the PPP link rebuilt with the primary's magic numbers), and the primary,
//! which never died, fenced off by the higher epoch when it offers the
//! sessions again. The glue here is what the LNS and LAC nodes will do.

#![cfg(test)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use controlplane::ha::message::{
    HaMessage, SessionIdentity, SwitchoverReply, SwitchoverRequest, TunnelIdentity,
};
use controlplane::ha::offload::{OffloadConfig, OffloadSender, OffloadStore, SenderEvent};
use controlplane::ha::state::SessionState;
use controlplane::l2tp::codes::cdn;
use controlplane::l2tp::{
    CallParams, Config, Endpoint, Event, HaConfig, RecoveryTunnel, ResultCode, SessionHandle,
    TunnelHandle,
};
use controlplane::ppp::{AuthMethod, IpcpResult, LcpOptions, LinkState, PppConfig, PppLink, Role};
use controlplane::sim::{LinkConditions, NodeId, Sim};
use dataplane::wire::control::{SwitchoverAction, SwitchoverType};

#[path = "support/ha_net.rs"]
mod ha_net;

use ha_net::{fast_failure_detection, rng, LAC, LNS1, LNS2};

const SECRET: &[u8] = b"one-secret-for-every-peer";
const SESSIONS: u16 = 20;

/// `c` with fast failure detection and the one tunnel secret.
fn fast(c: Config) -> Config {
    Config {
        secret: Some(SECRET.to_vec()),
        ..fast_failure_detection(c)
    }
}

fn lns(name: &str, peer: Ipv4Addr) -> Config {
    fast(Config {
        require_authentication: true,
        ha: Some(HaConfig {
            peer_lns_addresses: vec![peer],
            ..HaConfig::default()
        }),
        ..Config::lns(name)
    })
}

/// What PPP negotiated for subscriber `n` at the primary.
fn link_state(n: u16) -> LinkState {
    LinkState {
        role: Role::Server,
        lcp_local: LcpOptions {
            mru: 1492,
            auth: Some(AuthMethod::ChapMd5),
            magic_number: 0x1000_0000 + u32::from(n),
            ..LcpOptions::default()
        },
        lcp_peer: LcpOptions {
            mru: 1492,
            magic_number: 0x2000_0000 + u32::from(n),
            ..LcpOptions::default()
        },
        auth_method: Some(AuthMethod::ChapMd5),
        username: Some(format!("sub{n}").into_bytes()),
        ipcp: Some(IpcpResult {
            local: Some(Ipv4Addr::new(100, 64, 0, 1)),
            peer: Some(Ipv4Addr::new(100, 64, 0, 10 + n as u8)),
            primary_dns: None,
            secondary_dns: None,
        }),
        ipv6cp: None,
    }
}

struct World {
    sim: Sim<Endpoint>,
    lac: NodeId,
    lns1: NodeId,
    lns2: NodeId,
    /// LNS1's offload to LNS2.
    sender: OffloadSender,
    peering: Option<TunnelHandle>,
    /// LNS2's store of LNS1's state.
    store: OffloadStore,
    /// LNS1's sessions: handle → (tunnel identity, session identity, n).
    primary_sessions: BTreeMap<SessionHandle, (TunnelIdentity, SessionIdentity)>,
    fenced: Vec<SenderEvent>,
    /// The LAC's calls: handle → subscriber number.
    lac_calls: BTreeMap<SessionHandle, u16>,
    /// What the LAC learnt at TunnelUp from the primary.
    lac_tunnel: Option<(TunnelHandle, u16, u16, Vec<Ipv4Addr>)>,
    lac_tunnel_down: bool,
    /// The LAC's recovery tunnel and the calls it moves: primary's Session
    /// ID → subscriber number.
    recovering: BTreeMap<u16, u16>,
    recovery_tunnel: Option<TunnelHandle>,
    /// The LAC's recovered sessions: handle → Ownership-Epoch.
    recovered: BTreeMap<SessionHandle, Option<u32>>,
    /// LNS2's adopted links.
    adopted: Vec<PppLink>,
    /// LAC: primary's Session ID → the old session (to release it).
    old_by_primary: BTreeMap<u16, SessionHandle>,
    /// LAC: recovering session → the primary's Session ID it takes over.
    recovery_of: BTreeMap<SessionHandle, u16>,
    /// LNS1: the LAC's answer to its STPLRQ.
    stplrp: Option<SwitchoverReply>,
    /// LNS1: sessions released to the peer, with their new epoch.
    moved: Vec<(SessionHandle, u32)>,
    /// LNS1: sessions that went down for any other reason than a release.
    lost: usize,
}

impl World {
    fn new() -> World {
        let mut sim = Sim::new(rng(1), LinkConditions::delay(Duration::from_millis(1)));
        let lac_config = fast(Config {
            ha: Some(HaConfig::default()),
            ..Config::lac("lac")
        });
        let lac = sim.add_node(LAC, Endpoint::new(lac_config, rng(2)).unwrap());
        let lns1 = sim.add_node(
            LNS1,
            Endpoint::new(lns("lns1", *LNS2.ip()), rng(3)).unwrap(),
        );
        let lns2 = sim.add_node(
            LNS2,
            Endpoint::new(lns("lns2", *LNS1.ip()), rng(4)).unwrap(),
        );
        World {
            sim,
            lac,
            lns1,
            lns2,
            sender: OffloadSender::new(OffloadConfig::default()),
            peering: None,
            store: OffloadStore::new(),
            primary_sessions: BTreeMap::new(),
            fenced: Vec::new(),
            lac_calls: BTreeMap::new(),
            lac_tunnel: None,
            lac_tunnel_down: false,
            recovering: BTreeMap::new(),
            recovery_tunnel: None,
            recovered: BTreeMap::new(),
            adopted: Vec::new(),
            old_by_primary: BTreeMap::new(),
            recovery_of: BTreeMap::new(),
            stplrp: None,
            moved: Vec::new(),
            lost: 0,
        }
    }

    /// The owners' reactions: what the lns and lac nodes will do.
    fn pump(&mut self) {
        let now = self.sim.now();
        // --- LNS1, the primary ---
        for (_, e) in self.sim.take_events(self.lns1) {
            match e {
                Event::TunnelUp { tunnel, remote, .. } if remote == LNS2 => {
                    self.peering = Some(tunnel);
                    self.sender.connected(now);
                }
                Event::SessionUp {
                    session,
                    local_session_id,
                    peer_session_id,
                    ..
                } => {
                    let ep = self.sim.node(self.lns1);
                    let (local_tid, peer_tid) = ep.tunnel_ids(session.tunnel).unwrap();
                    let tunnel = TunnelIdentity {
                        lns_tunnel_id: local_tid,
                        lac_tunnel_id: peer_tid,
                        lac: ep.tunnel_remote(session.tunnel).unwrap(),
                        primary_lns: *LNS1.ip(),
                    };
                    let identity = SessionIdentity {
                        lns_session_id: local_session_id,
                        lac_session_id: peer_session_id,
                    };
                    // The subscriber's number is the LAC's Session ID order;
                    // PPP would run here, its result is offloaded.
                    let n = self.primary_sessions.len() as u16;
                    let state = SessionState::new(link_state(n));
                    self.sender
                        .add_or_update(now, tunnel, identity, 1, &state)
                        .unwrap();
                    self.primary_sessions.insert(session, (tunnel, identity));
                }
                Event::Message { message, .. } => match HaMessage::from_control(&message) {
                    Ok(HaMessage::OffloadReply(r)) => self.sender.handle_reply(now, &r),
                    Ok(HaMessage::SwitchoverReply(r)) => self.stplrp = Some(r),
                    _ => {}
                },
                Event::SessionMoved { session, epoch } => self.moved.push((session, epoch)),
                Event::SessionDown { session, .. }
                    if !self.moved.iter().any(|(s, _)| *s == session) =>
                {
                    self.lost += 1;
                }
                _ => {}
            }
        }
        if let Some(t) = self.peering {
            while let Some(r) = self.sender.poll_request(now) {
                let m = HaMessage::OffloadRequest(r).to_control(true);
                self.sim
                    .node_mut(self.lns1)
                    .send_ha_message(now, t, None, m)
                    .unwrap();
            }
        }
        while let Some(e) = self.sender.poll_event() {
            if matches!(e, SenderEvent::Fenced { .. }) {
                self.fenced.push(e);
            }
        }
        // --- LNS2, the peer ---
        for (_, e) in self.sim.take_events(self.lns2) {
            match e {
                Event::TunnelUp { peer, .. } => {
                    if let Some(r) = peer.recovery_tunnel {
                        assert!(
                            self.store.tunnel(r.primary_lns, r.lns_tunnel_id).is_some(),
                            "the peer knows the tunnel being recovered"
                        );
                    }
                }
                Event::Message {
                    tunnel, message, ..
                } => {
                    if let Ok(HaMessage::OffloadRequest(r)) = HaMessage::from_control(&message) {
                        let source = *self.sim.node(self.lns2).tunnel_remote(tunnel).unwrap().ip();
                        let reply = self.store.handle_request(source, &r);
                        self.sim
                            .node_mut(self.lns2)
                            .send_ha_message(
                                now,
                                tunnel,
                                None,
                                HaMessage::OffloadReply(reply).to_control(false),
                            )
                            .unwrap();
                    }
                }
                Event::RecoveryCall {
                    session,
                    primary_session_id,
                    ..
                } => {
                    let recovery = self
                        .sim
                        .node(self.lns2)
                        .peer_info(session.tunnel)
                        .and_then(|p| p.recovery_tunnel);
                    let adoption = recovery.and_then(|r| {
                        self.store
                            .adopt(r.primary_lns, r.lns_tunnel_id, primary_session_id)
                    });
                    let answer = match adoption {
                        Some(a) => {
                            // No renegotiation: the link starts Opened with
                            // the primary's magic numbers.
                            self.adopted.push(PppLink::from_state(
                                now,
                                PppConfig::server(),
                                &a.state.link,
                                rng(u64::from(primary_session_id)),
                            ));
                            Ok(a.epoch)
                        }
                        None => Err(ResultCode::with_message(
                            cdn::NO_FACILITIES_PERMANENT,
                            "no offloaded state for this session",
                        )),
                    };
                    self.sim
                        .node_mut(self.lns2)
                        .answer_recovery_call(now, session, answer)
                        .unwrap();
                }
                _ => {}
            }
        }
        // --- the LAC ---
        for (_, e) in self.sim.take_events(self.lac) {
            match e {
                Event::TunnelUp {
                    tunnel,
                    local_tunnel_id,
                    peer,
                    ..
                } if self.lac_tunnel.is_none() => {
                    self.lac_tunnel = Some((
                        tunnel,
                        local_tunnel_id,
                        peer.tunnel_id,
                        peer.peer_lns_addresses.clone(),
                    ));
                }
                Event::TunnelUp { tunnel, .. } if Some(tunnel) == self.recovery_tunnel => {
                    // Pipelined ICRQs, one per held session.
                    for &primary_sid in self.recovering.keys() {
                        let call = CallParams {
                            recovery_session: Some(primary_sid),
                            ..CallParams::default()
                        };
                        let s = self
                            .sim
                            .node_mut(self.lac)
                            .open_session(now, tunnel, call)
                            .unwrap();
                        self.recovery_of.insert(s, primary_sid);
                    }
                }
                Event::SessionUp {
                    session,
                    peer_session_id,
                    call,
                    ..
                } => {
                    if Some(session.tunnel) == self.recovery_tunnel {
                        self.recovered.insert(session, call.ownership_epoch);
                        // Make-before-break: the new session carries the
                        // data now; release the old one without ending PPP.
                        let old = self
                            .recovery_of
                            .get(&session)
                            .and_then(|p| self.old_by_primary.get(p));
                        if let (Some(&old), Some(epoch), false) =
                            (old, call.ownership_epoch, self.lac_tunnel_down)
                        {
                            self.sim
                                .node_mut(self.lac)
                                .release_session(now, old, epoch)
                                .unwrap();
                        }
                    } else {
                        let n = self.lac_calls.len() as u16;
                        self.lac_calls.insert(session, n);
                        self.recovering.insert(peer_session_id, n);
                        self.old_by_primary.insert(peer_session_id, session);
                    }
                }
                Event::Message {
                    tunnel, message, ..
                } => {
                    // Load switchover: grant, then move every session.
                    let Ok(HaMessage::SwitchoverRequest(r)) = HaMessage::from_control(&message)
                    else {
                        continue;
                    };
                    let reply = HaMessage::SwitchoverReply(SwitchoverReply {
                        kind: r.kind,
                        action: SwitchoverAction::Granted,
                        reason: String::new(),
                    });
                    self.sim
                        .node_mut(self.lac)
                        .send_ha_message(now, tunnel, None, reply.to_control(false))
                        .unwrap();
                    let (_, lac_tid, lns_tid, _) = self.lac_tunnel.clone().unwrap();
                    let recovery = RecoveryTunnel {
                        primary_lns: *LNS1.ip(),
                        lns_tunnel_id: lns_tid,
                        lac_tunnel_id: lac_tid,
                    };
                    let peer = SocketAddrV4::new(r.peers[0], 1701);
                    self.recovery_tunnel = Some(
                        self.sim
                            .node_mut(self.lac)
                            .connect_for_recovery(now, peer, recovery)
                            .unwrap(),
                    );
                }
                Event::TunnelDown { tunnel, .. }
                    if self.lac_tunnel.as_ref().is_some_and(|t| t.0 == tunnel) =>
                {
                    // Failure switchover: the sessions are held (their data
                    // would go to rings); recover at the first peer.
                    self.lac_tunnel_down = true;
                    let (_, lac_tid, lns_tid, peers) = self.lac_tunnel.clone().unwrap();
                    let peer = SocketAddrV4::new(peers[0], 1701);
                    let recovery = RecoveryTunnel {
                        primary_lns: *LNS1.ip(),
                        lns_tunnel_id: lns_tid,
                        lac_tunnel_id: lac_tid,
                    };
                    self.recovery_tunnel = Some(
                        self.sim
                            .node_mut(self.lac)
                            .connect_for_recovery(now, peer, recovery)
                            .unwrap(),
                    );
                }
                _ => {}
            }
        }
    }

    /// The LNSs peer first; then the LAC comes, with `SESSIONS` calls to
    /// LNS1, and waits until LNS1 has offloaded every one to LNS2.
    fn peer_then_dial(&mut self) {
        let now = self.sim.now();
        self.sim.node_mut(self.lns1).connect(now, LNS2).unwrap();
        assert!(self.run_until(Duration::from_secs(2), |w| w.sender.in_sync()));
        let tunnel = self.sim.node_mut(self.lac).connect(now, LNS1).unwrap();
        for _ in 0..SESSIONS {
            self.sim
                .node_mut(self.lac)
                .open_session(now, tunnel, CallParams::default())
                .unwrap();
        }
        assert!(self.run_until(Duration::from_secs(5), |w| {
            w.lac_calls.len() == usize::from(SESSIONS) && w.sender.in_sync()
        }));
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            if !self.sim.step(deadline) {
                self.pump();
                return done(self);
            }
        }
    }
}

#[test]
fn a_lac_cut_off_from_its_primary_recovers_every_session_at_the_peer_and_the_primary_is_fenced() {
    let mut w = World::new();
    w.peer_then_dial();
    assert_eq!(w.store.session_count(), usize::from(SESSIONS));
    let peers = w.lac_tunnel.as_ref().unwrap().3.clone();
    assert_eq!(peers, vec![*LNS2.ip()], "the primary advertised its peer");

    // Cut the LAC from the primary only; the LNS-LNS link stays.
    let cut = w.sim.now();
    w.sim.partition(LAC, LNS1);
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.recovered.len() == usize::from(SESSIONS)
    }));
    let detected_and_recovered = w.sim.now() - cut;
    assert!(w.lac_tunnel_down);
    // Every session came back with the next epoch, from the offloaded state.
    assert!(w.recovered.values().all(|e| *e == Some(2)));
    assert_eq!(w.adopted.len(), usize::from(SESSIONS));
    let mut magics: Vec<u32> = w
        .adopted
        .iter()
        .map(|l| l.state().lcp_local.magic_number)
        .collect();
    magics.sort_unstable();
    let expected: Vec<u32> = (0..SESSIONS).map(|n| 0x1000_0000 + u32::from(n)).collect();
    assert_eq!(
        magics, expected,
        "the primary's magic numbers, no renegotiation"
    );
    println!(
        "failure detected and {SESSIONS} sessions recovered in {:.0} ms (100 ms Hello, 300 ms dead interval, 1 ms links)",
        detected_and_recovered.as_secs_f64() * 1000.0
    );

    // The primary never died: it offers its sessions' state again (its
    // counters are due). The peer refuses with the higher epoch, and the
    // primary learns it must drop them silently.
    let now = w.sim.now();
    let offered: Vec<(TunnelIdentity, SessionIdentity)> =
        w.primary_sessions.values().copied().collect();
    for (n, (t, s)) in offered.iter().enumerate() {
        let state = SessionState::new(link_state(n as u16));
        w.sender.add_or_update(now, *t, *s, 1, &state).unwrap();
    }
    assert!(w.run_until(Duration::from_secs(2), |w| {
        w.fenced.len() == usize::from(SESSIONS)
    }));
    assert_eq!(w.sender.session_count(), 0);
    assert!(w
        .fenced
        .iter()
        .all(|e| matches!(e, SenderEvent::Fenced { epoch: 2, .. })));
    // The peer still holds its adopted sessions, unchanged.
    assert_eq!(w.store.session_count(), usize::from(SESSIONS));
    assert!(w
        .store
        .tunnels()
        .all(|t| t.sessions.values().all(|s| s.adopted && s.epoch == 2)));
}

#[test]
fn a_load_switchover_moves_every_session_make_before_break() {
    let mut w = World::new();
    w.peer_then_dial();
    // The primary is overloaded: STPLRQ, all sessions, to its peer.
    let lac_tunnel_at_lns1 = w.primary_sessions.keys().next().unwrap().tunnel;
    let now = w.sim.now();
    let stplrq = HaMessage::SwitchoverRequest(SwitchoverRequest {
        peers: vec![*LNS2.ip()],
        kind: SwitchoverType::All,
        sessions: vec![],
    });
    w.sim
        .node_mut(w.lns1)
        .send_ha_message(now, lac_tunnel_at_lns1, None, stplrq.to_control(false))
        .unwrap();
    let started = w.sim.now();
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.moved.len() == usize::from(SESSIONS)
    }));
    let took = w.sim.now() - started;
    assert_eq!(
        w.stplrp.as_ref().map(|r| r.action),
        Some(SwitchoverAction::Granted)
    );
    // Every session up at the peer with the next epoch, then released at
    // the primary with it; none lost, the LAC-primary tunnel never failed.
    assert_eq!(w.recovered.len(), usize::from(SESSIONS));
    assert!(w.recovered.values().all(|e| *e == Some(2)));
    assert!(w.moved.iter().all(|(_, e)| *e == 2));
    assert_eq!(w.adopted.len(), usize::from(SESSIONS));
    assert!(!w.lac_tunnel_down);
    w.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(w.lost, 0);
    println!(
        "load switchover of {SESSIONS} sessions: {:.0} ms from STPLRQ to the last release (1 ms links)",
        took.as_secs_f64() * 1000.0
    );
}

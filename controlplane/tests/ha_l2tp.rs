//! The HA extension's additions to the L2TP endpoint (DESIGN.md §3), on the
//! simulated network: HA-Capability and Peer-LNS-Address in the tunnel
//! handshake (only toward HA-capable peers, M bit clear), HA vendor messages
//! sent only to peers that advertised the capability, Recovery-Tunnel in
//! SCCRQ, Recovery-Session in ICRQ answered by the owner with an
//! Ownership-Epoch in the ICRP.

#![cfg(test)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use controlplane::ha::message::{HaMessage, OffloadRequest, SwitchoverRequest};
use controlplane::l2tp::codes::cdn;
use controlplane::l2tp::{
    CallParams, Config, Endpoint, Error, Event, HaCapability, HaConfig, LnsPeer, RecoveryTunnel,
    ResultCode, SessionDownReason, SessionHandle, TunnelDownReason, TunnelHandle,
};
use controlplane::sim::{Fate, LinkConditions, NodeId, Sim};
use controlplane::time::Instant;
use dataplane::wire::control::{
    Avp, Context, ControlMessage, MessageType, OffloadOperation, SwitchoverType,
};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 1701);
const PEER_LNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

fn rng(seed: u64) -> Box<ChaCha8Rng> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

fn ha_lac() -> Config {
    Config {
        ha: Some(HaConfig::default()),
        ..Config::lac("lac")
    }
}

fn ha_lns() -> Config {
    Config {
        ha: Some(HaConfig {
            peer_lns_addresses: vec![PEER_LNS, Ipv4Addr::new(10, 0, 0, 13)],
            ..HaConfig::default()
        }),
        ..Config::lns("lns")
    }
}

struct Lab {
    sim: Sim<Endpoint>,
    lac: NodeId,
    lns: NodeId,
}

impl Lab {
    fn new(lac: Config, lns: Config, loss: f64) -> Lab {
        let mut link = LinkConditions::delay(Duration::from_millis(5));
        link.loss = loss;
        let mut sim = Sim::new(rng(1), link);
        sim.record_trace(true);
        let lac = sim.add_node(LAC, Endpoint::new(lac, rng(2)).unwrap());
        let lns = sim.add_node(LNS, Endpoint::new(lns, rng(3)).unwrap());
        Lab { sim, lac, lns }
    }

    fn events(&self, node: NodeId) -> impl Iterator<Item = &Event> + '_ {
        self.sim.events(node).iter().map(|(_, e)| e)
    }

    fn run_for(&mut self, d: Duration) {
        self.sim.run_for(d).unwrap();
    }

    /// Bring a tunnel up (with `connect`, called at the start, time zero)
    /// and return both ends' handles.
    fn tunnel_up(
        &mut self,
        connect: impl FnOnce(&mut Endpoint) -> TunnelHandle,
    ) -> (TunnelHandle, TunnelHandle) {
        let lac_tunnel = connect(self.sim.node_mut(self.lac));
        let lns = self.lns;
        let deadline = self.sim.now() + Duration::from_secs(30);
        let up = self
            .sim
            .run_until(deadline, |sim| {
                sim.events(lns)
                    .iter()
                    .any(|(_, e)| matches!(e, Event::TunnelUp { .. }))
            })
            .unwrap();
        assert!(up, "the tunnel came up");
        self.run_for(Duration::from_secs(1));
        let lns_tunnel = self.sim.node(self.lns).tunnels().next().unwrap();
        (lac_tunnel, lns_tunnel)
    }

    /// Control messages `from` sent, as parsed.
    fn sent(&self, from: SocketAddrV4, secret: Option<&[u8]>) -> Vec<ControlMessage> {
        let ctx = Context {
            secret,
            ha_vendor_id: 43,
        };
        self.sim
            .trace()
            .iter()
            .filter(|r| r.fate == Fate::Sent && r.from == from)
            .filter_map(|r| ControlMessage::parse(&r.payload, &ctx).ok())
            .collect()
    }
}

fn first_of(messages: &[ControlMessage], t: MessageType) -> ControlMessage {
    messages
        .iter()
        .find(|m| m.message_type == Some(t))
        .cloned()
        .unwrap_or_else(|| panic!("no {t:?} sent"))
}

#[test]
fn ha_aware_ends_advertise_the_capability_and_the_lns_its_peers() {
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.0);
    let (lac_tunnel, lns_tunnel) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let sccrq = first_of(&lab.sent(LAC, None), MessageType::Sccrq);
    let sccrp = first_of(&lab.sent(LNS, None), MessageType::Sccrp);
    for m in [&sccrq, &sccrp] {
        let ha = m
            .avps
            .iter()
            .find(|e| matches!(e.avp, Avp::HaCapability { .. }))
            .expect("HA-Capability");
        // DESIGN.md §3: M bit clear, so unaware peers ignore it.
        assert!(!ha.mandatory);
    }
    let peers = sccrp
        .avps
        .iter()
        .find(|e| matches!(e.avp, Avp::PeerLnsAddress(_)))
        .expect("Peer-LNS-Address in the SCCRP");
    assert!(!peers.mandatory);

    // The LAC records it per tunnel, in TunnelUp and in the tunnel's info.
    let lac_peer = lab
        .events(lab.lac)
        .find_map(|e| match e {
            Event::TunnelUp { peer, .. } => Some(peer.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        lac_peer.ha,
        Some(HaCapability {
            version: 1,
            flags: 0
        })
    );
    assert_eq!(
        lac_peer.peer_lns_addresses,
        vec![PEER_LNS, Ipv4Addr::new(10, 0, 0, 13)]
    );
    assert_eq!(lab.sim.node(lab.lac).peer_info(lac_tunnel), Some(&lac_peer));
    let lns_peer = lab.sim.node(lab.lns).peer_info(lns_tunnel).unwrap();
    assert!(lns_peer.ha.is_some());
    assert!(lns_peer.peer_lns_addresses.is_empty());
    assert_eq!(lns_peer.recovery_tunnel, None);
}

#[test]
fn an_unaware_lac_gets_no_peer_list_and_no_ha_messages() {
    let mut lab = Lab::new(Config::lac("plain"), ha_lns(), 0.0);
    let (lac_tunnel, lns_tunnel) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let sccrp = first_of(&lab.sent(LNS, None), MessageType::Sccrp);
    // The capability is advertised (M clear, harmless), the peers are not.
    assert!(sccrp
        .avps
        .iter()
        .any(|e| matches!(e.avp, Avp::HaCapability { .. }) && !e.mandatory));
    assert!(!sccrp
        .avps
        .iter()
        .any(|e| matches!(e.avp, Avp::PeerLnsAddress(_))));
    assert_eq!(
        lab.sim.node(lab.lns).peer_info(lns_tunnel).unwrap().ha,
        None
    );
    // The unaware LAC ignored the optional vendor AVP: the tunnel is up.
    assert!(lab.sim.node(lab.lac).peer_info(lac_tunnel).is_some());
    let now = lab.sim.now();
    let stplrq = HaMessage::SwitchoverRequest(SwitchoverRequest {
        peers: vec![PEER_LNS],
        kind: SwitchoverType::All,
        sessions: vec![],
    });
    assert_eq!(
        lab.sim
            .node_mut(lab.lns)
            .send_ha_message(now, lns_tunnel, None, stplrq.to_control(false)),
        Err(Error::NotHaCapable)
    );
}

#[test]
fn an_ha_lac_and_an_unaware_lns_still_make_a_tunnel() {
    let mut lab = Lab::new(ha_lac(), Config::lns("plain"), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let now = lab.sim.now();
    let info = lab.sim.node(lab.lac).peer_info(lac_tunnel).unwrap();
    assert_eq!(info.ha, None);
    // Not even a non-HA message goes through send_ha_message.
    let hello = ControlMessage::new(MessageType::Hello, 0, 0);
    assert_eq!(
        lab.sim
            .node_mut(lab.lac)
            .send_ha_message(now, lac_tunnel, None, hello),
        Err(Error::NotHaCapable)
    );
}

#[test]
fn ha_messages_are_delivered_reliably_over_a_lossy_link() {
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.2);
    let (lac_tunnel, lns_tunnel) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let now = lab.sim.now();
    let mut sent = Vec::new();
    for i in 0..20u16 {
        let m = HaMessage::SwitchoverRequest(SwitchoverRequest {
            peers: vec![PEER_LNS],
            kind: SwitchoverType::Listed,
            sessions: vec![i, i + 1],
        });
        lab.sim
            .node_mut(lab.lns)
            .send_ha_message(now, lns_tunnel, None, m.to_control(false))
            .unwrap();
        sent.push(m);
    }
    lab.run_for(Duration::from_secs(60));
    let got: Vec<HaMessage> = lab
        .events(lab.lac)
        .filter_map(|e| match e {
            Event::Message {
                tunnel, message, ..
            } if *tunnel == lac_tunnel => Some(HaMessage::from_control(message).unwrap()),
            _ => None,
        })
        .collect();
    // Reliable and in order (RFC 2661 §5.8).
    assert_eq!(got, sent);
}

#[test]
fn recovery_tunnel_in_the_sccrq_reaches_the_lns_owner() {
    let recovery = RecoveryTunnel {
        primary_lns: Ipv4Addr::new(10, 0, 0, 99),
        lns_tunnel_id: 4321,
        lac_tunnel_id: 1234,
    };
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.0);
    lab.tunnel_up(|e| {
        e.connect_for_recovery(Instant::ZERO, LNS, recovery)
            .unwrap()
    });
    let sccrq = first_of(&lab.sent(LAC, None), MessageType::Sccrq);
    assert!(sccrq
        .avps
        .iter()
        .any(|e| matches!(e.avp, Avp::RecoveryTunnel { .. }) && !e.mandatory));
    let seen = lab
        .events(lab.lns)
        .find_map(|e| match e {
            Event::TunnelUp { peer, .. } => Some(peer.recovery_tunnel),
            _ => None,
        })
        .unwrap();
    assert_eq!(seen, Some(recovery));
}

/// Open a call with Recovery-Session on an up tunnel; run until the LNS
/// owner hears of it.
fn recovery_call(lab: &mut Lab, lac_tunnel: TunnelHandle) -> (SessionHandle, SessionHandle) {
    let now = lab.sim.now();
    let call = CallParams {
        recovery_session: Some(777),
        ..CallParams::default()
    };
    let lac_session = lab
        .sim
        .node_mut(lab.lac)
        .open_session(now, lac_tunnel, call)
        .unwrap();
    lab.run_for(Duration::from_secs(1));
    let (lns_session, primary, call) = lab
        .events(lab.lns)
        .find_map(|e| match e {
            Event::RecoveryCall {
                session,
                primary_session_id,
                call,
                ..
            } => Some((*session, *primary_session_id, call.clone())),
            _ => None,
        })
        .expect("RecoveryCall");
    assert_eq!(primary, 777);
    assert_eq!(call.recovery_session, Some(777));
    // Nothing answered yet: the LAC waits.
    assert!(!lab
        .events(lab.lac)
        .any(|e| matches!(e, Event::SessionUp { .. } | Event::SessionDown { .. })));
    (lac_session, lns_session)
}

#[test]
fn a_recovery_call_accepted_carries_the_ownership_epoch_in_the_icrp() {
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let (lac_session, lns_session) = recovery_call(&mut lab, lac_tunnel);
    let now = lab.sim.now();
    lab.sim
        .node_mut(lab.lns)
        .answer_recovery_call(now, lns_session, Ok(5))
        .unwrap();
    assert_eq!(
        lab.sim
            .node_mut(lab.lns)
            .answer_recovery_call(now, lns_session, Ok(6)),
        Err(Error::NotWaiting)
    );
    lab.run_for(Duration::from_secs(1));
    let lac_call = lab
        .events(lab.lac)
        .find_map(|e| match e {
            Event::SessionUp { session, call, .. } if *session == lac_session => Some(call.clone()),
            _ => None,
        })
        .expect("the LAC's session is up");
    assert_eq!(lac_call.ownership_epoch, Some(5));
    let lns_call = lab
        .events(lab.lns)
        .find_map(|e| match e {
            Event::SessionUp { session, call, .. } if *session == lns_session => Some(call.clone()),
            _ => None,
        })
        .expect("the LNS's session is up");
    assert_eq!(lns_call.recovery_session, Some(777));
    let icrq = first_of(&lab.sent(LAC, None), MessageType::Icrq);
    assert!(icrq
        .avps
        .iter()
        .any(|e| e.avp == Avp::RecoverySession(777) && !e.mandatory));
    let icrp = first_of(&lab.sent(LNS, None), MessageType::Icrp);
    assert!(icrp
        .avps
        .iter()
        .any(|e| e.avp == Avp::OwnershipEpoch(5) && !e.mandatory));
}

#[test]
fn a_recovery_call_refused_is_a_cdn() {
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let (lac_session, lns_session) = recovery_call(&mut lab, lac_tunnel);
    let now = lab.sim.now();
    let result = ResultCode::with_message(cdn::NO_FACILITIES_PERMANENT, "no offloaded state");
    lab.sim
        .node_mut(lab.lns)
        .answer_recovery_call(now, lns_session, Err(result))
        .unwrap();
    lab.run_for(Duration::from_secs(1));
    assert!(lab.events(lab.lac).any(|e| matches!(e,
        Event::SessionDown { session, reason: SessionDownReason::CdnReceived(r) }
            if *session == lac_session && r.result == cdn::NO_FACILITIES_PERMANENT)));
    assert!(lab.events(lab.lns).any(|e| matches!(e,
        Event::SessionDown { session, reason: SessionDownReason::Closed(_) }
            if *session == lns_session)));
}

#[test]
fn a_recovery_call_waiting_when_its_tunnel_goes_down_is_reported_down() {
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let (_, lns_session) = recovery_call(&mut lab, lac_tunnel);
    let now = lab.sim.now();
    lab.sim
        .node_mut(lab.lac)
        .close_tunnel(now, lac_tunnel, ResultCode::new(1))
        .unwrap();
    lab.run_for(Duration::from_secs(2));
    assert!(lab.events(lab.lns).any(|e| matches!(e,
        Event::SessionDown { session, reason: SessionDownReason::TunnelDown }
            if *session == lns_session)));
}

#[test]
fn without_deferral_a_recovery_call_is_answered_at_once() {
    let lns = Config {
        ha: Some(HaConfig {
            defer_recovery_calls: false,
            ..HaConfig::default()
        }),
        ..Config::lns("lns")
    };
    let mut lab = Lab::new(ha_lac(), lns, 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let now = lab.sim.now();
    let call = CallParams {
        recovery_session: Some(42),
        ..CallParams::default()
    };
    lab.sim
        .node_mut(lab.lac)
        .open_session(now, lac_tunnel, call)
        .unwrap();
    lab.run_for(Duration::from_secs(1));
    assert!(lab.events(lab.lns).any(|e| matches!(e,
        Event::SessionUp { call, .. } if call.recovery_session == Some(42))));
    assert!(!lab
        .events(lab.lns)
        .any(|e| matches!(e, Event::RecoveryCall { .. })));
}

/// An LNS that peers with 10.0.0.12 under its own secret, and takes LACs
/// without tunnel authentication.
fn lns_with_peer(secret: &[u8]) -> Config {
    Config {
        ha: Some(HaConfig {
            lns_peers: vec![LnsPeer {
                address: PEER_LNS,
                secret: secret.to_vec(),
            }],
            ..HaConfig::default()
        }),
        ..Config::lns("lns")
    }
}

#[test]
fn an_lns_peer_must_authenticate_with_its_own_secret_while_lacs_need_not() {
    let peer_addr = SocketAddrV4::new(PEER_LNS, 1701);
    let run = |peer_config: Config| {
        let mut sim = Sim::new(rng(5), LinkConditions::delay(Duration::from_millis(1)));
        let lac = sim.add_node(LAC, Endpoint::new(Config::lac("lac"), rng(6)).unwrap());
        let lns = sim.add_node(
            LNS,
            Endpoint::new(lns_with_peer(b"peering"), rng(7)).unwrap(),
        );
        let peer = sim.add_node(peer_addr, Endpoint::new(peer_config, rng(8)).unwrap());
        let now = sim.now();
        sim.node_mut(lac).connect(now, LNS).unwrap();
        let tunnel = sim.node_mut(peer).connect(now, LNS).unwrap();
        sim.run_for(Duration::from_secs(5)).unwrap();
        let up = |sim: &Sim<Endpoint>, node| {
            sim.events(node)
                .iter()
                .any(|(_, e)| matches!(e, Event::TunnelUp { .. }))
        };
        assert!(up(&sim, lac), "a LAC without a secret is not challenged");
        // The initiator counts its tunnel up at SCCRP (RFC 2661 §7.2.1) and
        // learns of a wrong response by StopCCN; the LNS is the judge.
        let peer_accepted = sim
            .events(lns)
            .iter()
            .any(|(_, e)| matches!(e, Event::TunnelUp { remote, .. } if *remote == peer_addr));
        (peer_accepted, sim, peer, lns, tunnel)
    };
    // No secret at the peer: refused.
    let (up, ..) = run(Config::lns("peer"));
    assert!(!up);
    // The wrong one: refused.
    let wrong = Config {
        secret: Some(b"guess".to_vec()),
        ..Config::lns("peer")
    };
    let (up, ..) = run(wrong);
    assert!(!up);
    // The right one (as its own LNS peer entry, as lnsd would configure
    // it): up, and a hidden Session-State crosses with that secret.
    let (up, mut sim, peer, lns, tunnel) = run(Config {
        ha: Some(HaConfig {
            lns_peers: vec![LnsPeer {
                address: *LNS.ip(),
                secret: b"peering".to_vec(),
            }],
            ..HaConfig::default()
        }),
        ..Config::lns("peer")
    });
    assert!(up);
    let request = HaMessage::OffloadRequest(OffloadRequest {
        operation: OffloadOperation::AddUpdate,
        tunnel: None,
        session: None,
        epoch: Some(1),
        state: Some(vec![0, 1]),
    });
    let now = sim.now();
    sim.node_mut(peer)
        .send_ha_message(now, tunnel, None, request.to_control(true))
        .unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    let got = sim
        .events(lns)
        .iter()
        .find_map(|(_, e)| match e {
            Event::Message { message, .. } => Some(HaMessage::from_control(message).unwrap()),
            _ => None,
        })
        .expect("the LSORQ arrived");
    assert_eq!(got, request);
}

#[test]
fn a_session_released_after_a_move_tells_the_old_lns_its_new_epoch() {
    let mut lab = Lab::new(ha_lac(), ha_lns(), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let now = lab.sim.now();
    let lac_session = lab
        .sim
        .node_mut(lab.lac)
        .open_session(now, lac_tunnel, CallParams::default())
        .unwrap();
    lab.run_for(Duration::from_secs(1));
    let now = lab.sim.now();
    lab.sim
        .node_mut(lab.lac)
        .release_session(now, lac_session, 9)
        .unwrap();
    lab.run_for(Duration::from_secs(1));
    let lns_events: Vec<&Event> = lab
        .events(lab.lns)
        .filter(|e| matches!(e, Event::SessionMoved { .. } | Event::SessionDown { .. }))
        .collect();
    assert!(
        matches!(
            lns_events.as_slice(),
            [
                Event::SessionMoved { epoch: 9, .. },
                Event::SessionDown {
                    reason: SessionDownReason::CdnReceived(r),
                    ..
                }
            ] if r.result == cdn::ADMINISTRATIVE
        ),
        "{lns_events:?}"
    );
    let cdn_sent = first_of(&lab.sent(LAC, None), MessageType::Cdn);
    assert!(cdn_sent
        .avps
        .iter()
        .any(|e| e.avp == Avp::OwnershipEpoch(9) && !e.mandatory));
}

#[test]
fn a_session_is_not_released_toward_an_unaware_lns() {
    let mut lab = Lab::new(ha_lac(), Config::lns("plain"), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    let now = lab.sim.now();
    let s = lab
        .sim
        .node_mut(lab.lac)
        .open_session(now, lac_tunnel, CallParams::default())
        .unwrap();
    lab.run_for(Duration::from_secs(1));
    let now = lab.sim.now();
    assert_eq!(
        lab.sim.node_mut(lab.lac).release_session(now, s, 1),
        Err(Error::NotHaCapable)
    );
}

fn watchful(c: Config) -> Config {
    Config {
        hello_interval: Some(Duration::from_millis(100)),
        dead_interval: Some(Duration::from_millis(300)),
        ..c
    }
}

#[test]
fn a_silent_peer_is_declared_dead_after_the_dead_interval() {
    let mut lab = Lab::new(watchful(ha_lac()), watchful(ha_lns()), 0.0);
    let (lac_tunnel, _) = lab.tunnel_up(|e| e.connect(Instant::ZERO, LNS).unwrap());
    // Idle but alive: Hellos keep it up.
    lab.run_for(Duration::from_secs(10));
    assert!(!lab
        .events(lab.lac)
        .any(|e| matches!(e, Event::TunnelDown { .. })));
    let cut = lab.sim.now();
    lab.sim.partition(LAC, LNS);
    let lac = lab.lac;
    let deadline = cut + Duration::from_secs(5);
    assert!(lab
        .sim
        .run_until(deadline, |sim| sim
            .events(lac)
            .iter()
            .any(|(_, e)| matches!(e, Event::TunnelDown { .. })))
        .unwrap());
    let (at, reason) = lab
        .sim
        .events(lab.lac)
        .iter()
        .find_map(|(at, e)| match e {
            Event::TunnelDown { tunnel, reason, .. } if *tunnel == lac_tunnel => {
                Some((*at, reason.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(reason, TunnelDownReason::RetriesExhausted);
    let detected = at - cut;
    println!("dead peer detected in {} ms", detected.as_millis());
    assert!(detected <= Duration::from_millis(400), "{detected:?}");
}

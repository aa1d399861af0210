//! The parties of a simulated HA network (DESIGN.md §1 items 2 and 4,
//! docs/ha-protocol.md §5), shared by the LNS HA simulation tests: a LAC
//! endpoint with PPP clients driven by hand (the LAC node's own switchover
//! is not part of these tests), the LNS peering both LNSs use, and the
//! enum the simulation holds the parties in. Each test binary that needs
//! them includes this file after [`ha_net`](crate::ha_net):
//! `#[path = "support/ha_parties.rs"] mod ha_parties;`.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use controlplane::ha::message::{HaMessage, SwitchoverReply, SwitchoverRequest};
use controlplane::l2tp::{
    self, CallParams, Endpoint, HaConfig, LnsPeer, RecoveryTunnel, SessionHandle, TunnelHandle,
};
use controlplane::lns;
use controlplane::ppp::{self, AuthMethod, Credentials, PppConfig, PppLink, Role};
use controlplane::sim;
use controlplane::time::Instant;
use dataplane::wire::control::SwitchoverAction;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ha_net::{fast_failure_detection, rng, LNS1};

/// The secret of the LNS1-LNS2 peering tunnel.
pub(crate) const PEER_SECRET: &[u8] = b"lns1-lns2";

/// The HA part of an LNS's configuration: offload to, and adopt from, the
/// one other LNS at `peer`.
pub(crate) fn peered_ha_config(us: SocketAddrV4, peer: SocketAddrV4) -> lns::HaConfig {
    lns::HaConfig::new(
        *us.ip(),
        vec![LnsPeer {
            address: *peer.ip(),
            secret: PEER_SECRET.to_vec(),
        }],
    )
}

// --- the LAC, by hand -------------------------------------------------------

/// The LAC's L2TP configuration: HA-capable, with fast failure detection.
pub(crate) fn lac_config() -> l2tp::Config {
    fast_failure_detection(l2tp::Config {
        ha: Some(HaConfig::default()),
        ..l2tp::Config::lac("lac")
    })
}

/// Every subscriber's PPP client: user `sub`, password `pw`, CHAP-MD5.
pub(crate) fn subscriber_ppp() -> PppConfig {
    let mut ppp = PppConfig::client(Credentials {
        username: b"sub".to_vec(),
        password: b"pw".to_vec(),
    });
    ppp.lcp.authenticate_self = vec![AuthMethod::ChapMd5];
    ppp
}

/// One subscriber: a PPP client link riding an L2TP session.
pub(crate) struct Sub {
    pub(crate) link: Option<PppLink>,
    pub(crate) session: Option<SessionHandle>,
    /// The primary's Session ID of its session (Recovery-Session).
    pub(crate) primary_session_id: u16,
    pub(crate) ups: usize,
    pub(crate) downs: usize,
    /// Moved to the peer (SessionUp of the recovery call, with its epoch).
    pub(crate) recovered: Option<u32>,
    /// The recovery call was refused (CDN).
    pub(crate) refused: bool,
    /// The session at the primary it moved from.
    pub(crate) old_session: Option<SessionHandle>,
}

/// What the LAC reports to the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LacEvent {
    TunnelDown(TunnelHandle),
    CdnReceived(SessionHandle),
    /// An STPLRQ from an LNS (answered per `Lac::stplrp`).
    SwitchoverRequested(TunnelHandle, SwitchoverRequest),
}

/// A LAC endpoint with PPP clients; recovery is started by the test.
pub(crate) struct Lac {
    pub(crate) endpoint: Endpoint,
    pub(crate) subs: Vec<Sub>,
    by_session: HashMap<SessionHandle, usize>,
    /// The primary tunnel: handle, our Tunnel ID, the LNS's, its peers.
    pub(crate) primary: Option<(TunnelHandle, u16, u16, Vec<Ipv4Addr>)>,
    /// The primary tunnel went down.
    pub(crate) primary_down: bool,
    recovery: Option<TunnelHandle>,
    transmits: VecDeque<(SocketAddrV4, Vec<u8>)>,
    events: VecDeque<LacEvent>,
    ppp: PppConfig,
    rng: Box<dyn RngCore + Send>,
    /// How STPLRQs are answered: granted, or denied with a reason.
    pub(crate) stplrp: Result<(), String>,
}

impl Lac {
    /// A LAC with the given L2TP configuration whose subscribers run `ppp`.
    pub(crate) fn new(config: l2tp::Config, ppp: PppConfig) -> Lac {
        Lac {
            endpoint: Endpoint::new(config, rng(7)).unwrap(),
            subs: Vec::new(),
            by_session: HashMap::new(),
            primary: None,
            primary_down: false,
            recovery: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ppp,
            rng: rng(8),
            stplrp: Ok(()),
        }
    }

    /// A tunnel to LNS1 and `n` calls in it, one per subscriber.
    pub(crate) fn dial(&mut self, now: Instant, n: usize) {
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
                refused: false,
                old_session: None,
            });
        }
    }

    /// Failure switchover, steps 2-3: a tunnel to the first peer with
    /// Recovery-Tunnel; its TunnelUp sends one ICRQ per held session.
    pub(crate) fn recover(&mut self, now: Instant) {
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

    /// Load switchover, make-before-break: release every moved session at
    /// the primary with its new epoch (a CDN that does not end PPP).
    #[allow(
        dead_code,
        reason = "not every test that includes this file moves sessions"
    )]
    pub(crate) fn release_old(&mut self, now: Instant) {
        for sub in &self.subs {
            if let (Some(old), Some(epoch)) = (sub.old_session, sub.recovered) {
                self.endpoint.release_session(now, old, epoch).unwrap();
            }
        }
    }

    /// Subscriber `index` ends its PPP link.
    #[allow(dead_code, reason = "not every test that includes this file hangs up")]
    pub(crate) fn hang_up(&mut self, now: Instant, index: usize) {
        if let Some(link) = self.subs[index].link.as_mut() {
            link.close(now);
        }
        self.service(now, index);
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
                Some(ppp::Event::Down { .. }) => {
                    sub.downs += 1;
                    let _ = self.endpoint.close_session(
                        now,
                        session,
                        l2tp::ResultCode::new(l2tp::codes::cdn::ADMINISTRATIVE),
                    );
                }
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
                        // Pipelined ICRQs, one per held session.
                        for i in 0..self.subs.len() {
                            if self.subs[i].link.is_none() || self.subs[i].downs > 0 {
                                continue;
                            }
                            let call = CallParams {
                                recovery_session: Some(self.subs[i].primary_session_id),
                                ..CallParams::default()
                            };
                            let s = self.endpoint.open_session(now, tunnel, call).unwrap();
                            self.by_session.insert(s, i);
                        }
                    }
                }
                l2tp::Event::TunnelDown { tunnel, .. } => {
                    if self.primary.as_ref().is_some_and(|p| p.0 == tunnel) {
                        self.primary_down = true;
                    }
                    self.events.push_back(LacEvent::TunnelDown(tunnel))
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
                    let sub = &mut self.subs[i];
                    if Some(session.tunnel) == self.recovery {
                        // The held session moves to the new one; PPP
                        // carries on untouched.
                        sub.recovered = call.ownership_epoch;
                        sub.old_session = sub.session.replace(session);
                    } else {
                        sub.primary_session_id = peer_session_id;
                        let mut link = PppLink::new(Role::Client, self.ppp.clone(), {
                            let mut seed = [0u8; 32];
                            self.rng.fill_bytes(&mut seed);
                            Box::new(ChaCha8Rng::from_seed(seed))
                        });
                        link.open(now);
                        sub.link = Some(link);
                        self.service(now, i);
                    }
                }
                l2tp::Event::SessionDown { session, reason } => {
                    if matches!(reason, l2tp::SessionDownReason::CdnReceived(_)) {
                        self.events.push_back(LacEvent::CdnReceived(session));
                    }
                    let Some(&i) = self.by_session.get(&session) else {
                        continue;
                    };
                    if Some(session.tunnel) == self.recovery && self.subs[i].recovered.is_none() {
                        self.subs[i].refused = true;
                    }
                    // A held session's primary tunnel went: its PPP stays
                    // up, waiting for the recovery.
                }
                l2tp::Event::Message {
                    tunnel, message, ..
                } => {
                    let Ok(HaMessage::SwitchoverRequest(request)) =
                        HaMessage::from_control(&message)
                    else {
                        continue;
                    };
                    let (action, reason) = match &self.stplrp {
                        Ok(()) => (SwitchoverAction::Granted, String::new()),
                        Err(reason) => (SwitchoverAction::Denied, reason.clone()),
                    };
                    let reply = HaMessage::SwitchoverReply(SwitchoverReply {
                        kind: request.kind,
                        action,
                        reason,
                    });
                    self.endpoint
                        .send_ha_message(now, tunnel, None, reply.to_control(false))
                        .unwrap();
                    self.events
                        .push_back(LacEvent::SwitchoverRequested(tunnel, request));
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

impl sim::Node for Lac {
    type Event = LacEvent;

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

    fn poll_event(&mut self) -> Option<LacEvent> {
        self.events.pop_front()
    }
}

// --- the world --------------------------------------------------------------

/// A party on the simulated network: an LNS node, the LAC, or one more
/// kind of node a test brings (a RADIUS server, an LNS with a fast path).
pub(crate) enum Party<X> {
    Lns(Box<lns::Node>),
    Lac(Box<Lac>),
    Other(Box<X>),
}

/// An event from a [`Party`].
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "some tests that include this file only drain the events"
)]
pub(crate) enum PartyEvent<E> {
    Lns(lns::Event),
    Lac(LacEvent),
    Other(E),
}

impl<X> Party<X> {
    /// The LNS node this party is (a test's mix-up otherwise).
    pub(crate) fn lns(&self) -> &lns::Node {
        match self {
            Party::Lns(n) => n,
            _ => unreachable!("not an LNS"),
        }
    }

    /// The LNS node this party is, to drive it.
    #[allow(
        dead_code,
        reason = "not every test that includes this file drives an LNS"
    )]
    pub(crate) fn lns_mut(&mut self) -> &mut lns::Node {
        match self {
            Party::Lns(n) => n,
            _ => unreachable!("not an LNS"),
        }
    }

    /// The LAC this party is.
    pub(crate) fn lac(&self) -> &Lac {
        match self {
            Party::Lac(n) => n,
            _ => unreachable!("not the LAC"),
        }
    }

    /// The LAC this party is, to drive it.
    pub(crate) fn lac_mut(&mut self) -> &mut Lac {
        match self {
            Party::Lac(n) => n,
            _ => unreachable!("not the LAC"),
        }
    }

    /// The test's own kind of node this party is.
    pub(crate) fn other(&self) -> &X {
        match self {
            Party::Other(n) => n,
            _ => unreachable!("not the test's own node"),
        }
    }

    /// The test's own kind of node this party is, to drive it.
    #[allow(
        dead_code,
        reason = "not every test that includes this file drives its own node"
    )]
    pub(crate) fn other_mut(&mut self) -> &mut X {
        match self {
            Party::Other(n) => n,
            _ => unreachable!("not the test's own node"),
        }
    }
}

impl<X: sim::Node> sim::Node for Party<X> {
    type Event = PartyEvent<X::Event>;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        match self {
            Party::Lns(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
            Party::Lac(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
            Party::Other(n) => n.handle_datagram(now, from, payload),
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Party::Lns(n) => sim::Node::poll_transmit(&mut **n, now, buf),
            Party::Lac(n) => sim::Node::poll_transmit(&mut **n, now, buf),
            Party::Other(n) => n.poll_transmit(now, buf),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Lns(n) => sim::Node::poll_timeout(&**n),
            Party::Lac(n) => sim::Node::poll_timeout(&**n),
            Party::Other(n) => n.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Lns(n) => sim::Node::handle_timeout(&mut **n, now),
            Party::Lac(n) => sim::Node::handle_timeout(&mut **n, now),
            Party::Other(n) => n.handle_timeout(now),
        }
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        match self {
            Party::Lns(n) => sim::Node::poll_event(&mut **n).map(PartyEvent::Lns),
            Party::Lac(n) => sim::Node::poll_event(&mut **n).map(PartyEvent::Lac),
            Party::Other(n) => n.poll_event().map(PartyEvent::Other),
        }
    }
}

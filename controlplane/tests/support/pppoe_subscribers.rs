//! PPPoE subscribers on a simulated LAC's access port, shared by the LAC
//! simulation tests: each subscriber is a PPPoE discovery client and, once
//! its session is up (RFC 2516 §6), a PPP client link; frames move in
//! memory between them and a `lac::Node`. What a test checks or records of
//! the PPP frames the LAC sends in a session is its own ([`SessionWatch`]).
//! Each test binary that needs them includes this file:
//! `#[path = "support/pppoe_subscribers.rs"] mod pppoe_subscribers;`.

use std::collections::HashMap;

use controlplane::lac::{self, SubscriberKey};
use controlplane::ppp::{self, AuthMethod, Credentials, LinkState, PppConfig, PppLink, Role};
use controlplane::pppoe;
use controlplane::time::Instant;
use dataplane::wire::ethernet::{self, Address, EtherType};
use dataplane::wire::pppoe as pppoe_wire;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The LAC's MAC address on the access port.
pub(crate) const LAC_MAC: Address = Address([0x02, 0, 0, 0, 0, 0x01]);

/// What a test checks and records of the frames the LAC sends its
/// subscribers; the type is kept per subscriber in [`Cpe::record`].
pub(crate) trait SessionWatch: Default + Sized {
    /// Every frame the LAC sends on the access port, before it is
    /// delivered.
    fn lac_frame(_frame: &ethernet::Frame<&[u8]>) {}

    /// A PPP frame the LAC sent in `cpe`'s PPPoE session `session_id`.
    /// `false`: the frame is the test's own packet and does not go to the
    /// subscriber's PPP link.
    fn session_frame(cpe: &mut Cpe<Self>, session_id: u16, ppp: &[u8]) -> bool;
}

/// One subscriber: PPPoE discovery, then a PPP client link in the session.
pub(crate) struct Cpe<R> {
    pub(crate) mac: Address,
    pub(crate) discovery: pppoe::Client,
    pub(crate) ppp: PppConfig,
    pub(crate) link: Option<PppLink>,
    /// The access concentrator's MAC address and the PPPoE Session ID.
    pub(crate) session: Option<(Address, u16)>,
    pub(crate) up: Option<LinkState>,
    pub(crate) renegotiated: bool,
    pub(crate) down: Option<ppp::DownCause>,
    /// The PPPoE session ended.
    #[allow(dead_code, reason = "not every test that includes this file reads it")]
    pub(crate) pppoe_down: bool,
    /// The last end of the PPPoE session came from the access
    /// concentrator (a PADT).
    #[allow(dead_code, reason = "not every test that includes this file reads it")]
    pub(crate) pppoe_down_by_peer: bool,
    /// What the test recorded of this subscriber.
    pub(crate) record: R,
}

impl<R> Cpe<R> {
    /// Act on what discovery reported: PPP starts in the session (RFC 2516
    /// §6) and stops with it.
    fn discovery_events(&mut self, now: Instant, rng: &mut ChaCha8Rng) {
        while let Some(e) = self.discovery.poll_event() {
            match e {
                pppoe::ClientEvent::Up { ac_mac, session_id } => {
                    self.session = Some((ac_mac, session_id));
                    let mut link = PppLink::new(
                        Role::Client,
                        self.ppp.clone(),
                        Box::new(ChaCha8Rng::seed_from_u64(rng.next_u64())),
                    );
                    link.open(now);
                    self.link = Some(link);
                }
                pppoe::ClientEvent::Down { by_peer, .. } => {
                    self.pppoe_down = true;
                    self.pppoe_down_by_peer = by_peer;
                    if let Some(link) = self.link.as_mut() {
                        link.lower_down(now);
                    }
                }
                pppoe::ClientEvent::Failed(f) => panic!("discovery failed: {f:?}"),
            }
        }
    }

    /// The LAC's key for this subscriber, once its PPPoE session is up.
    pub(crate) fn key(&self) -> Option<SubscriberKey> {
        self.session.map(|(_, session_id)| SubscriberKey {
            mac: self.mac,
            session_id,
        })
    }
}

/// Subscriber `index`'s PPP client: user `sub{index}`, password `lab`,
/// authenticating with `auth`, framed for PPPoE.
pub(crate) fn subscriber_ppp(index: usize, auth: AuthMethod) -> PppConfig {
    let mut ppp = PppConfig::client(Credentials {
        username: format!("sub{index}").into_bytes(),
        password: b"lab".to_vec(),
    });
    ppp.lcp.authenticate_self = vec![auth];
    // RFC 2516 §7: no Address and Control on PPPoE.
    ppp.address_control = false;
    ppp.lcp.mru = 1492;
    ppp
}

/// A PPPoE session frame from `src` to `dst` carrying `ppp`.
pub(crate) fn session_frame(src: Address, dst: Address, session_id: u16, ppp: &[u8]) -> Vec<u8> {
    let eth = ethernet::Repr {
        dst_addr: dst,
        src_addr: src,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::PppoeSession,
    };
    let header = pppoe_wire::Repr {
        code: pppoe_wire::Code::Session,
        session_id,
        payload_len: ppp.len(),
    };
    let mut out = vec![0; 14 + 6 + ppp.len()];
    eth.emit(&mut out).unwrap();
    header.emit(&mut out[14..]).unwrap();
    out[20..].copy_from_slice(ppp);
    out
}

/// The subscribers on the access port.
pub(crate) struct Subscribers<R> {
    pub(crate) cpes: Vec<Cpe<R>>,
    by_mac: HashMap<Address, usize>,
    rng: ChaCha8Rng,
    /// Frames the LAC sent to a MAC address no subscriber has.
    #[allow(dead_code, reason = "not every test that includes this file reads it")]
    pub(crate) stray: usize,
}

impl<R: SessionWatch> Subscribers<R> {
    /// No subscribers yet; `seed` seeds their randomness.
    pub(crate) fn new(seed: u64) -> Subscribers<R> {
        Subscribers {
            cpes: Vec::new(),
            by_mac: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            stray: 0,
        }
    }

    /// Subscriber `index` (MAC `02:cc:00:00:hi:lo`) starts discovery; its
    /// PPP client will run `ppp`. Frames move at the next [`Self::shuttle`].
    pub(crate) fn add(&mut self, now: Instant, index: usize, ppp: PppConfig) {
        let mac = Address([0x02, 0xcc, 0, 0, (index >> 8) as u8, index as u8]);
        let mut discovery = pppoe::Client::new(
            pppoe::ClientConfig {
                mac,
                ..pppoe::ClientConfig::default()
            },
            &mut self.rng,
        );
        discovery.start(now);
        self.by_mac.insert(mac, self.cpes.len());
        self.cpes.push(Cpe {
            mac,
            discovery,
            ppp,
            link: None,
            session: None,
            up: None,
            renegotiated: false,
            down: None,
            pppoe_down: false,
            pppoe_down_by_peer: false,
            record: R::default(),
        });
    }

    /// Move frames both ways between `lac` and the subscribers until the
    /// access port is quiet.
    pub(crate) fn shuttle(&mut self, lac: &mut lac::Node, now: Instant) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            while lac.poll_access_frame(&mut buf) {
                moved = true;
                let frame = core::mem::take(&mut buf);
                self.deliver(now, &frame);
            }
            let mut upstream = Vec::new();
            for cpe in &mut self.cpes {
                while cpe.discovery.poll_frame(&mut buf) {
                    upstream.push(core::mem::take(&mut buf));
                }
                cpe.discovery_events(now, &mut self.rng);
                let (Some(link), Some((ac_mac, session_id))) = (cpe.link.as_mut(), cpe.session)
                else {
                    continue;
                };
                while let Some(ppp) = link.poll_transmit(now) {
                    if cpe.discovery.state() == pppoe::ClientState::Up {
                        upstream.push(session_frame(cpe.mac, ac_mac, session_id, &ppp));
                    }
                }
                while let Some(e) = link.poll_event() {
                    match e {
                        ppp::Event::Up(state) => cpe.up = Some(*state),
                        ppp::Event::Renegotiating => cpe.renegotiated = true,
                        ppp::Event::Down { cause } => cpe.down = Some(cause),
                        _ => {}
                    }
                }
            }
            for frame in upstream {
                moved = true;
                lac.handle_access_frame(now, &frame);
            }
            if !moved {
                break;
            }
        }
    }

    /// One frame from the LAC to the subscriber it is addressed to.
    fn deliver(&mut self, now: Instant, frame: &[u8]) {
        let eth = ethernet::Frame::new_checked(frame).unwrap();
        R::lac_frame(&eth);
        let Some(&i) = self.by_mac.get(&eth.dst_addr()) else {
            self.stray += 1;
            return;
        };
        let cpe = &mut self.cpes[i];
        match eth.ethertype() {
            EtherType::PppoeDiscovery => {
                cpe.discovery.handle_frame(now, frame);
                cpe.discovery_events(now, &mut self.rng);
            }
            EtherType::PppoeSession => {
                let packet = pppoe_wire::Packet::new_checked(eth.payload()).unwrap();
                let ppp = packet.payload();
                if R::session_frame(cpe, packet.session_id(), ppp) {
                    if let Some(link) = cpe.link.as_mut() {
                        link.handle_frame(now, ppp);
                    }
                }
            }
            other => panic!("unexpected frame type {other:?}"),
        }
    }

    /// The subscribers' discovery and PPP timers that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for cpe in &mut self.cpes {
            if cpe.discovery.poll_timeout().is_some_and(|t| t <= now) {
                cpe.discovery.handle_timeout(now);
            }
            if let Some(link) = cpe.link.as_mut() {
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    link.handle_timeout(now);
                }
            }
        }
    }

    /// The subscribers' next timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.cpes
            .iter()
            .flat_map(|c| {
                [
                    c.discovery.poll_timeout(),
                    c.link.as_ref().and_then(PppLink::poll_timeout),
                ]
            })
            .flatten()
            .min()
    }
}

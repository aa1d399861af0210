//! Subscribers for testing an LNS on its own, sans-IO: a LAC endpoint that
//! opens N incoming calls over one or a few tunnels and runs a PPP client
//! link in each, with a configured name and password (PAP or CHAP).
//!
//! It reports each subscriber up (assigned address, DNS, both magic
//! numbers, the time from opening the call to PPP up) and down (with the
//! cause). `l2bench` grows from this; the LNS tests use it in simulation
//! and over loopback (through [`crate::node::Node`]).
//!
//! Subscriber *n* (counted from 0) rides tunnel `n / sessions_per_tunnel`.
//! Calls are opened in order, at most [`Config::max_setting_up`] at a time
//! between ICRQ and PPP up: like subscribers arriving at a real LAC, and so
//! that a call's ICCN does not wait behind a thousand ICRQs in the control
//! channel while its PPP client times out.

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::l2tp::codes::cdn;
use crate::l2tp::{
    self, CallParams, Endpoint, ResultCode, SessionDownReason, SessionHandle, TunnelDownReason,
    TunnelHandle,
};
use crate::lns::deadlines::Deadlines;
use crate::ppp::{self, AuthMethod, Credentials, DownCause, LinkState, PppConfig, PppLink, Role};
use crate::time::Instant;

/// Which authentication the subscribers agree to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthChoice {
    /// PAP only: a CHAP request from the LNS is Nak'ed towards PAP.
    Pap,
    /// CHAP-MD5 only.
    Chap,
    /// Whichever the LNS asks for.
    Either,
}

/// How the subscribers behave.
#[derive(Debug, Clone)]
pub struct Config {
    /// The LAC side of L2TP (host name, secret, timers).
    pub l2tp: l2tp::Config,
    /// The LNS.
    pub lns: SocketAddrV4,
    /// How many subscribers (incoming calls).
    pub sessions: usize,
    /// Calls per tunnel; more subscribers open more tunnels.
    pub sessions_per_tunnel: usize,
    /// Each subscriber's PPP link (credentials, methods, keepalive).
    pub ppp: PppConfig,
    /// What the ICRQ and ICCN say (proxy LCP AVPs may go here).
    pub call: CallParams,
    /// Calls between ICRQ and PPP up (or down) at most; the next opens when
    /// one finishes. Default 64.
    pub max_setting_up: usize,
}

impl Config {
    /// `sessions` subscribers on one tunnel to `lns`, authenticating as
    /// `username`/`password` with `auth`.
    pub fn new(
        lns: SocketAddrV4,
        sessions: usize,
        username: &str,
        password: &str,
        auth: AuthChoice,
    ) -> Self {
        let mut ppp = PppConfig::client(Credentials {
            username: username.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
        });
        ppp.lcp.authenticate_self = match auth {
            AuthChoice::Pap => vec![AuthMethod::Pap],
            AuthChoice::Chap => vec![AuthMethod::ChapMd5],
            AuthChoice::Either => vec![AuthMethod::ChapMd5, AuthMethod::Pap],
        };
        Config {
            l2tp: l2tp::Config::lac("subscribers"),
            lns,
            sessions,
            sessions_per_tunnel: sessions.max(1),
            ppp,
            call: CallParams::default(),
            max_setting_up: 64,
        }
    }
}

/// A subscriber whose PPP link came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberUp {
    /// Which subscriber (0-based).
    pub index: usize,
    /// Its L2TP session.
    pub session: SessionHandle,
    /// The address the LNS gave it.
    pub address: Ipv4Addr,
    /// The LNS's IPCP address.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers the LNS gave.
    pub dns: (Option<Ipv4Addr>, Option<Ipv4Addr>),
    /// Our magic number.
    pub local_magic: u32,
    /// The LNS's magic number.
    pub peer_magic: u32,
    /// From opening the call (ICRQ) to PPP up.
    pub setup_time: Duration,
    /// Everything negotiated.
    pub link: LinkState,
}

/// Why a subscriber went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Its PPP link went down.
    Ppp(DownCause),
    /// Its L2TP session went down first.
    L2tp(SessionDownReason),
    /// The call could not be opened.
    OpenFailed(l2tp::Error),
}

/// What the subscribers report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A tunnel to the LNS is up.
    TunnelUp {
        /// The tunnel.
        tunnel: TunnelHandle,
    },
    /// A tunnel is down.
    TunnelDown {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// Why.
        reason: TunnelDownReason,
    },
    /// A subscriber is up.
    SessionUp(Box<SubscriberUp>),
    /// A subscriber is down.
    SessionDown {
        /// Which.
        index: usize,
        /// Why.
        reason: DownReason,
        /// Whether it had been up.
        was_up: bool,
        /// Time since its call was opened.
        after: Duration,
    },
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Subscribers that came up.
    pub up: u64,
    /// Subscribers that went down (after coming up or not).
    pub down: u64,
    /// PPP frames the endpoint would not send.
    pub frames_not_sent: u64,
}

#[derive(Debug)]
struct Call {
    session: Option<SessionHandle>,
    opened_at: Instant,
    link: Option<PppLink>,
    /// The link was opened (it waits for the LNS's first frame, or
    /// [`PASSIVE_WAIT`]).
    opened: bool,
    up: bool,
    done: bool,
    lower_gone: bool,
}

/// The subscribers: see the [module documentation](self).
pub struct Node {
    config: Config,
    endpoint: Endpoint,
    rng: Box<dyn RngCore + Send>,
    tunnels: Vec<TunnelHandle>,
    calls: Vec<Call>,
    /// Calls opened and not yet up or down.
    setting_up: usize,
    by_session: HashMap<SessionHandle, usize>,
    deadlines: Deadlines<usize>,
    transmits: VecDeque<(SocketAddrV4, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: SubscriberStats,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("subscriber::Node")
            .field("calls", &self.calls.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// How long a new call's PPP link waits for the LNS to speak first. Our
/// ICCN and our first LCP Configure-Request leave together and the
/// Configure-Request may overtake the ICCN (data messages are not held
/// back by the control channel's window): the LNS drops it as data for an
/// unknown session, and our restart timer (3 s) would stall the setup. So
/// the link starts when the LNS's Configure-Request arrives, as a passive
/// link does (RFC 1661 §4.2), or after this long.
const PASSIVE_WAIT: Duration = Duration::from_secs(1);

fn child_rng(rng: &mut dyn RngCore) -> Box<dyn RngCore + Send> {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    Box::new(ChaCha8Rng::from_seed(seed))
}

impl Node {
    /// Subscribers as `config` says; nothing is sent before
    /// [`Node::start`].
    pub fn new(
        config: Config,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, l2tp::ConfigError> {
        let endpoint = Endpoint::new(config.l2tp.clone(), child_rng(&mut *rng))?;
        Ok(Node {
            config,
            endpoint,
            rng,
            tunnels: Vec::new(),
            calls: Vec::new(),
            setting_up: 0,
            by_session: HashMap::new(),
            deadlines: Deadlines::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SubscriberStats::default(),
        })
    }

    /// Start opening calls (and the tunnels they need).
    pub fn start(&mut self, now: Instant) -> Result<(), l2tp::Error> {
        self.open_more(now)?;
        self.pump(now);
        Ok(())
    }

    /// Opens calls while fewer than [`Config::max_setting_up`] are setting
    /// up.
    fn open_more(&mut self, now: Instant) -> Result<(), l2tp::Error> {
        let per_tunnel = self.config.sessions_per_tunnel.max(1);
        while self.calls.len() < self.config.sessions
            && self.setting_up < self.config.max_setting_up.max(1)
        {
            let index = self.calls.len();
            let t = index / per_tunnel;
            if t >= self.tunnels.len() {
                let tunnel = self.endpoint.connect(now, self.config.lns)?;
                self.tunnels.push(tunnel);
            }
            let tunnel = self.tunnels[t];
            let opened = self
                .endpoint
                .open_session(now, tunnel, self.config.call.clone());
            let mut call = Call {
                session: None,
                opened_at: now,
                link: None,
                opened: false,
                up: false,
                done: false,
                lower_gone: false,
            };
            match opened {
                Ok(session) => {
                    call.session = Some(session);
                    self.setting_up += 1;
                    self.by_session.insert(session, index);
                }
                Err(e) => {
                    call.done = true;
                    self.stats.down += 1;
                    self.events.push_back(Event::SessionDown {
                        index,
                        reason: DownReason::OpenFailed(e),
                        was_up: false,
                        after: Duration::ZERO,
                    });
                }
            }
            self.calls.push(call);
        }
        Ok(())
    }

    /// The L2TP endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The L2TP endpoint, for commands the node does not wrap.
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The tunnels opened.
    pub fn tunnels(&self) -> &[TunnelHandle] {
        &self.tunnels
    }

    /// Counters.
    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// Subscribers up now.
    pub fn up_count(&self) -> usize {
        self.calls.iter().filter(|c| c.up && !c.done).count()
    }

    /// Subscribers that are down for good.
    pub fn down_count(&self) -> usize {
        self.calls.iter().filter(|c| c.done).count()
    }

    /// Subscriber `index`'s L2TP session.
    pub fn session(&self, index: usize) -> Option<SessionHandle> {
        self.calls.get(index).and_then(|c| c.session)
    }

    /// Subscriber `index`'s PPP link.
    pub fn link(&self, index: usize) -> Option<&PppLink> {
        self.calls.get(index).and_then(|c| c.link.as_ref())
    }

    /// Hang up subscriber `index`: LCP Terminate-Request, then CDN.
    pub fn hang_up(&mut self, now: Instant, index: usize) {
        if let Some(link) = self.calls.get_mut(index).and_then(|c| c.link.as_mut()) {
            link.close(now);
        }
        self.service(now, index);
        self.pump(now);
    }

    /// Hang up every subscriber.
    pub fn hang_up_all(&mut self, now: Instant) {
        for index in 0..self.calls.len() {
            if let Some(link) = self.calls[index].link.as_mut() {
                link.close(now);
            }
            self.service(now, index);
        }
        self.pump(now);
    }

    // --- I/O ------------------------------------------------------------

    /// A datagram from the LNS.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.endpoint.handle_datagram(now, from, payload);
        self.pump(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddrV4, Vec<u8>)> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.endpoint
            .poll_transmit(now)
            .map(|t| (t.remote, t.payload))
    }

    /// When [`Node::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.endpoint.poll_timeout(), self.deadlines.first()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Run what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        for index in self.deadlines.take_due(now) {
            if let Some(call) = self.calls.get_mut(index) {
                if let Some(link) = call.link.as_mut() {
                    if !call.opened {
                        call.opened = true;
                        link.open(now);
                    }
                    link.handle_timeout(now);
                }
            }
            self.service(now, index);
        }
        self.pump(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // --- internals --------------------------------------------------------

    fn pump(&mut self, now: Instant) {
        loop {
            self.handle_l2tp_events(now);
            let before = self.calls.len();
            if let Err(e) = self.open_more(now) {
                tracing::warn!(error = %e, "cannot open more calls");
            }
            if self.calls.len() == before {
                break;
            }
        }
    }

    fn handle_l2tp_events(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                l2tp::Event::TunnelUp { tunnel, .. } => {
                    self.events.push_back(Event::TunnelUp { tunnel })
                }
                l2tp::Event::TunnelDown { tunnel, reason, .. } => {
                    self.events.push_back(Event::TunnelDown { tunnel, reason })
                }
                l2tp::Event::SessionUp { session, .. } => {
                    let Some(&index) = self.by_session.get(&session) else {
                        continue;
                    };
                    let link = PppLink::new(
                        Role::Client,
                        self.config.ppp.clone(),
                        child_rng(&mut *self.rng),
                    );
                    self.calls[index].link = Some(link);
                    self.deadlines.set(index, Some(now + PASSIVE_WAIT));
                }
                l2tp::Event::SessionDown { session, reason } => {
                    let Some(&index) = self.by_session.get(&session) else {
                        continue;
                    };
                    let call = &mut self.calls[index];
                    call.lower_gone = true;
                    match call.link.as_mut() {
                        Some(link) => {
                            link.lower_down(now);
                            self.service(now, index);
                        }
                        None => self.finish(now, index, DownReason::L2tp(reason)),
                    }
                }
                l2tp::Event::Data { session, payload } => {
                    let Some(&index) = self.by_session.get(&session) else {
                        continue;
                    };
                    let call = &mut self.calls[index];
                    if let Some(link) = call.link.as_mut() {
                        if !call.opened {
                            call.opened = true;
                            link.open(now);
                        }
                        link.handle_frame(now, &payload);
                        self.service(now, index);
                    }
                }
                _ => {}
            }
        }
    }

    fn service(&mut self, now: Instant, index: usize) {
        loop {
            let Some(call) = self.calls.get_mut(index) else {
                return;
            };
            let (Some(link), Some(session)) = (call.link.as_mut(), call.session) else {
                return;
            };
            while let Some(frame) = link.poll_transmit(now) {
                if call.lower_gone {
                    continue;
                }
                match self.endpoint.send_data(session, &frame) {
                    Ok(t) => self.transmits.push_back((t.remote, t.payload)),
                    Err(_) => self.stats.frames_not_sent += 1,
                }
            }
            let Some(event) = link.poll_event() else {
                break;
            };
            match event {
                ppp::Event::Up(state) => {
                    if !call.up {
                        self.setting_up = self.setting_up.saturating_sub(1);
                    }
                    call.up = true;
                    self.stats.up += 1;
                    let ipcp = state.ipcp.unwrap_or_default();
                    self.events
                        .push_back(Event::SessionUp(Box::new(SubscriberUp {
                            index,
                            session,
                            address: ipcp.local.unwrap_or(Ipv4Addr::UNSPECIFIED),
                            gateway: ipcp.peer,
                            dns: (ipcp.primary_dns, ipcp.secondary_dns),
                            local_magic: state.lcp_local.magic_number,
                            peer_magic: state.lcp_peer.magic_number,
                            setup_time: now.saturating_duration_since(call.opened_at),
                            link: *state,
                        })));
                }
                ppp::Event::Down { cause } => {
                    if !call.lower_gone {
                        let result = match cause {
                            DownCause::AdminClose => ResultCode::new(cdn::ADMINISTRATIVE),
                            // The subscriber's side of the line is gone.
                            DownCause::PeerTerminated | DownCause::EchoFailure => {
                                ResultCode::new(cdn::LOST_CARRIER)
                            }
                            other => ResultCode::with_message(
                                cdn::GENERAL_ERROR,
                                format!("PPP down: {other:?}"),
                            ),
                        };
                        let _ = self.endpoint.close_session(now, session, result);
                    }
                    self.finish(now, index, DownReason::Ppp(cause));
                    return;
                }
                _ => {}
            }
        }
        let next = self
            .calls
            .get(index)
            .and_then(|c| c.link.as_ref())
            .and_then(PppLink::poll_timeout);
        self.deadlines.set(index, next);
    }

    fn finish(&mut self, now: Instant, index: usize, reason: DownReason) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        if call.done {
            return;
        }
        call.done = true;
        if !call.up {
            self.setting_up = self.setting_up.saturating_sub(1);
        }
        self.deadlines.set(index, None);
        if let Some(s) = call.session {
            self.by_session.remove(&s);
        }
        self.stats.down += 1;
        self.events.push_back(Event::SessionDown {
            index,
            reason,
            was_up: call.up,
            after: now.saturating_duration_since(call.opened_at),
        });
    }
}

impl crate::node::Node for Node {
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) {
        match remote {
            SocketAddr::V4(remote) => Node::handle_datagram(self, now, remote, datagram),
            SocketAddr::V6(remote) => tracing::debug!(%remote, "IPv6 datagram dropped"),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        Node::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Node::poll_timeout(self)
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, payload) = Node::poll_transmit(self, now)?;
        buf.clear();
        buf.extend_from_slice(&payload);
        Some(SocketAddr::V4(to))
    }

    fn poll_event(&mut self) -> Option<Event> {
        Node::poll_event(self)
    }
}

//! The link phases of RFC 1661 §3 (Dead, Establish, Authenticate, Network,
//! Terminate) tying LCP, authentication and the NCPs into one PPP link.

use core::net::Ipv4Addr;
use std::collections::VecDeque;

use dataplane::wire::ppp::{self, Protocol};
use dataplane::wire::ppp_cp::{self, Code, CpData, LcpRepr, Options};
use rand_core::RngCore;

use super::auth::{
    AuthConfig, AuthEvent, AuthFailure, AuthPeer, AuthRequest, Authenticator, Credentials,
    PresentedSecret,
};
use super::fsm::{Automaton, Event as FsmEvent, Failure, FsmConfig, LayerEvent, Received, State};
use super::ipcp::{IpcpNegotiation, IpcpResult, Ipv4Assignment, Ipv6cpNegotiation, Ipv6cpResult};
use super::lcp::{
    AuthMethod, Keepalive, KeepaliveAction, LcpConfig, LcpFatal, LcpNegotiation, LcpOptions,
};
use crate::time::Instant;

/// Which end of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The LNS: authenticator and address assigner.
    Server,
    /// The subscriber: authenticates itself and is assigned an address.
    Client,
}

/// The link phases (RFC 1661 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No link (before [`PppLink::open`], or after the link went down).
    Dead,
    /// LCP is negotiating.
    Establish,
    /// LCP is Opened; authentication runs.
    Authenticate,
    /// The NCPs run (or are up).
    Network,
    /// LCP is terminating.
    Terminate,
}

/// What to do with the LAC's proxied LCP and authentication
/// (RFC 2661 §4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProxyPolicy {
    /// Take them when acceptable, renegotiate otherwise.
    #[default]
    Accept,
    /// Always renegotiate LCP from scratch.
    Renegotiate,
}

/// How a PPP link behaves.
#[derive(Debug, Clone)]
pub struct PppConfig {
    /// Restart timer and counters, shared by LCP, IPCP and IPv6CP.
    pub fsm: FsmConfig,
    /// LCP options, echo keepalive, loopback detection.
    pub lcp: LcpConfig,
    /// Authentication retries and time limit.
    pub auth: AuthConfig,
    /// Client: what we authenticate with.
    pub credentials: Credentials,
    /// Run IPCP.
    pub ipcp: bool,
    /// Client: ask for DNS servers (RFC 1877).
    pub request_dns: bool,
    /// Run IPv6CP.
    pub ipv6cp: bool,
    /// Our IPv6 interface identifier; random if `None`.
    pub interface_id: Option<[u8; 8]>,
    /// Start our frames with Address and Control (0xff 0x03): L2TP peers
    /// expect them, PPPoE forbids them (RFC 2516 §7).
    pub address_control: bool,
    /// Server: what to do with proxy LCP and authentication.
    pub proxy: ProxyPolicy,
}

impl PppConfig {
    /// An LNS: demands CHAP-MD5 (or PAP if the peer Naks towards it),
    /// assigns addresses, no IPv6CP.
    pub fn server() -> Self {
        PppConfig {
            fsm: FsmConfig::default(),
            lcp: LcpConfig {
                authenticate_peer: vec![AuthMethod::ChapMd5, AuthMethod::Pap],
                ..LcpConfig::default()
            },
            auth: AuthConfig::default(),
            credentials: Credentials::default(),
            ipcp: true,
            request_dns: false,
            ipv6cp: false,
            interface_id: None,
            address_control: true,
            proxy: ProxyPolicy::Accept,
        }
    }

    /// A subscriber: authenticates with CHAP-MD5 or PAP, asks for an
    /// address and DNS servers.
    pub fn client(credentials: Credentials) -> Self {
        PppConfig {
            lcp: LcpConfig {
                authenticate_self: vec![AuthMethod::ChapMd5, AuthMethod::Pap],
                ..LcpConfig::default()
            },
            credentials,
            request_dns: true,
            ..PppConfig::server()
        }
    }
}

/// Why the link went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownCause {
    /// Our owner closed it.
    AdminClose,
    /// The peer sent an LCP Terminate-Request.
    PeerTerminated,
    /// The lower layer (L2TP session, PPPoE session) went away.
    LowerLayerDown,
    /// Echo-Requests went unanswered.
    EchoFailure,
    /// The credentials were refused (by our verdict, or by the
    /// authenticator's PAP Nak / CHAP Failure).
    AuthFailed,
    /// Authentication did not finish in time.
    AuthTimeout,
    /// The peer would not authenticate with any method we accept.
    AuthRefused,
    /// Our own Magic-Number kept coming back (RFC 1661 §6.4).
    LoopedBack,
    /// A protocol's Configure-Requests went unanswered (Max-Configure).
    NegotiationTimeout(Protocol),
    /// A protocol's negotiation did not converge (Max-Failure).
    MaxFailure(Protocol),
    /// The peer rejected a protocol or code we cannot do without.
    Rejected(Protocol),
    /// No address to give (pool exhausted).
    NoAddress,
    /// Every network protocol finished.
    NoNetworkProtocol,
}

/// What was negotiated: everything needed to carry on the link elsewhere
/// without renegotiation ([`PppLink::from_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Which end we are.
    pub role: Role,
    /// LCP options we asked for and the peer acknowledged (our MRU, our
    /// magic number, the method we authenticate the peer with).
    pub lcp_local: LcpOptions,
    /// LCP options the peer asked for and we acknowledged (its MRU, its
    /// magic number, the method we authenticate ourselves with).
    pub lcp_peer: LcpOptions,
    /// The method used, either way.
    pub auth_method: Option<AuthMethod>,
    /// The authenticated name.
    pub username: Option<Vec<u8>>,
    /// IPCP's result, if IPCP is Opened.
    pub ipcp: Option<IpcpResult>,
    /// IPv6CP's result, if IPv6CP is Opened.
    pub ipv6cp: Option<Ipv6cpResult>,
}

/// What the link reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: check these credentials, then call
    /// [`PppLink::auth_verdict`].
    Authenticate(AuthRequest),
    /// Authentication succeeded (server: the peer is who it says; client:
    /// we were accepted). A server's owner now gives the address with
    /// [`PppLink::set_ipv4_assignment`] if it has not already.
    Authenticated {
        /// The name.
        username: Vec<u8>,
        /// The method.
        method: AuthMethod,
    },
    /// The first network protocol is Opened: the link carries traffic.
    Up(Box<LinkState>),
    /// Another network protocol opened, or one renegotiated.
    Updated(Box<LinkState>),
    /// The peer renegotiates LCP: no traffic until the next `Up`.
    Renegotiating,
    /// The link is down for good.
    Down {
        /// Why.
        cause: DownCause,
    },
}

/// The LAC's proxied LCP: the option bytes of AVPs 26 to 28 (RFC 2661
/// §4.4.5), each the Options of an LCP Configure-Request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyLcp {
    /// Initial Received LCP CONFREQ (AVP 26): the subscriber's first.
    pub initial_received: Vec<u8>,
    /// Last Sent LCP CONFREQ (AVP 27): the LAC's, acknowledged by the
    /// subscriber; it becomes ours.
    pub last_sent: Vec<u8>,
    /// Last Received LCP CONFREQ (AVP 28): the subscriber's, acknowledged
    /// by the LAC.
    pub last_received: Vec<u8>,
}

/// Proxy Authen Type (AVP 29, RFC 2661 §4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyAuthType {
    /// 1: textual username/password exchange.
    Textual,
    /// 2: PPP CHAP.
    Chap,
    /// 3: PPP PAP.
    Pap,
    /// 4: no authentication.
    None,
    /// 5: Microsoft CHAP version 1.
    MsChapV1,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for ProxyAuthType {
    fn from(v: u16) -> Self {
        match v {
            1 => ProxyAuthType::Textual,
            2 => ProxyAuthType::Chap,
            3 => ProxyAuthType::Pap,
            4 => ProxyAuthType::None,
            5 => ProxyAuthType::MsChapV1,
            other => ProxyAuthType::Unknown(other),
        }
    }
}

/// The LAC's proxied authentication: AVPs 29 to 33 (RFC 2661 §4.4.5).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    /// Proxy Authen Type (AVP 29).
    pub kind: ProxyAuthType,
    /// Proxy Authen Name (AVP 30).
    pub name: Vec<u8>,
    /// Proxy Authen Challenge (AVP 31), CHAP only.
    pub challenge: Vec<u8>,
    /// Proxy Authen ID (AVP 32); the low byte is the CHAP Identifier.
    pub id: u16,
    /// Proxy Authen Response (AVP 33): the CHAP Response Value, or the PAP
    /// password.
    pub response: Vec<u8>,
}

impl core::fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("kind", &self.kind)
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What became of proxy LCP/authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyOutcome {
    /// None was offered (or the link is a client).
    NotOffered,
    /// Taken: LCP started Opened.
    Accepted,
    /// Not acceptable, or the policy says so: LCP renegotiated.
    Renegotiated(ProxyRefusal),
}

/// Why proxy LCP was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyRefusal {
    /// [`ProxyPolicy::Renegotiate`].
    Policy,
    /// An option list does not parse.
    Malformed,
    /// We would not have acknowledged the subscriber's request (an MRU too
    /// small, an option we do not know, ...).
    PeerOptions,
    /// The LAC's request holds something we would not ask for (an unknown
    /// option, an authentication method we do not allow, none where we
    /// require one).
    OurOptions,
    /// The proxied authentication does not fit the negotiated method.
    Authentication,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames handed to [`PppLink::handle_frame`].
    pub frames_received: u64,
    /// Frames given out by [`PppLink::poll_transmit`].
    pub frames_sent: u64,
    /// Frames dropped: malformed, for a phase that does not take them, or
    /// after the link went down.
    pub discarded: u64,
    /// Protocol-Rejects sent.
    pub protocol_rejects_sent: u64,
    /// Echo-Requests sent.
    pub echo_requests_sent: u64,
    /// Echo-Replies received.
    pub echo_replies_received: u64,
}

/// One PPP link, sans-IO.
///
/// Frames in with [`Self::handle_frame`], out with [`Self::poll_transmit`];
/// timers with [`Self::poll_timeout`] and [`Self::handle_timeout`]; what
/// happened with [`Self::poll_event`]; commands [`Self::open`],
/// [`Self::close`], [`Self::auth_verdict`], [`Self::set_ipv4_assignment`],
/// [`Self::ipv4_unavailable`], [`Self::lower_down`].
pub struct PppLink {
    role: Role,
    config: PppConfig,
    rng: Box<dyn RngCore + Send>,
    phase: Phase,
    lcp: Automaton<LcpNegotiation>,
    keepalive: Keepalive,
    authenticator: Option<Authenticator>,
    auth_peer: Option<AuthPeer>,
    auth_method: Option<AuthMethod>,
    username: Option<Vec<u8>>,
    ipcp: Automaton<IpcpNegotiation>,
    ipv6cp: Automaton<Ipv6cpNegotiation>,
    ipcp_lower_up: bool,
    ipv6cp_lower_up: bool,
    announced_up: bool,
    cause: Option<DownCause>,
    finished: bool,
    proxy: ProxyOutcome,
    protocol_reject_id: u8,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: LinkStats,
}

impl core::fmt::Debug for PppLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PppLink")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("lcp", &self.lcp.state())
            .field("ipcp", &self.ipcp.state())
            .field("ipv6cp", &self.ipv6cp.state())
            .finish_non_exhaustive()
    }
}

impl PppLink {
    /// A link in the Dead phase; [`Self::open`] starts it.
    pub fn new(role: Role, config: PppConfig, rng: Box<dyn RngCore + Send>) -> Self {
        let mut lcp_config = config.lcp.clone();
        // Each role does one half of authentication.
        match role {
            Role::Server => lcp_config.authenticate_self.clear(),
            Role::Client => lcp_config.authenticate_peer.clear(),
        }
        let ipcp = match role {
            Role::Server => IpcpNegotiation::server(),
            Role::Client => IpcpNegotiation::client(config.request_dns),
        };
        PppLink {
            role,
            rng,
            phase: Phase::Dead,
            lcp: Automaton::new(config.fsm, LcpNegotiation::new(lcp_config)),
            keepalive: Keepalive::new(config.lcp.echo_interval, config.lcp.echo_failures),
            authenticator: None,
            auth_peer: None,
            auth_method: None,
            username: None,
            ipcp: Automaton::new(config.fsm, ipcp),
            ipv6cp: Automaton::new(config.fsm, Ipv6cpNegotiation::new(config.interface_id)),
            ipcp_lower_up: false,
            ipv6cp_lower_up: false,
            announced_up: false,
            cause: None,
            finished: false,
            proxy: ProxyOutcome::NotOffered,
            protocol_reject_id: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: LinkStats::default(),
            config,
        }
    }

    /// A server link for a session whose LAC proxied LCP (and perhaps
    /// authentication), RFC 2661 §4.4.5. When acceptable, LCP starts
    /// Opened with the proxied options and the link goes straight to the
    /// Authenticate phase (the proxied credentials are reported with
    /// [`Event::Authenticate`]) or to the Network phase. Otherwise LCP is
    /// renegotiated from scratch ([`Self::proxy_outcome`] says why).
    pub fn server_with_proxy(
        now: Instant,
        config: PppConfig,
        proxy_lcp: &ProxyLcp,
        proxy_auth: Option<&ProxyAuth>,
        rng: Box<dyn RngCore + Send>,
    ) -> Self {
        let mut link = PppLink::new(Role::Server, config, rng);
        match link.judge_proxy(proxy_lcp, proxy_auth) {
            Ok((local, peer, request)) => {
                link.proxy = ProxyOutcome::Accepted;
                link.lcp.negotiation_mut().set_agreed(local, peer);
                link.lcp.force_opened();
                link.open_ncps(now);
                link.keepalive.start(now);
                match local.auth {
                    Some(method) => {
                        link.phase = Phase::Authenticate;
                        link.auth_method = Some(method);
                        let auth_config = link.config.auth.clone();
                        link.authenticator = Some(match request {
                            Some(request) => {
                                let mut a =
                                    Authenticator::start_proxied(now, method, auth_config, request);
                                // A PAP reply goes under the proxied ID when
                                // the LAC sent one (0 otherwise, as before).
                                if let (AuthMethod::Pap, Some(p)) = (method, proxy_auth) {
                                    a.answer_under((p.id & 0xff) as u8);
                                }
                                a
                            }
                            None => Authenticator::start(now, method, auth_config, &mut *link.rng),
                        });
                    }
                    None => link.enter_network(now),
                }
                link.process(now);
            }
            Err(refusal) => {
                link.proxy = ProxyOutcome::Renegotiated(refusal);
                link.open(now);
            }
        }
        link
    }

    #[allow(clippy::type_complexity)]
    fn judge_proxy(
        &self,
        proxy: &ProxyLcp,
        auth: Option<&ProxyAuth>,
    ) -> Result<(LcpOptions, LcpOptions, Option<AuthRequest>), ProxyRefusal> {
        if self.config.proxy == ProxyPolicy::Renegotiate {
            return Err(ProxyRefusal::Policy);
        }
        let parses = |b: &[u8]| Options::new(b).all(|o| o.is_ok());
        if !parses(&proxy.last_sent) || !parses(&proxy.last_received) {
            return Err(ProxyRefusal::Malformed);
        }
        let lcp = self.lcp.negotiation();
        if !lcp.would_ack(&proxy.last_received) {
            return Err(ProxyRefusal::PeerOptions);
        }
        let known = Options::new(&proxy.last_sent)
            .flatten()
            .all(|o| matches!(o.kind, 1 | 2 | 3 | 5 | 7 | 8));
        let local = LcpOptions::from_options(&proxy.last_sent);
        let peer = LcpOptions::from_options(&proxy.last_received);
        let allowed = &lcp.config().authenticate_peer;
        let auth_ok = match local.auth {
            Some(m) => allowed.contains(&m),
            None => allowed.is_empty(),
        };
        if !known || !auth_ok || local.mru < 64 {
            return Err(ProxyRefusal::OurOptions);
        }
        let request = match (local.auth, auth) {
            (_, None) => None,
            (None, Some(a)) if a.kind == ProxyAuthType::None => None,
            (Some(AuthMethod::ChapMd5), Some(a))
                if a.kind == ProxyAuthType::Chap && a.response.len() == 16 =>
            {
                Some(AuthRequest {
                    username: a.name.clone(),
                    method: PresentedSecret::Chap {
                        id: (a.id & 0xff) as u8,
                        challenge: a.challenge.clone(),
                        response: a.response.clone(),
                    },
                })
            }
            (Some(AuthMethod::Pap), Some(a)) if a.kind == ProxyAuthType::Pap => Some(AuthRequest {
                username: a.name.clone(),
                method: PresentedSecret::Pap {
                    password: a.response.clone(),
                },
            }),
            _ => return Err(ProxyRefusal::Authentication),
        };
        Ok((local, peer, request))
    }

    /// Rebuild a link from the state another box negotiated (HA): LCP and
    /// the NCPs start Opened, nothing is sent, no event is reported; the
    /// echo keepalive runs with the same magic numbers.
    pub fn from_state(
        now: Instant,
        config: PppConfig,
        state: &LinkState,
        rng: Box<dyn RngCore + Send>,
    ) -> Self {
        let mut link = PppLink::new(state.role, config, rng);
        link.lcp
            .negotiation_mut()
            .set_agreed(state.lcp_local, state.lcp_peer);
        link.lcp.force_opened();
        link.keepalive.start(now);
        link.auth_method = state.auth_method;
        link.username = state.username.clone();
        link.phase = Phase::Network;
        link.open_ncps(now);
        if let Some(result) = state.ipcp {
            if let (Role::Server, Some(local), Some(peer)) = (state.role, result.local, result.peer)
            {
                link.ipcp.negotiation_mut().set_assignment(Ipv4Assignment {
                    local,
                    peer,
                    primary_dns: result.primary_dns,
                    secondary_dns: result.secondary_dns,
                });
            }
            link.ipcp.negotiation_mut().result = result;
            link.ipcp.force_opened();
            link.ipcp_lower_up = true;
        }
        if let Some(result) = state.ipv6cp {
            link.ipv6cp.negotiation_mut().result = result;
            link.ipv6cp.force_opened();
            link.ipv6cp_lower_up = true;
        }
        // Drain the tls signals of the NCP opens: nothing to do for them.
        while link.ipcp.poll_event().is_some() {}
        while link.ipv6cp.poll_event().is_some() {}
        link.announced_up = true;
        link
    }

    /// Which end we are.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// LCP's automaton state.
    pub fn lcp_state(&self) -> State {
        self.lcp.state()
    }

    /// IPCP's automaton state.
    pub fn ipcp_state(&self) -> State {
        self.ipcp.state()
    }

    /// IPv6CP's automaton state.
    pub fn ipv6cp_state(&self) -> State {
        self.ipv6cp.state()
    }

    /// What became of proxy LCP.
    pub fn proxy_outcome(&self) -> ProxyOutcome {
        self.proxy
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Why the link went (or is going) down, once known.
    pub fn cause(&self) -> Option<DownCause> {
        self.cause
    }

    /// What is negotiated now.
    pub fn state(&self) -> LinkState {
        let lcp = self.lcp.negotiation();
        LinkState {
            role: self.role,
            lcp_local: lcp.local,
            lcp_peer: lcp.peer,
            auth_method: self.auth_method,
            username: self.username.clone(),
            ipcp: (self.ipcp.state() == State::Opened).then(|| self.ipcp.negotiation().result),
            ipv6cp: (self.ipv6cp.state() == State::Opened)
                .then(|| self.ipv6cp.negotiation().result),
        }
    }

    /// Start the link: the lower layer is up (RFC 1661 §3.2 Dead →
    /// Establish).
    pub fn open(&mut self, now: Instant) {
        if self.phase != Phase::Dead || self.finished {
            return;
        }
        self.phase = Phase::Establish;
        self.open_ncps(now);
        self.lcp.event(now, FsmEvent::Open, &mut *self.rng);
        self.lcp.event(now, FsmEvent::Up, &mut *self.rng);
        self.process(now);
    }

    fn open_ncps(&mut self, now: Instant) {
        if self.config.ipcp {
            self.ipcp.event(now, FsmEvent::Open, &mut *self.rng);
        }
        if self.config.ipv6cp {
            self.ipv6cp.event(now, FsmEvent::Open, &mut *self.rng);
        }
    }

    /// Close the link: LCP Terminate-Request, then Down.
    pub fn close(&mut self, now: Instant) {
        self.close_with(now, DownCause::AdminClose);
    }

    fn close_with(&mut self, now: Instant, cause: DownCause) {
        if self.finished {
            return;
        }
        self.cause.get_or_insert(cause);
        if self.phase != Phase::Dead {
            self.phase = Phase::Terminate;
        }
        self.lcp.event(now, FsmEvent::Close, &mut *self.rng);
        self.process(now);
        if self.lcp.state() == State::Initial {
            // Closed before the lower layer came up: no tlf will come.
            self.finish();
        }
    }

    /// The lower layer is gone (the L2TP or PPPoE session ended): the link
    /// is down at once, nothing is sent.
    pub fn lower_down(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.cause.get_or_insert(DownCause::LowerLayerDown);
        self.lcp.event(now, FsmEvent::Down, &mut *self.rng);
        self.process(now);
        self.transmit.clear();
        self.finish();
    }

    /// Server: the owner's verdict on [`Event::Authenticate`].
    pub fn auth_verdict(&mut self, now: Instant, accepted: bool) {
        if let Some(a) = self.authenticator.as_mut() {
            a.verdict(accepted);
        }
        self.process(now);
    }

    /// Server: the addresses for this subscriber (after AAA and the pool).
    /// May come before or after authentication; IPCP starts once both are
    /// there.
    pub fn set_ipv4_assignment(&mut self, now: Instant, assignment: Ipv4Assignment) {
        if self.role != Role::Server {
            return;
        }
        self.ipcp.negotiation_mut().set_assignment(assignment);
        self.start_ncps(now);
        self.process(now);
    }

    /// Server: no address for this subscriber (pool exhausted). IPCP
    /// fails; without IPv6CP the link goes down with
    /// [`DownCause::NoAddress`].
    pub fn ipv4_unavailable(&mut self, now: Instant) {
        if self.config.ipv6cp {
            self.ipcp.close_with(now, Failure::Rejected, &mut *self.rng);
            self.process(now);
        } else {
            self.close_with(now, DownCause::NoAddress);
        }
    }

    /// A PPP frame from the peer: Address/Control optional, Protocol
    /// compressed or not, then the information.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.stats.frames_received += 1;
        if self.finished || self.phase == Phase::Dead {
            self.stats.discarded += 1;
            return;
        }
        let Ok(packet) = ppp::Packet::new_checked(frame) else {
            self.stats.discarded += 1;
            return;
        };
        let protocol = packet.protocol();
        let information = packet.payload();
        let lcp_opened = self.lcp.state() == State::Opened;
        match protocol {
            Protocol::Lcp => self.handle_lcp(now, information),
            Protocol::Pap | Protocol::Chap => {
                let authenticator = self
                    .authenticator
                    .as_mut()
                    .filter(|a| a.method().protocol() == protocol);
                let peer = self
                    .auth_peer
                    .as_mut()
                    .filter(|a| a.method().protocol() == protocol);
                if let Some(a) = authenticator {
                    a.handle_packet(now, information);
                } else if let Some(p) = peer {
                    p.handle_packet(now, information);
                } else if lcp_opened && self.phase != Phase::Terminate {
                    // Not the method we negotiated (RFC 1661 §5.7).
                    self.send_protocol_reject(protocol, information);
                } else {
                    self.stats.discarded += 1;
                }
            }
            Protocol::Ipcp | Protocol::Ipv6cp => {
                let enabled = if protocol == Protocol::Ipcp {
                    self.config.ipcp
                } else {
                    self.config.ipv6cp
                };
                if !lcp_opened {
                    // RFC 1661 §3.4: only LCP before the link is Opened.
                    self.stats.discarded += 1;
                } else if !enabled {
                    self.send_protocol_reject(protocol, information);
                } else if self.phase != Phase::Network {
                    // RFC 1661 §3.5: NCP packets wait for the Network phase.
                    self.stats.discarded += 1;
                } else if protocol == Protocol::Ipcp {
                    self.ipcp.handle_packet(now, information, &mut *self.rng);
                } else {
                    self.ipv6cp.handle_packet(now, information, &mut *self.rng);
                }
            }
            // Data belongs to the fast path; one that reaches us is dropped.
            Protocol::Ipv4 | Protocol::Ipv6 => self.stats.discarded += 1,
            Protocol::Unknown(_) => {
                if lcp_opened {
                    // RFC 1661 §5.7: only in the Opened state.
                    self.send_protocol_reject(protocol, information);
                } else {
                    self.stats.discarded += 1;
                }
            }
        }
        self.process(now);
    }

    fn handle_lcp(&mut self, now: Instant, information: &[u8]) {
        let our_magic = self.lcp.negotiation().local.magic_number;
        match self.lcp.handle_packet(now, information, &mut *self.rng) {
            Received::Handled => {}
            Received::EchoRequest { magic_number } => {
                // RFC 1661 §5.8: our own number back means a looped link.
                if magic_number != 0 && magic_number == our_magic {
                    self.lcp.negotiation_mut().magic_collision();
                }
            }
            Received::EchoReply { magic_number, .. } => {
                if magic_number != 0 && magic_number == our_magic {
                    self.lcp.negotiation_mut().magic_collision();
                } else if self.lcp.state() == State::Opened {
                    self.stats.echo_replies_received += 1;
                    self.keepalive.reply();
                }
            }
            Received::ProtocolReject { protocol } => {
                // RFC 1661 §5.7: stop sending the protocol; for LCP's own
                // companions that ends what needs them.
                match Protocol::from(protocol) {
                    Protocol::Lcp => {
                        self.cause.get_or_insert(DownCause::Rejected(Protocol::Lcp));
                        self.lcp.event(now, FsmEvent::RxjBad, &mut *self.rng);
                    }
                    Protocol::Ipcp => self.ipcp.event(now, FsmEvent::RxjBad, &mut *self.rng),
                    Protocol::Ipv6cp => self.ipv6cp.event(now, FsmEvent::RxjBad, &mut *self.rng),
                    Protocol::Pap | Protocol::Chap if self.phase == Phase::Authenticate => {
                        self.close_with(now, DownCause::AuthRefused);
                    }
                    _ => self.lcp.event(now, FsmEvent::RxjGood, &mut *self.rng),
                }
            }
        }
        match self.lcp.negotiation().fatal() {
            Some(LcpFatal::AuthRefused) => self.close_with(now, DownCause::AuthRefused),
            Some(LcpFatal::LoopedBack) => self.close_with(now, DownCause::LoopedBack),
            None => {}
        }
    }

    fn send_protocol_reject(&mut self, protocol: Protocol, information: &[u8]) {
        // RFC 1661 §5.7: the rejected information is truncated to the
        // peer's MRU.
        let room =
            usize::from(self.lcp.negotiation().peer.mru).saturating_sub(ppp_cp::HEADER_LEN + 2);
        let information = &information[..information.len().min(room)];
        self.protocol_reject_id = self.protocol_reject_id.wrapping_add(1);
        let repr = LcpRepr {
            code: Code::ProtocolReject,
            identifier: self.protocol_reject_id,
            data: CpData::ProtocolReject {
                protocol: u16::from(protocol),
                information,
            },
        };
        let mut body = vec![0; repr.buffer_len()];
        if repr.emit(&mut body).is_ok() {
            self.stats.protocol_rejects_sent += 1;
            self.push_frame(Protocol::Lcp, &body);
        }
    }

    fn send_echo_request(&mut self, identifier: u8) {
        let repr = LcpRepr {
            code: Code::EchoRequest,
            identifier,
            data: CpData::Echo {
                magic_number: self.lcp.negotiation().local.magic_number,
                data: &[],
            },
        };
        let mut body = vec![0; repr.buffer_len()];
        if repr.emit(&mut body).is_ok() {
            self.stats.echo_requests_sent += 1;
            self.push_frame(Protocol::Lcp, &body);
        }
    }

    fn push_frame(&mut self, protocol: Protocol, body: &[u8]) {
        let header = ppp::Repr {
            address_control: self.config.address_control,
            protocol,
            compressed_protocol: false,
        };
        let mut frame = vec![0; header.buffer_len() + body.len()];
        if header.emit(&mut frame).is_ok() {
            frame[header.buffer_len()..].copy_from_slice(body);
            self.transmit.push_back(frame);
        }
    }

    /// The next frame to send to the peer.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Vec<u8>> {
        let frame = self.transmit.pop_front()?;
        self.stats.frames_sent += 1;
        Some(frame)
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        [
            self.lcp.poll_timeout(),
            self.keepalive.poll_timeout(),
            self.authenticator
                .as_ref()
                .and_then(Authenticator::poll_timeout),
            self.auth_peer.as_ref().and_then(AuthPeer::poll_timeout),
            self.ipcp.poll_timeout(),
            self.ipv6cp.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.lcp.handle_timeout(now, &mut *self.rng);
        match self.keepalive.handle_timeout(now) {
            Some(KeepaliveAction::SendEcho(id)) => self.send_echo_request(id),
            Some(KeepaliveAction::Failed) => {
                self.close_with(now, DownCause::EchoFailure);
            }
            None => {}
        }
        if let Some(a) = self.authenticator.as_mut() {
            a.handle_timeout(now);
        }
        if let Some(p) = self.auth_peer.as_mut() {
            p.handle_timeout(now);
        }
        self.ipcp.handle_timeout(now, &mut *self.rng);
        self.ipv6cp.handle_timeout(now, &mut *self.rng);
        self.process(now);
    }

    /// Move what the parts produced onwards until nothing changes: their
    /// packets into frames, their signals into phase changes.
    fn process(&mut self, now: Instant) {
        loop {
            let mut progress = false;
            while let Some(body) = self.lcp.poll_transmit() {
                self.push_frame(Protocol::Lcp, &body);
            }
            while let Some(event) = self.lcp.poll_event() {
                progress = true;
                self.on_lcp(now, event);
            }
            if let Some(a) = self.authenticator.as_mut() {
                let protocol = a.method().protocol();
                let mut frames = Vec::new();
                while let Some(body) = a.poll_transmit() {
                    frames.push(body);
                }
                let mut events = Vec::new();
                while let Some(e) = a.poll_event() {
                    events.push(e);
                }
                for body in frames {
                    self.push_frame(protocol, &body);
                }
                for e in events {
                    progress = true;
                    self.on_auth(now, e);
                }
            }
            if let Some(p) = self.auth_peer.as_mut() {
                let protocol = p.method().protocol();
                let mut frames = Vec::new();
                while let Some(body) = p.poll_transmit() {
                    frames.push(body);
                }
                let mut events = Vec::new();
                while let Some(e) = p.poll_event() {
                    events.push(e);
                }
                for body in frames {
                    self.push_frame(protocol, &body);
                }
                for e in events {
                    progress = true;
                    self.on_auth(now, e);
                }
            }
            while let Some(body) = self.ipcp.poll_transmit() {
                self.push_frame(Protocol::Ipcp, &body);
            }
            while let Some(event) = self.ipcp.poll_event() {
                progress = true;
                self.on_ncp(now, Protocol::Ipcp, event);
            }
            while let Some(body) = self.ipv6cp.poll_transmit() {
                self.push_frame(Protocol::Ipv6cp, &body);
            }
            while let Some(event) = self.ipv6cp.poll_event() {
                progress = true;
                self.on_ncp(now, Protocol::Ipv6cp, event);
            }
            if !progress {
                break;
            }
        }
    }

    fn on_lcp(&mut self, now: Instant, event: LayerEvent) {
        match event {
            LayerEvent::Started => {}
            LayerEvent::Up => {
                self.keepalive.start(now);
                let lcp = self.lcp.negotiation();
                let (demand, demanded) = (lcp.local.auth, lcp.peer.auth);
                // RFC 1661 §3.5: authenticate before the NCPs when either
                // side asked for it.
                match (self.role, demand, demanded) {
                    (Role::Server, Some(method), _) => {
                        self.phase = Phase::Authenticate;
                        self.auth_method = Some(method);
                        self.authenticator = Some(Authenticator::start(
                            now,
                            method,
                            self.config.auth.clone(),
                            &mut *self.rng,
                        ));
                    }
                    (Role::Client, _, Some(method)) => {
                        self.phase = Phase::Authenticate;
                        self.auth_method = Some(method);
                        self.auth_peer = Some(AuthPeer::start(
                            now,
                            method,
                            self.config.auth.clone(),
                            self.config.credentials.clone(),
                            &mut *self.rng,
                        ));
                    }
                    _ => self.enter_network(now),
                }
            }
            LayerEvent::Down => {
                self.keepalive.stop();
                self.authenticator = None;
                self.auth_peer = None;
                // RFC 1661 §3.4: leaving Opened takes the NCPs down.
                if self.ipcp_lower_up {
                    self.ipcp.event(now, FsmEvent::Down, &mut *self.rng);
                }
                if self.ipv6cp_lower_up {
                    self.ipv6cp.event(now, FsmEvent::Down, &mut *self.rng);
                }
                self.ipcp_lower_up = false;
                self.ipv6cp_lower_up = false;
                if matches!(self.lcp.state(), State::Closing | State::Stopping) {
                    self.phase = Phase::Terminate;
                } else {
                    self.phase = Phase::Establish;
                    if self.announced_up {
                        self.events.push_back(Event::Renegotiating);
                    }
                }
                self.announced_up = false;
            }
            LayerEvent::Finished => {
                let failure = self.lcp.failure();
                self.cause.get_or_insert(match failure {
                    Some(Failure::PeerTerminated) => DownCause::PeerTerminated,
                    Some(Failure::MaxConfigure) => DownCause::NegotiationTimeout(Protocol::Lcp),
                    Some(Failure::MaxFailure) => DownCause::MaxFailure(Protocol::Lcp),
                    Some(Failure::Rejected) => DownCause::Rejected(Protocol::Lcp),
                    Some(Failure::GaveUp) => match self.lcp.negotiation().fatal() {
                        Some(LcpFatal::LoopedBack) => DownCause::LoopedBack,
                        Some(LcpFatal::AuthRefused) | None => DownCause::AuthRefused,
                    },
                    Some(Failure::TerminateTimeout) | None => DownCause::PeerTerminated,
                });
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.phase = Phase::Dead;
        self.keepalive.stop();
        self.authenticator = None;
        self.auth_peer = None;
        let cause = self.cause.unwrap_or(DownCause::AdminClose);
        self.events.push_back(Event::Down { cause });
    }

    fn on_auth(&mut self, now: Instant, event: AuthEvent) {
        match event {
            AuthEvent::Verify(request) => self.events.push_back(Event::Authenticate(request)),
            AuthEvent::Succeeded { username } => {
                let method = self.auth_method.unwrap_or(AuthMethod::Pap);
                if self.phase == Phase::Authenticate {
                    self.username = Some(username.clone());
                    self.events
                        .push_back(Event::Authenticated { username, method });
                    self.enter_network(now);
                }
                // The client's AuthPeer stays: later Challenges (RFC 1994
                // §2.2 allows them) are still answered.
            }
            AuthEvent::Failed(failure) => self.close_with(
                now,
                match failure {
                    AuthFailure::Rejected => DownCause::AuthFailed,
                    AuthFailure::Timeout => DownCause::AuthTimeout,
                },
            ),
        }
    }

    fn enter_network(&mut self, now: Instant) {
        self.phase = Phase::Network;
        self.start_ncps(now);
        if !self.config.ipcp && !self.config.ipv6cp {
            self.close_with(now, DownCause::NoNetworkProtocol);
        }
    }

    /// Give the NCPs their Up once the Network phase is reached (and, for
    /// a server's IPCP, once the owner gave the addresses).
    fn start_ncps(&mut self, now: Instant) {
        if self.phase != Phase::Network {
            return;
        }
        if self.config.ipcp && !self.ipcp_lower_up && self.ipcp.negotiation().ready() {
            self.ipcp_lower_up = true;
            self.ipcp.event(now, FsmEvent::Up, &mut *self.rng);
        }
        if self.config.ipv6cp && !self.ipv6cp_lower_up {
            self.ipv6cp_lower_up = true;
            self.ipv6cp.event(now, FsmEvent::Up, &mut *self.rng);
        }
    }

    fn on_ncp(&mut self, now: Instant, protocol: Protocol, event: LayerEvent) {
        match event {
            LayerEvent::Up => {
                let state = Box::new(self.state());
                self.events.push_back(if self.announced_up {
                    Event::Updated(state)
                } else {
                    self.announced_up = true;
                    Event::Up(state)
                });
            }
            LayerEvent::Down | LayerEvent::Started => {}
            LayerEvent::Finished => {
                if self.phase != Phase::Network {
                    return;
                }
                let live = |s: State| !matches!(s, State::Initial | State::Closed | State::Stopped);
                let any_live = (self.config.ipcp && live(self.ipcp.state()))
                    || (self.config.ipv6cp && live(self.ipv6cp.state()));
                if any_live {
                    return;
                }
                let failure = if protocol == Protocol::Ipcp {
                    self.ipcp.failure()
                } else {
                    self.ipv6cp.failure()
                };
                let cause = match failure {
                    Some(Failure::MaxConfigure) => DownCause::NegotiationTimeout(protocol),
                    Some(Failure::MaxFailure) => DownCause::MaxFailure(protocol),
                    Some(Failure::Rejected) => DownCause::Rejected(protocol),
                    Some(Failure::PeerTerminated) => DownCause::PeerTerminated,
                    Some(Failure::TerminateTimeout | Failure::GaveUp) | None => {
                        DownCause::NoNetworkProtocol
                    }
                };
                self.close_with(now, cause);
            }
        }
    }
}

/// The subscriber's address, once IPCP is up: a convenience for owners.
impl LinkState {
    /// The peer's IPv4 address, if IPCP agreed on one.
    pub fn peer_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipcp.and_then(|r| r.peer)
    }
}

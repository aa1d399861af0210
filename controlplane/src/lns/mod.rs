//! The LNS node, sans-IO: L2TP (LNS side), one PPP server link per session,
//! authentication (local users file or RADIUS), the address pool and
//! accounting, composed into the thing `lnsd` runs.
//!
//! # What happens to a session
//!
//! 1. The LAC opens an incoming call; when the L2TP session is up
//!    ([`l2tp::Event::SessionUp`]) the node makes a [`PppLink`] in the server
//!    role for it. If the ICCN carried proxy LCP (AVPs 26–28, RFC 2661
//!    §4.4.5) the link starts from the LAC's negotiation (and proxy
//!    authentication, AVPs 29–33) as [`PppConfig::proxy`] allows; otherwise
//!    LCP starts from scratch.
//! 2. PPP frames arrive as L2TP data messages ([`l2tp::Event::Data`]) and go
//!    into the link; the link's frames go out with
//!    [`l2tp::Endpoint::send_data`].
//! 3. The link's credentials ([`ppp::Event::Authenticate`]) go to the
//!    [`Authenticator`]; its verdict comes back through its events, and on
//!    acceptance the node takes the subscriber's address (RADIUS
//!    Framed-IP-Address reserved, 255.255.255.254 or none: from the pool)
//!    and gives it to IPCP. A pool with nothing left ends the session
//!    cleanly ([`Event::AddressUnavailable`], CDN result 4).
//! 4. PPP up: [`Event::SessionEstablished`] with everything negotiated (what
//!    the HA offload and the data plane need), accounting Start, and the
//!    Session-Timeout and Idle-Timeout of the authenticator enforced.
//! 5. PPP down: CDN to the LAC with a result code that says why (none when
//!    the LAC or the tunnel ended it), address released, accounting Stop
//!    with the Acct-Terminate-Cause of [`terminate_cause`],
//!    [`Event::SessionDown`].
//!
//! # I/O
//!
//! The node speaks over one UDP socket: L2TP with the LACs and, when
//! configured, RADIUS with its servers (a datagram from a RADIUS server's
//! address goes to the RADIUS client, every other to L2TP). It implements
//! [`crate::node::Node`], so the same node runs in simulation and in `lnsd`.
//!
//! # With a fast path
//!
//! When `lnsd` runs AF_XDP workers (`crate::fastpath`), the L2TP data
//! messages of the LACs go to the workers, not to the node's socket. Then:
//!
//! * [`Node::report_connected_calls`] turns on [`ConnectedCall`]s, polled
//!   with [`Node::poll_connected_call`]: one per incoming call, when its
//!   ICRQ arrives, with the ids and addresses the workers need to recognise
//!   its data messages and punt its PPP control frames. The call's ICRP
//!   waits for [`Node::release_call`] ([`l2tp::Config::defer_answer`]), so
//!   the workers know the session before the LAC sends its first PPP
//!   frames (right after its ICCN, RFC 2661 §7.4.1);
//! * the workers' punted PPP frames come back in through
//!   [`Node::handle_ppp`], exactly as if they had arrived in a data
//!   message; the replies still leave through the node's UDP socket (the
//!   kernel's path is fine for control traffic);
//! * with HA, a LAC's recovery call that the node adopts is reported the
//!   same way, before its ICRP, and [`Node::adopted_call`] gives its
//!   address and MRU so the workers know the whole session before the LAC
//!   flushes the subscriber's held frames; the ICRP (with the
//!   Ownership-Epoch) waits for [`Node::release_call`] too;
//! * [`Event::SessionEstablished`] carries the address and, through
//!   [`EstablishedSession::subscriber_mru`], the MRU; [`Event::SessionDown`]
//!   and [`Event::TunnelDown`] say what to remove.
//!
//! # Timers
//!
//! Every session's next deadline (its PPP timers, Session-Timeout,
//! Idle-Timeout) sits in one ordered set, so a timeout touches only the
//! sessions that are due, however many there are.

pub(crate) mod deadlines;
pub mod ha;
#[cfg(test)]
mod tests;

pub use crate::ha::load::{LoadConfig, LoadEvent, LoadSample, Watermarks};
pub use ha::{
    AdoptedCall, HaConfig, HaError, HaStats, HaStatus, LacStatus, LacSwitchover, PeerLink,
    PeerStatus, SwitchoverAnswer, SwitchoverType, MAX_LISTED,
};

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{HashMap, HashSet, VecDeque};

use dataplane::wire::control::Avp;
use dataplane::wire::ppp as ppp_wire;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::aaa::pool::{AddressPool, PoolError};
use crate::aaa::radius::{
    self, AccountingSession, AcctHandle, AcctStatus, Authentic, Counters, TerminateCause,
};
use crate::aaa::{
    AuthHandle, AuthRequest, AuthResult, Authenticator, Credentials, FramedAddress, RejectReason,
    SessionAttributes,
};
use crate::ha::peering::LnsPeering;
use crate::l2tp::codes::{cdn, error};
use crate::l2tp::{
    self, CallInfo, Endpoint, ResultCode, SessionDownReason, SessionHandle, TunnelDownReason,
    TunnelHandle,
};
use crate::ppp::{
    self, DownCause, Ipv4Assignment, LinkState, PppConfig, PppLink, PresentedSecret, ProxyAuth,
    ProxyAuthType, ProxyLcp, ProxyOutcome,
};
use crate::time::Instant;
use deadlines::Deadlines;

/// How an LNS node behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The L2TP side (host name, secret, timers). Must accept tunnels and
    /// calls.
    pub l2tp: l2tp::Config,
    /// Every session's PPP link (authentication methods, keepalive, proxy
    /// LCP policy).
    pub ppp: PppConfig,
    /// Our IPCP address: the subscriber's next hop.
    pub gateway: Ipv4Addr,
    /// DNS servers offered with IPCP (RFC 1877).
    pub primary_dns: Option<Ipv4Addr>,
    /// Second DNS server.
    pub secondary_dns: Option<Ipv4Addr>,
    /// HA with peer LNSs (state offload, adoption, fencing); `None`: a
    /// plain LNS, and `l2tp.ha` is left as it is.
    pub ha: Option<HaConfig>,
}

impl Config {
    /// An LNS called `host_name` with gateway address `gateway`, the L2TP
    /// and PPP defaults and no DNS servers.
    pub fn new(host_name: impl Into<String>, gateway: Ipv4Addr) -> Self {
        let host_name = host_name.into();
        let mut ppp = PppConfig::server();
        ppp.auth.name = host_name.as_bytes().to_vec();
        Config {
            l2tp: l2tp::Config::lns(host_name),
            ppp,
            gateway,
            primary_dns: None,
            secondary_dns: None,
            ha: None,
        }
    }
}

/// Why a session ended, as the node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// The PPP link went down by itself (echo failure, the subscriber's
    /// Terminate-Request, failed negotiation or authentication).
    Ppp(DownCause),
    /// The LAC disconnected the call (CDN) with this result.
    LacDisconnected(ResultCode),
    /// The L2TP session failed on a protocol error.
    L2tpError(ResultCode),
    /// The tunnel carrying the session went down.
    TunnelDown,
    /// The operator cleared it ([`Node::clear_session`]).
    AdminClear,
    /// Session-Timeout ran out (RFC 2865 §5.27).
    SessionTimeout,
    /// Idle-Timeout ran out (RFC 2865 §5.28).
    IdleTimeout,
    /// The address pool had nothing left.
    PoolExhausted,
    /// The address the authenticator chose is held by another session.
    AddressInUse(Ipv4Addr),
    /// The LNS is stopping ([`Node::shut_down_sessions`]).
    Shutdown,
    /// HA: the session lives on at another LNS with this Ownership-Epoch
    /// (a peer's LSORS fenced it off, or the LAC released it with a CDN
    /// carrying the epoch). Dropped silently: no LCP Terminate, no CDN, no
    /// accounting Stop (the new owner carries the accounting on).
    Moved {
        /// The epoch the session has now.
        epoch: u32,
    },
}

/// The Acct-Terminate-Cause (RFC 2866 §5.10) of a session that ended so.
pub fn terminate_cause(cause: &EndCause) -> TerminateCause {
    match cause {
        // No answer to our echoes: the subscriber's line is gone.
        EndCause::Ppp(DownCause::EchoFailure) => TerminateCause::LostCarrier,
        EndCause::Ppp(DownCause::PeerTerminated) => TerminateCause::UserRequest,
        EndCause::Ppp(DownCause::LowerLayerDown) => TerminateCause::LostCarrier,
        EndCause::Ppp(DownCause::AdminClose) => TerminateCause::AdminReset,
        EndCause::Ppp(DownCause::NoAddress) => TerminateCause::NasError,
        EndCause::Ppp(DownCause::AuthFailed)
        | EndCause::Ppp(DownCause::AuthTimeout)
        | EndCause::Ppp(DownCause::AuthRefused) => TerminateCause::UserError,
        EndCause::Ppp(_) => TerminateCause::ServiceUnavailable,
        // RFC 2661 §4.4.2 CDN result 1 is loss of carrier on the LAC's side;
        // result 3 is the LAC's administration; anything else is the LAC
        // giving up on the call for its own reasons.
        EndCause::LacDisconnected(r) => match r.result {
            cdn::LOST_CARRIER | cdn::NO_CARRIER => TerminateCause::LostCarrier,
            cdn::ADMINISTRATIVE => TerminateCause::NasRequest,
            _ => TerminateCause::NasError,
        },
        EndCause::L2tpError(_) => TerminateCause::NasError,
        EndCause::TunnelDown => TerminateCause::LostService,
        EndCause::AdminClear => TerminateCause::AdminReset,
        EndCause::SessionTimeout => TerminateCause::SessionTimeout,
        EndCause::IdleTimeout => TerminateCause::IdleTimeout,
        EndCause::PoolExhausted | EndCause::AddressInUse(_) => TerminateCause::NasError,
        // RFC 2866 §5.10: Admin-Reboot (7) is "Administrator is ending
        // service on the NAS, for example prior to rebooting the NAS";
        // NAS-Reboot (11) is a reboot "non-administratively (crash)". A
        // stop we are told to make (SIGTERM) is the administrator's.
        EndCause::Shutdown => TerminateCause::AdminReboot,
        // Never sent (no Stop for a moved session); the nearest meaning.
        EndCause::Moved { .. } => TerminateCause::NasRequest,
    }
}

/// The CDN result we send the LAC for a session that ended so; `None` when
/// the LAC or the tunnel ended it (nothing to tell).
pub fn cdn_result(cause: &EndCause) -> Option<ResultCode> {
    Some(match cause {
        EndCause::LacDisconnected(_)
        | EndCause::L2tpError(_)
        | EndCause::TunnelDown
        | EndCause::Moved { .. } => return None,
        EndCause::Ppp(DownCause::LowerLayerDown) => return None,
        // RFC 2661 §4.4.2 result 1: "loss of carrier".
        EndCause::Ppp(DownCause::EchoFailure) => {
            ResultCode::with_message(cdn::LOST_CARRIER, "PPP echo failure")
        }
        EndCause::Ppp(DownCause::PeerTerminated) => {
            ResultCode::with_message(cdn::ADMINISTRATIVE, "PPP terminated by the subscriber")
        }
        EndCause::Ppp(DownCause::AuthFailed) => {
            ResultCode::with_error(cdn::GENERAL_ERROR, error::NONE, "PPP authentication failed")
        }
        EndCause::Ppp(c) => {
            ResultCode::with_error(cdn::GENERAL_ERROR, error::NONE, format!("PPP down: {c:?}"))
        }
        EndCause::AdminClear => ResultCode::with_message(cdn::ADMINISTRATIVE, "cleared"),
        EndCause::SessionTimeout => {
            ResultCode::with_message(cdn::ADMINISTRATIVE, "session timeout")
        }
        EndCause::IdleTimeout => ResultCode::with_message(cdn::ADMINISTRATIVE, "idle timeout"),
        EndCause::Shutdown => ResultCode::with_message(cdn::ADMINISTRATIVE, "LNS shutting down"),
        // Result 4 (no facilities, temporary) with error 4 (insufficient
        // resources): the LAC may try another LNS.
        EndCause::PoolExhausted => ResultCode::with_error(
            cdn::NO_FACILITIES_TEMPORARY,
            error::INSUFFICIENT_RESOURCES,
            "address pool exhausted",
        ),
        EndCause::AddressInUse(a) => ResultCode::with_error(
            cdn::NO_FACILITIES_TEMPORARY,
            error::INSUFFICIENT_RESOURCES,
            format!("address {a} already in use"),
        ),
    })
}

/// A session whose PPP link is up: what was negotiated and agreed. This is
/// what the HA offload carries and what the data plane is programmed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstablishedSession {
    /// The session.
    pub session: SessionHandle,
    /// The LAC's address.
    pub remote: SocketAddrV4,
    /// Our Tunnel ID and the LAC's.
    pub tunnel_ids: (u16, u16),
    /// Our Session ID.
    pub local_session_id: u16,
    /// The LAC's Session ID (data messages go to it).
    pub peer_session_id: u16,
    /// The authenticated name.
    pub username: String,
    /// The subscriber's address.
    pub address: Ipv4Addr,
    /// LCP, authentication and IPCP as negotiated.
    pub link: LinkState,
    /// What the authenticator said (timeouts, Class, ...).
    pub attributes: SessionAttributes,
    /// Acct-Session-Id.
    pub acct_session_id: String,
    /// What became of proxy LCP.
    pub proxy: ProxyOutcome,
    /// How long from the L2TP session up to PPP up.
    pub setup_time: Duration,
    /// HA: `Some(epoch)` when the session was adopted from a peer's
    /// offloaded state (failure or load switchover) rather than negotiated
    /// here: program the fast path as for any new session, and announce
    /// the address on the core side.
    pub adopted_epoch: Option<u32>,
}

impl EstablishedSession {
    /// The largest frame the subscriber takes (the MRU it asked for in LCP,
    /// RFC 1661 §6.1): the data plane refuses longer downstream packets and
    /// clamps TCP MSS to fit.
    pub fn subscriber_mru(&self) -> u16 {
        self.link.lcp_peer.mru
    }
}

/// How long an incoming call's ICRP waits for [`Node::release_call`] at
/// most with [`Node::report_connected_calls`] on; then the call is cleared
/// (CDN result 4). Longer than the fast path's own bound on its workers.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(1);

/// An L2TP call as a fast path needs it, reported when its ICRQ arrives
/// (or, for a call that came up without that, when it came up), before
/// PPP: what a fast path needs to take the session's data messages and hand
/// its PPP frames back with [`Node::handle_ppp`]. Reported only after
/// [`Node::report_connected_calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectedCall {
    /// The session.
    pub session: SessionHandle,
    /// Our Tunnel ID (what the LAC puts in its data messages).
    pub tunnel_id: u16,
    /// The LAC's Tunnel ID (what we put in ours).
    pub peer_tunnel_id: u16,
    /// Our Session ID.
    pub session_id: u16,
    /// The LAC's Session ID.
    pub peer_session_id: u16,
    /// The LAC's address and UDP port.
    pub remote: SocketAddrV4,
    /// Our address and port, when the node knows it. It does not (its
    /// socket is usually bound to the wildcard address): `None`, and the
    /// daemon fills in its configured tunnel address.
    pub local: Option<SocketAddrV4>,
    /// The LAC sent Sequencing Required (RFC 2661 §4.4.6, AVP 39): data
    /// messages carry Ns/Nr both ways.
    pub sequencing: bool,
}

/// A session that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    /// The session.
    pub session: SessionHandle,
    /// The name it authenticated with (or tried to).
    pub username: Option<String>,
    /// The address it held (now released).
    pub address: Option<Ipv4Addr>,
    /// Why it ended.
    pub cause: EndCause,
    /// The Acct-Terminate-Cause of `cause`.
    pub terminate_cause: TerminateCause,
    /// The CDN result we sent, if we sent one.
    pub cdn: Option<ResultCode>,
    /// Whether PPP had been up.
    pub was_established: bool,
    /// Time from the L2TP session up to the end.
    pub duration: Duration,
}

/// What the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A LAC's tunnel is up.
    TunnelUp {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// The LAC.
        remote: SocketAddrV4,
        /// The LAC's Host Name.
        peer_host_name: String,
    },
    /// A tunnel is down (its sessions ended just before).
    TunnelDown {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// Why.
        reason: TunnelDownReason,
    },
    /// PPP is up on a session.
    SessionEstablished(Box<EstablishedSession>),
    /// An established session renegotiated or opened another NCP.
    SessionUpdated {
        /// The session.
        session: SessionHandle,
        /// What is negotiated now.
        link: Box<LinkState>,
    },
    /// The authenticator refused a subscriber (the link fails with CHAP
    /// Failure or PAP Nak, then the session ends).
    AuthRejected {
        /// The session.
        session: SessionHandle,
        /// The name presented.
        username: String,
        /// Why, if known.
        reason: Option<RejectReason>,
    },
    /// No address for an authenticated subscriber: the session ends.
    AddressUnavailable {
        /// The session.
        session: SessionHandle,
        /// The subscriber.
        username: String,
        /// What the pool said.
        error: PoolError,
    },
    /// A session ended (for whatever reason, at whatever stage).
    SessionDown(Box<EndedSession>),
    /// An accounting record of a session: sent to the RADIUS accounting
    /// servers when RADIUS is configured, reported here either way.
    Accounting {
        /// The session.
        session: SessionHandle,
        /// Acct-Session-Id.
        acct_session_id: String,
        /// Start or Stop (Interim-Updates are the RADIUS client's own).
        status: AcctStatus,
        /// Acct-Terminate-Cause, on Stop.
        cause: Option<TerminateCause>,
    },
    /// RADIUS could not deliver an accounting record.
    AccountingLost {
        /// Which record.
        status: AcctStatus,
    },
    /// A RADIUS server stopped answering.
    RadiusServerDown {
        /// The server.
        address: SocketAddr,
    },
}

/// Counters of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// L2TP sessions that got a PPP link.
    pub sessions_started: u64,
    /// Sessions that reached PPP up.
    pub sessions_established: u64,
    /// Sessions that ended.
    pub sessions_ended: u64,
    /// Authentications refused.
    pub auth_rejected: u64,
    /// Sessions ended for want of an address.
    pub address_unavailable: u64,
    /// PPP frames the L2TP endpoint would not send (session gone).
    pub frames_not_sent: u64,
    /// Data frames (IPv4/IPv6) counted from subscribers.
    pub data_frames: u64,
}

/// One session's PPP side and what AAA said about it.
struct Session {
    link: PppLink,
    remote: SocketAddrV4,
    /// Our Tunnel ID, to find the session by the ids of a punted frame.
    local_tunnel_id: u16,
    /// The LAC's Tunnel ID (HA Tunnel-Identity).
    peer_tunnel_id: u16,
    /// HA Ownership-Epoch: 1 for a session set up here, the adopted one
    /// otherwise.
    epoch: u32,
    /// HA: adopted from the store under this key (primary, its Tunnel ID,
    /// its Session ID).
    adopted_from: Option<(Ipv4Addr, u16, u16)>,
    /// HA: the accounting start time carried over from the primary
    /// (seconds since the Unix epoch).
    start_unix: Option<u64>,
    /// The LAC asked for sequenced data messages.
    sequencing: bool,
    /// Its PPP frames wait until the fast path knows the session
    /// ([`Node::release_call`]).
    held: bool,
    local_session_id: u16,
    peer_session_id: u16,
    nas_port: u32,
    calling_station_id: Option<String>,
    username: Option<String>,
    /// The authentication in flight, with the generation of the
    /// authenticator that has it.
    auth: Option<(Generation, AuthHandle)>,
    attributes: SessionAttributes,
    address: Option<Ipv4Addr>,
    /// The generation of the authenticator that accepted the subscriber:
    /// its RADIUS client accounts the session (the Class it gave comes
    /// back to its servers).
    accepted_by: Option<Generation>,
    /// The accounting session, with the generation of the RADIUS client
    /// that keeps it (Interim-Updates and Stop go through that one).
    acct: Option<(Generation, AcctHandle)>,
    acct_session_id: String,
    started: Instant,
    established: bool,
    session_timeout_at: Option<Instant>,
    last_activity: Instant,
    counters: Counters,
    /// HA: when its counters last went into the offloaded state.
    counters_offloaded_at: Instant,
    /// HA: the counters an adopted session carried from its primary; the
    /// data plane's here count from zero and are added to them.
    counters_base: Counters,
    /// Why we (or the LAC) are ending it, set before the link goes down.
    end: Option<EndCause>,
    /// The L2TP session is gone: no CDN to send.
    lower_gone: bool,
}

/// Which authenticator of the node's life: handles of two authenticators
/// may be equal, so the node names its requests with both.
type Generation = u64;

/// An authenticator that [`Node::set_authenticator`] replaced while it
/// still had work: RADIUS requests in flight, or accounting of sessions
/// that started under it. It keeps running until that work is done.
struct Retired {
    generation: Generation,
    authenticator: Authenticator,
    /// Sessions it accepted that are not over: it accounts them.
    sessions: usize,
}

/// The RADIUS client of `generation`, current or retired.
fn radius_of<'a>(
    current: &'a mut Authenticator,
    current_generation: Generation,
    retired: &'a mut [Retired],
    generation: Generation,
) -> Option<&'a mut radius::Client> {
    let authenticator = if generation == current_generation {
        current
    } else {
        &mut retired
            .iter_mut()
            .find(|r| r.generation == generation)?
            .authenticator
    };
    match authenticator {
        Authenticator::Radius(client) => Some(client),
        Authenticator::Local { .. } => None,
    }
}

/// The LNS node: see the [module documentation](self).
pub struct Node {
    config: Config,
    endpoint: Endpoint,
    /// Authenticates new subscribers, and accounts the sessions they open.
    authenticator: Authenticator,
    /// The generation of `authenticator` (one more at every swap).
    generation: Generation,
    /// Replaced authenticators still finishing their work.
    retired: Vec<Retired>,
    pool: AddressPool,
    rng: Box<dyn RngCore + Send>,
    /// Boxed: a session is some 2 KB, and growing the map moved every one
    /// of them (a seventh of lnsd's time adopting 1000 sessions in a
    /// failure switchover, page faults included); now it moves pointers.
    sessions: HashMap<SessionHandle, Box<Session>>,
    /// Sessions by (our Tunnel ID, our Session ID): how punted PPP frames
    /// find theirs.
    by_ids: HashMap<(u16, u16), SessionHandle>,
    /// Connected calls not yet polled; `None` until
    /// [`Node::report_connected_calls`] (so a node without a fast path keeps
    /// nothing).
    connected_calls: Option<VecDeque<ConnectedCall>>,
    /// Calls reported at their ICRQ whose ICRP waits for
    /// [`Node::release_call`].
    offered: HashSet<SessionHandle>,
    /// Calls answered after [`Node::release_call`], not up yet: the fast
    /// path knows them already.
    answered: HashSet<SessionHandle>,
    /// Reported calls cleared before they came up, not yet polled
    /// ([`Node::poll_abandoned_call`]).
    abandoned: VecDeque<SessionHandle>,
    auths: HashMap<(Generation, AuthHandle), SessionHandle>,
    deadlines: Deadlines<SessionHandle>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    next_nas_port: u32,
    /// Prefix of every Acct-Session-Id, drawn at start so ids do not repeat
    /// across restarts (RFC 2866 §5.5: unique on the NAS).
    acct_prefix: u32,
    stats: NodeStats,
    /// HA, when configured.
    ha: Option<ha::Ha>,
    /// The wall clock: `Instant` and time since the Unix epoch at it.
    wall: Option<(Instant, Duration)>,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("lns::Node")
            .field("sessions", &self.sessions.len())
            .field("pool", &self.pool)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn child_rng(rng: &mut dyn RngCore) -> Box<dyn RngCore + Send> {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    Box::new(ChaCha8Rng::from_seed(seed))
}

/// The proxy LCP and authentication AVPs (26–33) of a call, if the LAC
/// sent them (RFC 2661 §4.4.5).
fn proxy_of(call: &CallInfo) -> (Option<ProxyLcp>, Option<ProxyAuth>) {
    let mut lcp = ProxyLcp::default();
    let mut have_lcp = false;
    let mut auth = ProxyAuth {
        kind: ProxyAuthType::None,
        name: Vec::new(),
        challenge: Vec::new(),
        id: 0,
        response: Vec::new(),
    };
    let mut have_auth = false;
    for entry in &call.avps {
        match &entry.avp {
            Avp::InitialReceivedLcpConfReq(v) => {
                lcp.initial_received = v.clone();
                have_lcp = true;
            }
            Avp::LastSentLcpConfReq(v) => {
                lcp.last_sent = v.clone();
                have_lcp = true;
            }
            Avp::LastReceivedLcpConfReq(v) => {
                lcp.last_received = v.clone();
                have_lcp = true;
            }
            Avp::ProxyAuthenType(t) => {
                auth.kind = ProxyAuthType::from(*t);
                have_auth = true;
            }
            Avp::ProxyAuthenName(v) => auth.name = v.clone(),
            Avp::ProxyAuthenChallenge(v) => auth.challenge = v.clone(),
            Avp::ProxyAuthenId(id) => auth.id = u16::from(*id),
            Avp::ProxyAuthenResponse(v) => auth.response = v.clone(),
            _ => {}
        }
    }
    (have_lcp.then_some(lcp), have_auth.then_some(auth))
}

/// The LAC sent Sequencing Required (RFC 2661 §4.4.6, AVP 39).
fn sequencing_required(call: &CallInfo) -> bool {
    call.avps
        .iter()
        .any(|e| matches!(e.avp, Avp::SequencingRequired))
}

fn calling_number(call: &CallInfo) -> Option<String> {
    call.avps.iter().find_map(|e| match &e.avp {
        Avp::CallingNumber(v) => Some(String::from_utf8_lossy(v).into_owned()),
        _ => None,
    })
}

impl Node {
    /// An LNS node. `authenticator` answers PPP authentication (the local
    /// users file, or RADIUS, which also gets the accounting); `pool` gives
    /// the subscribers' addresses; `rng` seeds every id, challenge and
    /// magic number (seed it from the OS in a daemon, from a constant in a
    /// test).
    pub fn new(
        config: Config,
        authenticator: Authenticator,
        pool: AddressPool,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, l2tp::ConfigError> {
        let mut config = config;
        if let Some(h) = &config.ha {
            if config.l2tp.ha.is_none() {
                config.l2tp.ha = Some(h.lac_side());
            }
        }
        let endpoint = Endpoint::new(config.l2tp.clone(), child_rng(&mut *rng))?;
        let ha = match &config.ha {
            Some(h) => Some(ha::Ha {
                endpoint: Endpoint::new(h.peer_side(&config.l2tp.host_name), child_rng(&mut *rng))?,
                peering: LnsPeering::new(h.peering()),
                config: h.clone(),
                started: false,
                adopting: HashMap::new(),
                release_deadlines: VecDeque::new(),
                lac_tunnels: HashMap::new(),
                by_acct: HashMap::new(),
                fence_after: VecDeque::new(),
                stats: HaStats::default(),
                load: match h.load {
                    Some(c) => Some(crate::ha::load::LoadMonitor::new(c).map_err(|e| {
                        l2tp::ConfigError {
                            field: "ha.load",
                            reason: e.to_string(),
                        }
                    })?),
                    None => None,
                },
                last_sample: None,
                draining: false,
                lacs: HashMap::new(),
                answers: VecDeque::new(),
                peer_held: HashMap::new(),
                peer_held_check: Instant::ZERO,
            }),
            None => None,
        };
        let acct_prefix = rng.next_u32();
        Ok(Node {
            config,
            endpoint,
            authenticator,
            generation: 0,
            retired: Vec::new(),
            pool,
            rng,
            sessions: HashMap::new(),
            by_ids: HashMap::new(),
            connected_calls: None,
            offered: HashSet::new(),
            answered: HashSet::new(),
            abandoned: VecDeque::new(),
            auths: HashMap::new(),
            deadlines: Deadlines::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_nas_port: 1,
            acct_prefix,
            stats: NodeStats::default(),
            ha,
            wall: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The L2TP endpoint, to read its state and counters.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The L2TP endpoint, for commands the node does not wrap (closing a
    /// tunnel). Sessions it ends come back as [`Event::SessionDown`].
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The address pool.
    pub fn pool(&self) -> &AddressPool {
        &self.pool
    }

    /// The RADIUS client, when RADIUS is configured (to give it the wall
    /// clock, read its counters).
    pub fn radius_mut(&mut self) -> Option<&mut radius::Client> {
        match &mut self.authenticator {
            Authenticator::Radius(client) => Some(client),
            Authenticator::Local { .. } => None,
        }
    }

    /// Replace the authenticator (a reloaded users file, other RADIUS
    /// servers) without touching a session.
    ///
    /// * Authentications that start from now on go to `authenticator`.
    /// * Sessions already authenticated stay up: their verdict stands.
    /// * An authentication still in flight at the old RADIUS client is
    ///   finished by it (its servers, its secret, its retransmissions and
    ///   failover): the subscriber gets the answer it would have had
    ///   without the reload, rather than a refusal it did nothing to earn.
    /// * Sessions accounted through the old client keep their accounting
    ///   there: Interim-Updates and the Stop go to the servers that took
    ///   their Start (with the Class they echo), so no session's record is
    ///   split over two servers and no Stop is lost. New sessions are
    ///   accounted through `authenticator`.
    ///
    /// The old client runs until it has nothing left (see
    /// [`Node::retired_authenticators`]); an old users file has nothing in
    /// flight and goes at once.
    pub fn set_authenticator(&mut self, now: Instant, authenticator: Authenticator) {
        // Verdicts the old one already gave are taken under it.
        self.pump(now);
        let old = core::mem::replace(&mut self.authenticator, authenticator);
        let old_generation = self.generation;
        self.generation += 1;
        if matches!(old, Authenticator::Radius(_)) {
            let sessions = self
                .sessions
                .values()
                .filter(|s| s.accepted_by == Some(old_generation))
                .count();
            self.retired.push(Retired {
                generation: old_generation,
                authenticator: old,
                sessions,
            });
            self.drop_drained();
        }
    }

    /// Replaced RADIUS clients still finishing authentications or
    /// accounting sessions that started under them.
    pub fn retired_authenticators(&self) -> usize {
        self.retired.len()
    }

    /// Tell every RADIUS client (the current one and those still draining)
    /// that `now` is `since_unix_epoch` on the wall clock, for
    /// Event-Timestamp (RFC 2869 §5.3).
    pub fn set_wall_clock(&mut self, now: Instant, since_unix_epoch: Duration) {
        self.wall = Some((now, since_unix_epoch));
        let retired = self.retired.iter_mut().map(|r| &mut r.authenticator);
        for authenticator in core::iter::once(&mut self.authenticator).chain(retired) {
            if let Authenticator::Radius(client) = authenticator {
                client.set_wall_clock(now, since_unix_epoch);
            }
        }
    }

    /// Whether no RADIUS request is waiting for an answer: every request of
    /// the current client answered or given up, and no replaced client
    /// still at work. What a clean stop waits for (accounting Stops).
    pub fn radius_settled(&self) -> bool {
        let current = match &self.authenticator {
            Authenticator::Radius(client) => {
                let s = client.stats();
                s.responses + s.timeouts >= s.requests
            }
            Authenticator::Local { .. } => true,
        };
        current && self.retired.is_empty()
    }

    /// End every session because the LNS is stopping: a CDN with result 3
    /// (RFC 2661 §4.4.2, administrative) to the LAC, the address back, and
    /// accounting Stop with Admin-Reboot ([`EndCause::Shutdown`]). No LCP
    /// Terminate is waited for: the LAC tells its subscribers. Sessions
    /// already going down keep their own cause. Returns how many were
    /// ended.
    pub fn shut_down_sessions(&mut self, now: Instant) -> usize {
        let sessions: Vec<SessionHandle> = self.sessions.keys().copied().collect();
        let mut ended = 0;
        for h in sessions {
            let Some(s) = self.sessions.get_mut(&h) else {
                continue;
            };
            if s.lower_gone {
                continue;
            }
            s.end.get_or_insert(EndCause::Shutdown);
            // The link goes down at once; ending it sends the CDN.
            s.link.lower_down(now);
            self.service(now, h);
            ended += 1;
        }
        self.pump(now);
        ended
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Sessions with a PPP link (coming up, up or going down).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions whose PPP link is up.
    pub fn established_count(&self) -> usize {
        self.sessions.values().filter(|s| s.established).count()
    }

    /// The address of a session, once assigned.
    pub fn session_address(&self, session: SessionHandle) -> Option<Ipv4Addr> {
        self.sessions.get(&session).and_then(|s| s.address)
    }

    /// A session's traffic counters as last given with
    /// [`Node::set_counters`] (for an adopted session, added to what it
    /// carried from its primary).
    pub fn session_counters(&self, session: SessionHandle) -> Option<Counters> {
        self.sessions.get(&session).map(|s| s.counters)
    }

    /// The PPP link of a session, to read its state.
    pub fn link(&self, session: SessionHandle) -> Option<&PppLink> {
        self.sessions.get(&session).map(|s| &s.link)
    }

    /// Every session held, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionHandle> + '_ {
        self.sessions.keys().copied()
    }

    /// Clear a session (operator's request): LCP Terminate-Request, then
    /// CDN result 3 and accounting Stop with Admin-Reset. False if there is
    /// no such session.
    pub fn clear_session(&mut self, now: Instant, session: SessionHandle) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else {
            return false;
        };
        s.end.get_or_insert(EndCause::AdminClear);
        s.link.close(now);
        self.service(now, session);
        self.pump(now);
        true
    }

    /// Close a tunnel and its sessions (StopCCN with `result`); each
    /// session ends with [`Event::SessionDown`] and accounting Stop. False
    /// if there is no such tunnel (or it is already closing).
    pub fn close_tunnel(&mut self, now: Instant, tunnel: TunnelHandle, result: ResultCode) -> bool {
        let closed = self.endpoint.close_tunnel(now, tunnel, result).is_ok();
        self.pump(now);
        closed
    }

    /// The data plane's counters for a session (octets and packets both
    /// ways, since the data plane got the session): they go into
    /// Interim-Updates and the Stop record, and into the HA offload. An
    /// adopted session adds them to what it carried from its primary, so
    /// its accounting goes on from there.
    pub fn set_counters(&mut self, now: Instant, session: SessionHandle, counters: Counters) {
        if let Some(s) = self.sessions.get_mut(&session) {
            let b = s.counters_base;
            let counters = Counters {
                input_octets: b.input_octets.saturating_add(counters.input_octets),
                output_octets: b.output_octets.saturating_add(counters.output_octets),
                input_packets: b.input_packets.saturating_add(counters.input_packets),
                output_packets: b.output_packets.saturating_add(counters.output_packets),
            };
            if counters.input_packets != s.counters.input_packets {
                // Idle-Timeout counts the subscriber's traffic (RFC 2865
                // §5.28).
                s.last_activity = now;
            }
            s.counters = counters;
            if let Some((generation, h)) = s.acct {
                if let Some(client) = radius_of(
                    &mut self.authenticator,
                    self.generation,
                    &mut self.retired,
                    generation,
                ) {
                    client.accounting_update(h, counters);
                }
            }
            self.offload_counters(now, session);
        }
    }

    /// Report every incoming call from now on as a [`ConnectedCall`]
    /// ([`Node::poll_connected_call`]) when its ICRQ arrives, and hold its
    /// ICRP until [`Node::release_call`] (at most [`ANSWER_LIMIT`]); a
    /// session that comes up without that (a recovery call) is reported
    /// when it comes up and its PPP output is held instead. `false` stops
    /// and forgets the unpolled ones (calls already waiting still wait for
    /// [`Node::release_call`]). For a daemon with a fast path.
    pub fn report_connected_calls(&mut self, on: bool) {
        self.endpoint.set_defer_answer(on.then_some(ANSWER_LIMIT));
        match (on, &self.connected_calls) {
            (true, None) => self.connected_calls = Some(VecDeque::new()),
            (false, _) => {
                self.connected_calls = None;
                self.abandoned.clear();
                self.answered.clear();
                // Nobody will release them: their frames go with the
                // next thing each session sends.
                for s in self.sessions.values_mut() {
                    s.held = false;
                }
            }
            (true, Some(_)) => {}
        }
    }

    /// The fast path knows `session` now: answer its ICRQ, or send the PPP
    /// frames it held. With [`Node::report_connected_calls`] on, a new
    /// call waits for this, so that the LAC's PPP frames are not dropped by
    /// workers that do not know the session yet (they would cost a PPP
    /// restart, 3 s). False if there is no such call or session.
    pub fn release_call(&mut self, now: Instant, session: SessionHandle) -> bool {
        // A recovery call: ICRP with its Ownership-Epoch.
        if let Some(answered) = self.release_recovery(now, session) {
            self.pump(now);
            return answered;
        }
        if self.offered.remove(&session) {
            if self.endpoint.answer_call(now, session, Ok(())).is_err() {
                // Cleared meanwhile (its wait ran out): SessionDown said so.
                return false;
            }
            self.answered.insert(session);
            self.pump(now);
            return true;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return false;
        };
        s.held = false;
        self.service(now, session);
        self.pump(now);
        true
    }

    /// The next connected call (see [`Node::report_connected_calls`]).
    pub fn poll_connected_call(&mut self) -> Option<ConnectedCall> {
        self.connected_calls.as_mut()?.pop_front()
    }

    /// The next reported call that was cleared before it came up (the
    /// LAC's CDN, its tunnel, the wait for [`Node::release_call`] ran out):
    /// the fast path forgets it. Sessions that came up end with
    /// [`Event::SessionDown`] instead.
    pub fn poll_abandoned_call(&mut self) -> Option<SessionHandle> {
        self.abandoned.pop_front()
    }

    /// A call offered by the endpoint ([`l2tp::Config::defer_answer`]):
    /// report it, or answer at once when nobody asked for reports.
    #[allow(clippy::too_many_arguments)]
    fn on_call_offered(
        &mut self,
        now: Instant,
        session: SessionHandle,
        tunnel_ids: (u16, u16),
        remote: SocketAddrV4,
        session_ids: (u16, u16),
        call: &CallInfo,
    ) {
        let Some(calls) = &mut self.connected_calls else {
            let _ = self.endpoint.answer_call(now, session, Ok(()));
            return;
        };
        calls.push_back(ConnectedCall {
            session,
            tunnel_id: tunnel_ids.0,
            peer_tunnel_id: tunnel_ids.1,
            session_id: session_ids.0,
            peer_session_id: session_ids.1,
            remote,
            local: None,
            // The LAC asks for sequencing in its ICCN (RFC 2661 §4.4.6);
            // the call is reported again then if it does.
            sequencing: sequencing_required(call),
        });
        self.offered.insert(session);
    }

    /// The session with our Tunnel ID `tunnel_id` and our Session ID
    /// `session_id`, if it has a PPP link.
    pub fn session_by_ids(&self, tunnel_id: u16, session_id: u16) -> Option<SessionHandle> {
        self.by_ids.get(&(tunnel_id, session_id)).copied()
    }

    /// A PPP frame (from the Address/Control or the Protocol field) of the
    /// session with our ids `tunnel_id`/`session_id` that reached us some
    /// other way than the node's socket: punted by a fast-path worker
    /// (`PuntReason::LnsPpp`). It goes where the PPP frame of an L2TP data
    /// message goes; the replies leave through [`Node::poll_transmit`].
    /// False (and ignored) when there is no such session.
    pub fn handle_ppp(
        &mut self,
        now: Instant,
        tunnel_id: u16,
        session_id: u16,
        frame: &[u8],
    ) -> bool {
        let Some(session) = self.session_by_ids(tunnel_id, session_id) else {
            return false;
        };
        self.on_frame(now, session, frame);
        self.pump(now);
        true
    }

    // --- I/O ------------------------------------------------------------

    /// A datagram from `from`: RADIUS if it comes from one of our RADIUS
    /// servers, L2TP otherwise.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        let from_v4 = from;
        let from = SocketAddr::V4(from);
        // A retired client first: the same server may be in the old and
        // the new list, and only the client that sent the request can match
        // the answer (RFC 2865 §3: Identifier and Response Authenticator).
        // The one whose count of matched responses grows took it.
        let mut radius = false;
        for r in &mut self.retired {
            if let Authenticator::Radius(client) = &mut r.authenticator {
                if client.is_server(from) {
                    radius = true;
                    let before = client.stats().responses;
                    client.handle_datagram(now, from, payload);
                    if client.stats().responses > before {
                        self.pump(now);
                        return;
                    }
                }
            }
        }
        match &mut self.authenticator {
            Authenticator::Radius(client) if client.is_server(from) => {
                client.handle_datagram(now, from, payload);
            }
            // From a server only a retired client knew: answered nothing.
            _ if radius => {}
            _ => match &mut self.ha {
                // The LNS-LNS connections have their own endpoint.
                Some(ha) if ha.config.is_peer(from_v4) => {
                    ha.endpoint.handle_datagram(now, from_v4, payload)
                }
                _ => self.endpoint.handle_datagram(now, from_v4, payload),
            },
        }
        self.pump(now);
    }

    /// The next datagram to send: PPP in L2TP data messages, L2TP control
    /// messages, RADIUS requests.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        // The LNS-LNS connection first: an LSORQ protects a change until
        // the peer has it (the offload lag), and behind a burst of PPP
        // answers and LAC messages it waited ~0.3 ms more in the lab. It is
        // at most a window of small messages ahead of the rest.
        if let Some(t) = self
            .ha
            .as_mut()
            .and_then(|ha| ha.endpoint.poll_transmit(now))
        {
            return Some((SocketAddr::V4(t.remote), t.payload));
        }
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        if let Some(t) = self.endpoint.poll_transmit(now) {
            return Some((SocketAddr::V4(t.remote), t.payload));
        }
        let retired = self.retired.iter_mut().map(|r| &mut r.authenticator);
        for authenticator in core::iter::once(&mut self.authenticator).chain(retired) {
            if let Authenticator::Radius(client) = authenticator {
                let mut buf = Vec::new();
                if let Some(to) = client.poll_transmit(now, &mut buf) {
                    return Some((to, buf));
                }
            }
        }
        None
    }

    /// When [`Node::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let radius = core::iter::once(&self.authenticator)
            .chain(self.retired.iter().map(|r| &r.authenticator))
            .filter_map(|a| match a {
                Authenticator::Radius(client) => client.poll_timeout(),
                Authenticator::Local { .. } => None,
            })
            .min();
        let ha = self.ha.as_ref().and_then(|ha| {
            if !ha.started {
                // Open the LNS-LNS connections at the first chance.
                return Some(Instant::ZERO);
            }
            [
                ha.endpoint.poll_timeout(),
                ha.peering.poll_timeout(),
                ha.fence_after.front().map(|f| f.0),
                ha.release_deadlines.front().map(|d| d.0),
                Some(ha.peer_held_check),
            ]
            .into_iter()
            .flatten()
            .min()
        });
        [
            self.endpoint.poll_timeout(),
            radius,
            self.deadlines.first(),
            ha,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run what is due: L2TP and RADIUS timers, and the sessions' PPP
    /// timers, Session-Timeout and Idle-Timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        let retired = self.retired.iter_mut().map(|r| &mut r.authenticator);
        for authenticator in core::iter::once(&mut self.authenticator).chain(retired) {
            if let Authenticator::Radius(client) = authenticator {
                if client.poll_timeout().is_some_and(|t| t <= now) {
                    client.handle_timeout(now);
                }
            }
        }
        for h in self.deadlines.take_due(now) {
            self.session_timer(now, h);
        }
        if let Some(ha) = &mut self.ha {
            if !ha.started {
                ha.started = true;
                ha.peering.start(now, &mut ha.endpoint);
            }
            if ha.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                ha.endpoint.handle_timeout(now);
            }
            if ha.peering.poll_timeout().is_some_and(|t| t <= now) {
                ha.peering.handle_timeout(now, &mut ha.endpoint);
            }
        }
        if self.next_fence().is_some_and(|t| t <= now) {
            self.fence_due(now);
        }
        self.reserve_peer_held(now);
        self.expire_releases(now);
        self.pump(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // --- internals --------------------------------------------------------

    /// Handle everything the endpoint and the authenticator have to say,
    /// until neither has more.
    fn pump(&mut self, now: Instant) {
        loop {
            if let Some(ha) = &mut self.ha {
                if let Some(e) = ha.endpoint.poll_event() {
                    ha.peering.handle_event(now, &mut ha.endpoint, &e);
                    continue;
                }
                if let Some(e) = ha.peering.poll_event() {
                    self.on_peering_event(now, e);
                    continue;
                }
            }
            if let Some(e) = self.endpoint.poll_event() {
                self.on_l2tp_event(now, e);
                continue;
            }
            if let Some(e) = self.authenticator.poll_event() {
                self.on_aaa_event(now, self.generation, e);
                continue;
            }
            let retired = self.retired.iter_mut().find_map(|r| {
                let e = r.authenticator.poll_event()?;
                Some((r.generation, e))
            });
            if let Some((generation, e)) = retired {
                self.on_aaa_event(now, generation, e);
                continue;
            }
            // What the sessions' changes queued goes out now; fencing may
            // come of it, so look again.
            if let Some(ha) = &mut self.ha {
                ha.peering.flush(now, &mut ha.endpoint);
                if let Some(e) = ha.peering.poll_event() {
                    self.on_peering_event(now, e);
                    continue;
                }
            }
            break;
        }
        if !self.retired.is_empty() {
            self.drop_drained();
        }
    }

    /// Let go of retired authenticators with nothing left to do: no
    /// session accounted through them, no authentication waiting on them,
    /// no request in flight (each has a retransmission deadline until it is
    /// answered or given up, so no deadline means none; their events were
    /// just polled).
    fn drop_drained(&mut self) {
        let auths = &self.auths;
        self.retired.retain(|r| {
            let busy = r.sessions > 0
                || auths.keys().any(|(g, _)| *g == r.generation)
                || match &r.authenticator {
                    Authenticator::Radius(client) => client.poll_timeout().is_some(),
                    Authenticator::Local { .. } => false,
                };
            if !busy {
                tracing::info!(
                    generation = r.generation,
                    "the replaced authenticator finished its work and is let go"
                );
            }
            busy
        });
    }

    fn on_l2tp_event(&mut self, now: Instant, event: l2tp::Event) {
        match event {
            l2tp::Event::TunnelUp {
                tunnel,
                remote,
                peer,
                local_tunnel_id,
            } => {
                if let Some(ha) = &mut self.ha {
                    ha.lac_tunnels.insert(tunnel, local_tunnel_id);
                }
                self.events.push_back(Event::TunnelUp {
                    tunnel,
                    remote,
                    peer_host_name: peer.host_name,
                })
            }
            l2tp::Event::TunnelDown { tunnel, reason, .. } => {
                if let Some(ha) = &mut self.ha {
                    // Its sessions went down just before, one by one.
                    if let Some(id) = ha.lac_tunnels.remove(&tunnel) {
                        ha.peering.tunnel_removed(now, id);
                    }
                    ha.lacs.remove(&tunnel);
                    let pool = &mut self.pool;
                    ha.adopting.retain(|s, r| {
                        let keep = s.tunnel != tunnel;
                        if !keep {
                            pool.release(r.address);
                        }
                        keep
                    });
                }
                self.events.push_back(Event::TunnelDown { tunnel, reason })
            }
            l2tp::Event::RecoveryCall {
                session,
                primary_session_id,
                call,
                ..
            } => self.on_recovery_call(now, session, primary_session_id, &call),
            l2tp::Event::CallOffered {
                session,
                local_tunnel_id,
                peer_tunnel_id,
                remote,
                local_session_id,
                peer_session_id,
                call,
            } => self.on_call_offered(
                now,
                session,
                (local_tunnel_id, peer_tunnel_id),
                remote,
                (local_session_id, peer_session_id),
                &call,
            ),
            l2tp::Event::SessionMoved { session, epoch } => {
                // The CDN that carried it is in: SessionDown follows and
                // ends the session, without a CDN of ours (lower gone).
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.end = Some(EndCause::Moved { epoch });
                    if let Some(ha) = &mut self.ha {
                        ha.stats.sessions_moved += 1;
                    }
                }
            }
            l2tp::Event::SessionUp {
                session,
                local_session_id,
                peer_session_id,
                call,
            } => self.start_session(now, session, local_session_id, peer_session_id, &call),
            l2tp::Event::SessionDown { session, reason } => {
                // A recovery call cleared before its ICCN (or refused).
                let recovery_reported = self.recovery_abandoned(session);
                let reported = self.offered.remove(&session)
                    | self.answered.remove(&session)
                    | recovery_reported;
                if reported && self.connected_calls.is_some() {
                    self.abandoned.push_back(session);
                }
                let Some(s) = self.sessions.get_mut(&session) else {
                    // One we closed ourselves: already accounted for.
                    return;
                };
                s.lower_gone = true;
                // A link already going down for its own reason (the
                // subscriber's Terminate-Request, whose CDN overtook our
                // Terminate-Ack's timer) keeps that reason.
                // PppLink only names the cause when LCP finishes; a link in
                // Stopping has acknowledged the peer's Terminate-Request
                // (RFC 1661 §4.1 RTR in Opened → Stopping).
                let cause = s.link.cause().or_else(|| {
                    (s.link.phase() == ppp::Phase::Terminate
                        && s.link.lcp_state() == ppp::fsm::State::Stopping)
                        .then_some(DownCause::PeerTerminated)
                });
                if let Some(cause) = cause {
                    s.end.get_or_insert(EndCause::Ppp(cause));
                }
                s.end.get_or_insert(match reason {
                    SessionDownReason::CdnReceived(r) => EndCause::LacDisconnected(r),
                    SessionDownReason::ProtocolError(r) | SessionDownReason::Closed(r) => {
                        EndCause::L2tpError(r)
                    }
                    SessionDownReason::TunnelDown => EndCause::TunnelDown,
                });
                s.link.lower_down(now);
                self.service(now, session);
            }
            l2tp::Event::Data { session, payload } => self.on_frame(now, session, &payload),
            l2tp::Event::Message {
                tunnel, message, ..
            } => self.on_lac_message(now, tunnel, &message),
            _ => {}
        }
    }

    fn start_session(
        &mut self,
        now: Instant,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
        call: &CallInfo,
    ) {
        let Some(remote) = self.endpoint.tunnel_remote(session.tunnel) else {
            return;
        };
        let (local_tunnel_id, peer_tunnel_id) =
            self.endpoint.tunnel_ids(session.tunnel).unwrap_or_default();
        // HA: a recovery call we answered with an adoption (its address
        // already reserved).
        let recovering = self.ha.as_mut().and_then(|ha| ha.adopting.remove(&session));
        let adoption = recovering.as_ref().map(|r| r.adoption.clone());
        self.by_ids
            .insert((local_tunnel_id, local_session_id), session);
        // A call reported at its ICRQ is programmed already; again only if
        // its ICCN asked for sequencing.
        let answered =
            self.answered.remove(&session) | recovering.as_ref().is_some_and(|r| r.reported);
        let sequencing = sequencing_required(call);
        if let Some(calls) = self
            .connected_calls
            .as_mut()
            .filter(|_| !answered || sequencing)
        {
            calls.push_back(ConnectedCall {
                session,
                tunnel_id: local_tunnel_id,
                peer_tunnel_id,
                session_id: local_session_id,
                peer_session_id,
                remote,
                local: None,
                sequencing,
            });
        }
        let rng = child_rng(&mut *self.rng);
        let link = match (&adoption, proxy_of(call)) {
            // No renegotiation: LCP and the NCPs start Opened with the
            // primary's magic numbers, so the subscriber's echoes are
            // answered as before.
            (Some(a), _) => PppLink::from_state(now, self.config.ppp.clone(), &a.state.link, rng),
            (None, (Some(lcp), auth)) => {
                PppLink::server_with_proxy(now, self.config.ppp.clone(), &lcp, auth.as_ref(), rng)
            }
            (None, (None, _)) => {
                let mut link = PppLink::new(ppp::Role::Server, self.config.ppp.clone(), rng);
                link.open(now);
                link
            }
        };
        let nas_port = self.next_nas_port;
        self.next_nas_port = self.next_nas_port.wrapping_add(1).max(1);
        self.stats.sessions_started += 1;
        self.sessions.insert(
            session,
            Box::new(Session {
                link,
                remote,
                local_tunnel_id,
                peer_tunnel_id,
                epoch: 1,
                adopted_from: None,
                start_unix: None,
                sequencing,
                held: self.connected_calls.is_some() && !answered,
                local_session_id,
                peer_session_id,
                nas_port,
                calling_station_id: calling_number(call),
                username: None,
                auth: None,
                accepted_by: None,
                attributes: SessionAttributes::default(),
                address: None,
                acct: None,
                acct_session_id: format!("{:08X}{:08X}", self.acct_prefix, nas_port),
                started: now,
                established: false,
                session_timeout_at: None,
                last_activity: now,
                counters: Counters::default(),
                counters_offloaded_at: now,
                counters_base: Counters::default(),
                end: None,
                lower_gone: false,
            }),
        );
        if let Some(a) = adoption {
            self.adopted_up(now, session, a);
        }
        self.service(now, session);
    }

    /// A PPP frame from the subscriber.
    fn on_frame(&mut self, now: Instant, session: SessionHandle, frame: &[u8]) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let protocol = ppp_wire::Packet::new_checked(frame).map(|p| p.protocol());
        if let Ok(ppp_wire::Protocol::Ipv4 | ppp_wire::Protocol::Ipv6) = protocol {
            // Subscriber traffic that reached the control plane (no data
            // plane in front, or a simulation): counted, and it keeps the
            // session from going idle.
            self.stats.data_frames += 1;
            s.counters.input_packets += 1;
            s.counters.input_octets += frame.len() as u64;
            s.last_activity = now;
            return;
        }
        s.link.handle_frame(now, frame);
        self.service(now, session);
    }

    fn on_aaa_event(&mut self, now: Instant, generation: Generation, event: radius::Event) {
        match event {
            radius::Event::Auth(result) => self.on_auth_result(now, generation, result),
            radius::Event::AccountingLost { status, .. } => {
                self.events.push_back(Event::AccountingLost { status })
            }
            radius::Event::ServerDown { address } => {
                self.events.push_back(Event::RadiusServerDown { address })
            }
            radius::Event::AccountingAcknowledged { .. } => {}
        }
    }

    fn on_auth_result(&mut self, now: Instant, generation: Generation, result: AuthResult) {
        let Some(h) = self.auths.remove(&(generation, result.handle)) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&h) else {
            return;
        };
        s.auth = None;
        let username = s.username.clone().unwrap_or_default();
        if !result.accept {
            self.stats.auth_rejected += 1;
            self.events.push_back(Event::AuthRejected {
                session: h,
                username,
                reason: result.reject_reason,
            });
            s.link.auth_verdict(now, false);
            self.service(now, h);
            return;
        }
        let address = match result.attributes.framed_address {
            Some(FramedAddress::Static(a)) => self.pool.reserve(a).map(|_| a),
            // 255.255.255.254, 255.255.255.255 (we do not let the subscriber
            // choose) or nothing: from the pool (RFC 2865 §5.8).
            Some(FramedAddress::FromPool | FramedAddress::PeerChooses) | None => {
                self.pool.allocate()
            }
        };
        s.attributes = result.attributes;
        // The first acceptance only: a later one (PPP authenticating
        // again) leaves the session's accounting where it is.
        if s.accepted_by.is_none() {
            s.accepted_by = Some(generation);
            if let Some(r) = self.retired.iter_mut().find(|r| r.generation == generation) {
                r.sessions += 1;
            }
        }
        s.link.auth_verdict(now, true);
        match address {
            Ok(a) => {
                s.address = Some(a);
                s.link.set_ipv4_assignment(
                    now,
                    Ipv4Assignment {
                        local: self.config.gateway,
                        peer: a,
                        primary_dns: self.config.primary_dns,
                        secondary_dns: self.config.secondary_dns,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(
                    session = h.id,
                    user = %username,
                    error = %e,
                    "no address for the subscriber, ending the session"
                );
                self.stats.address_unavailable += 1;
                s.end.get_or_insert(match e {
                    PoolError::InUse(a) => EndCause::AddressInUse(a),
                    _ => EndCause::PoolExhausted,
                });
                self.events.push_back(Event::AddressUnavailable {
                    session: h,
                    username,
                    error: e,
                });
                s.link.ipv4_unavailable(now);
            }
        }
        self.service(now, h);
    }

    /// A session's deadline came.
    fn session_timer(&mut self, now: Instant, h: SessionHandle) {
        let Some(s) = self.sessions.get_mut(&h) else {
            return;
        };
        if s.end.is_none() && s.session_timeout_at.is_some_and(|t| t <= now) {
            s.session_timeout_at = None;
            s.end = Some(EndCause::SessionTimeout);
            s.link.close(now);
        }
        if s.end.is_none()
            && s.established
            && s.attributes
                .idle_timeout
                .is_some_and(|idle| s.last_activity + idle <= now)
        {
            s.end = Some(EndCause::IdleTimeout);
            s.link.close(now);
        }
        if s.link.poll_timeout().is_some_and(|t| t <= now) {
            s.link.handle_timeout(now);
        }
        self.service(now, h);
    }

    /// Send what a session's link queued, handle its events, and file its
    /// next deadline.
    fn service(&mut self, now: Instant, h: SessionHandle) {
        loop {
            let Some(s) = self.sessions.get_mut(&h) else {
                return;
            };
            // A held session's frames wait in its link (see
            // `Node::release_call`).
            while let Some(frame) = (!s.held).then(|| s.link.poll_transmit(now)).flatten() {
                if s.lower_gone {
                    continue;
                }
                match self.endpoint.send_data(h, &frame) {
                    Ok(t) => self
                        .transmits
                        .push_back((SocketAddr::V4(t.remote), t.payload)),
                    Err(_) => self.stats.frames_not_sent += 1,
                }
            }
            match s.link.poll_event() {
                Some(e) => self.on_link_event(now, h, e),
                None => break,
            }
        }
        let Some(s) = self.sessions.get(&h) else {
            return;
        };
        let idle = s
            .attributes
            .idle_timeout
            .filter(|_| s.established && s.end.is_none())
            .map(|d| s.last_activity + d);
        let session_timeout = s.session_timeout_at.filter(|_| s.end.is_none());
        let next = [s.link.poll_timeout(), idle, session_timeout]
            .into_iter()
            .flatten()
            .min();
        self.deadlines.set(h, next);
    }

    fn on_link_event(&mut self, now: Instant, h: SessionHandle, event: ppp::Event) {
        let Some(s) = self.sessions.get_mut(&h) else {
            return;
        };
        match event {
            ppp::Event::Authenticate(request) => {
                let username = String::from_utf8_lossy(&request.username).into_owned();
                s.username = Some(username.clone());
                let credentials = match request.method {
                    PresentedSecret::Pap { password } => Credentials::Pap { password },
                    PresentedSecret::Chap {
                        id,
                        challenge,
                        response,
                    } => match <[u8; 16]>::try_from(response.as_slice()) {
                        Ok(response) => Credentials::Chap {
                            id,
                            challenge,
                            response,
                        },
                        Err(_) => {
                            // Not an MD5 response: no authenticator could
                            // accept it (RFC 1994 §4.1).
                            s.link.auth_verdict(now, false);
                            return;
                        }
                    },
                };
                let request = AuthRequest {
                    username,
                    credentials,
                    calling_station_id: s.calling_station_id.clone(),
                    nas_port: Some(s.nas_port),
                };
                let handle = (self.generation, self.authenticator.start_auth(now, request));
                s.auth = Some(handle);
                self.auths.insert(handle, h);
            }
            ppp::Event::Authenticated { .. } | ppp::Event::Renegotiating => {}
            ppp::Event::Up(link) => self.on_link_up(now, h, *link),
            ppp::Event::Updated(link) => {
                self.events
                    .push_back(Event::SessionUpdated { session: h, link });
                self.offload(now, h);
            }
            ppp::Event::Down { cause } => self.end_session(now, h, cause),
        }
    }

    fn on_link_up(&mut self, now: Instant, h: SessionHandle, link: LinkState) {
        let tunnel_ids = self.endpoint.tunnel_ids(h.tunnel).unwrap_or_default();
        let Some(s) = self.sessions.get_mut(&h) else {
            return;
        };
        let Some(address) = s.address.or(link.peer_ipv4()) else {
            return;
        };
        s.established = true;
        s.last_activity = now;
        s.session_timeout_at = s.attributes.session_timeout.map(|d| now + d);
        let username = s.username.clone().unwrap_or_default();
        self.stats.sessions_established += 1;
        let generation = s.accepted_by.unwrap_or(self.generation);
        if let Some(client) = radius_of(
            &mut self.authenticator,
            self.generation,
            &mut self.retired,
            generation,
        ) {
            s.acct = Some((
                generation,
                client.accounting_start(
                    now,
                    AccountingSession {
                        session_id: s.acct_session_id.clone(),
                        username: username.clone(),
                        framed_address: Some(address),
                        class: s.attributes.class.clone(),
                        calling_station_id: s.calling_station_id.clone(),
                        nas_port: Some(s.nas_port),
                        authentic: Some(Authentic::Radius),
                        interim_interval: s.attributes.interim_interval,
                    },
                ),
            ));
        }
        self.events.push_back(Event::Accounting {
            session: h,
            acct_session_id: s.acct_session_id.clone(),
            status: AcctStatus::Start,
            cause: None,
        });
        self.events
            .push_back(Event::SessionEstablished(Box::new(EstablishedSession {
                session: h,
                remote: s.remote,
                tunnel_ids,
                local_session_id: s.local_session_id,
                peer_session_id: s.peer_session_id,
                username,
                address,
                link,
                attributes: s.attributes.clone(),
                acct_session_id: s.acct_session_id.clone(),
                proxy: s.link.proxy_outcome(),
                setup_time: now.saturating_duration_since(s.started),
                adopted_epoch: None,
            })));
        self.offload(now, h);
    }

    /// The link is down: tell the LAC, give the address back, account.
    fn end_session(&mut self, now: Instant, h: SessionHandle, cause: DownCause) {
        let Some(s) = self.sessions.remove(&h) else {
            return;
        };
        if self.by_ids.get(&(s.local_tunnel_id, s.local_session_id)) == Some(&h) {
            self.by_ids.remove(&(s.local_tunnel_id, s.local_session_id));
        }
        self.deadlines.set(h, None);
        if let Some(a) = s.auth {
            self.auths.remove(&a);
        }
        let end = s.end.unwrap_or(EndCause::Ppp(cause));
        // The L2TP session may already be closing (the LAC's CDN crossing
        // ours): then there is nothing to send.
        let cdn = cdn_result(&end).filter(|result| {
            !s.lower_gone && self.endpoint.close_session(now, h, result.clone()).is_ok()
        });
        if let Some(a) = s.address {
            match (&end, &mut self.ha) {
                // Its address goes with it: held for the peer, not handed
                // out again here (ha::Node::reserve_peer_held).
                (EndCause::Moved { .. }, Some(ha)) if self.pool.contains(a) => {
                    ha.peer_held.insert(a, Some(now + ha::MOVED_ADDRESS_GRACE));
                }
                _ => {
                    self.pool.release(a);
                }
            }
        }
        let terminate = terminate_cause(&end);
        if s.established {
            self.offload_removed(
                now,
                s.local_tunnel_id,
                s.local_session_id,
                &s.acct_session_id,
                s.adopted_from,
            );
        }
        // A moved session's accounting goes on at its new owner under the
        // same Acct-Session-Id: no Stop (the new owner sends it, RFC 2866
        // §5.1), and the RADIUS client forgets it so no Interim-Update
        // follows from here either.
        if let (EndCause::Moved { .. }, Some((generation, acct))) = (&end, s.acct) {
            if let Some(client) = radius_of(
                &mut self.authenticator,
                self.generation,
                &mut self.retired,
                generation,
            ) {
                client.accounting_forget(acct);
            }
        }
        if s.established && !matches!(end, EndCause::Moved { .. }) {
            // Through the client the session started with, even if it was
            // replaced since: its Start went there.
            if let Some((generation, acct)) = s.acct {
                if let Some(client) = radius_of(
                    &mut self.authenticator,
                    self.generation,
                    &mut self.retired,
                    generation,
                ) {
                    client.accounting_stop(now, acct, s.counters, terminate);
                }
            }
            self.events.push_back(Event::Accounting {
                session: h,
                acct_session_id: s.acct_session_id.clone(),
                status: AcctStatus::Stop,
                cause: Some(terminate),
            });
        }
        if let Some(generation) = s.accepted_by {
            if let Some(r) = self.retired.iter_mut().find(|r| r.generation == generation) {
                r.sessions = r.sessions.saturating_sub(1);
            }
        }
        self.stats.sessions_ended += 1;
        self.events
            .push_back(Event::SessionDown(Box::new(EndedSession {
                session: h,
                username: s.username,
                address: s.address,
                cause: end,
                terminate_cause: terminate,
                cdn,
                was_established: s.established,
                duration: now.saturating_duration_since(s.started),
            })));
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
        Some(to)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Node::poll_event(self)
    }
}

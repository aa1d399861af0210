//! The LAC node, sans-IO: PPPoE subscribers on the access port, each
//! carried as an L2TP incoming call to an LNS chosen from a configured list.
//!
//! # What happens to a subscriber
//!
//! 1. PPPoE discovery (EtherType 0x8863) goes to the discovery server
//!    ([`crate::pppoe::Server`]); when it grants a session the node takes
//!    the subscriber on ([`Node::open_subscriber`]).
//! 2. *Relay mode* ([`Mode::Relay`]): an incoming call opens at once. The
//!    subscriber's PPP frames pass through untouched; those that arrive
//!    before the call is connected wait in a small queue
//!    ([`Config::queue_limit`]).
//!
//!    *Proxy mode* ([`Mode::Proxy`], RFC 2661 §4.4.5): the node negotiates
//!    LCP with the subscriber itself ([`PppLink`] in the server role) and
//!    collects its authentication (PAP name and password, or the CHAP
//!    challenge and response); only then does it open the call, and its
//!    ICCN carries the proxy LCP (AVPs 26–28) and proxy authentication
//!    (AVPs 29–33), so the LNS carries on without renegotiating.
//! 3. The LNS is chosen by [`select::Selector`]: best preference, least
//!    loaded by weight, not locked out. One tunnel per LNS, opened on
//!    demand and shared by its calls. A call that is not connected within
//!    [`Config::setup_timeout`], or that the LNS refuses (CDN) or drops with
//!    its tunnel (StopCCN, no answer) while setting up, locks that LNS out
//!    for [`Config::lockout`] and is retried on the next candidate. With no
//!    candidate left the subscriber is refused (PADT).
//! 4. With a fast path ([`Config::defer_connect`]) the LNS's answer (ICRP)
//!    comes out as [`Event::CallAnswered`] with the call's ids: the daemon
//!    programs the fast path and then connects the call
//!    ([`Node::connect_call`], which sends the ICCN), so the workers know
//!    the session before the LNS's first PPP frames, which follow the ICCN
//!    at once (RFC 2661 §7.4.1: a LAC that sent ICCN takes data).
//!    Call up ([`Event::SessionUp`], ICCN acknowledged): the queue is
//!    flushed (and, without a fast path, the daemon programs nothing
//!    before this). PPP frames that
//!    still reach the node (punted control frames, or everything without a
//!    fast path) are relayed here: PPPoE drops the Address and Control
//!    fields (RFC 2516 §7), L2TP carries them, so they are added upstream
//!    and removed downstream, as the fast path does.
//! 5. The LNS ends the call (CDN) or its tunnel goes down: PADT to the
//!    subscriber (with HA, a dead LNS's calls are recovered at its peer
//!    instead: see below). The subscriber ends the session (PADT): CDN to
//!    the LNS.
//!    Either way [`Event::SessionDown`].
//!
//! # High availability ([`Config::ha`], DESIGN.md §3)
//!
//! With an [`HaPolicy`] the node asks for the HA extension in every SCCRQ
//! (HA-Capability) and records the peers each LNS advertises in its SCCRP
//! (Peer-LNS-Address, per tunnel and per LNS: [`Node::ha_status`]).
//!
//! *Failure switchover* (docs/ha-protocol.md §5.5): a tunnel whose LNS
//! stops answering (nothing heard for [`l2tp::Config::dead_interval`], or
//! the RFC 2661 §5.8 retransmissions exhausted) and that advertised peers
//! does not end its calls. The endpoint reports each of its sessions down
//! and then the tunnel; the node keeps every subscriber whose call was up
//! (no PADT, no [`Event::SessionDown`]), reports it [`Event::Holding`] with
//! the dead call's ids, holds what it sends (data and LCP echoes alike, up
//! to [`HaPolicy::hold_limit`] frames, in order), and locks the LNS out for
//! new calls. Then [`Event::TunnelDown`]. For the dead tunnel it opens one
//! recovery tunnel to the first peer (SCCRQ with Recovery-Tunnel naming the
//! old tunnel) and places one call per subscriber on it, with
//! Recovery-Session (the old LNS Session ID) and the ICRQ and ICCN AVPs of
//! the original call, proxy AVPs included; the endpoint sends them back to
//! back once the tunnel is up, at most [`HaPolicy::recovery_window`] in
//! flight. The peer adopts each session from the state the primary
//! offloaded and answers with its Ownership-Epoch: [`Event::CallAnswered`]
//! (with [`Config::defer_connect`]) and [`Event::SessionUp`] come as for
//! any call, with [`CallUp::moved_from`] naming the old ids and the epoch;
//! at SessionUp the held frames go out first, in order (not before: an
//! LNS without a fast path takes the call's data only once it has the
//! ICCN, RFC 2661 §7.4.2). PPP is never
//! renegotiated: the subscriber sees nothing but the gap. Per call the
//! moves are logged at debug; each recovery tunnel's burst is summed up in
//! one line once its last call is up or failed ("HA: recovery calls
//! done", with when the first and last were connected and up).
//!
//! *Replay* (C6, zero upstream loss): what the subscriber sent toward the
//! dead LNS before the LAC noticed (up to a dead interval's worth) may or
//! may not have been forwarded; nothing tells which. Duplicates are
//! preferred to loss: with HA on the node keeps, per subscriber, the
//! upstream network-layer frames (not PPP control, which the peer adopted
//! as negotiated) it relayed within [`HaPolicy::replay_window`] (at most
//! [`HaPolicy::hold_limit`]), and at [`Event::Holding`] those sent after
//! the LNS was last heard from ([`l2tp::Endpoint::last_heard`]) minus
//! [`HaPolicy::replay_margin`] go first into the hold, oldest first
//! ([`Stats::replayed_frames`]). The peer then forwards them again: a few
//! arrive twice at the far end (those the dead LNS did forward), none is
//! lost. This is not forwarding by two LNSs at once: the old LNS is dead
//! or cut off (and fences itself when it returns), and the replay covers
//! at most one window, once. `Event::Holding::replay` tells a fast path
//! how far back its own history goes. A recovery call
//! the peer refuses (no offloaded state: CDN), or a recovery tunnel that
//! fails or is not up within twice the dead interval, moves on to the next
//! peer; with none left the subscriber's session ends
//! ([`EndCause::TunnelDown`], PADT). A tunnel that ends with a StopCCN ends
//! its calls as before: the LNS meant it.
//!
//! *Load switchover* (docs/ha-protocol.md §5.4): an STPLRQ from an LNS is
//! answered with STPLRP: denied when HA is off, when
//! [`HaPolicy::accept_switchover`] is false ("policy"), when it names no
//! peer but the LNS itself ("no usable peer") or a type we do not know;
//! granted otherwise, and reported as [`Event::SwitchoverRequested`].
//! "All sessions" moves every call on that LNS and steers new calls away
//! from it; "listed" moves the calls whose LNS Session IDs are listed (on
//! the tunnel the request came on); "new sessions only" steers new calls
//! away for [`HaPolicy::steer_time`], and the same with no peer cancels the
//! steering (failback), as does a fresh tunnel to an LNS whose tunnel went
//! down while steered. A moved call goes through a recovery tunnel as
//! above, make-before-break ([`MovedFrom::make_before_break`]): the old
//! call keeps carrying the subscriber both ways until the new one is up;
//! then the subscriber's upstream goes to the new call only (never to both:
//! no packet is forwarded by two LNSs), the old call is released at its LNS
//! with a CDN carrying the new Ownership-Epoch (the LNS drops it without an
//! LCP Terminate) and [`Event::SessionReleased`] names its ids. With a fast
//! path ([`Config::defer_connect`]) the release waits until the daemon's
//! workers have switched to the new call ([`Node::release_moved`]), at most
//! `defer_connect` after the new call's SessionUp: frames the workers still
//! send on the old call meanwhile would otherwise reach the old LNS after
//! the CDN and be dropped there; what that LNS sends down the old call
//! until then still reaches the subscriber. A move no
//! peer takes leaves the call where it was. If the old LNS fails during
//! the move, the move carries on as a failure switchover.
//!
//! [`Stats`] counts recoveries (started, done, failed), switchover
//! requests (granted, denied), calls moved, held frames dropped and HA
//! messages that could not be used (ignored, never a panic).
//!
//! # I/O
//!
//! Two sides: Ethernet frames on the access port
//! ([`Node::handle_access_frame`], [`Node::poll_access_frame`]) and one UDP
//! socket for L2TP ([`crate::node::Node`], so the node runs in
//! [`crate::sim::Sim`] and under [`crate::driver::Driver`]). Untagged
//! frames only: a VLAN-tagged frame is taken by its inner EtherType, but
//! answers go out untagged.

pub mod select;

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};

use dataplane::wire::control::{Avp, AvpEntry, ControlMessage, SwitchoverAction};
use dataplane::wire::ethernet::{self, EtherType};
use dataplane::wire::{ppp as ppp_wire, ppp_cp, pppoe as pppoe_wire};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::ha::message::{HaMessage, SwitchoverReply};
use crate::l2tp::codes::cdn;
use crate::l2tp::{
    self, CallParams, Endpoint, ResultCode, SessionDownReason, SessionHandle, TunnelDownReason,
    TunnelHandle, TunnelState,
};
use crate::lns::deadlines::Deadlines;
use crate::ppp::{self, DownCause, PppConfig, PppLink, PresentedSecret, Role};
use crate::pppoe;
use crate::time::Instant;
pub use dataplane::wire::control::SwitchoverType;

pub use select::{LnsEntry, LnsStatus, Selector};

/// The smallest Ethernet frame without its FCS.
const MIN_FRAME_LEN: usize = 60;

/// HA: peers tried per moving call at most (an LNS names its peers in
/// Peer-LNS-Address or an STPLRQ; each moving call keeps its own list).
const MAX_PEERS: usize = 8;

/// How the LAC carries PPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// PPP passes through untouched; the LNS negotiates everything.
    #[default]
    Relay,
    /// The LAC negotiates LCP and collects authentication, then hands both
    /// to the LNS in the ICCN (RFC 2661 §4.4.5).
    Proxy,
}

/// How a LAC node behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The L2TP side (host name, secret, timers). [`l2tp::Config::lac`].
    pub l2tp: l2tp::Config,
    /// The LNSs calls may go to.
    pub lns: Vec<LnsEntry>,
    /// Relay or proxy.
    pub mode: Mode,
    /// A call must be connected (tunnel and ICRQ/ICRP/ICCN acknowledged)
    /// this long after it was placed, or its LNS is locked out and the call
    /// moves on. Default 10 s.
    pub setup_timeout: Duration,
    /// How long a failed LNS gets no new calls. Default 60 s.
    pub lockout: Duration,
    /// PPP frames per subscriber held while its call is being set up;
    /// more are dropped and counted ([`Stats::queue_overflow`]). Default 8.
    pub queue_limit: usize,
    /// Proxy mode: the LCP and authentication the LAC offers the
    /// subscriber (server role). Its MRU should fit PPPoE (1492).
    pub ppp: PppConfig,
    /// What each call's ICRQ and ICCN say (framing, bearer, speeds). The
    /// node adds Calling Number (the subscriber's MAC address) and, in
    /// proxy mode, the proxy AVPs.
    pub call: CallParams,
    /// Our L2TP socket address, reported in [`Event::SessionUp`] for the
    /// fast path (the node itself never needs it).
    pub local_address: SocketAddrV4,
    /// For a daemon with a fast path: hold each call's ICCN after the
    /// LNS's ICRP ([`Event::CallAnswered`]) until the daemon has programmed
    /// the workers and says so with [`Node::connect_call`], at most this
    /// long ([`l2tp::CallParams::defer_connect`]). The LNS sends its first
    /// PPP frames as soon as it has the ICCN; workers that do not know the
    /// session yet would drop them, and PPP would wait for the LNS's
    /// restart timer (3 s). A call not connected in time is cleared (CDN)
    /// and its subscriber refused, without blaming the LNS. `None` (the
    /// default): the ICCN follows the ICRP at once.
    pub defer_connect: Option<Duration>,
    /// PPPoE discovery: our access MAC address (the source of every frame
    /// we send on the access port), AC-Name, services, limits.
    pub pppoe: pppoe::ServerConfig,
    /// High availability (DESIGN.md §3, docs/ha-protocol.md §5.4-5.5):
    /// failure and load switchover of calls between an LNS and its peers.
    /// `None` (the default): no HA, the node behaves as a plain RFC 2661
    /// LAC. `Some`: the node sets [`l2tp::Config::ha`] itself (HA-Capability
    /// in every SCCRQ) if it is not set already.
    pub ha: Option<HaPolicy>,
}

/// What the LAC does when an LNS fails or asks it to move calls
/// ([`Config::ha`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaPolicy {
    /// Recover the calls of an LNS found dead (Hellos unanswered) on the
    /// peer it advertised (Peer-LNS-Address), without renegotiating PPP.
    /// Default true.
    pub failure_switchover: bool,
    /// Grant an LNS's request to move calls (STPLRQ); false denies every
    /// one with reason "policy". Default true.
    pub accept_switchover: bool,
    /// Recovery calls (ICRQ with Recovery-Session) in flight at once on one
    /// recovery tunnel; the rest wait for a slot. Default 256.
    pub recovery_window: usize,
    /// PPP frames the node itself holds per subscriber while its call
    /// moves (the slow path; a fast path has its own rings); more are
    /// dropped and counted ([`Stats::hold_overflow`]). Default 64.
    pub hold_limit: usize,
    /// "New sessions only" steering (STPLRQ type 1) lasts at most this
    /// long unless cancelled. Default 1 h.
    pub steer_time: Duration,
    /// Failure switchover: upstream frames relayed toward an LNS at most
    /// this long before it was found dead are sent again to the peer that
    /// recovers the call (replayed, see the module documentation), so the
    /// subscriber loses none. It should cover the time a dead LNS goes
    /// unnoticed: the dead interval plus a Hello interval, and some slack
    /// (the default, 500 ms, is 300 + 100 + 100 ms). The node keeps, per
    /// subscriber, the frames it relayed within this long (at most
    /// [`HaPolicy::hold_limit`] of them). Zero: no replay, no history.
    pub replay_window: Duration,
    /// Replay starts this long before the dead LNS was last heard from:
    /// what we sent just before its last message may have crossed it on
    /// the wire, or been queued behind it there, and not been forwarded.
    /// Default 20 ms.
    pub replay_margin: Duration,
}

impl Default for HaPolicy {
    fn default() -> Self {
        HaPolicy {
            failure_switchover: true,
            accept_switchover: true,
            recovery_window: 256,
            hold_limit: 64,
            steer_time: Duration::from_secs(3600),
            replay_window: Duration::from_millis(500),
            replay_margin: Duration::from_millis(20),
        }
    }
}

impl Config {
    /// A relay LAC called `host_name` with access MAC `mac`, sending calls
    /// to `lns`.
    pub fn new(host_name: impl Into<String>, mac: ethernet::Address, lns: Vec<LnsEntry>) -> Self {
        let host_name = host_name.into();
        let host_name_for_ac = host_name.clone();
        let mut ppp = PppConfig::server();
        ppp.auth.name = host_name.as_bytes().to_vec();
        // RFC 2516 §7: no Address and Control fields on PPPoE, and an MRU
        // that fits in 1500 bytes with the PPPoE header.
        ppp.address_control = false;
        ppp.lcp.mru = 1492;
        // The link is handed over within a round trip of authentication;
        // the LNS runs the keepalive from then on.
        ppp.lcp.echo_interval = None;
        Config {
            l2tp: l2tp::Config::lac(host_name),
            lns,
            mode: Mode::Relay,
            setup_timeout: Duration::from_secs(10),
            lockout: Duration::from_secs(60),
            queue_limit: 8,
            ppp,
            call: CallParams::default(),
            local_address: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1701),
            defer_connect: None,
            pppoe: pppoe::ServerConfig {
                mac,
                ac_name: host_name_for_ac,
                ..pppoe::ServerConfig::default()
            },
            ha: None,
        }
    }

    /// Fast failure detection toward the LNSs (DESIGN.md §1 item 4): a
    /// Hello after `hello` of silence, the LNS dead after `dead` of it, and
    /// retransmissions that fit inside that: the first after `hello` (at
    /// least twice our acknowledgement delay, as [`l2tp::Config`] wants),
    /// doubling up to `dead`. With RFC 2661 §5.8's 1 s first timeout a
    /// message lost on a quiet tunnel, a Hello above all (the next one waits
    /// while it is in flight), was not sent again before `dead` ran out: a
    /// live LNS counted as dead, and its sessions moved, for one datagram.
    pub fn detect_failure_within(&mut self, hello: Duration, dead: Duration) {
        self.l2tp.hello_interval = Some(hello);
        self.l2tp.dead_interval = Some(dead);
        let initial = hello.max(self.l2tp.ack_delay.saturating_mul(2));
        self.l2tp.retransmission = l2tp::Retransmission {
            initial,
            cap: dead.max(initial),
            ..l2tp::Retransmission::default()
        };
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field of [`Config`].
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "lac config: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl From<l2tp::ConfigError> for ConfigError {
    fn from(e: l2tp::ConfigError) -> Self {
        ConfigError {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// A PPPoE session: the subscriber's MAC address and the SESSION_ID
/// (RFC 2516 §4: the pair identifies the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberKey {
    /// The subscriber's MAC address.
    pub mac: ethernet::Address,
    /// The PPPoE SESSION_ID.
    pub session_id: u16,
}

impl SubscriberKey {
    /// The fast path's binding for this session behind access port `port`.
    pub fn binding(&self, port: u8) -> dataplane::table::PppoeBinding {
        dataplane::table::PppoeBinding {
            port,
            subscriber_mac: self.mac,
            session_id: self.session_id,
        }
    }
}

/// A call that is up: what the fast path is programmed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallUp {
    /// The PPPoE session.
    pub subscriber: SubscriberKey,
    /// The L2TP session.
    pub session: SessionHandle,
    /// Our Tunnel ID (what the LNS sends to).
    pub local_tunnel_id: u16,
    /// The LNS's Tunnel ID.
    pub peer_tunnel_id: u16,
    /// Our L2TP address ([`Config::local_address`]).
    pub local: SocketAddrV4,
    /// The LNS.
    pub peer: SocketAddrV4,
    /// Our Session ID.
    pub local_session_id: u16,
    /// The LNS's Session ID (data messages go to it).
    pub peer_session_id: u16,
    /// Whether data messages carry sequence numbers (never, so far: we do
    /// not ask for it and the LNS cannot in an ICRP).
    pub sequencing: bool,
    /// From the subscriber's arrival to the call up.
    pub setup_time: Duration,
    /// LNSs tried before this one for this call.
    pub failovers: usize,
    /// HA: this call took over the subscriber's earlier call (failure or
    /// load switchover); the old call's ids.
    pub moved_from: Option<MovedFrom>,
}

/// The call a moved subscriber's new call replaces ([`CallUp::moved_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovedFrom {
    /// Our Tunnel ID of the old call.
    pub local_tunnel_id: u16,
    /// Our Session ID of the old call.
    pub local_session_id: u16,
    /// The session's Ownership-Epoch at the new LNS (from its ICRP).
    pub epoch: u32,
    /// A load switchover: the old call still carries the subscriber's
    /// traffic until the new one is up ([`Event::SessionUp`]), and is then
    /// released ([`Event::SessionReleased`]). False: a failure switchover,
    /// the old call is gone and the subscriber's upstream is held
    /// ([`Event::Holding`]) until the new call is up.
    pub make_before_break: bool,
}

/// Why a subscriber's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// The subscriber sent PADT.
    SubscriberTerminated,
    /// The LNS disconnected the call (CDN) with this result.
    LnsDisconnected(ResultCode),
    /// The tunnel carrying the call went down.
    TunnelDown(TunnelDownReason),
    /// No LNS could take the call: every one is locked out or failed it.
    NoLnsAvailable,
    /// Proxy mode: the LAC's own LCP/authentication with the subscriber
    /// failed.
    Ppp(DownCause),
    /// The operator cleared it.
    AdminClear,
    /// The call failed for an L2TP reason of ours (an error sending).
    L2tpError(ResultCode),
}

/// A subscriber's session that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnded {
    /// The PPPoE session.
    pub subscriber: SubscriberKey,
    /// Its L2TP session, if it had one.
    pub session: Option<SessionHandle>,
    /// The LNS it was on (or last tried).
    pub lns: Option<SocketAddrV4>,
    /// Our and the LNS's Tunnel ID, if the call was up.
    pub tunnel_ids: Option<(u16, u16)>,
    /// Our and the LNS's Session ID, if the call was up.
    pub session_ids: Option<(u16, u16)>,
    /// Why.
    pub cause: EndCause,
    /// Whether the call had been up.
    pub was_up: bool,
    /// Since the subscriber arrived.
    pub duration: Duration,
}

/// What the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A tunnel to an LNS is up.
    TunnelUp {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// The LNS.
        lns: SocketAddrV4,
        /// Our Tunnel ID.
        local_tunnel_id: u16,
        /// The LNS's Tunnel ID.
        peer_tunnel_id: u16,
    },
    /// A tunnel is down (its calls ended or moved just before).
    TunnelDown {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// The LNS.
        lns: SocketAddrV4,
        /// Our Tunnel ID.
        local_tunnel_id: u16,
        /// Why.
        reason: TunnelDownReason,
    },
    /// [`Config::defer_connect`]: the LNS answered a subscriber's call;
    /// program the fast path with these ids, then [`Node::connect_call`].
    /// [`Event::SessionUp`] follows (with the same ids) once the LNS has
    /// the ICCN; [`Event::CallAbandoned`] or [`Event::SessionDown`] if the
    /// call ends first. `setup_time` is up to the answer.
    CallAnswered(Box<CallUp>),
    /// A call reported by [`Event::CallAnswered`] ended before it was up
    /// (the subscriber's session may go on with a call to another LNS):
    /// unprogram it.
    CallAbandoned {
        /// The PPPoE session.
        subscriber: SubscriberKey,
        /// Our Tunnel ID of the call.
        local_tunnel_id: u16,
        /// Our Session ID of the call.
        local_session_id: u16,
    },
    /// A subscriber's call is up.
    SessionUp(Box<CallUp>),
    /// A subscriber's session ended.
    SessionDown(Box<SessionEnded>),
    /// An LNS failed a call and gets no new ones until `until`.
    LnsLockedOut {
        /// The LNS.
        addr: SocketAddrV4,
        /// End of the lockout.
        until: Instant,
    },
    /// HA failure switchover: the subscriber's call died with its LNS and
    /// is being recovered at a peer; hold its upstream frames (in order)
    /// until [`Event::SessionUp`] of the new call (with
    /// [`CallUp::moved_from`] naming these ids). The subscriber is kept: no
    /// PADT, no [`Event::SessionDown`] (unless the recovery fails).
    Holding {
        /// The PPPoE session.
        subscriber: SubscriberKey,
        /// Our Tunnel ID of the dead call.
        local_tunnel_id: u16,
        /// Our Session ID of the dead call.
        local_session_id: u16,
        /// Replay: what was sent upstream on the dead call within this long
        /// before now goes first into the hold, oldest first (the dead LNS
        /// may not have forwarded it): now − the LNS last heard from +
        /// [`HaPolicy::replay_margin`], at most
        /// [`HaPolicy::replay_window`]. Zero: nothing to replay (replay
        /// off). The node's slow path has replayed its own frames already.
        replay: Duration,
    },
    /// HA: an LNS asked to move calls (STPLRQ) and was answered (STPLRP).
    SwitchoverRequested {
        /// The LNS that asked.
        lns: SocketAddrV4,
        /// What it asked for.
        kind: SwitchoverType,
        /// Whether we granted it.
        granted: bool,
        /// Calls that will move (0 for "new sessions only" or a denial).
        sessions: usize,
    },
    /// HA load switchover: the subscriber's new call is up and its old
    /// call was released at the old LNS (CDN with the new
    /// Ownership-Epoch): stop forwarding on the old ids.
    SessionReleased {
        /// The PPPoE session.
        subscriber: SubscriberKey,
        /// Our Tunnel ID of the old call.
        local_tunnel_id: u16,
        /// Our Session ID of the old call.
        local_session_id: u16,
    },
}

/// Counters of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames given to [`Node::handle_access_frame`].
    pub access_frames: u64,
    /// Frames that do not parse (Ethernet, PPPoE or PPP header).
    pub malformed_frames: u64,
    /// Frames neither PPPoE discovery nor session.
    pub not_pppoe: u64,
    /// PPPoE session frames for a session we do not have.
    pub unknown_session: u64,
    /// PPPoE discovery frames.
    pub discovery_frames: u64,
    /// PPP frames relayed subscriber → LNS by the node.
    pub upstream_frames: u64,
    /// PPP frames relayed LNS → subscriber by the node.
    pub downstream_frames: u64,
    /// Frames held while a call was set up.
    pub queued_frames: u64,
    /// Frames dropped because the setup queue was full.
    pub queue_overflow: u64,
    /// Frames the L2TP endpoint would not send.
    pub frames_not_sent: u64,
    /// Subscribers taken on.
    pub sessions_requested: u64,
    /// Calls that came up.
    pub sessions_up: u64,
    /// Subscribers' sessions that ended.
    pub sessions_down: u64,
    /// Subscribers refused for want of an LNS.
    pub sessions_refused: u64,
    /// Calls moved to another LNS during setup.
    pub failovers: u64,
    /// LNS lockouts.
    pub lockouts: u64,
    /// Proxy mode: authentications collected and handed to an LNS.
    pub proxy_authentications: u64,
    /// HA: calls whose recovery at a peer LNS began (failure or load
    /// switchover).
    pub recoveries_started: u64,
    /// HA: recovery calls that came up.
    pub recoveries_done: u64,
    /// HA: subscribers whose recovery failed at every peer (ended), or a
    /// planned move given up (left on the old LNS).
    pub recoveries_failed: u64,
    /// HA: STPLRQs received.
    pub switchover_requests: u64,
    /// HA: STPLRQs granted.
    pub switchovers_granted: u64,
    /// HA: STPLRQs denied.
    pub switchovers_denied: u64,
    /// HA: calls moved by a load switchover (released at the old LNS).
    pub sessions_moved: u64,
    /// HA: frames dropped because a moving subscriber's hold was full
    /// ([`HaPolicy::hold_limit`]).
    pub hold_overflow: u64,
    /// HA: STPLRQs (or other HA messages) that could not be read; ignored.
    pub ha_messages_malformed: u64,
    /// HA: upstream frames sent again to the peer that recovered a call
    /// (replay: the dead LNS may not have forwarded them).
    pub replayed_frames: u64,
}

/// HA counters and state per LNS ([`Node::ha_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LnsHaStatus {
    /// The LNS.
    pub lns: SocketAddrV4,
    /// Its peers (Peer-LNS-Address of its latest SCCRP), in preference
    /// order.
    pub peers: Vec<Ipv4Addr>,
    /// New calls avoid it until then (STPLRQ "new sessions only" or
    /// "all"), if steered.
    pub steered_until: Option<Instant>,
    /// Subscribers whose call died with it and that wait for their
    /// recovery (upstream held).
    pub holding: usize,
    /// Subscribers being moved away from it by a load switchover (still
    /// forwarding on it).
    pub moving: usize,
    /// Recoveries of its calls begun.
    pub recoveries_started: u64,
    /// Recoveries of its calls that came up elsewhere.
    pub recoveries_done: u64,
    /// Recoveries of its calls that failed.
    pub recoveries_failed: u64,
    /// STPLRQs it sent.
    pub switchover_requests: u64,
    /// Of those, granted.
    pub switchovers_granted: u64,
    /// Of those, denied.
    pub switchovers_denied: u64,
}

/// The node's HA state ([`Node::ha_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LacHaStatus {
    /// [`Config::ha`] is set.
    pub enabled: bool,
    /// The policy, if enabled.
    pub policy: Option<HaPolicy>,
    /// Every LNS we have a tunnel to or HA state about, in address order.
    pub lns: Vec<LnsHaStatus>,
}

/// Where a subscriber's session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Proxy mode: the LAC negotiates LCP and collects authentication.
    Negotiating,
    /// The call is being set up.
    Calling,
    /// The call is up.
    Up,
}

/// One subscriber, for `show sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The PPPoE session.
    pub subscriber: SubscriberKey,
    /// Where it stands.
    pub stage: Stage,
    /// The LNS it is on (or being set up on).
    pub lns: Option<SocketAddrV4>,
    /// Its L2TP session.
    pub session: Option<SessionHandle>,
    /// Our and the LNS's Tunnel ID once up.
    pub tunnel_ids: Option<(u16, u16)>,
    /// Our and the LNS's Session ID once up.
    pub session_ids: Option<(u16, u16)>,
    /// When the subscriber arrived.
    pub since: Instant,
    /// PPP frames the node relayed upstream and downstream.
    pub frames: (u64, u64),
}

/// One tunnel, for `show tunnels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelInfo {
    /// The tunnel.
    pub tunnel: TunnelHandle,
    /// The LNS.
    pub lns: SocketAddrV4,
    /// Our and the LNS's Tunnel ID (0 until known).
    pub tunnel_ids: (u16, u16),
    /// Its state.
    pub state: Option<TunnelState>,
    /// Calls on it (setting up or up).
    pub sessions: usize,
}

/// What the LAC learned from its own LCP negotiation for the ICCN
/// (RFC 2661 §4.4.5).
#[derive(Debug, Default)]
struct ProxyCapture {
    initial_received: Option<Vec<u8>>,
    last_received: Vec<u8>,
    last_sent: Vec<u8>,
    /// The subscriber's latest PAP Authenticate-Request (the PPP frame).
    pap_request: Option<Vec<u8>>,
}

struct Subscriber {
    stage: Stage,
    link: Option<Box<PppLink>>,
    capture: ProxyCapture,
    auth: Option<ppp::AuthRequest>,
    started: Instant,
    lns: Option<SocketAddrV4>,
    call: Option<SessionHandle>,
    /// The latest call placed, kept after it is detached, for the report.
    last_call: Option<SessionHandle>,
    tried: Vec<SocketAddrV4>,
    setup_deadline: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    ids: Option<((u16, u16), (u16, u16))>,
    frames_up: u64,
    frames_down: u64,
    /// HA: the call is moving to another LNS.
    moving: Option<Moving>,
    /// HA replay: the upstream frames relayed lately (when, and the L2TP
    /// payload), oldest first; at most [`HaPolicy::hold_limit`], none
    /// older than [`HaPolicy::replay_window`] when one is added.
    relayed: VecDeque<(Instant, Vec<u8>)>,
}

/// A subscriber's call on its way to another LNS (HA switchover).
#[derive(Debug)]
struct Moving {
    /// The LNS it moves away from.
    from_lns: SocketAddrV4,
    /// The tunnel the old call was on (recovery tunnels are per old
    /// tunnel: Recovery-Tunnel names it).
    from_tunnel: TunnelHandle,
    /// The old call (make-before-break: still up; failure: gone).
    old_call: SessionHandle,
    /// Our and the old LNS's Tunnel ID, our and its Session ID of the old
    /// call (its Session ID goes in Recovery-Session).
    old_ids: ((u16, u16), (u16, u16)),
    /// A load switchover: the old call forwards until the new one is up.
    make_before_break: bool,
    /// Peers still to try, in preference order.
    peers: VecDeque<Ipv4Addr>,
    /// The recovery call, once placed.
    new_call: Option<SessionHandle>,
    /// Our Tunnel ID and Session ID of the recovery call, once reported
    /// ([`Event::CallAnswered`]).
    new_ids: Option<(u16, u16)>,
    /// Upstream frames held, in arrival order.
    held: VecDeque<Vec<u8>>,
}

/// A load switchover's old call, still up at the old LNS after the new
/// call came up, until the daemon's fast path has switched to the new call
/// ([`Node::release_moved`]) or [`Config::defer_connect`] runs out.
#[derive(Debug)]
struct Release {
    /// The subscriber.
    subscriber: SubscriberKey,
    /// The old LNS.
    from_lns: SocketAddrV4,
    /// Our and the old LNS's Tunnel ID, our and its Session ID.
    old_ids: ((u16, u16), (u16, u16)),
    /// The new LNS's Ownership-Epoch, for the old LNS's CDN.
    epoch: Option<u32>,
    /// Released by then at the latest.
    deadline: Instant,
}

/// A tunnel to a peer LNS opened to take over the calls of one of another
/// LNS's tunnels (Recovery-Tunnel).
#[derive(Debug)]
struct RecoveryTunnelState {
    /// Subscribers waiting for a slot in the window.
    waiting: VecDeque<SubscriberKey>,
    /// Recovery calls placed and neither up nor failed.
    in_flight: usize,
    /// The tunnel must be up by then, or the peer is passed over.
    setup_deadline: Option<Instant>,
    /// The burst of calls under way, summed up in one line once none is
    /// left (per call the log says it at debug only: a failure switchover
    /// moves hundreds at once).
    burst: RecoveryBurst,
}

/// Recovery calls of one recovery tunnel since it last had none under way.
#[derive(Debug, Clone, Copy, Default)]
struct RecoveryBurst {
    /// When the first of them was queued.
    since: Option<Instant>,
    /// When the first and the last were connected (ICCN sent,
    /// [`Node::connect_call`]): with a fast path, when their held upstream
    /// went to the peer.
    first_connected: Option<Instant>,
    last_connected: Option<Instant>,
    /// When the first came up.
    first_up: Option<Instant>,
    up: usize,
    failed: usize,
}

/// What a tunnel's LNS said about itself for HA, kept past the tunnel's
/// end (its TunnelDown needs it).
#[derive(Debug, Clone, Default)]
struct TunnelHa {
    /// Peer-LNS-Address of its SCCRP.
    peers: Vec<Ipv4Addr>,
}

/// What the node knows about an LNS for HA.
#[derive(Debug, Default)]
struct LnsHa {
    peers: Vec<Ipv4Addr>,
    steered_until: Option<Instant>,
    recoveries_started: u64,
    recoveries_done: u64,
    recoveries_failed: u64,
    switchover_requests: u64,
    switchovers_granted: u64,
    switchovers_denied: u64,
    /// Its tunnel went down while it was steered: a fresh tunnel to it
    /// cancels the steering (it came back).
    went_down_while_steered: bool,
}

/// The LAC: see the [module documentation](self).
pub struct Node {
    config: Config,
    endpoint: Endpoint,
    discovery: pppoe::Server,
    rng: Box<dyn RngCore + Send>,
    selector: Selector,
    subscribers: HashMap<SubscriberKey, Subscriber>,
    by_call: HashMap<SessionHandle, SubscriberKey>,
    /// The tunnel new calls to an LNS go on.
    tunnel_to: HashMap<SocketAddrV4, TunnelHandle>,
    /// Every tunnel we opened that is not down yet, and its LNS.
    tunnels: HashMap<TunnelHandle, SocketAddrV4>,
    deadlines: Deadlines<SubscriberKey>,
    transmits: VecDeque<(SocketAddrV4, Vec<u8>)>,
    access: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: Stats,
    /// HA state per LNS.
    ha_lns: BTreeMap<SocketAddrV4, LnsHa>,
    /// HA: what each tunnel's LNS advertised, from its TunnelUp.
    tunnel_ha: HashMap<TunnelHandle, TunnelHa>,
    /// HA: recovery tunnels by old tunnel and peer.
    recovery_to: HashMap<(TunnelHandle, SocketAddrV4), TunnelHandle>,
    /// HA: recovery tunnels.
    recoveries: HashMap<TunnelHandle, RecoveryTunnelState>,
    /// HA: recovery calls and their subscribers.
    by_recovery: HashMap<SessionHandle, SubscriberKey>,
    /// HA: old calls of load switchovers waiting for their release
    /// ([`Node::release_moved`]), by old call.
    releasing: HashMap<SessionHandle, Release>,
    /// HA: `releasing` by subscriber (one old call each at most).
    release_of: HashMap<SubscriberKey, SessionHandle>,
    /// HA: `releasing` by deadline.
    release_deadlines: std::collections::BTreeSet<(Instant, SessionHandle)>,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("lac::Node")
            .field("subscribers", &self.subscribers.len())
            .field("tunnels", &self.tunnels.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn child_rng(rng: &mut dyn RngCore) -> Box<dyn RngCore + Send> {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    Box::new(ChaCha8Rng::from_seed(seed))
}

/// The options of an LCP Configure-Request in `frame` (a PPP frame, with or
/// without Address and Control), if that is what it is.
fn lcp_configure_request(frame: &[u8]) -> Option<Vec<u8>> {
    let packet = ppp_wire::Packet::new_checked(frame).ok()?;
    if packet.protocol() != ppp_wire::Protocol::Lcp {
        return None;
    }
    let cp = ppp_cp::Packet::new_checked(packet.payload()).ok()?;
    (cp.code() == ppp_cp::Code::ConfigureRequest).then(|| cp.data().to_vec())
}

/// The Identifier of a PAP Authenticate-Request in `frame` (RFC 1334
/// §2.2.1), if that is what it is.
fn pap_request_id(frame: &[u8]) -> Option<u8> {
    let packet = ppp_wire::Packet::new_checked(frame).ok()?;
    if packet.protocol() != ppp_wire::Protocol::Pap {
        return None;
    }
    match packet.payload() {
        [1, id, ..] => Some(*id),
        _ => None,
    }
}

impl Node {
    /// A LAC node at time `now`. `rng` seeds every id, challenge, cookie
    /// secret and magic number.
    pub fn new(
        config: Config,
        now: Instant,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, ConfigError> {
        if config.lns.is_empty() {
            return Err(ConfigError {
                field: "lns",
                reason: "at least one LNS is needed".into(),
            });
        }
        if config.mode == Mode::Proxy && config.ppp.lcp.authenticate_peer.is_empty() {
            return Err(ConfigError {
                field: "ppp.lcp.authenticate_peer",
                reason: "proxy mode needs an authentication method (PAP or CHAP) to collect".into(),
            });
        }
        if config.setup_timeout.is_zero() {
            return Err(ConfigError {
                field: "setup_timeout",
                reason: "must be more than zero".into(),
            });
        }
        let mut l2tp_config = config.l2tp.clone();
        if config.ha.is_some() && l2tp_config.ha.is_none() {
            // DESIGN.md §3: HA-Capability in our SCCRQ, so that LNSs send
            // us Peer-LNS-Address and may send STPLRQ.
            l2tp_config.ha = Some(l2tp::HaConfig::default());
        }
        if let Some(ha) = &config.ha {
            if ha.recovery_window == 0 {
                return Err(ConfigError {
                    field: "ha.recovery_window",
                    reason: "at least one recovery call must be allowed in flight".into(),
                });
            }
        }
        let endpoint = Endpoint::new(l2tp_config, child_rng(&mut *rng))?;
        let discovery = pppoe::Server::new(config.pppoe.clone(), now, &mut *rng);
        Ok(Node {
            discovery,
            selector: Selector::new(config.lns.iter().copied(), config.lockout),
            config,
            endpoint,
            rng,
            subscribers: HashMap::new(),
            by_call: HashMap::new(),
            tunnel_to: HashMap::new(),
            tunnels: HashMap::new(),
            deadlines: Deadlines::new(),
            transmits: VecDeque::new(),
            access: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            ha_lns: BTreeMap::new(),
            tunnel_ha: HashMap::new(),
            recovery_to: HashMap::new(),
            recoveries: HashMap::new(),
            by_recovery: HashMap::new(),
            releasing: HashMap::new(),
            release_of: HashMap::new(),
            release_deadlines: std::collections::BTreeSet::new(),
        })
    }

    // --- accessors --------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The L2TP endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Change how long a failed LNS is locked out, from its next failure
    /// on (a configuration reload).
    pub fn set_lockout(&mut self, lockout: Duration) {
        self.config.lockout = lockout;
        self.selector.set_lockout(lockout);
    }

    /// The L2TP endpoint, for what the node does not wrap (a daemon's
    /// shutdown waits on its acknowledgements). Closing tunnels or sessions
    /// here leaves the node to learn of it from the endpoint's events:
    /// prefer [`Node::clear_tunnel`] and [`Node::clear_session`].
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// HA state per LNS: its peers, steering, subscribers holding or
    /// moving, counters (for `l2tpctl ha status`).
    pub fn ha_status(&self) -> LacHaStatus {
        let lns = self
            .ha_lns
            .iter()
            .map(|(&addr, h)| LnsHaStatus {
                lns: addr,
                peers: h.peers.clone(),
                steered_until: h.steered_until,
                holding: self
                    .subscribers
                    .values()
                    .filter(|s| {
                        s.moving
                            .as_ref()
                            .is_some_and(|m| m.from_lns == addr && !m.make_before_break)
                    })
                    .count(),
                moving: self
                    .subscribers
                    .values()
                    .filter(|s| {
                        s.moving
                            .as_ref()
                            .is_some_and(|m| m.from_lns == addr && m.make_before_break)
                    })
                    .count(),
                recoveries_started: h.recoveries_started,
                recoveries_done: h.recoveries_done,
                recoveries_failed: h.recoveries_failed,
                switchover_requests: h.switchover_requests,
                switchovers_granted: h.switchovers_granted,
                switchovers_denied: h.switchovers_denied,
            })
            .collect();
        LacHaStatus {
            enabled: self.config.ha.is_some(),
            policy: self.config.ha.clone(),
            lns,
        }
    }

    /// Every LNS with its load and lockout.
    pub fn lns_status(&self) -> &[LnsStatus] {
        self.selector.status()
    }

    /// Subscribers whose call is up.
    pub fn up_count(&self) -> usize {
        self.subscribers
            .values()
            .filter(|s| s.stage == Stage::Up)
            .count()
    }

    /// Subscribers held (any stage).
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// One subscriber.
    pub fn session(&self, key: SubscriberKey) -> Option<SessionInfo> {
        self.subscribers.get(&key).map(|s| SessionInfo {
            subscriber: key,
            stage: s.stage,
            lns: s.lns,
            session: s.call,
            tunnel_ids: s.ids.map(|(t, _)| t),
            session_ids: s.ids.map(|(_, s)| s),
            since: s.started,
            frames: (s.frames_up, s.frames_down),
        })
    }

    /// Every subscriber, in key order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut keys: Vec<_> = self.subscribers.keys().copied().collect();
        keys.sort();
        keys.into_iter().filter_map(|k| self.session(k)).collect()
    }

    /// Every tunnel, in handle order.
    pub fn tunnels(&self) -> Vec<TunnelInfo> {
        let mut list: Vec<_> = self
            .tunnels
            .iter()
            .map(|(&tunnel, &lns)| TunnelInfo {
                tunnel,
                lns,
                tunnel_ids: self.endpoint.tunnel_ids(tunnel).unwrap_or_default(),
                state: self.endpoint.tunnel_state(tunnel),
                sessions: self.by_call.keys().filter(|h| h.tunnel == tunnel).count(),
            })
            .collect();
        list.sort_by_key(|t| t.tunnel);
        list
    }

    /// The subscriber whose call has our Session ID `local_session_id` on
    /// the tunnel with our Tunnel ID `local_tunnel_id` (what `l2tpctl`
    /// shows).
    pub fn find_session(
        &self,
        local_tunnel_id: u16,
        local_session_id: u16,
    ) -> Option<SubscriberKey> {
        self.subscribers.iter().find_map(|(k, s)| {
            let ((t, _), (l, _)) = s.ids?;
            (t == local_tunnel_id && l == local_session_id).then_some(*k)
        })
    }

    /// The tunnel with our Tunnel ID `local_tunnel_id`.
    pub fn find_tunnel(&self, local_tunnel_id: u16) -> Option<TunnelHandle> {
        self.tunnels.keys().copied().find(|&t| {
            self.endpoint
                .tunnel_ids(t)
                .is_some_and(|(l, _)| l == local_tunnel_id)
        })
    }

    // --- commands ---------------------------------------------------------

    /// Take on a subscriber whose PPPoE session was granted (the discovery
    /// server's doing; public for tests and for a daemon with its own
    /// discovery). A second call for the same session is ignored.
    pub fn open_subscriber(&mut self, now: Instant, key: SubscriberKey) {
        if self.subscribers.contains_key(&key) {
            return;
        }
        self.stats.sessions_requested += 1;
        let mut sub = Subscriber {
            stage: Stage::Calling,
            link: None,
            capture: ProxyCapture::default(),
            auth: None,
            started: now,
            lns: None,
            call: None,
            last_call: None,
            tried: Vec::new(),
            setup_deadline: None,
            queue: VecDeque::new(),
            ids: None,
            frames_up: 0,
            frames_down: 0,
            moving: None,
            relayed: VecDeque::new(),
        };
        match self.config.mode {
            Mode::Relay => {
                self.subscribers.insert(key, sub);
                self.place_call(now, key);
            }
            Mode::Proxy => {
                let mut link = PppLink::new(
                    Role::Server,
                    self.config.ppp.clone(),
                    child_rng(&mut *self.rng),
                );
                link.open(now);
                sub.stage = Stage::Negotiating;
                sub.link = Some(Box::new(link));
                self.subscribers.insert(key, sub);
                self.service_link(now, key);
            }
        }
        self.pump(now);
    }

    /// End a subscriber's session: CDN to the LNS (result 3,
    /// administrative), PADT to the subscriber.
    pub fn clear_session(&mut self, now: Instant, key: SubscriberKey) -> bool {
        let result = ResultCode::with_message(cdn::ADMINISTRATIVE, "cleared by the operator");
        self.close_session(now, key, result)
    }

    /// End a subscriber's session with CDN `result` (a
    /// [`crate::l2tp::codes::cdn`] value) to the LNS and PADT to the
    /// subscriber; reported as [`EndCause::AdminClear`].
    pub fn close_session(&mut self, now: Instant, key: SubscriberKey, result: ResultCode) -> bool {
        if !self.subscribers.contains_key(&key) {
            return false;
        }
        self.end(now, key, EndCause::AdminClear, Some(result), true);
        self.pump(now);
        true
    }

    /// Close a tunnel (StopCCN, result 1) and end every subscriber on it.
    pub fn clear_tunnel(&mut self, now: Instant, tunnel: TunnelHandle) -> bool {
        let result = ResultCode::with_message(
            crate::l2tp::codes::stop_ccn::GENERAL_REQUEST,
            "cleared by the operator",
        );
        self.close_tunnel(now, tunnel, result)
    }

    /// Close a tunnel with StopCCN `result` (a
    /// [`crate::l2tp::codes::stop_ccn`] value) and end every subscriber on
    /// it: CDN (administrative, with the same message) and PADT each.
    pub fn close_tunnel(&mut self, now: Instant, tunnel: TunnelHandle, result: ResultCode) -> bool {
        if !self.tunnels.contains_key(&tunnel) {
            return false;
        }
        let on_it: Vec<_> = self
            .by_call
            .iter()
            .filter(|(h, _)| h.tunnel == tunnel)
            .map(|(_, k)| *k)
            .collect();
        let cdn_result = ResultCode::with_message(cdn::ADMINISTRATIVE, result.message.clone());
        for key in on_it {
            self.end(
                now,
                key,
                EndCause::AdminClear,
                Some(cdn_result.clone()),
                true,
            );
        }
        self.tunnel_to.retain(|_, t| *t != tunnel);
        let _ = self.endpoint.close_tunnel(now, tunnel, result);
        self.pump(now);
        true
    }

    // --- the access side ----------------------------------------------------

    /// A whole Ethernet frame from the access port. Never panics; what
    /// cannot be used is counted ([`Stats`]).
    pub fn handle_access_frame(&mut self, now: Instant, frame: &[u8]) {
        self.stats.access_frames += 1;
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            self.stats.malformed_frames += 1;
            return;
        };
        match eth.ethertype() {
            EtherType::PppoeDiscovery => {
                self.stats.discovery_frames += 1;
                self.handle_discovery(now, frame);
            }
            EtherType::PppoeSession => {
                let from = eth.src_addr();
                self.handle_session_frame(now, from, eth.payload());
            }
            _ => self.stats.not_pppoe += 1,
        }
        self.pump(now);
    }

    /// The next frame for the access port into `buf` (cleared first);
    /// false when none is waiting.
    pub fn poll_access_frame(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.access.pop_front() {
            Some(frame) => {
                buf.clear();
                buf.extend_from_slice(&frame);
                true
            }
            None => false,
        }
    }

    fn handle_discovery(&mut self, now: Instant, frame: &[u8]) {
        self.discovery.handle_frame(now, frame);
        self.drain_discovery();
        while let Some(event) = self.discovery.poll_event() {
            match event {
                pppoe::ServerEvent::SessionRequested {
                    mac, session_id, ..
                } => self.open_subscriber(now, SubscriberKey { mac, session_id }),
                pppoe::ServerEvent::SessionTerminated { mac, session_id } => {
                    let key = SubscriberKey { mac, session_id };
                    if self.subscribers.contains_key(&key) {
                        // RFC 2661 §4.4.2 result 1: the subscriber's
                        // "carrier", the PPPoE session, is gone.
                        let result =
                            ResultCode::with_message(cdn::LOST_CARRIER, "PADT from the subscriber");
                        self.end(
                            now,
                            key,
                            EndCause::SubscriberTerminated,
                            Some(result),
                            false,
                        );
                    }
                }
            }
            self.drain_discovery();
        }
    }

    /// The discovery server's frames join the access queue at once, so
    /// they keep their order with ours (a PADS before our first LCP frame,
    /// our last frames before a PADT).
    fn drain_discovery(&mut self) {
        let mut buf = Vec::new();
        while self.discovery.poll_frame(&mut buf) {
            self.access.push_back(core::mem::take(&mut buf));
        }
    }

    /// The discovery server.
    pub fn discovery(&self) -> &pppoe::Server {
        &self.discovery
    }

    fn handle_session_frame(&mut self, now: Instant, from: ethernet::Address, payload: &[u8]) {
        let Ok(packet) = pppoe_wire::Packet::new_checked(payload) else {
            self.stats.malformed_frames += 1;
            return;
        };
        // RFC 2516 §5: session frames have CODE 0x00.
        if packet.code() != pppoe_wire::Code::Session {
            self.stats.malformed_frames += 1;
            return;
        }
        let key = SubscriberKey {
            mac: from,
            session_id: packet.session_id(),
        };
        let frame = packet.payload();
        if ppp_wire::Packet::new_checked(frame).is_err() {
            self.stats.malformed_frames += 1;
            return;
        }
        let Some(sub) = self.subscribers.get_mut(&key) else {
            self.stats.unknown_session += 1;
            return;
        };
        match sub.stage {
            Stage::Negotiating => {
                if let Some(options) = lcp_configure_request(frame) {
                    sub.capture
                        .initial_received
                        .get_or_insert_with(|| options.clone());
                    sub.capture.last_received = options;
                }
                if pap_request_id(frame).is_some() {
                    sub.capture.pap_request = Some(frame.to_vec());
                }
                if let Some(link) = sub.link.as_mut() {
                    link.handle_frame(now, frame);
                }
                self.service_link(now, key);
            }
            Stage::Calling => {
                if sub.queue.len() >= self.config.queue_limit {
                    self.stats.queue_overflow += 1;
                } else {
                    self.stats.queued_frames += 1;
                    sub.queue.push_back(frame.to_vec());
                }
            }
            Stage::Up => {
                if let Some(m) = sub.moving.as_mut() {
                    if !m.make_before_break {
                        // HA: the call is moving; everything the subscriber
                        // sends (data and LCP echoes alike: PPP must not
                        // notice) waits for the new call, in order.
                        let limit = self.config.ha.as_ref().map_or(0, |p| p.hold_limit);
                        if m.held.len() >= limit {
                            self.stats.hold_overflow += 1;
                        } else {
                            m.held.push_back(frame.to_vec());
                        }
                        return;
                    }
                }
                sub.frames_up += 1;
                let Some(call) = sub.call else { return };
                self.relay_upstream(now, key, call, frame);
            }
        }
    }

    /// A PPP frame from subscriber `key` to the LNS on `call`, kept for a
    /// replay when HA is on.
    fn relay_upstream(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        call: SessionHandle,
        frame: &[u8],
    ) {
        let Some(payload) = self.send_upstream(call, frame) else {
            return;
        };
        let Some(p) = self.config.ha.as_ref() else {
            return;
        };
        let (window, limit) = (p.replay_window, p.hold_limit);
        if window.is_zero() || limit == 0 {
            return;
        }
        // Network-layer frames only (RFC 1661 §2): a control frame sent
        // again would restart a negotiation the peer adopted as finished
        // (a Configure-Request in the Opened state, RFC 1661 §4.3).
        if ppp_wire::Packet::new_checked(&payload[..]).map_or(true, |p| p.protocol().is_control()) {
            return;
        }
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        // Bounded by count and age: nothing older than the window can be
        // replayed, and no more than a hold takes.
        let h = &mut sub.relayed;
        while h.len() >= limit
            || h.front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > window)
        {
            h.pop_front();
        }
        h.push_back((now, payload));
    }

    /// A PPP frame from the subscriber to the LNS, with the Address and
    /// Control fields L2TP peers expect; the L2TP payload if it was sent.
    fn send_upstream(&mut self, call: SessionHandle, frame: &[u8]) -> Option<Vec<u8>> {
        let has_ac = frame.starts_with(&[ppp_wire::ADDRESS, ppp_wire::CONTROL]);
        let mut payload = Vec::with_capacity(frame.len() + 2);
        if !has_ac {
            payload.extend_from_slice(&[ppp_wire::ADDRESS, ppp_wire::CONTROL]);
        }
        payload.extend_from_slice(frame);
        match self.endpoint.send_data(call, &payload) {
            Ok(t) => {
                self.stats.upstream_frames += 1;
                self.transmits.push_back((t.remote, t.payload));
                Some(payload)
            }
            Err(_) => {
                self.stats.frames_not_sent += 1;
                None
            }
        }
    }

    /// A PPP frame to the subscriber as a PPPoE session frame, without
    /// Address and Control (RFC 2516 §7).
    fn send_downstream(&mut self, key: SubscriberKey, frame: &[u8]) {
        let ppp = frame
            .strip_prefix(&[ppp_wire::ADDRESS, ppp_wire::CONTROL])
            .unwrap_or(frame);
        let eth = ethernet::Repr {
            dst_addr: key.mac,
            src_addr: self.config.pppoe.mac,
            outer_tag: None,
            inner_tag: None,
            ethertype: EtherType::PppoeSession,
        };
        let header = pppoe_wire::Repr {
            code: pppoe_wire::Code::Session,
            session_id: key.session_id,
            payload_len: ppp.len(),
        };
        let eth_len = eth.buffer_len();
        let mut out = vec![0; eth_len + header.buffer_len() + ppp.len()];
        if eth.emit(&mut out).is_err() || header.emit(&mut out[eth_len..]).is_err() {
            self.stats.frames_not_sent += 1;
            return;
        }
        out[eth_len + header.buffer_len()..].copy_from_slice(ppp);
        // Short frames padded to the Ethernet minimum; the PPPoE LENGTH
        // says where the frame ends (RFC 2516 §4).
        out.resize(out.len().max(MIN_FRAME_LEN), 0);
        self.access.push_back(out);
    }

    /// PADT to the subscriber (RFC 2516 §5.5). The discovery server sends
    /// it and forgets the session; a session it does not know (opened with
    /// [`Node::open_subscriber`]) gets a bare PADT from here.
    fn send_padt(&mut self, now: Instant, key: SubscriberKey) {
        if self.discovery.terminate(now, Some(key.mac), key.session_id) {
            self.drain_discovery();
            return;
        }
        let eth = ethernet::Repr {
            dst_addr: key.mac,
            src_addr: self.config.pppoe.mac,
            outer_tag: None,
            inner_tag: None,
            ethertype: EtherType::PppoeDiscovery,
        };
        let padt = pppoe_wire::DiscoveryRepr {
            code: pppoe_wire::Code::Padt,
            session_id: key.session_id,
            tags: Vec::new(),
        };
        let eth_len = eth.buffer_len();
        let mut out = vec![0; (eth_len + padt.buffer_len()).max(MIN_FRAME_LEN)];
        if eth.emit(&mut out).is_ok() && padt.emit(&mut out[eth_len..]).is_ok() {
            self.access.push_back(out);
        }
    }

    // --- proxy LCP ----------------------------------------------------------

    /// Send what a negotiating subscriber's link queued and act on its
    /// events.
    fn service_link(&mut self, now: Instant, key: SubscriberKey) {
        loop {
            let Some(sub) = self.subscribers.get_mut(&key) else {
                return;
            };
            let Some(link) = sub.link.as_mut() else {
                break;
            };
            let mut frames = Vec::new();
            while let Some(frame) = link.poll_transmit(now) {
                if let Some(options) = lcp_configure_request(&frame) {
                    sub.capture.last_sent = options;
                }
                frames.push(frame);
            }
            let event = link.poll_event();
            for frame in frames {
                self.send_downstream(key, &frame);
            }
            match event {
                Some(ppp::Event::Authenticate(request)) => {
                    self.authentication_collected(now, key, request);
                    return;
                }
                Some(ppp::Event::Down { cause }) => {
                    self.end(now, key, EndCause::Ppp(cause), None, true);
                    return;
                }
                Some(_) => {}
                None => break,
            }
        }
        self.reschedule(key);
    }

    /// Proxy mode: LCP is up and the subscriber authenticated itself; the
    /// LNS takes over from here (RFC 2661 §4.4.5).
    fn authentication_collected(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        request: ppp::AuthRequest,
    ) {
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        // Dropped without a word: the LNS answers the authentication and
        // keeps the link going from the LCP state we hand it.
        sub.link = None;
        sub.auth = Some(request);
        sub.stage = Stage::Calling;
        self.stats.proxy_authentications += 1;
        self.place_call(now, key);
    }

    /// The ICCN's proxy AVPs of a subscriber (RFC 2661 §4.4.5).
    fn proxy_avps(&self, sub: &Subscriber) -> Vec<AvpEntry> {
        let optional = |avp| AvpEntry {
            mandatory: false,
            hidden: false,
            avp,
        };
        let mut avps = Vec::new();
        let c = &sub.capture;
        if let Some(initial) = &c.initial_received {
            avps.push(optional(Avp::InitialReceivedLcpConfReq(initial.clone())));
            avps.push(optional(Avp::LastSentLcpConfReq(c.last_sent.clone())));
            avps.push(optional(Avp::LastReceivedLcpConfReq(
                c.last_received.clone(),
            )));
        }
        let Some(auth) = &sub.auth else {
            return avps;
        };
        // The secret goes hidden when the tunnel has a secret to hide it
        // with (RFC 2661 §4.3).
        let hide = self.config.l2tp.secret.is_some();
        match &auth.method {
            PresentedSecret::Pap { password } => {
                avps.push(optional(Avp::ProxyAuthenType(3)));
                avps.push(optional(Avp::ProxyAuthenName(auth.username.clone())));
                // RFC 2661 §4.4.5 lists Proxy Authen ID for CHAP only; the
                // PAP request's Identifier lets the LNS answer it under the
                // subscriber's Identifier (RFC 1334 §2.2.2) instead of
                // leaving the subscriber to retransmit.
                if let Some(id) = c.pap_request.as_deref().and_then(pap_request_id) {
                    avps.push(optional(Avp::ProxyAuthenId(id)));
                }
                avps.push(AvpEntry {
                    mandatory: false,
                    hidden: hide,
                    avp: Avp::ProxyAuthenResponse(password.clone()),
                });
            }
            PresentedSecret::Chap {
                id,
                challenge,
                response,
            } => {
                avps.push(optional(Avp::ProxyAuthenType(2)));
                avps.push(optional(Avp::ProxyAuthenName(auth.username.clone())));
                avps.push(optional(Avp::ProxyAuthenChallenge(challenge.clone())));
                avps.push(optional(Avp::ProxyAuthenId(*id)));
                avps.push(AvpEntry {
                    mandatory: false,
                    hidden: hide,
                    avp: Avp::ProxyAuthenResponse(response.clone()),
                });
            }
        }
        avps
    }

    // --- calls --------------------------------------------------------------

    /// Place (or re-place) a subscriber's call on the best LNS it has not
    /// tried; refuse the subscriber when none is left.
    fn place_call(&mut self, now: Instant, key: SubscriberKey) {
        loop {
            let Some(sub) = self.subscribers.get(&key) else {
                return;
            };
            // HA: an LNS that asked for "new sessions only" (or "all") is
            // avoided while another can take the call.
            let mut avoid = sub.tried.clone();
            avoid.extend(
                self.ha_lns
                    .iter()
                    .filter(|(_, h)| h.steered_until.is_some_and(|t| t > now))
                    .map(|(&a, _)| a),
            );
            let Some(lns) = self
                .selector
                .choose(now, &avoid)
                .or_else(|| self.selector.choose(now, &sub.tried))
            else {
                self.stats.sessions_refused += 1;
                self.end(now, key, EndCause::NoLnsAvailable, None, true);
                return;
            };
            let params = self.call_params(key, sub);
            let opened = self
                .tunnel_for(now, lns)
                .and_then(|t| self.endpoint.open_session(now, t, params));
            let Some(sub) = self.subscribers.get_mut(&key) else {
                return;
            };
            sub.tried.push(lns);
            sub.lns = Some(lns);
            match opened {
                Ok(call) => {
                    sub.call = Some(call);
                    sub.last_call = Some(call);
                    sub.setup_deadline = Some(now + self.config.setup_timeout);
                    self.by_call.insert(call, key);
                    self.selector.add_session(lns);
                    self.reschedule(key);
                    return;
                }
                Err(e) => {
                    tracing::warn!(lns = %lns, error = %e, "cannot open a call");
                    self.lock_out(now, lns);
                }
            }
        }
    }

    /// What a subscriber's calls say (ICRQ and ICCN): the same for its
    /// first call and for every recovery call (the peer LNS must see the
    /// call the primary saw, proxy AVPs included).
    fn call_params(&self, key: SubscriberKey, sub: &Subscriber) -> CallParams {
        let mut params = self.config.call.clone();
        // RFC 2661 §4.4.5 Calling Number: what identifies the caller;
        // for PPPoE, the subscriber's MAC address.
        params.icrq_avps.push(AvpEntry {
            mandatory: true,
            hidden: false,
            avp: Avp::CallingNumber(key.mac.to_string().into_bytes()),
        });
        if self.config.mode == Mode::Proxy {
            params.iccn_avps.extend(self.proxy_avps(sub));
        }
        params.defer_connect = self.config.defer_connect;
        params
    }

    /// The tunnel to `lns` that new calls share, opened if there is none.
    fn tunnel_for(&mut self, now: Instant, lns: SocketAddrV4) -> Result<TunnelHandle, l2tp::Error> {
        if let Some(&t) = self.tunnel_to.get(&lns) {
            if matches!(
                self.endpoint.tunnel_state(t),
                Some(TunnelState::WaitCtlReply | TunnelState::Established)
            ) {
                return Ok(t);
            }
        }
        let t = self.endpoint.connect(now, lns)?;
        self.tunnel_to.insert(lns, t);
        self.tunnels.insert(t, lns);
        Ok(t)
    }

    fn lock_out(&mut self, now: Instant, lns: SocketAddrV4) {
        if let Some(until) = self.selector.lock_out(now, lns) {
            self.stats.lockouts += 1;
            tracing::warn!(lns = %lns, "LNS failed a call: locked out");
            self.events
                .push_back(Event::LnsLockedOut { addr: lns, until });
        }
    }

    /// Forget a subscriber's call (it failed or is being closed): no longer
    /// counted on its LNS. An answered call that never came up is
    /// reported abandoned, for the fast path to forget.
    fn detach_call(&mut self, key: SubscriberKey) -> Option<SessionHandle> {
        let sub = self.subscribers.get_mut(&key)?;
        let call = sub.call.take()?;
        sub.setup_deadline = None;
        if sub.stage != Stage::Up {
            if let Some(((local_tunnel_id, _), (local_session_id, _))) = sub.ids.take() {
                self.events.push_back(Event::CallAbandoned {
                    subscriber: key,
                    local_tunnel_id,
                    local_session_id,
                });
            }
        }
        self.by_call.remove(&call);
        if let Some(lns) = sub.lns {
            self.selector.remove_session(lns);
        }
        Some(call)
    }

    /// A call failed while being set up: lock its LNS out and try the
    /// next. When the tunnel itself is what failed (never came up, or went
    /// down), every call still setting up on it moves too.
    fn setup_failed(&mut self, now: Instant, key: SubscriberKey, close: Option<ResultCode>) {
        let Some(sub) = self.subscribers.get(&key) else {
            return;
        };
        let lns = sub.lns;
        let Some(call) = self.detach_call(key) else {
            return;
        };
        if let Some(result) = close {
            let _ = self.endpoint.close_session(now, call, result);
        }
        if let Some(lns) = lns {
            self.lock_out(now, lns);
        }
        self.stats.failovers += 1;
        let tunnel_dead = !matches!(
            self.endpoint.tunnel_state(call.tunnel),
            Some(TunnelState::Established)
        );
        if tunnel_dead && self.tunnels.contains_key(&call.tunnel) {
            // Nothing more will come up on it: move the others now rather
            // than each after its own timeout, and stop the tunnel.
            // Calls already up are not set up again: they go down with the
            // tunnel (their own SessionDown) or are recovered (HA).
            let mut waiting: Vec<_> = self
                .by_call
                .iter()
                .filter(|(h, k)| {
                    h.tunnel == call.tunnel
                        && self
                            .subscribers
                            .get(k)
                            .is_some_and(|s| s.stage != Stage::Up)
                })
                .map(|(_, k)| *k)
                .collect();
            waiting.sort();
            self.tunnel_to.retain(|_, t| *t != call.tunnel);
            let _ = self.endpoint.close_tunnel(
                now,
                call.tunnel,
                ResultCode::with_message(
                    crate::l2tp::codes::stop_ccn::GENERAL_REQUEST,
                    "tunnel setup timed out",
                ),
            );
            for other in waiting {
                if self.detach_call(other).is_some() {
                    self.stats.failovers += 1;
                    self.place_call(now, other);
                }
            }
        }
        self.place_call(now, key);
    }

    /// A subscriber's session is over: tell whoever still needs telling,
    /// report it and forget it.
    fn end(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        cause: EndCause,
        cdn_result: Option<ResultCode>,
        padt: bool,
    ) {
        let was_up = self
            .subscribers
            .get(&key)
            .is_some_and(|s| s.stage == Stage::Up);
        self.cancel_move(now, key);
        let releasing = self.release_of.get(&key).copied();
        if let Some(old) = releasing {
            self.release_old_call(now, old, true);
        }
        if let Some(call) = self.detach_call(key) {
            let result = cdn_result.unwrap_or_else(|| {
                ResultCode::with_message(cdn::ADMINISTRATIVE, "subscriber session ended")
            });
            let _ = self.endpoint.close_session(now, call, result);
        }
        let Some(sub) = self.subscribers.remove(&key) else {
            return;
        };
        self.deadlines.set(key, None);
        if padt {
            self.send_padt(now, key);
        }
        self.stats.sessions_down += 1;
        self.events
            .push_back(Event::SessionDown(Box::new(SessionEnded {
                subscriber: key,
                session: sub.last_call,
                lns: sub.lns,
                tunnel_ids: sub.ids.map(|(t, _)| t),
                session_ids: sub.ids.map(|(_, s)| s),
                cause,
                was_up,
                duration: now.saturating_duration_since(sub.started),
            })));
    }

    fn reschedule(&mut self, key: SubscriberKey) {
        let next = self.subscribers.get(&key).and_then(|s| {
            [
                s.setup_deadline,
                s.link.as_ref().and_then(|l| l.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min()
        });
        self.deadlines.set(key, next);
    }

    // --- the L2TP side --------------------------------------------------------

    /// A datagram from an LNS.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.endpoint.handle_datagram(now, from, payload);
        self.pump(now);
    }

    /// An LNS's host reported its L2TP port unreachable, quoting the
    /// start of the datagram it refused ([`Endpoint::handle_unreachable`]):
    /// its tunnels probe it, and fail over if it stays silent or refuses
    /// the probe too.
    pub fn handle_unreachable(&mut self, now: Instant, remote: SocketAddrV4, refused: &[u8]) {
        self.endpoint.handle_unreachable(now, remote, refused);
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
        let recovery = self
            .recoveries
            .values()
            .filter_map(|r| r.setup_deadline)
            .min();
        [
            self.endpoint.poll_timeout(),
            self.deadlines.first(),
            recovery,
            self.release_deadlines.first().map(|&(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        self.pump(now);
        self.recovery_timeouts(now);
        self.release_timeouts(now);
        for key in self.deadlines.take_due(now) {
            let Some(sub) = self.subscribers.get_mut(&key) else {
                continue;
            };
            if sub.setup_deadline.is_some_and(|t| t <= now) {
                tracing::info!(lns = ?sub.lns, subscriber = %key.mac, "call setup timed out");
                let result = ResultCode::with_message(cdn::ADMINISTRATIVE, "call setup timed out");
                self.setup_failed(now, key, Some(result));
                continue;
            }
            if let Some(link) = sub.link.as_mut() {
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    link.handle_timeout(now);
                }
                self.service_link(now, key);
            } else {
                self.reschedule(key);
            }
        }
        self.pump(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            self.on_l2tp_event(now, event);
        }
    }

    fn on_l2tp_event(&mut self, now: Instant, event: l2tp::Event) {
        match event {
            l2tp::Event::TunnelUp {
                tunnel,
                remote,
                local_tunnel_id,
                peer,
            } => {
                if self.config.ha.is_some() {
                    self.ha_tunnel_up(tunnel, remote, &peer.peer_lns_addresses);
                }
                self.events.push_back(Event::TunnelUp {
                    tunnel,
                    lns: remote,
                    local_tunnel_id,
                    peer_tunnel_id: peer.tunnel_id,
                })
            }
            l2tp::Event::TunnelDown {
                tunnel,
                reason,
                stats,
            } => self.tunnel_down(now, tunnel, reason, stats.last_heard),
            l2tp::Event::CallAnswered {
                session,
                local_session_id,
                peer_session_id,
                call,
                ..
            } => {
                if self.by_recovery.contains_key(&session) {
                    self.recovery_answered(now, session, local_session_id, peer_session_id, &call);
                } else {
                    self.call_answered(now, session, local_session_id, peer_session_id)
                }
            }
            l2tp::Event::SessionUp {
                session,
                local_session_id,
                peer_session_id,
                call,
            } => {
                if self.by_recovery.contains_key(&session) {
                    self.recovery_up(now, session, local_session_id, peer_session_id, &call);
                } else {
                    self.call_up(now, session, local_session_id, peer_session_id)
                }
            }
            l2tp::Event::SessionDown { session, reason } => {
                if let Some(&key) = self.by_recovery.get(&session) {
                    self.recovery_call_down(now, key, session, &reason);
                } else if self.releasing.contains_key(&session) {
                    // A moved subscriber's old call ended before we
                    // released it: nothing left to release.
                    self.release_old_call(now, session, false);
                } else if let Some(&key) = self.by_call.get(&session) {
                    if reason == SessionDownReason::TunnelDown
                        && self.may_outlive_tunnel(key, session.tunnel)
                    {
                        // HA: decided at the tunnel's TunnelDown, which
                        // follows at once and says why it went down.
                        return;
                    }
                    self.call_down(now, key, reason, None);
                }
            }
            l2tp::Event::Data { session, payload } => {
                // A moved subscriber's old call still carries what its LNS
                // sent before the release: the subscriber gets it too.
                let Some(&key) = self
                    .by_call
                    .get(&session)
                    .or_else(|| self.by_recovery.get(&session))
                    .or_else(|| self.releasing.get(&session).map(|r| &r.subscriber))
                else {
                    return;
                };
                let Some(sub) = self.subscribers.get_mut(&key) else {
                    return;
                };
                if sub.stage != Stage::Up {
                    return;
                }
                sub.frames_down += 1;
                self.stats.downstream_frames += 1;
                self.send_downstream(key, &payload);
            }
            l2tp::Event::Message {
                tunnel, message, ..
            } => self.ha_message(now, tunnel, &message),
            _ => {}
        }
    }

    /// A tunnel is down: its calls end, or (HA) are recovered at a peer.
    /// `last_heard`: when its LNS last gave a sign of life (the replay of a
    /// failure switchover starts just before it).
    fn tunnel_down(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        reason: TunnelDownReason,
        last_heard: Option<Instant>,
    ) {
        let recovery = self.recoveries.remove(&tunnel);
        self.recovery_to.retain(|_, t| *t != tunnel);
        let ha = self.tunnel_ha.remove(&tunnel).unwrap_or_default();
        let Some(lns) = self.tunnels.remove(&tunnel) else {
            return;
        };
        self.tunnel_to.retain(|_, t| *t != tunnel);
        let local_tunnel_id = self
            .endpoint
            .tunnel_ids(tunnel)
            .map_or(0, |(local, _)| local);
        if let Some(recovery) = recovery {
            // Its recovery calls in flight went down just before (and
            // moved on); those still waiting for a slot move on now.
            for key in recovery.waiting {
                self.try_next_peer(now, key);
            }
        }
        // DESIGN.md §3 failure switchover: a tunnel whose LNS stopped
        // answering (dead interval or retransmissions, RFC 2661 §5.8) and
        // advertised peers has its calls recovered there. A StopCCN is the
        // LNS ending them on purpose: they end.
        let recover = reason == TunnelDownReason::RetriesExhausted
            && !ha.peers.is_empty()
            && self
                .config
                .ha
                .as_ref()
                .is_some_and(|p| p.failure_switchover);
        // Its sessions went down just before (SessionDown each); any still
        // attached are recovered or ended here.
        let mut left: Vec<_> = self
            .by_call
            .iter()
            .filter(|(h, _)| h.tunnel == tunnel)
            .map(|(_, k)| *k)
            .collect();
        left.sort();
        if recover && !left.is_empty() {
            // New calls do not try it until it is back.
            self.lock_out(now, lns);
        }
        for key in left {
            let Some(sub) = self.subscribers.get(&key) else {
                continue;
            };
            let moving_away = sub.moving.as_ref().is_some_and(|m| m.make_before_break);
            if moving_away {
                // Its move is under way: it goes on as a failure move.
                self.old_call_lost(now, key, last_heard);
            } else if !(recover
                && sub.stage == Stage::Up
                && self.start_move(now, key, ha.peers.clone(), false, last_heard))
            {
                self.call_down(now, key, SessionDownReason::TunnelDown, Some(&reason));
            }
        }
        if let Some(h) = self.ha_lns.get_mut(&lns) {
            if h.steered_until.is_some_and(|t| t > now) {
                h.went_down_while_steered = true;
            }
        }
        self.events.push_back(Event::TunnelDown {
            tunnel,
            lns,
            local_tunnel_id,
            reason,
        });
    }

    /// [`Config::defer_connect`]: the LNS answered; the daemon programs the
    /// fast path, then [`Node::connect_call`].
    fn call_answered(
        &mut self,
        now: Instant,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
    ) {
        let Some(&key) = self.by_call.get(&session) else {
            // Detached meanwhile (cleared, timed out): nothing to prepare;
            // the endpoint clears the call when its wait runs out.
            let _ = self.endpoint.close_session(
                now,
                session,
                ResultCode::with_message(cdn::ADMINISTRATIVE, "subscriber session ended"),
            );
            return;
        };
        let Some(up) = self.describe_call(now, key, session, local_session_id, peer_session_id)
        else {
            return;
        };
        self.events.push_back(Event::CallAnswered(Box::new(up)));
    }

    /// Connect a call reported by [`Event::CallAnswered`]: the fast path
    /// knows it now, so the ICCN may go (RFC 2661 §7.4.1). False if the
    /// call is not waiting (it ended, or its wait ran out).
    pub fn connect_call(&mut self, now: Instant, session: SessionHandle) -> bool {
        if !self.by_call.contains_key(&session) && !self.by_recovery.contains_key(&session) {
            return false;
        }
        let connected = match self.endpoint.connect_call(now, session) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, session = session.id, "call not connected");
                false
            }
        };
        if connected && self.by_recovery.contains_key(&session) {
            if let Some(r) = self.recoveries.get_mut(&session.tunnel) {
                r.burst.first_connected.get_or_insert(now);
                r.burst.last_connected = Some(now);
            }
        }
        self.pump(now);
        connected
    }

    /// The ids of a subscriber's call, recorded for the report and the fast
    /// path.
    fn describe_call(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
    ) -> Option<CallUp> {
        let up = self.call_record(now, key, session, local_session_id, peer_session_id)?;
        let sub = self.subscribers.get_mut(&key)?;
        sub.ids = Some((
            (up.local_tunnel_id, up.peer_tunnel_id),
            (local_session_id, peer_session_id),
        ));
        Some(up)
    }

    /// A call's ids, for the report and the fast path.
    fn call_record(
        &self,
        now: Instant,
        key: SubscriberKey,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
    ) -> Option<CallUp> {
        let tunnel_ids = self.endpoint.tunnel_ids(session.tunnel).unwrap_or_default();
        let peer = self.endpoint.tunnel_remote(session.tunnel);
        let sub = self.subscribers.get(&key)?;
        Some(CallUp {
            subscriber: key,
            session,
            local_tunnel_id: tunnel_ids.0,
            peer_tunnel_id: tunnel_ids.1,
            local: self.config.local_address,
            peer: peer
                .or(sub.lns)
                .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            local_session_id,
            peer_session_id,
            sequencing: false,
            setup_time: now.saturating_duration_since(sub.started),
            failovers: sub.tried.len().saturating_sub(1),
            moved_from: None,
        })
    }

    fn call_up(
        &mut self,
        now: Instant,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
    ) {
        let Some(&key) = self.by_call.get(&session) else {
            return;
        };
        let Some(up) = self.describe_call(now, key, session, local_session_id, peer_session_id)
        else {
            return;
        };
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        sub.stage = Stage::Up;
        sub.setup_deadline = None;
        let queued: Vec<_> = sub.queue.drain(..).collect();
        sub.frames_up += queued.len() as u64;
        self.reschedule(key);
        self.stats.sessions_up += 1;
        for frame in queued {
            self.relay_upstream(now, key, session, &frame);
        }
        self.events.push_back(Event::SessionUp(Box::new(up)));
    }

    /// A subscriber's L2TP session went down.
    fn call_down(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        reason: SessionDownReason,
        tunnel_reason: Option<&TunnelDownReason>,
    ) {
        let Some(sub) = self.subscribers.get(&key) else {
            return;
        };
        if sub.stage != Stage::Up {
            if let SessionDownReason::Closed(r) = reason {
                // Our own endpoint cleared it: the daemon did not connect
                // an answered call in time (Config::defer_connect). The LNS
                // did nothing wrong, and another would fare no better.
                tracing::warn!(subscriber = %key.mac, result = %r, "answered call never connected");
                self.detach_call(key);
                self.end(now, key, EndCause::L2tpError(r), None, true);
                return;
            }
            // RFC 2661 gives no retry rule; ours: an LNS that refuses a
            // call or drops its tunnel during setup is avoided for a while.
            self.setup_failed(now, key, None);
            return;
        }
        self.detach_call(key);
        let cause = match reason {
            SessionDownReason::CdnReceived(r) => EndCause::LnsDisconnected(r),
            SessionDownReason::TunnelDown => EndCause::TunnelDown(
                tunnel_reason
                    .cloned()
                    .unwrap_or(TunnelDownReason::RetriesExhausted),
            ),
            SessionDownReason::Closed(r) | SessionDownReason::ProtocolError(r) => {
                EndCause::L2tpError(r)
            }
        };
        self.end(now, key, cause, None, true);
    }
}

// --- HA: failure and load switchover ------------------------------------------

impl Node {
    /// A tunnel is up: remember where its LNS says to go (Peer-LNS-Address,
    /// DESIGN.md §3), and end the steering away from an LNS that came back.
    fn ha_tunnel_up(&mut self, tunnel: TunnelHandle, lns: SocketAddrV4, peers: &[Ipv4Addr]) {
        self.tunnel_ha.insert(
            tunnel,
            TunnelHa {
                peers: peers.to_vec(),
            },
        );
        if let Some(r) = self.recoveries.get_mut(&tunnel) {
            r.setup_deadline = None;
        }
        let h = self.ha_lns.entry(lns).or_default();
        if !peers.is_empty() {
            h.peers = peers.to_vec();
        }
        if h.went_down_while_steered {
            h.went_down_while_steered = false;
            h.steered_until = None;
        }
    }

    /// Whether a subscriber's call may survive the end of its tunnel: it
    /// is up and either moving already or on a tunnel whose calls a
    /// failure switchover may recover.
    fn may_outlive_tunnel(&self, key: SubscriberKey, tunnel: TunnelHandle) -> bool {
        let Some(sub) = self.subscribers.get(&key) else {
            return false;
        };
        if sub.stage != Stage::Up {
            return false;
        }
        sub.moving.is_some()
            || (self
                .config
                .ha
                .as_ref()
                .is_some_and(|p| p.failure_switchover)
                && self
                    .tunnel_ha
                    .get(&tunnel)
                    .is_some_and(|t| !t.peers.is_empty()))
    }

    /// Begin moving a subscriber's call to the first of `peers` that takes
    /// it: a load switchover (`make_before_break`: the old call keeps
    /// forwarding) or a failure switchover (the old call is gone: its
    /// upstream is held, and what was sent since shortly before
    /// `last_heard` is replayed). False if the call cannot move (not up,
    /// moving already, no peer but its own LNS).
    fn start_move(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        peers: Vec<Ipv4Addr>,
        make_before_break: bool,
        last_heard: Option<Instant>,
    ) -> bool {
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return false;
        };
        let (Stage::Up, None, Some(old_call), Some(lns), Some(ids)) =
            (sub.stage, &sub.moving, sub.call, sub.lns, sub.ids)
        else {
            return false;
        };
        let mut list = VecDeque::new();
        for p in peers {
            if p != *lns.ip() && !list.contains(&p) && list.len() < MAX_PEERS {
                list.push_back(p);
            }
        }
        if list.is_empty() {
            return false;
        }
        sub.moving = Some(Moving {
            from_lns: lns,
            from_tunnel: old_call.tunnel,
            old_call,
            old_ids: ids,
            make_before_break,
            peers: list,
            new_call: None,
            new_ids: None,
            held: VecDeque::new(),
        });
        self.stats.recoveries_started += 1;
        self.ha_lns.entry(lns).or_default().recoveries_started += 1;
        if !make_before_break {
            self.old_call_lost(now, key, last_heard);
        }
        self.try_next_peer(now, key);
        true
    }

    /// A moving subscriber's old call is gone (its LNS failed, last heard
    /// from at `last_heard`): hold its upstream until the new call is up,
    /// starting with a replay of what the dead LNS may not have forwarded.
    ///
    /// C6 (DESIGN.md §3): nothing tells which of the frames sent after the
    /// LNS's last sign of life it forwarded before it died, so they are
    /// all sent again to the peer, oldest first, ahead of what the
    /// subscriber sends while held. A few may then arrive twice at the far
    /// end (IP tolerates a duplicate; a loss is what the subscriber would
    /// notice); none is lost. Only the new LNS forwards the session from
    /// here: the dead one is gone or fences itself (Ownership-Epoch).
    fn old_call_lost(&mut self, now: Instant, key: SubscriberKey, last_heard: Option<Instant>) {
        let replay = self.config.ha.as_ref().map_or(Duration::ZERO, |p| {
            // Unknown (never heard since up): the whole window.
            last_heard.map_or(p.replay_window, |t| {
                (now.saturating_duration_since(t) + p.replay_margin).min(p.replay_window)
            })
        });
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        let Some(m) = sub.moving.as_mut() else {
            return;
        };
        m.make_before_break = false;
        let ((local_tunnel_id, _), (local_session_id, _)) = m.old_ids;
        let (old_call, from_lns) = (m.old_call, m.from_lns);
        let mut replayed = 0;
        for (at, payload) in sub.relayed.drain(..) {
            if now.saturating_duration_since(at) <= replay {
                m.held.push_back(payload);
                replayed += 1;
            }
        }
        // Replayed frames go first; anything held already (nothing, so
        // far: holding starts here) stays behind them.
        m.held.rotate_right(replayed.min(m.held.len()));
        self.stats.replayed_frames += replayed as u64;
        if sub.call == Some(old_call) {
            sub.call = None;
        }
        self.by_call.remove(&old_call);
        self.selector.remove_session(from_lns);
        self.events.push_back(Event::Holding {
            subscriber: key,
            local_tunnel_id,
            local_session_id,
            replay,
        });
    }

    /// Place a moving subscriber's recovery call on its next peer; with
    /// none left, the move failed.
    fn try_next_peer(&mut self, now: Instant, key: SubscriberKey) {
        loop {
            let Some(m) = self
                .subscribers
                .get_mut(&key)
                .and_then(|s| s.moving.as_mut())
            else {
                return;
            };
            m.new_call = None;
            m.new_ids = None;
            let Some(peer) = m.peers.pop_front() else {
                self.move_failed(now, key);
                return;
            };
            let peer = SocketAddrV4::new(peer, m.from_lns.port());
            let (from_tunnel, from_lns, (tunnel_ids, _)) = (m.from_tunnel, m.from_lns, m.old_ids);
            match self.recovery_tunnel(now, from_tunnel, from_lns, tunnel_ids, peer) {
                Ok(t) => {
                    if let Some(r) = self.recoveries.get_mut(&t) {
                        r.waiting.push_back(key);
                        r.burst.since.get_or_insert(now);
                    }
                    self.service_recovery(now, t);
                    return;
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "cannot open a recovery tunnel");
                }
            }
        }
    }

    /// The recovery tunnel for the calls of `from_tunnel` to `peer`, opened
    /// if there is none: its SCCRQ carries Recovery-Tunnel (DESIGN.md §3),
    /// so the peer finds the primary's offloaded state for them.
    fn recovery_tunnel(
        &mut self,
        now: Instant,
        from_tunnel: TunnelHandle,
        from_lns: SocketAddrV4,
        (lac_tunnel_id, lns_tunnel_id): (u16, u16),
        peer: SocketAddrV4,
    ) -> Result<TunnelHandle, l2tp::Error> {
        if let Some(&t) = self.recovery_to.get(&(from_tunnel, peer)) {
            if self.recoveries.contains_key(&t)
                && matches!(
                    self.endpoint.tunnel_state(t),
                    Some(TunnelState::WaitCtlReply | TunnelState::Established)
                )
            {
                return Ok(t);
            }
        }
        let t = self.endpoint.connect_for_recovery(
            now,
            peer,
            l2tp::RecoveryTunnel {
                primary_lns: *from_lns.ip(),
                lns_tunnel_id,
                lac_tunnel_id,
            },
        )?;
        self.recovery_to.insert((from_tunnel, peer), t);
        self.recoveries.insert(
            t,
            RecoveryTunnelState {
                waiting: VecDeque::new(),
                in_flight: 0,
                setup_deadline: Some(now + self.recovery_setup_time()),
                burst: RecoveryBurst::default(),
            },
        );
        self.tunnels.insert(t, peer);
        Ok(t)
    }

    /// How long a recovery tunnel may take to come up before its peer is
    /// passed over for the next: twice the dead interval (a live peer
    /// answers an SCCRQ within a round trip, a lost one is sent again
    /// within the retransmission timeout), else [`Config::setup_timeout`].
    /// RFC 2661 §5.8 alone would take the whole retransmission cycle, with
    /// the subscribers held all along.
    fn recovery_setup_time(&self) -> Duration {
        self.config
            .l2tp
            .dead_interval
            .map_or(self.config.setup_timeout, |d| d.saturating_mul(2))
    }

    /// Recovery tunnels not up in time: closed, so that their calls move
    /// on to the next peer (their SessionDown and TunnelDown follow).
    fn recovery_timeouts(&mut self, now: Instant) {
        let mut late: Vec<TunnelHandle> = self
            .recoveries
            .iter()
            .filter(|(_, r)| r.setup_deadline.is_some_and(|t| t <= now))
            .map(|(&t, _)| t)
            .collect();
        late.sort();
        for tunnel in late {
            if let Some(r) = self.recoveries.get_mut(&tunnel) {
                r.setup_deadline = None;
            }
            if self.endpoint.tunnel_state(tunnel) == Some(TunnelState::Established) {
                continue;
            }
            tracing::warn!(peer = ?self.tunnels.get(&tunnel), "recovery tunnel not up in time");
            let _ = self.endpoint.close_tunnel(
                now,
                tunnel,
                ResultCode::with_message(
                    crate::l2tp::codes::stop_ccn::GENERAL_REQUEST,
                    "recovery tunnel setup timed out",
                ),
            );
            self.pump(now);
        }
    }

    /// Place the recovery calls waiting on `tunnel`, at most
    /// [`HaPolicy::recovery_window`] in flight. The endpoint holds the
    /// ICRQs until the tunnel is up, then sends them back to back.
    fn service_recovery(&mut self, now: Instant, tunnel: TunnelHandle) {
        let window = self.config.ha.as_ref().map_or(1, |p| p.recovery_window);
        loop {
            let Some(r) = self.recoveries.get_mut(&tunnel) else {
                return;
            };
            if r.in_flight >= window {
                return;
            }
            let Some(key) = r.waiting.pop_front() else {
                return;
            };
            let Some(sub) = self.subscribers.get(&key) else {
                continue;
            };
            let Some(m) = sub.moving.as_ref() else {
                continue;
            };
            if m.new_call.is_some() {
                continue;
            }
            let mut params = self.call_params(key, sub);
            // DESIGN.md §3: Recovery-Session names the old LNS's Session ID.
            params.recovery_session = Some(m.old_ids.1 .1);
            match self.endpoint.open_session(now, tunnel, params) {
                Ok(call) => {
                    if let Some(r) = self.recoveries.get_mut(&tunnel) {
                        r.in_flight += 1;
                    }
                    self.by_recovery.insert(call, key);
                    if let Some(m) = self
                        .subscribers
                        .get_mut(&key)
                        .and_then(|s| s.moving.as_mut())
                    {
                        m.new_call = Some(call);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot place a recovery call");
                    self.try_next_peer(now, key);
                }
            }
        }
    }

    /// A recovery call is up or gone: its slot in the window is free.
    /// The last of a burst sums the burst up in the log.
    fn recovery_call_finished(&mut self, now: Instant, call: SessionHandle, up: bool) {
        self.by_recovery.remove(&call);
        if let Some(r) = self.recoveries.get_mut(&call.tunnel) {
            r.in_flight = r.in_flight.saturating_sub(1);
            if up {
                r.burst.up += 1;
                r.burst.first_up.get_or_insert(now);
            } else {
                r.burst.failed += 1;
            }
            self.service_recovery(now, call.tunnel);
        }
        let peer = self.tunnels.get(&call.tunnel).copied();
        let Some(r) = self.recoveries.get_mut(&call.tunnel) else {
            return;
        };
        if r.in_flight > 0 || !r.waiting.is_empty() {
            return;
        }
        let b = std::mem::take(&mut r.burst);
        let since = b.since.unwrap_or(now);
        let ms = |t: Instant| t.saturating_duration_since(since).as_millis() as u64;
        tracing::info!(
            peer = ?peer,
            calls_up = b.up,
            failed = b.failed,
            first_connected_ms = b.first_connected.map(ms),
            last_connected_ms = b.last_connected.map(ms),
            first_up_ms = b.first_up.map(ms),
            last_up_ms = ms(now),
            "HA: recovery calls done"
        );
    }

    /// No peer took a moving subscriber's call. A load switchover leaves it
    /// where it is; a failure switchover ends it (PADT).
    fn move_failed(&mut self, now: Instant, key: SubscriberKey) {
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        let Some(m) = sub.moving.take() else {
            return;
        };
        self.stats.recoveries_failed += 1;
        self.ha_lns.entry(m.from_lns).or_default().recoveries_failed += 1;
        tracing::warn!(subscriber = %key.mac, lns = %m.from_lns, "no peer LNS took the call");
        if m.make_before_break && sub.call == Some(m.old_call) {
            sub.frames_up += m.held.len() as u64;
            for frame in m.held {
                self.relay_upstream(now, key, m.old_call, &frame);
            }
            return;
        }
        self.end(
            now,
            key,
            EndCause::TunnelDown(TunnelDownReason::RetriesExhausted),
            None,
            true,
        );
    }

    /// The subscriber's session ends while moving: its recovery call goes.
    fn cancel_move(&mut self, now: Instant, key: SubscriberKey) {
        let Some(m) = self.subscribers.get_mut(&key).and_then(|s| s.moving.take()) else {
            return;
        };
        for r in self.recoveries.values_mut() {
            r.waiting.retain(|k| *k != key);
        }
        if let Some(call) = m.new_call {
            let _ = self.endpoint.close_session(
                now,
                call,
                ResultCode::with_message(cdn::ADMINISTRATIVE, "subscriber session ended"),
            );
            self.recovery_call_finished(now, call, false);
        }
        if let Some((local_tunnel_id, local_session_id)) = m.new_ids {
            self.events.push_back(Event::CallAbandoned {
                subscriber: key,
                local_tunnel_id,
                local_session_id,
            });
        }
        if !m.make_before_break {
            // The failure switchover had taken it off its LNS already.
            return;
        }
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        if sub.call == Some(m.old_call) {
            sub.frames_up += m.held.len() as u64;
            for frame in m.held {
                self.relay_upstream(now, key, m.old_call, &frame);
            }
        }
    }

    /// The record of a moving subscriber's recovery call, with where it
    /// moves from.
    fn moved_record(
        &self,
        now: Instant,
        key: SubscriberKey,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
        epoch: Option<u32>,
    ) -> Option<CallUp> {
        let mut up = self.call_record(now, key, session, local_session_id, peer_session_id)?;
        let m = self.subscribers.get(&key)?.moving.as_ref()?;
        let ((local_tunnel_id, _), (old_session_id, _)) = m.old_ids;
        up.moved_from = Some(MovedFrom {
            local_tunnel_id,
            local_session_id: old_session_id,
            epoch: epoch.unwrap_or(0),
            make_before_break: m.make_before_break,
        });
        Some(up)
    }

    /// [`Config::defer_connect`]: the peer answered a recovery call (ICRP
    /// with Ownership-Epoch); the daemon programs the new call. On a load
    /// switchover the node keeps relaying on the old call until the new one
    /// is up (the endpoint takes data on it only then, so that no frame
    /// overtakes the ICCN), and then on the new one only: no frame goes to
    /// both LNSs. A fast path holds the subscriber from here instead
    /// (its binding moves to the new call now).
    fn recovery_answered(
        &mut self,
        now: Instant,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
        call: &l2tp::CallInfo,
    ) {
        let Some(&key) = self.by_recovery.get(&session) else {
            return;
        };
        let Some(up) = self.moved_record(
            now,
            key,
            session,
            local_session_id,
            peer_session_id,
            call.ownership_epoch,
        ) else {
            return;
        };
        if let Some(m) = self
            .subscribers
            .get_mut(&key)
            .and_then(|s| s.moving.as_mut())
        {
            m.new_ids = Some((up.local_tunnel_id, local_session_id));
        }
        self.events.push_back(Event::CallAnswered(Box::new(up)));
    }

    /// A recovery call is up: the subscriber's traffic moves to it. The held
    /// frames go first, in order; a load switchover's old call is released
    /// at its LNS only now (make-before-break), with the new epoch so that
    /// LNS drops it without ending PPP (docs/ha-protocol.md §5.4).
    fn recovery_up(
        &mut self,
        now: Instant,
        session: SessionHandle,
        local_session_id: u16,
        peer_session_id: u16,
        call: &l2tp::CallInfo,
    ) {
        let Some(&key) = self.by_recovery.get(&session) else {
            return;
        };
        let up = self.moved_record(
            now,
            key,
            session,
            local_session_id,
            peer_session_id,
            call.ownership_epoch,
        );
        self.recovery_call_finished(now, session, up.is_some());
        let Some(up) = up else {
            return;
        };
        let peer = self.endpoint.tunnel_remote(session.tunnel);
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        let Some(m) = sub.moving.take() else {
            return;
        };
        sub.call = Some(session);
        sub.last_call = Some(session);
        sub.lns = peer.or(sub.lns);
        sub.ids = Some((
            (up.local_tunnel_id, up.peer_tunnel_id),
            (local_session_id, peer_session_id),
        ));
        sub.frames_up += m.held.len() as u64;
        self.by_call.insert(session, key);
        if let Some(peer) = peer {
            self.selector.add_session(peer);
        }
        for frame in &m.held {
            self.relay_upstream(now, key, session, frame);
        }
        self.stats.recoveries_done += 1;
        self.ha_lns.entry(m.from_lns).or_default().recoveries_done += 1;
        self.events.push_back(Event::SessionUp(Box::new(up)));
        if !m.make_before_break {
            return;
        }
        // From here the node relays on the new call only; the old one
        // stays up at its LNS until it is released.
        self.by_call.remove(&m.old_call);
        self.selector.remove_session(m.from_lns);
        let release = Release {
            subscriber: key,
            from_lns: m.from_lns,
            old_ids: m.old_ids,
            epoch: call.ownership_epoch,
            deadline: now + self.config.defer_connect.unwrap_or_default(),
        };
        match self.config.defer_connect {
            // A fast path switches its workers to the new call a moment
            // after this SessionUp; what they still send on the old call
            // meanwhile must find it up at the old LNS, or it is lost
            // there. The glue says when it has switched (release_moved).
            Some(_) => {
                // A subscriber moved again before its previous old call was
                // let go of: that one goes now.
                let earlier = self.release_of.get(&key).copied();
                if let Some(old) = earlier {
                    self.release_old_call(now, old, true);
                }
                self.release_deadlines
                    .insert((release.deadline, m.old_call));
                self.release_of.insert(key, m.old_call);
                self.releasing.insert(m.old_call, release);
            }
            None => {
                self.releasing.insert(m.old_call, release);
                self.release_old_call(now, m.old_call, true);
            }
        }
    }

    /// HA load switchover with a fast path ([`Config::defer_connect`]): the
    /// daemon's workers forward `subscriber`'s upstream on its new call
    /// now, so its old call may be released at the old LNS (CDN with the
    /// new Ownership-Epoch, [`Event::SessionReleased`]). Without this call
    /// the node releases it by itself once `defer_connect` has passed
    /// since the new call's [`Event::SessionUp`]. False if no old call of
    /// that subscriber waits for its release (none, released already, or
    /// no `defer_connect`: the release then follows SessionUp at once).
    pub fn release_moved(&mut self, now: Instant, subscriber: SubscriberKey) -> bool {
        let waiting = self.release_of.get(&subscriber).copied();
        let Some(old) = waiting else {
            return false;
        };
        self.release_old_call(now, old, true);
        self.pump(now);
        true
    }

    /// Old calls whose release wait ran out.
    fn release_timeouts(&mut self, now: Instant) {
        while let Some(&(at, old)) = self.release_deadlines.first() {
            if at > now {
                return;
            }
            self.release_old_call(now, old, true);
        }
    }

    /// Let go of a load switchover's old call: released at the old LNS
    /// with the new Ownership-Epoch, so that LNS drops it without an LCP
    /// Terminate (docs/ha-protocol.md §5.4), if `send` (else it is gone
    /// already: its tunnel or the LNS ended it). Either way
    /// [`Event::SessionReleased`], for the fast path to forget the old ids.
    fn release_old_call(&mut self, now: Instant, old_call: SessionHandle, send: bool) {
        let Some(r) = self.releasing.remove(&old_call) else {
            return;
        };
        self.release_deadlines.remove(&(r.deadline, old_call));
        if self.release_of.get(&r.subscriber) == Some(&old_call) {
            self.release_of.remove(&r.subscriber);
        }
        if send {
            let result = match r.epoch {
                Some(epoch) => self.endpoint.release_session(now, old_call, epoch),
                // No epoch: the peer did not adopt the session, so the old
                // LNS cannot be told it lives on; a plain CDN ends it there.
                None => self.endpoint.close_session(
                    now,
                    old_call,
                    ResultCode::with_message(cdn::ADMINISTRATIVE, "moved to a peer LNS"),
                ),
            };
            if let Err(e) = result {
                tracing::debug!(lns = %r.from_lns, error = %e, "old call not released");
            }
        }
        self.stats.sessions_moved += 1;
        let ((local_tunnel_id, _), (local_session_id, _)) = r.old_ids;
        self.events.push_back(Event::SessionReleased {
            subscriber: r.subscriber,
            local_tunnel_id,
            local_session_id,
        });
    }

    /// A recovery call failed (the peer refused it, or its tunnel went
    /// down): try the next peer.
    fn recovery_call_down(
        &mut self,
        now: Instant,
        key: SubscriberKey,
        session: SessionHandle,
        reason: &SessionDownReason,
    ) {
        tracing::debug!(subscriber = %key.mac, ?reason, "recovery call failed");
        self.recovery_call_finished(now, session, false);
        let Some(sub) = self.subscribers.get_mut(&key) else {
            return;
        };
        let Some(m) = sub.moving.as_mut() else {
            return;
        };
        if m.new_call != Some(session) {
            return;
        }
        m.new_call = None;
        let abandoned = m.new_ids.take();
        if let Some((local_tunnel_id, local_session_id)) = abandoned {
            self.events.push_back(Event::CallAbandoned {
                subscriber: key,
                local_tunnel_id,
                local_session_id,
            });
        }
        self.try_next_peer(now, key);
    }

    /// An HA vendor message from an LNS: STPLRQ is answered (STPLRP) and,
    /// if granted, acted on (docs/ha-protocol.md §5.4). Anything else, or
    /// an STPLRQ we cannot read, is counted and ignored.
    fn ha_message(&mut self, now: Instant, tunnel: TunnelHandle, message: &ControlMessage) {
        let request = match HaMessage::from_control(message) {
            Ok(HaMessage::SwitchoverRequest(r)) => r,
            Ok(_) | Err(_) => {
                self.stats.ha_messages_malformed += 1;
                return;
            }
        };
        let Some(&lns) = self.tunnels.get(&tunnel) else {
            self.stats.ha_messages_malformed += 1;
            return;
        };
        self.stats.switchover_requests += 1;
        self.ha_lns.entry(lns).or_default().switchover_requests += 1;
        let advertised = self
            .tunnel_ha
            .get(&tunnel)
            .map(|t| t.peers.clone())
            .unwrap_or_default();
        let mut peers = if request.peers.is_empty() {
            advertised
        } else {
            request.peers.clone()
        };
        peers.retain(|p| p != lns.ip());
        // "New sessions only" without a peer: the LNS takes new calls again
        // (failback).
        let cancel = request.kind == SwitchoverType::NewSessions && request.peers.is_empty();
        let denial = match &self.config.ha {
            None => Some("HA is off"),
            Some(p) if !p.accept_switchover => Some("policy"),
            Some(_) if matches!(request.kind, SwitchoverType::Unknown(_)) => {
                Some("unknown switchover type")
            }
            Some(_) if !cancel && peers.is_empty() => Some("no usable peer"),
            Some(_) => None,
        };
        let granted = denial.is_none();
        let reply = HaMessage::SwitchoverReply(SwitchoverReply {
            kind: request.kind,
            action: if granted {
                SwitchoverAction::Granted
            } else {
                SwitchoverAction::Denied
            },
            reason: denial.unwrap_or_default().to_owned(),
        });
        if let Err(e) = self
            .endpoint
            .send_ha_message(now, tunnel, None, reply.to_control(false))
        {
            tracing::warn!(lns = %lns, error = %e, "cannot answer STPLRQ");
        }
        let h = self.ha_lns.entry(lns).or_default();
        if granted {
            self.stats.switchovers_granted += 1;
            h.switchovers_granted += 1;
        } else {
            self.stats.switchovers_denied += 1;
            h.switchovers_denied += 1;
        }
        let steer_time = self
            .config
            .ha
            .as_ref()
            .map_or(Duration::ZERO, |p| p.steer_time);
        let mut moving = Vec::new();
        if granted {
            match request.kind {
                SwitchoverType::NewSessions if cancel => {
                    h.steered_until = None;
                    h.went_down_while_steered = false;
                }
                SwitchoverType::NewSessions => h.steered_until = Some(now + steer_time),
                SwitchoverType::All => {
                    h.steered_until = Some(now + steer_time);
                    moving = self
                        .subscribers
                        .iter()
                        .filter(|(_, s)| {
                            s.call
                                .is_some_and(|c| self.tunnels.get(&c.tunnel) == Some(&lns))
                        })
                        .map(|(k, _)| *k)
                        .collect();
                }
                SwitchoverType::Listed => {
                    let listed: std::collections::HashSet<u16> =
                        request.sessions.iter().copied().collect();
                    moving = self
                        .subscribers
                        .iter()
                        .filter(|(_, s)| {
                            s.call.is_some_and(|c| c.tunnel == tunnel)
                                && s.ids
                                    .is_some_and(|(_, (_, lns_sid))| listed.contains(&lns_sid))
                        })
                        .map(|(k, _)| *k)
                        .collect();
                }
                SwitchoverType::Unknown(_) => {}
            }
        }
        moving.sort();
        let mut count = 0;
        for key in moving {
            if self.start_move(now, key, peers.clone(), true, None) {
                count += 1;
            }
        }
        tracing::info!(lns = %lns, kind = ?request.kind, granted, sessions = count, reason = denial.unwrap_or(""), "switchover requested");
        self.events.push_back(Event::SwitchoverRequested {
            lns,
            kind: request.kind,
            granted,
            sessions: count,
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

    fn handle_unreachable(&mut self, now: Instant, remote: SocketAddr, refused: &[u8]) {
        if let SocketAddr::V4(remote) = remote {
            Node::handle_unreachable(self, now, remote, refused);
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

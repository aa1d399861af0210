//! The LNS node's part in the HA extension (DESIGN.md §1 items 2 and 4,
//! docs/ha-protocol.md §5): the peering with the other LNSs, the offload of
//! every established session, the adoption of recovered calls, and the
//! fencing of sessions that moved away; and the load switchover and the
//! operator's commands (STPLRQ to the LACs, their STPLRPs).
//!
//! * Adoption with a fast path: a recovery call that will be accepted is
//!   reported as a [`super::ConnectedCall`] with [`Node::adopted_call`]
//!   (address, MRU, epoch) and its ICRP waits for [`Node::release_call`].
//! * Accounting: the adopted session's RADIUS accounting resumes here
//!   (Interim-Update, RFC 2866 §5.1 Acct-Status-Type 3, same
//!   Acct-Session-Id); a session that moved away is forgotten by the
//!   RADIUS client without a Stop.
//! * Counters: [`Node::set_counters`] puts them into the offloaded state
//!   (at most every [`COUNTERS_OFFLOAD_INTERVAL`]) for the next update or
//!   periodic refresh to carry.
//! * Load: [`Node::observe_load`] feeds the [`LoadMonitor`]; overloaded,
//!   every HA-capable LAC gets an STPLRQ of [`HaConfig::switchover_kind`].
//! * Operator: [`Node::ha_switchover`], [`Node::ha_drain`],
//!   [`Node::ha_failback`], [`Node::ha_status`]; STPLRPs come out of
//!   [`Node::poll_switchover_answer`].
//!
//! The LNS-LNS control connections run on an endpoint of their own (same
//! UDP socket: a datagram from a configured peer's address goes to it), so
//! that they get LAN timers ([`PeerLink`]) while the LACs' tunnels keep
//! theirs: the l2tp [`l2tp::Config`] timers are per endpoint.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use std::collections::HashMap;

use crate::ha::load::{LoadConfig, LoadEvent, LoadMonitor, LoadSample};
use crate::ha::message::{HaMessage, SwitchoverReply, SwitchoverRequest};
use crate::ha::offload::{Adoption, OffloadConfig};
use crate::ha::peering::{no_offloaded_state, LnsPeering, PeeringConfig};
use crate::l2tp::{self, Endpoint, LnsPeer, Retransmission, SessionHandle, TunnelHandle};
pub use dataplane::wire::control::SwitchoverType;
use dataplane::wire::control::{ControlMessage, SwitchoverAction};

/// An LNS's HA settings ([`super::Config::ha`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HaConfig {
    /// Our address as the LACs know it: the primary LNS address of our
    /// tunnels' Tunnel-Identity, which a recovering LAC names in its
    /// Recovery-Tunnel.
    pub address: Ipv4Addr,
    /// The peer LNSs (address and shared secret): we offload our sessions
    /// to each, and take their offload. Tunnel authentication is required
    /// on these connections (RFC 2661 §5.1.1).
    pub peers: Vec<LnsPeer>,
    /// The peers' L2TP port. Default 1701.
    pub peer_port: u16,
    /// Peer-LNS-Address for HA-capable LACs, in preference order (usually
    /// the peers' addresses as the LACs reach them).
    pub advertise: Vec<Ipv4Addr>,
    /// Offload window and periodic refresh (bulk sync) interval.
    pub offload: OffloadConfig,
    /// A failed LNS-LNS connection is opened again this long after.
    pub reconnect_after: Duration,
    /// Timers of the LNS-LNS tunnels.
    pub peer_link: PeerLink,
    /// A session of ours that a peer offloads back as adopted is dropped
    /// this long after, unless the LAC releases it first: a load
    /// switchover moves the LAC's data path only once the new session is
    /// up (make-before-break), and this leaves it the time. Default 1 s.
    pub adopted_grace: Duration,
    /// The load monitor (issue 6 §3): over a watermark for its hold time,
    /// the node asks every HA-capable LAC to switch over
    /// ([`Node::observe_load`]). `None`: no load switchover.
    pub load: Option<LoadConfig>,
    /// What an overloaded node asks for: [`SwitchoverType::NewSessions`]
    /// (the default: steer new calls to the peers, leave the sessions
    /// where they are) or [`SwitchoverType::All`]. `Listed` counts as
    /// `All` here (no list to give).
    pub switchover_kind: SwitchoverType,
}

/// The LNS-LNS tunnels' timers: they run on a LAN, where the RFC's 1 s
/// retransmission timeout makes the offload lag under loss seconds long
/// (docs/ha-protocol.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLink {
    /// Hello interval (RFC 2661 §6.5).
    pub hello_interval: Duration,
    /// Silence after which the peer is down (`l2tp::Config::dead_interval`).
    pub dead_interval: Duration,
    /// Retransmission schedule (RFC 2661 §5.8).
    pub retransmission: Retransmission,
    /// Acknowledgement delay.
    pub ack_delay: Duration,
    /// Our receive window: at least the offload window, so LSORQs never
    /// wait in the control channel.
    pub receive_window: u16,
}

impl Default for PeerLink {
    fn default() -> Self {
        PeerLink {
            hello_interval: Duration::from_millis(500),
            dead_interval: Duration::from_secs(2),
            retransmission: Retransmission {
                initial: Duration::from_millis(50),
                cap: Duration::from_secs(1),
                max_retries: 5,
            },
            ack_delay: Duration::from_millis(5),
            receive_window: 512,
        }
    }
}

impl HaConfig {
    /// HA with `peers`, advertising their addresses to the LACs, default
    /// offload and LAN timers.
    pub fn new(address: Ipv4Addr, peers: Vec<LnsPeer>) -> Self {
        HaConfig {
            address,
            advertise: peers.iter().map(|p| p.address).collect(),
            peers,
            peer_port: 1701,
            offload: OffloadConfig::default(),
            reconnect_after: Duration::from_secs(1),
            peer_link: PeerLink::default(),
            adopted_grace: Duration::from_secs(1),
            load: None,
            switchover_kind: SwitchoverType::NewSessions,
        }
    }

    /// The LAC-facing endpoint's HA part: HA-Capability,
    /// Peer-LNS-Address, recovery calls held for the node.
    pub(crate) fn lac_side(&self) -> l2tp::HaConfig {
        l2tp::HaConfig {
            peer_lns_addresses: self.advertise.clone(),
            defer_recovery_calls: true,
            ..l2tp::HaConfig::default()
        }
    }

    /// The LNS-LNS endpoint's configuration.
    pub(crate) fn peer_side(&self, host_name: &str) -> l2tp::Config {
        let l = &self.peer_link;
        l2tp::Config {
            hello_interval: Some(l.hello_interval),
            dead_interval: Some(l.dead_interval),
            retransmission: l.retransmission,
            ack_delay: l.ack_delay,
            receive_window: l.receive_window,
            // Each LNS keeps the connection it opened (the peering offloads
            // over its own); a tie breaker would close one of the two.
            tie_breaker: false,
            accept_calls: false,
            ha: Some(l2tp::HaConfig {
                lns_peers: self.peers.clone(),
                defer_recovery_calls: false,
                ..l2tp::HaConfig::default()
            }),
            ..l2tp::Config::lns(host_name)
        }
    }

    pub(crate) fn peering(&self) -> PeeringConfig {
        PeeringConfig {
            peers: self
                .peers
                .iter()
                .map(|p| SocketAddrV4::new(p.address, self.peer_port))
                .collect(),
            offload: self.offload,
            reconnect_after: self.reconnect_after,
        }
    }

    /// Whether a datagram from `from` is the peering's.
    pub(crate) fn is_peer(&self, from: SocketAddrV4) -> bool {
        self.peers.iter().any(|p| p.address == *from.ip())
    }
}

/// A session's counters go into its offloaded state at most this often
/// ([`Node::set_counters`]): the periodic refresh (minutes) is what carries
/// them, so encoding them more often would only cost.
pub const COUNTERS_OFFLOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Session IDs in one STPLRQ's Session-List: 2 octets each, and an AVP
/// holds at most 1023 octets with its 6-octet header (RFC 2661 §4.1), so a
/// longer list goes in several requests.
pub const MAX_LISTED: usize = 500;

/// HA counters of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HaStats {
    /// Recovery calls answered with an adoption.
    pub recoveries_accepted: u64,
    /// Recovery calls refused (no offloaded state): the LAC falls back.
    pub recoveries_refused: u64,
    /// Adopted sessions that came up here.
    pub sessions_adopted: u64,
    /// Sessions dropped because a peer holds a higher epoch.
    pub sessions_fenced: u64,
    /// Sessions released by the LAC to another LNS (load switchover).
    pub sessions_moved: u64,
    /// Sessions whose state could not be encoded for the offload.
    pub offload_errors: u64,
    /// STPLRQs sent (load, drain, operator's switchover, failback).
    pub switchover_requests: u64,
    /// STPLRPs that granted.
    pub switchovers_granted: u64,
    /// STPLRPs that denied.
    pub switchovers_denied: u64,
    /// Times the load monitor found the node overloaded.
    pub overloads: u64,
    /// Addresses a peer holds that a session of ours holds too (see
    /// [`Node::reserve_peer_held`]), each time it was found.
    pub address_conflicts: u64,
}

impl HaStats {
    /// Every counter with its name, for reports and metrics (one list, so
    /// that a new counter reaches all of them).
    pub fn counters(&self) -> [(&'static str, u64); 10] {
        [
            ("recoveries_accepted", self.recoveries_accepted),
            ("recoveries_refused", self.recoveries_refused),
            ("sessions_adopted", self.sessions_adopted),
            ("sessions_fenced", self.sessions_fenced),
            ("sessions_moved", self.sessions_moved),
            ("switchover_requests", self.switchover_requests),
            ("switchovers_granted", self.switchovers_granted),
            ("switchovers_denied", self.switchovers_denied),
            ("overloads", self.overloads),
            ("address_conflicts", self.address_conflicts),
        ]
    }
}

/// A recovery call accepted with an adoption, until its session is up.
pub(crate) struct Recovering {
    pub(crate) adoption: Adoption,
    /// The subscriber's address, reserved in our pool (a framed address:
    /// it belongs to the primary's range).
    pub(crate) address: Ipv4Addr,
    /// Reported as a [`super::ConnectedCall`]: the fast path knows it.
    pub(crate) reported: bool,
    /// Its ICRP (with the epoch) left.
    pub(crate) answered: bool,
}

/// What a fast path needs of an adopted session before the LAC's held
/// frames arrive (see [`Node::adopted_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdoptedCall {
    /// The subscriber's address, as at the primary.
    pub address: Ipv4Addr,
    /// The subscriber's MRU (LCP, RFC 1661 §6.1), as at the primary.
    pub mru: u16,
    /// The Ownership-Epoch its ICRP will carry.
    pub epoch: u32,
}

/// The HA part of a running node.
pub(crate) struct Ha {
    pub(crate) config: HaConfig,
    /// The LNS-LNS endpoint.
    pub(crate) endpoint: Endpoint,
    pub(crate) peering: LnsPeering,
    pub(crate) started: bool,
    /// Recovery calls accepted with an adoption, waiting for their ICCN
    /// (and, when reported to a fast path, for [`Node::release_call`]
    /// before their ICRP).
    pub(crate) adopting: HashMap<SessionHandle, Recovering>,
    /// Reported recovery calls whose ICRP waits for
    /// [`Node::release_call`], by deadline ([`super::ANSWER_LIMIT`] after
    /// the report, so in time order).
    pub(crate) release_deadlines: std::collections::VecDeque<(Instant, SessionHandle)>,
    /// Our Tunnel ID of each LAC tunnel, to remove it from the offload
    /// when it is gone (the endpoint may have freed it by then).
    pub(crate) lac_tunnels: HashMap<TunnelHandle, u16>,
    /// Established sessions by Acct-Session-Id, which a move keeps: how a
    /// peer's offload of a session it adopted finds ours.
    pub(crate) by_acct: HashMap<String, SessionHandle>,
    /// Sessions a peer adopted, to drop when their grace ends: (when,
    /// session, its epoch there), in order of time.
    pub(crate) fence_after: std::collections::VecDeque<(Instant, SessionHandle, u32)>,
    pub(crate) stats: HaStats,
    /// The load monitor, when configured.
    pub(crate) load: Option<LoadMonitor>,
    /// The last sample it took.
    pub(crate) last_sample: Option<LoadSample>,
    /// [`Node::ha_drain`] asked the LACs to move everything away and steer
    /// new calls away, until [`Node::ha_failback`].
    pub(crate) draining: bool,
    /// What we last asked each LAC tunnel and what it answered.
    pub(crate) lacs: HashMap<TunnelHandle, LacSwitchover>,
    /// STPLRPs not yet polled ([`Node::poll_switchover_answer`]).
    pub(crate) answers: std::collections::VecDeque<SwitchoverAnswer>,
    /// Addresses of our pool reserved because a peer holds them: a session
    /// it offloaded to us (adopted from us, or one a peer sharing our
    /// range gave out), or one that moved away from us, kept until the
    /// time given even if the peer's offload has not shown it yet
    /// ([`Node::reserve_peer_held`]).
    pub(crate) peer_held: HashMap<Ipv4Addr, Option<Instant>>,
    /// When [`Node::reserve_peer_held`] runs next.
    pub(crate) peer_held_check: Instant,
}

/// How often the addresses a peer holds are reserved in our pool, and how
/// long the address of a session that moved away stays reserved before the
/// peer's offload must show it.
pub const PEER_HELD_CHECK: Duration = Duration::from_secs(1);
/// See [`PEER_HELD_CHECK`].
pub const MOVED_ADDRESS_GRACE: Duration = Duration::from_secs(10);

/// A LAC's STPLRP to our STPLRQ (load switchover, drain, the operator's
/// switchover or failback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverAnswer {
    /// The LAC tunnel it came on.
    pub tunnel: TunnelHandle,
    /// The LAC.
    pub lac: SocketAddrV4,
    /// The switchover type it answers.
    pub kind: SwitchoverType,
    /// Granted (it moves the sessions, or steers new calls) or denied.
    pub granted: bool,
    /// The LAC's reason (for a denial), free text.
    pub reason: String,
}

/// The last switchover exchange with one LAC tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LacSwitchover {
    /// The last STPLRQ sent on it: (when, what).
    pub requested: Option<(Instant, SwitchoverType)>,
    /// The last STPLRP it sent: (when, the reply).
    pub answered: Option<(Instant, SwitchoverReply)>,
}

/// Why an HA command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaError {
    /// The node runs without HA ([`super::Config::ha`] is `None`).
    NotConfigured,
    /// No peer LNS to move to ([`HaConfig::advertise`] is empty).
    NoPeers,
    /// No LAC tunnel that advertised HA-Capability: nobody to ask.
    NoHaLac,
    /// None of the listed Session IDs is a session here.
    NoSuchSession(Vec<u16>),
}

impl core::fmt::Display for HaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HaError::NotConfigured => f.write_str("HA is not configured"),
            HaError::NoPeers => f.write_str("no peer LNS to move sessions to"),
            HaError::NoHaLac => f.write_str("no HA-capable LAC tunnel"),
            HaError::NoSuchSession(ids) => write!(f, "no such session: {ids:?}"),
        }
    }
}

impl std::error::Error for HaError {}

/// One peer LNS as [`Node::ha_status`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its LNS-LNS address.
    pub address: SocketAddrV4,
    /// The connection we opened to it is up.
    pub connected: bool,
    /// It holds everything we have (no bulk sync running, nothing queued
    /// or unacknowledged).
    pub in_sync: bool,
    /// Our sessions it should hold.
    pub sessions_offloaded: usize,
}

/// One LAC tunnel as [`Node::ha_status`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LacStatus {
    /// The tunnel.
    pub tunnel: TunnelHandle,
    /// The LAC's address.
    pub remote: SocketAddrV4,
    /// It advertised HA-Capability (STPLRQs can go to it).
    pub ha_capable: bool,
    /// Sessions of ours on it.
    pub sessions: usize,
    /// The last exchange.
    pub switchover: LacSwitchover,
}

/// The node's HA state for operators ([`Node::ha_status`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HaStatus {
    /// Our address as the LACs know it.
    pub address: Ipv4Addr,
    /// The peer LNSs.
    pub peers: Vec<PeerStatus>,
    /// Every peer connected and in sync.
    pub in_sync: bool,
    /// Offload lag (change to acknowledgement) median, microseconds.
    pub lag_p50_us: Option<u64>,
    /// Offload lag 99th percentile, microseconds.
    pub lag_p99_us: Option<u64>,
    /// Established sessions here (ours and adopted).
    pub sessions: usize,
    /// Of those, adopted from a peer.
    pub sessions_adopted: usize,
    /// Peers' sessions held in our store (what we could adopt).
    pub sessions_stored: usize,
    /// The load monitor says overloaded.
    pub overloaded: bool,
    /// Its last sample.
    pub load: Option<LoadSample>,
    /// [`Node::ha_drain`] in force.
    pub draining: bool,
    /// The LAC tunnels.
    pub lacs: Vec<LacStatus>,
    /// Counters.
    pub stats: HaStats,
}

use crate::aaa::radius::{AccountingSession, AcctStatus, Authentic, Counters};
use crate::aaa::Authenticator;
use crate::ha::message::{SessionIdentity, TunnelIdentity};
use crate::ha::offload::OffloadStore;
use crate::ha::peering::PeeringEvent;
use crate::ha::state::{self, L2tpSessionOptions, SessionState};
use crate::ppp::DownCause;
use crate::time::Instant;
use hdrhistogram::Histogram;

use super::{sequencing_required, ConnectedCall, EndCause, EstablishedSession, Event, Node};
use crate::aaa::pool::PoolError;
use crate::l2tp::codes::{cdn, error};

impl Node {
    /// HA counters; `None` without HA.
    pub fn ha_stats(&self) -> Option<HaStats> {
        self.ha.as_ref().map(|ha| ha.stats)
    }

    /// What the peers offloaded here; `None` without HA.
    pub fn offload_store(&self) -> Option<&OffloadStore> {
        self.ha.as_ref().map(|ha| ha.peering.store())
    }

    /// The peering (senders per peer, their counters); `None` without HA.
    pub fn peering(&self) -> Option<&LnsPeering> {
        self.ha.as_ref().map(|ha| &ha.peering)
    }

    /// The LNS-LNS endpoint; `None` without HA.
    pub fn peer_endpoint(&self) -> Option<&Endpoint> {
        self.ha.as_ref().map(|ha| &ha.endpoint)
    }

    /// Offload lag (a change to its acknowledgement by the peer), in
    /// microseconds, over every peer; `None` without HA.
    pub fn offload_lag(&self) -> Option<Histogram<u64>> {
        self.ha.as_ref().and_then(|ha| ha.peering.lag())
    }

    /// Every established session offloaded to every connected peer: the
    /// senders' maps are complete and nothing is waiting to go.
    pub fn offload_in_sync(&self) -> bool {
        self.ha.as_ref().is_some_and(|ha| {
            ha.config.peers.iter().all(|p| {
                let peer = SocketAddrV4::new(p.address, ha.config.peer_port);
                ha.peering.sender(peer).is_some_and(|s| s.in_sync())
            })
        })
    }

    /// Seconds since the Unix epoch at `at`, if the wall clock is known.
    fn unix_time(&self, at: Instant) -> u64 {
        self.wall.map_or(0, |(then, since)| {
            let d = if at >= then {
                since + at.saturating_duration_since(then)
            } else {
                since.saturating_sub(then.saturating_duration_since(at))
            };
            d.as_secs()
        })
    }

    /// What the peers are to hold of an established session.
    fn offload_state(
        &self,
        h: SessionHandle,
    ) -> Option<(TunnelIdentity, SessionIdentity, u32, SessionState)> {
        let s = self.sessions.get(&h).filter(|s| s.established)?;
        let ha = self.ha.as_ref()?;
        let tunnel = TunnelIdentity {
            lns_tunnel_id: s.local_tunnel_id,
            lac_tunnel_id: s.peer_tunnel_id,
            lac: s.remote,
            primary_lns: ha.config.address,
        };
        let identity = SessionIdentity {
            lns_session_id: s.local_session_id,
            lac_session_id: s.peer_session_id,
        };
        let mut st = SessionState::new(s.link.state());
        st.set_attributes(&s.attributes);
        st.l2tp = L2tpSessionOptions {
            sequencing: s.sequencing,
            ..L2tpSessionOptions::default()
        };
        st.accounting.session_id = s.acct_session_id.clone();
        st.accounting.start_time_unix = s.start_unix.unwrap_or_else(|| self.unix_time(s.started));
        st.accounting.counters = state::Counters {
            input_octets: s.counters.input_octets,
            output_octets: s.counters.output_octets,
            input_packets: s.counters.input_packets,
            output_packets: s.counters.output_packets,
        };
        Some((tunnel, identity, s.epoch, st))
    }

    /// Offload an established session's state to every peer (PPP up,
    /// renegotiation, address change, adoption).
    pub(super) fn offload(&mut self, now: Instant, h: SessionHandle) {
        let Some((tunnel, identity, epoch, st)) = self.offload_state(h) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&h) {
            s.counters_offloaded_at = now;
        }
        let Some(ha) = &mut self.ha else {
            return;
        };
        ha.by_acct.insert(st.accounting.session_id.clone(), h);
        if let Err(e) = ha.peering.session_update(now, tunnel, identity, epoch, &st) {
            ha.stats.offload_errors += 1;
            tracing::warn!(session = h.id, %e, "cannot offload the session's state");
        }
    }

    /// The data plane's counters of a session moved on
    /// ([`Node::set_counters`]): the peers' next update or periodic refresh
    /// of it carries them, so a session adopted there accounts on from
    /// nearly where it was. No LSORQ of its own (counters change all the
    /// time); the state is encoded again at most every
    /// [`COUNTERS_OFFLOAD_INTERVAL`] per session.
    pub(super) fn offload_counters(&mut self, now: Instant, h: SessionHandle) {
        let due = self.ha.is_some()
            && self.sessions.get(&h).is_some_and(|s| {
                s.established
                    && now.saturating_duration_since(s.counters_offloaded_at)
                        >= COUNTERS_OFFLOAD_INTERVAL
            });
        if !due {
            return;
        }
        let Some((tunnel, identity, epoch, st)) = self.offload_state(h) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&h) {
            s.counters_offloaded_at = now;
        }
        let Some(ha) = &mut self.ha else {
            return;
        };
        if let Err(e) = ha
            .peering
            .session_refresh(tunnel.lns_tunnel_id, identity, epoch, &st)
        {
            ha.stats.offload_errors += 1;
            tracing::warn!(session = h.id, %e, "cannot offload the session's counters");
        }
    }

    /// A session ended here: the peers forget it; an adopted one leaves
    /// our store.
    pub(super) fn offload_removed(
        &mut self,
        now: Instant,
        lns_tunnel_id: u16,
        lns_session_id: u16,
        acct_session_id: &str,
        adopted_from: Option<(Ipv4Addr, u16, u16)>,
    ) {
        let Some(ha) = &mut self.ha else {
            return;
        };
        ha.by_acct.remove(acct_session_id);
        ha.peering
            .session_removed(now, lns_tunnel_id, lns_session_id);
        if let Some((primary, t, s)) = adopted_from {
            ha.peering.store_mut().release(primary, t, s);
        }
    }

    pub(super) fn on_peering_event(&mut self, now: Instant, event: PeeringEvent) {
        match event {
            PeeringEvent::Fenced {
                peer,
                tunnel,
                session,
                epoch,
            } => {
                let ours = self
                    .ha
                    .as_ref()
                    .is_some_and(|ha| ha.config.address == tunnel.primary_lns);
                let h = self
                    .by_ids
                    .get(&(tunnel.lns_tunnel_id, session.lns_session_id))
                    .copied()
                    .filter(|h| {
                        self.sessions.get(h).is_some_and(|s| {
                            s.peer_session_id == session.lac_session_id && s.epoch < epoch
                        })
                    });
                if let (true, Some(h)) = (ours, h) {
                    tracing::info!(%peer, session = h.id, epoch, "session moved to a peer: dropped silently");
                    if let Some(ha) = &mut self.ha {
                        ha.stats.sessions_fenced += 1;
                    }
                    self.drop_moved(now, h, epoch);
                }
            }
            PeeringEvent::AdoptedElsewhere {
                peer,
                acct_session_id,
                epoch,
            } => {
                let h = self
                    .ha
                    .as_ref()
                    .and_then(|ha| ha.by_acct.get(&acct_session_id))
                    .copied()
                    .filter(|h| self.sessions.get(h).is_some_and(|s| s.epoch < epoch));
                if let (Some(h), Some(ha)) = (h, &mut self.ha) {
                    tracing::info!(%peer, session = h.id, epoch, "session adopted by a peer: dropped after the grace");
                    ha.fence_after
                        .push_back((now + ha.config.adopted_grace, h, epoch));
                }
            }
            PeeringEvent::PeerUp(peer) => tracing::info!(%peer, "LNS peer connected"),
            PeeringEvent::PeerDown(peer) => tracing::warn!(%peer, "LNS peer connection down"),
            PeeringEvent::BulkSyncDone {
                peer,
                entries,
                took,
            } => tracing::debug!(%peer, entries, ?took, "bulk sync done"),
        }
    }

    /// When the next adopted session's grace ends.
    pub(super) fn next_fence(&self) -> Option<Instant> {
        self.ha
            .as_ref()
            .and_then(|ha| ha.fence_after.front())
            .map(|f| f.0)
    }

    /// Drop the sessions whose grace ended (those still held with a lower
    /// epoch: the LAC may have released them meanwhile).
    pub(super) fn fence_due(&mut self, now: Instant) {
        loop {
            let Some(ha) = &mut self.ha else {
                return;
            };
            let Some((_, h, epoch)) = ha.fence_after.front().copied().filter(|f| f.0 <= now) else {
                return;
            };
            ha.fence_after.pop_front();
            if self.sessions.get(&h).is_some_and(|s| s.epoch < epoch) {
                if let Some(ha) = &mut self.ha {
                    ha.stats.sessions_fenced += 1;
                }
                self.drop_moved(now, h, epoch);
            }
        }
    }

    /// Drop a session that lives on elsewhere: no LCP Terminate, no CDN
    /// (DESIGN.md §3 step 4), no accounting Stop; address released, and
    /// [`Event::SessionDown`] with [`EndCause::Moved`] so the daemon takes
    /// it out of the fast path.
    fn drop_moved(&mut self, now: Instant, h: SessionHandle, epoch: u32) {
        let Some(s) = self.sessions.get_mut(&h) else {
            return;
        };
        s.end = Some(EndCause::Moved { epoch });
        // Nothing more goes to the LAC for it; the L2TP session is left to
        // its tunnel (the LAC no longer sends on it).
        s.lower_gone = true;
        s.link.lower_down(now);
        self.service(now, h);
        if self.sessions.contains_key(&h) {
            self.end_session(now, h, DownCause::LowerLayerDown);
        }
    }

    /// A LAC's ICRQ with Recovery-Session: adopt the session from the
    /// offloaded state, or refuse it at once (CDN) so the LAC places a
    /// fresh call without waiting (the bulk sync had not reached it).
    ///
    /// Accepted, its address is reserved here and, with
    /// [`Node::report_connected_calls`] on, the call is reported as a
    /// [`super::ConnectedCall`] ([`Node::adopted_call`] gives the address
    /// and MRU) and its ICRP with the epoch waits for [`Node::release_call`]:
    /// the LAC flushes the subscriber's held frames as soon as its ICCN is
    /// acknowledged (docs/ha-protocol.md §5.5), so the fast path must know
    /// the session, address included, before the ICRP lets it connect.
    /// Without reports the ICRP goes at once.
    pub(super) fn on_recovery_call(
        &mut self,
        now: Instant,
        session: SessionHandle,
        primary_session_id: u16,
        call: &l2tp::CallInfo,
    ) {
        let refuse = |endpoint: &mut Endpoint, result: l2tp::ResultCode| {
            if let Err(e) = endpoint.answer_recovery_call(now, session, Err(result)) {
                tracing::warn!(session = session.id, %e, "cannot refuse a recovery call");
            }
        };
        let Some(ha) = &mut self.ha else {
            // HA-aware endpoint, HA-unaware node: nothing to adopt from.
            refuse(&mut self.endpoint, no_offloaded_state());
            return;
        };
        let Some(adoption) =
            ha.peering
                .adopt_for_recovery(&self.endpoint, session, primary_session_id)
        else {
            ha.stats.recoveries_refused += 1;
            tracing::info!(
                session = session.id,
                primary_session_id,
                "recovery call refused: no offloaded state"
            );
            refuse(&mut self.endpoint, no_offloaded_state());
            return;
        };
        // Its address belongs to the primary's pool: held here as a framed
        // address, so it is not handed out twice.
        // A peer's address we reserved already (`peer_held`) is ours now.
        let reserved = adoption
            .state
            .link
            .peer_ipv4()
            .ok_or(PoolError::Exhausted)
            .and_then(|address| {
                if ha.peer_held.remove(&address).is_some() {
                    Ok(address)
                } else {
                    self.pool.reserve(address).map(|_| address)
                }
            });
        let address = match reserved {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(session = session.id, %e, "cannot adopt the session: its address");
                ha.peering.store_mut().unadopt(&adoption);
                ha.stats.recoveries_refused += 1;
                // RFC 2661 §4.4.2 result 4 with error 4: temporary, the LAC
                // may try another peer.
                refuse(
                    &mut self.endpoint,
                    l2tp::ResultCode::with_error(
                        cdn::NO_FACILITIES_TEMPORARY,
                        error::INSUFFICIENT_RESOURCES,
                        format!("adopted session's address: {e}"),
                    ),
                );
                return;
            }
        };
        ha.stats.recoveries_accepted += 1;
        let ids = self.endpoint.session_ids(session);
        let tunnel_ids = self.endpoint.tunnel_ids(session.tunnel);
        let remote = self.endpoint.tunnel_remote(session.tunnel);
        let report = match (&mut self.connected_calls, ids, tunnel_ids, remote) {
            (Some(calls), Some((session_id, peer_session_id)), Some((tid, ptid)), Some(remote)) => {
                calls.push_back(ConnectedCall {
                    session,
                    tunnel_id: tid,
                    peer_tunnel_id: ptid,
                    session_id,
                    peer_session_id,
                    remote,
                    local: None,
                    // The ICCN may ask for it too; reported again then.
                    sequencing: sequencing_required(call),
                });
                true
            }
            _ => false,
        };
        let epoch = adoption.epoch;
        ha.adopting.insert(
            session,
            Recovering {
                adoption,
                address,
                reported: report,
                answered: !report,
            },
        );
        if report {
            ha.release_deadlines
                .push_back((now + super::ANSWER_LIMIT, session));
        } else if let Err(e) = self.endpoint.answer_recovery_call(now, session, Ok(epoch)) {
            tracing::warn!(session = session.id, %e, "cannot answer a recovery call");
        }
    }

    /// What [`Node::release_call`] does for a reported recovery call: the
    /// ICRP with its epoch. `None` if `session` is not one.
    pub(super) fn release_recovery(
        &mut self,
        now: Instant,
        session: SessionHandle,
    ) -> Option<bool> {
        let r = self
            .ha
            .as_mut()?
            .adopting
            .get_mut(&session)
            .filter(|r| r.reported && !r.answered)?;
        r.answered = true;
        let epoch = r.adoption.epoch;
        Some(
            self.endpoint
                .answer_recovery_call(now, session, Ok(epoch))
                .is_ok(),
        )
    }

    /// Whether `session` (as reported by [`Node::poll_connected_call`]) is
    /// an adopted one, and with what address and MRU: `Some` from the
    /// report of its recovery call (before its ICRP) for as long as it
    /// lives here; `None` for a session set up here.
    pub fn adopted_call(&self, session: SessionHandle) -> Option<AdoptedCall> {
        if let Some(r) = self.ha.as_ref()?.adopting.get(&session) {
            return Some(AdoptedCall {
                address: r.address,
                mru: r.adoption.state.link.lcp_peer.mru,
                epoch: r.adoption.epoch,
            });
        }
        let s = self
            .sessions
            .get(&session)
            .filter(|s| s.adopted_from.is_some())?;
        Some(AdoptedCall {
            address: s.address?,
            mru: s.link.state().lcp_peer.mru,
            epoch: s.epoch,
        })
    }

    /// Reported recovery calls nobody released in time: refused (CDN result
    /// 4), as [`super::ANSWER_LIMIT`] does for other calls.
    pub(super) fn expire_releases(&mut self, now: Instant) {
        loop {
            let Some(ha) = &mut self.ha else {
                return;
            };
            let Some((_, session)) = ha.release_deadlines.front().copied().filter(|d| d.0 <= now)
            else {
                return;
            };
            ha.release_deadlines.pop_front();
            let waiting = ha
                .adopting
                .get(&session)
                .is_some_and(|r| r.reported && !r.answered);
            if waiting {
                tracing::warn!(
                    session = session.id,
                    "recovery call not released in time: refused"
                );
                let result = l2tp::ResultCode::with_error(
                    cdn::NO_FACILITIES_TEMPORARY,
                    error::INSUFFICIENT_RESOURCES,
                    "the fast path did not take the call in time",
                );
                // SessionDown follows and undoes the adoption.
                let _ = self
                    .endpoint
                    .answer_recovery_call(now, session, Err(result));
            }
        }
    }

    /// A recovery call cleared before its session came up: its address
    /// goes back, and an adoption the LAC never heard of (no ICRP) is
    /// undone. True if it had been reported to the fast path.
    pub(super) fn recovery_abandoned(&mut self, session: SessionHandle) -> bool {
        let Some(r) = self.ha.as_mut().and_then(|ha| ha.adopting.remove(&session)) else {
            return false;
        };
        self.pool.release(r.address);
        if !r.answered {
            if let Some(ha) = &mut self.ha {
                ha.peering.store_mut().unadopt(&r.adoption);
            }
        }
        r.reported
    }

    /// An adopted session's L2TP session is up and its link rebuilt: take
    /// over its accounting identity and timers, report it, offload it on.
    pub(super) fn adopted_up(&mut self, now: Instant, h: SessionHandle, a: Adoption) {
        let tunnel_ids = self.endpoint.tunnel_ids(h.tunnel).unwrap_or_default();
        // The primary's Session-Timeout counts from its start; we know it
        // in whole seconds of wall clock, when we know the wall clock.
        let elapsed = self.wall.map_or(Duration::ZERO, |_| {
            Duration::from_secs(
                self.unix_time(now)
                    .saturating_sub(a.state.accounting.start_time_unix),
            )
        });
        let Some(s) = self.sessions.get_mut(&h) else {
            return;
        };
        let st = &a.state;
        let c = st.accounting.counters;
        s.epoch = a.epoch;
        s.adopted_from = Some((
            a.tunnel.primary_lns,
            a.tunnel.lns_tunnel_id,
            a.session.lns_session_id,
        ));
        s.start_unix = Some(st.accounting.start_time_unix);
        s.acct_session_id = st.accounting.session_id.clone();
        s.counters = Counters {
            input_octets: c.input_octets,
            output_octets: c.output_octets,
            input_packets: c.input_packets,
            output_packets: c.output_packets,
        };
        // Our data plane counts this session from zero.
        s.counters_base = s.counters;
        s.attributes = st.attributes();
        s.username = st
            .link
            .username
            .as_ref()
            .map(|u| String::from_utf8_lossy(u).into_owned());
        s.address = st.link.peer_ipv4();
        s.established = true;
        s.last_activity = now;
        s.session_timeout_at = s
            .attributes
            .session_timeout
            .map(|d| now + d.saturating_sub(elapsed));
        let address = s.address.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let username = s.username.clone().unwrap_or_default();
        self.stats.sessions_established += 1;
        if let Some(ha) = &mut self.ha {
            ha.stats.sessions_adopted += 1;
        }
        // The accounting session goes on under the same Acct-Session-Id:
        // an Interim-Update, not a Start (RFC 2866 §5.1, Acct-Status-Type
        // 3), with the primary's counters and Acct-Session-Time from its
        // start; later Interim-Updates and the Stop come from here.
        s.accepted_by = Some(self.generation);
        if let Authenticator::Radius(client) = &mut self.authenticator {
            s.acct = Some((
                self.generation,
                client.accounting_resume(
                    now,
                    AccountingSession {
                        session_id: s.acct_session_id.clone(),
                        username: username.clone(),
                        framed_address: s.address,
                        class: s.attributes.class.clone(),
                        calling_station_id: s.calling_station_id.clone(),
                        nas_port: Some(s.nas_port),
                        authentic: Some(Authentic::Radius),
                        interim_interval: s.attributes.interim_interval,
                    },
                    s.counters,
                    elapsed,
                ),
            ));
        }
        self.events.push_back(Event::Accounting {
            session: h,
            acct_session_id: s.acct_session_id.clone(),
            status: AcctStatus::InterimUpdate,
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
                link: s.link.state(),
                attributes: s.attributes.clone(),
                acct_session_id: s.acct_session_id.clone(),
                proxy: s.link.proxy_outcome(),
                setup_time: Duration::ZERO,
                adopted_epoch: Some(a.epoch),
            })));
        self.offload(now, h);
    }
    // --- load and switchover (issue 6 §3, docs/ha-protocol.md §5.4) --------

    /// A sample of the machine's load (lnsd takes one every second; the
    /// node puts in its own count of established sessions). When the load
    /// monitor ([`HaConfig::load`]) finds the node overloaded, every
    /// HA-capable LAC gets an STPLRQ of [`HaConfig::switchover_kind`] with
    /// the advertised peers; when the load is relieved, a "new sessions"
    /// STPLRQ with no peers lifts the steering. Returns the change of
    /// state, if any.
    pub fn observe_load(&mut self, now: Instant, sample: LoadSample) -> Option<LoadEvent> {
        let sessions = self.established_count() as u64;
        let ha = self.ha.as_mut()?;
        let sample = LoadSample { sessions, ..sample };
        ha.last_sample = Some(sample);
        let event = ha.load.as_mut()?.observe(now, sample)?;
        let kind = match ha.config.switchover_kind {
            SwitchoverType::NewSessions => SwitchoverType::NewSessions,
            _ => SwitchoverType::All,
        };
        let peers = ha.config.advertise.clone();
        let draining = ha.draining;
        match event {
            LoadEvent::Overloaded(over) => {
                ha.stats.overloads += 1;
                tracing::warn!(?over, ?kind, "overloaded: asking the LACs to switch over");
                if let Err(e) = self.request_switchover_all(now, kind, &peers) {
                    tracing::warn!(%e, "overloaded, but no LAC could be asked to switch over");
                }
            }
            LoadEvent::Relieved => {
                tracing::info!("load relieved: new calls welcome again");
                // A drain keeps its steering until the operator's failback.
                if !draining {
                    let _ = self.request_switchover_all(now, SwitchoverType::NewSessions, &[]);
                }
            }
        }
        self.pump(now);
        Some(event)
    }

    /// Keep the addresses a peer holds out of our pool (RFC 2661 says
    /// nothing of addresses; DESIGN.md §3: a moved session keeps its
    /// address). Without this, the address of a session that moved to the
    /// peer (we gave it back at the move) or that the peer adopted while we
    /// were down (we restarted with an empty pool) could go to a new
    /// subscriber of ours while the peer still routes it, and both LNSs
    /// would announce it. Every [`PEER_HELD_CHECK`]: every address in our
    /// pool held by a session the peers offloaded to us (not one we adopted:
    /// that one is ours) is reserved; one no peer holds any more is given
    /// back, after its [`MOVED_ADDRESS_GRACE`] if it moved away from us.
    pub(super) fn reserve_peer_held(&mut self, now: Instant) {
        let Some(ha) = &mut self.ha else { return };
        if now < ha.peer_held_check {
            return;
        }
        ha.peer_held_check = now + PEER_HELD_CHECK;
        let held: std::collections::HashSet<Ipv4Addr> = ha
            .peering
            .store()
            .tunnels()
            .flat_map(|t| t.sessions.values())
            .filter(|s| !s.adopted)
            .filter_map(|s| s.state.link.peer_ipv4())
            .collect();
        for &address in &held {
            if ha.peer_held.contains_key(&address) || !self.pool.contains(address) {
                continue;
            }
            match self.pool.reserve(address) {
                Ok(_) => {
                    ha.peer_held.insert(address, None);
                }
                Err(PoolError::InUse(_)) => {
                    // Ours too: a session of ours has it. Only an operator
                    // can sort out two subscribers with one address.
                    ha.stats.address_conflicts += 1;
                }
                Err(_) => {}
            }
        }
        let pool = &mut self.pool;
        ha.peer_held.retain(|address, until| {
            let keep = held.contains(address) || until.is_some_and(|t| now < t);
            if !keep {
                pool.release(*address);
            }
            keep
        });
    }

    /// Operator: ask every HA-capable LAC to move sessions to the peers
    /// (STPLRQ with [`HaConfig::advertise`]). `All`: every session, and new
    /// calls are steered too; `NewSessions`: only new calls; `Listed`: the
    /// sessions with these Session IDs of ours (each LAC gets the ones on
    /// its tunnels). Returns how many STPLRQs went; the answers come as
    /// [`Node::poll_switchover_answer`].
    pub fn ha_switchover(
        &mut self,
        now: Instant,
        kind: SwitchoverType,
        sessions: &[u16],
    ) -> Result<usize, HaError> {
        let peers = self
            .ha
            .as_ref()
            .ok_or(HaError::NotConfigured)?
            .config
            .advertise
            .clone();
        let sent = if kind == SwitchoverType::Listed {
            self.request_listed(now, sessions, &peers)?
        } else {
            self.request_switchover_all(now, kind, &peers)?
        };
        self.pump(now);
        Ok(sent)
    }

    /// Operator, for maintenance: every LAC moves every session to the
    /// peers and steers new calls there (STPLRQ All). We keep serving
    /// whatever still comes. Ends with [`Node::ha_failback`].
    pub fn ha_drain(&mut self, now: Instant) -> Result<usize, HaError> {
        let peers = self
            .ha
            .as_ref()
            .ok_or(HaError::NotConfigured)?
            .config
            .advertise
            .clone();
        let sent = self.request_switchover_all(now, SwitchoverType::All, &peers)?;
        if let Some(ha) = &mut self.ha {
            ha.draining = true;
        }
        self.pump(now);
        Ok(sent)
    }

    /// Operator: undo a switchover. Sessions adopted here go back to the
    /// LNS they came from (STPLRQ Listed with that LNS as the only peer,
    /// per LAC tunnel and primary), and the LACs stop steering new calls
    /// away from us (STPLRQ NewSessions with no peers). Run it on the peer
    /// that holds the adopted sessions once the primary is back, and on
    /// the primary after a drain. Returns how many STPLRQs went.
    pub fn ha_failback(&mut self, now: Instant) -> Result<usize, HaError> {
        if self.ha.is_none() {
            return Err(HaError::NotConfigured);
        }
        // Adopted sessions that are not ours, by (LAC tunnel, the LNS they
        // came from). One that came back here (drained to the peer, then
        // moved back) was adopted too, but it is home: we started its
        // accounting (our Acct-Session-Id prefix), and sending it away
        // again would undo the failback. (Peers may share a pool, so the
        // address does not tell; a restart draws a new prefix, so after one
        // run the failback on the LNS that holds the moved sessions.)
        let our_accounting = format!("{:08X}", self.acct_prefix);
        let mut back: std::collections::BTreeMap<(TunnelHandle, Ipv4Addr), Vec<u16>> =
            std::collections::BTreeMap::new();
        for (h, s) in &self.sessions {
            let home = s.acct_session_id.starts_with(&our_accounting);
            if let (Some((primary, _, _)), true, false) = (s.adopted_from, s.established, home) {
                back.entry((h.tunnel, primary))
                    .or_default()
                    .push(s.local_session_id);
            }
        }
        let mut sent = 0;
        for ((tunnel, primary), mut ids) in back {
            ids.sort_unstable();
            sent += self.send_listed(now, tunnel, &[primary], &ids);
        }
        // Lift any steering away from us.
        match self.request_switchover_all(now, SwitchoverType::NewSessions, &[]) {
            Ok(n) => sent += n,
            Err(HaError::NoHaLac) if sent > 0 => {}
            Err(e) => return Err(e),
        }
        if let Some(ha) = &mut self.ha {
            ha.draining = false;
        }
        self.pump(now);
        Ok(sent)
    }

    /// The next STPLRP a LAC sent (see [`SwitchoverAnswer`]).
    pub fn poll_switchover_answer(&mut self) -> Option<SwitchoverAnswer> {
        self.ha.as_mut()?.answers.pop_front()
    }

    /// HA state for operators (`l2tpctl ha status`); `None` without HA.
    pub fn ha_status(&self) -> Option<HaStatus> {
        let ha = self.ha.as_ref()?;
        let peers: Vec<PeerStatus> = ha
            .config
            .peers
            .iter()
            .map(|p| {
                let address = SocketAddrV4::new(p.address, ha.config.peer_port);
                let sender = ha.peering.sender(address);
                PeerStatus {
                    address,
                    connected: ha.peering.peer_connected(address),
                    in_sync: sender.is_some_and(|s| s.in_sync()),
                    sessions_offloaded: sender.map_or(0, |s| s.session_count()),
                }
            })
            .collect();
        let lag = ha.peering.lag().filter(|h| !h.is_empty());
        let mut lacs: Vec<LacStatus> = ha
            .lac_tunnels
            .keys()
            .filter_map(|&tunnel| {
                Some(LacStatus {
                    tunnel,
                    remote: self.endpoint.tunnel_remote(tunnel)?,
                    ha_capable: self.lac_is_ha(tunnel),
                    sessions: self.endpoint.session_count(tunnel),
                    switchover: ha.lacs.get(&tunnel).cloned().unwrap_or_default(),
                })
            })
            .collect();
        lacs.sort_by_key(|l| l.tunnel);
        let established = self.sessions.values().filter(|s| s.established);
        let (sessions, adopted) = established.fold((0, 0), |(n, a), s| {
            (n + 1, a + usize::from(s.adopted_from.is_some()))
        });
        Some(HaStatus {
            address: ha.config.address,
            in_sync: !peers.is_empty() && peers.iter().all(|p| p.connected && p.in_sync),
            peers,
            lag_p50_us: lag.as_ref().map(|h| h.value_at_quantile(0.5)),
            lag_p99_us: lag.as_ref().map(|h| h.value_at_quantile(0.99)),
            sessions,
            sessions_adopted: adopted,
            sessions_stored: ha.peering.store().session_count(),
            overloaded: ha.load.as_ref().is_some_and(LoadMonitor::is_overloaded),
            load: ha.last_sample,
            draining: ha.draining,
            lacs,
            stats: ha.stats,
        })
    }

    /// Whether a LAC tunnel's peer advertised HA-Capability.
    fn lac_is_ha(&self, tunnel: TunnelHandle) -> bool {
        self.endpoint
            .peer_info(tunnel)
            .is_some_and(|p| p.ha.is_some())
    }

    /// The HA-capable LAC tunnels, in handle order.
    fn ha_lacs(&self) -> Vec<TunnelHandle> {
        let mut tunnels: Vec<TunnelHandle> = self
            .ha
            .as_ref()
            .map(|ha| ha.lac_tunnels.keys().copied().collect())
            .unwrap_or_default();
        tunnels.retain(|&t| self.lac_is_ha(t));
        tunnels.sort_unstable();
        tunnels
    }

    /// STPLRQ `kind` with `peers` to every HA-capable LAC.
    fn request_switchover_all(
        &mut self,
        now: Instant,
        kind: SwitchoverType,
        peers: &[Ipv4Addr],
    ) -> Result<usize, HaError> {
        // "New sessions only" with no peers is the cancel form; anything
        // else needs somewhere to go.
        if peers.is_empty() && kind != SwitchoverType::NewSessions {
            return Err(HaError::NoPeers);
        }
        let tunnels = self.ha_lacs();
        if tunnels.is_empty() {
            return Err(HaError::NoHaLac);
        }
        let mut sent = 0;
        for tunnel in tunnels {
            let request = SwitchoverRequest {
                peers: peers.to_vec(),
                kind,
                sessions: Vec::new(),
            };
            if self.send_switchover(now, tunnel, request) {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// STPLRQ Listed: each LAC tunnel gets the listed Session IDs that are
    /// sessions of ours on it.
    fn request_listed(
        &mut self,
        now: Instant,
        sessions: &[u16],
        peers: &[Ipv4Addr],
    ) -> Result<usize, HaError> {
        if peers.is_empty() {
            return Err(HaError::NoPeers);
        }
        let tunnels = self.ha_lacs();
        if tunnels.is_empty() {
            return Err(HaError::NoHaLac);
        }
        let mut sent = 0;
        let mut found = 0;
        for tunnel in tunnels {
            let Some((tunnel_id, _)) = self.endpoint.tunnel_ids(tunnel) else {
                continue;
            };
            let mut ids: Vec<u16> = sessions
                .iter()
                .copied()
                .filter(|sid| self.by_ids.contains_key(&(tunnel_id, *sid)))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                continue;
            }
            found += ids.len();
            sent += self.send_listed(now, tunnel, peers, &ids);
        }
        if found == 0 {
            return Err(HaError::NoSuchSession(sessions.to_vec()));
        }
        Ok(sent)
    }

    /// STPLRQ Listed for `ids` on `tunnel`, in as many messages as the
    /// Session-List AVP needs ([`MAX_LISTED`] ids each); how many went.
    fn send_listed(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        peers: &[Ipv4Addr],
        ids: &[u16],
    ) -> usize {
        let mut sent = 0;
        for chunk in ids.chunks(MAX_LISTED) {
            let request = SwitchoverRequest {
                peers: peers.to_vec(),
                kind: SwitchoverType::Listed,
                sessions: chunk.to_vec(),
            };
            if self.send_switchover(now, tunnel, request) {
                sent += 1;
            }
        }
        sent
    }

    /// Send one STPLRQ (DESIGN.md §3: only to a LAC that advertised
    /// HA-Capability; the endpoint refuses otherwise).
    fn send_switchover(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        request: SwitchoverRequest,
    ) -> bool {
        let kind = request.kind;
        let m = HaMessage::SwitchoverRequest(request).to_control(false);
        match self.endpoint.send_ha_message(now, tunnel, None, m) {
            Ok(()) => {
                if let Some(ha) = &mut self.ha {
                    ha.stats.switchover_requests += 1;
                    ha.lacs.entry(tunnel).or_default().requested = Some((now, kind));
                }
                true
            }
            Err(e) => {
                tracing::warn!(tunnel = tunnel.0, %e, "cannot send an STPLRQ");
                false
            }
        }
    }

    /// An HA message on a LAC tunnel: an STPLRP answers our STPLRQ.
    pub(super) fn on_lac_message(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        message: &ControlMessage,
    ) {
        let Ok(HaMessage::SwitchoverReply(reply)) = HaMessage::from_control(message) else {
            return;
        };
        let Some(ha) = &mut self.ha else {
            return;
        };
        let granted = reply.action == SwitchoverAction::Granted;
        if granted {
            ha.stats.switchovers_granted += 1;
        } else {
            ha.stats.switchovers_denied += 1;
        }
        let lac = self
            .endpoint
            .tunnel_remote(tunnel)
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        tracing::info!(%lac, kind = ?reply.kind, granted, reason = %reply.reason, "STPLRP");
        ha.answers.push_back(SwitchoverAnswer {
            tunnel,
            lac,
            kind: reply.kind,
            granted,
            reason: reply.reason.clone(),
        });
        ha.lacs.entry(tunnel).or_default().answered = Some((now, reply));
    }
}

//! One control connection and its sessions (RFC 2661 §7.2, §7.4).
//!
//! A [`Tunnel`] owns a [`ControlChannel`] for reliable delivery, decides what
//! each delivered message means (acceptable or not, which table event it is),
//! runs the tables of [`super::fsm`], and performs their actions.

use core::net::SocketAddrV4;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use dataplane::wire::control::{Avp, AvpEntry, ControlMessage, MessageType};
use md5::{Digest, Md5};
use rand_core::RngCore;

use super::codes::{cdn, error, stop_ccn};
use super::fsm::{
    session_transition, tunnel_transition, CallSide, SessionAction, SessionEvent, SessionState,
    TunnelAction, TunnelEvent, TunnelState,
};
use super::reliable::{ControlChannel, DEFAULT_PEER_RECEIVE_WINDOW};
use super::session::{self, Session};
use super::{
    CallParams, Config, EndpointStats, Error, Event, HaCapability, PeerInfo, RecoveryTunnel,
    ResultCode, SessionDownReason, SessionHandle, TunnelDownReason, TunnelHandle, TunnelStats,
    PROTOCOL_VERSION,
};
use crate::time::Instant;

/// Length of the challenges we send (RFC 2661 §4.4.3 allows any non-zero
/// length; 16 random bytes match the MD5 digest size).
const CHALLENGE_LEN: usize = 16;

/// Length of the Random Vectors we send before hidden AVPs (RFC 2661 §4.3).
const RANDOM_VECTOR_LEN: usize = 16;

/// What a tunnel borrows from its endpoint while it works.
pub(crate) struct Cx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) rng: &'a mut dyn RngCore,
    pub(crate) events: &'a mut VecDeque<Event>,
    pub(crate) next_session: &'a mut u64,
    pub(crate) next_call_serial: &'a mut u32,
    pub(crate) stats: &'a mut EndpointStats,
}

/// How a tunnel ends: what our StopCCN says (if we send one) and what the
/// owner is told.
#[derive(Debug, Clone)]
struct Teardown {
    result: ResultCode,
    reason: TunnelDownReason,
}

impl Teardown {
    fn protocol(result: ResultCode) -> Self {
        Teardown {
            reason: TunnelDownReason::ProtocolError(result.clone()),
            result,
        }
    }

    fn authentication(message: &str) -> Self {
        let result = ResultCode::with_message(stop_ccn::NOT_AUTHORIZED, message);
        Teardown {
            reason: TunnelDownReason::AuthenticationFailed(result.clone()),
            result,
        }
    }
}

/// The CHAP-style response of tunnel authentication (RFC 2661 §4.2,
/// §4.4.3 Challenge Response): MD5 over the Message Type value of the
/// message that carries the response (2 for SCCRP, 3 for SCCCN), the
/// shared secret, and the challenge.
pub(crate) fn challenge_response(message_type: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([message_type]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

/// The Message Type values that identify a challenge response (RFC 2661
/// §4.4.3).
const SCCRP_ID: u8 = 2;
const SCCCN_ID: u8 = 3;

fn unknown_avp_result(result: u16, entry: &AvpEntry) -> ResultCode {
    let (vendor_id, attribute) = match &entry.avp {
        Avp::Unknown {
            vendor_id,
            attribute,
            ..
        } => (*vendor_id, *attribute),
        _ => (0, 0),
    };
    ResultCode::with_error(
        result,
        error::UNKNOWN_MANDATORY_AVP,
        format!("unknown mandatory AVP vendor {vendor_id} attribute {attribute}"),
    )
}

/// A mandatory AVP is missing. RFC 2661 has no error code for it; "generic
/// vendor-specific" with the AVP named is the most useful to an operator.
fn missing_avp(result: u16, name: &str) -> ResultCode {
    ResultCode::with_error(
        result,
        error::VENDOR_SPECIFIC,
        format!("missing {name} AVP"),
    )
}

fn ha_capability(c: HaCapability) -> AvpEntry {
    AvpEntry::optional(Avp::HaCapability {
        version: c.version,
        flags: c.flags,
    })
}

fn random_bytes(rng: &mut dyn RngCore, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    rng.fill_bytes(&mut v);
    v
}

/// A Random Vector must precede the first hidden AVP (RFC 2661 §4.3). Insert
/// one where the owner's AVPs ask for hiding and none is there.
fn add_random_vector(message: &mut ControlMessage, rng: &mut dyn RngCore) {
    let Some(first_hidden) = message.avps.iter().position(|e| e.hidden) else {
        return;
    };
    let covered = message.avps[..first_hidden]
        .iter()
        .any(|e| matches!(e.avp, Avp::RandomVector(_)));
    if !covered {
        let rv = random_bytes(rng, RANDOM_VECTOR_LEN);
        message
            .avps
            .insert(first_hidden, AvpEntry::mandatory(Avp::RandomVector(rv)));
    }
}

/// Where a datagram carrying a tunnel's ID came from, as far as the tunnel
/// is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The peer's address and port.
    Peer,
    /// The peer's address from another port, while we wait for the first
    /// answer to our SCCRQ: RFC 2661 §8.1 lets the responder answer from a
    /// port of its choosing, so an SCCRP (or a StopCCN refusing us) from
    /// there is the peer. Anything else from there is not.
    PeerNewPort,
    /// Anyone else: dropped.
    Other,
}

/// How a tunnel counts against the endpoint's limits on half-open state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Nothing to limit: established, ours and closing, or finished.
    #[default]
    Other,
    /// We sent SCCRQ and wait for SCCRP (a candidate for a tie break).
    Connecting,
    /// A peer's SCCRQ created it and it is not established yet.
    Pending,
    /// A peer's SCCRQ created it, it never came up, and it is held after
    /// StopCCN (RFC 2661 §5.7).
    RefusedHold,
}

/// What became of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Handed to the owner as [`Event::Data`].
    Delivered,
    /// No established session with that ID (or the tunnel is down).
    UnknownSession,
}

/// Would we refuse this SCCRQ whatever the state of its tunnel (RFC 2661
/// §6.1, §5.1.1)? The endpoint asks before it creates a tunnel, so that an
/// SCCRQ it would refuse while its refused tunnels are at the limit is
/// dropped without creating any state.
pub(crate) fn refuses_sccrq(config: &Config, remote: SocketAddrV4, m: &ControlMessage) -> bool {
    check_start(m).is_err()
        || !config.accept_tunnels
        || (m.challenge().is_some() && config.secret_for(*remote.ip()).is_none())
}

/// Checks shared by SCCRQ and SCCRP (RFC 2661 §6.1, §6.2): the AVPs that
/// must be there, the version, no unknown mandatory AVP (§4.1).
fn check_start(m: &ControlMessage) -> Result<PeerInfo, Teardown> {
    const R: u16 = stop_ccn::GENERAL_ERROR;
    if let Some(e) = m.unknown_mandatory() {
        return Err(Teardown::protocol(unknown_avp_result(R, e)));
    }
    let version = m.find(|a| match a {
        Avp::ProtocolVersion { version, revision } => Some((*version, *revision)),
        _ => None,
    });
    match version {
        None => return Err(Teardown::protocol(missing_avp(R, "Protocol Version"))),
        Some(v) if v != PROTOCOL_VERSION => {
            // RFC 2661 §4.4.2: result 5, the error code carries the
            // highest version we support.
            let (ver, rev) = PROTOCOL_VERSION;
            return Err(Teardown::protocol(ResultCode::with_error(
                stop_ccn::UNSUPPORTED_VERSION,
                u16::from_be_bytes([ver, rev]),
                format!("version {}.{} is not supported", v.0, v.1),
            )));
        }
        Some(_) => {}
    }
    let host_name = match m.host_name() {
        Some(h) if !h.is_empty() => String::from_utf8_lossy(h).into_owned(),
        _ => return Err(Teardown::protocol(missing_avp(R, "Host Name"))),
    };
    let Some(framing_capabilities) = m.find(|a| match a {
        Avp::FramingCapabilities(f) => Some(*f),
        _ => None,
    }) else {
        return Err(Teardown::protocol(missing_avp(R, "Framing Capabilities")));
    };
    let tunnel_id = match m.assigned_tunnel_id() {
        Some(0) => {
            return Err(Teardown::protocol(ResultCode::with_error(
                R,
                error::OUT_OF_RANGE,
                "Assigned Tunnel ID 0",
            )))
        }
        Some(id) => id,
        None => return Err(Teardown::protocol(missing_avp(R, "Assigned Tunnel ID"))),
    };
    Ok(PeerInfo {
        tunnel_id,
        host_name,
        // The value as the peer sent it, 0 included; the control channel
        // makes it usable (`ControlChannel::set_peer_window`).
        receive_window: m
            .receive_window_size()
            .unwrap_or(DEFAULT_PEER_RECEIVE_WINDOW),
        vendor_name: m.find(|a| match a {
            Avp::VendorName(v) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        }),
        firmware_revision: m.find(|a| match a {
            Avp::FirmwareRevision(v) => Some(*v),
            _ => None,
        }),
        framing_capabilities,
        bearer_capabilities: m.find(|a| match a {
            Avp::BearerCapabilities(v) => Some(*v),
            _ => None,
        }),
        avps: m.avps.clone(),
        ha: m.find(|a| match a {
            Avp::HaCapability { version, flags } => Some(HaCapability {
                version: *version,
                flags: *flags,
            }),
            _ => None,
        }),
        peer_lns_addresses: m
            .find(|a| match a {
                Avp::PeerLnsAddress(v) => Some(v.clone()),
                _ => None,
            })
            .unwrap_or_default(),
        recovery_tunnel: m.find(|a| match a {
            Avp::RecoveryTunnel {
                primary_lns,
                lns_tunnel_id,
                lac_tunnel_id,
            } => Some(RecoveryTunnel {
                primary_lns: *primary_lns,
                lns_tunnel_id: *lns_tunnel_id,
                lac_tunnel_id: *lac_tunnel_id,
            }),
            _ => None,
        }),
    })
}

/// One control connection.
#[derive(Debug)]
pub(crate) struct Tunnel {
    pub(crate) handle: TunnelHandle,
    /// Our Tunnel ID: what the peer puts in the header.
    pub(crate) local_id: u16,
    /// The peer's Tunnel ID, 0 until its Assigned Tunnel ID arrives.
    pub(crate) peer_id: u16,
    pub(crate) remote: SocketAddrV4,
    /// `remote` is the peer's for good (RFC 2661 §8.1: "Once the source
    /// and destination ports and addresses are established, they MUST
    /// remain static"). Set from the start when the peer's SCCRQ created the
    /// tunnel; set by the first answer to our SCCRQ when we initiated.
    remote_learned: bool,
    pub(crate) state: TunnelState,
    /// We sent the SCCRQ.
    pub(crate) initiator: bool,
    channel: ControlChannel,
    /// The challenge we sent, to check the peer's response against.
    our_challenge: Option<Vec<u8>>,
    /// The challenge the peer sent, to answer.
    peer_challenge: Option<Vec<u8>>,
    /// Our Tie Breaker, if our SCCRQ carried one.
    pub(crate) tie_breaker: Option<[u8; 8]>,
    /// The owner's extra AVPs for our SCCRQ (kept for a restart).
    sccrq_avps: Vec<AvpEntry>,
    peer: Option<PeerInfo>,
    sessions: BTreeMap<u64, Session>,
    by_local_sid: HashMap<u16, u64>,
    /// LNS sessions answered with ICRP and waiting for ICCN.
    pending_calls: usize,
    /// LAC sessions whose ICCN the peer has not acknowledged yet, as
    /// (ICCN message number, session), in the order the ICCNs were queued,
    /// which is the order the peer acknowledges them in. Entries of
    /// sessions that went away meanwhile are skipped when they come up.
    unacknowledged_iccns: VecDeque<(u64, u64)>,
    /// LAC calls whose ICCN waits for the owner ([`CallParams::defer_connect`]),
    /// as (deadline, session), earliest first.
    held_calls: BTreeSet<(Instant, u64)>,
    /// The Hello interval (from the configuration).
    hello_every: Option<core::time::Duration>,
    /// [`Config::dead_interval`].
    dead_after: Option<core::time::Duration>,
    /// When the peer was last heard from (established tunnels).
    last_heard: Instant,
    /// Its host reported our port unreachable: the peer is dead at this
    /// time unless heard from first ([`Config::unreachable_timeout`]).
    unreachable_deadline: Option<Instant>,
    hello_deadline: Option<Instant>,
    /// Cleared when the tunnel comes up ([`Config::setup_timeout`]).
    setup_deadline: Option<Instant>,
    /// Set once cleaned up after a StopCCN exchange: state is kept until
    /// then to acknowledge and retransmit (RFC 2661 §5.7).
    hold_until: Option<Instant>,
    /// We sent or received StopCCN.
    stop_exchanged: bool,
    /// Cleaned up: the owner has been told, only acknowledgements remain.
    cleaned_up: bool,
    /// Nothing left to do: the endpoint frees it.
    finished: bool,
    /// TunnelUp was reported.
    up: bool,
    stats: TunnelStats,
    /// The deadline under which the endpoint has the tunnel scheduled.
    pub(crate) scheduled: Option<Instant>,
    /// The key under which the endpoint indexes the tunnel by the peer's
    /// address and Assigned Tunnel ID.
    pub(crate) indexed_as: Option<(SocketAddrV4, u16)>,
    /// How the endpoint counts the tunnel against its limits.
    pub(crate) counted_as: Standing,
}

impl Tunnel {
    pub(crate) fn new(
        now: Instant,
        handle: TunnelHandle,
        local_id: u16,
        remote: SocketAddrV4,
        initiator: bool,
        config: &Config,
    ) -> Self {
        Tunnel {
            handle,
            local_id,
            peer_id: 0,
            remote,
            remote_learned: !initiator,
            state: TunnelState::Idle,
            initiator,
            channel: ControlChannel::new(config.channel()),
            our_challenge: None,
            peer_challenge: None,
            tie_breaker: None,
            sccrq_avps: Vec::new(),
            peer: None,
            sessions: BTreeMap::new(),
            by_local_sid: HashMap::new(),
            pending_calls: 0,
            unacknowledged_iccns: VecDeque::new(),
            held_calls: BTreeSet::new(),
            hello_every: config.hello_interval,
            dead_after: config.dead_interval,
            last_heard: now,
            unreachable_deadline: None,
            hello_deadline: None,
            setup_deadline: Some(now + config.setup_timeout),
            hold_until: None,
            stop_exchanged: false,
            cleaned_up: false,
            finished: false,
            up: false,
            stats: TunnelStats::default(),
            scheduled: None,
            indexed_as: None,
            counted_as: Standing::Other,
        }
    }

    /// Counters.
    pub(crate) fn stats(&self) -> TunnelStats {
        TunnelStats {
            control: *self.channel.stats(),
            last_heard: self.heard_since_up(),
            ..self.stats
        }
    }

    /// When the peer was last heard from, once the tunnel was established
    /// (before that `last_heard` means nothing).
    pub(crate) fn heard_since_up(&self) -> Option<Instant> {
        self.up.then_some(self.last_heard)
    }

    /// Nothing left to do: free it.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Down (the owner has been told), possibly still acknowledging.
    pub(crate) fn is_closed(&self) -> bool {
        self.cleaned_up
    }

    /// How the endpoint counts this tunnel against its limits now.
    pub(crate) fn standing(&self) -> Standing {
        if self.finished {
            Standing::Other
        } else if self.initiator {
            if self.state == TunnelState::WaitCtlReply && !self.cleaned_up {
                Standing::Connecting
            } else {
                Standing::Other
            }
        } else if self.up {
            Standing::Other
        } else if self.cleaned_up {
            Standing::RefusedHold
        } else {
            Standing::Pending
        }
    }

    /// Free the tunnel now, skipping its hold period: the endpoint holds as
    /// many refused tunnels as it is willing to. What it had to send has been
    /// sent once; a retransmitted StopCCN of the peer's will find no tunnel.
    pub(crate) fn finish_now(&mut self) {
        self.finished = true;
    }

    /// Whether a datagram carrying our Tunnel ID from `from` may be the
    /// peer's (RFC 2661 §8.1).
    pub(crate) fn source(&self, from: SocketAddrV4) -> Source {
        if from == self.remote {
            Source::Peer
        } else if !self.remote_learned
            && self.state == TunnelState::WaitCtlReply
            && from.ip() == self.remote.ip()
        {
            Source::PeerNewPort
        } else {
            Source::Other
        }
    }

    /// A datagram with our Tunnel ID came from elsewhere; dropped.
    pub(crate) fn count_wrong_source(&mut self) {
        self.stats.wrong_source += 1;
    }

    /// A control message from the peer did not parse; dropped, not
    /// acknowledged.
    pub(crate) fn count_malformed(&mut self) {
        self.stats.malformed_dropped += 1;
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<ControlMessage> {
        self.channel.poll_transmit()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let hello = if self.state == TunnelState::Established && !self.cleaned_up {
            self.hello_deadline
        } else {
            None
        };
        let setup = if self.up || self.cleaned_up {
            None
        } else {
            self.setup_deadline
        };
        let dead = self.dead_deadline();
        let held = if self.cleaned_up {
            None
        } else {
            self.held_calls.first().map(|&(at, _)| at)
        };
        [
            self.channel.poll_timeout(),
            hello,
            self.hold_until,
            setup,
            dead,
            held,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(crate) fn session_state(&self, id: u64) -> Option<SessionState> {
        self.sessions.get(&id).map(|s| s.state)
    }

    /// A session's own Session ID and the peer's (0 until the peer's is
    /// known).
    pub(crate) fn session_ids(&self, id: u64) -> Option<(u16, u16)> {
        self.sessions.get(&id).map(|s| (s.local_id, s.peer_id))
    }

    /// What the peer said in its SCCRQ or SCCRP, once accepted.
    pub(crate) fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// (peer Tunnel ID, peer Session ID) of an established session, for its
    /// data messages.
    pub(crate) fn data_ids(&mut self, id: u64) -> Result<(u16, u16), Error> {
        let s = self.sessions.get(&id).ok_or(Error::UnknownSession)?;
        // A LAC session is Established in the RFC's table once its ICCN is
        // queued, but data sent before the LNS has the ICCN is lost: wait
        // until the owner has been told it is up (`session_apply`).
        if s.state != SessionState::Established || !s.announced {
            return Err(Error::NotEstablished);
        }
        self.stats.data_sent += 1;
        Ok((self.peer_id, s.peer_id))
    }

    // --- commands -------------------------------------------------------

    /// Open the control connection: send SCCRQ.
    pub(crate) fn connect(&mut self, now: Instant, cx: &mut Cx<'_>, sccrq_avps: Vec<AvpEntry>) {
        self.sccrq_avps = sccrq_avps;
        self.new_tie_breaker(cx);
        self.apply(now, cx, TunnelEvent::LocalOpen, None);
        self.service(now, cx);
    }

    fn new_tie_breaker(&mut self, cx: &mut Cx<'_>) {
        self.tie_breaker = cx.config.tie_breaker.then(|| {
            let mut tb = [0; 8];
            cx.rng.fill_bytes(&mut tb);
            tb
        });
    }

    /// Administrative close: StopCCN with `result`.
    pub(crate) fn close(&mut self, now: Instant, cx: &mut Cx<'_>, result: ResultCode) {
        if self.cleaned_up {
            return;
        }
        let teardown = Teardown {
            reason: TunnelDownReason::Closed(result.clone()),
            result,
        };
        self.apply(now, cx, TunnelEvent::LocalClose, Some(teardown));
        self.service(now, cx);
    }

    /// LAC: open an incoming call; the ICRQ goes out once the tunnel is up.
    pub(crate) fn open_session(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        call: CallParams,
    ) -> Result<SessionHandle, Error> {
        if self.cleaned_up || self.state == TunnelState::Idle {
            return Err(Error::TunnelClosed);
        }
        let local_id = self.allocate_session_id(cx).ok_or(Error::IdsExhausted)?;
        let call_serial_number = call.call_serial_number.unwrap_or_else(|| {
            let n = *cx.next_call_serial;
            *cx.next_call_serial = n.wrapping_add(1);
            n
        });
        let handle = self.new_session_handle(cx);
        self.insert_session(Session {
            handle,
            local_id,
            peer_id: 0,
            side: CallSide::Lac,
            state: SessionState::Idle,
            call,
            call_serial_number,
            info: Default::default(),
            announced: false,
            iccn_number: None,
            awaiting_owner: false,
            told: false,
            icrp_avps: Vec::new(),
            cdn_avps: Vec::new(),
            connect_deadline: None,
        });
        self.session_apply(now, cx, handle.id, SessionEvent::LocalOpen, None);
        // RFC 2661 §7.2.1: a local open request on an established tunnel
        // sends the tunnel-open event to the waiting sessions at once.
        self.apply(now, cx, TunnelEvent::LocalOpen, None);
        self.service(now, cx);
        Ok(handle)
    }

    /// Close a session: CDN with `result`.
    pub(crate) fn close_session(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        id: u64,
        result: ResultCode,
    ) -> Result<(), Error> {
        if !self.sessions.contains_key(&id) {
            return Err(Error::UnknownSession);
        }
        let reason = SessionDownReason::Closed(result.clone());
        self.session_apply(
            now,
            cx,
            id,
            SessionEvent::LocalClose,
            Some((result, reason)),
        );
        self.service(now, cx);
        Ok(())
    }

    /// Send a message the state machines do not produce (the HA extension's).
    pub(crate) fn send_message(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        session: Option<u64>,
        mut message: ControlMessage,
    ) -> Result<(), Error> {
        if self.cleaned_up {
            return Err(Error::TunnelClosed);
        }
        if self.state != TunnelState::Established {
            return Err(Error::NotEstablished);
        }
        message.tunnel_id = self.peer_id;
        message.session_id = match session {
            Some(id) => self.sessions.get(&id).ok_or(Error::UnknownSession)?.peer_id,
            None => 0,
        };
        self.send(cx, message);
        self.service(now, cx);
        Ok(())
    }

    /// HA: send an HA vendor message, only if we are HA-aware and the peer
    /// advertised HA-Capability (DESIGN.md §3).
    pub(crate) fn send_ha_message(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        session: Option<u64>,
        message: ControlMessage,
    ) -> Result<(), Error> {
        let is_ha = message.message_type.is_some_and(MessageType::is_ha);
        let peer_is_ha = self.peer.as_ref().is_some_and(|p| p.ha.is_some());
        if !is_ha || cx.config.ha.is_none() || !peer_is_ha {
            return Err(Error::NotHaCapable);
        }
        self.send_message(now, cx, session, message)
    }

    /// HA: release a session that now lives at another LNS: CDN with
    /// Ownership-Epoch (M bit clear).
    pub(crate) fn release_session(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        id: u64,
        epoch: u32,
    ) -> Result<(), Error> {
        let peer_is_ha = self.peer.as_ref().is_some_and(|p| p.ha.is_some());
        if cx.config.ha.is_none() || !peer_is_ha {
            return Err(Error::NotHaCapable);
        }
        let s = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        s.cdn_avps = vec![AvpEntry::optional(Avp::OwnershipEpoch(epoch))];
        let result = ResultCode::with_message(cdn::ADMINISTRATIVE, "moved to a peer LNS");
        self.close_session(now, cx, id, result)
    }

    /// HA: the owner's answer to [`Event::RecoveryCall`]: ICRP with
    /// Ownership-Epoch, or CDN with the result.
    pub(crate) fn answer_recovery_call(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        id: u64,
        answer: Result<u32, ResultCode>,
    ) -> Result<(), Error> {
        let answer = answer.map(|epoch| vec![AvpEntry::optional(Avp::OwnershipEpoch(epoch))]);
        self.answer_waiting_call(now, cx, id, answer)
    }

    /// LNS: the owner's answer to [`Event::CallOffered`]: ICRP, or CDN with
    /// the result.
    pub(crate) fn answer_call(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        id: u64,
        answer: Result<(), ResultCode>,
    ) -> Result<(), Error> {
        self.answer_waiting_call(now, cx, id, answer.map(|()| Vec::new()))
    }

    /// Answer an ICRQ that waits for the owner: ICRP with these extra AVPs,
    /// or CDN with the result.
    fn answer_waiting_call(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        id: u64,
        answer: Result<Vec<AvpEntry>, ResultCode>,
    ) -> Result<(), Error> {
        let s = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        if !s.awaiting_owner {
            return Err(Error::NotWaiting);
        }
        s.awaiting_owner = false;
        if let Some(at) = s.connect_deadline.take() {
            self.held_calls.remove(&(at, id));
        }
        self.pending_calls = self.pending_calls.saturating_sub(1);
        match answer {
            Ok(avps) => {
                s.icrp_avps = avps;
                self.session_apply(now, cx, id, SessionEvent::IcrqAcceptable, None);
            }
            Err(result) => {
                self.stats.calls_rejected += 1;
                let reason = SessionDownReason::Closed(result.clone());
                self.session_apply(
                    now,
                    cx,
                    id,
                    SessionEvent::IcrqNotAcceptable,
                    Some((result, reason)),
                );
            }
        }
        self.service(now, cx);
        Ok(())
    }

    /// LAC: the owner is ready for the data of a call it heard of in
    /// [`Event::CallAnswered`]: send the ICCN (RFC 2661 §7.4.1, wait-reply
    /// to established).
    pub(crate) fn connect_call(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        id: u64,
    ) -> Result<(), Error> {
        let s = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        let Some(deadline) = s.connect_deadline.take() else {
            return Err(Error::NotWaiting);
        };
        self.held_calls.remove(&(deadline, id));
        self.session_apply(now, cx, id, SessionEvent::IcrpAcceptable, None);
        self.service(now, cx);
        Ok(())
    }

    /// LAC: clear the calls whose owner did not connect them in time
    /// ([`CallParams::defer_connect`]) with CDN.
    fn expire_held_calls(&mut self, now: Instant, cx: &mut Cx<'_>) {
        while let Some(&(at, id)) = self.held_calls.first() {
            if at > now {
                break;
            }
            self.held_calls.remove(&(at, id));
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.connect_deadline != Some(at) {
                continue;
            }
            s.connect_deadline = None;
            self.stats.connect_timeouts += 1;
            if s.awaiting_owner {
                // LNS, Config::defer_answer: RFC 2661 §4.4.2 result 4
                // (temporary lack of facilities): our side was not ready
                // for the call's data.
                s.awaiting_owner = false;
                self.pending_calls = self.pending_calls.saturating_sub(1);
                self.stats.calls_rejected += 1;
                let wait = cx.config.defer_answer.unwrap_or_default();
                let result = ResultCode::with_error(
                    cdn::NO_FACILITIES_TEMPORARY,
                    error::INSUFFICIENT_RESOURCES,
                    format!(
                        "the LNS was not ready to answer the call within {} ms",
                        wait.as_millis()
                    ),
                );
                let reason = SessionDownReason::Closed(result.clone());
                self.session_apply(
                    now,
                    cx,
                    id,
                    SessionEvent::IcrqNotAcceptable,
                    Some((result, reason)),
                );
                continue;
            }
            let wait = s.call.defer_connect.unwrap_or_default();
            // RFC 2661 §4.4.2: result 4, "call failed due to lack of
            // appropriate facilities being available (temporary
            // condition)": our side was not ready for the call's data.
            let result = ResultCode::with_error(
                cdn::NO_FACILITIES_TEMPORARY,
                error::INSUFFICIENT_RESOURCES,
                format!(
                    "the LAC was not ready to connect the call within {} ms",
                    wait.as_millis()
                ),
            );
            let reason = SessionDownReason::Closed(result.clone());
            self.session_apply(
                now,
                cx,
                id,
                SessionEvent::LocalClose,
                Some((result, reason)),
            );
        }
    }

    /// A call waiting for the owner's recovery answer goes away without a
    /// message (its tunnel is down).
    fn forget_waiting_call(&mut self, cx: &mut Cx<'_>, id: u64, reason: SessionDownReason) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_local_sid.remove(&s.local_id);
            self.pending_calls = self.pending_calls.saturating_sub(1);
            cx.events.push_back(Event::SessionDown {
                session: s.handle,
                reason,
            });
        }
    }

    // --- input ------------------------------------------------------------

    /// A control message for this tunnel (already parsed).
    pub(crate) fn handle_control(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        from: SocketAddrV4,
        message: ControlMessage,
    ) {
        let answer = matches!(
            message.message_type,
            Some(MessageType::Sccrp | MessageType::StopCcn)
        );
        if !self.remote_learned && self.state == TunnelState::WaitCtlReply && answer {
            // RFC 2661 §8.1: the responder may answer from another port;
            // the tunnel continues with the address of its first answer and
            // keeps it (the endpoint only lets the peer's address through).
            self.remote = from;
            self.remote_learned = true;
        }
        self.touch(now);
        let (_, delivered) = self.channel.on_receive(now, message);
        // The Nr of this message may acknowledge ICCNs: those sessions come
        // up before anything it carries about them is acted on.
        self.announce_acknowledged_calls(cx);
        for m in delivered {
            self.on_message(now, cx, m);
        }
        self.service(now, cx);
    }

    /// A data message for this tunnel, from the peer's address.
    pub(crate) fn handle_data(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        session_id: u16,
        payload: &[u8],
    ) -> DataOutcome {
        self.touch(now);
        let session = self
            .by_local_sid
            .get(&session_id)
            .and_then(|id| self.sessions.get_mut(id))
            .filter(|s| s.state == SessionState::Established);
        match session {
            Some(s) if !self.cleaned_up => {
                if !s.announced {
                    // LAC, ICCN not acknowledged yet: the LNS only sends data
                    // on a session it has established, which it does on
                    // receiving our ICCN (RFC 2661 §7.4.2). Its data is the
                    // acknowledgement that matters, and may overtake its
                    // ZLB; dropping it would cost the LNS a PPP restart.
                    announce(s, cx);
                }
                self.stats.data_received += 1;
                cx.events.push_back(Event::Data {
                    session: s.handle,
                    payload: payload.to_vec(),
                });
                DataOutcome::Delivered
            }
            _ => {
                self.stats.data_dropped += 1;
                DataOutcome::UnknownSession
            }
        }
    }

    /// When the peer counts as dead if still silent ([`Config::dead_interval`],
    /// or sooner after an unreachable report).
    fn dead_deadline(&self) -> Option<Instant> {
        let live = self.state == TunnelState::Established && !self.cleaned_up;
        let silent = self.dead_after.map(|d| self.last_heard + d);
        [silent, self.unreachable_deadline]
            .into_iter()
            .flatten()
            .min()
            .filter(|_| live)
    }

    /// The peer's host says no one listens on its port. `refused_ns`: the
    /// refused datagram was a control message of this tunnel with this Ns.
    ///
    /// ICMP is unauthenticated, and a report about a data message (most of
    /// them: upstream traffic) quotes nothing an off-path forger could not
    /// guess. So it only starts a probe: a Hello, which a live peer
    /// acknowledges (RFC 2661 §5.8), and [`Config::unreachable_timeout`]
    /// for it to be heard from. A report that quotes one of our control
    /// messages still unacknowledged (the probe itself, one round trip
    /// later) carries our Tunnel ID and an Ns in flight, as a TCP stack
    /// checks the sequence number quoted in an ICMP error (RFC 5927 §4.1):
    /// it saw what we sent, so the peer is dead now.
    pub(crate) fn handle_unreachable(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        refused_ns: Option<u16>,
    ) {
        let Some(grace) = cx.config.unreachable_timeout else {
            return;
        };
        if self.state != TunnelState::Established || self.cleaned_up {
            return;
        }
        self.stats.unreachable_reports += 1;
        if refused_ns.is_some_and(|ns| self.channel.is_in_flight(ns)) {
            // Once in the tunnel's life: it ends here.
            tracing::warn!(peer = %self.remote, ns = ?refused_ns, "peer's host refused our control message: port unreachable");
            self.stats.unreachable_confirmed += 1;
            self.unreachable_deadline = Some(now);
            self.handle_timeout(now, cx);
            return;
        }
        if self.unreachable_deadline.is_some() {
            // Already probing: more reports (one per datagram sent to the
            // dead port) change nothing.
            return;
        }
        tracing::debug!(peer = %self.remote, "peer's host reports port unreachable: probing");
        self.unreachable_deadline = Some(now + grace);
        // Sent even behind messages in flight: a fresh Ns to be refused.
        self.send(cx, ControlMessage::new(MessageType::Hello, self.peer_id, 0));
        self.stats.hellos_sent += 1;
        self.service(now, cx);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, cx: &mut Cx<'_>) {
        if self.dead_deadline().is_some_and(|t| t <= now) {
            // Config::dead_interval: nothing heard for that long. Like an
            // exhausted retransmission (RFC 2661 §5.8): clean up, no
            // StopCCN to a peer that does not answer.
            let teardown = Teardown {
                result: ResultCode::new(stop_ccn::GENERAL_ERROR),
                reason: TunnelDownReason::RetriesExhausted,
            };
            self.apply(now, cx, TunnelEvent::RetriesExhausted, Some(teardown));
            self.service(now, cx);
            return;
        }
        if self.hold_until.is_some_and(|t| t <= now) {
            // RFC 2661 §5.7: the full retransmission cycle after StopCCN is
            // over; the state can go.
            self.finished = true;
            return;
        }
        if !self.up && !self.cleaned_up && self.setup_deadline.is_some_and(|t| t <= now) {
            // Config::setup_timeout: a peer that keeps acknowledging but
            // never completes the three-way handshake (RFC 2661 §5.1) would
            // otherwise hold the tunnel half-open for ever.
            self.setup_deadline = None;
            cx.stats.setup_timeouts += 1;
            let result = ResultCode::with_error(
                stop_ccn::GENERAL_ERROR,
                error::VENDOR_SPECIFIC,
                format!(
                    "control connection not established within {} s",
                    cx.config.setup_timeout.as_secs_f64()
                ),
            );
            self.apply(
                now,
                cx,
                TunnelEvent::LocalClose,
                Some(Teardown::protocol(result)),
            );
            self.service(now, cx);
            return;
        }
        if self.state == TunnelState::Established
            && !self.cleaned_up
            && self.hello_deadline.is_some_and(|t| t <= now)
        {
            // RFC 2661 §5.5, §6.5: nothing heard for the Hello interval.
            // If messages are in flight their retransmissions already probe
            // the peer.
            if self.channel.is_idle() {
                self.send(cx, ControlMessage::new(MessageType::Hello, self.peer_id, 0));
                self.stats.hellos_sent += 1;
            }
            self.hello_deadline = self.hello_every.map(|i| now + i);
        }
        if !self.cleaned_up {
            self.expire_held_calls(now, cx);
        }
        self.service(now, cx);
    }

    /// We lost the tie (RFC 2661 §4.4.3): discard our connection silently
    /// and answer the peer's SCCRQ from the idle state (§7.2.1 "re-queue
    /// SCCRQ for idle state"). Sessions waiting for the tunnel keep waiting.
    pub(crate) fn lose_tie(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        from: SocketAddrV4,
        sccrq: ControlMessage,
    ) {
        self.apply(now, cx, TunnelEvent::SccrqLoseTie, None);
        self.reset(cx);
        self.initiator = false;
        self.remote = from;
        self.remote_learned = true;
        self.handle_control(now, cx, from, sccrq);
    }

    /// Both tie breakers were equal (RFC 2661 §4.4.3): both sides discard
    /// their connections. We start over with a fresh tie breaker.
    pub(crate) fn restart(&mut self, now: Instant, cx: &mut Cx<'_>) {
        self.reset(cx);
        self.remote_learned = false;
        self.new_tie_breaker(cx);
        self.apply(now, cx, TunnelEvent::LocalOpen, None);
        self.service(now, cx);
    }

    fn reset(&mut self, cx: &mut Cx<'_>) {
        self.channel = ControlChannel::new(cx.config.channel());
        self.state = TunnelState::Idle;
        self.our_challenge = None;
        self.peer_challenge = None;
        self.tie_breaker = None;
        self.peer = None;
        self.peer_id = 0;
    }

    // --- internals ------------------------------------------------------

    /// Anything heard from the peer restarts the Hello interval (RFC 2661
    /// §5.5: "without receiving any message (data or control)").
    fn touch(&mut self, now: Instant) {
        self.last_heard = now;
        self.unreachable_deadline = None;
        if self.state == TunnelState::Established {
            self.hello_deadline = self.hello_every.map(|i| now + i);
        }
    }

    fn service(&mut self, now: Instant, cx: &mut Cx<'_>) {
        self.channel.service(now);
        if self.channel.is_failed() && !self.finished {
            if self.cleaned_up {
                self.finished = true;
            } else {
                let teardown = Teardown {
                    result: ResultCode::new(stop_ccn::GENERAL_ERROR),
                    reason: TunnelDownReason::RetriesExhausted,
                };
                self.apply(now, cx, TunnelEvent::RetriesExhausted, Some(teardown));
            }
        }
    }

    fn send(&mut self, cx: &mut Cx<'_>, mut message: ControlMessage) {
        add_random_vector(&mut message, cx.rng);
        self.channel.send(message);
    }

    fn on_message(&mut self, now: Instant, cx: &mut Cx<'_>, m: ControlMessage) {
        if self.cleaned_up {
            // RFC 2661 §5.7: after StopCCN only acknowledgements remain; the
            // channel has acknowledged this one.
            return;
        }
        let Some(message_type) = m.message_type else {
            return;
        };
        match message_type {
            MessageType::Unknown { vendor_id, value } => {
                // RFC 2661 §4.4.1 (Message Type AVP): an unknown message type
                // with the M bit set clears the tunnel; without it, ignore.
                if m.message_type_mandatory {
                    let result = ResultCode::with_error(
                        stop_ccn::GENERAL_ERROR,
                        error::UNKNOWN_MANDATORY_AVP,
                        format!("unknown mandatory message type vendor {vendor_id} type {value}"),
                    );
                    self.abort_now(now, cx, result);
                }
            }
            MessageType::Icrq
            | MessageType::Icrp
            | MessageType::Iccn
            | MessageType::Cdn
            | MessageType::Wen
            | MessageType::Sli
            | MessageType::Ocrq
            | MessageType::Ocrp
            | MessageType::Occn => self.on_session_message(now, cx, message_type, m),
            MessageType::Lsorq | MessageType::Lsors | MessageType::Stplrq | MessageType::Stplrp => {
                if let Some(e) = m.unknown_mandatory() {
                    let result = unknown_avp_result(stop_ccn::GENERAL_ERROR, e);
                    self.abort_now(now, cx, result);
                    return;
                }
                if self.state != TunnelState::Established {
                    // The owner hears of a tunnel at TunnelUp; nothing
                    // before that can be handed over.
                    self.stats.session_messages_dropped += 1;
                    return;
                }
                let session = self
                    .by_local_sid
                    .get(&m.session_id)
                    .and_then(|id| self.sessions.get(id))
                    .filter(|s| s.known_to_owner())
                    .map(|s| s.handle);
                cx.events.push_back(Event::Message {
                    tunnel: self.handle,
                    session,
                    message: m,
                });
            }
            MessageType::Sccrq => self.on_sccrq(now, cx, &m),
            MessageType::Sccrp => self.on_sccrp(now, cx, &m),
            MessageType::Scccn => self.on_scccn(now, cx, &m),
            MessageType::StopCcn => {
                let result = ResultCode::of(&m).unwrap_or_else(|| ResultCode::new(0));
                let teardown = Teardown {
                    reason: TunnelDownReason::StopCcnReceived(result.clone()),
                    result,
                };
                self.apply(now, cx, TunnelEvent::StopCcn, Some(teardown));
            }
            MessageType::Hello => {
                // RFC 2661 §4.1: an unknown M-bit AVP in a tunnel message
                // clears the tunnel.
                if let Some(e) = m.unknown_mandatory() {
                    let result = unknown_avp_result(stop_ccn::GENERAL_ERROR, e);
                    self.abort_now(now, cx, result);
                    return;
                }
                // A Hello has no answer for its acknowledgement to ride on,
                // so the ack delay (RFC 2661 §5.8) would only make the peer
                // wait: a LAC probing whether we are alive (after an ICMP
                // port unreachable) gives us tens of milliseconds.
                self.channel.ack_now(now);
            }
        }
    }

    /// Stop the tunnel for a protocol error, from inside message processing
    /// (the caller services the channel): StopCCN with `result`.
    fn abort_now(&mut self, now: Instant, cx: &mut Cx<'_>, result: ResultCode) {
        self.apply(
            now,
            cx,
            TunnelEvent::LocalClose,
            Some(Teardown::protocol(result)),
        );
    }

    /// RFC 2661 §5.1.1: if we challenged, the response must be there and
    /// right; if the peer challenges, we need a secret to answer.
    fn check_authentication(
        &self,
        cx: &Cx<'_>,
        m: &ControlMessage,
        response_id: u8,
    ) -> Result<(), Teardown> {
        if let Some(challenge) = &self.our_challenge {
            let secret = cx.config.secret_for(*self.remote.ip()).unwrap_or_default();
            let expected = challenge_response(response_id, secret, challenge);
            match m.challenge_response() {
                Some(r) if r == expected => {}
                Some(_) => return Err(Teardown::authentication("wrong challenge response")),
                None => return Err(Teardown::authentication("no challenge response")),
            }
        }
        if m.challenge().is_some() && cx.config.secret_for(*self.remote.ip()).is_none() {
            return Err(Teardown::authentication(
                "challenged, but no shared secret is configured",
            ));
        }
        Ok(())
    }

    fn learn_peer_id(&mut self, m: &ControlMessage) {
        if let Some(id) = m.assigned_tunnel_id().filter(|&id| id != 0) {
            self.peer_id = id;
            self.channel.set_peer_tunnel_id(id);
        }
    }

    fn accept_peer(&mut self, info: PeerInfo, m: &ControlMessage) {
        self.channel.set_peer_window(info.receive_window);
        self.peer_challenge = m.challenge().map(<[u8]>::to_vec);
        self.peer = Some(info);
    }

    fn on_sccrq(&mut self, now: Instant, cx: &mut Cx<'_>, m: &ControlMessage) {
        if self.state != TunnelState::Idle {
            self.apply(now, cx, TunnelEvent::SccrqAcceptable, None);
            return;
        }
        self.learn_peer_id(m);
        let verdict = check_start(m).and_then(|info| {
            if !cx.config.accept_tunnels {
                let result = ResultCode::with_message(
                    stop_ccn::NOT_AUTHORIZED,
                    "this endpoint does not accept tunnels",
                );
                return Err(Teardown::protocol(result));
            }
            self.check_authentication(cx, m, SCCRP_ID)?;
            Ok(info)
        });
        match verdict {
            Ok(info) => {
                self.accept_peer(info, m);
                self.apply(now, cx, TunnelEvent::SccrqAcceptable, None);
            }
            Err(t) => self.apply(now, cx, TunnelEvent::SccrqNotAcceptable, Some(t)),
        }
    }

    fn on_sccrp(&mut self, now: Instant, cx: &mut Cx<'_>, m: &ControlMessage) {
        if self.state != TunnelState::WaitCtlReply {
            self.apply(now, cx, TunnelEvent::SccrpAcceptable, None);
            return;
        }
        self.learn_peer_id(m);
        let verdict = check_start(m).and_then(|info| {
            self.check_authentication(cx, m, SCCRP_ID)?;
            Ok(info)
        });
        match verdict {
            Ok(info) => {
                self.accept_peer(info, m);
                self.apply(now, cx, TunnelEvent::SccrpAcceptable, None);
            }
            Err(t) => self.apply(now, cx, TunnelEvent::SccrpNotAcceptable, Some(t)),
        }
    }

    fn on_scccn(&mut self, now: Instant, cx: &mut Cx<'_>, m: &ControlMessage) {
        if self.state != TunnelState::WaitCtlConn {
            self.apply(now, cx, TunnelEvent::ScccnAcceptable, None);
            return;
        }
        let verdict = match m.unknown_mandatory() {
            Some(e) => Err(Teardown::protocol(unknown_avp_result(
                stop_ccn::GENERAL_ERROR,
                e,
            ))),
            None => self.check_authentication(cx, m, SCCCN_ID),
        };
        match verdict {
            Ok(()) => self.apply(now, cx, TunnelEvent::ScccnAcceptable, None),
            Err(t) => self.apply(now, cx, TunnelEvent::ScccnNotAcceptable, Some(t)),
        }
    }

    /// Run the control connection table (RFC 2661 §7.2.1) and act on it.
    fn apply(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        event: TunnelEvent,
        teardown: Option<Teardown>,
    ) {
        let before = self.state;
        let transition = tunnel_transition(before, event);
        self.state = transition.next;
        let teardown = teardown.unwrap_or_else(|| {
            Teardown::protocol(ResultCode::with_message(
                stop_ccn::FSM_ERROR,
                format!("{event:?} in state {before:?}"),
            ))
        });
        if event == TunnelEvent::StopCcn {
            self.stop_exchanged = true;
        }
        for action in transition.actions {
            match action {
                TunnelAction::SendSccrq => self.send_sccrq(cx),
                TunnelAction::SendSccrp => self.send_sccrp(cx),
                TunnelAction::SendScccn => self.send_scccn(cx),
                TunnelAction::SendStopCcn => {
                    // Messages not yet sent are moot once we stop.
                    self.channel.discard_waiting();
                    let m = ControlMessage::new(MessageType::StopCcn, self.peer_id, 0)
                        // RFC 2661 §4.4.3: the StopCCN repeats our Assigned
                        // Tunnel ID so the peer can find the tunnel even if
                        // it never learned the ID.
                        .with(AvpEntry::mandatory(Avp::AssignedTunnelId(self.local_id)))
                        .with(AvpEntry::mandatory(teardown.result.to_avp()));
                    self.send(cx, m);
                    self.stop_exchanged = true;
                }
                TunnelAction::TunnelOpen => self.tunnel_open(now, cx),
                TunnelAction::CleanUp => {
                    // Losing the tie discards the connection silently: the
                    // owner keeps the tunnel, which answers the peer instead.
                    if event != TunnelEvent::SccrqLoseTie {
                        self.clean_up(now, cx, teardown.reason.clone());
                    }
                }
                // Done by `lose_tie`, which needs the SCCRQ.
                TunnelAction::RequeueSccrq => {}
            }
        }
    }

    fn start_avps(&self, cx: &Cx<'_>, m: ControlMessage) -> ControlMessage {
        let config = cx.config;
        let (version, revision) = PROTOCOL_VERSION;
        let mut m = m
            .with(AvpEntry::mandatory(Avp::ProtocolVersion {
                version,
                revision,
            }))
            .with(AvpEntry::mandatory(Avp::HostName(
                config.host_name.as_bytes().to_vec(),
            )))
            .with(AvpEntry::mandatory(Avp::FramingCapabilities(
                config.framing_capabilities,
            )));
        if let Some(b) = config.bearer_capabilities {
            m = m.with(AvpEntry::mandatory(Avp::BearerCapabilities(b)));
        }
        m = m
            .with(AvpEntry::mandatory(Avp::AssignedTunnelId(self.local_id)))
            .with(AvpEntry::mandatory(Avp::ReceiveWindowSize(
                self.channel.config().receive_window,
            )));
        // RFC 2661 §4.4.3: Firmware Revision and Vendor Name go with the M
        // bit clear.
        if let Some(f) = config.firmware_revision {
            m = m.with(AvpEntry::optional(Avp::FirmwareRevision(f)));
        }
        if let Some(v) = &config.vendor_name {
            m = m.with(AvpEntry::optional(Avp::VendorName(v.as_bytes().to_vec())));
        }
        m
    }

    fn our_challenge(&mut self, cx: &mut Cx<'_>) -> Option<AvpEntry> {
        if !cx.config.requires_authentication_from(*self.remote.ip()) {
            return None;
        }
        let challenge = random_bytes(cx.rng, CHALLENGE_LEN);
        self.our_challenge = Some(challenge.clone());
        Some(AvpEntry::mandatory(Avp::Challenge(challenge)))
    }

    fn response_to_peer(&self, cx: &Cx<'_>, id: u8) -> Option<AvpEntry> {
        let challenge = self.peer_challenge.as_ref()?;
        let secret = cx.config.secret_for(*self.remote.ip())?;
        Some(AvpEntry::mandatory(Avp::ChallengeResponse(
            challenge_response(id, secret, challenge),
        )))
    }

    /// SCCRQ (RFC 2661 §6.1).
    fn send_sccrq(&mut self, cx: &mut Cx<'_>) {
        let mut m = self.start_avps(cx, ControlMessage::new(MessageType::Sccrq, 0, 0));
        m.avps.extend(self.our_challenge(cx));
        if let Some(tb) = self.tie_breaker {
            // RFC 2661 §4.4.3: the Tie Breaker's M bit is 0.
            m.avps.push(AvpEntry::optional(Avp::TieBreaker(tb)));
        }
        if let Some(ha) = &cx.config.ha {
            // DESIGN.md §3: M bit clear, so a peer that does not know the
            // extension ignores it (RFC 2661 §4.1).
            m.avps.push(ha_capability(ha.capability));
        }
        m.avps.extend(cx.config.sccrq_avps.iter().cloned());
        m.avps.extend(self.sccrq_avps.iter().cloned());
        self.send(cx, m);
    }

    /// SCCRP (RFC 2661 §6.2).
    fn send_sccrp(&mut self, cx: &mut Cx<'_>) {
        let mut m = self.start_avps(cx, ControlMessage::new(MessageType::Sccrp, self.peer_id, 0));
        m.avps.extend(self.response_to_peer(cx, SCCRP_ID));
        m.avps.extend(self.our_challenge(cx));
        if let Some(ha) = &cx.config.ha {
            m.avps.push(ha_capability(ha.capability));
            // Peer-LNS-Address only to a peer that advertised the
            // capability (DESIGN.md §3), still with the M bit clear.
            let peer_is_ha = self.peer.as_ref().is_some_and(|p| p.ha.is_some());
            if peer_is_ha && !ha.peer_lns_addresses.is_empty() {
                m.avps.push(AvpEntry::optional(Avp::PeerLnsAddress(
                    ha.peer_lns_addresses.clone(),
                )));
            }
        }
        m.avps.extend(cx.config.sccrp_avps.iter().cloned());
        self.send(cx, m);
    }

    /// SCCCN (RFC 2661 §6.3).
    fn send_scccn(&mut self, cx: &mut Cx<'_>) {
        let mut m = ControlMessage::new(MessageType::Scccn, self.peer_id, 0);
        m.avps.extend(self.response_to_peer(cx, SCCCN_ID));
        self.send(cx, m);
    }

    fn tunnel_open(&mut self, now: Instant, cx: &mut Cx<'_>) {
        if !self.up {
            self.up = true;
            self.setup_deadline = None;
            self.last_heard = now;
            self.hello_deadline = self.hello_every.map(|i| now + i);
            if let Some(peer) = self.peer.clone() {
                cx.events.push_back(Event::TunnelUp {
                    tunnel: self.handle,
                    remote: self.remote,
                    local_tunnel_id: self.local_id,
                    peer,
                });
            }
        }
        let waiting: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.state == SessionState::WaitTunnel)
            .map(|s| s.handle.id)
            .collect();
        for id in waiting {
            self.session_apply(now, cx, id, SessionEvent::TunnelOpen, None);
        }
    }

    fn clean_up(&mut self, now: Instant, cx: &mut Cx<'_>, reason: TunnelDownReason) {
        if self.cleaned_up {
            return;
        }
        self.cleaned_up = true;
        self.hello_deadline = None;
        // RFC 2661 §5.7: clearing the control connection clears every
        // session in it; no CDN is needed.
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            if self.sessions.get(&id).is_some_and(|s| s.awaiting_owner) {
                // Idle in the RFC's table, which has nothing to do for it
                // on tunnel down; the owner was told of it, so it hears it
                // go.
                self.forget_waiting_call(cx, id, SessionDownReason::TunnelDown);
                continue;
            }
            let teardown = (
                ResultCode::new(cdn::GENERAL_ERROR),
                SessionDownReason::TunnelDown,
            );
            self.session_apply(now, cx, id, SessionEvent::TunnelDown, Some(teardown));
        }
        cx.events.push_back(Event::TunnelDown {
            tunnel: self.handle,
            reason,
            stats: self.stats(),
        });
        if self.stop_exchanged {
            // RFC 2661 §5.7, §5.8: keep the state for a full retransmission
            // cycle to retransmit our StopCCN or acknowledge theirs again.
            self.hold_until = Some(now + self.channel.config().retransmission.full_cycle());
        } else {
            self.finished = true;
        }
    }

    // --- sessions -------------------------------------------------------

    fn new_session_handle(&self, cx: &mut Cx<'_>) -> SessionHandle {
        let id = *cx.next_session;
        *cx.next_session += 1;
        SessionHandle {
            tunnel: self.handle,
            id,
        }
    }

    /// LAC: tell the owner about the sessions whose ICCN the peer has now
    /// acknowledged.
    fn announce_acknowledged_calls(&mut self, cx: &mut Cx<'_>) {
        while let Some(&(number, key)) = self.unacknowledged_iccns.front() {
            if !self.channel.is_acknowledged(number) {
                break;
            }
            self.unacknowledged_iccns.pop_front();
            if let Some(s) = self
                .sessions
                .get_mut(&key)
                .filter(|s| s.state == SessionState::Established && !s.announced)
            {
                announce(s, cx);
            }
        }
    }

    fn insert_session(&mut self, s: Session) {
        self.by_local_sid.insert(s.local_id, s.handle.id);
        self.sessions.insert(s.handle.id, s);
    }

    /// A random, non-zero Session ID not in use in this tunnel (RFC 2661
    /// §4.4.4 leaves the choice to us; random ids make stale messages from
    /// an earlier session unlikely to hit a new one).
    fn allocate_session_id(&self, cx: &mut Cx<'_>) -> Option<u16> {
        for _ in 0..64 {
            let id = (cx.rng.next_u32() & 0xffff) as u16;
            if id != 0 && !self.by_local_sid.contains_key(&id) {
                return Some(id);
            }
        }
        (1..=u16::MAX).find(|id| !self.by_local_sid.contains_key(id))
    }

    fn on_session_message(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        message_type: MessageType,
        m: ControlMessage,
    ) {
        if self.state != TunnelState::Established {
            // RFC 2661 §5.0: calls need an established control connection.
            self.stats.session_messages_dropped += 1;
            return;
        }
        match message_type {
            MessageType::Icrq => return self.on_icrq(now, cx, &m),
            MessageType::Ocrq => {
                // We place no outgoing calls (RFC 2661 §7.5): refuse.
                if let Some(peer_sid) = m.assigned_session_id().filter(|&s| s != 0) {
                    let result = ResultCode::with_message(
                        cdn::NO_FACILITIES_PERMANENT,
                        "outgoing calls are not supported",
                    );
                    let local = self.allocate_session_id(cx).unwrap_or(0);
                    let reply = session::cdn(self.peer_id, peer_sid, local, &result);
                    self.send(cx, reply);
                    self.stats.calls_rejected += 1;
                }
                return;
            }
            _ => {}
        }
        let key = if m.session_id != 0 {
            self.by_local_sid.get(&m.session_id).copied()
        } else {
            // RFC 2661 §5.3: before the peer knows our Session ID it sends 0
            // and its Assigned Session ID identifies the session.
            m.assigned_session_id().and_then(|peer_sid| {
                self.sessions
                    .values()
                    .find(|s| s.peer_id == peer_sid && peer_sid != 0)
                    .map(|s| s.handle.id)
            })
        };
        let Some(key) = key else {
            self.stats.unknown_session += 1;
            if message_type == MessageType::Icrp {
                // RFC 2661 §7.4.2: an ICRP for no session is answered with a
                // CDN so the peer does not wait for an ICCN forever.
                if let Some(peer_sid) = m.assigned_session_id().filter(|&s| s != 0) {
                    let result = ResultCode::with_error(
                        cdn::GENERAL_ERROR,
                        error::INVALID_SESSION_ID,
                        "no such session",
                    );
                    let reply = session::cdn(self.peer_id, peer_sid, m.session_id, &result);
                    self.send(cx, reply);
                }
            }
            return;
        };
        if let Some(e) = m.unknown_mandatory() {
            // RFC 2661 §4.1: an unknown M-bit AVP in a session message
            // terminates the session.
            let result = unknown_avp_result(cdn::GENERAL_ERROR, e);
            let reason = SessionDownReason::ProtocolError(result.clone());
            self.session_apply(
                now,
                cx,
                key,
                SessionEvent::LocalClose,
                Some((result, reason)),
            );
            return;
        }
        match message_type {
            MessageType::Icrp => self.on_icrp(now, cx, key, &m),
            MessageType::Iccn => self.on_iccn(now, cx, key, &m),
            MessageType::Cdn => {
                let epoch = m.find(|a| match a {
                    Avp::OwnershipEpoch(e) => Some(*e),
                    _ => None,
                });
                if let (Some(epoch), Some(s)) = (
                    epoch,
                    self.sessions.get(&key).filter(|s| s.known_to_owner()),
                ) {
                    // HA: released after a load switchover; the session
                    // lives on elsewhere (DESIGN.md §3).
                    cx.events.push_back(Event::SessionMoved {
                        session: s.handle,
                        epoch,
                    });
                }
                let result = ResultCode::of(&m).unwrap_or_else(|| ResultCode::new(0));
                let reason = SessionDownReason::CdnReceived(result.clone());
                self.session_apply(now, cx, key, SessionEvent::Cdn, Some((result, reason)));
            }
            MessageType::Wen => {
                self.stats.wan_error_notify += 1;
                let s = self.sessions.get(&key).filter(|s| s.known_to_owner());
                if let (Some(s), Some(errors)) = (s, session::call_errors(&m)) {
                    cx.events.push_back(Event::WanError {
                        session: s.handle,
                        errors,
                    });
                }
            }
            MessageType::Sli => {
                self.stats.set_link_info += 1;
                let s = self.sessions.get(&key).filter(|s| s.known_to_owner());
                if let (Some(s), Some((send_accm, receive_accm))) = (s, session::accm(&m)) {
                    cx.events.push_back(Event::SetLinkInfo {
                        session: s.handle,
                        send_accm,
                        receive_accm,
                    });
                }
            }
            // OCRP and OCCN: we never send OCRQ.
            _ => {}
        }
    }

    /// LNS: an incoming call (RFC 2661 §7.4.2).
    fn on_icrq(&mut self, now: Instant, cx: &mut Cx<'_>, m: &ControlMessage) {
        let Some(peer_sid) = m.assigned_session_id().filter(|&s| s != 0) else {
            // Nothing to address a CDN to.
            self.stats.session_messages_dropped += 1;
            return;
        };
        // Config::max_pending_calls: a peer that opens calls and never
        // connects them (no ICCN) holds bounded state.
        let full = self.pending_calls >= cx.config.max_pending_calls;
        let local_id = if full {
            None
        } else {
            self.allocate_session_id(cx)
        };
        let Some(local_id) = local_id else {
            let why = if full {
                "too many calls waiting for ICCN"
            } else {
                "every session id is in use"
            };
            let result = ResultCode::with_error(
                cdn::NO_FACILITIES_TEMPORARY,
                error::INSUFFICIENT_RESOURCES,
                why,
            );
            let reply = session::cdn(self.peer_id, peer_sid, 0, &result);
            self.send(cx, reply);
            self.stats.calls_rejected += 1;
            return;
        };
        let handle = self.new_session_handle(cx);
        let mut s = Session {
            handle,
            local_id,
            peer_id: peer_sid,
            side: CallSide::Lns,
            state: SessionState::Idle,
            call: CallParams::default(),
            call_serial_number: 0,
            info: Default::default(),
            announced: false,
            iccn_number: None,
            awaiting_owner: false,
            told: false,
            icrp_avps: Vec::new(),
            cdn_avps: Vec::new(),
            connect_deadline: None,
        };
        s.record_icrq(m);
        let verdict = if let Some(e) = m.unknown_mandatory() {
            Err(unknown_avp_result(cdn::GENERAL_ERROR, e))
        } else if s.info.call_serial_number.is_none() {
            Err(missing_avp(cdn::GENERAL_ERROR, "Call Serial Number"))
        } else if !cx.config.accept_calls {
            Err(ResultCode::with_message(
                cdn::NO_FACILITIES_PERMANENT,
                "this endpoint does not accept calls",
            ))
        } else {
            Ok(())
        };
        let defer = verdict.is_ok()
            && cx
                .config
                .ha
                .as_ref()
                .is_some_and(|h| h.defer_recovery_calls)
            && s.info.recovery_session.is_some();
        if defer {
            // HA: the owner looks the session up in its offloaded state and
            // answers (`answer_recovery_call`). Counted as pending, so a
            // peer's flood of recovery ICRQs holds bounded state too.
            s.awaiting_owner = true;
            s.told = true;
            self.pending_calls += 1;
            cx.events.push_back(Event::RecoveryCall {
                session: s.handle,
                primary_session_id: s.info.recovery_session.unwrap_or(0),
                peer_session_id: s.peer_id,
                call: s.info.clone(),
            });
            self.insert_session(s);
            return;
        }
        if let (Ok(()), Some(wait)) = (&verdict, cx.config.defer_answer) {
            // Config::defer_answer: the owner readies itself for the LAC's
            // data before our ICRP lets the LAC connect the call (RFC 2661
            // §7.4.2), then calls answer_call. Counted as pending, so a
            // peer's flood of ICRQs holds bounded state too.
            let deadline = now + wait;
            s.awaiting_owner = true;
            s.told = true;
            s.connect_deadline = Some(deadline);
            self.held_calls.insert((deadline, handle.id));
            self.pending_calls += 1;
            cx.events.push_back(Event::CallOffered {
                session: s.handle,
                local_tunnel_id: self.local_id,
                peer_tunnel_id: self.peer_id,
                remote: self.remote,
                local_session_id: s.local_id,
                peer_session_id: s.peer_id,
                call: s.info.clone(),
            });
            self.insert_session(s);
            return;
        }
        self.insert_session(s);
        match verdict {
            Ok(()) => self.session_apply(now, cx, handle.id, SessionEvent::IcrqAcceptable, None),
            Err(result) => {
                self.stats.calls_rejected += 1;
                let reason = SessionDownReason::ProtocolError(result.clone());
                self.session_apply(
                    now,
                    cx,
                    handle.id,
                    SessionEvent::IcrqNotAcceptable,
                    Some((result, reason)),
                );
            }
        }
    }

    /// LAC: the LNS answered our ICRQ (RFC 2661 §7.4.1).
    fn on_icrp(&mut self, now: Instant, cx: &mut Cx<'_>, key: u64, m: &ControlMessage) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        match m.assigned_session_id().filter(|&id| id != 0) {
            Some(peer_sid) => {
                if s.state == SessionState::WaitReply && s.connect_deadline.is_some() {
                    // A second ICRP for a call we hold (the reliable channel
                    // delivers each message once, so the peer sent two): as
                    // out of place as one in the established state, where
                    // RFC 2661 §7.4.1 clears the call.
                    let result = ResultCode::with_error(
                        cdn::GENERAL_ERROR,
                        error::VENDOR_SPECIFIC,
                        "a second ICRP for the call",
                    );
                    let reason = SessionDownReason::ProtocolError(result.clone());
                    self.session_apply(
                        now,
                        cx,
                        key,
                        SessionEvent::IcrpNotAcceptable,
                        Some((result, reason)),
                    );
                    return;
                }
                if s.state == SessionState::WaitReply {
                    s.peer_id = peer_sid;
                    s.info.avps = m.avps.clone();
                    s.info.ownership_epoch = m.find(|a| match a {
                        Avp::OwnershipEpoch(e) => Some(*e),
                        _ => None,
                    });
                    if let Some(wait) = s.call.defer_connect {
                        // CallParams::defer_connect: the owner readies
                        // itself for the LNS's data before our ICCN invites
                        // it (RFC 2661 §7.4.1), then calls connect_call.
                        let deadline = now + wait;
                        s.connect_deadline = Some(deadline);
                        self.held_calls.insert((deadline, key));
                        cx.events.push_back(Event::CallAnswered {
                            session: s.handle,
                            local_tunnel_id: self.local_id,
                            peer_tunnel_id: self.peer_id,
                            remote: self.remote,
                            local_session_id: s.local_id,
                            peer_session_id: s.peer_id,
                            call: s.info.clone(),
                        });
                        return;
                    }
                }
                self.session_apply(now, cx, key, SessionEvent::IcrpAcceptable, None);
            }
            None => {
                let result = missing_avp(cdn::GENERAL_ERROR, "Assigned Session ID");
                let reason = SessionDownReason::ProtocolError(result.clone());
                self.session_apply(
                    now,
                    cx,
                    key,
                    SessionEvent::IcrpNotAcceptable,
                    Some((result, reason)),
                );
            }
        }
    }

    /// LNS: the LAC connected the call (RFC 2661 §7.4.2).
    fn on_iccn(&mut self, now: Instant, cx: &mut Cx<'_>, key: u64, m: &ControlMessage) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let missing = if session::tx_connect_speed(m).is_none() {
            Some("(Tx) Connect Speed")
        } else if session::framing_type(m).is_none() {
            Some("Framing Type")
        } else {
            None
        };
        match missing {
            None => {
                if s.state == SessionState::WaitConnect {
                    s.record_iccn(m);
                }
                self.session_apply(now, cx, key, SessionEvent::IccnAcceptable, None);
            }
            Some(name) => {
                let result = missing_avp(cdn::GENERAL_ERROR, name);
                let reason = SessionDownReason::ProtocolError(result.clone());
                self.session_apply(
                    now,
                    cx,
                    key,
                    SessionEvent::IccnNotAcceptable,
                    Some((result, reason)),
                );
            }
        }
    }

    /// Run a session table (RFC 2661 §7.4.1, §7.4.2) and act on it.
    fn session_apply(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        key: u64,
        event: SessionEvent,
        teardown: Option<(ResultCode, SessionDownReason)>,
    ) {
        let _ = now;
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let before = s.state;
        let transition = session_transition(s.side, before, event);
        s.state = transition.next;
        let waiting = SessionState::WaitConnect;
        if before == waiting && transition.next != waiting {
            self.pending_calls = self.pending_calls.saturating_sub(1);
        } else if before != waiting && transition.next == waiting {
            self.pending_calls += 1;
        }
        let (result, reason) = teardown.unwrap_or_else(|| {
            let result = ResultCode::with_error(
                cdn::GENERAL_ERROR,
                error::VENDOR_SPECIFIC,
                format!("{event:?} in state {before:?}"),
            );
            (result.clone(), SessionDownReason::ProtocolError(result))
        });
        let peer_tunnel = self.peer_id;
        for action in transition.actions {
            let Some(s) = self.sessions.get_mut(&key) else {
                return;
            };
            let message = match action {
                // The tunnel exists already; its tunnel-open event follows.
                SessionAction::OpenTunnel => None,
                SessionAction::SendIcrq => Some(s.icrq(peer_tunnel)),
                SessionAction::SendIcrp => Some(s.icrp(peer_tunnel)),
                SessionAction::SendIccn => {
                    s.iccn_number = Some(self.channel.next_message_number());
                    Some(s.iccn(peer_tunnel))
                }
                SessionAction::SendCdn => Some(s.cdn(peer_tunnel, &result)),
                SessionAction::Connected => {
                    // RFC 2661 §7.4.1: the LAC is established once it has
                    // sent ICCN. We tell the owner (who starts PPP at once)
                    // only when the peer has acknowledged the ICCN (§5.8: its
                    // Nr has passed the ICCN's Ns), because data messages are
                    // sent outside the control channel: with the peer's
                    // receive window full the ICCN waits in our queue, and
                    // even once sent it can be lost and retransmitted, or
                    // reordered behind a data message on UDP. "Sent" is not
                    // enough; only the acknowledgement proves the LNS has it.
                    // Before that, the LNS would drop our LCP Configure-
                    // Request (l2tpns: "ignoring ConfigReq in state
                    // Starting") and PPP would wait for its restart timer.
                    match s.iccn_number {
                        Some(n) if s.side == CallSide::Lac && !self.channel.is_acknowledged(n) => {
                            self.unacknowledged_iccns.push_back((n, key));
                        }
                        _ => announce(s, cx),
                    }
                    None
                }
                SessionAction::CleanUp => {
                    if let Some(at) = s.connect_deadline.take() {
                        self.held_calls.remove(&(at, key));
                    }
                    if s.awaiting_owner {
                        s.awaiting_owner = false;
                        self.pending_calls = self.pending_calls.saturating_sub(1);
                    }
                    // The owner knows every LAC session (it opened it) and
                    // every LNS session that came up.
                    if s.known_to_owner() {
                        cx.events.push_back(Event::SessionDown {
                            session: s.handle,
                            reason: reason.clone(),
                        });
                    }
                    let local_id = s.local_id;
                    self.by_local_sid.remove(&local_id);
                    self.sessions.remove(&key);
                    None
                }
            };
            if let Some(m) = message {
                self.send(cx, m);
            }
        }
    }
}

/// Tell the owner a session is up; from then on it may carry data.
fn announce(s: &mut Session, cx: &mut Cx<'_>) {
    s.announced = true;
    cx.events.push_back(Event::SessionUp {
        session: s.handle,
        local_session_id: s.local_id,
        peer_session_id: s.peer_id,
        call: s.info.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_response_is_md5_of_id_secret_challenge() {
        // MD5 of the bytes 02 "secret" 01 02 03 04, computed independently
        // (python3 -c "import hashlib; print(hashlib.md5(b'\x02secret\x01\x02\x03\x04').hexdigest())").
        let r = challenge_response(2, b"secret", &[1, 2, 3, 4]);
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, EXPECTED_SCCRP_RESPONSE);
        assert_ne!(r, challenge_response(3, b"secret", &[1, 2, 3, 4]));
    }

    const EXPECTED_SCCRP_RESPONSE: &str = "c94e899141855245ffc3314c4b258827";

    #[test]
    fn a_random_vector_precedes_the_first_hidden_avp() {
        struct Counter(u8);
        impl RngCore for Counter {
            fn next_u32(&mut self) -> u32 {
                u32::from(self.next_byte())
            }
            fn next_u64(&mut self) -> u64 {
                u64::from(self.next_byte())
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.iter_mut().for_each(|b| *b = self.next_byte());
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl Counter {
            fn next_byte(&mut self) -> u8 {
                self.0 = self.0.wrapping_add(1);
                self.0
            }
        }
        let mut m = ControlMessage::new(MessageType::Iccn, 1, 2)
            .with(AvpEntry::mandatory(Avp::TxConnectSpeed(1)))
            .with(AvpEntry::mandatory(Avp::ProxyAuthenName(b"user".to_vec())).hide());
        add_random_vector(&mut m, &mut Counter(0));
        assert!(matches!(m.avps[1].avp, Avp::RandomVector(ref v) if v.len() == RANDOM_VECTOR_LEN));
        assert!(m.avps[2].hidden);
        // Already covered: nothing added.
        let before = m.avps.len();
        add_random_vector(&mut m, &mut Counter(0));
        assert_eq!(m.avps.len(), before);
    }
}

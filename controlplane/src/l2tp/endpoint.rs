//! The node-level API: many tunnels on one socket, demultiplexed by Tunnel
//! ID (and, for SCCRQs, by the peer's address and Assigned Tunnel ID).

use core::cmp::Ordering;
use core::fmt;
use core::net::SocketAddrV4;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use dataplane::wire::avp;
use dataplane::wire::control::{Avp, AvpEntry, Context, ControlMessage, MessageType};
use dataplane::wire::l2tp::{HeaderRepr, Packet};
use rand_core::RngCore;

use super::tunnel::{self, Cx, DataOutcome, Source, Standing, Tunnel};
use super::{
    CallParams, Config, ConfigError, Error, Event, PeerInfo, RecoveryTunnel, ResultCode,
    SessionHandle, SessionState, Transmit, TunnelHandle, TunnelState, TunnelStats,
};
use crate::time::Instant;

/// Counters of an endpoint, beyond those of its tunnels. They only grow.
///
/// Every datagram given to [`Endpoint::handle_datagram`] is counted in
/// exactly one of: [`malformed`](Self::malformed),
/// [`malformed_control`](Self::malformed_control),
/// [`unsupported_control`](Self::unsupported_control),
/// [`unknown_tunnel`](Self::unknown_tunnel),
/// [`wrong_source`](Self::wrong_source),
/// [`sccrq_over_pending_limit`](Self::sccrq_over_pending_limit),
/// [`sccrq_over_refused_limit`](Self::sccrq_over_refused_limit),
/// [`ids_exhausted`](Self::ids_exhausted), [`ties_won`](Self::ties_won),
/// [`ties_equal`](Self::ties_equal),
/// [`control_delivered`](Self::control_delivered),
/// [`data_unknown_tunnel`](Self::data_unknown_tunnel),
/// [`data_wrong_source`](Self::data_wrong_source),
/// [`data_unknown_session`](Self::data_unknown_session) and
/// [`data_delivered`](Self::data_delivered)
/// ([`EndpointStats::accounted`] adds them up). Every drop has its own
/// counter and no drop raises an event: what comes from the network can
/// only reach the owner through a tunnel that knows the sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams given to [`Endpoint::handle_datagram`].
    pub datagrams_received: u64,
    /// Datagrams whose L2TP header did not parse (shorter than the header
    /// or its Length field, a version other than 2, a control message
    /// without the L or S bit); dropped.
    pub malformed: u64,
    /// Control messages whose header parsed but whose body did not (an AVP
    /// length out of range, no Message Type AVP first, a known AVP of the
    /// wrong size); dropped without acknowledging them. RFC 2661 §7.1 would
    /// clear the tunnel; we do not (see [`Endpoint::handle_datagram`]).
    pub malformed_control: u64,
    /// Control messages with a hidden AVP we cannot reveal (no shared
    /// secret configured, or no Random Vector before it, RFC 2661 §4.3);
    /// dropped without acknowledging them.
    pub unsupported_control: u64,
    /// Control messages for a Tunnel ID we do not have, stray messages with
    /// Tunnel ID 0 that are not an SCCRQ, and SCCRQs that are not the first
    /// message of a connection (Ns other than the initial one); dropped.
    pub unknown_tunnel: u64,
    /// Control messages carrying one of our Tunnel IDs from an address or
    /// port other than that tunnel's peer (RFC 2661 §8.1: the addresses
    /// and ports of a tunnel stay fixed); dropped, so a spoofed StopCCN or
    /// CDN cannot touch the tunnel.
    pub wrong_source: u64,
    /// SCCRQs dropped unanswered because [`Config::max_pending_tunnels`]
    /// tunnels created by peers were not established yet.
    pub sccrq_over_pending_limit: u64,
    /// SCCRQs we would refuse, dropped unanswered because
    /// [`Config::max_refused_tunnels`] refused tunnels were held.
    pub sccrq_over_refused_limit: u64,
    /// Refused tunnels freed at once instead of held after StopCCN,
    /// because [`Config::max_refused_tunnels`] were held already.
    pub refused_not_held: u64,
    /// Tunnels cleared because they were not established within
    /// [`Config::setup_timeout`].
    pub setup_timeouts: u64,
    /// Control messages handed to a tunnel (which counts what became of
    /// them: [`TunnelStats`], [`super::ChannelStats`]).
    pub control_delivered: u64,
    /// Data messages for a Tunnel ID we do not have; dropped.
    pub data_unknown_tunnel: u64,
    /// Data messages carrying one of our Tunnel IDs from an address or port
    /// other than that tunnel's peer; dropped.
    pub data_wrong_source: u64,
    /// Data messages from a tunnel's peer for a session that is not
    /// established (unknown, still being set up, or the tunnel is down);
    /// dropped.
    pub data_unknown_session: u64,
    /// Data messages handed to the owner as [`Event::Data`].
    pub data_delivered: u64,
    /// Tunnels created by a peer's SCCRQ.
    pub tunnels_accepted: u64,
    /// Tunnels we initiated.
    pub tunnels_initiated: u64,
    /// Tie breaks (RFC 2661 §4.4.3) we won: the peer's SCCRQ was discarded.
    pub ties_won: u64,
    /// Tie breaks we lost: our SCCRQ was discarded and we answered theirs.
    pub ties_lost: u64,
    /// Tie breaks with equal values: we started over.
    pub ties_equal: u64,
    /// Control messages of ours that could not be encoded (a bug, or an
    /// owner AVP that cannot be sent); dropped.
    pub encode_errors: u64,
    /// SCCRQs refused because every Tunnel ID is in use.
    pub ids_exhausted: u64,
}

impl EndpointStats {
    /// The sum of the counters that say what became of each datagram (see
    /// above): always equal to [`EndpointStats::datagrams_received`].
    pub fn accounted(&self) -> u64 {
        self.malformed
            + self.malformed_control
            + self.unsupported_control
            + self.unknown_tunnel
            + self.wrong_source
            + self.sccrq_over_pending_limit
            + self.sccrq_over_refused_limit
            + self.ids_exhausted
            + self.ties_won
            + self.ties_equal
            + self.control_delivered
            + self.data_unknown_tunnel
            + self.data_wrong_source
            + self.data_unknown_session
            + self.data_delivered
    }
}

/// An L2TP node on one UDP socket: see the [module documentation](super).
pub struct Endpoint {
    config: Config,
    rng: Box<dyn RngCore + Send>,
    tunnels: BTreeMap<TunnelHandle, Tunnel>,
    by_local_id: HashMap<u16, TunnelHandle>,
    /// Tunnels by (peer address, peer's Assigned Tunnel ID): finds the
    /// tunnel of a retransmitted SCCRQ, or of a StopCCN sent before the peer
    /// learned our Tunnel ID (both carry Tunnel ID 0).
    by_peer: HashMap<(SocketAddrV4, u16), TunnelHandle>,
    /// Every tunnel's next deadline, in order.
    timers: BTreeSet<(Instant, TunnelHandle)>,
    /// Tunnels we initiated that wait for SCCRP: the candidates for a tie
    /// break (RFC 2661 §4.4.3).
    connecting: BTreeSet<TunnelHandle>,
    /// Tunnels counted as [`Standing::Pending`] ([`Config::max_pending_tunnels`]).
    pending: usize,
    /// Tunnels counted as [`Standing::RefusedHold`]
    /// ([`Config::max_refused_tunnels`]).
    refused_held: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_tunnel: u64,
    next_session: u64,
    next_call_serial: u32,
    stats: EndpointStats,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("host_name", &self.config.host_name)
            .field("tunnels", &self.tunnels.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn encode(
    config: &Config,
    remote: SocketAddrV4,
    message: &ControlMessage,
) -> dataplane::wire::Result<Vec<u8>> {
    let ctx = Context {
        secret: config.secret_for(*remote.ip()),
        ha_vendor_id: config.ha_vendor_id,
    };
    let mut buf = vec![0; message.buffer_len()];
    let n = message.emit(&mut buf, &ctx)?;
    buf.truncate(n);
    Ok(buf)
}

/// Refuse owner AVPs that could never be sent, before they take a sequence
/// number (a message that fails to encode after that would leave a hole in
/// the Ns sequence and stall the control channel behind it): a hidden AVP
/// needs the secret, every value must encode, and every AVP must fit its
/// 10-bit Length field (RFC 2661 §4.1: at most 1023 octets with its
/// 6-octet header; a hidden value takes 2 more, §4.3), and all of them a
/// message's 16-bit Length (§3.1).
fn check_avps(
    config: &Config,
    remote: Option<SocketAddrV4>,
    avps: &[AvpEntry],
) -> Result<(), Error> {
    let secret = match remote {
        Some(r) => config.secret_for(*r.ip()),
        None => config.secret.as_deref(),
    };
    let mut scratch = Vec::new();
    // The header and the Message Type AVP the channel adds, and room for
    // the few AVPs it adds itself (challenge, response, ids).
    let mut message_len = 512;
    for entry in avps {
        if entry.hidden && (secret.is_none() || matches!(entry.avp, Avp::RandomVector(_))) {
            return Err(Error::Encode(dataplane::wire::Error::Unsupported));
        }
        scratch.clear();
        entry
            .avp
            .encode_value(&mut scratch)
            .map_err(Error::Encode)?;
        let value_len = if entry.hidden {
            avp::hidden_len(scratch.len(), 0)
        } else {
            scratch.len()
        };
        if value_len > avp::MAX_VALUE_LEN {
            return Err(Error::Encode(dataplane::wire::Error::BufferTooSmall));
        }
        message_len += avp::HEADER_LEN + value_len;
    }
    if message_len > usize::from(u16::MAX) {
        return Err(Error::Encode(dataplane::wire::Error::BufferTooSmall));
    }
    Ok(())
}

impl Endpoint {
    /// An endpoint with no tunnels. `rng` provides every random value the
    /// protocol needs (ids, challenges, tie breakers, random vectors); a
    /// simulation passes a seeded one.
    pub fn new(config: Config, rng: Box<dyn RngCore + Send>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Endpoint {
            config,
            rng,
            tunnels: BTreeMap::new(),
            by_local_id: HashMap::new(),
            by_peer: HashMap::new(),
            timers: BTreeSet::new(),
            connecting: BTreeSet::new(),
            pending: 0,
            refused_held: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_tunnel: 1,
            next_session: 1,
            next_call_serial: 1,
            stats: EndpointStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters of the endpoint itself.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Counters of a tunnel, while it exists (including its hold period
    /// after StopCCN). [`Event::TunnelDown`] carries a final copy.
    pub fn tunnel_stats(&self, tunnel: TunnelHandle) -> Option<TunnelStats> {
        self.tunnels.get(&tunnel).map(Tunnel::stats)
    }

    /// State of a tunnel; a tunnel that is down but still holding its state
    /// after StopCCN (RFC 2661 §5.7) is [`TunnelState::Idle`].
    pub fn tunnel_state(&self, tunnel: TunnelHandle) -> Option<TunnelState> {
        self.tunnels.get(&tunnel).map(|t| t.state)
    }

    /// When anything (control or data, RFC 2661 §5.5) was last heard from
    /// a tunnel's peer, once the tunnel is established; what
    /// [`Config::dead_interval`] counts from. A failure switchover replays
    /// what was sent after it (DESIGN.md §3). [`Event::TunnelDown`] carries
    /// the final value in [`TunnelStats::last_heard`], since the tunnel is
    /// gone by the time its owner reads the event.
    pub fn last_heard(&self, tunnel: TunnelHandle) -> Option<Instant> {
        self.tunnels.get(&tunnel).and_then(Tunnel::heard_since_up)
    }

    /// Our Tunnel ID and the peer's (0 until known) for a tunnel.
    pub fn tunnel_ids(&self, tunnel: TunnelHandle) -> Option<(u16, u16)> {
        self.tunnels.get(&tunnel).map(|t| (t.local_id, t.peer_id))
    }

    /// The peer's address for a tunnel.
    pub fn tunnel_remote(&self, tunnel: TunnelHandle) -> Option<SocketAddrV4> {
        self.tunnels.get(&tunnel).map(|t| t.remote)
    }

    /// State of a session, while it exists.
    pub fn session_state(&self, session: SessionHandle) -> Option<SessionState> {
        self.tunnels
            .get(&session.tunnel)
            .and_then(|t| t.session_state(session.id))
    }

    /// Our Session ID of a session and the peer's, while it exists: for
    /// an owner that must know a call's ids before it answers it (an LNS
    /// programming a fast path for an [`Event::RecoveryCall`] before its
    /// ICRP).
    pub fn session_ids(&self, session: SessionHandle) -> Option<(u16, u16)> {
        self.tunnels
            .get(&session.tunnel)
            .and_then(|t| t.session_ids(session.id))
    }

    /// Sessions of a tunnel.
    pub fn session_count(&self, tunnel: TunnelHandle) -> usize {
        self.tunnels.get(&tunnel).map_or(0, Tunnel::session_count)
    }

    /// Tunnels held, including those in their hold period after StopCCN.
    pub fn tunnel_count(&self) -> usize {
        self.tunnels.len()
    }

    /// Every tunnel held, in handle order.
    pub fn tunnels(&self) -> impl Iterator<Item = TunnelHandle> + '_ {
        self.tunnels.keys().copied()
    }

    // --- commands -------------------------------------------------------

    /// Open a tunnel to `remote` (port 1701 normally): send SCCRQ. The
    /// tunnel comes up with [`Event::TunnelUp`] or fails with
    /// [`Event::TunnelDown`].
    pub fn connect(&mut self, now: Instant, remote: SocketAddrV4) -> Result<TunnelHandle, Error> {
        self.connect_with(now, remote, Vec::new())
    }

    /// Like [`Endpoint::connect`], with extra AVPs in this tunnel's SCCRQ
    /// (after those of [`Config::sccrq_avps`]), e.g. the HA extension's
    /// Recovery-Tunnel.
    pub fn connect_with(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        sccrq_avps: Vec<AvpEntry>,
    ) -> Result<TunnelHandle, Error> {
        check_avps(&self.config, Some(remote), &sccrq_avps)?;
        let local_id = self.allocate_tunnel_id().ok_or(Error::IdsExhausted)?;
        let handle = self.insert_tunnel(now, local_id, remote, true);
        self.stats.tunnels_initiated += 1;
        self.with_tunnel(handle, |t, cx| t.connect(now, cx, sccrq_avps));
        Ok(handle)
    }

    /// LAC: open an incoming call on `tunnel` (RFC 2661 §7.4.1). If the
    /// tunnel is not up yet the ICRQ waits for it. The session comes up with
    /// [`Event::SessionUp`] or fails with [`Event::SessionDown`].
    pub fn open_session(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        call: CallParams,
    ) -> Result<SessionHandle, Error> {
        let remote = self.tunnel_remote(tunnel);
        check_avps(&self.config, remote, &call.icrq_avps)?;
        check_avps(&self.config, remote, &call.iccn_avps)?;
        self.with_tunnel(tunnel, |t, cx| t.open_session(now, cx, call))
            .unwrap_or(Err(Error::UnknownTunnel))
    }

    /// LAC: connect a call held by [`CallParams::defer_connect`]: send its
    /// ICCN now that the owner is ready for its data
    /// ([`Event::CallAnswered`](super::Event::CallAnswered) came first).
    /// [`Error::NotWaiting`] if the call is not held (never was, already
    /// connected, or cleared because the wait ran out).
    pub fn connect_call(&mut self, now: Instant, session: SessionHandle) -> Result<(), Error> {
        self.with_tunnel(session.tunnel, |t, cx| t.connect_call(now, cx, session.id))
            .unwrap_or(Err(Error::UnknownSession))
    }

    /// Close a session: CDN with `result` (a [`super::codes::cdn`] value;
    /// 3, administrative, is the usual one).
    pub fn close_session(
        &mut self,
        now: Instant,
        session: SessionHandle,
        result: ResultCode,
    ) -> Result<(), Error> {
        self.with_tunnel(session.tunnel, |t, cx| {
            t.close_session(now, cx, session.id, result)
        })
        .unwrap_or(Err(Error::UnknownSession))
    }

    /// Close a tunnel and its sessions: StopCCN with `result` (a
    /// [`super::codes::stop_ccn`] value; 1, general request, is the usual
    /// one). The tunnel keeps its state for a full retransmission cycle
    /// (RFC 2661 §5.7), then is freed.
    pub fn close_tunnel(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        result: ResultCode,
    ) -> Result<(), Error> {
        self.with_tunnel(tunnel, |t, cx| t.close(now, cx, result))
            .ok_or(Error::UnknownTunnel)
    }

    /// Send a control message the state machines do not produce (the HA
    /// extension's LSORQ, STPLRQ, ...) on an established tunnel, reliably.
    /// The Tunnel and Session IDs of the header are filled in.
    pub fn send_message(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        session: Option<SessionHandle>,
        message: ControlMessage,
    ) -> Result<(), Error> {
        check_avps(&self.config, self.tunnel_remote(tunnel), &message.avps)?;
        if session.is_some_and(|s| s.tunnel != tunnel) {
            return Err(Error::UnknownSession);
        }
        self.with_tunnel(tunnel, |t, cx| {
            t.send_message(now, cx, session.map(|s| s.id), message)
        })
        .unwrap_or(Err(Error::UnknownTunnel))
    }

    /// HA: send an HA vendor message (LSORQ, LSORS, STPLRQ, STPLRP; see
    /// [`crate::ha::message`]) reliably on an established tunnel. Refused
    /// with [`Error::NotHaCapable`] unless [`Config::ha`] is set and the peer
    /// advertised HA-Capability (DESIGN.md §3: the new messages go only to
    /// peers that advertised it). The peer's owner gets [`Event::Message`].
    pub fn send_ha_message(
        &mut self,
        now: Instant,
        tunnel: TunnelHandle,
        session: Option<SessionHandle>,
        message: ControlMessage,
    ) -> Result<(), Error> {
        check_avps(&self.config, self.tunnel_remote(tunnel), &message.avps)?;
        if session.is_some_and(|s| s.tunnel != tunnel) {
            return Err(Error::UnknownSession);
        }
        self.with_tunnel(tunnel, |t, cx| {
            t.send_ha_message(now, cx, session.map(|s| s.id), message)
        })
        .unwrap_or(Err(Error::UnknownTunnel))
    }

    /// HA, LAC: open a tunnel to a peer LNS that takes over `recovery`
    /// (the primary's tunnel): the SCCRQ carries Recovery-Tunnel, M bit
    /// clear (DESIGN.md §3, failure switchover step 2).
    pub fn connect_for_recovery(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        recovery: RecoveryTunnel,
    ) -> Result<TunnelHandle, Error> {
        self.connect_with(now, remote, vec![recovery.to_avp()])
    }

    /// LNS: answer an [`Event::CallOffered`](super::Event::CallOffered)
    /// ([`Config::defer_answer`]): `Ok(())` sends the ICRP (the session
    /// comes up with [`Event::SessionUp`](super::Event::SessionUp) when the
    /// ICCN arrives); `Err(result)` sends CDN with it and reports
    /// [`Event::SessionDown`](super::Event::SessionDown).
    /// [`Error::NotWaiting`] if the call does not wait (already answered,
    /// or cleared because the wait ran out).
    pub fn answer_call(
        &mut self,
        now: Instant,
        session: SessionHandle,
        answer: Result<(), ResultCode>,
    ) -> Result<(), Error> {
        self.with_tunnel(session.tunnel, |t, cx| {
            t.answer_call(now, cx, session.id, answer)
        })
        .unwrap_or(Err(Error::UnknownSession))
    }

    /// LNS: hold the ICRP of incoming calls from now on ([`Config::defer_answer`]),
    /// or stop (calls already waiting still wait for their answer).
    pub fn set_defer_answer(&mut self, wait: Option<core::time::Duration>) {
        self.config.defer_answer = wait;
    }

    /// HA, LNS: answer an [`Event::RecoveryCall`]: `Ok(epoch)` sends ICRP
    /// with that Ownership-Epoch (the session then comes up as any other,
    /// with [`Event::SessionUp`]); `Err(result)` sends CDN with it (a
    /// [`super::codes::cdn`] value) and reports [`Event::SessionDown`].
    pub fn answer_recovery_call(
        &mut self,
        now: Instant,
        session: SessionHandle,
        answer: Result<u32, ResultCode>,
    ) -> Result<(), Error> {
        self.with_tunnel(session.tunnel, |t, cx| {
            t.answer_recovery_call(now, cx, session.id, answer)
        })
        .unwrap_or(Err(Error::UnknownSession))
    }

    /// HA, LAC: release a session moved to a peer LNS (load switchover,
    /// make-before-break): CDN result 3 with the session's new
    /// Ownership-Epoch, so the old LNS drops it without terminating PPP
    /// (it hears [`Event::SessionMoved`] before [`Event::SessionDown`]).
    /// Only on a tunnel whose peer advertised HA-Capability.
    pub fn release_session(
        &mut self,
        now: Instant,
        session: SessionHandle,
        epoch: u32,
    ) -> Result<(), Error> {
        self.with_tunnel(session.tunnel, |t, cx| {
            t.release_session(now, cx, session.id, epoch)
        })
        .unwrap_or(Err(Error::UnknownSession))
    }

    /// What the peer said about itself in its SCCRQ or SCCRP (HA-Capability,
    /// Peer-LNS-Address, Recovery-Tunnel included), once accepted.
    pub fn peer_info(&self, tunnel: TunnelHandle) -> Option<&PeerInfo> {
        self.tunnels.get(&tunnel).and_then(Tunnel::peer)
    }

    /// Build a data message (RFC 2661 §3.1: T bit clear, no sequence
    /// numbers) carrying `payload` (a PPP frame) on an established session.
    /// Data messages are not reliable; the caller sends the datagram.
    ///
    /// Refused with [`Error::NotEstablished`] before [`Event::SessionUp`]:
    /// on the LAC that is until the LNS has acknowledged our ICCN, so a
    /// frame cannot overtake it (see [`Event::SessionUp`]).
    pub fn send_data(&mut self, session: SessionHandle, payload: &[u8]) -> Result<Transmit, Error> {
        let t = self
            .tunnels
            .get_mut(&session.tunnel)
            .ok_or(Error::UnknownSession)?;
        if t.is_closed() {
            return Err(Error::TunnelClosed);
        }
        let (peer_tunnel, peer_session) = t.data_ids(session.id)?;
        let header = HeaderRepr::data(peer_tunnel, peer_session);
        let header_len = header.buffer_len();
        let mut buf = vec![0; header_len + payload.len()];
        header
            .emit(&mut buf, payload.len())
            .map_err(Error::Encode)?;
        buf[header_len..].copy_from_slice(payload);
        Ok(Transmit {
            remote: t.remote,
            payload: buf,
        })
    }

    // --- I/O --------------------------------------------------------------

    /// A UDP datagram arrived from `remote`: an L2TP control or data message.
    /// Nothing here panics, whatever the bytes, and what cannot be used is
    /// counted ([`EndpointStats`]) and dropped without an event:
    ///
    /// * A datagram carrying one of our Tunnel IDs counts only if it comes
    ///   from that tunnel's peer, address and port (RFC 2661 §8.1: "Once the
    ///   source and destination ports and addresses are established, they
    ///   MUST remain static for the life of the tunnel"). The one exception
    ///   is the first answer to our SCCRQ, which may come from another port
    ///   of the peer's address (§8.1 again).
    /// * A control message that does not parse is dropped *without being
    ///   acknowledged*, even on an established tunnel. RFC 2661 §7.1 says an
    ///   "invalid or unrecoverable malformed control message should be
    ///   logged appropriately and the control connection cleared"; read
    ///   literally, one corrupted or forged datagram would take down every
    ///   session of the tunnel. Since it was never acknowledged, a genuine
    ///   message is retransmitted by the peer (§5.8), and a peer that only
    ///   ever sends garbage fails by its own retransmission limit or ours
    ///   (our Hellos go unanswered). Unknown AVPs with the M bit set are
    ///   still honoured as §4.1 says: those parse, and are the peer's
    ///   deliberate choice.
    /// * SCCRQs beyond [`Config::max_pending_tunnels`] (or, for one we would
    ///   refuse, [`Config::max_refused_tunnels`]) are dropped unanswered.
    pub fn handle_datagram(&mut self, now: Instant, remote: SocketAddrV4, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        let Ok(packet) = Packet::new_checked(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let tunnel_id = packet.tunnel_id();
        if !packet.is_control() {
            self.handle_data(now, remote, tunnel_id, &packet);
            return;
        }
        if tunnel_id == 0 {
            self.handle_tunnel_zero(now, remote, bytes);
            return;
        }
        let Some(h) = self.by_local_id.get(&tunnel_id).copied() else {
            self.stats.unknown_tunnel += 1;
            return;
        };
        let Some(source) = self.tunnels.get(&h).map(|t| t.source(remote)) else {
            self.stats.unknown_tunnel += 1;
            return;
        };
        if source == Source::Other {
            self.wrong_source(h);
            return;
        }
        let message = match ControlMessage::parse(bytes, &self.wire_context(remote)) {
            Ok(m) => m,
            Err(e) => {
                self.count_unparsable(e);
                if source == Source::Peer {
                    if let Some(t) = self.tunnels.get_mut(&h) {
                        t.count_malformed();
                    }
                }
                tracing::debug!(tunnel_id, %remote, %e, "control message dropped: does not parse");
                return;
            }
        };
        if source == Source::PeerNewPort
            && !matches!(
                message.message_type,
                Some(MessageType::Sccrp | MessageType::StopCcn)
            )
        {
            self.wrong_source(h);
            return;
        }
        self.stats.control_delivered += 1;
        self.with_tunnel(h, |t, cx| t.handle_control(now, cx, remote, message));
    }

    /// The codec's context for a datagram from `remote`: the secret of
    /// that peer (RFC 2661 §4.3: hidden AVPs are hidden with the tunnel's
    /// secret).
    fn wire_context(&self, remote: SocketAddrV4) -> Context<'_> {
        Context {
            secret: self.config.secret_for(*remote.ip()),
            ha_vendor_id: self.config.ha_vendor_id,
        }
    }

    fn count_unparsable(&mut self, e: dataplane::wire::Error) {
        match e {
            dataplane::wire::Error::Unsupported => self.stats.unsupported_control += 1,
            _ => self.stats.malformed_control += 1,
        }
    }

    #[cold]
    fn wrong_source(&mut self, h: TunnelHandle) {
        self.stats.wrong_source += 1;
        if let Some(t) = self.tunnels.get_mut(&h) {
            t.count_wrong_source();
        }
    }

    /// A data message (RFC 2661 §3.1, T bit clear).
    fn handle_data(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        tunnel_id: u16,
        packet: &Packet<&[u8]>,
    ) {
        let Some(h) = self.by_local_id.get(&tunnel_id).copied() else {
            self.stats.data_unknown_tunnel += 1;
            return;
        };
        match self.tunnels.get_mut(&h) {
            Some(t) if t.source(remote) == Source::Peer => {}
            Some(t) => {
                t.count_wrong_source();
                self.stats.data_wrong_source += 1;
                return;
            }
            None => {
                self.stats.data_unknown_tunnel += 1;
                return;
            }
        }
        let session_id = packet.session_id();
        let payload = packet.payload();
        let outcome = self.with_tunnel(h, |t, cx| t.handle_data(now, cx, session_id, payload));
        match outcome {
            Some(DataOutcome::Delivered) => self.stats.data_delivered += 1,
            Some(DataOutcome::UnknownSession) => self.stats.data_unknown_session += 1,
            None => self.stats.data_unknown_tunnel += 1,
        }
    }

    /// A control message with Tunnel ID 0 (RFC 2661 §5.3): an SCCRQ, or a
    /// message from a peer that has not learned our Tunnel ID; its Assigned
    /// Tunnel ID and its source say which tunnel.
    fn handle_tunnel_zero(&mut self, now: Instant, remote: SocketAddrV4, bytes: &[u8]) {
        let message = match ControlMessage::parse(bytes, &self.wire_context(remote)) {
            Ok(m) => m,
            Err(e) => {
                self.count_unparsable(e);
                return;
            }
        };
        // Indexed by the peer's address and port, so only the peer finds its
        // tunnel this way.
        let known = message
            .assigned_tunnel_id()
            .and_then(|id| self.by_peer.get(&(remote, id)).copied());
        if let Some(h) = known {
            self.stats.control_delivered += 1;
            self.with_tunnel(h, |t, cx| t.handle_control(now, cx, remote, message));
            return;
        }
        if message.message_type != Some(MessageType::Sccrq) {
            self.stats.unknown_tunnel += 1;
            return;
        }
        self.new_sccrq(now, remote, message);
    }

    /// An SCCRQ no tunnel knows: a new tunnel, or a tie (RFC 2661 §4.4.3).
    fn new_sccrq(&mut self, now: Instant, remote: SocketAddrV4, sccrq: ControlMessage) {
        if sccrq.ns != self.config.initial_sequence {
            // Not the first message of a connection: nothing to answer.
            self.stats.unknown_tunnel += 1;
            return;
        }
        let theirs = sccrq.find(|a| match a {
            Avp::TieBreaker(v) => Some(*v),
            _ => None,
        });
        // A tie: we sent an SCCRQ to the same peer and it is unanswered, and
        // at least one side asked for a single tunnel. Only the tunnels we
        // are connecting are candidates, so a flood of SCCRQs costs no scan
        // of every tunnel.
        let tie = self
            .connecting
            .iter()
            .filter_map(|h| self.tunnels.get(h))
            .find(|t| t.remote.ip() == remote.ip() && (t.tie_breaker.is_some() || theirs.is_some()))
            .map(|t| (t.handle, t.tie_breaker));
        if let Some((h, ours)) = tie {
            // "The lower value wins"; a side without a tie breaker loses to
            // one with it.
            let outcome = match (ours, theirs) {
                (Some(o), Some(t)) => o.cmp(&t),
                (Some(_), None) => Ordering::Less,
                (None, _) => Ordering::Greater,
            };
            match outcome {
                Ordering::Less => {
                    // The loser discards its connection; ours stands.
                    self.stats.ties_won += 1;
                }
                Ordering::Greater => {
                    self.stats.ties_lost += 1;
                    self.stats.control_delivered += 1;
                    self.with_tunnel(h, |t, cx| t.lose_tie(now, cx, remote, sccrq));
                }
                Ordering::Equal => {
                    // Both sides discard theirs and start over.
                    self.stats.ties_equal += 1;
                    self.with_tunnel(h, |t, cx| t.restart(now, cx));
                }
            }
            return;
        }
        // Bounded state against floods of SCCRQs (most likely from spoofed
        // addresses, which never see our answer): beyond the limits they are
        // not answered at all, so we do not reflect traffic either.
        if tunnel::refuses_sccrq(&self.config, remote, &sccrq) {
            if self.refused_held >= self.config.max_refused_tunnels {
                self.stats.sccrq_over_refused_limit += 1;
                return;
            }
        } else if self.pending >= self.config.max_pending_tunnels {
            self.stats.sccrq_over_pending_limit += 1;
            return;
        }
        let Some(local_id) = self.allocate_tunnel_id() else {
            self.stats.ids_exhausted += 1;
            return;
        };
        let handle = self.insert_tunnel(now, local_id, remote, false);
        self.stats.tunnels_accepted += 1;
        self.stats.control_delivered += 1;
        self.with_tunnel(handle, |t, cx| t.handle_control(now, cx, remote, sccrq));
    }

    /// The host at `remote` answered a datagram we sent it with ICMP port
    /// (or protocol) unreachable; `refused` is the start of that datagram
    /// as the ICMP message quoted it. Each established tunnel to that
    /// address and port sends a Hello and counts its peer dead unless it
    /// hears from it within [`Config::unreachable_timeout`], or at once if
    /// the refused datagram is one of its unacknowledged control messages
    /// (ignored when `None`; see [`Tunnel::handle_unreachable`]).
    pub fn handle_unreachable(&mut self, now: Instant, remote: SocketAddrV4, refused: &[u8]) {
        if self.config.unreachable_timeout.is_none() {
            return;
        }
        // A quote cut off after the header still names the tunnel and Ns.
        let quoted = Packet::new_unchecked(refused);
        let control = match quoted.check_header_len() {
            Ok(_) if quoted.is_control() => quoted.ns().map(|ns| (quoted.tunnel_id(), ns)),
            _ => None,
        };
        let hit: Vec<TunnelHandle> = self
            .tunnels
            .iter()
            .filter(|(_, t)| t.remote == remote)
            .map(|(&h, _)| h)
            .collect();
        for h in hit {
            self.with_tunnel(h, |t, cx| {
                let ns = control.and_then(|(id, ns)| (id == t.peer_id).then_some(ns));
                t.handle_unreachable(now, cx, ns);
            });
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let _ = now;
        self.transmits.pop_front()
    }

    /// When to call [`Endpoint::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Run the timers that are due: retransmissions, delayed
    /// acknowledgements, Hellos, the end of hold periods.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TunnelHandle> = self
            .timers
            .iter()
            .take_while(|&&(at, _)| at <= now)
            .map(|&(_, h)| h)
            .collect();
        for h in due {
            self.with_tunnel(h, |t, cx| t.handle_timeout(now, cx));
        }
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // --- internals ------------------------------------------------------

    /// A random, non-zero Tunnel ID not in use (RFC 2661 §4.4.3 leaves the
    /// choice to us).
    fn allocate_tunnel_id(&mut self) -> Option<u16> {
        for _ in 0..64 {
            let id = (self.rng.next_u32() & 0xffff) as u16;
            if id != 0 && !self.by_local_id.contains_key(&id) {
                return Some(id);
            }
        }
        (1..=u16::MAX).find(|id| !self.by_local_id.contains_key(id))
    }

    fn insert_tunnel(
        &mut self,
        now: Instant,
        local_id: u16,
        remote: SocketAddrV4,
        initiator: bool,
    ) -> TunnelHandle {
        let handle = TunnelHandle(self.next_tunnel);
        self.next_tunnel += 1;
        self.by_local_id.insert(local_id, handle);
        self.tunnels.insert(
            handle,
            Tunnel::new(now, handle, local_id, remote, initiator, &self.config),
        );
        handle
    }

    /// Run `f` on a tunnel, then collect what it has to send, reschedule it
    /// and free it if it is finished.
    fn with_tunnel<R>(
        &mut self,
        handle: TunnelHandle,
        f: impl FnOnce(&mut Tunnel, &mut Cx<'_>) -> R,
    ) -> Option<R> {
        let tunnel = self.tunnels.get_mut(&handle)?;
        let mut cx = Cx {
            config: &self.config,
            rng: &mut *self.rng,
            events: &mut self.events,
            next_session: &mut self.next_session,
            next_call_serial: &mut self.next_call_serial,
            stats: &mut self.stats,
        };
        let r = f(tunnel, &mut cx);
        self.after(handle);
        Some(r)
    }

    fn after(&mut self, handle: TunnelHandle) {
        let Some(t) = self.tunnels.get_mut(&handle) else {
            return;
        };
        while let Some(m) = t.poll_transmit() {
            match encode(&self.config, t.remote, &m) {
                Ok(payload) => self.transmits.push_back(Transmit {
                    remote: t.remote,
                    payload,
                }),
                Err(e) => {
                    self.stats.encode_errors += 1;
                    tracing::error!(message_type = ?m.message_type, %e, "cannot encode a control message");
                }
            }
        }
        let key = (t.peer_id != 0).then_some((t.remote, t.peer_id));
        if t.indexed_as != key {
            if let Some(old) = t.indexed_as.take() {
                if self.by_peer.get(&old) == Some(&handle) {
                    self.by_peer.remove(&old);
                }
            }
            if let Some(k) = key {
                self.by_peer.insert(k, handle);
            }
            t.indexed_as = key;
        }
        let mut standing = t.standing();
        if standing != t.counted_as {
            if standing == Standing::RefusedHold
                && self.refused_held >= self.config.max_refused_tunnels
            {
                // At the limit: what the tunnel had to say went out once
                // above; its hold period (RFC 2661 §5.7) is skipped.
                t.finish_now();
                standing = Standing::Other;
                self.stats.refused_not_held += 1;
            }
            match t.counted_as {
                Standing::Connecting => {
                    self.connecting.remove(&handle);
                }
                Standing::Pending => self.pending = self.pending.saturating_sub(1),
                Standing::RefusedHold => self.refused_held = self.refused_held.saturating_sub(1),
                Standing::Other => {}
            }
            match standing {
                Standing::Connecting => {
                    self.connecting.insert(handle);
                }
                Standing::Pending => self.pending += 1,
                Standing::RefusedHold => self.refused_held += 1,
                Standing::Other => {}
            }
            t.counted_as = standing;
        }
        let next = t.poll_timeout();
        if t.scheduled != next {
            if let Some(old) = t.scheduled {
                self.timers.remove(&(old, handle));
            }
            if let Some(at) = next {
                self.timers.insert((at, handle));
            }
            t.scheduled = next;
        }
        if t.is_finished() {
            if let Some(old) = t.scheduled.take() {
                self.timers.remove(&(old, handle));
            }
            if let Some(k) = t.indexed_as.take() {
                if self.by_peer.get(&k) == Some(&handle) {
                    self.by_peer.remove(&k);
                }
            }
            let local_id = t.local_id;
            self.by_local_id.remove(&local_id);
            self.tunnels.remove(&handle);
        }
    }
}

//! The node-level API: many tunnels on one socket, demultiplexed by Tunnel
//! ID (and, for SCCRQs, by the peer's address and Assigned Tunnel ID).

use core::cmp::Ordering;
use core::fmt;
use core::net::SocketAddrV4;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use dataplane::wire::control::{Avp, AvpEntry, Context, ControlMessage, MessageType};
use dataplane::wire::l2tp::{HeaderRepr, Packet};
use rand_core::RngCore;

use super::codes::{error, stop_ccn};
use super::tunnel::{Cx, Tunnel};
use super::{
    CallParams, Config, ConfigError, Error, Event, ResultCode, SessionHandle, SessionState,
    Transmit, TunnelHandle, TunnelState, TunnelStats,
};
use crate::time::Instant;

/// Counters of an endpoint, beyond those of its tunnels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams given to [`Endpoint::handle_datagram`].
    pub datagrams_received: u64,
    /// Datagrams that did not parse as L2TP.
    pub malformed: u64,
    /// Messages for a Tunnel ID we do not have (or a stray message with
    /// Tunnel ID 0 that is not an SCCRQ); dropped.
    pub unknown_tunnel: u64,
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

fn encode(config: &Config, message: &ControlMessage) -> dataplane::wire::Result<Vec<u8>> {
    let ctx = Context {
        secret: config.secret.as_deref(),
        ha_vendor_id: config.ha_vendor_id,
    };
    let mut buf = vec![0; message.buffer_len()];
    let n = message.emit(&mut buf, &ctx)?;
    buf.truncate(n);
    Ok(buf)
}

/// Refuse owner AVPs that could never be sent, before they take a sequence
/// number: a hidden AVP needs the secret, and every value must encode.
fn check_avps(config: &Config, avps: &[AvpEntry]) -> Result<(), Error> {
    let mut scratch = Vec::new();
    for entry in avps {
        if entry.hidden && (config.secret.is_none() || matches!(entry.avp, Avp::RandomVector(_))) {
            return Err(Error::Encode(dataplane::wire::Error::Unsupported));
        }
        scratch.clear();
        entry
            .avp
            .encode_value(&mut scratch)
            .map_err(Error::Encode)?;
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
        check_avps(&self.config, &sccrq_avps)?;
        let local_id = self.allocate_tunnel_id().ok_or(Error::IdsExhausted)?;
        let handle = self.insert_tunnel(local_id, remote, true);
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
        check_avps(&self.config, &call.icrq_avps)?;
        check_avps(&self.config, &call.iccn_avps)?;
        self.with_tunnel(tunnel, |t, cx| t.open_session(now, cx, call))
            .unwrap_or(Err(Error::UnknownTunnel))
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
        check_avps(&self.config, &message.avps)?;
        if session.is_some_and(|s| s.tunnel != tunnel) {
            return Err(Error::UnknownSession);
        }
        self.with_tunnel(tunnel, |t, cx| {
            t.send_message(now, cx, session.map(|s| s.id), message)
        })
        .unwrap_or(Err(Error::UnknownTunnel))
    }

    /// Build a data message (RFC 2661 §3.1: T bit clear, no sequence
    /// numbers) carrying `payload` (a PPP frame) on an established session.
    /// Data messages are not reliable; the caller sends the datagram.
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
    /// Anything malformed is counted and dropped (or, for a control message
    /// of a known tunnel, clears it: RFC 2661 §7.1); nothing here panics.
    pub fn handle_datagram(&mut self, now: Instant, remote: SocketAddrV4, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        let Ok(packet) = Packet::new_checked(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let tunnel_id = packet.tunnel_id();
        if !packet.is_control() {
            let session_id = packet.session_id();
            match self.by_local_id.get(&tunnel_id).copied() {
                Some(h) => {
                    let payload = packet.payload();
                    self.with_tunnel(h, |t, cx| t.handle_data(now, cx, session_id, payload));
                }
                None => self.stats.unknown_tunnel += 1,
            }
            return;
        }
        let ctx = Context {
            secret: self.config.secret.as_deref(),
            ha_vendor_id: self.config.ha_vendor_id,
        };
        let message = match ControlMessage::parse(bytes, &ctx) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                self.malformed_control(now, tunnel_id, e);
                return;
            }
        };
        if tunnel_id != 0 {
            match self.by_local_id.get(&tunnel_id).copied() {
                Some(h) => {
                    self.with_tunnel(h, |t, cx| t.handle_control(now, cx, remote, message));
                }
                None => self.stats.unknown_tunnel += 1,
            }
            return;
        }
        // Tunnel ID 0 (RFC 2661 §5.3): an SCCRQ, or a message from a peer
        // that has not learned our Tunnel ID; its Assigned Tunnel ID says
        // which tunnel.
        let known = message
            .assigned_tunnel_id()
            .and_then(|id| self.by_peer.get(&(remote, id)).copied());
        if let Some(h) = known {
            self.with_tunnel(h, |t, cx| t.handle_control(now, cx, remote, message));
            return;
        }
        if message.message_type != Some(MessageType::Sccrq) {
            self.stats.unknown_tunnel += 1;
            return;
        }
        self.new_sccrq(now, remote, message);
    }

    /// RFC 2661 §7.1: "Receipt of an invalid or unrecoverable malformed
    /// control message should be logged appropriately and the control
    /// connection cleared". A truncated datagram may be damage in transit:
    /// it is only dropped, and the peer retransmits.
    fn malformed_control(&mut self, now: Instant, tunnel_id: u16, e: dataplane::wire::Error) {
        use dataplane::wire::Error as W;
        let error = match e {
            W::Truncated | W::BufferTooSmall => return,
            W::Malformed => error::BAD_LENGTH,
            W::Unsupported => error::VENDOR_SPECIFIC,
        };
        let Some(h) = self.by_local_id.get(&tunnel_id).copied() else {
            return;
        };
        tracing::warn!(tunnel_id, %e, "malformed control message: clearing the tunnel");
        let result = ResultCode::with_error(
            stop_ccn::GENERAL_ERROR,
            error,
            format!("malformed control message: {e}"),
        );
        self.with_tunnel(h, |t, cx| t.abort(now, cx, result));
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
        // at least one side asked for a single tunnel.
        let tie = self
            .tunnels
            .values()
            .find(|t| {
                t.initiator
                    && t.state == TunnelState::WaitCtlReply
                    && !t.is_closed()
                    && t.remote.ip() == remote.ip()
                    && (t.tie_breaker.is_some() || theirs.is_some())
            })
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
        let Some(local_id) = self.allocate_tunnel_id() else {
            self.stats.ids_exhausted += 1;
            return;
        };
        let handle = self.insert_tunnel(local_id, remote, false);
        self.stats.tunnels_accepted += 1;
        self.with_tunnel(handle, |t, cx| t.handle_control(now, cx, remote, sccrq));
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
        local_id: u16,
        remote: SocketAddrV4,
        initiator: bool,
    ) -> TunnelHandle {
        let handle = TunnelHandle(self.next_tunnel);
        self.next_tunnel += 1;
        self.by_local_id.insert(local_id, handle);
        self.tunnels.insert(
            handle,
            Tunnel::new(handle, local_id, remote, initiator, &self.config),
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
            match encode(&self.config, &m) {
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

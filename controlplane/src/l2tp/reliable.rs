//! Reliable delivery of control messages (RFC 2661 §5.8, Appendix B).
//!
//! One [`ControlChannel`] per tunnel. It numbers our messages (Ns), keeps
//! them until the peer acknowledges them (its Nr), retransmits them with an
//! exponential backoff, and limits how many are unacknowledged at once to the
//! peer's receive window. On the receive side it hands messages up in Ns
//! order exactly once, holds those that arrive early (within our receive
//! window), drops duplicates and acknowledges everything it accepts, either
//! piggybacked on a message of ours or with a ZLB after a short delay.
//!
//! It knows nothing about message types: the tunnel decides what to send and
//! what a delivered message means. It works on typed
//! [`ControlMessage`]s; the endpoint encodes them.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use dataplane::wire::control::ControlMessage;

use crate::time::Instant;

/// Half the sequence space: RFC 2661 §5.8 compares Ns and Nr modulo 2^16,
/// so `a` is before `b` when `b - a` (wrapping) is in `1..2^15`.
const HALF: u16 = 0x8000;

/// `a` comes before `b` in sequence-number order, modulo 2^16 (RFC 2661
/// §5.8: "sequence numbers ... wrap to 0 after 65535").
pub fn seq_before(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < HALF
}

/// The retransmission schedule (RFC 2661 §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmission {
    /// Timeout after the first transmission. RFC 2661 §5.8 recommends 1 s.
    pub initial: Duration,
    /// Each retransmission doubles the timeout up to this cap. RFC 2661 §5.8:
    /// the cap "MUST be no less than 8 seconds"; we allow less so that a
    /// deployment can choose fast failure detection knowingly.
    pub cap: Duration,
    /// Retransmissions of one message before the tunnel is given up. RFC 2661
    /// §5.8: "a recommended default is 5, but SHOULD be configurable".
    pub max_retries: u32,
}

impl Default for Retransmission {
    fn default() -> Self {
        Retransmission {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(8),
            max_retries: 5,
        }
    }
}

impl Retransmission {
    /// The timeout that follows transmission number `attempt` (0 is the
    /// first transmission): `initial * 2^attempt`, capped.
    pub fn timeout(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// From the first transmission of a message until the channel gives up on
    /// it: the sum of every timeout. With the defaults, 1+2+4+8+8+8 = 31 s,
    /// the "full retransmission cycle" of RFC 2661 §5.7 and §5.8 that a
    /// closing tunnel keeps its state for.
    pub fn full_cycle(&self) -> Duration {
        (0..=self.max_retries).fold(Duration::ZERO, |acc, attempt| {
            acc.saturating_add(self.timeout(attempt))
        })
    }
}

/// How a control channel behaves; the per-tunnel part of the endpoint's
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Our receive window: how many messages past the next expected one we
    /// hold when they arrive out of order. We advertise it to the peer in the
    /// Receive Window Size AVP (RFC 2661 §4.4.3, §5.8).
    pub receive_window: u16,
    /// The retransmission schedule.
    pub retransmission: Retransmission,
    /// How long an acknowledgement may wait for a message of ours to carry
    /// it before it goes out as a ZLB (RFC 2661 §5.8). Must be well under
    /// the peer's retransmission timeout.
    pub ack_delay: Duration,
    /// The Ns of our first message and the Ns we expect first. RFC 2661 §5.8
    /// says 0; anything else works only if the peer starts there too, which
    /// only tests arrange (to exercise the wrap at 65535).
    pub initial_sequence: u16,
    /// Slow start and congestion avoidance (RFC 2661 Appendix A): open the
    /// sending window one message at a time up to the peer's window, and
    /// close it on a retransmission. Off, the peer's window is used at once.
    pub slow_start: bool,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            receive_window: 16,
            retransmission: Retransmission::default(),
            ack_delay: Duration::from_millis(50),
            initial_sequence: 0,
            slow_start: true,
        }
    }
}

/// The window a peer gets until it advertises one: RFC 2661 §4.4.3, "If
/// absent, the peer must assume a window size of 4".
pub const DEFAULT_PEER_RECEIVE_WINDOW: u16 = 4;

/// The largest window we use in either direction: sequence comparisons are
/// only meaningful over half the sequence space.
const MAX_WINDOW: u16 = HALF - 1;

/// How many of our messages may wait for room in the peer's window before we
/// stop taking new messages from the peer. Most messages we send answer one
/// of the peer's (ICRP for ICRQ, CDN for a refused call); a peer that keeps
/// sending and never acknowledges would otherwise grow this queue without
/// bound. Past the limit its new messages are dropped unacknowledged, like
/// those beyond our receive window, and it retransmits them once its
/// acknowledgements have let ours through: flow control, not an error. Large
/// enough that a burst of calls from an honest peer (thousands of ICRQs after
/// a failover) only slows down.
pub const MAX_WAITING: usize = 4096;

/// Duplicate ZLBs (acknowledging nothing new while messages of ours are
/// unacknowledged) after which the oldest unacknowledged message is
/// retransmitted at once instead of at its timeout.
///
/// An extension beyond RFC 2661 §5.8, by analogy with TCP's fast retransmit
/// (RFC 5681 §3.2): our receive side sends a ZLB at once for every message
/// it holds out of order, so a peer like us that lost one message among many
/// repeats the same Nr. It interoperates with any peer: a retransmission is
/// always allowed (§5.8), and a peer that never sends duplicate ZLBs just
/// never triggers it. Three, like TCP, so that a little reordering does not.
pub const FAST_RETRANSMIT_DUPLICATES: u8 = 3;

/// Counters of one control channel. They only ever grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Our control messages sent for the first time (ZLBs not included).
    pub sent: u64,
    /// Retransmissions of our control messages.
    pub retransmitted: u64,
    /// ZLB acknowledgements we sent.
    pub zlb_sent: u64,
    /// Our control messages the peer acknowledged.
    pub acked: u64,
    /// Times a message had to wait because the peer's window was full.
    pub window_full: u64,
    /// Control messages (not ZLBs) that arrived, whatever became of them.
    pub received: u64,
    /// ZLBs that arrived.
    pub zlb_received: u64,
    /// Messages handed up in order (each Ns once).
    pub delivered: u64,
    /// Arrivals whose Ns had already been received (or was already held).
    pub duplicates: u64,
    /// Messages that arrived early and were held for in-order delivery.
    pub out_of_order_held: u64,
    /// Messages that arrived too far ahead (past our receive window) and
    /// were dropped.
    pub out_of_window_dropped: u64,
    /// Messages dropped unacknowledged because [`MAX_WAITING`] of ours were
    /// waiting for the peer's window (the peer does not acknowledge).
    pub backpressure_dropped: u64,
    /// Arrivals whose Nr acknowledged messages we never sent; their
    /// acknowledgement was ignored.
    pub invalid_nr: u64,
    /// Retransmissions sent early because the peer's duplicate ZLBs said a
    /// message was missing (see [`FAST_RETRANSMIT_DUPLICATES`]); also
    /// counted in `retransmitted`.
    pub fast_retransmitted: u64,
}

/// A message of ours that the peer has not acknowledged yet.
#[derive(Debug, Clone)]
struct InFlight {
    message: ControlMessage,
    /// Retransmissions so far.
    retries: u32,
    deadline: Instant,
    /// Already retransmitted early on duplicate ZLBs; once per message, so
    /// that a stream of duplicates cannot make us flood the peer.
    fast_retransmitted: bool,
}

/// What became of one arriving control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A ZLB: only its Nr mattered.
    Zlb,
    /// The next expected message; it and any held ones that follow it were
    /// delivered.
    InOrder,
    /// Early but within our window: held until the gap fills.
    Held,
    /// Already received: acknowledged again and dropped.
    Duplicate,
    /// Too far ahead: dropped.
    OutOfWindow,
    /// New, but too many of our messages wait for the peer's window
    /// ([`MAX_WAITING`]): dropped unacknowledged.
    Backpressure,
}

/// The reliable-delivery state of one tunnel (RFC 2661 §5.8).
#[derive(Debug, Clone)]
pub struct ControlChannel {
    config: ChannelConfig,
    /// The peer's Receive Window Size.
    peer_window: u16,
    /// Congestion window (RFC 2661 Appendix A): how many messages may be
    /// unacknowledged, never more than `peer_window`.
    cwnd: u16,
    /// Slow-start threshold (Appendix A).
    ssthresh: u16,
    /// Acknowledgements counted towards the next congestion-avoidance step.
    avoidance_acks: u16,
    /// Tunnel ID to put in the ZLBs we send (the peer's, 0 until known).
    peer_tunnel_id: u16,
    /// Ns of the next new message.
    next_ns: u16,
    /// Sent, not acknowledged, in Ns order: `in_flight[i].message.ns ==
    /// next_ns - in_flight.len() + i`.
    in_flight: VecDeque<InFlight>,
    /// Waiting for room in the peer's window.
    waiting: VecDeque<ControlMessage>,
    /// Ns we expect next from the peer (the Nr we send).
    next_nr: u16,
    /// Early arrivals by Ns.
    held: BTreeMap<u16, ControlMessage>,
    /// When the pending acknowledgement goes out as a ZLB.
    ack_deadline: Option<Instant>,
    /// The Nr we last put on the wire: `next_nr - last_sent_nr` messages
    /// are received and not yet acknowledged.
    last_sent_nr: u16,
    /// ZLBs in a row whose Nr acknowledged nothing new while messages of
    /// ours were unacknowledged.
    duplicate_zlbs: u8,
    /// Ready to transmit, Ns and Nr filled in.
    outbox: VecDeque<ControlMessage>,
    failed: bool,
    stats: ChannelStats,
}

impl ControlChannel {
    /// A channel with nothing sent or received yet.
    pub fn new(config: ChannelConfig) -> Self {
        ControlChannel {
            config: ChannelConfig {
                receive_window: config.receive_window.clamp(1, MAX_WINDOW),
                ..config
            },
            peer_window: DEFAULT_PEER_RECEIVE_WINDOW,
            // Appendix A: the window starts at one message; SSTHRESH starts
            // at the peer's receive window.
            cwnd: if config.slow_start {
                1
            } else {
                DEFAULT_PEER_RECEIVE_WINDOW
            },
            ssthresh: DEFAULT_PEER_RECEIVE_WINDOW,
            avoidance_acks: 0,
            peer_tunnel_id: 0,
            next_ns: config.initial_sequence,
            in_flight: VecDeque::new(),
            waiting: VecDeque::new(),
            next_nr: config.initial_sequence,
            held: BTreeMap::new(),
            ack_deadline: None,
            last_sent_nr: config.initial_sequence,
            duplicate_zlbs: 0,
            outbox: VecDeque::new(),
            failed: false,
            stats: ChannelStats::default(),
        }
    }

    /// The configuration (with the receive window clamped to a usable range).
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Set the peer's receive window from its Receive Window Size AVP (RFC
    /// 2661 §4.4.3: how many control messages the peer can take before it
    /// acknowledges). The AVP is 16 bits of anything: 0 would mean we may
    /// never send, so we use 1 and the channel still makes progress; past
    /// half the sequence space Ns comparisons (§5.8) stop being meaningful,
    /// so we use at most 32767.
    pub fn set_peer_window(&mut self, window: u16) {
        self.peer_window = window.clamp(1, MAX_WINDOW);
        self.ssthresh = self.peer_window;
        self.cwnd = if self.config.slow_start {
            self.cwnd.min(self.peer_window)
        } else {
            self.peer_window
        };
    }

    /// The peer's receive window in use.
    pub fn peer_window(&self) -> u16 {
        self.peer_window
    }

    /// How many messages may be unacknowledged now: the congestion window
    /// (RFC 2661 Appendix A), never more than the peer's receive window.
    pub fn send_window(&self) -> u16 {
        self.cwnd.min(self.peer_window)
    }

    /// Set the Tunnel ID our ZLBs carry (the peer's Assigned Tunnel ID).
    pub fn set_peer_tunnel_id(&mut self, id: u16) {
        self.peer_tunnel_id = id;
    }

    /// Counters.
    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    /// Ns of the next new message.
    pub fn next_ns(&self) -> u16 {
        self.next_ns
    }

    /// The Nr we send: the Ns we expect next.
    pub fn next_nr(&self) -> u16 {
        self.next_nr
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the message with this Ns is sent and not yet acknowledged.
    pub fn is_in_flight(&self, ns: u16) -> bool {
        self.in_flight.iter().any(|f| f.message.ns == ns)
    }

    /// Messages waiting for room in the peer's window.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Nothing of ours is unacknowledged or waiting.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty()
    }

    /// A message exhausted its retransmissions (RFC 2661 §5.8): the peer is
    /// gone and the tunnel must be cleared. A failed channel does nothing
    /// more.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Queue a message. Its Ns and Nr are filled in when it is sent, which
    /// is at the next [`ControlChannel::service`] if the peer's window has
    /// room.
    pub fn send(&mut self, message: ControlMessage) {
        if self.failed {
            return;
        }
        self.waiting.push_back(message);
    }

    /// The number the next message given to [`ControlChannel::send`] will
    /// have. Messages are numbered 0, 1, 2, ... in the order they are
    /// queued, which is the order of their Ns and so the order in which the
    /// peer acknowledges them (RFC 2661 §5.8); unlike Ns, the number does
    /// not wrap. Ask [`ControlChannel::is_acknowledged`] about it later.
    ///
    /// Messages dropped by [`ControlChannel::discard_waiting`] were never
    /// sent, and their numbers go to the messages queued after them.
    pub fn next_message_number(&self) -> u64 {
        self.stats.sent + self.waiting.len() as u64
    }

    /// The peer has acknowledged the message numbered `number` (see
    /// [`ControlChannel::next_message_number`]): its Nr has passed that
    /// message's Ns, whether in a ZLB or piggybacked on a message of its own.
    pub fn is_acknowledged(&self, number: u64) -> bool {
        number < self.stats.acked
    }

    /// Forget the messages that are still waiting for the window (not those
    /// already sent). A tunnel that is being stopped has no use for them.
    pub fn discard_waiting(&mut self) {
        self.waiting.clear();
    }

    /// Take in one arriving control message for this tunnel. Returns what
    /// became of it and, in Ns order, the messages that are now deliverable.
    pub fn on_receive(
        &mut self,
        now: Instant,
        message: ControlMessage,
    ) -> (Arrival, Vec<ControlMessage>) {
        let mut delivered = Vec::new();
        if self.failed {
            return (Arrival::Zlb, delivered);
        }
        let advanced = self.process_nr(message.nr);
        if message.is_zlb() {
            self.stats.zlb_received += 1;
            self.count_duplicate_zlb(advanced);
            return (Arrival::Zlb, delivered);
        }
        self.stats.received += 1;
        let ahead = message.ns.wrapping_sub(self.next_nr);
        let arrival = if ahead < HALF && self.waiting.len() >= MAX_WAITING {
            // Duplicates are still acknowledged below: they cost nothing.
            self.stats.backpressure_dropped += 1;
            Arrival::Backpressure
        } else if ahead == 0 {
            self.next_nr = self.next_nr.wrapping_add(1);
            delivered.push(message);
            while let Some(next) = self.held.remove(&self.next_nr) {
                self.next_nr = self.next_nr.wrapping_add(1);
                delivered.push(next);
            }
            self.stats.delivered += delivered.len() as u64;
            // Like TCP's delayed acknowledgement "at least every second
            // segment" (RFC 1122 §4.2.3.2): once half the window we advertised
            // is unacknowledged, acknowledge now, or the peer's window fills
            // with messages we have long since taken (an LAC's ICCNs, to
            // which the LNS has nothing to answer) and it stalls for the ack
            // delay. RFC 2661 §5.8 only asks for a ZLB when no message of ours
            // is waiting to carry the acknowledgement.
            let unacknowledged = self.next_nr.wrapping_sub(self.last_sent_nr);
            if unacknowledged >= (self.config.receive_window / 2).max(1) {
                self.ack_now(now);
            } else {
                self.schedule_ack(now);
            }
            Arrival::InOrder
        } else if ahead >= HALF {
            // Behind what we expect: received before. RFC 2661 §5.8: duplicates
            // "MUST be acknowledged", in case our acknowledgement was lost.
            self.stats.duplicates += 1;
            self.schedule_ack(now);
            Arrival::Duplicate
        } else if ahead < self.config.receive_window {
            if self.held.contains_key(&message.ns) {
                self.stats.duplicates += 1;
            } else {
                self.stats.out_of_order_held += 1;
                self.held.insert(message.ns, message);
            }
            // Acknowledging tells the peer where the gap starts, and at once:
            // each such ZLB repeats the same Nr, which a peer like us takes
            // as a sign of loss and retransmits early
            // ([`FAST_RETRANSMIT_DUPLICATES`]) instead of after its timeout
            // while everything behind the gap waits. RFC 2661 §5.8 allows a
            // ZLB whenever no message of ours is waiting to carry the Nr.
            // Every held Ns lies within the window, so a hostile peer cannot
            // grow the map past `receive_window` entries.
            self.ack_now(now);
            Arrival::Held
        } else {
            // The peer ignored our Receive Window Size: drop it and let the
            // peer retransmit once the window has moved (RFC 2661 §5.8).
            self.stats.out_of_window_dropped += 1;
            Arrival::OutOfWindow
        };
        (arrival, delivered)
    }

    /// Run the timers and fill the peer's window: retransmit what timed out,
    /// send what the window allows, send a ZLB if an acknowledgement has
    /// waited long enough. Call after every input and at every timeout.
    pub fn service(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        let retransmission = self.config.retransmission;
        let next_nr = self.next_nr;
        let mut timed_out = false;
        for entry in self.in_flight.iter_mut() {
            if entry.deadline > now {
                continue;
            }
            if entry.retries >= retransmission.max_retries {
                // RFC 2661 §5.8: "If no peer response is detected after
                // several retransmissions ... the tunnel and all sessions
                // within MUST be cleared."
                self.failed = true;
                self.outbox.clear();
                self.waiting.clear();
                self.ack_deadline = None;
                return;
            }
            entry.retries += 1;
            entry.deadline = now + retransmission.timeout(entry.retries);
            // RFC 2661 §5.8: the retransmission keeps its Ns but carries the
            // current Nr.
            entry.message.nr = next_nr;
            self.outbox.push_back(entry.message.clone());
            self.stats.retransmitted += 1;
            self.ack_deadline = None;
            self.last_sent_nr = next_nr;
            timed_out = true;
        }
        if timed_out && self.config.slow_start {
            // Appendix A: on a retransmission, SSTHRESH becomes half the
            // congestion window and the window restarts at one.
            self.ssthresh = (self.cwnd / 2).max(1);
            self.cwnd = 1;
            self.avoidance_acks = 0;
        }
        let mut blocked = false;
        while !self.waiting.is_empty() {
            if self.in_flight.len() >= usize::from(self.send_window()) {
                blocked = true;
                break;
            }
            let Some(mut message) = self.waiting.pop_front() else {
                break;
            };
            message.ns = self.next_ns;
            message.nr = self.next_nr;
            self.next_ns = self.next_ns.wrapping_add(1);
            self.outbox.push_back(message.clone());
            self.in_flight.push_back(InFlight {
                message,
                retries: 0,
                deadline: now + retransmission.timeout(0),
                fast_retransmitted: false,
            });
            self.stats.sent += 1;
            // The message carries our Nr: no separate acknowledgement needed.
            self.ack_deadline = None;
            self.last_sent_nr = self.next_nr;
        }
        if blocked {
            self.stats.window_full += 1;
        }
        if self.ack_deadline.is_some_and(|at| at <= now) {
            self.ack_deadline = None;
            // RFC 2661 §5.8: a ZLB carries the Ns of our next message without
            // consuming it.
            self.outbox.push_back(ControlMessage::zlb(
                self.peer_tunnel_id,
                0,
                self.next_ns,
                self.next_nr,
            ));
            self.stats.zlb_sent += 1;
            self.last_sent_nr = self.next_nr;
        }
    }

    /// The next message to put on the wire, Ns and Nr filled in.
    pub fn poll_transmit(&mut self) -> Option<ControlMessage> {
        self.outbox.pop_front()
    }

    /// When [`ControlChannel::service`] next has work: a retransmission or a
    /// delayed acknowledgement.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let retransmit = self.in_flight.iter().map(|e| e.deadline).min();
        match (retransmit, self.ack_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// An acknowledgement is owed and not yet sent.
    pub fn ack_pending(&self) -> bool {
        self.ack_deadline.is_some()
    }

    /// Send the acknowledgement at the next [`ControlChannel::service`],
    /// as a ZLB unless a message of ours goes out then and carries it.
    pub fn ack_now(&mut self, now: Instant) {
        self.ack_deadline = Some(now);
    }

    /// A ZLB arrived; `advanced` says whether its Nr acknowledged anything.
    /// After [`FAST_RETRANSMIT_DUPLICATES`] that did not, retransmit the
    /// oldest unacknowledged message now (see the constant for why this is
    /// safe beyond RFC 2661 §5.8).
    fn count_duplicate_zlb(&mut self, advanced: bool) {
        if advanced || self.in_flight.is_empty() {
            self.duplicate_zlbs = 0;
            return;
        }
        self.duplicate_zlbs = self.duplicate_zlbs.saturating_add(1);
        if self.duplicate_zlbs < FAST_RETRANSMIT_DUPLICATES {
            return;
        }
        self.duplicate_zlbs = 0;
        let next_nr = self.next_nr;
        let Some(oldest) = self.in_flight.front_mut() else {
            return;
        };
        if oldest.fast_retransmitted {
            return;
        }
        oldest.fast_retransmitted = true;
        // §5.8: the retransmission keeps its Ns and carries the current Nr.
        // Its timer and retry count stay as they are: the timeout still
        // covers this copy being lost too.
        oldest.message.nr = next_nr;
        self.outbox.push_back(oldest.message.clone());
        self.last_sent_nr = next_nr;
        self.ack_deadline = None;
        self.stats.retransmitted += 1;
        self.stats.fast_retransmitted += 1;
        if self.config.slow_start {
            // The duplicates show the path still delivers: halve the window
            // (as TCP's fast recovery does) rather than restart it at one.
            self.ssthresh = (self.cwnd / 2).max(1);
            self.cwnd = self.ssthresh;
            self.avoidance_acks = 0;
        }
    }

    fn schedule_ack(&mut self, now: Instant) {
        if self.ack_deadline.is_none() {
            self.ack_deadline = Some(now + self.config.ack_delay);
        }
    }

    /// The peer's Nr acknowledges every Ns before it (RFC 2661 §5.8).
    /// Returns whether it acknowledged anything.
    fn process_nr(&mut self, nr: u16) -> bool {
        let oldest = self
            .in_flight
            .front()
            .map_or(self.next_ns, |e| e.message.ns);
        if seq_before(nr, oldest) {
            // A stale acknowledgement (a retransmission or a reordered
            // message): it tells us nothing new.
            return false;
        }
        let acked = usize::from(nr.wrapping_sub(oldest));
        if acked > self.in_flight.len() {
            // Acknowledges something we never sent: ignore it rather than
            // lose messages the peer has not seen.
            self.stats.invalid_nr += 1;
            return false;
        }
        self.in_flight.drain(..acked);
        self.stats.acked += acked as u64;
        if self.config.slow_start {
            for _ in 0..acked {
                self.open_window();
            }
        }
        acked > 0
    }

    /// One acknowledged message (RFC 2661 Appendix A): below SSTHRESH the
    /// window grows by one per acknowledgement (slow start), above it by one
    /// per window's worth (congestion avoidance); never past the peer's
    /// receive window.
    fn open_window(&mut self) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
        } else {
            self.avoidance_acks += 1;
            if self.avoidance_acks >= self.cwnd {
                self.avoidance_acks = 0;
                self.cwnd = self.cwnd.saturating_add(1);
            }
        }
        self.cwnd = self.cwnd.min(self.peer_window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::control::MessageType;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(millis: u64) -> Instant {
        Instant::ZERO + ms(millis)
    }

    fn hello() -> ControlMessage {
        ControlMessage::new(MessageType::Hello, 7, 0)
    }

    /// A message from the peer with the given Ns and Nr.
    fn peer(ns: u16, nr: u16) -> ControlMessage {
        let mut m = hello();
        m.ns = ns;
        m.nr = nr;
        m
    }

    fn zlb(ns: u16, nr: u16) -> ControlMessage {
        ControlMessage::zlb(7, 0, ns, nr)
    }

    fn drain(ch: &mut ControlChannel) -> Vec<ControlMessage> {
        std::iter::from_fn(|| ch.poll_transmit()).collect()
    }

    /// Slow start off: most tests look at the windows alone.
    fn config() -> ChannelConfig {
        ChannelConfig {
            receive_window: 4,
            ack_delay: ms(50),
            slow_start: false,
            ..ChannelConfig::default()
        }
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_before(0, 1));
        assert!(!seq_before(1, 0));
        assert!(!seq_before(5, 5));
        assert!(seq_before(65535, 0));
        assert!(seq_before(65530, 3));
        assert!(!seq_before(3, 65530));
        assert!(seq_before(0, 0x7fff));
        assert!(!seq_before(0, 0x8000));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_the_full_cycle_is_31_s() {
        let r = Retransmission::default();
        let timeouts: Vec<u64> = (0..7).map(|i| r.timeout(i).as_secs()).collect();
        assert_eq!(timeouts, [1, 2, 4, 8, 8, 8, 8]);
        // RFC 2661 §5.7 speaks of a 31 s full retransmission cycle.
        assert_eq!(r.full_cycle(), Duration::from_secs(31));
        assert_eq!(r.timeout(200), Duration::from_secs(8));
    }

    #[test]
    fn messages_get_consecutive_ns_and_the_current_nr() {
        let mut ch = ControlChannel::new(config());
        ch.send(hello());
        ch.send(hello());
        ch.service(at(0));
        let out = drain(&mut ch);
        assert_eq!(
            out.iter().map(|m| (m.ns, m.nr)).collect::<Vec<_>>(),
            [(0, 0), (1, 0)]
        );
        assert_eq!(ch.stats().sent, 2);
        assert_eq!(ch.in_flight(), 2);
    }

    #[test]
    fn peer_window_limits_unacknowledged_messages_and_acks_open_it() {
        let mut ch = ControlChannel::new(config());
        ch.set_peer_window(2);
        for _ in 0..5 {
            ch.send(hello());
        }
        ch.service(at(0));
        assert_eq!(drain(&mut ch).len(), 2);
        assert_eq!((ch.in_flight(), ch.waiting()), (2, 3));
        // A ZLB acknowledging Ns 0 opens one slot.
        ch.on_receive(at(10), zlb(0, 1));
        ch.service(at(10));
        let out = drain(&mut ch);
        assert_eq!(out.iter().map(|m| m.ns).collect::<Vec<_>>(), [2]);
        assert_eq!(ch.stats().acked, 1);
        // Acknowledging everything sent so far lets the rest go.
        ch.on_receive(at(20), zlb(0, 3));
        ch.service(at(20));
        assert_eq!(
            drain(&mut ch).iter().map(|m| m.ns).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(ch.stats().acked, 3);
    }

    #[test]
    fn a_message_is_acknowledged_only_once_the_peer_nr_passes_its_ns() {
        // What the LAC waits for before it calls a session up: its ICCN
        // queued behind a full window, then sent, then acknowledged.
        let mut ch = ControlChannel::new(config());
        ch.set_peer_window(2);
        for _ in 0..2 {
            ch.send(hello());
        }
        let number = ch.next_message_number();
        assert_eq!(number, 2);
        ch.send(hello());
        assert_eq!(ch.next_message_number(), 3);
        ch.service(at(0));
        assert_eq!(drain(&mut ch).len(), 2, "the third waits for the window");
        assert!(!ch.is_acknowledged(number));
        ch.on_receive(at(10), zlb(0, 1));
        ch.service(at(10));
        assert_eq!(drain(&mut ch).iter().map(|m| m.ns).collect::<Vec<_>>(), [2]);
        assert!(ch.is_acknowledged(0));
        // Sent, not acknowledged: a lost or late message could still be
        // overtaken by anything sent outside the channel.
        assert!(!ch.is_acknowledged(number));
        // An Nr piggybacked on a message of the peer's counts like a ZLB's.
        ch.on_receive(at(20), peer(0, 3));
        assert!(ch.is_acknowledged(number));
        assert!(!ch.is_acknowledged(3));
        // Nothing waits, so discarding takes no number back.
        ch.discard_waiting();
        assert_eq!(ch.next_message_number(), 3);
    }

    #[test]
    fn slow_start_opens_the_window_per_ack_and_a_timeout_closes_it() {
        let mut ch = ControlChannel::new(ChannelConfig {
            slow_start: true,
            ..config()
        });
        ch.set_peer_window(8);
        for _ in 0..40 {
            ch.send(hello());
        }
        let mut now = 0;
        let mut acked_to = 0u16;
        let mut rounds = Vec::new();
        // Acknowledge each round trip's messages: 1, 2, 4, 8 (the peer's
        // window caps it), 8, ...
        for _ in 0..5 {
            ch.service(at(now));
            let sent = drain(&mut ch).len();
            rounds.push(sent);
            acked_to = acked_to.wrapping_add(sent as u16);
            now += 10;
            ch.on_receive(at(now), zlb(0, acked_to));
        }
        assert_eq!(rounds, [1, 2, 4, 8, 8]);
        assert_eq!(ch.send_window(), 8);
        // A timeout: SSTHRESH = 4, window back to 1.
        ch.service(at(now));
        let sent = drain(&mut ch).len();
        assert_eq!(sent, 8);
        ch.service(at(now + 1000));
        assert_eq!(
            drain(&mut ch).len(),
            8,
            "every message in flight retransmitted"
        );
        assert_eq!(ch.send_window(), 1);
        // Slow start to SSTHRESH (4), then one more per window of acks.
        let mut windows = Vec::new();
        for _ in 0..8 {
            ch.open_window();
            windows.push(ch.send_window());
        }
        assert_eq!(windows, [2, 3, 4, 4, 4, 4, 5, 5]);
    }

    #[test]
    fn an_nr_beyond_what_we_sent_is_ignored() {
        let mut ch = ControlChannel::new(config());
        ch.send(hello());
        ch.service(at(0));
        drain(&mut ch);
        ch.on_receive(at(1), zlb(0, 9));
        assert_eq!(ch.in_flight(), 1);
        assert_eq!(ch.stats().invalid_nr, 1);
        // A stale Nr (from before what is in flight) is no error.
        ch.on_receive(at(1), zlb(0, 65535));
        assert_eq!(ch.in_flight(), 1);
        assert_eq!(ch.stats().invalid_nr, 1);
    }

    #[test]
    fn retransmission_backs_off_refreshes_nr_and_gives_up() {
        let mut ch = ControlChannel::new(ChannelConfig {
            retransmission: Retransmission {
                initial: ms(100),
                cap: ms(400),
                max_retries: 3,
            },
            ..config()
        });
        ch.send(hello());
        ch.service(at(0));
        drain(&mut ch);
        assert_eq!(ch.poll_timeout(), Some(at(100)));
        // Nothing before the deadline.
        ch.service(at(99));
        assert!(drain(&mut ch).is_empty());
        // The peer's message arrives meanwhile: the retransmission carries Nr 1.
        ch.on_receive(at(50), peer(0, 0));
        let mut times = Vec::new();
        let mut now = at(50);
        while let Some(t) = ch.poll_timeout() {
            now = t;
            ch.service(now);
            if ch.is_failed() {
                break;
            }
            for m in drain(&mut ch) {
                if !m.is_zlb() {
                    assert_eq!((m.ns, m.nr), (0, 1));
                    times.push(now.as_nanos() / 1_000_000);
                }
            }
        }
        // 100, then +200, +400, +400 (capped); failure after the last timeout.
        assert_eq!(times, [100, 300, 700]);
        assert!(ch.is_failed());
        assert_eq!(now, at(1100));
        assert_eq!(ch.stats().retransmitted, 3);
        // 100 + 200 + 400 + 400 = the full cycle.
        assert_eq!(ch.config().retransmission.full_cycle(), ms(1100));
    }

    #[test]
    fn in_order_arrival_is_delivered_and_acked_by_zlb_after_the_delay() {
        let mut ch = ControlChannel::new(config());
        let (arrival, delivered) = ch.on_receive(at(0), peer(0, 0));
        assert_eq!(arrival, Arrival::InOrder);
        assert_eq!(delivered.len(), 1);
        ch.service(at(0));
        assert!(drain(&mut ch).is_empty());
        assert_eq!(ch.poll_timeout(), Some(at(50)));
        ch.service(at(50));
        let out = drain(&mut ch);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_zlb());
        assert_eq!((out[0].ns, out[0].nr), (0, 1));
        assert_eq!(ch.stats().zlb_sent, 1);
        assert_eq!(ch.poll_timeout(), None);
    }

    #[test]
    fn a_message_of_ours_carries_the_ack_instead_of_a_zlb() {
        let mut ch = ControlChannel::new(config());
        ch.on_receive(at(0), peer(0, 0));
        ch.send(hello());
        ch.service(at(10));
        let out = drain(&mut ch);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ns, out[0].nr), (0, 1));
        ch.service(at(100));
        assert!(drain(&mut ch).is_empty());
        assert_eq!(ch.stats().zlb_sent, 0);
    }

    #[test]
    fn duplicates_are_dropped_and_acknowledged() {
        let mut ch = ControlChannel::new(config());
        ch.on_receive(at(0), peer(0, 0));
        ch.service(at(50));
        drain(&mut ch);
        let (arrival, delivered) = ch.on_receive(at(60), peer(0, 0));
        assert_eq!(arrival, Arrival::Duplicate);
        assert!(delivered.is_empty());
        ch.service(at(110));
        let out = drain(&mut ch);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_zlb());
        assert_eq!(out[0].nr, 1);
        assert_eq!(ch.stats().duplicates, 1);
        assert_eq!(ch.stats().delivered, 1);
    }

    #[test]
    fn early_arrivals_are_held_within_the_window_and_dropped_beyond() {
        let mut ch = ControlChannel::new(config()); // window 4: Ns 0..=3 accepted
        assert_eq!(ch.on_receive(at(0), peer(2, 0)).0, Arrival::Held);
        assert_eq!(ch.on_receive(at(0), peer(2, 0)).0, Arrival::Held);
        assert_eq!(ch.stats().duplicates, 1);
        assert_eq!(ch.on_receive(at(0), peer(4, 0)).0, Arrival::OutOfWindow);
        assert_eq!(ch.on_receive(at(0), peer(3, 0)).0, Arrival::Held);
        let (_, delivered) = ch.on_receive(at(0), peer(1, 0));
        assert!(delivered.is_empty());
        let (arrival, delivered) = ch.on_receive(at(0), peer(0, 0));
        assert_eq!(arrival, Arrival::InOrder);
        assert_eq!(
            delivered.iter().map(|m| m.ns).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(ch.next_nr(), 4);
        let s = ch.stats();
        assert_eq!((s.received, s.delivered, s.out_of_order_held), (6, 4, 3));
        assert_eq!((s.duplicates, s.out_of_window_dropped), (1, 1));
        // Once nothing is held, every arrival is accounted for exactly once.
        assert_eq!(
            s.received,
            s.delivered + s.duplicates + s.out_of_window_dropped
        );
    }

    #[test]
    fn sequence_numbers_wrap_at_65535() {
        let mut a = ControlChannel::new(ChannelConfig {
            initial_sequence: 65534,
            ..config()
        });
        let mut b = ControlChannel::new(ChannelConfig {
            initial_sequence: 65534,
            ..config()
        });
        for _ in 0..4 {
            a.send(hello());
        }
        a.service(at(0));
        let sent = drain(&mut a);
        assert_eq!(
            sent.iter().map(|m| m.ns).collect::<Vec<_>>(),
            [65534, 65535, 0, 1]
        );
        // Deliver out of order across the wrap.
        let mut delivered = Vec::new();
        for i in [1usize, 3, 0, 2] {
            delivered.extend(b.on_receive(at(1), sent[i].clone()).1);
        }
        assert_eq!(
            delivered.iter().map(|m| m.ns).collect::<Vec<_>>(),
            [65534, 65535, 0, 1]
        );
        assert_eq!(b.next_nr(), 2);
        // A stale copy from before the wrap is a duplicate.
        assert_eq!(b.on_receive(at(2), sent[1].clone()).0, Arrival::Duplicate);
        b.service(at(100));
        let ack = drain(&mut b);
        assert_eq!(ack.len(), 1);
        assert_eq!(ack[0].nr, 2);
        a.on_receive(at(101), ack[0].clone());
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.stats().acked, 4);
        assert_eq!(a.stats().invalid_nr, 0);
    }

    #[test]
    fn a_failed_channel_is_silent() {
        let mut ch = ControlChannel::new(ChannelConfig {
            retransmission: Retransmission {
                initial: ms(10),
                cap: ms(10),
                max_retries: 0,
            },
            ..config()
        });
        ch.send(hello());
        ch.service(at(0));
        drain(&mut ch);
        ch.service(at(10));
        assert!(ch.is_failed());
        ch.send(hello());
        ch.on_receive(at(11), peer(0, 0));
        ch.service(at(1000));
        assert!(drain(&mut ch).is_empty());
        assert_eq!(ch.poll_timeout(), None);
    }

    #[test]
    fn a_peer_that_does_not_acknowledge_cannot_grow_our_queue_without_bound() {
        let mut ch = ControlChannel::new(config());
        ch.set_peer_window(1);
        let mut ns = 0u16;
        // Every message of the peer's makes us answer one (as an ICRQ does);
        // the peer never acknowledges any of ours.
        for _ in 0..MAX_WAITING + 100 {
            let (arrival, delivered) = ch.on_receive(at(0), peer(ns, 0));
            if arrival == Arrival::InOrder {
                ns = ns.wrapping_add(1);
                for _ in delivered {
                    ch.send(hello());
                }
            }
            ch.service(at(0));
            drain(&mut ch);
        }
        assert!(ch.waiting() <= MAX_WAITING, "{}", ch.waiting());
        // One of ours is in flight, MAX_WAITING wait: the rest were refused.
        assert_eq!(ch.stats().backpressure_dropped, 99);
        // Still a duplicate is acknowledged, and acknowledging ours lets the
        // peer's messages in again.
        assert_eq!(ch.on_receive(at(1), peer(0, 0)).0, Arrival::Duplicate);
        ch.on_receive(at(1), zlb(ns, 1));
        ch.service(at(1));
        assert_eq!(ch.on_receive(at(1), peer(ns, 1)).0, Arrival::InOrder);
    }

    proptest::proptest! {
        /// Whatever Ns and Nr a peer sends, in whatever order, the channel
        /// never panics, holds at most its window of early arrivals, never
        /// has more in flight than the window it uses, and delivers each Ns
        /// at most once, in order.
        #[test]
        fn any_ns_and_nr_from_the_peer_keep_the_channel_sane(
            window in proptest::prop_oneof![proptest::strategy::Just(0u16), 1u16..40, proptest::strategy::Just(u16::MAX)],
            arrivals in proptest::collection::vec((proptest::num::u16::ANY, proptest::num::u16::ANY, proptest::bool::ANY, 0u64..3000), 0..200),
        ) {
            let mut ch = ControlChannel::new(ChannelConfig {
                receive_window: 8,
                slow_start: true,
                ..ChannelConfig::default()
            });
            ch.set_peer_window(window);
            let mut now = at(0);
            let mut next_expected = ch.next_nr();
            for (ns, nr, zlb_only, advance) in arrivals {
                now += ms(advance);
                ch.send(hello());
                let m = if zlb_only { zlb(ns, nr) } else { peer(ns, nr) };
                let (_, delivered) = ch.on_receive(now, m);
                for d in delivered {
                    proptest::prop_assert_eq!(d.ns, next_expected);
                    next_expected = next_expected.wrapping_add(1);
                }
                ch.service(now);
                drain(&mut ch);
                proptest::prop_assert!(ch.held.len() < 8);
                proptest::prop_assert!(ch.in_flight() <= usize::from(ch.peer_window()));
                proptest::prop_assert!(ch.send_window() >= 1);
                proptest::prop_assert!(ch.peer_window() >= 1 && ch.peer_window() <= MAX_WINDOW);
                if ch.is_failed() {
                    break;
                }
            }
        }
    }

    #[test]
    fn an_out_of_order_arrival_is_acknowledged_at_once() {
        let mut ch = ControlChannel::new(config());
        // Ns 0 is lost; Ns 1 is held and its ZLB goes out without the delay.
        assert_eq!(ch.on_receive(at(0), peer(1, 0)).0, Arrival::Held);
        ch.service(at(0));
        let out = drain(&mut ch);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_zlb());
        assert_eq!(out[0].nr, 0, "the gap starts at Ns 0");
    }

    #[test]
    fn half_the_advertised_window_received_is_acknowledged_at_once() {
        // Receive window 4: the second unacknowledged message triggers a ZLB.
        let mut ch = ControlChannel::new(config());
        ch.on_receive(at(0), peer(0, 0));
        ch.service(at(0));
        assert!(drain(&mut ch).is_empty(), "one message waits for the delay");
        ch.on_receive(at(1), peer(1, 0));
        ch.service(at(1));
        let out = drain(&mut ch);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_zlb());
        assert_eq!(out[0].nr, 2);
        // The count starts again after that acknowledgement.
        ch.on_receive(at(2), peer(2, 0));
        ch.service(at(2));
        assert!(drain(&mut ch).is_empty());
        ch.service(at(52));
        assert_eq!(drain(&mut ch).iter().map(|m| m.nr).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn duplicate_zlbs_retransmit_the_oldest_message_once_before_its_timeout() {
        let mut ch = ControlChannel::new(config());
        for _ in 0..4 {
            ch.send(hello());
        }
        ch.service(at(0));
        assert_eq!(drain(&mut ch).len(), 4);
        // Ns 0 was lost; the peer holds 1, 2 and 3 and says so each time.
        for t in 1..FAST_RETRANSMIT_DUPLICATES {
            ch.on_receive(at(u64::from(t)), zlb(0, 0));
            ch.service(at(u64::from(t)));
            assert!(drain(&mut ch).is_empty());
        }
        ch.on_receive(at(5), zlb(0, 0));
        ch.service(at(5));
        let out = drain(&mut ch);
        assert_eq!(out.iter().map(|m| m.ns).collect::<Vec<_>>(), [0]);
        assert_eq!(ch.stats().fast_retransmitted, 1);
        // More duplicates do not send it again; its timeout still stands.
        for t in 6..12 {
            ch.on_receive(at(t), zlb(0, 0));
            ch.service(at(t));
            assert!(drain(&mut ch).is_empty());
        }
        ch.on_receive(at(20), zlb(0, 4));
        assert!(ch.is_idle());
        assert_eq!(ch.stats().retransmitted, 1);
    }
}

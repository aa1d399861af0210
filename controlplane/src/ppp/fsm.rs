//! The option negotiation automaton of RFC 1661 §4, shared by LCP, IPCP and
//! IPv6CP.
//!
//! Two levels, like the L2TP tables in [`crate::l2tp::fsm`]:
//!
//! * [`transition`]: the state-transition table of RFC 1661 §4.1 as a pure
//!   function, (state, event) → (actions, next state), checked cell by cell
//!   against the RFC in the tests;
//! * [`Automaton`]: one running instance. It classifies arriving packets
//!   into the table's events, performs the actions (sending packets, the
//!   restart timer and counter, the layer signals), and leaves the meaning of
//!   the options to a [`Negotiation`] (one per protocol).
//!
//! The automaton emits control packets without the PPP header (the link adds
//! it) and reports the layer signals (tlu, tld, tls, tlf) as
//! [`LayerEvent`]s, which the link turns into phase changes.

use core::time::Duration;
use std::collections::VecDeque;

use dataplane::wire::ppp::Protocol;
use dataplane::wire::ppp_cp::{self, Code, Options, RawOption};
use rand_core::RngCore;

use crate::time::Instant;

/// The automaton's states (RFC 1661 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0: lower layer down, no Open.
    Initial,
    /// 1: Open given, lower layer still down.
    Starting,
    /// 2: lower layer up, no Open.
    Closed,
    /// 3: finished after a negotiation or Terminate; waits for the peer.
    Stopped,
    /// 4: Terminate-Request sent after a Close.
    Closing,
    /// 5: Terminate-Request sent (or received) without a Close.
    Stopping,
    /// 6: Configure-Request sent.
    ReqSent,
    /// 7: Configure-Request sent and acknowledged.
    AckRcvd,
    /// 8: Configure-Request sent, the peer's acknowledged.
    AckSent,
    /// 9: both acknowledged.
    Opened,
}

impl State {
    /// Every state, in the RFC's order.
    pub const ALL: [State; 10] = [
        State::Initial,
        State::Starting,
        State::Closed,
        State::Stopped,
        State::Closing,
        State::Stopping,
        State::ReqSent,
        State::AckRcvd,
        State::AckSent,
        State::Opened,
    ];

    /// RFC 1661 §4.6: the Restart timer runs in these states only.
    pub const fn restart_timer_runs(self) -> bool {
        matches!(
            self,
            State::Closing | State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent
        )
    }
}

/// The automaton's events (RFC 1661 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The lower layer is up.
    Up,
    /// The lower layer is down.
    Down,
    /// Administrative Open.
    Open,
    /// Administrative Close.
    Close,
    /// TO+: the Restart timer expired with the counter above zero.
    TimeoutRetry,
    /// TO-: the Restart timer expired with the counter at zero.
    TimeoutGiveUp,
    /// RCR+: a good Configure-Request.
    RcrGood,
    /// RCR-: a bad Configure-Request (answered with Nak or Reject).
    RcrBad,
    /// RCA: Configure-Ack.
    Rca,
    /// RCN: Configure-Nak or Configure-Reject.
    Rcn,
    /// RTR: Terminate-Request.
    Rtr,
    /// RTA: Terminate-Ack.
    Rta,
    /// RUC: a packet with an unknown code.
    Ruc,
    /// RXJ+: a permitted Code-Reject or Protocol-Reject.
    RxjGood,
    /// RXJ-: a catastrophic Code-Reject or Protocol-Reject.
    RxjBad,
    /// RXR: Echo-Request, Echo-Reply or Discard-Request.
    Rxr,
}

impl Event {
    /// Every event, in the RFC's order.
    pub const ALL: [Event; 16] = [
        Event::Up,
        Event::Down,
        Event::Open,
        Event::Close,
        Event::TimeoutRetry,
        Event::TimeoutGiveUp,
        Event::RcrGood,
        Event::RcrBad,
        Event::Rca,
        Event::Rcn,
        Event::Rtr,
        Event::Rta,
        Event::Ruc,
        Event::RxjGood,
        Event::RxjBad,
        Event::Rxr,
    ];
}

/// The automaton's actions (RFC 1661 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// tlu: This-Layer-Up.
    Tlu,
    /// tld: This-Layer-Down.
    Tld,
    /// tls: This-Layer-Started.
    Tls,
    /// tlf: This-Layer-Finished.
    Tlf,
    /// irc: Initialize-Restart-Count.
    Irc,
    /// zrc: Zero-Restart-Count.
    Zrc,
    /// scr: Send-Configure-Request.
    Scr,
    /// sca: Send-Configure-Ack.
    Sca,
    /// scn: Send-Configure-Nak (or Reject).
    Scn,
    /// str: Send-Terminate-Request.
    Str,
    /// sta: Send-Terminate-Ack.
    Sta,
    /// scj: Send-Code-Reject.
    Scj,
    /// ser: Send-Echo-Reply.
    Ser,
}

/// One cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// What to do, in the RFC's order.
    pub actions: &'static [Action],
    /// The state after the event.
    pub next: State,
}

const fn go(actions: &'static [Action], next: State) -> Option<Transition> {
    Some(Transition { actions, next })
}

/// The state-transition table of RFC 1661 §4.1. `None` is the RFC's "-",
/// an event that cannot happen in that state: the automaton ignores it.
///
/// The footnotes are not modelled: "r" (the restart option: we never
/// restart an Opened link on Open), "p" (the passive option: we never wait
/// silently in Stopped) and "x" (a crossed connection is handled like any
/// other renegotiation).
pub fn transition(state: State, event: Event) -> Option<Transition> {
    use Action::*;
    use Event as E;
    use State::*;
    match (state, event) {
        (Initial, E::Up) => go(&[], Closed),
        (Initial, E::Open) => go(&[Tls], Starting),
        (Initial, E::Close) => go(&[], Initial),
        (Initial, _) => None,

        (Starting, E::Up) => go(&[Irc, Scr], ReqSent),
        (Starting, E::Open) => go(&[], Starting),
        (Starting, E::Close) => go(&[Tlf], Initial),
        (Starting, _) => None,

        (Closed, E::Up) => None,
        (Closed, E::Down) => go(&[], Initial),
        (Closed, E::Open) => go(&[Irc, Scr], ReqSent),
        (Closed, E::Close) => go(&[], Closed),
        (Closed, E::TimeoutRetry | E::TimeoutGiveUp) => None,
        (Closed, E::RcrGood | E::RcrBad | E::Rca | E::Rcn | E::Rtr) => go(&[Sta], Closed),
        (Closed, E::Rta) => go(&[], Closed),
        (Closed, E::Ruc) => go(&[Scj], Closed),
        (Closed, E::RxjGood) => go(&[], Closed),
        (Closed, E::RxjBad) => go(&[Tlf], Closed),
        (Closed, E::Rxr) => go(&[], Closed),

        (Stopped, E::Up) => None,
        (Stopped, E::Down) => go(&[Tls], Starting),
        (Stopped, E::Open) => go(&[], Stopped),
        (Stopped, E::Close) => go(&[], Closed),
        (Stopped, E::TimeoutRetry | E::TimeoutGiveUp) => None,
        (Stopped, E::RcrGood) => go(&[Irc, Scr, Sca], AckSent),
        (Stopped, E::RcrBad) => go(&[Irc, Scr, Scn], ReqSent),
        (Stopped, E::Rca | E::Rcn | E::Rtr) => go(&[Sta], Stopped),
        (Stopped, E::Rta) => go(&[], Stopped),
        (Stopped, E::Ruc) => go(&[Scj], Stopped),
        (Stopped, E::RxjGood) => go(&[], Stopped),
        (Stopped, E::RxjBad) => go(&[Tlf], Stopped),
        (Stopped, E::Rxr) => go(&[], Stopped),

        (Closing, E::Up) => None,
        (Closing, E::Down) => go(&[], Initial),
        (Closing, E::Open) => go(&[], Stopping),
        (Closing, E::Close) => go(&[], Closing),
        (Closing, E::TimeoutRetry) => go(&[Str], Closing),
        (Closing, E::TimeoutGiveUp) => go(&[Tlf], Closed),
        (Closing, E::RcrGood | E::RcrBad | E::Rca | E::Rcn) => go(&[], Closing),
        (Closing, E::Rtr) => go(&[Sta], Closing),
        (Closing, E::Rta) => go(&[Tlf], Closed),
        (Closing, E::Ruc) => go(&[Scj], Closing),
        (Closing, E::RxjGood) => go(&[], Closing),
        (Closing, E::RxjBad) => go(&[Tlf], Closed),
        (Closing, E::Rxr) => go(&[], Closing),

        (Stopping, E::Up) => None,
        (Stopping, E::Down) => go(&[], Starting),
        (Stopping, E::Open) => go(&[], Stopping),
        (Stopping, E::Close) => go(&[], Closing),
        (Stopping, E::TimeoutRetry) => go(&[Str], Stopping),
        (Stopping, E::TimeoutGiveUp) => go(&[Tlf], Stopped),
        (Stopping, E::RcrGood | E::RcrBad | E::Rca | E::Rcn) => go(&[], Stopping),
        (Stopping, E::Rtr) => go(&[Sta], Stopping),
        (Stopping, E::Rta) => go(&[Tlf], Stopped),
        (Stopping, E::Ruc) => go(&[Scj], Stopping),
        (Stopping, E::RxjGood) => go(&[], Stopping),
        (Stopping, E::RxjBad) => go(&[Tlf], Stopped),
        (Stopping, E::Rxr) => go(&[], Stopping),

        (ReqSent, E::Up) => None,
        (ReqSent, E::Down) => go(&[], Starting),
        (ReqSent, E::Open) => go(&[], ReqSent),
        (ReqSent, E::Close) => go(&[Irc, Str], Closing),
        (ReqSent, E::TimeoutRetry) => go(&[Scr], ReqSent),
        (ReqSent, E::TimeoutGiveUp) => go(&[Tlf], Stopped),
        (ReqSent, E::RcrGood) => go(&[Sca], AckSent),
        (ReqSent, E::RcrBad) => go(&[Scn], ReqSent),
        (ReqSent, E::Rca) => go(&[Irc], AckRcvd),
        (ReqSent, E::Rcn) => go(&[Irc, Scr], ReqSent),
        (ReqSent, E::Rtr) => go(&[Sta], ReqSent),
        (ReqSent, E::Rta) => go(&[], ReqSent),
        (ReqSent, E::Ruc) => go(&[Scj], ReqSent),
        (ReqSent, E::RxjGood) => go(&[], ReqSent),
        (ReqSent, E::RxjBad) => go(&[Tlf], Stopped),
        (ReqSent, E::Rxr) => go(&[], ReqSent),

        (AckRcvd, E::Up) => None,
        (AckRcvd, E::Down) => go(&[], Starting),
        (AckRcvd, E::Open) => go(&[], AckRcvd),
        (AckRcvd, E::Close) => go(&[Irc, Str], Closing),
        (AckRcvd, E::TimeoutRetry) => go(&[Scr], ReqSent),
        (AckRcvd, E::TimeoutGiveUp) => go(&[Tlf], Stopped),
        (AckRcvd, E::RcrGood) => go(&[Sca, Tlu], Opened),
        (AckRcvd, E::RcrBad) => go(&[Scn], AckRcvd),
        (AckRcvd, E::Rca | E::Rcn) => go(&[Scr], ReqSent),
        (AckRcvd, E::Rtr) => go(&[Sta], ReqSent),
        (AckRcvd, E::Rta) => go(&[], ReqSent),
        (AckRcvd, E::Ruc) => go(&[Scj], AckRcvd),
        (AckRcvd, E::RxjGood) => go(&[], ReqSent),
        (AckRcvd, E::RxjBad) => go(&[Tlf], Stopped),
        (AckRcvd, E::Rxr) => go(&[], AckRcvd),

        (AckSent, E::Up) => None,
        (AckSent, E::Down) => go(&[], Starting),
        (AckSent, E::Open) => go(&[], AckSent),
        (AckSent, E::Close) => go(&[Irc, Str], Closing),
        (AckSent, E::TimeoutRetry) => go(&[Scr], AckSent),
        (AckSent, E::TimeoutGiveUp) => go(&[Tlf], Stopped),
        (AckSent, E::RcrGood) => go(&[Sca], AckSent),
        (AckSent, E::RcrBad) => go(&[Scn], ReqSent),
        (AckSent, E::Rca) => go(&[Irc, Tlu], Opened),
        (AckSent, E::Rcn) => go(&[Irc, Scr], AckSent),
        (AckSent, E::Rtr) => go(&[Sta], ReqSent),
        (AckSent, E::Rta) => go(&[], AckSent),
        (AckSent, E::Ruc) => go(&[Scj], AckSent),
        (AckSent, E::RxjGood) => go(&[], AckSent),
        (AckSent, E::RxjBad) => go(&[Tlf], Stopped),
        (AckSent, E::Rxr) => go(&[], AckSent),

        (Opened, E::Up) => None,
        (Opened, E::Down) => go(&[Tld], Starting),
        (Opened, E::Open) => go(&[], Opened),
        (Opened, E::Close) => go(&[Tld, Irc, Str], Closing),
        (Opened, E::TimeoutRetry | E::TimeoutGiveUp) => None,
        (Opened, E::RcrGood) => go(&[Tld, Scr, Sca], AckSent),
        (Opened, E::RcrBad) => go(&[Tld, Scr, Scn], ReqSent),
        (Opened, E::Rca | E::Rcn) => go(&[Tld, Scr], ReqSent),
        (Opened, E::Rtr) => go(&[Tld, Zrc, Sta], Stopping),
        (Opened, E::Rta) => go(&[Tld, Scr], ReqSent),
        (Opened, E::Ruc) => go(&[Scj], Opened),
        (Opened, E::RxjGood) => go(&[], Opened),
        (Opened, E::RxjBad) => go(&[Tld, Irc, Str], Stopping),
        (Opened, E::Rxr) => go(&[Ser], Opened),
    }
}

/// The counters and timer of RFC 1661 §4.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsmConfig {
    /// Restart timer: how long to wait for an answer to a Configure-Request
    /// or Terminate-Request. RFC 1661 §4.6: 3 seconds by default.
    pub restart_interval: Duration,
    /// Configure-Requests sent without an answer before giving up (10).
    pub max_configure: u32,
    /// Terminate-Requests sent without an answer before giving up (2).
    pub max_terminate: u32,
    /// Configure-Naks sent without an Ack before the options are rejected
    /// instead (5); the same number of Configure-Naks received in a row
    /// ends the negotiation (see [`Failure::MaxFailure`]).
    pub max_failure: u32,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            restart_interval: Duration::from_secs(3),
            max_configure: 10,
            max_terminate: 2,
            max_failure: 5,
        }
    }
}

/// How a protocol judges the peer's Configure-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every option acceptable: Configure-Ack.
    Ack,
    /// Recognised but unacceptable values: Configure-Nak with these options
    /// (the values we would accept; emitted option bytes).
    Nak(Vec<u8>),
    /// Unrecognised or not negotiable: Configure-Reject with these options,
    /// exactly as the peer sent them.
    Reject(Vec<u8>),
}

/// What a protocol (LCP, IPCP, IPv6CP) brings to the automaton: the meaning
/// of its options. All option lists are the raw bytes of the Options field;
/// the automaton has checked that they parse as a list.
pub trait Negotiation {
    /// The PPP protocol number the packets travel under.
    const PROTOCOL: Protocol;

    /// A new negotiation starts: forget what the peer said to our previous
    /// requests (its Naks and Rejects) and want our configured options again.
    fn reset(&mut self);

    /// The Options of our next Configure-Request.
    fn request(&mut self, rng: &mut dyn RngCore) -> Vec<u8>;

    /// Judge the peer's Configure-Request. On [`Verdict::Ack`] the options
    /// are the peer's side of the link from now on.
    fn judge(&mut self, options: &[u8], rng: &mut dyn RngCore) -> Verdict;

    /// The peer acknowledged our last request (`options`, as we sent them).
    fn acked(&mut self, options: &[u8]);

    /// The peer Nak'ed our last request: adjust the next one.
    fn naked(&mut self, options: &[u8], rng: &mut dyn RngCore);

    /// The peer rejected these options of our last request: leave them out.
    fn rejected(&mut self, options: &[u8]);

    /// Our Magic-Number, for Echo-Reply (LCP); 0 when none was negotiated.
    fn magic_number(&self) -> u32 {
        0
    }

    /// The option handling found the negotiation hopeless (LCP: the peer
    /// refuses every authentication method we demand, or the link is
    /// looped back). The automaton then closes instead of answering.
    fn gave_up(&self) -> bool {
        false
    }
}

/// What the automaton tells the layer above (RFC 1661 §4.4 tlu, tld, tls,
/// tlf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerEvent {
    /// This-Layer-Up: the protocol is Opened.
    Up,
    /// This-Layer-Down: it left the Opened state.
    Down,
    /// This-Layer-Started: it needs the lower layer.
    Started,
    /// This-Layer-Finished: it no longer needs the lower layer.
    Finished,
}

/// Why an automaton stopped negotiating, for the owner's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Max-Configure Configure-Requests went unanswered (RFC 1661 §4.6).
    MaxConfigure,
    /// The negotiation did not converge within Max-Failure Naks
    /// (RFC 1661 §4.6).
    MaxFailure,
    /// The peer sent Terminate-Request.
    PeerTerminated,
    /// The peer rejected a code or the protocol we cannot do without (RXJ-).
    Rejected,
    /// Max-Terminate Terminate-Requests went unanswered.
    TerminateTimeout,
    /// The protocol's option handling gave up ([`Negotiation::gave_up`]).
    GaveUp,
}

/// A packet that the automaton did not consume: LCP's codes 8 to 11 are
/// handed back so that LCP can look at them (echo keepalive, Protocol-Reject);
/// the automaton has already run the RXR or RXJ event when it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Consumed by the automaton, or discarded.
    Handled,
    /// An Echo-Reply.
    EchoReply {
        /// Identifier.
        identifier: u8,
        /// The sender's Magic-Number.
        magic_number: u32,
    },
    /// An Echo-Request (already answered when Opened).
    EchoRequest {
        /// The sender's Magic-Number.
        magic_number: u32,
    },
    /// A Protocol-Reject; the caller decides whether it is RXJ+ or RXJ-
    /// and calls [`Automaton::event`].
    ProtocolReject {
        /// The rejected protocol.
        protocol: u16,
    },
}

/// Counters of what the automaton did with packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsmStats {
    /// Packets that could not be parsed, or replies that matched no request.
    pub discarded: u64,
    /// Events the table calls impossible in the current state.
    pub illegal_events: u64,
}

/// The packet an event answers, for sca, scn, sta and scj.
#[derive(Debug, Clone, Copy)]
struct Incoming<'a> {
    identifier: u8,
    /// The whole packet, for Code-Reject.
    packet: &'a [u8],
    /// The options we acknowledge (sca) or the Nak/Reject we answer with (scn).
    reply: Option<(Code, &'a [u8])>,
    /// The data of an Echo-Request, for ser.
    echo_data: &'a [u8],
}

/// One running automaton of protocol `N`.
#[derive(Debug)]
pub struct Automaton<N> {
    state: State,
    config: FsmConfig,
    negotiation: N,
    restart_count: u32,
    restart_deadline: Option<Instant>,
    next_identifier: u8,
    /// Our last Configure-Request, while its answer is awaited.
    request: Option<(u8, Vec<u8>)>,
    /// Our last Terminate-Request's identifier.
    terminate_identifier: u8,
    naks_sent: u32,
    naks_received: u32,
    failure: Option<Failure>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<LayerEvent>,
    stats: FsmStats,
}

impl<N: Negotiation> Automaton<N> {
    /// A new automaton in the Initial state.
    pub fn new(config: FsmConfig, negotiation: N) -> Self {
        Automaton {
            state: State::Initial,
            config,
            negotiation,
            restart_count: 0,
            restart_deadline: None,
            next_identifier: 1,
            request: None,
            terminate_identifier: 0,
            naks_sent: 0,
            naks_received: 0,
            failure: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: FsmStats::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The protocol's option handling.
    pub fn negotiation(&self) -> &N {
        &self.negotiation
    }

    /// The protocol's option handling, writable (configuration changes).
    pub fn negotiation_mut(&mut self) -> &mut N {
        &mut self.negotiation
    }

    /// Counters.
    pub fn stats(&self) -> FsmStats {
        self.stats
    }

    /// Why the automaton last gave up, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Put the automaton straight into Opened, as if the negotiation had
    /// happened (proxy LCP, or a link rebuilt from offloaded state). No
    /// packet is sent and no tlu reported.
    pub fn force_opened(&mut self) {
        self.state = State::Opened;
        self.restart_deadline = None;
        self.request = None;
    }

    /// The next control packet to send (Code onwards, without PPP header).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next layer signal.
    pub fn poll_event(&mut self) -> Option<LayerEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.restart_deadline
    }

    /// Run the Restart timer if it is due: TO+ while the counter lasts,
    /// TO- after (RFC 1661 §4.3).
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn RngCore) {
        if self.restart_deadline.is_none_or(|t| t > now) {
            return;
        }
        self.restart_deadline = None;
        if self.restart_count > 0 {
            self.run(now, Event::TimeoutRetry, None, rng);
        } else {
            self.failure.get_or_insert(match self.state {
                State::Closing | State::Stopping => Failure::TerminateTimeout,
                _ => Failure::MaxConfigure,
            });
            self.run(now, Event::TimeoutGiveUp, None, rng);
        }
    }

    /// An event from outside the packet flow: Up, Down, Open, Close, or the
    /// RXJ/RXR verdicts of LCP's Protocol-Reject handling.
    pub fn event(&mut self, now: Instant, event: Event, rng: &mut dyn RngCore) {
        self.run(now, event, None, rng);
    }

    /// Close with a reason that the owner will read back from
    /// [`Self::failure`].
    pub fn close_with(&mut self, now: Instant, failure: Failure, rng: &mut dyn RngCore) {
        self.failure.get_or_insert(failure);
        self.run(now, Event::Close, None, rng);
    }

    /// A control packet of this protocol arrived (Code onwards).
    pub fn handle_packet(&mut self, now: Instant, bytes: &[u8], rng: &mut dyn RngCore) -> Received {
        let Ok(packet) = ppp_cp::Packet::new_checked(bytes) else {
            self.stats.discarded += 1;
            return Received::Handled;
        };
        let identifier = packet.identifier();
        let whole = &bytes[..usize::from(packet.length())];
        let data = &whole[ppp_cp::HEADER_LEN..];
        let mut incoming = Incoming {
            identifier,
            packet: whole,
            reply: None,
            echo_data: &[],
        };
        let code = Code::from(whole[0]);
        // The NCPs have no codes 8 to 11 (RFC 1332 §2, RFC 5072 §2).
        let code = if code.is_lcp_only() && N::PROTOCOL != Protocol::Lcp {
            Code::Unknown(whole[0])
        } else {
            code
        };
        if code.has_options() && !options_parse(data) {
            // RFC 1661 §5: a malformed packet is silently discarded.
            self.stats.discarded += 1;
            return Received::Handled;
        }
        match code {
            Code::ConfigureRequest => {
                let judged;
                let event = if matches!(
                    self.state,
                    State::Stopped
                        | State::ReqSent
                        | State::AckRcvd
                        | State::AckSent
                        | State::Opened
                ) {
                    let Some(verdict) = self.judge(data, rng) else {
                        self.close_with(now, Failure::MaxFailure, rng);
                        return Received::Handled;
                    };
                    if self.negotiation.gave_up() {
                        self.close_with(now, Failure::GaveUp, rng);
                        return Received::Handled;
                    }
                    judged = verdict;
                    match &judged {
                        Verdict::Ack => {
                            incoming.reply = Some((Code::ConfigureAck, data));
                            Event::RcrGood
                        }
                        Verdict::Nak(o) => {
                            incoming.reply = Some((Code::ConfigureNak, o));
                            Event::RcrBad
                        }
                        Verdict::Reject(o) => {
                            incoming.reply = Some((Code::ConfigureReject, o));
                            Event::RcrBad
                        }
                    }
                } else {
                    // Closed, Closing, Stopping answer without looking.
                    Event::RcrGood
                };
                self.run(now, event, Some(&incoming), rng);
            }
            Code::ConfigureAck | Code::ConfigureNak | Code::ConfigureReject => {
                // RFC 1661 §5.2-5.4: a reply must carry the Identifier of our
                // last request (and an Ack its exact options), else it is
                // silently discarded.
                let Some((id, ours)) = self.request.as_ref() else {
                    self.stats.discarded += 1;
                    return Received::Handled;
                };
                if *id != identifier || (code == Code::ConfigureAck && ours[..] != *data) {
                    self.stats.discarded += 1;
                    return Received::Handled;
                }
                self.request = None;
                let negotiating = matches!(
                    self.state,
                    State::ReqSent | State::AckRcvd | State::AckSent | State::Opened
                );
                let event = if code == Code::ConfigureAck {
                    if negotiating {
                        self.negotiation.acked(data);
                        self.naks_received = 0;
                    }
                    Event::Rca
                } else {
                    if negotiating {
                        if code == Code::ConfigureNak {
                            self.negotiation.naked(data, rng);
                            self.naks_received += 1;
                        } else {
                            self.negotiation.rejected(data);
                        }
                    }
                    // A peer that Naks every request we make will never
                    // converge: stop after Max-Failure of them (RFC 1661
                    // §4.6 gives the counter; it does not say what to do
                    // about the peer's Naks, pppd would loop for ever).
                    if self.naks_received > self.config.max_failure {
                        self.close_with(now, Failure::MaxFailure, rng);
                        return Received::Handled;
                    }
                    if self.negotiation.gave_up() {
                        self.close_with(now, Failure::GaveUp, rng);
                        return Received::Handled;
                    }
                    Event::Rcn
                };
                self.run(now, event, Some(&incoming), rng);
            }
            Code::TerminateRequest => {
                if self.state == State::Opened {
                    self.failure.get_or_insert(Failure::PeerTerminated);
                }
                self.run(now, Event::Rtr, Some(&incoming), rng);
            }
            Code::TerminateAck => {
                // RFC 1661 §5.5: a Terminate-Ack that answers nothing is not
                // an error; the table decides.
                self.run(now, Event::Rta, Some(&incoming), rng);
            }
            Code::CodeReject => {
                // RFC 1661 §5.6: rejecting a code we need (1-7) is
                // catastrophic; the others (LCP's echo, discard) are not.
                let rejected = data.first().copied().unwrap_or(0);
                let event = if (1..=7).contains(&rejected) {
                    self.failure.get_or_insert(Failure::Rejected);
                    Event::RxjBad
                } else {
                    Event::RxjGood
                };
                self.run(now, event, Some(&incoming), rng);
            }
            Code::ProtocolReject => {
                return match packet.rejected_protocol() {
                    Some(protocol) => Received::ProtocolReject { protocol },
                    None => {
                        self.stats.discarded += 1;
                        Received::Handled
                    }
                };
            }
            Code::EchoRequest | Code::EchoReply | Code::DiscardRequest => {
                let Some(magic_number) = packet.magic_number() else {
                    self.stats.discarded += 1;
                    return Received::Handled;
                };
                incoming.echo_data = &data[4..];
                self.run(now, Event::Rxr, Some(&incoming), rng);
                return match code {
                    Code::EchoRequest => Received::EchoRequest { magic_number },
                    Code::EchoReply => Received::EchoReply {
                        identifier,
                        magic_number,
                    },
                    _ => Received::Handled,
                };
            }
            Code::Unknown(_) => self.run(now, Event::Ruc, Some(&incoming), rng),
        }
        Received::Handled
    }

    /// Judge a request, applying Max-Failure (RFC 1661 §4.6): after that
    /// many Naks without an Ack, the Nak'ed options the peer sent are
    /// rejected instead. A Nak that only asks for options the peer did not
    /// send cannot be turned into a Reject: the negotiation has failed.
    fn judge(&mut self, options: &[u8], rng: &mut dyn RngCore) -> Option<Verdict> {
        let verdict = self.negotiation.judge(options, rng);
        let Verdict::Nak(nak) = verdict else {
            return Some(verdict);
        };
        if self.naks_sent < self.config.max_failure {
            self.naks_sent += 1;
            return Some(Verdict::Nak(nak));
        }
        let naked: Vec<u8> = Options::new(&nak).flatten().map(|o| o.kind).collect();
        let mut reject = Vec::new();
        for option in Options::new(options).flatten() {
            if naked.contains(&option.kind) {
                push_raw(&mut reject, option);
            }
        }
        (!reject.is_empty()).then_some(Verdict::Reject(reject))
    }

    fn next_id(&mut self) -> u8 {
        let id = self.next_identifier;
        self.next_identifier = self.next_identifier.wrapping_add(1);
        id
    }

    fn start_timer(&mut self, now: Instant) {
        self.restart_deadline = Some(now + self.config.restart_interval);
    }

    fn send(&mut self, code: Code, identifier: u8, data: &[u8]) {
        let mut packet = Vec::with_capacity(ppp_cp::HEADER_LEN + data.len());
        packet.push(u8::from(code));
        packet.push(identifier);
        // Our packets are built from our own options and from packets that
        // fit a u16 Length; an oversized one is clamped rather than sent
        // with a wrong Length.
        let len = u16::try_from(ppp_cp::HEADER_LEN + data.len()).unwrap_or(u16::MAX);
        packet.extend_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(data);
        packet.truncate(usize::from(len));
        self.transmit.push_back(packet);
    }

    fn run(
        &mut self,
        now: Instant,
        event: Event,
        incoming: Option<&Incoming<'_>>,
        rng: &mut dyn RngCore,
    ) {
        let Some(t) = transition(self.state, event) else {
            self.stats.illegal_events += 1;
            return;
        };
        let from = self.state;
        for action in t.actions {
            match action {
                Action::Tlu => {
                    self.naks_sent = 0;
                    self.naks_received = 0;
                    self.failure = None;
                    self.events.push_back(LayerEvent::Up);
                }
                Action::Tld => self.events.push_back(LayerEvent::Down),
                Action::Tls => {
                    self.events.push_back(LayerEvent::Started);
                }
                Action::Tlf => self.events.push_back(LayerEvent::Finished),
                Action::Irc => {
                    // RFC 1661 §4.4: Max-Terminate for a Terminate-Request,
                    // Max-Configure otherwise.
                    self.restart_count = if t.actions.contains(&Action::Str) {
                        self.config.max_terminate
                    } else {
                        self.config.max_configure
                    };
                }
                Action::Zrc => {
                    // RFC 1661 §4.4: zero the counter but still run the
                    // timer, so the peer gets time to see our Terminate-Ack.
                    self.restart_count = 0;
                    self.start_timer(now);
                }
                Action::Scr => {
                    let retransmit = event == Event::TimeoutRetry;
                    let (id, options) = match (&self.request, retransmit) {
                        // RFC 1661 §5.1: a retransmission may keep its
                        // Identifier; the options have not changed.
                        (Some((id, options)), true) => (*id, options.clone()),
                        _ => {
                            if matches!(
                                from,
                                State::Starting | State::Closed | State::Stopped | State::Opened
                            ) {
                                self.negotiation.reset();
                                self.naks_received = 0;
                            }
                            (self.next_id(), self.negotiation.request(rng))
                        }
                    };
                    self.send(Code::ConfigureRequest, id, &options);
                    self.request = Some((id, options));
                    self.restart_count = self.restart_count.saturating_sub(1);
                    self.start_timer(now);
                }
                Action::Sca => {
                    if let Some(i) = incoming {
                        self.naks_sent = 0;
                        self.send(Code::ConfigureAck, i.identifier, i.reply_data());
                    }
                }
                Action::Scn => {
                    if let Some((code, options)) = incoming.and_then(|i| i.reply) {
                        let id = incoming.map_or(0, |i| i.identifier);
                        self.send(code, id, options);
                    }
                }
                Action::Str => {
                    self.terminate_identifier = self.next_id();
                    self.send(Code::TerminateRequest, self.terminate_identifier, &[]);
                    self.restart_count = self.restart_count.saturating_sub(1);
                    self.start_timer(now);
                }
                Action::Sta => {
                    let id = incoming.map_or(0, |i| i.identifier);
                    self.send(Code::TerminateAck, id, &[]);
                }
                Action::Scj => {
                    if let Some(i) = incoming {
                        self.send(Code::CodeReject, self.next_identifier, i.packet);
                        self.next_identifier = self.next_identifier.wrapping_add(1);
                    }
                }
                Action::Ser => {
                    // Only an Echo-Request is answered; Echo-Reply and
                    // Discard-Request are RXR too (RFC 1661 §5.8).
                    if let Some(i) = incoming.filter(|i| i.packet.first() == Some(&9)) {
                        let mut data = self.negotiation.magic_number().to_be_bytes().to_vec();
                        data.extend_from_slice(i.echo_data);
                        self.send(Code::EchoReply, i.identifier, &data);
                    }
                }
            }
        }
        self.state = t.next;
        if !self.state.restart_timer_runs() {
            self.restart_deadline = None;
        }
        if matches!(
            self.state,
            State::Initial | State::Starting | State::Closed | State::Stopped
        ) {
            self.request = None;
        }
    }
}

impl Incoming<'_> {
    fn reply_data(&self) -> &[u8] {
        self.reply.map_or(&[], |(_, d)| d)
    }
}

/// Whether a Configure-* data field is a well-formed option list.
fn options_parse(data: &[u8]) -> bool {
    Options::new(data).all(|o| o.is_ok())
}

/// Append one option, as it came, to an option list being built.
pub fn push_raw(out: &mut Vec<u8>, option: RawOption<'_>) {
    out.push(option.kind);
    // The option came off the wire with a one-octet Length.
    out.push((option.value.len() + ppp_cp::OPTION_HEADER_LEN) as u8);
    out.extend_from_slice(option.value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use Action::*;
    use Event as E;
    use State::*;

    /// A cell of RFC 1661 §4.1 as printed: the actions and the new state,
    /// or "-" (`None`).
    type Cell = Option<(&'static [Action], State)>;

    /// The RFC's table, copied row by row: for each event, the ten states
    /// from Initial (0) to Opened (9). The footnote letters (3r, 5r, 3p, 6x,
    /// 9r) are dropped; see [`transition`].
    #[rustfmt::skip]
    const RFC_1661_TABLE: &[(Event, [Cell; 10])] = &[
        (E::Up, [
            Some((&[], Closed)), Some((&[Irc, Scr], ReqSent)), None, None, None, None,
            None, None, None, None,
        ]),
        (E::Down, [
            None, None, Some((&[], Initial)), Some((&[Tls], Starting)), Some((&[], Initial)),
            Some((&[], Starting)), Some((&[], Starting)), Some((&[], Starting)),
            Some((&[], Starting)), Some((&[Tld], Starting)),
        ]),
        (E::Open, [
            Some((&[Tls], Starting)), Some((&[], Starting)), Some((&[Irc, Scr], ReqSent)),
            Some((&[], Stopped)), Some((&[], Stopping)), Some((&[], Stopping)),
            Some((&[], ReqSent)), Some((&[], AckRcvd)), Some((&[], AckSent)), Some((&[], Opened)),
        ]),
        (E::Close, [
            Some((&[], Initial)), Some((&[Tlf], Initial)), Some((&[], Closed)), Some((&[], Closed)),
            Some((&[], Closing)), Some((&[], Closing)), Some((&[Irc, Str], Closing)),
            Some((&[Irc, Str], Closing)), Some((&[Irc, Str], Closing)),
            Some((&[Tld, Irc, Str], Closing)),
        ]),
        (E::TimeoutRetry, [
            None, None, None, None, Some((&[Str], Closing)), Some((&[Str], Stopping)),
            Some((&[Scr], ReqSent)), Some((&[Scr], ReqSent)), Some((&[Scr], AckSent)), None,
        ]),
        (E::TimeoutGiveUp, [
            None, None, None, None, Some((&[Tlf], Closed)), Some((&[Tlf], Stopped)),
            Some((&[Tlf], Stopped)), Some((&[Tlf], Stopped)), Some((&[Tlf], Stopped)), None,
        ]),
        (E::RcrGood, [
            None, None, Some((&[Sta], Closed)), Some((&[Irc, Scr, Sca], AckSent)),
            Some((&[], Closing)), Some((&[], Stopping)), Some((&[Sca], AckSent)),
            Some((&[Sca, Tlu], Opened)), Some((&[Sca], AckSent)),
            Some((&[Tld, Scr, Sca], AckSent)),
        ]),
        (E::RcrBad, [
            None, None, Some((&[Sta], Closed)), Some((&[Irc, Scr, Scn], ReqSent)),
            Some((&[], Closing)), Some((&[], Stopping)), Some((&[Scn], ReqSent)),
            Some((&[Scn], AckRcvd)), Some((&[Scn], ReqSent)), Some((&[Tld, Scr, Scn], ReqSent)),
        ]),
        (E::Rca, [
            None, None, Some((&[Sta], Closed)), Some((&[Sta], Stopped)), Some((&[], Closing)),
            Some((&[], Stopping)), Some((&[Irc], AckRcvd)), Some((&[Scr], ReqSent)),
            Some((&[Irc, Tlu], Opened)), Some((&[Tld, Scr], ReqSent)),
        ]),
        (E::Rcn, [
            None, None, Some((&[Sta], Closed)), Some((&[Sta], Stopped)), Some((&[], Closing)),
            Some((&[], Stopping)), Some((&[Irc, Scr], ReqSent)), Some((&[Scr], ReqSent)),
            Some((&[Irc, Scr], AckSent)), Some((&[Tld, Scr], ReqSent)),
        ]),
        (E::Rtr, [
            None, None, Some((&[Sta], Closed)), Some((&[Sta], Stopped)), Some((&[Sta], Closing)),
            Some((&[Sta], Stopping)), Some((&[Sta], ReqSent)), Some((&[Sta], ReqSent)),
            Some((&[Sta], ReqSent)), Some((&[Tld, Zrc, Sta], Stopping)),
        ]),
        (E::Rta, [
            None, None, Some((&[], Closed)), Some((&[], Stopped)), Some((&[Tlf], Closed)),
            Some((&[Tlf], Stopped)), Some((&[], ReqSent)), Some((&[], ReqSent)),
            Some((&[], AckSent)), Some((&[Tld, Scr], ReqSent)),
        ]),
        (E::Ruc, [
            None, None, Some((&[Scj], Closed)), Some((&[Scj], Stopped)), Some((&[Scj], Closing)),
            Some((&[Scj], Stopping)), Some((&[Scj], ReqSent)), Some((&[Scj], AckRcvd)),
            Some((&[Scj], AckSent)), Some((&[Scj], Opened)),
        ]),
        (E::RxjGood, [
            None, None, Some((&[], Closed)), Some((&[], Stopped)), Some((&[], Closing)),
            Some((&[], Stopping)), Some((&[], ReqSent)), Some((&[], ReqSent)),
            Some((&[], AckSent)), Some((&[], Opened)),
        ]),
        (E::RxjBad, [
            None, None, Some((&[Tlf], Closed)), Some((&[Tlf], Stopped)), Some((&[Tlf], Closed)),
            Some((&[Tlf], Stopped)), Some((&[Tlf], Stopped)), Some((&[Tlf], Stopped)),
            Some((&[Tlf], Stopped)), Some((&[Tld, Irc, Str], Stopping)),
        ]),
        (E::Rxr, [
            None, None, Some((&[], Closed)), Some((&[], Stopped)), Some((&[], Closing)),
            Some((&[], Stopping)), Some((&[], ReqSent)), Some((&[], AckRcvd)),
            Some((&[], AckSent)), Some((&[Ser], Opened)),
        ]),
    ];

    #[test]
    fn table_matches_rfc_1661_section_4_1_cell_by_cell() {
        let mut rows = HashMap::new();
        for (event, cells) in RFC_1661_TABLE {
            assert!(
                rows.insert(*event, cells).is_none(),
                "row {event:?} listed twice"
            );
        }
        for event in Event::ALL {
            let cells = rows
                .get(&event)
                .unwrap_or_else(|| panic!("row {event:?} missing"));
            for (state, cell) in State::ALL.into_iter().zip(cells.iter()) {
                let got = transition(state, event).map(|t| (t.actions, t.next));
                assert_eq!(got, *cell, "cell {event:?} × {state:?}");
            }
        }
    }
}

//! The access concentrator of one access port: answers PADI with PADO and
//! PADR with PADS, keeps the sessions it confirmed, and tells the LAC when a
//! subscriber asks for a session or ends one (RFC 2516 §5).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use dataplane::wire::ethernet::{Address, VlanTag};
use dataplane::wire::pppoe::{Code, DiscoveryRepr, Tag};
use hmac::{Hmac, Mac};
use md5::Md5;
use rand_core::RngCore;
use subtle::ConstantTimeEq;

use super::{bbf_agent_ids, count_tags, read_frame, write_frame, ReadError, Received};
use crate::time::Instant;

/// Tag types (RFC 2516 Appendix A).
mod kind {
    pub(super) const SERVICE_NAME: u16 = 0x0101;
    pub(super) const HOST_UNIQ: u16 = 0x0103;
    pub(super) const AC_COOKIE: u16 = 0x0104;
    pub(super) const RELAY_SESSION_ID: u16 = 0x0110;
    pub(super) const PPP_MAX_PAYLOAD: u16 = 0x0120;
}

/// Bytes of an AC-Cookie: issue time (4), counter (4), HMAC-MD5 (16).
const COOKIE_LEN: usize = 24;

/// Per-MAC rate-limit buckets kept before idle ones are forgotten.
const PER_MAC_BUCKETS_SOFT_MAX: usize = 4096;

/// A token bucket: `per_second` tokens a second, at most `burst` saved.
/// `per_second == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: u32,
    /// Largest burst.
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const UNLIMITED: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };
}

/// The access concentrator's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Our MAC address on the access port: the source of what we send and
    /// the destination of the PADRs and PADTs we accept.
    pub mac: Address,
    /// The AC-Name tag of our PADOs and PADSs.
    pub ac_name: String,
    /// The services we offer. Empty: any service name is served and the
    /// requested one is echoed (DESIGN: `lacd` without a PPPoE config).
    pub service_names: Vec<String>,
    /// Sessions on the port in all (at most 65534, the SESSION_ID space).
    pub max_sessions: usize,
    /// Sessions one MAC address may hold.
    pub max_sessions_per_mac: usize,
    /// PADIs accepted from everyone together.
    pub padi_limit: RateLimit,
    /// PADIs accepted from one MAC address.
    pub padi_limit_per_mac: RateLimit,
    /// How long a PADO's AC-Cookie is good for in a PADR.
    pub cookie_lifetime: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            mac: Address([0x02, 0, 0, 0, 0, 0x01]),
            ac_name: "lacd".to_string(),
            service_names: Vec::new(),
            max_sessions: 0xfffe,
            max_sessions_per_mac: 4,
            padi_limit: RateLimit {
                per_second: 1000,
                burst: 2000,
            },
            padi_limit_per_mac: RateLimit {
                per_second: 2,
                burst: 10,
            },
            cookie_lifetime: Duration::from_secs(60),
        }
    }
}

/// What the server tells the LAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A subscriber got a SESSION_ID in a PADS: open an L2TP call for it.
    SessionRequested {
        /// The subscriber's MAC address.
        mac: Address,
        /// The SESSION_ID we gave it.
        session_id: u16,
        /// The service it asked for (lossy UTF-8; empty means any).
        service_name: String,
        /// Its Host-Uniq, if it sent one.
        host_uniq: Option<Vec<u8>>,
        /// A relay's Relay-Session-Id, if one was on the path.
        relay_session_id: Option<Vec<u8>>,
        /// TR-101 Agent-Circuit-Id from an intermediate agent.
        agent_circuit_id: Option<Vec<u8>>,
        /// TR-101 Agent-Remote-Id from an intermediate agent.
        agent_remote_id: Option<Vec<u8>>,
        /// PPP-Max-Payload (RFC 4638), if the subscriber asked for one;
        /// not granted (we do not echo it), reported for the record.
        ppp_max_payload: Option<u16>,
    },
    /// The subscriber sent a PADT: the session is gone (hang up the call).
    SessionTerminated {
        /// The subscriber's MAC address.
        mac: Address,
        /// Its SESSION_ID.
        session_id: u16,
    },
}

/// A session the server confirmed with a PADS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The subscriber's MAC address.
    pub mac: Address,
    /// The SESSION_ID.
    pub session_id: u16,
    /// The service it asked for.
    pub service_name: String,
    /// Its Host-Uniq, if any.
    pub host_uniq: Option<Vec<u8>>,
    /// When the PADS went out.
    pub since: Instant,
    /// The VLAN tags the subscriber's frames came with (echoed on ours).
    pub outer_tag: Option<VlanTag>,
    /// The inner VLAN tag.
    pub inner_tag: Option<VlanTag>,
    /// TR-101 Agent-Circuit-Id of the PADR, if an intermediate agent added
    /// one.
    pub agent_circuit_id: Option<Vec<u8>>,
    /// TR-101 Agent-Remote-Id of the PADR.
    pub agent_remote_id: Option<Vec<u8>>,
    /// The PADS, kept to answer a retransmitted PADR with the same bytes.
    pads: Vec<u8>,
    /// The AC-Cookie of the PADR that opened it: a PADR with the same
    /// cookie is a retransmission.
    cookie: Vec<u8>,
}

/// Why a Discovery frame was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The Ethernet header or the PPPoE packet does not parse.
    Malformed,
    /// The source address is not a unicast address (RFC 2516 §4).
    BadSource,
    /// Addressed to neither us nor, for a PADI, broadcast.
    BadDestination,
    /// A code an access concentrator does not take (PADO, PADS, unknown).
    UnexpectedCode,
    /// A PADI or PADR without exactly one Service-Name (§5.1, §5.3), or
    /// with a non-zero SESSION_ID.
    BadTags,
    /// A PADI for a service we do not offer: §5.2 says not to answer.
    ServiceNotOffered,
    /// A PADI over the port's rate limit.
    PadiRateLimited,
    /// A PADI over its MAC address's rate limit.
    PadiRateLimitedPerMac,
    /// A PADT for a session that is not this MAC address's.
    UnknownSession,
    /// The answer would not fit in an Ethernet frame (huge echoed tags).
    ReplyTooLarge,
    /// A PADI while every session is taken: §5.2, we cannot serve it.
    NoFreeSession,
}

impl DropReason {
    /// Every reason, for counters and metrics.
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::BadSource,
        DropReason::BadDestination,
        DropReason::UnexpectedCode,
        DropReason::BadTags,
        DropReason::ServiceNotOffered,
        DropReason::PadiRateLimited,
        DropReason::PadiRateLimitedPerMac,
        DropReason::UnknownSession,
        DropReason::ReplyTooLarge,
        DropReason::NoFreeSession,
    ];

    /// A short name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadSource => "bad_source",
            DropReason::BadDestination => "bad_destination",
            DropReason::UnexpectedCode => "unexpected_code",
            DropReason::BadTags => "bad_tags",
            DropReason::ServiceNotOffered => "service_not_offered",
            DropReason::PadiRateLimited => "padi_rate_limited",
            DropReason::PadiRateLimitedPerMac => "padi_rate_limited_per_mac",
            DropReason::UnknownSession => "unknown_session",
            DropReason::ReplyTooLarge => "reply_too_large",
            DropReason::NoFreeSession => "no_free_session",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a well-formed PADR did not open a session. Cookie refusals are
/// dropped without an answer; the others get a PADS with SESSION_ID 0 and
/// an error tag (RFC 2516 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No AC-Cookie, or not one we made for this MAC address (no answer).
    BadCookie,
    /// Our cookie, but older than the cookie lifetime (no answer).
    ExpiredCookie,
    /// A service we do not offer (Service-Name-Error, §5.4).
    ServiceName,
    /// The MAC address holds its maximum of sessions.
    MacLimit,
    /// The port holds its maximum of sessions.
    SessionLimit,
}

impl Refusal {
    /// Every refusal, for counters and metrics.
    pub const ALL: [Refusal; 5] = [
        Refusal::BadCookie,
        Refusal::ExpiredCookie,
        Refusal::ServiceName,
        Refusal::MacLimit,
        Refusal::SessionLimit,
    ];

    /// A short name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadCookie => "bad_cookie",
            Refusal::ExpiredCookie => "expired_cookie",
            Refusal::ServiceName => "service_name",
            Refusal::MacLimit => "mac_limit",
            Refusal::SessionLimit => "session_limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of everything the server received, sent, dropped and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// PADIs received (before rate limiting).
    pub padi_received: u64,
    /// PADOs sent.
    pub pado_sent: u64,
    /// PADRs received.
    pub padr_received: u64,
    /// PADSs sent that confirmed a session (retransmissions included).
    pub pads_sent: u64,
    /// PADSs resent for a retransmitted PADR.
    pub pads_resent: u64,
    /// PADTs received from subscribers for a session they held.
    pub padt_received: u64,
    /// PADTs we sent.
    pub padt_sent: u64,
    /// Sessions confirmed.
    pub sessions_opened: u64,
    /// Sessions ended (either side).
    pub sessions_closed: u64,
    drops: [u64; DropReason::ALL.len()],
    refusals: [u64; Refusal::ALL.len()],
}

impl ServerStats {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Frames dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// PADRs refused for `refusal`.
    pub fn refused(&self, refusal: Refusal) -> u64 {
        self.refusals[refusal.index()]
    }

    /// PADRs refused for any reason.
    pub fn refused_total(&self) -> u64 {
        self.refusals.iter().sum()
    }
}

/// A token bucket filled lazily from the time of the last look.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in millionths.
    micro_tokens: u64,
    at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Bucket {
        Bucket {
            micro_tokens: u64::from(limit.burst) * 1_000_000,
            at: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        // micro-tokens = rate * elapsed_us; saturating: a long idle time
        // simply fills the bucket.
        let earned = u64::from(limit.per_second)
            .saturating_mul(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        let cap = u64::from(limit.burst) * 1_000_000;
        self.micro_tokens = self.micro_tokens.saturating_add(earned).min(cap);
        self.at = self.at.max(now);
    }

    fn is_full(&self, limit: RateLimit) -> bool {
        self.micro_tokens >= u64::from(limit.burst) * 1_000_000
    }

    /// Take one token if there is one.
    fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        if limit.per_second == 0 {
            return true;
        }
        self.refill(limit, now);
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

/// The tags of a PADI or PADR that matter to the server.
struct Request<'a> {
    service_name: &'a [u8],
    host_uniq: Option<&'a [u8]>,
    relay_session_id: Option<&'a [u8]>,
    cookie: Option<&'a [u8]>,
    ppp_max_payload: Option<u16>,
}

impl<'a> Request<'a> {
    /// Read the tags; `None` unless there is exactly one Service-Name
    /// (RFC 2516 §5.1 for PADI, §5.3 for PADR) and at most one of the
    /// tags we echo.
    fn read(tags: &[Tag<'a>]) -> Option<Request<'a>> {
        if count_tags(tags, kind::SERVICE_NAME) != 1
            || count_tags(tags, kind::HOST_UNIQ) > 1
            || count_tags(tags, kind::RELAY_SESSION_ID) > 1
            || count_tags(tags, kind::AC_COOKIE) > 1
            || count_tags(tags, kind::PPP_MAX_PAYLOAD) > 1
        {
            return None;
        }
        let mut request = Request {
            service_name: &[],
            host_uniq: None,
            relay_session_id: None,
            cookie: None,
            ppp_max_payload: None,
        };
        for tag in tags {
            match *tag {
                Tag::ServiceName(v) => request.service_name = v,
                Tag::HostUniq(v) => request.host_uniq = Some(v),
                Tag::RelaySessionId(v) => request.relay_session_id = Some(v),
                Tag::AcCookie(v) => request.cookie = Some(v),
                Tag::PppMaxPayload(v) => request.ppp_max_payload = Some(v),
                _ => {}
            }
        }
        Some(request)
    }

    /// Host-Uniq and Relay-Session-Id, echoed in every reply (§5.2, §5.4,
    /// Appendix A: "the Access Concentrator MUST include it unmodified").
    fn echoes(&self) -> impl Iterator<Item = Tag<'a>> {
        self.host_uniq
            .map(Tag::HostUniq)
            .into_iter()
            .chain(self.relay_session_id.map(Tag::RelaySessionId))
    }
}

/// The access concentrator of one access port (RFC 2516 §5).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    secret: [u8; 16],
    cookie_counter: u32,
    sessions: BTreeMap<u16, Session>,
    /// The SESSION_IDs each MAC address holds: its count for the limit,
    /// and where to look for a retransmitted PADR.
    per_mac: HashMap<Address, Vec<u16>>,
    next_session_id: u16,
    padi_bucket: Bucket,
    padi_buckets: HashMap<Address, Bucket>,
    per_mac_prune_at: usize,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: ServerStats,
}

impl Server {
    /// A server with no sessions; the cookie secret and the first SESSION_ID
    /// come from `rng`.
    pub fn new(config: ServerConfig, now: Instant, rng: &mut dyn RngCore) -> Server {
        let mut secret = [0u8; 16];
        rng.fill_bytes(&mut secret);
        // Start the SESSION_IDs somewhere random so that a restarted LAC
        // does not hand out the ids its subscribers may still think they
        // hold.
        let next_session_id = (rng.next_u32() % 0xfffe) as u16 + 1;
        let padi_bucket = Bucket::full(config.padi_limit, now);
        Server {
            config,
            secret,
            cookie_counter: rng.next_u32(),
            sessions: BTreeMap::new(),
            per_mac: HashMap::new(),
            next_session_id,
            padi_bucket,
            padi_buckets: HashMap::new(),
            per_mac_prune_at: PER_MAC_BUCKETS_SOFT_MAX,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// The confirmed sessions, by SESSION_ID.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> + '_ {
        self.sessions.values()
    }

    /// The session with this SESSION_ID.
    pub fn session(&self, session_id: u16) -> Option<&Session> {
        self.sessions.get(&session_id)
    }

    /// The session with this SESSION_ID if it belongs to `mac`: how to
    /// check a Session-stage frame (RFC 2516 §4: the SESSION_ID is unique
    /// only with the pair of MAC addresses).
    pub fn session_of(&self, mac: Address, session_id: u16) -> Option<&Session> {
        self.sessions.get(&session_id).filter(|s| s.mac == mac)
    }

    /// How many sessions are confirmed.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Take one whole Ethernet frame from the access port. Returns whether
    /// it was PPPoE Discovery (EtherType 0x8863), answered or dropped;
    /// other frames are left alone and not counted.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        let received = match read_frame(frame) {
            Ok(r) => r,
            Err(ReadError::NotDiscovery) => return false,
            Err(ReadError::Malformed) => {
                self.drop_frame(DropReason::Malformed);
                return true;
            }
        };
        // RFC 2516 §4: the SOURCE_ADDR of a Discovery packet is the
        // sender's unicast address.
        if !received.src.is_unicast() {
            self.drop_frame(DropReason::BadSource);
            return true;
        }
        match received.packet.code {
            Code::Padi => self.handle_padi(now, &received),
            Code::Padr => self.handle_padr(now, &received),
            Code::Padt => self.handle_padt(&received),
            _ => self.drop_frame(DropReason::UnexpectedCode),
        }
        true
    }

    /// The next Ethernet frame to send on the access port, into `buf`
    /// (cleared first). Returns false if there is none.
    pub fn poll_frame(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.transmit.pop_front() {
            Some(frame) => {
                buf.clear();
                buf.extend_from_slice(&frame);
                true
            }
            None => false,
        }
    }

    /// The next thing the LAC has to act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The server keeps no timers (cookies and rate limits are computed
    /// from `now` when a frame comes): always `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Nothing to do; here for the common shape.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// End a session from our side (the LNS hung up, an operator cleared
    /// it): send the subscriber a PADT (RFC 2516 §5.5) and forget the
    /// session. With `mac`, the session must belong to it. Returns whether
    /// there was such a session. No event is reported: the caller knows.
    pub fn terminate(&mut self, now: Instant, mac: Option<Address>, session_id: u16) -> bool {
        let _ = now;
        let Some(session) = self.sessions.get(&session_id) else {
            return false;
        };
        if mac.is_some_and(|m| m != session.mac) {
            return false;
        }
        let padt = DiscoveryRepr {
            code: Code::Padt,
            session_id,
            // No tag is required (RFC 2516 §5.5); the Host-Uniq tells
            // apart hosts that share a MAC address.
            tags: std::iter::once(Tag::AcName(self.config.ac_name.as_bytes()))
                .chain(session.host_uniq.as_deref().map(Tag::HostUniq))
                .collect(),
        };
        let mut frame = Vec::new();
        if write_frame(
            &mut frame,
            session.mac,
            self.config.mac,
            (session.outer_tag, session.inner_tag),
            &padt,
        ) {
            self.transmit.push_back(frame);
            self.stats.padt_sent += 1;
        }
        self.forget(session_id);
        true
    }

    /// End every session with a PADT (the LAC is shutting down). Returns
    /// how many there were.
    pub fn terminate_all(&mut self, now: Instant) -> usize {
        let ids: Vec<u16> = self.sessions.keys().copied().collect();
        for &id in &ids {
            self.terminate(now, None, id);
        }
        ids.len()
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.stats.drops[reason.index()] += 1;
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.stats.refusals[refusal.index()] += 1;
    }

    /// Whether we offer `requested` (RFC 2516 §5.2: an empty Service-Name
    /// asks for any service).
    fn offers(&self, requested: &[u8]) -> bool {
        requested.is_empty()
            || self.config.service_names.is_empty()
            || self
                .config
                .service_names
                .iter()
                .any(|s| s.as_bytes() == requested)
    }

    /// The reply to `received` as a frame; `None` if it is too large.
    fn reply(&self, received: &Received<'_>, packet: &DiscoveryRepr<'_>) -> Option<Vec<u8>> {
        let mut frame = Vec::new();
        write_frame(
            &mut frame,
            received.src,
            self.config.mac,
            (received.outer_tag, received.inner_tag),
            packet,
        )
        .then_some(frame)
    }

    /// Queue a reply made by [`Self::reply`]; returns whether there was one.
    fn send(&mut self, frame: Option<Vec<u8>>) -> bool {
        match frame {
            Some(frame) => {
                self.transmit.push_back(frame);
                true
            }
            None => {
                self.drop_frame(DropReason::ReplyTooLarge);
                false
            }
        }
    }

    /// RFC 2516 §5.1 and §5.2.
    fn handle_padi(&mut self, now: Instant, received: &Received<'_>) {
        self.stats.padi_received += 1;
        // §5.1: the PADI goes to the broadcast address; accepting one sent
        // to us as well costs nothing.
        if !(received.dst.is_broadcast() || received.dst == self.config.mac) {
            self.drop_frame(DropReason::BadDestination);
            return;
        }
        // The per-MAC bucket first, so that one flooding host is stopped
        // before it uses up the port's tokens.
        if !self.take_per_mac_token(received.src, now) {
            self.drop_frame(DropReason::PadiRateLimitedPerMac);
            return;
        }
        if !self.padi_bucket.take(self.config.padi_limit, now) {
            self.drop_frame(DropReason::PadiRateLimited);
            return;
        }
        if received.packet.session_id != 0 {
            // §5.1: SESSION_ID MUST be 0x0000.
            self.drop_frame(DropReason::BadTags);
            return;
        }
        let Some(request) = Request::read(&received.packet.tags) else {
            self.drop_frame(DropReason::BadTags);
            return;
        };
        // §5.2: "If the Access Concentrator can not serve the PADI it MUST
        // NOT respond with a PADO."
        if !self.offers(request.service_name) {
            self.drop_frame(DropReason::ServiceNotOffered);
            return;
        }
        // Nor when it is full (rp-pppoe's `-i`): the host keeps looking,
        // maybe for another AC, instead of being refused at PADR.
        if self.sessions.len() >= self.config.max_sessions.min(0xfffe) {
            self.drop_frame(DropReason::NoFreeSession);
            return;
        }
        let cookie = self.make_cookie(received.src, now);
        // §5.2: one AC-Name, a Service-Name identical to the PADI's, and
        // any number of other Service-Names we offer.
        let mut tags = vec![
            Tag::AcName(self.config.ac_name.as_bytes()),
            Tag::ServiceName(request.service_name),
        ];
        tags.extend(
            self.config
                .service_names
                .iter()
                .map(|s| s.as_bytes())
                .filter(|s| *s != request.service_name)
                .map(Tag::ServiceName),
        );
        tags.push(Tag::AcCookie(&cookie));
        tags.extend(request.echoes());
        let pado = DiscoveryRepr {
            code: Code::Pado,
            session_id: 0,
            tags,
        };
        let frame = self.reply(received, &pado);
        if self.send(frame) {
            self.stats.pado_sent += 1;
        }
    }

    /// RFC 2516 §5.3 and §5.4.
    fn handle_padr(&mut self, now: Instant, received: &Received<'_>) {
        self.stats.padr_received += 1;
        // §5.3: the PADR is sent unicast to the AC that sent the PADO.
        if received.dst != self.config.mac {
            self.drop_frame(DropReason::BadDestination);
            return;
        }
        if received.packet.session_id != 0 {
            self.drop_frame(DropReason::BadTags);
            return;
        }
        let Some(request) = Request::read(&received.packet.tags) else {
            self.drop_frame(DropReason::BadTags);
            return;
        };
        // The cookie first: nothing below, not even an error about the
        // service, is for a host that did not see our PADO. RFC 2516 does
        // not say how to refuse a bad cookie; rp-pppoe's pppoe-server drops
        // the PADR without an answer ("Drop it -- do not send error PADS"),
        // and so do we: a forged PADR then costs one HMAC and no frame out.
        // An honest client whose cookie expired retransmits, then starts
        // over with a PADI (RFC 2516 §5) and gets a fresh cookie.
        let cookie = request.cookie.unwrap_or_default();
        if let Err(refusal) = self.check_cookie(received.src, cookie, now) {
            self.refuse(refusal);
            return;
        }
        // A retransmitted PADR (our PADS was lost): same MAC, same cookie,
        // same Host-Uniq. Resend the same PADS, allocate nothing.
        let held: &[u16] = self.per_mac.get(&received.src).map_or(&[], Vec::as_slice);
        let again = held
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .find(|s| {
                s.host_uniq.as_deref() == request.host_uniq && bool::from(s.cookie.ct_eq(cookie))
            });
        if let Some(session) = again {
            let frame = session.pads.clone();
            self.transmit.push_back(frame);
            self.stats.pads_sent += 1;
            self.stats.pads_resent += 1;
            return;
        }
        // §5.4: "If the Access Concentrator does not like the Service-Name
        // in the PADR, then it MUST reply with a PADS containing a TAG of
        // TAG_TYPE Service-Name-Error ... the SESSION_ID MUST be set to
        // 0x0000."
        if !self.offers(request.service_name) {
            self.send_error_pads(
                received,
                &request,
                Tag::ServiceNameError(b"service not offered"),
            );
            self.refuse(Refusal::ServiceName);
            return;
        }
        let held = self.per_mac.get(&received.src).map_or(0, Vec::len);
        if held >= self.config.max_sessions_per_mac {
            self.send_error_pads(
                received,
                &request,
                Tag::AcSystemError(b"too many sessions for this MAC address"),
            );
            self.refuse(Refusal::MacLimit);
            return;
        }
        let session_id = match self.allocate_session_id() {
            Some(id) if self.sessions.len() < self.config.max_sessions => id,
            _ => {
                // Appendix A: AC-System-Error "indicates that the Access
                // Concentrator experienced some error in performing the
                // Host request. (For example insufficient resources)".
                self.send_error_pads(
                    received,
                    &request,
                    Tag::AcSystemError(b"session limit reached"),
                );
                self.refuse(Refusal::SessionLimit);
                return;
            }
        };
        let mut tags = vec![
            Tag::AcName(self.config.ac_name.as_bytes()),
            Tag::ServiceName(request.service_name),
        ];
        tags.extend(request.echoes());
        let pads = DiscoveryRepr {
            code: Code::Pads,
            session_id,
            tags,
        };
        let mut frame = Vec::new();
        if !write_frame(
            &mut frame,
            received.src,
            self.config.mac,
            (received.outer_tag, received.inner_tag),
            &pads,
        ) {
            self.drop_frame(DropReason::ReplyTooLarge);
            return;
        }
        self.transmit.push_back(frame.clone());
        self.stats.pads_sent += 1;
        self.stats.sessions_opened += 1;
        let service_name = String::from_utf8_lossy(request.service_name).into_owned();
        let host_uniq = request.host_uniq.map(<[u8]>::to_vec);
        let (agent_circuit_id, agent_remote_id) = bbf_agent_ids(&received.packet.tags);
        self.sessions.insert(
            session_id,
            Session {
                mac: received.src,
                session_id,
                service_name: service_name.clone(),
                host_uniq: host_uniq.clone(),
                since: now,
                outer_tag: received.outer_tag,
                inner_tag: received.inner_tag,
                agent_circuit_id: agent_circuit_id.clone(),
                agent_remote_id: agent_remote_id.clone(),
                pads: frame,
                cookie: cookie.to_vec(),
            },
        );
        self.per_mac
            .entry(received.src)
            .or_default()
            .push(session_id);
        self.events.push_back(Event::SessionRequested {
            mac: received.src,
            session_id,
            service_name,
            host_uniq,
            relay_session_id: request.relay_session_id.map(<[u8]>::to_vec),
            agent_circuit_id,
            agent_remote_id,
            ppp_max_payload: request.ppp_max_payload,
        });
    }

    /// RFC 2516 §5.5: "a PADT ... may be sent anytime after a session is
    /// established"; it needs no answer.
    fn handle_padt(&mut self, received: &Received<'_>) {
        if received.dst != self.config.mac {
            self.drop_frame(DropReason::BadDestination);
            return;
        }
        let session_id = received.packet.session_id;
        // The SESSION_ID is only unique with the MAC address (§4): a PADT
        // from another host must not end this one's session.
        if self
            .sessions
            .get(&session_id)
            .is_none_or(|s| s.mac != received.src)
        {
            self.drop_frame(DropReason::UnknownSession);
            return;
        }
        self.stats.padt_received += 1;
        self.forget(session_id);
        self.events.push_back(Event::SessionTerminated {
            mac: received.src,
            session_id,
        });
    }

    /// A PADS with SESSION_ID 0 and an error tag (§5.4).
    fn send_error_pads(&mut self, received: &Received<'_>, request: &Request<'_>, error: Tag<'_>) {
        let mut tags = vec![
            Tag::AcName(self.config.ac_name.as_bytes()),
            Tag::ServiceName(request.service_name),
            error,
        ];
        tags.extend(request.echoes());
        let pads = DiscoveryRepr {
            code: Code::Pads,
            session_id: 0,
            tags,
        };
        let frame = self.reply(received, &pads);
        self.send(frame);
    }

    fn forget(&mut self, session_id: u16) {
        if let Some(session) = self.sessions.remove(&session_id) {
            self.stats.sessions_closed += 1;
            if let Some(ids) = self.per_mac.get_mut(&session.mac) {
                ids.retain(|&id| id != session_id);
                if ids.is_empty() {
                    self.per_mac.remove(&session.mac);
                }
            }
        }
    }

    /// The next free SESSION_ID after the last one given, in 1..=0xfffe
    /// (RFC 2516 §4: 0xffff is reserved; 0 means no session).
    fn allocate_session_id(&mut self) -> Option<u16> {
        if self.sessions.len() >= 0xfffe {
            return None;
        }
        let mut id = self.next_session_id;
        loop {
            if !(1..=0xfffe).contains(&id) {
                id = 1;
            }
            if !self.sessions.contains_key(&id) {
                self.next_session_id = id.wrapping_add(1);
                return Some(id);
            }
            id = id.wrapping_add(1);
        }
    }

    fn take_per_mac_token(&mut self, mac: Address, now: Instant) -> bool {
        let limit = self.config.padi_limit_per_mac;
        if limit.per_second == 0 {
            return true;
        }
        if self.padi_buckets.len() >= self.per_mac_prune_at {
            // A full bucket is the same as no bucket: forget those, and
            // look again when the map has doubled.
            self.padi_buckets.retain(|_, b| {
                b.refill(limit, now);
                !b.is_full(limit)
            });
            self.per_mac_prune_at = (self.padi_buckets.len() * 2).max(PER_MAC_BUCKETS_SOFT_MAX);
        }
        self.padi_buckets
            .entry(mac)
            .or_insert_with(|| Bucket::full(limit, now))
            .take(limit, now)
    }

    /// Seconds of `now`, the clock of the cookies.
    fn cookie_clock(now: Instant) -> u32 {
        u32::try_from(now.as_nanos() / 1_000_000_000).unwrap_or(u32::MAX)
    }

    fn cookie_mac(&self, mac: Address, issued: &[u8]) -> [u8; 16] {
        // HMAC keys of any length are accepted; the error cannot happen.
        let mut hmac = match Hmac::<Md5>::new_from_slice(&self.secret) {
            Ok(h) => h,
            Err(_) => return [0; 16],
        };
        hmac.update(mac.as_bytes());
        hmac.update(issued);
        hmac.finalize().into_bytes().into()
    }

    /// An AC-Cookie for `mac`: issue time and counter, then the HMAC of
    /// both with the MAC address under our secret. The counter makes each
    /// PADO's cookie unique, so that a PADR repeating it is a
    /// retransmission.
    fn make_cookie(&mut self, mac: Address, now: Instant) -> [u8; COOKIE_LEN] {
        self.cookie_counter = self.cookie_counter.wrapping_add(1);
        let mut cookie = [0u8; COOKIE_LEN];
        cookie[..4].copy_from_slice(&Self::cookie_clock(now).to_be_bytes());
        cookie[4..8].copy_from_slice(&self.cookie_counter.to_be_bytes());
        let tag = self.cookie_mac(mac, &cookie[..8]);
        cookie[8..].copy_from_slice(&tag);
        cookie
    }

    fn check_cookie(&self, mac: Address, cookie: &[u8], now: Instant) -> Result<(), Refusal> {
        if cookie.len() != COOKIE_LEN {
            return Err(Refusal::BadCookie);
        }
        let expected = self.cookie_mac(mac, &cookie[..8]);
        if !bool::from(expected.ct_eq(&cookie[8..])) {
            return Err(Refusal::BadCookie);
        }
        let issued = u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
        let age = u64::from(Self::cookie_clock(now).saturating_sub(issued));
        if issued > Self::cookie_clock(now) || age > self.config.cookie_lifetime.as_secs() {
            return Err(Refusal::ExpiredCookie);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::ethernet::{self, EtherType};
    use dataplane::wire::pppoe::Packet;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const AC: Address = Address([0x02, 0xac, 0, 0, 0, 1]);
    const SUB: Address = Address([0x02, 0x50, 0, 0, 0, 1]);

    fn server(config: ServerConfig) -> Server {
        Server::new(
            ServerConfig { mac: AC, ..config },
            Instant::ZERO,
            &mut ChaCha8Rng::seed_from_u64(1),
        )
    }

    fn frame(
        dst: Address,
        src: Address,
        tags: (Option<VlanTag>, Option<VlanTag>),
        packet: &DiscoveryRepr<'_>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(write_frame(&mut out, dst, src, tags, packet));
        out
    }

    fn padi(tags: Vec<Tag<'_>>) -> DiscoveryRepr<'_> {
        DiscoveryRepr {
            code: Code::Padi,
            session_id: 0,
            tags,
        }
    }

    fn answer(s: &mut Server, f: &[u8]) -> Option<Vec<u8>> {
        assert!(s.handle_frame(Instant::ZERO, f));
        let mut buf = Vec::new();
        s.poll_frame(&mut buf).then_some(buf)
    }

    #[test]
    fn token_bucket_refills_lazily() {
        let limit = RateLimit {
            per_second: 4,
            burst: 2,
        };
        let t0 = Instant::from_nanos(5_000_000_000);
        let mut b = Bucket::full(limit, t0);
        assert!(b.take(limit, t0) && b.take(limit, t0) && !b.take(limit, t0));
        // 4 a second: one token every 250 ms.
        assert!(!b.take(limit, t0 + Duration::from_millis(249)));
        assert!(b.take(limit, t0 + Duration::from_millis(250)));
        // A long pause fills it to the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(limit, later) && b.take(limit, later) && !b.take(limit, later));
        // Time going backwards earns nothing.
        assert!(!b.take(limit, t0));
        let mut free = Bucket::full(RateLimit::UNLIMITED, t0);
        assert!((0..1000).all(|_| free.take(RateLimit::UNLIMITED, t0)));
    }

    #[test]
    fn session_ids_wrap_and_skip_reserved_values() {
        let mut s = server(ServerConfig::default());
        s.next_session_id = 0xfffe;
        assert_eq!(s.allocate_session_id(), Some(0xfffe));
        // 0xffff and 0 are skipped.
        assert_eq!(s.allocate_session_id(), Some(1));
        s.next_session_id = 0;
        assert_eq!(s.allocate_session_id(), Some(1));
    }

    #[test]
    fn bbf_sub_options() {
        let data = [1, 3, b'a', b'b', b'c', 2, 1, b'r', 9, 0, 1, 200, b'x'];
        let tags = [Tag::VendorSpecific {
            vendor_id: dataplane::wire::pppoe::VENDOR_ID_BBF,
            data: &data,
        }];
        assert_eq!(
            bbf_agent_ids(&tags),
            (Some(b"abc".to_vec()), Some(b"r".to_vec()))
        );
        let other = [Tag::VendorSpecific {
            vendor_id: 9,
            data: &data,
        }];
        assert_eq!(bbf_agent_ids(&other), (None, None));
    }

    #[test]
    fn bad_padis_are_dropped_by_reason() {
        let mut s = server(ServerConfig::default());
        let none = (None, None);
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (
                frame(Address::BROADCAST, SUB, none, &padi(vec![])),
                DropReason::BadTags,
            ),
            (
                frame(
                    Address::BROADCAST,
                    SUB,
                    none,
                    &padi(vec![Tag::ServiceName(b""), Tag::ServiceName(b"x")]),
                ),
                DropReason::BadTags,
            ),
            (
                frame(
                    Address::BROADCAST,
                    SUB,
                    none,
                    &DiscoveryRepr {
                        code: Code::Padi,
                        session_id: 7,
                        tags: vec![Tag::ServiceName(b"")],
                    },
                ),
                DropReason::BadTags,
            ),
            (
                frame(
                    Address::BROADCAST,
                    Address::BROADCAST,
                    none,
                    &padi(vec![Tag::ServiceName(b"")]),
                ),
                DropReason::BadSource,
            ),
            (
                frame(
                    Address([0x02, 9, 9, 9, 9, 9]),
                    SUB,
                    none,
                    &padi(vec![Tag::ServiceName(b"")]),
                ),
                DropReason::BadDestination,
            ),
            (
                frame(
                    AC,
                    SUB,
                    none,
                    &DiscoveryRepr {
                        code: Code::Pado,
                        session_id: 0,
                        tags: vec![],
                    },
                ),
                DropReason::UnexpectedCode,
            ),
            (
                frame(
                    Address::BROADCAST,
                    SUB,
                    none,
                    &DiscoveryRepr {
                        code: Code::Padr,
                        session_id: 0,
                        tags: vec![Tag::ServiceName(b"")],
                    },
                ),
                DropReason::BadDestination,
            ),
            (
                frame(
                    AC,
                    SUB,
                    none,
                    &DiscoveryRepr {
                        code: Code::Padt,
                        session_id: 5,
                        tags: vec![],
                    },
                ),
                DropReason::UnknownSession,
            ),
        ];
        for (f, reason) in cases {
            let before = s.stats().dropped(reason);
            assert_eq!(answer(&mut s, &f), None, "{reason:?}");
            assert_eq!(s.stats().dropped(reason), before + 1, "{reason:?}");
        }
        // A Host-Uniq so large that the PADO would not fit a frame.
        let huge = [7u8; 1480];
        let f = frame(
            Address::BROADCAST,
            SUB,
            none,
            &padi(vec![Tag::ServiceName(b""), Tag::HostUniq(&huge)]),
        );
        assert_eq!(answer(&mut s, &f), None);
        assert_eq!(s.stats().dropped(DropReason::ReplyTooLarge), 1);
        assert_eq!(s.stats().pado_sent, 0);
    }

    #[test]
    fn vlan_tags_are_echoed() {
        let mut s = server(ServerConfig::default());
        let outer = VlanTag {
            tpid: EtherType::QinQ,
            pcp: 0,
            dei: false,
            vid: 100,
        };
        let inner = VlanTag {
            tpid: EtherType::Vlan,
            pcp: 3,
            dei: false,
            vid: 42,
        };
        let tags = (Some(outer), Some(inner));
        let f = frame(
            Address::BROADCAST,
            SUB,
            tags,
            &padi(vec![Tag::ServiceName(b""), Tag::RelaySessionId(b"relay")]),
        );
        let pado = answer(&mut s, &f).unwrap();
        let eth = ethernet::Repr::parse(&ethernet::Frame::new_checked(&pado[..]).unwrap()).unwrap();
        assert_eq!((eth.outer_tag, eth.inner_tag), tags);
        let p = Packet::new_checked(&pado[eth.buffer_len()..]).unwrap();
        let pado = DiscoveryRepr::parse(&p).unwrap();
        assert_eq!(pado.find(0x0110), Some(&Tag::RelaySessionId(b"relay")));
        let Some(Tag::AcCookie(cookie)) = pado.find(0x0104) else {
            panic!("no cookie");
        };
        let f = frame(
            AC,
            SUB,
            tags,
            &DiscoveryRepr {
                code: Code::Padr,
                session_id: 0,
                tags: vec![
                    Tag::ServiceName(b""),
                    Tag::AcCookie(cookie),
                    Tag::RelaySessionId(b"relay"),
                ],
            },
        );
        assert!(answer(&mut s, &f).is_some());
        let session = s.sessions().next().unwrap();
        assert_eq!((session.outer_tag, session.inner_tag), tags);
        let id = session.session_id;
        assert!(s.terminate(Instant::ZERO, Some(SUB), id));
        let mut padt = Vec::new();
        assert!(s.poll_frame(&mut padt));
        let eth = ethernet::Repr::parse(&ethernet::Frame::new_checked(&padt[..]).unwrap()).unwrap();
        assert_eq!(
            (eth.dst_addr, eth.outer_tag, eth.inner_tag),
            (SUB, tags.0, tags.1)
        );
    }

    #[test]
    fn per_mac_buckets_stay_bounded() {
        let mut s = server(ServerConfig {
            padi_limit: RateLimit::UNLIMITED,
            ..ServerConfig::default()
        });
        // Spoofed MACs, one PADI each, one second apart: old buckets are
        // full again and get forgotten.
        for n in 0..20_000u32 {
            let b = n.to_be_bytes();
            let src = Address([0x02, 0x77, b[0], b[1], b[2], b[3]]);
            let now = Instant::from_nanos(u64::from(n) * 1_000_000_000);
            let f = frame(
                Address::BROADCAST,
                src,
                (None, None),
                &padi(vec![Tag::ServiceName(b"")]),
            );
            s.handle_frame(now, &f);
            while s.poll_frame(&mut Vec::new()) {}
        }
        assert!(s.padi_buckets.len() <= 2 * PER_MAC_BUCKETS_SOFT_MAX);
        assert_eq!(s.stats().pado_sent, 20_000);
    }

    #[test]
    fn cookie_checks() {
        let s = server(ServerConfig::default());
        let mut s2 = server(ServerConfig::default());
        let now = Instant::from_nanos(100_000_000_000);
        let cookie = s2.make_cookie(SUB, now);
        // Same seed, same secret: the check passes; then every way to fail.
        assert_eq!(s.check_cookie(SUB, &cookie, now), Ok(()));
        assert_eq!(s.check_cookie(AC, &cookie, now), Err(Refusal::BadCookie));
        assert_eq!(
            s.check_cookie(SUB, &cookie[..23], now),
            Err(Refusal::BadCookie)
        );
        assert_eq!(
            s.check_cookie(SUB, &cookie, now + Duration::from_secs(61)),
            Err(Refusal::ExpiredCookie)
        );
        // A cookie from the future (the clock went back) is no good either.
        assert_eq!(
            s.check_cookie(SUB, &cookie, Instant::ZERO),
            Err(Refusal::ExpiredCookie)
        );
        let other = Server::new(
            ServerConfig::default(),
            Instant::ZERO,
            &mut ChaCha8Rng::seed_from_u64(2),
        );
        assert_eq!(
            other.check_cookie(SUB, &cookie, now),
            Err(Refusal::BadCookie)
        );
    }
}

//! The LNS's fast path: [`lns::Node`] events and connected calls turned
//! into worker table updates, and the workers' punts fed back to the node.
//!
//! What a session goes through (the plan's "LNS programming"):
//!
//! 1. Incoming call (ICRQ, [`ConnectedCall`]): `UpsertTunnel` (when the
//!    tunnel is new to the workers; its next hop is resolved through the
//!    kernel) and `UpsertSession` without an address, so the workers know
//!    the session's data messages and punt its PPP control frames
//!    ([`PuntReason::LnsPpp`]), which [`LnsFastpath::service`] hands to
//!    [`lns::Node::handle_ppp`]. Then a barrier; once every worker has
//!    passed it (or after 200 ms) [`lns::Node::release_call`] lets the
//!    node send its ICRP, so the LAC, which sends the subscriber's first
//!    PPP frames right after its ICCN (RFC 2661 §7.4.1), finds the workers
//!    ready. A call cleared before it came up
//!    ([`lns::Node::poll_abandoned_call`]): `RemoveSession`.
//!    A recovery call the node adopts (HA, [`lns::Node::adopted_call`]) is
//!    programmed as a whole session at once, with the subscriber's address
//!    and MRU from the offloaded state: the LAC flushes the frames it held
//!    right after the ICRP, and the core's downstream follows the gratuitous
//!    ARP, so both must find the session ready (ha-protocol §5.5).
//! 2. PPP up ([`lns::Event::SessionEstablished`]): `UpsertSession` with the
//!    subscriber's address and MRU: its IPv4 now goes through the workers
//!    both ways. [`lns::Event::SessionUpdated`] re-programs a changed
//!    address or MRU.
//!    A session address outside our own pools
//!    ([`FastpathConfig::subscriber_prefixes`]: an adopted or moved-in
//!    session keeps the address the peer's pool gave it) gets a /32 in the
//!    steering programs, so its downstream and the core's ARP requests for
//!    it reach the workers rather than the kernel; removed with the session.
//! 3. Session down ([`lns::Event::SessionDown`]): `RemoveSession`; tunnel
//!    down ([`lns::Event::TunnelDown`]): `RemoveTunnel` (the workers drop
//!    its sessions with it). A session that moved to another LNS
//!    ([`lns::EndCause::Moved`]: the LAC released it after a
//!    make-before-break switchover, or a peer fenced it) stays in the
//!    workers for [`MOVED_GRACE`]: the core keeps sending its downstream
//!    here until the new LNS's gratuitous ARP reaches it, and the LAC keeps
//!    the old ids as an alias of the new session to take exactly that.
//!
//! Every established session's address (and an address IPCP renegotiated)
//! is announced on the core port with a gratuitous ARP (RFC 5227 §3 "ARP
//! Announcement", sent [`ANNOUNCE_NUM`] times [`ANNOUNCE_INTERVAL`] apart as
//! its §2.3 says), once the workers know the session: after an HA adoption
//! the subscriber's
//! address moved to this LNS, and the core's neighbour caches must learn it
//! at once rather than when their entry for the failed LNS times out
//! (DESIGN.md §3, ha-protocol §5.5). Sending it for every session costs a
//! frame and keeps the rule simple.
//!
//! The daemon owns one [`LnsFastpath`] and calls two things in its loop:
//!
//! ```text
//! let mut fp = LnsFastpath::start(config, tunnel_address, driver.node_mut())?;
//! loop {
//!     let now = driver.now();
//!     driver.run_until(now + Duration::from_millis(1), |_node, event| {
//!         fp.program(&event);           // before logging or anything else
//!         ControlFlow::Continue(())
//!     })?;
//!     fp.service(driver.node_mut(), driver.now());
//! }
//! ```
//!
//! Replies to punted PPP frames leave through the node's own UDP socket
//! (L2TP data messages through the kernel: fine for control traffic), so
//! the driver sends them on its next run.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use std::collections::{HashMap, HashSet, VecDeque};

use dataplane::punt::{InjectTarget, PuntReason};
use dataplane::table::{SessionConfig, SessionCounters, SessionKey, Tunnel};
use dataplane::wire::{arp, ethernet};

use super::icmp::{self, IcmpError, RateLimit};
use super::{Fastpath, FastpathConfig, FastpathError, FastpathEvent};
use crate::aaa::radius::Counters;
use crate::l2tp::{SessionHandle, TunnelHandle};
use crate::lns::{self, ConnectedCall};
use crate::time::Instant;

/// The MRU a session is programmed with before LCP agreed on one
/// (RFC 1661 §6.1 default); it only matters once the session has an
/// address.
const DEFAULT_MRU: u16 = 1500;

/// How long a new call's ICRP (or a recovered session's PPP output) waits
/// for the workers to confirm they know it, at most (a stuck worker must
/// not stall every call; shorter than [`lns::ANSWER_LIMIT`]).
const RELEASE_LIMIT: Duration = Duration::from_millis(200);

/// ICMP errors a second at most, and the burst (RFC 1812 §4.3.2.8).
const ICMP_PER_SECOND: u32 = 100;
const ICMP_BURST: u32 = 50;

/// How often every session's traffic counters are read from the workers
/// and given to the node (Idle-Timeout, RADIUS accounting), by default.
pub const COUNTERS_INTERVAL: Duration = Duration::from_secs(5);
/// Sessions whose counters are asked for per service call at most, so a
/// sweep of many sessions spreads over many slices.
const QUERIES_PER_SERVICE: usize = 256;
/// Events of the fast path kept for the owner at most.
const MAX_EVENTS: usize = 1024;

/// The PPP header of IPv4 as we send it (RFC 1661 §2, RFC 1332 §2).
const PPP_IPV4: [u8; 4] = [0xff, 0x03, 0x00, 0x21];

/// Punts handled per [`LnsFastpath::service`] call at most, so one turn of
/// the control loop stays short, under a flood and in a burst of sessions
/// coming up: what a batch produces (the LSORQs of the sessions it brought
/// up, a PPP answer per frame, each a `sendto` of 10 µs or more on the lab's
/// veths) leaves when it ends, and the socket is read again only on the
/// next turn, LSORS and all. In the lab's setup of 1000 sessions the
/// offload lag's median went from ~0.5 ms at 32 (and more at 1024) to
/// ~0.2 ms at 8, with the control threads scheduled promptly.
const PUNTS_PER_SERVICE: usize = 8;

/// The core port: the LNS's interfaces are `[wan, core]`
/// ([`FastpathConfig::interfaces`]).
pub const CORE_PORT: u8 = 1;
/// Gratuitous ARPs per announced address (RFC 5227 §2.3 ANNOUNCE_NUM).
pub const ANNOUNCE_NUM: u8 = 2;
/// Between two of them (RFC 5227 §2.3 ANNOUNCE_INTERVAL).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a session that moved to another LNS keeps forwarding its
/// downstream here: past the new LNS's second announcement, in case the
/// core ignored the first (Linux takes no new MAC for an entry it updated
/// less than `locktime`, 1 s, before).
pub const MOVED_GRACE: Duration = Duration::from_millis(2500);

/// Gratuitous ARPs sent per [`LnsFastpath::service`] call at most: the
/// adoption of a thousand sessions at once must not fill the workers'
/// inject queues (1024 each), which ICMP errors share; the rest go in the
/// next slices, a millisecond apart.
const ANNOUNCEMENTS_PER_SERVICE: usize = 128;
/// Announcements waiting at most (beyond, the oldest are given up and
/// counted): a burst of adoptions is bounded by the session table anyway.
const MAX_ANNOUNCEMENTS: usize = 200_000;

/// Counters of the LNS glue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LnsFastpathStats {
    /// Calls programmed.
    pub calls: u64,
    /// Sessions programmed with their address (PPP up).
    pub established: u64,
    /// Recovery calls programmed with the adopted session's address before
    /// their ICRP (HA).
    pub adopted: u64,
    /// Sessions removed.
    pub removed: u64,
    /// Sessions that moved to another LNS (kept for [`MOVED_GRACE`]).
    pub moved: u64,
    /// Tunnels programmed.
    pub tunnels: u64,
    /// PPP frames handed to the node.
    pub ppp_punts: u64,
    /// PPP frames of sessions the node does not have (no longer, or still
    /// not after [`EARLY_FRAME_WAIT`]), dropped.
    pub ppp_unknown: u64,
    /// PPP frames the node did not know the session of when they came,
    /// held for it ([`EarlyFrames`]): those that came before their
    /// session's ICCN, and those of a session just gone (they expire into
    /// `ppp_unknown`).
    pub ppp_early: u64,
    /// Punts for next hops without a MAC address.
    pub neighbour_punts: u64,
    /// ICMP errors sent (Time Exceeded, Fragmentation Needed).
    pub icmp_sent: u64,
    /// ICMP errors not sent: rate limit, no route back, a packet that
    /// gets none (RFC 1812 §4.3.2.7), or no room in the workers.
    pub icmp_suppressed: u64,
    /// Other punts, dropped.
    pub other_punts: u64,
    /// Table updates that failed (a worker's backlog was full).
    pub update_errors: u64,
    /// Session counters read from every worker and given to the node.
    pub counters_synced: u64,
    /// Session addresses outside our pools steered to the workers now
    /// (a /32 each).
    pub foreign_addresses: u64,
    /// Steering updates for such addresses that failed.
    pub steering_errors: u64,
    /// Gratuitous ARPs sent on the core port.
    pub announcements: u64,
    /// Gratuitous ARPs not sent: the core port's MAC address unknown, no
    /// room in the workers, or too many waiting.
    pub announcements_failed: u64,
}

/// A session that moved away, still in the workers until its grace ends.
#[derive(Debug, Clone, Copy)]
struct Lingering {
    config: SessionConfig,
    /// When the grace started (the first service after the move).
    since: Option<Instant>,
}

/// A subscriber address to announce on the core side.
#[derive(Debug, Clone, Copy)]
struct Announcement {
    address: Ipv4Addr,
    /// The barrier after which the workers forward to the address (the
    /// first announcement waits for it, at most [`RELEASE_LIMIT`]).
    barrier: Option<u64>,
    /// When it was queued (first) or is due (repeats).
    at: Instant,
    /// Announcements still to send.
    left: u8,
}

/// A session counters query waiting for every worker's answer.
#[derive(Debug, Clone, Copy)]
struct CountersQuery {
    session: SessionHandle,
    answers: usize,
    sum: SessionCounters,
}

/// A tunnel as programmed.
#[derive(Debug, Clone, Copy)]
struct ProgrammedTunnel {
    tunnel: Tunnel,
    sessions: usize,
}

/// The LNS's fast path: a [`Fastpath`] and what was programmed into it.
#[derive(Debug)]
pub struct LnsFastpath {
    fp: Fastpath,
    /// Our tunnel endpoint, for calls that do not say.
    local: SocketAddrV4,
    tunnels: HashMap<TunnelHandle, ProgrammedTunnel>,
    sessions: HashMap<SessionHandle, SessionConfig>,
    /// Sessions by subscriber address, for ICMP errors to subscribers.
    by_address: HashMap<Ipv4Addr, SessionKey>,
    /// Our pools as the steering programs have them.
    own_prefixes: Vec<(Ipv4Addr, u8)>,
    /// Session addresses outside them, each steered as a /32.
    foreign: HashSet<Ipv4Addr>,
    icmp_limit: RateLimit,
    counters_interval: Duration,
    /// Sessions whose counters are still to be asked for in this sweep.
    to_query: VecDeque<SessionHandle>,
    next_sweep: Option<Instant>,
    queries: HashMap<u64, CountersQuery>,
    /// Fast-path events that are not the glue's, for the owner.
    events: VecDeque<FastpathEvent>,
    /// Calls programmed whose PPP output the node holds, with the barrier
    /// that says the workers know them and when they were programmed.
    unreleased: Vec<(SessionHandle, Option<u64>, Instant)>,
    /// Addresses of sessions just established, to announce once a barrier
    /// says the workers know them.
    to_announce: Vec<Ipv4Addr>,
    /// First announcements, waiting for their barrier (in barrier order).
    announcing: VecDeque<Announcement>,
    /// Repeated announcements, in the order they are due.
    reannouncing: VecDeque<Announcement>,
    /// Sessions that moved away, in the order they did.
    lingering: VecDeque<Lingering>,
    /// PPP frames of sessions the node does not know yet.
    early: EarlyFrames,
    stats: LnsFastpathStats,
}

/// Punted PPP frames of sessions the node does not know yet, oldest first.
///
/// The workers know a call from its ICRP on, the node from the ICCN. A LAC
/// is established once it has sent the ICCN (RFC 2661 §7.4.1) and may send
/// the subscriber's first frames right behind it; the ICCN comes through
/// the kernel to the L2TP socket, the frames through a worker's punt queue:
/// two queues, read one after the other, so a frame can be read before the
/// ICCN that came ahead of it. Dropped, it would cost the subscriber its
/// restart timer (3 s, RFC 1661 §4.6); held, it goes to the node once the
/// ICCN is in, and a session's frames keep their order. (Our own LAC waits
/// for the ICCN's acknowledgement before it sends data; others need not.)
#[derive(Debug, Default)]
struct EarlyFrames {
    frames: VecDeque<EarlyFrame>,
}

#[derive(Debug)]
struct EarlyFrame {
    key: SessionKey,
    at: Instant,
    frame: Vec<u8>,
}

/// What [`EarlyFrames::hold`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Held,
    /// [`MAX_EARLY_FRAMES`] are waiting already: dropped.
    Full,
}

impl EarlyFrames {
    /// Whether frames of `key` wait (a newer one must go behind them).
    fn waiting(&self, key: SessionKey) -> bool {
        self.frames.iter().any(|e| e.key == key)
    }

    fn hold(&mut self, key: SessionKey, now: Instant, frame: &[u8]) -> Held {
        if self.frames.len() >= MAX_EARLY_FRAMES {
            return Held::Full;
        }
        self.frames.push_back(EarlyFrame {
            key,
            at: now,
            frame: frame.to_vec(),
        });
        Held::Held
    }

    /// Offers each waiting frame, in order, to `deliver` (which says
    /// whether the node took it); a session's later frames stay behind one
    /// not taken. Frames that waited [`EARLY_FRAME_WAIT`] go; returns how
    /// many.
    fn deliver(&mut self, now: Instant, mut deliver: impl FnMut(SessionKey, &[u8]) -> bool) -> u64 {
        let mut expired = 0;
        let mut waiting = VecDeque::new();
        while let Some(e) = self.frames.pop_front() {
            let behind = waiting.iter().any(|w: &EarlyFrame| w.key == e.key);
            if !behind && deliver(e.key, &e.frame) {
                continue;
            }
            if now.saturating_duration_since(e.at) >= EARLY_FRAME_WAIT {
                expired += 1;
            } else {
                waiting.push_back(e);
            }
        }
        self.frames = waiting;
        expired
    }
}

/// How long an early frame waits for its session at most: the ICCN is
/// already on its way, so a few turns of the loop; past this the session
/// is not coming (or is gone) and the frame is dropped.
const EARLY_FRAME_WAIT: Duration = Duration::from_millis(200);
/// Early frames held at most, for all sessions together (a frame is at most
/// an MRU, so this bounds the memory).
const MAX_EARLY_FRAMES: usize = 256;

impl LnsFastpath {
    /// Start the workers ([`Fastpath::start`], in the calling thread's
    /// network namespace) and have `node` report its connected calls.
    /// `local` is our L2TP address and port as the LACs send to it
    /// (`10.0.0.11:1701`); it should be one of `config.local_addresses`.
    pub fn start(
        config: FastpathConfig,
        local: SocketAddrV4,
        node: &mut lns::Node,
    ) -> Result<LnsFastpath, FastpathError> {
        if local.ip().is_unspecified() {
            return Err(FastpathError::Config(format!(
                "tunnel address {local}: the workers match L2TP by our address and port, \
                 so give the specific address the LACs send to (not 0.0.0.0)"
            )));
        }
        let fp = Fastpath::start(config)?;
        Ok(LnsFastpath::with_fastpath(fp, local, node))
    }

    /// As [`LnsFastpath::start`], over a fast path already running.
    pub fn with_fastpath(fp: Fastpath, local: SocketAddrV4, node: &mut lns::Node) -> LnsFastpath {
        node.report_connected_calls(true);
        let own_prefixes = fp.config().subscriber_prefixes.clone();
        LnsFastpath {
            fp,
            local,
            tunnels: HashMap::new(),
            sessions: HashMap::new(),
            by_address: HashMap::new(),
            own_prefixes,
            foreign: HashSet::new(),
            icmp_limit: RateLimit::new(ICMP_PER_SECOND, ICMP_BURST),
            counters_interval: COUNTERS_INTERVAL,
            to_query: VecDeque::new(),
            next_sweep: None,
            queries: HashMap::new(),
            events: VecDeque::new(),
            unreleased: Vec::new(),
            to_announce: Vec::new(),
            announcing: VecDeque::new(),
            reannouncing: VecDeque::new(),
            lingering: VecDeque::new(),
            early: EarlyFrames::default(),
            stats: LnsFastpathStats::default(),
        }
    }

    /// The fast path (reports, barriers, stop).
    pub fn fastpath(&mut self) -> &mut Fastpath {
        &mut self.fp
    }

    /// Counters of the glue.
    pub fn stats(&self) -> LnsFastpathStats {
        self.stats
    }

    /// Read every session's counters from the workers this often (default
    /// [`COUNTERS_INTERVAL`]); the node gets them with
    /// [`lns::Node::set_counters`] (Idle-Timeout, RADIUS accounting).
    pub fn set_counters_interval(&mut self, interval: Duration) {
        self.counters_interval = interval;
    }

    /// The next fast-path event the glue does not handle itself (barriers
    /// of the owner, refused updates, session counters it asked for).
    pub fn poll_event(&mut self) -> Option<FastpathEvent> {
        self.events.pop_front()
    }

    /// Whether calls wait for their release, or addresses for their first
    /// announcement, behind a barrier the workers answer in their own time:
    /// the owner should call [`LnsFastpath::service`] again soon (lnsd's
    /// 1 ms slices do; a simulation has no other timer to wake it).
    pub fn waiting_for_workers(&self) -> bool {
        !self.unreleased.is_empty() || !self.to_announce.is_empty() || !self.announcing.is_empty()
    }

    /// Sessions programmed (with or without an address yet).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// What the workers hold for `session`.
    pub fn session(&self, session: SessionHandle) -> Option<&SessionConfig> {
        self.sessions.get(&session)
    }

    /// Apply one node event to the tables (session up with its address,
    /// session or tunnel down). Events that change nothing are ignored.
    pub fn program(&mut self, event: &lns::Event) {
        let result = match event {
            lns::Event::SessionEstablished(s) => {
                self.stats.established += 1;
                let mut result = Ok(());
                if !self.sessions.contains_key(&s.session) {
                    // A session whose call we never saw connect (the node
                    // reported calls before we were attached, or it was
                    // adopted): the established session says enough.
                    result = self.upsert_call(&ConnectedCall {
                        session: s.session,
                        tunnel_id: s.tunnel_ids.0,
                        peer_tunnel_id: s.tunnel_ids.1,
                        session_id: s.local_session_id,
                        peer_session_id: s.peer_session_id,
                        remote: s.remote,
                        local: None,
                        sequencing: false,
                    });
                }
                let result =
                    result.and(self.readdress(s.session, Some(s.address), s.subscriber_mru()));
                // An adopted session is announced here, once it is up, and
                // not when it is programmed before its ICRP: in a planned
                // move the old LNS still forwards, and the LAC knows the
                // new ids only from the ICRP on, so downstream drawn here
                // earlier would be lost at the LAC (CI's planned switchover
                // lost 2 of 3999 that way).
                if s.adopted_epoch.is_some() {
                    tracing::debug!(
                        address = %s.address,
                        tunnel = s.session.tunnel.0,
                        session = s.session.id,
                        "adopted session: announcing its address on the core side"
                    );
                }
                self.announce(s.address);
                result
            }
            lns::Event::SessionUpdated { session, link } => {
                let address = link.peer_ipv4();
                let before = self.sessions.get(session).and_then(|c| c.subscriber_addr);
                let result = self.readdress(*session, address, link.lcp_peer.mru);
                // A new address (IPCP renegotiated) is announced as a new
                // session's is: the core may have the old owner cached.
                if let Some(new) = address.filter(|a| before.is_some_and(|b| b != *a)) {
                    self.announce(new);
                }
                result
            }
            lns::Event::SessionDown(ended)
                if matches!(ended.cause, lns::EndCause::Moved { .. }) =>
            {
                self.linger(ended.session);
                Ok(())
            }
            lns::Event::SessionDown(ended) => self.remove_session(ended.session),
            lns::Event::TunnelDown { tunnel, .. } => self.remove_tunnel(*tunnel),
            _ => Ok(()),
        };
        self.count(result);
    }

    /// Program a connected call: its tunnel (if new) and the session
    /// without an address.
    pub fn program_call(&mut self, call: &ConnectedCall) {
        self.stats.calls += 1;
        let result = self.upsert_call(call);
        self.count(result);
    }

    /// Queue gratuitous ARPs for `address` (see the module documentation):
    /// sent by [`LnsFastpath::service`] once the workers know the session.
    pub fn announce(&mut self, address: Ipv4Addr) {
        if self.to_announce.len() + self.announcing.len() + self.reannouncing.len()
            >= MAX_ANNOUNCEMENTS
        {
            self.stats.announcements_failed += 1;
            return;
        }
        self.to_announce.push(address);
    }

    /// Send the announcements that are due: the first once its barrier
    /// passed (or waited [`RELEASE_LIMIT`]), the repeats at their time.
    /// An address no session holds any more is not announced.
    fn send_announcements(&mut self, now: Instant) {
        if !self.to_announce.is_empty() {
            let barrier = self.fp.barrier_quiet().ok();
            for address in self.to_announce.drain(..) {
                self.announcing.push_back(Announcement {
                    address,
                    barrier,
                    at: now,
                    left: ANNOUNCE_NUM,
                });
            }
        }
        let mut budget = ANNOUNCEMENTS_PER_SERVICE;
        while let Some(&a) = self.announcing.front().filter(|_| budget > 0) {
            let known = a.barrier.is_none_or(|t| !self.fp.barrier_pending(t));
            if !known && now.saturating_duration_since(a.at) < RELEASE_LIMIT {
                break;
            }
            self.announcing.pop_front();
            budget -= 1;
            self.send_announcement(now, a);
        }
        while let Some(&a) = self.reannouncing.front().filter(|_| budget > 0) {
            if now < a.at {
                break;
            }
            self.reannouncing.pop_front();
            budget -= 1;
            self.send_announcement(now, a);
        }
    }

    fn send_announcement(&mut self, now: Instant, mut a: Announcement) {
        if !self.by_address.contains_key(&a.address) {
            // The session went down (or moved) meanwhile.
            return;
        }
        let sent = self.fp.port_mac(CORE_PORT).is_some_and(|mac| {
            self.fp.inject(
                InjectTarget::Port(CORE_PORT),
                &gratuitous_arp(mac, a.address),
            )
        });
        if sent {
            self.stats.announcements += 1;
        } else {
            self.stats.announcements_failed += 1;
        }
        a.left = a.left.saturating_sub(1);
        if a.left > 0 {
            a.at = now + ANNOUNCE_INTERVAL;
            a.barrier = None;
            self.reannouncing.push_back(a);
        }
    }

    fn count(&mut self, result: Result<(), FastpathError>) {
        if let Err(e) = result {
            self.stats.update_errors += 1;
            tracing::error!(error = %e, "fast path not programmed");
        }
    }

    fn upsert_call(&mut self, call: &ConnectedCall) -> Result<(), FastpathError> {
        let tunnel = Tunnel {
            tunnel_id: call.tunnel_id,
            peer_tunnel_id: call.peer_tunnel_id,
            local: call.local.unwrap_or(self.local),
            peer: call.remote,
            next_hop: self.fp.next_hop(*call.remote.ip()),
        };
        let programmed = self.tunnels.get(&call.session.tunnel).map(|t| t.tunnel);
        // A call reported again (its ICCN asked for sequencing) is the same
        // session of the tunnel.
        let programmed_session = self.sessions.get(&call.session);
        let new_session = usize::from(programmed_session.is_none());
        // What the session already has (an adopted call's address) stays.
        let (subscriber_addr, mru) =
            programmed_session.map_or((None, DEFAULT_MRU), |c| (c.subscriber_addr, c.mru));
        if programmed != Some(tunnel) {
            self.fp.want_neighbour(tunnel.next_hop);
            self.fp.upsert_tunnel(tunnel)?;
            self.stats.tunnels += 1;
        }
        self.tunnels
            .entry(call.session.tunnel)
            .and_modify(|t| t.tunnel = tunnel)
            .or_insert(ProgrammedTunnel {
                tunnel,
                sessions: 0,
            })
            .sessions += new_session;
        let config = SessionConfig {
            key: SessionKey {
                tunnel_id: call.tunnel_id,
                session_id: call.session_id,
            },
            peer_session_id: call.peer_session_id,
            subscriber_addr,
            mru,
            sequencing: call.sequencing,
            pppoe: None,
        };
        self.sessions.insert(call.session, config);
        self.fp.upsert_session(config)
    }

    fn readdress(
        &mut self,
        session: SessionHandle,
        address: Option<Ipv4Addr>,
        mru: u16,
    ) -> Result<(), FastpathError> {
        let Some(config) = self.sessions.get_mut(&session) else {
            // Not a call we saw connect (started before the fast path).
            return Ok(());
        };
        let address = address.or(config.subscriber_addr);
        if config.subscriber_addr == address && config.mru == mru {
            return Ok(());
        }
        let old = config.subscriber_addr;
        config.subscriber_addr = address;
        config.mru = mru;
        let config = *config;
        if let Some(old) = old.filter(|&o| Some(o) != address) {
            self.by_address.remove(&old);
            self.address_gone(old);
        }
        if let Some(new) = address {
            self.by_address.insert(new, config.key);
            self.address_came(new);
        }
        self.fp.upsert_session(config)
    }

    /// A session holds `address` now: steer it to the workers if our pools
    /// do not cover it.
    fn address_came(&mut self, address: Ipv4Addr) {
        if covered(&self.own_prefixes, address) || self.foreign.contains(&address) {
            return;
        }
        match self.fp.add_subscriber_prefix(address, 32) {
            Ok(()) => {
                self.foreign.insert(address);
                self.stats.foreign_addresses = self.foreign.len() as u64;
                tracing::debug!(%address, "steering a session address outside our pools");
            }
            Err(e) => {
                self.stats.steering_errors += 1;
                tracing::error!(%address, error = %e, "session address not steered to the fast path");
            }
        }
    }

    /// No session holds `address` any more.
    fn address_gone(&mut self, address: Ipv4Addr) {
        if !self.foreign.remove(&address) {
            return;
        }
        self.stats.foreign_addresses = self.foreign.len() as u64;
        if let Err(e) = self.fp.remove_subscriber_prefix(address, 32) {
            self.stats.steering_errors += 1;
            tracing::warn!(%address, error = %e, "session address still steered");
        }
    }

    fn remove_session(&mut self, session: SessionHandle) -> Result<(), FastpathError> {
        let Some(config) = self.sessions.remove(&session) else {
            return Ok(());
        };
        self.stats.removed += 1;
        if let Some(a) = config.subscriber_addr {
            self.by_address.remove(&a);
            self.address_gone(a);
        }
        if let Some(t) = self.tunnels.get_mut(&session.tunnel) {
            t.sessions = t.sessions.saturating_sub(1);
        }
        self.fp.remove_session(config.key)
    }

    /// A session moved to another LNS: forgotten here at once (its ids and
    /// address may be given out again), kept in the workers for
    /// [`MOVED_GRACE`] ([`LnsFastpath::end_graces`]).
    fn linger(&mut self, session: SessionHandle) {
        let Some(config) = self.sessions.remove(&session) else {
            return;
        };
        self.stats.moved += 1;
        if let Some(a) = config.subscriber_addr {
            if self.by_address.get(&a) == Some(&config.key) {
                self.by_address.remove(&a);
            }
        }
        if let Some(t) = self.tunnels.get_mut(&session.tunnel) {
            t.sessions = t.sessions.saturating_sub(1);
        }
        self.lingering.push_back(Lingering {
            config,
            since: None,
        });
    }

    /// Remove the moved sessions whose grace is over, unless their ids
    /// were given to a new session meanwhile; their address stops being
    /// steered here unless a session holds it again.
    fn end_graces(&mut self, node: &lns::Node, now: Instant) {
        // New ones are at the back.
        for l in self.lingering.iter_mut().rev() {
            if l.since.is_some() {
                break;
            }
            l.since = Some(now);
        }
        let mut budget = PUNTS_PER_SERVICE;
        while let Some(&l) = self.lingering.front().filter(|_| budget > 0) {
            budget -= 1;
            if l.since
                .is_some_and(|t| now.saturating_duration_since(t) < MOVED_GRACE)
            {
                break;
            }
            self.lingering.pop_front();
            self.stats.removed += 1;
            let key = l.config.key;
            if node.session_by_ids(key.tunnel_id, key.session_id).is_none() {
                let result = self.fp.remove_session(key);
                self.count(result);
            }
            if let Some(a) = l.config.subscriber_addr {
                if !self.by_address.contains_key(&a) {
                    self.address_gone(a);
                }
            }
        }
    }

    fn remove_tunnel(&mut self, tunnel: TunnelHandle) -> Result<(), FastpathError> {
        let Some(t) = self.tunnels.remove(&tunnel) else {
            return Ok(());
        };
        let before = self.sessions.len();
        let mut gone = Vec::new();
        self.sessions.retain(|h, c| {
            let keep = h.tunnel != tunnel;
            if let (false, Some(a)) = (keep, c.subscriber_addr) {
                gone.push(a);
            }
            keep
        });
        for a in gone {
            self.by_address.remove(&a);
            self.address_gone(a);
        }
        self.stats.removed += (before - self.sessions.len()) as u64;
        self.fp.remove_tunnel(t.tunnel.tunnel_id)
    }

    /// The control loop's turn, once per slice: program the calls that
    /// connected, move queued updates and collect the workers' answers
    /// ([`Fastpath::poll`]), and hand punted PPP frames to the node (up to
    /// a bound; returns how many punts were handled, so a busy loop can
    /// come back at once).
    pub fn service(&mut self, node: &mut lns::Node, now: Instant) -> usize {
        self.program_calls(node, now);
        self.fp.poll();
        self.release_calls(node, now);
        self.send_announcements(now);
        self.end_graces(node, now);
        self.sync_counters(node, now);
        self.stats.ppp_unknown += self.early.deliver(now, |key, frame| {
            node.handle_ppp(now, key.tunnel_id, key.session_id, frame)
        });
        let mut handled = 0;
        while handled < PUNTS_PER_SERVICE {
            let Some((worker, punt)) = self.fp.poll_punt() else {
                break;
            };
            handled += 1;
            match punt.reason {
                PuntReason::LnsPpp(key) => {
                    self.stats.ppp_punts += 1;
                    let frame = punt.buffer.bytes();
                    let waiting = self.early.waiting(key);
                    if waiting || !node.handle_ppp(now, key.tunnel_id, key.session_id, frame) {
                        match self.early.hold(key, now, frame) {
                            Held::Held => self.stats.ppp_early += 1,
                            Held::Full => self.stats.ppp_unknown += 1,
                        }
                    }
                }
                PuntReason::NeighbourMissing { next_hop } => {
                    self.stats.neighbour_punts += 1;
                    self.fp.resolve_neighbour(next_hop);
                }
                PuntReason::L2tpControl => {
                    // An L2TP message the steering let through (or data
                    // of a session the workers do not know, should they
                    // punt it): the node's endpoint takes it as if it came
                    // through its socket.
                    match super::udp_datagram(punt.buffer.bytes()) {
                        Some((from, payload)) => node.handle_datagram(now, from, payload),
                        None => self.stats.other_punts += 1,
                    }
                }
                PuntReason::TimeExceeded => {
                    let gateway = node.config().gateway;
                    self.icmp(now, IcmpError::TimeExceeded, gateway, punt.buffer.bytes());
                }
                PuntReason::FragmentationNeeded { mtu } => {
                    let gateway = node.config().gateway;
                    let kind = IcmpError::FragmentationNeeded { mtu };
                    self.icmp(now, kind, gateway, punt.buffer.bytes());
                }
                _ => self.stats.other_punts += 1,
            }
            self.fp.recycle(worker, punt.buffer);
        }
        // Calls the punted frames may have completed (none today: a call
        // connects on the control channel).
        self.program_calls(node, now);
        handled
    }

    /// Answer `original` (a punted IPv4 packet) with ICMP `kind` from our
    /// subscriber-side address `src`: into the subscriber's session when
    /// it came from a subscriber, toward the core otherwise.
    fn icmp(&mut self, now: Instant, kind: IcmpError, src: Ipv4Addr, original: &[u8]) {
        let sent = self.icmp_limit.allow(now)
            && icmp::error_packet(kind, src, original).is_some_and(|error| {
                let sender = Ipv4Addr::new(error[16], error[17], error[18], error[19]);
                match self.by_address.get(&sender) {
                    Some(&key) => {
                        let frame = [&PPP_IPV4[..], &error].concat();
                        self.fp.inject(InjectTarget::LnsSession(key), &frame)
                    }
                    None => self.send_to_core(&error),
                }
            });
        if sent {
            self.stats.icmp_sent += 1;
        } else {
            self.stats.icmp_suppressed += 1;
        }
    }

    /// Send an IPv4 packet to its destination in the core, through the
    /// core gateway (or the destination itself when it is a known
    /// neighbour).
    fn send_to_core(&mut self, packet: &[u8]) -> bool {
        let Some(dst) = packet
            .get(16..20)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        else {
            return false;
        };
        let neighbours = self.fp.neighbours();
        let Some(next) = neighbours
            .get(dst)
            .or_else(|| self.fp.config().gateway.and_then(|g| neighbours.get(g)))
        else {
            return false;
        };
        let Some(our_mac) = self.fp.port_mac(next.port) else {
            return false;
        };
        let mut frame = Vec::with_capacity(ethernet::HEADER_LEN + packet.len());
        frame.extend_from_slice(&next.mac.0);
        frame.extend_from_slice(&our_mac.0);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(packet);
        self.fp.inject(InjectTarget::Port(next.port), &frame)
    }

    /// Ask the workers for the next sessions' counters, and give the node
    /// those every worker answered for.
    fn sync_counters(&mut self, node: &mut lns::Node, now: Instant) {
        while let Some(event) = self.fp.poll_event() {
            match event {
                FastpathEvent::SessionCounters {
                    token, counters, ..
                } if self.queries.contains_key(&token) => {
                    let workers = self.fp.worker_count();
                    let Some(q) = self.queries.get_mut(&token) else {
                        continue;
                    };
                    q.answers += 1;
                    if let Some(c) = counters {
                        q.sum.upstream_packets += c.upstream_packets;
                        q.sum.upstream_octets += c.upstream_octets;
                        q.sum.downstream_packets += c.downstream_packets;
                        q.sum.downstream_octets += c.downstream_octets;
                    }
                    if q.answers >= workers {
                        let q = *q;
                        self.queries.remove(&token);
                        self.stats.counters_synced += 1;
                        node.set_counters(
                            now,
                            q.session,
                            Counters {
                                input_octets: q.sum.upstream_octets,
                                output_octets: q.sum.downstream_octets,
                                input_packets: q.sum.upstream_packets,
                                output_packets: q.sum.downstream_packets,
                            },
                        );
                    }
                }
                other => {
                    if self.events.len() >= MAX_EVENTS {
                        self.events.pop_front();
                    }
                    self.events.push_back(other);
                }
            }
        }
        if self.to_query.is_empty() {
            if self.next_sweep.is_some_and(|t| now < t) {
                return;
            }
            self.next_sweep = Some(now + self.counters_interval);
            // Answers that never came (a session removed meanwhile) are
            // forgotten at the start of each sweep.
            self.queries.clear();
            self.to_query.extend(
                self.sessions
                    .iter()
                    .filter(|(_, c)| c.subscriber_addr.is_some())
                    .map(|(h, _)| *h),
            );
        }
        for _ in 0..QUERIES_PER_SERVICE {
            let Some(session) = self.to_query.pop_front() else {
                break;
            };
            let Some(config) = self.sessions.get(&session) else {
                continue;
            };
            match self.fp.query_session(config.key) {
                Ok(token) => {
                    self.queries.insert(
                        token,
                        CountersQuery {
                            session,
                            answers: 0,
                            sum: SessionCounters::default(),
                        },
                    );
                }
                Err(e) => {
                    self.stats.update_errors += 1;
                    tracing::warn!(error = %e, "session counters not asked for");
                }
            }
        }
    }

    /// Program the calls that connected, then one barrier for all of them:
    /// the node sends their PPP once the workers know them.
    fn program_calls(&mut self, node: &mut lns::Node, now: Instant) {
        let first = self.unreleased.len();
        while let Some(call) = node.poll_connected_call() {
            self.program_call(&call);
            if let Some(adopted) = node.adopted_call(call.session) {
                self.stats.adopted += 1;
                // Per call at debug: a failure switchover adopts hundreds at
                // once, and the log line costs the loop that answers them.
                tracing::debug!(
                    tunnel = call.session.tunnel.0,
                    session = call.session.id,
                    address = %adopted.address,
                    mru = adopted.mru,
                    epoch = adopted.epoch,
                    "recovery call: the adopted session is programmed before its ICRP"
                );
                let result = self.readdress(call.session, Some(adopted.address), adopted.mru);
                self.count(result);
            }
            self.unreleased.push((call.session, None, now));
        }
        if self.unreleased.len() > first {
            let token = self.fp.barrier_quiet();
            if let Err(e) = &token {
                tracing::error!(error = %e, "no barrier for new calls: releasing them unconfirmed");
            }
            for call in &mut self.unreleased[first..] {
                call.1 = token.as_ref().ok().copied();
            }
        }
        // After programming: a call may be reported and cleared in one
        // slice.
        while let Some(session) = node.poll_abandoned_call() {
            self.unreleased.retain(|&(s, ..)| s != session);
            let result = self.remove_session(session);
            self.count(result);
        }
    }

    /// Let the node answer (or send the PPP of) calls the workers know (or that waited
    /// too long).
    fn release_calls(&mut self, node: &mut lns::Node, now: Instant) {
        let fp = &self.fp;
        self.unreleased.retain(|&(session, token, since)| {
            let known = token.is_none_or(|t| !fp.barrier_pending(t));
            if known || now.saturating_duration_since(since) >= RELEASE_LIMIT {
                node.release_call(now, session);
                return false;
            }
            true
        });
    }

    /// Stop the workers (see [`Fastpath::stop`]).
    pub fn stop(&mut self) -> Vec<dataplane::update::WorkerReport> {
        self.fp.stop()
    }
}

/// Whether one of `prefixes` holds `address`.
fn covered(prefixes: &[(Ipv4Addr, u8)], address: Ipv4Addr) -> bool {
    prefixes.iter().any(|&(p, len)| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0);
        u32::from(p) & mask == u32::from(address) & mask
    })
}

/// A gratuitous ARP announcing that `address` is at `mac` (RFC 5227 §3
/// "ARP Announcement", [`arp::emit_announcement`]), broadcast, padded to
/// the shortest Ethernet frame.
pub fn gratuitous_arp(mac: ethernet::Address, address: Ipv4Addr) -> [u8; arp::ANNOUNCEMENT_LEN] {
    let mut frame = [0u8; arp::ANNOUNCEMENT_LEN];
    // The buffer is exactly ANNOUNCEMENT_LEN long: it cannot fail.
    let _ = arp::emit_announcement(mac, address, &mut frame);
    frame
}

/// Apply one node event to `fp` (the free-function form of
/// [`LnsFastpath::program`]).
pub fn program(fp: &mut LnsFastpath, event: &lns::Event) {
    fp.program(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aaa::pool::AddressPool;
    use crate::aaa::users::Users;
    use crate::aaa::{Authenticator, SessionAttributes};
    use crate::l2tp::TunnelHandle;
    use crate::ppp::{LcpOptions, LinkState, ProxyOutcome, Role as PppRole};
    use dataplane::counters::PathKind;
    use dataplane::io::memory::MemoryPort;
    use dataplane::testkit::{self, ACCESS_MAC, CORE_MAC};
    use dataplane::worker::Worker;
    use rand_chacha::rand_core::SeedableRng;

    /// A glue over one LNS worker on memory ports, and a plain node.
    fn glue() -> (LnsFastpath, lns::Node) {
        let worker: Worker<MemoryPort> = testkit::worker_with(
            testkit::config(super::super::Role::Lns, 16),
            0,
            [testkit::port(ACCESS_MAC), testkit::port(CORE_MAC)],
        );
        let config = FastpathConfig {
            subscriber_prefixes: vec![(Ipv4Addr::new(100, 64, 0, 0), 24)],
            ..FastpathConfig::new(
                super::super::Role::Lns,
                vec!["wan".into(), "core".into()],
                vec![testkit::LOCAL_ADDR],
            )
        };
        let fp = Fastpath::with_workers(config, vec![worker], Vec::new(), None).unwrap();
        let mut node = lns::Node::new(
            lns::Config::new("lns", Ipv4Addr::new(100, 64, 0, 1)),
            Authenticator::local(Users::parse("", "users").unwrap()),
            AddressPool::parse(&["100.64.0.0/24"]).unwrap(),
            Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(1)),
        )
        .unwrap();
        let local = SocketAddrV4::new(testkit::LOCAL_ADDR, 1701);
        let glue = LnsFastpath::with_fastpath(fp, local, &mut node);
        (glue, node)
    }

    fn established(address: Ipv4Addr, adopted_epoch: Option<u32>) -> lns::Event {
        established_as(7, address, adopted_epoch)
    }

    fn established_as(id: u16, address: Ipv4Addr, adopted_epoch: Option<u32>) -> lns::Event {
        let lcp = LcpOptions {
            mru: 1492,
            ..LcpOptions::default()
        };
        lns::Event::SessionEstablished(Box::new(lns::EstablishedSession {
            session: SessionHandle {
                tunnel: TunnelHandle(1),
                id: u64::from(id),
            },
            remote: SocketAddrV4::new(testkit::PEER_ADDR, 1701),
            tunnel_ids: (1, 101),
            local_session_id: id,
            peer_session_id: id + 1000,
            username: "sub".to_owned(),
            address,
            link: LinkState {
                role: PppRole::Server,
                lcp_local: LcpOptions::default(),
                lcp_peer: lcp,
                auth_method: None,
                username: None,
                ipcp: None,
                ipv6cp: None,
            },
            attributes: SessionAttributes::default(),
            acct_session_id: "1".to_owned(),
            proxy: ProxyOutcome::NotOffered,
            setup_time: Duration::ZERO,
            adopted_epoch,
        }))
    }

    /// Service the glue at `now` until `done` or a few seconds of real time.
    fn service_until(
        fp: &mut LnsFastpath,
        node: &mut lns::Node,
        now: Instant,
        done: impl Fn(&LnsFastpath) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done(fp) {
            assert!(std::time::Instant::now() < deadline, "{:?}", fp.stats());
            fp.service(node, now);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_adopted_session_is_programmed_and_announced_on_the_core_port_twice() {
        let (mut fp, mut node) = glue();
        let address = Ipv4Addr::new(100, 64, 0, 9);
        let t0 = Instant::ZERO;
        fp.program(&established(address, Some(3)));
        let h = SessionHandle {
            tunnel: TunnelHandle(1),
            id: 7,
        };
        let config = *fp.session(h).expect("programmed");
        assert_eq!(config.subscriber_addr, Some(address));
        assert_eq!(config.mru, 1492);
        // The first announcement once the workers know the session; the
        // second ANNOUNCE_INTERVAL later, not before.
        service_until(&mut fp, &mut node, t0, |fp| fp.stats().announcements == 1);
        fp.service(
            &mut node,
            t0 + (ANNOUNCE_INTERVAL - Duration::from_millis(1)),
        );
        assert_eq!(fp.stats().announcements, 1);
        service_until(&mut fp, &mut node, t0 + ANNOUNCE_INTERVAL, |fp| {
            fp.stats().announcements == 2
        });
        fp.service(&mut node, t0 + ANNOUNCE_INTERVAL * 10);
        assert_eq!(fp.stats().announcements, u64::from(ANNOUNCE_NUM));
        assert_eq!(fp.stats().announcements_failed, 0);
        let summary = fp.fastpath().fresh_reports(Duration::from_secs(5)).unwrap();
        assert_eq!(
            summary.counters.forwards(PathKind::Inject),
            u64::from(ANNOUNCE_NUM),
            "the worker sent them"
        );
        fp.stop();
    }

    #[test]
    fn a_burst_of_announcements_is_spread_over_the_service_calls() {
        let (mut fp, mut node) = glue();
        let n: u16 = 300;
        for i in 0..n {
            let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 1, 0)) + u32::from(i));
            fp.program(&established_as(i + 1, address, Some(2)));
        }
        service_until(&mut fp, &mut node, Instant::ZERO, |fp| {
            fp.stats().announcements > 0
        });
        assert!(
            fp.stats().announcements <= ANNOUNCEMENTS_PER_SERVICE as u64,
            "{:?}",
            fp.stats()
        );
        service_until(&mut fp, &mut node, Instant::ZERO, |fp| {
            fp.stats().announcements == u64::from(n)
        });
        assert_eq!(fp.stats().announcements_failed, 0);
        fp.stop();
    }

    #[test]
    fn a_renegotiated_address_is_reprogrammed_and_announced() {
        let (mut fp, mut node) = glue();
        let (old, new) = (Ipv4Addr::new(100, 64, 0, 11), Ipv4Addr::new(100, 64, 0, 12));
        let lns::Event::SessionEstablished(s) = established(old, None) else {
            unreachable!()
        };
        fp.program(&lns::Event::SessionEstablished(s.clone()));
        service_until(&mut fp, &mut node, Instant::ZERO, |fp| {
            fp.stats().announcements == 1
        });
        let mut link = s.link.clone();
        link.ipcp = Some(crate::ppp::IpcpResult {
            local: None,
            peer: Some(new),
            primary_dns: None,
            secondary_dns: None,
        });
        let updated = lns::Event::SessionUpdated {
            session: s.session,
            link: Box::new(link.clone()),
        };
        fp.program(&updated);
        assert_eq!(fp.session(s.session).unwrap().subscriber_addr, Some(new));
        service_until(&mut fp, &mut node, Instant::ZERO, |fp| {
            fp.stats().announcements == 2
        });
        // The same address again: nothing new to say.
        fp.program(&updated);
        for _ in 0..20 {
            fp.service(&mut node, Instant::ZERO);
        }
        assert_eq!(fp.stats().announcements, 2);
        fp.stop();
    }

    #[test]
    fn early_frames_wait_for_their_session_in_order_and_not_for_ever() {
        let key = |id| SessionKey {
            tunnel_id: 1,
            session_id: id,
        };
        let t0 = Instant::ZERO;
        let mut early = EarlyFrames::default();
        let mut known = Vec::new();
        let mut got = Vec::new();
        for (id, byte) in [(7, 1), (8, 2), (7, 3)] {
            assert!(!early.waiting(key(9)));
            assert_eq!(early.hold(key(id), t0, &[byte]), Held::Held);
        }
        assert!(early.waiting(key(7)));
        // Nobody known yet: all wait.
        let mut offer = |known: &Vec<u16>, got: &mut Vec<u8>, now| {
            early.deliver(now, |k, f| {
                let ok = known.contains(&k.session_id);
                if ok {
                    got.push(f[0]);
                }
                ok
            })
        };
        assert_eq!(offer(&known, &mut got, t0), 0);
        assert!(got.is_empty());
        // Session 7's ICCN is in: its two frames, in order; 8 waits on.
        known.push(7);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(offer(&known, &mut got, t1), 0);
        assert_eq!(got, [1, 3]);
        // 8 never comes: dropped once it waited long enough.
        let late = t0 + EARLY_FRAME_WAIT;
        assert_eq!(offer(&known, &mut got, late), 1);
        assert!(!early.waiting(key(8)));
        // Bounded.
        for i in 0..MAX_EARLY_FRAMES {
            assert_eq!(early.hold(key(9), late, &[i as u8]), Held::Held);
        }
        assert_eq!(early.hold(key(9), late, &[0]), Held::Full);
    }

    #[test]
    fn a_later_frame_of_a_session_stays_behind_one_that_was_not_taken() {
        let key = SessionKey {
            tunnel_id: 1,
            session_id: 7,
        };
        let t0 = Instant::ZERO;
        let mut early = EarlyFrames::default();
        early.hold(key, t0, &[1]);
        early.hold(key, t0, &[2]);
        // The node refuses the first (not its session yet) but would take
        // the second: neither goes, the order holds.
        let mut offered = Vec::new();
        early.deliver(t0, |_, f| {
            offered.push(f[0]);
            f[0] == 2
        });
        assert_eq!(offered, [1]);
        assert!(early.waiting(key));
    }

    #[test]
    fn prefixes_cover_what_they_say() {
        let p = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let pools = [(p("100.64.0.0"), 22), (p("10.9.9.9"), 32)];
        assert!(covered(&pools, p("100.64.0.1")));
        assert!(covered(&pools, p("100.64.3.255")));
        assert!(!covered(&pools, p("100.64.4.0")));
        assert!(covered(&pools, p("10.9.9.9")));
        assert!(!covered(&pools, p("10.9.9.8")));
        assert!(covered(&[(p("0.0.0.0"), 0)], p("203.0.113.1")));
        assert!(!covered(&[], p("100.64.0.1")));
    }

    #[test]
    fn an_address_from_a_peers_pool_is_steered_while_a_session_holds_it() {
        let (mut fp, _node) = glue();
        let h = SessionHandle {
            tunnel: TunnelHandle(1),
            id: 7,
        };
        // Ours: the pool's prefix steers it already.
        fp.program(&established(Ipv4Addr::new(100, 64, 0, 20), None));
        assert_eq!(fp.stats().foreign_addresses, 0);
        let _ = fp.remove_session(h);
        // The peer's (adopted): a /32 of its own, while the session lasts.
        fp.program(&established(Ipv4Addr::new(100, 64, 4, 20), Some(2)));
        assert_eq!(fp.stats().foreign_addresses, 1);
        let _ = fp.remove_session(h);
        assert_eq!(fp.stats().foreign_addresses, 0);
        // Gone with its tunnel too.
        fp.program(&established(Ipv4Addr::new(100, 64, 4, 21), Some(2)));
        assert_eq!(fp.stats().foreign_addresses, 1);
        fp.program(&lns::Event::TunnelDown {
            tunnel: TunnelHandle(1),
            reason: crate::l2tp::TunnelDownReason::RetriesExhausted,
        });
        assert_eq!(fp.stats().foreign_addresses, 0);
        assert_eq!(fp.stats().steering_errors, 0);
        fp.stop();
    }

    /// Sessions the worker holds, once it applied what was sent.
    fn worker_sessions(fp: &mut LnsFastpath) -> usize {
        let fast = fp.fastpath();
        let token = fast.barrier().unwrap();
        assert!(fast.wait_barrier(token, Duration::from_secs(5)));
        fast.fresh_reports(Duration::from_secs(5)).unwrap().sessions
    }

    fn moved(session: SessionHandle, address: Ipv4Addr) -> lns::Event {
        lns::Event::SessionDown(Box::new(lns::EndedSession {
            session,
            username: Some("sub".to_owned()),
            address: Some(address),
            cause: lns::EndCause::Moved { epoch: 3 },
            terminate_cause: crate::aaa::radius::TerminateCause::NasRequest,
            cdn: None,
            was_established: true,
            duration: Duration::ZERO,
        }))
    }

    #[test]
    fn a_session_that_moved_away_keeps_forwarding_for_the_grace() {
        let (mut fp, mut node) = glue();
        let h = SessionHandle {
            tunnel: TunnelHandle(1),
            id: 7,
        };
        let address = Ipv4Addr::new(100, 64, 4, 30);
        fp.program(&established(address, Some(2)));
        assert_eq!(worker_sessions(&mut fp), 1);
        assert_eq!(fp.stats().foreign_addresses, 1);
        // Released by the LAC (make-before-break): forgotten by the glue,
        // still in the worker and still steered.
        fp.program(&moved(h, address));
        assert!(fp.session(h).is_none());
        assert_eq!(fp.stats().moved, 1);
        let t0 = Instant::ZERO + Duration::from_secs(10);
        fp.service(&mut node, t0);
        fp.service(&mut node, t0 + (MOVED_GRACE - Duration::from_millis(1)));
        assert_eq!(worker_sessions(&mut fp), 1, "still forwarding");
        assert_eq!(fp.stats().foreign_addresses, 1);
        // Grace over: gone from the worker and from the steering.
        fp.service(&mut node, t0 + MOVED_GRACE);
        assert_eq!(worker_sessions(&mut fp), 0);
        assert_eq!(fp.stats().foreign_addresses, 0);

        // An address held again by a new session meanwhile stays steered.
        fp.program(&established(address, Some(2)));
        fp.program(&moved(h, address));
        fp.program(&established_as(8, address, Some(4)));
        fp.service(&mut node, t0);
        fp.service(&mut node, t0 + MOVED_GRACE);
        assert_eq!(fp.stats().foreign_addresses, 1);
        assert_eq!(worker_sessions(&mut fp), 1, "the new session only");
        fp.stop();
    }

    #[test]
    fn an_address_whose_session_went_down_is_not_announced() {
        let (mut fp, mut node) = glue();
        let address = Ipv4Addr::new(100, 64, 0, 10);
        fp.program(&established(address, None));
        // Down before the first service: nothing goes out.
        let _ = fp.remove_session(SessionHandle {
            tunnel: TunnelHandle(1),
            id: 7,
        });
        for i in 0..50 {
            fp.service(&mut node, Instant::ZERO + ANNOUNCE_INTERVAL * i);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(fp.stats().announcements, 0);
        fp.stop();
    }

    #[test]
    fn a_gratuitous_arp_announces_the_address_at_our_mac() {
        let mac = ethernet::Address([0x02, 0, 0, 0, 1, 1]);
        let address = Ipv4Addr::new(100, 64, 0, 7);
        let frame = gratuitous_arp(mac, address);
        let eth = ethernet::Frame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), ethernet::Address::BROADCAST);
        assert_eq!(eth.src_addr(), mac);
        assert_eq!(eth.ethertype(), ethernet::EtherType::Arp);
        let packet = arp::Packet::new_checked(eth.payload()).unwrap();
        let repr = arp::Repr::parse(&packet).unwrap();
        assert_eq!(repr, arp::Repr::gratuitous(mac, address));
        assert_eq!(repr.operation, arp::Operation::Request);
        assert_eq!(repr.source_protocol_addr, repr.target_protocol_addr);
        assert!(frame[14 + 28..].iter().all(|&b| b == 0), "zero padding");
    }
}

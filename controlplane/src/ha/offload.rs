//! LNS-to-LNS state offload (DESIGN.md §1 item 2, §3), sans-IO.
//!
//! The primary LNS keeps one [`OffloadSender`] per peer LNS connection: a
//! map of what the peer should hold (each tunnel's identity, each session's
//! identity, Ownership-Epoch and Session-State). The owner tells it what
//! changed ([`OffloadSender::add_or_update`], [`OffloadSender::remove`]) and
//! when the connection comes and goes; the sender says what to send
//! ([`OffloadSender::poll_request`], an LSORQ for
//! [`crate::l2tp::Endpoint::send_ha_message`]) and takes the peer's LSORS
//! ([`OffloadSender::handle_reply`]).
//!
//! * **Bulk sync**: on connect, and every [`OffloadConfig::refresh_interval`]
//!   after, bulk-start, every tunnel and session, bulk-end. The sender walks
//!   its map with a cursor and never has more than
//!   [`OffloadConfig::window`] requests unanswered, so a sync of any size
//!   holds bounded memory in the sender, the control channel and the peer.
//! * **Incremental**: a change is queued once however often it changes
//!   before it is sent (the latest state goes), ahead of the bulk walk.
//! * **Acknowledgement**: every LSORQ is answered by one LSORS. The control
//!   channel delivers in order (RFC 2661 §5.8) and the store answers at
//!   once, so replies come back in the order of the requests: the sender
//!   matches them first in, first out.
//! * **Lag**: the time from a change to the LSORS that acknowledges it,
//!   in microseconds, in an hdrhistogram ([`OffloadSender::lag`]).
//! * **Fencing**: an LSORS whose Ownership-Epoch is higher than the
//!   sender's for the session means the peer adopted it (the LAC moved it):
//!   the sender forgets it and reports [`SenderEvent::Fenced`]; the owner
//!   drops the session silently (DESIGN.md §3, step 4).
//!
//! The peer's [`OffloadStore`] holds what each primary offloaded, per
//! (primary LNS address, primary's Tunnel ID), applies add/update/remove
//! with epochs, garbage-collects at bulk-end what a bulk sync did not
//! refresh, and is queried for adoption.

use core::net::Ipv4Addr;
use core::ops::Bound;
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};

use dataplane::wire::control::OffloadOperation;
use hdrhistogram::Histogram;

use super::message::{OffloadReply, OffloadRequest, SessionIdentity, TunnelIdentity};
use super::state::{SessionState, StateError};
use crate::time::Instant;

/// How an [`OffloadSender`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadConfig {
    /// LSORQs sent and not yet answered, at most. Keep it at or below the
    /// LNS-LNS tunnel's receive window so requests never queue in the
    /// control channel. Default 64: on a LAN the round trip is well under
    /// a millisecond, so 64 keeps the link busy, while 256 back-to-back
    /// datagrams overflow a socket's default receive buffer (about 160 of
    /// these fit in 208 KB): the kernel drops the rest, and the control
    /// channel waits for fast retransmits or its retransmission timeout
    /// and shrinks its congestion window (RFC 2661 Appendix A). `l2bench
    /// hasync` (100,000 sessions over loopback): no retransmission at 64;
    /// over 1,000 at 256.
    pub window: usize,
    /// A full bulk sync this often after the last one finished, to repair
    /// anything lost to a bug or a restart of the peer. `None`: only on
    /// connect. Default 300 s.
    pub refresh_interval: Option<Duration>,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        OffloadConfig {
            window: 64,
            refresh_interval: Some(Duration::from_secs(300)),
        }
    }
}

/// Counters of an [`OffloadSender`]. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// LSORQs handed out by [`OffloadSender::poll_request`].
    pub requests: u64,
    /// Of those, sent by a bulk sync (bulk-start and bulk-end included).
    pub bulk_requests: u64,
    /// LSORS taken in.
    pub replies: u64,
    /// LSORS that did not match the oldest request outstanding (a peer
    /// that does not answer in order); matched further back, or ignored.
    pub replies_out_of_order: u64,
    /// LSORS refused by the peer (it could not apply the request).
    pub refused: u64,
    /// Sessions fenced off: the peer holds a higher epoch.
    pub fenced: u64,
    /// Bulk syncs completed (bulk-end acknowledged).
    pub bulk_syncs: u64,
}

/// What an [`OffloadSender`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// The peer holds a higher Ownership-Epoch for the session: it was moved
    /// away from us. Drop it silently (no Terminate, no CDN).
    Fenced {
        /// The tunnel.
        tunnel: TunnelIdentity,
        /// The session.
        session: SessionIdentity,
        /// The peer's epoch.
        epoch: u32,
    },
    /// A bulk sync completed: the peer holds everything.
    BulkSyncDone {
        /// When it started (bulk-start handed out).
        started: Instant,
        /// Tunnels and sessions it carried.
        entries: u64,
    },
}

/// Map key: (primary's Tunnel ID, primary's Session ID or 0 for the tunnel
/// itself; RFC 2661 §4.4.4 never assigns Session ID 0). A tunnel sorts
/// before its sessions, so the bulk walk sends it first.
type Key = (u16, u16);

#[derive(Debug, Clone)]
struct Entry {
    tunnel: TunnelIdentity,
    session: Option<SessionIdentity>,
    epoch: u32,
    /// The encoded Session-State (sessions only).
    state: Option<Vec<u8>>,
    /// Which incarnation of the key (a Session ID can be reused).
    generation: u64,
    /// A change not sent yet, since then.
    dirty_since: Option<Instant>,
    /// The bulk sync during which it was last sent: the walk skips what an
    /// incremental change already sent in this one.
    sent_in: u64,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Update(Key, u64),
    Remove(
        TunnelIdentity,
        Option<SessionIdentity>,
        Option<u32>,
        Instant,
    ),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Idle,
    Start,
    Walk(Option<Key>),
    End,
    /// Bulk-end sent, waiting for its LSORS.
    Ending,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    operation: OffloadOperation,
    key: Option<Key>,
    changed_at: Option<Instant>,
}

/// The primary's side of one peer LNS connection (see the module
/// documentation).
#[derive(Debug)]
pub struct OffloadSender {
    config: OffloadConfig,
    entries: BTreeMap<Key, Entry>,
    changes: VecDeque<Change>,
    connected: bool,
    bulk: Bulk,
    bulk_started: Instant,
    bulk_entries: u64,
    /// Bulk syncs started.
    bulk_number: u64,
    in_flight: VecDeque<InFlight>,
    next_refresh: Option<Instant>,
    next_generation: u64,
    lag: Histogram<u64>,
    stats: SenderStats,
    events: VecDeque<SenderEvent>,
}

/// Offload lags are recorded from 1 µs to 1 h with 3 significant digits.
#[allow(clippy::expect_used)]
fn new_lag_histogram() -> Histogram<u64> {
    // Constant bounds that `new_with_bounds` accepts (low ≥ 1, high ≥
    // 2 × low, digits ≤ 5): it cannot fail, whatever the input.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid constant bounds")
}

impl OffloadSender {
    /// A sender with nothing to offload, not connected.
    pub fn new(config: OffloadConfig) -> Self {
        OffloadSender {
            config: OffloadConfig {
                window: config.window.max(1),
                ..config
            },
            entries: BTreeMap::new(),
            changes: VecDeque::new(),
            connected: false,
            bulk: Bulk::Idle,
            bulk_started: Instant::ZERO,
            bulk_entries: 0,
            bulk_number: 0,
            in_flight: VecDeque::new(),
            next_refresh: None,
            next_generation: 1,
            lag: new_lag_histogram(),
            stats: SenderStats::default(),
            events: VecDeque::new(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// Offload lag (change → LSORS), microseconds.
    pub fn lag(&self) -> &Histogram<u64> {
        &self.lag
    }

    /// Sessions the peer should hold.
    pub fn session_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.session.is_some())
            .count()
    }

    /// The connection to the peer is up (the LNS-LNS tunnel's TunnelUp):
    /// start a bulk sync.
    pub fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.in_flight.clear();
        // The bulk sync carries every change; the queue would only repeat.
        self.changes.clear();
        for e in self.entries.values_mut() {
            e.dirty_since = None;
        }
        self.start_bulk(now);
    }

    /// The connection is down: nothing is sent until [`Self::connected`].
    /// Changes meanwhile are kept in the map; the next bulk sync carries
    /// them (and its bulk-end removes at the peer what went meanwhile).
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.in_flight.clear();
        self.changes.clear();
        self.bulk = Bulk::Idle;
        self.next_refresh = None;
    }

    /// Whether the peer holds everything: connected, no bulk sync running,
    /// nothing queued or unanswered.
    pub fn in_sync(&self) -> bool {
        self.connected
            && self.bulk == Bulk::Idle
            && self.changes.is_empty()
            && self.in_flight.is_empty()
    }

    /// A tunnel's identity, before or with its sessions.
    pub fn add_tunnel(&mut self, now: Instant, tunnel: TunnelIdentity) {
        self.put((tunnel.lns_tunnel_id, 0), now, tunnel, None, 0, None);
    }

    /// A session is up, renegotiated, changed address, or its counters are
    /// due: the peer is to hold this state. Adds the tunnel if new.
    pub fn add_or_update(
        &mut self,
        now: Instant,
        tunnel: TunnelIdentity,
        session: SessionIdentity,
        epoch: u32,
        state: &SessionState,
    ) -> Result<(), StateError> {
        let blob = state.encode()?;
        if !self.entries.contains_key(&(tunnel.lns_tunnel_id, 0)) {
            self.add_tunnel(now, tunnel);
        }
        let key = (tunnel.lns_tunnel_id, session.lns_session_id);
        self.put(key, now, tunnel, Some(session), epoch, Some(blob));
        Ok(())
    }

    /// A session's state changed in a way the peer need not hear of at
    /// once (its traffic counters, from the data plane's sweeps): the blob
    /// is replaced without queueing an LSORQ, so the next incremental
    /// update or periodic refresh carries it. False (nothing done) unless
    /// the session is held with this epoch.
    pub fn refresh_state(
        &mut self,
        lns_tunnel_id: u16,
        session: SessionIdentity,
        epoch: u32,
        state: &SessionState,
    ) -> Result<bool, StateError> {
        let Some(e) = self
            .entries
            .get_mut(&(lns_tunnel_id, session.lns_session_id))
            .filter(|e| e.session == Some(session) && e.epoch == epoch)
        else {
            return Ok(false);
        };
        e.state = Some(state.encode()?);
        Ok(true)
    }

    fn put(
        &mut self,
        key: Key,
        now: Instant,
        tunnel: TunnelIdentity,
        session: Option<SessionIdentity>,
        epoch: u32,
        state: Option<Vec<u8>>,
    ) {
        let generation = match self.entries.get(&key) {
            // Same tunnel and session ids on both sides: the same session.
            Some(e) if e.tunnel == tunnel && e.session == session => e.generation,
            _ => {
                self.next_generation += 1;
                self.next_generation
            }
        };
        let was_dirty = self
            .entries
            .get(&key)
            .filter(|e| e.generation == generation)
            .and_then(|e| e.dirty_since);
        self.entries.insert(
            key,
            Entry {
                tunnel,
                session,
                epoch,
                state,
                generation,
                dirty_since: Some(was_dirty.unwrap_or(now)),
                sent_in: 0,
            },
        );
        if was_dirty.is_none() && self.connected {
            self.changes.push_back(Change::Update(key, generation));
        } else if !self.connected {
            // The next bulk sync carries it; no lag to measure.
            if let Some(e) = self.entries.get_mut(&key) {
                e.dirty_since = None;
            }
        }
    }

    /// A session is gone (the "remove" form of LSORQ).
    pub fn remove(&mut self, now: Instant, lns_tunnel_id: u16, lns_session_id: u16) {
        if lns_session_id == 0 {
            return;
        }
        if let Some(e) = self.entries.remove(&(lns_tunnel_id, lns_session_id)) {
            if self.connected {
                self.changes
                    .push_back(Change::Remove(e.tunnel, e.session, Some(e.epoch), now));
            }
        }
    }

    /// A tunnel is gone, and its sessions with it.
    pub fn remove_tunnel(&mut self, now: Instant, lns_tunnel_id: u16) {
        let keys: Vec<Key> = self
            .entries
            .range((lns_tunnel_id, 0)..=(lns_tunnel_id, u16::MAX))
            .map(|(k, _)| *k)
            .collect();
        let mut identity = None;
        for k in keys {
            if let Some(e) = self.entries.remove(&k) {
                identity.get_or_insert(e.tunnel);
            }
        }
        if let (Some(t), true) = (identity, self.connected) {
            self.changes.push_back(Change::Remove(t, None, None, now));
        }
    }

    /// The next LSORQ to send, if the window allows one.
    pub fn poll_request(&mut self, now: Instant) -> Option<OffloadRequest> {
        if !self.connected || self.in_flight.len() >= self.config.window {
            return None;
        }
        if self.bulk == Bulk::Start {
            self.bulk = Bulk::Walk(None);
            self.bulk_started = now;
            self.bulk_entries = 0;
            self.stats.bulk_requests += 1;
            return Some(self.marker(OffloadOperation::BulkStart));
        }
        while let Some(change) = self.changes.pop_front() {
            match change {
                Change::Update(key, generation) => {
                    let Some(e) = self.entries.get_mut(&key) else {
                        continue;
                    };
                    if e.generation != generation {
                        continue;
                    }
                    let Some(changed_at) = e.dirty_since.take() else {
                        continue;
                    };
                    e.sent_in = self.bulk_number;
                    let request = request_for(e);
                    return Some(self.out(request, Some(key), Some(changed_at)));
                }
                Change::Remove(tunnel, session, epoch, changed_at) => {
                    let request = OffloadRequest {
                        operation: OffloadOperation::Remove,
                        tunnel: Some(tunnel),
                        session,
                        epoch,
                        state: None,
                    };
                    let key = (
                        tunnel.lns_tunnel_id,
                        session.map_or(0, |s| s.lns_session_id),
                    );
                    return Some(self.out(request, Some(key), Some(changed_at)));
                }
            }
        }
        if let Bulk::Walk(cursor) = self.bulk {
            let from = match cursor {
                None => Bound::Unbounded,
                Some(k) => Bound::Excluded(k),
            };
            let number = self.bulk_number;
            let next = self
                .entries
                .range_mut((from, Bound::Unbounded))
                .find(|(_, e)| e.sent_in != number)
                .map(|(k, e)| {
                    e.sent_in = number;
                    (*k, e.dirty_since.take(), request_for(e))
                });
            match next {
                Some((key, changed_at, request)) => {
                    self.bulk = Bulk::Walk(Some(key));
                    self.bulk_entries += 1;
                    self.stats.bulk_requests += 1;
                    return Some(self.out(request, Some(key), changed_at));
                }
                None => self.bulk = Bulk::End,
            }
        }
        if self.bulk == Bulk::End {
            self.bulk = Bulk::Ending;
            self.stats.bulk_requests += 1;
            return Some(self.marker(OffloadOperation::BulkEnd));
        }
        None
    }

    fn marker(&mut self, operation: OffloadOperation) -> OffloadRequest {
        let request = OffloadRequest {
            operation,
            tunnel: None,
            session: None,
            epoch: None,
            state: None,
        };
        self.out(request, None, None)
    }

    fn out(
        &mut self,
        request: OffloadRequest,
        key: Option<Key>,
        changed_at: Option<Instant>,
    ) -> OffloadRequest {
        self.stats.requests += 1;
        self.in_flight.push_back(InFlight {
            operation: request.operation,
            key,
            changed_at,
        });
        request
    }

    /// An LSORS from the peer.
    pub fn handle_reply(&mut self, now: Instant, reply: &OffloadReply) {
        self.stats.replies += 1;
        let key = reply.tunnel.map(|t| {
            (
                t.lns_tunnel_id,
                reply.session.map_or(0, |s| s.lns_session_id),
            )
        });
        let matches = |f: &InFlight| f.operation == reply.operation && f.key == key;
        let position = if self.in_flight.front().is_some_and(matches) {
            Some(0)
        } else {
            self.stats.replies_out_of_order += 1;
            self.in_flight.iter().position(matches)
        };
        let Some(done) = position.and_then(|i| self.in_flight.remove(i)) else {
            return;
        };
        if let Some(at) = done.changed_at {
            let micros = u64::try_from((now - at).as_micros()).unwrap_or(u64::MAX);
            self.lag.saturating_record(micros.max(1));
        }
        if reply.error.is_some() {
            self.stats.refused += 1;
        }
        if done.operation == OffloadOperation::BulkEnd && self.bulk == Bulk::Ending {
            self.bulk = Bulk::Idle;
            self.stats.bulk_syncs += 1;
            self.next_refresh = self.config.refresh_interval.map(|i| now + i);
            self.events.push_back(SenderEvent::BulkSyncDone {
                started: self.bulk_started,
                entries: self.bulk_entries,
            });
        }
        if let (Some(tunnel), Some(session), Some(epoch)) =
            (reply.tunnel, reply.session, reply.epoch)
        {
            let key = (tunnel.lns_tunnel_id, session.lns_session_id);
            let ours = self
                .entries
                .get(&key)
                .filter(|e| e.tunnel == tunnel && e.session == Some(session));
            if ours.is_some_and(|e| epoch > e.epoch) {
                self.entries.remove(&key);
                self.stats.fenced += 1;
                self.events.push_back(SenderEvent::Fenced {
                    tunnel,
                    session,
                    epoch,
                });
            }
        }
    }

    /// When to call [`Self::handle_timeout`] (the periodic refresh).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_refresh.filter(|_| self.connected)
    }

    /// Start the periodic refresh if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.connected && self.next_refresh.is_some_and(|t| t <= now) {
            self.next_refresh = None;
            if self.bulk == Bulk::Idle {
                self.start_bulk(now);
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    fn start_bulk(&mut self, now: Instant) {
        self.bulk_number += 1;
        self.bulk = Bulk::Start;
        self.bulk_started = now;
        self.next_refresh = None;
    }

    /// What the peer should hold once in sync: (tunnel, session, epoch,
    /// Session-State blob) for every session, in key order.
    pub fn expected(
        &self,
    ) -> impl Iterator<Item = (TunnelIdentity, SessionIdentity, u32, &[u8])> + '_ {
        self.entries
            .values()
            .filter_map(|e| Some((e.tunnel, e.session?, e.epoch, e.state.as_deref()?)))
    }
}

fn request_for(e: &Entry) -> OffloadRequest {
    OffloadRequest {
        operation: OffloadOperation::AddUpdate,
        tunnel: Some(e.tunnel),
        session: e.session,
        epoch: e.session.map(|_| e.epoch),
        state: e.state.clone(),
    }
}

/// One offloaded session as the peer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Its ids.
    pub identity: SessionIdentity,
    /// Ownership-Epoch.
    pub epoch: u32,
    /// The state to adopt it with.
    pub state: SessionState,
    /// The blob as received (re-offloaded as is).
    pub blob: Vec<u8>,
    /// We adopted it: it is ours now, and the old primary's updates and
    /// removes (with a lower epoch) are refused.
    pub adopted: bool,
    sync: u64,
}

/// One offloaded tunnel as the peer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTunnel {
    /// Its identity.
    pub identity: TunnelIdentity,
    /// The primary LNS connection it came over (its peer's address).
    pub source: Ipv4Addr,
    /// Its sessions, by the primary's Session ID.
    pub sessions: BTreeMap<u16, StoredSession>,
    sync: u64,
}

/// Counters of an [`OffloadStore`]. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// LSORQs handled.
    pub requests: u64,
    /// Sessions added.
    pub sessions_added: u64,
    /// Sessions updated.
    pub sessions_updated: u64,
    /// Sessions removed (remove form, tunnel removed, or bulk-end).
    pub sessions_removed: u64,
    /// Updates and removes refused because we hold a higher epoch.
    pub stale_refused: u64,
    /// Requests refused as malformed (no identity, a state that does not
    /// decode).
    pub malformed: u64,
    /// Bulk syncs completed.
    pub bulk_syncs: u64,
    /// Sessions adopted.
    pub adopted: u64,
}

/// What a peer LNS holds of its primaries' state (see the module
/// documentation).
#[derive(Debug, Default)]
pub struct OffloadStore {
    /// By (primary LNS address as the LAC knows it, primary's Tunnel ID).
    tunnels: BTreeMap<(Ipv4Addr, u16), StoredTunnel>,
    /// The current bulk sync number of each primary connection, and whether
    /// one is running.
    syncs: HashMap<Ipv4Addr, (u64, bool)>,
    stats: StoreStats,
}

/// A session taken over from the store ([`OffloadStore::adopt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    /// The tunnel it was on at the primary.
    pub tunnel: TunnelIdentity,
    /// Its ids at the primary.
    pub session: SessionIdentity,
    /// The new Ownership-Epoch: one more than the primary's. Goes in the
    /// ICRP ([`crate::l2tp::Endpoint::answer_recovery_call`]).
    pub epoch: u32,
    /// The state to rebuild the link with.
    pub state: SessionState,
    /// Whether it was adopted here before (a second recovery of the same
    /// session): what [`OffloadStore::unadopt`] puts back.
    pub was_adopted: bool,
}

impl OffloadStore {
    /// An empty store.
    pub fn new() -> Self {
        OffloadStore::default()
    }

    /// Counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Sessions held, over every primary.
    pub fn session_count(&self) -> usize {
        self.tunnels.values().map(|t| t.sessions.len()).sum()
    }

    /// Every tunnel held.
    pub fn tunnels(&self) -> impl Iterator<Item = &StoredTunnel> + '_ {
        self.tunnels.values()
    }

    /// The tunnel the LAC knew as `primary`'s `lns_tunnel_id` (its
    /// Recovery-Tunnel).
    pub fn tunnel(&self, primary: Ipv4Addr, lns_tunnel_id: u16) -> Option<&StoredTunnel> {
        self.tunnels.get(&(primary, lns_tunnel_id))
    }

    /// A session by the primary's address, Tunnel ID and Session ID.
    pub fn session(
        &self,
        primary: Ipv4Addr,
        lns_tunnel_id: u16,
        lns_session_id: u16,
    ) -> Option<&StoredSession> {
        self.tunnel(primary, lns_tunnel_id)?
            .sessions
            .get(&lns_session_id)
    }

    /// A session by the primary's address and Session ID alone, whatever
    /// the tunnel (first match in Tunnel ID order).
    pub fn find_session(
        &self,
        primary: Ipv4Addr,
        lns_session_id: u16,
    ) -> Option<(&StoredTunnel, &StoredSession)> {
        self.tunnels
            .range((primary, 0)..=(primary, u16::MAX))
            .find_map(|(_, t)| t.sessions.get(&lns_session_id).map(|s| (t, s)))
    }

    /// Adopt a session (failure or load switchover): bump its epoch, mark
    /// it ours. `None` if not held. Adopting again bumps again.
    pub fn adopt(
        &mut self,
        primary: Ipv4Addr,
        lns_tunnel_id: u16,
        lns_session_id: u16,
    ) -> Option<Adoption> {
        let t = self.tunnels.get_mut(&(primary, lns_tunnel_id))?;
        let tunnel = t.identity;
        let s = t.sessions.get_mut(&lns_session_id)?;
        let was_adopted = s.adopted;
        s.epoch = s.epoch.wrapping_add(1);
        s.adopted = true;
        self.stats.adopted += 1;
        Some(Adoption {
            tunnel,
            session: s.identity,
            epoch: s.epoch,
            state: s.state.clone(),
            was_adopted,
        })
    }

    /// Undo an [`Self::adopt`] whose epoch never reached the LAC (the
    /// recovery call was cleared before its ICRP left): the session is the
    /// primary's again, with its epoch, so its updates are taken and it is
    /// not fenced for a move that did not happen. Nothing if the session
    /// changed since (another adoption, the primary's update).
    pub fn unadopt(&mut self, adoption: &Adoption) {
        let t = &adoption.tunnel;
        let Some(s) = self
            .tunnels
            .get_mut(&(t.primary_lns, t.lns_tunnel_id))
            .and_then(|t| t.sessions.get_mut(&adoption.session.lns_session_id))
        else {
            return;
        };
        if s.epoch == adoption.epoch && s.adopted {
            s.epoch = s.epoch.wrapping_sub(1);
            s.adopted = adoption.was_adopted;
        }
    }

    /// Forget an adopted session (it ended here). Its epoch is forgotten
    /// too: keep it until the old primary has been fenced.
    pub fn release(&mut self, primary: Ipv4Addr, lns_tunnel_id: u16, lns_session_id: u16) {
        let key = (primary, lns_tunnel_id);
        if let Some(t) = self.tunnels.get_mut(&key) {
            if t.sessions.remove(&lns_session_id).is_some() {
                self.stats.sessions_removed += 1;
            }
            if t.sessions.is_empty() {
                self.tunnels.remove(&key);
            }
        }
    }

    /// An LSORQ that came over the connection to `source` (the primary's
    /// LNS-LNS address): apply it and return the LSORS to send back.
    pub fn handle_request(&mut self, source: Ipv4Addr, request: &OffloadRequest) -> OffloadReply {
        self.stats.requests += 1;
        let mut reply = OffloadReply {
            operation: request.operation,
            tunnel: request.tunnel,
            session: request.session,
            epoch: request.epoch,
            error: None,
        };
        let result = match request.operation {
            OffloadOperation::BulkStart => {
                let sync = self.syncs.entry(source).or_insert((0, false));
                sync.0 += 1;
                sync.1 = true;
                Ok(None)
            }
            OffloadOperation::BulkEnd => {
                self.bulk_end(source);
                Ok(None)
            }
            OffloadOperation::AddUpdate => self.add_update(source, request),
            OffloadOperation::Remove => self.remove(request),
            OffloadOperation::Unknown(_) => Err("unknown Offload-Operation".to_owned()),
        };
        match result {
            Ok(Some(epoch)) => reply.epoch = Some(epoch),
            Ok(None) => {}
            Err(why) => reply.error = Some(why),
        }
        reply
    }

    fn sync_of(&self, source: Ipv4Addr) -> u64 {
        self.syncs.get(&source).map_or(0, |s| s.0)
    }

    /// Returns the epoch we hold for the session afterwards.
    fn add_update(
        &mut self,
        source: Ipv4Addr,
        request: &OffloadRequest,
    ) -> Result<Option<u32>, String> {
        let Some(identity) = request.tunnel else {
            self.stats.malformed += 1;
            return Err("add/update without Tunnel-Identity".to_owned());
        };
        let sync = self.sync_of(source);
        let key = (identity.primary_lns, identity.lns_tunnel_id);
        let Some(session) = request.session else {
            let t = self.tunnels.entry(key).or_insert_with(|| StoredTunnel {
                identity,
                source,
                sessions: BTreeMap::new(),
                sync,
            });
            t.identity = identity;
            t.source = source;
            t.sync = sync;
            return Ok(None);
        };
        let (Some(blob), Some(epoch)) = (&request.state, request.epoch) else {
            self.stats.malformed += 1;
            return Err("session add/update without Session-State or Ownership-Epoch".to_owned());
        };
        let state = match SessionState::decode(blob) {
            Ok(s) => s,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e.to_string());
            }
        };
        let t = self.tunnels.entry(key).or_insert_with(|| StoredTunnel {
            identity,
            source,
            sessions: BTreeMap::new(),
            sync,
        });
        t.sync = sync;
        match t.sessions.get_mut(&session.lns_session_id) {
            Some(s) if s.adopted || s.epoch > epoch => {
                // Fencing (DESIGN.md §3): the session moved; tell the
                // sender the epoch it lost to.
                self.stats.stale_refused += 1;
                Ok(Some(s.epoch))
            }
            Some(s) => {
                s.identity = session;
                s.epoch = epoch;
                s.state = state;
                s.blob.clone_from(blob);
                s.sync = sync;
                self.stats.sessions_updated += 1;
                Ok(Some(epoch))
            }
            None => {
                t.sessions.insert(
                    session.lns_session_id,
                    StoredSession {
                        identity: session,
                        epoch,
                        state,
                        blob: blob.clone(),
                        adopted: false,
                        sync,
                    },
                );
                self.stats.sessions_added += 1;
                Ok(Some(epoch))
            }
        }
    }

    fn remove(&mut self, request: &OffloadRequest) -> Result<Option<u32>, String> {
        let Some(identity) = request.tunnel else {
            self.stats.malformed += 1;
            return Err("remove without Tunnel-Identity".to_owned());
        };
        let key = (identity.primary_lns, identity.lns_tunnel_id);
        let Some(t) = self.tunnels.get_mut(&key) else {
            return Ok(None);
        };
        let held = match request.session {
            Some(session) => match t.sessions.get(&session.lns_session_id) {
                Some(s) if s.adopted || request.epoch.is_some_and(|e| s.epoch > e) => {
                    self.stats.stale_refused += 1;
                    Some(s.epoch)
                }
                Some(_) => {
                    t.sessions.remove(&session.lns_session_id);
                    self.stats.sessions_removed += 1;
                    None
                }
                None => None,
            },
            None => {
                // The tunnel and its sessions, except those adopted here.
                let before = t.sessions.len();
                t.sessions.retain(|_, s| s.adopted);
                self.stats.sessions_removed += (before - t.sessions.len()) as u64;
                None
            }
        };
        // A tunnel goes with its remove form, unless sessions adopted here
        // remain; a session's remove leaves its tunnel (the primary still
        // has it).
        if request.session.is_none() && t.sessions.is_empty() {
            self.tunnels.remove(&key);
        }
        Ok(held)
    }

    /// Bulk-end: what the bulk sync did not refresh is gone at the primary.
    fn bulk_end(&mut self, source: Ipv4Addr) {
        let Some(&(sync, running)) = self.syncs.get(&source) else {
            return;
        };
        if !running {
            return;
        }
        let mut removed = 0u64;
        self.tunnels.retain(|_, t| {
            if t.source != source {
                return true;
            }
            let before = t.sessions.len();
            t.sessions.retain(|_, s| s.adopted || s.sync >= sync);
            removed += (before - t.sessions.len()) as u64;
            t.sync >= sync || !t.sessions.is_empty()
        });
        self.stats.sessions_removed += removed;
        self.stats.bulk_syncs += 1;
        if let Some(s) = self.syncs.get_mut(&source) {
            s.1 = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::{LcpOptions, LinkState, Role};
    use core::net::SocketAddrV4;

    const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
    const PRIMARY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

    fn tunnel(id: u16) -> TunnelIdentity {
        TunnelIdentity {
            lns_tunnel_id: id,
            lac_tunnel_id: 1,
            lac: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701),
            primary_lns: PRIMARY,
        }
    }

    fn session(id: u16) -> SessionIdentity {
        SessionIdentity {
            lns_session_id: id,
            lac_session_id: id + 1,
        }
    }

    fn blob() -> Vec<u8> {
        SessionState::new(LinkState {
            role: Role::Server,
            lcp_local: LcpOptions::default(),
            lcp_peer: LcpOptions::default(),
            auth_method: None,
            username: None,
            ipcp: None,
            ipv6cp: None,
        })
        .encode()
        .unwrap()
    }

    fn request(operation: OffloadOperation, t: u16, s: Option<u16>, epoch: u32) -> OffloadRequest {
        OffloadRequest {
            operation,
            tunnel: Some(tunnel(t)),
            session: s.map(session),
            epoch: Some(epoch),
            state: (operation == OffloadOperation::AddUpdate && s.is_some()).then(blob),
        }
    }

    #[test]
    fn malformed_requests_are_answered_with_an_error_and_change_nothing() {
        let mut store = OffloadStore::new();
        let mut bad_state = request(OffloadOperation::AddUpdate, 1, Some(5), 1);
        bad_state.state = Some(vec![0, 9]);
        let mut no_tunnel = request(OffloadOperation::AddUpdate, 1, Some(5), 1);
        no_tunnel.tunnel = None;
        let unknown = request(OffloadOperation::Unknown(77), 1, Some(5), 1);
        for r in [bad_state, no_tunnel, unknown] {
            let reply = store.handle_request(SOURCE, &r);
            assert!(reply.error.is_some(), "{r:?}");
            assert_eq!(reply.operation, r.operation);
        }
        assert_eq!(store.session_count(), 0);
    }

    #[test]
    fn a_stale_remove_leaves_an_adopted_session_and_a_tunnel_remove_keeps_it() {
        let mut store = OffloadStore::new();
        for s in 1..=3 {
            store.handle_request(SOURCE, &request(OffloadOperation::AddUpdate, 1, Some(s), 4));
        }
        assert_eq!(store.adopt(PRIMARY, 1, 2).map(|a| a.epoch), Some(5));
        let reply = store.handle_request(SOURCE, &request(OffloadOperation::Remove, 1, Some(2), 4));
        assert_eq!(reply.epoch, Some(5), "the higher epoch, for fencing");
        assert!(store.session(PRIMARY, 1, 2).is_some());
        store.handle_request(SOURCE, &request(OffloadOperation::Remove, 1, None, 4));
        assert_eq!(store.session_count(), 1);
        assert!(store.tunnel(PRIMARY, 1).is_some());
        store.release(PRIMARY, 1, 2);
        assert!(store.tunnel(PRIMARY, 1).is_none());
    }

    #[test]
    fn bulk_end_removes_only_what_the_bulk_did_not_refresh_from_that_primary() {
        let other = Ipv4Addr::new(10, 1, 0, 13);
        let mut store = OffloadStore::new();
        for s in 1..=4 {
            store.handle_request(SOURCE, &request(OffloadOperation::AddUpdate, 1, Some(s), 1));
        }
        let mut theirs = request(OffloadOperation::AddUpdate, 9, Some(1), 1);
        if let Some(t) = theirs.tunnel.as_mut() {
            t.primary_lns = Ipv4Addr::new(10, 0, 0, 13);
        }
        store.handle_request(other, &theirs);
        let marker = |operation| OffloadRequest {
            operation,
            tunnel: None,
            session: None,
            epoch: None,
            state: None,
        };
        store.handle_request(SOURCE, &marker(OffloadOperation::BulkStart));
        store.handle_request(SOURCE, &request(OffloadOperation::AddUpdate, 1, None, 0));
        store.handle_request(SOURCE, &request(OffloadOperation::AddUpdate, 1, Some(2), 1));
        store.handle_request(SOURCE, &marker(OffloadOperation::BulkEnd));
        assert_eq!(store.session_count(), 2);
        assert!(store.session(PRIMARY, 1, 2).is_some());
        assert!(store.find_session(Ipv4Addr::new(10, 0, 0, 13), 1).is_some());
        // A bulk-end without a bulk-start is ignored.
        store.handle_request(SOURCE, &marker(OffloadOperation::BulkEnd));
        assert_eq!(store.session_count(), 2);
    }

    #[test]
    fn the_sender_coalesces_changes_and_respects_its_window() {
        let mut sender = OffloadSender::new(OffloadConfig {
            window: 2,
            refresh_interval: None,
        });
        let now = Instant::ZERO;
        sender.connected(now);
        let state = SessionState::decode(&blob()).unwrap();
        // Bulk-start, then the window is full.
        assert_eq!(
            sender.poll_request(now).map(|r| r.operation),
            Some(OffloadOperation::BulkStart)
        );
        for _ in 0..5 {
            sender
                .add_or_update(now, tunnel(1), session(1), 1, &state)
                .unwrap();
        }
        let r = sender.poll_request(now).unwrap();
        assert_eq!(r.tunnel, Some(tunnel(1)));
        assert_eq!(r.session, None, "the tunnel first");
        assert!(sender.poll_request(now).is_none(), "window of 2");
        let reply = |r: &OffloadRequest| OffloadReply {
            operation: r.operation,
            tunnel: r.tunnel,
            session: r.session,
            epoch: r.epoch,
            error: None,
        };
        sender.handle_reply(
            now,
            &reply(&OffloadRequest {
                operation: OffloadOperation::BulkStart,
                tunnel: None,
                session: None,
                epoch: None,
                state: None,
            }),
        );
        // Five updates of one session: one request.
        let r = sender.poll_request(now).unwrap();
        assert_eq!(r.session, Some(session(1)));
        sender.handle_reply(now, &reply(&r));
        let rest: Vec<OffloadOperation> = std::iter::from_fn(|| sender.poll_request(now))
            .map(|r| r.operation)
            .collect();
        assert_eq!(rest, vec![OffloadOperation::BulkEnd]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Update(u16, u16, u32),
        Remove(u16, u16),
        RemoveTunnel(u16),
        /// Deliver this many requests to the store.
        Deliver(usize),
        /// Deliver this many replies to the sender.
        Acknowledge(usize),
        /// The connection fails: what is in flight is lost.
        Disconnect,
        Connect,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (1u16..4, 1u16..30, any::<u32>()).prop_map(|(t, s, v)| Op::Update(t, s, v)),
            3 => (1u16..4, 1u16..30).prop_map(|(t, s)| Op::Remove(t, s)),
            1 => (1u16..4).prop_map(Op::RemoveTunnel),
            4 => (0usize..40).prop_map(Op::Deliver),
            4 => (0usize..40).prop_map(Op::Acknowledge),
            1 => Just(Op::Disconnect),
            1 => Just(Op::Connect),
        ]
    }

    fn versioned(v: u32) -> SessionState {
        let mut s = SessionState::decode(&blob()).unwrap();
        s.accounting.start_time_unix = u64::from(v);
        s
    }

    proptest::proptest! {
        /// Whatever the order of changes, deliveries and connection losses,
        /// once connected and quiet the store holds exactly the sender's
        /// map (the window of 8 keeps many requests in flight).
        #[test]
        fn the_store_converges_to_the_senders_map(ops in proptest::collection::vec(op(), 0..200)) {
            let mut sender = OffloadSender::new(OffloadConfig { window: 8, refresh_interval: None });
            let mut store = OffloadStore::new();
            let mut wire: VecDeque<OffloadRequest> = VecDeque::new();
            let mut back: VecDeque<OffloadReply> = VecDeque::new();
            let mut connected = true;
            let mut now = Instant::ZERO;
            sender.connected(now);
            for op in ops {
                now += Duration::from_millis(1);
                if connected {
                    while let Some(r) = sender.poll_request(now) {
                        wire.push_back(r);
                    }
                }
                match op {
                    Op::Update(t, s, v) => sender
                        .add_or_update(now, tunnel(t), session(s), 1, &versioned(v))
                        .unwrap(),
                    Op::Remove(t, s) => sender.remove(now, t, s),
                    Op::RemoveTunnel(t) => sender.remove_tunnel(now, t),
                    Op::Deliver(n) => {
                        for r in wire.drain(..n.min(wire.len())) {
                            back.push_back(store.handle_request(SOURCE, &r));
                        }
                    }
                    Op::Acknowledge(n) => {
                        for r in back.drain(..n.min(back.len())) {
                            sender.handle_reply(now, &r);
                        }
                    }
                    Op::Disconnect => {
                        // Applied at the store or not, the rest is lost
                        // with the connection.
                        connected = false;
                        wire.clear();
                        back.clear();
                        sender.disconnected();
                    }
                    Op::Connect => {
                        connected = true;
                        wire.clear();
                        back.clear();
                        sender.connected(now);
                    }
                }
            }
            if !connected {
                wire.clear();
                back.clear();
                sender.connected(now);
            }
            for _ in 0..100_000 {
                while let Some(r) = sender.poll_request(now) {
                    wire.push_back(r);
                }
                if let Some(r) = wire.pop_front() {
                    back.push_back(store.handle_request(SOURCE, &r));
                } else if let Some(r) = back.pop_front() {
                    sender.handle_reply(now, &r);
                } else {
                    break;
                }
            }
            proptest::prop_assert!(sender.in_sync());
            let expected: std::collections::BTreeSet<(u16, u16, Vec<u8>)> = sender
                .expected()
                .map(|(t, s, _, b)| (t.lns_tunnel_id, s.lns_session_id, b.to_vec()))
                .collect();
            let held: std::collections::BTreeSet<(u16, u16, Vec<u8>)> = store
                .tunnels()
                .flat_map(|t| t.sessions.values().map(move |s| (t.identity.lns_tunnel_id, s.identity.lns_session_id, s.blob.clone())))
                .collect();
            proptest::prop_assert_eq!(held, expected);
        }
    }
}

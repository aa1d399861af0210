//! A worker's copy of the tunnel, session and neighbour tables.
//!
//! Every table is allocated at start-up for the configured number of
//! sessions and never grows: lookups are O(1) and allocation-free (a direct
//! array for the 16-bit Tunnel ID, open-addressing maps for the rest), and
//! an update that would not fit fails instead of allocating. Only the worker
//! that owns a copy touches it; the control plane changes it through
//! [`crate::update::Update`]s.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::pages;
use crate::wire::{ethernet, ipv4, udp};

/// A fixed-capacity map from a 64-bit key to a `Copy` value: linear
/// probing with backward-shift deletion, so no tombstones pile up under
/// churn, and a table at most half full so probes stay short. Each key
/// sits beside its value: with 100,000 sessions the table is far bigger
/// than the cache, and a lookup that finds its key at home then costs one
/// miss, not two.
#[derive(Debug)]
pub struct FixedMap<V: Copy> {
    slots: Box<[(u64, V)]>,
    shift: u32,
    mask: usize,
    len: usize,
    capacity: usize,
}

/// Ask the CPU to start loading the cache lines of `*value` (the first and
/// the last, so a value across two lines comes whole). Only a hint: it
/// never faults and changes nothing; on other architectures it does nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let first = (value as *const T).cast::<i8>();
        let last = first.wrapping_add(core::mem::size_of::<T>().saturating_sub(1));
        // SAFETY: SSE is part of the x86_64 baseline, so the instruction
        // exists; a prefetch reads nothing architecturally and never
        // faults, whatever the address (both point into `*value` anyway).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The key no entry may have: marks a free slot.
const EMPTY: u64 = u64::MAX;

/// Set in a `by_l2tp` value that is an alias (the rest of the value is
/// the target's slot). Slot indices never reach it, so a lookup that does
/// not expect aliases finds no session at such an index and the common
/// path pays nothing for them (see [`Tables::l2tp_entry`]).
pub(crate) const ALIAS: u32 = 1 << 31;

/// Set in a `by_pppoe` value whose session holds its upstream frames:
/// as an index it finds no session, so the LAC's upstream path pays
/// nothing for holding until its lookup fails, and then asks
/// [`Tables::held`]. Mirrors [`Handover::holding`].
pub(crate) const HOLDING: u32 = 1 << 31;

/// The `by_pppoe` value of slot `index`.
fn pppoe_value(index: usize, holding: bool) -> u32 {
    index as u32 | if holding { HOLDING } else { 0 }
}

impl<V: Copy> FixedMap<V> {
    /// Room for `capacity` entries; `fill` initialises the value slots.
    pub fn with_capacity(capacity: usize, fill: V) -> Self {
        let slots = (capacity.max(8) * 2).next_power_of_two();
        FixedMap {
            slots: pages::filled(slots, (EMPTY, fill)),
            shift: 64 - slots.trailing_zeros(),
            mask: slots - 1,
            len: 0,
            capacity,
        }
    }

    /// Fibonacci hashing: the top bits of key × 2^64/φ spread consecutive
    /// ids (tunnel and session ids, addresses from a pool) evenly.
    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The value for `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<V> {
        let mut i = self.home(key);
        loop {
            let (k, v) = self.slots[i];
            if k == key {
                return Some(v);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Start loading `key`'s home slot into the cache (a hint: a lookup
    /// a little later then finds it there).
    #[inline]
    pub fn prefetch(&self, key: u64) {
        if let Some(slot) = self.slots.get(self.home(key)) {
            prefetch(slot);
        }
    }

    /// Insert or replace; false when the map is full or `key` is the
    /// reserved all-ones key.
    pub fn insert(&mut self, key: u64, value: V) -> bool {
        if key == EMPTY {
            return false;
        }
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].0;
            if k == key {
                self.slots[i].1 = value;
                return true;
            }
            if k == EMPTY {
                if self.len >= self.capacity {
                    return false;
                }
                self.slots[i] = (key, value);
                self.len += 1;
                return true;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Remove `key`, giving back its value.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].0;
            if k == EMPTY {
                return None;
            }
            if k == key {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let value = self.slots[i].1;
        self.len -= 1;
        // Backward shift: pull later entries of the probe run into the hole
        // unless their home lies cyclically in (hole, j].
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let k = self.slots[j].0;
            if k == EMPTY {
                break;
            }
            let home = self.home(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole].0 = EMPTY;
        Some(value)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A session as the L2TP header names it on the way in: our Tunnel ID and
/// our Session ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionKey {
    /// Our Tunnel ID.
    pub tunnel_id: u16,
    /// Our Session ID.
    pub session_id: u16,
}

impl SessionKey {
    fn map_key(self) -> u64 {
        u64::from(self.tunnel_id) << 16 | u64::from(self.session_id)
    }
}

/// A tunnel: what the fast path needs to check and build its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// Our Tunnel ID: what the peer puts in the packets it sends us.
    pub tunnel_id: u16,
    /// The peer's Tunnel ID: what we put in the packets we send.
    pub peer_tunnel_id: u16,
    /// Our address and UDP port.
    pub local: SocketAddrV4,
    /// The peer's address and UDP port (RFC 2661 §8.1: the port the peer
    /// chose, which need not be 1701).
    pub peer: SocketAddrV4,
    /// Where to send packets for the peer: its address when on-link, a
    /// gateway otherwise; resolved in the neighbour table.
    pub next_hop: Ipv4Addr,
}

/// A LAC session's PPPoE side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PppoeBinding {
    /// The access port the subscriber is behind.
    pub port: u8,
    /// The subscriber's MAC address.
    pub subscriber_mac: ethernet::Address,
    /// The PPPoE SESSION_ID (RFC 2516 §4; never 0xffff).
    pub session_id: u16,
}

impl PppoeBinding {
    fn map_key(mac: ethernet::Address, session_id: u16) -> u64 {
        let m = mac.0;
        u64::from_be_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]) | u64::from(session_id)
    }
}

/// A session as the control plane programs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our ids.
    pub key: SessionKey,
    /// The peer's Session ID: what we put in the packets we send.
    pub peer_session_id: u16,
    /// LNS: the subscriber's IPv4 address (from IPCP). Downstream packets
    /// to it go into this session; upstream packets must come from it.
    pub subscriber_addr: Option<Ipv4Addr>,
    /// The largest packet the subscriber accepts (its LCP MRU): longer
    /// downstream IPv4 packets are refused, and TCP MSS is clamped to fit.
    pub mru: u16,
    /// Data messages carry sequence numbers (RFC 2661 §5.4: the peer asked
    /// with Sequencing Required, or we did).
    pub sequencing: bool,
    /// LAC: the subscriber's PPPoE session.
    pub pppoe: Option<PppoeBinding>,
}

/// Per-session traffic counters, for accounting (RADIUS Acct-*-Octets and
/// -Packets). Octets count the IPv4 packet on the LNS and the PPP frame on
/// the LAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCounters {
    /// From the subscriber.
    pub upstream_packets: u64,
    /// From the subscriber.
    pub upstream_octets: u64,
    /// To the subscriber.
    pub downstream_packets: u64,
    /// To the subscriber.
    pub downstream_octets: u64,
}

/// A session in a worker's table: everything a packet of it reads or
/// writes, in one cache line (64 bytes, aligned), so that with the table
/// out of the cache a packet waits for one line. What only a session
/// that changes LNS needs is beside it, in its [`Handover`].
///
/// History: at 88 bytes, unaligned, a session straddled three lines in
/// one case of two, and the prefetch (the first and the last) left the
/// middle one to miss; aligned to two lines it took exactly two (every
/// one of 100,000 sessions in turn: upstream 88 → 73 ns, downstream 67 →
/// 56, LAC relay 91 → 76). See bench/README.md for the one-line session.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub struct Session {
    /// What the control plane programmed.
    pub config: SessionConfig,
    /// Traffic so far.
    pub counters: SessionCounters,
    /// The Ns we expect next from the peer (RFC 2661 §5.4), once one came.
    pub expected_ns: Option<u16>,
    /// The Ns of the next data message we send.
    pub next_ns: u16,
}

/// One line: a free slot is `None` by a niche inside the session, so the
/// check that a slot holds a session reads that same line.
const _: () = assert!(core::mem::size_of::<Option<Session>>() == 64);

/// What a session keeps while it changes LNS, beside its [`Session`]:
/// the data path reads it only for a session that holds its upstream
/// frames or answers to an alias, whose map entries say so (the
/// [`HOLDING`] and [`ALIAS`] bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handover {
    /// The LAC holds upstream frames instead of sending them. Set through
    /// [`Tables::set_holding`], which keeps the PPPoE map's entry in step.
    holding: bool,
    /// The holding ring, while one is taken.
    pub ring: Option<u32>,
    /// Other ids whose data messages are this session's
    /// ([`crate::update::Update::AliasSession`]). Set through
    /// [`Tables::alias_session`], which keeps the L2TP map in step.
    alias: Option<SessionAlias>,
}

impl Handover {
    /// Whether the session holds its upstream frames.
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// The session's alias.
    pub fn alias(&self) -> Option<SessionAlias> {
        self.alias
    }
}

/// A second (Tunnel ID, Session ID) a session answers to: during a
/// make-before-break move the LAC's upstream already goes to the new LNS
/// while the old LNS still sends downstream on the old L2TP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAlias {
    /// The old ids.
    pub key: SessionKey,
    /// The Ns expected next on the old session (RFC 2661 §5.4): a
    /// sequence of its own, which the new session's would reject.
    pub expected_ns: Option<u16>,
}

/// A next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Its MAC address.
    pub mac: ethernet::Address,
    /// The port it is behind.
    pub port: u8,
}

/// Which session table a received packet will look itself up in, read
/// from fixed offsets before the burst is processed (for prefetching).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Not a session packet, or not in the common form: no prefetch.
    #[default]
    None,
    /// An L2TP data message of these ids.
    L2tp(SessionKey),
    /// IPv4 to this subscriber (LNS downstream).
    Subscriber(Ipv4Addr),
    /// A PPPoE session frame from this MAC with this SESSION_ID (LAC).
    Pppoe(ethernet::Address, u16),
}

/// An update that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Every slot is taken.
    Full,
    /// The entry refers to something that does not exist or is reserved
    /// (a PPPoE session id of 0xffff, a tunnel id of 0).
    Invalid,
}

/// Length of the outer headers of an L2TP data message: Ethernet, IPv4
/// without options, UDP.
pub(crate) const OUTER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

/// The outer Ethernet/IPv4/UDP headers of a tunnel's data messages, built
/// once: every packet of every session of the tunnel sends the same bytes
/// but for the IPv4 Total Length, Identification and Checksum and the UDP
/// Length, which the fast path patches in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OuterTemplate {
    /// Valid while equal to the tables' generation: any change to tunnels
    /// or neighbours makes every template stale, and the next packet of a
    /// tunnel rebuilds its own.
    pub(crate) generation: u32,
    /// The port toward the next hop.
    pub(crate) port: u8,
    /// The peer's Tunnel ID, for the L2TP header.
    pub(crate) peer_tunnel_id: u16,
    /// The headers, with the patched fields zero (UDP checksum 0: none).
    pub(crate) bytes: [u8; OUTER_LEN],
    /// One's-complement sum of the IPv4 header with the patched fields
    /// zero: the checksum is then three adds (RFC 1071 §2(C), incremental).
    pub(crate) ipv4_sum: u16,
}

impl OuterTemplate {
    const STALE: OuterTemplate = OuterTemplate {
        generation: 0,
        port: 0,
        peer_tunnel_id: 0,
        bytes: [0; OUTER_LEN],
        ipv4_sum: 0,
    };
}

/// A worker's tables.
#[derive(Debug)]
pub struct Tables {
    tunnels: Box<[Option<Tunnel>]>,
    /// By our Tunnel ID, beside `tunnels` so that a packet reads only its
    /// own tunnel's template.
    outer: Box<[OuterTemplate]>,
    /// Bumped by every change a template depends on.
    generation: u32,
    sessions: Box<[Option<Session>]>,
    /// By slot, beside `sessions`.
    handovers: Box<[Handover]>,
    free_sessions: Vec<u32>,
    by_l2tp: FixedMap<u32>,
    by_subscriber: FixedMap<u32>,
    by_pppoe: FixedMap<u32>,
    neighbours: FixedMap<Neighbour>,
    gateway: Option<Ipv4Addr>,
    /// The gateway's neighbour entry, kept in step with `gateway` and
    /// `neighbours` by every change to either: most packets go to the
    /// gateway, and this spares them a second lookup.
    gateway_neighbour: Option<Neighbour>,
}

impl Tables {
    /// Tables for up to `max_sessions` sessions and `max_neighbours`
    /// neighbours, all allocated now.
    pub fn new(max_sessions: usize, max_neighbours: usize) -> Tables {
        let no_neighbour = Neighbour {
            mac: ethernet::Address([0; 6]),
            port: 0,
        };
        Tables {
            tunnels: pages::filled(1 << 16, None),
            outer: pages::filled(1 << 16, OuterTemplate::STALE),
            generation: 1,
            sessions: pages::filled(max_sessions, None),
            handovers: pages::filled(max_sessions, Handover::default()),
            free_sessions: (0..max_sessions as u32).rev().collect(),
            // Room for one alias per session: a planned switchover of
            // every session at once aliases them all.
            by_l2tp: FixedMap::with_capacity(max_sessions * 2, 0),
            by_subscriber: FixedMap::with_capacity(max_sessions, 0),
            by_pppoe: FixedMap::with_capacity(max_sessions, 0),
            neighbours: FixedMap::with_capacity(max_neighbours, no_neighbour),
            gateway: None,
            gateway_neighbour: None,
        }
    }

    /// The tunnel with our Tunnel ID `id`.
    #[inline]
    pub fn tunnel(&self, id: u16) -> Option<&Tunnel> {
        self.tunnels[usize::from(id)].as_ref()
    }

    /// Add or replace a tunnel.
    pub fn upsert_tunnel(&mut self, tunnel: Tunnel) -> Result<(), TableError> {
        // RFC 2661 §3.1: Tunnel ID 0 is for the first SCCRQ only.
        if tunnel.tunnel_id == 0 {
            return Err(TableError::Invalid);
        }
        self.tunnels[usize::from(tunnel.tunnel_id)] = Some(tunnel);
        self.invalidate_templates();
        Ok(())
    }

    /// Remove a tunnel. Its sessions stay until removed (the worker removes
    /// them with [`Tables::session_slots`] and [`Tables::remove_session_at`]).
    pub fn remove_tunnel(&mut self, id: u16) -> Option<Tunnel> {
        self.invalidate_templates();
        self.tunnels[usize::from(id)].take()
    }

    /// Make every outer template stale. On wrap-around (after four
    /// billion updates) the old generations could match again, so they
    /// are cleared.
    fn invalidate_templates(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.outer.fill(OuterTemplate::STALE);
            self.generation = 1;
        }
    }

    /// Tunnel `id`'s outer template, when it is up to date.
    #[inline]
    pub(crate) fn outer_template(&self, id: u16) -> Option<&OuterTemplate> {
        let template = &self.outer[usize::from(id)];
        (template.generation == self.generation).then_some(template)
    }

    /// Store tunnel `id`'s outer template, current as of now.
    pub(crate) fn set_outer_template(&mut self, id: u16, mut template: OuterTemplate) {
        template.generation = self.generation;
        self.outer[usize::from(id)] = template;
    }

    /// Slot index of the session with these ids (not an alias: see
    /// [`Tables::alias_target`]).
    #[inline]
    pub fn session_index(&self, key: SessionKey) -> Option<usize> {
        self.by_l2tp
            .get(key.map_key())
            .filter(|&i| i < ALIAS)
            .map(|i| i as usize)
    }

    /// Slot index of the session with these ids, or of the session they
    /// are an alias of (for injects: a frame for the old ids of a session
    /// that moved still reaches its subscriber).
    pub fn session_or_alias_index(&self, key: SessionKey) -> Option<usize> {
        self.by_l2tp
            .get(key.map_key())
            .map(|i| (i & !ALIAS) as usize)
    }

    /// What `by_l2tp` holds for these ids: a slot index, or an alias (the
    /// [`ALIAS`] bit set), which as an index finds no session. The data
    /// path takes it as an index and only when that finds nothing looks
    /// for an alias ([`Tables::resolve_alias`]).
    #[inline(always)]
    pub(crate) fn l2tp_entry(&self, key: SessionKey) -> Option<u32> {
        self.by_l2tp.get(key.map_key())
    }

    /// The slot of the session `alias` is an alias of.
    pub fn alias_target(&self, alias: SessionKey) -> Option<usize> {
        self.by_l2tp
            .get(alias.map_key())
            .filter(|&i| i >= ALIAS)
            .map(|i| (i & !ALIAS) as usize)
    }

    /// An [`Tables::l2tp_entry`] that found no session: the target slot
    /// and the alias's sequence state when it is the alias `key`.
    #[cold]
    #[inline(never)]
    pub(crate) fn resolve_alias(
        &mut self,
        entry: u32,
        key: SessionKey,
    ) -> Option<(usize, &mut SessionAlias)> {
        if entry < ALIAS {
            return None;
        }
        let index = (entry & !ALIAS) as usize;
        let alias = self.handover_mut(index)?.alias.as_mut()?;
        (alias.key == key).then_some((index, alias))
    }

    /// Make `alias` a second set of ids for the session `target`: its data
    /// messages are the target's. A session has one alias; a new one
    /// replaces it, and an alias moved from another session leaves that
    /// one. Refused when `target` is not a session or `alias` is one.
    pub fn alias_session(
        &mut self,
        alias: SessionKey,
        target: SessionKey,
    ) -> Result<usize, TableError> {
        // RFC 2661 §3.1: ids 0 name no session.
        if alias.session_id == 0 || alias.tunnel_id == 0 || alias == target {
            return Err(TableError::Invalid);
        }
        let index = self.session_index(target).ok_or(TableError::Invalid)?;
        if self.session_index(alias).is_some() {
            return Err(TableError::Invalid);
        }
        let old = self.handovers[index].alias;
        if old.map(|a| a.key) == Some(alias) {
            return Ok(index);
        }
        self.remove_alias(alias);
        if let Some(old) = old {
            self.remove_alias(old.key);
        }
        // Sized for an alias per slot, so this cannot fail.
        if !self.by_l2tp.insert(alias.map_key(), index as u32 | ALIAS) {
            return Err(TableError::Full);
        }
        self.handovers[index].alias = Some(SessionAlias {
            key: alias,
            expected_ns: None,
        });
        Ok(index)
    }

    /// Remove the alias `alias` (its session stays); false when there is
    /// none.
    pub fn remove_alias(&mut self, alias: SessionKey) -> bool {
        let Some(index) = self.alias_target(alias) else {
            return false;
        };
        self.by_l2tp.remove(alias.map_key());
        if let Some(h) = self.handovers.get_mut(index) {
            if h.alias.is_some_and(|a| a.key == alias) {
                h.alias = None;
            }
        }
        true
    }

    /// Slot index of the session that owns subscriber address `addr`.
    #[inline]
    pub fn session_index_by_subscriber(&self, addr: Ipv4Addr) -> Option<usize> {
        self.by_subscriber
            .get(u64::from(addr.to_bits()))
            .map(|i| i as usize)
    }

    /// Slot index of the LAC session bound to this PPPoE session.
    pub fn session_index_by_pppoe(&self, mac: ethernet::Address, session_id: u16) -> Option<usize> {
        self.pppoe_entry(mac, session_id)
            .map(|i| (i & !HOLDING) as usize)
    }

    /// What `by_pppoe` holds for this PPPoE session: a slot index, or one
    /// with the [`HOLDING`] bit set, which as an index finds no session.
    /// The data path takes it as an index and only when that finds
    /// nothing asks [`Tables::held`].
    #[inline(always)]
    pub(crate) fn pppoe_entry(&self, mac: ethernet::Address, session_id: u16) -> Option<u32> {
        self.by_pppoe.get(PppoeBinding::map_key(mac, session_id))
    }

    /// A [`Tables::pppoe_entry`] that found no session: the holding ring
    /// of the session, when it holds (`Some(None)` while it has no ring).
    #[cold]
    #[inline(never)]
    pub(crate) fn held(&self, entry: u32) -> Option<Option<u32>> {
        if entry & HOLDING == 0 {
            return None;
        }
        let handover = self.handover((entry & !HOLDING) as usize)?;
        handover.holding.then_some(handover.ring)
    }

    /// Start loading what a packet of session `key` reads (its map slot),
    /// ahead of the lookup; see [`Tables::prefetch_session`].
    #[inline]
    pub(crate) fn prefetch_lookup(&self, lookup: Lookup) {
        match lookup {
            Lookup::None => {}
            Lookup::L2tp(key) => self.by_l2tp.prefetch(key.map_key()),
            Lookup::Subscriber(addr) => self.by_subscriber.prefetch(u64::from(addr.to_bits())),
            Lookup::Pppoe(mac, id) => self.by_pppoe.prefetch(PppoeBinding::map_key(mac, id)),
        }
    }

    /// Find `lookup`'s session (its home slot prefetched a while ago) and
    /// start loading the session itself (a holding LAC session's entry
    /// finds none: its frames go to a ring, not through the session). A full lookup, probing past the
    /// home slot: reading the home slot alone left every key a collision
    /// had displaced (one in five random keys at a load of 0.38, such as
    /// the LAC's PPPoE map keyed by MAC address) to miss on its session in
    /// the path. ~8 instructions a packet; see bench/README.md (stop 14)
    /// for what it saved.
    #[inline]
    pub(crate) fn prefetch_session(&self, lookup: Lookup) {
        let index = match lookup {
            Lookup::None => None,
            Lookup::L2tp(key) => self.by_l2tp.get(key.map_key()),
            Lookup::Subscriber(addr) => self.by_subscriber.get(u64::from(addr.to_bits())),
            Lookup::Pppoe(mac, id) => self.by_pppoe.get(PppoeBinding::map_key(mac, id)),
        };
        if let Some(session) = index.and_then(|i| self.sessions.get(i as usize)) {
            prefetch(session);
        }
    }

    /// The session in slot `index`.
    #[inline]
    pub fn session(&self, index: usize) -> Option<&Session> {
        self.sessions.get(index)?.as_ref()
    }

    /// The session in slot `index`, writable.
    #[inline]
    pub fn session_mut(&mut self, index: usize) -> Option<&mut Session> {
        self.sessions.get_mut(index)?.as_mut()
    }

    /// The handover state of the session in slot `index`.
    pub fn handover(&self, index: usize) -> Option<&Handover> {
        self.session(index)?;
        self.handovers.get(index)
    }

    /// The handover state of the session in slot `index`, writable
    /// (within the module: `holding` and `alias` have map entries to keep
    /// in step).
    fn handover_mut(&mut self, index: usize) -> Option<&mut Handover> {
        self.session(index)?;
        self.handovers.get_mut(index)
    }

    /// The holding ring of the session in slot `index`, writable.
    pub fn ring_mut(&mut self, index: usize) -> Option<&mut Option<u32>> {
        Some(&mut self.handover_mut(index)?.ring)
    }

    /// Make the session in slot `index` hold its upstream frames, or stop;
    /// false when the slot is free. Its PPPoE map entry carries the state
    /// for the data path ([`HOLDING`]).
    pub fn set_holding(&mut self, index: usize, holding: bool) -> bool {
        let Some(pppoe) = self.session(index).map(|s| s.config.pppoe) else {
            return false;
        };
        self.handovers[index].holding = holding;
        if let Some(p) = pppoe {
            // Replaces the entry the session already has.
            self.by_pppoe.insert(
                PppoeBinding::map_key(p.subscriber_mac, p.session_id),
                pppoe_value(index, holding),
            );
        }
        true
    }

    /// Number of session slots (for scans at update points).
    pub fn session_slots(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions in the table (aliases not counted).
    pub fn session_count(&self) -> usize {
        self.sessions.len() - self.free_sessions.len()
    }

    /// Add a session or change one, keeping its counters, sequence state
    /// and holding ring. A LAC session is found by its PPPoE binding too,
    /// so moving it to another tunnel (a switchover) is an upsert with the
    /// new ids; its alias, if any, stays. Ids that were an alias become
    /// this session's own (the alias goes). Returns the slot.
    pub fn upsert_session(&mut self, config: SessionConfig) -> Result<usize, TableError> {
        if config.key.session_id == 0
            || config
                .pppoe
                .is_some_and(|p| p.session_id == 0xffff || p.session_id == 0)
        {
            return Err(TableError::Invalid);
        }
        self.remove_alias(config.key);
        let existing = self.session_index(config.key).or_else(|| {
            config
                .pppoe
                .and_then(|p| self.session_index_by_pppoe(p.subscriber_mac, p.session_id))
        });
        let index = match existing {
            Some(index) => {
                self.unmap(index);
                index
            }
            None => self.free_sessions.pop().ok_or(TableError::Full)? as usize,
        };
        let session = match self.sessions[index].take() {
            Some(old) => Session {
                config,
                // A new key is a new L2TP session: its Ns start over.
                expected_ns: old.expected_ns.filter(|_| old.config.key == config.key),
                next_ns: if old.config.key == config.key {
                    old.next_ns
                } else {
                    0
                },
                counters: old.counters,
            },
            None => {
                self.handovers[index] = Handover::default();
                Session {
                    config,
                    counters: SessionCounters::default(),
                    expected_ns: None,
                    next_ns: 0,
                }
            }
        };
        self.sessions[index] = Some(session);
        // The maps are sized for every slot, so these inserts cannot fail.
        let slot = index as u32;
        self.by_l2tp.insert(config.key.map_key(), slot);
        if let Some(addr) = config.subscriber_addr {
            self.by_subscriber.insert(u64::from(addr.to_bits()), slot);
        }
        if let Some(p) = config.pppoe {
            self.by_pppoe.insert(
                PppoeBinding::map_key(p.subscriber_mac, p.session_id),
                pppoe_value(index, self.handovers[index].holding),
            );
        }
        Ok(index)
    }

    /// Remove the maps' entries that point at slot `index`.
    fn unmap(&mut self, index: usize) {
        let Some(s) = &self.sessions[index] else {
            return;
        };
        let slot = Some(index as u32);
        let config = s.config;
        if self.by_l2tp.get(config.key.map_key()) == slot {
            self.by_l2tp.remove(config.key.map_key());
        }
        if let Some(addr) = config.subscriber_addr {
            let k = u64::from(addr.to_bits());
            if self.by_subscriber.get(k) == slot {
                self.by_subscriber.remove(k);
            }
        }
        if let Some(p) = config.pppoe {
            let k = PppoeBinding::map_key(p.subscriber_mac, p.session_id);
            if self.by_pppoe.get(k).map(|e| e & !HOLDING) == slot {
                self.by_pppoe.remove(k);
            }
        }
    }

    /// Remove the session in slot `index` and its alias, giving it back
    /// with its handover state (its holding ring still needs releasing).
    pub fn remove_session_at(&mut self, index: usize) -> Option<(Session, Handover)> {
        let alias = self.handover(index)?.alias;
        if let Some(alias) = alias {
            self.remove_alias(alias.key);
        }
        self.unmap(index);
        self.free_sessions.push(index as u32);
        let session = self.sessions[index].take()?;
        Some((session, core::mem::take(&mut self.handovers[index])))
    }

    /// Add or replace a neighbour.
    pub fn upsert_neighbour(
        &mut self,
        addr: Ipv4Addr,
        neighbour: Neighbour,
    ) -> Result<(), TableError> {
        self.invalidate_templates();
        let inserted = self.neighbours.insert(u64::from(addr.to_bits()), neighbour);
        self.refresh_gateway_neighbour();
        if inserted {
            Ok(())
        } else {
            Err(TableError::Full)
        }
    }

    /// Remove a neighbour.
    pub fn remove_neighbour(&mut self, addr: Ipv4Addr) -> Option<Neighbour> {
        self.invalidate_templates();
        let removed = self.neighbours.remove(u64::from(addr.to_bits()));
        self.refresh_gateway_neighbour();
        removed
    }

    /// The neighbour with address `addr`.
    #[inline(always)]
    pub fn neighbour(&self, addr: Ipv4Addr) -> Option<Neighbour> {
        self.neighbours.get(u64::from(addr.to_bits()))
    }

    /// Set the next hop of everything not on-link toward the core.
    pub fn set_gateway(&mut self, gateway: Option<Ipv4Addr>) {
        self.gateway = gateway;
        self.refresh_gateway_neighbour();
    }

    fn refresh_gateway_neighbour(&mut self) {
        self.gateway_neighbour = self.gateway.and_then(|gw| self.neighbour(gw));
    }

    /// Where an IPv4 packet to `dst` goes next: to `dst` itself when it is a
    /// known neighbour (on-link), else to the gateway. Returns the next
    /// hop's address, and its neighbour entry when resolved.
    #[inline]
    pub fn route(&self, dst: Ipv4Addr) -> (Ipv4Addr, Option<Neighbour>) {
        if let Some(n) = self.neighbour(dst) {
            return (dst, Some(n));
        }
        match self.gateway {
            Some(gw) => (gw, self.gateway_neighbour),
            None => (dst, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn fixed_map_behaves_like_a_hash_map(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..400)) {
            let mut m = FixedMap::with_capacity(40, 0u32);
            let mut reference = HashMap::new();
            for (n, (insert, key)) in ops.into_iter().enumerate() {
                if insert {
                    let fits = reference.len() < 40 || reference.contains_key(&key);
                    prop_assert_eq!(m.insert(key, n as u32), fits);
                    if fits {
                        reference.insert(key, n as u32);
                    }
                } else {
                    prop_assert_eq!(m.remove(key), reference.remove(&key));
                }
                prop_assert_eq!(m.len(), reference.len());
                for k in 0..64 {
                    prop_assert_eq!(m.get(k), reference.get(&k).copied());
                }
            }
        }
    }

    fn lac_session(tunnel_id: u16, session_id: u16) -> SessionConfig {
        SessionConfig {
            key: SessionKey {
                tunnel_id,
                session_id,
            },
            peer_session_id: 9,
            subscriber_addr: None,
            mru: 1492,
            sequencing: false,
            pppoe: Some(PppoeBinding {
                port: 0,
                subscriber_mac: ethernet::Address([2, 0, 0, 0, 0, 9]),
                session_id: 0x42,
            }),
        }
    }

    #[test]
    fn a_lac_session_moves_tunnel_keeping_its_state() {
        let mut t = Tables::new(4, 4);
        let i = t.upsert_session(lac_session(1, 10)).unwrap();
        t.session_mut(i).unwrap().counters.upstream_packets = 7;
        assert!(t.set_holding(i, true));
        *t.ring_mut(i).unwrap() = Some(3);
        let j = t.upsert_session(lac_session(2, 20)).unwrap();
        assert_eq!(i, j);
        assert_eq!(t.session_count(), 1);
        assert_eq!(
            t.session_index(SessionKey {
                tunnel_id: 1,
                session_id: 10
            }),
            None
        );
        assert_eq!(t.session(j).unwrap().counters.upstream_packets, 7);
        let h = t.handover(j).unwrap();
        assert!(h.holding());
        assert_eq!(h.ring, Some(3), "the held frames stay with it");
        let mac = ethernet::Address([2, 0, 0, 0, 0, 9]);
        assert_eq!(t.session_index_by_pppoe(mac, 0x42), Some(j));
        // The data path sees the holding in the map's entry, and the ring
        // behind it.
        let entry = t.pppoe_entry(mac, 0x42).unwrap();
        assert!(t.session(entry as usize).is_none(), "no slot while holding");
        assert_eq!(t.held(entry), Some(Some(3)));
        // Flushed: the entry is the slot again.
        assert!(t.set_holding(j, false));
        assert_eq!(t.pppoe_entry(mac, 0x42), Some(j as u32));
        assert_eq!(t.held(j as u32), None);
        // A removed session leaves a clean slot behind.
        assert!(t.set_holding(j, true));
        let (_, h) = t.remove_session_at(j).unwrap();
        assert!(h.holding());
        assert_eq!(t.pppoe_entry(mac, 0x42), None);
        let k = t.upsert_session(lac_session(3, 30)).unwrap();
        assert_eq!(t.handover(k), Some(&Handover::default()));
        assert_eq!(t.pppoe_entry(mac, 0x42), Some(k as u32));
        assert!(!t.set_holding(j ^ 1, true), "a free slot holds nothing");
    }

    fn key(tunnel_id: u16, session_id: u16) -> SessionKey {
        SessionKey {
            tunnel_id,
            session_id,
        }
    }

    /// An alias names its session's slot without being a session, is
    /// replaced by a newer one, and goes with its session.
    #[test]
    fn an_alias_follows_its_session() {
        let mut t = Tables::new(2, 1);
        let i = t.upsert_session(lac_session(1, 10)).unwrap();
        t.session_mut(i).unwrap().next_ns = 5;
        assert_eq!(t.upsert_session(lac_session(2, 20)), Ok(i));
        assert_eq!(t.alias_session(key(1, 10), key(2, 20)), Ok(i));
        assert_eq!(t.alias_target(key(1, 10)), Some(i));
        assert_eq!(t.session_index(key(1, 10)), None);
        assert_eq!(t.session_or_alias_index(key(1, 10)), Some(i));
        assert_eq!(t.session_or_alias_index(key(2, 20)), Some(i));
        assert_eq!(t.session_count(), 1);
        let entry = t.l2tp_entry(key(1, 10)).unwrap();
        assert!(t.session(entry as usize).is_none(), "no slot at an alias");
        assert_eq!(t.resolve_alias(entry, key(1, 10)).map(|a| a.0), Some(i));
        assert!(t.resolve_alias(entry, key(1, 11)).is_none());
        // Again: nothing changes, its sequence state included.
        t.resolve_alias(entry, key(1, 10)).unwrap().1.expected_ns = Some(9);
        assert_eq!(t.alias_session(key(1, 10), key(2, 20)), Ok(i));
        let alias = |t: &Tables| t.handover(i).unwrap().alias();
        assert_eq!(alias(&t).unwrap().expected_ns, Some(9));
        // One alias a session: a new one replaces the old.
        assert_eq!(t.alias_session(key(1, 11), key(2, 20)), Ok(i));
        assert_eq!(t.alias_target(key(1, 10)), None);
        assert_eq!(alias(&t).unwrap().key, key(1, 11));
        // Moving again keeps the alias.
        assert_eq!(t.upsert_session(lac_session(3, 30)), Ok(i));
        assert_eq!(t.alias_target(key(1, 11)), Some(i));
        // Removing the alias leaves the session.
        assert!(t.remove_alias(key(1, 11)));
        assert!(!t.remove_alias(key(1, 11)));
        assert_eq!(alias(&t), None);
        assert_eq!(t.session_index(key(3, 30)), Some(i));
        // Removing the session removes its alias.
        assert_eq!(t.alias_session(key(1, 10), key(3, 30)), Ok(i));
        assert!(t.remove_session_at(i).is_some());
        assert_eq!(t.alias_target(key(1, 10)), None);
        assert_eq!(t.l2tp_entry(key(1, 10)), None);
        assert_eq!(t.session_count(), 0);
    }

    #[test]
    fn an_alias_is_refused_unless_it_names_a_session_by_free_ids() {
        let mut t = Tables::new(3, 1);
        let mut other = lac_session(1, 11);
        other.pppoe = None;
        let i = t.upsert_session(lac_session(2, 20)).unwrap();
        t.upsert_session(other).unwrap();
        let invalid = Err(TableError::Invalid);
        assert_eq!(t.alias_session(key(1, 10), key(5, 5)), invalid, "no target");
        assert_eq!(
            t.alias_session(key(1, 11), key(2, 20)),
            invalid,
            "a session"
        );
        assert_eq!(t.alias_session(key(2, 20), key(2, 20)), invalid);
        assert_eq!(t.alias_session(key(1, 0), key(2, 20)), invalid);
        assert_eq!(t.alias_session(key(0, 1), key(2, 20)), invalid);
        // Upserting a session under an alias's ids ends the alias: the
        // ids are that session's now.
        assert_eq!(t.alias_session(key(1, 10), key(2, 20)), Ok(i));
        let mut back = lac_session(1, 10);
        back.pppoe = None;
        let j = t.upsert_session(back).unwrap();
        assert_ne!(i, j);
        assert_eq!(t.handover(i).unwrap().alias(), None);
        assert_eq!(t.session_index(key(1, 10)), Some(j));
    }

    /// The route through the gateway follows every change of the gateway
    /// and of its neighbour entry, in any order.
    #[test]
    fn the_gateway_route_follows_its_neighbour_entry() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let other = Ipv4Addr::new(192, 0, 2, 2);
        let dst = Ipv4Addr::new(198, 51, 100, 7);
        let entry = |last: u8, port: u8| Neighbour {
            mac: ethernet::Address([2, 0, 0, 0, 0, last]),
            port,
        };
        let mut t = Tables::new(4, 4);
        t.set_gateway(Some(gw));
        assert_eq!(t.route(dst), (gw, None));
        assert_eq!(t.upsert_neighbour(gw, entry(1, 0)), Ok(()));
        assert_eq!(t.route(dst), (gw, Some(entry(1, 0))));
        assert_eq!(t.upsert_neighbour(gw, entry(9, 1)), Ok(()));
        assert_eq!(t.upsert_neighbour(other, entry(2, 0)), Ok(()));
        assert_eq!(t.route(dst), (gw, Some(entry(9, 1))));
        t.set_gateway(Some(other));
        assert_eq!(t.route(dst), (other, Some(entry(2, 0))));
        t.set_gateway(Some(gw));
        assert_eq!(t.remove_neighbour(gw), Some(entry(9, 1)));
        assert_eq!(t.route(dst), (gw, None));
        t.set_gateway(None);
        assert_eq!(t.route(dst), (dst, None));
        // On-link destinations still go to themselves.
        assert_eq!(t.route(other), (other, Some(entry(2, 0))));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = Tables::new(2, 1);
        let mut c = lac_session(1, 1);
        c.pppoe = None;
        assert!(t.upsert_session(c).is_ok());
        c.key.session_id = 2;
        assert!(t.upsert_session(c).is_ok());
        c.key.session_id = 3;
        assert_eq!(t.upsert_session(c), Err(TableError::Full));
        let i = t
            .session_index(SessionKey {
                tunnel_id: 1,
                session_id: 1,
            })
            .unwrap();
        assert!(t.remove_session_at(i).is_some());
        assert!(t.upsert_session(c).is_ok());
        c.key.session_id = 0;
        assert_eq!(t.upsert_session(c), Err(TableError::Invalid));
    }
}

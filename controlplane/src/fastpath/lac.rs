//! The LAC's fast path: [`lac::Node`] events turned into worker table
//! updates, and the access port's punts fed back to the node.
//!
//! Ports: 0 is the access interface (PPPoE subscribers), 1 the wan
//! interface (L2TP to the LNSs): start the [`Fastpath`] with
//! `interfaces: vec![access, wan]` and `Role::Lac`.
//!
//! * Call answered ([`lac::Event::CallAnswered`], the node runs with
//!   [`lac::Config::defer_connect`]): `UpsertTunnel` when the tunnel is new
//!   to the workers (its next hop resolved through the kernel) and
//!   `UpsertSession` with the subscriber's PPPoE binding, holding its
//!   upstream frames (`SetHolding`), then a barrier; once every worker has
//!   echoed it (or after [`CONNECT_LIMIT`]) the call is connected
//!   ([`lac::Node::connect_call`]: the ICCN goes). The LNS sends its first
//!   PPP frames as soon as it has the ICCN (RFC 2661 §7.4.1), and the
//!   workers relay them down: programming at call up instead would drop
//!   them, and PPP would wait for the LNS's restart timer. The
//!   subscriber's frames wait in the workers meanwhile: sent before the
//!   LNS has the ICCN they would be dropped there.
//! * Call up ([`lac::Event::SessionUp`], ICCN acknowledged): the held
//!   upstream frames go, in order, after those the node queued before the
//!   session was programmed; or the same programming for a call not
//!   programmed yet (a node without `defer_connect`). The workers relay
//!   PPPoE ↔ L2TP both ways.
//! * Session down and answered calls abandoned: `RemoveSession`; tunnel
//!   down: `RemoveTunnel`.
//! * HA (docs/ha-protocol.md §5.4, §5.5; the node's side is [`lac`]'s
//!   module documentation). Failure switchover: [`lac::Event::Holding`]
//!   holds the session under its old ids, and the dead LNS's tunnel stays
//!   in the workers while held sessions have its ids (removing it would
//!   take them and their rings). The recovered call's
//!   [`lac::Event::CallAnswered`] (with [`lac::CallUp::moved_from`]):
//!   `UpsertTunnel` if new, `UpsertSession` with the new ids and the same
//!   PPPoE binding (the worker finds the slot by the binding and keeps its
//!   ring, holding flag and counters), the barrier and `connect_call` as
//!   for any call; its [`lac::Event::SessionUp`] flushes the ring in order
//!   to the new LNS. Make-before-break (load switchover): nothing is held.
//!   The answered new call's ids become an alias of the session
//!   (`AliasSession`), which stays on the old call, still served by the old
//!   LNS, so upstream does not wait and the new LNS's first frames reach
//!   the subscriber; at its `SessionUp` the session takes the new ids and
//!   the old ones become the alias, so what the old LNS sent before the
//!   release still arrives. The old call is released only once the
//!   workers echo a barrier after that switch ([`lac::Node::release_moved`],
//!   at most [`CONNECT_LIMIT`] later): upstream frames they still sent on
//!   the old call would find it gone at the old LNS.
//!   [`lac::Event::SessionReleased`]: the alias goes
//!   [`RELEASE_LINGER`] later, then the old tunnel if the node let go of it
//!   and nothing uses it. A make-before-break call that fails only loses
//!   its alias.
//! * Punts: PPPoE discovery (`Local`, whole frames) and PPP control of
//!   sessions the workers do not relay yet (`LacPpp`, the PPP frame, which
//!   is put back into an Ethernet/PPPoE frame) go to
//!   [`lac::Node::handle_access_frame`]; what the node sends on the access
//!   side ([`lac::Node::poll_access_frame`]) is injected on port 0.
//!
//! ```text
//! let mut fp = LacFastpath::start(config, access_mac)?; // interfaces: [access, wan]
//! loop {
//!     driver.run_until(driver.now() + Duration::from_millis(1), |_node, event| {
//!         fp.program(&event);
//!         ControlFlow::Continue(())
//!     })?;
//!     fp.service(driver.node_mut(), driver.now());
//! }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use dataplane::punt::{InjectTarget, PuntReason};
use dataplane::table::{SessionConfig, SessionKey, Tunnel};
use dataplane::update::Update;
use dataplane::wire::ethernet;

use super::{Fastpath, FastpathConfig, FastpathError};
use crate::l2tp::SessionHandle;
use crate::lac;
use crate::time::Instant;

/// The access port: the first interface.
pub const ACCESS_PORT: u8 = 0;

/// The PPPoE session EtherType (RFC 2516 §4).
const PPPOE_SESSION: u16 = 0x8864;
/// PPPoE VER 1, TYPE 1 (RFC 2516 §4).
const PPPOE_VER_TYPE: u8 = 0x11;
/// Ethernet and PPPoE headers.
const PPPOE_HEAD: usize = 14 + 6;

/// The MRU programmed for LAC sessions: the LAC relays, it does not
/// enforce one.
const RELAY_MRU: u16 = 1500;

/// How long an answered call's ICCN waits for the workers to confirm they
/// know the session, at most (a stuck worker must not stall every call; the
/// node's own bound, [`lac::Config::defer_connect`], should be longer).
pub const CONNECT_LIMIT: Duration = Duration::from_millis(200);

/// Punts handled per [`LacFastpath::service`] call at most.
const PUNTS_PER_SERVICE: usize = 1024;

/// Counters of the LAC glue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LacFastpathStats {
    /// Sessions programmed.
    pub sessions: u64,
    /// Sessions removed.
    pub removed: u64,
    /// Answered calls connected once the workers knew them.
    pub connected: u64,
    /// Answered calls connected after [`CONNECT_LIMIT`] without the
    /// workers' confirmation (or with no barrier to wait for).
    pub connected_unconfirmed: u64,
    /// Tunnels programmed.
    pub tunnels: u64,
    /// Access frames (discovery, PPP control) handed to the node.
    pub access_punts: u64,
    /// Frames the node sent on the access side through the workers.
    pub injected: u64,
    /// Of those, the ones the workers had no room for.
    pub inject_failures: u64,
    /// Punts for next hops without a MAC address.
    pub neighbour_punts: u64,
    /// Other punts, dropped.
    pub other_punts: u64,
    /// Table updates that failed.
    pub update_errors: u64,
    /// HA: sessions put in holding because their LNS died
    /// ([`lac::Event::Holding`]).
    pub held: u64,
    /// HA: tunnels whose sessions the workers held at once, with the
    /// replay of what the dead LNS may not have forwarded.
    pub tunnels_held: u64,
    /// HA: sessions moved onto a new call in the workers (ring, counters
    /// and PPPoE binding kept).
    pub moved: u64,
    /// HA: moved sessions whose held frames were flushed to the new LNS.
    pub flushed: u64,
    /// HA: old ids kept reaching the subscriber during a make-before-break
    /// move ([`Update::AliasSession`]).
    pub aliased: u64,
    /// HA: of those, removed after the old call's release.
    pub aliases_removed: u64,
    /// HA: make-before-break moves whose new call failed, the session back
    /// on its old call.
    pub moves_reverted: u64,
    /// HA: tunnels gone at the node kept in the workers while held
    /// sessions still had their ids.
    pub tunnels_kept: u64,
    /// HA: make-before-break moves whose old call the node released once
    /// the workers had switched.
    pub released: u64,
    /// HA: of those, released after [`CONNECT_LIMIT`] without the
    /// workers' confirmation.
    pub released_unconfirmed: u64,
}

/// How long a released session's old ids keep reaching the subscriber:
/// the old LNS's last downstream frames, sent before it saw our CDN, are
/// still on their way (ha-protocol §5.4).
pub const RELEASE_LINGER: Duration = Duration::from_secs(1);

/// A subscriber's session as the workers know it.
#[derive(Debug, Clone, Copy)]
struct Programmed {
    /// What the workers were given: the ids they know the session by now.
    config: SessionConfig,
    /// The workers hold its upstream frames.
    holding: bool,
    /// HA: it is moving from another call.
    moving: Option<Move>,
}

/// An HA move under way.
#[derive(Debug, Clone, Copy)]
struct Move {
    /// The call it leaves, as the workers had it (a failure switchover's
    /// dead call, whose ids the workers keep while the session holds).
    from: SessionConfig,
    /// Make-before-break: the answered new call. Until it is up the
    /// session stays on its old ids (upstream to the old LNS, which still
    /// serves it) and the new ids are an alias of it (the new LNS's first
    /// frames reach the subscriber).
    next: Option<SessionConfig>,
}

/// Old ids that still reach a moved session.
#[derive(Debug, Clone, Copy)]
struct Alias {
    subscriber: lac::SubscriberKey,
    /// Released at the old LNS (or its tunnel is gone): queued for
    /// removal.
    released: bool,
}

/// The LAC's fast path: a [`Fastpath`] and what was programmed into it.
#[derive(Debug)]
pub struct LacFastpath {
    fp: Fastpath,
    /// Our MAC address on the access port (the node's PPPoE MAC).
    access_mac: ethernet::Address,
    /// By our Tunnel ID.
    tunnels: HashMap<u16, Tunnel>,
    /// Tunnels the node let go of that the workers keep, because held
    /// sessions still have their ids (a failed LNS's calls until they are
    /// recovered elsewhere): removed once none does.
    kept_tunnels: HashSet<u16>,
    /// Sessions or aliases left some tunnel since the last turn: see
    /// whether a kept one is unused now.
    kept_tunnels_changed: bool,
    /// Tunnels whose LNS was found dead, every session of them held in the
    /// workers (`HoldTunnel`), until the tunnel leaves them.
    dead_tunnels: HashSet<u16>,
    /// Sessions programmed, by subscriber.
    sessions: HashMap<lac::SubscriberKey, Programmed>,
    /// Make-before-break aliases, by the old ids.
    aliases: HashMap<SessionKey, Alias>,
    /// Released aliases in release order, with when
    /// [`LacFastpath::service`] first saw them (`None` before): each is
    /// removed [`RELEASE_LINGER`] after.
    releases: VecDeque<(SessionKey, Option<Instant>)>,
    /// Answered calls programmed whose ICCN waits: the barrier that says
    /// the workers know them and when it was sent (both `None` until
    /// [`LacFastpath::service`] sends it; the token alone stays `None` if
    /// it could not be sent).
    unconnected: Vec<(SessionHandle, Option<u64>, Option<Instant>)>,
    /// Make-before-break moves switched in the tables whose old call the
    /// node releases once the workers applied the switch
    /// ([`lac::Node::release_moved`]): the barrier and when it was sent,
    /// as for `unconnected`.
    unreleased: Vec<(lac::SubscriberKey, Option<u64>, Option<Instant>)>,
    frame: Vec<u8>,
    stats: LacFastpathStats,
}

fn call_key(call: &lac::CallUp) -> SessionKey {
    SessionKey {
        tunnel_id: call.local_tunnel_id,
        session_id: call.local_session_id,
    }
}

impl LacFastpath {
    /// Start the workers ([`Fastpath::start`], in the calling thread's
    /// network namespace; `config.interfaces` is `[access, wan]`).
    /// `access_mac` is the node's PPPoE MAC address (the destination of
    /// the frames handed to it).
    pub fn start(
        config: FastpathConfig,
        access_mac: ethernet::Address,
    ) -> Result<LacFastpath, FastpathError> {
        Ok(LacFastpath::with_fastpath(
            Fastpath::start(config)?,
            access_mac,
        ))
    }

    /// Over a fast path already running.
    pub fn with_fastpath(fp: Fastpath, access_mac: ethernet::Address) -> LacFastpath {
        LacFastpath {
            fp,
            access_mac,
            tunnels: HashMap::new(),
            kept_tunnels: HashSet::new(),
            kept_tunnels_changed: false,
            dead_tunnels: HashSet::new(),
            sessions: HashMap::new(),
            aliases: HashMap::new(),
            releases: VecDeque::new(),
            unconnected: Vec::new(),
            unreleased: Vec::new(),
            frame: Vec::with_capacity(2048),
            stats: LacFastpathStats::default(),
        }
    }

    /// The fast path (reports, barriers, stop).
    pub fn fastpath(&mut self) -> &mut Fastpath {
        &mut self.fp
    }

    /// Counters of the glue.
    pub fn stats(&self) -> LacFastpathStats {
        self.stats
    }

    /// Sessions the workers hold the upstream of for an HA move (the
    /// failed LNS's, until recovered).
    pub fn holding_sessions(&self) -> usize {
        self.sessions
            .values()
            .filter(|p| p.holding && p.moving.is_some())
            .count()
    }

    /// Ids aliased to a session of another call: a make-before-break
    /// move's new ids until its call is up, then its old ids until a while
    /// after their release.
    pub fn aliases(&self) -> usize {
        let answered = self
            .sessions
            .values()
            .filter(|p| p.moving.is_some_and(|m| m.next.is_some()))
            .count();
        self.aliases.len() + answered
    }

    /// Tunnels the node let go of that the workers still keep for held
    /// sessions.
    pub fn kept_tunnels(&self) -> usize {
        self.kept_tunnels.len()
    }

    /// Apply one node event to the tables. An answered call is connected
    /// by a later [`LacFastpath::service`].
    pub fn program(&mut self, event: &lac::Event) {
        let result = match event {
            lac::Event::CallAnswered(call) => {
                self.unconnected.push((call.session, None, None));
                self.answer(call)
            }
            lac::Event::SessionUp(call) => self.up(call),
            lac::Event::CallAbandoned {
                subscriber,
                local_tunnel_id,
                local_session_id,
            } => self.abandon(
                *subscriber,
                SessionKey {
                    tunnel_id: *local_tunnel_id,
                    session_id: *local_session_id,
                },
            ),
            lac::Event::SessionDown(ended) => self.end(ended.subscriber),
            lac::Event::TunnelDown {
                local_tunnel_id, ..
            } => self.tunnel_down(*local_tunnel_id),
            lac::Event::Holding {
                subscriber,
                local_tunnel_id,
                local_session_id,
                replay,
            } => self.hold(
                *subscriber,
                SessionKey {
                    tunnel_id: *local_tunnel_id,
                    session_id: *local_session_id,
                },
                *replay,
            ),
            lac::Event::SessionReleased {
                local_tunnel_id,
                local_session_id,
                ..
            } => {
                self.release_alias(SessionKey {
                    tunnel_id: *local_tunnel_id,
                    session_id: *local_session_id,
                });
                Ok(())
            }
            lac::Event::TunnelUp { .. }
            | lac::Event::LnsLockedOut { .. }
            | lac::Event::SwitchoverRequested { .. } => Ok(()),
        };
        if let Err(e) = result {
            self.stats.update_errors += 1;
            tracing::error!(error = %e, "fast path not programmed");
        }
    }

    /// A call answered: programmed holding its upstream until the LNS has
    /// the ICCN (call up). The subscriber's frames wait in the workers
    /// instead of going ahead of it; the updates go back to back, and a
    /// worker applies its updates in batches between bursts.
    ///
    /// A failure switchover's recovered call takes over the subscriber's
    /// slot in the workers: the session holds under its old ids, then is
    /// upserted with the new ones and the same PPPoE binding, which the
    /// worker finds the slot by (ring, holding and counters kept). A
    /// make-before-break move only makes the new ids an alias of the
    /// session, which stays on the old call until the new one is up: the
    /// old LNS serves it until released (docs/ha-protocol.md §5.4), so
    /// upstream need not wait, and the new LNS's first frames reach the
    /// subscriber.
    fn answer(&mut self, call: &lac::CallUp) -> Result<(), FastpathError> {
        let config = self.session_config(call)?;
        let previous = self.sessions.get(&call.subscriber).copied();
        let (Some(moved), Some(p)) = (call.moved_from, previous) else {
            // A fresh call (or a moved one the workers never had).
            self.stats.sessions += 1;
            self.fp.upsert_session(config)?;
            self.fp.set_holding(config.key, true)?;
            self.sessions.insert(
                call.subscriber,
                Programmed {
                    config,
                    holding: true,
                    moving: None,
                },
            );
            self.kept_tunnels_changed = true;
            return Ok(());
        };
        // A retry replaces the alias of the call answered before.
        if let Some(earlier) = p.moving.and_then(|m| m.next) {
            if earlier.key != config.key {
                self.fp.remove_session(earlier.key)?;
            }
        }
        let from = p.moving.map_or(p.config, |m| m.from);
        if moved.make_before_break && !p.holding {
            self.fp.send(Update::AliasSession {
                alias: config.key,
                target: p.config.key,
            })?;
            self.stats.aliased += 1;
            if let Some(p) = self.sessions.get_mut(&call.subscriber) {
                p.moving = Some(Move {
                    from,
                    next: Some(config),
                });
            }
            return Ok(());
        }
        if !p.holding {
            self.fp.set_holding(p.config.key, true)?;
        }
        self.stats.sessions += 1;
        self.stats.moved += 1;
        self.fp.upsert_session(config)?;
        self.sessions.insert(
            call.subscriber,
            Programmed {
                config,
                holding: true,
                moving: Some(Move { from, next: None }),
            },
        );
        self.kept_tunnels_changed = true;
        Ok(())
    }

    /// A call up: the held upstream frames go, in order, after those the
    /// node queued before the session was programmed; or the same
    /// programming for a call not programmed yet (a node without
    /// `defer_connect`). A make-before-break move happens here: the
    /// session takes the new ids (its slot found by the binding), the old
    /// ones become the alias, so what the old LNS sent before it saw the
    /// release still reaches the subscriber.
    fn up(&mut self, call: &lac::CallUp) -> Result<(), FastpathError> {
        let key = call_key(call);
        let Some(p) = self.sessions.get(&call.subscriber).copied() else {
            return self.up_unprogrammed(call);
        };
        if let Some(next) = p.moving.and_then(|m| m.next).filter(|n| n.key == key) {
            let old = p.config.key;
            // The new ids are an alias until here: that goes first.
            self.fp.remove_session(next.key)?;
            self.stats.sessions += 1;
            self.fp.upsert_session(next)?;
            self.fp.send(Update::AliasSession {
                alias: old,
                target: next.key,
            })?;
            self.stats.aliased += 1;
            self.stats.moved += 1;
            // The old LNS must not get the release before the workers stop
            // sending it upstream frames: they would be lost there.
            self.unreleased.push((call.subscriber, None, None));
            self.aliases.insert(
                old,
                Alias {
                    subscriber: call.subscriber,
                    released: false,
                },
            );
            if self.kept_tunnels.contains(&old.tunnel_id) {
                // Its LNS is gone already: nothing more will come.
                self.release_alias(old);
            }
            if p.holding {
                self.fp.set_holding(next.key, false)?;
                self.stats.flushed += 1;
            }
            self.sessions.insert(
                call.subscriber,
                Programmed {
                    config: next,
                    holding: false,
                    moving: None,
                },
            );
            self.kept_tunnels_changed = true;
            return Ok(());
        }
        if p.config.key != key {
            return self.up_unprogrammed(call);
        }
        if p.holding {
            self.fp.set_holding(key, false)?;
            if p.moving.is_some() {
                self.stats.flushed += 1;
            }
            if let Some(p) = self.sessions.get_mut(&call.subscriber) {
                p.holding = false;
                p.moving = None;
            }
        }
        Ok(())
    }

    /// A call up that the workers were not given as answered.
    fn up_unprogrammed(&mut self, call: &lac::CallUp) -> Result<(), FastpathError> {
        if call.moved_from.is_some() {
            // As if answered, then up: this programs it with the call's
            // ids, so the second turn finds it.
            self.answer(call)?;
            return self.up(call);
        }
        let config = self.session_config(call)?;
        self.stats.sessions += 1;
        self.fp.upsert_session(config)?;
        self.sessions.insert(
            call.subscriber,
            Programmed {
                config,
                holding: false,
                moving: None,
            },
        );
        Ok(())
    }

    /// An answered call ended before it was up. A fresh call is
    /// unprogrammed. A failure move keeps holding (the node tries the next
    /// peer, or ends the session); a make-before-break move loses the new
    /// ids' alias and goes on on its old call.
    fn abandon(
        &mut self,
        subscriber: lac::SubscriberKey,
        key: SessionKey,
    ) -> Result<(), FastpathError> {
        let Some(p) = self.sessions.get(&subscriber).copied() else {
            return Ok(());
        };
        if let Some(m) = p.moving.filter(|m| m.next.is_some_and(|n| n.key == key)) {
            // The alias only: the session is under its old ids.
            self.fp.remove_session(key)?;
            self.stats.moves_reverted += 1;
            if let Some(p) = self.sessions.get_mut(&subscriber) {
                p.moving = p.holding.then_some(Move { next: None, ..m });
            }
            return Ok(());
        }
        if p.config.key != key {
            return Ok(());
        }
        match p.moving {
            None => self.end(subscriber),
            Some(_) => Ok(()),
        }
    }

    /// The subscriber's session ended: out of the workers (its alias
    /// with it).
    fn end(&mut self, subscriber: lac::SubscriberKey) -> Result<(), FastpathError> {
        self.aliases.retain(|_, a| a.subscriber != subscriber);
        let Some(p) = self.sessions.remove(&subscriber) else {
            return Ok(());
        };
        self.stats.removed += 1;
        self.fp.remove_session(p.config.key)?;
        self.kept_tunnels_changed = true;
        Ok(())
    }

    /// HA failure switchover: the subscriber's call died with its LNS;
    /// its upstream is held until the recovered call is up. (A
    /// make-before-break move under way goes on: its new call, once up,
    /// takes the held frames.)
    ///
    /// The first of a tunnel's holds holds every session of the tunnel at
    /// once (`HoldTunnel`), each ring starting with what the workers relayed
    /// on it within `replay` (docs/ha-protocol.md, C6): the dead LNS may not
    /// have forwarded that, and the flush after the move sends it to the
    /// new LNS first, so nothing the subscriber sent is lost (some may
    /// arrive twice).
    fn hold(
        &mut self,
        subscriber: lac::SubscriberKey,
        old: SessionKey,
        replay: Duration,
    ) -> Result<(), FastpathError> {
        let tunnel_id = old.tunnel_id;
        if self.tunnels.contains_key(&tunnel_id) && self.dead_tunnels.insert(tunnel_id) {
            self.fp.send(Update::HoldTunnel {
                tunnel_id,
                replay_ns: u64::try_from(replay.as_nanos()).unwrap_or(u64::MAX),
            })?;
            self.stats.tunnels_held += 1;
            // The workers hold them all now; those the node does not move
            // it ends, and they leave the tables then.
            for p in self.sessions.values_mut() {
                if p.config.key.tunnel_id == tunnel_id {
                    p.holding = true;
                }
            }
        }
        let Some(p) = self.sessions.get_mut(&subscriber) else {
            return Ok(());
        };
        if p.config.key != old {
            return Ok(());
        }
        let was_holding = p.holding;
        p.holding = true;
        p.moving = Some(Move {
            from: p.config,
            next: p.moving.and_then(|m| m.next),
        });
        self.stats.held += 1;
        if was_holding {
            Ok(())
        } else {
            self.fp.set_holding(old, true)
        }
    }

    /// A tunnel went down at the node. Its sessions leave the workers,
    /// except those held for a move: they keep its ids (and so the tunnel,
    /// whose removal would take them) until they are moved or end. Old ids
    /// on it that still reach moved sessions linger as after a release;
    /// new ids on it of a make-before-break move go.
    fn tunnel_down(&mut self, tunnel_id: u16) -> Result<(), FastpathError> {
        let mut result = Ok(());
        let mut gone = Vec::new();
        let mut kept = false;
        let mut unaliased = Vec::new();
        for (subscriber, p) in &mut self.sessions {
            if let Some(m) = &mut p.moving {
                if let Some(next) = m.next.filter(|n| n.key.tunnel_id == tunnel_id) {
                    unaliased.push(next.key);
                    m.next = None;
                }
            }
            if p.config.key.tunnel_id != tunnel_id {
                if p.moving.is_some_and(|m| m.next.is_none()) && !p.holding {
                    p.moving = None;
                }
                continue;
            }
            if p.holding && p.moving.is_some() {
                kept = true;
            } else {
                gone.push((*subscriber, p.config.key));
            }
        }
        for key in unaliased {
            self.stats.moves_reverted += 1;
            result = result.and(self.fp.remove_session(key));
        }
        let on_tunnel: Vec<SessionKey> = self
            .aliases
            .keys()
            .copied()
            .filter(|k| k.tunnel_id == tunnel_id)
            .collect();
        for key in on_tunnel {
            self.release_alias(key);
            kept = true;
        }
        for (subscriber, key) in gone {
            self.sessions.remove(&subscriber);
            self.aliases.retain(|_, a| a.subscriber != subscriber);
            self.stats.removed += 1;
            // Else the tunnel's removal takes them.
            if kept {
                result = result.and(self.fp.remove_session(key));
            }
        }
        if kept {
            if self.kept_tunnels.insert(tunnel_id) {
                self.stats.tunnels_kept += 1;
            }
            return result;
        }
        self.kept_tunnels.remove(&tunnel_id);
        self.dead_tunnels.remove(&tunnel_id);
        match self.tunnels.remove(&tunnel_id) {
            Some(_) => result.and(self.fp.remove_tunnel(tunnel_id)),
            None => result,
        }
    }

    /// Remove the kept tunnels that no session and no alias has the ids
    /// of any more.
    fn release_kept_tunnels(&mut self) -> Result<(), FastpathError> {
        if self.kept_tunnels.is_empty() {
            return Ok(());
        }
        let unused: Vec<u16> = self
            .kept_tunnels
            .iter()
            .copied()
            .filter(|&t| {
                !self.sessions.values().any(|p| p.config.key.tunnel_id == t)
                    && !self.aliases.keys().any(|k| k.tunnel_id == t)
            })
            .collect();
        let mut result = Ok(());
        for t in unused {
            self.kept_tunnels.remove(&t);
            self.dead_tunnels.remove(&t);
            if self.tunnels.remove(&t).is_some() {
                result = result.and(self.fp.remove_tunnel(t));
            }
        }
        result
    }

    /// The session's table entry, its tunnel programmed first when new to
    /// the workers (its next hop resolved through the kernel).
    fn session_config(&mut self, call: &lac::CallUp) -> Result<SessionConfig, FastpathError> {
        let tunnel = Tunnel {
            tunnel_id: call.local_tunnel_id,
            peer_tunnel_id: call.peer_tunnel_id,
            local: call.local,
            peer: call.peer,
            next_hop: self.fp.next_hop(*call.peer.ip()),
        };
        if self.tunnels.get(&tunnel.tunnel_id) != Some(&tunnel) {
            self.fp.want_neighbour(tunnel.next_hop);
            self.fp.upsert_tunnel(tunnel)?;
            self.tunnels.insert(tunnel.tunnel_id, tunnel);
            self.kept_tunnels.remove(&tunnel.tunnel_id);
            self.dead_tunnels.remove(&tunnel.tunnel_id);
            self.stats.tunnels += 1;
        }
        Ok(SessionConfig {
            key: call_key(call),
            peer_session_id: call.peer_session_id,
            subscriber_addr: None,
            mru: RELAY_MRU,
            sequencing: call.sequencing,
            pppoe: Some(call.subscriber.binding(ACCESS_PORT)),
        })
    }

    /// The old call behind alias `key` was released: the alias lingers
    /// [`RELEASE_LINGER`], then goes.
    fn release_alias(&mut self, key: SessionKey) {
        if let Some(alias) = self.aliases.get_mut(&key) {
            if !alias.released {
                alias.released = true;
                self.releases.push_back((key, None));
            }
        }
    }

    /// Remove the aliases released [`RELEASE_LINGER`] ago.
    fn expire_aliases(&mut self, now: Instant) {
        // The ones released since the last turn are at the back.
        for (_, since) in self.releases.iter_mut().rev() {
            if since.is_some() {
                break;
            }
            *since = Some(now);
        }
        let mut removed = false;
        // The ids of the sessions, made only when some alias is due.
        let mut live: Option<HashSet<SessionKey>> = None;
        while let Some(&(key, Some(since))) = self.releases.front() {
            if now.saturating_duration_since(since) < RELEASE_LINGER {
                break;
            }
            self.releases.pop_front();
            // Gone already with its session or its tunnel (or made again
            // since, by a move that was retried).
            if !self.aliases.get(&key).is_some_and(|a| a.released) {
                continue;
            }
            self.aliases.remove(&key);
            removed = true;
            // The ids may name a session again by now (a new call on the
            // same ids): then the alias went with the upsert already.
            let live =
                live.get_or_insert_with(|| self.sessions.values().map(|p| p.config.key).collect());
            if live.contains(&key) {
                continue;
            }
            self.stats.aliases_removed += 1;
            if let Err(e) = self.fp.remove_session(key) {
                self.stats.update_errors += 1;
                tracing::error!(error = %e, "released alias not removed");
            }
        }
        self.kept_tunnels_changed |= removed;
        // Once per turn, not per event: the scan is over every session,
        // and a failed LNS's sessions move in a burst.
        if std::mem::take(&mut self.kept_tunnels_changed) {
            if let Err(e) = self.release_kept_tunnels() {
                self.stats.update_errors += 1;
                tracing::error!(error = %e, "unused tunnel not removed");
            }
        }
    }

    /// The control loop's turn, once per slice: queued updates and the
    /// workers' answers ([`Fastpath::poll`]), access-side punts to the
    /// node, and the node's access frames out through the workers. Returns
    /// how many punts were handled.
    pub fn service(&mut self, node: &mut lac::Node, now: Instant) -> usize {
        self.expire_aliases(now);
        self.await_workers(now);
        self.fp.poll();
        self.connect_calls(node, now);
        self.release_moves(node, now);
        let our_mac = self.access_mac;
        let mut handled = 0;
        while handled < PUNTS_PER_SERVICE {
            let Some((worker, punt)) = self.fp.poll_punt() else {
                break;
            };
            handled += 1;
            match punt.reason {
                PuntReason::LacPpp {
                    subscriber_mac,
                    pppoe_session_id,
                } => {
                    self.stats.access_punts += 1;
                    pppoe_frame(
                        &mut self.frame,
                        our_mac,
                        subscriber_mac,
                        pppoe_session_id,
                        punt.buffer.bytes(),
                    );
                    node.handle_access_frame(now, &self.frame);
                }
                PuntReason::Local if punt.port == ACCESS_PORT => {
                    self.stats.access_punts += 1;
                    node.handle_access_frame(now, punt.buffer.bytes());
                }
                PuntReason::L2tpControl => match super::udp_datagram(punt.buffer.bytes()) {
                    // As if it came through the node's socket.
                    Some((from, payload)) => node.handle_datagram(now, from, payload),
                    None => self.stats.other_punts += 1,
                },
                PuntReason::NeighbourMissing { next_hop } => {
                    self.stats.neighbour_punts += 1;
                    self.fp.resolve_neighbour(next_hop);
                }
                _ => self.stats.other_punts += 1,
            }
            self.fp.recycle(worker, punt.buffer);
        }
        while node.poll_access_frame(&mut self.frame) {
            self.stats.injected += 1;
            if !self.fp.inject(InjectTarget::Port(ACCESS_PORT), &self.frame) {
                self.stats.inject_failures += 1;
            }
        }
        handled
    }

    /// One barrier for the answered calls programmed and the moves
    /// switched since the last turn.
    fn await_workers(&mut self, now: Instant) {
        if !self.unconnected.iter().any(|c| c.2.is_none())
            && !self.unreleased.iter().any(|c| c.2.is_none())
        {
            return;
        }
        let token = match self.fp.barrier_quiet() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "no barrier for answered calls: connecting them unconfirmed");
                None
            }
        };
        for call in self.unconnected.iter_mut().filter(|c| c.2.is_none()) {
            call.1 = token;
            call.2 = Some(now);
        }
        for moved in self.unreleased.iter_mut().filter(|c| c.2.is_none()) {
            moved.1 = token;
            moved.2 = Some(now);
        }
    }

    /// Let the node release the old calls of the moves the workers have
    /// switched (or that waited [`CONNECT_LIMIT`]): their CDN goes out with
    /// the node's next transmissions.
    fn release_moves(&mut self, node: &mut lac::Node, now: Instant) {
        let fp = &self.fp;
        let stats = &mut self.stats;
        self.unreleased.retain(|&(subscriber, token, since)| {
            let Some(since) = since else {
                return true;
            };
            let switched = token.is_some_and(|t| !fp.barrier_pending(t));
            if !switched && now.saturating_duration_since(since) < CONNECT_LIMIT && token.is_some()
            {
                return true;
            }
            if switched {
                stats.released += 1;
            } else {
                stats.released_unconfirmed += 1;
            }
            // False when the subscriber is gone meanwhile: nothing to do.
            node.release_moved(now, subscriber);
            false
        });
    }

    /// Moves switched whose old call's release waits for the workers.
    pub fn unreleased_moves(&self) -> usize {
        self.unreleased.len()
    }

    /// Connect the answered calls the workers know (or that waited
    /// [`CONNECT_LIMIT`]): their ICCN goes out with the node's next
    /// transmissions.
    fn connect_calls(&mut self, node: &mut lac::Node, now: Instant) {
        let fp = &self.fp;
        let stats = &mut self.stats;
        self.unconnected.retain(|&(session, token, since)| {
            let Some(since) = since else {
                return true;
            };
            let known = token.is_some_and(|t| !fp.barrier_pending(t));
            if !known && now.saturating_duration_since(since) < CONNECT_LIMIT && token.is_some() {
                return true;
            }
            if known {
                stats.connected += 1;
            } else {
                stats.connected_unconfirmed += 1;
            }
            // False when the call ended meanwhile: nothing to do.
            node.connect_call(now, session);
            false
        });
    }

    /// Answered calls whose ICCN waits for the workers.
    pub fn unconnected_calls(&self) -> usize {
        self.unconnected.len()
    }

    /// Whether answered calls or moves wait for a barrier the workers
    /// answer in their own time: the owner should call
    /// [`LacFastpath::service`] again soon rather than after a whole slice
    /// (a failure switchover's calls each wait for one before their ICCN).
    pub fn waiting_for_workers(&self) -> bool {
        !self.unconnected.is_empty() || !self.unreleased.is_empty()
    }

    /// Stop the workers (see [`Fastpath::stop`]).
    pub fn stop(&mut self) -> Vec<dataplane::update::WorkerReport> {
        self.fp.stop()
    }
}

/// Ethernet/PPPoE session around `ppp` (from the Protocol field, as the
/// workers punt it), from the subscriber to us, into `out`.
fn pppoe_frame(
    out: &mut Vec<u8>,
    to: ethernet::Address,
    from: ethernet::Address,
    session_id: u16,
    ppp: &[u8],
) {
    out.clear();
    out.reserve(PPPOE_HEAD + ppp.len());
    out.extend_from_slice(&to.0);
    out.extend_from_slice(&from.0);
    out.extend_from_slice(&PPPOE_SESSION.to_be_bytes());
    // RFC 2516 §4: VER/TYPE, CODE 0 (session data), SESSION_ID, LENGTH of
    // the payload.
    out.extend_from_slice(&[PPPOE_VER_TYPE, 0x00]);
    out.extend_from_slice(&session_id.to_be_bytes());
    let len = u16::try_from(ppp.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(ppp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::pppoe;

    #[test]
    fn punted_ppp_goes_back_into_a_pppoe_session_frame() {
        let mut out = Vec::new();
        let us = ethernet::Address([2, 0, 0, 0, 0, 1]);
        let sub = ethernet::Address([2, 0, 0, 0, 0, 2]);
        let lcp = [0xc0, 0x21, 1, 1, 0, 4];
        pppoe_frame(&mut out, us, sub, 0x1234, &lcp);
        let eth = ethernet::Frame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), us);
        assert_eq!(eth.src_addr(), sub);
        assert_eq!(u16::from(eth.ethertype()), PPPOE_SESSION);
        let p = pppoe::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(p.code(), pppoe::Code::Session);
        assert_eq!(p.session_id(), 0x1234);
        assert_eq!(usize::from(p.length()), lcp.len());
        assert_eq!(&out[PPPOE_HEAD..], &lcp);
    }
}

//! The queues between the control plane and one worker.
//!
//! Each worker has its own set, all bounded and lock-free
//! (`crossbeam_queue::ArrayQueue`):
//!
//! * `updates`: table changes, barriers and report requests, applied by the
//!   worker at bounded points (every few polls, a bounded number each time);
//! * `events`: what the worker answers (barrier echoes, reports, session
//!   counters, refused updates);
//! * `punts` and `injects`: packets each way, in buffers from `pool`.
//!
//! Updates are applied in order, so a [`Update::Barrier`] echoed by every
//! worker means everything sent before it is live everywhere.

use core::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;

use crate::counters::Counters;
use crate::punt::{Inject, InjectTarget, PacketBuffer, Punt};
use crate::table::{Neighbour, SessionConfig, SessionCounters, SessionKey, TableError, Tunnel};

/// A change to a worker's tables, or a question to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Add or replace a tunnel.
    UpsertTunnel(Tunnel),
    /// Remove a tunnel and every session in it.
    RemoveTunnel(u16),
    /// Add or change a session.
    UpsertSession(SessionConfig),
    /// Remove a session (its held frames are freed) and its alias; given
    /// an alias's ids, remove only the alias.
    RemoveSession(SessionKey),
    /// Take L2TP data messages with the ids `alias` as session `target`'s
    /// (LAC downstream during a make-before-break move: the old LNS still
    /// sends on the old L2TP session while upstream already goes to the
    /// new one). One alias per session: a new one replaces it. The alias's
    /// tunnel must stay programmed for its messages to pass the tunnel
    /// check; removing that tunnel removes the alias, not the session.
    /// Refused (`Invalid`) when `target` is not a session or `alias` is.
    AliasSession {
        /// The old ids.
        alias: SessionKey,
        /// The session they now name.
        target: SessionKey,
    },
    /// Hold a LAC session's upstream frames (`true`), or send what was held
    /// in order and stop holding (`false`).
    SetHolding {
        /// The session.
        key: SessionKey,
        /// Hold or flush.
        holding: bool,
    },
    /// The LNS at the other end of tunnel `tunnel_id` is found dead: put
    /// every LAC session of the tunnel in holding (as `SetHolding`), each
    /// one's ring first filled with the frames it relayed within the last
    /// `replay_ns` (at most the worker's `replay_window`) and after the
    /// tunnel's last downstream receive minus
    /// [`crate::replay::REPLAY_MARGIN`], oldest first, rebuilt as the
    /// subscriber's PPPoE frames: the flush after the move relays them to
    /// the new LNS before the frames held live. Without a replay window it
    /// only holds. Counted in `Counters::replayed` and
    /// `Counters::replay_dropped`.
    HoldTunnel {
        /// Our Tunnel ID of the dead tunnel.
        tunnel_id: u16,
        /// How far back to replay, in nanoseconds.
        replay_ns: u64,
    },
    /// Add or replace a neighbour.
    UpsertNeighbour {
        /// Its address.
        addr: Ipv4Addr,
        /// Its MAC address and port.
        neighbour: Neighbour,
    },
    /// Remove a neighbour.
    RemoveNeighbour(Ipv4Addr),
    /// Set the core-side gateway.
    SetGateway(Option<Ipv4Addr>),
    /// Echo this token back once everything before it is applied.
    Barrier(u64),
    /// Send a [`WorkerReport`] with this token.
    Report(u64),
    /// Send a session's counters with this token.
    QuerySession {
        /// The session.
        key: SessionKey,
        /// Echoed.
        token: u64,
    },
}

/// What a worker tells the control plane.
#[derive(Debug)]
pub enum Event {
    /// Everything sent before [`Update::Barrier`] with this token is live.
    Barrier {
        /// Which worker.
        worker: usize,
        /// The token.
        token: u64,
    },
    /// The answer to [`Update::Report`].
    Report(Box<WorkerReport>),
    /// The answer to [`Update::QuerySession`].
    SessionCounters {
        /// Which worker.
        worker: usize,
        /// The token.
        token: u64,
        /// The session.
        key: SessionKey,
        /// Its counters on this worker; `None` when it is not in the table.
        counters: Option<SessionCounters>,
    },
    /// An update that could not be applied.
    Refused {
        /// Which worker.
        worker: usize,
        /// The update.
        update: Update,
        /// Why.
        error: TableError,
    },
}

/// A worker's counters and latency, as of the moment it answered.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Which worker.
    pub worker: usize,
    /// The token of the request.
    pub token: u64,
    /// The counters.
    pub counters: Counters,
    /// Sampled burst latency, receive to transmit, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Sessions in the worker's table.
    pub sessions: usize,
}

/// Sizes of the queues and the buffer pool.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSizes {
    /// Update queue.
    pub updates: usize,
    /// Event queue.
    pub events: usize,
    /// Punt queue.
    pub punts: usize,
    /// Inject queue.
    pub injects: usize,
    /// Packet buffers in the pool.
    pub buffers: usize,
}

impl Default for ChannelSizes {
    fn default() -> Self {
        ChannelSizes {
            updates: 4096,
            events: 256,
            punts: 1024,
            injects: 1024,
            buffers: 2048,
        }
    }
}

/// Both ends of one worker's queues (clone it: one for the worker, one for
/// the control plane).
#[derive(Debug, Clone)]
pub struct Channels {
    pub(crate) updates: Arc<ArrayQueue<Update>>,
    pub(crate) events: Arc<ArrayQueue<Event>>,
    pub(crate) punts: Arc<ArrayQueue<Punt>>,
    pub(crate) injects: Arc<ArrayQueue<Inject>>,
    pub(crate) pool: Arc<ArrayQueue<PacketBuffer>>,
}

impl Channels {
    /// Make the queues and fill the pool.
    pub fn new(sizes: ChannelSizes) -> Channels {
        let pool = ArrayQueue::new(sizes.buffers.max(1));
        while pool.push(PacketBuffer::new()).is_ok() {}
        Channels {
            updates: Arc::new(ArrayQueue::new(sizes.updates.max(1))),
            events: Arc::new(ArrayQueue::new(sizes.events.max(1))),
            punts: Arc::new(ArrayQueue::new(sizes.punts.max(1))),
            injects: Arc::new(ArrayQueue::new(sizes.injects.max(1))),
            pool: Arc::new(pool),
        }
    }

    /// Queue an update; gives it back when the queue is full (try again
    /// after the worker caught up).
    pub fn send(&self, update: Update) -> Result<(), Update> {
        self.updates.push(update)
    }

    /// The next event from the worker.
    pub fn poll_event(&self) -> Option<Event> {
        self.events.pop()
    }

    /// The next punted packet. Give its buffer back with [`Channels::recycle`]
    /// or reuse it for an inject.
    pub fn poll_punt(&self) -> Option<Punt> {
        self.punts.pop()
    }

    /// Return a buffer to the pool.
    pub fn recycle(&self, buffer: PacketBuffer) {
        // The pool was made with room for every buffer there is.
        let _ = self.pool.push(buffer);
    }

    /// Send a packet through the worker: takes a buffer from the pool.
    /// False when the pool is empty, the packet does not fit a buffer or the
    /// inject queue is full.
    pub fn inject(&self, target: InjectTarget, packet: &[u8]) -> bool {
        let Some(mut buffer) = self.pool.pop() else {
            return false;
        };
        if !buffer.set(packet) {
            self.recycle(buffer);
            return false;
        }
        self.inject_buffer(target, buffer)
    }

    /// Send a filled buffer (a recycled punt, say) through the worker.
    pub fn inject_buffer(&self, target: InjectTarget, buffer: PacketBuffer) -> bool {
        match self.injects.push(Inject { target, buffer }) {
            Ok(()) => true,
            Err(inject) => {
                self.recycle(inject.buffer);
                false
            }
        }
    }

    /// Buffers in the pool now.
    pub fn pool_available(&self) -> usize {
        self.pool.len()
    }
}

//! LAC upstream replay: a short history of what the LAC relayed toward
//! each LNS, so that when an LNS is found dead the frames it may not have
//! forwarded go again, to its peer (issue 6: zero upstream loss on a
//! failure switchover).
//!
//! An LNS that stops answering is found dead only a dead interval later;
//! what the LAC relayed to it after it last showed signs of life may never
//! have left it. With a replay window configured
//! ([`crate::worker::WorkerConfig::replay_window`]), the LAC upstream
//! relay copies every network-layer frame it sends (not PPP control
//! frames, which the new LNS must not see again: it adopted the
//! negotiation as finished) (the PPP frame from its
//! Protocol field, the session's slot and ids, the worker's clock) into a
//! per-worker byte arena allocated at start-up, overwriting the oldest
//! records: nothing is allocated per packet. Each tunnel's last downstream
//! data receive time is kept too.
//!
//! [`crate::update::Update::HoldTunnel`] puts every session of the dead
//! tunnel in holding and first fills each one's holding ring with the
//! frames it sent within the last `replay_ns` and after (the tunnel's last
//! downstream receive − [`REPLAY_MARGIN`]), oldest first, rebuilt as the
//! PPPoE session frames the subscriber sent, in frames of the access port.
//! The flush at the end of the move then relays them into the new tunnel
//! exactly like frames held live, and those come after them. A frame may
//! then reach the core twice (once through the dead LNS, once through its
//! peer); none is lost. The replay happens once per HoldTunnel and covers
//! at most one dead interval and a Hello of traffic.
//!
//! With the window zero (the default) nothing is recorded, and the relay
//! pays one predictable branch per frame.

use core::ops::ControlFlow;
use std::time::Duration;

use crate::io::{Descriptor, Port};
use crate::pages;
use crate::path::Datapath;
use crate::table::SessionKey;
use crate::wire::{ethernet, pppoe};

/// Frames sent up to this long before a tunnel's last downstream receive
/// are replayed too: the LNS may have sent that frame and still not have
/// forwarded what reached it before (its receive rings and its workers'
/// backlog, tens of milliseconds on a loaded box; a crash in the middle of
/// a burst). A duplicate costs little, a loss is what the subscriber
/// notices: 5 ms lost 2 of 120,000 upstream packets in the lab's kill -9
/// of an LNS with 1000 sessions at 10,000 packets/s.
pub const REPLAY_MARGIN: Duration = Duration::from_millis(50);

/// Record header: timestamp (8), slot (4), Tunnel ID (2), Session ID (2),
/// PPP length (2), spare (2).
const HEADER: usize = 20;
/// Records start on 4-byte boundaries.
const ALIGN: usize = 4;
/// The length of a skip record: the rest of the arena up to its end is
/// unused (the next record did not fit there).
const PAD: u16 = u16::MAX;
/// A tunnel never heard from.
const NEVER: u64 = 0;

/// A recorded upstream frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// Worker clock (ns) when it was relayed.
    pub(crate) at: u64,
    /// The session's slot then.
    pub(crate) slot: u32,
    /// The session's ids then.
    pub(crate) key: SessionKey,
    /// The PPP frame from its Protocol field.
    pub(crate) ppp: &'a [u8],
}

/// The history of relayed upstream frames and the tunnels' last receive
/// times, with the worker's clock.
///
/// The arena is a ring of variable-length records addressed by positions
/// that only grow (`oldest..write`; the byte of position `p` is
/// `arena[p % len]`). A record never wraps: one that does not fit before
/// the end starts at the next lap, after a skip. Writing a record first
/// forgets the oldest records whose bytes it overwrites.
#[derive(Debug)]
pub(crate) struct Replay {
    on: bool,
    window_ns: u64,
    /// The worker's clock (ns since it started), set once per poll.
    pub(crate) now: u64,
    arena: Box<[u8]>,
    oldest: u64,
    write: u64,
    /// By our Tunnel ID: the clock when its last data message arrived,
    /// `NEVER` if none did.
    last_rx: Box<[u64]>,
}

fn aligned(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Replay {
    /// Recording frames of the last `window` in an arena of `bytes`; off
    /// (and nothing allocated) when `window` is zero.
    pub(crate) fn new(window: Duration, bytes: usize) -> Replay {
        let on = !window.is_zero() && bytes >= HEADER + ALIGN;
        Replay {
            on,
            window_ns: nanos(window),
            now: 0,
            arena: if on {
                pages::filled(aligned(bytes), 0)
            } else {
                Box::default()
            },
            oldest: 0,
            write: 0,
            last_rx: if on {
                vec![NEVER; 1 << 16].into_boxed_slice()
            } else {
                Box::default()
            },
        }
    }

    /// Recording at all.
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// A data message of tunnel `tunnel_id` arrived now.
    #[inline]
    pub(crate) fn heard(&mut self, tunnel_id: u16) {
        if let Some(at) = self.last_rx.get_mut(usize::from(tunnel_id)) {
            *at = self.now.max(1);
        }
    }

    /// When tunnel `tunnel_id` last delivered data, if ever.
    pub(crate) fn last_heard(&self, tunnel_id: u16) -> Option<u64> {
        self.last_rx
            .get(usize::from(tunnel_id))
            .copied()
            .filter(|&at| at != NEVER)
    }

    /// The earliest send time worth replaying for `tunnel_id`, asked to
    /// replay `replay_ns` at `now`: within the window asked for (capped at
    /// the configured one), and no earlier than its last receive minus the
    /// margin.
    pub(crate) fn replay_from(&self, tunnel_id: u16, replay_ns: u64, now: u64) -> u64 {
        let window = now.saturating_sub(replay_ns.min(self.window_ns));
        match self.last_heard(tunnel_id) {
            Some(at) => window.max(at.saturating_sub(nanos(REPLAY_MARGIN))),
            None => window,
        }
    }

    /// Record a frame session `slot` (ids `key`) sent now.
    #[inline(never)]
    pub(crate) fn record(&mut self, slot: u32, key: SessionKey, ppp: &[u8]) {
        let cap = self.arena.len() as u64;
        let need = aligned(HEADER + ppp.len());
        if ppp.len() >= usize::from(PAD) || need as u64 > cap {
            return;
        }
        let room = cap - self.write % cap;
        let at = if room < need as u64 {
            self.write + room
        } else {
            self.write
        };
        let end = at + need as u64;
        // Forget what the skip and the record overwrite.
        let keep_from = end.saturating_sub(cap);
        while self.oldest < keep_from && self.oldest < self.write {
            self.oldest += self.step(self.oldest);
        }
        if self.oldest >= self.write {
            self.oldest = at;
        }
        if at != self.write && room >= HEADER as u64 {
            let skip = (self.write % cap) as usize;
            self.arena[skip + 16..skip + 18].copy_from_slice(&PAD.to_ne_bytes());
        }
        let start = (at % cap) as usize;
        let record = &mut self.arena[start..start + need];
        record[0..8].copy_from_slice(&self.now.to_ne_bytes());
        record[8..12].copy_from_slice(&slot.to_ne_bytes());
        record[12..14].copy_from_slice(&key.tunnel_id.to_ne_bytes());
        record[14..16].copy_from_slice(&key.session_id.to_ne_bytes());
        record[16..18].copy_from_slice(&(ppp.len() as u16).to_ne_bytes());
        record[HEADER..HEADER + ppp.len()].copy_from_slice(ppp);
        self.write = end;
    }

    /// How far the record (or skip) at position `at` reaches.
    fn step(&self, at: u64) -> u64 {
        let cap = self.arena.len() as u64;
        let room = cap - at % cap;
        if room < HEADER as u64 {
            return room;
        }
        let start = (at % cap) as usize;
        match self.len_at(start) {
            PAD => room,
            len => aligned(HEADER + usize::from(len)) as u64,
        }
    }

    fn len_at(&self, start: usize) -> u16 {
        let mut len = [0; 2];
        len.copy_from_slice(&self.arena[start + 16..start + 18]);
        u16::from_ne_bytes(len)
    }

    /// Every record still in the arena, oldest first, until `f` breaks.
    pub(crate) fn for_each<'a>(&'a self, mut f: impl FnMut(Record<'a>) -> ControlFlow<()>) {
        let cap = self.arena.len() as u64;
        let mut at = self.oldest;
        while at < self.write {
            let start = (at % cap) as usize;
            let room = cap - at % cap;
            if room >= HEADER as u64 && self.len_at(start) != PAD {
                let r = &self.arena[start..];
                let word = |i: usize| u16::from_ne_bytes([r[i], r[i + 1]]);
                let mut stamp = [0; 8];
                stamp.copy_from_slice(&r[0..8]);
                let mut slot = [0; 4];
                slot.copy_from_slice(&r[8..12]);
                let len = usize::from(word(16));
                let record = Record {
                    at: u64::from_ne_bytes(stamp),
                    slot: u32::from_ne_bytes(slot),
                    key: SessionKey {
                        tunnel_id: word(12),
                        session_id: word(14),
                    },
                    ppp: &r[HEADER..HEADER + len],
                };
                if f(record).is_break() {
                    return;
                }
            }
            at += self.step(at);
        }
    }
}

/// Put every LAC session of tunnel `tunnel_id` in holding, each one's ring
/// first filled with the frames worth replaying (see the module docs).
/// `now` is the worker's clock.
pub(crate) fn hold_tunnel<P: Port>(
    dp: &mut Datapath,
    ports: &mut [P],
    tunnel_id: u16,
    replay_ns: u64,
    now: u64,
) {
    for index in 0..dp.tables.session_slots() {
        let Some(session) = dp.tables.session(index) else {
            continue;
        };
        if session.config.key.tunnel_id != tunnel_id || session.config.pppoe.is_none() {
            continue;
        }
        dp.tables.set_holding(index, true);
        let Some(ring) = dp.tables.ring_mut(index) else {
            continue;
        };
        if ring.is_none() {
            *ring = dp.holds.take();
        }
        if let Some(ring) = *ring {
            // Frames it already holds (held live before) stay after the
            // replayed ones.
            dp.holds.begin_replay(ring);
        }
    }
    if !dp.holds.replay.on() {
        return;
    }
    let from = dp.holds.replay.replay_from(tunnel_id, replay_ns, now);
    let mut replayed = 0u64;
    let mut dropped = 0u64;
    // Read the history while the rings fill (a Replay without arena
    // allocates nothing).
    let replay = core::mem::replace(&mut dp.holds.replay, Replay::new(Duration::ZERO, 0));
    replay.for_each(|r| {
        if r.key.tunnel_id != tunnel_id || r.at < from {
            return ControlFlow::Continue(());
        }
        let slot = r.slot as usize;
        let Some(session) = dp.tables.session(slot) else {
            return ControlFlow::Continue(());
        };
        // The slot may hold another session by now.
        let Some(handover) = dp.tables.handover(slot) else {
            return ControlFlow::Continue(());
        };
        let (Some(binding), Some(ring)) = (session.config.pppoe, handover.ring) else {
            return ControlFlow::Continue(());
        };
        if session.config.key != r.key || !handover.holding() {
            return ControlFlow::Continue(());
        }
        let port = usize::from(binding.port);
        let Some(out) = ports.get_mut(port) else {
            dropped += 1;
            return ControlFlow::Continue(());
        };
        let Some(d) = out.alloc() else {
            dropped += 1;
            return ControlFlow::Continue(());
        };
        let our_mac = dp
            .port_macs
            .get(port)
            .copied()
            .unwrap_or(ethernet::Address([0; 6]));
        match rebuild(out.frame_mut(d.frame), d, our_mac, binding, r.ppp) {
            Some(d) if dp.holds.push_replayed(ring, port, d) => replayed += 1,
            Some(d) => {
                out.free(d);
                dropped += 1;
            }
            None => {
                out.free(d);
                dropped += 1;
            }
        }
        ControlFlow::Continue(())
    });
    dp.holds.replay = replay;
    dp.counters.replayed += replayed;
    dp.counters.replay_dropped += dropped;
}

/// Write the PPPoE session frame the subscriber of `binding` sent with
/// `ppp` (RFC 2516 §4: Ethernet to us, EtherType 0x8864, VER 1 TYPE 1 CODE
/// 0, its SESSION_ID, the PPP frame from its Protocol field) into `frame`
/// at `d`'s offset.
fn rebuild(
    frame: &mut [u8],
    mut d: Descriptor,
    our_mac: ethernet::Address,
    binding: crate::table::PppoeBinding,
    ppp: &[u8],
) -> Option<Descriptor> {
    let eth = ethernet::Repr {
        dst_addr: our_mac,
        src_addr: binding.subscriber_mac,
        outer_tag: None,
        inner_tag: None,
        ethertype: ethernet::EtherType::PppoeSession,
    };
    let header = pppoe::Repr {
        code: pppoe::Code::Session,
        session_id: binding.session_id,
        payload_len: ppp.len(),
    };
    let start = d.offset as usize;
    let eth_len = eth.buffer_len();
    let total = eth_len + pppoe::HEADER_LEN + ppp.len();
    let bytes = frame.get_mut(start..start + total)?;
    eth.emit(bytes).ok()?;
    header.emit(&mut bytes[eth_len..]).ok()?;
    bytes[eth_len + pppoe::HEADER_LEN..].copy_from_slice(ppp);
    d.len = total as u32;
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::memory::MemoryPort;
    use crate::table::{SessionConfig, Tunnel};
    use crate::testkit as lab;
    use crate::update::Update;
    use crate::worker::{Role, Worker};
    use core::net::SocketAddrV4;

    const WAN: usize = lab::CORE_PORT as usize;
    const ACCESS: usize = lab::ACCESS_PORT as usize;

    fn worker(window: Duration, bytes: usize) -> Worker<MemoryPort> {
        let config = crate::worker::WorkerConfig {
            replay_window: window,
            replay_bytes: bytes,
            ..lab::config(Role::Lac, 2)
        };
        lab::worker_with(config, 2, lab::separate_ports())
    }

    fn apply(w: &mut Worker<MemoryPort>, updates: &[Update]) {
        let channels = w.channels();
        for u in updates {
            assert!(channels.send(*u).is_ok());
        }
        w.apply_all_updates();
        while let Some(event) = channels.poll_event() {
            assert!(
                !matches!(event, crate::update::Event::Refused { .. }),
                "{event:?}"
            );
        }
    }

    /// Subscriber `i` sends frame number `n` (told apart by its length).
    fn upstream(i: usize, n: usize) -> Vec<u8> {
        lab::lac_upstream(i, 10 + n)
    }

    /// The PPP frame (from its Protocol field) of a subscriber's frame.
    fn ppp_of(pppoe_frame: &[u8]) -> Vec<u8> {
        pppoe_frame[ethernet::HEADER_LEN + pppoe::HEADER_LEN..].to_vec()
    }

    fn send(w: &mut Worker<MemoryPort>, port: usize, frames: &[Vec<u8>]) {
        for f in frames {
            assert!(w.ports_mut()[port].push_rx(f));
        }
        while w.poll() > 0 {}
    }

    /// What left on the tunnel side: (peer Tunnel ID, peer Session ID,
    /// PPP from its Protocol field).
    fn sent(w: &mut Worker<MemoryPort>) -> Vec<(u16, u16, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(f) = w.ports_mut()[WAN].pop_tx() {
            // Ethernet, IPv4 without options, UDP, L2TP without L, S, O
            // bits (RFC 2661 §3.1), FF 03.
            let l2tp = &f[42..];
            assert_eq!(l2tp[..2], [0x00, 0x02]);
            assert_eq!(l2tp[6..8], [0xff, 0x03]);
            out.push((
                u16::from_be_bytes([l2tp[2], l2tp[3]]),
                u16::from_be_bytes([l2tp[4], l2tp[5]]),
                l2tp[8..].to_vec(),
            ));
        }
        out
    }

    /// The session of subscriber `i` moved to tunnel 9 (peer 900) with
    /// Session ID 70 + i (peer 700 + i), as the glue moves it.
    fn move_to_new_tunnel(i: usize) -> Vec<Update> {
        let moved = SessionConfig {
            key: SessionKey {
                tunnel_id: 9,
                session_id: 70 + i as u16,
            },
            peer_session_id: 700 + i as u16,
            ..lab::session(Role::Lac, i)
        };
        vec![
            Update::UpsertTunnel(Tunnel {
                tunnel_id: 9,
                peer_tunnel_id: 900,
                local: SocketAddrV4::new(lab::LOCAL_ADDR, crate::wire::l2tp::UDP_PORT),
                peer: lab::peer(),
                next_hop: lab::PEER_ADDR,
            }),
            Update::UpsertSession(moved),
            Update::SetHolding {
                key: moved.key,
                holding: false,
            },
        ]
    }

    fn hold_tunnel(replay: Duration) -> Update {
        Update::HoldTunnel {
            tunnel_id: lab::session_key(0).tunnel_id,
            replay_ns: nanos(replay),
        }
    }

    /// The whole failure switchover: what went to the dead LNS lately goes
    /// again to the new one, first, then what was held live, all with the
    /// new ids, each session in its own order.
    #[test]
    fn a_dead_tunnels_recent_frames_go_again_before_the_held_ones() {
        let mut w = worker(Duration::from_secs(1), 1 << 16);
        let relayed: Vec<_> = (0..6).map(|n| upstream(n % 2, n)).collect();
        send(&mut w, ACCESS, &relayed);
        assert_eq!(sent(&mut w).len(), 6, "relayed to the old LNS");
        w.advance_clock(Duration::from_millis(10));
        apply(&mut w, &[hold_tunnel(Duration::from_millis(500))]);
        assert_eq!(w.counters().replayed, 6);
        let live: Vec<_> = (6..8).map(|n| upstream(n % 2, n)).collect();
        send(&mut w, ACCESS, &live);
        assert!(sent(&mut w).is_empty(), "held");
        assert_eq!(w.counters().held, 2);
        for i in 0..2 {
            apply(&mut w, &move_to_new_tunnel(i));
        }
        let want: Vec<_> = [0, 2, 4, 6, 1, 3, 5, 7]
            .iter()
            .map(|&n| (900, 700 + (n % 2) as u16, ppp_of(&upstream(n % 2, n))))
            .collect();
        assert_eq!(sent(&mut w), want);
        assert_eq!(w.counters().flushed, 8);
        assert_eq!(w.counters().replay_dropped, 0);
        assert_eq!(w.ports_mut()[ACCESS].frames_in_use(), 0, "no frame leaked");
        // The flushed frames went through the relay: a second failure
        // would replay them with the new ids.
        let mut recorded = 0;
        w.dp_for_tests().holds.replay.for_each(|r| {
            recorded += usize::from(r.key.tunnel_id == 9);
            ControlFlow::Continue(())
        });
        assert_eq!(recorded, 8);
    }

    /// Only frames within the window asked for (capped by the worker's)
    /// and not before the tunnel's last downstream receive minus the
    /// margin are replayed.
    #[test]
    fn only_frames_the_dead_lns_may_have_missed_are_replayed() {
        let mut w = worker(Duration::from_millis(300), 1 << 16);
        send(&mut w, ACCESS, &[upstream(0, 0)]);
        w.advance_clock(Duration::from_millis(200));
        send(&mut w, ACCESS, &[upstream(0, 1)]);
        w.advance_clock(Duration::from_millis(50));
        send(&mut w, ACCESS, &[upstream(0, 2)]);
        w.advance_clock(Duration::from_millis(50));
        // Asked for 10 s: the worker's window (300 ms) bounds it; frame 0
        // (300 ms + the time the poll took ago) is out.
        apply(&mut w, &[hold_tunnel(Duration::from_secs(10))]);
        apply(&mut w, &move_to_new_tunnel(0));
        let got: Vec<_> = sent(&mut w).into_iter().skip(3).map(|s| s.2).collect();
        assert_eq!(got, [ppp_of(&upstream(0, 1)), ppp_of(&upstream(0, 2))]);

        // Heard from after frame 1: only frames sent after that receive
        // minus the margin.
        let mut w = worker(Duration::from_secs(1), 1 << 16);
        send(&mut w, ACCESS, &[upstream(1, 0), upstream(0, 1)]);
        w.advance_clock(REPLAY_MARGIN * 2);
        send(&mut w, WAN, &[lab::lac_downstream(1, 20)]);
        assert_eq!(w.ports_mut()[ACCESS].pop_tx().map(|_| ()), Some(()));
        send(&mut w, ACCESS, &[upstream(0, 2), upstream(1, 3)]);
        w.advance_clock(Duration::from_millis(50));
        send(&mut w, ACCESS, &[upstream(0, 4)]);
        apply(&mut w, &[hold_tunnel(Duration::from_secs(1))]);
        assert_eq!(w.counters().replayed, 3);
        apply(&mut w, &move_to_new_tunnel(0));
        apply(&mut w, &move_to_new_tunnel(1));
        let got: Vec<_> = sent(&mut w).into_iter().skip(5).collect();
        let want: Vec<_> = [(0, 2), (0, 4), (1, 3)]
            .iter()
            .map(|&(i, n)| (900, 700 + i as u16, ppp_of(&upstream(i, n))))
            .collect();
        assert_eq!(got, want);

        // Asked for nothing: nothing.
        let mut w = worker(Duration::from_secs(1), 1 << 16);
        send(&mut w, ACCESS, &[upstream(0, 0)]);
        w.advance_clock(Duration::from_millis(1));
        apply(&mut w, &[hold_tunnel(Duration::ZERO)]);
        assert_eq!(w.counters().replayed, 0);
    }

    /// A PPP control frame relayed lately (LCP, here) is not replayed: the
    /// new LNS adopted the negotiation as finished, and a Configure-Request
    /// again would take the link down there (RFC 1661 §4.3).
    #[test]
    fn ppp_control_frames_are_not_replayed() {
        let mut w = worker(Duration::from_secs(1), 1 << 16);
        let mut lcp = upstream(0, 1);
        let at = ethernet::HEADER_LEN + pppoe::HEADER_LEN;
        lcp[at..at + 2].copy_from_slice(&[0xc0, 0x21]);
        send(
            &mut w,
            ACCESS,
            &[upstream(0, 0), lcp.clone(), upstream(0, 2)],
        );
        assert_eq!(sent(&mut w).len(), 3, "all relayed to the old LNS");
        w.advance_clock(Duration::from_millis(10));
        apply(&mut w, &[hold_tunnel(Duration::from_millis(500))]);
        assert_eq!(w.counters().replayed, 2);
        apply(&mut w, &move_to_new_tunnel(0));
        let got: Vec<_> = sent(&mut w).into_iter().map(|s| s.2).collect();
        assert_eq!(got, [ppp_of(&upstream(0, 0)), ppp_of(&upstream(0, 2))]);
    }

    /// Without a window the relay records nothing and HoldTunnel only
    /// holds.
    #[test]
    fn replay_off_records_nothing_and_only_holds() {
        let mut w = worker(Duration::ZERO, 1 << 16);
        send(&mut w, ACCESS, &[upstream(0, 0), upstream(0, 1)]);
        assert_eq!(sent(&mut w).len(), 2);
        let mut recorded = 0;
        w.dp_for_tests().holds.replay.for_each(|_| {
            recorded += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(recorded, 0);
        apply(&mut w, &[hold_tunnel(Duration::from_secs(1))]);
        send(&mut w, ACCESS, &[upstream(0, 2)]);
        apply(&mut w, &move_to_new_tunnel(0));
        assert_eq!(sent(&mut w), [(900, 700, ppp_of(&upstream(0, 2)))]);
        assert_eq!(w.counters().replayed, 0);
    }

    /// Frames already held (the session was put in holding on its own
    /// first) stay after the replayed ones; a full ring counts what it
    /// could not take.
    #[test]
    fn replayed_frames_go_before_frames_held_earlier_and_a_full_ring_counts() {
        let mut w = worker(Duration::from_secs(1), 1 << 16);
        send(&mut w, ACCESS, &[upstream(0, 0), upstream(0, 1)]);
        let key = lab::session_key(0);
        apply(&mut w, &[Update::SetHolding { key, holding: true }]);
        send(&mut w, ACCESS, &[upstream(0, 2)]);
        apply(&mut w, &[hold_tunnel(Duration::from_secs(1))]);
        send(&mut w, ACCESS, &[upstream(0, 3)]);
        apply(&mut w, &move_to_new_tunnel(0));
        let got: Vec<_> = sent(&mut w).into_iter().skip(2).map(|s| s.2).collect();
        let want: Vec<_> = (0..4).map(|n| ppp_of(&upstream(0, n))).collect();
        assert_eq!(got, want);

        let config = crate::worker::WorkerConfig {
            replay_window: Duration::from_secs(1),
            hold_depth: 3,
            ..lab::config(Role::Lac, 2)
        };
        let mut w = lab::worker_with(config, 2, lab::separate_ports());
        let frames: Vec<_> = (0..5).map(|n| upstream(0, n)).collect();
        send(&mut w, ACCESS, &frames);
        apply(&mut w, &[hold_tunnel(Duration::from_secs(1))]);
        assert_eq!((w.counters().replayed, w.counters().replay_dropped), (3, 2));
        apply(&mut w, &move_to_new_tunnel(0));
        let got: Vec<_> = sent(&mut w).into_iter().skip(5).map(|s| s.2).collect();
        assert_eq!(
            got,
            frames[..3].iter().map(|f| ppp_of(f)).collect::<Vec<_>>()
        );
        assert_eq!(w.ports_mut()[ACCESS].frames_in_use(), 0);
    }

    /// The arena keeps the newest records whole, oldest first, across
    /// many laps and lengths.
    #[test]
    fn the_arena_wraps_keeping_the_newest_records() {
        let mut replay = Replay::new(Duration::from_secs(1), 256);
        let key = |n: usize| SessionKey {
            tunnel_id: 1,
            session_id: n as u16,
        };
        let payload = |n: usize| vec![n as u8; n % 37];
        for n in 0..1000 {
            replay.now = n as u64;
            replay.record(n as u32, key(n), &payload(n));
            let mut seen = Vec::new();
            replay.for_each(|r| {
                assert_eq!(r.ppp, payload(r.slot as usize));
                assert_eq!((r.key, r.at), (key(r.slot as usize), u64::from(r.slot)));
                seen.push(r.slot as usize);
                ControlFlow::Continue(())
            });
            assert_eq!(seen.last(), Some(&n), "the newest is there");
            let first = seen[0];
            assert_eq!(seen, (first..=n).collect::<Vec<_>>(), "consecutive");
            let used: usize = seen.iter().map(|&m| aligned(HEADER + m % 37)).sum();
            assert!(used <= 256);
            // Nothing forgotten that would still fit.
            if first > 0 {
                assert!(used + aligned(HEADER + (first - 1) % 37) > 256 - aligned(HEADER + 36));
            }
        }
        // Too long for the arena: not recorded, nothing lost.
        replay.record(0, key(0), &[0; 300]);
        let mut last = 0;
        replay.for_each(|r| {
            last = r.slot;
            ControlFlow::Continue(())
        });
        assert_eq!(last, 999);
    }
}

//! The LAC data path: PPPoE session frames ↔ L2TP data messages, and the
//! holding rings that keep a session's upstream frames while it moves to
//! another LNS.

use crate::counters::{DropReason, PathKind};
use crate::io::Descriptor;
use crate::pages;
use crate::path::{narrow, Datapath, L2tpData, Verdict};
use crate::punt::PuntReason;
use crate::replay::Replay;
use crate::wire::{ethernet, ppp, pppoe};

impl Datapath {
    /// A PPPoE session frame from a subscriber.
    #[inline]
    pub(crate) fn lac_upstream(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        l3: usize,
        end: usize,
    ) -> Verdict {
        let Some(Ok(session_frame)) = frame.get(l3..end).map(pppoe::Packet::new_checked) else {
            return Verdict::Drop(DropReason::MalformedPppoe);
        };
        // RFC 2516 §5: session frames have CODE 0x00.
        if session_frame.code() != pppoe::Code::Session {
            return Verdict::Drop(DropReason::MalformedPppoe);
        }
        let pppoe_session_id = session_frame.session_id();
        let ppp_start = l3 + pppoe::HEADER_LEN;
        let ppp_end = ppp_start + usize::from(session_frame.length());
        let start = d.offset as usize;
        let Some(subscriber_mac) = frame
            .get(start + 6..start + 12)
            .and_then(ethernet::Address::from_bytes)
        else {
            return Verdict::Drop(DropReason::MalformedEthernet);
        };
        let Some(entry) = self.tables.pppoe_entry(subscriber_mac, pppoe_session_id) else {
            return unknown_pppoe_session(
                frame,
                d,
                ppp_start..ppp_end,
                subscriber_mac,
                pppoe_session_id,
            );
        };
        // A holding session's entry is no slot index, so holding costs the
        // common path nothing: it is looked at only when the index finds
        // no session.
        let index = entry as usize;
        if self.tables.session(index).is_none() {
            return match self.tables.held(entry) {
                Some(Some(ring)) => Verdict::Hold(ring),
                Some(None) => Verdict::Drop(DropReason::HoldingNoRing),
                None => Verdict::Drop(DropReason::UnknownPppoeSession),
            };
        }
        // PPPoE carries PPP from the Protocol field (RFC 2516 §7); on L2TP
        // we send the Address and Control fields as Linux and most LNSs
        // expect. They go over the PPPoE Length field, already read.
        let Some(ac_start) = ppp_start.checked_sub(2) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let Some(ac) = frame.get_mut(ac_start..ppp_start) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        ac.copy_from_slice(&[ppp::ADDRESS, ppp::CONTROL]);
        let ppp_len = ppp_end - ppp_start;
        let verdict = self.l2tp_encapsulate(frame, d, index, ac_start, ppp_len + 2);
        if let Verdict::Forward(_) = verdict {
            if let Some(s) = self.tables.session_mut(index) {
                s.counters.upstream_packets += 1;
                s.counters.upstream_octets += ppp_len as u64;
            }
            self.forwarded(PathKind::LacUpstream);
            // Encapsulation wrote only in front of the PPP frame.
            if self.holds.replay.on() {
                self.record_upstream(index, frame.get(ppp_start..ppp_end));
            }
        }
        verdict
    }

    /// Keep a copy of a frame relayed upstream for a replay
    /// ([`crate::replay`]): network-layer frames only (RFC 1661 §2,
    /// protocols below 0x8000). A PPP control frame sent again would
    /// restart a negotiation the new LNS adopted as finished (a
    /// Configure-Request in the Opened state takes the layer down, RFC 1661
    /// §4.3), and echoes and authentication retry on their own.
    #[inline(never)]
    fn record_upstream(&mut self, index: usize, ppp: Option<&[u8]>) {
        let Some(ppp) = ppp else { return };
        let Ok(packet) = ppp::Packet::new_checked(ppp) else {
            return;
        };
        if packet.protocol().is_control() {
            return;
        }
        if let Some(s) = self.tables.session(index) {
            self.holds.replay.record(index as u32, s.config.key, ppp);
        }
    }

    /// An L2TP data message from an LNS, already checked against its
    /// tunnel and session.
    #[inline]
    pub(crate) fn lac_downstream(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        data: L2tpData,
    ) -> Verdict {
        let Some(Ok(address_control)) = frame
            .get(data.ppp.clone())
            .map(|b| ppp::Packet::new_checked(b).map(|p| p.has_address_control()))
        else {
            return Verdict::Drop(DropReason::MalformedPpp);
        };
        // RFC 2516 §7: no Address and Control fields on PPPoE.
        let ppp_start = data.ppp.start + if address_control { 2 } else { 0 };
        let ppp_len = data.ppp.end - ppp_start;
        if self.holds.replay.on() {
            // The LNS at the other end was alive when it sent this.
            self.holds.replay.heard(data.key.tunnel_id);
        }
        let verdict = self.pppoe_encapsulate(frame, d, data.session, ppp_start, ppp_len);
        if let Verdict::Forward(_) = verdict {
            if let Some(s) = self.tables.session_mut(data.session) {
                s.counters.downstream_packets += 1;
                s.counters.downstream_octets += ppp_len as u64;
            }
            self.forwarded(PathKind::LacDownstream);
        }
        verdict
    }
}

/// A PPPoE session the LAC does not relay: while the LAC negotiates LCP
/// and authenticates the subscriber itself (before the L2TP session
/// exists), its PPP control frames are the control plane's; data is
/// dropped.
#[cold]
#[inline(never)]
fn unknown_pppoe_session(
    frame: &[u8],
    d: &mut Descriptor,
    ppp: core::ops::Range<usize>,
    subscriber_mac: ethernet::Address,
    pppoe_session_id: u16,
) -> Verdict {
    let control = frame
        .get(ppp.clone())
        .and_then(|b| ppp::Packet::new_checked(b).ok())
        .is_some_and(|p| p.protocol().is_control());
    if control {
        narrow(d, ppp);
        Verdict::Punt(PuntReason::LacPpp {
            subscriber_mac,
            pppoe_session_id,
        })
    } else {
        Verdict::Drop(DropReason::UnknownPppoeSession)
    }
}

/// Fixed-depth rings of held frames, all allocated at start-up. A session
/// takes a ring when it starts holding and gives it back when flushed or
/// removed; a frame that finds its ring full is dropped and counted (tail
/// drop keeps the oldest frames, which the subscriber sent first). Beside
/// them, the history of relayed frames a failure switchover replays into
/// them ([`crate::replay`]).
#[derive(Debug)]
pub(crate) struct HoldRings {
    depth: usize,
    slots: Box<[(usize, Descriptor)]>,
    /// Per ring: index of the oldest frame, how many there are, and how
    /// many of the first are replayed ones (put before the live frames).
    state: Box<[(usize, usize, usize)]>,
    free: Vec<u32>,
    /// What the LAC relayed upstream lately.
    pub(crate) replay: Replay,
}

impl HoldRings {
    pub(crate) fn new(rings: usize, depth: usize, replay: Replay) -> HoldRings {
        HoldRings {
            depth,
            slots: pages::filled(rings * depth, (0, Descriptor::default())),
            state: vec![(0, 0, 0); rings].into_boxed_slice(),
            free: (0..rings as u32).rev().collect(),
            replay,
        }
    }

    /// An empty ring, if one is free.
    pub(crate) fn take(&mut self) -> Option<u32> {
        let ring = self.free.pop()?;
        self.state[ring as usize] = (0, 0, 0);
        Some(ring)
    }

    /// Append a frame; false when the ring is full.
    pub(crate) fn push(&mut self, ring: u32, port: usize, d: Descriptor) -> bool {
        let Some(&(head, len, _)) = self.state.get(ring as usize) else {
            return false;
        };
        if len >= self.depth {
            return false;
        }
        let slot = ring as usize * self.depth + (head + len) % self.depth;
        self.slots[slot] = (port, d);
        self.state[ring as usize].1 = len + 1;
        true
    }

    /// Replayed frames pushed from now on go before the frames the ring
    /// holds now.
    pub(crate) fn begin_replay(&mut self, ring: u32) {
        if let Some(state) = self.state.get_mut(ring as usize) {
            state.2 = 0;
        }
    }

    /// Insert a replayed frame after the replayed ones and before the live
    /// ones (moving those back a place); false when the ring is full.
    pub(crate) fn push_replayed(&mut self, ring: u32, port: usize, d: Descriptor) -> bool {
        let Some(&(head, len, replayed)) = self.state.get(ring as usize) else {
            return false;
        };
        if len >= self.depth {
            return false;
        }
        let base = ring as usize * self.depth;
        let at = |i: usize| base + (head + i) % self.depth;
        for i in (replayed..len).rev() {
            self.slots[at(i + 1)] = self.slots[at(i)];
        }
        self.slots[at(replayed)] = (port, d);
        self.state[ring as usize] = (head, len + 1, replayed + 1);
        true
    }

    /// The oldest frame.
    pub(crate) fn pop(&mut self, ring: u32) -> Option<(usize, Descriptor)> {
        let (head, len, replayed) = *self.state.get(ring as usize)?;
        if len == 0 {
            return None;
        }
        let held = self.slots[ring as usize * self.depth + head];
        self.state[ring as usize] = ((head + 1) % self.depth, len - 1, replayed.saturating_sub(1));
        Some(held)
    }

    /// Give an emptied ring back.
    pub(crate) fn release(&mut self, ring: u32) {
        self.free.push(ring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_order_and_bounds() {
        let mut rings = HoldRings::new(1, 3, Replay::new(std::time::Duration::ZERO, 0));
        let r = rings.take().unwrap();
        assert!(rings.take().is_none());
        let d = |frame| Descriptor {
            frame,
            offset: 0,
            len: 1,
        };
        for f in 0..3 {
            assert!(rings.push(r, 0, d(f)));
        }
        assert!(!rings.push(r, 0, d(9)), "depth 3");
        assert_eq!(rings.pop(r).map(|h| h.1.frame), Some(0));
        assert!(rings.push(r, 1, d(3)));
        let order: Vec<_> = core::iter::from_fn(|| rings.pop(r))
            .map(|h| h.1.frame)
            .collect();
        assert_eq!(order, [1, 2, 3]);
        rings.release(r);
        assert!(rings.take().is_some());
    }
}

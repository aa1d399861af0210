//! An in-memory [`Port`] for tests and benchmarks.
//!
//! It behaves like an AF_XDP socket seen from the worker: a preallocated
//! pool of fixed-size frames with headroom, a receive ring the test fills
//! with [`MemoryPort::push_rx`], and a transmit ring the test empties with
//! [`MemoryPort::pop_tx`] or [`MemoryPort::drain_tx`]. Both rings are
//! bounded, so a full transmit ring is a short count as on real hardware.
//! Nothing allocates after [`MemoryPort::new`] except `pop_tx`, which hands
//! the test an owned copy.
//!
//! Each frame is a buffer of its own, so that a packet can move to another
//! memory port without a copy ([`Port::hand_over`]): the two ports trade
//! the packet's buffer for a free one, which is what passing a descriptor
//! between ports that share an AF_XDP UMEM costs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Descriptor, FrameId, MemoryId, Port};
use crate::wire::ethernet;

/// Sizes of a [`MemoryPort`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryPortConfig {
    /// Number of frames in the pool.
    pub frames: usize,
    /// Bytes per frame, headroom included (AF_XDP uses 2048 or 4096).
    pub frame_size: usize,
    /// Headroom before a received packet.
    pub headroom: usize,
    /// Receive ring size.
    pub rx_ring: usize,
    /// Transmit ring size (queued plus on the wire, not yet drained).
    pub tx_ring: usize,
    /// The port's MAC address.
    pub mac_addr: ethernet::Address,
}

impl MemoryPortConfig {
    /// A port the size of a small AF_XDP socket: 4096 frames of 2048 bytes
    /// with 256 bytes of headroom, rings of 1024.
    pub fn new(mac_addr: ethernet::Address) -> MemoryPortConfig {
        MemoryPortConfig {
            frames: 4096,
            frame_size: 2048,
            headroom: 256,
            rx_ring: 1024,
            tx_ring: 1024,
            mac_addr,
        }
    }
}

static NEXT_MEMORY: AtomicUsize = AtomicUsize::new(1);

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryPort {
    config: MemoryPortConfig,
    frames: Vec<Box<[u8]>>,
    memory_id: MemoryId,
    free: Vec<FrameId>,
    rx: VecDeque<Descriptor>,
    tx_queued: Vec<Descriptor>,
    tx_wire: VecDeque<Descriptor>,
}

impl MemoryPort {
    /// Allocate the pool and the rings.
    pub fn new(config: MemoryPortConfig) -> MemoryPort {
        let frames = config.frames.min(FrameId::MAX as usize);
        MemoryPort {
            config,
            frames: (0..frames)
                .map(|_| vec![0; config.frame_size].into_boxed_slice())
                .collect(),
            memory_id: NEXT_MEMORY.fetch_add(1, Ordering::Relaxed),
            // Lowest frame ids first, so tests see frames 0, 1, 2 ...
            free: (0..frames as FrameId).rev().collect(),
            rx: VecDeque::with_capacity(config.rx_ring),
            tx_queued: Vec::with_capacity(config.tx_ring),
            tx_wire: VecDeque::with_capacity(config.tx_ring),
        }
    }

    /// "Receive" a frame from the wire: copy it into a free frame after the
    /// headroom and put it on the receive ring. False when the pool or the
    /// ring is exhausted or the frame does not fit.
    pub fn push_rx(&mut self, bytes: &[u8]) -> bool {
        if self.rx.len() >= self.config.rx_ring
            || bytes.len() + self.config.headroom > self.config.frame_size
        {
            return false;
        }
        let Some(mut d) = self.alloc() else {
            return false;
        };
        d.len = bytes.len() as u32;
        let range = d.range();
        self.frame_mut(d.frame)[range].copy_from_slice(bytes);
        self.rx.push_back(d);
        true
    }

    /// Take the oldest transmitted frame off the wire as an owned copy.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        let d = self.tx_wire.pop_front()?;
        let bytes = self.frame(d.frame)[d.range()].to_vec();
        self.free(d);
        Some(bytes)
    }

    /// Take every transmitted frame off the wire, showing each to `sink`
    /// without copying; returns how many there were.
    pub fn drain_tx(&mut self, mut sink: impl FnMut(&[u8])) -> usize {
        let n = self.tx_wire.len();
        while let Some(d) = self.tx_wire.pop_front() {
            sink(self.frame(d.frame).get(d.range()).unwrap_or(&[]));
            self.free.push(d.frame);
        }
        n
    }

    /// Frames transmitted and not yet drained.
    pub fn tx_pending(&self) -> usize {
        self.tx_wire.len() + self.tx_queued.len()
    }

    /// Frames neither free nor on a ring: held by the worker. Zero after a
    /// test means nothing leaked.
    pub fn frames_in_use(&self) -> usize {
        self.frames.len() - self.free.len() - self.rx.len() - self.tx_pending()
    }
}

impl Port for MemoryPort {
    fn receive(&mut self, out: &mut [Descriptor]) -> usize {
        let n = out.len().min(self.rx.len());
        for (slot, d) in out.iter_mut().zip(self.rx.drain(..n)) {
            *slot = d;
        }
        n
    }

    fn transmit(&mut self, descriptors: &[Descriptor]) -> usize {
        let room = self.config.tx_ring - self.tx_pending();
        let n = descriptors.len().min(room);
        self.tx_queued.extend_from_slice(&descriptors[..n]);
        n
    }

    fn flush(&mut self) {
        self.tx_wire.extend(self.tx_queued.drain(..));
    }

    fn free(&mut self, descriptor: Descriptor) {
        self.free.push(descriptor.frame);
    }

    fn alloc(&mut self) -> Option<Descriptor> {
        let frame = self.free.pop()?;
        Some(Descriptor {
            frame,
            offset: self.config.headroom as u32,
            len: 0,
        })
    }

    #[inline]
    fn frame(&self, frame: FrameId) -> &[u8] {
        self.frames.get(frame as usize).map_or(&[], |f| &f[..])
    }

    #[inline]
    fn frame_mut(&mut self, frame: FrameId) -> &mut [u8] {
        self.frames
            .get_mut(frame as usize)
            .map_or(&mut [], |f| &mut f[..])
    }

    fn frame_size(&self) -> usize {
        self.config.frame_size
    }

    fn headroom(&self) -> usize {
        self.config.headroom
    }

    fn memory(&self) -> MemoryId {
        self.memory_id
    }

    fn mac_addr(&self) -> ethernet::Address {
        self.config.mac_addr
    }

    /// Trade the packet's buffer for one of our free ones: `from` gets the
    /// free buffer back in `d`'s slot (now free there), we put the packet's
    /// buffer in the slot we took. Same frame size only.
    #[inline]
    fn hand_over(&mut self, from: &mut MemoryPort, d: Descriptor) -> Option<Descriptor> {
        if self.config.frame_size != from.config.frame_size || d.frame as usize >= from.frames.len()
        {
            return None;
        }
        let frame = self.free.pop()?;
        let (Some(ours), Some(theirs)) = (
            self.frames.get_mut(frame as usize),
            from.frames.get_mut(d.frame as usize),
        ) else {
            self.free.push(frame);
            return None;
        };
        core::mem::swap(ours, theirs);
        from.free.push(d.frame);
        Some(Descriptor { frame, ..d })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> MemoryPort {
        MemoryPort::new(MemoryPortConfig {
            frames: 4,
            frame_size: 256,
            headroom: 64,
            rx_ring: 2,
            tx_ring: 2,
            mac_addr: ethernet::Address([2, 0, 0, 0, 0, 1]),
        })
    }

    #[test]
    fn a_frame_goes_round_with_headroom() {
        let mut p = port();
        assert!(p.push_rx(&[1, 2, 3]));
        let mut d = [Descriptor::default(); 4];
        assert_eq!(p.receive(&mut d), 1);
        assert_eq!(d[0].offset, 64);
        // Prepend one byte in the headroom.
        d[0].offset -= 1;
        d[0].len += 1;
        p.frame_mut(d[0].frame)[63] = 0;
        assert_eq!(p.transmit(&d[..1]), 1);
        assert_eq!(p.pop_tx(), None, "nothing on the wire before flush");
        p.flush();
        assert_eq!(p.pop_tx(), Some(vec![0, 1, 2, 3]));
        assert_eq!(p.frames_in_use(), 0);
    }

    #[test]
    fn a_packet_moves_to_another_port_without_a_copy() {
        let (mut a, mut b) = (port(), port());
        assert!(a.push_rx(&[7, 8, 9]));
        let mut d = [Descriptor::default(); 1];
        assert_eq!(a.receive(&mut d), 1);
        let moved = b.hand_over(&mut a, d[0]).unwrap();
        assert_eq!((moved.offset, moved.len), (d[0].offset, 3));
        assert_eq!(a.frames_in_use(), 0, "the source got a free buffer back");
        assert_eq!(b.frames_in_use(), 1);
        assert_eq!(b.transmit(&[moved]), 1);
        b.flush();
        assert_eq!(b.pop_tx(), Some(vec![7, 8, 9]));
        assert_eq!(b.frames_in_use(), 0);
        // No free frame on the taking side: the caller copies.
        while b.alloc().is_some() {}
        assert!(a.push_rx(&[1]));
        assert_eq!(a.receive(&mut d), 1);
        assert!(b.hand_over(&mut a, d[0]).is_none());
        assert_eq!(a.frames_in_use(), 1, "still a's");
    }

    #[test]
    fn rings_and_pool_are_bounded() {
        let mut p = port();
        assert!(p.push_rx(&[0; 10]));
        assert!(p.push_rx(&[0; 10]));
        assert!(!p.push_rx(&[0; 10]), "rx ring of 2");
        assert!(!p.push_rx(&[0; 200]), "does not fit after the headroom");
        let a = p.alloc().map(|d| Descriptor { len: 1, ..d });
        let b = p.alloc().map(|d| Descriptor { len: 1, ..d });
        assert!(p.alloc().is_none(), "pool of 4");
        let (Some(a), Some(b)) = (a, b) else {
            unreachable!()
        };
        assert_eq!(p.transmit(&[a, b, a]), 2, "tx ring of 2");
        p.flush();
        assert_eq!(p.drain_tx(|f| assert_eq!(f.len(), 1)), 2);
    }
}

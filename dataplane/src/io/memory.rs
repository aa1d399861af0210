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
//! Ports made together by [`MemoryPort::group`] share one frame memory, as
//! AF_XDP sockets share a UMEM ([`super::afxdp::AfXdpPort::open_group`]):
//! a packet leaves by any of them as it is, and each keeps a free list of
//! its own that [`Port::balance`] evens out. Ports made apart have their
//! own memories, and a packet crossing them is copied.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

use super::{balance_free_lists, Descriptor, FrameId, MemoryId, Port};
use crate::wire::ethernet;

/// Sizes of a [`MemoryPort`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryPortConfig {
    /// Number of frames in the pool (its share of a group's memory).
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

/// The frames of one port or of a group of ports, in one allocation (as a
/// UMEM is one mapping).
struct Memory {
    bytes: Box<[UnsafeCell<u8>]>,
    frame_size: usize,
    frames: usize,
    id: MemoryId,
    /// Frames the worker holds (received or allocated, and not yet
    /// transmitted or freed), over every port of the memory.
    held: AtomicIsize,
}

// SAFETY: the bytes are reached only through `MemoryPort::frame` and
// `frame_mut`, for frames the caller owns under the port contract
// (io module documentation): a frame is with one port or with the worker
// at a time, so no two threads (or borrows) reach the same frame at once.
// The other fields are immutable or atomic.
unsafe impl Sync for Memory {}

impl Memory {
    fn new(frames: usize, frame_size: usize) -> Memory {
        let zeroed = vec![0u8; frames * frame_size].into_boxed_slice();
        // SAFETY: UnsafeCell<u8> has the layout of u8 (repr(transparent)),
        // so the allocation is the same slice, now writable through a
        // shared reference.
        let bytes = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [UnsafeCell<u8>]) };
        Memory {
            bytes,
            frame_size,
            frames,
            id: NEXT_MEMORY.fetch_add(1, Ordering::Relaxed),
            held: AtomicIsize::new(0),
        }
    }

    /// The raw bytes of `frame`, or `None` outside the memory.
    fn frame(&self, frame: FrameId) -> Option<*mut u8> {
        let frame = frame as usize;
        // A pointer from the whole slice, so that it reaches the whole
        // frame; UnsafeCell makes writing through it allowed.
        (frame < self.frames)
            .then(|| UnsafeCell::raw_get(self.bytes.as_ptr()).wrapping_add(frame * self.frame_size))
    }
}

impl core::fmt::Debug for Memory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Memory")
            .field("frames", &self.frames)
            .field("frame_size", &self.frame_size)
            .field("id", &self.id)
            .finish()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryPort {
    config: MemoryPortConfig,
    memory: Arc<Memory>,
    free: Vec<FrameId>,
    rx: VecDeque<Descriptor>,
    tx_queued: Vec<Descriptor>,
    tx_wire: VecDeque<Descriptor>,
}

impl MemoryPort {
    /// Allocate the pool and the rings.
    pub fn new(config: MemoryPortConfig) -> MemoryPort {
        MemoryPort::group(&[config]).remove(0)
    }

    /// Ports that share one frame memory of all their frames: `configs`
    /// must agree on `frame_size` and `headroom` (the first one's are
    /// taken). Each starts with its own `frames` on its free list.
    pub fn group(configs: &[MemoryPortConfig]) -> Vec<MemoryPort> {
        let Some(first) = configs.first() else {
            return Vec::new();
        };
        let total: usize = configs.iter().map(|c| c.frames).sum();
        let total = total.min(FrameId::MAX as usize);
        let memory = Arc::new(Memory::new(total, first.frame_size));
        let mut next = 0;
        configs
            .iter()
            .map(|&config| {
                let config = MemoryPortConfig {
                    frame_size: first.frame_size,
                    headroom: first.headroom,
                    ..config
                };
                let frames = next..(next + config.frames).min(total);
                next = frames.end;
                // Room for every frame of the memory: balancing moves
                // frames between the lists, and must not allocate.
                let mut free = Vec::with_capacity(total);
                free.extend(frames.rev().map(|f| f as FrameId));
                MemoryPort {
                    config,
                    memory: Arc::clone(&memory),
                    // Lowest frame ids first, so tests see frames 0, 1, 2 ...
                    free,
                    rx: VecDeque::with_capacity(config.rx_ring),
                    tx_queued: Vec::with_capacity(config.tx_ring),
                    tx_wire: VecDeque::with_capacity(config.tx_ring),
                }
            })
            .collect()
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
        let Some(mut d) = self.take_free() else {
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
        self.free.push(d.frame);
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

    /// Frames of this port's memory that the worker holds (neither free
    /// nor on a ring), over every port of its group. Zero after a test
    /// means nothing leaked.
    pub fn frames_in_use(&self) -> usize {
        usize::try_from(self.memory.held.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Frames on this port's free list.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// A free frame as an empty packet after the headroom, not yet
    /// counted as held (the receive ring or [`Port::alloc`] decides).
    fn take_free(&mut self) -> Option<Descriptor> {
        let frame = self.free.pop()?;
        Some(Descriptor {
            frame,
            offset: self.config.headroom as u32,
            len: 0,
        })
    }

    fn held(&self, change: isize) {
        self.memory.held.fetch_add(change, Ordering::Relaxed);
    }
}

impl Port for MemoryPort {
    fn receive(&mut self, out: &mut [Descriptor]) -> usize {
        let n = out.len().min(self.rx.len());
        for (slot, d) in out.iter_mut().zip(self.rx.drain(..n)) {
            *slot = d;
        }
        self.held(n as isize);
        n
    }

    fn transmit(&mut self, descriptors: &[Descriptor]) -> usize {
        let room = self.config.tx_ring - self.tx_pending();
        let n = descriptors.len().min(room);
        self.tx_queued.extend_from_slice(&descriptors[..n]);
        self.held(-(n as isize));
        n
    }

    fn flush(&mut self) {
        self.tx_wire.extend(self.tx_queued.drain(..));
    }

    fn free(&mut self, descriptor: Descriptor) {
        if (descriptor.frame as usize) < self.memory.frames {
            self.free.push(descriptor.frame);
            self.held(-1);
        }
    }

    fn alloc(&mut self) -> Option<Descriptor> {
        let d = self.take_free()?;
        self.held(1);
        Some(d)
    }

    #[inline]
    fn frame(&self, frame: FrameId) -> &[u8] {
        match self.memory.frame(frame) {
            // SAFETY: the frame lies inside the memory, and under the port
            // contract the caller owns it (see `Memory`'s Sync).
            Some(bytes) => unsafe { core::slice::from_raw_parts(bytes, self.memory.frame_size) },
            None => &[],
        }
    }

    #[inline]
    fn frame_mut(&mut self, frame: FrameId) -> &mut [u8] {
        match self.memory.frame(frame) {
            // SAFETY: as in `frame`; the owner of a frame is the only one
            // who reaches it, so this borrow is the only one.
            Some(bytes) => unsafe {
                core::slice::from_raw_parts_mut(bytes, self.memory.frame_size)
            },
            None => &mut [],
        }
    }

    fn frame_size(&self) -> usize {
        self.config.frame_size
    }

    fn headroom(&self) -> usize {
        self.config.headroom
    }

    fn memory(&self) -> MemoryId {
        self.memory.id
    }

    fn mac_addr(&self) -> ethernet::Address {
        self.config.mac_addr
    }

    fn balance(&mut self, with: &mut MemoryPort) {
        if Arc::ptr_eq(&self.memory, &with.memory) {
            balance_free_lists(&mut self.free, &mut with.free);
        }
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
    fn ports_of_a_group_share_frames_and_even_out_their_free_lists() {
        let config = MemoryPortConfig {
            frames: 200,
            rx_ring: 256,
            tx_ring: 256,
            ..port().config
        };
        let mut ports = MemoryPort::group(&[config, config]);
        let (a, b) = ports.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        assert_eq!(a.memory(), b.memory());
        assert_ne!(a.memory(), port().memory(), "a port made apart has its own");
        // A packet received on a leaves by b as it is.
        assert!(a.push_rx(&[7, 8, 9]));
        let mut d = [Descriptor::default(); 200];
        assert_eq!(a.receive(&mut d[..1]), 1);
        assert_eq!(a.frames_in_use(), 1);
        assert_eq!(b.transmit(&d[..1]), 1);
        assert_eq!(b.frames_in_use(), 0, "counted over the group");
        b.flush();
        assert_eq!(b.pop_tx(), Some(vec![7, 8, 9]));
        assert_eq!((a.free_frames(), b.free_frames()), (199, 201));
        // Within the slack nothing moves; past it, half the difference.
        a.balance(b);
        assert_eq!((a.free_frames(), b.free_frames()), (199, 201));
        for _ in 0..150 {
            assert!(a.push_rx(&[1]));
        }
        let n = a.receive(&mut d[..150]);
        assert_eq!(b.transmit(&d[..n]), 150);
        b.flush();
        assert_eq!(b.drain_tx(|_| {}), 150);
        assert_eq!((a.free_frames(), b.free_frames()), (49, 351));
        b.balance(a);
        assert_eq!((a.free_frames(), b.free_frames()), (200, 200));
        assert_eq!(a.frames_in_use(), 0);
        // Ports apart do not trade.
        let mut c = port();
        let before = c.free_frames();
        a.balance(&mut c);
        assert_eq!(c.free_frames(), before);
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

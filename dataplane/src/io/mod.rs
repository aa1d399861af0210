//! Ports: where a worker's packets come from and go to.
//!
//! # The contract
//!
//! A [`Port`] owns its frame memory (an AF_XDP UMEM, or the preallocated
//! pool of a [`memory::MemoryPort`]). Frames are fixed-size and addressed by
//! a [`FrameId`]; a packet is a [`Descriptor`]: the frame, where in the frame
//! the packet starts, and how long it is. The bytes before the start are
//! **headroom**: a worker encapsulates by moving the start back and writing
//! headers there, and decapsulates by moving it forward, without copying the
//! payload.
//!
//! Ownership of a frame moves with its descriptor, and the worker keeps it
//! moving:
//!
//! 1. [`Port::receive`] hands the worker descriptors it now owns.
//! 2. The worker reads and rewrites the packet through
//!    [`Port::frame_mut`], and may change `offset` and `len` of the
//!    descriptor as long as `offset + len <= frame_size()`.
//! 3. Every descriptor the worker owns ends in exactly one of:
//!    [`Port::transmit`] on the port that owns the frame (it then belongs to
//!    the port until the hardware or the test is done with it),
//!    [`Port::free`] (back to the port), or being held by the worker (the
//!    LAC holding rings), which later ends in one of the first two.
//! 4. A packet that leaves by another port than the one it arrived on is
//!    passed as it is when both ports report the same [`Port::memory`] (a
//!    shared UMEM); otherwise the other port may take it over without a
//!    copy ([`Port::hand_over`], which the in-memory port does by trading
//!    frame buffers), and else it is copied into a frame of the other port
//!    from [`Port::alloc`] and the original freed. Nothing else crosses
//!    ports.
//! 5. [`Port::transmit`] queues; the frames reach the wire (the kernel is
//!    woken, if it asked to be) on [`Port::flush`], which the worker calls
//!    once per burst.
//!
//! No method allocates, blocks or fails with an error: a full ring is a
//! short count, an empty pool is `None`, and the worker counts both as drop
//! reasons.

#[cfg(feature = "afxdp")]
pub mod afxdp;
pub mod memory;

use crate::wire::ethernet;

/// Index of a frame in a port's memory.
pub type FrameId = u32;

/// Identity of the frame memory behind a port: equal for ports that share
/// it (AF_XDP with a shared UMEM), distinct otherwise.
pub type MemoryId = usize;

/// A packet in a port's frame memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// The frame that holds the packet.
    pub frame: FrameId,
    /// Where the packet starts in the frame; the bytes before it are headroom.
    pub offset: u32,
    /// Length of the packet.
    pub len: u32,
}

impl Descriptor {
    /// The byte range of the packet in its frame.
    #[inline]
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// A source and sink of Ethernet frames in port-owned memory.
///
/// See the module documentation for who owns a frame when.
pub trait Port {
    /// Take up to `out.len()` received packets; returns how many were written.
    fn receive(&mut self, out: &mut [Descriptor]) -> usize;

    /// Queue packets for transmission; returns how many were accepted (a
    /// prefix of `descriptors`). The caller still owns the rest and must
    /// free them.
    fn transmit(&mut self, descriptors: &[Descriptor]) -> usize;

    /// Push what [`Port::transmit`] queued to the wire.
    fn flush(&mut self);

    /// Give a frame back to the port.
    fn free(&mut self, descriptor: Descriptor);

    /// A free frame, as an empty packet starting after the headroom; `None`
    /// when every frame is in use.
    fn alloc(&mut self) -> Option<Descriptor>;

    /// A whole frame, headroom included (`frame_size()` bytes).
    fn frame(&self, frame: FrameId) -> &[u8];

    /// A whole frame, writable.
    fn frame_mut(&mut self, frame: FrameId) -> &mut [u8];

    /// Size of every frame.
    fn frame_size(&self) -> usize;

    /// Headroom of a received or allocated frame.
    fn headroom(&self) -> usize;

    /// Which frame memory this port uses.
    fn memory(&self) -> MemoryId;

    /// The port's own MAC address: the source of what it sends.
    fn mac_addr(&self) -> ethernet::Address;

    /// Take packet `d` of port `from` into this port without copying its
    /// bytes, when the two can (rule 4 of the module documentation):
    /// `Some` is the packet's descriptor here, and `from` no longer owns
    /// `d`; `None` (the default, and when this port has no frame to give
    /// back) leaves `d` with `from`, to be copied.
    fn hand_over(&mut self, from: &mut Self, d: Descriptor) -> Option<Descriptor>
    where
        Self: Sized,
    {
        let _ = (from, d);
        None
    }
}

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
//!    passed as it is when both ports report the same [`Port::memory`]
//!    (ports made together over one UMEM, or one in-memory pool), and
//!    copied into a frame of the other port from [`Port::alloc`] otherwise,
//!    the original freed. Nothing else crosses ports. Ports that share a
//!    memory keep free lists of their own, and a port that receives more
//!    than it sends would run dry: the worker calls [`Port::balance`] on
//!    them after every burst, which moves frames in blocks.
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

    /// When `with` shares this port's memory, even out the two free
    /// lists if they differ by much (rule 4 of the module documentation);
    /// otherwise, and by default, nothing.
    fn balance(&mut self, with: &mut Self)
    where
        Self: Sized,
    {
        let _ = with;
    }
}

/// Free lists of ports sharing a memory are evened out when they differ
/// by more than this: a burst of the largest size either way, so that
/// balancing runs every few bursts at most, a block of frames at a time.
const BALANCE_SLACK: usize = 2 * crate::worker::MAX_BURST;

/// Move frames from the longer of two free lists to the shorter until
/// they are within one of each other, when they differ by more than
/// [`BALANCE_SLACK`]: [`Port::balance`] of both port kinds.
pub(crate) fn balance_free_lists(a: &mut Vec<FrameId>, b: &mut Vec<FrameId>) {
    let (long, short) = if a.len() > b.len() { (a, b) } else { (b, a) };
    let surplus = long.len() - short.len();
    if surplus <= BALANCE_SLACK {
        return;
    }
    let keep = long.len() - surplus / 2;
    short.extend_from_slice(&long[keep..]);
    long.truncate(keep);
}

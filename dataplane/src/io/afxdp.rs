//! The AF_XDP [`Port`]: one socket bound to one (interface, queue), over a
//! UMEM of its own or one it shares with the other ports of its worker
//! ([`AfXdpPort::open_group`]), and the XDP program that steers the
//! fast-path traffic to it ([`Steering`]).
//!
//! # Frames and headroom
//!
//! The UMEM is one anonymous mapping cut into `frames` frames of
//! `frame_size` bytes (aligned mode: 2048 or 4096). The kernel writes a
//! received packet at `frame_headroom + XDP_PACKET_HEADROOM` (256) into its
//! frame, so that is the [`Port::headroom`]: an LNS encapsulates downstream
//! packets by moving the start back into it, and the transmit descriptor
//! names the new start. That is why this port drives libxdp's rings itself
//! (through `libxdp-sys`, the library `xsk-rs` wraps) rather than through
//! `xsk-rs`: an `xsk_rs::FrameDesc` always transmits from the same address
//! of its frame, so every encapsulated or decapsulated packet would have to
//! be moved back there, a copy per packet the contract exists to avoid.
//!
//! # Rings
//!
//! Frames the port owns and the worker does not sit on a free list (one
//! per port, also when the UMEM is shared: a frame that another port of the
//! group transmitted comes back on that port's completion ring, to its
//! list, and [`Port::balance`] evens the lists out). Each
//! [`Port::receive`] first takes completed transmissions back from the
//! completion ring, then tops up the fill ring from the free list in one
//! batch (keeping `alloc_reserve` frames back for [`Port::alloc`]), then
//! takes a burst from the receive ring. [`Port::transmit`] writes
//! descriptors into the transmit ring; [`Port::flush`] wakes the kernel
//! with an empty `sendto` only when the ring's need-wakeup flag says it is
//! asleep (the socket is bound with `XDP_USE_NEED_WAKEUP`; in copy mode that
//! is every flush with something queued, since the kernel transmits only
//! from the syscall), and takes the completions back. The fill ring is
//! woken with `recvfrom` the same way.
//!
//! # Queues
//!
//! One socket per (interface, queue id), one port per socket, one worker
//! per queue: a NIC with N combined channels gets N ports, each opened with
//! its queue id and registered in the same [`Steering`] program, whose
//! XSKMAP is indexed by the receiving queue. A veth has one queue (id 0).
//!
//! # Namespaces and threads
//!
//! The interface name is resolved, and the program attached, in the network
//! namespace of the *calling thread*. Open ports and attach steering on a
//! thread that is in the right namespace; afterwards both may move to any
//! thread (the worker's). Detaching is namespace-free: the program is held
//! by a BPF link file descriptor and goes when [`Steering`] is dropped (or
//! the interface goes away).

use core::ffi::{c_char, c_int, c_void};
use core::ptr::{self, NonNull};
use std::ffi::CString;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use libbpf_sys as bpf;
use libxdp_sys as xdp;

use super::{balance_free_lists, Descriptor, FrameId, MemoryId, Port};
use crate::wire::ethernet;

/// Bytes the kernel keeps in front of every received packet for XDP
/// programs; ours to use for encapsulation once the packet is in the UMEM.
pub const XDP_PACKET_HEADROOM: usize = xdp::XDP_PACKET_HEADROOM as usize;

/// The compiled steering program (deploy/xdp/steer.bpf.c, built by
/// build.rs).
static STEERING_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// How the XDP program and the socket meet the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Generic XDP and copy mode: works on any interface, veth included
    /// (the kernel copies each packet between skb and UMEM).
    Skb,
    /// The driver's own XDP hook, still copying into the UMEM (drivers
    /// without zero-copy support).
    DriverCopy,
    /// The driver's XDP hook and zero-copy (NICs that support it).
    DriverZeroCopy,
}

impl XdpMode {
    fn attach_flags(self) -> u32 {
        match self {
            XdpMode::Skb => bpf::XDP_FLAGS_SKB_MODE,
            XdpMode::DriverCopy | XdpMode::DriverZeroCopy => bpf::XDP_FLAGS_DRV_MODE,
        }
    }

    fn bind_flags(self) -> u16 {
        let copy = match self {
            XdpMode::Skb | XdpMode::DriverCopy => xdp::XDP_COPY,
            XdpMode::DriverZeroCopy => xdp::XDP_ZEROCOPY,
        };
        (copy | xdp::XDP_USE_NEED_WAKEUP) as u16
    }
}

/// Everything an [`AfXdpPort`] is opened with.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    /// The interface.
    pub interface: String,
    /// The queue (channel) of the interface this socket serves.
    pub queue_id: u32,
    /// Frames in the UMEM.
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096.
    pub frame_size: u32,
    /// Extra headroom before `XDP_PACKET_HEADROOM`, for encapsulations
    /// longer than 256 bytes (none of ours is).
    pub frame_headroom: u32,
    /// Fill and completion ring sizes (powers of two).
    pub fill_size: u32,
    /// Receive and transmit ring sizes (powers of two).
    pub ring_size: u32,
    /// Frames the fill ring leaves on the free list for [`Port::alloc`]
    /// (injects, copies between ports).
    pub alloc_reserve: u32,
    /// Copy or zero-copy, generic or driver XDP.
    pub mode: XdpMode,
    /// The port's MAC; `None` reads the interface's.
    pub mac_addr: Option<ethernet::Address>,
}

impl AfXdpConfig {
    /// Copy mode on generic XDP (what veth needs), 4096 frames of 2048
    /// bytes, rings of 1024 and a fill ring of 2048.
    pub fn new(interface: &str, queue_id: u32) -> AfXdpConfig {
        AfXdpConfig {
            interface: interface.to_owned(),
            queue_id,
            frames: 4096,
            frame_size: 2048,
            frame_headroom: 0,
            fill_size: 2048,
            ring_size: 1024,
            alloc_reserve: 256,
            mode: XdpMode::Skb,
            mac_addr: None,
        }
    }
}

/// Why a port or the steering program could not be set up. Says what to
/// check.
#[derive(Debug)]
pub struct AfXdpError {
    what: String,
    cause: io::Error,
}

impl AfXdpError {
    fn new(what: impl Into<String>, cause: io::Error) -> AfXdpError {
        AfXdpError {
            what: what.into(),
            cause,
        }
    }

    /// From a libbpf/libxdp return value (a negative errno).
    fn from_ret(what: impl Into<String>, ret: c_int) -> AfXdpError {
        AfXdpError::new(what, io::Error::from_raw_os_error(ret.saturating_abs()))
    }

    /// The OS error behind it.
    pub fn cause(&self) -> &io::Error {
        &self.cause
    }
}

impl fmt::Display for AfXdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.cause)?;
        if self.cause.raw_os_error() == Some(libc::EPERM) {
            write!(f, " (AF_XDP and BPF need root or CAP_NET_ADMIN+CAP_BPF)")?;
        }
        Ok(())
    }
}

impl std::error::Error for AfXdpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// The anonymous mapping behind a UMEM.
#[derive(Debug)]
struct Area {
    base: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Area, AfXdpError> {
        // SAFETY: an anonymous private mapping with no address hint
        // touches no existing memory; the result is checked for failure.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(AfXdpError::new(
                format!("mapping a UMEM of {len} bytes"),
                io::Error::last_os_error(),
            ));
        }
        // Every packet is in a frame of its own: on 4 KiB pages each one
        // costs a TLB entry.
        crate::pages::advise_huge_pages(base.cast::<u8>(), len);
        NonNull::new(base.cast::<u8>())
            .map(|base| Area { base, len })
            .ok_or_else(|| AfXdpError::new("mmap returned null", io::Error::other("null")))
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what mmap returned, and the
        // UMEM that used it is deleted before the area is dropped (field
        // order of `AfXdpPort` and its Drop).
        unsafe {
            libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len);
        }
    }
}

/// A UMEM and its mapping, shared by the ports of a group
/// ([`AfXdpPort::open_group`]): deleted once the last of their sockets is.
#[derive(Debug)]
struct Umem {
    raw: NonNull<xdp::xsk_umem>,
    // Dropped after `raw` is deleted (Drop below, then the fields).
    area: Area,
    frames: u32,
    frame_size: u32,
    id: MemoryId,
    /// Held while a socket of the UMEM is deleted: libxdp's bookkeeping
    /// of the UMEM (its socket count, its rings per device and queue) is
    /// not thread-safe, and ports of a group may be dropped on different
    /// threads.
    deleting: std::sync::Mutex<()>,
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: every socket of the UMEM was deleted (each port holds an
        // Arc and deletes its socket before dropping it), so this deletes
        // it exactly once; the mapping is unmapped after (field drop).
        unsafe { xdp::xsk_umem__delete(self.raw.as_ptr()) };
    }
}

// SAFETY: after creation the UMEM is read only through its immutable
// fields; libxdp's own state for it changes only when a socket of it is
// created (in `open_group`, on one thread, before any port exists) or
// deleted (under `deleting`). The frames themselves are reached through
// the ports, for frames their caller owns (the port contract).
unsafe impl Send for Umem {}
unsafe impl Sync for Umem {}

/// The four rings, boxed: libxdp keeps pointers to the fill and completion
/// ring structures until the socket is deleted, so they must not move.
#[derive(Debug)]
struct Rings {
    fill: xdp::xsk_ring_prod,
    comp: xdp::xsk_ring_cons,
    rx: xdp::xsk_ring_cons,
    tx: xdp::xsk_ring_prod,
}

impl Rings {
    /// Four rings for libxdp to set up, boxed where they will stay.
    fn unset() -> Box<Rings> {
        Box::new(Rings {
            fill: zeroed_prod(),
            comp: zeroed_cons(),
            rx: zeroed_cons(),
            tx: zeroed_prod(),
        })
    }
}

static NEXT_MEMORY: AtomicUsize = AtomicUsize::new(1 << 20);

/// See the module documentation.
pub struct AfXdpPort {
    // Drop order matters: the socket (in Drop), then the rings it used and
    // our share of the UMEM (the last share deletes it).
    xsk: NonNull<xdp::xsk_socket>,
    rings: Box<Rings>,
    umem: Arc<Umem>,
    fd: c_int,
    frames: u32,
    frame_size: u32,
    headroom: u32,
    alloc_reserve: usize,
    free: Vec<FrameId>,
    /// Transmitted and not yet completed.
    in_flight: u32,
    /// Queued since the last flush.
    queued: u32,
    mac: ethernet::Address,
    interface: String,
    queue_id: u32,
    stats: AfXdpStats,
}

/// What the port did that the worker cannot see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Packets taken from the receive ring.
    pub received: u64,
    /// Descriptors put on the transmit ring.
    pub transmitted: u64,
    /// Transmissions the kernel completed.
    pub completed: u64,
    /// `sendto` calls to wake the kernel for transmission.
    pub tx_wakeups: u64,
    /// `recvfrom` calls to wake the kernel for the fill ring.
    pub fill_wakeups: u64,
    /// Receive descriptors outside the UMEM (never expected): dropped.
    pub bad_descriptors: u64,
}

impl fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("interface", &self.interface)
            .field("queue_id", &self.queue_id)
            .field("frames", &self.frames)
            .field("frame_size", &self.frame_size)
            .field("free", &self.free.len())
            .field("in_flight", &self.in_flight)
            .field("stats", &self.stats)
            .finish()
    }
}

// SAFETY: the port exclusively owns its socket, UMEM, rings and mapping;
// libxdp keeps no thread-local state for them, and the kernel synchronises
// with the rings through their atomic producer/consumer words. Moving the
// port to another thread (the worker's) is therefore sound; it is not
// `Sync`, so one thread at a time uses it.
unsafe impl Send for AfXdpPort {}

impl AfXdpPort {
    /// Create the UMEM and the socket, bind it to `(interface, queue_id)`
    /// and, when `steering` is given, register it in the program's XSKMAP.
    /// Without steering the socket receives nothing until some program
    /// redirects to it. Runs in the calling thread's network namespace.
    pub fn open(config: &AfXdpConfig, steering: Option<&Steering>) -> Result<Self, AfXdpError> {
        let mut ports = AfXdpPort::open_group(&[(config, steering)])?;
        ports
            .pop()
            .ok_or_else(|| AfXdpError::new("opening a port", io::ErrorKind::NotFound.into()))
    }

    /// One socket per `(config, steering)` over one UMEM that holds the
    /// frames of them all (`XDP_SHARED_UMEM`; sockets on other interfaces
    /// or queues get fill and completion rings of their own): a packet
    /// received on one leaves by another as it is, with no copy (port
    /// contract, rule 4). The ports of one worker are opened so. Frame size
    /// and headroom are the first configuration's, and so is the XDP mode:
    /// the kernel binds the later sockets in the first one's. Each port
    /// starts with its `frames` and keeps a free list of its own, which
    /// [`Port::balance`] evens out.
    pub fn open_group(
        ports: &[(&AfXdpConfig, Option<&Steering>)],
    ) -> Result<Vec<Self>, AfXdpError> {
        let Some(&(first, _)) = ports.first() else {
            return Ok(Vec::new());
        };
        if !matches!(first.frame_size, 2048 | 4096) {
            return Err(AfXdpError::new(
                format!("frame_size {} (accepted: 2048, 4096)", first.frame_size),
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
        let headroom = first.frame_headroom + xdp::XDP_PACKET_HEADROOM;
        let total: u64 = ports.iter().map(|(c, _)| u64::from(c.frames)).sum();
        if headroom + 256 > first.frame_size || ports.iter().any(|(c, _)| c.frames == 0) {
            return Err(AfXdpError::new(
                format!(
                    "frame_headroom {} leaves no room for a packet in frames of {} \
                     (or frames is 0)",
                    first.frame_headroom, first.frame_size
                ),
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
        let Ok(total) = u32::try_from(total) else {
            return Err(AfXdpError::new(
                format!("{total} frames in one UMEM"),
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        };
        let area = Area::new(total as usize * first.frame_size as usize)?;
        // The first port's fill and completion rings are the UMEM's own.
        let mut first_rings = Rings::unset();
        let umem_config = xdp::xsk_umem_config {
            fill_size: first.fill_size,
            comp_size: first.fill_size,
            frame_size: first.frame_size,
            frame_headroom: first.frame_headroom,
            flags: 0,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: the area is a live mapping of exactly the size passed,
        // page-aligned (mmap); the ring structures are boxed and outlive the
        // UMEM's use of them (the first socket takes them over, below, or
        // the UMEM is deleted at once on failure, before the box goes).
        let ret = unsafe {
            xdp::xsk_umem__create(
                &mut raw,
                area.base.as_ptr().cast::<c_void>(),
                area.len as u64,
                &mut first_rings.fill,
                &mut first_rings.comp,
                &umem_config,
            )
        };
        let Some(raw) = NonNull::new(raw).filter(|_| ret == 0) else {
            return Err(AfXdpError::from_ret(
                format!("creating a UMEM of {total} frames"),
                ret,
            ));
        };
        let umem = Arc::new(Umem {
            raw,
            area,
            frames: total,
            frame_size: first.frame_size,
            id: NEXT_MEMORY.fetch_add(1, Ordering::Relaxed),
            deleting: std::sync::Mutex::new(()),
        });
        let mut opened: Vec<AfXdpPort> = Vec::with_capacity(ports.len());
        let mut first_rings = Some(first_rings);
        let mut next_frame = 0;
        for &(config, steering) in ports {
            let rings = first_rings.take().unwrap_or_else(Rings::unset);
            let frames = next_frame..next_frame + config.frames;
            next_frame = frames.end;
            match AfXdpPort::open_socket(config, steering, &umem, rings, frames, headroom) {
                Ok(port) => opened.push(port),
                Err((error, rings)) => {
                    // The ports opened so far close (their sockets first),
                    // then the UMEM, which may still point into the
                    // rings of a first socket that failed: they go last.
                    drop(opened);
                    drop(umem);
                    drop(rings);
                    return Err(error);
                }
            }
        }
        Ok(opened)
    }

    /// Bind one socket of `umem` and make it a port owning `frames`. On
    /// failure the rings come back unless a port was made of them.
    fn open_socket(
        config: &AfXdpConfig,
        steering: Option<&Steering>,
        umem: &Arc<Umem>,
        mut rings: Box<Rings>,
        frames: core::ops::Range<u32>,
        headroom: u32,
    ) -> Result<AfXdpPort, (AfXdpError, Option<Box<Rings>>)> {
        // A whole IFNAMSIZ buffer, NUL-padded: libxdp copies IFNAMSIZ - 1
        // bytes of the name whatever its length (valgrind saw it read past
        // a shorter string).
        let mut ifname = [0 as c_char; libc::IFNAMSIZ];
        let name = config.interface.as_bytes();
        if name.is_empty() || name.len() >= ifname.len() || name.contains(&0) {
            let error = AfXdpError::new(
                format!("interface name {:?}", config.interface),
                io::Error::from(io::ErrorKind::InvalidInput),
            );
            return Err((error, Some(rings)));
        }
        for (to, &from) in ifname.iter_mut().zip(name) {
            *to = from as c_char;
        }
        let mac = match config.mac_addr {
            Some(mac) => mac,
            None => match interface_mac(&config.interface) {
                Ok(mac) => mac,
                Err(error) => return Err((error, Some(rings))),
            },
        };
        let socket_config = xdp::xsk_socket_config {
            rx_size: config.ring_size,
            tx_size: config.ring_size,
            // We attach our own program (Steering); libxdp must not load
            // its default one, which would also detach in the wrong
            // namespace when a worker thread drops the port.
            __bindgen_anon_1: xdp::xsk_socket_config__bindgen_ty_1 {
                libxdp_flags: xdp::XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
            },
            xdp_flags: config.mode.attach_flags(),
            bind_flags: config.mode.bind_flags(),
        };
        let mut xsk = ptr::null_mut();
        let Rings { fill, comp, rx, tx } = &mut *rings;
        // SAFETY: `umem` is live; the name is NUL-terminated; the four
        // rings are boxed and live until after the socket is deleted (Drop
        // of the port). For the first socket of the UMEM, libxdp takes the
        // fill and completion rings it made at its creation (the same
        // structures); for later ones it makes them in ours. A failed call
        // leaves nothing behind.
        let ret = unsafe {
            xdp::xsk_socket__create_shared(
                &mut xsk,
                ifname.as_ptr(),
                config.queue_id,
                umem.raw.as_ptr(),
                rx,
                tx,
                fill,
                comp,
                &socket_config,
            )
        };
        let Some(xsk) = NonNull::new(xsk).filter(|_| ret == 0) else {
            let error = AfXdpError::from_ret(
                format!(
                    "binding an AF_XDP socket to {} queue {} ({:?})",
                    config.interface, config.queue_id, config.mode
                ),
                ret,
            );
            return Err((error, Some(rings)));
        };
        // SAFETY: `xsk` is a live socket.
        let fd = unsafe { xdp::xsk_socket__fd(xsk.as_ptr()) };
        let mut port = AfXdpPort {
            xsk,
            rings,
            umem: Arc::clone(umem),
            fd,
            frames: umem.frames,
            frame_size: umem.frame_size,
            headroom,
            alloc_reserve: config.alloc_reserve as usize,
            // Highest ids at the bottom: the fill ring gets the low frames
            // first, which makes traces easier to read. Room for every frame
            // of the UMEM: balancing moves frames between the lists, and
            // must not allocate.
            free: {
                let mut free = Vec::with_capacity(umem.frames as usize);
                free.extend(frames.rev());
                free
            },
            in_flight: 0,
            queued: 0,
            mac,
            interface: config.interface.clone(),
            queue_id: config.queue_id,
            stats: AfXdpStats::default(),
        };
        if let Some(steering) = steering {
            // The port closes its socket, then drops the rings.
            steering.register(&port).map_err(|error| (error, None))?;
        }
        port.refill();
        Ok(port)
    }

    /// The socket's file descriptor (for `poll`, statistics).
    pub fn fd(&self) -> c_int {
        self.fd
    }

    /// The queue this socket serves.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// What the port counted.
    pub fn stats(&self) -> AfXdpStats {
        self.stats
    }

    /// Frames on the free list (neither in the kernel nor with the worker).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Take completed transmissions back onto the free list.
    #[inline]
    fn reclaim(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        let mut idx = 0;
        let comp = &mut self.rings.comp;
        // SAFETY: the completion ring belongs to this port's UMEM and only
        // this thread consumes it.
        let n = unsafe { xdp::xsk_ring_cons__peek(comp, self.in_flight, &mut idx) };
        for i in 0..n {
            // SAFETY: entries idx..idx+n were just peeked, so they are ours
            // to read until released below.
            let addr = unsafe { *cons_entry::<u64>(comp, idx.wrapping_add(i)) };
            let frame = (addr / u64::from(self.frame_size)) as FrameId;
            if frame < self.frames {
                self.free.push(frame);
            }
        }
        // SAFETY: releasing exactly what was peeked.
        unsafe { xdp::xsk_ring_cons__release(comp, n) };
        self.in_flight -= n;
        self.stats.completed += u64::from(n);
    }

    /// Top the fill ring up from the free list, in one batch.
    #[inline]
    fn refill(&mut self) {
        let spare = self.free.len().saturating_sub(self.alloc_reserve);
        if spare == 0 {
            return;
        }
        let fill = &mut self.rings.fill;
        let mut idx = 0;
        // SAFETY: the fill ring belongs to this port's UMEM and only this
        // thread produces on it. Reserving is all or nothing, so ask for
        // what is free.
        let n = unsafe {
            let want = xdp::xsk_prod_nb_free(fill, spare as u32).min(spare as u32);
            xdp::xsk_ring_prod__reserve(fill, want, &mut idx)
        };
        for i in 0..n {
            let Some(frame) = self.free.pop() else { break };
            // SAFETY: slot idx+i was reserved above; the frame was on the
            // free list, so neither the kernel nor the worker uses it.
            unsafe {
                *prod_entry::<u64>(fill, idx.wrapping_add(i)) =
                    u64::from(frame) * u64::from(self.frame_size);
            }
        }
        // SAFETY: submitting exactly the reserved slots, all written (the
        // free list had at least `spare >= n` frames).
        unsafe { xdp::xsk_ring_prod__submit(fill, n) };
        // SAFETY: reading the flags word of a live ring.
        if n > 0 && unsafe { xdp::xsk_ring_prod__needs_wakeup(fill) } != 0 {
            self.stats.fill_wakeups += 1;
            // SAFETY: an empty, non-blocking receive on our own socket; it
            // only tells the kernel to look at the fill ring.
            unsafe {
                libc::recvfrom(
                    self.fd,
                    ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                );
            }
        }
    }

    fn frame_range(&self, frame: FrameId) -> Option<(usize, usize)> {
        (frame < self.frames).then(|| {
            (
                frame as usize * self.frame_size as usize,
                self.frame_size as usize,
            )
        })
    }
}

impl Port for AfXdpPort {
    #[inline]
    fn receive(&mut self, out: &mut [Descriptor]) -> usize {
        self.reclaim();
        self.refill();
        let rx = &mut self.rings.rx;
        let mut idx = 0;
        // SAFETY: the receive ring is ours and only this thread consumes it.
        let n = unsafe { xdp::xsk_ring_cons__peek(rx, out.len() as u32, &mut idx) };
        let mut taken = 0;
        for i in 0..n {
            // SAFETY: entry idx+i was peeked above and is not released yet.
            let desc = unsafe { *cons_entry::<xdp::xdp_desc>(rx, idx.wrapping_add(i)) };
            let frame = (desc.addr / u64::from(self.frame_size)) as FrameId;
            let offset = (desc.addr % u64::from(self.frame_size)) as u32;
            if frame >= self.frames || offset + desc.len > self.frame_size {
                self.stats.bad_descriptors += 1;
                continue;
            }
            out[taken] = Descriptor {
                frame,
                offset,
                len: desc.len,
            };
            taken += 1;
        }
        // SAFETY: releasing exactly what was peeked.
        unsafe { xdp::xsk_ring_cons__release(rx, n) };
        self.stats.received += taken as u64;
        taken
    }

    #[inline]
    fn transmit(&mut self, descriptors: &[Descriptor]) -> usize {
        let tx = &mut self.rings.tx;
        let mut idx = 0;
        // SAFETY: the transmit ring is ours and only this thread produces.
        // Reserving is all or nothing, so ask for what is free: a full ring
        // is a short count.
        let n = unsafe {
            let want =
                xdp::xsk_prod_nb_free(tx, descriptors.len() as u32).min(descriptors.len() as u32);
            xdp::xsk_ring_prod__reserve(tx, want, &mut idx)
        };
        for (i, d) in descriptors.iter().take(n as usize).enumerate() {
            // SAFETY: slot idx+i was reserved above. The descriptor's frame
            // is owned by the worker, which hands it to us here (the port
            // contract); the kernel validates addr and len against the UMEM.
            unsafe {
                *prod_entry::<xdp::xdp_desc>(tx, idx.wrapping_add(i as u32)) = xdp::xdp_desc {
                    addr: u64::from(d.frame) * u64::from(self.frame_size) + u64::from(d.offset),
                    len: d.len,
                    options: 0,
                };
            }
        }
        // SAFETY: submitting exactly the reserved, written slots.
        unsafe { xdp::xsk_ring_prod__submit(tx, n) };
        self.queued += n;
        self.in_flight += n;
        self.stats.transmitted += u64::from(n);
        n as usize
    }

    #[inline]
    fn flush(&mut self) {
        // SAFETY: reading the flags word of a live ring.
        if self.queued > 0 && unsafe { xdp::xsk_ring_prod__needs_wakeup(&self.rings.tx) } != 0 {
            self.stats.tx_wakeups += 1;
            // SAFETY: an empty, non-blocking send on our own socket: it
            // makes the kernel drain the transmit ring. EAGAIN/EBUSY/ENOBUFS
            // mean "later", which the next flush is.
            unsafe {
                libc::sendto(self.fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0);
            }
        }
        self.queued = 0;
        self.reclaim();
    }

    #[inline]
    fn free(&mut self, descriptor: Descriptor) {
        if descriptor.frame < self.frames {
            self.free.push(descriptor.frame);
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Descriptor> {
        if self.free.is_empty() {
            self.reclaim();
        }
        self.free.pop().map(|frame| Descriptor {
            frame,
            offset: self.headroom,
            len: 0,
        })
    }

    #[inline]
    fn frame(&self, frame: FrameId) -> &[u8] {
        let Some((start, len)) = self.frame_range(frame) else {
            return &[];
        };
        // SAFETY: start+len lies inside the mapping (frame < frames). The
        // frame belongs to the worker (it got it from receive or alloc), so
        // the kernel does not write it while this borrow lives.
        unsafe { core::slice::from_raw_parts(self.umem.area.base.as_ptr().add(start), len) }
    }

    #[inline]
    fn frame_mut(&mut self, frame: FrameId) -> &mut [u8] {
        let Some((start, len)) = self.frame_range(frame) else {
            return &mut [];
        };
        // SAFETY: as in `frame`: the worker owns the frame and reaches it
        // through one port at a time (ports sharing the UMEM included), so
        // this is the only borrow of it.
        unsafe { core::slice::from_raw_parts_mut(self.umem.area.base.as_ptr().add(start), len) }
    }

    fn frame_size(&self) -> usize {
        self.frame_size as usize
    }

    fn headroom(&self) -> usize {
        self.headroom as usize
    }

    fn memory(&self) -> MemoryId {
        self.umem.id
    }

    fn mac_addr(&self) -> ethernet::Address {
        self.mac
    }

    fn balance(&mut self, with: &mut AfXdpPort) {
        if Arc::ptr_eq(&self.umem, &with.umem) {
            balance_free_lists(&mut self.free, &mut with.free);
        }
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        // A poisoned lock only means another drop panicked; deleting is
        // still right.
        let _deleting = self
            .umem
            .deleting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: the socket is deleted exactly once, alone among the
        // sockets of its UMEM (the lock); the rings it used and our share
        // of the UMEM are dropped after this (fields), and the UMEM is
        // deleted with its last share.
        unsafe { xdp::xsk_socket__delete(self.xsk.as_ptr()) };
    }
}

/// Pointer to entry `idx` of a consumer ring of `T` (xdp_desc or u64).
///
/// # Safety
/// `ring` must be a live ring of `T` entries.
#[inline]
unsafe fn cons_entry<T>(ring: &xdp::xsk_ring_cons, idx: u32) -> *const T {
    // SAFETY: (idx & mask) < size, and the ring has `size` entries of T.
    unsafe { ring.ring.cast::<T>().add((idx & ring.mask) as usize) }
}

/// Pointer to entry `idx` of a producer ring of `T`.
///
/// # Safety
/// `ring` must be a live ring of `T` entries.
#[inline]
unsafe fn prod_entry<T>(ring: &mut xdp::xsk_ring_prod, idx: u32) -> *mut T {
    // SAFETY: (idx & mask) < size, and the ring has `size` entries of T.
    unsafe { ring.ring.cast::<T>().add((idx & ring.mask) as usize) }
}

fn zeroed_prod() -> xdp::xsk_ring_prod {
    xdp::xsk_ring_prod {
        cached_prod: 0,
        cached_cons: 0,
        mask: 0,
        size: 0,
        producer: ptr::null_mut(),
        consumer: ptr::null_mut(),
        ring: ptr::null_mut(),
        flags: ptr::null_mut(),
    }
}

fn zeroed_cons() -> xdp::xsk_ring_cons {
    xdp::xsk_ring_cons {
        cached_prod: 0,
        cached_cons: 0,
        mask: 0,
        size: 0,
        producer: ptr::null_mut(),
        consumer: ptr::null_mut(),
        ring: ptr::null_mut(),
        flags: ptr::null_mut(),
    }
}

/// The MAC address of `interface` in the calling thread's namespace.
fn interface_mac(interface: &str) -> Result<ethernet::Address, AfXdpError> {
    let what = || format!("reading the MAC address of {interface}");
    // SAFETY: a plain socket call; the result is checked.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(AfXdpError::new(what(), io::Error::last_os_error()));
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= req.ifr_name.len() {
        // SAFETY: closing the socket we opened.
        unsafe { libc::close(sock) };
        return Err(AfXdpError::new(
            what(),
            io::Error::from(io::ErrorKind::InvalidInput),
        ));
    }
    for (to, &from) in req.ifr_name.iter_mut().zip(name) {
        *to = from as c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name from `req` and
    // writes the address into it; `req` outlives the call.
    let ret = unsafe { libc::ioctl(sock, libc::SIOCGIFHWADDR, &mut req) };
    let err = io::Error::last_os_error();
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(sock) };
    if ret < 0 {
        return Err(AfXdpError::new(what(), err));
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds ifru_hwaddr.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (to, &from) in mac.iter_mut().zip(data.iter()) {
        *to = from as u8;
    }
    Ok(ethernet::Address(mac))
}

/// The steering program (deploy/xdp/steer.bpf.c) attached to one
/// interface: its XSKMAP, which every port of the interface registers in,
/// and the subscriber prefixes whose IPv4 traffic goes to the fast path.
///
/// Dropping it detaches the program (it is held by a BPF link).
pub struct Steering {
    object: NonNull<bpf::bpf_object>,
    link_fd: c_int,
    xsks_fd: c_int,
    subscribers_fd: c_int,
    config_fd: c_int,
    interface: String,
}

/// Per-interface choices of what else the steering program sends to the
/// AF_XDP socket, besides the fast-path traffic it always sends (L2TP data
/// messages, PPPoE session frames, IPv4 to subscriber prefixes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteeringOptions {
    /// PPPoE Discovery (EtherType 0x8863, RFC 2516 §5) too: for a LAC
    /// access port, where no kernel socket serves discovery. The worker
    /// punts these frames as [`crate::punt::PuntReason::Local`]; the
    /// control plane answers through [`crate::update::Channels::inject`].
    pub pppoe_discovery: bool,
    /// Every frame, whatever it is (a port that belongs to a userspace
    /// stack entirely, such as l2bench's emulated subscribers). The kernel
    /// then sees nothing from this interface, ARP included.
    pub everything: bool,
}

impl SteeringOptions {
    /// `struct steering_config.flags` of the program.
    fn flags(self) -> u32 {
        // deploy/xdp/steer.bpf.c: STEER_PPPOE_DISCOVERY, STEER_EVERYTHING.
        u32::from(self.pppoe_discovery) | u32::from(self.everything) << 1
    }
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("interface", &self.interface)
            .field("link_fd", &self.link_fd)
            .finish()
    }
}

// SAFETY: the libbpf object is only used through `&self` for map file
// descriptors (kernel objects, safe to use from any thread) and freed once
// in Drop; libbpf keeps no thread-local state for it.
unsafe impl Send for Steering {}
// SAFETY: every `&self` method only issues map syscalls on file descriptors,
// which the kernel serialises.
unsafe impl Sync for Steering {}

impl Steering {
    /// Load the program and attach it to `interface` in `mode` (the ports'
    /// mode), in the calling thread's namespace, with the default
    /// [`SteeringOptions`] (only fast-path traffic to the socket).
    pub fn attach(interface: &str, mode: XdpMode) -> Result<Steering, AfXdpError> {
        Steering::attach_with(interface, mode, SteeringOptions::default())
    }

    /// [`Steering::attach`] with `options`, which are in force from the
    /// first packet (written before the program is attached).
    pub fn attach_with(
        interface: &str,
        mode: XdpMode,
        options: SteeringOptions,
    ) -> Result<Steering, AfXdpError> {
        let ifname = CString::new(interface).map_err(|_| {
            AfXdpError::new(
                format!("interface name {interface:?}"),
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })?;
        // SAFETY: reading a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        if ifindex == 0 {
            return Err(AfXdpError::new(
                format!("no interface {interface} in this network namespace"),
                io::Error::last_os_error(),
            ));
        }
        let name = c"l2tp_steer";
        let opts = bpf::bpf_object_open_opts {
            sz: core::mem::size_of::<bpf::bpf_object_open_opts>() as _,
            object_name: name.as_ptr(),
            ..Default::default()
        };
        // SAFETY: the buffer is a static ELF object; libbpf copies what it
        // keeps. The result is checked (libbpf 1.x returns NULL on error).
        let object = unsafe {
            bpf::bpf_object__open_mem(
                STEERING_OBJECT.as_ptr().cast::<c_void>(),
                STEERING_OBJECT.len() as _,
                &opts,
            )
        };
        let Some(object) = NonNull::new(object) else {
            return Err(AfXdpError::new(
                "opening the steering program",
                io::Error::last_os_error(),
            ));
        };
        let mut steering = Steering {
            object,
            link_fd: -1,
            xsks_fd: -1,
            subscribers_fd: -1,
            config_fd: -1,
            interface: interface.to_owned(),
        };
        // SAFETY: a live, not yet loaded object.
        let ret = unsafe { bpf::bpf_object__load(object.as_ptr()) };
        if ret != 0 {
            return Err(AfXdpError::from_ret(
                "loading the steering program into the kernel",
                ret,
            ));
        }
        let prog_fd = steering.program_fd(c"steer")?;
        steering.xsks_fd = steering.map_fd(c"xsks")?;
        steering.subscribers_fd = steering.map_fd(c"subscribers")?;
        steering.config_fd = steering.map_fd(c"config")?;
        steering.set_options(options)?;
        let link_opts = bpf::bpf_link_create_opts {
            sz: core::mem::size_of::<bpf::bpf_link_create_opts>() as _,
            flags: mode.attach_flags(),
            ..Default::default()
        };
        // SAFETY: a loaded XDP program and an interface index of this
        // namespace; the result is checked.
        let link_fd =
            unsafe { bpf::bpf_link_create(prog_fd, ifindex as c_int, bpf::BPF_XDP, &link_opts) };
        if link_fd < 0 {
            return Err(AfXdpError::from_ret(
                format!("attaching the steering program to {interface} ({mode:?})"),
                link_fd,
            ));
        }
        steering.link_fd = link_fd;
        Ok(steering)
    }

    fn program_fd(&self, name: &core::ffi::CStr) -> Result<c_int, AfXdpError> {
        // SAFETY: a live object and a NUL-terminated name.
        let prog =
            unsafe { bpf::bpf_object__find_program_by_name(self.object.as_ptr(), name.as_ptr()) };
        // SAFETY: a program of the live object, checked non-null.
        let fd = if prog.is_null() {
            -1
        } else {
            unsafe { bpf::bpf_program__fd(prog) }
        };
        if fd < 0 {
            return Err(AfXdpError::new(
                format!("no program {name:?} in the steering object"),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        Ok(fd)
    }

    fn map_fd(&self, name: &core::ffi::CStr) -> Result<c_int, AfXdpError> {
        // SAFETY: a live object and a NUL-terminated name.
        let map = unsafe { bpf::bpf_object__find_map_by_name(self.object.as_ptr(), name.as_ptr()) };
        // SAFETY: a map of the live object, checked non-null.
        let fd = if map.is_null() {
            -1
        } else {
            unsafe { bpf::bpf_map__fd(map) }
        };
        if fd < 0 {
            return Err(AfXdpError::new(
                format!("no map {name:?} in the steering object"),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        Ok(fd)
    }

    /// Redirect the port's queue to its socket.
    fn register(&self, port: &AfXdpPort) -> Result<(), AfXdpError> {
        // SAFETY: a live socket and the XSKMAP's descriptor.
        let ret = unsafe { xdp::xsk_socket__update_xskmap(port.xsk.as_ptr(), self.xsks_fd) };
        if ret != 0 {
            return Err(AfXdpError::from_ret(
                format!(
                    "registering {} queue {} in the steering XSKMAP",
                    port.interface, port.queue_id
                ),
                ret,
            ));
        }
        Ok(())
    }

    /// Change what else goes to the socket, effective for the next packet.
    pub fn set_options(&self, options: SteeringOptions) -> Result<(), AfXdpError> {
        let key: u32 = 0;
        let value: u32 = options.flags();
        // SAFETY: key and value match the `config` array's declared sizes
        // (4 and 4 bytes) and outlive the call.
        let ret = unsafe {
            bpf::bpf_map_update_elem(
                self.config_fd,
                (&key as *const u32).cast::<c_void>(),
                (&value as *const u32).cast::<c_void>(),
                u64::from(bpf::BPF_ANY),
            )
        };
        if ret != 0 {
            return Err(AfXdpError::from_ret(
                format!("setting steering options {options:?} on {}", self.interface),
                ret,
            ));
        }
        Ok(())
    }

    /// Send IPv4 to `addr/prefix_len` to the fast path (the control plane
    /// calls this for each subscriber address or pool), and the ARP
    /// requests for addresses in it, which an LNS worker answers for the
    /// sessions it has (proxy ARP).
    pub fn add_subscriber_prefix(
        &self,
        addr: core::net::Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), AfXdpError> {
        let key = lpm_key(addr, prefix_len);
        let value: u8 = 1;
        // SAFETY: key and value match the map's declared sizes (8 and 1
        // bytes) and outlive the call.
        let ret = unsafe {
            bpf::bpf_map_update_elem(
                self.subscribers_fd,
                key.as_ptr().cast::<c_void>(),
                (&value as *const u8).cast::<c_void>(),
                u64::from(bpf::BPF_ANY),
            )
        };
        if ret != 0 {
            return Err(AfXdpError::from_ret(
                format!("adding subscriber prefix {addr}/{prefix_len}"),
                ret,
            ));
        }
        Ok(())
    }

    /// Stop sending `addr/prefix_len` to the fast path.
    pub fn remove_subscriber_prefix(
        &self,
        addr: core::net::Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), AfXdpError> {
        let key = lpm_key(addr, prefix_len);
        // SAFETY: the key matches the map's key size and outlives the call.
        let ret =
            unsafe { bpf::bpf_map_delete_elem(self.subscribers_fd, key.as_ptr().cast::<c_void>()) };
        if ret != 0 {
            return Err(AfXdpError::from_ret(
                format!("removing subscriber prefix {addr}/{prefix_len}"),
                ret,
            ));
        }
        Ok(())
    }
}

/// `struct subscriber_prefix` of the program: prefix length (host order),
/// then the address (network order).
fn lpm_key(addr: core::net::Ipv4Addr, prefix_len: u8) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&u32::from(prefix_len.min(32)).to_ne_bytes());
    key[4..].copy_from_slice(&addr.octets());
    key
}

impl Drop for Steering {
    fn drop(&mut self) {
        if self.link_fd >= 0 {
            // Detach first, then close. Closing alone detaches only when
            // the last reference goes, and a process forked by another
            // thread holds a copy of every descriptor until its exec: the
            // program would stay on the interface for that moment, and a
            // new attach there would fail with EBUSY.
            // SAFETY: the link we created; no namespace is involved. A
            // failed detach leaves the close to do it.
            unsafe {
                bpf::bpf_link_detach(self.link_fd);
                libc::close(self.link_fd);
            }
        }
        // SAFETY: the object is closed exactly once; its map descriptors
        // are not used after this.
        unsafe { bpf::bpf_object__close(self.object.as_ptr()) };
    }
}

//! The emulated subscribers' side of the wire: a raw Ethernet port
//! (AF_PACKET) on one interface, and entering a network namespace.
//!
//! Two ports: AF_PACKET ([`PacketSocket`], the default: works on any
//! interface without an XDP program, one copy each way through the kernel)
//! and AF_XDP ([`XdpL2`]: the dataplane's [`AfXdpPort`] behind a steering
//! program that sends it every frame, for rates the kernel path does not
//! reach).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, Steering, SteeringOptions, XdpMode};
use dataplane::io::{Descriptor, Port};

/// Move the calling thread into the named network namespace
/// (`ip netns add NAME` makes /run/netns/NAME).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = if name.contains('/') {
        name.to_string()
    } else {
        format!("/run/netns/{name}")
    };
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {path}: {e}")))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| io::Error::other(format!("setns {path}: {e}")))
}

/// Room for bursts of traffic (8 MB each way, or what the system allows
/// root), so that a stalled bench thread does not drop what the system
/// under test delivered. Failing to grow them is not fatal.
pub fn grow_buffers(socket: &impl AsRawFd) {
    let size: libc::c_int = 8 << 20;
    // SO_*BUFFORCE passes net.core.[rw]mem_max for root; the plain options
    // are the fallback for everyone else.
    for (forced, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [forced, plain] {
            // SAFETY: an int option of the right size on a socket the
            // caller owns.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    core::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}

/// A frame source and sink: the raw port, or memory in tests.
pub trait L2Port {
    /// Send one whole Ethernet frame (no FCS). A full queue drops it and
    /// returns false.
    fn send(&mut self, frame: &[u8]) -> bool;
    /// The next received frame into `buf`; its length, or `None` when
    /// nothing is waiting.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// Push what [`L2Port::send`] queued to the wire (ports that batch).
    fn flush(&mut self) {}
    /// Frames the port lost itself so far: the bench's own share of any
    /// loss.
    fn drops(&mut self) -> PortDrops {
        PortDrops::default()
    }
}

/// Frames a port lost on the bench's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortDrops {
    /// Frames the kernel would not take for sending.
    pub send: u64,
    /// Frames the kernel dropped before we read them (full buffer or
    /// ring).
    pub receive: u64,
}

/// `getsockopt` of a plain-data option; `None` when the kernel refuses.
fn get_option<T: Copy>(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> Option<T> {
    let mut value = core::mem::MaybeUninit::<T>::zeroed();
    let mut len = core::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is writable for `len` bytes; the kernel writes at
    // most that many, and a zeroed `T` (plain data) is valid either way.
    let rc = unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    // SAFETY: zero-initialised plain data, possibly overwritten by the
    // kernel with a value of the same type.
    (rc == 0).then(|| unsafe { value.assume_init() })
}

/// `ETH_P_ALL` in network order, as `socket(2)` and `sockaddr_ll` want it.
fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// A non-blocking AF_PACKET socket bound to one interface, seeing every
/// frame that arrives there (not the ones it sends).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// Frames the kernel would not take (full socket buffer).
    pub send_drops: u64,
    /// Frames the kernel dropped for a full receive buffer, so far.
    receive_drops: u64,
}

impl PacketSocket {
    /// Open on `interface` in the calling thread's network namespace.
    pub fn open(interface: &str) -> io::Result<PacketSocket> {
        let name = std::ffi::CString::new(interface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: a NUL-terminated string that lives across the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface {interface}: {}", io::Error::last_os_error()),
            ));
        }
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(eth_p_all()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a socket we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr = Self::sockaddr(ifindex);
        addr.sll_protocol = eth_p_all();
        // SAFETY: `addr` is a valid sockaddr_ll and the length says so.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                core::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        grow_buffers(&fd);
        Ok(PacketSocket {
            fd,
            ifindex,
            send_drops: 0,
            receive_drops: 0,
        })
    }

    fn sockaddr(ifindex: i32) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex;
        addr.sll_halen = 6;
        addr
    }
}

impl L2Port for PacketSocket {
    fn send(&mut self, frame: &[u8]) -> bool {
        let addr = Self::sockaddr(self.ifindex);
        // SAFETY: `frame` and `addr` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                core::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            self.send_drops += 1;
            return false;
        }
        true
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
            let mut from: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
            let mut len = core::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are writable for the lengths given.
            let rc = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if rc < 0 {
                return None;
            }
            // An ETH_P_ALL socket also sees what the host sends.
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return usize::try_from(rc).ok();
        }
    }

    fn drops(&mut self) -> PortDrops {
        // Reading the statistics resets them (packet(7)): add them up.
        if let Some(stats) = get_option::<libc::tpacket_stats>(
            self.fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
        ) {
            self.receive_drops += u64::from(stats.tp_drops);
        }
        PortDrops {
            send: self.send_drops,
            receive: self.receive_drops,
        }
    }
}

/// Frames in memory both ways, for tests.
#[derive(Debug, Default)]
pub struct MemoryL2 {
    /// Frames to be received.
    pub rx: std::collections::VecDeque<Vec<u8>>,
    /// Frames sent.
    pub tx: std::collections::VecDeque<Vec<u8>>,
}

impl L2Port for MemoryL2 {
    fn send(&mut self, frame: &[u8]) -> bool {
        self.tx.push_back(frame.to_vec());
        true
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let frame = self.rx.pop_front()?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Some(n)
    }
}

/// Receive descriptors taken from the AF_XDP ring at once.
const XDP_BURST: usize = 64;

/// Receive queues looked for at most.
const MAX_QUEUES: u32 = 64;

/// AF_XDP sockets that own their interface: the steering program sends
/// them every frame (the kernel sees none, ARP included), one socket per
/// receive queue (a veth has as many as it was made with, and a sender's
/// frames land on the queue its CPU picked); frames are copied in and out
/// of the UMEMs, and sent through queue 0.
pub struct XdpL2 {
    ports: Vec<AfXdpPort>,
    // Held for as long as the ports: dropping it detaches the program.
    _steering: Steering,
    received: [Descriptor; XDP_BURST],
    /// The port `received` came from.
    from: usize,
    next: usize,
    count: usize,
    /// The port to look at first next time (round robin).
    turn: usize,
    /// Frames not sent: no free UMEM frame or a full transmit ring.
    pub send_drops: u64,
}

impl core::fmt::Debug for XdpL2 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XdpL2")
            .field("queues", &self.ports.len())
            .field("send_drops", &self.send_drops)
            .finish_non_exhaustive()
    }
}

impl XdpL2 {
    /// Attach the steering program (generic XDP, copy mode: what a veth
    /// takes) to `interface` and open `queues` receive queues, or (`None`)
    /// every one there is, in the calling thread's network namespace.
    pub fn open(
        interface: &str,
        queues: Option<u32>,
    ) -> Result<XdpL2, dataplane::io::afxdp::AfXdpError> {
        let steering = Steering::attach_with(
            interface,
            XdpMode::Skb,
            SteeringOptions {
                everything: true,
                ..SteeringOptions::default()
            },
        )?;
        let mut ports = vec![AfXdpPort::open(
            &AfXdpConfig::new(interface, 0),
            Some(&steering),
        )?];
        // Without a count, the queues are found by binding until the
        // kernel refuses a queue id that does not exist (sysfs would show
        // the namespace it was mounted in, not ours).
        for q in 1..queues.unwrap_or(MAX_QUEUES) {
            match AfXdpPort::open(&AfXdpConfig::new(interface, q), Some(&steering)) {
                Ok(port) => ports.push(port),
                Err(e) if queues.is_some() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(XdpL2 {
            ports,
            _steering: steering,
            received: [Descriptor::default(); XDP_BURST],
            from: 0,
            next: 0,
            count: 0,
            turn: 0,
            send_drops: 0,
        })
    }

    /// Receive queues served.
    pub fn queues(&self) -> usize {
        self.ports.len()
    }
}

impl L2Port for XdpL2 {
    fn send(&mut self, frame: &[u8]) -> bool {
        let Some(port) = self.ports.first_mut() else {
            return false;
        };
        let Some(mut d) = port.alloc() else {
            self.send_drops += 1;
            return false;
        };
        let start = d.offset as usize;
        let Some(room) = port.frame_mut(d.frame).get_mut(start..start + frame.len()) else {
            port.free(d);
            self.send_drops += 1;
            return false;
        };
        room.copy_from_slice(frame);
        d.len = frame.len() as u32;
        if port.transmit(&[d]) == 0 {
            port.free(d);
            self.send_drops += 1;
            return false;
        }
        true
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.next == self.count {
            self.next = 0;
            self.count = 0;
            let n = self.ports.len();
            for i in 0..n {
                let q = (self.turn + i) % n;
                let got = self.ports[q].receive(&mut self.received);
                if got > 0 {
                    self.from = q;
                    self.count = got;
                    self.turn = q + 1;
                    break;
                }
            }
            if self.count == 0 {
                return None;
            }
        }
        let d = self.received[self.next];
        self.next += 1;
        let port = self.ports.get_mut(self.from)?;
        let n = {
            let bytes = port.frame(d.frame).get(d.range()).unwrap_or(&[]);
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            n
        };
        port.free(d);
        Some(n)
    }

    fn flush(&mut self) {
        for port in &mut self.ports {
            port.flush();
        }
    }

    fn drops(&mut self) -> PortDrops {
        let receive = self
            .ports
            .iter()
            .filter_map(|p| {
                get_option::<libc::xdp_statistics>(p.fd(), libc::SOL_XDP, libc::XDP_STATISTICS)
            })
            .map(|s| s.rx_dropped + s.rx_ring_full)
            .sum();
        PortDrops {
            send: self.send_drops,
            receive,
        }
    }
}

//! The driver: the only part of the control plane that does I/O.
//!
//! It owns one UDP socket and the clock, and runs a sans-IO [`Node`] over
//! them: datagrams in through `handle_datagram`, timers through
//! `handle_timeout`, datagrams out from `poll_transmit`, and events from
//! `poll_event` handed to a callback that may act on the node (open a session,
//! close a tunnel) or stop the run. One thread, no busy loop: between inputs
//! it waits in `poll(2)` for the socket, until the node's next deadline or
//! the caller's, to the microsecond. (A socket read timeout, `SO_RCVTIMEO`,
//! counts in scheduler ticks: at `HZ=250` a 1 ms slice or a 50 µs nap
//! became anything up to 4 ms.)
//!
//! It also draws the seed of the node's RNG from the operating system
//! ([`os_seed`], [`os_rng`]), the one random source nothing below it may
//! touch.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::ops::ControlFlow;
//! use std::time::Duration;
//! use controlplane::driver::{os_rng, Driver};
//! use controlplane::l2tp::{Config, Endpoint, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let socket = UdpSocket::bind("192.0.2.2:1701")?;
//! let lns = Endpoint::new(Config::lns("lns"), os_rng()?)?;
//! let mut driver = Driver::new(socket, lns)?;
//! let deadline = driver.now() + Duration::from_secs(60);
//! driver.run_until(deadline, |_lns, event| {
//!     println!("{event:?}");
//!     match event {
//!         Event::TunnelDown { .. } => ControlFlow::Break(()),
//!         _ => ControlFlow::Continue(()),
//!     }
//! })?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::l2tp::{Endpoint, Event};
pub use crate::node::Node;
use crate::time::Instant;

mod sockopt;

/// The largest datagram we read: an L2TP control message is bounded by its
/// 16-bit Length field (RFC 2661 §3.1), and UDP by the same.
const MAX_DATAGRAM: usize = 65_535;

/// The receive buffer the driver asks for. The default (some 200 KiB, and
/// each queued datagram costs a kilobyte or more of it) overflows at a few
/// hundred datagrams: fewer than the recovery calls of several LACs at once
/// (a window's worth of ICRQs and ICCNs each) beside a bulk sync, and a
/// datagram lost there waits out a retransmission timeout.
const RECEIVE_BUFFER: usize = 4 << 20;

/// How much of a refused datagram the driver reads back from an ICMP
/// error: more than an L2TP control header, whose Tunnel ID and Ns tell the
/// node which of its messages was refused.
const MAX_QUOTED: usize = 64;

/// The most error-queue entries one failed read takes; the rest wait for
/// the next failed read (each entry fails one).
const MAX_QUEUED_ERRORS: usize = 64;

/// How long the driver waits when the node's deadline is due and still due
/// after `handle_timeout` (a deadline that does not move): a pause instead
/// of a spinning core. The caller's deadline, when sooner, still wins.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// How many times one send reads the error queue (each read takes up to
/// [`MAX_QUEUED_ERRORS`]) and tries again at most.
const MAX_ERROR_READS: usize = 16;

/// How long a send waits for room in a full socket buffer at most.
const SEND_WAIT: Duration = Duration::from_millis(10);

/// Sends `datagram` to `remote`. The socket does not block, so a full send
/// buffer (a burst bigger than the kernel keeps, rare for control traffic)
/// is waited out here, briefly, as a blocking send would; still full after
/// that, the datagram is refused like any other and the node's
/// retransmission deals with it.
fn send_to(socket: &UdpSocket, datagram: &[u8], remote: SocketAddr) -> io::Result<usize> {
    match socket.send_to(datagram, remote) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            poll_socket(socket, PollFlags::OUT, SEND_WAIT)?;
            socket.send_to(datagram, remote)
        }
        sent => sent,
    }
}

/// Waits up to `wait` (to the microsecond: `poll(2)`'s timeout is a
/// high-resolution timer; zero does not wait) until `socket` is ready for
/// `events` or has an error to report; whether it is.
pub(crate) fn poll_socket(
    socket: &impl AsFd,
    events: PollFlags,
    wait: Duration,
) -> io::Result<bool> {
    let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    let mut fds = [PollFd::new(socket, events)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Why [`Driver::run_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The callback asked to stop.
    Requested,
    /// The deadline passed.
    Deadline,
}

/// The control plane's clock: monotonic, counted from the driver's start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        let nanos = self.origin.elapsed().as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// 32 bytes from the operating system's random source, to seed a node's RNG.
pub fn os_seed() -> io::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

/// A fast RNG (ChaCha8) seeded from the operating system, for a node's ids,
/// challenges and random vectors.
pub fn os_rng() -> io::Result<Box<dyn RngCore + Send>> {
    Ok(Box::new(ChaCha8Rng::from_seed(os_seed()?)))
}

/// The L2TP endpoint over its UDP socket. It speaks IPv4 only (the HA
/// extension carries IPv4 addresses): a datagram from an IPv6 address is
/// dropped.
impl Node for Endpoint {
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) {
        match remote {
            SocketAddr::V4(remote) => Endpoint::handle_datagram(self, now, remote, datagram),
            SocketAddr::V6(remote) => tracing::debug!(%remote, "IPv6 datagram dropped"),
        }
    }

    fn handle_unreachable(&mut self, now: Instant, remote: SocketAddr, refused: &[u8]) {
        if let SocketAddr::V4(remote) = remote {
            Endpoint::handle_unreachable(self, now, remote, refused);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let transmit = Endpoint::poll_transmit(self, now)?;
        buf.clear();
        buf.extend_from_slice(&transmit.payload);
        Some(SocketAddr::V4(transmit.remote))
    }

    fn poll_event(&mut self) -> Option<Event> {
        Endpoint::poll_event(self)
    }
}

/// Counts of what a driver did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams received and handed to the node.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams the socket refused to send (logged and dropped: the node's
    /// own retransmission deals with loss).
    pub send_errors: u64,
    /// Times the driver blocked waiting for input.
    pub waits: u64,
    /// ICMP errors read off the socket's error queue.
    pub icmp_errors: u64,
}

/// Runs one [`Node`] over one UDP socket.
pub struct Driver<N> {
    socket: UdpSocket,
    node: N,
    clock: Clock,
    receive_buf: Vec<u8>,
    transmit_buf: Vec<u8>,
    stats: DriverStats,
}

impl<N> fmt::Debug for Driver<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("socket", &self.socket)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<N: Node> Driver<N> {
    /// A driver for `node` on an already bound `socket` (the caller chooses
    /// the address, and for tests the network namespace), with its own clock.
    pub fn new(socket: UdpSocket, node: N) -> io::Result<Self> {
        Self::with_clock(socket, node, Clock::new())
    }

    /// As [`Driver::new`], with a clock the caller already used (to build the
    /// node with the same notion of time).
    pub fn with_clock(socket: UdpSocket, node: N, clock: Clock) -> io::Result<Self> {
        // Reads never block: the driver waits in poll(2) and then reads
        // what is there (a datagram poll announced may still be dropped,
        // for a bad checksum, when it is read). Sends wait for room in
        // `send_to`.
        socket.set_nonblocking(true)?;
        match sockopt::set_receive_buffer(&socket, RECEIVE_BUFFER) {
            Ok(got) if got < RECEIVE_BUFFER => {
                tracing::warn!(asked = RECEIVE_BUFFER, got, "small socket receive buffer");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "socket receive buffer left as it was"),
        }
        if let Err(e) = sockopt::enable_icmp_errors(&socket) {
            // Only the early warning of a dead peer is lost; its silence
            // still tells.
            tracing::warn!(error = %e, "ICMP errors will not be reported (IP_RECVERR)");
        }
        Ok(Driver {
            socket,
            node,
            clock,
            receive_buf: vec![0; MAX_DATAGRAM],
            transmit_buf: Vec::with_capacity(2048),
            stats: DriverStats::default(),
        })
    }

    /// The node, to read its state.
    pub fn node(&self) -> &N {
        &self.node
    }

    /// The node, to act on it between runs (its output goes out on the next
    /// run).
    pub fn node_mut(&mut self) -> &mut N {
        &mut self.node
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The driver's current time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Sends one datagram now and counts it, sent or refused: the node's
    /// own output, and what a node builds for its owner to send (an L2TP
    /// data message from [`Endpoint::send_data`]).
    ///
    /// With IP_RECVERR an ICMP error about an earlier datagram, to whatever
    /// peer, fails the next send: the kernel hands the pending error to the
    /// first call that looks, and keeps one pending while the error queue
    /// holds more. So the queue is read (which tells the node) and the
    /// datagram sent again, as long as reading finds errors. A dead LNS
    /// whose host refuses each of the LAC's data messages leaves hundreds
    /// there; with one read of 64 and one retry, the first message of the
    /// recovery tunnel to the peer LNS was lost that way in the lab, and
    /// the recovery with it.
    pub fn send(&mut self, remote: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let mut sent = send_to(&self.socket, datagram, remote);
        for _ in 0..MAX_ERROR_READS {
            if !sent.as_ref().is_err_and(is_icmp_error) {
                break;
            }
            match self.read_error_queue() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "socket error queue unreadable");
                    break;
                }
            }
            sent = send_to(&self.socket, datagram, remote);
        }
        match sent {
            Ok(_) => {
                self.stats.sent += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.send_errors += 1;
                Err(e)
            }
        }
    }

    /// What the driver did so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Runs the node until the callback returns `ControlFlow::Break` or
    /// `deadline` passes, whichever is first. The callback gets each event
    /// with the node, so it can act on it; what the node queues in response
    /// is sent before the driver waits again, also when the run stops.
    ///
    /// Errors are those of the socket that leave it unusable; a datagram the
    /// OS refuses to send (no route, ICMP unreachable) is counted and dropped.
    pub fn run_until<F>(&mut self, deadline: Instant, mut on_event: F) -> io::Result<Stop>
    where
        F: FnMut(&mut N, N::Event) -> ControlFlow<()>,
    {
        loop {
            let now = self.clock.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            self.flush(now);

            let mut delivered = false;
            while let Some(event) = self.node.poll_event() {
                delivered = true;
                if on_event(&mut self.node, event).is_break() {
                    self.flush(self.clock.now());
                    return Ok(Stop::Requested);
                }
            }
            if delivered {
                // The callback may have queued output or timers: send first,
                // wait after.
                continue;
            }

            let now = self.clock.now();
            if now >= deadline {
                return Ok(Stop::Deadline);
            }
            let wait = match self.node.poll_timeout() {
                Some(t) if t <= now => MIN_WAIT.min(deadline - now),
                Some(t) => t.min(deadline) - now,
                None => deadline - now,
            };
            self.wait_for_datagram(wait)?;
        }
    }

    /// Hands the node the datagrams already waiting on the socket, at most
    /// `max`, without blocking; returns how many. For an owner whose loop
    /// cannot spend a wait in [`Driver::run_until`] (it has other work in
    /// flight) but must not go deaf to its peers meanwhile.
    pub fn receive_waiting(&mut self, max: usize) -> io::Result<usize> {
        let mut read = 0;
        let mut errors = 0;
        while read < max && errors < max {
            match self.receive_one() {
                Ok(true) => read += 1,
                Ok(false) => break,
                Err(e) => {
                    errors += 1;
                    self.receive_error(e)?;
                }
            }
        }
        Ok(read)
    }

    /// Reads one datagram, if one is there, and hands it to the node.
    fn receive_one(&mut self) -> io::Result<bool> {
        match self.socket.recv_from(&mut self.receive_buf) {
            Ok((len, remote)) => {
                self.stats.received += 1;
                let now = self.clock.now();
                let datagram = self.receive_buf.get(..len).unwrap_or_default();
                self.node.handle_datagram(now, remote, datagram);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends everything the node has queued.
    fn flush(&mut self, now: Instant) {
        let mut buf = core::mem::take(&mut self.transmit_buf);
        while let Some(remote) = self.node.poll_transmit(now, &mut buf) {
            if let Err(e) = self.send(remote, &buf) {
                tracing::warn!(%remote, error = %e, "datagram not sent");
            }
        }
        self.transmit_buf = buf;
    }

    /// Waits up to `wait` for a datagram (or an error report) and hands it
    /// to the node.
    fn wait_for_datagram(&mut self, wait: Duration) -> io::Result<()> {
        self.stats.waits += 1;
        if !poll_socket(&self.socket, PollFlags::IN, wait)? {
            return Ok(());
        }
        match self.receive_one() {
            Ok(_) => Ok(()),
            Err(e) => self.receive_error(e),
        }
    }

    /// What a failed read means. With `IP_RECVERR` an ICMP error for a
    /// datagram we sent fails the next read ([`Driver::read_error_queue`]).
    /// Those, timeouts and interruptions are not the socket's failure;
    /// anything else is returned.
    fn receive_error(&mut self, e: io::Error) -> io::Result<()> {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ) {
            return Ok(());
        }
        let queued = self.read_error_queue()?;
        // Without IP_RECVERR only a connected socket hears of ICMP, and
        // then not for whom: the peers' retransmissions cope.
        if queued > 0 || is_icmp_error(&e) {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Takes the ICMP errors off the socket's error queue and tells the
    /// node of the hard ones ([`Node::handle_unreachable`]). Returns how
    /// many there were.
    fn read_error_queue(&mut self) -> io::Result<usize> {
        let mut queued = 0;
        let mut quoted = [0u8; MAX_QUOTED];
        // Bounded: the queue is as long as the socket's receive buffer lets
        // it be, and a flood of errors must not hold the loop.
        while queued < MAX_QUEUED_ERRORS {
            let Some(entry) = sockopt::next_error(&self.socket, &mut quoted)? else {
                break;
            };
            queued += 1;
            self.stats.icmp_errors += 1;
            if let sockopt::Queued::Unreachable {
                remote,
                quoted: len,
            } = entry
            {
                tracing::debug!(%remote, "peer port unreachable");
                let now = self.clock.now();
                let refused = &quoted[..len];
                self.node
                    .handle_unreachable(now, SocketAddr::V4(remote), refused);
            }
        }
        Ok(queued)
    }
}

/// An error a socket reports for an ICMP message about an earlier datagram
/// (icmp_err_convert in the kernel), not about the call that returned it.
fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    ) || e.raw_os_error() == Some(libc::ENOPROTOOPT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// Sends one datagram to `peer` at start, again every `every` until it
    /// hears back, and reports what it received.
    struct Pinger {
        peer: SocketAddr,
        every: Duration,
        next: Option<Instant>,
        due: bool,
        heard: Vec<Vec<u8>>,
        timeouts: u32,
        unreachable: Vec<(SocketAddr, Vec<u8>)>,
    }

    impl Pinger {
        /// Pings `peer` now and every `every`.
        fn pinging(peer: SocketAddr, every: Duration) -> Self {
            Pinger {
                peer,
                every,
                next: Some(Instant::ZERO),
                due: false,
                heard: Vec::new(),
                timeouts: 0,
                unreachable: Vec::new(),
            }
        }

        /// Sends nothing until told ([`Pinger::due`]).
        fn idle(peer: SocketAddr) -> Self {
            Pinger {
                every: Duration::from_secs(60),
                next: None,
                ..Pinger::pinging(peer, Duration::ZERO)
            }
        }

        /// Sends one ping at the next flush.
        fn once(peer: SocketAddr) -> Self {
            Pinger {
                due: true,
                ..Pinger::idle(peer)
            }
        }
    }

    impl Node for Pinger {
        type Event = Vec<u8>;
        fn handle_datagram(&mut self, _now: Instant, _remote: SocketAddr, datagram: &[u8]) {
            self.heard.push(datagram.to_vec());
            self.next = None;
        }
        fn handle_unreachable(&mut self, _now: Instant, remote: SocketAddr, refused: &[u8]) {
            self.unreachable.push((remote, refused.to_vec()));
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.timeouts += 1;
            self.due = true;
            self.next = Some(now + self.every);
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.next
        }
        fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
            if !self.due {
                return None;
            }
            self.due = false;
            buf.clear();
            buf.extend_from_slice(b"ping");
            Some(self.peer)
        }
        fn poll_event(&mut self) -> Option<Vec<u8>> {
            self.heard.pop()
        }
    }

    fn loopback() -> UdpSocket {
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap()
    }

    #[test]
    fn exchanges_datagrams_and_stops_on_request() {
        let echo = loopback();
        let echo_addr = echo.local_addr().unwrap();
        let mut driver = Driver::new(
            loopback(),
            Pinger::pinging(echo_addr, Duration::from_millis(50)),
        )
        .unwrap();
        let echoer = std::thread::spawn(move || {
            echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            echo.send_to(&buf[..n], from).unwrap();
        });
        let deadline = driver.now() + Duration::from_secs(5);
        let mut got = Vec::new();
        let stop = driver
            .run_until(deadline, |_, datagram| {
                got.push(datagram);
                ControlFlow::Break(())
            })
            .unwrap();
        echoer.join().unwrap();
        assert_eq!(stop, Stop::Requested);
        assert_eq!(got, [b"ping".to_vec()]);
        assert!(driver.stats().sent >= 1);
        assert_eq!(driver.stats().received, 1);
    }

    #[test]
    fn receive_waiting_takes_what_is_there_without_blocking() {
        let sender = loopback();
        let mut driver =
            Driver::new(loopback(), Pinger::idle(sender.local_addr().unwrap())).unwrap();
        let to = driver.local_addr().unwrap();
        assert_eq!(driver.receive_waiting(8).unwrap(), 0, "nothing waiting");
        for d in [b"one", b"two", b"six"] {
            sender.send_to(d, to).unwrap();
        }
        // Loopback delivers at once; the loop only allows for a slow box.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut read = 0;
        while read < 3 && std::time::Instant::now() < deadline {
            let now = driver.receive_waiting(2).unwrap();
            assert!(now <= 2, "at most the bound: {now}");
            read += now;
        }
        assert_eq!(read, 3);
        assert_eq!(driver.stats().received, 3);
        assert_eq!(driver.node().heard.len(), 3);
        // Blocking again, as run_until expects: it waits out its deadline.
        let stop = driver
            .run_until(driver.now() + Duration::from_millis(20), |_, _| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(stop, Stop::Deadline);
    }

    #[test]
    fn a_closed_port_is_reported_to_the_node_with_its_address() {
        // A port no one listens on: the host answers ICMP port unreachable
        // (on loopback, at once and without rate limit).
        let closed = loopback().local_addr().unwrap();
        let mut driver = Driver::new(
            loopback(),
            Pinger::pinging(closed, Duration::from_millis(20)),
        )
        .unwrap();
        let stop = driver
            .run_until(driver.now() + Duration::from_millis(200), |_, _| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(
            stop,
            Stop::Deadline,
            "an ICMP error is not the socket's end"
        );
        let node = driver.node();
        assert!(!node.unreachable.is_empty(), "{:?}", driver.stats());
        assert!(
            node.unreachable
                .iter()
                .all(|(a, refused)| *a == closed && refused == b"ping"),
            "{:?}",
            node.unreachable
        );
        assert!(driver.stats().icmp_errors >= node.unreachable.len() as u64);
        // receive_waiting reports them as well, and goes on reading.
        driver.node_mut().due = true;
        driver.node_mut().unreachable.clear();
        driver.flush(driver.now());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while driver.node().unreachable.is_empty() && std::time::Instant::now() < deadline {
            assert_eq!(driver.receive_waiting(4).unwrap(), 0);
        }
        assert_eq!(driver.node().unreachable, [(closed, b"ping".to_vec())]);
    }

    /// Once the port unreachables are back (loopback) and pending on the
    /// socket, the pinger's next datagram, to a live peer, must go out.
    #[track_caller]
    fn next_ping_reaches_a_live_peer(driver: &mut Driver<Pinger>) {
        let live = loopback();
        live.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        driver.node_mut().peer = live.local_addr().unwrap();
        driver.node_mut().due = true;
        driver.flush(driver.now());
        let mut buf = [0u8; 16];
        let (n, _) = live
            .recv_from(&mut buf)
            .expect("the datagram to the live peer went out");
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(driver.stats().send_errors, 0);
    }

    #[test]
    fn a_pending_icmp_error_does_not_cost_the_next_datagram_to_another_peer() {
        let closed = loopback().local_addr().unwrap();
        let mut driver = Driver::new(loopback(), Pinger::once(closed)).unwrap();
        driver.flush(driver.now());
        next_ping_reaches_a_live_peer(&mut driver);
        assert_eq!(driver.node().unreachable, [(closed, b"ping".to_vec())]);
    }

    #[test]
    fn many_pending_icmp_errors_do_not_cost_the_next_datagram_either() {
        // A dead LNS's host refusing the LAC's data messages: far more
        // errors queued than one read of the queue takes.
        let closed = loopback().local_addr().unwrap();
        let mut driver = Driver::new(loopback(), Pinger::idle(closed)).unwrap();
        let mut sent = 0;
        for _ in 0..4 * MAX_QUEUED_ERRORS {
            // Every other one fails with the error the one before provoked.
            sent += usize::from(driver.socket.send_to(b"ping", closed).is_ok());
        }
        // The last one out provokes an error of its own, which stays
        // pending on the socket, as a dead host's refusals do.
        for _ in 0..4 {
            if driver.socket.send_to(b"ping", closed).is_ok() {
                sent += 1;
                break;
            }
        }
        assert!(sent > MAX_QUEUED_ERRORS, "{sent}");
        next_ping_reaches_a_live_peer(&mut driver);
        let refused = driver.node().unreachable.len();
        assert!(refused > MAX_QUEUED_ERRORS, "{refused} of {sent}");
    }

    #[test]
    fn returns_at_the_deadline_without_spinning() {
        // Nobody answers: the node's timer fires every 50 ms for 300 ms.
        let silent = loopback();
        let mut driver = Driver::new(
            loopback(),
            Pinger::pinging(silent.local_addr().unwrap(), Duration::from_millis(50)),
        )
        .unwrap();
        let start = std::time::Instant::now();
        let deadline = driver.now() + Duration::from_millis(300);
        let stop = driver
            .run_until(deadline, |_, _| ControlFlow::Continue(()))
            .unwrap();
        let took = start.elapsed();
        assert_eq!(stop, Stop::Deadline);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let timeouts = driver.node().timeouts;
        assert!((5..=8).contains(&timeouts), "timeouts {timeouts}");
        // One wait per timer period, give or take: no busy loop.
        assert!(driver.stats().waits <= 20, "{:?}", driver.stats());
    }
}

//! The steering program's decisions, frame by frame, on a real veth pair.
//!
//! **Needs root** (network namespaces, veth, BPF, AF_XDP, packet sockets),
//! as CI runs; it fails with a message saying so otherwise.
//!
//! ```text
//!   box (steering + AF_XDP port + a packet socket)      far (a sender)
//!   st0  <──────────────── veth ────────────────>  st1
//! ```
//!
//! Far sends hand-written Ethernet frames from an AF_XDP port of its own
//! (transmitting needs no XDP program), so VLAN tags and PPPoE reach box's
//! st0 exactly as written. On box, every frame ends either on the AF_XDP
//! socket or with the kernel, where a packet socket (ETH_P_ALL) sees it;
//! each check asks both, and the frame carries a marker so that nothing
//! else on the link (there is little: IPv6 is off) confuses the test.
//!
//! Checked with the default options: PPPoE session frames (untagged,
//! 802.1Q, 802.1ad+802.1Q) and L2TP data messages (untagged and 802.1Q) to
//! the socket; L2TP control messages (802.1Q), PPPoE discovery and an
//! unknown EtherType to the kernel; ARP requests for an address in a
//! subscriber prefix (untagged and 802.1Q) to the socket, and ARP for
//! box's address, a reply and an announcement to the kernel. With `pppoe_discovery`: discovery
//! (untagged and 802.1Q) to the socket. With `everything`: ARP and the
//! unknown EtherType to the socket. An LAC worker punts discovery to the
//! control plane as `Local` (what lacd reads). A dropped steering leaves
//! the interface at once, even while a forked process holds a copy of its
//! descriptors, and a group of ports that fails to open leaves nothing
//! bound.

#![cfg(test)]
#![cfg(feature = "afxdp")]

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, Steering, SteeringOptions, XdpMode};
use dataplane::io::{Descriptor, Port};
use dataplane::punt::PuntReason;
use dataplane::testkit as lab;
use dataplane::worker::Role;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

const BOX_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 9, 1];
const FAR_MAC: [u8; 6] = [0x02, 0xfa, 0, 0, 9, 2];
const BOX_ADDR: [u8; 4] = [10, 202, 1, 1];
const FAR_ADDR: [u8; 4] = [10, 202, 1, 2];

fn require_root() {
    if !rustix::process::geteuid().is_root() {
        panic!(
            "afxdp_steering needs root (network namespaces, veth pairs, BPF, AF_XDP and \
             packet sockets); run it as root, as CI does"
        );
    }
}

/// Runs `ip ...` (bounded), panicking with its stderr on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["--kill-after=2s", "20s", "ip"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Two namespaces joined by st0 <-> st1; deleted on drop.
struct Lab {
    box_ns: String,
    far_ns: String,
}

impl Lab {
    /// `name` keeps the namespaces of tests that run at once apart.
    fn new(name: &str) -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            box_ns: format!("afx{name}-{pid}-box"),
            far_ns: format!("afx{name}-{pid}-far"),
        };
        for ns in [&lab.box_ns, &lab.far_ns] {
            if Path::new("/run/netns").join(ns).exists() {
                ip(&["netns", "del", ns]);
            }
            ip(&["netns", "add", ns]);
        }
        #[rustfmt::skip]
        ip(&["link", "add", "st0", "netns", &lab.box_ns, "type", "veth",
             "peer", "name", "st1", "netns", &lab.far_ns]);
        for (ns, ifname, mac) in [(&lab.box_ns, "st0", BOX_MAC), (&lab.far_ns, "st1", FAR_MAC)] {
            // No IPv6: no router or neighbour solicitations on the link.
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{ifname}.disable_ipv6=1"))
                .stdout(Stdio::null())
                .status();
            ip(&["-n", ns, "link", "set", ifname, "address", &mac_text(mac)]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
        lab
    }

    fn within<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let handle = Path::new("/run/netns").join(ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let netns = File::open(&handle).expect("opening the namespace");
                    move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))
                        .expect("setns");
                    f()
                })
                .join()
                .expect("namespace thread")
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.box_ns, &self.far_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A packet socket on one interface that sees every frame the kernel
/// receives there (VLAN tags are stripped by then; the payload is intact).
struct Tap {
    fd: libc::c_int,
}

impl Tap {
    /// Opens it in the calling thread's namespace.
    fn open(interface: &str) -> Tap {
        let name = std::ffi::CString::new(interface).unwrap();
        // SAFETY: plain libc calls with checked results; the structures
        // passed outlive the calls.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto));
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let mut addr: libc::sockaddr_ll = core::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let ret = libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                core::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(ret, 0, "bind: {}", std::io::Error::last_os_error());
            Tap { fd }
        }
    }

    /// Whether a received frame containing `marker` arrives within `limit`.
    fn saw(&self, marker: &[u8], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            // SAFETY: receiving into a buffer we own, non-blocking.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 && contains(&buf[..n as usize], marker) {
                return true;
            }
            if n <= 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        false
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // SAFETY: closing the socket we opened.
        unsafe { libc::close(self.fd) };
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether a frame containing `marker` reaches `port` within `limit`; frees
/// whatever it receives.
fn socket_saw(port: &mut AfXdpPort, marker: &[u8], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut burst = [Descriptor::default(); 16];
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        let n = port.receive(&mut burst);
        for d in &burst[..n] {
            seen |= contains(&port.frame(d.frame)[d.range()], marker);
            port.free(*d);
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    seen
}

fn send(port: &mut AfXdpPort, frame: &[u8]) {
    let mut d = port.alloc().expect("a free frame on far's port");
    d.len = frame.len() as u32;
    let range = d.range();
    port.frame_mut(d.frame)[range].copy_from_slice(frame);
    assert_eq!(port.transmit(&[d]), 1);
    port.flush();
}

/// Ethernet header from far to box with `tags` (TPID, VID) outermost
/// first, then `ethertype` and `payload`.
fn frame(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&BOX_MAC);
    f.extend_from_slice(&FAR_MAC);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const VLAN: (u16, u16) = (0x8100, 10);
const QINQ: [(u16, u16); 2] = [(0x88a8, 100), VLAN];

/// IPv4/UDP far:1701 -> box:1701 around an L2TP header with `flags`
/// (RFC 2661 §3.1) and `marker`.
fn l2tp(flags: u16, marker: &[u8]) -> Vec<u8> {
    let mut l2tp = flags.to_be_bytes().to_vec();
    l2tp.extend_from_slice(&[0, 1, 0, 1]); // Tunnel ID 1, Session ID 1
    l2tp.extend_from_slice(marker);
    let udp_len = 8 + l2tp.len();
    let total = 20 + udp_len;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&FAR_ADDR);
    p.extend_from_slice(&BOX_ADDR);
    p.extend_from_slice(&1701u16.to_be_bytes());
    p.extend_from_slice(&1701u16.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&l2tp);
    p
}

/// A PPPoE header (RFC 2516 §4) with `code` and session id, then `marker`.
fn pppoe(code: u8, session_id: u16, marker: &[u8]) -> Vec<u8> {
    let mut p = vec![0x11, code];
    p.extend_from_slice(&session_id.to_be_bytes());
    p.extend_from_slice(&(marker.len() as u16).to_be_bytes());
    p.extend_from_slice(marker);
    p
}

/// An Ethernet/IPv4 ARP packet (RFC 826) from far with `operation`,
/// sender and target addresses, `marker` in the padding.
fn arp(operation: u16, sender: [u8; 4], target: [u8; 4], marker: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&operation.to_be_bytes());
    p.extend_from_slice(&FAR_MAC);
    p.extend_from_slice(&sender);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&target);
    p.extend_from_slice(marker);
    p
}

/// A subscriber prefix (/24) of the ARP checks.
const SUBSCRIBERS: [u8; 4] = [10, 203, 7, 0];

const PADI: u8 = 0x09;
const SOCKET: bool = true;
const KERNEL: bool = false;

struct Box<'a> {
    tap: &'a Tap,
    port: &'a mut AfXdpPort,
    far: &'a mut AfXdpPort,
}

impl Box<'_> {
    /// Sends `frame` (which contains `marker`) and checks where it ends.
    fn expect(&mut self, what: &str, frame: &[u8], marker: &[u8], to_socket: bool) {
        send(self.far, frame);
        let wait = Duration::from_millis(if to_socket { 2000 } else { 300 });
        let (on_socket, on_kernel) = if to_socket {
            let s = socket_saw(self.port, marker, wait);
            (s, self.tap.saw(marker, Duration::from_millis(100)))
        } else {
            let k = self.tap.saw(marker, wait);
            (socket_saw(self.port, marker, Duration::from_millis(100)), k)
        };
        assert_eq!(
            (on_socket, on_kernel),
            (to_socket, !to_socket),
            "{what}: on the AF_XDP socket {on_socket}, with the kernel {on_kernel}"
        );
    }
}

#[test]
fn steering_sends_pppoe_vlan_and_options_where_they_belong() {
    require_root();
    let lab = Lab::new("st");
    let (steering, mut port, tap) = lab.within(&lab.box_ns, || {
        let steering = Steering::attach_with("st0", XdpMode::Skb, SteeringOptions::default())
            .expect("attaching steering");
        let port = AfXdpPort::open(&AfXdpConfig::new("st0", 0), Some(&steering))
            .expect("opening the AF_XDP port on st0");
        (steering, port, Tap::open("st0"))
    });
    let mut far = lab.within(&lab.far_ns, || {
        AfXdpPort::open(&AfXdpConfig::new("st1", 0), None).expect("far's sending port")
    });
    let mut b = Box {
        tap: &tap,
        port: &mut port,
        far: &mut far,
    };

    // Default options: what the fast path forwards.
    let m = b"marker:pppoe-session";
    b.expect(
        "PPPoE session",
        &frame(&[], 0x8864, &pppoe(0, 7, m)),
        m,
        SOCKET,
    );
    let m = b"marker:pppoe-session-8021q";
    b.expect(
        "PPPoE session, 802.1Q",
        &frame(&[VLAN], 0x8864, &pppoe(0, 7, m)),
        m,
        SOCKET,
    );
    let m = b"marker:pppoe-session-qinq";
    b.expect(
        "PPPoE session, QinQ",
        &frame(&QINQ, 0x8864, &pppoe(0, 7, m)),
        m,
        SOCKET,
    );
    let m = b"marker:l2tp-data";
    b.expect(
        "L2TP data",
        &frame(&[], 0x0800, &l2tp(0x0002, m)),
        m,
        SOCKET,
    );
    let m = b"marker:l2tp-data-8021q";
    b.expect(
        "L2TP data, 802.1Q",
        &frame(&[VLAN], 0x0800, &l2tp(0x0002, m)),
        m,
        SOCKET,
    );
    let m = b"marker:l2tp-data-qinq";
    b.expect(
        "L2TP data, QinQ",
        &frame(&QINQ, 0x0800, &l2tp(0x0002, m)),
        m,
        SOCKET,
    );
    let m = b"marker:l2tp-control-8021q";
    b.expect(
        "L2TP control, 802.1Q",
        &frame(&[VLAN], 0x0800, &l2tp(0xc802, m)),
        m,
        KERNEL,
    );
    let m = b"marker:padi";
    b.expect(
        "PPPoE discovery",
        &frame(&[], 0x8863, &pppoe(PADI, 0, m)),
        m,
        KERNEL,
    );
    let m = b"marker:unknown";
    b.expect("EtherType 0x88b5", &frame(&[], 0x88b5, m), m, KERNEL);
    // ARP (RFC 826): a request for an address in a subscriber prefix is
    // the worker's (proxy ARP), any other ARP the kernel's.
    steering
        .add_subscriber_prefix(std::net::Ipv4Addr::from(SUBSCRIBERS), 24)
        .expect("subscriber prefix");
    let subscriber = [SUBSCRIBERS[0], SUBSCRIBERS[1], SUBSCRIBERS[2], 7];
    let m = b"marker:arp-subscriber";
    let request = arp(1, FAR_ADDR, subscriber, m);
    b.expect(
        "ARP request for a subscriber",
        &frame(&[], 0x0806, &request),
        m,
        SOCKET,
    );
    let m = b"marker:arp-subscriber-8021q";
    let request = arp(1, FAR_ADDR, subscriber, m);
    b.expect(
        "ARP request for a subscriber, 802.1Q",
        &frame(&[VLAN], 0x0806, &request),
        m,
        SOCKET,
    );
    let m = b"marker:arp-box";
    let request = arp(1, FAR_ADDR, BOX_ADDR, m);
    b.expect(
        "ARP request for box",
        &frame(&[], 0x0806, &request),
        m,
        KERNEL,
    );
    let m = b"marker:arp-reply";
    let reply = arp(2, FAR_ADDR, subscriber, m);
    b.expect("ARP reply", &frame(&[], 0x0806, &reply), m, KERNEL);
    let m = b"marker:arp-announcement";
    let announcement = arp(1, subscriber, subscriber, m);
    b.expect(
        "ARP announcement of a subscriber",
        &frame(&[], 0x0806, &announcement),
        m,
        KERNEL,
    );

    // A LAC access port: discovery to the socket too.
    steering
        .set_options(SteeringOptions {
            pppoe_discovery: true,
            ..SteeringOptions::default()
        })
        .expect("setting options");
    let m = b"marker:padi-lac";
    b.expect(
        "PPPoE discovery (LAC)",
        &frame(&[], 0x8863, &pppoe(PADI, 0, m)),
        m,
        SOCKET,
    );
    let m = b"marker:padi-lac-8021q";
    let tagged_padi = frame(&[VLAN], 0x8863, &pppoe(PADI, 0, m));
    b.expect("PPPoE discovery (LAC), 802.1Q", &tagged_padi, m, SOCKET);
    let m = b"marker:unknown-lac";
    b.expect("EtherType 0x88b5 (LAC)", &frame(&[], 0x88b5, m), m, KERNEL);

    // A port that belongs to userspace entirely.
    steering
        .set_options(SteeringOptions {
            everything: true,
            ..SteeringOptions::default()
        })
        .expect("setting options");
    let m = b"marker:unknown-all";
    b.expect(
        "EtherType 0x88b5 (everything)",
        &frame(&[], 0x88b5, m),
        m,
        SOCKET,
    );
    // An ARP request for box's address.
    let m = b"marker:arp";
    let request = arp(1, FAR_ADDR, BOX_ADDR, m);
    b.expect("ARP (everything)", &frame(&[], 0x0806, &request), m, SOCKET);

    drop(tap);
    drop(port);
    drop(far);
    drop(steering);
    drop(lab);
    let pid = std::process::id().to_string();
    let namespaces = ip(&["netns", "list"]);
    assert!(
        !namespaces.contains(&format!("afxst-{pid}-")),
        "namespaces left over:\n{namespaces}"
    );
}

/// A process forked and blocked before its exec: it holds a copy of every
/// descriptor of ours, as any child that another thread of a daemon (or of
/// a test binary) spawns does for a moment. Released on drop.
struct ForkedHolder {
    pid: libc::pid_t,
    release: libc::c_int,
}

impl ForkedHolder {
    fn fork() -> ForkedHolder {
        let mut pipe = [0 as libc::c_int; 2];
        // SAFETY: a two-element array for the two ends.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: the child calls only async-signal-safe functions (close,
        // read, _exit), as it must in a multi-threaded process.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut byte = 0u8;
            // SAFETY: our own pipe; read returns 0 once the parent closes
            // its end.
            unsafe {
                libc::close(pipe[1]);
                libc::read(pipe[0], (&raw mut byte).cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        // SAFETY: the child's end, not used by the parent.
        unsafe { libc::close(pipe[0]) };
        ForkedHolder {
            pid,
            release: pipe[1],
        }
    }
}

impl Drop for ForkedHolder {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: closing our end lets the child's read return, and it
        // exits; then it is reaped.
        unsafe {
            libc::close(self.release);
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

/// Dropping the steering takes the program off the interface at once, even
/// while another process holds a copy of its link's descriptor: attaching
/// again right away succeeds. (Closing the link alone left the program
/// attached until that copy went, and the line-rate benchmark's second run
/// on one link failed with EBUSY in CI.)
#[test]
fn steering_leaves_the_interface_on_drop_while_a_forked_child_holds_its_link() {
    require_root();
    let lab = Lab::new("dt");
    lab.within(&lab.box_ns, || {
        let first = Steering::attach("st0", XdpMode::Skb).expect("attaching steering");
        let holder = ForkedHolder::fork();
        drop(first);
        let again = Steering::attach("st0", XdpMode::Skb);
        drop(holder);
        again.expect("attaching again after the first steering was dropped");
    });
}

/// A group whose second socket cannot be made (no such interface) fails
/// with a message naming it and leaves nothing behind: the first socket
/// and the UMEM go, and a group on the same queue opens again (once no
/// forked process holds a copy of the old socket's descriptor). The
/// same for a group whose *first* socket fails (the UMEM then still
/// points at that socket's rings, which must outlive it).
#[test]
fn a_port_group_that_fails_to_open_leaves_nothing_behind() {
    require_root();
    let lab = Lab::new("gr");
    lab.within(&lab.box_ns, || {
        let steering = Steering::attach("st0", XdpMode::Skb).expect("attaching steering");
        let st0 = AfXdpConfig::new("st0", 0);
        let missing = AfXdpConfig {
            mac_addr: Some(dataplane::wire::ethernet::Address(BOX_MAC)),
            ..AfXdpConfig::new("nosuch0", 0)
        };
        for group in [
            [(&st0, Some(&steering)), (&missing, None)],
            [(&missing, None), (&st0, Some(&steering))],
        ] {
            let error = AfXdpPort::open_group(&group).expect_err("nosuch0 does not exist");
            assert!(error.to_string().contains("nosuch0"), "{error}");
        }
        // A socket closes with its last descriptor, and a process that
        // another test's thread forks holds copies until its exec (the
        // forked holder above, for its whole test): retry for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = loop {
            match AfXdpPort::open_group(&[(&st0, Some(&steering))]) {
                Ok(ports) => break ports,
                Err(e) if e.cause().raw_os_error() == Some(libc::EBUSY) => {
                    assert!(Instant::now() < deadline, "st0 queue 0 stayed bound: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("st0 queue 0: {e}"),
            }
        };
        assert_eq!(ports.len(), 1);
    });
}

/// On a LAC, what steering sends from an access port with
/// `pppoe_discovery` reaches the control plane as a `Local` punt, tagged
/// or not, and nothing is dropped.
#[test]
fn a_lac_worker_punts_pppoe_discovery_to_the_control_plane() {
    let mut w = lab::worker(Role::Lac, 1);
    let channels = w.channels();
    let padi = pppoe(PADI, 0, b"\x01\x01\x00\x00"); // Service-Name, empty
    let untagged = lab::ethernet(
        dataplane::wire::ethernet::Address([0xff; 6]),
        lab::subscriber_mac(0),
        None,
        dataplane::wire::ethernet::EtherType::PppoeDiscovery,
        &padi,
    );
    let tagged = lab::ethernet(
        dataplane::wire::ethernet::Address([0xff; 6]),
        lab::subscriber_mac(0),
        Some(10),
        dataplane::wire::ethernet::EtherType::PppoeDiscovery,
        &padi,
    );
    for sent in [&untagged, &tagged] {
        assert!(w.ports_mut()[usize::from(lab::ACCESS_PORT)].push_rx(sent));
        w.poll();
        let punt = channels.poll_punt().expect("discovery was not punted");
        assert_eq!(punt.reason, PuntReason::Local);
        assert_eq!(punt.port, lab::ACCESS_PORT);
        assert_eq!(punt.buffer.bytes(), &sent[..]);
        channels.recycle(punt.buffer);
    }
    assert_eq!(w.counters().total_drops(), 0, "{:?}", w.counters());
}

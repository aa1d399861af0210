//! The AF_XDP port and its steering program on real veth pairs.
//!
//! **Needs root** (network namespaces, veth, BPF, AF_XDP), as CI runs; it
//! fails with a message saying so otherwise, rather than passing without
//! having run.
//!
//! Two namespaces, `box` (us) and `far` (the LAC and a core server), joined
//! by two veth pairs:
//!
//! ```text
//!   box                                   far
//!   acc0 10.201.1.1/24  <── veth ──>  acc1 10.201.1.2/24   (the LAC, UDP 1701)
//!   core0 10.201.2.1/24 <── veth ──>  core1 10.201.2.2/24  (a server, UDP 5002)
//!                                     route 10.201.3.0/24 via 10.201.2.1
//! ```
//!
//! The first part checks the steering with a bare port on `acc0`: L2TP data
//! messages reach the socket, L2TP control messages and ARP stay with the
//! kernel, and what the port sends arrives intact. The second runs an LNS
//! worker over `acc0` and `core0` (two sockets over one UMEM, as lnsd
//! opens them) in adaptive mode, with one tunnel and one
//! session for subscriber 10.201.3.10, and sends real UDP through it both
//! ways: far's kernel sends and receives everything, so every checksum and
//! header we write is checked by a real stack. Last, far's route to the
//! subscribers becomes on-link, so far asks for the subscriber with ARP
//! and the worker answers (proxy ARP); ARP for box's own address stays
//! with the kernel.
//!
//! Everything lives in the two namespaces, which are deleted at the end
//! (also on failure); the test then checks that nothing is left.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]
#![cfg(feature = "afxdp")]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::counters::{Counters, PuntKind};
use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, Steering, XdpMode};
use dataplane::io::{Descriptor, Port};
use dataplane::table::{Neighbour, SessionConfig, SessionKey, Tunnel};
use dataplane::update::{Channels, Event, Update};
use dataplane::wire::ethernet::{self, EtherType};
use dataplane::wire::{ipv4, udp};
use dataplane::worker::{PollMode, Role, Worker, WorkerConfig};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

const BOX_ACC: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 1);
const FAR_ACC: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
const BOX_CORE: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 1);
const FAR_CORE: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);
const SUBSCRIBER: Ipv4Addr = Ipv4Addr::new(10, 201, 3, 10);
const SERVER_PORT: u16 = 5002;
const SUBSCRIBER_PORT: u16 = 5001;
const L2TP_PORT: u16 = 1701;

const BOX_ACC_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 1, 1];
const FAR_ACC_MAC: [u8; 6] = [0x02, 0xfa, 0, 0, 1, 2];
const BOX_CORE_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 2, 1];
const FAR_CORE_MAC: [u8; 6] = [0x02, 0xfa, 0, 0, 2, 2];

/// Our ids and the peer's (the LAC's) for the one tunnel and session.
const TUNNEL_ID: u16 = 1;
const PEER_TUNNEL_ID: u16 = 101;
const SESSION_ID: u16 = 1;
const PEER_SESSION_ID: u16 = 8;

fn require_root() {
    if !rustix::process::geteuid().is_root() {
        panic!(
            "afxdp_veth needs root (network namespaces, veth pairs, BPF and AF_XDP sockets); \
             run it as root, as CI does"
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

/// The two namespaces; deleting them on drop removes the veths (and so
/// anything attached to them).
struct Lab {
    box_ns: String,
    far_ns: String,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            box_ns: format!("afxdp-{pid}-box"),
            far_ns: format!("afxdp-{pid}-far"),
        };
        for ns in [&lab.box_ns, &lab.far_ns] {
            // A namespace with our pid in its name is left over from a dead
            // process that had the same pid.
            if Path::new("/run/netns").join(ns).exists() {
                ip(&["netns", "del", ns]);
            }
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab.veth("acc", BOX_ACC, BOX_ACC_MAC, FAR_ACC, FAR_ACC_MAC);
        lab.veth("core", BOX_CORE, BOX_CORE_MAC, FAR_CORE, FAR_CORE_MAC);
        ip(&[
            "-n",
            &lab.far_ns,
            "route",
            "add",
            "10.201.3.0/24",
            "via",
            &BOX_CORE.to_string(),
        ]);
        lab
    }

    fn veth(&self, name: &str, a: Ipv4Addr, a_mac: [u8; 6], b: Ipv4Addr, b_mac: [u8; 6]) {
        let (a_if, b_if) = (format!("{name}0"), format!("{name}1"));
        #[rustfmt::skip]
        ip(&["link", "add", &a_if, "netns", &self.box_ns, "type", "veth",
             "peer", "name", &b_if, "netns", &self.far_ns]);
        for (ns, ifname, addr, mac) in [
            (&self.box_ns, &a_if, a, a_mac),
            (&self.far_ns, &b_if, b, b_mac),
        ] {
            ip(&["-n", ns, "link", "set", ifname, "address", &mac_text(mac)]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
    }

    /// Runs `f` on a thread that has entered namespace `ns`; what it
    /// creates (sockets, ports, programs) stays in that namespace.
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

    fn udp(&self, ns: &str, addr: Ipv4Addr, port: u16) -> UdpSocket {
        let socket = self
            .within(ns, || UdpSocket::bind(SocketAddrV4::new(addr, port)))
            .expect("binding a UDP socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        socket
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.box_ns, &self.far_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// An L2TPv2 data message (T=0, L=1) of our tunnel/session ids as the LAC
/// sends them, around a PPP IPv4 frame with FF 03.
fn l2tp_data(tunnel_id: u16, session_id: u16, ip_packet: &[u8]) -> Vec<u8> {
    let ppp = [&[0xff, 0x03, 0x00, 0x21][..], ip_packet].concat();
    let len = (8 + ppp.len()) as u16;
    let mut m = vec![0x40, 0x02];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(&tunnel_id.to_be_bytes());
    m.extend_from_slice(&session_id.to_be_bytes());
    m.extend_from_slice(&ppp);
    m
}

/// A zero-length L2TP control message (ZLB: T, L, S set; RFC 2661 §5.8).
fn l2tp_zlb(tunnel_id: u16) -> Vec<u8> {
    let mut m = vec![0xc8, 0x02, 0x00, 0x0c];
    m.extend_from_slice(&tunnel_id.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    m
}

/// IPv4/UDP from `src` to `dst` around `payload`, checksums filled.
fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len()];
    ipv4::Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp::HEADER_LEN + payload.len(),
    }
    .emit(&mut p)
    .expect("ipv4 header");
    udp::Repr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload_len: payload.len(),
    }
    .emit(&mut p[ipv4::HEADER_LEN..])
    .expect("udp header");
    p[ipv4::HEADER_LEN + udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Packet::new_unchecked(&mut p[ipv4::HEADER_LEN..]).fill_checksum(*src.ip(), *dst.ip());
    p
}

fn ethernet_frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let repr = ethernet::Repr {
        dst_addr: ethernet::Address(dst),
        src_addr: ethernet::Address(src),
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::Ipv4,
    };
    let mut f = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(&mut f).expect("ethernet header");
    f[repr.buffer_len()..].copy_from_slice(payload);
    f
}

/// Polls `port` up to `limit` for a packet; copies it out and frees it.
fn receive_one(port: &mut AfXdpPort, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut burst = [Descriptor::default(); 8];
    while Instant::now() < deadline {
        let n = port.receive(&mut burst);
        if n > 0 {
            let d = burst[0];
            let bytes = port.frame(d.frame)[d.range()].to_vec();
            for d in &burst[..n] {
                port.free(*d);
            }
            return Some(bytes);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The UDP payload of an Ethernet/IPv4/UDP frame (no options expected).
fn udp_payload(frame: &[u8]) -> &[u8] {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "not IPv4: {frame:02x?}");
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    &frame[14 + ihl + 8..]
}

#[test]
fn afxdp_on_veth_steers_and_forwards_both_ways() {
    require_root();
    let lab = Lab::new();
    steering_and_bare_port(&lab);
    worker_both_ways(&lab);
    drop(lab);
    let namespaces = ip(&["netns", "list"]);
    let pid = std::process::id().to_string();
    assert!(
        !namespaces.contains(&format!("afxdp-{pid}-")),
        "namespaces left over:\n{namespaces}"
    );
    let links = ip(&["link"]);
    for name in ["acc0", "acc1", "core0", "core1"] {
        assert!(
            !links.contains(&format!(": {name}@")) && !links.contains(&format!(": {name}:")),
            "{name} left in the root namespace:\n{links}"
        );
    }
}

fn steering_and_bare_port(lab: &Lab) {
    let (steering, mut port) = lab.within(&lab.box_ns, || {
        let steering = Steering::attach("acc0", XdpMode::Skb).expect("attaching steering");
        let port = AfXdpPort::open(&AfXdpConfig::new("acc0", 0), Some(&steering))
            .expect("opening the AF_XDP port");
        (steering, port)
    });
    assert_eq!(port.mac_addr().0, BOX_ACC_MAC, "the port reads acc0's MAC");
    let control_plane = lab.udp(&lab.box_ns, BOX_ACC, L2TP_PORT);
    let lac = lab.udp(&lab.far_ns, FAR_ACC, L2TP_PORT);
    let box_l2tp = SocketAddrV4::new(BOX_ACC, L2TP_PORT);

    // An L2TP data message goes to the socket. Far's kernel first resolves
    // 10.201.1.1 with ARP, which only works if box's kernel got the ARP
    // request (steering passes it).
    let data = l2tp_data(TUNNEL_ID, SESSION_ID, b"not really IPv4");
    lac.send_to(&data, box_l2tp)
        .expect("sending a data message");
    let frame = receive_one(&mut port, Duration::from_secs(3))
        .expect("the L2TP data message did not reach the AF_XDP socket");
    assert_eq!(udp_payload(&frame), &data[..]);
    let neigh = ip(&["-n", &lab.far_ns, "neigh", "show", &BOX_ACC.to_string()]);
    assert!(
        neigh.contains(&mac_text(BOX_ACC_MAC)),
        "box's kernel did not answer ARP: {neigh}"
    );
    let mut buf = [0u8; 2048];
    assert!(
        control_plane.recv_from(&mut buf).is_err(),
        "the data message also reached the kernel's socket"
    );

    // A control message stays with the kernel.
    let zlb = l2tp_zlb(TUNNEL_ID);
    lac.send_to(&zlb, box_l2tp).expect("sending a ZLB");
    let (n, from) = control_plane
        .recv_from(&mut buf)
        .expect("the L2TP control message did not reach the kernel's socket");
    assert_eq!(&buf[..n], &zlb[..]);
    assert_eq!(from, SocketAddrV4::new(FAR_ACC, L2TP_PORT).into());
    assert!(
        receive_one(&mut port, Duration::from_millis(100)).is_none(),
        "the control message reached the AF_XDP socket"
    );

    // What the port sends arrives intact, from the headroom of an
    // allocated frame.
    let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let ip_packet = ipv4_udp(box_l2tp, SocketAddrV4::new(FAR_ACC, L2TP_PORT), &payload);
    let frame = ethernet_frame(FAR_ACC_MAC, BOX_ACC_MAC, &ip_packet);
    let mut d = port.alloc().expect("a free frame");
    assert_eq!(d.offset as usize, port.headroom());
    d.len = frame.len() as u32;
    let range = d.range();
    port.frame_mut(d.frame)[range].copy_from_slice(&frame);
    assert_eq!(port.transmit(&[d]), 1);
    port.flush();
    let (n, from) = lac
        .recv_from(&mut buf)
        .expect("the frame the port sent did not arrive");
    assert_eq!(&buf[..n], &payload[..]);
    assert_eq!(from, box_l2tp.into());
    let deadline = Instant::now() + Duration::from_secs(1);
    while port.stats().completed < 1 && Instant::now() < deadline {
        port.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(port.stats().completed, 1, "{port:?}");

    drop(port);
    drop(steering);
    let link = ip(&["-n", &lab.box_ns, "-d", "link", "show", "acc0"]);
    assert!(
        !link.contains("prog/xdp"),
        "the XDP program stayed attached: {link}"
    );
}

fn worker_both_ways(lab: &Lab) {
    let (steering_acc, steering_core, ports) = lab.within(&lab.box_ns, || {
        let acc = Steering::attach("acc0", XdpMode::Skb).expect("steering on acc0");
        let core = Steering::attach("core0", XdpMode::Skb).expect("steering on core0");
        core.add_subscriber_prefix(Ipv4Addr::new(10, 201, 3, 0), 24)
            .expect("subscriber prefix");
        // One UMEM for both, as lnsd opens a worker's ports: packets
        // cross between the interfaces without a copy.
        let ports = AfXdpPort::open_group(&[
            (&AfXdpConfig::new("acc0", 0), Some(&acc)),
            (&AfXdpConfig::new("core0", 0), Some(&core)),
        ])
        .expect("ports acc0 and core0 over one UMEM");
        (acc, core, ports)
    });
    assert_eq!(ports[0].memory(), ports[1].memory(), "one UMEM");
    let config = WorkerConfig {
        max_sessions: 16,
        mode: PollMode::Adaptive,
        ..WorkerConfig::new(Role::Lns, vec![BOX_ACC])
    };
    let mut worker = Worker::new(config, ports).expect("worker");
    let channels = worker.channels();
    let key = SessionKey {
        tunnel_id: TUNNEL_ID,
        session_id: SESSION_ID,
    };
    let updates = [
        Update::UpsertNeighbour {
            addr: FAR_ACC,
            neighbour: Neighbour {
                mac: ethernet::Address(FAR_ACC_MAC),
                port: 0,
            },
        },
        Update::UpsertNeighbour {
            addr: FAR_CORE,
            neighbour: Neighbour {
                mac: ethernet::Address(FAR_CORE_MAC),
                port: 1,
            },
        },
        Update::SetGateway(Some(FAR_CORE)),
        Update::UpsertTunnel(Tunnel {
            tunnel_id: TUNNEL_ID,
            peer_tunnel_id: PEER_TUNNEL_ID,
            local: SocketAddrV4::new(BOX_ACC, L2TP_PORT),
            peer: SocketAddrV4::new(FAR_ACC, L2TP_PORT),
            next_hop: FAR_ACC,
        }),
        Update::UpsertSession(SessionConfig {
            key,
            peer_session_id: PEER_SESSION_ID,
            subscriber_addr: Some(SUBSCRIBER),
            mru: 1500,
            sequencing: false,
            pppoe: None,
        }),
    ];
    for update in updates {
        channels.send(update).expect("update queue");
    }
    worker.apply_all_updates();
    if let Some(event) = channels.poll_event() {
        panic!("the worker refused an update: {event:?}");
    }

    let lac = lab.udp(&lab.far_ns, FAR_ACC, L2TP_PORT);
    let server = lab.udp(&lab.far_ns, FAR_CORE, SERVER_PORT);
    let stop = Arc::new(AtomicBool::new(false));
    let running = worker.spawn(stop.clone()).expect("worker thread");

    let subscriber = SocketAddrV4::new(SUBSCRIBER, SUBSCRIBER_PORT);
    let server_addr = SocketAddrV4::new(FAR_CORE, SERVER_PORT);
    let box_l2tp = SocketAddrV4::new(BOX_ACC, L2TP_PORT);
    let mut buf = [0u8; 2048];
    // Upstream: the LAC tunnels the subscriber's datagram; the worker
    // strips L2TP/PPP and routes it to the server, whose kernel checks
    // the IPv4 and UDP checksums. Sent in blocks, each collected before
    // the next, so that nothing depends on socket buffer sizes.
    let started = Instant::now();
    let upstream = exchange(
        |i| {
            let payload = format!("upstream {i}");
            let inner = ipv4_udp(subscriber, server_addr, payload.as_bytes());
            lac.send_to(&l2tp_data(TUNNEL_ID, SESSION_ID, &inner), box_l2tp)
                .expect("sending upstream");
        },
        || {
            let (n, from) = server.recv_from(&mut buf).ok()?;
            assert_eq!(from, subscriber.into());
            assert!(buf[..n].starts_with(b"upstream "), "{:02x?}", &buf[..n]);
            Some(())
        },
    );
    let upstream_time = started.elapsed();

    // Downstream: the server answers the subscriber; the route sends it to
    // box's core0, the steering program's subscriber prefix hands it to
    // the worker, which tunnels it to the LAC.
    let started = Instant::now();
    let downstream = exchange(
        |i| {
            let payload = format!("downstream {i}");
            server
                .send_to(payload.as_bytes(), subscriber)
                .expect("sending downstream");
        },
        || {
            let (n, from) = lac.recv_from(&mut buf).ok()?;
            assert_eq!(from, box_l2tp.into());
            check_downstream(&buf[..n], server_addr, subscriber);
            Some(())
        },
    );
    let downstream_time = started.elapsed();

    let (proxied, arp_replies) = proxy_arp(lab, &channels, &server, &lac, subscriber);

    stop.store(true, Ordering::Relaxed);
    let worker = running.join().expect("the worker thread panicked");
    let counters = worker.counters().clone();
    eprintln!(
        "afxdp_veth: {upstream}/{PACKETS} upstream in {upstream_time:?}, \
         {downstream}/{PACKETS} downstream in {downstream_time:?}; worker counters: {:?}",
        counters.nonzero().collect::<Vec<_>>()
    );
    let mut worker = worker;
    for (i, port) in worker.ports_mut().iter().enumerate() {
        eprintln!("afxdp_veth: port {i}: {:?}", port.stats());
    }
    assert!(proxied, "downstream through the proxy ARP did not arrive");
    assert!(arp_replies >= 1, "the worker answered no ARP");
    assert_eq!(counters.arp_replies, arp_replies);
    assert_eq!(upstream, PACKETS, "upstream packets lost");
    assert_eq!(downstream, PACKETS, "downstream packets lost");
    assert_eq!(counters.total_drops(), 0, "{counters:?}");
    drop(steering_acc);
    drop(steering_core);
}

/// Far reaches the subscribers on-link instead of through box's address,
/// so its kernel asks for 10.201.3.10 with ARP (RFC 826): the steering
/// program hands the request to the worker, which answers with core0's
/// MAC, and the datagram that waited for the answer is tunnelled to the
/// LAC. Then far asks for box's own core address, which the kernel
/// answers: that request must not reach the worker (a worker's report
/// shows no new punt). Returns whether the datagram arrived and the
/// worker's ARP replies as of the last report.
fn proxy_arp(
    lab: &Lab,
    channels: &Channels,
    server: &UdpSocket,
    lac: &UdpSocket,
    subscriber: SocketAddrV4,
) -> (bool, u64) {
    let before = report(channels, 1);
    ip(&[
        "-n",
        &lab.far_ns,
        "route",
        "replace",
        "10.201.3.0/24",
        "dev",
        "core1",
    ]);
    ip(&["-n", &lab.far_ns, "neigh", "flush", "dev", "core1"]);
    server
        .send_to(b"downstream after ARP", subscriber)
        .expect("sending downstream");
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut arrived = false;
    while !arrived && Instant::now() < deadline {
        if let Ok((n, _)) = lac.recv_from(&mut buf) {
            arrived = buf[..n].ends_with(b"downstream after ARP");
        }
    }
    let neigh = ip(&["-n", &lab.far_ns, "neigh", "show", &SUBSCRIBER.to_string()]);
    assert!(
        neigh.contains(&mac_text(BOX_CORE_MAC)),
        "far did not learn the subscriber at core0's MAC: {neigh}"
    );

    // Box's own address: the kernel answers, the worker never sees it.
    server
        .send_to(b"to box", SocketAddrV4::new(BOX_CORE, 9))
        .expect("sending to box");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let neigh = ip(&["-n", &lab.far_ns, "neigh", "show", &BOX_CORE.to_string()]);
        if neigh.contains(&mac_text(BOX_CORE_MAC)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "box's kernel did not answer ARP for its core address: {neigh}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = report(channels, 2);
    assert_eq!(
        after.punts(PuntKind::Local),
        before.punts(PuntKind::Local),
        "an ARP request the kernel answers reached the worker"
    );
    assert!(after.arp_replies > before.arp_replies);
    (arrived, after.arp_replies)
}

/// The running worker's counters, through its event queue.
fn report(channels: &Channels, token: u64) -> Counters {
    channels.send(Update::Report(token)).expect("update queue");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match channels.poll_event() {
            Some(Event::Report(report)) if report.token == token => return report.counters,
            Some(other) => panic!("unexpected event {other:?}"),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    panic!("the worker did not report");
}

const PACKETS: usize = 200;
const BLOCK: usize = 20;

/// Sends [`PACKETS`] with `send` in blocks of [`BLOCK`], collecting each
/// block with `receive` (None: timed out) before the next; returns how many
/// arrived.
fn exchange(mut send: impl FnMut(usize), mut receive: impl FnMut() -> Option<()>) -> usize {
    let mut received = 0;
    for block in (0..PACKETS).step_by(BLOCK) {
        for i in block..(block + BLOCK).min(PACKETS) {
            send(i);
        }
        while received < (block + BLOCK).min(PACKETS) {
            if receive().is_none() {
                break;
            }
            received += 1;
        }
    }
    received
}

/// An L2TP data message from us to the LAC: T=0, Ver 2, the peer's ids,
/// PPP IPv4 around the server's datagram to the subscriber.
fn check_downstream(message: &[u8], server: SocketAddrV4, subscriber: SocketAddrV4) {
    assert!(message.len() > 6, "short message {message:02x?}");
    let flags = u16::from_be_bytes([message[0], message[1]]);
    assert_eq!(flags & 0x8000, 0, "T bit set: {message:02x?}");
    assert_eq!(flags & 0x000f, 2, "not L2TPv2: {message:02x?}");
    let mut at = 2;
    if flags & 0x4000 != 0 {
        at += 2;
    }
    let tunnel = u16::from_be_bytes([message[at], message[at + 1]]);
    let session = u16::from_be_bytes([message[at + 2], message[at + 3]]);
    assert_eq!((tunnel, session), (PEER_TUNNEL_ID, PEER_SESSION_ID));
    at += 4;
    if flags & 0x0800 != 0 {
        at += 4;
    }
    if flags & 0x0200 != 0 {
        at += 2 + usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    }
    let mut ppp = &message[at..];
    if ppp.starts_with(&[0xff, 0x03]) {
        ppp = &ppp[2..];
    }
    assert!(ppp.starts_with(&[0x00, 0x21]), "not PPP IPv4: {ppp:02x?}");
    let ip_packet = &ppp[2..];
    assert_eq!(&ip_packet[12..16], &server.ip().octets());
    assert_eq!(&ip_packet[16..20], &subscriber.ip().octets());
    assert!(ip_packet[28..].starts_with(b"downstream "));
}

//! The LNS with its fast path on real veth pairs: subscribers come up
//! through L2TP and PPP whose control frames the AF_XDP workers punt to the
//! node, then their IPv4 goes through the workers both ways, and a session
//! taken down stops carrying traffic.
//!
//! **Needs root** (network namespaces, veth, BPF, AF_XDP), as CI runs; it
//! fails with a message saying so otherwise.
//!
//! ```text
//!   lac                          lns                           net
//!   veth1 10.200.1.1  <──>  veth1 10.200.1.2 (wan)
//!   subscriber::Node        lns::Node + LnsFastpath
//!   (own loop, UDP 1701)    veth2 10.200.2.1 (core)  <──>  veth2 10.200.2.2
//!                                                          UDP 5002, raw UDP
//!                                                          route 100.64.0.0/24
//!                                                            via 10.200.2.1
//! ```
//!
//! The LNS runs on a thread inside its namespace: the driver over its UDP
//! socket in 1 ms slices, `LnsFastpath::program` on each event and
//! `LnsFastpath::service` after each slice, as `lnsd` does. The test talks
//! to it through a command channel. The subscribers run in the test's own
//! loop over the LAC socket, which also sends the upstream data messages
//! (built by the subscriber's L2TP endpoint) and collects the downstream
//! ones. The net side checks what arrives with the kernel's UDP socket (so
//! checksums are right) and a raw socket (for the TTL), and reads the
//! gratuitous ARPs that announce each subscriber address on the core side
//! with a packet socket. Finally the workers' counters must show the
//! traffic forwarded, not the kernel.
//!
//! Everything is in the lab's namespaces, deleted at the end, also on
//! failure (the LNS thread is stopped first, which detaches the XDP
//! programs).

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant as StdInstant};

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::radius::Counters;
use controlplane::aaa::radius::TerminateCause;
use controlplane::aaa::users::Users;
use controlplane::aaa::{Authenticator, SessionAttributes};
use controlplane::driver::{Clock, Driver};
use controlplane::fastpath::lns::{LnsFastpath, LnsFastpathStats, ANNOUNCE_NUM};
use controlplane::fastpath::{FastpathConfig, FastpathSummary, Role};
use controlplane::l2tp::SessionHandle;
use controlplane::lns;
use controlplane::ppp::{LcpOptions, LinkState, ProxyOutcome, Role as PppRole};
use controlplane::subscriber::{self, AuthChoice};
use dataplane::counters::{DropReason, PathKind, PuntKind};
use dataplane::wire::{arp, ethernet, ipv4, udp};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustix::net::{AddressFamily, RecvFlags, SocketType};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use support::netns::{run, Lab, Link, Netns};

const SUBSCRIBERS: usize = 10;
/// Datagrams per subscriber and direction.
const PER_SUBSCRIBER: usize = 20;
const POOL: &str = "100.64.0.0/24";
const POOL_ADDR: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// A peer LNS's pool: an adopted session keeps its address from there.
const PEER_POOL: &str = "100.64.4.0/24";
const PEER_ADDRESS: Ipv4Addr = Ipv4Addr::new(100, 64, 4, 9);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const SUBSCRIBER_PORT: u16 = 5001;
const SERVER_PORT: u16 = 5002;
const L2TP_PORT: u16 = 1701;
/// Receive queues of every veth, so the LNS runs a worker per queue and
/// the tables, barriers, reports and session counters are checked across
/// workers. (With generic XDP on veth the frames all arrive on queue 0,
/// so one worker carries the traffic; the other must stay consistent.)
const QUEUES: u32 = 2;
/// How long the whole LNS thread may run, whatever happens.
const LNS_LIMIT: Duration = Duration::from_secs(120);

fn ns_path(ns: &Netns) -> PathBuf {
    PathBuf::from("/run/netns").join(ns.name())
}

fn enter(ns: &PathBuf) {
    let file = File::open(ns).expect("opening the namespace");
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).expect("setns");
}

// --- the LNS thread ---------------------------------------------------------

/// What the LNS thread is asked.
enum Cmd {
    /// Wait until every next hop is resolved and every worker applied what
    /// was sent so far.
    Sync(Sender<Result<(), String>>),
    /// The workers' counters, the glue's counters, and how many sessions
    /// are established.
    Report(Sender<(FastpathSummary, LnsFastpathStats, usize)>),
    /// Clear the session holding this address.
    Clear(Ipv4Addr, Sender<bool>),
    /// Sessions programmed in the fast path with an address.
    Programmed(Sender<usize>),
    /// Packets each worker forwarded (both LNS paths), in worker order.
    PerWorker(Sender<Vec<u64>>),
    /// The traffic counters the node has for the session holding this
    /// address (from the workers).
    Counters(Ipv4Addr, Sender<Option<Counters>>),
    /// Program a session adopted from a peer LNS, holding this address from
    /// the peer's pool (outside ours), on the LAC's tunnel.
    Adopt(Ipv4Addr, Sender<Result<(), String>>),
    /// That session ends.
    AdoptedDown(Ipv4Addr, Sender<()>),
}

/// The ids of the pretend adopted session, ours and the LAC's.
const ADOPTED_SESSION_ID: u16 = 0x7777;

fn lns_addr(wan: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(wan, L2TP_PORT)
}

/// The LNS as `lnsd` runs it: driver slices, program, service.
fn run_lns(
    ns: PathBuf,
    wan: Ipv4Addr,
    core_next_hop: Ipv4Addr,
    stop: &AtomicBool,
    commands: Receiver<Cmd>,
) -> Result<(), String> {
    enter(&ns);
    let socket = UdpSocket::bind(lns_addr(wan)).map_err(|e| e.to_string())?;
    let users = Users::parse("sub lab\n", "users").map_err(|e| e.to_string())?;
    let pool = AddressPool::parse(&[POOL]).map_err(|e| e.to_string())?;
    let node = lns::Node::new(
        lns::Config::new("lns", GATEWAY),
        Authenticator::local(users),
        pool,
        Box::new(ChaCha8Rng::seed_from_u64(1)),
    )
    .map_err(|e| e.to_string())?;
    let mut driver = Driver::new(socket, node).map_err(|e| e.to_string())?;
    let config = FastpathConfig {
        subscriber_prefixes: vec![(POOL_ADDR, 24)],
        gateway: Some(core_next_hop),
        max_sessions: 1024,
        queues: QUEUES,
        ..FastpathConfig::new(Role::Lns, vec!["veth1".into(), "veth2".into()], vec![wan])
    };
    let mut fp =
        LnsFastpath::start(config, lns_addr(wan), driver.node_mut()).map_err(|e| e.to_string())?;
    fp.set_counters_interval(Duration::from_millis(100));
    let started = StdInstant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < LNS_LIMIT {
        let slice_end = driver.now() + Duration::from_millis(1);
        driver
            .run_until(slice_end, |_node, event| {
                fp.program(&event);
                ControlFlow::Continue(())
            })
            .map_err(|e| e.to_string())?;
        let now = driver.now();
        fp.service(driver.node_mut(), now);
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Cmd::Sync(reply) => {
                    let _ = reply.send(sync(&mut fp));
                }
                Cmd::Report(reply) => {
                    let summary = fp
                        .fastpath()
                        .fresh_reports(Duration::from_secs(2))
                        .map_err(|e| e.to_string())?;
                    let established = driver.node().established_count();
                    let _ = reply.send((summary, fp.stats(), established));
                }
                Cmd::Clear(addr, reply) => {
                    let node = driver.node_mut();
                    let session = node
                        .sessions()
                        .find(|&h| node.session_address(h) == Some(addr));
                    let cleared = session.is_some_and(|h| node.clear_session(now, h));
                    let _ = reply.send(cleared);
                }
                Cmd::PerWorker(reply) => {
                    let fast = fp.fastpath();
                    fast.fresh_reports(Duration::from_secs(2))
                        .map_err(|e| e.to_string())?;
                    let per_worker = fast
                        .reports()
                        .iter()
                        .flatten()
                        .map(|r| {
                            r.counters.forwards(PathKind::LnsUpstream)
                                + r.counters.forwards(PathKind::LnsDownstream)
                        })
                        .collect();
                    let _ = reply.send(per_worker);
                }
                Cmd::Counters(addr, reply) => {
                    let node = driver.node();
                    let counters = node
                        .sessions()
                        .find(|&h| node.session_address(h) == Some(addr))
                        .and_then(|h| node.session_counters(h));
                    let _ = reply.send(counters);
                }
                Cmd::Adopt(address, reply) => {
                    let _ = reply.send(adopt(&mut fp, driver.node(), address));
                }
                Cmd::AdoptedDown(address, reply) => {
                    let tunnel = driver.node().endpoint().tunnels().next();
                    if let Some(tunnel) = tunnel {
                        fp.program(&lns::Event::SessionDown(Box::new(lns::EndedSession {
                            session: SessionHandle {
                                tunnel,
                                id: u64::from(ADOPTED_SESSION_ID),
                            },
                            username: Some("sub".to_owned()),
                            address: Some(address),
                            cause: lns::EndCause::AdminClear,
                            terminate_cause: TerminateCause::AdminReset,
                            cdn: None,
                            was_established: true,
                            duration: Duration::ZERO,
                        })));
                    }
                    let _ = reply.send(());
                }
                Cmd::Programmed(reply) => {
                    let node = driver.node();
                    let n = node
                        .sessions()
                        .filter(|&h| fp.session(h).is_some_and(|c| c.subscriber_addr.is_some()))
                        .count();
                    let _ = reply.send(n);
                }
            }
        }
    }
    let finals = fp.stop();
    if finals.is_empty() {
        return Err("no worker reported at stop".into());
    }
    Ok(())
}

/// What lnsd's glue sees when the node adopts a peer's session: an
/// established session with its epoch, holding `address`, on the LAC's
/// (first) tunnel.
fn adopt(fp: &mut LnsFastpath, node: &lns::Node, address: Ipv4Addr) -> Result<(), String> {
    let endpoint = node.endpoint();
    let tunnel = endpoint.tunnels().next().ok_or("no tunnel")?;
    let ids = endpoint.tunnel_ids(tunnel).ok_or("no tunnel ids")?;
    let remote = endpoint.tunnel_remote(tunnel).ok_or("no remote")?;
    let lcp = LcpOptions::default();
    fp.program(&lns::Event::SessionEstablished(Box::new(
        lns::EstablishedSession {
            session: SessionHandle {
                tunnel,
                id: u64::from(ADOPTED_SESSION_ID),
            },
            remote,
            tunnel_ids: ids,
            local_session_id: ADOPTED_SESSION_ID,
            peer_session_id: ADOPTED_SESSION_ID,
            username: "sub".to_owned(),
            address,
            link: LinkState {
                role: PppRole::Server,
                lcp_local: lcp,
                lcp_peer: lcp,
                auth_method: None,
                username: None,
                ipcp: None,
                ipv6cp: None,
            },
            attributes: SessionAttributes::default(),
            acct_session_id: "adopted".to_owned(),
            proxy: ProxyOutcome::NotOffered,
            setup_time: Duration::ZERO,
            adopted_epoch: Some(2),
        },
    )));
    Ok(())
}

fn sync(fp: &mut LnsFastpath) -> Result<(), String> {
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let fast = fp.fastpath();
    while fast.neighbours().pending() > 0 {
        if StdInstant::now() > deadline {
            return Err(format!("next hops unresolved: {:?}", fast.neighbours()));
        }
        fast.poll();
        std::thread::sleep(Duration::from_millis(5));
    }
    let token = fast.barrier().map_err(|e| e.to_string())?;
    if fast.wait_barrier(token, Duration::from_secs(2)) {
        Ok(())
    } else {
        Err("the workers did not echo the barrier".into())
    }
}

fn ask<T>(commands: &Sender<Cmd>, make: impl FnOnce(Sender<T>) -> Cmd) -> T {
    let (tx, rx) = mpsc::channel();
    commands.send(make(tx)).expect("the LNS thread is gone");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the LNS thread did not answer")
}

// --- the LAC: subscribers in the test's own loop -------------------------------

struct Lac {
    subscribers: subscriber::Node,
    socket: UdpSocket,
    clock: Clock,
    /// Subscriber index → its session and address.
    up: HashMap<usize, (SessionHandle, Ipv4Addr)>,
    down: Vec<usize>,
    /// The IPv4 packets of downstream data messages, in arrival order.
    downstream: Vec<Vec<u8>>,
}

impl Lac {
    fn new(socket: UdpSocket, lns: SocketAddrV4) -> Lac {
        let clock = Clock::new();
        let mut config = subscriber::Config::new(lns, SUBSCRIBERS, "sub", "lab", AuthChoice::Chap);
        config.max_setting_up = SUBSCRIBERS;
        let mut subscribers =
            subscriber::Node::new(config, Box::new(ChaCha8Rng::seed_from_u64(2))).unwrap();
        subscribers.start(clock.now()).unwrap();
        Lac {
            subscribers,
            socket,
            clock,
            up: HashMap::new(),
            down: Vec::new(),
            downstream: Vec::new(),
        }
    }

    /// One turn: timers, output, events, then at most one datagram in
    /// (waiting up to `wait`).
    fn turn(&mut self, wait: Duration) {
        let now = self.clock.now();
        if self.subscribers.poll_timeout().is_some_and(|t| t <= now) {
            self.subscribers.handle_timeout(now);
        }
        while let Some((to, payload)) = self.subscribers.poll_transmit(now) {
            let _ = self.socket.send_to(&payload, to);
        }
        while let Some(event) = self.subscribers.poll_event() {
            match event {
                subscriber::Event::SessionUp(up) => {
                    self.up.insert(up.index, (up.session, up.address));
                }
                subscriber::Event::SessionDown { index, .. } => self.down.push(index),
                _ => {}
            }
        }
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_micros(100))))
            .unwrap();
        let mut buf = [0u8; 2048];
        let Ok((n, SocketAddr::V4(from))) = self.socket.recv_from(&mut buf) else {
            return;
        };
        match data_ipv4(&buf[..n]) {
            Some(ip) => self.downstream.push(ip.to_vec()),
            None => self
                .subscribers
                .handle_datagram(self.clock.now(), from, &buf[..n]),
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Lac) -> bool) -> bool {
        let deadline = StdInstant::now() + limit;
        while !done(self) {
            if StdInstant::now() >= deadline {
                return false;
            }
            self.turn(Duration::from_millis(2));
        }
        true
    }

    /// An L2TP data message of subscriber `index`'s session carrying PPP
    /// IPv4 around `ip_packet`, as the subscriber's endpoint builds it.
    fn data_message(&mut self, index: usize, ip_packet: &[u8]) -> (SocketAddrV4, Vec<u8>) {
        let (session, _) = self.up[&index];
        let frame = [&[0xff, 0x03, 0x00, 0x21][..], ip_packet].concat();
        let t = self
            .subscribers
            .endpoint_mut()
            .send_data(session, &frame)
            .expect("a data message");
        (t.remote, t.payload)
    }
}

/// The IPv4 packet of an L2TP data message (T=0) carrying PPP IPv4, else
/// `None` (control messages, PPP control frames).
fn data_ipv4(message: &[u8]) -> Option<&[u8]> {
    let flags = u16::from_be_bytes([*message.first()?, *message.get(1)?]);
    if flags & 0x8000 != 0 || flags & 0x000f != 2 {
        return None;
    }
    let mut at = 2;
    if flags & 0x4000 != 0 {
        at += 2;
    }
    at += 4;
    if flags & 0x0800 != 0 {
        at += 4;
    }
    if flags & 0x0200 != 0 {
        let size = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
        at += 2 + usize::from(size);
    }
    let mut ppp = message.get(at..)?;
    if ppp.starts_with(&[0xff, 0x03]) {
        ppp = &ppp[2..];
    }
    ppp.strip_prefix(&[0x00, 0x21])
}

/// IPv4/UDP from `src` to `dst` around `payload`, TTL 64, checksums filled.
fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    ipv4_udp_ttl(src, dst, payload, 64)
}

/// As [`ipv4_udp`] with TTL `ttl`.
fn ipv4_udp_ttl(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], ttl: u8) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len()];
    ipv4::Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        protocol: ipv4::Protocol::Udp,
        ttl,
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

// --- the net side ----------------------------------------------------------------

/// A raw IPv4 socket for UDP inside `ns`: a copy of every UDP packet the
/// namespace receives, IPv4 header included (for the TTL).
fn raw_udp_socket(ns: &PathBuf) -> OwnedFd {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                rustix::net::socket(
                    AddressFamily::INET,
                    SocketType::RAW,
                    Some(rustix::net::ipproto::UDP),
                )
                .expect("raw socket")
            })
            .join()
            .expect("namespace thread")
    })
}

/// A raw IPv4 socket for ICMP inside `ns`.
fn raw_icmp_socket(ns: &PathBuf) -> OwnedFd {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                rustix::net::socket(
                    AddressFamily::INET,
                    SocketType::RAW,
                    Some(rustix::net::ipproto::ICMP),
                )
                .expect("raw socket")
            })
            .join()
            .expect("namespace thread")
    })
}

/// A packet socket for ARP inside `ns`: every ARP frame of its interfaces,
/// Ethernet header included.
fn arp_socket(ns: &PathBuf) -> OwnedFd {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                rustix::net::socket(
                    AddressFamily::PACKET,
                    SocketType::RAW,
                    Some(rustix::net::eth::ARP),
                )
                .expect("packet socket")
            })
            .join()
            .expect("namespace thread")
    })
}

/// The gratuitous ARPs (RFC 5227 §3 announcements: a request whose sender
/// and target protocol addresses are the same) that arrive on `socket`
/// within `limit` or until `done` says enough, as (Ethernet source, ARP).
fn wait_announcements(
    socket: &OwnedFd,
    limit: Duration,
    mut done: impl FnMut(&[(ethernet::Address, arp::Repr)]) -> bool,
) -> Vec<(ethernet::Address, arp::Repr)> {
    let deadline = StdInstant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while StdInstant::now() < deadline && !done(&seen) {
        match rustix::net::recv(socket, &mut buf, RecvFlags::DONTWAIT) {
            Ok((_, n)) => {
                let Ok(frame) = ethernet::Frame::new_checked(&buf[..n]) else {
                    continue;
                };
                let Ok(packet) = arp::Packet::new_checked(frame.payload()) else {
                    continue;
                };
                let Ok(repr) = arp::Repr::parse(&packet) else {
                    continue;
                };
                if repr.operation == arp::Operation::Request
                    && repr.source_protocol_addr == repr.target_protocol_addr
                    && frame.dst_addr() == ethernet::Address::BROADCAST
                {
                    seen.push((frame.src_addr(), repr));
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    seen
}

/// The MAC address of `interface` in `ns`.
fn mac_of(lab: &Lab, ns: &Netns, interface: &str) -> ethernet::Address {
    let out = lab
        .exec(ns, &["cat", &format!("/sys/class/net/{interface}/address")])
        .expect("reading the MAC address");
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a MAC address"))
        .collect();
    ethernet::Address::from_bytes(&bytes).expect("six bytes")
}

/// The first ICMP message of `icmp_type` that arrives on `raw` within
/// `limit`, as (source, the IPv4 packet).
fn wait_icmp(raw: &OwnedFd, icmp_type: u8, limit: Duration) -> Option<(Ipv4Addr, Vec<u8>)> {
    let deadline = StdInstant::now() + limit;
    let mut buf = [0u8; 2048];
    while StdInstant::now() < deadline {
        match rustix::net::recv(raw, &mut buf, RecvFlags::DONTWAIT) {
            Ok((_, n)) => {
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                if n > ihl && buf[ihl] == icmp_type {
                    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                    return Some((src, buf[..n].to_vec()));
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}

/// The TTLs of the UDP packets to `port` the raw socket holds now.
fn drain_ttls(raw: &OwnedFd, port: u16) -> Vec<u8> {
    let mut ttls = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((_, n)) = rustix::net::recv(raw, &mut buf, RecvFlags::DONTWAIT) {
        let ip = &buf[..n];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if n >= ihl + 4 && u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]) == port {
            ttls.push(ip[8]);
        }
    }
    ttls
}

// --- the test ------------------------------------------------------------------------

/// A veth pair `vethN` between `a` (10.200.N.1/24) and `b` (10.200.N.2/24)
/// with [`QUEUES`] queues each way (what `Lab::link` does, with queues);
/// deleting the namespaces deletes it.
fn multiqueue_link(a: &Netns, b: &Netns, n: u8) -> Link {
    let link = Link {
        interface: format!("veth{n}"),
        a: Ipv4Addr::new(10, 200, n, 1),
        b: Ipv4Addr::new(10, 200, n, 2),
    };
    let ifname = link.interface.as_str();
    let q = QUEUES.to_string();
    #[rustfmt::skip]
    run(&["ip", "link", "add", ifname, "numtxqueues", &q, "numrxqueues", &q, "netns", a.name(),
          "type", "veth", "peer", "name", ifname, "numtxqueues", &q, "numrxqueues", &q,
          "netns", b.name()]).unwrap();
    for (ns, addr) in [(a, link.a), (b, link.b)] {
        let cidr = format!("{addr}/24");
        run(&["ip", "-n", ns.name(), "addr", "add", &cidr, "dev", ifname]).unwrap();
        run(&["ip", "-n", ns.name(), "link", "set", ifname, "up"]).unwrap();
    }
    link
}

/// Stops the LNS thread when the test leaves its scope, also by a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn lns_fast_path_forwards_subscriber_ip_both_ways() {
    let mut lab = Lab::new("fastpath-lns").expect("lab");
    let lac_ns = lab.namespace("lac").unwrap();
    let lns_ns = lab.namespace("lns").unwrap();
    let net_ns = lab.namespace("net").unwrap();
    let wan = multiqueue_link(&lac_ns, &lns_ns, 1);
    let core = multiqueue_link(&lns_ns, &net_ns, 2);
    for pool in [POOL, PEER_POOL] {
        lab.exec(
            &net_ns,
            &["ip", "route", "add", pool, "via", &core.a.to_string()],
        )
        .unwrap();
    }

    let lac_socket = lab
        .udp_socket(&lac_ns, SocketAddrV4::new(wan.a, L2TP_PORT).into())
        .unwrap();
    let server_addr = SocketAddrV4::new(core.b, SERVER_PORT);
    let server = lab.udp_socket(&net_ns, server_addr.into()).unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let raw = raw_udp_socket(&ns_path(&net_ns));
    let raw_icmp = raw_icmp_socket(&ns_path(&net_ns));
    let arp = arp_socket(&ns_path(&net_ns));
    let lns_core_mac = mac_of(&lab, &lns_ns, &core.interface);

    let stop = AtomicBool::new(false);
    let (commands, command_rx) = mpsc::channel();
    let lns_result = std::thread::scope(|scope| {
        let lns_thread =
            scope.spawn(|| run_lns(ns_path(&lns_ns), wan.b, core.b, &stop, command_rx));
        {
            let _stop = StopOnDrop(&stop);
            exercise(
                &commands,
                lac_socket,
                lns_addr(wan.b),
                &server,
                server_addr,
                (&raw, &raw_icmp),
                (&arp, lns_core_mac),
            );
        }
        lns_thread.join().expect("the LNS thread panicked")
    });
    lns_result.expect("the LNS thread failed");

    drop(lab);
    let namespaces = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let tag = format!("fastpath-lns-{}-", std::process::id());
    assert!(!namespaces.contains(&tag), "namespaces left:\n{namespaces}");
}

fn exercise(
    commands: &Sender<Cmd>,
    lac_socket: UdpSocket,
    lns: SocketAddrV4,
    server: &UdpSocket,
    server_addr: SocketAddrV4,
    (raw, raw_icmp): (&OwnedFd, &OwnedFd),
    (arp, lns_core_mac): (&OwnedFd, ethernet::Address),
) {
    // Subscribers up: their LCP, CHAP and IPCP went through the workers'
    // punts both ways.
    let started = StdInstant::now();
    let mut lac = Lac::new(lac_socket, lns);
    assert!(
        lac.run_until(Duration::from_secs(30), |l| l.up.len() == SUBSCRIBERS),
        "{} of {SUBSCRIBERS} subscribers up, down: {:?}",
        lac.up.len(),
        lac.down
    );
    let setup = started.elapsed();
    // Keep the subscribers' side turning while the LNS settles.
    let programmed_deadline = StdInstant::now() + Duration::from_secs(5);
    while ask(commands, Cmd::Programmed) < SUBSCRIBERS {
        assert!(
            StdInstant::now() < programmed_deadline,
            "sessions not programmed"
        );
        lac.turn(Duration::from_millis(5));
    }
    ask(commands, Cmd::Sync).expect("sync");
    let (before, _, _) = ask(commands, Cmd::Report);
    // Every call was programmed before its ICRP left, so no PPP frame of
    // the LAC's reached a worker that did not know its session (each would
    // cost a PPP restart, 3 s).
    for reason in [DropReason::UnknownSession, DropReason::UnknownTunnel] {
        assert_eq!(before.counters.drops(reason), 0, "{reason:?} at setup");
    }
    let _ = drain_ttls(raw, SERVER_PORT);

    // Each subscriber address was announced on the core side (gratuitous
    // ARP from the LNS's core port, RFC 5227 §3), as an adopting LNS does
    // so that the core sends the address's traffic to it at once.
    let addresses: Vec<Ipv4Addr> = lac.up.values().map(|&(_, a)| a).collect();
    let announced = |seen: &[(ethernet::Address, arp::Repr)]| {
        addresses
            .iter()
            .all(|a| seen.iter().any(|(_, r)| r.source_protocol_addr == *a))
    };
    let seen = wait_announcements(arp, Duration::from_secs(3), announced);
    assert!(
        announced(&seen),
        "not every subscriber address announced: {seen:?}"
    );
    for (source, repr) in seen
        .iter()
        .filter(|(_, r)| addresses.contains(&r.source_protocol_addr))
    {
        assert_eq!(*source, lns_core_mac, "Ethernet source of {repr:?}");
        assert_eq!(repr.source_hardware_addr, lns_core_mac, "{repr:?}");
        assert_eq!(repr.target_hardware_addr, ethernet::Address([0; 6]));
    }

    // Upstream: each subscriber sends through its data messages; the
    // server's kernel delivers them (checksums right) with TTL 63.
    let mut first_upstream = HashMap::new();
    let mut upstream_received = 0;
    let mut buf = [0u8; 2048];
    let t_up = StdInstant::now();
    for index in 0..SUBSCRIBERS {
        let (_, address) = lac.up[&index];
        let src = SocketAddrV4::new(address, SUBSCRIBER_PORT);
        for n in 0..PER_SUBSCRIBER {
            let payload = format!("up {index} {n}");
            let ip = ipv4_udp(src, server_addr, payload.as_bytes());
            let (to, message) = lac.data_message(index, &ip);
            first_upstream.entry(index).or_insert((to, message.clone()));
            lac.socket.send_to(&message, to).unwrap();
        }
        for _ in 0..PER_SUBSCRIBER {
            let Ok((n, from)) = server.recv_from(&mut buf) else {
                break;
            };
            assert_eq!(from, SocketAddr::V4(src), "{:?}", &buf[..n]);
            assert!(buf[..n].starts_with(format!("up {index} ").as_bytes()));
            upstream_received += 1;
        }
    }
    let upstream_time = t_up.elapsed();
    let ttls = drain_ttls(raw, SERVER_PORT);
    assert_eq!(ttls.len(), upstream_received, "raw socket copies");
    assert!(
        ttls.iter().all(|&t| t == 63),
        "TTLs at the server: {ttls:?}"
    );

    // Downstream: the server answers each subscriber; the workers tunnel it
    // to the LAC (TTL 63 inside).
    let t_down = StdInstant::now();
    for index in 0..SUBSCRIBERS {
        let (_, address) = lac.up[&index];
        for n in 0..PER_SUBSCRIBER {
            server
                .send_to(
                    format!("down {index} {n}").as_bytes(),
                    SocketAddrV4::new(address, SUBSCRIBER_PORT),
                )
                .unwrap();
        }
        let want = (index + 1) * PER_SUBSCRIBER;
        lac.run_until(Duration::from_secs(1), |l| l.downstream.len() >= want);
    }
    let downstream_time = t_down.elapsed();
    let by_address: HashMap<Ipv4Addr, usize> = lac.up.iter().map(|(&i, &(_, a))| (a, i)).collect();
    for ip in &lac.downstream {
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let index = by_address[&dst];
        assert_eq!(ip[8], 63, "TTL inside the tunnel");
        assert_eq!(&ip[12..16], &server_addr.ip().octets());
        assert!(ip[28..].starts_with(format!("down {index} ").as_bytes()));
    }
    let downstream_received = lac.downstream.len();

    let (after, glue, established) = ask(commands, Cmd::Report);
    let per_worker = ask(commands, Cmd::PerWorker);
    let forwarded = |s: &FastpathSummary, p| s.counters.forwards(p);
    let up_fwd =
        forwarded(&after, PathKind::LnsUpstream) - forwarded(&before, PathKind::LnsUpstream);
    let down_fwd =
        forwarded(&after, PathKind::LnsDownstream) - forwarded(&before, PathKind::LnsDownstream);
    eprintln!(
        "fastpath_lns: {SUBSCRIBERS} subscribers up in {setup:?}; \
         upstream {upstream_received}/{} in {upstream_time:?} (workers forwarded {up_fwd}), \
         downstream {downstream_received}/{} in {downstream_time:?} (workers forwarded {down_fwd}); \
         per worker {per_worker:?}; PPP punts {}; glue {glue:?}; latency {:?}; counters {:?}",
        SUBSCRIBERS * PER_SUBSCRIBER,
        SUBSCRIBERS * PER_SUBSCRIBER,
        after.counters.punts(PuntKind::LnsPpp),
        after.latency,
        after.counters.nonzero().collect::<Vec<_>>(),
    );
    assert_eq!(upstream_received, SUBSCRIBERS * PER_SUBSCRIBER);
    assert_eq!(downstream_received, SUBSCRIBERS * PER_SUBSCRIBER);
    assert_eq!(
        up_fwd as usize, upstream_received,
        "upstream not all through the workers"
    );
    assert_eq!(
        down_fwd as usize, downstream_received,
        "downstream not all through the workers"
    );
    assert!(
        after.counters.punts(PuntKind::LnsPpp) > 0,
        "PPP control was not punted"
    );
    assert_eq!(glue.ppp_unknown, 0);
    assert_eq!(glue.announcements_failed, 0);
    assert!(glue.announcements >= SUBSCRIBERS as u64, "{glue:?}");
    assert!(glue.announcements <= SUBSCRIBERS as u64 * u64::from(ANNOUNCE_NUM));
    assert_eq!(established, SUBSCRIBERS);
    assert_eq!(after.sessions, SUBSCRIBERS);
    assert_eq!(after.workers, QUEUES as usize);

    // The node learns each session's traffic from the workers (accounting,
    // Idle-Timeout).
    let (_, sub0) = lac.up[&0];
    let want = PER_SUBSCRIBER as u64;
    let deadline = StdInstant::now() + Duration::from_secs(3);
    let counters = loop {
        let c = ask(commands, |tx| Cmd::Counters(sub0, tx)).expect("session 0");
        if c.input_packets >= want && c.output_packets >= want {
            break c;
        }
        assert!(StdInstant::now() < deadline, "counters not synced: {c:?}");
        lac.turn(Duration::from_millis(20));
    };
    assert_eq!(
        (counters.input_packets, counters.output_packets),
        (want, want)
    );
    assert!(counters.input_octets >= want * 28 && counters.output_octets >= want * 28);

    // TTL 1 from a subscriber: ICMP Time Exceeded from the gateway comes
    // back in its session. TTL 1 from the core: back to the server.
    let (_, sub1) = lac.up[&1];
    let expired = ipv4_udp_ttl(
        SocketAddrV4::new(sub1, SUBSCRIBER_PORT),
        server_addr,
        b"expiring",
        1,
    );
    let (to, message) = lac.data_message(1, &expired);
    lac.socket.send_to(&message, to).unwrap();
    let seen = lac.downstream.len();
    assert!(
        lac.run_until(Duration::from_secs(2), |l| l.downstream.len() > seen),
        "no ICMP Time Exceeded for the subscriber"
    );
    let icmp = &lac.downstream[seen];
    assert_eq!(icmp[9], 1, "not ICMP: {icmp:02x?}");
    assert_eq!(&icmp[12..16], &GATEWAY.octets());
    assert_eq!(&icmp[16..20], &sub1.octets());
    assert_eq!(icmp[20], 11, "ICMP type");
    assert_eq!(&icmp[28..], &expired[..], "the quoted packet");
    server.set_ttl(1).unwrap();
    let (_, sub2) = lac.up[&2];
    server
        .send_to(b"expiring", SocketAddrV4::new(sub2, SUBSCRIBER_PORT))
        .unwrap();
    server.set_ttl(64).unwrap();
    let (from, icmp) = wait_icmp(raw_icmp, 11, Duration::from_secs(2))
        .expect("no ICMP Time Exceeded at the server");
    assert_eq!(from, GATEWAY);
    assert_eq!(
        &icmp[28 + 16..28 + 20],
        &sub2.octets(),
        "quoted destination"
    );
    let (icmp_counters, glue, _) = ask(commands, Cmd::Report);
    assert_eq!(icmp_counters.counters.punts(PuntKind::TimeExceeded), 2);
    assert_eq!(glue.icmp_sent, 2);
    lac.downstream.truncate(seen);

    // Session down: subscriber 0 is cleared; once its removal is live
    // everywhere, its traffic is dropped and counted, both ways.
    let (_, gone) = lac.up[&0];
    assert!(
        ask(commands, |tx| Cmd::Clear(gone, tx)),
        "no session for {gone}"
    );
    assert!(
        lac.run_until(Duration::from_secs(10), |l| l.down.contains(&0)),
        "subscriber 0 did not go down"
    );
    let removed_deadline = StdInstant::now() + Duration::from_secs(5);
    while ask(commands, Cmd::Programmed) != SUBSCRIBERS - 1 {
        assert!(StdInstant::now() < removed_deadline, "session not removed");
        lac.turn(Duration::from_millis(5));
    }
    ask(commands, Cmd::Sync).expect("sync");
    let (before, _, _) = ask(commands, Cmd::Report);
    let (to, message) = first_upstream[&0].clone();
    for _ in 0..PER_SUBSCRIBER {
        lac.socket.send_to(&message, to).unwrap();
        server
            .send_to(b"for nobody", SocketAddrV4::new(gone, SUBSCRIBER_PORT))
            .unwrap();
    }
    let downstream_before = lac.downstream.len();
    lac.run_until(Duration::from_millis(300), |_| false);
    assert!(
        server.recv_from(&mut buf).is_err(),
        "upstream of a removed session arrived"
    );
    assert_eq!(
        lac.downstream.len(),
        downstream_before,
        "downstream to a removed session arrived"
    );
    let (after, _, _) = ask(commands, Cmd::Report);
    let dropped = |s: &FastpathSummary, r| s.counters.drops(r);
    let unknown =
        dropped(&after, DropReason::UnknownSession) - dropped(&before, DropReason::UnknownSession);
    let no_session = dropped(&after, DropReason::NoSessionForDestination)
        - dropped(&before, DropReason::NoSessionForDestination);
    eprintln!(
        "fastpath_lns: after session down: {unknown} upstream and {no_session} downstream dropped"
    );
    assert_eq!(unknown as usize, PER_SUBSCRIBER);
    assert_eq!(no_session as usize, PER_SUBSCRIBER);
    assert_eq!(after.sessions, SUBSCRIBERS - 1);

    // A session adopted from a peer LNS keeps the peer's address, outside
    // our pool: it is steered to the workers (a /32) while the session
    // lasts, so its downstream goes through them into the tunnel, and it is
    // announced on the core side.
    ask(commands, |tx| Cmd::Adopt(PEER_ADDRESS, tx)).expect("adopted");
    ask(commands, Cmd::Sync).expect("sync");
    let announced = |seen: &[(ethernet::Address, arp::Repr)]| {
        seen.iter()
            .any(|(_, r)| r.source_protocol_addr == PEER_ADDRESS)
    };
    let seen = wait_announcements(arp, Duration::from_secs(3), announced);
    assert!(announced(&seen), "{PEER_ADDRESS} not announced: {seen:?}");
    let seen_before = lac.downstream.len();
    for n in 0..PER_SUBSCRIBER {
        server
            .send_to(
                format!("adopted {n}").as_bytes(),
                SocketAddrV4::new(PEER_ADDRESS, SUBSCRIBER_PORT),
            )
            .unwrap();
    }
    let want = seen_before + PER_SUBSCRIBER;
    lac.run_until(Duration::from_secs(2), |l| l.downstream.len() >= want);
    let adopted: Vec<&Vec<u8>> = lac.downstream[seen_before..]
        .iter()
        .filter(|ip| ip[16..20] == PEER_ADDRESS.octets())
        .collect();
    assert_eq!(
        adopted.len(),
        PER_SUBSCRIBER,
        "downstream to the adopted address through the workers"
    );
    // Session down: the address is the kernel's again (not steered).
    ask(commands, |tx| Cmd::AdoptedDown(PEER_ADDRESS, tx));
    ask(commands, Cmd::Sync).expect("sync");
    let (before, glue, _) = ask(commands, Cmd::Report);
    assert_eq!(glue.foreign_addresses, 0, "{glue:?}");
    assert_eq!(glue.steering_errors, 0, "{glue:?}");
    let downstream_before = lac.downstream.len();
    for _ in 0..PER_SUBSCRIBER {
        server
            .send_to(b"gone", SocketAddrV4::new(PEER_ADDRESS, SUBSCRIBER_PORT))
            .unwrap();
    }
    lac.run_until(Duration::from_millis(300), |_| false);
    assert_eq!(lac.downstream.len(), downstream_before);
    let (after, _, _) = ask(commands, Cmd::Report);
    assert_eq!(
        after.counters.received, before.counters.received,
        "the workers no longer see the address's traffic"
    );
}

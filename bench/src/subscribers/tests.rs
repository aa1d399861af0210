//! The PPPoE subscribers against an in-memory access concentrator: the
//! discovery server of `controlplane::pppoe` and a PPP server link per
//! session (users `sub{n}`, password "lab"), which also routes the test
//! packets (counts upstream, sends downstream).

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use controlplane::ppp::{self, Ipv4Assignment, PppConfig, PppLink, Role};
use controlplane::pppoe::{Server, ServerConfig, ServerEvent};
use controlplane::subscriber::AuthChoice;
use controlplane::time::Instant;
use dataplane::wire::ethernet::Address;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::emulator::{Emulator, EmulatorConfig, Stage};
use super::port::MemoryL2;
use super::runner::{PppoeSide, Side};
use super::stream::{Probe, Receiver, PROBE_LEN};
use super::traffic;

const AC_MAC: Address = Address([0x02, 0, 0, 0, 0, 0x01]);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const CORE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

/// The access concentrator and LNS in one.
struct Ac {
    pppoe: Server,
    links: HashMap<u16, (Address, PppLink)>,
    next_host: u8,
    upstream: Receiver,
    out: VecDeque<Vec<u8>>,
    rejected_logins: usize,
    /// Route the subscribers' IPv4 here (as IPv4 packets) instead of
    /// counting it in `upstream`.
    route: bool,
    routed: VecDeque<Vec<u8>>,
}

impl Ac {
    fn new() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let pppoe = Server::new(
            ServerConfig {
                mac: AC_MAC,
                ..ServerConfig::default()
            },
            Instant::ZERO,
            &mut rng,
        );
        Ac {
            pppoe,
            links: HashMap::new(),
            next_host: 10,
            upstream: Receiver::new(64).unwrap(),
            out: VecDeque::new(),
            rejected_logins: 0,
            route: false,
            routed: VecDeque::new(),
        }
    }

    fn handle(&mut self, now: Instant, frame: &[u8]) {
        if self.pppoe.handle_frame(now, frame) {
            while let Some(event) = self.pppoe.poll_event() {
                if let ServerEvent::SessionRequested {
                    mac, session_id, ..
                } = event
                {
                    let mut config = PppConfig::server();
                    config.address_control = false;
                    config.lcp.mru = 1492;
                    let mut link = PppLink::new(
                        Role::Server,
                        config,
                        Box::new(ChaCha8Rng::seed_from_u64(u64::from(session_id))),
                    );
                    link.open(now);
                    link.set_ipv4_assignment(
                        now,
                        Ipv4Assignment {
                            local: GATEWAY,
                            peer: Ipv4Addr::new(100, 64, 0, self.next_host),
                            primary_dns: None,
                            secondary_dns: None,
                        },
                    );
                    self.next_host += 1;
                    self.links.insert(session_id, (mac, link));
                }
            }
        } else if let Some(s) = traffic::read_session(frame) {
            let ip = s.ppp.get(2..).filter(|_| s.ppp.starts_with(&[0x00, 0x21]));
            if let (true, Some(ip)) = (self.route, ip) {
                self.routed.push_back(ip.to_vec());
            } else if let Some(payload) = traffic::read_ppp_udp(s.ppp) {
                self.upstream.receive(payload, now.as_nanos());
            } else if let Some((_, link)) = self.links.get_mut(&s.session_id) {
                link.handle_frame(now, s.ppp);
            }
        }
        self.service(now);
    }

    fn service(&mut self, now: Instant) {
        let mut buf = Vec::new();
        while self.pppoe.poll_frame(&mut buf) {
            self.out.push_back(core::mem::take(&mut buf));
        }
        for (&sid, (mac, link)) in self.links.iter_mut() {
            if link.poll_timeout().is_some_and(|t| t <= now) {
                link.handle_timeout(now);
            }
            while let Some(event) = link.poll_event() {
                if let ppp::Event::Authenticate(request) = event {
                    let ok =
                        request.username.starts_with(b"sub") && request.matches_password(b"lab");
                    if !ok {
                        self.rejected_logins += 1;
                    }
                    link.auth_verdict(now, ok);
                }
            }
            while let Some(ppp_frame) = link.poll_transmit(now) {
                self.out
                    .push_back(session_frame(AC_MAC, *mac, sid, &ppp_frame));
            }
        }
    }

    /// A downstream test packet to the subscriber with `address`.
    fn send_down(&mut self, address: Ipv4Addr, probe: &Probe) {
        let Some((&sid, (mac, _))) = self
            .links
            .iter()
            .find(|(_, (_, l))| l.state().ipcp.and_then(|i| i.peer) == Some(address))
        else {
            return;
        };
        let mut buf = [0u8; 256];
        // Built like an upstream frame with the ends swapped.
        let n = traffic::write_pppoe_udp(&mut buf, AC_MAC, *mac, sid, CORE, address, probe, 40)
            .unwrap();
        self.out.push_back(buf[..n].to_vec());
    }
}

impl Ac {
    /// An IPv4 packet from the core: into the session of its destination.
    fn deliver_down(&mut self, ip: &[u8]) {
        let Some(dst) = ip
            .get(16..20)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
        else {
            return;
        };
        let found = self
            .links
            .iter()
            .find(|(_, (_, l))| l.state().ipcp.and_then(|i| i.peer) == Some(dst));
        if let Some((&sid, (mac, _))) = found {
            let mut ppp = vec![0x00, 0x21];
            ppp.extend_from_slice(ip);
            self.out.push_back(session_frame(AC_MAC, *mac, sid, &ppp));
        }
    }
}

fn session_frame(src: Address, dst: Address, sid: u16, ppp: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00]);
    f.extend_from_slice(&sid.to_be_bytes());
    f.extend_from_slice(&(ppp.len() as u16).to_be_bytes());
    f.extend_from_slice(ppp);
    f
}

struct Bench {
    side: PppoeSide<MemoryL2>,
    ac: Ac,
    downstream: Receiver,
    now: Instant,
    /// The most subscribers seen between PADI and the first IPCP up.
    most_setting_up: usize,
}

impl Bench {
    fn new(subscribers: usize, password: &str) -> Self {
        let mut config = EmulatorConfig::new(subscribers, password, AuthChoice::Chap);
        config.max_setting_up = 4;
        let side = PppoeSide::new(Emulator::new(config, 1), MemoryL2::default());
        Bench {
            side,
            ac: Ac::new(),
            downstream: Receiver::new(subscribers).unwrap(),
            now: Instant::from_nanos(1_000_000_000),
            most_setting_up: 0,
        }
    }

    /// Run the wire and the timers for `duration` in 1 ms steps.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            for _ in 0..100 {
                self.side.flush(self.now);
                let mut moved = false;
                while let Some(frame) = self.side.port.tx.pop_front() {
                    moved = true;
                    self.ac.handle(self.now, &frame);
                }
                self.ac.service(self.now);
                while let Some(frame) = self.ac.out.pop_front() {
                    moved = true;
                    self.side.port.rx.push_back(frame);
                }
                self.side.receive(self.now, &mut self.downstream);
                if self.side.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.side.handle_timeout(self.now);
                }
                let setting_up = (0..self.side.emulator.len())
                    .filter(|&i| matches!(self.stage(i), Stage::Discovery | Stage::Negotiating))
                    .count();
                self.most_setting_up = self.most_setting_up.max(setting_up);
                if !moved {
                    break;
                }
            }
            self.now += Duration::from_millis(1);
        }
    }

    fn stage(&self, i: usize) -> Stage {
        self.side.emulator.status(i).unwrap().stage
    }
}

#[test]
fn subscribers_come_up_paced_and_carry_traffic_both_ways() {
    let n = 12;
    let mut b = Bench::new(n, "lab");
    b.side.start(b.now);
    b.run(Duration::from_secs(3));
    // Paced: never more than 4 between PADI and IPCP up.
    assert_eq!(b.most_setting_up, 4);
    assert_eq!(b.side.counts(), (n, n));
    assert_eq!(b.ac.rejected_logins, 0);
    let mut addresses = Vec::new();
    let mut changes = 0;
    while let Some((_, a)) = b.side.poll_change() {
        changes += 1;
        assert!(a.is_some());
    }
    assert_eq!(changes, n);
    for i in 0..n {
        let s = b.side.emulator.status(i).unwrap();
        assert_eq!(s.stage, Stage::Up);
        // The wire here takes no time: only that it was measured.
        assert!(s.setup_time.is_some());
        assert!(s.local_magic.is_some_and(|m| m != 0));
        assert!(s.peer_magic.is_some_and(|m| m != 0));
        assert_eq!((s.flaps, s.renegotiations), (0, 0));
        addresses.push(s.address.unwrap());
    }
    let mut distinct = addresses.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), n);

    // Traffic: 5 packets per subscriber each way.
    for seq in 0..5u64 {
        for (i, &addr) in addresses.iter().enumerate() {
            let probe = Probe {
                subscriber: i as u32,
                sequence: seq,
                sent_ns: b.now.as_nanos(),
            };
            assert!(b.side.send_upstream(i, CORE, &probe, PROBE_LEN));
            b.ac.send_down(addr, &probe);
        }
    }
    b.run(Duration::from_millis(5));
    assert_eq!(b.ac.upstream.received(), 5 * n as u64);
    assert_eq!(b.ac.upstream.foreign, 0);
    assert_eq!(b.downstream.received(), 5 * n as u64);
    assert!(b
        .downstream
        .streams
        .iter()
        .all(|s| s.received == 5 && s.reordered == 0));

    // The server restarts LCP on subscriber 0's session: a renegotiation,
    // and the subscriber comes back up. The access concentrator ends
    // subscriber 1's session: a flap.
    let (mac0, sid0) = b.side.emulator.status(0).unwrap().session.unwrap();
    let conf_req = [0xc0, 0x21, 0x01, 0x77, 0x00, 0x04];
    assert_eq!(mac0, AC_MAC);
    let mac_sub0 = b.side.emulator.status(0).unwrap().mac;
    b.side
        .port
        .rx
        .push_back(session_frame(AC_MAC, mac_sub0, sid0, &conf_req));
    let sid1 = b.side.emulator.status(1).unwrap().session.unwrap().1;
    assert!(b.ac.pppoe.terminate(b.now, None, sid1));
    b.ac.links.remove(&sid1);
    b.ac.service(b.now);
    b.run(Duration::from_secs(5));
    let s0 = b.side.emulator.status(0).unwrap();
    assert!(s0.renegotiations >= 1, "{s0:?}");
    assert_eq!(s0.stage, Stage::Up);
    assert_eq!(s0.flaps, 0);
    let s1 = b.side.emulator.status(1).unwrap();
    assert_eq!((s1.stage, s1.flaps), (Stage::Down, 1));
    assert_eq!(b.side.counts(), (n - 1, n));
    let report = b.side.subscribers();
    assert_eq!(report.len(), n);
    assert_eq!(report[1].flaps, 1);
    assert!(report[0].mac.as_deref() == Some("02:00:00:10:00:00"));

    // Hanging up sends a Terminate-Request and a PADT per subscriber.
    b.side.hang_up(b.now);
    b.side.flush(b.now);
    let padts = b
        .side
        .port
        .tx
        .iter()
        .filter(|f| f[12..14] == [0x88, 0x63] && f[15] == 0xa7)
        .count();
    assert_eq!(padts, n - 1);
}

#[test]
fn wrong_password_fails_every_subscriber_and_settles() {
    let n = 3;
    let mut b = Bench::new(n, "wrong");
    b.side.start(b.now);
    b.run(Duration::from_secs(10));
    assert_eq!(b.side.counts(), (0, n));
    assert!(b.ac.rejected_logins >= n);
    for i in 0..n {
        let s = b.side.emulator.status(i).unwrap();
        assert_eq!(s.stage, Stage::Down);
        assert_eq!(s.flaps, 0);
        assert!(
            s.down_cause.as_deref().is_some_and(|c| c.contains("Auth")),
            "{s:?}"
        );
    }
}

/// Namespaces for one test, deleted on drop (also when the test fails).
struct Namespaces(Vec<String>);

impl Namespaces {
    fn create(roles: &[&str]) -> Self {
        // Namespaces of a test process that was killed (no drop ran): its
        // pid is gone.
        for entry in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("l2bt-").and_then(|r| r.split('-').next()) else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &name])
                    .status();
            }
        }
        let pid = std::process::id();
        let names: Vec<String> = roles.iter().map(|r| format!("l2bt-{pid}-{r}")).collect();
        let ns = Namespaces(names);
        for name in &ns.0 {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ns
    }

    fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .status();
        }
    }
}

#[track_caller]
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole of `l2bench run` on real sockets: subscribers on a raw port in
/// one namespace, the in-memory access concentrator on the other end of the
/// veth (routing to a core veth), the traffic side in a third namespace.
#[test]
fn run_over_veth_between_namespaces() {
    run_over_veth("packet");
}

/// The same with the subscribers on AF_XDP (copy mode, generic XDP).
#[test]
fn run_over_veth_between_namespaces_with_af_xdp() {
    run_over_veth("afxdp");
}

fn run_over_veth(io: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use clap::Parser;

    use super::port::{enter_netns, L2Port, PacketSocket};
    use super::stream::monotonic_ns;

    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (network namespaces)");
        return;
    }
    let ns = Namespaces::create(&[&format!("cpe{io}"), &format!("ac{io}"), &format!("net{io}")]);
    let (cpe, ac, net) = (ns.name(0), ns.name(1), ns.name(2));
    // Two queues each way, as the lab's veths have: frames land on the
    // queue of the sender's CPU, and an AF_XDP port must serve both.
    ip(&[
        "link",
        "add",
        "cpe0",
        "netns",
        cpe,
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "ac0",
        "netns",
        ac,
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
    ]);
    let core_mac = "02:09:00:00:00:01";
    let net_mac = [0x02, 0x09, 0, 0, 0, 0x02];
    ip(&[
        "link",
        "add",
        "core0",
        "netns",
        ac,
        "address",
        core_mac,
        "type",
        "veth",
        "peer",
        "name",
        "net0",
        "netns",
        net,
        "address",
        "02:09:00:00:00:02",
    ]);
    ip(&["-n", ac, "addr", "add", "10.9.0.1/24", "dev", "core0"]);
    ip(&["-n", net, "addr", "add", "10.9.0.2/24", "dev", "net0"]);
    for (n, dev) in [(cpe, "cpe0"), (ac, "ac0"), (ac, "core0"), (net, "net0")] {
        ip(&["-n", n, "link", "set", dev, "up"]);
    }
    ip(&[
        "-n",
        net,
        "route",
        "add",
        "100.64.0.0/24",
        "via",
        "10.9.0.1",
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let ac_thread = {
        let stop = stop.clone();
        let ac = ac.to_string();
        std::thread::spawn(move || {
            enter_netns(&ac).unwrap();
            let mut access = PacketSocket::open("ac0").unwrap();
            let mut core = PacketSocket::open("core0").unwrap();
            let mut node = Ac::new();
            node.route = true;
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::from_nanos(monotonic_ns());
                let mut busy = false;
                while let Some(n) = access.receive(&mut buf) {
                    busy = true;
                    node.handle(now, &buf[..n]);
                }
                while let Some(n) = core.receive(&mut buf) {
                    busy = true;
                    // IPv4 to the subscribers' prefix (the kernel answers
                    // ARP for 10.9.0.1 and drops the rest: no forwarding).
                    let frame = &buf[..n];
                    if frame.get(12..14) == Some(&[0x08, 0x00]) && frame.get(30) == Some(&100) {
                        node.deliver_down(&frame[14..]);
                    }
                }
                node.service(now);
                while let Some(frame) = node.out.pop_front() {
                    access.send(&frame);
                }
                while let Some(packet) = node.routed.pop_front() {
                    let mut frame = net_mac.to_vec();
                    frame.extend_from_slice(&[0x02, 0x09, 0, 0, 0, 0x01, 0x08, 0x00]);
                    frame.extend_from_slice(&packet);
                    core.send(&frame);
                }
                if !busy {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }
    let cli = Cli::parse_from([
        "l2bench",
        "--netns",
        cpe,
        "--interface",
        "cpe0",
        "--io",
        io,
        "--subscribers",
        "6",
        "--max-setting-up",
        "3",
        "--traffic-netns",
        net,
        "--traffic-addr",
        "10.9.0.2",
        "--rate",
        "600",
        "--duration",
        "1",
        "--setup-timeout",
        "20",
        "--quiet",
    ]);
    let report = super::runner::run(&cli.args);
    stop.store(true, Ordering::Relaxed);
    ac_thread.join().unwrap();
    let report = report.unwrap();
    eprintln!("{report}");
    assert_eq!((report.sessions_requested, report.sessions_up), (6, 6));
    assert_eq!(report.sessions_flapped, 0);
    assert_eq!(report.renegotiations, 0);
    assert!(report.setup_ms.max > 0.0);
    for d in [&report.upstream, &report.downstream] {
        // 600 pps for 1 s, give or take the pacer's start.
        assert!(d.sent >= 500, "{d:?}");
        assert_eq!(d.lost, 0, "{d:?}");
        assert_eq!(d.received, d.sent, "{d:?}");
        assert_eq!(d.duplicated, 0, "{d:?}");
        assert!(d.latency_us.max > 0.0, "{d:?}");
    }
    assert!(report.subscribers.iter().all(|s| s.up_at_end));
}

/// Mode `l2tp` against the LNS node over loopback: every call comes up
/// with its own address (no traffic: the node has no data plane).
#[test]
fn l2tp_mode_brings_sessions_up_against_the_lns_node() {
    use std::net::UdpSocket;
    use std::ops::ControlFlow;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use clap::Parser;
    use controlplane::aaa::pool::AddressPool;
    use controlplane::aaa::users::Users;
    use controlplane::aaa::Authenticator;
    use controlplane::driver::Driver;
    use controlplane::lns;

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lns_addr = socket.local_addr().unwrap().to_string();
    let users = Users::parse("sub0 lab\n", "users").unwrap();
    let node = lns::Node::new(
        lns::Config::new("lns", GATEWAY),
        Authenticator::local(users),
        AddressPool::parse(&["100.64.0.2-100.64.0.60"]).unwrap(),
        Box::new(ChaCha8Rng::seed_from_u64(3)),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let lns_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut driver = Driver::new(socket, node).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let until = driver.now() + Duration::from_millis(20);
                driver
                    .run_until(until, |_, _| ControlFlow::Continue(()))
                    .unwrap();
            }
        })
    };

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }
    let cli = Cli::parse_from([
        "l2bench",
        "--mode",
        "l2tp",
        "--lns",
        &lns_addr,
        "--bind",
        "127.0.0.1:0",
        "--subscribers",
        "5",
        "--max-setting-up",
        "2",
        "--setup-timeout",
        "20",
        "--quiet",
    ]);
    let report = super::runner::run(&cli.args);
    stop.store(true, Ordering::Relaxed);
    lns_thread.join().unwrap();
    let report = report.unwrap();
    assert_eq!(report.mode, "l2tp");
    assert_eq!((report.sessions_requested, report.sessions_up), (5, 5));
    assert_eq!((report.sessions_flapped, report.renegotiations), (0, 0));
    let mut addresses: Vec<_> = report
        .subscribers
        .iter()
        .map(|s| s.address.clone().unwrap())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 5);
    assert!(report.subscribers.iter().all(|s| s.peer_magic.is_some()));
}

/// The emulated subscribers on the access port of our LAC node, which
/// relays to our LNS node over the simulated network: the real chain.
mod through_lac_and_lns {
    use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use core::time::Duration;

    use controlplane::aaa::pool::AddressPool;
    use controlplane::aaa::users::Users;
    use controlplane::aaa::Authenticator;
    use controlplane::lac::{self, LnsEntry};
    use controlplane::lns;
    use controlplane::sim::{self, LinkConditions, NodeId, Sim};
    use controlplane::subscriber::AuthChoice;
    use controlplane::time::Instant;
    use dataplane::wire::ethernet::Address;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::subscribers::emulator::{Emulator, EmulatorConfig, Stage};
    use crate::subscribers::port::MemoryL2;
    use crate::subscribers::runner::{PppoeSide, Side};
    use crate::subscribers::stream::Receiver;

    const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
    const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 1701);
    const LAC_MAC: Address = Address([0x02, 0, 0, 0, 0, 0x01]);

    struct Site {
        lac: lac::Node,
        side: PppoeSide<MemoryL2>,
        downstream: Receiver,
    }

    impl Site {
        /// Move frames both ways on the access port until it is quiet.
        fn shuttle(&mut self, now: Instant) {
            let mut buf = Vec::new();
            loop {
                self.side.flush(now);
                let mut moved = false;
                while let Some(frame) = self.side.port.tx.pop_front() {
                    moved = true;
                    self.lac.handle_access_frame(now, &frame);
                }
                while self.lac.poll_access_frame(&mut buf) {
                    moved = true;
                    self.side.port.rx.push_back(core::mem::take(&mut buf));
                }
                while self.side.receive(now, &mut self.downstream) {}
                if !moved {
                    break;
                }
            }
        }
    }

    enum Party {
        Lns(Box<lns::Node>),
        Site(Box<Site>),
    }

    impl sim::Node for Party {
        type Event = ();

        fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
            match self {
                Party::Lns(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
                Party::Site(s) => {
                    sim::Node::handle_datagram(&mut s.lac, now, from, payload);
                    s.shuttle(now);
                }
            }
        }

        fn handle_timeout(&mut self, now: Instant) {
            match self {
                Party::Lns(n) => sim::Node::handle_timeout(&mut **n, now),
                Party::Site(s) => {
                    if s.lac.poll_timeout().is_some_and(|t| t <= now) {
                        s.lac.handle_timeout(now);
                    }
                    if s.side.poll_timeout().is_some_and(|t| t <= now) {
                        s.side.handle_timeout(now);
                    }
                    s.shuttle(now);
                }
            }
        }

        fn poll_timeout(&self) -> Option<Instant> {
            match self {
                Party::Lns(n) => sim::Node::poll_timeout(&**n),
                Party::Site(s) => [s.lac.poll_timeout(), s.side.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min(),
            }
        }

        fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
            match self {
                Party::Lns(n) => sim::Node::poll_transmit(&mut **n, now, buf),
                Party::Site(s) => sim::Node::poll_transmit(&mut s.lac, now, buf),
            }
        }

        fn poll_event(&mut self) -> Option<()> {
            match self {
                Party::Lns(n) => sim::Node::poll_event(&mut **n).map(|_| ()),
                Party::Site(s) => sim::Node::poll_event(&mut s.lac).map(|_| ()),
            }
        }
    }

    fn site(sim: &Sim<Party>, id: NodeId) -> &Site {
        match sim.node(id) {
            Party::Site(s) => s,
            Party::Lns(_) => unreachable!(),
        }
    }

    #[test]
    fn subscribers_come_up_through_our_lac_and_lns_without_renegotiation() {
        let n = 40;
        let mut sim = Sim::new(
            Box::new(ChaCha8Rng::seed_from_u64(9)),
            LinkConditions::delay(Duration::from_millis(2)),
        );
        sim.max_steps = 5_000_000;
        let users: String = (0..n).map(|i| format!("sub{i} lab\n")).collect();
        sim.add_node(
            LNS,
            Party::Lns(Box::new(
                lns::Node::new(
                    lns::Config::new("lns1", Ipv4Addr::new(100, 64, 0, 1)),
                    Authenticator::local(Users::parse(&users, "users").unwrap()),
                    AddressPool::parse(&["100.64.0.2 - 100.64.3.254"]).unwrap(),
                    Box::new(ChaCha8Rng::seed_from_u64(1)),
                )
                .unwrap(),
            )),
        );
        let mut config = lac::Config::new(
            "lac",
            LAC_MAC,
            vec![LnsEntry {
                address: LNS,
                preference: 0,
                weight: 1,
            }],
        );
        config.local_address = LAC;
        let now = sim.now();
        let mut emulator = EmulatorConfig::new(n, "lab", AuthChoice::Chap);
        emulator.max_setting_up = 8;
        let mut side = PppoeSide::new(Emulator::new(emulator, 5), MemoryL2::default());
        side.start(now);
        let site_id = sim.add_node(
            LAC,
            Party::Site(Box::new(Site {
                lac: lac::Node::new(config, now, Box::new(ChaCha8Rng::seed_from_u64(3))).unwrap(),
                side,
                downstream: Receiver::new(n).unwrap(),
            })),
        );
        // Kick the access port once; the sim drives the rest.
        if let Party::Site(s) = sim.node_mut(site_id) {
            s.shuttle(now);
        }
        let deadline = sim.now() + Duration::from_secs(30);
        let all_up = sim
            .run_until(deadline, |sim| site(sim, site_id).side.counts().1 == n)
            .unwrap();
        let s = site(&sim, site_id);
        assert!(all_up, "settled: {:?}", s.side.counts());
        assert_eq!(s.side.counts(), (n, n));
        // Let the echoes run a while: nothing renegotiates, nothing flaps.
        sim.run_for(Duration::from_secs(25)).unwrap();
        let s = site(&sim, site_id);
        assert_eq!(s.lac.up_count(), n);
        let report = s.side.subscribers();
        for r in &report {
            assert_eq!((r.flaps, r.renegotiations), (0, 0), "{r:?}");
            assert!(r.up_at_end);
            assert!(r
                .address
                .as_deref()
                .is_some_and(|a| a.starts_with("100.64.")));
        }
        let mut addresses: Vec<_> = report.iter().map(|r| r.address.clone()).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), n);

        // Hanging up ends every call at the LAC.
        let now = sim.now();
        if let Party::Site(s) = sim.node_mut(site_id) {
            s.side.hang_up(now);
            s.shuttle(now);
        }
        sim.run_for(Duration::from_secs(5)).unwrap();
        let s = site(&sim, site_id);
        assert_eq!(s.lac.up_count(), 0);
        assert!((0..n).all(|i| s.side.emulator.status(i).unwrap().stage == Stage::Down));
    }
}

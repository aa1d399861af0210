//! The LAC with its fast path on real veth pairs: PPPoE subscribers find
//! the LAC through discovery frames the access port's workers punt to the
//! lac node, their PPP reaches an LNS over L2TP, and once each call is up
//! the workers relay PPPoE ↔ L2TP both ways.
//!
//! **Needs root** (network namespaces, veth, BPF, AF_XDP), as CI runs.
//!
//! ```text
//!   cpe                          lac                            lns
//!   veth1  <── access ──>  veth1 (port 0)
//!   AF_XDP port, steering  lac::Node + LacFastpath
//!   takes every frame:     veth2 10.200.2.1 (port 1) <──>  veth2 10.200.2.2
//!   PPPoE clients and                                      lns::Node over its
//!   PPP links (own loop)                                   UDP socket (kernel)
//! ```
//!
//! The subscribers' side is the test's own loop over an AF_XDP port whose
//! steering program sends it every frame. The LAC and the LNS run on
//! threads inside their namespaces, each as its daemon would (driver in
//! 1 ms slices; the LAC also programs and services its fast path). Data
//! upstream ends in the LNS node (counted there as subscriber traffic),
//! data downstream is sent by the LNS node's endpoint; the LAC workers'
//! counters must show both relayed.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant as StdInstant};

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::driver::{Clock, Driver};
use controlplane::fastpath::lac::LacFastpath;
use controlplane::fastpath::{FastpathConfig, FastpathSummary, Role};
use controlplane::l2tp::{LnsPeer, SessionHandle};
use controlplane::lac::{self, LnsEntry};
use controlplane::lns;
use controlplane::ppp::{self, Credentials, PppConfig, PppLink};
use controlplane::pppoe::client::{self as pppoe_client, Client};
use dataplane::counters::PathKind;
use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, Steering, SteeringOptions, XdpMode};
use dataplane::io::{Descriptor, Port};
use dataplane::wire::ethernet;
use dataplane::wire::{ipv4, udp};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use support::netns::{run, Lab, Link, Netns};

const SUBSCRIBERS: usize = 8;
/// Frames per subscriber and direction.
const PER_SUBSCRIBER: usize = 20;
const L2TP_PORT: u16 = 1701;
const ACCESS_MAC: [u8; 6] = [0x02, 0xac, 0, 0, 0, 1];
const GATEWAY: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
/// How long either daemon thread may run, whatever happens.
const THREAD_LIMIT: Duration = Duration::from_secs(120);

fn ns_path(ns: &Netns) -> PathBuf {
    PathBuf::from("/run/netns").join(ns.name())
}

fn enter(ns: &PathBuf) {
    let file = File::open(ns).expect("opening the namespace");
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).expect("setns");
}

fn ask<T>(commands: &Sender<Cmd>, make: impl FnOnce(Sender<T>) -> Cmd) -> T {
    let (tx, rx) = mpsc::channel();
    commands.send(make(tx)).expect("the thread is gone");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the thread did not answer")
}

/// What the daemon threads are asked.
enum Cmd {
    /// LAC: the workers' counters and how many calls are up.
    LacReport(Sender<(FastpathSummary, usize)>),
    /// LNS: subscriber frames the node received, and sessions established.
    LnsReport(Sender<(u64, usize)>),
    /// LNS: send these IPv4 packets into the session of their destination.
    LnsSend(Vec<Vec<u8>>, Sender<usize>),
    /// LAC: sessions the workers hold for a move, recoveries done, and the
    /// workers' counters.
    LacHa(Sender<(usize, u64, FastpathSummary)>),
    /// LNS: sessions of its peer it stores, sessions it adopted.
    LnsHa(Sender<(usize, u64)>),
    /// LNS: sessions it dropped as moved (fenced), sessions moved away by
    /// a LAC's release.
    LnsMoved(Sender<(u64, u64, String)>),
    /// LNS: stop serving for this long (its socket stays open).
    LnsPause(Duration, Sender<()>),
    /// LNS: die, as `kill -9` (its socket closes).
    LnsKill,
    /// LNS: ask the LACs to move every session to the peer (STPLRQ all);
    /// how many were asked.
    LnsSwitchover(Sender<usize>),
}

// --- the LNS: kernel path only --------------------------------------------------

fn run_lns(
    ns: PathBuf,
    addr: Ipv4Addr,
    ha_peer: Option<Ipv4Addr>,
    stop: &AtomicBool,
    commands: Receiver<Cmd>,
) {
    enter(&ns);
    let socket = UdpSocket::bind(SocketAddrV4::new(addr, L2TP_PORT)).unwrap();
    let mut config = lns::Config::new("lns", GATEWAY);
    if let Some(peer) = ha_peer {
        config.l2tp.ack_delay = Duration::from_millis(10);
        config.ha = Some(lns::HaConfig::new(
            addr,
            vec![LnsPeer {
                address: peer,
                secret: b"lns-lns".to_vec(),
            }],
        ));
    }
    let node = lns::Node::new(
        config,
        Authenticator::local(Users::parse("sub lab\n", "users").unwrap()),
        AddressPool::parse(&["100.64.0.0/24"]).unwrap(),
        Box::new(ChaCha8Rng::seed_from_u64(1)),
    )
    .unwrap();
    let mut driver = Driver::new(socket, node).unwrap();
    let mut sessions: HashMap<Ipv4Addr, SessionHandle> = HashMap::new();
    let started = StdInstant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < THREAD_LIMIT {
        let slice_end = driver.now() + Duration::from_millis(1);
        driver
            .run_until(slice_end, |_node, event| {
                if let lns::Event::SessionEstablished(s) = event {
                    sessions.insert(s.address, s.session);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Cmd::LnsReport(reply) => {
                    let node = driver.node();
                    let _ = reply.send((node.stats().data_frames, node.established_count()));
                }
                Cmd::LnsSend(packets, reply) => {
                    let mut sent = 0;
                    for p in packets {
                        let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                        let Some(&h) = sessions.get(&dst) else {
                            continue;
                        };
                        let frame = [&[0xff, 0x03, 0x00, 0x21][..], &p].concat();
                        let t = driver.node_mut().endpoint_mut().send_data(h, &frame);
                        if let Ok(t) = t {
                            if driver.send(SocketAddr::V4(t.remote), &t.payload).is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    let _ = reply.send(sent);
                }
                Cmd::LnsHa(reply) => {
                    let node = driver.node();
                    let status = node.ha_status();
                    let _ = reply.send((
                        status.as_ref().map_or(0, |s| s.sessions_stored),
                        status.map_or(0, |s| s.stats.sessions_adopted),
                    ));
                }
                Cmd::LnsPause(pause, reply) => {
                    std::thread::sleep(pause);
                    let _ = reply.send(());
                }
                Cmd::LnsKill => return,
                Cmd::LnsMoved(reply) => {
                    let stats = driver.node().ha_stats().unwrap_or_default();
                    let e = driver.node().endpoint().stats();
                    let data = format!(
                        "data delivered {} unknown session {} unknown tunnel {} wrong source {}, node data frames {}",
                        e.data_delivered,
                        e.data_unknown_session,
                        e.data_unknown_tunnel,
                        e.data_wrong_source,
                        driver.node().stats().data_frames
                    );
                    let _ = reply.send((stats.sessions_fenced, stats.sessions_moved, data));
                }
                Cmd::LnsSwitchover(reply) => {
                    let now = driver.now();
                    let asked = driver
                        .node_mut()
                        .ha_switchover(now, lns::SwitchoverType::All, &[])
                        .unwrap();
                    let _ = reply.send(asked);
                }
                _ => unreachable!(),
            }
        }
    }
}

// --- the LAC with its fast path ----------------------------------------------------

fn run_lac(
    ns: PathBuf,
    wan: Ipv4Addr,
    lns: &[Ipv4Addr],
    ha: bool,
    stop: &AtomicBool,
    commands: Receiver<Cmd>,
) {
    enter(&ns);
    let local = SocketAddrV4::new(wan, L2TP_PORT);
    let socket = UdpSocket::bind(local).unwrap();
    let mac = ethernet::Address(ACCESS_MAC);
    // The first LNS takes every call; the others are its peers.
    let entries = lns
        .iter()
        .enumerate()
        .map(|(i, &a)| LnsEntry {
            address: SocketAddrV4::new(a, L2TP_PORT),
            preference: i as u32,
            weight: 1,
        })
        .collect();
    let mut config = lac::Config::new("lac", mac, entries);
    config.local_address = local;
    if ha {
        // As lacd's [ha] defaults: Hello every 100 ms, dead after 300 ms.
        config.ha = Some(lac::HaPolicy::default());
        config.l2tp.hello_interval = Some(Duration::from_millis(100));
        config.l2tp.dead_interval = Some(Duration::from_millis(300));
    }
    // As lacd does with a fast path: the workers know each call before
    // the LNS has its ICCN (and sends its first PPP frames).
    config.defer_connect = Some(Duration::from_secs(2));
    let clock = Clock::new();
    let node = lac::Node::new(config, clock.now(), Box::new(ChaCha8Rng::seed_from_u64(3))).unwrap();
    let mut driver = Driver::with_clock(socket, node, clock).unwrap();
    let fp_config = FastpathConfig {
        max_sessions: 1024,
        ..FastpathConfig::new(Role::Lac, vec!["veth1".into(), "veth2".into()], vec![wan])
    };
    let mut fp = LacFastpath::start(fp_config, mac).unwrap();
    let started = StdInstant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < THREAD_LIMIT {
        let slice_end = driver.now() + Duration::from_millis(1);
        driver
            .run_until(slice_end, |_node, event| {
                fp.program(&event);
                ControlFlow::Continue(())
            })
            .unwrap();
        let now = driver.now();
        fp.service(driver.node_mut(), now);
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Cmd::LacReport(reply) => {
                    let summary = fp.fastpath().fresh_reports(Duration::from_secs(2)).unwrap();
                    let _ = reply.send((summary, driver.node().up_count()));
                }
                Cmd::LacHa(reply) => {
                    let summary = fp.fastpath().fresh_reports(Duration::from_secs(2)).unwrap();
                    let done = driver.node().stats().recoveries_done;
                    let _ = reply.send((fp.holding_sessions(), done, summary));
                }
                _ => unreachable!(),
            }
        }
    }
    fp.stop();
}

// --- the subscribers ------------------------------------------------------------------

struct Subscriber {
    mac: ethernet::Address,
    discovery: Client,
    link: PppLink,
    /// The LAC's MAC and the PPPoE session, once discovery is done.
    session: Option<(ethernet::Address, u16)>,
    address: Option<Ipv4Addr>,
    /// From discovery done to PPP up (IPCP included).
    ppp_setup: Option<Duration>,
    discovered: Option<StdInstant>,
    /// IPv4 packets received.
    received: Vec<Vec<u8>>,
    /// PPP came up (once, unless renegotiated).
    ups: usize,
    /// LCP renegotiations and link downs seen.
    renegotiations: usize,
}

struct Cpe {
    port: AfXdpPort,
    subscribers: Vec<Subscriber>,
    clock: Clock,
}

impl Cpe {
    fn send(&mut self, frame: &[u8]) {
        let mut d = self.port.alloc().expect("a free frame");
        d.len = frame.len() as u32;
        let range = d.range();
        self.port.frame_mut(d.frame)[range].copy_from_slice(frame);
        assert_eq!(self.port.transmit(&[d]), 1);
        self.port.flush();
    }

    fn pppoe_session(
        to: ethernet::Address,
        from: ethernet::Address,
        sid: u16,
        ppp: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::with_capacity(20 + ppp.len());
        f.extend_from_slice(&to.0);
        f.extend_from_slice(&from.0);
        f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00]);
        f.extend_from_slice(&sid.to_be_bytes());
        f.extend_from_slice(&(ppp.len() as u16).to_be_bytes());
        f.extend_from_slice(ppp);
        f
    }

    /// One turn: timers, output, then what the port received.
    fn turn(&mut self) {
        let now = self.clock.now();
        let mut out = Vec::new();
        for s in &mut self.subscribers {
            if s.discovery.poll_timeout().is_some_and(|t| t <= now) {
                s.discovery.handle_timeout(now);
            }
            if s.link.poll_timeout().is_some_and(|t| t <= now) {
                s.link.handle_timeout(now);
            }
            let mut buf = Vec::new();
            while s.discovery.poll_frame(&mut buf) {
                out.push(buf.clone());
            }
            while let Some(event) = s.discovery.poll_event() {
                if let pppoe_client::Event::Up { ac_mac, session_id } = event {
                    s.discovered = Some(StdInstant::now());
                    s.session = Some((ac_mac, session_id));
                    s.link.open(now);
                }
            }
            while let Some(frame) = s.link.poll_transmit(now) {
                if let Some((ac, sid)) = s.session {
                    out.push(Cpe::pppoe_session(ac, s.mac, sid, &frame));
                }
            }
            while let Some(event) = s.link.poll_event() {
                match event {
                    ppp::Event::Up(state) => {
                        s.ups += 1;
                        s.ppp_setup = s.discovered.map(|t| t.elapsed());
                        s.address = state.ipcp.and_then(|r| r.local);
                    }
                    ppp::Event::Renegotiating | ppp::Event::Down { .. } => s.renegotiations += 1,
                    _ => {}
                }
            }
        }
        for frame in out {
            self.send(&frame);
        }
        let mut burst = [Descriptor::default(); 16];
        let n = self.port.receive(&mut burst);
        for d in &burst[..n] {
            let frame = self.port.frame(d.frame)[d.range()].to_vec();
            self.port.free(*d);
            self.deliver(now, &frame);
        }
        if n == 0 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn deliver(&mut self, now: controlplane::time::Instant, frame: &[u8]) {
        if frame.len() < 20 {
            return;
        }
        let dst = ethernet::Address([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]]);
        let Some(s) = self.subscribers.iter_mut().find(|s| s.mac == dst) else {
            return;
        };
        match [frame[12], frame[13]] {
            [0x88, 0x63] => {
                s.discovery.handle_frame(now, frame);
            }
            [0x88, 0x64] => {
                let len = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
                let Some(ppp) = frame.get(20..20 + len) else {
                    return;
                };
                if ppp.starts_with(&[0x00, 0x21]) {
                    s.received.push(ppp[2..].to_vec());
                } else {
                    s.link.handle_frame(now, ppp);
                }
            }
            _ => {}
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Cpe) -> bool) -> bool {
        let deadline = StdInstant::now() + limit;
        while !done(self) {
            if StdInstant::now() >= deadline {
                return false;
            }
            self.turn();
        }
        true
    }
}

/// IPv4/UDP from `src` to `dst` with `payload`, checksums filled.
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
    .unwrap();
    udp::Repr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload_len: payload.len(),
    }
    .emit(&mut p[ipv4::HEADER_LEN..])
    .unwrap();
    p[ipv4::HEADER_LEN + udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Packet::new_unchecked(&mut p[ipv4::HEADER_LEN..]).fill_checksum(*src.ip(), *dst.ip());
    p
}

/// Stops the daemon threads when the test leaves its scope, also by a
/// panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The lab `name`: the subscribers' (`cpe`), the LAC's and the LNS's
/// namespaces, the access link (veth1) between the first two and the wan
/// link (veth2) between the last two, the LAC's access end at
/// [`ACCESS_MAC`].
fn lac_lab(name: &str) -> (Lab, [Netns; 3], [Link; 2]) {
    let mut lab = Lab::new(name).expect("lab");
    let cpe_ns = lab.namespace("cpe").unwrap();
    let lac_ns = lab.namespace("lac").unwrap();
    let lns_ns = lab.namespace("lns").unwrap();
    let access = lab.link(&cpe_ns, &lac_ns).unwrap();
    let wan = lab.link(&lac_ns, &lns_ns).unwrap();
    let mac = ACCESS_MAC.map(|b| format!("{b:02x}")).join(":");
    run(&[
        "ip",
        "-n",
        lac_ns.name(),
        "link",
        "set",
        "veth1",
        "address",
        &mac,
    ])
    .unwrap();
    (lab, [cpe_ns, lac_ns, lns_ns], [access, wan])
}

/// The subscribers' side: every frame of cpe's veth1 to an AF_XDP socket
/// (the steering program must live as long as the port), and `n`
/// subscribers not started yet.
fn cpe(cpe_ns: &Netns, n: usize) -> (Steering, Cpe) {
    let ns = ns_path(cpe_ns);
    let (steering, port) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(&ns);
                let options = SteeringOptions {
                    everything: true,
                    ..SteeringOptions::default()
                };
                let s = Steering::attach_with("veth1", XdpMode::Skb, options).unwrap();
                let p = AfXdpPort::open(&AfXdpConfig::new("veth1", 0), Some(&s)).unwrap();
                (s, p)
            })
            .join()
            .unwrap()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let subscribers = (0..n)
        .map(|i| {
            let mac = ethernet::Address([0x02, 0xcc, 0, 0, 0, i as u8 + 1]);
            let mut ppp = PppConfig::client(Credentials {
                username: b"sub".to_vec(),
                password: b"lab".to_vec(),
            });
            ppp.address_control = false;
            ppp.lcp.mru = 1492;
            Subscriber {
                mac,
                discovery: Client::new(
                    pppoe_client::Config {
                        mac,
                        ..pppoe_client::Config::default()
                    },
                    &mut rng,
                ),
                link: PppLink::new(
                    ppp::Role::Client,
                    ppp,
                    Box::new(ChaCha8Rng::seed_from_u64(10 + i as u64)),
                ),
                session: None,
                address: None,
                ppp_setup: None,
                discovered: None,
                received: Vec::new(),
                ups: 0,
                renegotiations: 0,
            }
        })
        .collect();
    let cpe = Cpe {
        port,
        subscribers,
        clock: Clock::new(),
    };
    (steering, cpe)
}

#[test]
fn lac_fast_path_relays_pppoe_and_l2tp_both_ways() {
    let (lab, [cpe_ns, lac_ns, lns_ns], [access, wan]) = lac_lab("fastpath-lac");
    assert_eq!(access.interface, "veth1");
    assert_eq!(wan.interface, "veth2");

    let (steering, mut cpe) = cpe(&cpe_ns, SUBSCRIBERS);
    let stop = AtomicBool::new(false);
    let (lac_cmd, lac_rx) = mpsc::channel();
    let (lns_cmd, lns_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let lns_thread = scope.spawn(|| run_lns(ns_path(&lns_ns), wan.b, None, &stop, lns_rx));
        let lac_thread =
            scope.spawn(|| run_lac(ns_path(&lac_ns), wan.a, &[wan.b], false, &stop, lac_rx));
        {
            let _stop = StopOnDrop(&stop);
            exercise(&mut cpe, &lac_cmd, &lns_cmd);
        }
        lac_thread.join().expect("the LAC thread panicked");
        lns_thread.join().expect("the LNS thread panicked");
    });
    drop(cpe);
    drop(steering);
    drop(lab);
}

/// Subscribers of the HA test.
const HA_SUBSCRIBERS: usize = 4;
/// Frames each subscriber sends while its session is held.
const HELD_PER_SUBSCRIBER: usize = 10;
/// How long lns2 stays silent from lns1's death: longer than the LAC takes
/// to find lns1 dead (its 300 ms dead interval), shorter than the LAC
/// gives a recovery tunnel before it tries the next peer (twice the dead
/// interval after that).
const LNS2_SILENCE: Duration = Duration::from_millis(700);

/// HA through the fast path on veth (DESIGN.md §1 item 4): lns1 takes the
/// calls and offloads them to lns2, its advertised peer; lns1 dies (as
/// `kill -9`); the LAC finds it dead by its Hellos, its workers hold the
/// subscribers' upstream, the calls are recovered on lns2 (which the test
/// keeps silent meanwhile, so that frames do wait in the rings), and the
/// held frames reach lns2 once the calls are up there. PPP is never
/// renegotiated. **Needs root**, as the test above.
#[test]
fn lac_fast_path_holds_a_dead_lns_sessions_and_flushes_them_to_its_peer() {
    ha_lab("fastpath-lac-ha", exercise_ha);
}

/// The calls of a make-before-break move (STPLRQ "all" from lns1) carry
/// the subscribers' upstream without a loss: every frame reaches lns1
/// (before the move) or lns2 (after), none waits in a ring. **Needs
/// root**, as the test above.
#[test]
fn lac_fast_path_moves_sessions_make_before_break_without_loss() {
    ha_lab("fastpath-lac-mbb", exercise_switchover);
}

/// A LAC with HA and its fast path, subscribers on its access link, and
/// two HA LNSs (lns1, which takes the calls, and lns2, its peer) on its
/// wan link; `exercise` gets the subscribers and the three daemons.
fn ha_lab(name: &str, exercise: fn(&mut Cpe, &Sender<Cmd>, &Sender<Cmd>, &Sender<Cmd>)) {
    let (lab, [cpe_ns, lac_ns, lns_ns], [_access, wan]) = lac_lab(name);
    // lns2 on the same link, next to lns1.
    let [a, b, c, _] = wan.b.octets();
    let lns2 = Ipv4Addr::new(a, b, c, 3);
    run(&[
        "ip",
        "-n",
        lns_ns.name(),
        "addr",
        "add",
        &format!("{lns2}/24"),
        "dev",
        "veth2",
    ])
    .unwrap();
    let (steering, mut cpe) = cpe(&cpe_ns, HA_SUBSCRIBERS);

    let stop = AtomicBool::new(false);
    let (lac_cmd, lac_rx) = mpsc::channel();
    let (lns1_cmd, lns1_rx) = mpsc::channel();
    let (lns2_cmd, lns2_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let lns1_thread =
            scope.spawn(|| run_lns(ns_path(&lns_ns), wan.b, Some(lns2), &stop, lns1_rx));
        let lns2_thread =
            scope.spawn(|| run_lns(ns_path(&lns_ns), lns2, Some(wan.b), &stop, lns2_rx));
        let lac =
            scope.spawn(|| run_lac(ns_path(&lac_ns), wan.a, &[wan.b, lns2], true, &stop, lac_rx));
        {
            let _stop = StopOnDrop(&stop);
            exercise(&mut cpe, &lac_cmd, &lns1_cmd, &lns2_cmd);
        }
        lac.join().expect("the LAC thread panicked");
        lns1_thread.join().expect("the lns1 thread panicked");
        lns2_thread.join().expect("the lns2 thread panicked");
    });
    drop(cpe);
    drop(steering);
    drop(lab);
}

/// Every subscriber up on lns1, programmed in the LAC's workers, and
/// stored at lns2.
fn ha_bring_up(cpe: &mut Cpe, lac: &Sender<Cmd>, lns2: &Sender<Cmd>) {
    let n = cpe.subscribers.len();
    let now = cpe.clock.now();
    for s in &mut cpe.subscribers {
        s.discovery.start(now);
    }
    let all_up = cpe.run_until(Duration::from_secs(40), |c| {
        c.subscribers.iter().all(|s| s.address.is_some())
    });
    assert!(all_up, "subscribers not up");
    let deadline = StdInstant::now() + Duration::from_secs(10);
    loop {
        let (summary, up) = ask(lac, Cmd::LacReport);
        let (stored, _) = ask(lns2, Cmd::LnsHa);
        if up == n && summary.sessions == n && stored >= n {
            break;
        }
        assert!(
            StdInstant::now() < deadline,
            "{up} calls up, {} programmed, {stored} stored at lns2",
            summary.sessions
        );
        cpe.turn();
    }
}

/// Subscriber `i`'s IPv4 packet `tag` toward the far end, as its PPPoE
/// session frame.
fn subscriber_frame(cpe: &Cpe, i: usize, tag: &str) -> Vec<u8> {
    let s = &cpe.subscribers[i];
    let (ac, sid) = s.session.unwrap();
    let src = SocketAddrV4::new(s.address.unwrap(), 5001);
    let far = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 9);
    let ip = ipv4_udp(src, far, tag.as_bytes());
    Cpe::pppoe_session(ac, s.mac, sid, &[&[0x00, 0x21][..], &ip].concat())
}

fn exercise_ha(cpe: &mut Cpe, lac: &Sender<Cmd>, lns1: &Sender<Cmd>, lns2: &Sender<Cmd>) {
    let n = HA_SUBSCRIBERS;
    ha_bring_up(cpe, lac, lns2);
    let (_, _, before) = ask(lac, Cmd::LacHa);
    let (lns2_frames_before, _) = ask(lns2, Cmd::LnsReport);

    // lns2 stays silent for a while; lns1 dies.
    let (paused_tx, paused) = mpsc::channel();
    lns2.send(Cmd::LnsPause(LNS2_SILENCE, paused_tx)).unwrap();
    lns1.send(Cmd::LnsKill).unwrap();
    let killed = StdInstant::now();
    let deadline = killed + Duration::from_millis(1200);
    let detected = loop {
        let (holding, _, _) = ask(lac, Cmd::LacHa);
        if holding == n {
            break killed.elapsed();
        }
        assert!(
            StdInstant::now() < deadline,
            "{holding} of {n} sessions held {:?} after lns1 died",
            killed.elapsed()
        );
        cpe.turn();
    };
    // What the subscribers send now waits in the workers' rings.
    for i in 0..n {
        for k in 0..HELD_PER_SUBSCRIBER {
            let frame = subscriber_frame(cpe, i, &format!("held {i} {k}"));
            cpe.send(&frame);
        }
    }
    let want = (n * HELD_PER_SUBSCRIBER) as u64;
    let (_, _, holding) = ask(lac, Cmd::LacHa);
    assert!(
        paused.try_recv().is_err(),
        "lns2 answered before the frames were held: make its pause longer"
    );
    assert!(
        holding.counters.held - before.counters.held >= want,
        "held {} of {want}",
        holding.counters.held - before.counters.held
    );

    // lns2 answers: every call is recovered there and the rings flushed.
    paused
        .recv_timeout(Duration::from_secs(5))
        .expect("lns2 paused for good");
    let deadline = StdInstant::now() + Duration::from_secs(10);
    let (after, recovered) = loop {
        let (holding, done, summary) = ask(lac, Cmd::LacHa);
        if holding == 0 && done >= n as u64 {
            break (summary, killed.elapsed());
        }
        assert!(
            StdInstant::now() < deadline,
            "{done} of {n} recovered, {holding} still held"
        );
        cpe.turn();
    };
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let arrived = loop {
        let (frames, _) = ask(lns2, Cmd::LnsReport);
        if frames - lns2_frames_before >= want || StdInstant::now() >= deadline {
            break frames - lns2_frames_before;
        }
        cpe.turn();
    };
    let (_, adopted) = ask(lns2, Cmd::LnsHa);
    let flushed = after.counters.flushed - before.counters.flushed;
    eprintln!(
        "fastpath_lac HA: lns1 dead, {n} sessions held after {detected:?}, recovered on lns2 \
         {recovered:?} after (lns2 silent for {LNS2_SILENCE:?}); {flushed} frames flushed, {arrived}/{want} at lns2, \
         {adopted} adopted; counters {:?}",
        after.counters.nonzero().collect::<Vec<_>>()
    );
    assert_eq!(adopted, n as u64);
    assert_eq!(flushed, want, "held frames not all flushed");
    assert_eq!(arrived, want, "held frames not all at lns2");
    // PPP went on as it was: no LCP or IPCP again, no link down.
    cpe.run_until(Duration::from_millis(200), |_| false);
    for (i, s) in cpe.subscribers.iter().enumerate() {
        assert_eq!((s.ups, s.renegotiations), (1, 0), "subscriber {i}");
    }

    downstream_from(cpe, lns2);
}

/// Downstream from `lns` reaches every subscriber through the workers.
fn downstream_from(cpe: &mut Cpe, lns: &Sender<Cmd>) {
    let n = cpe.subscribers.len();
    let far = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 9);
    for s in &mut cpe.subscribers {
        s.received.clear();
    }
    let packets: Vec<Vec<u8>> = cpe
        .subscribers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let dst = SocketAddrV4::new(s.address.unwrap(), 5001);
            ipv4_udp(far, dst, format!("down {i}").as_bytes())
        })
        .collect();
    let sent = ask(lns, |tx| Cmd::LnsSend(packets, tx));
    assert_eq!(sent, n, "the LNS has not every subscriber's session");
    let got = cpe.run_until(Duration::from_secs(5), |c| {
        c.subscribers.iter().all(|s| !s.received.is_empty())
    });
    assert!(got, "downstream did not reach every subscriber");
}

/// Upstream frames each subscriber sends around a make-before-break move.
const STREAM_PER_SUBSCRIBER: usize = 100;

fn exercise_switchover(cpe: &mut Cpe, lac: &Sender<Cmd>, lns1: &Sender<Cmd>, lns2: &Sender<Cmd>) {
    let n = HA_SUBSCRIBERS;
    ha_bring_up(cpe, lac, lns2);
    let (_, done_before, before) = ask(lac, Cmd::LacHa);
    let (lns1_before, _) = ask(lns1, Cmd::LnsReport);
    let (lns2_before, _) = ask(lns2, Cmd::LnsReport);
    // A stream from every subscriber, a frame each per turn (about a
    // millisecond apart), and one to each from whichever LNS has its
    // session; lns1 asks for the move a fifth of the way in.
    let far = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 9);
    for s in &mut cpe.subscribers {
        s.received.clear();
    }
    let mut sent_down = 0;
    let mut asked = None;
    let mut moved_at = None;
    for k in 0..STREAM_PER_SUBSCRIBER {
        for i in 0..n {
            let frame = subscriber_frame(cpe, i, &format!("stream {i} {k}"));
            cpe.send(&frame);
        }
        for (lns, name) in [(lns1, "lns1"), (lns2, "lns2")] {
            let packets: Vec<Vec<u8>> = cpe
                .subscribers
                .iter()
                .map(|s| {
                    let dst = SocketAddrV4::new(s.address.unwrap(), 5001);
                    ipv4_udp(far, dst, format!("{name} {k}").as_bytes())
                })
                .collect();
            sent_down += ask(lns, |tx| Cmd::LnsSend(packets, tx));
        }
        cpe.turn();
        if k == STREAM_PER_SUBSCRIBER / 5 {
            let sent = ask(lns1, Cmd::LnsSwitchover);
            assert_eq!(sent, 1, "lns1 asked no LAC to move");
            asked = Some(StdInstant::now());
        }
        if asked.is_some() && moved_at.is_none() && k % 5 == 0 {
            let (_, done, _) = ask(lac, Cmd::LacHa);
            if done - done_before >= n as u64 {
                moved_at = asked.map(|t| t.elapsed());
            }
        }
    }
    let deadline = StdInstant::now() + Duration::from_secs(10);
    let moved = loop {
        let (_, done, _) = ask(lac, Cmd::LacHa);
        if done - done_before >= n as u64 {
            break moved_at.unwrap_or_else(|| asked.unwrap().elapsed());
        }
        assert!(
            StdInstant::now() < deadline,
            "{} of {n} moved",
            done - done_before
        );
        cpe.turn();
    };
    let want = (n * STREAM_PER_SUBSCRIBER) as u64;
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let (at_lns1, at_lns2) = loop {
        let (f1, _) = ask(lns1, Cmd::LnsReport);
        let (f2, _) = ask(lns2, Cmd::LnsReport);
        let got = (f1 - lns1_before, f2 - lns2_before);
        if got.0 + got.1 >= want || StdInstant::now() >= deadline {
            break got;
        }
        cpe.turn();
    };
    let got_down = cpe.run_until(Duration::from_secs(5), |c| {
        c.subscribers
            .iter()
            .map(|s| s.received.len())
            .sum::<usize>()
            >= sent_down
    });
    let received_down: usize = cpe.subscribers.iter().map(|s| s.received.len()).sum();
    let (_, _, after) = ask(lac, Cmd::LacHa);
    let (_, adopted) = ask(lns2, Cmd::LnsHa);
    let (fenced, released, lns1_data) = ask(lns1, Cmd::LnsMoved);
    let (_, _, lns2_data) = ask(lns2, Cmd::LnsMoved);
    eprintln!("lns1: {lns1_data}\nlns2: {lns2_data}");
    eprintln!(
        "fastpath_lac make-before-break: {n} sessions moved {moved:?} after lns1 asked \
         ({released} released at lns1, {fenced} fenced there); upstream {at_lns1} at lns1 + \
         {at_lns2} at lns2 of {want}, {} held; counters {:?}",
        after.counters.held - before.counters.held,
        after.counters.nonzero().collect::<Vec<_>>()
    );
    eprintln!("downstream: {received_down} of {sent_down} sent by lns1 and lns2 received");
    assert_eq!(adopted, n as u64);
    assert_eq!(at_lns1 + at_lns2, want, "upstream frames lost in the move");
    assert!(
        got_down,
        "downstream lost in the move: {received_down} of {sent_down}"
    );
    assert!(at_lns2 > 0, "nothing went to lns2");
    assert_eq!(
        after.counters.held, before.counters.held,
        "a planned move held frames"
    );
    cpe.run_until(Duration::from_millis(200), |_| false);
    for (i, s) in cpe.subscribers.iter().enumerate() {
        assert_eq!((s.ups, s.renegotiations), (1, 0), "subscriber {i}");
    }
    downstream_from(cpe, lns2);
}

fn exercise(cpe: &mut Cpe, lac: &Sender<Cmd>, lns: &Sender<Cmd>) {
    let now = cpe.clock.now();
    for s in &mut cpe.subscribers {
        s.discovery.start(now);
    }
    let started = StdInstant::now();
    let all_up = cpe.run_until(Duration::from_secs(40), |c| {
        c.subscribers.iter().all(|s| s.address.is_some())
    });
    let states: Vec<_> = cpe
        .subscribers
        .iter()
        .map(|s| (s.discovery.state(), s.session, s.address))
        .collect();
    assert!(all_up, "subscribers not up: {states:?}");
    let setup = started.elapsed();
    // No PPP restart timer (3 s) in PPP's setup: the LNS's first frames,
    // right after each ICCN, found the session programmed, and the
    // subscriber's did not overtake the ICCN (it took 3 s more when the
    // LAC programmed its workers only once the ICCN was acknowledged).
    let ppp_setup = cpe
        .subscribers
        .iter()
        .filter_map(|s| s.ppp_setup)
        .max()
        .unwrap_or_default();
    assert!(
        ppp_setup < Duration::from_millis(1500),
        "PPP took {ppp_setup:?} after discovery: {states:?}"
    );
    // The calls are programmed once the LAC reports them up.
    let deadline = StdInstant::now() + Duration::from_secs(5);
    loop {
        let (summary, up) = ask(lac, Cmd::LacReport);
        if up == SUBSCRIBERS && summary.sessions == SUBSCRIBERS {
            break;
        }
        assert!(
            StdInstant::now() < deadline,
            "calls not programmed: {up} up, {} in the tables",
            summary.sessions
        );
        cpe.turn();
    }
    let (before, _) = ask(lac, Cmd::LacReport);
    let (lns_frames_before, established) = ask(lns, Cmd::LnsReport);
    assert_eq!(established, SUBSCRIBERS);

    // Upstream: each subscriber sends IPv4 over PPPoE; the LAC's workers
    // put it into L2TP; the LNS node counts it.
    let far = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 9);
    for i in 0..SUBSCRIBERS {
        let s = &cpe.subscribers[i];
        let (ac, sid) = s.session.unwrap();
        let src = SocketAddrV4::new(s.address.unwrap(), 5001);
        let mac = s.mac;
        for n in 0..PER_SUBSCRIBER {
            let ip = ipv4_udp(src, far, format!("up {i} {n}").as_bytes());
            let ppp = [&[0x00, 0x21][..], &ip].concat();
            let frame = Cpe::pppoe_session(ac, mac, sid, &ppp);
            cpe.send(&frame);
        }
    }
    let want = (SUBSCRIBERS * PER_SUBSCRIBER) as u64;
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let lns_frames = loop {
        let (frames, _) = ask(lns, Cmd::LnsReport);
        if frames - lns_frames_before >= want {
            break frames - lns_frames_before;
        }
        assert!(
            StdInstant::now() < deadline,
            "upstream: {} of {want} at the LNS",
            frames - lns_frames_before
        );
        cpe.turn();
    };

    // Downstream: the LNS sends IPv4 into each session; the LAC's workers
    // relay it to the subscriber's PPPoE session.
    let packets: Vec<Vec<u8>> = cpe
        .subscribers
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let dst = SocketAddrV4::new(s.address.unwrap(), 5001);
            (0..PER_SUBSCRIBER).map(move |n| ipv4_udp(far, dst, format!("down {i} {n}").as_bytes()))
        })
        .collect();
    let sent = ask(lns, |tx| Cmd::LnsSend(packets, tx));
    assert_eq!(sent, SUBSCRIBERS * PER_SUBSCRIBER);
    let got_all = cpe.run_until(Duration::from_secs(5), |c| {
        c.subscribers
            .iter()
            .all(|s| s.received.len() >= PER_SUBSCRIBER)
    });
    let received: Vec<usize> = cpe.subscribers.iter().map(|s| s.received.len()).collect();
    for (i, s) in cpe.subscribers.iter().enumerate() {
        for ip in &s.received {
            assert_eq!(&ip[16..20], &s.address.unwrap().octets(), "subscriber {i}");
            assert!(ip[28..].starts_with(format!("down {i} ").as_bytes()));
        }
    }

    let (after, _) = ask(lac, Cmd::LacReport);
    let up_fwd = after.counters.forwards(PathKind::LacUpstream)
        - before.counters.forwards(PathKind::LacUpstream);
    let down_fwd = after.counters.forwards(PathKind::LacDownstream)
        - before.counters.forwards(PathKind::LacDownstream);
    eprintln!(
        "fastpath_lac: {SUBSCRIBERS} subscribers up in {setup:?} (PPP {ppp_setup:?} after discovery); upstream {lns_frames}/{want} at the LNS \
         (LAC workers relayed {up_fwd}); downstream {received:?} of {PER_SUBSCRIBER} each (relayed {down_fwd}); \
         held {} flushed {}, counters {:?}",
        after.counters.held,
        after.counters.flushed,
        after.counters.nonzero().collect::<Vec<_>>()
    );
    assert!(got_all, "downstream: {received:?}");
    assert_eq!(lns_frames, want);
    assert_eq!(up_fwd, want, "upstream not all through the LAC's workers");
    assert_eq!(
        down_fwd, want,
        "downstream not all through the LAC's workers"
    );
}

// --- HA moves, on workers over memory ports -----------------------------------------
//
// The glue's programming of an HA move, checked against a real worker
// without a network: the node's events are made up here (the node's own HA
// is tested in ha_lac.rs), the worker runs on its thread over memory ports
// that the test feeds and drains through channels. No root needed.

mod moves {
    use std::collections::VecDeque;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::mpsc::{self, Receiver, Sender};
    use std::time::{Duration, Instant as StdInstant};

    use controlplane::fastpath::lac::{LacFastpath, RELEASE_LINGER};
    use controlplane::fastpath::{Fastpath, FastpathConfig, Role};
    use controlplane::l2tp::{ResultCode, SessionHandle, TunnelDownReason, TunnelHandle};
    use controlplane::lac::{self, CallUp, LnsEntry, MovedFrom, SubscriberKey};
    use controlplane::time::Instant;
    use dataplane::io::memory::MemoryPort;
    use dataplane::io::{Descriptor, FrameId, MemoryId, Port};
    use dataplane::table::{Neighbour, SessionKey};
    use dataplane::testkit::{self, Encoding, ACCESS_MAC, CORE_MAC, LOCAL_ADDR, PEER_MAC};
    use dataplane::wire::{ethernet, l2tp, ppp};
    use dataplane::worker::Worker;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const WAN: usize = 1;
    const ACCESS: usize = 0;
    /// The LNS that dies or asks to move (its tunnel's peer).
    const OLD_LNS: SocketAddrV4 = SocketAddrV4::new(testkit::PEER_ADDR, testkit::PEER_PORT);
    /// Its peer, where the calls go.
    const NEW_LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 3), 1701);
    const WAIT: Duration = Duration::from_secs(5);

    /// A memory port whose wire is a pair of channels, so the test reaches
    /// it while the worker owns it on its thread.
    struct WirePort {
        port: MemoryPort,
        from_wire: Receiver<Vec<u8>>,
        waiting: VecDeque<Vec<u8>>,
        to_wire: Sender<Vec<u8>>,
    }

    impl WirePort {
        fn drain(&mut self) {
            while let Some(f) = self.port.pop_tx() {
                let _ = self.to_wire.send(f);
            }
        }
    }

    impl Port for WirePort {
        fn receive(&mut self, out: &mut [Descriptor]) -> usize {
            self.waiting.extend(self.from_wire.try_iter());
            while let Some(f) = self.waiting.front() {
                if !self.port.push_rx(f) {
                    break;
                }
                self.waiting.pop_front();
            }
            self.drain();
            self.port.receive(out)
        }
        fn transmit(&mut self, descriptors: &[Descriptor]) -> usize {
            self.port.transmit(descriptors)
        }
        fn flush(&mut self) {
            self.port.flush();
            self.drain();
        }
        fn free(&mut self, descriptor: Descriptor) {
            self.port.free(descriptor)
        }
        fn alloc(&mut self) -> Option<Descriptor> {
            self.port.alloc()
        }
        fn frame(&self, frame: FrameId) -> &[u8] {
            self.port.frame(frame)
        }
        fn frame_mut(&mut self, frame: FrameId) -> &mut [u8] {
            self.port.frame_mut(frame)
        }
        fn frame_size(&self) -> usize {
            self.port.frame_size()
        }
        fn headroom(&self) -> usize {
            self.port.headroom()
        }
        fn memory(&self) -> MemoryId {
            self.port.memory()
        }
        fn mac_addr(&self) -> ethernet::Address {
            self.port.mac_addr()
        }
    }

    /// The LAC glue over one worker, the node it connects calls on, and
    /// the two wires.
    struct Lab {
        fp: LacFastpath,
        node: lac::Node,
        now: Instant,
        send: [Sender<Vec<u8>>; 2],
        sent: [Receiver<Vec<u8>>; 2],
    }

    impl Lab {
        fn new() -> Lab {
            let (send_access, access_rx) = mpsc::channel();
            let (send_wan, wan_rx) = mpsc::channel();
            let (access_tx, sent_access) = mpsc::channel();
            let (wan_tx, sent_wan) = mpsc::channel();
            let port = |mac, from_wire, to_wire| WirePort {
                port: testkit::port(mac),
                from_wire,
                waiting: VecDeque::new(),
                to_wire,
            };
            let worker = Worker::new(
                testkit::config(dataplane::worker::Role::Lac, 64),
                vec![
                    port(ACCESS_MAC, access_rx, access_tx),
                    port(CORE_MAC, wan_rx, wan_tx),
                ],
            )
            .unwrap();
            // Interface names no host has: the kernel's ARP table never
            // names a next hop on them, the test does.
            let config = FastpathConfig::new(
                Role::Lac,
                vec!["ha-acc".into(), "ha-wan".into()],
                vec![LOCAL_ADDR],
            );
            let mut fp = Fastpath::with_workers(config, vec![worker], Vec::new(), None).unwrap();
            for lns in [OLD_LNS, NEW_LNS] {
                let hop = fp.next_hop(*lns.ip());
                fp.upsert_neighbour(
                    hop,
                    Neighbour {
                        mac: PEER_MAC,
                        port: WAN as u8,
                    },
                )
                .unwrap();
            }
            let node = lac::Node::new(
                lac::Config::new("lac", ACCESS_MAC, vec![LnsEntry::new(OLD_LNS)]),
                Instant::ZERO,
                Box::new(ChaCha8Rng::seed_from_u64(1)),
            )
            .unwrap();
            Lab {
                fp: LacFastpath::with_fastpath(fp, ACCESS_MAC),
                node,
                now: Instant::ZERO,
                send: [send_access, send_wan],
                sent: [sent_access, sent_wan],
            }
        }

        /// The glue's turn, then wait until the worker applied everything
        /// programmed so far.
        fn settle(&mut self) {
            self.fp.service(&mut self.node, self.now);
            let token = self.fp.fastpath().barrier().unwrap();
            assert!(self.fp.fastpath().wait_barrier(token, WAIT), "worker stuck");
            let deadline = StdInstant::now() + WAIT;
            while self.fp.unconnected_calls() + self.fp.unreleased_moves() > 0 {
                assert!(StdInstant::now() < deadline, "calls not connected");
                self.fp.service(&mut self.node, self.now);
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn program(&mut self, event: lac::Event) {
            self.fp.program(&event);
            self.settle();
        }

        /// The node answered `call` and it came up.
        fn answer_and_bring_up(&mut self, call: Box<CallUp>) {
            self.program(lac::Event::CallAnswered(call.clone()));
            self.program(lac::Event::SessionUp(call));
        }

        /// Frames through `port`, then what came out of the other one
        /// (waiting up to `want` frames, or a moment when none is due).
        fn pass(&mut self, port: usize, frames: Vec<Vec<u8>>, want: usize) -> Vec<Vec<u8>> {
            for f in frames {
                self.send[port].send(f).unwrap();
            }
            self.collect(1 - port, want)
        }

        fn collect(&mut self, port: usize, want: usize) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            let deadline = StdInstant::now()
                + if want == 0 {
                    Duration::from_millis(100)
                } else {
                    WAIT
                };
            while StdInstant::now() < deadline && (want == 0 || out.len() < want) {
                match self.sent[port].recv_timeout(Duration::from_millis(5)) {
                    Ok(f) => out.push(f),
                    Err(_) => {
                        self.fp.service(&mut self.node, self.now);
                    }
                }
            }
            out
        }
    }

    fn subscriber(i: usize) -> SubscriberKey {
        SubscriberKey {
            mac: testkit::subscriber_mac(i),
            session_id: testkit::pppoe_session_id(i),
        }
    }

    /// A call of subscriber `i`: our ids `ours`, the LNS's `theirs`.
    fn call(
        i: usize,
        lns: SocketAddrV4,
        ours: SessionKey,
        theirs: SessionKey,
        moved_from: Option<MovedFrom>,
    ) -> Box<CallUp> {
        Box::new(CallUp {
            subscriber: subscriber(i),
            session: SessionHandle {
                tunnel: TunnelHandle(u64::from(ours.tunnel_id)),
                id: u64::from(ours.session_id),
            },
            local_tunnel_id: ours.tunnel_id,
            peer_tunnel_id: theirs.tunnel_id,
            local: SocketAddrV4::new(LOCAL_ADDR, l2tp::UDP_PORT),
            peer: lns,
            local_session_id: ours.session_id,
            peer_session_id: theirs.session_id,
            sequencing: false,
            setup_time: Duration::from_millis(5),
            failovers: 0,
            moved_from,
        })
    }

    /// A move (of the given `epoch`) from our call `old`.
    fn moved_from(old: SessionKey, epoch: u32, make_before_break: bool) -> MovedFrom {
        MovedFrom {
            local_tunnel_id: old.tunnel_id,
            local_session_id: old.session_id,
            epoch,
            make_before_break,
        }
    }

    fn key(tunnel_id: u16, session_id: u16) -> SessionKey {
        SessionKey {
            tunnel_id,
            session_id,
        }
    }

    /// Subscriber `i`'s PPP frame carrying `tag`.
    fn upstream(i: usize, tag: &str) -> Vec<u8> {
        let enc = Encoding {
            no_address_control: true,
            ..Encoding::default()
        };
        testkit::pppoe_frame(
            i,
            &testkit::ppp_frame(ppp::Protocol::Ipv4, tag.as_bytes(), enc),
        )
    }

    /// An L2TP data message from `lns` to our ids `to`, carrying `tag`.
    fn downstream(lns: SocketAddrV4, to: SessionKey, tag: &str) -> Vec<u8> {
        let ppp = testkit::ppp_frame(ppp::Protocol::Ipv4, tag.as_bytes(), Encoding::default());
        let mut f = testkit::l2tp_frame(lns, to, &ppp, Encoding::default());
        // To the wan port.
        f[..6].copy_from_slice(&CORE_MAC.0);
        f
    }

    /// Where an upstream L2TP frame goes (LNS address and port, its
    /// Tunnel and Session ID) and the tag it carries.
    fn read_upstream(f: &[u8]) -> (SocketAddrV4, SessionKey, String) {
        let ip = &f[14..];
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[20..];
        let port = u16::from_be_bytes([udp[2], udp[3]]);
        let msg = &udp[8..];
        let header = l2tp::HeaderRepr::parse(&l2tp::Packet::new_checked(msg).unwrap()).unwrap();
        let ppp = &msg[header.buffer_len()..];
        // FF 03, Protocol 0x0021, then the tag.
        assert_eq!(&ppp[..4], &[0xff, 0x03, 0x00, 0x21]);
        (
            SocketAddrV4::new(dst, port),
            key(header.tunnel_id, header.session_id),
            String::from_utf8_lossy(&ppp[4..]).into_owned(),
        )
    }

    /// The subscriber (MAC, PPPoE session) a downstream frame goes to, and
    /// its tag.
    fn read_downstream(f: &[u8]) -> (SubscriberKey, String) {
        let mac = ethernet::Address::from_bytes(&f[..6]).unwrap();
        let session_id = u16::from_be_bytes([f[16], f[17]]);
        let len = usize::from(u16::from_be_bytes([f[18], f[19]]));
        let ppp = &f[20..20 + len];
        assert_eq!(&ppp[..2], &[0x00, 0x21]);
        (
            SubscriberKey { mac, session_id },
            String::from_utf8_lossy(&ppp[2..]).into_owned(),
        )
    }

    fn tags(n: std::ops::Range<usize>, prefix: &str) -> Vec<String> {
        n.map(|k| format!("{prefix}{k}")).collect()
    }

    #[test]
    fn a_failed_lns_sessions_hold_then_flush_in_order_to_the_peer() {
        let mut lab = Lab::new();
        let old = key(10, 100);
        let new = key(11, 101);
        let up = call(0, OLD_LNS, old, key(20, 200), None);
        lab.answer_and_bring_up(up);
        let out = lab.pass(ACCESS, vec![upstream(0, "u0")], 1);
        assert_eq!(read_upstream(&out[0]), (OLD_LNS, key(20, 200), "u0".into()));

        // The LNS dies: the node holds the subscriber, then lets the
        // tunnel go.
        lab.program(lac::Event::Holding {
            subscriber: subscriber(0),
            local_tunnel_id: old.tunnel_id,
            local_session_id: old.session_id,
            replay: Duration::ZERO,
        });
        lab.program(lac::Event::TunnelDown {
            tunnel: TunnelHandle(10),
            lns: OLD_LNS,
            local_tunnel_id: old.tunnel_id,
            reason: TunnelDownReason::RetriesExhausted,
        });
        assert_eq!(lab.fp.kept_tunnels(), 1, "the held session's tunnel went");
        assert_eq!(lab.fp.holding_sessions(), 1);
        let held: Vec<Vec<u8>> = tags(1..6, "u").iter().map(|t| upstream(0, t)).collect();
        assert!(lab.pass(ACCESS, held, 0).is_empty(), "held frames went out");

        // Recovered on the peer: answered (still holding), then up.
        let moved = moved_from(old, 1, false);
        let recovered = call(0, NEW_LNS, new, key(21, 201), Some(moved));
        lab.program(lac::Event::CallAnswered(recovered.clone()));
        assert_eq!(lab.fp.kept_tunnels(), 0, "the dead LNS's tunnel stayed");
        assert!(lab.pass(ACCESS, vec![upstream(0, "u6")], 0).is_empty());
        lab.fp.program(&lac::Event::SessionUp(recovered));
        lab.fp.service(&mut lab.node, lab.now);
        let flushed = lab.collect(WAN, 6);
        let got: Vec<_> = flushed.iter().map(|f| read_upstream(f)).collect();
        let want: Vec<_> = tags(1..7, "u")
            .into_iter()
            .map(|t| (NEW_LNS, key(21, 201), t))
            .collect();
        assert_eq!(got, want, "held frames not flushed in order to the peer");
        let out = lab.pass(ACCESS, vec![upstream(0, "u7")], 1);
        assert_eq!(read_upstream(&out[0]), (NEW_LNS, key(21, 201), "u7".into()));

        // Downstream from the peer reaches the subscriber; the dead LNS's
        // ids reach nothing.
        let out = lab.pass(WAN, vec![downstream(NEW_LNS, new, "d0")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(0), "d0".into()));
        assert!(lab
            .pass(WAN, vec![downstream(OLD_LNS, old, "x")], 0)
            .is_empty());

        let summary = lab.fp.fastpath().fresh_reports(WAIT).unwrap();
        assert_eq!(summary.counters.held, 6);
        assert_eq!(summary.counters.flushed, 6);
        assert_eq!(summary.sessions, 1, "the move left a second session");
        let s = lab.fp.stats();
        assert_eq!((s.held, s.moved, s.flushed, s.update_errors), (1, 1, 1, 0));
        lab.fp.stop();
    }

    #[test]
    fn a_dead_lns_tunnel_stays_until_its_last_held_session_moved_or_ended() {
        let mut lab = Lab::new();
        let dead_tunnel = 70;
        for i in 3..5 {
            let ours = key(dead_tunnel, 700 + i as u16);
            let up = call(i, OLD_LNS, ours, key(80, 800 + i as u16), None);
            lab.answer_and_bring_up(up);
            lab.program(lac::Event::Holding {
                subscriber: subscriber(i),
                local_tunnel_id: ours.tunnel_id,
                local_session_id: ours.session_id,
                replay: Duration::ZERO,
            });
        }
        lab.program(lac::Event::TunnelDown {
            tunnel: TunnelHandle(u64::from(dead_tunnel)),
            lns: OLD_LNS,
            local_tunnel_id: dead_tunnel,
            reason: TunnelDownReason::RetriesExhausted,
        });
        assert_eq!(lab.fp.holding_sessions(), 2);
        for i in 3..5 {
            assert!(lab.pass(ACCESS, vec![upstream(i, "h0")], 0).is_empty());
        }

        // Subscriber 3 is recovered: the tunnel stays for subscriber 4.
        let moved = moved_from(key(dead_tunnel, 703), 1, false);
        let recovered = call(3, NEW_LNS, key(71, 703), key(81, 803), Some(moved));
        lab.answer_and_bring_up(recovered);
        let out = lab.collect(WAN, 1);
        assert_eq!(read_upstream(&out[0]), (NEW_LNS, key(81, 803), "h0".into()));
        assert_eq!(lab.fp.kept_tunnels(), 1);
        assert_eq!(lab.fp.holding_sessions(), 1);

        // Subscriber 4's recovery fails: its session ends (its held frame
        // freed), and nothing keeps the tunnel any more.
        lab.program(lac::Event::SessionDown(Box::new(lac::SessionEnded {
            subscriber: subscriber(4),
            session: None,
            lns: Some(OLD_LNS),
            tunnel_ids: Some((dead_tunnel, 80)),
            session_ids: Some((704, 804)),
            cause: lac::EndCause::TunnelDown(TunnelDownReason::RetriesExhausted),
            was_up: true,
            duration: Duration::from_secs(1),
        })));
        assert_eq!(lab.fp.kept_tunnels(), 0);
        assert_eq!(lab.fp.holding_sessions(), 0);
        assert!(lab.pass(ACCESS, vec![upstream(4, "x")], 0).is_empty());
        let out = lab.pass(ACCESS, vec![upstream(3, "h1")], 1);
        assert_eq!(read_upstream(&out[0]), (NEW_LNS, key(81, 803), "h1".into()));
        let summary = lab.fp.fastpath().fresh_reports(WAIT).unwrap();
        assert_eq!(summary.sessions, 1);
        assert_eq!((summary.counters.held, summary.counters.flushed), (2, 1));
        assert_eq!(lab.fp.stats().update_errors, 0);
        lab.fp.stop();
    }

    #[test]
    fn a_make_before_break_move_keeps_the_old_downstream_until_released() {
        let mut lab = Lab::new();
        let old = key(30, 300);
        let new = key(31, 301);
        let up = call(1, OLD_LNS, old, key(40, 400), None);
        lab.answer_and_bring_up(up);

        let moved = moved_from(old, 2, true);
        let next = call(1, NEW_LNS, new, key(41, 401), Some(moved));
        lab.program(lac::Event::CallAnswered(next.clone()));
        assert_eq!(lab.fp.aliases(), 1);
        // Both LNSs reach the subscriber meanwhile; upstream stays on the
        // old call, which its LNS still serves, until the new one is up.
        let out = lab.pass(WAN, vec![downstream(OLD_LNS, old, "old0")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(1), "old0".into()));
        let out = lab.pass(WAN, vec![downstream(NEW_LNS, new, "new0")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(1), "new0".into()));
        let frames: Vec<Vec<u8>> = tags(0..3, "u").iter().map(|t| upstream(1, t)).collect();
        let got: Vec<_> = lab
            .pass(ACCESS, frames, 3)
            .iter()
            .map(|f| read_upstream(f))
            .collect();
        let want: Vec<_> = tags(0..3, "u")
            .into_iter()
            .map(|t| (OLD_LNS, key(40, 400), t))
            .collect();
        assert_eq!(
            got, want,
            "upstream left the old call before the new one was up"
        );

        // Up: upstream moves to the new call at once, nothing was held.
        lab.program(lac::Event::SessionUp(next));
        let out = lab.pass(ACCESS, vec![upstream(1, "u3")], 1);
        assert_eq!(read_upstream(&out[0]), (NEW_LNS, key(41, 401), "u3".into()));
        let out = lab.pass(WAN, vec![downstream(NEW_LNS, new, "new1")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(1), "new1".into()));
        let out = lab.pass(WAN, vec![downstream(OLD_LNS, old, "old1")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(1), "old1".into()));
        assert_eq!(lab.fp.aliases(), 1);

        // Released at the old LNS: its frames still in flight arrive for
        // a while, then its ids go.
        lab.program(lac::Event::SessionReleased {
            subscriber: subscriber(1),
            local_tunnel_id: old.tunnel_id,
            local_session_id: old.session_id,
        });
        lab.now += RELEASE_LINGER / 2;
        lab.settle();
        let out = lab.pass(WAN, vec![downstream(OLD_LNS, old, "old2")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(1), "old2".into()));
        lab.now += RELEASE_LINGER;
        lab.settle();
        assert_eq!(lab.fp.aliases(), 0);
        lab.settle();
        assert!(lab
            .pass(WAN, vec![downstream(OLD_LNS, old, "x")], 0)
            .is_empty());

        // The old tunnel goes; the moved session stays.
        lab.program(lac::Event::TunnelDown {
            tunnel: TunnelHandle(30),
            lns: OLD_LNS,
            local_tunnel_id: old.tunnel_id,
            reason: TunnelDownReason::Closed(ResultCode::new(1)),
        });
        let out = lab.pass(WAN, vec![downstream(NEW_LNS, new, "new2")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(1), "new2".into()));
        let out = lab.pass(ACCESS, vec![upstream(1, "u4")], 1);
        assert_eq!(read_upstream(&out[0]), (NEW_LNS, key(41, 401), "u4".into()));
        let s = lab.fp.stats();
        assert_eq!(
            (s.moved, s.aliased, s.aliases_removed, s.update_errors),
            (1, 2, 1, 0)
        );
        let summary = lab.fp.fastpath().fresh_reports(WAIT).unwrap();
        assert_eq!(summary.counters.held, 0, "a planned move held frames");
        assert_eq!(summary.sessions, 1);
        lab.fp.stop();
    }

    #[test]
    fn a_make_before_break_move_whose_new_call_fails_stays_on_the_old_one() {
        let mut lab = Lab::new();
        let old = key(50, 500);
        let new = key(51, 501);
        let up = call(2, OLD_LNS, old, key(60, 600), None);
        lab.answer_and_bring_up(up);
        let moved = moved_from(old, 3, true);
        lab.program(lac::Event::CallAnswered(call(
            2,
            NEW_LNS,
            new,
            key(61, 601),
            Some(moved),
        )));
        let out = lab.pass(ACCESS, vec![upstream(2, "u0")], 1);
        assert_eq!(read_upstream(&out[0]), (OLD_LNS, key(60, 600), "u0".into()));
        let out = lab.pass(WAN, vec![downstream(NEW_LNS, new, "n0")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(2), "n0".into()));
        lab.program(lac::Event::CallAbandoned {
            subscriber: subscriber(2),
            local_tunnel_id: new.tunnel_id,
            local_session_id: new.session_id,
        });
        // The new ids reach nothing; the old call carries on both ways.
        assert!(lab
            .pass(WAN, vec![downstream(NEW_LNS, new, "x")], 0)
            .is_empty());
        let out = lab.pass(ACCESS, vec![upstream(2, "u1")], 1);
        assert_eq!(read_upstream(&out[0]), (OLD_LNS, key(60, 600), "u1".into()));
        let out = lab.pass(WAN, vec![downstream(OLD_LNS, old, "d0")], 1);
        assert_eq!(read_downstream(&out[0]), (subscriber(2), "d0".into()));
        assert_eq!(lab.fp.aliases(), 0);
        assert_eq!(lab.fp.stats().moves_reverted, 1);
        lab.fp.stop();
    }
}

//! `lacd` as a daemon between PPPoE subscribers on a veth and `lnsd` on
//! another: subscribers (our discovery client and PPP client link, in this
//! process, reaching the CPE's veth through a small packet-socket bridge)
//! come up with an address from the LNS, one hangs up (PADT) and the LNS
//! hears of it, and lacd stops cleanly on SIGTERM (a CDN for every call
//! reaches the LNS before the StopCCN). Once with the control plane taking
//! the access interface itself (no fast path), once through the AF_XDP
//! fast path, where the subscribers must come up without waiting for a PPP
//! restart timer (the workers know each session before the LNS has its
//! ICCN).
//!
//! **Needs** root (network namespaces, veth, AF_XDP, a packet socket) and
//! `python3` (the bridge: the test crate has no packet-socket API). Without
//! them the tests fail saying what is missing.

// The helpers below are test code too: a failure in them is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant as WallClock};

use controlplane::ppp::{self, AuthMethod, Credentials, LinkState, PppConfig, PppLink, Role};
use controlplane::pppoe;
use controlplane::time::Instant;
use dataplane::wire::ethernet::{self, Address, EtherType};
use dataplane::wire::pppoe as pppoe_wire;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustix::process::Signal;
use support::netns::{require_program, Lab, Link, Netns, ProcessId};

/// The bridge in the CPE's namespace: PPPoE frames (discovery and session)
/// from the interface go to stdout as hex lines, hex lines from stdin go
/// out.
///
/// Standard input is read unbuffered: `select` and a buffered `readline`
/// would leave the rest of a burst of lines in Python's buffer, unsent
/// until the next line arrives (seconds later, after a PPP restart).
const BRIDGE: &str = r#"
import os, select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 3))
print("ready", flush=True)
pending = b""
while True:
    ready, _, _ = select.select([s, 0], [], [])
    if s in ready:
        frame, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING and frame[12:14] in (b"\x88\x63", b"\x88\x64"):
            print("rx " + frame.hex(), flush=True)
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                s.send(bytes.fromhex(line.strip().decode()))
"#;

/// The bridge process, killed when dropped (also when the test fails).
struct Bridge {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Bridge {
    fn start(namespace: &str, interface: &str) -> Bridge {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace, "/usr/bin/python3", "-c", BRIDGE])
            .arg(interface)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one async-signal-safe system call (prctl): the bridge dies
        // with the test process.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("python3 bridge starts");
        let stdin = child.stdin.take().expect("bridge stdin");
        let stdout = child.stdout.take().expect("bridge stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let bridge = Bridge {
            child,
            stdin,
            lines,
        };
        let first = bridge
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the bridge says it is ready");
        assert_eq!(first, "ready");
        bridge
    }

    fn send(&mut self, frame: &[u8]) {
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(self.stdin, "{hex}").expect("write to bridge");
        self.stdin.flush().expect("flush bridge");
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// One subscriber: discovery, then a PPP client link in the session.
struct Cpe {
    mac: Address,
    discovery: pppoe::Client,
    ppp: PppConfig,
    link: Option<PppLink>,
    session: Option<(Address, u16)>,
    up: Option<LinkState>,
    down: Option<ppp::DownCause>,
    /// PPP came up this many times (more than once: renegotiated).
    ups: usize,
    /// LCP renegotiations the LNS started.
    renegotiations: usize,
}

/// The subscribers, driven by the wall clock through the bridge.
struct Cpes {
    cpes: Vec<Cpe>,
    by_mac: HashMap<Address, usize>,
    rng: ChaCha8Rng,
    start: WallClock,
    bridge: Bridge,
}

impl Cpes {
    /// Every subscriber starts discovery on `cpe`'s end of `access`,
    /// through the bridge; `seed` seeds their randomness.
    fn start(cpe: &Netns, access: &Link, seed: u64) -> Cpes {
        let mut cpes = Cpes {
            cpes: Vec::new(),
            by_mac: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            start: WallClock::now(),
            bridge: Bridge::start(cpe.name(), &access.interface),
        };
        for i in 0..SUBSCRIBERS {
            cpes.add(i);
        }
        cpes
    }

    fn now(&self) -> Instant {
        Instant::ZERO + self.start.elapsed()
    }

    fn add(&mut self, index: usize) {
        let mac = Address([0x02, 0xcc, 0, 0, 0, index as u8]);
        let mut discovery = pppoe::Client::new(
            pppoe::ClientConfig {
                mac,
                ..pppoe::ClientConfig::default()
            },
            &mut self.rng,
        );
        discovery.start(self.now());
        let mut ppp = PppConfig::client(Credentials {
            username: format!("sub{index}").into_bytes(),
            password: b"lab".to_vec(),
        });
        ppp.lcp.authenticate_self = vec![AuthMethod::ChapMd5, AuthMethod::Pap];
        ppp.address_control = false;
        ppp.lcp.mru = 1492;
        self.by_mac.insert(mac, self.cpes.len());
        self.cpes.push(Cpe {
            mac,
            discovery,
            ppp,
            link: None,
            session: None,
            up: None,
            down: None,
            ups: 0,
            renegotiations: 0,
        });
    }

    /// Run for at most `limit`, until `done` holds.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Cpes) -> bool) -> bool {
        let deadline = WallClock::now() + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            if WallClock::now() >= deadline {
                return false;
            }
            if let Ok(line) = self.bridge.lines.recv_timeout(Duration::from_millis(10)) {
                if let Some(hex) = line.strip_prefix("rx ") {
                    self.deliver(&unhex(hex));
                }
            }
        }
    }

    fn deliver(&mut self, frame: &[u8]) {
        let now = self.now();
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            return;
        };
        let Some(&i) = self.by_mac.get(&eth.dst_addr()) else {
            return;
        };
        let cpe = &mut self.cpes[i];
        match eth.ethertype() {
            EtherType::PppoeDiscovery => {
                cpe.discovery.handle_frame(now, frame);
            }
            EtherType::PppoeSession => {
                let Ok(packet) = pppoe_wire::Packet::new_checked(eth.payload()) else {
                    return;
                };
                if Some(packet.session_id()) != cpe.session.map(|s| s.1) {
                    return;
                }
                if let Some(link) = cpe.link.as_mut() {
                    link.handle_frame(now, packet.payload());
                }
            }
            _ => {}
        }
    }

    /// Timers, events and frames out.
    fn pump(&mut self) {
        let now = self.now();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for cpe in &mut self.cpes {
            if cpe.discovery.poll_timeout().is_some_and(|t| t <= now) {
                cpe.discovery.handle_timeout(now);
            }
            if let Some(link) = cpe.link.as_mut() {
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    link.handle_timeout(now);
                }
            }
            while cpe.discovery.poll_frame(&mut buf) {
                out.push(core::mem::take(&mut buf));
            }
            while let Some(e) = cpe.discovery.poll_event() {
                match e {
                    pppoe::ClientEvent::Up { ac_mac, session_id } => {
                        cpe.session = Some((ac_mac, session_id));
                        let mut link = PppLink::new(
                            Role::Client,
                            cpe.ppp.clone(),
                            Box::new(ChaCha8Rng::seed_from_u64(self.rng.next_u64())),
                        );
                        link.open(now);
                        cpe.link = Some(link);
                    }
                    pppoe::ClientEvent::Down { .. } => {
                        if let Some(link) = cpe.link.as_mut() {
                            link.lower_down(now);
                        }
                    }
                    pppoe::ClientEvent::Failed(f) => panic!("{}: discovery failed: {f:?}", cpe.mac),
                }
            }
            let (Some(link), Some((ac_mac, session_id))) = (cpe.link.as_mut(), cpe.session) else {
                continue;
            };
            while let Some(ppp) = link.poll_transmit(now) {
                if cpe.discovery.state() == pppoe::ClientState::Up {
                    out.push(session_frame(cpe.mac, ac_mac, session_id, &ppp));
                }
            }
            while let Some(e) = link.poll_event() {
                match e {
                    ppp::Event::Up(state) => {
                        cpe.up = Some(*state);
                        cpe.ups += 1;
                    }
                    ppp::Event::Renegotiating => cpe.renegotiations += 1,
                    ppp::Event::Down { cause } => cpe.down = Some(cause),
                    _ => {}
                }
            }
        }
        for frame in out {
            self.bridge.send(&frame);
        }
    }

    fn up_count(&self) -> usize {
        self.cpes
            .iter()
            .filter(|c| c.up.is_some() && c.down.is_none())
            .count()
    }
}

fn session_frame(src: Address, dst: Address, session_id: u16, ppp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + ppp.len());
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&[0x88, 0x64, 0x11, 0x00]);
    out.extend_from_slice(&session_id.to_be_bytes());
    out.extend_from_slice(&(ppp.len() as u16).to_be_bytes());
    out.extend_from_slice(ppp);
    out.resize(out.len().max(60), 0);
    out
}

/// Subscribers per test (the LNS's users file has as many): more calls than
/// the LNS's receive window (16), so the CDNs of a shutdown cannot all go
/// out at once.
const SUBSCRIBERS: usize = 20;

/// The lab of `test` with a daemon chain in it (the bridge needs
/// python3): the subscribers', lacd's and the LNSs' namespaces, the access
/// link between the first two and the wan link between the last two.
fn chain_lab(test: &str) -> (Lab, [Netns; 3], [Link; 2]) {
    require_program("python3", "python3").expect("python3");
    let mut lab = Lab::new(test).expect("lab");
    let cpe = lab.namespace("cpe").expect("cpe namespace");
    let lac = lab.namespace("lac").expect("lac namespace");
    let lns = lab.namespace("lns").expect("lns namespace");
    let access = lab.link(&cpe, &lac).expect("access link");
    let wan = lab.link(&lac, &lns).expect("wan link");
    (lab, [cpe, lac, lns], [access, wan])
}

/// The LNS's users file: `sub{i}` with password `lab` for every subscriber.
fn lns_users(lab: &Lab) -> PathBuf {
    let users = lab.path("users");
    let users_text: String = (0..SUBSCRIBERS).map(|i| format!("sub{i} lab\n")).collect();
    fs::write(&users, users_text).unwrap();
    users
}

/// The end of lacd's configuration: the subscribers on `access`, the fast
/// path (if `fastpath`) on `wan`, the control socket, and HA (if `ha`)
/// with 100 ms Hellos and a 300 ms dead interval.
fn lacd_access_and_ha(lab: &Lab, access: &Link, wan: &Link, fastpath: bool, ha: bool) -> String {
    format!(
        r#"[pppoe]
interface = "{access}"
[dataplane]
enabled = {fastpath}
wan = "{wan}"
[control]
socket = "{socket}"
[ha]
enabled = {ha}
hello_ms = 100
dead_ms = 300
"#,
        access = access.interface,
        wan = wan.interface,
        socket = lab.path("lac.sock").display(),
    )
}

/// lacd in `lac` with `config` (written to `lacd.toml`), once it listens.
fn start_lacd(lab: &mut Lab, lac: &Netns, config: String) -> ProcessId {
    let path = lab.path("lacd.toml");
    fs::write(&path, config).unwrap();
    let lacd = lab
        .spawn(
            lac,
            "lacd",
            &[
                env!("CARGO_BIN_EXE_lacd"),
                "--config",
                path.to_str().unwrap(),
            ],
        )
        .unwrap();
    lab.wait_for_output(lacd, "listening", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.report()));
    lacd
}

fn chain(test: &str, fastpath: bool, mode: &str, ha: bool) {
    let (mut lab, [cpe, lac, lns], [access, wan]) = chain_lab(test);

    let users = lns_users(&lab);
    let lns_listen = format!("{}:1701", wan.b);
    let lns_socket = lab.path("lns.sock");
    let lnsd = lab
        .spawn(
            &lns,
            "lnsd",
            &[
                env!("CARGO_BIN_EXE_lnsd"),
                "--listen",
                &lns_listen,
                "--users",
                users.to_str().unwrap(),
                "--pool",
                "100.64.0.2-100.64.0.100",
                "--gateway",
                "100.64.0.1",
                "--socket",
                lns_socket.to_str().unwrap(),
            ],
        )
        .unwrap();
    lab.wait_for_output(lnsd, "listening", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.report()));

    let config = format!(
        r#"listen = "{lac_addr}:1701"
hostname = "lac"
mode = "{mode}"
[[lns]]
address = "{lns_listen}"
{tail}"#,
        lac_addr = wan.a,
        tail = lacd_access_and_ha(&lab, &access, &wan, fastpath, ha),
    );
    let lacd = start_lacd(&mut lab, &lac, config);

    let mut cpes = Cpes::start(&cpe, &access, 7);
    let up = cpes.run_until(Duration::from_secs(30), |c| c.up_count() == SUBSCRIBERS);
    let setup = cpes.start.elapsed();
    eprintln!("{test}: {SUBSCRIBERS} subscribers up {setup:?} after the first PADI");
    assert!(
        up,
        "{} of {SUBSCRIBERS} subscribers up: {:?}\n{}",
        cpes.up_count(),
        cpes.cpes
            .iter()
            .map(|c| (c.discovery.state(), c.link.as_ref().map(|l| l.phase())))
            .collect::<Vec<_>>(),
        lab.report()
    );
    // The operator's view: every session up on one tunnel.
    let sock = lab.path("lac.sock");
    let ctl = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_l2tpctl"))
            .args(["--socket", sock.to_str().unwrap(), "show", what, "--json"])
            .output()
            .expect("l2tpctl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // No PPP restart timer (3 s) in the setup. With the fast path it took
    // 6-9 s: the LNS sends its first PPP frames right after our ICCN, and
    // workers that learnt of the session only once the ICCN was
    // acknowledged dropped them, leaving PPP to the LNS's restart timer.
    assert!(
        setup < Duration::from_millis(1500),
        "{SUBSCRIBERS} subscribers took {setup:?} to come up\n{}",
        lab.report()
    );
    if fastpath {
        // The workers knew every call before its ICCN: none of the LNS's
        // frames was dropped as unknown (counters reported every second).
        let reported = WallClock::now() + Duration::from_secs(5);
        let programmed = format!("\"fastpath_sessions\":{SUBSCRIBERS}");
        let mut stats = ctl("stats");
        while !stats.contains(&programmed) && WallClock::now() < reported {
            std::thread::sleep(Duration::from_millis(100));
            stats = ctl("stats");
        }
        assert!(stats.contains(&programmed), "{stats}");
        for drop in ["fastpath_unknown_tunnel", "fastpath_unknown_session"] {
            assert!(
                !stats.contains(drop),
                "the workers dropped the LNS's frames: {stats}\n{}",
                lab.report()
            );
        }
    }
    for c in &cpes.cpes {
        let address = c.up.as_ref().unwrap().ipcp.unwrap().local.unwrap();
        assert!(address.octets()[..2] == [100, 64], "{address}");
    }
    // The subscribers may be up before lacd has the LNS's acknowledgement
    // of every ICCN (the workers relay PPP from the ICCN on).
    let listed = WallClock::now() + Duration::from_secs(5);
    let mut sessions = ctl("sessions");
    while sessions.matches("\"up\"").count() < SUBSCRIBERS && WallClock::now() < listed {
        std::thread::sleep(Duration::from_millis(50));
        sessions = ctl("sessions");
    }
    assert_eq!(
        sessions.matches("\"up\"").count(),
        SUBSCRIBERS,
        "{sessions}"
    );
    let tunnels = ctl("tunnels");
    assert!(tunnels.contains("established"), "{tunnels}");
    // HA toward an LNS without it: the calls are as any, the LNS is
    // listed without peers, nothing moved.
    let ha_status = Command::new(env!("CARGO_BIN_EXE_l2tpctl"))
        .args(["--socket", sock.to_str().unwrap(), "ha", "status", "--json"])
        .output()
        .expect("l2tpctl runs");
    let ha_text = format!(
        "{}{}",
        String::from_utf8_lossy(&ha_status.stdout),
        String::from_utf8_lossy(&ha_status.stderr)
    );
    assert!(ha_status.status.success(), "{ha_text}");
    assert!(ha_text.contains("\"role\":\"lac\""), "{ha_text}");
    assert!(ha_text.contains(&format!("\"enabled\":{ha}")), "{ha_text}");
    if ha {
        assert!(
            ha_text.contains(&format!("\"lns\":\"{lns_listen}\"")),
            "{ha_text}"
        );
        assert!(ha_text.contains("\"recoveries_started\":0"), "{ha_text}");
        assert!(ha_text.contains("\"holding\":0"), "{ha_text}");
    }
    let stats = ctl("stats");
    assert!(
        stats.contains(&format!("\"sessions_up\":{SUBSCRIBERS}")),
        "{stats}"
    );
    assert!(stats.contains("\"ha_sessions_moved\":0"), "{stats}");
    lab.wait_for_output(lnsd, "session up", Duration::from_secs(5))
        .ok();

    // The first subscriber hangs up with a PADT: lacd sends CDN, the LNS
    // ends the session.
    let now = cpes.now();
    cpes.cpes[0].discovery.close(now);
    cpes.pump();
    let lns_log = lab.path("lnsd.log");
    let ended = WallClock::now() + Duration::from_secs(10);
    while WallClock::now() < ended
        && !fs::read_to_string(&lns_log)
            .unwrap()
            .contains("session down")
    {
        cpes.run_until(Duration::from_millis(100), |_| false);
    }
    assert!(
        fs::read_to_string(&lns_log)
            .unwrap()
            .contains("session down"),
        "the LNS never heard of the hang-up\n{}",
        lab.report()
    );
    assert_eq!(cpes.up_count(), SUBSCRIBERS - 1);

    // A clean stop: PADT to the rest, CDN and StopCCN acknowledged.
    let status = lab
        .stop(lacd, Signal::TERM, Duration::from_secs(10))
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "lacd: {status:?}\n{}",
        lab.report()
    );
    cpes.run_until(Duration::from_secs(3), |c| c.up_count() == 0);
    assert_eq!(cpes.up_count(), 0, "every subscriber got its PADT");
    let log = lab.output(lacd);
    assert!(log.contains("acknowledged=true"), "{}", lab.report());
    // Every call ended by its CDN, not by the StopCCN that followed
    // (RFC 2661 §5.7 lets a StopCCN clear them all, without their result
    // codes): the LNS logs the LAC's reason for each.
    let cdns = || {
        fs::read_to_string(&lns_log)
            .unwrap()
            .matches("LAC shutting down")
            .count()
    };
    let heard = WallClock::now() + Duration::from_secs(3);
    while cdns() < SUBSCRIBERS - 1 && WallClock::now() < heard {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cdns(),
        SUBSCRIBERS - 1,
        "a CDN for every call still up\n{}",
        lab.report()
    );
    let _ = lab.stop(lnsd, Signal::TERM, Duration::from_secs(5));
}

#[test]
fn lacd_relays_pppoe_subscribers_without_a_fast_path() {
    chain("lacd-cp", false, "relay", false);
}

#[test]
fn lacd_relays_pppoe_subscribers_through_the_fast_path() {
    chain("lacd-fp", true, "relay", false);
}

#[test]
fn lacd_proxies_lcp_and_authentication_through_the_fast_path() {
    chain("lacd-px", true, "proxy", false);
}

/// HA on (HA-Capability, 100 ms Hellos, 300 ms dead interval) toward an
/// lnsd without HA: an unaware LNS serves the calls as any (the vendor
/// AVPs have the M bit clear), the fast Hellos keep a live LNS alive, and
/// `ha status` lists it.
#[test]
fn lacd_with_ha_serves_subscribers_through_an_lns_without_it() {
    chain("lacd-ha", true, "relay", true);
}

/// Failure switchover with the daemons (DESIGN.md §1 item 4): lacd with
/// `[ha]` and its fast path, two lnsd peering each other; every subscriber
/// comes up on lns1 (preferred), lns2 stores their sessions, then lns1 is
/// killed (`kill -9`). lacd finds it dead by its 100 ms Hellos and recovers
/// every call on lns2: no subscriber sees a PADT, PPP goes down, or is
/// renegotiated, and lacd's `ha status` and `show sessions` say where they
/// are.
#[test]
fn lacd_recovers_its_subscribers_on_the_peer_when_the_lns_dies() {
    ha_chain("lacd-ha-kill", false);
}

/// Load switchover with the daemons (DESIGN.md §1 item 3): as above, but
/// lns1 asks lacd to move every session to lns2 (`l2tpctl ha switchover
/// all`): lacd grants it and moves each call make-before-break, again
/// without PADT, PPP down or renegotiation, and lns1 ends up with none.
#[test]
fn lacd_moves_its_subscribers_to_the_peer_when_the_lns_asks() {
    ha_chain("lacd-ha-move", true);
}

fn ha_chain(test: &str, planned: bool) {
    let (mut lab, [cpe, lac, lns], [access, wan]) = chain_lab(test);
    // lns2 next to lns1 on the wan link.
    let [a, b, c, _] = wan.b.octets();
    let lns1 = wan.b;
    let lns2 = std::net::Ipv4Addr::new(a, b, c, 3);
    lab.exec(
        &lns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{lns2}/24"),
            "dev",
            &wan.interface,
        ],
    )
    .expect("second LNS address");

    let users = lns_users(&lab);
    let mut lnsds = Vec::new();
    for (name, us, peer) in [("lns1", lns1, lns2), ("lns2", lns2, lns1)] {
        let config = lab.path(&format!("{name}.toml"));
        fs::write(
            &config,
            format!(
                r#"listen = "{us}:1701"
hostname = "{name}"
users = "{users}"
pool = ["100.64.0.0/24"]
gateway = "100.64.0.1"
[control]
socket = "{socket}"
[ha]
address = "{us}"
[[ha.peers]]
address = "{peer}"
secret = "lns1-lns2"
"#,
                users = users.display(),
                socket = lab.path(&format!("{name}.sock")).display(),
            ),
        )
        .unwrap();
        let id = lab
            .spawn(
                &lns,
                name,
                &[
                    env!("CARGO_BIN_EXE_lnsd"),
                    "--config",
                    config.to_str().unwrap(),
                ],
            )
            .unwrap();
        lab.wait_for_output(id, "listening", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\n{}", lab.report()));
        lnsds.push(id);
    }

    let config = format!(
        r#"listen = "{lac_addr}:1701"
hostname = "lac"
[[lns]]
address = "{lns1}:1701"
preference = 0
[[lns]]
address = "{lns2}:1701"
preference = 1
{tail}"#,
        lac_addr = wan.a,
        tail = lacd_access_and_ha(&lab, &access, &wan, true, true),
    );
    let lacd = start_lacd(&mut lab, &lac, config);

    let mut cpes = Cpes::start(&cpe, &access, 8);
    let up = cpes.run_until(Duration::from_secs(30), |c| c.up_count() == SUBSCRIBERS);
    assert!(
        up,
        "{} of {SUBSCRIBERS} up\n{}",
        cpes.up_count(),
        lab.report()
    );

    let sockets = lab.path("");
    let ctl = |socket: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_l2tpctl"))
            .args(["--socket", sockets.join(socket).to_str().unwrap()])
            .args(args)
            .arg("--json")
            .output()
            .expect("l2tpctl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "l2tpctl {args:?}: {text}");
        text
    };
    // Every call on lns1, and lns2 holds them all.
    let synced = WallClock::now() + Duration::from_secs(10);
    let stored = format!("\"sessions_stored\":{SUBSCRIBERS}");
    loop {
        let sessions = ctl("lac.sock", &["show", "sessions"]);
        let on_lns1 = sessions.matches(&format!("\"{lns1}:1701\"")).count();
        let status = ctl("lns2.sock", &["ha", "status"]);
        if on_lns1 == SUBSCRIBERS && status.contains(&stored) {
            break;
        }
        assert!(
            WallClock::now() < synced,
            "{on_lns1} sessions on lns1; lns2: {status}\n{}",
            lab.report()
        );
        cpes.run_until(Duration::from_millis(100), |_| false);
    }

    let killed = WallClock::now();
    if planned {
        let asked = ctl("lns1.sock", &["ha", "switchover", "all"]);
        assert!(asked.contains('1'), "{asked}");
    } else {
        // lns1 dies.
        let _ = lab.stop(lnsds[0], Signal::KILL, Duration::from_secs(5));
    }
    let recovered_by = killed + Duration::from_secs(10);
    let done = format!("\"recoveries_done\":{SUBSCRIBERS}");
    let took = loop {
        let status = ctl("lac.sock", &["ha", "status"]);
        if status.contains(&done) && status.contains("\"holding\":0,") {
            break killed.elapsed();
        }
        assert!(
            WallClock::now() < recovered_by,
            "not recovered: {status}\n{}",
            lab.report()
        );
        cpes.run_until(Duration::from_millis(50), |_| false);
    };
    let sessions = ctl("lac.sock", &["show", "sessions"]);
    let how = if planned { "asked" } else { "died" };
    eprintln!("lacd HA: {SUBSCRIBERS} subscribers recovered on lns2 {took:?} after lns1 {how}");
    assert_eq!(
        sessions.matches(&format!("\"{lns2}:1701\"")).count(),
        SUBSCRIBERS,
        "{sessions}"
    );
    // PPP went on: no PADT, no link down, no second Up, no renegotiation,
    // also for a while after (LCP echoes answered by lns2).
    cpes.run_until(Duration::from_secs(1), |_| false);
    for c in &cpes.cpes {
        assert!(c.down.is_none(), "{}: PPP down: {:?}", c.mac, c.down);
        assert_eq!((c.ups, c.renegotiations), (1, 0), "{}", c.mac);
    }
    assert_eq!(cpes.up_count(), SUBSCRIBERS);
    let stats = ctl("lac.sock", &["show", "stats"]);
    assert!(stats.contains("\"fastpath_ha_moved\":"), "{stats}");
    assert!(!stats.contains("\"fastpath_ha_moved\":0,"), "{stats}");

    if planned {
        let status = ctl("lac.sock", &["ha", "status"]);
        assert!(status.contains("\"switchovers_granted\":1"), "{status}");
        // lns1 let go of every session (released, not ended by PPP).
        let left = WallClock::now() + Duration::from_secs(5);
        loop {
            let sessions = ctl("lns1.sock", &["show", "sessions"]);
            if sessions.trim() == "[]" {
                break;
            }
            assert!(WallClock::now() < left, "lns1 still has {sessions}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let status = lab
        .stop(lacd, Signal::TERM, Duration::from_secs(10))
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "lacd: {status:?}\n{}",
        lab.report()
    );
    if planned {
        let _ = lab.stop(lnsds[0], Signal::TERM, Duration::from_secs(5));
    }
    let _ = lab.stop(lnsds[1], Signal::TERM, Duration::from_secs(5));
}

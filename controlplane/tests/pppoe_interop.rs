//! PPPoE discovery checked by others: tshark dissects what our server and
//! client send, and `pppoe-discovery` (Debian package `ppp`), a real
//! client, gets an offer from our server over a veth, and rp-pppoe's
//! `pppoe` client (Debian package `pppoe`) gets a session and ends it.
//!
//! **Needs** `tshark` for the first test and, for the two others, root
//! (network namespaces, veth, a packet socket), `pppoe-discovery` (package
//! `ppp`, which xl2tpd pulls in), `pppoe` (package `pppoe`) and `python3`
//! (a ten-line packet-socket bridge: our server runs in this process, and
//! the test crate has no packet-socket API). Without them the tests fail
//! saying what is missing.

// The helpers below are test code too: a failure in them is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant as WallClock};

use controlplane::pppoe::{Client, ClientConfig, ClientState, Server, ServerConfig, ServerEvent};
use controlplane::time::Instant;
use dataplane::wire::ethernet::Address;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustix::process::Signal;
use support::netns::{require_program, require_root, Lab};

const AC_MAC: Address = Address([0x02, 0xac, 0, 0, 0, 1]);

/// A classic pcap file (Ethernet link type) of `frames`.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).expect("frame length");
        let seconds = u32::try_from(i).expect("frame count");
        for word in [seconds, 0, len, len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    out
}

fn tshark(file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two full exchanges and a PADT each way, as tshark sees them.
#[test]
fn tshark_dissects_our_discovery() {
    require_program("tshark", "tshark").expect("tshark");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let now = Instant::from_nanos(1_000_000_000_000);
    let mut server = Server::new(
        ServerConfig {
            mac: AC_MAC,
            ac_name: "lab-lac".into(),
            service_names: vec!["internet".into()],
            ..ServerConfig::default()
        },
        now,
        &mut rng,
    );
    let mut frames = Vec::new();
    let mut clients: Vec<Client> = ["internet", ""]
        .iter()
        .enumerate()
        .map(|(n, service)| {
            Client::new(
                ClientConfig {
                    mac: Address([0x02, 0x50, 0, 0, 0, n as u8 + 1]),
                    service_name: (*service).into(),
                    ..ClientConfig::default()
                },
                &mut rng,
            )
        })
        .collect();
    let pump = |server: &mut Server, clients: &mut [Client], frames: &mut Vec<Vec<u8>>| {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for c in clients.iter_mut() {
                while c.poll_frame(&mut buf) {
                    moved = true;
                    frames.push(buf.clone());
                    server.handle_frame(now, &buf);
                }
            }
            while server.poll_frame(&mut buf) {
                moved = true;
                frames.push(buf.clone());
                for c in clients.iter_mut() {
                    c.handle_frame(now, &buf);
                }
            }
            while server.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    };
    clients[0].start(now);
    pump(&mut server, &mut clients, &mut frames);
    assert_eq!(clients[0].state(), ClientState::Up);
    // The second asks for any service.
    clients[1].start(now);
    pump(&mut server, &mut clients, &mut frames);
    let (_, sid) = clients[1].session().expect("second client up");
    clients[0].close(now);
    pump(&mut server, &mut clients, &mut frames);
    assert!(server.terminate(now, None, sid));
    pump(&mut server, &mut clients, &mut frames);

    let dir = std::env::temp_dir().join(format!("pppoe-tshark-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("discovery.pcap");
    fs::write(&file, pcap(&frames)).expect("write pcap");

    let problems = tshark(
        &file,
        &["-Y", "_ws.malformed || _ws.expert.severity >= warning"],
    );
    assert_eq!(problems.trim(), "", "tshark finds problems");
    let fields = tshark(
        &file,
        &[
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "pppoe.code",
            "-e",
            "pppoe.session_id",
            "-e",
            "pppoed.tags.service_name",
            "-e",
            "pppoed.tags.ac_name",
            "-e",
            "pppoed.tags.ac_cookie",
        ],
    );
    let _ = fs::remove_dir_all(&dir);
    let lines: Vec<&str> = fields.lines().collect();
    let codes: Vec<&str> = lines
        .iter()
        .map(|l| l.split('|').next().unwrap_or(""))
        .collect();
    // PADI PADO PADR PADS, twice, then PADT from the subscriber and from us.
    assert_eq!(
        codes,
        ["0x09", "0x07", "0x19", "0x65", "0x09", "0x07", "0x19", "0x65", "0xa7", "0xa7"],
        "{fields}"
    );
    let pado: Vec<&str> = lines[1].split('|').collect();
    assert_eq!(pado[2], "internet", "{fields}");
    assert_eq!(pado[3], "lab-lac", "{fields}");
    assert_eq!(pado[4].len(), 48, "a 24-byte cookie in hex: {fields}");
    let pads: Vec<&str> = lines[3].split('|').collect();
    assert_ne!(pads[1], "0x0000", "{fields}");
}

/// The bridge in the LAC's namespace: frames of EtherType 0x8863 from the
/// interface go to stdout as hex lines, hex lines from stdin go out; the
/// first line is the interface's MAC address.
const BRIDGE: &str = r#"
import select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8863))
s.bind((sys.argv[1], 0x8863))
print("mac " + s.getsockname()[4].hex(), flush=True)
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if s in ready:
        frame, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            print("rx " + frame.hex(), flush=True)
    if sys.stdin in ready:
        line = sys.stdin.readline()
        if not line:
            break
        s.send(bytes.fromhex(line.strip()))
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
        Bridge {
            child,
            stdin,
            lines,
        }
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

/// Answer what comes through the bridge until the process `peer` exits
/// (15 s at most).
fn serve(
    lab: &mut Lab,
    peer: support::netns::ProcessId,
    bridge: &mut Bridge,
    server: &mut Server,
    clock: &dyn Fn(WallClock) -> Instant,
) {
    let deadline = WallClock::now() + Duration::from_secs(15);
    let mut buf = Vec::new();
    while lab.running(peer) && WallClock::now() < deadline {
        let Ok(line) = bridge.lines.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let Some(hex) = line.strip_prefix("rx ") else {
            continue;
        };
        server.handle_frame(clock(WallClock::now()), &unhex(hex));
        while server.poll_frame(&mut buf) {
            bridge.send(&buf);
        }
    }
    // Frames that came with the peer's last breath (a PADT as it exits).
    while let Ok(line) = bridge.lines.recv_timeout(Duration::from_millis(200)) {
        if let Some(hex) = line.strip_prefix("rx ") {
            server.handle_frame(clock(WallClock::now()), &unhex(hex));
        }
    }
}

/// `pppoe-discovery -U -S internet` broadcasts a PADI with a Host-Uniq and
/// prints the offer: our AC-Name, the services we offer, our cookie and our
/// MAC address.
#[test]
fn pppoe_discovery_gets_our_offer() {
    require_root().expect("root");
    require_program("pppoe-discovery", "ppp").expect("pppoe-discovery");
    require_program("python3", "python3").expect("python3");
    let mut lab = Lab::new("pppoe-disc").expect("lab");
    let cpe = lab.namespace("cpe").expect("cpe namespace");
    let lac = lab.namespace("lac").expect("lac namespace");
    let link = lab.link(&cpe, &lac).expect("veth");

    let mut bridge = Bridge::start(lac.name(), &link.interface);
    let first = bridge
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the bridge says its MAC address");
    let mac_bytes = unhex(first.strip_prefix("mac ").expect("mac line"));
    let our_mac = Address::from_bytes(&mac_bytes).expect("six bytes");

    let started = WallClock::now();
    let clock = |w: WallClock| {
        Instant::from_nanos(u64::try_from(w.duration_since(started).as_nanos()).unwrap_or(u64::MAX))
            + Duration::from_secs(1000)
    };
    let mut server = Server::new(
        ServerConfig {
            mac: our_mac,
            ac_name: "lab-lac".into(),
            service_names: vec!["internet".into(), "iptv".into()],
            ..ServerConfig::default()
        },
        clock(WallClock::now()),
        &mut ChaCha8Rng::seed_from_u64(7),
    );

    let discovery = lab
        .spawn(
            &cpe,
            "pppoe-discovery",
            &[
                "pppoe-discovery",
                "-I",
                &link.interface,
                "-U",
                "-S",
                "internet",
                "-t",
                "1",
                "-a",
                "3",
            ],
        )
        .expect("pppoe-discovery starts");
    serve(&mut lab, discovery, &mut bridge, &mut server, &clock);
    let _ = lab.stop(discovery, Signal::TERM, Duration::from_secs(1));
    let output = lab.output(discovery);
    let report = lab.report();
    assert!(
        output.contains("Access-Concentrator: lab-lac"),
        "{output}\n{report}"
    );
    assert!(output.contains("Service-Name: internet"), "{output}");
    assert!(output.contains("Service-Name: iptv"), "{output}");
    assert!(output.contains("Got a cookie:"), "{output}");
    assert!(
        output.contains(&format!("AC-Ethernet-Address: {our_mac}")),
        "{output}"
    );
    let stats = server.stats();
    assert!(
        stats.padi_received >= 1 && stats.pado_sent >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
}

/// rp-pppoe's client (Debian package `pppoe`) does the whole discovery with
/// our server (`-d`: PADI, PADO, PADR with our cookie, PADS, then print the
/// session and exit), then ends the session with a PADT (`-k`).
#[test]
fn rp_pppoe_client_gets_a_session_and_ends_it() {
    require_root().expect("root");
    require_program("pppoe", "pppoe").expect("rp-pppoe's pppoe client");
    require_program("python3", "python3").expect("python3");
    let mut lab = Lab::new("pppoe-rp").expect("lab");
    let cpe = lab.namespace("cpe").expect("cpe namespace");
    let lac = lab.namespace("lac").expect("lac namespace");
    let link = lab.link(&cpe, &lac).expect("veth");

    let mut bridge = Bridge::start(lac.name(), &link.interface);
    let first = bridge
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the bridge says its MAC address");
    let our_mac = Address::from_bytes(&unhex(first.strip_prefix("mac ").expect("mac line")))
        .expect("six bytes");
    let started = WallClock::now();
    let clock = |w: WallClock| {
        Instant::from_nanos(u64::try_from(w.duration_since(started).as_nanos()).unwrap_or(u64::MAX))
            + Duration::from_secs(1000)
    };
    let mut server = Server::new(
        ServerConfig {
            mac: our_mac,
            ac_name: "lab-lac".into(),
            service_names: vec!["internet".into()],
            ..ServerConfig::default()
        },
        clock(WallClock::now()),
        &mut ChaCha8Rng::seed_from_u64(8),
    );

    let iface = link.interface.as_str();
    let client = lab
        .spawn(
            &cpe,
            "pppoe-d",
            &[
                "pppoe", "-I", iface, "-U", "-S", "internet", "-t", "1", "-d",
            ],
        )
        .expect("pppoe -d starts");
    serve(&mut lab, client, &mut bridge, &mut server, &clock);
    let output = lab.output(client);
    let report = lab.report();
    // It prints SESSION_ID:AC-MAC.
    let (mac, session_id) = match server.poll_event() {
        Some(ServerEvent::SessionRequested {
            mac,
            session_id,
            service_name,
            host_uniq,
            ..
        }) => {
            assert_eq!(service_name, "internet");
            assert!(host_uniq.is_some(), "-U sends a Host-Uniq");
            (mac, session_id)
        }
        other => panic!("no session: {other:?}\n{output}\n{report}"),
    };
    let printed = format!("{session_id}:{our_mac}");
    assert!(
        output.to_lowercase().contains(&printed),
        "expected {printed} in:\n{output}"
    );
    assert!(server.session_of(mac, session_id).is_some());

    // And hangs up: a PADT for that session.
    let arg = format!("{session_id}:{our_mac}");
    let kill = lab
        .spawn(&cpe, "pppoe-k", &["pppoe", "-I", iface, "-e", &arg, "-k"])
        .expect("pppoe -k starts");
    serve(&mut lab, kill, &mut bridge, &mut server, &clock);
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::SessionTerminated { mac, session_id }),
        "{}",
        lab.report()
    );
    assert_eq!(server.session_count(), 0);
    let stats = server.stats();
    assert_eq!(
        stats.dropped_total() + stats.refused_total(),
        0,
        "{stats:?}"
    );
}

//! Our LAC with real subscribers against a real LNS: `l2bench`'s PPPoE
//! subscribers dial through `lacd` (the AF_XDP fast path) to l2tpns, which
//! authenticates them through FreeRADIUS, gives them addresses from its pool
//! and routes their traffic through its TUN device. Sessions come up, traffic
//! flows both ways without loss, `l2tpctl` lists the sessions, and lacd's
//! SIGTERM ends them on l2tpns with a CDN each and a StopCCN, seen by tshark.
//!
//! The lab (namespaces of the test's own, see the support module):
//! `cpe` (l2bench on the access veth), `lac` (lacd: the access veth and the
//! wan veth), `lns` (l2tpns on the wan veth, FreeRADIUS on the loopback,
//! l2tpns's `tun0` with routes to its pool, and the traffic address on the
//! loopback: upstream packets l2tpns writes into `tun0` are delivered there,
//! and the kernel routes the answers back into `tun0`).
//!
//! It lives in the bench crate because that is where `l2bench` is a binary
//! of the package under test (`CARGO_BIN_EXE_l2bench`); `lacd` and `l2tpctl`
//! are the controlplane crate's binaries, which cargo puts in the same
//! directory whenever it builds the controlplane tests (`cargo test
//! --workspace`, as CI runs). Alone: `cargo build -p controlplane --bins`
//! first. The same scenario as a script: deploy/e2e/l2tpns.sh.
//!
//! **Needs root** (namespaces, veth, AF_XDP, TUN, capture) and the Debian
//! packages `l2tpns`, `freeradius`, `tshark`, `ethtool`, `iproute2`, as CI
//! has them. Without them the test fails saying what is missing.

// Test code throughout: a failure in a helper is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

// The controlplane crate's harness for real peers (namespace lab, captures,
// l2tpns, FreeRADIUS), shared rather than copied.
#[path = "../../controlplane/tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench::subscribers::report::Report;
use rustix::process::Signal;
use support::capture::{acknowledged, control_flow, Capture};
use support::netns::{require_program, Lab, Netns};
use support::peers::{l2tpns_pool, L2tpnsLns, L2tpnsLnsConfig, L2TPNS_RADIUS_SECRET};
use support::radius::{FreeRadius, Place, AUTH_PORT};

const SECRET: &str = "interop-secret";
/// The users of this overlay are l2bench's: `sub{N}`, password "lab".
const RADIUS_OVERLAY: &str = "deploy/interop/radius-l2bench";
/// The far end of the subscribers' traffic, on the lns namespace's loopback.
const TRAFFIC_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
/// Subscribers with PAP, after those with CHAP (whose number each test
/// chooses; l2tpns asks for PAP first and they Nak towards CHAP).
const PAP_SUBSCRIBERS: usize = 2;
/// Packets per second in each direction over all subscribers, and for how
/// long: a moderate load, far below what either side forwards.
const RATE: u64 = 2000;
const DURATION_S: u64 = 3;
/// How long l2bench may take in all (setup, traffic, report).
const BENCH_LIMIT: Duration = Duration::from_secs(90);

/// A binary of the workspace: l2bench is this package's; lacd and l2tpctl
/// are the controlplane package's, in the same target directory.
fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_l2bench")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} not found: cargo builds it with the controlplane tests \
         (`cargo test --workspace`); alone, run `cargo build -p controlplane --bins` first",
        path.display()
    );
    path
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Checksums filled in by software on a veth end, and no IPv6 on it: an
/// AF_XDP socket sees the raw bytes, where a veth leaves only the
/// pseudo-header sum of an offloaded checksum (deploy/lab.sh does the same),
/// and IPv6's neighbour discovery would only add noise on the links.
fn plain_link(lab: &Lab, ns: &Netns, interface: &str) {
    lab.exec(ns, &["ethtool", "-K", interface, "tx", "off"])
        .expect("ethtool -K tx off");
    let key = format!("net.ipv6.conf.{interface}.disable_ipv6=1");
    lab.exec(ns, &["sysctl", "-qw", &key]).expect("sysctl");
}

/// `l2bench run` in `cpe` until it exits, bounded; its JSON report.
#[allow(clippy::too_many_arguments)]
fn l2bench(
    lab: &mut Lab,
    cpe: &Netns,
    lns: &Netns,
    interface: &str,
    label: &str,
    auth: &str,
    first: usize,
    count: usize,
    traffic: bool,
) -> Report {
    let report = lab.path(&format!("{label}.json"));
    let l2bench = binary("l2bench");
    let (first, count, rate, duration) = (
        first.to_string(),
        count.to_string(),
        RATE.to_string(),
        DURATION_S.to_string(),
    );
    let traffic_addr = TRAFFIC_ADDR.to_string();
    #[rustfmt::skip]
    let mut argv = vec![
        text(&l2bench), "run", "--netns", cpe.name(), "--interface", interface,
        "--subscribers", &count, "--first-subscriber", &first, "--password", "lab",
        "--auth", auth, "--report", text(&report), "--no-hang-up", "--quiet",
        "--setup-timeout", "30",
    ];
    if traffic {
        #[rustfmt::skip]
        argv.extend([
            "--traffic-netns", lns.name(), "--traffic-addr", &traffic_addr,
            "--rate", &rate, "--duration", &duration,
        ]);
    } else {
        argv.extend(["--duration", "0"]);
    }
    let process = lab.spawn(cpe, label, &argv).expect("l2bench starts");
    let deadline = Instant::now() + BENCH_LIMIT;
    while lab.running(process) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = lab
        .stop(process, Signal::TERM, Duration::from_secs(2))
        .expect("l2bench stops");
    let json = fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "{label}: no report ({e}), l2bench {status:?}\n{}",
            lab.report()
        )
    });
    let report: Report = serde_json::from_str(&json).expect("l2bench's report parses");
    assert!(
        status.is_some_and(|s| s.success()),
        "{label}: l2bench {status:?}: {report}\n{}",
        lab.report()
    );
    report
}

/// Relay mode: LCP and authentication pass through lacd to l2tpns.
#[test]
fn l2bench_subscribers_through_lacd_relaying_to_l2tpns() {
    scenario("l2il-relay", "relay", 20);
}

/// Proxy mode: lacd negotiates LCP and takes the authentication itself,
/// and hands both to l2tpns in the ICCN (RFC 2661 §4.4.5's proxy AVPs),
/// which l2tpns checks with FreeRADIUS.
#[test]
fn l2bench_subscribers_through_lacd_proxying_to_l2tpns() {
    scenario("l2il-proxy", "proxy", 8);
}

/// l2bench's subscribers (CHAP, then a few with PAP) come up through lacd's
/// fast path against l2tpns and FreeRADIUS with addresses from l2tpns's
/// pool, exchange traffic both ways with no loss, are listed by `l2tpctl`,
/// and end with lacd's SIGTERM: CDNs and a StopCCN, each acknowledged by
/// l2tpns, which ends every session and has FreeRADIUS account for it.
fn scenario(tag: &str, mode: &str, chap_subscribers: usize) {
    for (program, package) in [
        ("l2tpns", "l2tpns"),
        ("freeradius", "freeradius"),
        ("ethtool", "ethtool"),
        ("sysctl", "procps"),
    ] {
        require_program(program, package).expect("a program the test needs");
    }
    let (lacd, l2tpctl) = (binary("lacd"), binary("l2tpctl"));
    let pool = l2tpns_pool().expect("l2tpns's pool");

    let mut lab = Lab::new(tag).expect("lab");
    let cpe = lab.namespace("cpe").expect("cpe namespace");
    let lac = lab.namespace("lac").expect("lac namespace");
    let lns = lab.namespace("lns").expect("lns namespace");
    let access = lab.link(&cpe, &lac).expect("access veth");
    let wan = lab.link(&lac, &lns).expect("wan veth");
    for (ns, link) in [(&cpe, &access), (&lac, &access), (&lac, &wan), (&lns, &wan)] {
        plain_link(&lab, ns, &link.interface);
    }
    let traffic_cidr = format!("{TRAFFIC_ADDR}/32");
    lab.exec(&lns, &["ip", "addr", "add", &traffic_cidr, "dev", "lo"])
        .expect("the traffic address");

    let mut radius = FreeRadius::start(
        Place::Namespace(&mut lab, &lns),
        L2TPNS_RADIUS_SECRET,
        Some(RADIUS_OVERLAY),
    )
    .expect("freeradius");
    let l2tpns = L2tpnsLns::start(
        &mut lab,
        &lns,
        &L2tpnsLnsConfig {
            bind: wan.b,
            hostname: "l2tpns-lns",
            secret: SECRET,
            radius_port: AUTH_PORT,
        },
    )
    .expect("l2tpns");
    // On l2tpns's side: lacd's fast path sends and takes L2TP data through
    // AF_XDP, which packet taps in its own namespace do not see.
    let capture =
        Capture::start(&mut lab, &lns, &wan.interface, wan.a, "lacd-l2tpns").expect("capture");

    let socket = lab.path("lacd.sock");
    let config = lab.path("lacd.toml");
    fs::write(
        &config,
        format!(
            r#"listen = "{lac_addr}:1701"
hostname = "our-lacd"
secret = "{SECRET}"
mode = "{mode}"
[[lns]]
address = "{lns_addr}:1701"
[pppoe]
interface = "{access}"
[dataplane]
enabled = true
wan = "{wan}"
[control]
socket = "{socket}"
"#,
            lac_addr = wan.a,
            lns_addr = wan.b,
            access = access.interface,
            wan = wan.interface,
            socket = socket.display(),
        ),
    )
    .unwrap();
    let lacd_process = lab
        .spawn(&lac, "lacd", &[text(&lacd), "--config", text(&config)])
        .unwrap();
    lab.wait_for_output(lacd_process, "listening", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.report()));

    // CHAP with traffic, then PAP without (l2tpns's echoes to subscribers
    // whose l2bench has exited go unanswered; it drops them after its
    // idle_echo_timeout of 10 s, so the rest of the test stays well within).
    let chap = l2bench(
        &mut lab,
        &cpe,
        &lns,
        &access.interface,
        "l2bench-chap",
        "chap",
        0,
        chap_subscribers,
        true,
    );
    println!("{tag}: l2bench with CHAP against l2tpns through lacd ({mode}):\n{chap}");
    let pap = l2bench(
        &mut lab,
        &cpe,
        &lns,
        &access.interface,
        "l2bench-pap",
        "pap",
        chap_subscribers,
        PAP_SUBSCRIBERS,
        false,
    );
    let total = chap_subscribers + PAP_SUBSCRIBERS;

    // Every subscriber up, once, with its own address from l2tpns's pool.
    let mut addresses = HashSet::new();
    for (report, count) in [(&chap, chap_subscribers), (&pap, PAP_SUBSCRIBERS)] {
        assert_eq!(report.sessions_up, count, "{report}");
        assert_eq!(report.sessions_up_at_end, count, "{report}");
        assert_eq!(report.sessions_flapped, 0, "{report}");
        for s in &report.subscribers {
            let address: Ipv4Addr = s
                .address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("subscriber {} has no address: {s:?}", s.index));
            assert!(
                pool.iter().any(|p| p.contains(address)),
                "{address} is not in l2tpns's pool {pool:?}"
            );
            assert!(addresses.insert(address), "{address} given twice");
        }
    }
    // Traffic both ways, every packet through.
    for (direction, d) in [
        ("upstream", &chap.upstream),
        ("downstream", &chap.downstream),
    ] {
        let expected = RATE * DURATION_S * 9 / 10;
        assert!(
            d.sent >= expected,
            "{direction}: {} sent, expected about {}: {chap}",
            d.sent,
            RATE * DURATION_S
        );
        assert_eq!(d.lost, 0, "{direction}: {chap}");
        assert_eq!(d.received, d.sent, "{direction}: {chap}");
        assert_eq!(d.foreign, 0, "{direction}: {chap}");
    }

    // lacd lists them, each up, all on l2tpns.
    let json = ctl(&l2tpctl, &socket, "sessions");
    let listing = json.to_string();
    let rows = json
        .as_array()
        .or_else(|| json.get("sessions").and_then(|s| s.as_array()))
        .unwrap_or_else(|| panic!("no list of sessions in {listing}"));
    assert_eq!(rows.len(), total, "{listing}");
    let lns_addr = format!("{}:1701", wan.b);
    for row in rows {
        assert_eq!(row["state"], "up", "{listing}");
        assert_eq!(row["lns"], lns_addr.as_str(), "{listing}");
    }

    let stats = ctl(&l2tpctl, &socket, "stats");
    println!("{tag}: lacd's counters (l2tpctl show stats): {stats}");
    // The traffic went through the fast path's workers, not the control
    // plane: every test packet, both ways, was one the workers sent on.
    let forwarded = stats["fastpath_transmitted"].as_u64().unwrap_or(0);
    let offered = chap.upstream.sent + chap.downstream.sent;
    assert!(forwarded >= offered, "{forwarded} < {offered}: {stats}");

    // l2tpns: FreeRADIUS allowed every login, CHAP and PAP.
    let log = l2tpns.log();
    let allowed = |method: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("{method} User sub")))
            .filter(|l| l.contains("authentication allowed"))
            .count()
    };
    assert_eq!(allowed("CHAP"), chap_subscribers, "{log}");
    assert_eq!(allowed("PAP"), PAP_SUBSCRIBERS, "{log}");

    // The stop: lacd ends every call (CDN) and the tunnel (StopCCN) and
    // waits for l2tpns's acknowledgements.
    let status = lab
        .stop(lacd_process, Signal::TERM, Duration::from_secs(15))
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "lacd: {status:?}\n{}",
        lab.report()
    );
    assert!(
        lab.output(lacd_process).contains("acknowledged=true"),
        "lacd's stop was not acknowledged\n{}",
        lab.report()
    );
    l2tpns
        .wait_for_log(&mut lab, "Received StopCCN", Duration::from_secs(5))
        .expect("l2tpns got lacd's StopCCN");
    // l2tpns ended every session: those with a CDN first, the rest with
    // the tunnel.
    let log = l2tpns.log();
    let ended = log.matches("Shutting down session").count();
    assert_eq!(ended, total, "{log}");

    // What tshark saw on l2tpns's side.
    let pcap = capture.stop(&mut lab).expect("stop capture");
    let packets = pcap.packets().expect("tshark");
    let summary = || pcap.summary().unwrap_or_default();
    let flow = control_flow(&packets, &wan);
    let count = |kind: &str| flow.iter().filter(|f| f.as_str() == kind).count();
    assert_eq!(count("LAC>LNS SCCRQ"), 1, "{flow:?}");
    assert_eq!(count("LAC>LNS ICRQ"), total, "{flow:?}");
    assert_eq!(count("LAC>LNS ICCN"), total, "{flow:?}");
    // lacd queues a CDN for every call, then closes the tunnel at once: the
    // CDNs within l2tpns's receive window (4: it sends no Receive Window
    // Size AVP) go out, the StopCCN clears the rest (RFC 2661 §4.4.1: a
    // StopCCN clears every session of the tunnel).
    let cdns = count("LAC>LNS CDN");
    assert!((1..=total).contains(&cdns), "{cdns} CDNs: {flow:?}");
    assert_eq!(l2tpns.log().matches("Received CDN").count(), cdns);
    assert_eq!(count("LAC>LNS StopCCN"), 1, "{flow:?}");
    assert_eq!(count("LNS>LAC CDN"), 0, "{flow:?}");
    assert_eq!(count("LNS>LAC StopCCN"), 0, "{flow:?}");
    let lns_ip = wan.b.to_string();
    for message in packets
        .iter()
        .filter(|p| p.src == wan.a.to_string() && p.control && p.message_type.is_some())
    {
        assert!(
            acknowledged(&packets, message, &lns_ip),
            "l2tpns did not acknowledge lacd's {} (frame {}):\n{}",
            message.kind(),
            message.frame,
            summary()
        );
    }
    let data = packets.iter().filter(|p| !p.control).count();
    println!(
        "{tag}: the capture on l2tpns's side: {} L2TP packets, {data} of them data; control: {flow:?}",
        packets.len()
    );
    assert_eq!(pcap.problems().expect("tshark"), "", "{}", summary());

    // FreeRADIUS accounted every session: a Start when it came up, a Stop
    // when l2tpns ended it.
    let records = radius.wait_for_records(Duration::from_secs(5), |r| {
        status_count(r, "Start") >= total && status_count(r, "Stop") >= total
    });
    assert_eq!(status_count(&records, "Start"), total, "{records:#?}");
    assert_eq!(status_count(&records, "Stop"), total, "{records:#?}");

    radius.stop(&mut lab).expect("stop freeradius");
    l2tpns
        .quit(&mut lab, Duration::from_secs(2))
        .expect("stop l2tpns");
}

/// `l2tpctl --socket SOCKET show WHAT --json`, parsed.
fn ctl(l2tpctl: &Path, socket: &Path, what: &str) -> serde_json::Value {
    let out = std::process::Command::new(l2tpctl)
        .args(["--socket", text(socket), "show", what, "--json"])
        .output()
        .expect("l2tpctl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "l2tpctl show {what}: {text} {out:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("l2tpctl's JSON: {e}: {text}"))
}

fn status_count(records: &[support::radius::Record], status: &str) -> usize {
    records
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some(status))
        .count()
}

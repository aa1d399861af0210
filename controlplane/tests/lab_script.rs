//! `deploy/lab.sh`, the namespace lab everyone shares, does what it says:
//! `up` builds the topology of DESIGN.md §2.4 (twice gives the same lab),
//! packets cross both bridges and the core routes, `status` shows it, the
//! daemon helper starts and stops a process in a box (SIGKILL after the
//! grace when SIGTERM is ignored), and `down` removes everything, also from a
//! half-built lab and when nothing is there.
//!
//! **Needs root** (network namespaces, veth pairs), as CI runs; it fails
//! with a message saying so otherwise, rather than passing without having
//! run.
//!
//! The lab has fixed names (`l2lab-*`), so every test that uses it holds an
//! exclusive flock on `/run/l2lab.lock` for its whole run (cargo runs tests
//! in parallel), and a guard runs `lab.sh down` at the end, also when the
//! test fails: nothing is left behind.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// The lock every user of the lab holds (see deploy/lab.sh).
const LOCK: &str = "/run/l2lab.lock";
const NAMESPACES: [&str; 6] = [
    "l2lab-cpe",
    "l2lab-lac",
    "l2lab-lns1",
    "l2lab-lns2",
    "l2lab-net",
    "l2lab-sw",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab.sh")
}

/// Runs `lab.sh ARGS` with extra environment, bounded by `timeout`, and
/// fails the test with its output if it fails.
fn lab_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let output = Command::new("timeout")
        .args(["--kill-after=5s", "60s", "bash"])
        .arg(script())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running deploy/lab.sh");
    assert!(
        output.status.success(),
        "lab.sh {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn lab(args: &[&str]) -> String {
    String::from_utf8(lab_with(&[], args).stdout).unwrap()
}

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(output.status.success(), "ip {} failed", args.join(" "));
    String::from_utf8(output.stdout).unwrap()
}

fn lab_namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("l2lab-"))
        .map(str::to_owned)
        .collect()
}

/// An exclusive flock on [`LOCK`], held by a `flock` child for as long as
/// this value lives. The child holds the lock until its stdin closes: when
/// this is dropped, or when the test process dies however it dies.
struct LabLock {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl LabLock {
    fn acquire() -> LabLock {
        let mut child = Command::new("flock")
            .args(["--exclusive", "--wait", "600", LOCK])
            .args(["sh", "-c", "echo locked; exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running flock (util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "could not take {LOCK} within 600 s");
        let stdin = child.stdin.take();
        LabLock { child, stdin }
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Runs `lab.sh down` when dropped, also when the test panics.
struct LabDown;

impl Drop for LabDown {
    fn drop(&mut self) {
        let status = Command::new("timeout")
            .args(["--kill-after=5s", "60s", "bash"])
            .arg(script())
            .arg("down")
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("lab_script cleanup: lab.sh down failed: {status:?}");
        }
    }
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "lab_script needs root (network namespaces, veth pairs); run it as root, as CI does"
    );
}

/// A UDP socket bound to `addr` inside the namespace `ns`: a short thread
/// enters the namespace (setns(2) moves only the calling thread) and
/// creates it there; the socket stays in that namespace.
fn udp_in(ns: &str, addr: SocketAddrV4) -> UdpSocket {
    let handle = Path::new("/run/netns").join(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let netns = File::open(&handle).unwrap();
                move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network)).unwrap();
                UdpSocket::bind(addr).unwrap()
            })
            .join()
            .unwrap()
    })
}

/// The lab has no `ping`: a datagram from `from_ns` to `to`:7 inside `to_ns`
/// and the answer back prove the path both ways (ARP, bridge, routes).
/// Retried for a while: the first one waits for ARP.
#[track_caller]
fn reach(from_ns: &str, to_ns: &str, to: Ipv4Addr) {
    let server = udp_in(to_ns, SocketAddrV4::new(to, 7));
    let client = udp_in(from_ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        client.send_to(b"lab probe", (to, 7)).unwrap();
        let Ok((n, from)) = server.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(&buf[..n], b"lab probe");
        server.send_to(b"lab answer", from).unwrap();
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"lab answer");
            return;
        }
    }
    panic!("{from_ns} cannot reach {to} in {to_ns} (and back) within 5 s");
}

#[test]
fn lab_script_builds_the_lab_idempotently_and_removes_all_of_it() {
    require_root();
    let _lock = LabLock::acquire();
    let _down = LabDown;
    // A lab left by someone else is not ours to judge: start from nothing.
    lab(&["down"]);

    lab(&["up"]);
    let first: Vec<String> = NAMESPACES
        .iter()
        .map(|ns| ip(&["-n", ns, "-br", "addr"]) + &ip(&["-n", ns, "route"]))
        .collect();
    lab(&["up"]);
    let second: Vec<String> = NAMESPACES
        .iter()
        .map(|ns| ip(&["-n", ns, "-br", "addr"]) + &ip(&["-n", ns, "route"]))
        .collect();
    assert_eq!(first, second, "a second `up` changed the lab");
    let mut names = lab_namespaces();
    names.sort();
    assert_eq!(names, NAMESPACES);

    // Over br-wan, over br-core, and the core's routes to the other LNS.
    reach("l2lab-lac", "l2lab-lns1", Ipv4Addr::new(10, 0, 0, 11));
    reach("l2lab-lac", "l2lab-lns2", Ipv4Addr::new(10, 0, 0, 12));
    reach("l2lab-lns1", "l2lab-net", Ipv4Addr::new(10, 1, 0, 2));
    reach("l2lab-net", "l2lab-lns2", Ipv4Addr::new(10, 1, 0, 12));
    // The subscriber's line carries Ethernet only; both ends are up.
    assert!(ip(&["-n", "l2lab-cpe", "-br", "link", "show", "cpe0"]).contains(" UP "));
    assert!(ip(&["-n", "l2lab-lac", "-br", "link", "show", "access0"]).contains(" UP "));
    assert!(ip(&["-n", "l2lab-net", "route"]).contains("100.64.4.0/22 via 10.1.0.12"));
    assert!(ip(&["-n", "l2lab-lns1", "route"]).contains("default via 10.1.0.2"));

    let users = fs::read_to_string("/run/l2lab/users").unwrap();
    controlplane::aaa::users::Users::parse(&users, "/run/l2lab/users")
        .expect("the lab's users file parses");
    assert_eq!(users.lines().filter(|l| l.ends_with(" lab")).count(), 4096);
    assert!(users.contains("\nsub0 lab\n") && users.contains("\nsub4095 lab\n"));
    let mode = fs::metadata("/run/l2lab/users")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the users file holds passwords: root only");

    // The boxes' configs, made from deploy/examples, are valid.
    let lac = controlplane::config::LacConfig::load(Path::new("/run/l2lab/lac.toml")).unwrap();
    assert_eq!(lac.control.socket, Path::new("/run/l2lab/lac.sock"));
    assert!(lac.dataplane.enabled, "the lab runs the fast path");
    for lns in ["lns1", "lns2"] {
        let path = format!("/run/l2lab/{lns}.toml");
        controlplane::config::LnsConfig::load(Path::new(&path)).unwrap();
    }

    let status = lab(&["status"]);
    for needle in NAMESPACES.iter().copied().chain([
        "br-wan",
        "br-core",
        "10.0.0.1/24",
        "10.1.0.12/24",
        "cpe0",
    ]) {
        assert!(status.contains(needle), "status lacks {needle}:\n{status}");
    }

    lab(&["down"]);
    lab(&["down"]);
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert!(!Path::new("/run/l2lab").exists());
}

#[test]
fn lab_script_removes_a_half_built_lab() {
    require_root();
    let _lock = LabLock::acquire();
    let _down = LabDown;
    lab(&["down"]);
    // What an `up` interrupted early leaves: some namespaces, one link, the
    // state directory.
    ip(&["netns", "add", "l2lab-lac"]);
    ip(&["netns", "add", "l2lab-sw"]);
    #[rustfmt::skip]
    ip(&["link", "add", "wan0", "netns", "l2lab-lac", "type", "veth",
         "peer", "name", "wan-lac", "netns", "l2lab-sw"]);
    fs::create_dir_all("/run/l2lab").unwrap();
    lab(&["down"]);
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert!(!Path::new("/run/l2lab").exists());
    // And `up` over a half-built lab completes it.
    ip(&["netns", "add", "l2lab-lns2"]);
    lab(&["up"]);
    reach("l2lab-lns2", "l2lab-net", Ipv4Addr::new(10, 1, 0, 2));
    lab(&["down"]);
    assert_eq!(lab_namespaces(), Vec::<String>::new());
}

/// A stand-in daemon and its config template, in a scratch directory that
/// is removed on drop.
struct FakeDaemon {
    dir: PathBuf,
}

impl FakeDaemon {
    /// `ignore_term`: the stand-in ignores SIGTERM, so only SIGKILL ends it.
    fn new(ignore_term: bool) -> FakeDaemon {
        let dir = std::env::temp_dir().join(format!("lab-script-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("examples")).unwrap();
        // The real example, so that what the lab makes of it is checked too.
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
        fs::copy(examples.join("lnsd.toml"), dir.join("examples/lnsd.toml")).unwrap();
        let trap = if ignore_term { "trap '' TERM" } else { "" };
        let mut fake = File::create(dir.join("lnsd")).unwrap();
        // Says where it runs and with what, then waits to be stopped.
        writeln!(
            fake,
            "#!/bin/bash\n{trap}\necho \"fake lnsd $* in $(ip netns identify $$)\"\n\
             while true; do sleep 0.1; done"
        )
        .unwrap();
        drop(fake);
        fs::set_permissions(dir.join("lnsd"), fs::Permissions::from_mode(0o755)).unwrap();
        FakeDaemon { dir }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LNSD", self.dir.join("lnsd").display().to_string()),
            (
                "L2LAB_EXAMPLES",
                self.dir.join("examples").display().to_string(),
            ),
            ("L2LAB_START_WAIT", "1".into()),
            ("L2LAB_STOP_GRACE", "1".into()),
        ]
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn pid_of(box_name: &str) -> Option<u32> {
    fs::read_to_string(format!("/run/l2lab/{box_name}.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn lab_script_starts_and_stops_a_daemon_in_its_box() {
    require_root();
    let _lock = LabLock::acquire();
    let _down = LabDown;
    lab(&["down"]);
    for ignore_term in [false, true] {
        let fake = FakeDaemon::new(ignore_term);
        let env = fake.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        lab_with(&env, &["up"]);
        // lns2's config is lns1's example with lns2's own values, and it is
        // a valid lnsd config.
        let path = Path::new("/run/l2lab/lns2.toml");
        let lns2 = controlplane::config::LnsConfig::load(path).unwrap();
        assert_eq!(lns2.listen.to_string(), "10.0.0.12:1701");
        assert_eq!(lns2.hostname, "lns2");
        assert_eq!(lns2.pool, ["100.64.4.0/22"]);
        assert_eq!(lns2.gateway, Some(Ipv4Addr::new(100, 64, 4, 1)));
        assert_eq!(lns2.users.as_deref(), Some(Path::new("/run/l2lab/users")));
        assert_eq!(lns2.control.socket, Path::new("/run/l2lab/lns2.sock"));
        assert!(lns2.dataplane.enabled, "the lab runs the fast path");
        let lns1 =
            controlplane::config::LnsConfig::load(Path::new("/run/l2lab/lns1.toml")).unwrap();
        assert_eq!(lns1.listen.to_string(), "10.0.0.11:1701");
        assert_eq!(lns1.pool, ["100.64.0.0/22"]);

        lab_with(&env, &["start", "lns2"]);
        let pid = pid_of("lns2").expect("a pid file");
        assert!(alive(pid));
        // Starting a running box again is not an error and starts nothing.
        lab_with(&env, &["start", "lns2"]);
        assert_eq!(pid_of("lns2"), Some(pid));
        let status = lab_with(&env, &["status"]);
        assert!(String::from_utf8_lossy(&status.stdout).contains("lns2  running"));
        // It runs inside its box, with its config.
        let deadline = Instant::now() + Duration::from_secs(5);
        let log = loop {
            let log = fs::read_to_string("/run/l2lab/lns2.log").unwrap_or_default();
            if log.contains("fake lnsd") || Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            log.contains("fake lnsd --config /run/l2lab/lns2.toml in l2lab-lns2"),
            "{log}"
        );

        lab_with(&env, &["stop", "lns2"]);
        // Reaped by init once it exits; give that a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !alive(pid),
            "lns2 still runs after stop (ignore_term {ignore_term})"
        );
        assert_eq!(pid_of("lns2"), None);
        lab_with(&env, &["stop", "lns2"]);
        lab(&["down"]);
    }
    assert_eq!(lab_namespaces(), Vec::<String>::new());
}

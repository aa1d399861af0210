//! Our RADIUS client against a real FreeRADIUS on loopback.
//!
//! Each test starts its own `freeradius -X` from the templates in
//! `deploy/radius/` (placeholders filled in: a temporary directory, two free
//! UDP ports on 127.0.0.1, the shared secret), so tests run side by side.
//! The server is killed and its directory removed when the test ends, also
//! when it panics. FreeRADIUS must be installed (Debian package
//! `freeradius`; CI installs it): without it the tests fail and say so.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use controlplane::aaa::radius::{
    AccountingSession, AcctStatus, Authentic, Client, ClientConfig, Counters, Event, Server,
    TerminateCause,
};
use controlplane::aaa::users::chap_md5_response;
use controlplane::aaa::{AuthRequest, AuthResult, Credentials, FramedAddress, RejectReason};
use controlplane::driver::{os_rng, Driver};

const SECRET: &str = "lns-test-secret";

/// A running FreeRADIUS with its own configuration directory.
struct FreeRadius {
    child: Child,
    dir: PathBuf,
    auth: SocketAddr,
    acct: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl FreeRadius {
    fn start() -> FreeRadius {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aaa-freeradius-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/radius");
        let (auth, acct) = (free_port(), free_port());
        let vars = [
            ("@DIR@", dir.display().to_string()),
            ("@AUTH_PORT@", auth.port().to_string()),
            ("@ACCT_PORT@", acct.port().to_string()),
            ("@SECRET@", SECRET.to_owned()),
        ];
        copy_templates(&templates, &dir, &vars);
        for sub in ["log", "radacct", "run"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let child = match Command::new("freeradius")
            .arg("-X")
            .arg("-d")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "cannot run freeradius ({e}): install the Debian package `freeradius` \
                     (apt-get install freeradius); CI installs it"
                );
            }
        };
        let mut server = FreeRadius {
            child,
            dir,
            auth,
            acct,
            output: Arc::new(Mutex::new(String::new())),
        };
        // From here on Drop cleans up, also if we panic below.
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = server.child.stdout.take().unwrap();
        let stderr = server.child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let output = Arc::clone(&server.output);
            let ready_tx = ready_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("Ready to process requests") {
                        let _ = ready_tx.send(());
                    }
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!(
                "FreeRADIUS did not become ready; its output:\n{}",
                server.output.lock().unwrap()
            );
        }
        server
    }

    /// The accounting records of the detail file, in order: each a map of
    /// attribute name to value as FreeRADIUS writes it (strings unquoted).
    fn detail_records(&self) -> Vec<HashMap<String, String>> {
        let text = std::fs::read_to_string(self.dir.join("radacct/detail")).unwrap_or_default();
        let mut records = Vec::new();
        let mut record = HashMap::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                if !record.is_empty() {
                    records.push(std::mem::take(&mut record));
                }
                continue;
            }
            // Attribute lines are indented; the record header (a date) is not.
            if let Some(rest) = line.strip_prefix('\t') {
                if let Some((name, value)) = rest.split_once(" = ") {
                    record.insert(name.to_owned(), value.trim_matches('"').to_owned());
                }
            }
        }
        if !record.is_empty() {
            records.push(record);
        }
        records
    }

    fn server(&self, address: SocketAddr) -> Server {
        Server {
            address,
            secret: SECRET.as_bytes().to_vec(),
        }
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "FreeRADIUS output:\n{}",
                self.output.lock().map(|o| o.clone()).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> SocketAddr {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

fn copy_templates(from: &Path, to: &Path, vars: &[(&str, String)]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_templates(&entry.path(), &target, vars);
        } else {
            let mut text = std::fs::read_to_string(entry.path()).unwrap();
            for (key, value) in vars {
                text = text.replace(key, value);
            }
            std::fs::write(&target, text).unwrap();
        }
    }
}

/// Our client on its own loopback socket.
fn client(config: ClientConfig) -> Driver<Client> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut driver = Driver::new(socket, Client::new(config, os_rng().unwrap()).unwrap()).unwrap();
    let now = driver.now();
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    driver.node_mut().set_wall_clock(now, wall);
    driver
}

fn config(auth: Vec<Server>, acct: Vec<Server>) -> ClientConfig {
    ClientConfig {
        // Short, so failover takes tens of milliseconds; loopback answers in
        // well under that.
        timeout: Duration::from_millis(40),
        tries: 2,
        nas_ip_address: Some(Ipv4Addr::LOCALHOST),
        ..ClientConfig::new(auth, acct)
    }
}

/// Runs the client until an event that `wanted` accepts, and returns the
/// events seen up to it.
fn run_until(driver: &mut Driver<Client>, mut wanted: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = driver.now() + Duration::from_secs(5);
    driver
        .run_until(deadline, |_, event| {
            let done = wanted(&event);
            seen.push(event);
            if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(
        seen.last().is_some_and(&mut wanted),
        "the awaited event never came; saw {seen:?}"
    );
    seen
}

fn authenticate(driver: &mut Driver<Client>, request: AuthRequest) -> AuthResult {
    let now = driver.now();
    let handle = driver.node_mut().start_auth(now, request);
    let events = run_until(
        driver,
        |e| matches!(e, Event::Auth(r) if r.handle == handle),
    );
    match events.into_iter().last() {
        Some(Event::Auth(result)) => result,
        other => panic!("{other:?}"),
    }
}

fn pap(user: &str, password: &str) -> AuthRequest {
    AuthRequest {
        username: user.to_owned(),
        credentials: Credentials::Pap {
            password: password.as_bytes().to_vec(),
        },
        calling_station_id: Some("lac-1/port-7".to_owned()),
        nas_port: Some(7),
    }
}

fn chap(user: &str, secret: &str) -> AuthRequest {
    let challenge: Vec<u8> = (0..16).map(|i| i * 7 + 3).collect();
    AuthRequest {
        username: user.to_owned(),
        credentials: Credentials::Chap {
            id: 0x5a,
            response: chap_md5_response(0x5a, secret.as_bytes(), &challenge),
            challenge,
        },
        calling_station_id: None,
        nas_port: Some(8),
    }
}

#[test]
fn pap_and_chap_users_are_accepted_with_their_attributes_and_a_wrong_password_is_rejected() {
    let radius = FreeRadius::start();
    let mut driver = client(config(vec![radius.server(radius.auth)], vec![]));

    let result = authenticate(&mut driver, pap("pap-user", "pap-secret"));
    assert!(result.accept, "{result:?}");
    let a = &result.attributes;
    assert_eq!(
        a.framed_address,
        Some(FramedAddress::Static(Ipv4Addr::new(10, 64, 0, 7)))
    );
    assert_eq!(a.framed_netmask, Some(Ipv4Addr::BROADCAST));
    assert_eq!(a.session_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(a.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(a.interim_interval, Some(Duration::from_secs(60)));
    assert_eq!(a.class, [b"pap-class".to_vec()]);
    assert_eq!(a.reply_message.as_deref(), Some("Welcome, PAP user"));

    let result = authenticate(&mut driver, chap("chap-user", "chap-secret"));
    assert!(result.accept, "{result:?}");
    assert_eq!(
        result.attributes.framed_address,
        Some(FramedAddress::FromPool)
    );
    assert_eq!(
        result.attributes.session_timeout,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(result.attributes.class, [b"chap-class".to_vec()]);

    for request in [
        pap("pap-user", "not-the-secret"),
        chap("chap-user", "not-the-secret"),
        pap("nobody", "pap-secret"),
    ] {
        let result = authenticate(&mut driver, request.clone());
        assert!(!result.accept, "{request:?} accepted");
        assert_eq!(result.reject_reason, Some(RejectReason::BadCredentials));
    }
    let stats = driver.node().stats();
    assert_eq!(stats.responses, 5, "{stats:?}");
    assert_eq!(stats.bad_authenticator, 0, "{stats:?}");
}

#[test]
fn accounting_start_interim_and_stop_reach_the_detail_file() {
    let radius = FreeRadius::start();
    let mut cfg = config(
        vec![radius.server(radius.auth)],
        vec![radius.server(radius.acct)],
    );
    cfg.interim_interval = Some(Duration::from_millis(50));
    let mut driver = client(cfg);

    let accepted = authenticate(&mut driver, pap("pap-user", "pap-secret"));
    assert!(accepted.accept);
    let session = AccountingSession {
        session_id: "lns-0000002a".to_owned(),
        username: "pap-user".to_owned(),
        framed_address: Some(Ipv4Addr::new(10, 64, 0, 7)),
        class: accepted.attributes.class.clone(),
        calling_station_id: Some("lac-1/port-7".to_owned()),
        nas_port: Some(7),
        authentic: Some(Authentic::Radius),
        // The server's Acct-Interim-Interval (60 s) would be too slow here.
        interim_interval: None,
    };
    let now = driver.now();
    let handle = driver.node_mut().accounting_start(now, session);
    run_until(&mut driver, |e| {
        *e == Event::AccountingAcknowledged {
            handle,
            status: AcctStatus::Start,
        }
    });

    // Past 4 GiB upstream: Gigawords must carry the high bits.
    let counters = Counters {
        input_octets: (3 << 32) + 1000,
        output_octets: 123_456,
        input_packets: 4_000_000,
        output_packets: 500,
    };
    driver.node_mut().accounting_update(handle, counters);
    run_until(&mut driver, |e| {
        *e == Event::AccountingAcknowledged {
            handle,
            status: AcctStatus::InterimUpdate,
        }
    });

    let now = driver.now();
    assert!(driver
        .node_mut()
        .accounting_stop(now, handle, counters, TerminateCause::LostCarrier));
    run_until(&mut driver, |e| {
        *e == Event::AccountingAcknowledged {
            handle,
            status: AcctStatus::Stop,
        }
    });

    let records = radius.detail_records();
    let status: Vec<&str> = records
        .iter()
        .map(|r| r.get("Acct-Status-Type").map(String::as_str).unwrap_or("?"))
        .collect();
    assert_eq!(status.first(), Some(&"Start"), "{records:#?}");
    assert_eq!(status.last(), Some(&"Stop"), "{records:#?}");
    assert!(status.contains(&"Interim-Update"), "{records:#?}");
    for r in &records {
        assert_eq!(r["Acct-Session-Id"], "lns-0000002a", "{r:#?}");
        assert_eq!(r["User-Name"], "pap-user");
        assert_eq!(r["Class"], format!("0x{}", hex(b"pap-class")));
        assert_eq!(r["Acct-Authentic"], "RADIUS");
        assert_eq!(r["Framed-IP-Address"], "10.64.0.7");
        assert_eq!(r["NAS-Port-Type"], "Virtual");
        assert!(r.contains_key("Event-Timestamp"), "{r:#?}");
    }
    let stop = records.last().unwrap();
    assert_eq!(stop["Acct-Input-Octets"], "1000");
    assert_eq!(stop["Acct-Input-Gigawords"], "3");
    assert_eq!(stop["Acct-Output-Octets"], "123456");
    assert_eq!(stop["Acct-Output-Gigawords"], "0");
    assert_eq!(stop["Acct-Input-Packets"], "4000000");
    assert_eq!(stop["Acct-Output-Packets"], "500");
    assert_eq!(stop["Acct-Terminate-Cause"], "Lost-Carrier");
    assert!(stop.contains_key("Acct-Session-Time"));
}

#[test]
fn a_dead_first_server_fails_over_to_freeradius() {
    let radius = FreeRadius::start();
    // Bound and never read: requests to it vanish without an ICMP error.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dead = silent.local_addr().unwrap();
    let mut driver = client(config(
        vec![radius.server(dead), radius.server(radius.auth)],
        vec![radius.server(dead), radius.server(radius.acct)],
    ));

    let start = std::time::Instant::now();
    let now = driver.now();
    let handle = driver
        .node_mut()
        .start_auth(now, pap("pap-user", "pap-secret"));
    let events = run_until(
        &mut driver,
        |e| matches!(e, Event::Auth(r) if r.handle == handle),
    );
    let took = start.elapsed();
    assert!(
        events.contains(&Event::ServerDown { address: dead }),
        "{events:?}"
    );
    let Some(Event::Auth(result)) = events.last() else {
        unreachable!()
    };
    assert!(result.accept, "{result:?}");
    // Two tries of 40 ms at the dead server, then the answer.
    assert!(took >= Duration::from_millis(80), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let stats = driver.node().stats();
    assert_eq!(
        (stats.failovers, stats.retransmissions),
        (1, 1),
        "{stats:?}"
    );

    // The dead server is skipped now: the next request goes straight to
    // FreeRADIUS, with no retransmission.
    let result = authenticate(&mut driver, chap("chap-user", "chap-secret"));
    assert!(result.accept);
    assert_eq!(driver.node().stats().retransmissions, 1);

    // Accounting fails over the same way.
    let now = driver.now();
    let acct = driver.node_mut().accounting_start(
        now,
        AccountingSession {
            session_id: "failover-1".to_owned(),
            username: "chap-user".to_owned(),
            ..AccountingSession::default()
        },
    );
    run_until(&mut driver, |e| {
        *e == Event::AccountingAcknowledged {
            handle: acct,
            status: AcctStatus::Start,
        }
    });
    let records = radius.detail_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["Acct-Session-Id"], "failover-1");
    drop(silent);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

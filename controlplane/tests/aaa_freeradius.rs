//! Our RADIUS client against a real FreeRADIUS on loopback.
//!
//! Each test starts its own `freeradius -X` from the templates in
//! `deploy/radius/` (placeholders filled in: a temporary directory, two free
//! UDP ports on 127.0.0.1, the shared secret; see `support/radius.rs`), so
//! tests run side by side, without root.
//! The server is killed and its directory removed when the test ends, also
//! when it panics. FreeRADIUS must be installed (Debian package
//! `freeradius`; CI installs it): without it the tests fail and say so.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use controlplane::aaa::radius::{
    AccountingSession, AcctStatus, Authentic, Client, ClientConfig, Counters, Event, Server,
    TerminateCause,
};
use controlplane::aaa::users::chap_md5_response;
use controlplane::aaa::{AuthRequest, AuthResult, Credentials, FramedAddress, RejectReason};
use controlplane::driver::{os_rng, Driver};
use support::radius::{FreeRadius, Place};

const SECRET: &str = "lns-test-secret";

fn start_freeradius() -> FreeRadius {
    FreeRadius::start(Place::Loopback, SECRET, None).unwrap_or_else(|e| panic!("{e}"))
}

fn server(address: SocketAddr) -> Server {
    Server {
        address,
        secret: SECRET.as_bytes().to_vec(),
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
    let radius = start_freeradius();
    let mut driver = client(config(vec![server(radius.auth())], vec![]));

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
    let radius = start_freeradius();
    let mut cfg = config(vec![server(radius.auth())], vec![server(radius.acct())]);
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

    let records = radius.records();
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
    let radius = start_freeradius();
    // Bound and never read: requests to it vanish without an ICMP error.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dead = silent.local_addr().unwrap();
    let mut driver = client(config(
        vec![server(dead), server(radius.auth())],
        vec![server(dead), server(radius.acct())],
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
    let records = radius.records();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["Acct-Session-Id"], "failover-1");
    drop(silent);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

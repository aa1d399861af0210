//! Our LNS node (as `lnsd` runs it: the driver over a loopback UDP socket)
//! authenticating against a real FreeRADIUS, with our subscriber node as the
//! LAC and PPP clients over loopback: PAP and CHAP sessions come up with the
//! attributes FreeRADIUS assigned, and accounting Start and Stop land in its
//! detail file.
//!
//! FreeRADIUS runs from the templates in `deploy/radius/` (the users
//! `pap-user` and `chap-user` of `mods-config/files/authorize`), in its own
//! temporary directory on free loopback ports (`support/radius.rs`), killed
//! and removed when the test ends, also when it panics; no root needed. It must be installed (Debian package
//! `freeradius`; CI installs it): without it the test fails and says so.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::radius::{Client, ClientConfig, Server, TerminateCause};
use controlplane::aaa::{Authenticator, FramedAddress};
use controlplane::driver::{os_rng, Driver};
use controlplane::lns::{self, EstablishedSession};
use controlplane::ppp::AuthMethod;
use controlplane::subscriber::{self, AuthChoice, SubscriberUp};
use support::radius::{FreeRadius, Place, Record};

const SECRET: &str = "lns-test-secret";

fn start_freeradius() -> FreeRadius {
    FreeRadius::start(Place::Loopback, SECRET, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits up to 10 s for a detail record of `session_id` with status
/// `status`.
fn wait_for_record(radius: &FreeRadius, session_id: &str, status: &str) -> Record {
    let is_it = |r: &Record| {
        r.get("Acct-Session-Id").map(String::as_str) == Some(session_id)
            && r.get("Acct-Status-Type").map(String::as_str) == Some(status)
    };
    let records =
        radius.wait_for_records(Duration::from_secs(10), |records| records.iter().any(is_it));
    records
        .iter()
        .find(|r| is_it(r))
        .cloned()
        .unwrap_or_else(|| {
            panic!("no {status} record for {session_id} in the detail file: {records:?}")
        })
}

/// The LNS node on its own thread, over a loopback socket, until `stop`.
struct RunningLns {
    address: SocketAddrV4,
    events: mpsc::Receiver<lns::Event>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningLns {
    fn start(radius: &FreeRadius) -> RunningLns {
        let server = |address| Server {
            address,
            secret: SECRET.as_bytes().to_vec(),
        };
        let client = Client::new(
            ClientConfig::new(vec![server(radius.auth())], vec![server(radius.acct())]),
            os_rng().unwrap(),
        )
        .unwrap();
        // pap-user's fixed address lies in this pool; chap-user gets one.
        let pool = AddressPool::parse(&["10.64.0.0/24"]).unwrap();
        let node = lns::Node::new(
            lns::Config::new("lns-test", Ipv4Addr::new(10, 64, 255, 1)),
            Authenticator::Radius(Box::new(client)),
            pool,
            os_rng().unwrap(),
        )
        .unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut driver = Driver::new(socket, node).unwrap();
        let SocketAddr::V4(address) = driver.local_addr().unwrap() else {
            unreachable!()
        };
        let now = driver.now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        driver
            .node_mut()
            .radius_mut()
            .unwrap()
            .set_wall_clock(now, wall);
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let slice = driver.now() + Duration::from_millis(50);
                driver
                    .run_until(slice, |_, event| {
                        let _ = tx.send(event);
                        ControlFlow::Continue(())
                    })
                    .unwrap();
            }
        });
        RunningLns {
            address,
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// The next event that `pick` takes, within 10 s.
    fn wait_for<T>(&self, mut pick: impl FnMut(lns::Event) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("the LNS did not report the expected event in 10 s");
    }
}

impl Drop for RunningLns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One subscriber through the LNS: up, then hung up. Returns what it saw
/// and what the LNS saw.
fn one_session(
    lns: &RunningLns,
    username: &str,
    password: &str,
    auth: AuthChoice,
) -> (SubscriberUp, EstablishedSession, lns::EndedSession) {
    let config = subscriber::Config::new(lns.address, 1, username, password, auth);
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut driver = Driver::new(
        socket,
        subscriber::Node::new(config, os_rng().unwrap()).unwrap(),
    )
    .unwrap();
    let now = driver.now();
    driver.node_mut().start(now).unwrap();
    let mut up = None;
    let deadline = driver.now() + Duration::from_secs(10);
    driver
        .run_until(deadline, |_, event| match event {
            subscriber::Event::SessionUp(s) => {
                up = Some(*s);
                ControlFlow::Break(())
            }
            subscriber::Event::SessionDown { reason, .. } => {
                panic!("{username} went down before coming up: {reason:?}")
            }
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
    let up = up.unwrap_or_else(|| panic!("{username} did not come up in 10 s"));
    let established = lns.wait_for(|e| match e {
        lns::Event::SessionEstablished(s) => Some(*s),
        _ => None,
    });

    let now = driver.now();
    driver.node_mut().hang_up(now, 0);
    let deadline = driver.now() + Duration::from_secs(10);
    driver
        .run_until(deadline, |node, _| {
            if node.down_count() == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    let ended = lns.wait_for(|e| match e {
        lns::Event::SessionDown(s) => Some(*s),
        _ => None,
    });
    (up, established, ended)
}

#[test]
fn pap_and_chap_sessions_come_up_with_radius_attributes_and_are_accounted() {
    let radius = start_freeradius();
    let lns = RunningLns::start(&radius);

    // PAP: the fixed Framed-IP-Address and the timeouts and Class of the
    // authorize file.
    let (up, established, ended) = one_session(&lns, "pap-user", "pap-secret", AuthChoice::Pap);
    assert_eq!(established.link.auth_method, Some(AuthMethod::Pap));
    assert_eq!(established.username, "pap-user");
    assert_eq!(established.address, Ipv4Addr::new(10, 64, 0, 7));
    assert_eq!(up.address, Ipv4Addr::new(10, 64, 0, 7));
    assert_eq!(
        established.attributes.framed_address,
        Some(FramedAddress::Static(Ipv4Addr::new(10, 64, 0, 7)))
    );
    assert_eq!(
        established.attributes.session_timeout,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        established.attributes.idle_timeout,
        Some(Duration::from_secs(600))
    );
    assert_eq!(established.attributes.class, vec![b"pap-class".to_vec()]);
    assert_eq!(ended.terminate_cause, TerminateCause::UserRequest);
    let start = wait_for_record(&radius, &established.acct_session_id, "Start");
    assert_eq!(start.get("User-Name").map(String::as_str), Some("pap-user"));
    assert_eq!(
        start.get("Framed-IP-Address").map(String::as_str),
        Some("10.64.0.7")
    );
    assert_eq!(
        start.get("Class").map(String::as_str),
        Some("0x7061702d636c617373")
    );
    let stop = wait_for_record(&radius, &established.acct_session_id, "Stop");
    assert_eq!(
        stop.get("Acct-Terminate-Cause").map(String::as_str),
        Some("User-Request")
    );

    // CHAP: Framed-IP-Address 255.255.255.254, so an address from our pool.
    let (up, established, ended) = one_session(&lns, "chap-user", "chap-secret", AuthChoice::Chap);
    assert_eq!(established.link.auth_method, Some(AuthMethod::ChapMd5));
    assert_eq!(
        established.attributes.framed_address,
        Some(FramedAddress::FromPool)
    );
    assert_eq!(up.address, established.address);
    assert!(
        AddressPool::parse(&["10.64.0.0/24"])
            .unwrap()
            .contains(established.address),
        "{} is from the pool",
        established.address
    );
    assert_eq!(
        established.attributes.session_timeout,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(ended.terminate_cause, TerminateCause::UserRequest);
    let start = wait_for_record(&radius, &established.acct_session_id, "Start");
    assert_eq!(
        start.get("User-Name").map(String::as_str),
        Some("chap-user")
    );
    assert_eq!(
        start.get("Framed-IP-Address").map(String::as_str),
        Some(established.address.to_string().as_str())
    );
    wait_for_record(&radius, &established.acct_session_id, "Stop");
}

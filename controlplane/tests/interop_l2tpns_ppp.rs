//! Our PPP subscribers, through our LAC, against l2tpns with FreeRADIUS.
//!
//! **Needs root** (network namespaces, veth, TUN, packet capture) and the
//! Debian packages `l2tpns`, `freeradius`, `tshark` (with its dumpcap) and
//! `iproute2`, as CI has them. Without them the test fails saying what is
//! missing.
//!
//! The lab: our side runs in-process, over a UDP socket in the `lac`
//! namespace; l2tpns and FreeRADIUS run in the `lns` namespace, FreeRADIUS on
//! that namespace's loopback (l2tpns authenticates PPP only through RADIUS).

// Test code throughout (the subscriber stand-in and the helpers included),
// so the workspace's test allowances for unwrap/expect/panic apply to the
// whole file.
#![cfg(test)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::time::Duration;

use controlplane::driver::{os_rng, Driver, Node};
use controlplane::l2tp::codes::{cdn, stop_ccn};
use controlplane::l2tp::{
    CallParams, Config, Endpoint, Event as L2tpEvent, ResultCode, SessionDownReason, SessionHandle,
    TunnelDownReason, TunnelHandle, TunnelStats,
};
use controlplane::ppp::{
    AuthMethod, Credentials, DownCause, Event as PppEvent, LinkState, PppConfig, PppLink, Role,
};
use controlplane::time::Instant;
use support::capture::{acknowledged, control_flow, Capture, Packet};
use support::netns::Lab;
use support::peers::{l2tpns_pool, L2tpnsLns, L2tpnsLnsConfig, L2TPNS_DNS, L2TPNS_RADIUS_SECRET};
use support::radius::{
    FreeRadius, Place, Record, User, AUTH_PORT, BATCH_USER, CHAP_USER, INTEROP_OVERLAY, PAP_USER,
};

const SECRET: &str = "interop-secret";
const LNS_HOSTNAME: &str = "l2tpns-lns";
const LAC_HOSTNAME: &str = "our-lac";
/// Sessions of the batch whose setup rate is measured.
const BATCH: usize = 50;

// --- our subscribers: the LAC endpoint with a PPP client per session -------

/// What our subscribers report.
#[derive(Debug, Clone)]
enum Sub {
    /// An L2TP event other than a PPP frame.
    L2tp(L2tpEvent),
    /// A PPP client's event.
    Ppp(SessionHandle, PppEvent),
}

/// A LAC endpoint opening incoming calls, with one PPP client per session
/// speaking over the session's data messages: the subscribers the test
/// drives, as one driver node.
struct Subscribers {
    endpoint: Endpoint,
    /// How each session's PPP client is configured, from the call's opening
    /// until its session is up.
    waiting: HashMap<SessionHandle, PppConfig>,
    links: BTreeMap<SessionHandle, PppLink>,
    events: VecDeque<Sub>,
    /// PPP frames that could not be sent (their session was gone).
    unsent: u64,
}

impl Subscribers {
    fn new(endpoint: Endpoint) -> Self {
        Subscribers {
            endpoint,
            waiting: HashMap::new(),
            links: BTreeMap::new(),
            events: VecDeque::new(),
            unsent: 0,
        }
    }

    /// Opens an incoming call whose PPP client runs with `config` once the
    /// session is up.
    fn open(&mut self, now: Instant, tunnel: TunnelHandle, config: PppConfig) -> SessionHandle {
        let session = self
            .endpoint
            .open_session(now, tunnel, CallParams::default())
            .expect("open session");
        self.waiting.insert(session, config);
        session
    }

    fn link(&self, session: SessionHandle) -> Option<&PppLink> {
        self.links.get(&session)
    }

    /// Moves the endpoint's events into the PPP clients and the clients'
    /// events into our queue.
    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                L2tpEvent::Data { session, payload } => {
                    if let Some(link) = self.links.get_mut(&session) {
                        link.handle_frame(now, &payload);
                    }
                }
                L2tpEvent::SessionUp { session, .. } => {
                    if let Some(config) = self.waiting.remove(&session) {
                        let mut link = PppLink::new(Role::Client, config, os_rng().expect("rng"));
                        link.open(now);
                        self.links.insert(session, link);
                    }
                    self.events.push_back(Sub::L2tp(event));
                }
                L2tpEvent::SessionDown { session, .. } => {
                    self.waiting.remove(&session);
                    if let Some(link) = self.links.get_mut(&session) {
                        link.lower_down(now);
                    }
                    self.events.push_back(Sub::L2tp(event));
                }
                other => self.events.push_back(Sub::L2tp(other)),
            }
        }
        for (session, link) in &mut self.links {
            while let Some(event) = link.poll_event() {
                self.events.push_back(Sub::Ppp(*session, event));
            }
        }
    }
}

impl Node for Subscribers {
    type Event = Sub;

    fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) {
        if let SocketAddr::V4(remote) = remote {
            self.endpoint.handle_datagram(now, remote, datagram);
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        for link in self.links.values_mut() {
            if link.poll_timeout().is_some_and(|t| t <= now) {
                link.handle_timeout(now);
            }
        }
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let links = self.links.values().filter_map(PppLink::poll_timeout);
        self.endpoint.poll_timeout().into_iter().chain(links).min()
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        // What the owner did between runs (open, close) shows up here first.
        self.pump(now);
        let transmit = self.endpoint.poll_transmit(now).or_else(|| {
            for (session, link) in &mut self.links {
                while let Some(frame) = link.poll_transmit(now) {
                    match self.endpoint.send_data(*session, &frame) {
                        Ok(transmit) => return Some(transmit),
                        Err(_) => self.unsent += 1,
                    }
                }
            }
            None
        })?;
        buf.clear();
        buf.extend_from_slice(&transmit.payload);
        Some(SocketAddr::V4(transmit.remote))
    }

    fn poll_event(&mut self) -> Option<Sub> {
        self.events.pop_front()
    }
}

/// A PPP client that authenticates as `user` with one of `methods`, in order
/// of preference. It agrees to any of them the authenticator asks for, and
/// Naks others towards the first: l2tpns asks for PAP first, so only a
/// client without PAP gets CHAP.
fn client(user: User, methods: &[AuthMethod]) -> PppConfig {
    let mut config = PppConfig::client(Credentials {
        username: user.name.as_bytes().to_vec(),
        password: user.password.as_bytes().to_vec(),
    });
    config.lcp.authenticate_self = methods.to_vec();
    config
}

/// Runs until `done` holds for the events seen so far (all of them are kept
/// in `log`), at most `limit`.
fn run_until(
    driver: &mut Driver<Subscribers>,
    log: &mut Vec<(std::time::Instant, Sub)>,
    limit: Duration,
    mut done: impl FnMut(&[(std::time::Instant, Sub)]) -> bool,
) -> bool {
    if done(log) {
        return true;
    }
    let deadline = driver.now() + limit;
    driver
        .run_until(deadline, |_, event| {
            log.push((std::time::Instant::now(), event));
            if done(log) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("driver");
    done(log)
}

/// The link states of the sessions whose PPP came up, in the order they did.
fn ups(log: &[(std::time::Instant, Sub)]) -> Vec<(SessionHandle, std::time::Instant, LinkState)> {
    log.iter()
        .filter_map(|(at, e)| match e {
            Sub::Ppp(s, PppEvent::Up(state)) => Some((*s, *at, (**state).clone())),
            _ => None,
        })
        .collect()
}

fn ppp_down(log: &[(std::time::Instant, Sub)], session: SessionHandle) -> Option<DownCause> {
    log.iter().find_map(|(_, e)| match e {
        Sub::Ppp(s, PppEvent::Down { cause }) if *s == session => Some(*cause),
        _ => None,
    })
}

fn l2tp_down(
    log: &[(std::time::Instant, Sub)],
    session: SessionHandle,
) -> Option<SessionDownReason> {
    log.iter().find_map(|(_, e)| match e {
        Sub::L2tp(L2tpEvent::SessionDown { session: s, reason }) if *s == session => {
            Some(reason.clone())
        }
        _ => None,
    })
}

fn events_text(log: &[(std::time::Instant, Sub)]) -> String {
    log.iter()
        .map(|(_, e)| format!("{e:?}\n"))
        .collect::<String>()
}

/// Runs until every control message sent on `tunnel` is acknowledged (an
/// acknowledgement is no event, so the state is checked between short
/// runs), at most `limit`.
fn run_until_acknowledged(
    driver: &mut Driver<Subscribers>,
    tunnel: TunnelHandle,
    log: &mut Vec<(std::time::Instant, Sub)>,
    limit: Duration,
) -> TunnelStats {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let stats = driver
            .node()
            .endpoint
            .tunnel_stats(tunnel)
            .expect("the tunnel's state");
        if stats.control.acked == stats.control.sent || std::time::Instant::now() >= deadline {
            return stats;
        }
        run_until(driver, log, Duration::from_millis(50), |_| false);
    }
}

// --- the test --------------------------------------------------------------

/// One PAP subscriber, one CHAP subscriber, then a batch of CHAP
/// subscribers all come up against l2tpns (LCP with its MRRU and Endpoint
/// Discriminator rejected, PAP or CHAP checked by FreeRADIUS, IPCP with an
/// address from l2tpns's pool and its DNS servers), answer its LCP echoes,
/// and go down cleanly: LCP Terminate, CDN, StopCCN, each acknowledged, and
/// an accounting Start and Stop for every session in FreeRADIUS's detail
/// file. Checked from our state, l2tpns's log, the detail file and a tshark
/// capture; the batch's setup rate is printed.
#[test]
fn our_subscribers_come_up_and_go_down_with_l2tpns_and_freeradius() {
    let pool = l2tpns_pool().expect("l2tpns's pool");
    let mut lab = Lab::new("l2tpns-ppp").expect("lab");
    let lac = lab.namespace("lac").expect("lac namespace");
    let lns = lab.namespace("lns").expect("lns namespace");
    let link = lab.link(&lac, &lns).expect("veth");

    let mut radius = FreeRadius::start(
        Place::Namespace(&mut lab, &lns),
        L2TPNS_RADIUS_SECRET,
        Some(INTEROP_OVERLAY),
    )
    .expect("freeradius");
    let lns_config = L2tpnsLnsConfig {
        bind: link.b,
        hostname: LNS_HOSTNAME,
        secret: SECRET,
        radius_port: AUTH_PORT,
    };
    let l2tpns = L2tpnsLns::start(&mut lab, &lns, &lns_config).expect("l2tpns");
    let capture =
        Capture::start(&mut lab, &lac, &link.interface, link.b, "l2tpns-ppp").expect("capture");

    let socket = lab
        .udp_socket(&lac, SocketAddr::V4(SocketAddrV4::new(link.a, 1701)))
        .expect("our socket in the lac namespace");
    let mut config = Config::lac(LAC_HOSTNAME);
    config.secret = Some(SECRET.as_bytes().to_vec());
    config.require_authentication = true;
    let endpoint = Endpoint::new(config, os_rng().expect("rng")).expect("endpoint");
    let mut driver = Driver::new(socket, Subscribers::new(endpoint)).expect("driver");
    let mut log = Vec::new();

    // The tunnel.
    let lns_addr = SocketAddrV4::new(link.b, 1701);
    let now = driver.now();
    let tunnel = driver
        .node_mut()
        .endpoint
        .connect(now, lns_addr)
        .expect("connect");
    let up = run_until(&mut driver, &mut log, Duration::from_secs(20), |log| {
        log.iter()
            .any(|(_, e)| matches!(e, Sub::L2tp(L2tpEvent::TunnelUp { .. })))
    });
    assert!(up, "no tunnel: {}\n{}", events_text(&log), lab.report());

    // One subscriber with PAP only: l2tpns's first choice.
    let pap_opened = std::time::Instant::now();
    let now = driver.now();
    let pap = driver
        .node_mut()
        .open(now, tunnel, client(PAP_USER, &[AuthMethod::Pap]));
    let up = run_until(&mut driver, &mut log, Duration::from_secs(20), |log| {
        ups(log).iter().any(|(s, ..)| *s == pap) || ppp_down(log, pap).is_some()
    });
    assert!(
        up,
        "PAP subscriber not up: {}\n{}",
        events_text(&log),
        lab.report()
    );

    // One that does CHAP only: it Naks l2tpns's PAP towards CHAP-MD5 (a
    // client that also agrees to PAP takes what is asked first).
    let chap_opened = std::time::Instant::now();
    let now = driver.now();
    let chap = driver
        .node_mut()
        .open(now, tunnel, client(CHAP_USER, &[AuthMethod::ChapMd5]));
    let up = run_until(&mut driver, &mut log, Duration::from_secs(20), |log| {
        ups(log).iter().any(|(s, ..)| *s == chap) || ppp_down(log, chap).is_some()
    });
    assert!(
        up,
        "CHAP subscriber not up: {}\n{}",
        events_text(&log),
        lab.report()
    );

    // The batch, all calls opened at once.
    let started = std::time::Instant::now();
    let now = driver.now();
    let batch: Vec<SessionHandle> = (0..BATCH)
        .map(|_| {
            driver
                .node_mut()
                .open(now, tunnel, client(BATCH_USER, &[AuthMethod::ChapMd5]))
        })
        .collect();
    let wanted: HashSet<SessionHandle> = batch.iter().copied().collect();
    let all_up = run_until(&mut driver, &mut log, Duration::from_secs(60), |log| {
        let up: HashSet<SessionHandle> = ups(log).iter().map(|(s, ..)| *s).collect();
        wanted.is_subset(&up) || batch.iter().any(|s| ppp_down(log, *s).is_some())
    });
    let states = ups(&log);
    assert!(
        all_up,
        "{} of {BATCH} batch sessions up: {}\n{}",
        states.iter().filter(|(s, ..)| wanted.contains(s)).count(),
        events_text(&log),
        lab.report()
    );
    let last_up = states
        .iter()
        .filter(|(s, ..)| wanted.contains(s))
        .map(|(_, at, _)| *at)
        .max()
        .expect("batch up");
    let elapsed = last_up - started;
    println!(
        "setup rate against l2tpns + FreeRADIUS: {BATCH} sessions (L2TP call, LCP, CHAP, IPCP) \
         in {:.3} s from the first ICRQ to the last IPCP up = {:.1} sessions/s",
        elapsed.as_secs_f64(),
        BATCH as f64 / elapsed.as_secs_f64()
    );

    let single = |session: SessionHandle, opened: std::time::Instant| {
        states
            .iter()
            .find(|(s, ..)| *s == session)
            .map(|(_, at, _)| (*at - opened).as_secs_f64() * 1e3)
            .unwrap_or(f64::NAN)
    };
    println!(
        "one session alone, from ICRQ to IPCP up: {:.1} ms with PAP, {:.1} ms with CHAP \
         (after a Nak of PAP)",
        single(pap, pap_opened),
        single(chap, chap_opened)
    );

    // What we negotiated, session by session.
    let by_session: HashMap<SessionHandle, LinkState> =
        states.iter().map(|(s, _, st)| (*s, st.clone())).collect();
    let mut addresses = HashSet::new();
    for session in [pap, chap].iter().chain(&batch) {
        let state = &by_session[session];
        let expected_method = if *session == pap {
            AuthMethod::Pap
        } else {
            AuthMethod::ChapMd5
        };
        assert_eq!(state.auth_method, Some(expected_method), "{state:#?}");
        assert_eq!(
            state.lcp_peer.auth,
            Some(expected_method),
            "l2tpns asked for what we agreed to: {state:#?}"
        );
        assert_ne!(state.lcp_local.magic_number, 0, "{state:#?}");
        assert_ne!(state.lcp_peer.magic_number, 0, "{state:#?}");
        assert_ne!(state.lcp_local.magic_number, state.lcp_peer.magic_number);
        let ipcp = state.ipcp.as_ref().expect("IPCP result");
        let address = ipcp.local.expect("an address for us");
        assert!(
            pool.iter().any(|p| p.contains(address)),
            "{address} is not in l2tpns's pool {pool:?}"
        );
        assert!(addresses.insert(address), "{address} given twice");
        assert_eq!(ipcp.primary_dns, Some(L2TPNS_DNS[0]), "{ipcp:?}");
        assert_eq!(ipcp.secondary_dns, Some(L2TPNS_DNS[1]), "{ipcp:?}");
        let link = driver.node().link(*session).expect("link");
        assert_eq!(
            link.state().ipcp.as_ref().and_then(|r| r.local),
            Some(address)
        );
    }

    // l2tpns's side: RADIUS accepted every login.
    let l2tpns_log = l2tpns.log();
    // Why the batch is slower than one session alone: the ICCNs wait behind
    // the ICRQs in our control window (l2tpns's is 4), our LCP starts at
    // SessionUp, so a client's first Configure-Request may overtake its
    // ICCN; l2tpns drops it and the client's restart timer (3 s) resends.
    println!(
        "LCP Configure-Requests that overtook their ICCN (l2tpns ignored them): {}",
        l2tpns_log
            .matches("ignoring ConfigReq in state Starting")
            .count()
    );
    assert!(
        l2tpns_log.contains("PAP User pap-subscriber authentication allowed"),
        "{l2tpns_log}"
    );
    assert!(
        l2tpns_log.contains("CHAP User chap-subscriber authentication allowed"),
        "{l2tpns_log}"
    );
    assert_eq!(
        l2tpns_log
            .matches("CHAP User batch-subscriber authentication allowed")
            .count(),
        BATCH,
        "{l2tpns_log}"
    );

    // FreeRADIUS: an accounting Start for each, with the address we got.
    let total = BATCH + 2;
    let records = radius.wait_for_records(Duration::from_secs(10), |r| {
        status_count(r, "Start") >= total
    });
    assert_eq!(status_count(&records, "Start"), total, "{records:#?}");
    let started_addresses: HashSet<Ipv4Addr> = records
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
        .filter_map(|r| r.get("Framed-IP-Address")?.parse().ok())
        .collect();
    assert_eq!(started_addresses, addresses, "{records:#?}");

    // Idle a little: l2tpns sends LCP Echo-Requests (echo_timeout 2) and
    // our clients answer them.
    run_until(&mut driver, &mut log, Duration::from_secs(3), |_| false);

    // Down: each client terminates its link (LCP Terminate-Request).
    let all: Vec<SessionHandle> = [pap, chap].into_iter().chain(batch.clone()).collect();
    let now = driver.now();
    for session in &all {
        driver
            .node_mut()
            .links
            .get_mut(session)
            .expect("link")
            .close(now);
    }
    let down = run_until(&mut driver, &mut log, Duration::from_secs(20), |log| {
        all.iter().all(|s| ppp_down(log, *s).is_some())
    });
    assert!(
        down,
        "links not down: {}\n{}",
        events_text(&log),
        lab.report()
    );
    for session in &all {
        assert_eq!(ppp_down(&log, *session), Some(DownCause::AdminClose));
    }
    // Then each call (CDN), unless l2tpns already cleared it.
    let now = driver.now();
    for session in &all {
        if l2tp_down(&log, *session).is_none() {
            driver
                .node_mut()
                .endpoint
                .close_session(now, *session, ResultCode::new(cdn::ADMINISTRATIVE))
                .expect("close session");
        }
    }
    let stats = run_until_acknowledged(&mut driver, tunnel, &mut log, Duration::from_secs(10));
    assert_eq!(
        stats.control.acked, stats.control.sent,
        "CDNs acknowledged: {stats:?}"
    );
    for session in &all {
        assert!(l2tp_down(&log, *session).is_some(), "{session:?} still up");
    }
    assert_eq!(driver.node().endpoint.session_count(tunnel), 0);

    // And the tunnel (StopCCN).
    let now = driver.now();
    driver
        .node_mut()
        .endpoint
        .close_tunnel(now, tunnel, ResultCode::new(stop_ccn::GENERAL_REQUEST))
        .expect("close tunnel");
    let stats = run_until_acknowledged(&mut driver, tunnel, &mut log, Duration::from_secs(5));
    assert_eq!(
        stats.control.acked, stats.control.sent,
        "StopCCN acknowledged: {stats:?}"
    );
    assert!(
        log.iter().any(|(_, e)| matches!(
            e,
            Sub::L2tp(L2tpEvent::TunnelDown { tunnel: t, reason: TunnelDownReason::Closed(_), .. })
                if *t == tunnel
        )),
        "{}",
        events_text(&log)
    );
    assert_eq!(driver.node().unsent, 0);
    l2tpns
        .wait_for_log(&mut lab, "Received StopCCN", Duration::from_secs(5))
        .expect("l2tpns got our StopCCN");

    // FreeRADIUS: a Stop for each.
    let records = radius.wait_for_records(Duration::from_secs(10), |r| {
        status_count(r, "Stop") >= total
    });
    assert_eq!(status_count(&records, "Stop"), total, "{records:#?}");

    // What tshark saw.
    let pcap = capture.stop(&mut lab).expect("stop capture");
    let packets = pcap.packets().expect("tshark");
    let summary = pcap.summary().unwrap_or_default();
    let names = [(link.a.to_string(), "LAC"), (link.b.to_string(), "LNS")];
    let names: Vec<(&str, &str)> = names.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    let flow = control_flow(&packets, &names);
    let count = |kind: &str| flow.iter().filter(|f| f.as_str() == kind).count();
    assert_eq!(count("LAC>LNS ICRQ"), total, "{summary}");
    assert_eq!(count("LNS>LAC ICRP"), total, "{summary}");
    assert_eq!(count("LAC>LNS ICCN"), total, "{summary}");
    // Every call cleared by our CDN (l2tpns sends none after LCP
    // Terminate), the tunnel by our StopCCN.
    assert_eq!(count("LAC>LNS CDN"), total, "{summary}");
    assert_eq!(count("LNS>LAC CDN"), 0, "{summary}");
    assert_eq!(count("LAC>LNS StopCCN"), 1, "{summary}");
    assert_eq!(count("LNS>LAC StopCCN"), 0, "{summary}");
    let lns_ip = link.b.to_string();
    let ours = |p: &&Packet| p.src == link.a.to_string();
    for message in packets
        .iter()
        .filter(ours)
        .filter(|p| p.control && p.message_type.is_some())
    {
        assert!(
            acknowledged(&packets, message, &lns_ip),
            "l2tpns did not acknowledge our {} (frame {}):\n{summary}",
            message.kind(),
            message.frame
        );
    }
    // PPP on the wire, both ways.
    let ppp_seen = |from: &str, protocol: u16, code: u8| {
        packets.iter().any(|p| {
            !p.control
                && p.src == from
                && p.ppp_protocol == Some(protocol)
                && p.ppp_code == Some(code)
        })
    };
    let (us, them) = (link.a.to_string(), link.b.to_string());
    for (from, protocol, code, what) in [
        (&them, 0xc021, 1, "l2tpns's LCP Configure-Request"),
        (&us, 0xc021, 4, "our LCP Configure-Reject (MRRU, ED)"),
        (&us, 0xc021, 3, "our LCP Configure-Nak (CHAP for PAP)"),
        (&us, 0xc021, 2, "our LCP Configure-Ack"),
        (&them, 0xc021, 9, "l2tpns's LCP Echo-Request"),
        (&us, 0xc021, 10, "our LCP Echo-Reply"),
        (&us, 0xc021, 5, "our LCP Terminate-Request"),
        (&them, 0xc021, 6, "l2tpns's LCP Terminate-Ack"),
        (&us, 0xc023, 1, "our PAP Authenticate-Request"),
        (&them, 0xc023, 2, "l2tpns's PAP Authenticate-Ack"),
        (&them, 0xc223, 1, "l2tpns's CHAP Challenge"),
        (&us, 0xc223, 2, "our CHAP Response"),
        (&them, 0xc223, 3, "l2tpns's CHAP Success"),
        (&us, 0x8021, 1, "our IPCP Configure-Request"),
        (
            &them,
            0x8021,
            3,
            "l2tpns's IPCP Configure-Nak (address, DNS)",
        ),
        (&them, 0x8021, 2, "l2tpns's IPCP Configure-Ack"),
    ] {
        assert!(
            ppp_seen(from, protocol, code),
            "no {what} on the wire:\n{summary}"
        );
    }
    assert_eq!(pcap.problems().expect("tshark"), "", "{summary}");

    radius.stop(&mut lab).expect("stop freeradius");
    l2tpns
        .quit(&mut lab, Duration::from_secs(2))
        .expect("stop l2tpns");
}

fn status_count(records: &[Record], status: &str) -> usize {
    records
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some(status))
        .count()
}

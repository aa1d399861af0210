//! Our PPP subscribers (`controlplane::subscriber::Node`, our LAC with a PPP
//! client per call) against l2tpns with FreeRADIUS.
//!
//! **Needs root** (network namespaces, veth, TUN, packet capture) and the
//! Debian packages `l2tpns`, `freeradius`, `tshark` (with its dumpcap) and
//! `iproute2`, as CI has them. Without them the test fails saying what is
//! missing.
//!
//! The lab: our side runs in-process, over UDP sockets in the `lac`
//! namespace; l2tpns and FreeRADIUS run in the `lns` namespace, FreeRADIUS on
//! that namespace's loopback (l2tpns authenticates PPP only through RADIUS).
//! A subscriber node has one user and one choice of authentication, so the
//! PAP subscriber, the CHAP subscriber and the batch are three nodes, each
//! with its own driver, socket and tunnel.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use controlplane::driver::{os_rng, Driver};
use controlplane::l2tp::codes::stop_ccn;
use controlplane::l2tp::{Config, ResultCode, TunnelDownReason, TunnelHandle, TunnelStats};
use controlplane::ppp::{AuthMethod, DownCause};
use controlplane::subscriber::{self, AuthChoice, DownReason, Event, SubscriberUp};
use support::capture::{acknowledged, control_flow, Capture, Packet};
use support::netns::{Lab, Link, Netns};
use support::peers::{l2tpns_pool, L2tpnsLns, L2tpnsLnsConfig, L2TPNS_DNS, L2TPNS_RADIUS_SECRET};
use support::radius::{
    FreeRadius, Place, Record, User, AUTH_PORT, BATCH_USER, CHAP_USER, INTEROP_OVERLAY, PAP_USER,
};

const SECRET: &str = "interop-secret";
const LNS_HOSTNAME: &str = "l2tpns-lns";
const LAC_HOSTNAME: &str = "our-lac";
/// Sessions of the batch whose setup rate is measured.
const BATCH: usize = 50;
/// How long each node's driver runs before the next gets its turn, while
/// the test waits on all of them from one thread.
const SLICE: Duration = Duration::from_millis(2);

// --- our subscribers: one node per user, each on its own tunnel ------------

/// A subscriber node with its driver, and everything it reported, with the
/// time it was seen.
struct Subscribers {
    driver: Driver<subscriber::Node>,
    log: Vec<(Instant, Event)>,
    sessions: usize,
}

impl Subscribers {
    /// `sessions` subscribers authenticating as `user` with `auth`, over a
    /// socket of their own in `lac` (nothing sent before [`Self::start`]).
    fn new(
        lab: &Lab,
        lac: &Netns,
        link: &Link,
        user: User,
        auth: AuthChoice,
        sessions: usize,
    ) -> Self {
        let socket = lab
            .udp_socket(lac, SocketAddr::V4(SocketAddrV4::new(link.a, 0)))
            .expect("our socket in the lac namespace");
        let lns = SocketAddrV4::new(link.b, 1701);
        let mut config = subscriber::Config::new(lns, sessions, user.name, user.password, auth);
        let mut l2tp = Config::lac(LAC_HOSTNAME);
        l2tp.secret = Some(SECRET.as_bytes().to_vec());
        l2tp.require_authentication = true;
        config.l2tp = l2tp;
        let node = subscriber::Node::new(config, os_rng().expect("rng")).expect("subscriber node");
        Subscribers {
            driver: Driver::new(socket, node).expect("driver"),
            log: Vec::new(),
            sessions,
        }
    }

    /// Opens the tunnel and every call.
    fn start(&mut self) {
        let now = self.driver.now();
        self.driver.node_mut().start(now).expect("start");
    }

    /// The node's one tunnel.
    fn tunnel(&self) -> TunnelHandle {
        self.driver.node().tunnels()[0]
    }

    /// When the tunnel came up.
    fn tunnel_up_at(&self) -> Option<Instant> {
        self.log
            .iter()
            .find(|(_, e)| matches!(e, Event::TunnelUp { .. }))
            .map(|(at, _)| *at)
    }

    /// The subscribers that came up, in the order they did.
    fn ups(&self) -> Vec<(Instant, &SubscriberUp)> {
        self.log
            .iter()
            .filter_map(|(at, e)| match e {
                Event::SessionUp(up) => Some((*at, &**up)),
                _ => None,
            })
            .collect()
    }

    /// Every subscriber came up (each counted once).
    fn all_up(&self) -> bool {
        let up: HashSet<usize> = self.ups().iter().map(|(_, up)| up.index).collect();
        up.len() == self.sessions
    }

    /// Why subscriber `index` went down, if it did.
    fn down(&self, index: usize) -> Option<&DownReason> {
        self.log.iter().find_map(|(_, e)| match e {
            Event::SessionDown {
                index: i, reason, ..
            } if *i == index => Some(reason),
            _ => None,
        })
    }

    fn any_down(&self) -> bool {
        (0..self.sessions).any(|i| self.down(i).is_some())
    }
}

fn events_text(all: &[Subscribers]) -> String {
    all.iter()
        .flat_map(|s| &s.log)
        .map(|(_, e)| format!("{e:?}\n"))
        .collect::<String>()
}

/// Runs every node in turn, a short slice each (less if one reports
/// something), until `done` holds, at most `limit`.
fn run_until(
    all: &mut [Subscribers],
    limit: Duration,
    mut done: impl FnMut(&[Subscribers]) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while !done(all) {
        if Instant::now() >= deadline {
            return false;
        }
        for s in all.iter_mut() {
            let log = &mut s.log;
            let slice = s.driver.now() + SLICE;
            s.driver
                .run_until(slice, |_, event| {
                    log.push((Instant::now(), event));
                    ControlFlow::Break(())
                })
                .expect("driver");
        }
    }
    true
}

/// Runs until every control message sent on each node's tunnel is
/// acknowledged (an acknowledgement is no event, so the state is checked
/// between short runs), at most `limit`.
fn run_until_acknowledged(all: &mut [Subscribers], limit: Duration) -> Vec<TunnelStats> {
    let stats = |all: &[Subscribers]| -> Vec<TunnelStats> {
        all.iter()
            .map(|s| {
                s.driver
                    .node()
                    .endpoint()
                    .tunnel_stats(s.tunnel())
                    .expect("the tunnel's state")
            })
            .collect()
    };
    run_until(all, limit, |all| {
        stats(all).iter().all(|t| t.control.acked == t.control.sent)
    });
    stats(all)
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

    // PAP only: l2tpns's first choice. CHAP only: it Naks l2tpns's PAP
    // towards CHAP-MD5 (a client that also agrees to PAP takes what is
    // asked first). The batch: CHAP, all calls opened at once.
    const PAP: usize = 0;
    const CHAP: usize = 1;
    const BATCH_NODE: usize = 2;
    let mut all = [
        Subscribers::new(&lab, &lac, &link, PAP_USER, AuthChoice::Pap, 1),
        Subscribers::new(&lab, &lac, &link, CHAP_USER, AuthChoice::Chap, 1),
        Subscribers::new(&lab, &lac, &link, BATCH_USER, AuthChoice::Chap, BATCH),
    ];
    for (node, what) in [(PAP, "PAP"), (CHAP, "CHAP"), (BATCH_NODE, "batch")] {
        all[node].start();
        // Only the node coming up is run, so its setup time is not padded
        // with the other nodes' slices; theirs wait in their sockets (l2tpns's
        // echoes to them are answered once the round robin resumes).
        let up = run_until(
            core::slice::from_mut(&mut all[node]),
            Duration::from_secs(60),
            |one| one[0].all_up() || one[0].any_down(),
        );
        assert!(
            all[node].tunnel_up_at().is_some(),
            "no {what} tunnel: {}\n{}",
            events_text(&all),
            lab.report()
        );
        assert!(
            up && all[node].all_up(),
            "{} of {} {what} sessions up: {}\n{}",
            all[node].ups().len(),
            all[node].sessions,
            events_text(&all),
            lab.report()
        );
    }

    // From the tunnel up (the first ICRQ) to the last IPCP up.
    let setup = |node: &Subscribers| {
        let last_up = node.ups().iter().map(|(at, _)| *at).max().expect("up");
        last_up - node.tunnel_up_at().expect("tunnel up")
    };
    let elapsed = setup(&all[BATCH_NODE]);
    println!(
        "setup rate against l2tpns + FreeRADIUS: {BATCH} sessions (L2TP call, LCP, CHAP, IPCP) \
         in {:.3} s from the first ICRQ to the last IPCP up = {:.1} sessions/s",
        elapsed.as_secs_f64(),
        BATCH as f64 / elapsed.as_secs_f64()
    );
    println!(
        "one session alone, from ICRQ to IPCP up: {:.1} ms with PAP, {:.1} ms with CHAP \
         (after a Nak of PAP)",
        setup(&all[PAP]).as_secs_f64() * 1e3,
        setup(&all[CHAP]).as_secs_f64() * 1e3
    );

    // What we negotiated, session by session.
    let mut addresses = HashSet::new();
    for (node, subscribers) in all.iter().enumerate() {
        let expected_method = if node == PAP {
            AuthMethod::Pap
        } else {
            AuthMethod::ChapMd5
        };
        for (_, up) in subscribers.ups() {
            let state = &up.link;
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
            let link = subscribers.driver.node().link(up.index).expect("link");
            assert_eq!(
                link.state().ipcp.as_ref().and_then(|r| r.local),
                Some(address)
            );
        }
    }

    // l2tpns's side: RADIUS accepted every login.
    let l2tpns_log = l2tpns.log();
    // A client's first Configure-Request could overtake its ICCN, and
    // l2tpns would drop it; the subscriber node waits for l2tpns to speak
    // first, so this should stay at 0.
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
    let total: usize = all.iter().map(|s| s.sessions).sum();
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

    // The tunnels' IDs, ours and l2tpns's, to tell them apart on the wire.
    let tunnel_ids: Vec<(u16, u16)> = all
        .iter()
        .map(|s| {
            s.driver
                .node()
                .endpoint()
                .tunnel_ids(s.tunnel())
                .expect("tunnel IDs")
        })
        .collect();

    // Idle a little: l2tpns sends LCP Echo-Requests (echo_timeout 2) and
    // our clients answer them.
    run_until(&mut all, Duration::from_secs(3), |_| false);

    // Down: each client terminates its link (LCP Terminate-Request), then
    // its node clears the call (CDN).
    for s in &mut all {
        let now = s.driver.now();
        s.driver.node_mut().hang_up_all(now);
    }
    let down = run_until(&mut all, Duration::from_secs(20), |all| {
        all.iter()
            .all(|s| (0..s.sessions).all(|i| s.down(i).is_some()))
    });
    assert!(
        down,
        "links not down: {}\n{}",
        events_text(&all),
        lab.report()
    );
    for s in &all {
        for index in 0..s.sessions {
            assert_eq!(s.down(index), Some(&DownReason::Ppp(DownCause::AdminClose)));
        }
    }
    for stats in run_until_acknowledged(&mut all, Duration::from_secs(10)) {
        assert_eq!(
            stats.control.acked, stats.control.sent,
            "CDNs acknowledged: {stats:?}"
        );
    }
    for s in &all {
        let node = s.driver.node();
        for index in 0..s.sessions {
            let session = node.session(index).expect("session");
            assert!(
                node.endpoint().session_state(session).is_none(),
                "{session:?} still up"
            );
        }
        assert_eq!(node.endpoint().session_count(s.tunnel()), 0);
    }

    // And each tunnel (StopCCN).
    for s in &mut all {
        let now = s.driver.now();
        let tunnel = s.tunnel();
        s.driver
            .node_mut()
            .endpoint_mut()
            .close_tunnel(now, tunnel, ResultCode::new(stop_ccn::GENERAL_REQUEST))
            .expect("close tunnel");
    }
    for stats in run_until_acknowledged(&mut all, Duration::from_secs(5)) {
        assert_eq!(
            stats.control.acked, stats.control.sent,
            "StopCCN acknowledged: {stats:?}"
        );
    }
    for s in &all {
        let tunnel = s.tunnel();
        assert!(
            s.log.iter().any(|(_, e)| matches!(
                e,
                Event::TunnelDown { tunnel: t, reason: TunnelDownReason::Closed(_) }
                    if *t == tunnel
            )),
            "{}",
            events_text(&all)
        );
        assert_eq!(s.driver.node().stats().frames_not_sent, 0);
    }
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
    let flow = control_flow(&packets, &link);
    let count = |kind: &str| flow.iter().filter(|f| f.as_str() == kind).count();
    // One tunnel per node.
    assert_eq!(count("LAC>LNS SCCRQ"), all.len(), "{summary}");
    assert_eq!(count("LAC>LNS ICRQ"), total, "{summary}");
    assert_eq!(count("LNS>LAC ICRP"), total, "{summary}");
    assert_eq!(count("LAC>LNS ICCN"), total, "{summary}");
    // Every call cleared by our CDN (l2tpns sends none after LCP
    // Terminate), every tunnel by our StopCCN.
    assert_eq!(count("LAC>LNS CDN"), total, "{summary}");
    assert_eq!(count("LNS>LAC CDN"), 0, "{summary}");
    assert_eq!(count("LAC>LNS StopCCN"), all.len(), "{summary}");
    assert_eq!(count("LNS>LAC StopCCN"), 0, "{summary}");
    let lns_ip = link.b.to_string();
    // Each tunnel on its own: our messages carry l2tpns's tunnel ID (0 in
    // the SCCRQ, before we know it: every SCCRQ is in every tunnel's set, so
    // each one is checked against its own tunnel too), its
    // acknowledgements ours.
    let our_messages =
        |p: &&Packet| p.src == link.a.to_string() && p.control && p.message_type.is_some();
    let mut checked = HashSet::new();
    for (local_id, peer_id) in &tunnel_ids {
        let tunnel: Vec<Packet> = packets
            .iter()
            .filter(|p| {
                (p.src == lns_ip && p.tunnel == *local_id)
                    || (p.src != lns_ip && (p.tunnel == *peer_id || p.tunnel == 0))
            })
            .cloned()
            .collect();
        for message in tunnel.iter().filter(our_messages) {
            checked.insert(message.frame);
            assert!(
                acknowledged(&tunnel, message, &lns_ip),
                "l2tpns did not acknowledge our {} (frame {}):\n{summary}",
                message.kind(),
                message.frame
            );
        }
    }
    // None of our messages escaped the split by tunnel.
    assert_eq!(
        checked.len(),
        packets.iter().filter(our_messages).count(),
        "{summary}"
    );
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

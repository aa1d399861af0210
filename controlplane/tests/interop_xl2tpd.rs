//! Interop with xl2tpd (Debian package `xl2tpd`) as the LAC, our endpoint
//! as the LNS, run in-process by the driver over a socket in a namespace.
//!
//! **Needs root** (network namespaces, veth, packet capture) and the Debian
//! packages `xl2tpd`, `tshark` (with its dumpcap) and `iproute2`, as CI has them.
//! Without them the test fails saying what is missing.

mod support;

use std::net::{SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::time::Duration;

use controlplane::driver::{os_rng, Driver, Stop};
use controlplane::l2tp::codes::{cdn, stop_ccn};
use controlplane::l2tp::{
    Config, Endpoint, Event, SessionDownReason, TunnelDownReason, TunnelState,
};
use support::capture::{acknowledged, control_flow, Capture};
use support::netns::Lab;
use support::peers::{Xl2tpdLac, Xl2tpdLacConfig};

const SECRET: &str = "interop-secret";
const LAC_HOSTNAME: &str = "xl2tpd-lac";
const LNS_HOSTNAME: &str = "our-lns";

/// xl2tpd dials our LNS with a Challenge: tunnel and incoming call come up;
/// its pppd dies (no /dev/ppp) and it sends CDN, which we acknowledge while
/// the tunnel stays up; then it closes the tunnel with StopCCN, which we
/// acknowledge, leaving nothing established on our side.
#[test]
fn xl2tpd_lac_brings_a_call_up_with_our_lns() {
    let mut lab = Lab::new("xl2tpd").expect("lab");
    let lac = lab.namespace("lac").expect("lac namespace");
    let lns = lab.namespace("lns").expect("lns namespace");
    let link = lab.link(&lac, &lns).expect("veth");

    let lns_addr = SocketAddrV4::new(link.b, 1701);
    let socket = lab
        .udp_socket(&lns, SocketAddr::V4(lns_addr))
        .expect("our socket in the lns namespace");
    let mut config = Config::lns(LNS_HOSTNAME);
    config.secret = Some(SECRET.as_bytes().to_vec());
    // Tunnel authentication both ways (RFC 2661 §5.1.1): we challenge xl2tpd
    // too, and refuse it unless its Challenge Response proves the secret.
    config.require_authentication = true;
    let endpoint = Endpoint::new(config, os_rng().expect("rng")).expect("endpoint");
    let mut driver = Driver::new(socket, endpoint).expect("driver");

    let capture =
        Capture::start(&mut lab, &lns, &link.interface, link.a, "xl2tpd").expect("capture");
    let lac_config = Xl2tpdLacConfig {
        listen: link.a,
        lns: link.b,
        hostname: LAC_HOSTNAME,
        secret: Some(SECRET),
    };
    let xl2tpd = Xl2tpdLac::start(&mut lab, &lac, &lac_config).expect("xl2tpd");

    // Up to the CDN: the tunnel, the call, and xl2tpd hanging up.
    let mut events = Vec::new();
    let deadline = driver.now() + Duration::from_secs(20);
    let stop = driver
        .run_until(deadline, |_, event| {
            let done = matches!(event, Event::SessionDown { .. } | Event::TunnelDown { .. });
            events.push(event);
            if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("driver");
    assert_eq!(
        stop,
        Stop::Requested,
        "no CDN within 20 s: {events:#?}\n{}",
        lab.report()
    );

    let Some(Event::TunnelUp {
        tunnel,
        remote,
        local_tunnel_id,
        peer,
    }) = events.first().cloned()
    else {
        panic!("first event is not TunnelUp: {events:#?}");
    };
    assert_eq!(remote, SocketAddrV4::new(link.a, 1701));
    assert_eq!(peer.host_name, LAC_HOSTNAME);
    assert_eq!(peer.receive_window, 4, "xl2tpd sends Receive Window Size 4");
    assert_ne!(peer.tunnel_id, 0);
    assert_ne!(local_tunnel_id, 0);
    let Some(Event::SessionUp {
        session,
        local_session_id,
        peer_session_id,
        ..
    }) = events.get(1).cloned()
    else {
        panic!("second event is not SessionUp: {events:#?}");
    };
    assert_eq!(session.tunnel, tunnel);
    assert_ne!(local_session_id, 0);
    assert_ne!(peer_session_id, 0);
    match events.last() {
        Some(Event::SessionDown {
            session: down,
            reason: SessionDownReason::CdnReceived(result),
        }) => {
            assert_eq!(*down, session);
            assert_eq!(result.result, cdn::LOST_CARRIER, "xl2tpd's CDN: {result}");
        }
        other => panic!("expected xl2tpd's CDN, got {other:?}: {events:#?}"),
    }
    // Nothing else: no data message (xl2tpd's pppd never ran).
    assert_eq!(events.len(), 3, "{events:#?}");

    // The call is gone, the tunnel stays up (xl2tpd keeps it).
    let hold = driver.now() + Duration::from_millis(300);
    driver
        .run_until(hold, |_, event| {
            panic!("unexpected event after the CDN: {event:?}")
        })
        .expect("driver");
    assert_eq!(
        driver.node().tunnel_state(tunnel),
        Some(TunnelState::Established)
    );
    assert_eq!(driver.node().session_count(tunnel), 0);
    assert_eq!(driver.node().session_state(session), None);

    // xl2tpd closes the tunnel: StopCCN.
    xl2tpd.disconnect().expect("xl2tpd control");
    let mut down = None;
    let deadline = driver.now() + Duration::from_secs(10);
    driver
        .run_until(deadline, |_, event| match event {
            Event::TunnelDown {
                tunnel: t, reason, ..
            } if t == tunnel => {
                down = Some(reason);
                ControlFlow::Break(())
            }
            other => panic!("unexpected event while closing: {other:?}"),
        })
        .expect("driver");
    match down {
        Some(TunnelDownReason::StopCcnReceived(result)) => {
            assert_eq!(result.result, stop_ccn::GENERAL_REQUEST, "{result}");
        }
        other => panic!("expected xl2tpd's StopCCN, got {other:?}\n{}", lab.report()),
    }
    // Our acknowledgement goes out after the ack delay: let it.
    let settle = driver.now() + Duration::from_millis(500);
    driver
        .run_until(settle, |_, event| {
            panic!("unexpected event after StopCCN: {event:?}")
        })
        .expect("driver");
    assert_ne!(
        driver.node().tunnel_state(tunnel),
        Some(TunnelState::Established)
    );
    assert_eq!(driver.node().session_count(tunnel), 0);
    let stats = driver.node().tunnel_stats(tunnel);
    assert!(
        stats.is_none_or(|s| s.control.retransmitted == 0 && s.control.acked == s.control.sent),
        "every message of ours acknowledged at once: {stats:?}"
    );
    assert!(lab.running(xl2tpd.process()), "xl2tpd still runs");

    // What tshark saw.
    let pcap = capture.stop(&mut lab).expect("stop capture");
    let packets = pcap.packets().expect("tshark");
    let summary = pcap.summary().unwrap_or_default();
    assert_eq!(
        control_flow(&packets, &link),
        [
            "LAC>LNS SCCRQ",
            "LNS>LAC SCCRP",
            "LAC>LNS SCCCN",
            "LAC>LNS ICRQ",
            "LNS>LAC ICRP",
            "LAC>LNS ICCN",
            "LAC>LNS CDN",
            "LAC>LNS StopCCN",
        ],
        "{summary}"
    );
    let sccrp = packets.iter().find(|p| p.kind() == "SCCRP").expect("SCCRP");
    assert_eq!(sccrp.host_name.as_deref(), Some(LNS_HOSTNAME));
    let sccrq = packets.iter().find(|p| p.kind() == "SCCRQ").expect("SCCRQ");
    assert!(sccrq.challenge, "xl2tpd challenges us (challenge = yes)");
    assert!(sccrp.challenge_response, "we answer xl2tpd's challenge");
    assert!(sccrp.challenge, "we challenge xl2tpd");
    let scccn = packets.iter().find(|p| p.kind() == "SCCCN").expect("SCCCN");
    assert!(scccn.challenge_response, "xl2tpd answers our challenge");
    assert_eq!(
        sccrp.tunnel, peer.tunnel_id,
        "SCCRP goes to xl2tpd's tunnel id"
    );
    let icrp = packets.iter().find(|p| p.kind() == "ICRP").expect("ICRP");
    assert_eq!(
        icrp.session, peer_session_id,
        "ICRP goes to xl2tpd's session id"
    );
    let lns_ip = link.b.to_string();
    for kind in ["SCCCN", "ICCN", "CDN", "StopCCN"] {
        let message = packets.iter().find(|p| p.kind() == kind).expect(kind);
        assert!(
            acknowledged(&packets, message, &lns_ip),
            "our side did not acknowledge xl2tpd's {kind}:\n{summary}"
        );
    }
    assert!(
        packets.iter().all(|p| p.control),
        "no data messages expected:\n{summary}"
    );
    assert_eq!(pcap.problems().expect("tshark"), "", "{summary}");
}

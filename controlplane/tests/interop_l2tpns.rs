//! Interop with l2tpns (Debian package `l2tpns`) as the LNS.
//!
//! **Needs root** (network namespaces, veth, TUN, packet capture) and the
//! Debian packages `l2tpns`, `xl2tpd`, `tshark` (with its dumpcap) and
//! `iproute2`, as CI has them. Without them these tests fail saying what is
//! missing.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

mod support;

use std::net::{SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::time::Duration;

use controlplane::driver::{os_rng, Driver, Stop};
use controlplane::l2tp::codes::{cdn, stop_ccn};
use controlplane::l2tp::{
    CallParams, Config, Endpoint, Event, ResultCode, SessionDownReason, TunnelDownReason,
    TunnelHandle, TunnelStats,
};
use dataplane::wire::{ppp, ppp_cp};
use support::capture::{acknowledged, control_flow, Capture};
use support::netns::{Lab, Link, Netns};
use support::peers::{L2tpnsLns, L2tpnsLnsConfig, Xl2tpdLac, Xl2tpdLacConfig};

const SECRET: &str = "interop-secret";
const LNS_HOSTNAME: &str = "l2tpns-lns";
const LAC_HOSTNAME: &str = "our-lac";

/// Two namespaces joined by a veth pair, l2tpns serving on the second
/// (`lns`) end and a capture running on the first (`lac`).
struct L2tpnsLab {
    lab: Lab,
    lac: Netns,
    link: Link,
    l2tpns: L2tpnsLns,
    capture: Capture,
}

impl L2tpnsLab {
    fn start(tag: &str) -> Self {
        let mut lab = Lab::new(tag).expect("lab");
        let lac = lab.namespace("lac").expect("lac namespace");
        let lns = lab.namespace("lns").expect("lns namespace");
        let link = lab.link(&lac, &lns).expect("veth");
        let lns_config = L2tpnsLnsConfig {
            bind: link.b,
            hostname: LNS_HOSTNAME,
            secret: SECRET,
            radius_port: 18120,
        };
        let l2tpns = L2tpnsLns::start(&mut lab, &lns, &lns_config).expect("l2tpns");
        let capture =
            Capture::start(&mut lab, &lac, &link.interface, link.b, tag).expect("capture");
        L2tpnsLab {
            lab,
            lac,
            link,
            l2tpns,
            capture,
        }
    }
}

/// Our LAC opens a tunnel (answering l2tpns's view of the secret) and an
/// incoming call; l2tpns starts PPP with an LCP Configure-Request in a data
/// message on our session; we tear down with CDN and StopCCN, and l2tpns
/// acknowledges both. Checked from our events and state, l2tpns's log, and
/// the capture.
#[test]
fn our_lac_brings_a_session_up_with_l2tpns() {
    let L2tpnsLab {
        mut lab,
        lac,
        link,
        l2tpns,
        capture,
        ..
    } = L2tpnsLab::start("l2tpns");

    let socket = lab
        .udp_socket(&lac, SocketAddr::V4(SocketAddrV4::new(link.a, 1701)))
        .expect("our socket in the lac namespace");
    let mut config = Config::lac(LAC_HOSTNAME);
    config.secret = Some(SECRET.as_bytes().to_vec());
    // Tunnel authentication both ways (RFC 2661 §5.1.1): we challenge l2tpns
    // too, and refuse it unless its Challenge Response proves the secret.
    config.require_authentication = true;
    let endpoint = Endpoint::new(config, os_rng().expect("rng")).expect("endpoint");
    let mut driver = Driver::new(socket, endpoint).expect("driver");

    let lns_addr = SocketAddrV4::new(link.b, 1701);
    let now = driver.now();
    let tunnel = driver.node_mut().connect(now, lns_addr).expect("connect");
    let session = driver
        .node_mut()
        .open_session(now, tunnel, CallParams::default())
        .expect("open session");

    // Up to l2tpns's first PPP frame on our session.
    let mut events = Vec::new();
    let deadline = driver.now() + Duration::from_secs(20);
    let stop = driver
        .run_until(deadline, |_, event| {
            let done = matches!(
                event,
                Event::Data { .. } | Event::SessionDown { .. } | Event::TunnelDown { .. }
            );
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
        "no PPP frame within 20 s: {events:#?}\n{}",
        lab.report()
    );

    let Some(Event::TunnelUp {
        tunnel: up,
        remote,
        local_tunnel_id,
        peer,
    }) = events.first().cloned()
    else {
        panic!("first event is not TunnelUp: {events:#?}");
    };
    assert_eq!(up, tunnel);
    assert_eq!(remote, lns_addr);
    assert_eq!(peer.host_name, LNS_HOSTNAME);
    assert_eq!(
        peer.receive_window, 4,
        "l2tpns sends no Receive Window Size: 4 applies"
    );
    assert_ne!(peer.tunnel_id, 0);
    let Some(Event::SessionUp {
        session: up,
        local_session_id,
        peer_session_id,
        ..
    }) = events.get(1).cloned()
    else {
        panic!("second event is not SessionUp: {events:#?}");
    };
    assert_eq!(up, session);
    assert_ne!(local_session_id, 0);
    assert_ne!(peer_session_id, 0);
    match events.get(2) {
        Some(Event::Data {
            session: on,
            payload,
        }) => {
            assert_eq!(*on, session);
            let frame = ppp::Packet::new_checked(payload.as_slice()).expect("a PPP frame");
            assert_eq!(frame.protocol(), ppp::Protocol::Lcp, "{payload:02x?}");
            let lcp = ppp_cp::Packet::new_checked(frame.payload()).expect("an LCP packet");
            assert_eq!(lcp.code(), ppp_cp::Code::ConfigureRequest, "{payload:02x?}");
        }
        other => panic!("expected l2tpns's LCP Configure-Request, got {other:?}: {events:#?}"),
    }
    // l2tpns logs "New session (its view of our tunnel id/our session id)".
    l2tpns
        .wait_for_log(
            &mut lab,
            &format!("New session ({local_tunnel_id}/{local_session_id})"),
            Duration::from_secs(5),
        )
        .expect("l2tpns saw our ids");

    // Down: CDN, acknowledged.
    let now = driver.now();
    driver
        .node_mut()
        .close_session(now, session, ResultCode::new(cdn::ADMINISTRATIVE))
        .expect("close session");
    let stats = run_until_acknowledged(&mut driver, tunnel, &mut events).expect("acknowledged");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::SessionDown { session: s, reason: SessionDownReason::Closed(_) } if *s == session
        )),
        "{events:#?}"
    );
    assert_eq!(
        stats.control.acked, stats.control.sent,
        "CDN acknowledged: {stats:?}"
    );
    l2tpns
        .wait_for_log(&mut lab, "Received CDN", Duration::from_secs(5))
        .expect("l2tpns got our CDN");

    // And StopCCN, acknowledged.
    let now = driver.now();
    driver
        .node_mut()
        .close_tunnel(now, tunnel, ResultCode::new(stop_ccn::GENERAL_REQUEST))
        .expect("close tunnel");
    let stats = run_until_acknowledged(&mut driver, tunnel, &mut events).expect("acknowledged");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::TunnelDown { tunnel: t, reason: TunnelDownReason::Closed(_), .. } if *t == tunnel
        )),
        "{events:#?}"
    );
    assert_eq!(
        stats.control.acked, stats.control.sent,
        "StopCCN acknowledged: {stats:?}"
    );
    assert_eq!(stats.control.retransmitted, 0, "{stats:?}");
    assert_eq!(driver.node().session_count(tunnel), 0);
    l2tpns
        .wait_for_log(&mut lab, "Received StopCCN", Duration::from_secs(5))
        .expect("l2tpns got our StopCCN");

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
    let sccrq = packets.iter().find(|p| p.kind() == "SCCRQ").expect("SCCRQ");
    assert_eq!(sccrq.host_name.as_deref(), Some(LAC_HOSTNAME));
    assert!(sccrq.challenge, "we challenge l2tpns");
    let sccrp = packets.iter().find(|p| p.kind() == "SCCRP").expect("SCCRP");
    assert!(sccrp.challenge_response, "l2tpns answers our challenge");
    let scccn = packets.iter().find(|p| p.kind() == "SCCCN").expect("SCCCN");
    assert!(!scccn.challenge_response, "l2tpns did not challenge us");
    let confreq = packets
        .iter()
        .find(|p| p.kind() == "DATA LCP-ConfReq")
        .unwrap_or_else(|| panic!("no LCP Configure-Request on the wire:\n{summary}"));
    assert_eq!(
        (confreq.tunnel, confreq.session),
        (local_tunnel_id, local_session_id),
        "the data message names our ids"
    );
    let lns_ip = link.b.to_string();
    for kind in ["SCCRQ", "SCCCN", "ICRQ", "ICCN", "CDN", "StopCCN"] {
        let message = packets.iter().find(|p| p.kind() == kind).expect(kind);
        assert!(
            acknowledged(&packets, message, &lns_ip),
            "l2tpns did not acknowledge our {kind}:\n{summary}"
        );
    }
    assert_eq!(pcap.problems().expect("tshark"), "", "{summary}");
    l2tpns
        .quit(&mut lab, Duration::from_secs(2))
        .expect("stop l2tpns");
}

/// Runs until the peer has acknowledged every control message we sent on
/// `tunnel` (an acknowledgement is no event, so the state is checked between
/// short runs), at most 5 s. Events are collected; PPP frames l2tpns keeps
/// sending meanwhile are among them.
fn run_until_acknowledged(
    driver: &mut Driver<Endpoint>,
    tunnel: TunnelHandle,
    events: &mut Vec<Event>,
) -> Result<TunnelStats, String> {
    let deadline = driver.now() + Duration::from_secs(5);
    loop {
        let stats = driver
            .node()
            .tunnel_stats(tunnel)
            .ok_or("the tunnel's state is gone")?;
        if stats.control.acked == stats.control.sent || driver.now() >= deadline {
            return Ok(stats);
        }
        let step = (driver.now() + Duration::from_millis(50)).min(deadline);
        driver
            .run_until(step, |_, event| {
                events.push(event);
                ControlFlow::Continue(())
            })
            .map_err(|e| format!("driver: {e}"))?;
    }
}

/// The control experiment: the two real peers against each other, with no
/// code of ours. When an interop test of ours fails, this one tells whether
/// the machine (packages, namespaces, capture) is the problem.
#[test]
fn peers_xl2tpd_lac_brings_a_call_up_with_l2tpns() {
    let L2tpnsLab {
        mut lab,
        lac,
        link,
        l2tpns,
        capture,
        ..
    } = L2tpnsLab::start("peers");
    let lac_config = Xl2tpdLacConfig {
        listen: link.a,
        lns: link.b,
        hostname: "xl2tpd-lac",
        secret: Some(SECRET),
    };
    let xl2tpd = Xl2tpdLac::start(&mut lab, &lac, &lac_config).expect("xl2tpd");

    // xl2tpd's pppd dies at once: the call goes down with CDN.
    l2tpns
        .wait_for_log(&mut lab, "Received CDN", Duration::from_secs(15))
        .expect("the call came and went");
    xl2tpd.disconnect().expect("xl2tpd control");
    l2tpns
        .wait_for_log(&mut lab, "Received StopCCN", Duration::from_secs(10))
        .expect("StopCCN reached l2tpns");

    let pcap = capture.stop(&mut lab).expect("stop capture");
    let packets = pcap.packets().expect("tshark");
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
        "{}",
        pcap.summary().unwrap_or_default()
    );
    let sccrp = packets
        .iter()
        .find(|p| p.message_type == Some(2))
        .expect("SCCRP");
    assert_eq!(sccrp.host_name.as_deref(), Some(LNS_HOSTNAME));
    assert!(
        packets.iter().any(|p| p.kind() == "DATA LCP-ConfReq"),
        "l2tpns sends LCP Configure-Request after ICCN:\n{}",
        pcap.summary().unwrap_or_default()
    );
    let lns_addr = link.b.to_string();
    for kind in ["CDN", "StopCCN"] {
        let message = packets.iter().find(|p| p.kind() == kind).expect(kind);
        assert!(
            acknowledged(&packets, message, &lns_addr),
            "{kind} not acknowledged"
        );
    }
    assert_eq!(pcap.problems().expect("tshark"), "");
    l2tpns
        .quit(&mut lab, Duration::from_secs(2))
        .expect("stop l2tpns");
}

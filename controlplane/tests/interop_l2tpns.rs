//! Interop with l2tpns (Debian package `l2tpns`) as the LNS.
//!
//! **Needs root** (network namespaces, veth, TUN, packet capture) and the
//! Debian packages `l2tpns`, `xl2tpd`, `tcpdump`, `tshark` and `iproute2`,
//! as CI has them. Without them these tests fail saying what is missing.

mod support;

use std::time::Duration;

use support::capture::{acknowledged, control_flow, Capture};
use support::netns::Lab;
use support::peers::{L2tpnsLns, L2tpnsLnsConfig, Xl2tpdLac, Xl2tpdLacConfig};

const SECRET: &str = "interop-secret";
const LNS_HOSTNAME: &str = "l2tpns-lns";

/// The control experiment: the two real peers against each other, with no
/// code of ours. When an interop test of ours fails, this one tells whether
/// the machine (packages, namespaces, capture) is the problem.
#[test]
fn peers_xl2tpd_lac_brings_a_call_up_with_l2tpns() {
    let mut lab = Lab::new("peers").expect("lab");
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
    let capture = Capture::start(&mut lab, &lac, &link.interface, "peers").expect("capture");
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
    let names = [(link.a.to_string(), "LAC"), (link.b.to_string(), "LNS")];
    let names: Vec<(&str, &str)> = names.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    assert_eq!(
        control_flow(&packets, &names),
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

//! Every L2TP frame of the xl2tpd (LAC) ↔ l2tpns (LNS) capture through our
//! codecs: control messages parse with the tunnel secret and emit back byte
//! for byte, the data message's header and PPP payload are where tshark
//! puts them, and the conversation is the one the capture's README names.

use std::fs::File;

use dataplane::wire::control::{Context, ControlMessage, MessageType, HA_VENDOR_ID};
use dataplane::wire::l2tp::{HeaderRepr, Packet, UDP_PORT};
use etherparse::{SlicedPacket, TransportSlice};
use pcap_file::pcapng::{Block, PcapNgReader};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/captures/xl2tpd-lac_l2tpns-lns.pcap"
);

/// The UDP payloads to or from port 1701, in capture order.
fn l2tp_payloads() -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    // The capture lives outside the repository, in /work/shared; fall back
    // to the absolute path if the checkout is elsewhere.
    let file = File::open(CAPTURE)
        .or_else(|_| File::open("/work/shared/captures/xl2tpd-lac_l2tpns-lns.pcap"))?;
    let mut reader = PcapNgReader::new(file)?;
    let mut payloads = Vec::new();
    while let Some(block) = reader.next_block() {
        let Block::EnhancedPacket(packet) = block? else {
            continue;
        };
        let sliced = SlicedPacket::from_ethernet(&packet.data)?;
        let Some(TransportSlice::Udp(udp)) = sliced.transport else {
            continue;
        };
        if udp.source_port() == UDP_PORT || udp.destination_port() == UDP_PORT {
            payloads.push(udp.payload().to_vec());
        }
    }
    Ok(payloads)
}

#[test]
fn every_frame_parses_in_order() {
    let ctx = Context {
        secret: Some(b"secret"),
        ha_vendor_id: HA_VENDOR_ID,
    };
    let mut seen = Vec::new();
    for payload in l2tp_payloads().unwrap() {
        let packet = Packet::new_checked(&payload[..]).expect("an L2TPv2 header");
        if packet.is_control() {
            let message = ControlMessage::parse(&payload, &ctx).expect("a control message");
            let mut again = vec![0; message.buffer_len()];
            assert_eq!(message.emit(&mut again, &ctx), Ok(again.len()));
            assert_eq!(again, payload, "{message:?} re-emits the same bytes");
            seen.push(match message.message_type {
                None => "ZLB".to_string(),
                Some(t) => format!("{t:?}").to_uppercase(),
            });
        } else {
            let header = HeaderRepr::parse(&packet).expect("a data header");
            assert_eq!(header, HeaderRepr::data(43414, 29619));
            // PPP in HDLC-like framing: address, control, then LCP.
            assert_eq!(&packet.payload()[..4], &[0xff, 0x03, 0xc0, 0x21]);
            seen.push("DATA".to_string());
        }
    }
    assert_eq!(
        seen,
        ["SCCRQ", "SCCRP", "SCCCN", "ZLB", "ICRQ", "ICRP", "ICCN", "ZLB", "DATA", "CDN", "ZLB"]
    );
}

#[test]
fn sequence_numbers_follow_rfc_2661_section_5_8() {
    // Each side's Ns counts its non-ZLB control messages; a ZLB carries the
    // next Ns without consuming it. Nr is what the peer sent so far.
    let ctx = Context {
        secret: Some(b"secret"),
        ha_vendor_id: HA_VENDOR_ID,
    };
    let (mut lac_ns, mut lns_ns) = (0u16, 0u16);
    for payload in l2tp_payloads().unwrap() {
        let Ok(m) = ControlMessage::parse(&payload, &ctx) else {
            continue;
        };
        // l2tpns (the LNS) knows xl2tpd's tunnel as 3; xl2tpd knows l2tpns's as 43414.
        let from_lac = m.tunnel_id != 43414;
        let (ns, nr) = if from_lac {
            (&mut lac_ns, lns_ns)
        } else {
            (&mut lns_ns, lac_ns)
        };
        assert_eq!((m.ns, m.nr), (*ns, nr), "{m:?}");
        if m.message_type.is_some() {
            *ns += 1;
        }
        if m.message_type == Some(MessageType::Sccrq) {
            assert_eq!(m.tunnel_id, 0);
        }
    }
    assert_eq!((lac_ns, lns_ns), (5, 2));
}

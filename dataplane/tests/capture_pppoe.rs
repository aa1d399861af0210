//! Every frame of the PPPoE subscribers ↔ l2tpns capture through our codecs,
//! from Ethernet down to LCP, PAP, IPCP and IPv4/UDP: each parses, each
//! Repr emits the bytes it came from, and the counts per protocol are the
//! ones tshark reports in the capture's README.

use std::collections::BTreeMap;

use dataplane::wire::ethernet::{self, EtherType, Frame};
use dataplane::wire::ppp::{self, Protocol};
use dataplane::wire::ppp_cp::{
    self, ConfigOption, CpData, CpRepr, IpcpOption, IpcpRepr, LcpOption, LcpRepr,
};
use dataplane::wire::{arp, ipv4, pap, pppoe, udp};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/captures/pppoe-subscribers_l2tpns.pcap"
);

fn frames() -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    // The capture lives outside the repository, in /work/shared; fall back
    // to the absolute path if the checkout is elsewhere.
    let bytes = std::fs::read(CAPTURE)
        .or_else(|_| std::fs::read("/work/shared/captures/pppoe-subscribers_l2tpns.pcap"))?;
    // bngblaster wrote this file without the opt_endofopt that pcap-file 2
    // insists on at the end of every option list (its reader fails with
    // "Invalid option"), so walk the blocks here: they are simple enough.
    // Little-endian only, which the section header's byte-order magic says.
    let u32_at = |at: usize| -> Result<usize, Box<dyn std::error::Error>> {
        let b = bytes.get(at..at + 4).ok_or("truncated block")?;
        Ok(u32::from_le_bytes(b.try_into()?) as usize)
    };
    const SECTION_HEADER: usize = 0x0a0d_0d0a;
    const ENHANCED_PACKET: usize = 6;
    if u32_at(0)? != SECTION_HEADER || u32_at(8)? != 0x1a2b_3c4d {
        return Err("not a little-endian pcapng file".into());
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (kind, len) = (u32_at(at)?, u32_at(at + 4)?);
        if len < 12 {
            return Err("block shorter than its header".into());
        }
        if kind == ENHANCED_PACKET {
            // Interface id, timestamp (2 words), captured and original
            // length, then the packet.
            let captured = u32_at(at + 20)?;
            let data = bytes
                .get(at + 28..at + 28 + captured)
                .ok_or("packet past block")?;
            frames.push(data.to_vec());
        }
        at += len;
    }
    Ok(frames)
}

/// Emit `repr` with `emit` into a fresh buffer of `len` and return it.
fn emitted(len: usize, emit: impl FnOnce(&mut [u8]) -> dataplane::wire::Result<usize>) -> Vec<u8> {
    let mut buf = vec![0; len];
    assert_eq!(emit(&mut buf), Ok(len));
    buf
}

/// What we learn from the frames, checked at the end.
#[derive(Default)]
struct Seen {
    counts: BTreeMap<&'static str, usize>,
    lcp_rejected_kinds: Vec<Vec<u8>>,
    pap_peers: Vec<Vec<u8>>,
    ipcp_naks: Vec<Ipv4IpcpNak>,
}

type Ipv4IpcpNak = (std::net::Ipv4Addr, std::net::Ipv4Addr, std::net::Ipv4Addr);

impl Seen {
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
}

// cfg(test) marks these helpers as test code for clippy's unwrap/panic lints.

/// An LCP or IPCP packet (RFC 1661 §5), parsed, and emitted back to the
/// bytes its Length covers.
#[cfg(test)]
fn control_packet<'a, O: ConfigOption<'a>>(body: &'a [u8], what: &str) -> CpRepr<'a, O> {
    let packet = ppp_cp::Packet::new_checked(body).unwrap();
    let repr = CpRepr::parse(&packet).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        emitted(repr.buffer_len(), |b| repr.emit(b)),
        packet.packet()
    );
    repr
}

#[cfg(test)]
fn session_payload(seen: &mut Seen, number: usize, payload: &[u8]) {
    let frame = ppp::Packet::new_checked(payload).expect("a PPP header");
    let header = ppp::Repr::parse(&frame).unwrap();
    // RFC 2516 §7: no Address/Control over PPPoE, and l2tpns never
    // compresses the protocol.
    assert!(
        !header.address_control && !header.compressed_protocol,
        "frame {number}"
    );
    assert_eq!(emitted(2, |b| header.emit(b)), payload[..2]);
    let body = frame.payload();
    match header.protocol {
        Protocol::Lcp => {
            seen.count("lcp");
            let repr: LcpRepr<'_> = control_packet(body, "an LCP packet");
            if let (ppp_cp::Code::ConfigureReject, CpData::Options(options)) =
                (repr.code, &repr.data)
            {
                let kinds = options
                    .iter()
                    .map(|o| match o {
                        LcpOption::Unknown { kind, .. } => *kind,
                        other => panic!("frame {number}: rejected a known option {other:?}"),
                    })
                    .collect();
                seen.lcp_rejected_kinds.push(kinds);
            }
        }
        Protocol::Pap => {
            seen.count("pap");
            let packet = pap::Packet::new_checked(body).unwrap();
            let repr = pap::Repr::parse(&packet).expect("a PAP packet");
            assert_eq!(emitted(repr.buffer_len(), |b| repr.emit(b)), body);
            if let pap::Message::Request { peer_id, password } = repr.message {
                assert_eq!(password, b"test");
                seen.pap_peers.push(peer_id.to_vec());
            }
        }
        Protocol::Ipcp => {
            seen.count("ipcp");
            let repr: IpcpRepr<'_> = control_packet(body, "an IPCP packet");
            if let (ppp_cp::Code::ConfigureNak, CpData::Options(options)) = (repr.code, &repr.data)
            {
                match options[..] {
                    [IpcpOption::IpAddress(a), IpcpOption::PrimaryDns(d1), IpcpOption::SecondaryDns(d2)] => {
                        seen.ipcp_naks.push((a, d1, d2))
                    }
                    _ => panic!("frame {number}: unexpected Nak {options:?}"),
                }
            }
        }
        other => panic!("frame {number}: PPP protocol {other:?} not in the capture"),
    }
}

// cfg(test) marks these helpers as test code for clippy's unwrap/panic lints.
#[cfg(test)]
fn ipv4_packet(seen: &mut Seen, number: usize, bytes: &[u8]) {
    let packet = ipv4::Packet::new_checked(bytes).expect("an IPv4 header");
    let repr = ipv4::Repr::parse(&packet).expect("a valid IPv4 checksum");
    assert_eq!(emitted(20, |b| repr.emit(b)), bytes[..20], "frame {number}");
    assert_eq!(repr.protocol, ipv4::Protocol::Udp);
    let datagram = udp::Packet::new_checked(packet.payload()).expect("a UDP header");
    assert_eq!(usize::from(datagram.len()), repr.payload_len);
    // l2tpns's cluster heartbeats, captured on the sending host before
    // checksum offload: the checksum field holds a partial sum. Filled in,
    // it verifies.
    assert_eq!((datagram.src_port(), datagram.dst_port()), (32792, 32792));
    let mut copy = packet.payload().to_vec();
    let mut fixed = udp::Packet::new_checked(&mut copy[..]).unwrap();
    fixed.fill_checksum(repr.src_addr, repr.dst_addr);
    let udp_repr = udp::Repr::parse(&fixed, repr.src_addr, repr.dst_addr).unwrap();
    assert_eq!(udp_repr.payload_len + 8, usize::from(datagram.len()));
    seen.count("udp");
}

#[test]
fn every_frame_parses_down_to_the_innermost_protocol() {
    let frames = frames().unwrap();
    assert_eq!(frames.len(), 205);
    let mut seen = Seen::default();
    for (i, bytes) in frames.iter().enumerate() {
        let number = i + 1;
        let frame = Frame::new_checked(&bytes[..]).expect("an Ethernet header");
        let eth = ethernet::Repr::parse(&frame).unwrap();
        assert_eq!(emitted(14, |b| eth.emit(b)), bytes[..14], "frame {number}");
        match eth.ethertype {
            EtherType::Arp => {
                let packet = arp::Packet::new_checked(frame.payload()).unwrap();
                let repr = arp::Repr::parse(&packet).expect("Ethernet/IPv4 ARP");
                assert_eq!(emitted(28, |b| repr.emit(b)), frame.payload()[..28]);
                seen.count("arp");
            }
            EtherType::Ipv6 => seen.count("ipv6"),
            EtherType::Ipv4 => ipv4_packet(&mut seen, number, frame.payload()),
            EtherType::PppoeDiscovery => {
                let packet = pppoe::Packet::new_checked(frame.payload()).unwrap();
                let repr = pppoe::DiscoveryRepr::parse(&packet).expect("discovery tags");
                let again = emitted(repr.buffer_len(), |b| repr.emit(b));
                assert_eq!(
                    again,
                    frame.payload()[..repr.buffer_len()],
                    "frame {number}"
                );
                seen.count(match repr.code {
                    pppoe::Code::Padi => "padi",
                    pppoe::Code::Pado => "pado",
                    pppoe::Code::Padr => "padr",
                    pppoe::Code::Pads => "pads",
                    pppoe::Code::Padt => "padt",
                    other => panic!("frame {number}: discovery code {other:?}"),
                });
            }
            EtherType::PppoeSession => {
                let packet = pppoe::Packet::new_checked(frame.payload()).unwrap();
                let repr = pppoe::Repr::parse(&packet).unwrap();
                assert_eq!(repr.code, pppoe::Code::Session);
                assert!((1..=5).contains(&repr.session_id), "frame {number}");
                assert_eq!(emitted(6, |b| repr.emit(b)), frame.payload()[..6]);
                session_payload(&mut seen, number, packet.payload());
            }
            other => panic!("frame {number}: EtherType {other:?}"),
        }
    }

    let count = |what| seen.counts.get(what).copied().unwrap_or(0);
    // The capture's README: pppoed 25, pppoes 120 (LCP 70, PAP 20, IPCP 30),
    // UDP 51.
    let discovery: usize = ["padi", "pado", "padr", "pads", "padt"]
        .map(count)
        .iter()
        .sum();
    assert_eq!(discovery, 25);
    for code in ["padi", "pado", "padr", "pads", "padt"] {
        assert_eq!(count(code), 5, "{code}");
    }
    assert_eq!((count("lcp"), count("pap"), count("ipcp")), (70, 20, 30));
    assert_eq!(count("udp"), 51);
    assert_eq!(count("arp") + count("ipv6") + discovery + 120 + 51, 205);

    // What l2tpns's LCP asks for that a client must refuse (PEERS.md).
    assert!(!seen.lcp_rejected_kinds.is_empty());
    assert!(seen.lcp_rejected_kinds.iter().all(|k| k[..] == [17, 19]));
    for n in 1..=5 {
        let peer = format!("user{n}@lns.lab").into_bytes();
        assert!(seen.pap_peers.contains(&peer), "{n}");
    }
    assert_eq!(seen.ipcp_naks.len(), 5);
    for (_, dns1, dns2) in &seen.ipcp_naks {
        assert_eq!(
            (dns1.octets(), dns2.octets()),
            ([10, 0, 1, 53], [10, 0, 1, 54])
        );
    }
}

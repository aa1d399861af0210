//! Frames in → worker → frames out, for both data paths, their punts and
//! every drop reason.
//!
//! Inputs are written with the wire emitters (`dataplane::testkit`); the
//! expected outputs are built independently here with the same emitters
//! and compared byte for byte. Each forwarding case's input and output are
//! also kept as pcaps under `testdata/` (open them in Wireshark), and the
//! test fails when the worker's output stops matching them; regenerate on
//! purpose with `UPDATE_GOLDEN=1 cargo test -p dataplane --test
//! fastpath_golden`.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use dataplane::counters::{DropReason, PathKind, PuntKind};
use dataplane::io::memory::{MemoryPort, MemoryPortConfig};
use dataplane::io::Port;
use dataplane::punt::{InjectTarget, PuntReason};
use dataplane::table::{SessionConfig, SessionKey};
use dataplane::testkit::{self as lab, Encoding};
use dataplane::update::{ChannelSizes, Event, Update};
use dataplane::wire::ethernet::{self, EtherType};
use dataplane::wire::{arp, checksum, ipv4, l2tp, ppp, pppoe, udp};
use dataplane::worker::{Role, Worker, WorkerConfig};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

type Frames = Vec<(u8, Vec<u8>)>;

/// Feed `inputs`, poll until quiet, collect what every port sent.
fn run(w: &mut Worker<MemoryPort>, inputs: &[(u8, Vec<u8>)]) -> Frames {
    for (port, frame) in inputs {
        assert!(w.ports_mut()[usize::from(*port)].push_rx(frame));
    }
    while w.poll() > 0 {}
    drain(w)
}

fn drain(w: &mut Worker<MemoryPort>) -> Frames {
    let mut out = Vec::new();
    for (i, port) in w.ports_mut().iter_mut().enumerate() {
        while let Some(f) = port.pop_tx() {
            out.push((i as u8, f));
        }
    }
    out
}

fn apply(w: &mut Worker<MemoryPort>, updates: &[Update]) {
    let channels = w.channels();
    for u in updates {
        channels.send(*u).unwrap();
    }
    w.apply_all_updates();
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(format!("{name}.pcap"))
}

/// Compare `frames` with the committed pcap `name`, or write it when
/// UPDATE_GOLDEN is set.
#[track_caller]
fn golden(name: &str, frames: &[Vec<u8>]) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut writer = PcapWriter::new(File::create(&path).unwrap()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let packet = PcapPacket::new(Duration::from_millis(i as u64), f.len() as u32, f);
            writer.write_packet(&packet).unwrap();
        }
        return;
    }
    let file = File::open(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    let mut reader = PcapReader::new(file).unwrap();
    let mut stored = Vec::new();
    while let Some(p) = reader.next_packet() {
        stored.push(p.unwrap().data.into_owned());
    }
    assert_eq!(stored, frames, "{} differs", path.display());
}

/// One forwarding case: run, compare with `expected` and with the pcaps.
#[track_caller]
fn case(name: &str, w: &mut Worker<MemoryPort>, inputs: Frames, expected: Frames) {
    let out = run(w, &inputs);
    assert_eq!(out.len(), expected.len(), "{name}: {:?}", w.counters());
    for (i, ((port, got), (want_port, want))) in out.iter().zip(&expected).enumerate() {
        assert_eq!(port, want_port, "{name}: frame {i} port");
        assert_eq!(hex(got), hex(want), "{name}: frame {i}");
    }
    assert_eq!(w.counters().total_drops(), 0, "{name}: {:?}", w.counters());
    golden(
        &format!("{name}.in"),
        &inputs.into_iter().map(|f| f.1).collect::<Vec<_>>(),
    );
    golden(
        &format!("{name}.out"),
        &out.into_iter().map(|f| f.1).collect::<Vec<_>>(),
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a worker sends into a tunnel: Ethernet/IPv4/UDP/L2TP around `ppp`.
fn to_peer(
    src_mac: ethernet::Address,
    peer: SessionKey,
    ident: u16,
    ns: Option<u16>,
    ppp: &[u8],
) -> Vec<u8> {
    let header = l2tp::HeaderRepr {
        sequence: ns.map(|ns| (ns, 0)),
        ..l2tp::HeaderRepr::data(peer.tunnel_id, peer.session_id)
    };
    let l2tp_len = header.buffer_len();
    let mut p = vec![0u8; 28 + l2tp_len + ppp.len()];
    ipv4::Repr {
        src_addr: lab::LOCAL_ADDR,
        dst_addr: lab::PEER_ADDR,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: 8 + l2tp_len + ppp.len(),
    }
    .emit(&mut p)
    .unwrap();
    udp::Repr {
        src_port: l2tp::UDP_PORT,
        dst_port: lab::PEER_PORT,
        payload_len: l2tp_len + ppp.len(),
    }
    .emit(&mut p[20..])
    .unwrap();
    header.emit(&mut p[28..], ppp.len()).unwrap();
    p[28 + l2tp_len..].copy_from_slice(ppp);
    lab::ethernet(lab::PEER_MAC, src_mac, None, EtherType::Ipv4, &p)
}

fn ppp_ipv4(ip: &[u8]) -> Vec<u8> {
    lab::ppp_frame(ppp::Protocol::Ipv4, ip, Encoding::default())
}

fn lcp_echo_request() -> Vec<u8> {
    // RFC 1661 §5.8: Echo-Request, id 1, length 8, magic 0x01020304.
    lab::ppp_frame(
        ppp::Protocol::Lcp,
        &[9, 1, 0, 8, 1, 2, 3, 4],
        Encoding::default(),
    )
}

#[test]
fn lns_upstream_forwards_the_inner_packet_to_the_gateway() {
    let mut w = lab::worker(Role::Lns, 2);
    let inner = lab::ipv4_udp(lab::subscriber_addr(1), lab::SERVER_ADDR, 63, 32);
    let expected = lab::ethernet(
        lab::GATEWAY_MAC,
        lab::CORE_MAC,
        None,
        EtherType::Ipv4,
        &inner,
    );
    case(
        "lns_upstream",
        &mut w,
        vec![(0, lab::lns_upstream(1, 32, Encoding::default()))],
        vec![(1, expected)],
    );
    let s = w
        .tables()
        .session(w.tables().session_index(lab::session_key(1)).unwrap())
        .unwrap();
    assert_eq!(
        (s.counters.upstream_packets, s.counters.upstream_octets),
        (1, 60)
    );
    assert_eq!(w.counters().forwards(PathKind::LnsUpstream), 1);
}

/// Ports that share a frame memory pass packets as they are; ports with
/// memories of their own copy them (port contract, rule 4). Both send the
/// same bytes both ways, leak no frame, and the shared pair's free lists
/// stay even however one-sided the traffic.
#[test]
fn shared_and_separate_port_memories_send_the_same_bytes() {
    let separate = lab::separate_ports();
    let mut apart = lab::worker_with(lab::config(Role::Lns, 4), 4, separate);
    let mut shared = lab::worker(Role::Lns, 4);
    assert_eq!(
        shared.ports_mut()[0].memory(),
        shared.ports_mut()[1].memory()
    );
    for round in 0..40 {
        let inputs: Vec<(u8, Vec<u8>)> = (0..32)
            .map(|n| {
                let i = (round + n) % 4;
                if round < 30 {
                    (0, lab::lns_upstream(i, 64, Encoding::default()))
                } else {
                    (1, lab::lns_downstream(i, 64))
                }
            })
            .collect();
        let from_shared = run(&mut shared, &inputs);
        assert_eq!(from_shared.len(), 32, "round {round}");
        assert_eq!(from_shared, run(&mut apart, &inputs), "round {round}");
    }
    for w in [&mut shared, &mut apart] {
        assert_eq!(w.counters().total_drops(), 0, "{:?}", w.counters());
        assert_eq!(w.ports_mut()[0].frames_in_use(), 0);
        assert_eq!(w.ports_mut()[1].frames_in_use(), 0);
    }
    // 960 frames went from the access port's list to the core port's;
    // balancing after each burst kept the two within its slack.
    let (a, c) = (
        shared.ports_mut()[0].free_frames(),
        shared.ports_mut()[1].free_frames(),
    );
    assert!(a.abs_diff(c) <= 2 * 64 + 32, "{a} and {c} free frames");
}

#[test]
fn lns_upstream_reads_every_optional_field_and_compressed_ppp() {
    let mut w = lab::worker(Role::Lns, 1);
    let enc = Encoding {
        length: true,
        ns: Some(0),
        offset: Some(3),
        priority: true,
        no_address_control: true,
        compressed_protocol: true,
    };
    let mut tagged = lab::lns_upstream(0, 32, Encoding::default());
    tagged = lab::ethernet(
        lab::ACCESS_MAC,
        lab::PEER_MAC,
        Some(42),
        EtherType::Ipv4,
        &tagged[14..],
    );
    // Ethernet padding after the IPv4 Total Length is not forwarded.
    let mut padded = lab::lns_upstream(0, 32, Encoding { ns: Some(1), ..enc });
    padded.extend_from_slice(&[0xee; 6]);
    let inner = lab::ipv4_udp(lab::subscriber_addr(0), lab::SERVER_ADDR, 63, 32);
    let expected = lab::ethernet(
        lab::GATEWAY_MAC,
        lab::CORE_MAC,
        None,
        EtherType::Ipv4,
        &inner,
    );
    case(
        "lns_upstream_options",
        &mut w,
        vec![(0, lab::lns_upstream(0, 32, enc)), (0, tagged), (0, padded)],
        vec![(1, expected.clone()), (1, expected.clone()), (1, expected)],
    );
}

#[test]
fn lns_downstream_encapsulates_into_the_session() {
    let mut w = lab::worker(Role::Lns, 2);
    let inner = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(1), 63, 32);
    let expected = to_peer(
        lab::ACCESS_MAC,
        lab::peer_key(1),
        0,
        None,
        &ppp_ipv4(&inner),
    );
    case(
        "lns_downstream",
        &mut w,
        vec![(1, lab::lns_downstream(1, 32))],
        vec![(0, expected)],
    );
    let s = w
        .tables()
        .session(w.tables().session_index(lab::session_key(1)).unwrap())
        .unwrap();
    assert_eq!(
        (s.counters.downstream_packets, s.counters.downstream_octets),
        (1, 60)
    );
}

#[test]
fn lns_downstream_numbers_data_messages_when_sequencing() {
    let mut w = lab::worker(Role::Lns, 1);
    apply(
        &mut w,
        &[Update::UpsertSession(SessionConfig {
            sequencing: true,
            ..lab::session(Role::Lns, 0)
        })],
    );
    let inner = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(0), 63, 16);
    let p = ppp_ipv4(&inner);
    case(
        "lns_downstream_sequenced",
        &mut w,
        vec![
            (1, lab::lns_downstream(0, 16)),
            (1, lab::lns_downstream(0, 16)),
        ],
        vec![
            (
                0,
                to_peer(lab::ACCESS_MAC, lab::peer_key(0), 0, Some(0), &p),
            ),
            (
                0,
                to_peer(lab::ACCESS_MAC, lab::peer_key(0), 1, Some(1), &p),
            ),
        ],
    );
}

/// A downstream packet of `payload_len` UDP bytes to session 0 with DF
/// clear and the fragment fields `more_frags`/`frag_offset` (bytes), as it
/// arrives from the core (TTL 64) or, with `ttl` 63, as it is forwarded.
fn downstream_without_df(
    ttl: u8,
    payload_len: usize,
    more_frags: bool,
    frag_offset: u16,
) -> Vec<u8> {
    let mut ip = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(0), ttl, payload_len);
    let flags_offset = (u16::from(more_frags) << 13) | (frag_offset / 8);
    ip[6..8].copy_from_slice(&flags_offset.to_be_bytes());
    ipv4::Packet::new_unchecked(&mut ip[..]).fill_checksum();
    ip
}

/// The fragment of `ip` (forwarded, TTL already 63) with data bytes
/// `data` (offsets in its data), written independently of the worker with
/// the IPv4 emitter.
fn fragment_of(ip: &[u8], data: std::ops::Range<usize>, more_frags: bool) -> Vec<u8> {
    let original = ipv4::Packet::new_checked(ip).unwrap();
    let repr = ipv4::Repr {
        src_addr: original.src_addr(),
        dst_addr: original.dst_addr(),
        protocol: original.protocol(),
        ttl: original.ttl(),
        dscp: 0,
        ecn: 0,
        ident: original.ident(),
        dont_frag: false,
        more_frags,
        frag_offset: original.frag_offset() + data.start as u16,
        payload_len: data.len(),
    };
    let mut f = vec![0u8; 20 + data.len()];
    repr.emit(&mut f).unwrap();
    f[20..].copy_from_slice(&original.payload()[data]);
    f
}

/// RFC 791 §3.2: 1478 bytes into an MRU of 1400 are 1396 (1376 data bytes:
/// (1400 - 20) rounded down to 8) and 102, each with its own Total Length,
/// offset, MF and checksum, each in its own data message.
#[test]
fn lns_downstream_fragments_packets_over_the_mru_without_df() {
    let mut w = lab::worker(Role::Lns, 1);
    let arriving = downstream_without_df(64, 1450, false, 0);
    let forwarded = downstream_without_df(63, 1450, false, 0);
    let first = fragment_of(&forwarded, 0..1376, true);
    let second = fragment_of(&forwarded, 1376..1458, false);
    assert_eq!((first.len(), second.len()), (1396, 102));
    let peer = lab::peer_key(0);
    case(
        "lns_downstream_fragments",
        &mut w,
        vec![(
            1,
            lab::ethernet(
                lab::CORE_MAC,
                lab::GATEWAY_MAC,
                None,
                EtherType::Ipv4,
                &arriving,
            ),
        )],
        vec![
            (
                0,
                to_peer(lab::ACCESS_MAC, peer, 0, None, &ppp_ipv4(&first)),
            ),
            (
                0,
                to_peer(lab::ACCESS_MAC, peer, 1, None, &ppp_ipv4(&second)),
            ),
        ],
    );
    let c = w.counters();
    assert_eq!(c.fragmented, 1);
    assert_eq!(c.forwards(PathKind::LnsDownstream), 2);
    let s = w
        .tables()
        .session(w.tables().session_index(lab::session_key(0)).unwrap())
        .unwrap();
    assert_eq!(
        (s.counters.downstream_packets, s.counters.downstream_octets),
        (2, 1396 + 102)
    );
    for port in w.ports_mut() {
        assert_eq!(port.frames_in_use(), 0, "a fragment's frame leaked");
    }
}

/// A fragment that is itself too long (MF set, offset 800) is cut again:
/// offsets 800 and 2176, both with MF, since more of the original follows.
#[test]
fn lns_downstream_refragments_a_fragment() {
    let mut w = lab::worker(Role::Lns, 1);
    let arriving = downstream_without_df(64, 1450, true, 800);
    let forwarded = downstream_without_df(63, 1450, true, 800);
    let first = fragment_of(&forwarded, 0..1376, true);
    let second = fragment_of(&forwarded, 1376..1458, true);
    let peer = lab::peer_key(0);
    case(
        "lns_downstream_refragments",
        &mut w,
        vec![(
            1,
            lab::ethernet(
                lab::CORE_MAC,
                lab::GATEWAY_MAC,
                None,
                EtherType::Ipv4,
                &arriving,
            ),
        )],
        vec![
            (
                0,
                to_peer(lab::ACCESS_MAC, peer, 0, None, &ppp_ipv4(&first)),
            ),
            (
                0,
                to_peer(lab::ACCESS_MAC, peer, 1, None, &ppp_ipv4(&second)),
            ),
        ],
    );
    let offsets: Vec<_> = [&first, &second]
        .iter()
        .map(|f| ipv4::Packet::new_checked(&f[..]).unwrap().frag_offset())
        .collect();
    assert_eq!(offsets, [800, 2176]);
}

/// With DF set the packet is not fragmented: dropped, and a copy punted
/// for ICMP Fragmentation Needed with the MRU (RFC 1191 §4).
#[test]
fn lns_downstream_punts_packets_over_the_mru_with_df() {
    let mut w = lab::worker(Role::Lns, 1);
    let channels = w.channels();
    let out = run(&mut w, &[(1, lab::lns_downstream(0, 1450))]);
    assert!(out.is_empty(), "sent {} frames", out.len());
    let punt = channels.poll_punt().unwrap();
    assert_eq!(
        punt.reason,
        PuntReason::FragmentationNeeded { mtu: lab::MRU }
    );
    let expected = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(0), 64, 1450);
    assert_eq!(
        punt.buffer.bytes()[..],
        expected[..],
        "the packet as it arrived"
    );
    let c = w.counters();
    assert_eq!(c.fragmented, 0);
    assert_eq!(c.drops(DropReason::FragmentationNeeded), 1);
}

/// An IPv4 TCP SYN with an MSS option and a correct checksum.
fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, mss: u16) -> Vec<u8> {
    let mut seg = vec![
        0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0, 0, 0, 0, 2, 4,
        0, 0,
    ];
    seg[22..24].copy_from_slice(&mss.to_be_bytes());
    let (s, d) = (src.octets(), dst.octets());
    let pseudo = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        6,
        seg.len() as u16,
    ];
    let mut parts = pseudo.to_vec();
    parts.push(checksum::sum(&seg));
    let check = !checksum::combine(&parts);
    seg[16..18].copy_from_slice(&check.to_be_bytes());
    let mut p = vec![0u8; 20 + seg.len()];
    ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ipv4::Protocol::Tcp,
        ttl,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: seg.len(),
    }
    .emit(&mut p)
    .unwrap();
    p[20..].copy_from_slice(&seg);
    p
}

#[test]
fn tcp_mss_is_clamped_to_the_session_mru_both_ways() {
    let mut w = lab::worker(Role::Lns, 1);
    let sub = lab::subscriber_addr(0);
    let clamped = lab::MRU - 40;
    let down_in = lab::ethernet(
        lab::CORE_MAC,
        lab::GATEWAY_MAC,
        None,
        EtherType::Ipv4,
        &tcp_syn(lab::SERVER_ADDR, sub, 64, 1460),
    );
    let down_out = to_peer(
        lab::ACCESS_MAC,
        lab::peer_key(0),
        0,
        None,
        &ppp_ipv4(&tcp_syn(lab::SERVER_ADDR, sub, 63, clamped)),
    );
    let up_in = lab::l2tp_frame(
        lab::peer(),
        lab::session_key(0),
        &ppp_ipv4(&tcp_syn(sub, lab::SERVER_ADDR, 64, 1460)),
        Encoding::default(),
    );
    let up_out = lab::ethernet(
        lab::GATEWAY_MAC,
        lab::CORE_MAC,
        None,
        EtherType::Ipv4,
        &tcp_syn(sub, lab::SERVER_ADDR, 63, clamped),
    );
    // Ports are polled in order: the access port's upstream frame first.
    case(
        "lns_mss_clamp",
        &mut w,
        vec![(1, down_in), (0, up_in)],
        vec![(0, down_out), (1, up_out)],
    );
}

#[test]
fn lns_punts_ppp_control_and_sends_injected_replies() {
    let mut w = lab::worker(Role::Lns, 1);
    let channels = w.channels();
    let lcp = lcp_echo_request();
    let out = run(
        &mut w,
        &[(
            0,
            lab::l2tp_frame(lab::peer(), lab::session_key(0), &lcp, Encoding::default()),
        )],
    );
    assert!(out.is_empty());
    let punt = channels.poll_punt().unwrap();
    assert_eq!(punt.reason, PuntReason::LnsPpp(lab::session_key(0)));
    assert_eq!(punt.buffer.bytes(), &lcp[..]);
    assert_eq!(punt.port, 0);
    assert_eq!(w.counters().punts(PuntKind::LnsPpp), 1);
    // The reply goes into the session's tunnel.
    let reply = lab::ppp_frame(
        ppp::Protocol::Lcp,
        &[10, 1, 0, 8, 5, 6, 7, 8],
        Encoding::default(),
    );
    let buffers = channels.pool_available();
    channels.recycle(punt.buffer);
    assert!(channels.inject(InjectTarget::LnsSession(lab::session_key(0)), &reply));
    w.poll();
    let out = drain(&mut w);
    assert_eq!(
        out,
        vec![(
            0,
            to_peer(lab::ACCESS_MAC, lab::peer_key(0), 0, None, &reply)
        )]
    );
    assert_eq!(w.counters().forwards(PathKind::Inject), 1);
    assert_eq!(
        channels.pool_available(),
        buffers + 1,
        "every buffer is back"
    );
}

#[test]
fn lns_punts_copies_for_icmp_and_arp() {
    let mut w = lab::worker(Role::Lns, 1);
    let channels = w.channels();
    let expired = lab::ipv4_udp(lab::subscriber_addr(0), lab::SERVER_ADDR, 1, 8);
    run(
        &mut w,
        &[(
            0,
            lab::l2tp_frame(
                lab::peer(),
                lab::session_key(0),
                &ppp_ipv4(&expired),
                Encoding::default(),
            ),
        )],
    );
    let punt = channels.poll_punt().unwrap();
    assert_eq!(punt.reason, PuntReason::TimeExceeded);
    assert_eq!(punt.buffer.bytes(), &expired[..]);
    apply(&mut w, &[Update::RemoveNeighbour(lab::GATEWAY_ADDR)]);
    run(&mut w, &[(0, lab::lns_upstream(0, 8, Encoding::default()))]);
    let punt = channels.poll_punt().unwrap();
    assert_eq!(
        punt.reason,
        PuntReason::NeighbourMissing {
            next_hop: lab::GATEWAY_ADDR
        }
    );
    run(&mut w, &[(1, lab::lns_downstream(0, 1450))]);
    let punt = channels.poll_punt().unwrap();
    assert_eq!(
        punt.reason,
        PuntReason::FragmentationNeeded { mtu: lab::MRU }
    );
    assert_eq!(punt.buffer.bytes().len(), 1478);
}

/// An ARP packet (RFC 826) from the gateway on the core side, padded to
/// the 60-byte Ethernet minimum as a NIC receives it.
fn arp_from_gateway(repr: arp::Repr, vlan: Option<u16>) -> Vec<u8> {
    let mut p = vec![0u8; repr.buffer_len()];
    repr.emit(&mut p).unwrap();
    let mut f = lab::ethernet(repr_dst(repr), lab::GATEWAY_MAC, vlan, EtherType::Arp, &p);
    f.resize(f.len().max(60), 0);
    f
}

/// Requests are broadcast, replies to their target.
fn repr_dst(repr: arp::Repr) -> ethernet::Address {
    match repr.operation {
        arp::Operation::Request => ethernet::Address::BROADCAST,
        _ => repr.target_hardware_addr,
    }
}

fn who_has(target: Ipv4Addr) -> arp::Repr {
    arp::Repr {
        operation: arp::Operation::Request,
        source_hardware_addr: lab::GATEWAY_MAC,
        source_protocol_addr: lab::GATEWAY_ADDR,
        target_hardware_addr: ethernet::Address([0; 6]),
        target_protocol_addr: target,
    }
}

/// Proxy ARP on the LNS core side: a request for a subscriber address of
/// a session is answered by the worker with the core port's MAC, on that
/// port, tags kept; every other ARP goes to the control plane as before.
#[test]
fn lns_answers_arp_for_its_subscribers_and_punts_the_rest() {
    let mut w = lab::worker(Role::Lns, 1);
    let channels = w.channels();
    let subscriber = lab::subscriber_addr(0);
    let is_at = |vlan| {
        let reply = arp::Repr {
            operation: arp::Operation::Reply,
            source_hardware_addr: lab::CORE_MAC,
            source_protocol_addr: subscriber,
            target_hardware_addr: lab::GATEWAY_MAC,
            target_protocol_addr: lab::GATEWAY_ADDR,
        };
        let mut f = arp_from_gateway(reply, vlan);
        f[6..12].copy_from_slice(&lab::CORE_MAC.0);
        f
    };
    case(
        "lns_proxy_arp",
        &mut w,
        vec![
            (1, arp_from_gateway(who_has(subscriber), None)),
            (1, arp_from_gateway(who_has(subscriber), Some(10))),
        ],
        vec![(1, is_at(None)), (1, is_at(Some(10)))],
    );
    assert_eq!(w.counters().arp_replies, 2);
    assert_eq!(w.counters().transmitted, 2);
    assert!(channels.poll_punt().is_none());

    let announcement = arp::Repr::gratuitous(lab::GATEWAY_MAC, subscriber);
    let not_asked = [
        ("no session has it", who_has(lab::subscriber_addr(1))),
        ("our own address", who_has(lab::LOCAL_ADDR)),
        ("an announcement", announcement),
        (
            "a reply",
            arp::Repr {
                operation: arp::Operation::Reply,
                target_hardware_addr: lab::CORE_MAC,
                ..who_has(subscriber)
            },
        ),
    ];
    for (what, repr) in not_asked {
        let frame = arp_from_gateway(repr, None);
        assert!(run(&mut w, &[(1, frame.clone())]).is_empty(), "{what}");
        let punt = channels.poll_punt().unwrap();
        assert_eq!(punt.reason, PuntReason::Local, "{what}");
        assert_eq!(punt.buffer.bytes(), &frame[..], "{what}");
        channels.recycle(punt.buffer);
    }
    // Not even parsed as ARP: to the control plane too.
    let short = lab::ethernet(
        ethernet::Address::BROADCAST,
        lab::GATEWAY_MAC,
        None,
        EtherType::Arp,
        &[0, 1, 8, 0, 6, 4],
    );
    assert!(run(&mut w, &[(1, short)]).is_empty());
    assert_eq!(channels.poll_punt().unwrap().reason, PuntReason::Local);
    assert_eq!(w.counters().arp_replies, 2);
    assert_eq!(w.counters().punts(PuntKind::Local), 5);
    assert_eq!(w.counters().total_drops(), 0);
    // The LAC leaves ARP to the control plane.
    let mut lac = lab::worker(Role::Lac, 1);
    assert!(run(
        &mut lac,
        &[(1, arp_from_gateway(who_has(subscriber), None))]
    )
    .is_empty());
    assert_eq!(lac.counters().punts(PuntKind::Local), 1);
    assert_eq!(lac.counters().arp_replies, 0);
}

fn lac_to_subscriber(i: usize, ppp: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 6 + ppp.len()];
    pppoe::Repr {
        code: pppoe::Code::Session,
        session_id: lab::pppoe_session_id(i),
        payload_len: ppp.len(),
    }
    .emit(&mut p)
    .unwrap();
    p[6..].copy_from_slice(ppp);
    lab::ethernet(
        lab::subscriber_mac(i),
        lab::ACCESS_MAC,
        None,
        EtherType::PppoeSession,
        &p,
    )
}

#[test]
fn lac_relays_pppoe_and_l2tp_both_ways() {
    let mut w = lab::worker(Role::Lac, 3);
    let up_ip = lab::ipv4_udp(lab::subscriber_addr(2), lab::SERVER_ADDR, 64, 32);
    let down_ip = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(2), 64, 32);
    let no_ac = Encoding {
        no_address_control: true,
        ..Encoding::default()
    };
    case(
        "lac_relay",
        &mut w,
        vec![
            (0, lab::lac_upstream(2, 32)),
            (1, lab::lac_downstream(2, 32)),
        ],
        vec![
            (
                0,
                lac_to_subscriber(2, &lab::ppp_frame(ppp::Protocol::Ipv4, &down_ip, no_ac)),
            ),
            (
                1,
                to_peer(lab::CORE_MAC, lab::peer_key(2), 0, None, &ppp_ipv4(&up_ip)),
            ),
        ],
    );
    let s = w
        .tables()
        .session(w.tables().session_index(lab::session_key(2)).unwrap())
        .unwrap();
    assert_eq!(s.counters.upstream_packets, 1);
    assert_eq!(s.counters.downstream_packets, 1);
}

#[test]
fn lac_holds_a_session_and_flushes_in_order_into_the_new_tunnel() {
    let mut w = lab::worker(Role::Lac, 1);
    let channels = w.channels();
    let key = lab::session_key(0);
    apply(&mut w, &[Update::SetHolding { key, holding: true }]);
    let inputs: Frames = (0..3).map(|n| (0, lab::lac_upstream(0, 10 + n))).collect();
    assert!(run(&mut w, &inputs).is_empty());
    assert_eq!(w.counters().held, 3);
    // The session moves to tunnel 9 (session 77), then is flushed.
    let moved = SessionConfig {
        key: SessionKey {
            tunnel_id: 9,
            session_id: 77,
        },
        peer_session_id: 770,
        ..lab::session(Role::Lac, 0)
    };
    let new_tunnel = dataplane::table::Tunnel {
        tunnel_id: 9,
        peer_tunnel_id: 900,
        local: SocketAddrV4::new(lab::LOCAL_ADDR, l2tp::UDP_PORT),
        peer: lab::peer(),
        next_hop: lab::PEER_ADDR,
    };
    apply(
        &mut w,
        &[
            Update::UpsertTunnel(new_tunnel),
            Update::UpsertSession(moved),
            Update::SetHolding {
                key: moved.key,
                holding: false,
            },
            Update::Barrier(5),
        ],
    );
    let out = drain(&mut w);
    let expected: Frames = (0..3)
        .map(|n| {
            let ip = lab::ipv4_udp(lab::subscriber_addr(0), lab::SERVER_ADDR, 64, 10 + n);
            let peer = SessionKey {
                tunnel_id: 900,
                session_id: 770,
            };
            (
                1,
                to_peer(lab::CORE_MAC, peer, n as u16, None, &ppp_ipv4(&ip)),
            )
        })
        .collect();
    assert_eq!(out, expected);
    assert_eq!(w.counters().flushed, 3);
    assert!(matches!(
        channels.poll_event(),
        Some(Event::Barrier { token: 5, .. })
    ));
    golden(
        "lac_hold_flush.out",
        &out.into_iter().map(|f| f.1).collect::<Vec<_>>(),
    );
    assert_eq!(w.ports_mut()[0].frames_in_use(), 0, "no frame leaked");
}

/// An L2TP data message from the LNS at `from` on session `key` to LAC
/// subscriber `i`, `n` bytes of UDP, numbered `ns`.
fn lns_to_lac(from: SocketAddrV4, key: SessionKey, i: usize, n: usize, ns: u16) -> Vec<u8> {
    let ip = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(i), 64, n);
    let enc = Encoding {
        ns: Some(ns),
        ..Encoding::default()
    };
    let mut f = lab::l2tp_frame(from, key, &ppp_ipv4(&ip), enc);
    f[..6].copy_from_slice(&lab::CORE_MAC.0);
    f
}

/// Make-before-break on the LAC (DESIGN.md §3): the session moved to a
/// new LNS (tunnel 9, session 77) while the old LNS still sends on the
/// old ids, now an alias. Both reach the subscriber, each L2TP session
/// with its own sequence numbers; removing the alias, the old tunnel or
/// the session ends what each should.
#[test]
fn lac_delivers_downstream_of_an_aliased_session() {
    let mut w = lab::worker(Role::Lac, 1);
    let channels = w.channels();
    let old = lab::session_key(0);
    let new_lns = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 3), l2tp::UDP_PORT);
    let moved = SessionConfig {
        key: SessionKey {
            tunnel_id: 9,
            session_id: 77,
        },
        peer_session_id: 770,
        ..lab::session(Role::Lac, 0)
    };
    let new_tunnel = dataplane::table::Tunnel {
        tunnel_id: 9,
        peer_tunnel_id: 900,
        local: SocketAddrV4::new(lab::LOCAL_ADDR, l2tp::UDP_PORT),
        peer: new_lns,
        next_hop: *new_lns.ip(),
    };
    apply(
        &mut w,
        &[
            Update::UpsertTunnel(new_tunnel),
            Update::UpsertSession(moved),
            Update::AliasSession {
                alias: old,
                target: moved.key,
            },
        ],
    );
    if let Some(event) = channels.poll_event() {
        panic!("refused: {event:?}");
    }
    assert_eq!(w.tables().session_count(), 1);
    let index = w.tables().session_index(moved.key).unwrap();
    assert_eq!(w.tables().alias_target(old), Some(index));
    assert_eq!(
        w.tables().session_index(old),
        None,
        "an alias is no session"
    );
    // Interleaved: a shared Ns would drop the new LNS's (0 is behind 101).
    let inputs: Frames = vec![
        (1, lns_to_lac(lab::peer(), old, 0, 20, 100)),
        (1, lns_to_lac(new_lns, moved.key, 0, 21, 0)),
        (1, lns_to_lac(lab::peer(), old, 0, 22, 101)),
        (1, lns_to_lac(new_lns, moved.key, 0, 23, 1)),
    ];
    let no_ac = Encoding {
        no_address_control: true,
        ..Encoding::default()
    };
    let expected: Frames = (20..24)
        .map(|n| {
            let ip = lab::ipv4_udp(lab::SERVER_ADDR, lab::subscriber_addr(0), 64, n);
            (
                0,
                lac_to_subscriber(0, &lab::ppp_frame(ppp::Protocol::Ipv4, &ip, no_ac)),
            )
        })
        .collect();
    case("lac_alias_downstream", &mut w, inputs, expected);
    let s = w.tables().session(index).unwrap();
    assert_eq!(s.counters.downstream_packets, 4);
    // The control plane's frames reach the subscriber by either ids.
    let echo = lab::ppp_frame(ppp::Protocol::Lcp, &[9, 1, 0, 8, 1, 2, 3, 4], no_ac);
    for key in [moved.key, old] {
        assert!(channels.inject(InjectTarget::LacSubscriber(key), &echo));
        assert_eq!(run(&mut w, &[]), vec![(0, lac_to_subscriber(0, &echo))]);
    }
    // The old LNS's Ns run is its own: an old one is still out of order.
    run(&mut w, &[(1, lns_to_lac(lab::peer(), old, 0, 8, 100))]);
    assert_eq!(w.counters().drops(DropReason::SequenceOutOfOrder), 1);

    // Released by the old LNS: only the alias goes.
    apply(&mut w, &[Update::RemoveSession(old)]);
    assert_eq!(w.tables().alias_target(old), None);
    assert_eq!(w.tables().session_index(moved.key), Some(index));
    assert!(run(&mut w, &[(1, lns_to_lac(lab::peer(), old, 0, 8, 102))]).is_empty());
    assert_eq!(w.counters().drops(DropReason::UnknownSession), 1);
    assert_eq!(
        run(&mut w, &[(1, lns_to_lac(new_lns, moved.key, 0, 8, 2))]).len(),
        1
    );

    // The old tunnel goes: its alias with it, the moved session stays.
    apply(
        &mut w,
        &[
            Update::AliasSession {
                alias: old,
                target: moved.key,
            },
            Update::RemoveTunnel(old.tunnel_id),
        ],
    );
    assert_eq!(w.tables().alias_target(old), None);
    assert_eq!(w.tables().session_index(moved.key), Some(index));
    assert_eq!(
        run(&mut w, &[(1, lns_to_lac(new_lns, moved.key, 0, 8, 3))]).len(),
        1
    );

    // The session goes: its alias with it.
    apply(
        &mut w,
        &[
            Update::UpsertTunnel(dataplane::table::Tunnel {
                tunnel_id: old.tunnel_id,
                peer_tunnel_id: 101,
                local: SocketAddrV4::new(lab::LOCAL_ADDR, l2tp::UDP_PORT),
                peer: lab::peer(),
                next_hop: lab::PEER_ADDR,
            }),
            Update::AliasSession {
                alias: old,
                target: moved.key,
            },
            Update::RemoveSession(moved.key),
        ],
    );
    assert_eq!(w.tables().alias_target(old), None);
    assert_eq!(w.tables().session_count(), 0);
    assert!(run(&mut w, &[(1, lns_to_lac(lab::peer(), old, 0, 8, 103))]).is_empty());
    assert_eq!(w.counters().drops(DropReason::UnknownSession), 2);
    // An alias needs a session to point at, and may not be one.
    apply(
        &mut w,
        &[Update::AliasSession {
            alias: old,
            target: moved.key,
        }],
    );
    assert!(matches!(channels.poll_event(), Some(Event::Refused { .. })));
    assert_eq!(w.ports_mut()[1].frames_in_use(), 0, "no frame leaked");
}

#[test]
fn lac_punts_ppp_control_of_sessions_it_does_not_relay() {
    let mut w = lab::worker(Role::Lac, 1);
    let lcp = lab::ppp_frame(
        ppp::Protocol::Lcp,
        &[1, 1, 0, 4],
        Encoding {
            no_address_control: true,
            ..Encoding::default()
        },
    );
    assert!(run(&mut w, &[(0, lab::pppoe_frame(5, &lcp))]).is_empty());
    let punt = w.channels().poll_punt().unwrap();
    assert_eq!(
        punt.reason,
        PuntReason::LacPpp {
            subscriber_mac: lab::subscriber_mac(5),
            pppoe_session_id: lab::pppoe_session_id(5)
        }
    );
    assert_eq!(punt.buffer.bytes(), &lcp[..]);
}

#[test]
fn reports_and_session_counters_come_back_through_events() {
    let mut w = lab::worker(Role::Lns, 1);
    let channels = w.channels();
    run(&mut w, &[(0, lab::lns_upstream(0, 8, Encoding::default()))]);
    apply(
        &mut w,
        &[
            Update::Report(1),
            Update::QuerySession {
                key: lab::session_key(0),
                token: 2,
            },
        ],
    );
    let Some(Event::Report(report)) = channels.poll_event() else {
        panic!("a report")
    };
    assert_eq!(
        (report.token, report.sessions, report.counters.received),
        (1, 1, 1)
    );
    let Some(Event::SessionCounters {
        token: 2,
        counters: Some(c),
        ..
    }) = channels.poll_event()
    else {
        panic!("session counters")
    };
    assert_eq!(c.upstream_packets, 1);
}

/// The burst latency is sampled every `latency_sample_interval` busy polls,
/// idle polls between them not counting (the clock is read only for
/// those polls).
#[test]
fn burst_latency_is_sampled_every_interval_of_busy_polls() {
    let mut config = lab::config(Role::Lns, 1);
    config.latency_sample_interval = 4;
    let mut w = lab::worker_with(config, 1, lab::ports());
    let channels = w.channels();
    for busy in 1..=10 {
        assert!(w.ports_mut()[0].push_rx(&lab::lns_upstream(0, 8, Encoding::default())));
        assert_eq!(w.poll(), 1);
        for _ in 0..busy % 3 {
            assert_eq!(w.poll(), 0, "idle");
        }
        drain(&mut w);
    }
    apply(&mut w, &[Update::Report(7)]);
    let Some(Event::Report(report)) = channels.poll_event() else {
        panic!("a report")
    };
    // Busy polls 4 and 8 of 10.
    assert_eq!(report.latency_ns.len(), 2, "{:?}", report.latency_ns);
    assert!(report.latency_ns.min() >= 1);
}

/// The worker and input that make `reason` happen once. The match is
/// exhaustive, so a new drop reason cannot go without a case.
fn drop_case(reason: DropReason) -> (Worker<MemoryPort>, Frames) {
    use DropReason::*;
    let lns = || lab::worker(Role::Lns, 1);
    let lac = || lab::worker(Role::Lac, 1);
    let up = |enc| lab::lns_upstream(0, 16, enc);
    let plain = Encoding::default();
    let l2tp_with_ppp = |ppp: &[u8]| lab::l2tp_frame(lab::peer(), lab::session_key(0), ppp, plain);
    let refill_ipv4 = |f: &mut Vec<u8>, at: usize| {
        ipv4::Packet::new_unchecked(&mut f[at..]).fill_checksum();
    };
    let with_config = |role, change: &dyn Fn(&mut WorkerConfig)| {
        let mut c = lab::config(role, 1);
        change(&mut c);
        lab::worker_with(c, 1, lab::separate_ports())
    };
    match reason {
        UnexpectedEthertype => {
            let f = lab::ethernet(
                lab::ACCESS_MAC,
                lab::PEER_MAC,
                None,
                EtherType::Unknown(0x86dd),
                &[0; 40],
            );
            (lns(), vec![(0, f)])
        }
        MalformedEthernet => (lns(), vec![(0, vec![0; 10])]),
        MalformedIpv4 => {
            let mut f = lab::lns_downstream(0, 16);
            f[16..18].copy_from_slice(&9999u16.to_be_bytes());
            (lns(), vec![(1, f)])
        }
        Ipv4Checksum => {
            let mut f = up(plain);
            f[24] ^= 0xff;
            (lns(), vec![(0, f)])
        }
        OuterFragment => {
            let mut f = up(plain);
            f[20] |= 0x20; // MF
            refill_ipv4(&mut f, 14);
            (lns(), vec![(0, f)])
        }
        MalformedUdp => {
            let mut f = up(plain);
            f[38..40].copy_from_slice(&0xffffu16.to_be_bytes());
            (lns(), vec![(0, f)])
        }
        UdpChecksum => {
            let mut f = up(plain);
            f[40..42].copy_from_slice(&0x1234u16.to_be_bytes());
            (
                with_config(Role::Lns, &|c| c.verify_udp_checksum = true),
                vec![(0, f)],
            )
        }
        MalformedL2tp => {
            let mut f = up(plain);
            f[43] = 0x03; // Ver 3
            (lns(), vec![(0, f)])
        }
        UnknownTunnel => {
            let key = SessionKey {
                tunnel_id: 999,
                session_id: 1,
            };
            (
                lns(),
                vec![(
                    0,
                    lab::l2tp_frame(lab::peer(), key, &[0xff, 0x03, 0xc0, 0x21], plain),
                )],
            )
        }
        TunnelAddressMismatch => {
            let from = SocketAddrV4::new(lab::PEER_ADDR, lab::PEER_PORT + 1);
            (
                lns(),
                vec![(
                    0,
                    lab::l2tp_frame(from, lab::session_key(0), &[0xff, 0x03, 0xc0, 0x21], plain),
                )],
            )
        }
        UnknownSession => {
            let key = SessionKey {
                tunnel_id: 1,
                session_id: 999,
            };
            (
                lns(),
                vec![(
                    0,
                    lab::l2tp_frame(lab::peer(), key, &[0xff, 0x03, 0xc0, 0x21], plain),
                )],
            )
        }
        SequenceMissing => {
            let mut w = lns();
            let c = SessionConfig {
                sequencing: true,
                ..lab::session(Role::Lns, 0)
            };
            apply(&mut w, &[Update::UpsertSession(c)]);
            (w, vec![(0, up(plain))])
        }
        SequenceOutOfOrder => {
            let at = |ns| Encoding {
                ns: Some(ns),
                ..plain
            };
            (lns(), vec![(0, up(at(5))), (0, up(at(3)))])
        }
        MalformedPpp => (lns(), vec![(0, l2tp_with_ppp(&[0xff, 0x03, 0x00, 0x20]))]),
        Ipv6NotForwarded => (
            lns(),
            vec![(0, l2tp_with_ppp(&[0xff, 0x03, 0x00, 0x57, 0x60, 0, 0, 0]))],
        ),
        MalformedInnerIpv4 => (
            lns(),
            vec![(0, l2tp_with_ppp(&[0xff, 0x03, 0x00, 0x21, 0x45, 0, 0]))],
        ),
        SpoofedSource => {
            let ip = lab::ipv4_udp(Ipv4Addr::new(10, 9, 9, 9), lab::SERVER_ADDR, 64, 8);
            (lns(), vec![(0, l2tp_with_ppp(&ppp_ipv4(&ip)))])
        }
        TtlExpired => {
            let ip = lab::ipv4_udp(lab::subscriber_addr(0), lab::SERVER_ADDR, 1, 8);
            (lns(), vec![(0, l2tp_with_ppp(&ppp_ipv4(&ip)))])
        }
        NoNeighbour => {
            let mut w = lns();
            apply(&mut w, &[Update::RemoveNeighbour(lab::GATEWAY_ADDR)]);
            (w, vec![(0, up(plain))])
        }
        NotForUs => (lac(), vec![(1, lab::lns_downstream(0, 16))]),
        NoSessionForDestination => (lns(), vec![(1, lab::lns_downstream(5, 16))]),
        FragmentationNeeded => (lns(), vec![(1, lab::lns_downstream(0, 1450))]),
        FragmentationUnsupported => {
            // DF clear, but an MRU of 24 leaves no room for 8 data bytes
            // after a 20-byte header (RFC 791 §3.2).
            let mut w = lns();
            apply(
                &mut w,
                &[Update::UpsertSession(SessionConfig {
                    mru: 24,
                    ..lab::session(Role::Lns, 0)
                })],
            );
            let mut f = lab::lns_downstream(0, 16);
            f[20] &= !0x40; // DF
            refill_ipv4(&mut f, 14);
            (w, vec![(1, f)])
        }
        NoHeadroom => {
            let core = MemoryPort::new(MemoryPortConfig {
                headroom: 0,
                ..MemoryPortConfig::new(lab::CORE_MAC)
            });
            let w = lab::worker_with(
                lab::config(Role::Lns, 1),
                1,
                [lab::port(lab::ACCESS_MAC), core],
            );
            (w, vec![(1, lab::lns_downstream(0, 16))])
        }
        NoFrame => {
            // Ports with memories of their own copy what crosses them,
            // into a frame the core port has no more of.
            let mut w = lab::worker_with(lab::config(Role::Lns, 1), 1, lab::separate_ports());
            while w.ports_mut()[1].alloc().is_some() {}
            (w, vec![(0, up(plain))])
        }
        TxRingFull => {
            let core = MemoryPort::new(MemoryPortConfig {
                tx_ring: 1,
                ..MemoryPortConfig::new(lab::CORE_MAC)
            });
            let w = lab::worker_with(
                lab::config(Role::Lns, 1),
                1,
                [lab::port(lab::ACCESS_MAC), core],
            );
            (w, vec![(0, up(plain)), (0, up(plain))])
        }
        PuntPoolEmpty => {
            let w = with_config(Role::Lns, &|c| {
                c.channels = ChannelSizes {
                    buffers: 1,
                    ..ChannelSizes::default()
                }
            });
            (
                w,
                vec![
                    (0, l2tp_with_ppp(&lcp_echo_request())),
                    (0, l2tp_with_ppp(&lcp_echo_request())),
                ],
            )
        }
        PuntQueueFull => {
            let w = with_config(Role::Lns, &|c| {
                c.channels = ChannelSizes {
                    punts: 1,
                    ..ChannelSizes::default()
                }
            });
            (
                w,
                vec![
                    (0, l2tp_with_ppp(&lcp_echo_request())),
                    (0, l2tp_with_ppp(&lcp_echo_request())),
                ],
            )
        }
        MalformedPppoe => {
            let mut f = lab::lac_upstream(0, 16);
            f[15] = 0x09; // PADI code in a session frame
            (lac(), vec![(0, f)])
        }
        UnknownPppoeSession => (lac(), vec![(0, lab::lac_upstream(5, 16))]),
        HoldingOverflow => {
            let mut w = with_config(Role::Lac, &|c| c.hold_depth = 1);
            let key = lab::session_key(0);
            apply(&mut w, &[Update::SetHolding { key, holding: true }]);
            (
                w,
                vec![(0, lab::lac_upstream(0, 16)), (0, lab::lac_upstream(0, 16))],
            )
        }
        HoldingNoRing => {
            let mut w = with_config(Role::Lac, &|c| c.hold_rings = 0);
            let key = lab::session_key(0);
            apply(&mut w, &[Update::SetHolding { key, holding: true }]);
            (w, vec![(0, lab::lac_upstream(0, 16))])
        }
        SessionWithoutTunnel => {
            let mut w = with_config(Role::Lns, &|c| c.max_sessions = 2);
            let orphan = SessionConfig {
                key: SessionKey {
                    tunnel_id: 7,
                    session_id: 1,
                },
                subscriber_addr: Some(Ipv4Addr::new(100, 64, 9, 9)),
                ..lab::session(Role::Lns, 0)
            };
            apply(&mut w, &[Update::UpsertSession(orphan)]);
            let ip = lab::ipv4_udp(lab::SERVER_ADDR, Ipv4Addr::new(100, 64, 9, 9), 64, 8);
            (
                w,
                vec![(
                    1,
                    lab::ethernet(lab::CORE_MAC, lab::GATEWAY_MAC, None, EtherType::Ipv4, &ip),
                )],
            )
        }
        InjectInvalid => {
            let w = lns();
            let key = SessionKey {
                tunnel_id: 1,
                session_id: 999,
            };
            assert!(w
                .channels()
                .inject(InjectTarget::LnsSession(key), &lcp_echo_request()));
            (w, vec![])
        }
        // Every header is written into room checked just before: this one
        // counts only if that reasoning breaks.
        EncapsulationFailed => (lns(), vec![]),
    }
}

#[test]
fn every_drop_reason_is_counted_once_and_sends_nothing() {
    let mut inputs = Vec::new();
    for &reason in DropReason::ALL {
        let (mut w, frames) = drop_case(reason);
        let out = run(&mut w, &frames);
        w.poll();
        let expected = u64::from(reason != DropReason::EncapsulationFailed);
        let c = w.counters();
        assert_eq!(c.drops(reason), expected, "{}: {c:?}", reason.name());
        assert_eq!(
            c.total_drops(),
            expected,
            "{}: only this reason: {c:?}",
            reason.name()
        );
        // Only the in-order first packet of the out-of-order case gets out.
        let forwarded = usize::from(
            reason == DropReason::SequenceOutOfOrder || reason == DropReason::TxRingFull,
        );
        assert_eq!(out.len(), forwarded, "{}", reason.name());
        inputs.extend(frames.into_iter().map(|f| f.1));
    }
    golden("drops.in", &inputs);
}

//! Per-packet cost of the wire codecs (criterion), on the work the fast path
//! does per packet (DESIGN.md §2.1):
//!
//! * LNS upstream: Ethernet/IPv4/UDP/L2TP data/PPP/IPv4 parsed down to the
//!   inner IPv4 header (with and without the outer UDP checksum);
//! * LNS downstream: Ethernet+IPv4+UDP+L2TP+PPP prepended in front of an
//!   IPv4 packet, in the headroom of its buffer;
//! * LAC relay: PPPoE session ↔ L2TP data message, in place, both ways;
//! * control plane: parsing and emitting a typical ICRQ, and an SCCRQ with
//!   a hidden AVP (RFC 2661 §4.3, an MD5 per hidden AVP).
//!
//! Every benchmark runs bursts of 32 and 64 packets per iteration (the
//! fast path's run-to-completion unit) and reports
//! `Throughput::Elements`, so criterion prints packets per second; the time
//! per packet is the iteration time divided by the burst.
//!
//! Run: `cargo bench -p bench --bench wire`. Nothing here asserts a time.

// Fixture set-up unwraps: a fixture that cannot be built is a bug in this
// file, and the panic is its report. The timed code returns every failure
// as a value, as the fast path does.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use dataplane::wire::control::{Avp, AvpEntry, Context, ControlMessage, MessageType, HA_VENDOR_ID};
use dataplane::wire::ethernet::{self, EtherType};
use dataplane::wire::{ipv4, l2tp, ppp, pppoe, udp, Error, Result};

const BURSTS: [usize; 2] = [32, 64];

/// Room in front of a received frame for the headers the fast path
/// prepends (AF_XDP UMEM frames are given headroom for this).
const HEADROOM: usize = 128;

/// Bytes of subscriber payload after the inner IPv4 and UDP headers: a
/// small packet, where the per-packet work dominates.
const SUBSCRIBER_DATA: usize = 26;

const LAC_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0, 0x01]);
const LNS_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0, 0x02]);
const CPE_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0, 0x10]);
const LAC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LNS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SUBSCRIBER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

const SECRET: &[u8] = b"lab-tunnel-secret";
const CTX: Context<'static> = Context {
    secret: Some(SECRET),
    ha_vendor_id: HA_VENDOR_ID,
};

/// The L2TP ids of session `i` of the burst (so that the burst is not one
/// packet repeated).
fn session_ids(i: usize) -> (u16, u16) {
    (0x1234, 0x0100 + i as u16)
}

// ---------------------------------------------------------------------------
// The per-packet work, as the fast path would do it: no allocation, every
// failure a value (the fast path turns it into a counted drop).

/// What the LNS needs from an upstream frame to forward the inner packet.
#[derive(Debug, Clone, Copy)]
struct Upstream {
    tunnel_id: u16,
    session_id: u16,
    /// Where the inner IPv4 packet starts in the frame.
    inner_at: usize,
    inner_dst: Ipv4Addr,
}

/// Ethernet/IPv4/UDP/L2TP data/PPP/IPv4 down to the inner IPv4 header.
#[inline]
fn parse_lns_upstream(frame: &[u8], verify_udp_checksum: bool) -> Result<Upstream> {
    let eth = ethernet::Frame::new_checked(frame)?;
    if eth.ethertype() != EtherType::Ipv4 {
        return Err(Error::Unsupported);
    }
    let ip = ipv4::Packet::new_checked(eth.payload())?;
    if !ip.verify_checksum() || ip.protocol() != ipv4::Protocol::Udp || ip.is_fragment() {
        return Err(Error::Unsupported);
    }
    let udp = udp::Packet::new_checked(ip.payload())?;
    if udp.dst_port() != l2tp::UDP_PORT
        || (verify_udp_checksum && !udp.verify_checksum(ip.src_addr(), ip.dst_addr()))
    {
        return Err(Error::Unsupported);
    }
    let l2tp = l2tp::Packet::new_checked(udp.payload())?;
    if l2tp.is_control() {
        return Err(Error::Unsupported);
    }
    let ppp = ppp::Packet::new_checked(l2tp.payload())?;
    if ppp.protocol() != ppp::Protocol::Ipv4 {
        return Err(Error::Unsupported);
    }
    let inner = ipv4::Packet::new_checked(ppp.payload())?;
    Ok(Upstream {
        tunnel_id: l2tp.tunnel_id(),
        session_id: l2tp.session_id(),
        inner_at: frame.len() - ppp.payload().len(),
        inner_dst: inner.dst_addr(),
    })
}

/// The outer headers of an L2TP data message from `src` to `dst`, for a
/// PPP frame of `ppp_len` bytes: Ethernet, IPv4, UDP (checksum 0, which
/// RFC 768 allows over IPv4) and the plain data header.
#[inline]
fn emit_l2tp_encap(
    buf: &mut [u8],
    at: usize,
    (tunnel_id, session_id): (u16, u16),
    ppp_len: usize,
    (src_mac, dst_mac): (ethernet::Address, ethernet::Address),
    (src_ip, dst_ip): (Ipv4Addr, Ipv4Addr),
) -> Result<usize> {
    let l2tp = l2tp::HeaderRepr::data(tunnel_id, session_id);
    let udp = udp::Repr {
        src_port: l2tp::UDP_PORT,
        dst_port: l2tp::UDP_PORT,
        payload_len: l2tp.buffer_len() + ppp_len,
    };
    let ip = ipv4::Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp.total_len(),
    };
    let eth = ethernet::Repr {
        dst_addr: dst_mac,
        src_addr: src_mac,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::Ipv4,
    };
    let len = eth.buffer_len() + ip.buffer_len() + udp.buffer_len() + l2tp.buffer_len();
    let start = at.checked_sub(len).ok_or(Error::BufferTooSmall)?;
    let buf = buf.get_mut(start..at).ok_or(Error::BufferTooSmall)?;
    let mut o = eth.emit(buf)?;
    o += ip.emit(&mut buf[o..])?;
    o += udp.emit(&mut buf[o..])?;
    l2tp.emit(&mut buf[o..], ppp_len)?;
    Ok(start)
}

/// LNS downstream: prepend Ethernet+IPv4+UDP+L2TP+PPP in front of the IPv4
/// packet at `buf[at..]`; returns where the frame starts.
#[inline]
fn emit_lns_downstream(buf: &mut [u8], at: usize, session: (u16, u16)) -> Result<usize> {
    let ppp = ppp::Repr::uncompressed(ppp::Protocol::Ipv4);
    let ppp_at = at
        .checked_sub(ppp.buffer_len())
        .ok_or(Error::BufferTooSmall)?;
    ppp.emit(&mut buf[ppp_at..])?;
    let ppp_len = buf.len() - ppp_at;
    emit_l2tp_encap(
        buf,
        ppp_at,
        session,
        ppp_len,
        (LNS_MAC, LAC_MAC),
        (LNS_IP, LAC_IP),
    )
}

/// LAC upstream: a PPPoE session frame at `buf[at..]` becomes an L2TP data
/// message in place. PPPoE carries PPP without Address/Control (RFC 2516
/// §7); toward the LNS it goes with them, as L2TP LACs send it. Returns
/// where the new frame starts.
#[inline]
fn relay_pppoe_to_l2tp(buf: &mut [u8], at: usize) -> Result<usize> {
    let (session_id, ppp_at, ppp_len) = {
        let eth = ethernet::Frame::new_checked(&buf[at..])?;
        if eth.ethertype() != EtherType::PppoeSession {
            return Err(Error::Unsupported);
        }
        let header_len = eth.header_len();
        let pppoe = pppoe::Packet::new_checked(eth.payload())?;
        if pppoe.code() != pppoe::Code::Session {
            return Err(Error::Unsupported);
        }
        (
            pppoe.session_id(),
            at + header_len + pppoe::HEADER_LEN,
            pppoe.payload().len(),
        )
    };
    // The session table lookup (PPPoE session -> L2TP ids) is not codec
    // work; a fixed mapping stands in for it.
    let session = (0x1234, session_id);
    let ac_at = ppp_at - 2;
    buf[ac_at..ppp_at].copy_from_slice(&[ppp::ADDRESS, ppp::CONTROL]);
    emit_l2tp_encap(
        buf,
        ac_at,
        session,
        ppp_len + 2,
        (LAC_MAC, LNS_MAC),
        (LAC_IP, LNS_IP),
    )
}

/// LAC downstream: an L2TP data message at `buf[at..]` becomes a PPPoE
/// session frame in place, Address/Control dropped. Returns where the new
/// frame starts.
#[inline]
fn relay_l2tp_to_pppoe(buf: &mut [u8], at: usize) -> Result<usize> {
    let (session_id, ppp_at, end) = {
        let frame = &buf[at..];
        let eth = ethernet::Frame::new_checked(frame)?;
        if eth.ethertype() != EtherType::Ipv4 {
            return Err(Error::Unsupported);
        }
        let ip = ipv4::Packet::new_checked(eth.payload())?;
        if !ip.verify_checksum() || ip.protocol() != ipv4::Protocol::Udp {
            return Err(Error::Unsupported);
        }
        let udp = udp::Packet::new_checked(ip.payload())?;
        let l2tp = l2tp::Packet::new_checked(udp.payload())?;
        if l2tp.is_control() {
            return Err(Error::Unsupported);
        }
        let ppp = ppp::Packet::new_checked(l2tp.payload())?;
        let skip = if ppp.has_address_control() { 2 } else { 0 };
        let payload = l2tp.payload();
        let ppp_at = payload.as_ptr() as usize - frame.as_ptr() as usize + skip;
        (
            l2tp.session_id(),
            at + ppp_at,
            at + ppp_at - skip + payload.len(),
        )
    };
    let pppoe = pppoe::Repr {
        code: pppoe::Code::Session,
        session_id,
        payload_len: end - ppp_at,
    };
    let eth = ethernet::Repr {
        dst_addr: CPE_MAC,
        src_addr: LAC_MAC,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::PppoeSession,
    };
    let start = ppp_at
        .checked_sub(eth.buffer_len() + pppoe.buffer_len())
        .ok_or(Error::BufferTooSmall)?;
    let o = eth.emit(&mut buf[start..])?;
    pppoe.emit(&mut buf[start + o..])?;
    Ok(start)
}

// ---------------------------------------------------------------------------
// Fixtures, built with the same emitters.

/// A subscriber's IPv4/UDP packet.
fn subscriber_ipv4(i: usize) -> Vec<u8> {
    let udp = udp::Repr {
        src_port: 40000 + i as u16,
        dst_port: 9,
        payload_len: SUBSCRIBER_DATA,
    };
    let ip = ipv4::Repr {
        src_addr: SUBSCRIBER_IP,
        dst_addr: SERVER_IP,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: i as u16,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp.total_len(),
    };
    let mut packet = vec![0x5a; ip.total_len()];
    let at = ip.emit(&mut packet).unwrap();
    udp.emit(&mut packet[at..]).unwrap();
    udp::Packet::new_unchecked(&mut packet[at..]).fill_checksum(SUBSCRIBER_IP, SERVER_IP);
    packet
}

/// A buffer with `HEADROOM` free bytes and `packet` after them.
fn with_headroom(packet: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; HEADROOM + packet.len()];
    buf[HEADROOM..].copy_from_slice(packet);
    buf
}

/// Upstream L2TP data frames (LAC to LNS, UDP checksum filled as xl2tpd
/// sends it), one per session of the burst, each starting at `HEADROOM`.
fn l2tp_upstream_burst(burst: usize) -> Vec<Vec<u8>> {
    (0..burst)
        .map(|i| {
            let mut scratch = with_headroom(&subscriber_ipv4(i));
            let ppp = ppp::Repr::uncompressed(ppp::Protocol::Ipv4);
            let ppp_at = HEADROOM - ppp.buffer_len();
            ppp.emit(&mut scratch[ppp_at..]).unwrap();
            let ppp_len = scratch.len() - ppp_at;
            let start = emit_l2tp_encap(
                &mut scratch,
                ppp_at,
                session_ids(i),
                ppp_len,
                (LAC_MAC, LNS_MAC),
                (LAC_IP, LNS_IP),
            )
            .unwrap();
            let mut buf = with_headroom(&scratch[start..]);
            let udp_at = HEADROOM + ethernet::HEADER_LEN + ipv4::HEADER_LEN;
            udp::Packet::new_unchecked(&mut buf[udp_at..]).fill_checksum(LAC_IP, LNS_IP);
            buf
        })
        .collect()
}

/// Downstream IPv4 packets to subscribers, in buffers with headroom.
fn ipv4_downstream_burst(burst: usize) -> Vec<Vec<u8>> {
    (0..burst)
        .map(|i| with_headroom(&subscriber_ipv4(i)))
        .collect()
}

/// PPPoE session frames from subscribers, in buffers with headroom.
fn pppoe_upstream_burst(burst: usize) -> Vec<Vec<u8>> {
    (0..burst)
        .map(|i| {
            let ip = subscriber_ipv4(i);
            let ppp = ppp::Repr {
                address_control: false,
                protocol: ppp::Protocol::Ipv4,
                compressed_protocol: false,
            };
            let pppoe = pppoe::Repr {
                code: pppoe::Code::Session,
                session_id: 0x0100 + i as u16,
                payload_len: ppp.buffer_len() + ip.len(),
            };
            let eth = ethernet::Repr {
                dst_addr: LAC_MAC,
                src_addr: CPE_MAC,
                outer_tag: None,
                inner_tag: None,
                ethertype: EtherType::PppoeSession,
            };
            let mut frame = vec![0; eth.buffer_len() + pppoe.buffer_len() + pppoe.payload_len];
            let mut o = eth.emit(&mut frame).unwrap();
            o += pppoe.emit(&mut frame[o..]).unwrap();
            o += ppp.emit(&mut frame[o..]).unwrap();
            frame[o..].copy_from_slice(&ip);
            with_headroom(&frame)
        })
        .collect()
}

/// A typical ICRQ from a LAC (the AVPs xl2tpd and Cisco LACs send).
fn icrq() -> ControlMessage {
    let mut m = ControlMessage::new(MessageType::Icrq, 0x5678, 0)
        .with(AvpEntry::mandatory(Avp::AssignedSessionId(0x0101)))
        .with(AvpEntry::mandatory(Avp::CallSerialNumber(7)))
        .with(AvpEntry::mandatory(Avp::BearerType(2)))
        .with(AvpEntry::mandatory(Avp::FramingType(1)))
        .with(AvpEntry::mandatory(Avp::CallingNumber(
            b"eth0.100:7".to_vec(),
        )))
        .with(AvpEntry::optional(Avp::PhysicalChannelId(42)));
    m.ns = 3;
    m.nr = 1;
    m
}

/// An SCCRQ with a Random Vector and a hidden Assigned Tunnel ID.
fn sccrq_hidden() -> ControlMessage {
    ControlMessage::new(MessageType::Sccrq, 0, 0)
        .with(AvpEntry::mandatory(Avp::ProtocolVersion {
            version: 1,
            revision: 0,
        }))
        .with(AvpEntry::mandatory(Avp::HostName(
            b"lac-1.example".to_vec(),
        )))
        .with(AvpEntry::mandatory(Avp::FramingCapabilities(3)))
        .with(AvpEntry::mandatory(Avp::RandomVector(
            b"\x5a\x11\xc0\xff\xee\x00\x42\x17".to_vec(),
        )))
        .with(AvpEntry::mandatory(Avp::AssignedTunnelId(0x1234)).hide())
        .with(AvpEntry::mandatory(Avp::ReceiveWindowSize(16)))
        .with(AvpEntry::mandatory(Avp::Challenge(
            b"0123456789abcdef".to_vec(),
        )))
}

fn emitted(message: &ControlMessage) -> Vec<u8> {
    let mut buf = vec![0; message.buffer_len()];
    assert_eq!(message.emit(&mut buf, &CTX), Ok(buf.len()));
    buf
}

// ---------------------------------------------------------------------------
// The benchmarks.

fn lns(c: &mut Criterion) {
    for (name, verify_udp_checksum) in [
        ("lns/upstream_parse", false),
        ("lns/upstream_parse_udp_checksum", true),
    ] {
        let mut group = c.benchmark_group(name);
        for burst in BURSTS {
            let frames = l2tp_upstream_burst(burst);
            let frames: Vec<&[u8]> = frames.iter().map(|b| &b[HEADROOM..]).collect();
            for (i, f) in frames.iter().enumerate() {
                let up = parse_lns_upstream(f, verify_udp_checksum).unwrap();
                assert_eq!((up.tunnel_id, up.session_id), session_ids(i));
                assert_eq!((up.inner_dst, f[up.inner_at]), (SERVER_IP, 0x45));
            }
            group.throughput(Throughput::Elements(burst as u64));
            group.bench_with_input(BenchmarkId::from_parameter(burst), &frames, |b, frames| {
                b.iter(|| {
                    for f in frames {
                        let _ = black_box(parse_lns_upstream(black_box(f), verify_udp_checksum));
                    }
                })
            });
        }
        group.finish();
    }

    let mut group = c.benchmark_group("lns/downstream_encap");
    for burst in BURSTS {
        // Prepending writes only the headroom, so the burst can be reused.
        let mut buffers = ipv4_downstream_burst(burst);
        for (i, buf) in buffers.iter_mut().enumerate() {
            let start = emit_lns_downstream(buf, HEADROOM, session_ids(i));
            assert!(start.is_ok_and(|s| parse_lns_upstream(&buf[s..], false).is_ok()));
        }
        group.throughput(Throughput::Elements(burst as u64));
        group.bench_function(BenchmarkId::from_parameter(burst), |b| {
            b.iter(|| {
                for (i, buf) in buffers.iter_mut().enumerate() {
                    let _ = black_box(emit_lns_downstream(
                        black_box(buf),
                        HEADROOM,
                        session_ids(i),
                    ));
                }
            })
        });
    }
    group.finish();
}

/// Benchmark `relay` over bursts of `burst_of`, after checking once per
/// frame that what it relays is `relayed_ok`. The relay rewrites the frame
/// at `buf[HEADROOM..]` in place and returns where the relayed frame starts,
/// so each iteration gets a fresh copy of the burst (made outside the
/// timing). `relay` is generic, not a fn pointer, so the timed call is as
/// direct as a call written out.
fn bench_relay(
    c: &mut Criterion,
    name: &str,
    burst_of: fn(usize) -> Vec<Vec<u8>>,
    relay: impl Fn(&mut [u8], usize) -> Result<usize>,
    relayed_ok: impl Fn(&[u8]) -> bool,
) {
    let mut group = c.benchmark_group(name);
    for burst in BURSTS {
        let buffers = burst_of(burst);
        for buf in &buffers {
            let mut buf = buf.clone();
            let start = relay(&mut buf, HEADROOM);
            assert!(start.is_ok_and(|s| relayed_ok(&buf[s..])), "{name}");
        }
        group.throughput(Throughput::Elements(burst as u64));
        group.bench_function(BenchmarkId::from_parameter(burst), |b| {
            b.iter_batched_ref(
                || buffers.clone(),
                |buffers| {
                    for buf in buffers.iter_mut() {
                        let _ = black_box(relay(black_box(buf), HEADROOM));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn lac(c: &mut Criterion) {
    bench_relay(
        c,
        "lac/pppoe_to_l2tp",
        pppoe_upstream_burst,
        relay_pppoe_to_l2tp,
        |frame| parse_lns_upstream(frame, false).is_ok(),
    );
    bench_relay(
        c,
        "lac/l2tp_to_pppoe",
        l2tp_upstream_burst,
        relay_l2tp_to_pppoe,
        |frame| {
            pppoe::Packet::new_checked(&frame[ethernet::HEADER_LEN..])
                .is_ok_and(|p| p.payload()[..2] == [0x00, 0x21])
        },
    );
}

fn control(c: &mut Criterion) {
    for (name, message) in [("icrq", icrq()), ("sccrq_hidden_avp", sccrq_hidden())] {
        let bytes = emitted(&message);
        assert_eq!(ControlMessage::parse(&bytes, &CTX).as_ref(), Ok(&message));

        let mut group = c.benchmark_group(format!("control/{name}_parse"));
        for burst in BURSTS {
            let messages = vec![bytes.clone(); burst];
            group.throughput(Throughput::Elements(burst as u64));
            group.bench_with_input(BenchmarkId::from_parameter(burst), &messages, |b, ms| {
                b.iter(|| {
                    for m in ms {
                        let _ = black_box(ControlMessage::parse(black_box(m), &CTX));
                    }
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("control/{name}_emit"));
        for burst in BURSTS {
            let mut buffers = vec![vec![0u8; message.buffer_len()]; burst];
            group.throughput(Throughput::Elements(burst as u64));
            group.bench_function(BenchmarkId::from_parameter(burst), |b| {
                b.iter(|| {
                    for buf in buffers.iter_mut() {
                        let _ = black_box(black_box(&message).emit(buf, &CTX));
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, lns, lac, control);
criterion_main!(benches);

//! The LNS data path.
//!
//! Upstream: Ethernet/IPv4/UDP/L2TP/PPP/IPv4 from a LAC → the inner IPv4
//! packet, TTL decremented, behind a new Ethernet header toward the core.
//! Downstream: IPv4 from the core to a subscriber address → PPP/L2TP/UDP/
//! IPv4/Ethernet prepended in the headroom toward the session's LAC.
//! PPP control frames go to the control plane.

use core::ops::ControlFlow::{self, Break};

use crate::counters::{DropReason, PathKind};
use crate::io::Descriptor;
use crate::path::{
    decide, narrow, no_neighbour, write_ethernet, Datapath, Ipv4Info, L2tpData, Verdict,
};
use crate::punt::PuntReason;
use crate::wire::ethernet::{self, EtherType};
use crate::wire::{arp, checksum, ipv4, ppp};

/// IPv4 and TCP headers without options: what an MSS leaves out of the MTU
/// (RFC 6691 §2, RFC 879).
const TCP_IPV4_OVERHEAD: u16 = 40;

/// PPP Address, Control and the IPv4 Protocol (RFC 1661 §2, RFC 1332 §2).
const IPV4_UNCOMPRESSED: [u8; 4] = [ppp::ADDRESS, ppp::CONTROL, 0x00, 0x21];

impl Datapath {
    /// An L2TP data message from a LAC, already checked against its tunnel
    /// and session.
    #[inline]
    pub(crate) fn lns_upstream(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        data: L2tpData,
    ) -> Verdict {
        // IPv4 without options in the form every LAC sends by default
        // (FF 03 00 21), at fixed offsets; anything else through the codecs.
        let plain = frame
            .get(data.ppp.clone())
            .and_then(|b| b.first_chunk::<{ IPV4_UNCOMPRESSED.len() + ipv4::HEADER_LEN }>())
            .filter(|h| h[..IPV4_UNCOMPRESSED.len()] == IPV4_UNCOMPRESSED)
            .and_then(|h| {
                let (_, header) = h.split_last_chunk::<{ ipv4::HEADER_LEN }>()?;
                let start = data.ppp.start + IPV4_UNCOMPRESSED.len();
                Ipv4Info::plain(header, start, data.ppp.end - start)
            });
        let ip = match plain {
            Some(ip) => ip,
            None => decide!(upstream_ipv4(frame, d, &data)),
        };
        let Some(session) = self.tables.session(data.session) else {
            return Verdict::Drop(DropReason::UnknownSession);
        };
        // A subscriber may only send from the address IPCP gave it.
        if session.config.subscriber_addr != Some(ip.src) {
            return Verdict::Drop(DropReason::SpoofedSource);
        }
        let mru = session.config.mru;
        if ip.ttl <= 1 {
            return time_exceeded(d, &ip);
        }
        let (next_hop, neighbour) = self.tables.route(ip.dst);
        let Some(neighbour) = neighbour else {
            narrow(d, ip.range());
            return no_neighbour(next_hop);
        };
        let Some(&src_mac) = self.port_macs.get(usize::from(neighbour.port)) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        forward_ipv4(frame, &ip, mru);
        // Decapsulation freed at least the outer headers, so the new
        // Ethernet header fits in front of the inner packet.
        let Some(start) = write_ethernet(frame, ip.start, neighbour.mac, src_mac, EtherType::Ipv4)
        else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        narrow(d, start..ip.end);
        if let Some(s) = self.tables.session_mut(data.session) {
            s.counters.upstream_packets += 1;
            s.counters.upstream_octets += ip.total_len() as u64;
        }
        self.forwarded(PathKind::LnsUpstream);
        Verdict::Forward(usize::from(neighbour.port))
    }

    /// An IPv4 packet from the core, not to one of our addresses.
    #[inline]
    pub(crate) fn lns_downstream(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        ip: Ipv4Info,
    ) -> Verdict {
        let Some(index) = self.tables.session_index_by_subscriber(ip.dst) else {
            return Verdict::Drop(DropReason::NoSessionForDestination);
        };
        let Some(session) = self.tables.session(index) else {
            return Verdict::Drop(DropReason::NoSessionForDestination);
        };
        let mru = session.config.mru;
        if ip.ttl <= 1 {
            return time_exceeded(d, &ip);
        }
        if ip.total_len() > usize::from(mru) {
            return too_big(frame, d, &ip, index, mru);
        }
        forward_ipv4(frame, &ip, mru);
        self.lns_encapsulate_ipv4(frame, d, index, ip.start, ip.total_len())
    }

    /// Put the IPv4 packet (or fragment) at `frame[ip_start..ip_start +
    /// ip_len]` into session `index`'s tunnel and count it.
    #[inline]
    pub(crate) fn lns_encapsulate_ipv4(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        index: usize,
        ip_start: usize,
        ip_len: usize,
    ) -> Verdict {
        // PPP in the form every peer accepts: FF 03 00 21.
        const PPP_LEN: usize = 4;
        let Some(ppp_start) = ip_start.checked_sub(PPP_LEN) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let Some(ppp_header) = frame.get_mut(ppp_start..ip_start) else {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        };
        ppp_header.copy_from_slice(&IPV4_UNCOMPRESSED);
        let verdict = self.l2tp_encapsulate(frame, d, index, ppp_start, PPP_LEN + ip_len);
        if let Verdict::Forward(_) = verdict {
            if let Some(s) = self.tables.session_mut(index) {
                s.counters.downstream_packets += 1;
                s.counters.downstream_octets += ip_len as u64;
            }
            self.forwarded(PathKind::LnsDownstream);
        }
        verdict
    }
}

impl Datapath {
    /// An ARP packet on an LNS port. A request for a subscriber address
    /// of a session in the table is answered here with the receiving
    /// port's MAC (proxy ARP, RFC 826's reply rewritten in place): the
    /// core then sends the subscriber's traffic to this box, on-link,
    /// and the answer moves with the session when another LNS adopts it
    /// (it answers from then on and announces the move with a gratuitous
    /// ARP, [`crate::wire::arp::emit_announcement`]). Everything else
    /// (requests for our own addresses, replies, announcements, requests
    /// for pool addresses no session holds) is the kernel's: punted as
    /// [`PuntReason::Local`], as before; the steering program sends the
    /// worker only requests whose target is inside a subscriber prefix.
    #[cold]
    #[inline(never)]
    pub(crate) fn arp(
        &mut self,
        frame: &mut [u8],
        d: &Descriptor,
        in_port: usize,
        l3: usize,
        end: usize,
    ) -> Verdict {
        let start = d.offset as usize;
        let Some(&port_mac) = self.port_macs.get(in_port) else {
            return Verdict::Punt(PuntReason::Local);
        };
        let Some(request) = frame
            .get(l3..end)
            .and_then(|b| arp::Packet::new_checked(b).ok())
            .and_then(|p| arp::Repr::parse(&p).ok())
        else {
            return Verdict::Punt(PuntReason::Local);
        };
        // RFC 5227 §3: a request whose sender and target addresses are
        // the same announces an address, it asks nothing.
        if request.operation != arp::Operation::Request
            || request.source_protocol_addr == request.target_protocol_addr
            || self
                .tables
                .session_index_by_subscriber(request.target_protocol_addr)
                .is_none()
        {
            return Verdict::Punt(PuntReason::Local);
        }
        // RFC 826: swap the sender and target fields, put our hardware
        // address as the sender's, set the opcode to reply, and send it
        // back to the requester (same tags, same port).
        let reply = arp::Repr {
            operation: arp::Operation::Reply,
            source_hardware_addr: port_mac,
            source_protocol_addr: request.target_protocol_addr,
            target_hardware_addr: request.source_hardware_addr,
            target_protocol_addr: request.source_protocol_addr,
        };
        let written = frame.get_mut(l3..end).map(|b| reply.emit(b));
        let Some(requester) = frame
            .get(start + 6..start + 12)
            .and_then(ethernet::Address::from_bytes)
        else {
            return Verdict::Drop(DropReason::MalformedEthernet);
        };
        let Some(header) = frame.get_mut(start..start + 12) else {
            return Verdict::Drop(DropReason::MalformedEthernet);
        };
        if !matches!(written, Some(Ok(_))) {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        }
        header[..6].copy_from_slice(&requester.0);
        header[6..].copy_from_slice(&port_mac.0);
        self.counters.arp_replies += 1;
        Verdict::Forward(in_port)
    }
}

/// The IPv4 packet in the PPP frame of an upstream data message of any
/// other form (compressed fields, options); other protocols are punted or
/// dropped.
#[inline(never)]
fn upstream_ipv4(
    frame: &[u8],
    d: &mut Descriptor,
    data: &L2tpData,
) -> ControlFlow<Verdict, Ipv4Info> {
    let Some(ppp_bytes) = frame.get(data.ppp.clone()) else {
        return Break(Verdict::Drop(DropReason::MalformedPpp));
    };
    let (protocol, header_len) = match ppp::Packet::new_checked(ppp_bytes) {
        Ok(p) => (p.protocol(), p.header_len()),
        Err(_) => return Break(Verdict::Drop(DropReason::MalformedPpp)),
    };
    match protocol {
        ppp::Protocol::Ipv4 => {}
        ppp::Protocol::Ipv6 => return Break(Verdict::Drop(DropReason::Ipv6NotForwarded)),
        // LCP, authentication, NCPs, and unknown protocols (which LCP
        // answers with Protocol-Reject, RFC 1661 §5.7).
        _ => {
            narrow(d, data.ppp.clone());
            return Break(Verdict::Punt(PuntReason::LnsPpp(data.key)));
        }
    }
    Ipv4Info::parse(
        frame,
        data.ppp.start + header_len,
        data.ppp.end,
        DropReason::MalformedInnerIpv4,
    )
}

/// Rewrite a packet that is forwarded: clamp the MSS of a TCP SYN to what
/// fits the session's MRU, then decrement the TTL with an incremental
/// checksum update (RFC 1812 §5.3.1, RFC 1624).
#[inline]
fn forward_ipv4(frame: &mut [u8], ip: &Ipv4Info, mru: u16) {
    let Some(bytes) = frame.get_mut(ip.range()) else {
        return;
    };
    if ip.protocol == u8::from(ipv4::Protocol::Tcp) && ip.first_fragment {
        if let Some(tcp) = bytes.get_mut(ip.header_len..) {
            clamp_mss(tcp, mru.saturating_sub(TCP_IPV4_OVERHEAD));
        }
    }
    // The TTL and checksum at their fixed offsets, from what the parse
    // read: the header's start is no longer read back.
    let Some(header) = bytes.first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return;
    };
    let ttl = ip.ttl - 1;
    header[8] = ttl;
    let check = checksum::update(
        u16::from_be_bytes([header[10], header[11]]),
        u16::from_be_bytes([ip.ttl, ip.protocol]),
        u16::from_be_bytes([ttl, ip.protocol]),
    );
    header[10..12].copy_from_slice(&check.to_be_bytes());
}

/// Lower the MSS option of a SYN segment to `max_mss` (RFC 6691 §2: the
/// MSS is the MTU minus the fixed IPv4 and TCP headers; RFC 4459 §3.2 for
/// why tunnels clamp it), fixing the TCP checksum incrementally so the
/// payload need not be summed.
pub(crate) fn clamp_mss(tcp: &mut [u8], max_mss: u16) {
    const FLAGS: usize = 13;
    const SYN: u8 = 0x02;
    const CHECKSUM: usize = 16;
    const MIN_HEADER: usize = 20;
    const KIND_END: u8 = 0;
    const KIND_NOP: u8 = 1;
    const KIND_MSS: u8 = 2;
    if tcp.len() < MIN_HEADER || tcp[FLAGS] & SYN == 0 {
        return;
    }
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset <= MIN_HEADER || data_offset > tcp.len() {
        return;
    }
    let mut at = MIN_HEADER;
    while at < data_offset {
        match tcp[at] {
            KIND_END => return,
            KIND_NOP => at += 1,
            kind => {
                let Some(&len) = tcp.get(at + 1) else {
                    return;
                };
                let len = usize::from(len);
                if len < 2 || at + len > data_offset {
                    return;
                }
                if kind == KIND_MSS && len == 4 {
                    let mss = u16::from_be_bytes([tcp[at + 2], tcp[at + 3]]);
                    if mss > max_mss {
                        tcp[at + 2..at + 4].copy_from_slice(&max_mss.to_be_bytes());
                        let check = u16::from_be_bytes([tcp[CHECKSUM], tcp[CHECKSUM + 1]]);
                        let check = checksum::update(check, mss, max_mss);
                        tcp[CHECKSUM..CHECKSUM + 2].copy_from_slice(&check.to_be_bytes());
                    }
                    return;
                }
                at += len;
            }
        }
    }
}

/// TTL ran out: drop, and hand the packet to the control plane for ICMP
/// Time Exceeded (RFC 792; RFC 1812 §5.3.1).
#[cold]
#[inline(never)]
fn time_exceeded(d: &mut Descriptor, ip: &Ipv4Info) -> Verdict {
    narrow(d, ip.range());
    Verdict::DropAndPunt(DropReason::TtlExpired, PuntReason::TimeExceeded)
}

/// Longer than the subscriber accepts. With DF set the sender learns the
/// MTU from ICMP Fragmentation Needed (RFC 1191 §4), which the control
/// plane sends from the punted copy. Without DF the packet is fragmented
/// (RFC 791 §3.2): it is forwarded (TTL, MSS) as a whole first, then the
/// worker cuts it, since the fragments after the first need frames of
/// their own.
#[cold]
#[inline(never)]
fn too_big(
    frame: &mut [u8],
    d: &mut Descriptor,
    ip: &Ipv4Info,
    session: usize,
    mru: u16,
) -> Verdict {
    narrow(d, ip.range());
    if ip.dont_frag {
        return Verdict::DropAndPunt(
            DropReason::FragmentationNeeded,
            PuntReason::FragmentationNeeded { mtu: mru },
        );
    }
    forward_ipv4(frame, ip, mru);
    Verdict::Fragment { session, mru }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN header with MSS 1460, window scale and a checksum that is
    /// right for some pseudo-header; only the change matters.
    fn syn(mss: u16) -> Vec<u8> {
        let mut tcp = vec![
            0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x70, SYN_FLAG, 0xff, 0xff, 0x12, 0x34,
            0, 0, // 20 bytes
            1, 3, 3, 7, // NOP, window scale 7
            2, 4, 0, 0, // MSS
        ];
        tcp[26..28].copy_from_slice(&mss.to_be_bytes());
        tcp
    }
    const SYN_FLAG: u8 = 0x02;

    #[test]
    fn mss_is_lowered_and_checksum_follows() {
        let mut tcp = syn(1460);
        let before = checksum::sum(&tcp);
        clamp_mss(&mut tcp, 1452);
        assert_eq!(&tcp[26..28], &1452u16.to_be_bytes());
        // The one's complement sum over the segment, checksum included,
        // is unchanged when the checksum was updated right.
        assert_eq!(checksum::sum(&tcp), before);
    }

    #[test]
    fn a_smaller_mss_and_non_syn_segments_are_left_alone() {
        let mut tcp = syn(1400);
        let orig = tcp.clone();
        clamp_mss(&mut tcp, 1452);
        assert_eq!(tcp, orig);
        let mut ack = syn(1460);
        ack[13] = 0x10;
        let orig = ack.clone();
        clamp_mss(&mut ack, 1452);
        assert_eq!(ack, orig);
    }

    #[test]
    fn truncated_options_never_panic() {
        let tcp = syn(1460);
        for cut in 0..tcp.len() {
            let mut t = tcp[..cut].to_vec();
            clamp_mss(&mut t, 1000);
        }
        let mut bad_len = syn(1460);
        bad_len[22] = 0; // window scale option with length 0
        clamp_mss(&mut bad_len, 1000);
    }
}

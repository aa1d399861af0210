//! What every packet goes through: classification, and the L2TP data
//! channel shared by the LNS (upstream in, downstream out) and the LAC
//! (downstream in, upstream out).
//!
//! A packet's fate is a [`Verdict`]. The functions here never allocate,
//! log or return errors: a step that decides the fate returns
//! `ControlFlow::Break(verdict)`.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::ops::ControlFlow::{self, Break, Continue};
use core::ops::Range;

use crate::counters::{Counters, DropReason, PathKind};
use crate::io::Descriptor;
use crate::lac::HoldRings;
use crate::punt::PuntReason;
use crate::table::{Lookup, OuterTemplate, SessionKey, Tables, OUTER_LEN};
use crate::wire::ethernet::{self, EtherType};
use crate::wire::{ipv4, l2tp, pppoe, udp};

/// What a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Terminates PPP: L2TP on one side, IPv4 on the other.
    Lns,
    /// Relays PPP: PPPoE on one side, L2TP on the other.
    Lac,
}

/// How a packet ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Rewritten in place; send it out of this port.
    Forward(usize),
    /// Copy it to the control plane, then free it.
    Punt(PuntReason),
    /// Free it and count why.
    Drop(DropReason),
    /// Free it, count why, and copy it to the control plane so it can act
    /// (resolve a neighbour, send ICMP).
    DropAndPunt(DropReason, PuntReason),
    /// Keep it in this holding ring (a LAC session being moved); the
    /// worker knows which port's frame it is.
    Hold(u32),
    /// An IPv4 packet (all of `d`, already forwarded: TTL, MSS) longer
    /// than session `session`'s MRU with DF clear: the worker fragments
    /// it and sends each fragment into the session ([`crate::fragment`]).
    Fragment {
        /// The session's slot.
        session: usize,
        /// Its MRU: the largest fragment.
        mru: u16,
    },
}

/// Unwrap a step or return its verdict.
macro_rules! decide {
    ($step:expr) => {
        match $step {
            ::core::ops::ControlFlow::Continue(v) => v,
            ::core::ops::ControlFlow::Break(verdict) => return verdict,
        }
    };
}
pub(crate) use decide;

/// The fields of a checked IPv4 header, with absolute offsets in the frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ipv4Info {
    pub(crate) start: usize,
    pub(crate) header_len: usize,
    /// Start plus Total Length: Ethernet padding and trailers are past it.
    pub(crate) end: usize,
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) ttl: u8,
    /// The raw protocol number: the paths compare it with one or two
    /// numbers, and decoding it into `ipv4::Protocol` cost a branch table.
    pub(crate) protocol: u8,
    pub(crate) dont_frag: bool,
    pub(crate) is_fragment: bool,
    pub(crate) first_fragment: bool,
}

impl Ipv4Info {
    /// Check the header at `frame[start..end]`, checksum included
    /// (RFC 1812 §5.2.2).
    #[inline]
    pub(crate) fn parse(
        frame: &[u8],
        start: usize,
        end: usize,
        malformed: DropReason,
    ) -> ControlFlow<Verdict, Ipv4Info> {
        let Some(bytes) = frame.get(start..end) else {
            return Break(Verdict::Drop(malformed));
        };
        // The common case, version 4 without options, at fixed offsets in
        // a fixed-size array: no length arithmetic, no bounds checks.
        let Some(header) = bytes.first_chunk::<{ ipv4::HEADER_LEN }>() else {
            return Break(Verdict::Drop(malformed));
        };
        match Ipv4Info::plain(header, start, bytes.len()) {
            Some(ip) => Continue(ip),
            None if header[0] != 0x45 => Ipv4Info::parse_with_options(bytes, start, malformed),
            None => Break(Verdict::Drop(plain_error(header, bytes.len(), malformed))),
        }
    }

    /// The header `header` (version 4, no options) of an IPv4 packet at
    /// `start` with `room` bytes from there to the end of what holds it,
    /// when its Total Length fits (what `check_len` checks, for IHL 5) and
    /// its checksum is right (RFC 1812 §5.2.2); read at fixed offsets: no
    /// length arithmetic, no bounds checks.
    #[inline(always)]
    pub(crate) fn plain(
        header: &[u8; ipv4::HEADER_LEN],
        start: usize,
        room: usize,
    ) -> Option<Ipv4Info> {
        let u16_at = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        let addr_at =
            |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
        let total_len = usize::from(u16_at(2));
        if header[0] != 0x45
            || total_len < ipv4::HEADER_LEN
            || total_len > room
            || !plain_header_checksum_ok(header)
        {
            return None;
        }
        // RFC 791 §3.1: flags DF 0x4000, MF 0x2000, offset 13 bits.
        let flags_offset = u16_at(6);
        Some(Ipv4Info {
            start,
            header_len: ipv4::HEADER_LEN,
            end: start + total_len,
            src: addr_at(12),
            dst: addr_at(16),
            ttl: header[8],
            protocol: header[9],
            dont_frag: flags_offset & 0x4000 != 0,
            is_fragment: flags_offset & 0x3fff != 0,
            first_fragment: flags_offset & 0x1fff == 0,
        })
    }

    /// Any other first byte: options, or not version 4 at all.
    #[cold]
    #[inline(never)]
    fn parse_with_options(
        bytes: &[u8],
        start: usize,
        malformed: DropReason,
    ) -> ControlFlow<Verdict, Ipv4Info> {
        let Ok(ip) = ipv4::Packet::new_checked(bytes) else {
            return Break(Verdict::Drop(malformed));
        };
        if !ip.verify_checksum() {
            return Break(Verdict::Drop(DropReason::Ipv4Checksum));
        }
        Continue(Ipv4Info::from_packet(
            &ip,
            start,
            usize::from(ip.total_len()),
        ))
    }

    #[inline]
    fn from_packet<T: AsRef<[u8]>>(
        ip: &ipv4::Packet<T>,
        start: usize,
        total_len: usize,
    ) -> Ipv4Info {
        Ipv4Info {
            start,
            header_len: ip.header_len(),
            end: start + total_len,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            ttl: ip.ttl(),
            protocol: u8::from(ip.protocol()),
            dont_frag: ip.dont_frag(),
            is_fragment: ip.is_fragment(),
            first_fragment: ip.frag_offset() == 0,
        }
    }

    pub(crate) fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    pub(crate) fn total_len(&self) -> usize {
        self.end - self.start
    }
}

/// Why [`Ipv4Info::plain`] refused the header `header` of a packet with
/// `room` bytes.
#[cold]
#[inline(never)]
fn plain_error(header: &[u8; ipv4::HEADER_LEN], room: usize, malformed: DropReason) -> DropReason {
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if (ipv4::HEADER_LEN..=room).contains(&total_len) {
        DropReason::Ipv4Checksum
    } else {
        malformed
    }
}

/// Whether the checksum of the IPv4 header `header` (no options) is right
/// (RFC 1812 §5.2.2). `ipv4::header_sum` unrolled over the five words,
/// read in the machine's byte order: the one's-complement sum is
/// independent of byte order but for a swap of its two bytes (RFC 1071
/// §2.B), and the all-ones sum of a valid header is its own swap, so no
/// word needs converting.
#[inline(always)]
pub(crate) fn plain_header_checksum_ok(header: &[u8; ipv4::HEADER_LEN]) -> bool {
    let native = |at: usize| {
        u64::from(u32::from_ne_bytes([
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ]))
    };
    let sum = native(0) + native(4) + native(8) + native(12) + native(16);
    ipv4::fold64(sum) == 0xffff
}

/// What the data path reads from an L2TP data message's header.
#[derive(Debug, Clone, Copy)]
struct L2tpHeader {
    tunnel_id: u16,
    session_id: u16,
    /// Where the PPP frame starts, offset padding included.
    header_len: usize,
    /// Where it ends: the Length field when present, else the datagram.
    packet_len: usize,
    ns: Option<u16>,
}

impl L2tpHeader {
    /// Flags and version of the most common data message: no Length,
    /// sequence, offset or priority (RFC 2661 §3.1), version 2.
    const PLAIN_DATA: u16 = 0x0002;

    /// The header of the L2TP message `bytes`; control messages are
    /// punted, malformed ones dropped.
    #[inline]
    fn parse(bytes: &[u8]) -> ControlFlow<Verdict, L2tpHeader> {
        if let Some(h) = bytes.first_chunk::<6>() {
            if u16::from_be_bytes([h[0], h[1]]) == L2tpHeader::PLAIN_DATA {
                return Continue(L2tpHeader {
                    tunnel_id: u16::from_be_bytes([h[2], h[3]]),
                    session_id: u16::from_be_bytes([h[4], h[5]]),
                    header_len: 6,
                    packet_len: bytes.len(),
                    ns: None,
                });
            }
        }
        // Optional fields, control messages, or nothing valid: the codec.
        let Ok(message) = l2tp::Packet::new_checked(bytes) else {
            return Break(Verdict::Drop(DropReason::MalformedL2tp));
        };
        if message.is_control() {
            return Break(Verdict::Punt(PuntReason::L2tpControl));
        }
        Continue(L2tpHeader {
            tunnel_id: message.tunnel_id(),
            session_id: message.session_id(),
            header_len: message.header_len(),
            packet_len: message.packet_len(),
            ns: message.ns(),
        })
    }
}

/// A checked L2TP data message of a known session.
#[derive(Debug, Clone)]
pub(crate) struct L2tpData {
    /// The session's slot.
    pub(crate) session: usize,
    pub(crate) key: SessionKey,
    /// The PPP frame, absolute in the frame.
    pub(crate) ppp: Range<usize>,
}

/// A worker's packet processing state: everything but the ports.
#[derive(Debug)]
pub(crate) struct Datapath {
    pub(crate) role: Role,
    pub(crate) tables: Tables,
    pub(crate) counters: Counters,
    pub(crate) port_macs: Vec<ethernet::Address>,
    pub(crate) local_addresses: Vec<Ipv4Addr>,
    pub(crate) verify_udp_checksum: bool,
    pub(crate) outer_ttl: u8,
    pub(crate) next_ident: u16,
    pub(crate) holds: HoldRings,
}

impl Datapath {
    /// Classify a received frame and run it down its path. `d` is the
    /// packet in `frame` (the whole port frame); on `Forward` it describes
    /// the rewritten packet.
    #[inline]
    pub(crate) fn process(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        in_port: usize,
    ) -> Verdict {
        match self.process_common(frame, d) {
            Some(verdict) => verdict,
            None => self.process_general(frame, d, in_port),
        }
    }

    /// [`Datapath::process`] for any form: the codecs where the fixed
    /// offsets do not hold.
    #[inline(never)]
    pub(crate) fn process_general(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        in_port: usize,
    ) -> Verdict {
        let range = d.range();
        let (start, end) = (range.start, range.end);
        let Some(bytes) = frame.get(range) else {
            return Verdict::Drop(DropReason::MalformedEthernet);
        };
        // Untagged frames, the common case, at a fixed offset; tagged ones
        // through the codec, which counts the tags.
        let (l3, ethertype) = match bytes.first_chunk::<{ ethernet::HEADER_LEN }>() {
            Some(header) => match EtherType::from(u16::from_be_bytes([header[12], header[13]])) {
                tag if tag.is_vlan_tag() => decide!(tagged(bytes, start)),
                ethertype => (start + ethernet::HEADER_LEN, ethertype),
            },
            None => return Verdict::Drop(DropReason::MalformedEthernet),
        };
        match (ethertype, self.role) {
            (EtherType::Ipv4, _) => self.ipv4(frame, d, l3, end),
            (EtherType::PppoeSession, Role::Lac) => self.lac_upstream(frame, d, l3, end),
            (EtherType::Arp, Role::Lns) => self.arp(frame, d, in_port, l3, end),
            (EtherType::Arp | EtherType::PppoeDiscovery, _) => Verdict::Punt(PuntReason::Local),
            _ => Verdict::Drop(DropReason::UnexpectedEthertype),
        }
    }

    /// What `process` will look up for the packet `d`, read from the
    /// fixed offsets of the common forms (untagged Ethernet, IPv4 without
    /// options, an L2TP data header with at most the L and S bits; PPPoE).
    /// A guess used only to prefetch: on an LNS any other IPv4 is taken
    /// for a subscriber's, anything else is `Lookup::None`.
    #[inline]
    pub(crate) fn lookup_of(&self, frame: &[u8], d: &Descriptor) -> Lookup {
        const IP: usize = ethernet::HEADER_LEN;
        let Some(bytes) = frame.get(d.range()) else {
            return Lookup::None;
        };
        let Some(h) = bytes.first_chunk::<{ IP + ipv4::HEADER_LEN }>() else {
            return match bytes.first_chunk::<{ IP + pppoe::HEADER_LEN }>() {
                Some(h) if self.role == Role::Lac => pppoe_lookup(h),
                _ => Lookup::None,
            };
        };
        match u16::from_be_bytes([h[12], h[13]]) {
            0x0800 if h[IP] == 0x45 => {
                // An L2TP data message by its UDP port (RFC 2661 §8.1: one
                // end is 1701) and header, without asking whether the
                // destination is ours: a guess may be wrong, and costs
                // only a useless prefetch then.
                if h[IP + 9] == u8::from(ipv4::Protocol::Udp) {
                    if let Some(key) = bytes
                        .get(IP + ipv4::HEADER_LEN..)
                        .and_then(|b| b.first_chunk::<{ udp::HEADER_LEN + 10 }>())
                        .and_then(l2tp_lookup)
                    {
                        return Lookup::L2tp(key);
                    }
                }
                match self.role {
                    Role::Lns => Lookup::Subscriber(Ipv4Addr::new(
                        h[IP + 16],
                        h[IP + 17],
                        h[IP + 18],
                        h[IP + 19],
                    )),
                    Role::Lac => Lookup::None,
                }
            }
            0x8864 if self.role == Role::Lac => h
                .first_chunk::<{ IP + pppoe::HEADER_LEN }>()
                .map_or(Lookup::None, pppoe_lookup),
            _ => Lookup::None,
        }
    }

    /// The common form of each path, read at fixed offsets of one
    /// fixed-size array: untagged Ethernet, IPv4 without options, and for
    /// L2TP, UDP and a data header without optional fields (RFC 2661 §3.1:
    /// flags and version 0x0002). It replaces only the parsing: the checks
    /// and rewrites after it are the general path's own. `None`, with
    /// nothing changed, for any other form (VLAN tags, IPv4 options, L2TP
    /// Length, Ns or Offset, PPPoE, a malformed header): the general path
    /// takes the packet from the start and decides its fate.
    #[inline]
    fn process_common(&mut self, frame: &mut [u8], d: &mut Descriptor) -> Option<Verdict> {
        const IP: usize = ethernet::HEADER_LEN;
        const UDP: usize = IP + ipv4::HEADER_LEN;
        const L2TP: usize = UDP + udp::HEADER_LEN;
        const END: usize = L2TP + l2tp::MIN_HEADER_LEN;
        let start = d.offset as usize;
        let len = d.len as usize;
        let h = frame
            .get(start..start.checked_add(len)?)?
            .first_chunk::<UDP>()?;
        let ethertype = u16::from_be_bytes([h[12], h[13]]);
        if ethertype != u16::from(EtherType::Ipv4) {
            // An untagged PPPoE session frame (RFC 2516 §4) goes where the
            // general path would send it, without its dispatch.
            if ethertype == u16::from(EtherType::PppoeSession) && self.role == Role::Lac {
                return Some(self.lac_upstream(frame, d, start + IP, start + len));
            }
            return None;
        }
        let ip = Ipv4Info::plain(h[IP..].first_chunk()?, start + IP, len - IP)?;
        if !self.local_addresses.contains(&ip.dst) {
            return match self.role {
                Role::Lns => Some(self.lns_downstream(frame, d, ip)),
                Role::Lac => None,
            };
        }
        if ip.protocol != u8::from(ipv4::Protocol::Udp)
            || ip.is_fragment
            || self.verify_udp_checksum
        {
            return None;
        }
        let h = frame.get(start..ip.end)?.first_chunk::<END>()?;
        let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        let (src_port, dst_port, udp_len) = (be16(UDP), be16(UDP + 2), usize::from(be16(UDP + 4)));
        if !is_l2tp_datagram(src_port, dst_port)
            || udp_len < END - UDP
            || udp_len > ip.total_len() - ipv4::HEADER_LEN
            || be16(L2TP) != L2tpHeader::PLAIN_DATA
        {
            return None;
        }
        let header = L2tpHeader {
            tunnel_id: be16(L2TP + 2),
            session_id: be16(L2TP + 4),
            header_len: l2tp::MIN_HEADER_LEN,
            packet_len: udp_len - udp::HEADER_LEN,
            ns: None,
        };
        // Without Ns, finding the session changes nothing.
        let data = match self.l2tp_session(
            SocketAddrV4::new(ip.src, src_port),
            SocketAddrV4::new(ip.dst, dst_port),
            start + L2TP,
            header,
        ) {
            Continue(data) => data,
            Break(verdict) => return Some(verdict),
        };
        Some(match self.role {
            Role::Lns => self.lns_upstream(frame, d, data),
            Role::Lac => self.lac_downstream(frame, d, data),
        })
    }

    #[inline]
    fn ipv4(&mut self, frame: &mut [u8], d: &mut Descriptor, l3: usize, end: usize) -> Verdict {
        let ip = decide!(Ipv4Info::parse(frame, l3, end, DropReason::MalformedIpv4));
        if self.local_addresses.contains(&ip.dst) {
            if ip.protocol != u8::from(ipv4::Protocol::Udp) {
                return Verdict::Punt(PuntReason::Local);
            }
            if ip.is_fragment {
                return Verdict::Drop(DropReason::OuterFragment);
            }
            let data = decide!(self.l2tp_ingress(frame, &ip));
            match self.role {
                Role::Lns => self.lns_upstream(frame, d, data),
                Role::Lac => self.lac_downstream(frame, d, data),
            }
        } else if self.role == Role::Lns {
            self.lns_downstream(frame, d, ip)
        } else {
            Verdict::Drop(DropReason::NotForUs)
        }
    }

    /// Check an L2TP data message against the tunnel and session tables
    /// and the data sequence numbers.
    #[inline]
    fn l2tp_ingress(&mut self, frame: &[u8], ip: &Ipv4Info) -> ControlFlow<Verdict, L2tpData> {
        let udp_start = ip.start + ip.header_len;
        let Some(Ok(datagram)) = frame.get(udp_start..ip.end).map(udp::Packet::new_checked) else {
            return Break(Verdict::Drop(DropReason::MalformedUdp));
        };
        if self.verify_udp_checksum
            && datagram.checksum() != 0
            && !datagram.verify_checksum(ip.src, ip.dst)
        {
            return Break(Verdict::Drop(DropReason::UdpChecksum));
        }
        let (src_port, dst_port) = (datagram.src_port(), datagram.dst_port());
        // Other UDP to our addresses (RADIUS, say) belongs to the control
        // plane.
        if !is_l2tp_datagram(src_port, dst_port) {
            return Break(Verdict::Punt(PuntReason::Local));
        }
        let l2tp_start = udp_start + udp::HEADER_LEN;
        let udp_end = udp_start + usize::from(datagram.len());
        let Some(bytes) = frame.get(l2tp_start..udp_end) else {
            return Break(Verdict::Drop(DropReason::MalformedL2tp));
        };
        let header = match L2tpHeader::parse(bytes) {
            Continue(header) => header,
            Break(verdict) => return Break(verdict),
        };
        self.l2tp_session(
            SocketAddrV4::new(ip.src, src_port),
            SocketAddrV4::new(ip.dst, dst_port),
            l2tp_start,
            header,
        )
    }

    /// The session of an L2TP data message with `header` at `l2tp_start`
    /// of a datagram from `peer` to `local`: checked against the tunnel
    /// and session tables and the data sequence numbers.
    #[inline(always)]
    fn l2tp_session(
        &mut self,
        peer: SocketAddrV4,
        local: SocketAddrV4,
        l2tp_start: usize,
        header: L2tpHeader,
    ) -> ControlFlow<Verdict, L2tpData> {
        let Some(tunnel) = self.tables.tunnel(header.tunnel_id) else {
            return Break(Verdict::Drop(DropReason::UnknownTunnel));
        };
        if tunnel.peer != peer || tunnel.local != local {
            return Break(Verdict::Drop(DropReason::TunnelAddressMismatch));
        }
        let key = SessionKey {
            tunnel_id: header.tunnel_id,
            session_id: header.session_id,
        };
        let Some(entry) = self.tables.l2tp_entry(key) else {
            return Break(Verdict::Drop(DropReason::UnknownSession));
        };
        let ppp = l2tp_start + header.header_len..l2tp_start + header.packet_len;
        let ns = header.ns;
        let index = entry as usize;
        // An alias's entry is no slot index, so it costs the common path
        // nothing: it is looked at only when the index finds no session.
        let Some(session) = self.tables.session_mut(index) else {
            return alias_ingress(&mut self.tables, entry, key, ppp, ns);
        };
        match ns {
            Some(ns) => {
                // RFC 2661 §5.4: a data message whose Ns is behind the
                // next expected one is out of order; we drop rather than
                // reorder (the PPP peers cope with loss, not with
                // reordering). Comparison in 16-bit serial arithmetic.
                if let Some(expected) = session.expected_ns {
                    if (ns.wrapping_sub(expected) as i16) < 0 {
                        return Break(Verdict::Drop(DropReason::SequenceOutOfOrder));
                    }
                }
                session.expected_ns = Some(ns.wrapping_add(1));
            }
            None if session.config.sequencing => {
                return Break(Verdict::Drop(DropReason::SequenceMissing));
            }
            None => {}
        }
        Continue(L2tpData {
            session: index,
            key,
            ppp,
        })
    }

    /// Prepend Ethernet/IPv4/UDP/L2TP to the PPP frame at
    /// `frame[ppp_start..ppp_start + ppp_len]` for session `index`, in the
    /// headroom, and point `d` at the result.
    #[inline]
    pub(crate) fn l2tp_encapsulate(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        index: usize,
        ppp_start: usize,
        ppp_len: usize,
    ) -> Verdict {
        let Some(session) = self.tables.session(index) else {
            return Verdict::Drop(DropReason::UnknownSession);
        };
        let (tunnel_id, peer_session_id) =
            (session.config.key.tunnel_id, session.config.peer_session_id);
        let (sequencing, ns) = (session.config.sequencing, session.next_ns);
        if self.tables.outer_template(tunnel_id).is_none() {
            decide!(self.build_outer_template(tunnel_id, d, ppp_start, ppp_len));
        }
        let Some(template) = self.tables.outer_template(tunnel_id) else {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        };
        // RFC 2661 §5.4: when sequencing is on, every data message carries
        // Ns (and Nr, reserved, as 0).
        let l2tp_len = if sequencing { 10 } else { l2tp::MIN_HEADER_LEN };
        let Some(start) = ppp_start.checked_sub(OUTER_LEN + l2tp_len) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let Some(buf) = frame.get_mut(start..ppp_start) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let (outer, l2tp_buf) = buf.split_at_mut(OUTER_LEN);
        let udp_len = udp::HEADER_LEN + l2tp_len + ppp_len;
        let Ok(total_len) = u16::try_from(ipv4::HEADER_LEN + udp_len) else {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        };
        let ident = self.next_ident;
        self.next_ident = ident.wrapping_add(1);
        outer.copy_from_slice(&template.bytes);
        // The IPv4 checksum from the template's partial sum (RFC 1071
        // §2(C)): only Total Length and Identification differ per packet.
        let check =
            !ipv4::fold64(u64::from(template.ipv4_sum) + u64::from(total_len) + u64::from(ident));
        const IP: usize = ethernet::HEADER_LEN;
        const UDP: usize = IP + ipv4::HEADER_LEN;
        outer[IP + 2..IP + 4].copy_from_slice(&total_len.to_be_bytes());
        outer[IP + 4..IP + 6].copy_from_slice(&ident.to_be_bytes());
        outer[IP + 10..IP + 12].copy_from_slice(&check.to_be_bytes());
        // Fits: it is shorter than the Total Length.
        outer[UDP + 4..UDP + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let header = l2tp::HeaderRepr::emit_data(
            l2tp_buf,
            template.peer_tunnel_id,
            peer_session_id,
            sequencing.then_some(ns),
        );
        if header != Ok(l2tp_len) {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        }
        let port = usize::from(template.port);
        if sequencing {
            if let Some(s) = self.tables.session_mut(index) {
                s.next_ns = ns.wrapping_add(1);
            }
        }
        d.offset = start as u32;
        d.len = (OUTER_LEN + l2tp_len + ppp_len) as u32;
        Verdict::Forward(port)
    }

    /// Build tunnel `tunnel_id`'s outer headers after a table change, or
    /// say why its packets cannot be sent.
    #[cold]
    #[inline(never)]
    fn build_outer_template(
        &mut self,
        tunnel_id: u16,
        d: &mut Descriptor,
        ppp_start: usize,
        ppp_len: usize,
    ) -> ControlFlow<Verdict> {
        let Some(tunnel) = self.tables.tunnel(tunnel_id).copied() else {
            return Break(Verdict::Drop(DropReason::SessionWithoutTunnel));
        };
        let Some(neighbour) = self.tables.neighbour(tunnel.next_hop) else {
            *d = Descriptor {
                frame: d.frame,
                offset: ppp_start as u32,
                len: ppp_len as u32,
            };
            return Break(no_neighbour(tunnel.next_hop));
        };
        let Some(&src_mac) = self.port_macs.get(usize::from(neighbour.port)) else {
            return Break(Verdict::Drop(DropReason::NoNeighbour));
        };
        let mut bytes = [0u8; OUTER_LEN];
        let (eth_buf, rest) = bytes.split_at_mut(ethernet::HEADER_LEN);
        let (ip_buf, udp_buf) = rest.split_at_mut(ipv4::HEADER_LEN);
        let written = ethernet::Repr {
            dst_addr: neighbour.mac,
            src_addr: src_mac,
            outer_tag: None,
            inner_tag: None,
            ethertype: EtherType::Ipv4,
        }
        .emit(eth_buf)
        .is_ok()
            & ipv4::Repr {
                src_addr: *tunnel.local.ip(),
                dst_addr: *tunnel.peer.ip(),
                protocol: ipv4::Protocol::Udp,
                ttl: self.outer_ttl,
                dscp: 0,
                ecn: 0,
                ident: 0,
                dont_frag: false,
                more_frags: false,
                frag_offset: 0,
                payload_len: 0,
            }
            .emit(ip_buf)
            .is_ok()
            // UDP checksum 0: none (RFC 768), as RFC 2661 §8.1 allows.
            & udp::Repr {
                src_port: tunnel.local.port(),
                dst_port: tunnel.peer.port(),
                payload_len: 0,
            }
            .emit(udp_buf)
            .is_ok();
        if !written {
            return Break(Verdict::Drop(DropReason::EncapsulationFailed));
        }
        // Zero what each packet patches: Total Length and Checksum (the
        // Identification is already 0), and the UDP Length.
        ip_buf[2..4].fill(0);
        ip_buf[10..12].fill(0);
        udp_buf[4..6].fill(0);
        let ipv4_sum = ipv4::header_sum(ip_buf);
        self.tables.set_outer_template(
            tunnel_id,
            OuterTemplate {
                generation: 0,
                port: neighbour.port,
                peer_tunnel_id: tunnel.peer_tunnel_id,
                bytes,
                ipv4_sum,
            },
        );
        Continue(())
    }

    /// Prepend Ethernet/PPPoE to the PPP frame (Protocol field first) at
    /// `frame[ppp_start..ppp_start + ppp_len]` for LAC session `index`.
    #[inline]
    pub(crate) fn pppoe_encapsulate(
        &mut self,
        frame: &mut [u8],
        d: &mut Descriptor,
        index: usize,
        ppp_start: usize,
        ppp_len: usize,
    ) -> Verdict {
        let Some(binding) = self.tables.session(index).and_then(|s| s.config.pppoe) else {
            return Verdict::Drop(DropReason::UnknownPppoeSession);
        };
        let Some(&src_mac) = self.port_macs.get(usize::from(binding.port)) else {
            return Verdict::Drop(DropReason::UnknownPppoeSession);
        };
        const HEAD: usize = ethernet::HEADER_LEN + pppoe::HEADER_LEN;
        let Some(pppoe_start) = ppp_start.checked_sub(pppoe::HEADER_LEN) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let written = frame.get_mut(pppoe_start..ppp_start).map(|buf| {
            pppoe::Repr {
                code: pppoe::Code::Session,
                session_id: binding.session_id,
                payload_len: ppp_len,
            }
            .emit(buf)
        });
        if !matches!(written, Some(Ok(_))) {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        }
        let Some(start) = write_ethernet(
            frame,
            pppoe_start,
            binding.subscriber_mac,
            src_mac,
            EtherType::PppoeSession,
        ) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        d.offset = start as u32;
        d.len = (HEAD + ppp_len) as u32;
        Verdict::Forward(usize::from(binding.port))
    }

    /// Count a forward by `path`.
    #[inline]
    pub(crate) fn forwarded(&mut self, path: PathKind) {
        self.counters.forwarded[path as usize] += 1;
    }
}

/// An L2TP data message whose ids are not a session's own: the old ids
/// of a session that moved (make-before-break), which the old LNS still
/// sends on until it releases them. It is the session's, with the alias's
/// own sequence numbers (RFC 2661 §5.4: the old L2TP session numbered its
/// data messages its own way); whether the old session required them is
/// not known any more, so a message without Ns passes.
#[cold]
#[inline(never)]
fn alias_ingress(
    tables: &mut Tables,
    entry: u32,
    key: SessionKey,
    ppp: Range<usize>,
    ns: Option<u16>,
) -> ControlFlow<Verdict, L2tpData> {
    let Some((index, alias)) = tables.resolve_alias(entry, key) else {
        return Break(Verdict::Drop(DropReason::UnknownSession));
    };
    if let Some(ns) = ns {
        if let Some(expected) = alias.expected_ns {
            if (ns.wrapping_sub(expected) as i16) < 0 {
                return Break(Verdict::Drop(DropReason::SequenceOutOfOrder));
            }
        }
        alias.expected_ns = Some(ns.wrapping_add(1));
    }
    let Some(target) = tables.session(index).map(|s| s.config.key) else {
        return Break(Verdict::Drop(DropReason::UnknownSession));
    };
    Continue(L2tpData {
        session: index,
        key: target,
        ppp,
    })
}

/// Whether a UDP datagram between these ports is L2TP: RFC 2661 §8.1, the
/// initiator sends to 1701 and the responder answers from it, so one end of
/// every L2TP datagram is 1701.
#[inline(always)]
fn is_l2tp_datagram(src_port: u16, dst_port: u16) -> bool {
    src_port == l2tp::UDP_PORT || dst_port == l2tp::UDP_PORT
}

/// The session of the L2TP data message in the UDP datagram starting
/// with `u`, if it is one in the common form.
#[inline]
fn l2tp_lookup(u: &[u8; udp::HEADER_LEN + 10]) -> Option<SessionKey> {
    let be16 = |at: usize| u16::from_be_bytes([u[at], u[at + 1]]);
    if !is_l2tp_datagram(be16(0), be16(2)) {
        return None;
    }
    // RFC 2661 §3.1: the ids follow the flags, after Length when L is
    // set; Ns and Nr (S) come after them.
    const SEQUENCE: u16 = 0x0800;
    let ids = match be16(udp::HEADER_LEN) & !SEQUENCE {
        0x0002 => udp::HEADER_LEN + 2,
        0x4002 => udp::HEADER_LEN + 4,
        _ => return None,
    };
    Some(SessionKey {
        tunnel_id: be16(ids),
        session_id: be16(ids + 2),
    })
}

/// The PPPoE session a frame starting with `h` belongs to (source MAC,
/// SESSION_ID: RFC 2516 §4).
#[inline]
fn pppoe_lookup(h: &[u8; ethernet::HEADER_LEN + pppoe::HEADER_LEN]) -> Lookup {
    if u16::from_be_bytes([h[12], h[13]]) != 0x8864 {
        return Lookup::None;
    }
    let mac = ethernet::Address([h[6], h[7], h[8], h[9], h[10], h[11]]);
    Lookup::Pppoe(mac, u16::from_be_bytes([h[16], h[17]]))
}

/// Where the payload of a VLAN-tagged frame starts, and its EtherType.
#[cold]
#[inline(never)]
fn tagged(bytes: &[u8], start: usize) -> ControlFlow<Verdict, (usize, EtherType)> {
    match ethernet::Frame::new_checked(bytes) {
        Ok(eth) => Continue((start + eth.header_len(), eth.ethertype())),
        Err(_) => Break(Verdict::Drop(DropReason::MalformedEthernet)),
    }
}

/// Write an untagged Ethernet header in front of `at`: what
/// `ethernet::Repr::emit` writes for a Repr without tags, as three stores.
/// Returns the header's start, `None` when the headroom is too small.
#[inline]
pub(crate) fn write_ethernet(
    frame: &mut [u8],
    at: usize,
    dst: ethernet::Address,
    src: ethernet::Address,
    ethertype: EtherType,
) -> Option<usize> {
    let start = at.checked_sub(ethernet::HEADER_LEN)?;
    let header = frame
        .get_mut(start..)?
        .first_chunk_mut::<{ ethernet::HEADER_LEN }>()?;
    header[..6].copy_from_slice(&dst.0);
    header[6..12].copy_from_slice(&src.0);
    header[12..].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    Some(start)
}

/// The next hop has no MAC address: drop, and ask the control plane to
/// resolve it.
#[cold]
#[inline(never)]
pub(crate) fn no_neighbour(next_hop: Ipv4Addr) -> Verdict {
    Verdict::DropAndPunt(
        DropReason::NoNeighbour,
        PuntReason::NeighbourMissing { next_hop },
    )
}

/// Point `d` at `range` of its frame (a punt of part of a packet).
#[inline]
pub(crate) fn narrow(d: &mut Descriptor, range: Range<usize>) {
    d.offset = range.start as u32;
    d.len = (range.end - range.start) as u32;
}

#[cfg(test)]
mod tests {
    use crate::table::Neighbour;
    use crate::testkit as lab;
    use crate::update::Update;
    use crate::wire::{ethernet, ipv4};
    use crate::worker::Role;

    /// Send one downstream packet through `w` and return what left.
    fn downstream(w: &mut crate::worker::Worker<crate::io::memory::MemoryPort>) -> Vec<u8> {
        assert!(w.ports_mut()[1].push_rx(&lab::lns_downstream(0, 26)));
        w.poll();
        let Some(out) = w.ports_mut()[0].pop_tx() else {
            panic!("nothing forwarded: {:?}", w.counters())
        };
        out
    }

    /// The prefetch guess names the session the path then finds, for the
    /// common forms of every path, and nothing for the rest.
    #[test]
    fn lookups_guess_the_session_of_common_frames() {
        use crate::io::Descriptor;
        use crate::table::Lookup;
        use crate::testkit::Encoding;
        let guess = |role, frame: &[u8]| {
            let w = lab::worker(role, 4);
            let d = Descriptor {
                frame: 0,
                offset: 0,
                len: frame.len() as u32,
            };
            w.dp_for_tests().lookup_of(frame, &d)
        };
        let key = lab::session_key(3);
        assert_eq!(
            guess(Role::Lns, &lab::lns_upstream(3, 8, Encoding::default())),
            Lookup::L2tp(key)
        );
        let with_length = Encoding {
            length: true,
            ..Encoding::default()
        };
        assert_eq!(
            guess(Role::Lns, &lab::lns_upstream(3, 8, with_length)),
            Lookup::L2tp(key)
        );
        assert_eq!(
            guess(Role::Lns, &lab::lns_downstream(3, 8)),
            Lookup::Subscriber(lab::subscriber_addr(3))
        );
        assert_eq!(
            guess(Role::Lac, &lab::lac_downstream(3, 8)),
            Lookup::L2tp(key)
        );
        assert_eq!(
            guess(Role::Lac, &lab::lac_upstream(3, 8)),
            Lookup::Pppoe(lab::subscriber_mac(3), lab::pppoe_session_id(3))
        );
        let sequenced = Encoding {
            ns: Some(1),
            ..Encoding::default()
        };
        assert_eq!(
            guess(Role::Lns, &lab::lns_upstream(3, 8, sequenced)),
            Lookup::L2tp(key)
        );
        // With an offset (O bit) the guess is not an L2TP session (it
        // may be a useless prefetch of a subscriber slot: only a hint).
        let offset = Encoding {
            offset: Some(2),
            ..Encoding::default()
        };
        assert!(!matches!(
            guess(Role::Lns, &lab::lns_upstream(3, 8, offset)),
            Lookup::L2tp(_)
        ));
        assert_eq!(
            guess(Role::Lac, &lab::lns_upstream(3, 8, offset)),
            Lookup::None
        );
        let lac = lab::lac_upstream(3, 8);
        let lns = lab::lns_upstream(3, 8, Encoding::default());
        for cut in 0..lac.len() {
            let _ = guess(Role::Lac, &lac[..cut]);
        }
        for cut in 0..lns.len() {
            let _ = guess(Role::Lns, &lns[..cut]);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        /// The common-form front end decides exactly what the general path
        /// decides, for the common forms of every path and for frames a
        /// few bytes away from them: the same verdict, the same bytes
        /// out, the same counters.
        #[test]
        fn the_common_form_agrees_with_the_general_path(
            base in 0usize..4,
            session in 0usize..4,
            // Header bytes (EtherType to the inner IPv4 header), set to
            // anything or to a small number (lengths near their bounds).
            changes in proptest::collection::vec(
                (12usize..76, proptest::prop_oneof![proptest::prelude::any::<u8>(), 0u8..16]),
                0..4,
            ),
            fix_checksums in proptest::prelude::any::<bool>(),
        ) {
            use crate::io::Descriptor;
            use crate::testkit::Encoding;
            let (role, port, mut frame) = match base {
                0 => (Role::Lns, 0, lab::lns_upstream(session, 26, Encoding::default())),
                1 => (Role::Lns, 1, lab::lns_downstream(session, 26)),
                2 => (Role::Lac, 1, lab::lac_downstream(session, 26)),
                _ => (Role::Lac, 0, lab::lac_upstream(session, 26)),
            };
            for (at, value) in changes {
                if let Some(byte) = frame.get_mut(at) {
                    *byte = value;
                }
            }
            // Mostly with right IPv4 checksums, so that changes reach the
            // checks behind them (outer header at 14; inner header of an
            // L2TP data message at 52).
            if fix_checksums {
                for at in [14, 52] {
                    match frame.get_mut(at..at + 20) {
                        Some(header) if header[0] == 0x45 => {
                            ipv4::Packet::new_unchecked(header).fill_checksum();
                        }
                        _ => {}
                    }
                }
            }
            let run = |general: bool| {
                let mut w = lab::worker(role, 4);
                let mut buffer = vec![0u8; 512];
                buffer[256..256 + frame.len()].copy_from_slice(&frame);
                let mut d = Descriptor { frame: 0, offset: 256, len: frame.len() as u32 };
                let dp = w.dp_mut_for_tests();
                let verdict = if general {
                    dp.process_general(&mut buffer, &mut d, port)
                } else {
                    dp.process(&mut buffer, &mut d, port)
                };
                (verdict, d, buffer, dp.counters.clone())
            };
            proptest::prop_assert_eq!(run(false), run(true));
        }
    }

    #[test]
    fn outer_templates_follow_neighbour_changes() {
        let mut w = lab::worker(Role::Lns, 1);
        let first = downstream(&mut w);
        assert_eq!(&first[..6], &lab::PEER_MAC.0);
        let moved = ethernet::Address([0x02, 0, 0, 0, 0x09, 0x09]);
        let channels = w.channels();
        let update = Update::UpsertNeighbour {
            addr: lab::PEER_ADDR,
            neighbour: Neighbour {
                mac: moved,
                port: lab::ACCESS_PORT,
            },
        };
        assert!(channels.send(update).is_ok());
        w.apply_all_updates();
        let second = downstream(&mut w);
        assert_eq!(&second[..6], &moved.0, "the template was rebuilt");
        for frame in [&first, &second] {
            let ip = ipv4::Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(
                usize::from(ip.total_len()),
                frame.len() - ethernet::HEADER_LEN
            );
        }
        // Identification differs, so the patched checksum did too.
        assert_ne!(first[14 + 4..14 + 6], second[14 + 4..14 + 6]);
        assert_eq!(w.counters().total_drops(), 0);
    }

    /// The checksum summed in the machine's byte order accepts and
    /// refuses exactly what the codec does: the valid header, and each of
    /// its single-bit corruptions.
    #[test]
    fn header_checksum_in_native_order_agrees_with_the_codec() {
        use super::Ipv4Info;
        use crate::counters::DropReason;
        let frame = lab::lns_downstream(0, 26);
        let ip_start = ethernet::HEADER_LEN;
        let mut flipped = frame.clone();
        for bit in 0..ipv4::HEADER_LEN * 8 {
            flipped.copy_from_slice(&frame);
            if bit > 0 {
                flipped[ip_start + bit / 8] ^= 1 << (bit % 8);
            }
            let Ok(codec) = ipv4::Packet::new_checked(&flipped[ip_start..]) else {
                continue;
            };
            let codec_ok = codec.verify_checksum();
            let ours =
                Ipv4Info::parse(&flipped, ip_start, flipped.len(), DropReason::MalformedIpv4);
            assert_eq!(ours.is_continue(), codec_ok, "bit {bit}");
            assert_eq!(codec_ok, bit == 0, "bit {bit}");
        }
    }

    /// Frames off the fixed-offset fast paths (a VLAN tag, IPv4 options)
    /// take the codecs and come out the same.
    #[test]
    fn tagged_frames_and_ipv4_options_take_the_codecs() {
        let mut w = lab::worker(Role::Lns, 1);
        let plain = downstream(&mut w);
        let ip = &lab::lns_downstream(0, 26)[ethernet::HEADER_LEN..];
        let tagged = lab::ethernet(
            lab::CORE_MAC,
            lab::GATEWAY_MAC,
            Some(10),
            ethernet::EtherType::Ipv4,
            ip,
        );
        assert!(w.ports_mut()[1].push_rx(&tagged));
        w.poll();
        let Some(from_tagged) = w.ports_mut()[0].pop_tx() else {
            panic!("tagged frame not forwarded: {:?}", w.counters())
        };
        // Everything after the outer IPv4 header (whose Identification
        // and checksum differ) is the same.
        let inner = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        assert_eq!(from_tagged[inner..], plain[inner..]);

        // IHL 6: one word of options (four NOPs, RFC 791 §3.1).
        let mut with_options = ip[..ipv4::HEADER_LEN].to_vec();
        with_options.extend_from_slice(&[1, 1, 1, 1]);
        with_options.extend_from_slice(&ip[ipv4::HEADER_LEN..]);
        with_options[0] = 0x46;
        let total = with_options.len() as u16;
        with_options[2..4].copy_from_slice(&total.to_be_bytes());
        ipv4::Packet::new_unchecked(&mut with_options[..]).fill_checksum();
        let frame = lab::ethernet(
            lab::CORE_MAC,
            lab::GATEWAY_MAC,
            None,
            ethernet::EtherType::Ipv4,
            &with_options,
        );
        assert!(w.ports_mut()[1].push_rx(&frame));
        w.poll();
        let Some(out) = w.ports_mut()[0].pop_tx() else {
            panic!("IPv4 with options not forwarded: {:?}", w.counters())
        };
        let inner_start = out.len() - with_options.len();
        let forwarded = ipv4::Packet::new_checked(&out[inner_start..]).unwrap();
        assert_eq!(forwarded.header_len(), 24);
        assert_eq!(forwarded.ttl(), 63);
        assert!(forwarded.verify_checksum());
        assert_eq!(w.counters().total_drops(), 0);
    }
}

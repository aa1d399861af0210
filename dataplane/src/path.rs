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
use crate::table::{SessionKey, Tables};
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
    /// A holding ring kept it.
    Held,
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
    pub(crate) protocol: ipv4::Protocol,
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
        let Ok(ip) = ipv4::Packet::new_checked(bytes) else {
            return Break(Verdict::Drop(malformed));
        };
        if !ip.verify_checksum() {
            return Break(Verdict::Drop(DropReason::Ipv4Checksum));
        }
        Continue(Ipv4Info {
            start,
            header_len: ip.header_len(),
            end: start + usize::from(ip.total_len()),
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            ttl: ip.ttl(),
            protocol: ip.protocol(),
            dont_frag: ip.dont_frag(),
            is_fragment: ip.is_fragment(),
            first_fragment: ip.frag_offset() == 0,
        })
    }

    pub(crate) fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    pub(crate) fn total_len(&self) -> usize {
        self.end - self.start
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

/// Length of the outer headers the fast path writes in front of a PPP
/// frame, without the L2TP header.
const OUTER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

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
        let range = d.range();
        let (start, end) = (range.start, range.end);
        let Some(bytes) = frame.get(range) else {
            return Verdict::Drop(DropReason::MalformedEthernet);
        };
        let Ok(eth) = ethernet::Frame::new_checked(bytes) else {
            return Verdict::Drop(DropReason::MalformedEthernet);
        };
        let l3 = start + eth.header_len();
        match (eth.ethertype(), self.role) {
            (EtherType::Ipv4, _) => self.ipv4(frame, d, l3, end),
            (EtherType::PppoeSession, Role::Lac) => self.lac_upstream(frame, d, in_port, l3, end),
            (EtherType::Arp | EtherType::PppoeDiscovery, _) => Verdict::Punt(PuntReason::Local),
            _ => Verdict::Drop(DropReason::UnexpectedEthertype),
        }
    }

    #[inline]
    fn ipv4(&mut self, frame: &mut [u8], d: &mut Descriptor, l3: usize, end: usize) -> Verdict {
        let ip = decide!(Ipv4Info::parse(frame, l3, end, DropReason::MalformedIpv4));
        if self.local_addresses.contains(&ip.dst) {
            if ip.protocol != ipv4::Protocol::Udp {
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
        // RFC 2661 §8.1: the initiator sends to 1701 and the responder
        // answers from it, so one end of every L2TP datagram is 1701; other
        // UDP to our addresses (RADIUS, say) belongs to the control plane.
        if dst_port != l2tp::UDP_PORT && src_port != l2tp::UDP_PORT {
            return Break(Verdict::Punt(PuntReason::Local));
        }
        let l2tp_start = udp_start + udp::HEADER_LEN;
        let udp_end = udp_start + usize::from(datagram.len());
        let Some(Ok(message)) = frame
            .get(l2tp_start..udp_end)
            .map(l2tp::Packet::new_checked)
        else {
            return Break(Verdict::Drop(DropReason::MalformedL2tp));
        };
        if message.is_control() {
            return Break(Verdict::Punt(PuntReason::L2tpControl));
        }
        let Some(tunnel) = self.tables.tunnel(message.tunnel_id()) else {
            return Break(Verdict::Drop(DropReason::UnknownTunnel));
        };
        if tunnel.peer != SocketAddrV4::new(ip.src, src_port)
            || tunnel.local != SocketAddrV4::new(ip.dst, dst_port)
        {
            return Break(Verdict::Drop(DropReason::TunnelAddressMismatch));
        }
        let key = SessionKey {
            tunnel_id: message.tunnel_id(),
            session_id: message.session_id(),
        };
        let Some(index) = self.tables.session_index(key) else {
            return Break(Verdict::Drop(DropReason::UnknownSession));
        };
        let ppp = l2tp_start + message.header_len()..l2tp_start + message.packet_len();
        let ns = message.ns();
        let Some(session) = self.tables.session_mut(index) else {
            return Break(Verdict::Drop(DropReason::UnknownSession));
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
        let config = session.config;
        let ns = session.next_ns;
        let Some(tunnel) = self.tables.tunnel(config.key.tunnel_id).copied() else {
            return Verdict::Drop(DropReason::SessionWithoutTunnel);
        };
        let Some(neighbour) = self.tables.neighbour(tunnel.next_hop) else {
            *d = Descriptor {
                frame: d.frame,
                offset: ppp_start as u32,
                len: ppp_len as u32,
            };
            return no_neighbour(tunnel.next_hop);
        };
        let Some(&src_mac) = self.port_macs.get(usize::from(neighbour.port)) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        // RFC 2661 §5.4: when sequencing is on, every data message carries
        // Ns; Nr is reserved in data messages and sent as 0.
        let header = l2tp::HeaderRepr {
            sequence: config.sequencing.then_some((ns, 0)),
            ..l2tp::HeaderRepr::data(tunnel.peer_tunnel_id, config.peer_session_id)
        };
        let l2tp_len = header.buffer_len();
        let Some(start) = ppp_start.checked_sub(OUTER_LEN + l2tp_len) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let Some(buf) = frame.get_mut(start..ppp_start) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let (eth_buf, rest) = buf.split_at_mut(ethernet::HEADER_LEN);
        let (ip_buf, rest) = rest.split_at_mut(ipv4::HEADER_LEN);
        let (udp_buf, l2tp_buf) = rest.split_at_mut(udp::HEADER_LEN);
        let udp_payload = l2tp_len + ppp_len;
        let ident = self.next_ident;
        self.next_ident = ident.wrapping_add(1);
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
                ident,
                dont_frag: false,
                more_frags: false,
                frag_offset: 0,
                payload_len: udp::HEADER_LEN + udp_payload,
            }
            .emit(ip_buf)
            .is_ok()
            // UDP checksum 0: none (RFC 768), as RFC 2661 §8.1 allows.
            & udp::Repr {
                src_port: tunnel.local.port(),
                dst_port: tunnel.peer.port(),
                payload_len: udp_payload,
            }
            .emit(udp_buf)
            .is_ok()
            & header.emit(l2tp_buf, ppp_len).is_ok();
        if !written {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        }
        if config.sequencing {
            if let Some(s) = self.tables.session_mut(index) {
                s.next_ns = ns.wrapping_add(1);
            }
        }
        d.offset = start as u32;
        d.len = (OUTER_LEN + l2tp_len + ppp_len) as u32;
        Verdict::Forward(usize::from(neighbour.port))
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
        let Some(start) = ppp_start.checked_sub(HEAD) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let Some(buf) = frame.get_mut(start..ppp_start) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let (eth_buf, pppoe_buf) = buf.split_at_mut(ethernet::HEADER_LEN);
        let written = ethernet::Repr {
            dst_addr: binding.subscriber_mac,
            src_addr: src_mac,
            outer_tag: None,
            inner_tag: None,
            ethertype: EtherType::PppoeSession,
        }
        .emit(eth_buf)
        .is_ok()
            & pppoe::Repr {
                code: pppoe::Code::Session,
                session_id: binding.session_id,
                payload_len: ppp_len,
            }
            .emit(pppoe_buf)
            .is_ok();
        if !written {
            return Verdict::Drop(DropReason::EncapsulationFailed);
        }
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

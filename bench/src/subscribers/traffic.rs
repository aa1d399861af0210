//! The test packets and their pacing.
//!
//! Upstream, each emulated subscriber sends IPv4/UDP from its address to
//! the traffic address, inside PPP inside a PPPoE session (RFC 2516 §6:
//! no Address/Control, the PPP Protocol field then the datagram). The
//! traffic side, in its own namespace, sends plain UDP back to every
//! subscriber address. Both carry a [`Probe`] at the start of the UDP
//! payload.
//!
//! `--rate` is packets per second **in each direction, over all
//! subscribers**: the sender goes round the subscribers one packet each,
//! so each stream gets `rate / subscribers`.

use core::net::Ipv4Addr;

use dataplane::wire::ethernet::{self, Address, EtherType};
use dataplane::wire::ipv4;
use dataplane::wire::ppp::{self, Protocol};
use dataplane::wire::pppoe;
use dataplane::wire::udp;

use super::stream::{Probe, PROBE_LEN};

/// The UDP port both ends use (source and destination).
pub const PORT: u16 = 9000;

/// Headers in front of the UDP payload of an upstream frame: Ethernet
/// 14, PPPoE 6, PPP 2, IPv4 20, UDP 8.
pub const PPPOE_OVERHEAD: usize = ethernet::HEADER_LEN + pppoe::HEADER_LEN + 2 + 28;

/// Write an IPv4/UDP datagram carrying `probe` (padded to `payload_len`
/// bytes) into the start of `buf`; its length, or `None` if `buf` is too
/// short.
pub fn write_udp(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    probe: &Probe,
    payload_len: usize,
) -> Option<usize> {
    let payload_len = payload_len.max(PROBE_LEN);
    let udp = udp::Repr {
        src_port: PORT,
        dst_port: PORT,
        payload_len,
    };
    let ip = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: probe.sequence as u16,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp.total_len(),
    };
    let total = ip.total_len();
    let buf = buf.get_mut(..total)?;
    ip.emit(buf).ok()?;
    let datagram = &mut buf[ipv4::HEADER_LEN..];
    udp.emit(datagram).ok()?;
    let payload = &mut datagram[udp::HEADER_LEN..];
    payload.fill(0);
    if !probe.emit(payload) {
        return None;
    }
    udp::Packet::new_unchecked(&mut *datagram).fill_checksum(src, dst);
    Some(total)
}

/// Write a whole upstream frame: Ethernet from `mac` to `ac_mac`, PPPoE
/// session `session_id`, PPP IPv4, then [`write_udp`].
#[allow(clippy::too_many_arguments)]
pub fn write_pppoe_udp(
    buf: &mut [u8],
    mac: Address,
    ac_mac: Address,
    session_id: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    probe: &Probe,
    payload_len: usize,
) -> Option<usize> {
    let eth = ethernet::Repr {
        dst_addr: ac_mac,
        src_addr: mac,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::PppoeSession,
    };
    let at = eth.emit(buf).ok()?;
    // RFC 2516 §7: no Address/Control and no Protocol compression need
    // be negotiated; we send the Protocol in two bytes.
    let ppp = ppp::Repr {
        address_control: false,
        protocol: Protocol::Ipv4,
        compressed_protocol: false,
    };
    let ppp_at = at + pppoe::HEADER_LEN;
    let ip_at = ppp_at + ppp.buffer_len();
    let ip_len = write_udp(buf.get_mut(ip_at..)?, src, dst, probe, payload_len)?;
    ppp.emit(buf.get_mut(ppp_at..)?).ok()?;
    pppoe::Repr {
        code: pppoe::Code::Session,
        session_id,
        payload_len: ppp.buffer_len() + ip_len,
    }
    .emit(buf.get_mut(at..)?)
    .ok()?;
    Some(ip_at + ip_len)
}

/// A PPPoE session frame, read as far as the PPP frame in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFrame<'a> {
    /// The sender.
    pub src: Address,
    /// The receiver.
    pub dst: Address,
    /// PPPoE SESSION_ID.
    pub session_id: u16,
    /// The PPP frame (Protocol field first; Address/Control if the sender
    /// put them in anyway).
    pub ppp: &'a [u8],
}

/// Read a PPPoE session frame (EtherType 0x8864); `None` for anything
/// else.
pub fn read_session(frame: &[u8]) -> Option<SessionFrame<'_>> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::PppoeSession {
        return None;
    }
    let header = eth.header_len();
    let packet = pppoe::Packet::new_checked(frame.get(header..)?).ok()?;
    if packet.code() != pppoe::Code::Session {
        return None;
    }
    let len = usize::from(packet.length());
    let ppp = frame.get(header + pppoe::HEADER_LEN..header + pppoe::HEADER_LEN + len)?;
    Some(SessionFrame {
        src: eth.src_addr(),
        dst: eth.dst_addr(),
        session_id: packet.session_id(),
        ppp,
    })
}

/// The UDP payload of an IPv4 datagram to our [`PORT`]; `None` for
/// anything else (or a bad checksum).
pub fn read_udp(datagram: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let ip = ipv4::Packet::new_checked(datagram).ok()?;
    if ip.protocol() != ipv4::Protocol::Udp || ip.is_fragment() {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let header = ip.header_len();
    let total = usize::from(ip.total_len());
    let udp = udp::Packet::new_checked(datagram.get(header..total)?).ok()?;
    if udp.dst_port() != PORT {
        return None;
    }
    let len = usize::from(udp.len()).checked_sub(udp::HEADER_LEN)?;
    let payload = datagram.get(header + udp::HEADER_LEN..header + udp::HEADER_LEN + len)?;
    Some((src, dst, payload))
}

/// The UDP payload of a PPP frame carrying IPv4 to our [`PORT`].
pub fn read_ppp_udp(ppp_frame: &[u8]) -> Option<&[u8]> {
    let ppp = ppp::Packet::new_checked(ppp_frame).ok()?;
    if ppp.protocol() != Protocol::Ipv4 {
        return None;
    }
    let information = ppp_frame.get(ppp.header_len()..)?;
    read_udp(information).map(|(_, _, payload)| payload)
}

/// Paces a sender at a fixed rate: how many packets are due now.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    rate: u64,
    start_ns: u64,
    released: u64,
    burst: u64,
}

impl Pacer {
    /// `rate` packets per second from `start_ns`, at most `burst` at once
    /// (a sender that fell behind catches up in bursts of that size).
    pub fn new(rate: u64, start_ns: u64, burst: u64) -> Self {
        Pacer {
            rate,
            start_ns,
            released: 0,
            burst: burst.max(1),
        }
    }

    /// Packets to send at `now_ns`; they count as released.
    pub fn due(&mut self, now_ns: u64) -> u64 {
        let elapsed = u128::from(now_ns.saturating_sub(self.start_ns));
        let target =
            u64::try_from(elapsed * u128::from(self.rate) / 1_000_000_000).unwrap_or(u64::MAX);
        let n = target.saturating_sub(self.released).min(self.burst);
        self.released += n;
        n
    }

    /// When the next packet is due, ns (for sleeping until then).
    pub fn next_due_ns(&self) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        let at = u128::from(self.released + 1) * 1_000_000_000 / u128::from(self.rate);
        self.start_ns
            .saturating_add(u64::try_from(at).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Address = Address([2, 0, 0, 0, 0, 7]);
    const AC: Address = Address([2, 0, 0, 0, 0, 1]);

    #[test]
    fn upstream_frame_reads_back() {
        let probe = Probe {
            subscriber: 7,
            sequence: 42,
            sent_ns: 99,
        };
        let src = Ipv4Addr::new(100, 64, 0, 9);
        let dst = Ipv4Addr::new(10, 1, 0, 2);
        let mut buf = [0u8; 256];
        let n = write_pppoe_udp(&mut buf, MAC, AC, 0x1234, src, dst, &probe, 64).unwrap();
        assert_eq!(n, PPPOE_OVERHEAD + 64);
        let s = read_session(&buf[..n]).unwrap();
        assert_eq!((s.src, s.dst, s.session_id), (MAC, AC, 0x1234));
        assert_eq!(&s.ppp[..2], &[0x00, 0x21]);
        let payload = read_ppp_udp(s.ppp).unwrap();
        assert_eq!(payload.len(), 64);
        assert_eq!(Probe::parse(payload), Some(probe));
        let (from, to, _) = read_udp(&s.ppp[2..]).unwrap();
        assert_eq!((from, to), (src, dst));
        // The UDP checksum is filled and right.
        let udp = udp::Packet::new_checked(&s.ppp[2 + 20..]).unwrap();
        assert_ne!(udp.checksum(), 0);
        assert!(udp.verify_checksum(src, dst));
        // Too small a buffer is refused, not a panic.
        assert_eq!(
            write_pppoe_udp(&mut buf[..60], MAC, AC, 1, src, dst, &probe, 64),
            None
        );
    }

    #[test]
    fn other_frames_are_not_traffic() {
        assert_eq!(read_session(&[0u8; 10]), None);
        let mut lcp = vec![0u8; 14 + 6 + 6];
        lcp[12..14].copy_from_slice(&[0x88, 0x64]);
        lcp[14] = 0x11;
        lcp[19] = 6;
        lcp[20..22].copy_from_slice(&[0xc0, 0x21]);
        let s = read_session(&lcp).unwrap();
        assert_eq!(read_ppp_udp(s.ppp), None);
    }

    #[test]
    fn pacer_releases_the_rate_in_bursts() {
        let mut p = Pacer::new(1000, 1_000_000_000, 64);
        assert_eq!(p.due(1_000_000_000), 0);
        assert_eq!(p.due(1_010_000_000), 10);
        assert_eq!(p.due(1_010_000_000), 0);
        assert_eq!(p.next_due_ns(), 1_011_000_000);
        // A long stall: bursts of 64 until caught up.
        assert_eq!(p.due(2_000_000_000), 64);
        let mut total = 74;
        while total < 1000 {
            let n = p.due(2_000_000_000);
            assert!(n > 0);
            total += n;
        }
        assert_eq!(total, 1000);
    }
}

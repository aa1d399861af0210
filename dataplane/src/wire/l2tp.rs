//! The L2TPv2 header (RFC 2661 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |T|L|x|x|S|x|O|P|x|x|x|x|  Ver  |          Length (opt)         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Tunnel ID           |           Session ID          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Ns (opt)          |             Nr (opt)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Offset Size (opt)        |    Offset pad... (opt)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::field::{set_u16_at, u16_at};
use super::{check_length_field, Error, Result};

/// The UDP port of L2TP (RFC 2661 §8.1).
pub const UDP_PORT: u16 = 1701;

/// The protocol version of L2TPv2 (RFC 2661 §3.1).
pub const VERSION: u8 = 2;

/// The bits of the first header word (RFC 2661 §3.1).
mod flag {
    pub(super) const TYPE: u16 = 0x8000;
    pub(super) const LENGTH: u16 = 0x4000;
    pub(super) const SEQUENCE: u16 = 0x0800;
    pub(super) const OFFSET: u16 = 0x0200;
    pub(super) const PRIORITY: u16 = 0x0100;
    pub(super) const VERSION: u16 = 0x000f;
}

/// The smallest header: flags, Tunnel ID, Session ID.
pub const MIN_HEADER_LEN: usize = 6;

/// The header of a control message (T, L, S set; RFC 2661 §3.1).
pub const CONTROL_HEADER_LEN: usize = 12;

/// A zero-copy view of an L2TP packet.
///
/// After [`Packet::check_len`] the optional fields the flags announce are
/// covered by the buffer, and, when the L bit is set, the Length field
/// narrows the packet: bytes past it are not part of the packet (RFC 2661
/// §3.1 and the contract in [`super`]).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The meaning of an L2TP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// T bit: control message.
    pub control: bool,
    /// L bit: the Length field is present (always for control messages).
    pub length_present: bool,
    /// Tunnel ID.
    pub tunnel_id: u16,
    /// Session ID.
    pub session_id: u16,
    /// S bit with (Ns, Nr).
    pub sequence: Option<(u16, u16)>,
    /// O bit with the Offset Size (padding bytes emitted as zeros).
    pub offset_size: Option<u16>,
    /// P bit: priority (data messages only).
    pub priority: bool,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap untrusted bytes: [`Packet::check_len`] must pass.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Check that the version is L2TPv2, that the flags are legal, and that
    /// the buffer covers the header the flags announce, the offset padding
    /// and the Length.
    pub fn check_len(&self) -> Result<()> {
        let header_len = self.check_header_len()?;
        match self.length() {
            Some(length) => {
                check_length_field(self.buffer.as_ref(), header_len, usize::from(length))
            }
            None => Ok(()),
        }
    }

    /// [`Packet::check_len`] without the Length: for the start of a packet
    /// whose rest is cut off (one quoted in an ICMP error), whose header
    /// fields can then be read. Returns the header's length.
    pub fn check_header_len(&self) -> Result<usize> {
        let b = self.buffer.as_ref();
        if b.len() < 2 {
            return Err(Error::Truncated);
        }
        let flags = u16_at(b, 0);
        // RFC 2661 §3.1: "Packets received with an unknown Ver field MUST be
        // discarded". Version 1 is L2F (RFC 2341), which shares the port.
        match flags & flag::VERSION {
            2 => {}
            1 => return Err(Error::Unsupported),
            _ => return Err(Error::Malformed),
        }
        // RFC 2661 §3.1: control messages MUST have L and S set and O and P
        // clear.
        if flags & flag::TYPE != 0
            && (flags & (flag::LENGTH | flag::SEQUENCE) != flag::LENGTH | flag::SEQUENCE
                || flags & (flag::OFFSET | flag::PRIORITY) != 0)
        {
            return Err(Error::Malformed);
        }
        let fixed = fixed_header_len(flags);
        if b.len() < fixed {
            return Err(Error::Truncated);
        }
        // The Offset Size is read only now that the check covers it.
        let header_len = fixed + self.offset_size().map_or(0, usize::from);
        if b.len() < header_len {
            return Err(Error::Truncated);
        }
        Ok(header_len)
    }

    /// Unwrap the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 0)
    }

    /// The T bit: a control message.
    pub fn is_control(&self) -> bool {
        self.flags() & flag::TYPE != 0
    }

    /// The P bit: the data message should be preferred in local queues.
    pub fn priority(&self) -> bool {
        self.flags() & flag::PRIORITY != 0
    }

    /// The Ver field.
    pub fn version(&self) -> u8 {
        (self.flags() & flag::VERSION) as u8
    }

    /// The Length field, when the L bit is set.
    pub fn length(&self) -> Option<u16> {
        (self.flags() & flag::LENGTH != 0).then(|| u16_at(self.buffer.as_ref(), 2))
    }

    fn ids_at(&self) -> usize {
        if self.flags() & flag::LENGTH != 0 {
            4
        } else {
            2
        }
    }

    /// Tunnel ID (of the recipient).
    pub fn tunnel_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), self.ids_at())
    }

    /// Session ID (of the recipient).
    pub fn session_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), self.ids_at() + 2)
    }

    fn sequence_at(&self) -> Option<usize> {
        (self.flags() & flag::SEQUENCE != 0).then(|| self.ids_at() + 4)
    }

    /// Ns, when the S bit is set.
    pub fn ns(&self) -> Option<u16> {
        self.sequence_at()
            .map(|at| u16_at(self.buffer.as_ref(), at))
    }

    /// Nr, when the S bit is set.
    pub fn nr(&self) -> Option<u16> {
        self.sequence_at()
            .map(|at| u16_at(self.buffer.as_ref(), at + 2))
    }

    /// The Offset Size, when the O bit is set.
    pub fn offset_size(&self) -> Option<u16> {
        let flags = self.flags();
        (flags & flag::OFFSET != 0)
            .then(|| u16_at(self.buffer.as_ref(), fixed_header_len(flags) - 2))
    }

    /// The header length, offset padding included: where the payload starts
    /// (RFC 2661 §3.1: "the L2TP header ends after the last octet of the
    /// offset padding").
    pub fn header_len(&self) -> usize {
        fixed_header_len(self.flags()) + self.offset_size().map_or(0, usize::from)
    }

    /// The packet length: the Length field when present, else the buffer.
    pub fn packet_len(&self) -> usize {
        self.length()
            .map_or(self.buffer.as_ref().len(), usize::from)
    }

    /// The payload: a PPP frame for data messages, the AVPs for control
    /// messages. Ends at the Length when present.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.packet_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the Tunnel ID.
    pub fn set_tunnel_id(&mut self, value: u16) {
        let at = self.ids_at();
        set_u16_at(self.buffer.as_mut(), at, value);
    }

    /// Set the Session ID.
    pub fn set_session_id(&mut self, value: u16) {
        let at = self.ids_at() + 2;
        set_u16_at(self.buffer.as_mut(), at, value);
    }

    /// Set Ns. Fails with [`Error::Malformed`] when the S bit is clear.
    pub fn set_ns(&mut self, value: u16) -> Result<()> {
        let at = self.sequence_at().ok_or(Error::Malformed)?;
        set_u16_at(self.buffer.as_mut(), at, value);
        Ok(())
    }

    /// Set Nr, as a retransmission does to carry the latest acknowledgement
    /// (RFC 2661 §5.8). Fails with [`Error::Malformed`] when the S bit is
    /// clear.
    pub fn set_nr(&mut self, value: u16) -> Result<()> {
        let at = self.sequence_at().ok_or(Error::Malformed)?;
        set_u16_at(self.buffer.as_mut(), at + 2, value);
        Ok(())
    }

    /// Set the Length field. Fails with [`Error::Malformed`] when the L bit
    /// is clear.
    pub fn set_length(&mut self, value: u16) -> Result<()> {
        if self.flags() & flag::LENGTH == 0 {
            return Err(Error::Malformed);
        }
        set_u16_at(self.buffer.as_mut(), 2, value);
        Ok(())
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.packet_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The header length before the offset padding, from the flags alone.
fn fixed_header_len(flags: u16) -> usize {
    let mut len = MIN_HEADER_LEN;
    if flags & flag::LENGTH != 0 {
        len += 2;
    }
    if flags & flag::SEQUENCE != 0 {
        len += 4;
    }
    if flags & flag::OFFSET != 0 {
        len += 2;
    }
    len
}

impl HeaderRepr {
    /// The header of a control message (RFC 2661 §3.1: T, L and S set).
    pub const fn control(tunnel_id: u16, session_id: u16, ns: u16, nr: u16) -> Self {
        HeaderRepr {
            control: true,
            length_present: true,
            tunnel_id,
            session_id,
            sequence: Some((ns, nr)),
            offset_size: None,
            priority: false,
        }
    }

    /// The plain data header the fast path emits: no Length, no sequence, no
    /// offset (6 bytes).
    pub const fn data(tunnel_id: u16, session_id: u16) -> Self {
        HeaderRepr {
            control: false,
            length_present: false,
            tunnel_id,
            session_id,
            sequence: None,
            offset_size: None,
            priority: false,
        }
    }

    /// What `HeaderRepr { sequence: ns.map(|ns| (ns, 0)), ..data(..) }`
    /// emits, as fixed stores: the fast path writes one per packet. Nr is
    /// 0 because it is reserved in data messages (RFC 2661 §5.4). Returns
    /// the header length.
    #[inline]
    pub fn emit_data(
        buf: &mut [u8],
        tunnel_id: u16,
        session_id: u16,
        ns: Option<u16>,
    ) -> Result<usize> {
        let version = u16::from(VERSION);
        let ([t0, t1], [s0, s1]) = (tunnel_id.to_be_bytes(), session_id.to_be_bytes());
        match ns {
            None => {
                let [f0, f1] = version.to_be_bytes();
                let header = buf.first_chunk_mut::<6>().ok_or(Error::BufferTooSmall)?;
                *header = [f0, f1, t0, t1, s0, s1];
                Ok(6)
            }
            Some(ns) => {
                let [f0, f1] = (flag::SEQUENCE | version).to_be_bytes();
                let [n0, n1] = ns.to_be_bytes();
                let header = buf.first_chunk_mut::<10>().ok_or(Error::BufferTooSmall)?;
                *header = [f0, f1, t0, t1, s0, s1, n0, n1, 0, 0];
                Ok(10)
            }
        }
    }

    /// Read the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<HeaderRepr> {
        packet.check_len()?;
        Ok(HeaderRepr {
            control: packet.is_control(),
            length_present: packet.length().is_some(),
            tunnel_id: packet.tunnel_id(),
            session_id: packet.session_id(),
            sequence: packet.ns().zip(packet.nr()),
            offset_size: packet.offset_size(),
            priority: packet.priority(),
        })
    }

    fn flags(&self) -> u16 {
        let mut flags = u16::from(VERSION);
        if self.control {
            flags |= flag::TYPE;
        }
        if self.length_present {
            flags |= flag::LENGTH;
        }
        if self.sequence.is_some() {
            flags |= flag::SEQUENCE;
        }
        if self.offset_size.is_some() {
            flags |= flag::OFFSET;
        }
        if self.priority {
            flags |= flag::PRIORITY;
        }
        flags
    }

    /// The header length, offset padding included.
    pub fn buffer_len(&self) -> usize {
        fixed_header_len(self.flags()) + self.offset_size.map_or(0, usize::from)
    }

    /// Write the header into `buf[..buffer_len()]`, for a payload of
    /// `payload_len` bytes that follows it (the Length field counts both).
    /// The offset padding is written as zeros. A control header without L
    /// and S or with O or P is refused ([`Error::Malformed`]), as parsing
    /// would refuse it.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<()> {
        let flags = self.flags();
        if self.control
            && (!self.length_present
                || self.sequence.is_none()
                || self.offset_size.is_some()
                || self.priority)
        {
            return Err(Error::Malformed);
        }
        let header_len = self.buffer_len();
        if buf.len() < header_len {
            return Err(Error::BufferTooSmall);
        }
        set_u16_at(buf, 0, flags);
        let mut at = 2;
        if self.length_present {
            let total =
                u16::try_from(header_len + payload_len).map_err(|_| Error::BufferTooSmall)?;
            set_u16_at(buf, at, total);
            at += 2;
        }
        set_u16_at(buf, at, self.tunnel_id);
        set_u16_at(buf, at + 2, self.session_id);
        at += 4;
        if let Some((ns, nr)) = self.sequence {
            set_u16_at(buf, at, ns);
            set_u16_at(buf, at + 2, nr);
            at += 4;
        }
        if let Some(offset_size) = self.offset_size {
            set_u16_at(buf, at, offset_size);
            at += 2;
            buf[at..header_len].fill(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;
    use proptest::prelude::*;

    /// Frame 9 of /work/shared/captures/xl2tpd-lac_l2tpns-lns.pcap: l2tpns
    /// sends its first LCP Configure-Request in a data message with the
    /// plain 6-byte header (no L, S, O).
    const L2TPNS_DATA_LCP: &str =
        "0002a99673b3ff03c0210101001d010405b60304c02305066b0519f01104064e1307020a000101";

    /// Frame 8: l2tpns's ZLB acknowledgement, a control header alone.
    const L2TPNS_ZLB: &str = "c802000ca996000000020004";

    #[test]
    fn data_golden_to_fields() {
        let bytes = hex(L2TPNS_DATA_LCP);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!p.is_control());
        assert_eq!(p.version(), 2);
        assert_eq!(p.length(), None);
        assert_eq!((p.tunnel_id(), p.session_id()), (43414, 29619));
        assert_eq!((p.ns(), p.nr(), p.offset_size()), (None, None, None));
        assert_eq!(p.header_len(), 6);
        assert_eq!(&p.payload()[..4], &[0xff, 0x03, 0xc0, 0x21]);
        assert_eq!(p.payload().len(), bytes.len() - 6);
        assert_eq!(
            HeaderRepr::parse(&p).unwrap(),
            HeaderRepr::data(43414, 29619)
        );
    }

    #[test]
    fn data_fields_to_golden() {
        let bytes = hex(L2TPNS_DATA_LCP);
        let repr = HeaderRepr::data(43414, 29619);
        assert_eq!(repr.buffer_len(), 6);
        let mut buf = vec![0xa5; 6];
        repr.emit(&mut buf, bytes.len() - 6).unwrap();
        assert_eq!(buf, bytes[..6]);
    }

    #[test]
    fn zlb_golden_both_ways() {
        let bytes = hex(L2TPNS_ZLB);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.is_control());
        assert_eq!(p.length(), Some(12));
        assert_eq!((p.ns(), p.nr()), (Some(2), Some(4)));
        assert!(p.payload().is_empty());
        let repr = HeaderRepr::parse(&p).unwrap();
        assert_eq!(repr, HeaderRepr::control(43414, 0, 2, 4));
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut buf, 0).unwrap();
        assert_eq!(buf, bytes);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for golden in [L2TPNS_ZLB, L2TPNS_DATA_LCP] {
            let bytes = hex(golden);
            let header_len = Packet::new_checked(&bytes[..]).unwrap().header_len();
            for cut in 0..bytes.len() {
                let r = Packet::new_checked(&bytes[..cut]);
                // A data message without L has no length to miss: any cut
                // that keeps the header is a shorter, valid packet.
                if cut >= header_len && golden == L2TPNS_DATA_LCP {
                    assert_eq!(r.unwrap().payload().len(), cut - header_len);
                } else {
                    assert_eq!(r.unwrap_err(), Error::Truncated, "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn a_cut_off_control_message_still_shows_its_header() {
        // A control message with one AVP, quoted by an ICMP error as far as
        // its header and a little more: Length says 20, 14 bytes are here.
        let mut bytes = hex(L2TPNS_ZLB);
        bytes[3] = 20;
        bytes.extend_from_slice(&[0x80, 0x08]);
        let p = Packet::new_unchecked(&bytes[..]);
        assert_eq!(p.check_len(), Err(Error::Truncated));
        assert_eq!(p.check_header_len(), Ok(12));
        assert_eq!((p.tunnel_id(), p.ns()), (43414, Some(2)));
        for cut in 0..12 {
            let p = Packet::new_unchecked(&bytes[..cut]);
            assert_eq!(p.check_header_len(), Err(Error::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn length_narrows_the_buffer() {
        // A ZLB followed by Ethernet-style padding.
        let mut bytes = hex(L2TPNS_ZLB);
        bytes.extend_from_slice(&[0; 6]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.packet_len(), 12);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn length_shorter_than_header_is_malformed() {
        let mut bytes = hex(L2TPNS_ZLB);
        bytes[3] = 11;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn version_1_is_l2f_and_others_are_malformed() {
        let mut bytes = hex(L2TPNS_DATA_LCP);
        bytes[1] = 0x01;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Unsupported
        );
        for version in [0u8, 3, 15] {
            bytes[1] = version;
            assert_eq!(
                Packet::new_checked(&bytes[..]).unwrap_err(),
                Error::Malformed
            );
        }
    }

    #[test]
    fn control_needs_l_and_s_and_no_o_or_p() {
        let good = hex(L2TPNS_ZLB);
        // Clear L, clear S, set O, set P: each alone breaks RFC 2661 §3.1.
        for (byte, mask, set) in [
            (0, 0x40, false),
            (0, 0x08, false),
            (0, 0x02, true),
            (0, 0x01, true),
        ] {
            let mut bytes = good.clone();
            if set {
                bytes[byte] |= mask;
            } else {
                bytes[byte] &= !mask;
            }
            assert_eq!(
                Packet::new_checked(&bytes[..]).unwrap_err(),
                Error::Malformed,
                "{bytes:02x?}"
            );
        }
        let repr = HeaderRepr {
            priority: true,
            ..HeaderRepr::control(1, 2, 3, 4)
        };
        assert_eq!(repr.emit(&mut [0; 16], 0), Err(Error::Malformed));
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        // RFC 2661 §3.1: the x bits are ignored on receipt.
        let mut bytes = hex(L2TPNS_DATA_LCP);
        bytes[0] |= 0x34;
        bytes[1] |= 0xf0;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            HeaderRepr::parse(&p).unwrap(),
            HeaderRepr::data(43414, 29619)
        );
    }

    #[test]
    fn offset_padding_is_skipped() {
        // L, S and O with a 3-byte offset pad, then a 2-byte payload.
        let bytes = hex("4a02001300010002000300040003eeeeeec021");
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.offset_size(), Some(3));
        assert_eq!(p.header_len(), 17);
        assert_eq!(p.payload(), &[0xc0, 0x21]);
        let repr = HeaderRepr::parse(&p).unwrap();
        assert_eq!(repr.sequence, Some((3, 4)));
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut buf, 2).unwrap();
        // The pad goes out as zeros.
        assert_eq!(buf, hex("4a02001300010002000300040003000000"));
        // An offset pad past the end of the buffer is truncation, past the
        // Length is malformed.
        assert_eq!(
            Packet::new_checked(&bytes[..16]).unwrap_err(),
            Error::Truncated
        );
        let mut short = bytes.clone();
        short[3] = 16;
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn set_nr_refreshes_a_retransmission() {
        let mut bytes = hex(L2TPNS_ZLB);
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_nr(9).unwrap();
        p.set_ns(7).unwrap();
        p.set_tunnel_id(5);
        p.set_session_id(6);
        assert_eq!(
            (p.ns(), p.nr(), p.tunnel_id(), p.session_id()),
            (Some(7), Some(9), 5, 6)
        );
        let mut data = hex(L2TPNS_DATA_LCP);
        let mut p = Packet::new_checked(&mut data[..]).unwrap();
        assert_eq!(p.set_nr(1), Err(Error::Malformed));
        assert_eq!(p.set_length(1), Err(Error::Malformed));
        p.payload_mut()[0] = 0;
        assert_eq!(data[6], 0);
    }

    fn header_repr() -> impl Strategy<Value = HeaderRepr> {
        let control = (any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>())
            .prop_map(|(t, s, ns, nr)| HeaderRepr::control(t, s, ns, nr));
        let data = (
            any::<bool>(),
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(any::<(u16, u16)>()),
            proptest::option::of(0u16..64),
            any::<bool>(),
        )
            .prop_map(
                |(length_present, tunnel_id, session_id, sequence, offset_size, priority)| {
                    HeaderRepr {
                        control: false,
                        length_present,
                        tunnel_id,
                        session_id,
                        sequence,
                        offset_size,
                        priority,
                    }
                },
            );
        prop_oneof![control, data]
    }

    proptest! {
        #[test]
        fn emit_data_writes_what_emit_writes(t: u16, s: u16, ns: Option<u16>, ppp_len in 0usize..1500) {
            let repr = HeaderRepr { sequence: ns.map(|ns| (ns, 0)), ..HeaderRepr::data(t, s) };
            let mut expected = [0xaa; 12];
            repr.emit(&mut expected, ppp_len).unwrap();
            let mut fast = [0xaa; 12];
            prop_assert_eq!(HeaderRepr::emit_data(&mut fast, t, s, ns), Ok(repr.buffer_len()));
            prop_assert_eq!(fast, expected);
            prop_assert_eq!(HeaderRepr::emit_data(&mut fast[..repr.buffer_len() - 1], t, s, ns), Err(Error::BufferTooSmall));
        }

        #[test]
        fn header_round_trip(repr in header_repr(), payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            let len = repr.buffer_len();
            let mut buf = vec![0xa5; len + payload.len()];
            repr.emit(&mut buf, payload.len()).unwrap();
            buf[len..].copy_from_slice(&payload);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.header_len(), len);
            prop_assert_eq!(HeaderRepr::parse(&p).unwrap(), repr);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.is_control(), p.priority(), p.length(), p.tunnel_id(), p.session_id());
                let _ = (p.ns(), p.nr(), p.offset_size(), p.payload());
                let repr = HeaderRepr::parse(&p).unwrap();
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut buf, p.payload().len()).unwrap();
            }
        }
    }
}

//! The PPP frame as L2TP and PPPoE carry it: no flags, no FCS, an optional
//! Address/Control pair and a one- or two-byte Protocol (RFC 1661 §2,
//! RFC 1662 §3.1).
//!
//! ```text
//! +----------+----------+----------+----------+------------
//! | Address  | Control  |      Protocol       | Information ...
//! |   0xff   |   0x03   |  8 or 16 bits       |
//! +----------+----------+----------+----------+------------
//!   (absent with ACFC)    (8 bits with PFC)
//! ```
//!
//! Whether Address/Control is there is decided per frame from the first two
//! bytes (RFC 1661 §6.6), and whether the Protocol is compressed from the
//! low bit of its first byte (RFC 1661 §6.5), so a receiver does not need
//! to know what was negotiated: L2TP peers send 0xff 0x03 (RFC 2661 §5.3
//! leaves it to the PPP peers), PPPoE never does (RFC 2516 §7).

use super::field::{set_u16_at, u16_at};
use super::{Error, Result};

/// A PPP Protocol field value (IANA "PPP DLL Protocol Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// 0x0021: IPv4 datagrams.
    Ipv4,
    /// 0x0057: IPv6 datagrams.
    Ipv6,
    /// 0x8021: IP Control Protocol (RFC 1332).
    Ipcp,
    /// 0x8057: IPv6 Control Protocol (RFC 5072).
    Ipv6cp,
    /// 0xc021: Link Control Protocol (RFC 1661).
    Lcp,
    /// 0xc023: Password Authentication Protocol (RFC 1334).
    Pap,
    /// 0xc223: Challenge Handshake Authentication Protocol (RFC 1994).
    Chap,
    /// Any other; an LCP Protocol-Reject is the usual answer.
    Unknown(u16),
}

impl Protocol {
    /// RFC 1661 §2: the low bit of the high octet is 0 and the low bit of
    /// the low octet is 1.
    pub const fn is_valid_value(v: u16) -> bool {
        v & 0x0100 == 0 && v & 0x0001 == 1
    }

    /// RFC 1661 §6.5: only values below 0x0100 may be sent in one byte.
    pub fn is_compressible(self) -> bool {
        u16::from(self) < 0x0100
    }

    /// RFC 1661 §2: values 0x8000..=0xffff are control protocols (NCPs,
    /// LCP, authentication) that go to the control plane.
    pub fn is_control(self) -> bool {
        u16::from(self) >= 0x8000
    }
}

impl From<u16> for Protocol {
    fn from(v: u16) -> Self {
        match v {
            0x0021 => Protocol::Ipv4,
            0x0057 => Protocol::Ipv6,
            0x8021 => Protocol::Ipcp,
            0x8057 => Protocol::Ipv6cp,
            0xc021 => Protocol::Lcp,
            0xc023 => Protocol::Pap,
            0xc223 => Protocol::Chap,
            other => Protocol::Unknown(other),
        }
    }
}

impl From<Protocol> for u16 {
    fn from(p: Protocol) -> u16 {
        match p {
            Protocol::Ipv4 => 0x0021,
            Protocol::Ipv6 => 0x0057,
            Protocol::Ipcp => 0x8021,
            Protocol::Ipv6cp => 0x8057,
            Protocol::Lcp => 0xc021,
            Protocol::Pap => 0xc023,
            Protocol::Chap => 0xc223,
            Protocol::Unknown(v) => v,
        }
    }
}

/// The All-Stations address (RFC 1662 §3.1).
pub const ADDRESS: u8 = 0xff;
/// Unnumbered Information with the P/F bit clear (RFC 1662 §3.1).
pub const CONTROL: u8 = 0x03;

/// A zero-copy view of a PPP frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; accessors may panic until [`Self::check_len`]
    /// has returned `Ok`.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap untrusted bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Check that the Protocol field is there, whole and valid.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        let at = self.protocol_offset();
        let first = *b.get(at).ok_or(Error::Truncated)?;
        if first & 1 == 1 {
            return Ok(());
        }
        let second = *b.get(at + 1).ok_or(Error::Truncated)?;
        // RFC 1661 §2: "all Protocols MUST be odd".
        if second & 1 == 0 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The frame starts with 0xff 0x03 (RFC 1661 §6.6: "if they contain
    /// the values 0xff and 0x03, they are assumed to be the Address and
    /// Control fields").
    pub fn has_address_control(&self) -> bool {
        self.buffer.as_ref().starts_with(&[ADDRESS, CONTROL])
    }

    fn protocol_offset(&self) -> usize {
        if self.has_address_control() {
            2
        } else {
            0
        }
    }

    /// The Protocol field is one byte (RFC 1661 §6.5: the first byte is odd).
    pub fn is_protocol_compressed(&self) -> bool {
        self.buffer.as_ref()[self.protocol_offset()] & 1 == 1
    }

    /// Address/Control plus Protocol: where the information starts.
    pub fn header_len(&self) -> usize {
        self.protocol_offset() + if self.is_protocol_compressed() { 1 } else { 2 }
    }

    /// The Protocol.
    pub fn protocol(&self) -> Protocol {
        let at = self.protocol_offset();
        let b = self.buffer.as_ref();
        if self.is_protocol_compressed() {
            Protocol::from(u16::from(b[at]))
        } else {
            Protocol::from(u16_at(b, at))
        }
    }

    /// The information field (and any padding: PPP has no length).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The information field, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

/// The meaning of a PPP header. The information field follows it and is not
/// part of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// 0xff 0x03 present.
    pub address_control: bool,
    /// The Protocol.
    pub protocol: Protocol,
    /// The Protocol is sent in one byte.
    pub compressed_protocol: bool,
}

impl Repr {
    /// A header in the form every peer accepts: Address/Control present,
    /// Protocol in two bytes.
    pub const fn uncompressed(protocol: Protocol) -> Repr {
        Repr {
            address_control: true,
            protocol,
            compressed_protocol: false,
        }
    }

    /// Read the header of a frame.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            address_control: packet.has_address_control(),
            protocol: packet.protocol(),
            compressed_protocol: packet.is_protocol_compressed(),
        })
    }

    /// Header length: what [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        usize::from(self.address_control) * 2 + if self.compressed_protocol { 1 } else { 2 }
    }

    /// Write the header into the start of `buf`; the information goes at
    /// `buf[self.buffer_len()..]`. Returns the bytes written.
    ///
    /// One header does not read back by itself: protocol 0x00ff compressed
    /// without Address/Control, followed by information starting with 0x03,
    /// reads as Address/Control (RFC 1661 §6.6). 0x00ff is reserved, so
    /// nobody sends it; the header alone cannot tell, so it is not refused.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let value = u16::from(self.protocol);
        if !Protocol::is_valid_value(value) {
            return Err(Error::Malformed);
        }
        if self.compressed_protocol && !self.protocol.is_compressible() {
            return Err(Error::BufferTooSmall);
        }
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut at = 0;
        if self.address_control {
            buf[..2].copy_from_slice(&[ADDRESS, CONTROL]);
            at = 2;
        }
        if self.compressed_protocol {
            buf[at] = value as u8;
        } else {
            set_u16_at(buf, at, value);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::emit_with_spare;
    use proptest::prelude::*;

    /// xl2tpd-lac_l2tpns-lns.pcap frame 9, the L2TP payload: l2tpns's first
    /// LCP Configure-Request, with Address/Control as L2TP peers send it.
    const CAPTURE_L2TP_LCP: [u8; 33] = [
        0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x1d, 0x01, 0x04, 0x05, 0xb6, 0x03, 0x04, 0xc0,
        0x23, 0x05, 0x06, 0x6b, 0x05, 0x19, 0xf0, 0x11, 0x04, 0x06, 0x4e, 0x13, 0x07, 0x02, 0x0a,
        0x00, 0x01, 0x01,
    ];

    /// pppoe-subscribers_l2tpns.pcap frame 106, the PPPoE payload: a PAP
    /// Authenticate-Ack, no Address/Control as in every PPPoE frame.
    const CAPTURE_PPPOE_PAP_ACK: [u8; 7] = [0xc0, 0x23, 0x02, 0x01, 0x00, 0x05, 0x00];

    #[test]
    fn golden_to_fields() {
        let p = Packet::new_checked(&CAPTURE_L2TP_LCP[..]).unwrap();
        assert!(p.has_address_control());
        assert!(!p.is_protocol_compressed());
        assert_eq!(p.header_len(), 4);
        assert_eq!(p.protocol(), Protocol::Lcp);
        assert!(p.protocol().is_control());
        assert_eq!(p.payload(), &CAPTURE_L2TP_LCP[4..]);
        assert_eq!(Repr::parse(&p).unwrap(), Repr::uncompressed(Protocol::Lcp));

        let p = Packet::new_checked(&CAPTURE_PPPOE_PAP_ACK[..]).unwrap();
        assert!(!p.has_address_control());
        assert_eq!(p.header_len(), 2);
        assert_eq!(p.protocol(), Protocol::Pap);
        assert_eq!(p.payload(), &CAPTURE_PPPOE_PAP_ACK[2..]);
    }

    #[test]
    fn fields_to_golden() {
        let mut buf = CAPTURE_L2TP_LCP;
        buf[..4].fill(0);
        assert_eq!(Repr::uncompressed(Protocol::Lcp).emit(&mut buf), Ok(4));
        assert_eq!(buf, CAPTURE_L2TP_LCP);

        let mut buf = CAPTURE_PPPOE_PAP_ACK;
        buf[..2].fill(0);
        let r = Repr {
            address_control: false,
            protocol: Protocol::Pap,
            compressed_protocol: false,
        };
        assert_eq!(r.emit(&mut buf), Ok(2));
        assert_eq!(buf, CAPTURE_PPPOE_PAP_ACK);
    }

    #[test]
    fn compressed_forms() {
        // ACFC and PFC: IPv4 in one byte.
        let p = Packet::new_checked(&[0x21u8, 0x45][..]).unwrap();
        assert!(p.is_protocol_compressed());
        assert_eq!((p.protocol(), p.header_len()), (Protocol::Ipv4, 1));
        // Address/Control with a compressed protocol.
        let p = Packet::new_checked(&[0xffu8, 0x03, 0x57][..]).unwrap();
        assert_eq!((p.protocol(), p.header_len()), (Protocol::Ipv6, 3));
        assert!(p.payload().is_empty());
        // 0xff not followed by 0x03 is a compressed protocol 0x00ff.
        let p = Packet::new_checked(&[0xffu8, 0x05][..]).unwrap();
        assert_eq!(p.protocol(), Protocol::Unknown(0x00ff));
    }

    #[test]
    fn every_truncation() {
        for len in [0, 2, 3] {
            assert_eq!(
                Packet::new_checked(&CAPTURE_L2TP_LCP[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        // A lone 0xff is not Address/Control but a compressed 0x00ff.
        let p = Packet::new_checked(&CAPTURE_L2TP_LCP[..1]).unwrap();
        assert_eq!(p.protocol(), Protocol::Unknown(0x00ff));
        for len in 4..CAPTURE_L2TP_LCP.len() {
            let p = Packet::new_checked(&CAPTURE_L2TP_LCP[..len]).unwrap();
            assert_eq!(p.payload().len(), len - 4);
        }
        for len in 0..2 {
            assert_eq!(
                Packet::new_checked(&CAPTURE_PPPOE_PAP_ACK[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn even_protocol_is_malformed() {
        assert_eq!(
            Packet::new_checked(&[0xc0u8, 0x22][..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn emit_refuses_what_cannot_be_read_back() {
        let mut buf = [0u8; 4];
        let r = Repr {
            address_control: false,
            protocol: Protocol::Lcp,
            compressed_protocol: true,
        };
        assert_eq!(r.emit(&mut buf), Err(Error::BufferTooSmall));
        let r = Repr::uncompressed(Protocol::Unknown(0x0022));
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(
            Repr::uncompressed(Protocol::Lcp).emit(&mut buf[..3]),
            Err(Error::BufferTooSmall)
        );
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (any::<bool>(), any::<u16>(), any::<bool>()).prop_filter_map(
            "valid and readable back",
            |(address_control, v, compress)| {
                let v = (v & !0x0100) | 1;
                let protocol = Protocol::from(v);
                let compressed_protocol = compress && protocol.is_compressible();
                let r = Repr {
                    address_control,
                    protocol,
                    compressed_protocol,
                };
                (!(compressed_protocol && !address_control && v == 0xff)).then_some(r)
            },
        )
    }

    proptest! {
        #[test]
        fn round_trip(repr in arb_repr(), payload in prop::collection::vec(any::<u8>(), 0..16)) {
            let len = repr.buffer_len();
            let mut buf = emit_with_spare(len, 4, |b| repr.emit(b));
            buf.truncate(len);
            buf.extend_from_slice(&payload);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..8)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                prop_assert_eq!(p.header_len() + p.payload().len(), bytes.len());
                prop_assert!(Protocol::is_valid_value(u16::from(p.protocol())));
                let r = Repr::parse(&p).unwrap();
                let mut out = vec![0; r.buffer_len()];
                prop_assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
                prop_assert_eq!(&out[..], &bytes[..r.buffer_len()]);
            }
        }
    }
}

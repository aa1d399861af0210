//! UDP (RFC 768).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |     Source      |   Destination   |
//! |      Port       |      Port       |
//! +--------+--------+--------+--------+
//! |                 |                 |
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! |
//! |          data octets ...
//! +---------------- ...
//! ```
//!
//! The Length covers header and data and narrows the buffer. Over IPv4 the
//! checksum covers a pseudo-header (source and destination address, zero,
//! protocol 17, UDP length) and is optional: 0 means "none" (RFC 768).

use core::net::Ipv4Addr;

use super::checksum;
use super::field::{set_u16_at, u16_at};
use super::{check_length_field, Error, Result};

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// The IP protocol number of UDP, as it enters the pseudo-header.
const PROTOCOL_UDP: u8 = 17;

/// The one's complement sum of the IPv4 pseudo-header (RFC 768).
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    checksum::combine(&[
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        u16::from(PROTOCOL_UDP),
        udp_len,
    ])
}

/// A zero-copy view of a UDP datagram.
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

    /// Check that the header fits, that the Length covers it, and that the
    /// buffer holds the Length.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        check_length_field(b, HEADER_LEN, usize::from(self.len()))
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The Length field: header plus data.
    // A wire field named after RFC 768, not a collection length.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// The Checksum field (0: none was computed).
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The data, narrowed by the Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// The datagram (header and data) as the Length says.
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The checksum is absent (0) or right for this pseudo-header.
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        self.sum_with_pseudo_header(src_addr, dst_addr) == 0xffff
    }

    /// The one's complement sum over the pseudo-header and the datagram as
    /// it stands (RFC 768): all ones when the checksum in it is right.
    fn sum_with_pseudo_header(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> u16 {
        checksum::combine(&[
            pseudo_header_sum(src_addr, dst_addr, self.len()),
            checksum::sum(self.datagram()),
        ])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, port: u16) {
        set_u16_at(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16_at(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Set the Length field.
    pub fn set_len(&mut self, len: u16) {
        set_u16_at(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Set the Checksum field.
    pub fn set_checksum(&mut self, check: u16) {
        set_u16_at(self.buffer.as_mut(), field::CHECKSUM, check);
    }

    /// Compute the checksum over pseudo-header, header and data, and store
    /// it. A computed 0 is sent as 0xffff, since 0 means "none" (RFC 768).
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let sum = self.sum_with_pseudo_header(src_addr, dst_addr);
        let check = match !sum {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(check);
    }

    /// The data, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The meaning of a UDP header and the length of its data, which follows the
/// header and is not part of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Bytes of data after the header.
    pub payload_len: usize,
}

impl Repr {
    /// Read a header and check the checksum against the pseudo-header of
    /// the IPv4 packet that carried it; a wrong one is [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.payload().len(),
        })
    }

    /// The header length [`Self::emit`] writes: 8.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The Length this header announces.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write the header into the start of `buf` with checksum 0 ("none");
    /// the data goes at `buf[8..]`. Call [`Packet::fill_checksum`] once the
    /// data is in place to send a checksum. Returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = u16::try_from(self.total_len()).map_err(|_| Error::BufferTooSmall)?;
        let buf = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        set_u16_at(buf, field::SRC_PORT, self.src_port);
        set_u16_at(buf, field::DST_PORT, self.dst_port);
        set_u16_at(buf, field::LENGTH, len);
        set_u16_at(buf, field::CHECKSUM, 0);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4;
    use crate::wire::testing::{assert_every_truncation_fails, emit_with_spare};
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(239, 192, 13, 13);

    /// The UDP part of pppoe-subscribers_l2tpns.pcap frame 60.
    fn capture_heartbeat_udp() -> Vec<u8> {
        ipv4::tests::capture_heartbeat()[20..].to_vec()
    }

    fn heartbeat_repr() -> Repr {
        Repr {
            src_port: 32792,
            dst_port: 32792,
            payload_len: 510,
        }
    }

    #[test]
    fn golden_to_fields() {
        let bytes = capture_heartbeat_udp();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (32792, 32792, 518));
        assert_eq!(p.payload().len(), 510);
        assert_eq!(p.payload()[..4], [1, 0, 0, 0]);
        // Checksum offload: the sender's capture holds only the folded
        // pseudo-header sum, which is not a valid checksum.
        assert_eq!(p.checksum(), pseudo_header_sum(SRC, DST, 518));
        assert!(!p.verify_checksum(SRC, DST));
        assert_eq!(Repr::parse(&p, SRC, DST), Err(Error::Malformed));
    }

    #[test]
    fn fill_checksum_matches_a_full_computation() {
        let mut bytes = capture_heartbeat_udp();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum(SRC, DST);
        // The value the NIC put on the wire, computed independently.
        assert_eq!(p.checksum(), 0xebff);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(239, 192, 13, 14)));
        assert_eq!(Repr::parse(&p, SRC, DST).unwrap(), heartbeat_repr());
    }

    #[test]
    fn fields_to_golden() {
        let golden = capture_heartbeat_udp();
        let mut buf = golden.clone();
        buf[..8].fill(0xff);
        assert_eq!(heartbeat_repr().emit(&mut buf).unwrap(), 8);
        // The golden's checksum is the offload leftover; emit writes "none".
        assert_eq!(buf[..6], golden[..6]);
        assert_eq!(buf[6..8], [0, 0]);
        assert_eq!(buf[8..], golden[8..]);
    }

    #[test]
    fn every_truncation() {
        assert_every_truncation_fails(&capture_heartbeat_udp(), |b| Packet::new_checked(b).err());
    }

    #[test]
    fn length_narrows_and_below_header_is_malformed() {
        let mut b = [
            0x12u8, 0x34, 0x06, 0xa5, 0, 10, 0, 0, 0xab, 0xcd, 0xee, 0xee,
        ];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &[0xab, 0xcd]);
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn a_zero_sum_is_sent_as_all_ones() {
        // Find data whose checksum computes to 0 and check it goes out as
        // 0xffff: with src = dst = 0 and ports 0, the sum is the length
        // (17 + 10 for the pseudo-header length) plus the data word.
        let mut b = [0u8, 0, 0, 0, 0, 10, 0, 0, 0, 0];
        // Choose the data word so the sum is 0xffff: 10 + 17 + 10 + w.
        b[8..10].copy_from_slice(&(0xffffu16 - 37).to_be_bytes());
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn setters() {
        let mut b = capture_heartbeat_udp();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_port(1701);
        p.set_dst_port(1702);
        p.set_len(10);
        p.payload_mut().copy_from_slice(&[7, 8]);
        p.fill_checksum(SRC, DST);
        let p = Packet::new_checked(p.into_inner()).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.payload()),
            (1701, 1702, &[7u8, 8][..])
        );
        assert!(p.verify_checksum(SRC, DST));
    }

    proptest! {
        #[test]
        fn round_trip(
            src_port in any::<u16>(),
            dst_port in any::<u16>(),
            payload in prop::collection::vec(any::<u8>(), 0..200),
            src in any::<u32>(),
            dst in any::<u32>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let repr = Repr { src_port, dst_port, payload_len: payload.len() };
            let mut buf = emit_with_spare(repr.buffer_len(), payload.len(), |b| repr.emit(b));
            buf[8..].copy_from_slice(&payload);
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap(), src, dst), Ok(repr));
            let mut p = Packet::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum(src, dst);
            prop_assert_ne!(p.checksum(), 0);
            prop_assert_eq!(Repr::parse(&p, src, dst), Ok(repr));
        }

        #[test]
        fn garbage_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            if bytes.len() >= 6 && bytes[0] & 1 == 0 {
                let len = bytes.len() as u16;
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.checksum());
                let _ = p.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
                prop_assert_eq!(p.payload().len() + 8, usize::from(p.len()));
                let _ = Repr::parse(&p, Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
            }
        }
    }
}

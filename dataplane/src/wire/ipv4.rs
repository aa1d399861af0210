//! The IPv4 header (RFC 791 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |0|D|M|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The Type of Service octet is read as DSCP and ECN (RFC 2474 §3,
//! RFC 3168 §5). Options are not interpreted: IHL says how long they are and
//! the payload starts after them. The Total Length narrows the buffer, so an
//! Ethernet minimum-size padding never reaches the payload.

use core::net::Ipv4Addr;

use super::checksum;
use super::field::{set_u16_at, u16_at};
use super::{check_length_field, Error, Result};

/// The IP protocol number of the payload (IANA "Assigned Internet Protocol
/// Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// 1.
    Icmp,
    /// 2.
    Igmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 47.
    Gre,
    /// Any other.
    Unknown(u8),
}

impl From<u8> for Protocol {
    fn from(v: u8) -> Self {
        match v {
            1 => Protocol::Icmp,
            2 => Protocol::Igmp,
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            47 => Protocol::Gre,
            other => Protocol::Unknown(other),
        }
    }
}

impl From<Protocol> for u8 {
    fn from(p: Protocol) -> u8 {
        match p {
            Protocol::Icmp => 1,
            Protocol::Igmp => 2,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Gre => 47,
            Protocol::Unknown(v) => v,
        }
    }
}

mod field {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC_ADDR: usize = 12;
    pub(super) const DST_ADDR: usize = 16;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
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

    /// Check the version, that the header (with its options) fits, and that
    /// the Total Length covers the header and fits the buffer.
    ///
    /// The version is checked here because IHL means nothing for another
    /// version: without it no length below could be trusted.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = self.header_len();
        // RFC 791 §3.1: "the minimum value for a correct header is 5".
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        check_length_field(b, header_len, usize::from(self.total_len()))
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version (4 after `check_len`).
    pub fn version(&self) -> u8 {
        self.b()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services Code Point.
    pub fn dscp(&self) -> u8 {
        self.b()[field::TOS] >> 2
    }

    /// Explicit Congestion Notification.
    pub fn ecn(&self) -> u8 {
        self.b()[field::TOS] & 0x03
    }

    /// Total Length: header plus payload.
    pub fn total_len(&self) -> u16 {
        u16_at(self.b(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        u16_at(self.b(), field::IDENT)
    }

    /// Don't Fragment.
    pub fn dont_frag(&self) -> bool {
        u16_at(self.b(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments.
    pub fn more_frags(&self) -> bool {
        u16_at(self.b(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (u16_at(self.b(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        u16_at(self.b(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to Live.
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> Protocol {
        Protocol::from(self.b()[field::PROTOCOL])
    }

    /// Header Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.b(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.b();
        let a = field::SRC_ADDR;
        Ipv4Addr::new(b[a], b[a + 1], b[a + 2], b[a + 3])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.b();
        let a = field::DST_ADDR;
        Ipv4Addr::new(b[a], b[a + 1], b[a + 2], b[a + 3])
    }

    /// The header as bytes, options included.
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }

    /// The options, uninterpreted (empty for IHL 5).
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }

    /// The header checksum is right (RFC 791 §3.1: the one's complement sum
    /// over the header, checksum included, is all ones).
    pub fn verify_checksum(&self) -> bool {
        header_sum(self.header()) == 0xffff
    }

    /// The payload, between the header and the Total Length.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn b_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Set the Time to Live, leaving the checksum stale.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.b_mut()[field::TTL] = ttl;
    }

    /// Set the Time to Live and update the checksum incrementally
    /// (RFC 1624 eqn. 3), the per-packet path of a forwarder: it touches
    /// one 16-bit word instead of summing the header again.
    pub fn set_ttl_and_update_checksum(&mut self, ttl: u8) {
        let old = u16_at(self.b(), field::TTL);
        self.set_ttl(ttl);
        let new = u16_at(self.b(), field::TTL);
        let check = checksum::update(self.checksum(), old, new);
        self.set_checksum(check);
    }

    /// Set the DSCP (6 bits; higher bits are dropped).
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = self.b_mut();
        b[field::TOS] = (dscp << 2) | (b[field::TOS] & 0x03);
    }

    /// Set the Total Length.
    pub fn set_total_len(&mut self, len: u16) {
        set_u16_at(self.b_mut(), field::LENGTH, len);
    }

    /// Set the Identification.
    pub fn set_ident(&mut self, ident: u16) {
        set_u16_at(self.b_mut(), field::IDENT, ident);
    }

    /// Set the Protocol.
    pub fn set_protocol(&mut self, p: Protocol) {
        self.b_mut()[field::PROTOCOL] = p.into();
    }

    /// Set the Header Checksum field.
    pub fn set_checksum(&mut self, check: u16) {
        set_u16_at(self.b_mut(), field::CHECKSUM, check);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        let at = field::SRC_ADDR;
        self.b_mut()[at..at + 4].copy_from_slice(&a.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        let at = field::DST_ADDR;
        self.b_mut()[at..at + 4].copy_from_slice(&a.octets());
    }

    /// Compute the header checksum from scratch and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::checksum(self.header());
        self.set_checksum(check);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.b_mut()[range]
    }
}

/// [`checksum::sum`] of a header, 32 bits at a time: the one's-complement
/// sum does not care how the words are grouped (RFC 1071 §2(B)), and a
/// header is a whole number of 32-bit words, so this is a handful of adds
/// instead of a loop over 16-bit words. Every router sums every header
/// twice (verify, then rewrite), so this is on the per-packet path.
#[inline]
pub(crate) fn header_sum(header: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = header.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    // Empty for a checked header; summed so that any slice sums right (the
    // tail starts on a 16-bit boundary, so its words line up).
    acc += u64::from(checksum::sum(words.remainder()));
    fold64(acc)
}

/// Fold a 64-bit one's-complement accumulator to 16 bits.
#[inline]
pub(crate) fn fold64(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The meaning of an IPv4 header (without options) and the length of its
/// payload, which follows the header and is not part of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: Protocol,
    /// Time to Live.
    pub ttl: u8,
    /// DSCP, 0..64.
    pub dscp: u8,
    /// ECN, 0..4.
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes, a multiple of 8.
    pub frag_offset: u16,
    /// Payload length: Total Length minus the header.
    pub payload_len: usize,
}

impl Repr {
    /// Read a header; options are skipped, a wrong checksum is
    /// [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            payload_len: packet.payload().len(),
        })
    }

    /// The header length [`Self::emit`] writes: always 20 (no options).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The Total Length this header announces.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write the header, checksum included, into the start of `buf`; the
    /// payload goes at `buf[20..]`. Returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total = u16::try_from(self.total_len()).map_err(|_| Error::BufferTooSmall)?;
        if self.dscp > 0x3f || self.ecn > 3 || self.frag_offset % 8 != 0 {
            return Err(Error::BufferTooSmall);
        }
        // 13 bits of 8-byte units reach 65528: the top of u16, so no check.
        let mut flg_off = self.frag_offset >> 3;
        if self.dont_frag {
            flg_off |= FLAG_DF;
        }
        if self.more_frags {
            flg_off |= FLAG_MF;
        }
        let buf = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        buf[field::VER_IHL] = 0x45;
        buf[field::TOS] = self.dscp << 2 | self.ecn;
        set_u16_at(buf, field::LENGTH, total);
        set_u16_at(buf, field::IDENT, self.ident);
        set_u16_at(buf, field::FLG_OFF, flg_off);
        buf[field::TTL] = self.ttl;
        buf[field::PROTOCOL] = self.protocol.into();
        set_u16_at(buf, field::CHECKSUM, 0);
        buf[field::SRC_ADDR..field::SRC_ADDR + 4].copy_from_slice(&self.src_addr.octets());
        buf[field::DST_ADDR..field::DST_ADDR + 4].copy_from_slice(&self.dst_addr.octets());
        let check = !header_sum(buf);
        set_u16_at(buf, field::CHECKSUM, check);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::testing::{assert_every_truncation_fails, emit_with_spare, hex};
    use proptest::prelude::*;

    /// pppoe-subscribers_l2tpns.pcap frame 60 from the IPv4 header on: an
    /// l2tpns cluster heartbeat, 10.0.2.2:32792 → 239.192.13.13:32792, TTL 1,
    /// DF. Captured on the sending host, so its UDP checksum is the partial
    /// (pseudo-header only) value that checksum offload leaves behind.
    pub(crate) fn capture_heartbeat() -> Vec<u8> {
        hex(&[
            "4500021a3c934000011132710a000202efc00d0d8018801802060ae7010000000a0000000a00000010000000d317056b",
            "0a0002030500000006000000000000000200000038040000d400000048010000050000001f0000000000000006000000",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000000000000000000000000000000000000c00000001000000840101820202098102d4058c",
            "04dd17056bb804dd17056b9004dd17056b8404dd17056bffffffffffb70102840101ffff8e000c000000020000008401",
            "01820202098102d4058c04dd17056bb804dd17056b9004dd17056b8404dd17056bffffffffffb70102840102ffff8e00",
            "0c00000003000000840101820202098102d4058c04dd17056bb804dd17056b9004dd17056b8404dd17056bffffffffff",
            "b70102840103ffff8e000c00000004000000840101820202098102d4058c04dd17056bb804dd17056b9004dd17056b84",
            "04dd17056bffffffffffb70102840104ffff8e000c00000005000000840101820202098102d4058c04dd17056bb804dd",
            "17056b9004dd17056b8404dd17056bffffffffffb70102840105ffff8e000d00000001000000900101ffffb9000d0000",
            "000200000001028302010181040aa506048101018101028101018304dd17056b8806dd17056b766dffff8c06c0950422",
            "a3558201028101018d00",
        ]
        .concat())
    }

    fn heartbeat_repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(10, 0, 2, 2),
            dst_addr: Ipv4Addr::new(239, 192, 13, 13),
            protocol: Protocol::Udp,
            ttl: 1,
            dscp: 0,
            ecn: 0,
            ident: 0x3c93,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len: 518,
        }
    }

    #[test]
    fn golden_to_fields() {
        let bytes = capture_heartbeat();
        assert_eq!(bytes.len(), 538);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 538);
        assert_eq!(p.ident(), 0x3c93);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.protocol(), Protocol::Udp);
        assert_eq!(p.checksum(), 0x3271);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 518);
        assert_eq!(p.payload()[..4], [0x80, 0x18, 0x80, 0x18]);
        assert_eq!(Repr::parse(&p).unwrap(), heartbeat_repr());
    }

    #[test]
    fn fields_to_golden() {
        let golden = capture_heartbeat();
        let mut buf = golden.clone();
        buf[..20].fill(0);
        assert_eq!(heartbeat_repr().emit(&mut buf).unwrap(), 20);
        assert_eq!(buf, golden);
    }

    #[test]
    fn every_truncation() {
        assert_every_truncation_fails(&capture_heartbeat(), |b| Packet::new_checked(b).err());
    }

    #[test]
    fn total_length_narrows() {
        let mut bytes = capture_heartbeat();
        bytes.extend_from_slice(&[0xee; 6]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload().len(), 518);
        assert_eq!(Repr::parse(&p).unwrap().payload_len, 518);
    }

    #[test]
    fn bad_headers() {
        let golden = capture_heartbeat();
        let mut b = golden.clone();
        b[0] = 0x65; // version 6
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let mut b = golden.clone();
        b[0] = 0x44; // IHL 4
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let mut b = golden.clone();
        b[0] = 0x4f; // IHL 15: 60 bytes of header fit, but not with ...
        b[2..4].copy_from_slice(&40u16.to_be_bytes()); // a Total Length of 40
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let mut b = golden;
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6 with a Router Alert option (RFC 2113), as IGMP sends.
        let mut b = vec![
            0x46, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0, 10, 0, 0, 1, 224, 0, 0, 22, 0x94, 4, 0, 0,
        ];
        b.extend_from_slice(&[0x22, 0, 0, 0]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert_eq!(p.payload(), &[0x22, 0, 0, 0]);
        assert_eq!(Repr::parse(&p).unwrap().payload_len, 4);
    }

    #[test]
    fn ttl_update_is_incremental_and_right() {
        let mut b = capture_heartbeat();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        for ttl in [0u8, 64, 255, 254, 1] {
            p.set_ttl_and_update_checksum(ttl);
            assert_eq!(p.ttl(), ttl);
            assert!(p.verify_checksum(), "ttl {ttl}");
        }
        p.set_ttl(9);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn setters() {
        let mut b = capture_heartbeat();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_addr(Ipv4Addr::new(192, 0, 2, 1));
        p.set_dst_addr(Ipv4Addr::new(198, 51, 100, 7));
        p.set_ident(7);
        p.set_dscp(46);
        p.set_protocol(Protocol::Tcp);
        p.set_total_len(21);
        p.payload_mut()[0] = 0x99;
        p.fill_checksum();
        let p = Packet::new_checked(p.into_inner()).unwrap();
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!((p.ident(), p.dscp(), p.ecn()), (7, 46, 0));
        assert_eq!(p.protocol(), Protocol::Tcp);
        assert_eq!(p.payload(), &[0x99]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn emit_refuses_values_that_do_not_fit() {
        let mut buf = [0u8; 20];
        let mut r = heartbeat_repr();
        r.payload_len = 65516;
        assert_eq!(r.emit(&mut buf), Err(Error::BufferTooSmall));
        let mut r = heartbeat_repr();
        r.frag_offset = 4;
        assert_eq!(r.emit(&mut buf), Err(Error::BufferTooSmall));
        let mut r = heartbeat_repr();
        r.dscp = 64;
        assert_eq!(r.emit(&mut buf), Err(Error::BufferTooSmall));
        assert_eq!(
            heartbeat_repr().emit(&mut buf[..19]),
            Err(Error::BufferTooSmall)
        );
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            (any::<u32>(), any::<u32>(), any::<u8>(), any::<u8>()),
            (0u8..64, 0u8..4, any::<u16>()),
            (any::<bool>(), any::<bool>(), 0u16..8192),
            0usize..300,
        )
            .prop_map(
                |((src, dst, protocol, ttl), (dscp, ecn, ident), (df, mf, off), payload_len)| {
                    Repr {
                        src_addr: Ipv4Addr::from(src),
                        dst_addr: Ipv4Addr::from(dst),
                        protocol: Protocol::from(protocol),
                        ttl,
                        dscp,
                        ecn,
                        ident,
                        dont_frag: df,
                        more_frags: mf,
                        frag_offset: off * 8,
                        payload_len,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn header_sum_is_the_rfc_1071_sum(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(header_sum(&bytes), checksum::sum(&bytes));
        }

        #[test]
        fn round_trip(repr in arb_repr()) {
            // The spare bytes stand for the payload and 4 bytes past it.
            let buf = emit_with_spare(repr.buffer_len(), repr.payload_len + 4, |b| repr.emit(b));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn garbage_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            // Make a valid-looking start likely so the accessors get exercised.
            if let Some(b) = bytes.first_mut() {
                *b = 0x40 | (*b & 0x0f);
            }
            if bytes.len() >= 4 && bytes[1] & 1 == 0 {
                let len = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.dscp(), p.ecn(), p.ident(), p.dont_frag(), p.more_frags());
                let _ = (p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol());
                let _ = (p.src_addr(), p.dst_addr(), p.options(), p.verify_checksum());
                prop_assert!(p.payload().len() + p.header_len() <= bytes.len());
                if let Ok(r) = Repr::parse(&p) {
                    prop_assert_eq!(r.payload_len, p.payload().len());
                }
            }
        }
    }
}

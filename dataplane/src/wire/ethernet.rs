//! Ethernet II frames (IEEE 802.3 clause 3.2.6 "Length/Type"), with zero, one
//! or two IEEE 802.1Q / 802.1ad VLAN tags.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination MAC address                    |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                      Source MAC address                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   TPID 0x88a8 or 0x8100 (opt) | PCP |D|   VLAN id (opt)       |  outer tag
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   TPID 0x8100 (opt)           | PCP |D|   VLAN id (opt)       |  inner tag
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           EtherType           |  Payload ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The header is 14, 18 or 22 bytes long: each tag inserts four bytes before
//! the EtherType. A frame with a third tag is [`Error::Unsupported`]: no
//! access network we serve stacks more than two, and refusing it keeps the
//! promise that [`Frame::ethertype`] is never a tag protocol identifier.
//! The frame check sequence is not part of the buffer (the NIC strips it).

use core::fmt;

use super::field::{set_u16_at, u16_at};
use super::{Error, Result};

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Address = Address([0xff; 6]);

    /// The address from the first six bytes of `b`.
    ///
    /// Returns `None` if `b` is shorter than six bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Address> {
        Some(Address(b.get(..6)?.try_into().ok()?))
    }

    /// The six bytes of the address.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The I/G bit is set: a group address (this includes broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Neither group nor all-zero: an address a single station may own.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The EtherType (or tag protocol identifier) of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806.
    Arp,
    /// 0x86dd.
    Ipv6,
    /// 0x8863: PPPoE Discovery stage (RFC 2516 §4).
    PppoeDiscovery,
    /// 0x8864: PPPoE Session stage (RFC 2516 §4).
    PppoeSession,
    /// 0x8100: IEEE 802.1Q customer VLAN tag.
    Vlan,
    /// 0x88a8: IEEE 802.1ad service VLAN tag (the outer tag of QinQ).
    QinQ,
    /// Anything else, including 802.3 length values below 0x0600.
    Unknown(u16),
}

impl EtherType {
    /// Whether this value introduces a VLAN tag rather than a payload.
    pub const fn is_vlan_tag(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8863 => EtherType::PppoeDiscovery,
            0x8864 => EtherType::PppoeSession,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::PppoeDiscovery => 0x8863,
            EtherType::PppoeSession => 0x8864,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Unknown(v) => v,
        }
    }
}

/// One 802.1Q / 802.1ad tag: the TPID and the tag control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// [`EtherType::Vlan`] (0x8100) or [`EtherType::QinQ`] (0x88a8).
    pub tpid: EtherType,
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 0..=4095.
    pub vid: u16,
}

impl VlanTag {
    fn from_tci(tpid: EtherType, tci: u16) -> VlanTag {
        VlanTag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    fn tci(&self) -> Result<u16> {
        if !self.tpid.is_vlan_tag() {
            return Err(Error::Malformed);
        }
        if self.pcp > 7 || self.vid > 0x0fff {
            return Err(Error::BufferTooSmall);
        }
        Ok(u16::from(self.pcp) << 13 | u16::from(self.dei) << 12 | self.vid)
    }
}

mod field {
    use core::ops::Range;

    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    /// Where the first EtherType-or-TPID sits.
    pub(super) const TYPE: usize = 12;
}

/// Length of an untagged header.
pub const HEADER_LEN: usize = 14;
/// Bytes one VLAN tag adds.
pub const TAG_LEN: usize = 4;
/// The most tags a frame may carry.
pub const MAX_TAGS: usize = 2;

/// A zero-copy view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

/// The view under the name every codec uses.
pub type Packet<T> = Frame<T>;

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap without checking; accessors may panic until [`Self::check_len`]
    /// has returned `Ok`.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wrap untrusted bytes.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Check that the header, including every tag it announces, fits.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        let mut at = field::TYPE;
        for _ in 0..=MAX_TAGS {
            if b.len() < at + 2 {
                return Err(Error::Truncated);
            }
            if !EtherType::from(u16_at(b, at)).is_vlan_tag() {
                return Ok(());
            }
            at += TAG_LEN;
        }
        // A third tag.
        Err(Error::Unsupported)
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Number of VLAN tags, 0..=2.
    pub fn tag_count(&self) -> usize {
        let b = self.buffer.as_ref();
        let mut n = 0;
        while n < MAX_TAGS && EtherType::from(u16_at(b, field::TYPE + n * TAG_LEN)).is_vlan_tag() {
            n += 1;
        }
        n
    }

    /// Header length: 14 plus 4 per tag.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.tag_count() * TAG_LEN
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Address {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        Address(a)
    }

    /// Source address.
    pub fn src_addr(&self) -> Address {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        Address(a)
    }

    /// The `index`th tag from the outside (0 = outer), if present.
    pub fn tag(&self, index: usize) -> Option<VlanTag> {
        if index >= self.tag_count() {
            return None;
        }
        let b = self.buffer.as_ref();
        let at = field::TYPE + index * TAG_LEN;
        Some(VlanTag::from_tci(
            EtherType::from(u16_at(b, at)),
            u16_at(b, at + 2),
        ))
    }

    /// The EtherType after the tags: never [`EtherType::Vlan`] or
    /// [`EtherType::QinQ`] once `check_len` passed.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(u16_at(self.buffer.as_ref(), self.header_len() - 2))
    }

    /// Everything after the header (including any Ethernet padding: the
    /// protocol inside narrows it with its own length field).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: Address) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&a.0);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, a: Address) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&a.0);
    }

    /// Set the EtherType after the tags. Setting a TPID here would change
    /// the header length, so it is refused.
    pub fn set_ethertype(&mut self, t: EtherType) -> Result<()> {
        if t.is_vlan_tag() {
            return Err(Error::Malformed);
        }
        let at = self.header_len() - 2;
        set_u16_at(self.buffer.as_mut(), at, t.into());
        Ok(())
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

/// The meaning of an Ethernet header. The payload follows it and is not part
/// of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Destination address.
    pub dst_addr: Address,
    /// Source address.
    pub src_addr: Address,
    /// The outer tag (802.1ad S-tag or a single 802.1Q tag).
    pub outer_tag: Option<VlanTag>,
    /// The inner tag; only with an outer tag.
    pub inner_tag: Option<VlanTag>,
    /// The EtherType of the payload.
    pub ethertype: EtherType,
}

impl Repr {
    /// Read the header of a frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            outer_tag: frame.tag(0),
            inner_tag: frame.tag(1),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length: what [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + usize::from(self.outer_tag.is_some()) * TAG_LEN
            + usize::from(self.inner_tag.is_some()) * TAG_LEN
    }

    /// Write the header into the start of `buf`; the payload goes at
    /// `buf[self.buffer_len()..]`. Returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if self.ethertype.is_vlan_tag() || (self.inner_tag.is_some() && self.outer_tag.is_none()) {
            return Err(Error::Malformed);
        }
        let tags = [self.outer_tag, self.inner_tag];
        let mut tcis = [0u16; MAX_TAGS];
        for (tci, tag) in tcis.iter_mut().zip(tags.iter()) {
            if let Some(tag) = tag {
                *tci = tag.tci()?;
            }
        }
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        buf[field::DESTINATION].copy_from_slice(&self.dst_addr.0);
        buf[field::SOURCE].copy_from_slice(&self.src_addr.0);
        let mut at = field::TYPE;
        for (tag, tci) in tags.iter().zip(tcis) {
            if let Some(tag) = tag {
                set_u16_at(buf, at, tag.tpid.into());
                set_u16_at(buf, at + 2, tci);
                at += TAG_LEN;
            }
        }
        set_u16_at(buf, at, self.ethertype.into());
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::emit_with_spare;
    use proptest::prelude::*;

    /// pppoe-subscribers_l2tpns.pcap frame 4: a subscriber's PADI,
    /// broadcast, untagged.
    const CAPTURE_PADI: [u8; 64] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x63, 0x11,
        0x09, 0x00, 0x00, 0x00, 0x2c, 0x01, 0x01, 0x00, 0x00, 0x01, 0x05, 0x00, 0x24, 0x00, 0x00,
        0x0d, 0xe9, 0x01, 0x17, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2f, 0x30, 0x2e, 0x30,
        0x2e, 0x30, 0x2e, 0x30, 0x20, 0x65, 0x74, 0x68, 0x20, 0x30, 0x3a, 0x31, 0x02, 0x05, 0x4c,
        0x41, 0x42, 0x2e, 0x31,
    ];

    /// A double-tagged (S-tag 100, C-tag 7 with PCP 5) PPPoE session header,
    /// as an access switch hands subscribers to a BNG.
    const QINQ_HEADER: [u8; 22] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xea, 0x51, 0xf2, 0x2b, 0x63, 0x5d, 0x88, 0xa8, 0x00,
        0x64, 0x81, 0x00, 0xa0, 0x07, 0x88, 0x64,
    ];

    fn padi_repr() -> Repr {
        Repr {
            dst_addr: Address::BROADCAST,
            src_addr: Address([2, 0, 0, 0, 0, 1]),
            outer_tag: None,
            inner_tag: None,
            ethertype: EtherType::PppoeDiscovery,
        }
    }

    fn qinq_repr() -> Repr {
        Repr {
            dst_addr: Address([2, 0, 0, 0, 0, 1]),
            src_addr: Address([0xea, 0x51, 0xf2, 0x2b, 0x63, 0x5d]),
            outer_tag: Some(VlanTag {
                tpid: EtherType::QinQ,
                pcp: 0,
                dei: false,
                vid: 100,
            }),
            inner_tag: Some(VlanTag {
                tpid: EtherType::Vlan,
                pcp: 5,
                dei: false,
                vid: 7,
            }),
            ethertype: EtherType::PppoeSession,
        }
    }

    #[test]
    fn golden_padi_to_fields() {
        let f = Frame::new_checked(&CAPTURE_PADI[..]).unwrap();
        assert_eq!(f.dst_addr(), Address::BROADCAST);
        assert!(f.dst_addr().is_broadcast() && f.dst_addr().is_multicast());
        assert_eq!(f.src_addr().to_string(), "02:00:00:00:00:01");
        assert!(f.src_addr().is_unicast());
        assert_eq!(f.tag_count(), 0);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.ethertype(), EtherType::PppoeDiscovery);
        assert_eq!(f.payload().len(), 50);
        assert_eq!(f.payload()[..2], [0x11, 0x09]);
        assert_eq!(Repr::parse(&f).unwrap(), padi_repr());
    }

    #[test]
    fn fields_to_golden_padi() {
        let mut buf = CAPTURE_PADI;
        buf[..14].fill(0);
        assert_eq!(padi_repr().emit(&mut buf).unwrap(), 14);
        assert_eq!(buf, CAPTURE_PADI);
    }

    #[test]
    fn golden_qinq() {
        let f = Frame::new_checked(&QINQ_HEADER[..]).unwrap();
        assert_eq!(f.tag_count(), 2);
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.ethertype(), EtherType::PppoeSession);
        assert!(f.payload().is_empty());
        assert_eq!(Repr::parse(&f).unwrap(), qinq_repr());
        let mut buf = [0u8; 22];
        assert_eq!(qinq_repr().emit(&mut buf).unwrap(), 22);
        assert_eq!(buf, QINQ_HEADER);
    }

    #[test]
    fn setters() {
        let mut buf = QINQ_HEADER;
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr(Address([1; 6]));
        f.set_src_addr(Address([3; 6]));
        f.set_ethertype(EtherType::Ipv4).unwrap();
        assert_eq!(f.set_ethertype(EtherType::Vlan), Err(Error::Malformed));
        assert_eq!(f.dst_addr(), Address([1; 6]));
        assert_eq!(f.src_addr(), Address([3; 6]));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.tag(1).unwrap().vid, 7);
        assert_eq!(f.into_inner()[20..], [0x08, 0x00]);
    }

    #[test]
    fn every_truncation() {
        for (golden, header) in [(&CAPTURE_PADI[..], 14), (&QINQ_HEADER[..], 22)] {
            for len in 0..golden.len() {
                let r = Frame::new_checked(&golden[..len]);
                if len < header {
                    assert_eq!(r.unwrap_err(), Error::Truncated, "len {len}");
                } else {
                    assert_eq!(r.unwrap().payload().len(), len - header);
                }
            }
        }
    }

    #[test]
    fn third_tag_is_unsupported() {
        let mut buf = [0u8; 26];
        buf[..20].copy_from_slice(&QINQ_HEADER[..20]);
        buf[20..22].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(
            Frame::new_checked(&buf[..]).unwrap_err(),
            Error::Unsupported
        );
    }

    #[test]
    fn emit_refuses_bad_reprs() {
        let mut buf = [0u8; 22];
        let mut r = qinq_repr();
        r.ethertype = EtherType::Vlan;
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let mut r = qinq_repr();
        r.outer_tag = None;
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let mut r = qinq_repr();
        r.inner_tag.as_mut().unwrap().vid = 4096;
        assert_eq!(r.emit(&mut buf), Err(Error::BufferTooSmall));
        let mut r = qinq_repr();
        r.inner_tag.as_mut().unwrap().tpid = EtherType::Ipv4;
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(qinq_repr().emit(&mut buf[..21]), Err(Error::BufferTooSmall));
    }

    fn arb_tag() -> impl Strategy<Value = VlanTag> {
        (
            prop_oneof![Just(EtherType::Vlan), Just(EtherType::QinQ)],
            0u8..8,
            any::<bool>(),
            0u16..4096,
        )
            .prop_map(|(tpid, pcp, dei, vid)| VlanTag {
                tpid,
                pcp,
                dei,
                vid,
            })
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            prop::option::of((arb_tag(), prop::option::of(arb_tag()))),
            any::<u16>().prop_filter("not a TPID", |t| !EtherType::from(*t).is_vlan_tag()),
        )
            .prop_map(|(dst, src, tags, ethertype)| Repr {
                dst_addr: Address(dst),
                src_addr: Address(src),
                outer_tag: tags.map(|t| t.0),
                inner_tag: tags.and_then(|t| t.1),
                ethertype: EtherType::from(ethertype),
            })
    }

    proptest! {
        #[test]
        fn round_trip(repr in arb_repr(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let len = repr.buffer_len();
            let mut buf = emit_with_spare(len, payload.len() + 8, |b| repr.emit(b));
            buf.truncate(len);
            buf.extend_from_slice(&payload);
            let f = Frame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&f).unwrap(), repr);
            prop_assert_eq!(f.payload(), &payload[..]);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&bytes[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.tag(0), f.tag(1), f.tag(2));
                prop_assert!(!f.ethertype().is_vlan_tag());
                prop_assert_eq!(f.payload().len(), bytes.len() - f.header_len());
                let r = Repr::parse(&f).unwrap();
                let mut out = vec![0; r.buffer_len()];
                r.emit(&mut out).unwrap();
                prop_assert_eq!(&out[..], &bytes[..r.buffer_len()]);
            }
        }
    }
}

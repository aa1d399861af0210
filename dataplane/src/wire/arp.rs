//! ARP (RFC 826), read in general and represented for Ethernet/IPv4, the
//! only pairing the LNS core side and the lab use.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Hardware Type         |         Protocol Type         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  HW Addr Len  | Proto Addr Len|           Operation           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Sender Hardware Address (HW Addr Len bytes) ...
//! |  Sender Protocol Address (Proto Addr Len bytes) ...
//! |  Target Hardware Address (HW Addr Len bytes) ...
//! |  Target Protocol Address (Proto Addr Len bytes) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The address fields are as long as the length octets say, so the view
//! checks them before giving any out. Bytes after the target protocol
//! address are Ethernet padding.

use core::net::Ipv4Addr;

use super::ethernet::{self, EtherType};
use super::field::{set_u16_at, u16_at};
use super::{Error, Result};

/// Hardware Type 1: Ethernet (10Mb), as every Ethernet speaks it.
pub const HARDWARE_ETHERNET: u16 = 1;

/// The Operation field (RFC 826; IANA "ARP operation codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// 1.
    Request,
    /// 2.
    Reply,
    /// Any other (RARP, InARP ...).
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(v) => v,
        }
    }
}

mod field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    pub(super) const SHA: usize = 8;
}

/// Length of the fixed part before the addresses.
pub const HEADER_LEN: usize = 8;

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// A zero-copy view of an ARP packet.
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

    /// Check that the fixed part and the four addresses its lengths
    /// announce fit.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN || b.len() < self.packet_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Hardware Type.
    pub fn hardware_type(&self) -> u16 {
        u16_at(self.b(), field::HTYPE)
    }

    /// Protocol Type (an EtherType).
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(u16_at(self.b(), field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.b()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.b()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> Operation {
        Operation::from(u16_at(self.b(), field::OPER))
    }

    /// The length of the packet the fixed part describes.
    pub fn packet_len(&self) -> usize {
        HEADER_LEN + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    fn hw(&self) -> usize {
        usize::from(self.hardware_len())
    }

    fn proto(&self) -> usize {
        usize::from(self.protocol_len())
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> &[u8] {
        let at = field::SHA;
        &self.b()[at..at + self.hw()]
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> &[u8] {
        let at = field::SHA + self.hw();
        &self.b()[at..at + self.proto()]
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        let at = field::SHA + self.hw() + self.proto();
        &self.b()[at..at + self.hw()]
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        let at = field::SHA + 2 * self.hw() + self.proto();
        &self.b()[at..at + self.proto()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the Operation.
    pub fn set_operation(&mut self, op: Operation) {
        set_u16_at(self.buffer.as_mut(), field::OPER, op.into());
    }
}

/// The meaning of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Operation.
    pub operation: Operation,
    /// Sender MAC.
    pub source_hardware_addr: ethernet::Address,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_hardware_addr: ethernet::Address,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl Repr {
    /// A gratuitous ARP announcing that `ip` is at `mac`: a request for its
    /// own address, which refreshes the caches of the whole segment (what a
    /// peer LNS sends after adopting a subscriber address, DESIGN.md §3).
    pub fn gratuitous(mac: ethernet::Address, ip: Ipv4Addr) -> Repr {
        Repr {
            operation: Operation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: ip,
            target_hardware_addr: ethernet::Address([0; 6]),
            target_protocol_addr: ip,
        }
    }

    /// Read an ARP packet; anything but Ethernet/IPv4 is
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let mac = |b: &[u8]| {
            let mut a = [0; 6];
            a.copy_from_slice(b);
            ethernet::Address(a)
        };
        Ok(Repr {
            operation: packet.operation(),
            source_hardware_addr: mac(packet.source_hardware_addr()),
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: mac(packet.target_hardware_addr()),
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// 28 bytes.
    pub fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Write the packet into the start of `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let buf = buf
            .get_mut(..ETHERNET_IPV4_LEN)
            .ok_or(Error::BufferTooSmall)?;
        set_u16_at(buf, field::HTYPE, HARDWARE_ETHERNET);
        set_u16_at(buf, field::PTYPE, EtherType::Ipv4.into());
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        set_u16_at(buf, field::OPER, self.operation.into());
        buf[8..14].copy_from_slice(&self.source_hardware_addr.0);
        buf[14..18].copy_from_slice(&self.source_protocol_addr.octets());
        buf[18..24].copy_from_slice(&self.target_hardware_addr.0);
        buf[24..28].copy_from_slice(&self.target_protocol_addr.octets());
        Ok(ETHERNET_IPV4_LEN)
    }
}

/// Length of the frame [`emit_announcement`] writes: the Ethernet header
/// and the ARP packet, padded to the 60 bytes of a minimum Ethernet frame
/// without its FCS (IEEE 802.3 §3.2.8: a port that sends it as it is, as
/// AF_XDP may, then sends a valid frame).
pub const ANNOUNCEMENT_LEN: usize = 60;

/// Write a gratuitous ARP announcing that `ip` is at `mac` as a whole
/// untagged Ethernet frame into the start of `buf`: RFC 5227 §3 "ARP
/// Announcement", an ARP Request with sender and target protocol address
/// both `ip` and the target hardware address zero, broadcast. Every host
/// and switch of the segment then sends `ip` to `mac`, as a peer LNS
/// wants once it has adopted a subscriber (DESIGN.md §3). Returns
/// [`ANNOUNCEMENT_LEN`]; [`Error::BufferTooSmall`] when it does not fit.
pub fn emit_announcement(mac: ethernet::Address, ip: Ipv4Addr, buf: &mut [u8]) -> Result<usize> {
    let frame = buf
        .get_mut(..ANNOUNCEMENT_LEN)
        .ok_or(Error::BufferTooSmall)?;
    let at = ethernet::Repr {
        dst_addr: ethernet::Address::BROADCAST,
        src_addr: mac,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::Arp,
    }
    .emit(frame)?;
    let (_, payload) = frame.split_at_mut(at);
    let written = Repr::gratuitous(mac, ip).emit(payload)?;
    payload[written..].fill(0);
    Ok(ANNOUNCEMENT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{
        assert_emits_golden, assert_every_truncation_fails, emit_with_spare,
    };
    use proptest::prelude::*;

    /// pppoe-subscribers_l2tpns.pcap frame 1 after Ethernet: who has
    /// 10.0.2.2? tell 10.0.2.1.
    const CAPTURE_REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x6a, 0x48, 0x80, 0xc4, 0x02, 0xfb, 0x0a,
        0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x02,
    ];

    /// Frame 3: 10.0.2.2 is at ee:eb:80:72:3a:08.
    const CAPTURE_REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0xee, 0xeb, 0x80, 0x72, 0x3a, 0x08, 0x0a,
        0x00, 0x02, 0x02, 0x6a, 0x48, 0x80, 0xc4, 0x02, 0xfb, 0x0a, 0x00, 0x02, 0x01,
    ];

    const HOST_A: ethernet::Address = ethernet::Address([0x6a, 0x48, 0x80, 0xc4, 0x02, 0xfb]);
    const HOST_B: ethernet::Address = ethernet::Address([0xee, 0xeb, 0x80, 0x72, 0x3a, 0x08]);

    fn goldens() -> [(&'static [u8; 28], Repr); 2] {
        [
            (
                &CAPTURE_REQUEST,
                Repr {
                    operation: Operation::Request,
                    source_hardware_addr: HOST_A,
                    source_protocol_addr: Ipv4Addr::new(10, 0, 2, 1),
                    target_hardware_addr: ethernet::Address([0; 6]),
                    target_protocol_addr: Ipv4Addr::new(10, 0, 2, 2),
                },
            ),
            (
                &CAPTURE_REPLY,
                Repr {
                    operation: Operation::Reply,
                    source_hardware_addr: HOST_B,
                    source_protocol_addr: Ipv4Addr::new(10, 0, 2, 2),
                    target_hardware_addr: HOST_A,
                    target_protocol_addr: Ipv4Addr::new(10, 0, 2, 1),
                },
            ),
        ]
    }

    #[test]
    fn golden_to_fields() {
        let p = Packet::new_checked(&CAPTURE_REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::Ipv4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.source_hardware_addr(), HOST_A.as_bytes());
        assert_eq!(p.source_protocol_addr(), &[10, 0, 2, 1]);
        assert_eq!(p.target_hardware_addr(), &[0; 6]);
        assert_eq!(p.target_protocol_addr(), &[10, 0, 2, 2]);
        for (bytes, repr) in goldens() {
            let p = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Repr::parse(&p), Ok(repr));
        }
    }

    #[test]
    fn fields_to_golden() {
        for (bytes, repr) in goldens() {
            assert_emits_golden(bytes, repr.buffer_len(), |b| repr.emit(b));
        }
    }

    #[test]
    fn every_truncation() {
        for (bytes, _) in goldens() {
            assert_every_truncation_fails(bytes, |b| Packet::new_checked(b).err());
        }
    }

    #[test]
    fn other_address_families_are_read_but_not_represented() {
        // An IPv4-over-something-else packet with 8-byte hardware addresses.
        let mut b = vec![0x00, 0x20, 0x08, 0x00, 0x08, 0x04, 0x00, 0x01];
        b.extend_from_slice(&[0x11; 24]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.packet_len(), 32);
        assert_eq!(p.target_hardware_addr(), &[0x11; 8]);
        assert_eq!(Repr::parse(&p), Err(Error::Unsupported));
        assert_eq!(Packet::new_checked(&b[..31]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn gratuitous() {
        let r = Repr::gratuitous(HOST_B, Ipv4Addr::new(10, 0, 2, 2));
        let mut buf = [0u8; 28];
        r.emit(&mut buf).unwrap();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.source_protocol_addr(), p.target_protocol_addr());
        assert_eq!(r.emit(&mut buf[..27]), Err(Error::BufferTooSmall));
    }

    /// RFC 5227 §3 byte by byte: broadcast, EtherType ARP, a Request
    /// from 02:00:00:00:00:20 whose sender and target IP are both
    /// 198.51.100.7 and whose target MAC is zero, then zero padding.
    #[test]
    fn announcement_golden() {
        let golden = crate::wire::testing::hex(concat!(
            "ffffffffffff",
            "020000000020",
            "0806",
            "0001",
            "0800",
            "06",
            "04",
            "0001",
            "020000000020",
            "c6336407",
            "000000000000",
            "c6336407",
            "000000000000000000000000000000000000",
        ));
        let mac = ethernet::Address([2, 0, 0, 0, 0, 0x20]);
        let ip = Ipv4Addr::new(198, 51, 100, 7);
        assert_emits_golden(&golden, ANNOUNCEMENT_LEN, |b| emit_announcement(mac, ip, b));
        let buf = emit_with_spare(ANNOUNCEMENT_LEN, 4, |b| emit_announcement(mac, ip, b));
        let eth = ethernet::Frame::new_checked(&buf[..ANNOUNCEMENT_LEN]).unwrap();
        assert!(eth.dst_addr().is_broadcast());
        let p = Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(Repr::parse(&p), Ok(Repr::gratuitous(mac, ip)));
        for short in 0..ANNOUNCEMENT_LEN {
            let mut b = vec![0; short];
            assert_eq!(
                emit_announcement(mac, ip, &mut b),
                Err(Error::BufferTooSmall)
            );
        }
    }

    #[test]
    fn reply_in_place() {
        let mut b = CAPTURE_REQUEST;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_operation(Operation::Reply);
        assert_eq!(p.operation(), Operation::Reply);
        assert_eq!(p.into_inner()[6..8], [0, 2]);
    }

    proptest! {
        #[test]
        fn round_trip(op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<u32>(),
                      tha in any::<[u8; 6]>(), tpa in any::<u32>()) {
            let repr = Repr {
                operation: Operation::from(op),
                source_hardware_addr: ethernet::Address(sha),
                source_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: ethernet::Address(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            };
            let buf = emit_with_spare(repr.buffer_len(), 4, |b| repr.emit(b));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
        }

        #[test]
        fn garbage_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if bytes.len() >= 6 {
                bytes[4] %= 12;
                bytes[5] %= 12;
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.operation());
                let addrs = [
                    p.source_hardware_addr().len(),
                    p.source_protocol_addr().len(),
                    p.target_hardware_addr().len(),
                    p.target_protocol_addr().len(),
                ];
                prop_assert_eq!(HEADER_LEN + addrs.iter().sum::<usize>(), p.packet_len());
                let _ = Repr::parse(&p);
            }
        }
    }
}

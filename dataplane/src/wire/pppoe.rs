//! PPPoE (RFC 2516 §4): the header shared by the Discovery (EtherType
//! 0x8863) and Session (0x8864) stages, and the Discovery stage's tags.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  VER  | TYPE  |      CODE     |          SESSION_ID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            LENGTH             |           payload             ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A Discovery payload is a list of tags (RFC 2516 §4 and Appendix A):
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          TAG_TYPE             |        TAG_LENGTH             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          TAG_VALUE ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A Session payload is a PPP frame without Address/Control
//! ([`super::ppp`]). LENGTH narrows the buffer: Ethernet pads short frames
//! (a PADT is 20 bytes of 60).

use super::field::{set_u16_at, u16_at};
use super::{Error, Result};

/// The VER and TYPE nibbles: both 1 (RFC 2516 §4).
pub const VERSION_TYPE: u8 = 0x11;

/// Length of the PPPoE header.
pub const HEADER_LEN: usize = 6;

/// Length of a tag's type and length fields.
pub const TAG_HEADER_LEN: usize = 4;

/// The Broadband Forum's enterprise number: the Vendor-Specific tag of a
/// TR-101 PPPoE intermediate agent (Agent-Circuit-Id, Agent-Remote-Id).
pub const VENDOR_ID_BBF: u32 = 3561;

/// The CODE field (RFC 2516 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 0x00: a Session stage packet.
    Session,
    /// 0x07: Active Discovery Offer.
    Pado,
    /// 0x09: Active Discovery Initiation.
    Padi,
    /// 0x19: Active Discovery Request.
    Padr,
    /// 0x65: Active Discovery Session-confirmation.
    Pads,
    /// 0xa7: Active Discovery Terminate.
    Padt,
    /// Any other.
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Self {
        match v {
            0x00 => Code::Session,
            0x07 => Code::Pado,
            0x09 => Code::Padi,
            0x19 => Code::Padr,
            0x65 => Code::Pads,
            0xa7 => Code::Padt,
            other => Code::Unknown(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        match c {
            Code::Session => 0x00,
            Code::Pado => 0x07,
            Code::Padi => 0x09,
            Code::Padr => 0x19,
            Code::Pads => 0x65,
            Code::Padt => 0xa7,
            Code::Unknown(v) => v,
        }
    }
}

mod field {
    pub(super) const VER_TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const SESSION_ID: usize = 2;
    pub(super) const LENGTH: usize = 4;
}

/// A Discovery tag (RFC 2516 Appendix A, RFC 4638 §4).
///
/// Values are borrowed from the packet. A known tag whose value has the
/// wrong size (End-Of-List with a value, a Vendor-Specific tag shorter than
/// its vendor id, a PPP-Max-Payload that is not two bytes) reads as
/// [`Tag::Unknown`]: the discovery server then treats it like any tag it
/// does not understand instead of dropping the whole packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag<'a> {
    /// 0x0000: no further tags (its length MUST be zero).
    EndOfList,
    /// 0x0101: the service asked for or offered; empty means any service.
    ServiceName(&'a [u8]),
    /// 0x0102: the access concentrator's name.
    AcName(&'a [u8]),
    /// 0x0103: opaque host data the AC echoes back.
    HostUniq(&'a [u8]),
    /// 0x0104: opaque AC data the host echoes back in PADR.
    AcCookie(&'a [u8]),
    /// 0x0105: the first four bytes are the vendor's enterprise number.
    VendorSpecific {
        /// IANA enterprise number ([`VENDOR_ID_BBF`] for TR-101 agents).
        vendor_id: u32,
        /// The rest of the value.
        data: &'a [u8],
    },
    /// 0x0110: added by a relay, echoed back.
    RelaySessionId(&'a [u8]),
    /// 0x0120: the largest PPP payload the host can take (RFC 4638 §4).
    PppMaxPayload(u16),
    /// 0x0201: the requested service cannot be honoured.
    ServiceNameError(&'a [u8]),
    /// 0x0202: the AC has an error (out of resources, for example).
    AcSystemError(&'a [u8]),
    /// 0x0203: any other error.
    GenericError(&'a [u8]),
    /// Any other tag type.
    Unknown {
        /// TAG_TYPE.
        kind: u16,
        /// TAG_VALUE.
        value: &'a [u8],
    },
}

impl<'a> Tag<'a> {
    /// Interpret one tag's type and value.
    pub fn parse(kind: u16, value: &'a [u8]) -> Tag<'a> {
        match (kind, value) {
            (0x0000, []) => Tag::EndOfList,
            (0x0101, _) => Tag::ServiceName(value),
            (0x0102, _) => Tag::AcName(value),
            (0x0103, _) => Tag::HostUniq(value),
            (0x0104, _) => Tag::AcCookie(value),
            (0x0105, [a, b, c, d, data @ ..]) => Tag::VendorSpecific {
                vendor_id: u32::from_be_bytes([*a, *b, *c, *d]),
                data,
            },
            (0x0110, _) => Tag::RelaySessionId(value),
            (0x0120, [hi, lo]) => Tag::PppMaxPayload(u16::from_be_bytes([*hi, *lo])),
            (0x0201, _) => Tag::ServiceNameError(value),
            (0x0202, _) => Tag::AcSystemError(value),
            (0x0203, _) => Tag::GenericError(value),
            _ => Tag::Unknown { kind, value },
        }
    }

    /// TAG_TYPE.
    pub fn kind(&self) -> u16 {
        match self {
            Tag::EndOfList => 0x0000,
            Tag::ServiceName(_) => 0x0101,
            Tag::AcName(_) => 0x0102,
            Tag::HostUniq(_) => 0x0103,
            Tag::AcCookie(_) => 0x0104,
            Tag::VendorSpecific { .. } => 0x0105,
            Tag::RelaySessionId(_) => 0x0110,
            Tag::PppMaxPayload(_) => 0x0120,
            Tag::ServiceNameError(_) => 0x0201,
            Tag::AcSystemError(_) => 0x0202,
            Tag::GenericError(_) => 0x0203,
            Tag::Unknown { kind, .. } => *kind,
        }
    }

    /// TAG_LENGTH.
    pub fn value_len(&self) -> usize {
        match self {
            Tag::EndOfList => 0,
            Tag::VendorSpecific { data, .. } => 4 + data.len(),
            Tag::PppMaxPayload(_) => 2,
            Tag::ServiceName(v)
            | Tag::AcName(v)
            | Tag::HostUniq(v)
            | Tag::AcCookie(v)
            | Tag::RelaySessionId(v)
            | Tag::ServiceNameError(v)
            | Tag::AcSystemError(v)
            | Tag::GenericError(v)
            | Tag::Unknown { value: v, .. } => v.len(),
        }
    }

    /// Bytes the tag takes on the wire.
    pub fn buffer_len(&self) -> usize {
        TAG_HEADER_LEN + self.value_len()
    }

    /// Write the tag into the start of `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let value_len = u16::try_from(self.value_len()).map_err(|_| Error::BufferTooSmall)?;
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        set_u16_at(buf, 0, self.kind());
        set_u16_at(buf, 2, value_len);
        let value = &mut buf[TAG_HEADER_LEN..];
        match self {
            Tag::EndOfList => {}
            Tag::VendorSpecific { vendor_id, data } => {
                value[..4].copy_from_slice(&vendor_id.to_be_bytes());
                value[4..].copy_from_slice(data);
            }
            Tag::PppMaxPayload(max) => value.copy_from_slice(&max.to_be_bytes()),
            Tag::ServiceName(v)
            | Tag::AcName(v)
            | Tag::HostUniq(v)
            | Tag::AcCookie(v)
            | Tag::RelaySessionId(v)
            | Tag::ServiceNameError(v)
            | Tag::AcSystemError(v)
            | Tag::GenericError(v)
            | Tag::Unknown { value: v, .. } => value.copy_from_slice(v),
        }
        Ok(len)
    }
}

/// The tags of a Discovery payload, in order.
///
/// Yields an error once and then stops if a tag's length runs past the
/// payload; stops after End-Of-List
/// (RFC 2516 Appendix A: "no further TAGs in the list").
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    rest: &'a [u8],
}

impl<'a> Tags<'a> {
    /// Iterate over the tags in `payload`.
    pub const fn new(payload: &'a [u8]) -> Tags<'a> {
        Tags { rest: payload }
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Result<Tag<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        if rest.len() < TAG_HEADER_LEN {
            return Some(Err(Error::Truncated));
        }
        let kind = u16_at(rest, 0);
        let end = TAG_HEADER_LEN + usize::from(u16_at(rest, 2));
        let Some(value) = rest.get(TAG_HEADER_LEN..end) else {
            return Some(Err(Error::Truncated));
        };
        let tag = Tag::parse(kind, value);
        if tag != Tag::EndOfList {
            self.rest = &rest[end..];
        }
        Some(Ok(tag))
    }
}

/// A zero-copy view of a PPPoE packet.
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

    /// Check that the header fits, that VER and TYPE are 1, and that the
    /// buffer holds LENGTH bytes of payload.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        // RFC 2516 §4: VER and TYPE "MUST be set to 0x1"; another version
        // would be another protocol.
        if b[field::VER_TYPE] != VERSION_TYPE {
            return Err(Error::Unsupported);
        }
        if b.len() < HEADER_LEN + usize::from(self.length()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// VER (1 after `check_len`).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// TYPE (1 after `check_len`).
    pub fn pppoe_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// CODE.
    pub fn code(&self) -> Code {
        Code::from(self.buffer.as_ref()[field::CODE])
    }

    /// SESSION_ID (0 before PADS assigns one).
    pub fn session_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SESSION_ID)
    }

    /// LENGTH: bytes of payload.
    pub fn length(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// The payload, narrowed by LENGTH.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.length())]
    }

    /// The tags of a Discovery payload.
    pub fn tags(&self) -> Tags<'_> {
        Tags::new(self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set CODE.
    pub fn set_code(&mut self, code: Code) {
        self.buffer.as_mut()[field::CODE] = code.into();
    }

    /// Set SESSION_ID.
    pub fn set_session_id(&mut self, id: u16) {
        set_u16_at(self.buffer.as_mut(), field::SESSION_ID, id);
    }

    /// Set LENGTH.
    pub fn set_length(&mut self, len: u16) {
        set_u16_at(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.length());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The meaning of a PPPoE header and the length of its payload, which
/// follows it and is not part of the representation: what the fast path
/// prepends to a PPP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// CODE.
    pub code: Code,
    /// SESSION_ID.
    pub session_id: u16,
    /// LENGTH.
    pub payload_len: usize,
}

impl Repr {
    /// Read a header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            code: packet.code(),
            session_id: packet.session_id(),
            payload_len: usize::from(packet.length()),
        })
    }

    /// Header length: what [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into the start of `buf`; the payload goes at
    /// `buf[6..]`. Returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let length = u16::try_from(self.payload_len).map_err(|_| Error::BufferTooSmall)?;
        emit_header(buf, self.code, self.session_id, length)
    }
}

fn emit_header(buf: &mut [u8], code: Code, session_id: u16, length: u16) -> Result<usize> {
    let buf = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
    buf[field::VER_TYPE] = VERSION_TYPE;
    buf[field::CODE] = code.into();
    set_u16_at(buf, field::SESSION_ID, session_id);
    set_u16_at(buf, field::LENGTH, length);
    Ok(HEADER_LEN)
}

/// The meaning of a whole Discovery packet. Owns its tag list (the
/// Discovery stage runs in the control plane); tag values borrow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscoveryRepr<'a> {
    /// CODE.
    pub code: Code,
    /// SESSION_ID (0 except in PADS and PADT).
    pub session_id: u16,
    /// The tags in order.
    pub tags: Vec<Tag<'a>>,
}

impl<'a> DiscoveryRepr<'a> {
    /// Read a Discovery packet; any bad tag fails the whole packet.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<DiscoveryRepr<'a>> {
        packet.check_len()?;
        let buffer: &'a [u8] = T::as_ref(packet.buffer);
        let payload = &buffer[HEADER_LEN..HEADER_LEN + usize::from(packet.length())];
        Ok(DiscoveryRepr {
            code: packet.code(),
            session_id: packet.session_id(),
            tags: Tags::new(payload).collect::<Result<_>>()?,
        })
    }

    /// The first tag of the given type, if any.
    pub fn find(&self, kind: u16) -> Option<&Tag<'a>> {
        self.tags.iter().find(|t| t.kind() == kind)
    }

    /// Header plus every tag.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.tags.iter().map(Tag::buffer_len).sum::<usize>()
    }

    /// Write the packet into the start of `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let length = u16::try_from(len - HEADER_LEN).map_err(|_| Error::BufferTooSmall)?;
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        emit_header(buf, self.code, self.session_id, length)?;
        let mut at = HEADER_LEN;
        for tag in &self.tags {
            at += tag.emit(&mut buf[at..])?;
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{
        assert_emits_golden, assert_every_truncation_fails, emit_with_spare,
    };
    use proptest::prelude::*;

    /// pppoe-subscribers_l2tpns.pcap frame 4 after Ethernet: a PADI with an
    /// empty Service-Name and a BBF Vendor-Specific tag (TR-101 circuit and
    /// remote id).
    const CAPTURE_PADI: [u8; 50] = [
        0x11, 0x09, 0x00, 0x00, 0x00, 0x2c, 0x01, 0x01, 0x00, 0x00, 0x01, 0x05, 0x00, 0x24, 0x00,
        0x00, 0x0d, 0xe9, 0x01, 0x17, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2f, 0x30, 0x2e,
        0x30, 0x2e, 0x30, 0x2e, 0x30, 0x20, 0x65, 0x74, 0x68, 0x20, 0x30, 0x3a, 0x31, 0x02, 0x05,
        0x4c, 0x41, 0x42, 0x2e, 0x31,
    ];

    /// Frame 9: l2tpns's PADO with AC-Name, Service-Name and AC-Cookie.
    const CAPTURE_PADO: [u8; 44] = [
        0x11, 0x07, 0x00, 0x00, 0x00, 0x26, 0x01, 0x02, 0x00, 0x0a, 0x6c, 0x32, 0x74, 0x70, 0x6e,
        0x73, 0x2d, 0x6c, 0x61, 0x63, 0x01, 0x01, 0x00, 0x00, 0x01, 0x04, 0x00, 0x10, 0xa3, 0x7d,
        0x6f, 0xbe, 0x5a, 0x32, 0x94, 0x91, 0x1f, 0x9b, 0x74, 0x75, 0x39, 0xa8, 0xc5, 0x1f,
    ];

    /// Frame 14: the subscriber's PADR echoing the cookie.
    const CAPTURE_PADR: [u8; 70] = [
        0x11, 0x19, 0x00, 0x00, 0x00, 0x40, 0x01, 0x01, 0x00, 0x00, 0x01, 0x04, 0x00, 0x10, 0xa3,
        0x7d, 0x6f, 0xbe, 0x5a, 0x32, 0x94, 0x91, 0x1f, 0x9b, 0x74, 0x75, 0x39, 0xa8, 0xc5, 0x1f,
        0x01, 0x05, 0x00, 0x24, 0x00, 0x00, 0x0d, 0xe9, 0x01, 0x17, 0x30, 0x2e, 0x30, 0x2e, 0x30,
        0x2e, 0x30, 0x2f, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x20, 0x65, 0x74, 0x68, 0x20,
        0x30, 0x3a, 0x31, 0x02, 0x05, 0x4c, 0x41, 0x42, 0x2e, 0x31,
    ];

    /// Frame 19: l2tpns's PADS assigning session 1.
    const CAPTURE_PADS: [u8; 24] = [
        0x11, 0x65, 0x00, 0x01, 0x00, 0x12, 0x01, 0x02, 0x00, 0x0a, 0x6c, 0x32, 0x74, 0x70, 0x6e,
        0x73, 0x2d, 0x6c, 0x61, 0x63, 0x01, 0x01, 0x00, 0x00,
    ];

    /// Frame 201: the subscriber's PADT for session 1.
    const CAPTURE_PADT: [u8; 6] = [0x11, 0xa7, 0x00, 0x01, 0x00, 0x00];

    /// Frame 20: a Session packet carrying l2tpns's LCP Configure-Request.
    const CAPTURE_SESSION_LCP: [u8; 37] = [
        0x11, 0x00, 0x00, 0x01, 0x00, 0x1f, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x1d, 0x01, 0x04, 0x05,
        0xb6, 0x03, 0x04, 0xc0, 0x23, 0x05, 0x06, 0x6b, 0x05, 0x17, 0xdd, 0x11, 0x04, 0x06, 0x4e,
        0x13, 0x07, 0x02, 0x0a, 0x00, 0x02, 0x03,
    ];

    const COOKIE: &[u8] = &[
        0xa3, 0x7d, 0x6f, 0xbe, 0x5a, 0x32, 0x94, 0x91, 0x1f, 0x9b, 0x74, 0x75, 0x39, 0xa8, 0xc5,
        0x1f,
    ];

    const TR101: &[u8] = b"\x01\x170.0.0.0/0.0.0.0 eth 0:1\x02\x05LAB.1";

    fn padi() -> DiscoveryRepr<'static> {
        DiscoveryRepr {
            code: Code::Padi,
            session_id: 0,
            tags: vec![
                Tag::ServiceName(b""),
                Tag::VendorSpecific {
                    vendor_id: VENDOR_ID_BBF,
                    data: TR101,
                },
            ],
        }
    }

    fn pado() -> DiscoveryRepr<'static> {
        DiscoveryRepr {
            code: Code::Pado,
            session_id: 0,
            tags: vec![
                Tag::AcName(b"l2tpns-lac"),
                Tag::ServiceName(b""),
                Tag::AcCookie(COOKIE),
            ],
        }
    }

    fn padr() -> DiscoveryRepr<'static> {
        DiscoveryRepr {
            code: Code::Padr,
            session_id: 0,
            tags: vec![
                Tag::ServiceName(b""),
                Tag::AcCookie(COOKIE),
                Tag::VendorSpecific {
                    vendor_id: VENDOR_ID_BBF,
                    data: TR101,
                },
            ],
        }
    }

    fn pads() -> DiscoveryRepr<'static> {
        DiscoveryRepr {
            code: Code::Pads,
            session_id: 1,
            tags: vec![Tag::AcName(b"l2tpns-lac"), Tag::ServiceName(b"")],
        }
    }

    fn padt() -> DiscoveryRepr<'static> {
        DiscoveryRepr {
            code: Code::Padt,
            session_id: 1,
            tags: vec![],
        }
    }

    fn goldens() -> [(&'static [u8], DiscoveryRepr<'static>); 5] {
        [
            (&CAPTURE_PADI, padi()),
            (&CAPTURE_PADO, pado()),
            (&CAPTURE_PADR, padr()),
            (&CAPTURE_PADS, pads()),
            (&CAPTURE_PADT, padt()),
        ]
    }

    #[test]
    fn golden_discovery_to_fields() {
        for (bytes, repr) in goldens() {
            let p = Packet::new_checked(bytes).unwrap();
            assert_eq!((p.version(), p.pppoe_type()), (1, 1));
            assert_eq!(p.code(), repr.code);
            assert_eq!(p.session_id(), repr.session_id);
            assert_eq!(usize::from(p.length()), bytes.len() - 6);
            assert_eq!(DiscoveryRepr::parse(&p).unwrap(), repr);
        }
        let p = Packet::new_checked(&CAPTURE_PADO[..]).unwrap();
        let ac_name = DiscoveryRepr::parse(&p).unwrap().find(0x0102).copied();
        assert_eq!(ac_name, Some(Tag::AcName(b"l2tpns-lac")));
    }

    #[test]
    fn fields_to_golden_discovery() {
        for (bytes, repr) in goldens() {
            assert_emits_golden(bytes, repr.buffer_len(), |b| repr.emit(b));
        }
    }

    #[test]
    fn golden_session() {
        let p = Packet::new_checked(&CAPTURE_SESSION_LCP[..]).unwrap();
        let repr = Repr {
            code: Code::Session,
            session_id: 1,
            payload_len: 31,
        };
        assert_eq!(Repr::parse(&p), Ok(repr));
        assert_eq!(p.payload(), &CAPTURE_SESSION_LCP[6..]);
        let mut buf = CAPTURE_SESSION_LCP;
        buf[..6].fill(0);
        assert_eq!(repr.emit(&mut buf), Ok(6));
        assert_eq!(buf, CAPTURE_SESSION_LCP);
    }

    #[test]
    fn every_truncation() {
        let all: [&[u8]; 6] = [
            &CAPTURE_PADI,
            &CAPTURE_PADO,
            &CAPTURE_PADR,
            &CAPTURE_PADS,
            &CAPTURE_PADT,
            &CAPTURE_SESSION_LCP,
        ];
        for bytes in all {
            assert_every_truncation_fails(bytes, |b| Packet::new_checked(b).err());
        }
    }

    #[test]
    fn length_narrows_ethernet_padding() {
        // A PADT padded to the 46-byte Ethernet minimum payload.
        let mut b = [0u8; 46];
        b[..6].copy_from_slice(&CAPTURE_PADT);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(DiscoveryRepr::parse(&p).unwrap(), padt());
    }

    #[test]
    fn bad_tags_fail_cleanly() {
        // A tag length running past LENGTH (Host-Uniq of 9 in 8 bytes).
        let b = [0x11, 0x09, 0, 0, 0, 8, 0x01, 0x03, 0, 9, 1, 2, 3, 4];
        let p = Packet::new_checked(&b[..]).unwrap();
        let tags: Vec<_> = p.tags().collect();
        assert_eq!(tags, vec![Err(Error::Truncated)]);
        assert_eq!(DiscoveryRepr::parse(&p), Err(Error::Truncated));
        // Three stray bytes after a good tag.
        let b = [0x11, 0x09, 0, 0, 0, 7, 0x01, 0x01, 0, 0, 1, 2, 3];
        let p = Packet::new_checked(&b[..]).unwrap();
        let tags: Vec<_> = p.tags().collect();
        assert_eq!(tags, vec![Ok(Tag::ServiceName(b"")), Err(Error::Truncated)]);
        // Known tags of the wrong size read as unknown ones.
        for (kind, value) in [
            (0x0000u16, &[1u8][..]),
            (0x0105, &[0, 0, 1]),
            (0x0120, &[5]),
        ] {
            assert_eq!(Tag::parse(kind, value), Tag::Unknown { kind, value });
        }
    }

    #[test]
    fn end_of_list_ends_the_list() {
        let b = [
            0x11, 0x09, 0, 0, 0, 10, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
        ];
        let p = Packet::new_checked(&b[..]).unwrap();
        let tags: Vec<_> = p.tags().collect();
        assert_eq!(tags, vec![Ok(Tag::ServiceName(b"")), Ok(Tag::EndOfList)]);
    }

    #[test]
    fn wrong_version_is_unsupported() {
        let mut b = CAPTURE_PADT;
        b[0] = 0x21;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn setters() {
        let mut b = CAPTURE_SESSION_LCP;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_code(Code::Padt);
        p.set_session_id(0x1234);
        p.set_length(2);
        p.payload_mut().copy_from_slice(&[0xc0, 0x23]);
        assert_eq!(
            (p.code(), p.session_id(), p.payload()),
            (Code::Padt, 0x1234, &[0xc0u8, 0x23][..])
        );
        assert_eq!(
            p.into_inner()[..8],
            [0x11, 0xa7, 0x12, 0x34, 0, 2, 0xc0, 0x23]
        );
    }

    fn arb_code() -> impl Strategy<Value = Code> {
        any::<u8>().prop_map(Code::from)
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..12)
    }

    /// Tags as (kind, value) pairs, mostly of the right size for their kind.
    fn arb_tag_spec() -> impl Strategy<Value = (u16, Vec<u8>)> {
        (
            prop_oneof![
                Just(0x0101u16),
                Just(0x0102),
                Just(0x0103),
                Just(0x0104),
                Just(0x0105),
                Just(0x0110),
                Just(0x0120),
                Just(0x0201),
                Just(0x0202),
                Just(0x0203),
                0x0001u16..0xffff,
            ],
            arb_bytes(),
        )
            .prop_map(|(kind, mut value)| {
                match kind {
                    0x0105 => value.splice(0..0, [0, 0, 0x0d, 0xe9]).for_each(drop),
                    0x0120 => value.resize(2, 0x05),
                    _ => {}
                }
                (kind, value)
            })
    }

    proptest! {
        #[test]
        fn discovery_round_trip(
            code in arb_code(),
            session_id in any::<u16>(),
            specs in prop::collection::vec(arb_tag_spec(), 0..6),
            end in any::<bool>(),
        ) {
            let mut tags: Vec<Tag<'_>> =
                specs.iter().map(|(kind, value)| Tag::parse(*kind, value)).collect();
            if end {
                tags.push(Tag::EndOfList);
            }
            let repr = DiscoveryRepr { code, session_id, tags };
            let buf = emit_with_spare(repr.buffer_len(), 4, |b| repr.emit(b));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(DiscoveryRepr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn header_round_trip(code in arb_code(), session_id in any::<u16>(), payload in arb_bytes()) {
            let repr = Repr { code, session_id, payload_len: payload.len() };
            let mut buf = vec![0u8; 6];
            prop_assert_eq!(repr.emit(&mut buf), Ok(repr.buffer_len()));
            buf.extend_from_slice(&payload);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn garbage_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            if bytes.len() >= 6 {
                bytes[0] = VERSION_TYPE;
                let len = (bytes.len() - 6) as u16;
                if bytes[1] & 1 == 0 {
                    bytes[4..6].copy_from_slice(&len.to_be_bytes());
                }
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.code(), p.session_id(), p.payload());
                let n = p.tags().count();
                prop_assert!(n <= p.payload().len() / 4 + 1);
                if let Ok(r) = DiscoveryRepr::parse(&p) {
                    let mut out = vec![0; r.buffer_len()];
                    prop_assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
                    let again = DiscoveryRepr::parse(&Packet::new_checked(&out[..]).unwrap());
                    prop_assert_eq!(again, Ok(r));
                }
            }
        }
    }
}

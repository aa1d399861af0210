//! The raw AVP layer of L2TPv2 (RFC 2661 §4.1) and AVP hiding (§4.3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |M|H| rsvd  |      Length       |           Vendor ID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Attribute Type        |        Attribute Value...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                     [until Length is reached]...                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! This layer knows nothing of attribute meanings: [`super::control`] types
//! them. It does not allocate.

use md5::{Digest, Md5};

use super::field::{set_u16_at, u16_at};
use super::{check_length_field, Error, Result};

/// The AVP header: flags and Length, Vendor ID, Attribute Type.
pub const HEADER_LEN: usize = 6;

/// The largest AVP: the Length field has 10 bits (RFC 2661 §4.1).
pub const MAX_LEN: usize = 0x3ff;

/// The largest value of an AVP.
pub const MAX_VALUE_LEN: usize = MAX_LEN - HEADER_LEN;

/// The Original Length field in front of a hidden value (RFC 2661 §4.3).
pub const HIDDEN_LENGTH_LEN: usize = 2;

const MANDATORY: u16 = 0x8000;
const HIDDEN: u16 = 0x4000;
const RESERVED: u16 = 0x3c00;
const RESERVED_SHIFT: u32 = 10;
const LENGTH: u16 = 0x03ff;

/// A zero-copy view of one AVP. After [`RawAvp::check_len`] the Length is at
/// least the header and at most the buffer, and narrows the view to it.
#[derive(Debug, Clone)]
pub struct RawAvp<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RawAvp<T> {
    /// Wrap without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        RawAvp { buffer }
    }

    /// Wrap untrusted bytes: [`RawAvp::check_len`] must pass.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let avp = Self::new_unchecked(buffer);
        avp.check_len()?;
        Ok(avp)
    }

    /// Check that the header is there and that the Length covers the header
    /// and fits in the buffer (RFC 2661 §4.1: "Length ... MUST be at least 6").
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        check_length_field(b, HEADER_LEN, self.total_len())
    }

    /// The M bit: an unrecognized AVP with it set tears the tunnel or the
    /// session down (RFC 2661 §4.1); without it, it is ignored.
    pub fn mandatory(&self) -> bool {
        u16_at(self.buffer.as_ref(), 0) & MANDATORY != 0
    }

    /// The H bit: the value is hidden (RFC 2661 §4.3).
    pub fn hidden(&self) -> bool {
        u16_at(self.buffer.as_ref(), 0) & HIDDEN != 0
    }

    /// The four reserved bits. RFC 2661 §4.1: "An AVP received with a
    /// reserved bit set to 1 MUST be treated as an unrecognized AVP."
    pub fn reserved(&self) -> u8 {
        ((u16_at(self.buffer.as_ref(), 0) & RESERVED) >> RESERVED_SHIFT) as u8
    }

    /// The Length field: the whole AVP, header included.
    pub fn total_len(&self) -> usize {
        usize::from(u16_at(self.buffer.as_ref(), 0) & LENGTH)
    }

    /// The Vendor ID: 0 for the IETF attributes, an SMI enterprise number
    /// otherwise.
    pub fn vendor_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 2)
    }

    /// The Attribute Type, within the vendor's space.
    pub fn attribute_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 4)
    }

    /// The value as it is on the wire (still hidden if [`RawAvp::hidden`]).
    pub fn value(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
}

impl<'a> RawAvp<&'a [u8]> {
    /// The value, borrowed for as long as the underlying message.
    pub fn value_of_message(&self) -> &'a [u8] {
        let buffer: &'a [u8] = self.buffer;
        &buffer[HEADER_LEN..self.total_len()]
    }
}

/// The header of one AVP, for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// The M bit.
    pub mandatory: bool,
    /// The H bit.
    pub hidden: bool,
    /// The reserved bits (the low four bits are used). Zero except to
    /// reproduce an AVP that arrived with them set.
    pub reserved: u8,
    /// The Vendor ID.
    pub vendor_id: u16,
    /// The Attribute Type.
    pub attribute_type: u16,
}

impl HeaderRepr {
    /// Read the header of a checked AVP.
    pub fn parse<T: AsRef<[u8]>>(avp: &RawAvp<T>) -> Result<HeaderRepr> {
        avp.check_len()?;
        Ok(HeaderRepr {
            mandatory: avp.mandatory(),
            hidden: avp.hidden(),
            reserved: avp.reserved(),
            vendor_id: avp.vendor_id(),
            attribute_type: avp.attribute_type(),
        })
    }

    /// Write the header for a value of `value_len` bytes (as it goes on the
    /// wire, i.e. already in the hidden subformat when hidden) into
    /// `buf[..HEADER_LEN]`.
    pub fn emit(&self, buf: &mut [u8], value_len: usize) -> Result<()> {
        if buf.len() < HEADER_LEN || value_len > MAX_VALUE_LEN || self.reserved > 0xf {
            return Err(Error::BufferTooSmall);
        }
        let mut word = (HEADER_LEN + value_len) as u16;
        if self.mandatory {
            word |= MANDATORY;
        }
        if self.hidden {
            word |= HIDDEN;
        }
        word |= u16::from(self.reserved) << RESERVED_SHIFT;
        set_u16_at(buf, 0, word);
        set_u16_at(buf, 2, self.vendor_id);
        set_u16_at(buf, 4, self.attribute_type);
        Ok(())
    }
}

/// The AVPs of a control message in wire order. Yields each as a checked
/// [`RawAvp`]; at the first bad Length it yields that error once and stops,
/// since nothing after it can be framed.
#[derive(Debug, Clone)]
pub struct Avps<'a> {
    rest: &'a [u8],
}

impl<'a> Avps<'a> {
    /// Iterate the AVPs in `payload` (the control message after its header).
    pub const fn new(payload: &'a [u8]) -> Self {
        Avps { rest: payload }
    }
}

impl<'a> Iterator for Avps<'a> {
    type Item = Result<RawAvp<&'a [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match RawAvp::new_checked(self.rest) {
            Ok(avp) => {
                let (this, rest) = self.rest.split_at(avp.total_len());
                self.rest = rest;
                Some(Ok(RawAvp::new_unchecked(this)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The bytes [`hide`] writes for a value of `value_len` with `padding_len`
/// bytes of padding.
pub const fn hidden_len(value_len: usize, padding_len: usize) -> usize {
    HIDDEN_LENGTH_LEN + value_len + padding_len
}

/// The MD5 keystream of RFC 2661 §4.3, applied in place: `data` is the
/// subformat (hide) or the hidden value (unhide). The first block's key is
/// MD5(attribute type + secret + random vector); each next block's key is
/// MD5(secret + previous hidden block), so the chain always runs over the
/// hidden bytes.
fn xor_chain(
    attribute_type: u16,
    secret: &[u8],
    random_vector: &[u8],
    data: &mut [u8],
    hiding: bool,
) {
    let mut key: [u8; 16] = Md5::new()
        .chain_update(attribute_type.to_be_bytes())
        .chain_update(secret)
        .chain_update(random_vector)
        .finalize()
        .into();
    let mut blocks = data.chunks_mut(16).peekable();
    while let Some(block) = blocks.next() {
        // A last block shorter than 16 bytes is XORed with the first bytes
        // of the key only: "only the actual octets present in the Subformat
        // are modified" (§4.3).
        let mut hidden_block = [0u8; 16];
        for (i, byte) in block.iter_mut().enumerate() {
            let before = *byte;
            *byte ^= key[i];
            hidden_block[i] = if hiding { *byte } else { before };
        }
        if blocks.peek().is_some() {
            key = Md5::new()
                .chain_update(secret)
                .chain_update(&hidden_block[..block.len()])
                .finalize()
                .into();
        }
    }
}

/// Hide `value` (RFC 2661 §4.3) for an AVP of `attribute_type` with the
/// tunnel `secret` and the `random_vector` of the nearest preceding Random
/// Vector AVP. Writes the hidden subformat (original length, value,
/// `padding`) into `out` and returns its length, [`hidden_len`].
///
/// RFC 2661 §4.3 mixes only the Attribute Type into the first hash, not the
/// Vendor ID.
pub fn hide(
    attribute_type: u16,
    secret: &[u8],
    random_vector: &[u8],
    value: &[u8],
    padding: &[u8],
    out: &mut [u8],
) -> Result<usize> {
    let len = hidden_len(value.len(), padding.len());
    let original_len = u16::try_from(value.len()).map_err(|_| Error::BufferTooSmall)?;
    if out.len() < len {
        return Err(Error::BufferTooSmall);
    }
    let out = &mut out[..len];
    set_u16_at(out, 0, original_len);
    out[HIDDEN_LENGTH_LEN..HIDDEN_LENGTH_LEN + value.len()].copy_from_slice(value);
    out[HIDDEN_LENGTH_LEN + value.len()..].copy_from_slice(padding);
    xor_chain(attribute_type, secret, random_vector, out, true);
    Ok(len)
}

/// Reveal a hidden AVP value (RFC 2661 §4.3): the inverse of [`hide`].
/// `out` must hold `hidden.len()` bytes (the revealed subformat is written
/// there first); the original value ends up in `out[..n]` and `n` is
/// returned. An original length past the end of the value (a wrong secret,
/// usually) is [`Error::Malformed`].
pub fn unhide(
    attribute_type: u16,
    secret: &[u8],
    random_vector: &[u8],
    hidden: &[u8],
    out: &mut [u8],
) -> Result<usize> {
    if hidden.len() < HIDDEN_LENGTH_LEN {
        return Err(Error::Malformed);
    }
    if out.len() < hidden.len() {
        return Err(Error::BufferTooSmall);
    }
    let out_subformat = &mut out[..hidden.len()];
    out_subformat.copy_from_slice(hidden);
    xor_chain(attribute_type, secret, random_vector, out_subformat, false);
    let original_len = usize::from(u16_at(out_subformat, 0));
    if original_len > hidden.len() - HIDDEN_LENGTH_LEN {
        return Err(Error::Malformed);
    }
    out.copy_within(HIDDEN_LENGTH_LEN..HIDDEN_LENGTH_LEN + original_len, 0);
    Ok(original_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{assert_every_truncation_fails, hex};
    use proptest::prelude::*;

    /// The AVPs of xl2tpd's ICRQ in /work/shared/captures/xl2tpd-lac_l2tpns-lns.pcap
    /// (frame 5, after the 12-byte header): Message Type, Assigned Session
    /// ID, Call Serial Number, Bearer Type.
    const XL2TPD_ICRQ_AVPS: &str =
        "800800000000000a80080000000e73b3800a0000000f00000001800a0000001200000000";

    /// xl2tpd's Host Name AVP "lac1" (SCCRQ, frame 1).
    const XL2TPD_HOST_NAME: &str = "800a000000076c616331";

    /// xl2tpd's optional Vendor Name AVP (SCCRQ, frame 1).
    const XL2TPD_VENDOR_NAME: &str = "00130000000878656c6572616e63652e636f6d";

    #[test]
    fn golden_to_fields() {
        let bytes = hex(XL2TPD_HOST_NAME);
        let avp = RawAvp::new_checked(&bytes[..]).unwrap();
        assert!(avp.mandatory());
        assert!(!avp.hidden());
        assert_eq!(avp.reserved(), 0);
        assert_eq!(
            (avp.total_len(), avp.vendor_id(), avp.attribute_type()),
            (10, 0, 7)
        );
        assert_eq!(avp.value(), b"lac1");
        let bytes = hex(XL2TPD_VENDOR_NAME);
        let avp = RawAvp::new_checked(&bytes[..]).unwrap();
        assert!(!avp.mandatory());
        assert_eq!(avp.value(), b"xelerance.com");
    }

    #[test]
    fn fields_to_golden() {
        let repr = HeaderRepr {
            mandatory: true,
            hidden: false,
            reserved: 0,
            vendor_id: 0,
            attribute_type: 7,
        };
        let mut buf = [0u8; 10];
        repr.emit(&mut buf, 4).unwrap();
        buf[HEADER_LEN..].copy_from_slice(b"lac1");
        assert_eq!(buf[..], hex(XL2TPD_HOST_NAME)[..]);
        let parsed = HeaderRepr::parse(&RawAvp::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        assert_every_truncation_fails(&hex(XL2TPD_HOST_NAME), |b| RawAvp::new_checked(b).err());
        // The iterator over a message cut anywhere yields the whole AVPs
        // before the cut, then one error, then stops.
        let bytes = hex(XL2TPD_ICRQ_AVPS);
        let boundaries = [0, 8, 16, 26, 36];
        for cut in 0..=bytes.len() {
            let items: Vec<_> = Avps::new(&bytes[..cut]).collect();
            let whole = boundaries.iter().filter(|&&b| b > 0 && b <= cut).count();
            assert!(items[..whole].iter().all(Result::is_ok));
            let errors = usize::from(!boundaries.contains(&cut));
            assert_eq!(items.len(), whole + errors, "cut at {cut}");
            if errors == 1 {
                assert_eq!(items[whole].as_ref().unwrap_err(), &Error::Truncated);
            }
        }
    }

    #[test]
    fn iterates_a_message() {
        let bytes = hex(XL2TPD_ICRQ_AVPS);
        let types: Vec<u16> = Avps::new(&bytes)
            .map(|a| a.unwrap().attribute_type())
            .collect();
        assert_eq!(types, [0, 14, 15, 18]);
    }

    #[test]
    fn length_below_header_is_malformed_and_stops_iteration() {
        // Length 5, then what would be a good AVP.
        let mut bytes = hex("800500000007");
        bytes.extend(hex(XL2TPD_HOST_NAME));
        let items: Vec<_> = Avps::new(&bytes).collect();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err(), &Error::Malformed);
    }

    #[test]
    fn reserved_bits_are_reported() {
        let mut bytes = hex(XL2TPD_HOST_NAME);
        bytes[0] |= 0x24;
        let avp = RawAvp::new_checked(&bytes[..]).unwrap();
        assert_eq!(avp.reserved(), 0b1001);
        assert_eq!(avp.total_len(), 10);
        let repr = HeaderRepr::parse(&avp).unwrap();
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut out, 4).unwrap();
        assert_eq!(out, bytes[..HEADER_LEN]);
    }

    #[test]
    fn emit_refuses_values_past_ten_bits() {
        let repr = HeaderRepr {
            mandatory: false,
            hidden: false,
            reserved: 0,
            vendor_id: 0,
            attribute_type: 8,
        };
        let mut buf = [0u8; HEADER_LEN];
        assert!(repr.emit(&mut buf, MAX_VALUE_LEN).is_ok());
        assert_eq!(
            repr.emit(&mut buf, MAX_VALUE_LEN + 1),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(repr.emit(&mut buf[..5], 0), Err(Error::BufferTooSmall));
    }

    const RV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// Host Name (attribute 7) "lns-primary.example.net" hidden with the
    /// secret "secret" and the Random Vector 00..0f, computed by hand from
    /// RFC 2661 §4.3 (Python hashlib): b1 = MD5(00 07 "secret" RV),
    /// c1 = p1 ^ b1, b2 = MD5("secret" c1), c2 = p2 ^ b2 (9 bytes).
    const HIDDEN_HOST_NAME: &str = "69d0e3f1fc86aa1bbf575a90702d6ff128815c5df702cb30c3";

    #[test]
    fn hide_matches_the_rfc_algorithm() {
        let value = b"lns-primary.example.net";
        let mut out = [0u8; 64];
        let n = hide(7, b"secret", &RV, value, &[], &mut out).unwrap();
        assert_eq!(n, hidden_len(value.len(), 0));
        assert_eq!(out[..n], hex(HIDDEN_HOST_NAME)[..]);
        // Padding only extends the last block: the bytes before it stay.
        let n = hide(7, b"secret", &RV, value, &[0xaa, 0xbb, 0xcc], &mut out).unwrap();
        assert_eq!(
            out[..n],
            hex("69d0e3f1fc86aa1bbf575a90702d6ff128815c5df702cb30c3cfcd06")[..]
        );
    }

    #[test]
    fn unhide_reveals_and_drops_padding() {
        let hidden = hex("69d0e3f1fc86aa1bbf575a90702d6ff128815c5df702cb30c3cfcd06");
        let mut out = [0u8; 64];
        let n = unhide(7, b"secret", &RV, &hidden, &mut out).unwrap();
        assert_eq!(&out[..n], b"lns-primary.example.net");
    }

    #[test]
    fn a_short_hidden_value_uses_part_of_the_first_block() {
        // Assigned Tunnel ID 0x1234: a 4-byte subformat (Python hashlib).
        let mut out = [0u8; 4];
        hide(9, b"secret", &RV, &[0x12, 0x34], &[], &mut out).unwrap();
        assert_eq!(out[..], hex("be6a0ff3")[..]);
    }

    #[test]
    fn unhide_refuses_what_cannot_be_a_subformat() {
        let mut out = [0u8; 64];
        assert_eq!(
            unhide(7, b"secret", &RV, &[0x55], &mut out),
            Err(Error::Malformed)
        );
        assert_eq!(
            unhide(7, b"secret", &RV, &[0; 8], &mut out[..4]),
            Err(Error::BufferTooSmall)
        );
        // The wrong secret reveals an original length past the end.
        let hidden = hex(HIDDEN_HOST_NAME);
        assert_eq!(
            unhide(7, b"wrong", &RV, &hidden, &mut out),
            Err(Error::Malformed)
        );
        // So does the wrong attribute type: the type is part of the key.
        assert_eq!(
            unhide(8, b"secret", &RV, &hidden, &mut out),
            Err(Error::Malformed)
        );
    }

    proptest! {
        #[test]
        fn hide_unhide_round_trip(
            attribute_type in any::<u16>(),
            secret in proptest::collection::vec(any::<u8>(), 0..24),
            rv in proptest::collection::vec(any::<u8>(), 0..24),
            value in proptest::collection::vec(any::<u8>(), 0..80),
            padding in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut hidden = vec![0; hidden_len(value.len(), padding.len())];
            prop_assert_eq!(hide(attribute_type, &secret, &rv, &value, &padding, &mut hidden), Ok(hidden.len()));
            let mut out = vec![0; hidden.len()];
            let n = unhide(attribute_type, &secret, &rv, &hidden, &mut out).unwrap();
            prop_assert_eq!(&out[..n], &value[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            for avp in Avps::new(&bytes).flatten() {
                let _ = (avp.mandatory(), avp.hidden(), avp.reserved(), avp.vendor_id(), avp.attribute_type());
                let mut out = vec![0; avp.value().len()];
                let _ = unhide(avp.attribute_type(), b"secret", &RV, avp.value(), &mut out);
            }
        }
    }
}

//! Wire codecs: one module per protocol, after smoltcp.
//!
//! # The contract
//!
//! Every protocol has two levels:
//!
//! * a zero-copy view, `Packet<T: AsRef<[u8]>>` (getters; setters when
//!   `T: AsMut<[u8]>`), and
//! * a `Repr`: what the packet means, with `parse`, `buffer_len` and `emit`.
//!
//! The rules every codec keeps:
//!
//! 1. Untrusted bytes enter through `Packet::new_checked`, which calls
//!    `check_len`. Once `check_len` has returned `Ok`, **no accessor panics**,
//!    whatever the bytes are. Accessors of variable parts (the L2TP optional
//!    fields, PPPoE tags, AVPs, PPP options) are only reachable after the check
//!    covered them.
//! 2. A length field in a header narrows the buffer: bytes past the L2TP Length,
//!    the PPPoE Length or the IPv4 Total Length are not part of the packet
//!    (Ethernet padding, trailers).
//! 3. `Repr::emit` writes exactly `Repr::buffer_len` bytes into a buffer at
//!    least that long, and `parse(emit(r)) == r` (the property tests check both).
//! 4. Protocol numbers are enums with an `Unknown(n)` arm, so an unknown AVP,
//!    PPP protocol or option never fails to parse; whether to reject it is the
//!    protocol layer's decision, not the codec's.
//! 5. Parsing never allocates in the fast-path codecs (Ethernet, IPv4, UDP,
//!    L2TP header, PPP, PPPoE session). The L2TP control message codec
//!    ([`control`]) builds owned values: it runs in the control plane.
//!
//! Each codec file has, next to it: golden bytes to fields, fields to golden
//! bytes, every truncation length of the golden packet, and a property round
//! trip; the scaffolding they share is in `testing` (built for tests only).
//! Each parser has a cargo-fuzz target under `dataplane/fuzz`.
//!
//! Where protocols share a layout they share the code: PAP and CHAP are the
//! RFC 1661 §5 packet of [`ppp_cp`] with codes of their own, and
//! `check_length_field` is rule 2 for every length field that counts its
//! header.

pub mod arp;
pub mod avp;
pub mod chap;
pub mod control;
pub mod ethernet;
pub mod ipv4;
pub mod l2tp;
pub mod pap;
pub mod ppp;
pub mod ppp_cp;
pub mod pppoe;
pub mod udp;

use core::fmt;

/// Why bytes could not be parsed or a representation could not be emitted.
///
/// Deliberately small and `Copy`: the fast path turns it into a drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header or a length field says.
    Truncated,
    /// A field holds a value the protocol forbids (bad version, a length
    /// field smaller than the header, an AVP whose length is out of range).
    Malformed,
    /// Well formed, but something we deliberately do not handle
    /// (L2TP version 1 = L2F, a hidden AVP without a shared secret).
    Unsupported,
    /// The buffer given to `emit` is shorter than `buffer_len`, or a value
    /// does not fit its field.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Unsupported => "unsupported packet",
            Error::BufferTooSmall => "buffer too small",
        })
    }
}

impl std::error::Error for Error {}

/// The result of parsing or emitting.
pub type Result<T> = core::result::Result<T, Error>;

/// Rule 2 of the contract for a length field that counts its own header
/// (the IPv4 Total Length, the UDP Length, the L2TP Length, the AVP Length,
/// the Length of RFC 1661 §5): a length that does not cover the header is
/// [`Error::Malformed`], one past the end of the buffer [`Error::Truncated`].
/// The caller has checked that the header, length field included, fits.
pub(crate) fn check_length_field(buffer: &[u8], header_len: usize, length: usize) -> Result<()> {
    if length < header_len {
        return Err(Error::Malformed);
    }
    if length > buffer.len() {
        return Err(Error::Truncated);
    }
    Ok(())
}

/// Big-endian field helpers shared by the codecs. They assume the caller has
/// checked the length (the contract above), so they index directly.
pub(crate) mod field {
    #[inline]
    pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    #[inline]
    pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[inline]
    pub(crate) fn set_u16_at(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub(crate) fn set_u32_at(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// The RFC 1071 Internet checksum, shared by IPv4, UDP and ICMP.
pub mod checksum {
    /// One's-complement sum of `data` folded to 16 bits, not inverted.
    pub fn sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            acc += u32::from(*last) << 8;
        }
        fold(acc)
    }

    /// Fold a 32-bit accumulator into 16 bits with end-around carry.
    pub fn fold(mut acc: u32) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Combine partial sums.
    pub fn combine(parts: &[u16]) -> u16 {
        fold(parts.iter().map(|&p| u32::from(p)).sum())
    }

    /// The checksum field value for `data` (the inverted sum).
    pub fn checksum(data: &[u8]) -> u16 {
        !sum(data)
    }

    /// RFC 1624 eqn. 3 incremental update: the new checksum after a 16-bit
    /// field changed from `old` to `new`.
    pub fn update(check: u16, old: u16, new: u16) -> u16 {
        let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
        // At most 3 × 0xffff: two end-around carries bring it to 16
        // bits, unrolled (the fast path does this for every TTL).
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rfc1071_example() {
            // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
            assert_eq!(
                sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
                0xddf2
            );
        }

        proptest::proptest! {
            /// The unrolled folds are the RFC 1624 eqn. 3 sum folded until
            /// it fits.
            #[test]
            fn update_is_eqn_3(check: u16, old: u16, new: u16) {
                proptest::prop_assert_eq!(update(check, old, new), !combine(&[!check, !old, new]));
            }
        }

        #[test]
        fn incremental_matches_full() {
            let mut hdr = [
                0x45u8, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            let c = checksum(&hdr);
            hdr[10..12].copy_from_slice(&c.to_be_bytes());
            // Decrement TTL: the TTL/protocol word changes.
            let old = u16::from_be_bytes([hdr[8], hdr[9]]);
            hdr[8] -= 1;
            let new = u16::from_be_bytes([hdr[8], hdr[9]]);
            let inc = update(c, old, new);
            hdr[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(inc, checksum(&hdr));
        }
    }
}

/// The scaffolding every codec's tests share: golden vectors kept as hex,
/// every truncation of a golden packet, and the emit half of rule 3.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Error, Result};

    /// Hex to bytes, for golden vectors kept as text.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Every strict prefix of `golden` is [`Error::Truncated`]: `parse`
    /// returns the error parsing a prefix gives, `None` if it parses.
    #[track_caller]
    pub(crate) fn assert_every_truncation_fails(
        golden: &[u8],
        parse: impl Fn(&[u8]) -> Option<Error>,
    ) {
        for cut in 0..golden.len() {
            assert_eq!(
                parse(&golden[..cut]),
                Some(Error::Truncated),
                "cut at {cut} of {golden:02x?}"
            );
        }
    }

    /// Fields to golden bytes: `emit` writes exactly `buffer_len` bytes, and
    /// they are `golden`.
    #[track_caller]
    pub(crate) fn assert_emits_golden(
        golden: &[u8],
        buffer_len: usize,
        emit: impl FnOnce(&mut [u8]) -> Result<usize>,
    ) {
        assert_eq!(buffer_len, golden.len());
        let mut buf = vec![0; golden.len()];
        assert_eq!(emit(&mut buf), Ok(golden.len()));
        assert_eq!(buf, golden);
    }

    /// What the spare bytes after an emitted packet hold.
    const UNTOUCHED: u8 = 0xa5;

    /// The emit half of rule 3: emit into a buffer with `spare` bytes more
    /// than `buffer_len`; `emit` must report `buffer_len` bytes and leave
    /// the spare ones alone. Gives back the whole buffer, spare bytes
    /// included, so that parsing it back also sees bytes past the packet.
    #[track_caller]
    pub(crate) fn emit_with_spare(
        buffer_len: usize,
        spare: usize,
        emit: impl FnOnce(&mut [u8]) -> Result<usize>,
    ) -> Vec<u8> {
        let mut buf = vec![UNTOUCHED; buffer_len + spare];
        assert_eq!(emit(&mut buf), Ok(buffer_len));
        assert!(
            buf[buffer_len..].iter().all(|&b| b == UNTOUCHED),
            "emit wrote past buffer_len {buffer_len}"
        );
        buf
    }

    #[test]
    #[should_panic(expected = "cut at 1")]
    fn a_prefix_that_parses_is_caught() {
        assert_every_truncation_fails(&[1, 2, 3], |b| (b.len() != 1).then_some(Error::Truncated));
    }

    #[test]
    #[should_panic(expected = "emit wrote past")]
    fn writing_past_buffer_len_is_caught() {
        emit_with_spare(2, 2, |b| {
            b[2] = 0;
            Ok(2)
        });
    }
}

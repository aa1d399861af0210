//! CHAP, the Challenge-Handshake Authentication Protocol (RFC 1994 §4),
//! PPP protocol 0xc223.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Challenge (1), Response (2):
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Value-Size   |  Value ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Name ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Success (3), Failure (4):
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Message ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Length narrows the buffer; the Name and the Message run to it. With MD5
//! (algorithm 5) the Response Value is MD5(Identifier, secret, Challenge
//! Value), 16 bytes (RFC 1994 §4.1); computing it is the control plane's job.

use super::ppp_cp::{self, emit_header, put_counted, take_counted};
use super::{Error, Result};

/// The Code field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1.
    Challenge,
    /// 2.
    Response,
    /// 3.
    Success,
    /// 4.
    Failure,
    /// Any other.
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Self {
        match v {
            1 => Code::Challenge,
            2 => Code::Response,
            3 => Code::Success,
            4 => Code::Failure,
            other => Code::Unknown(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        match c {
            Code::Challenge => 1,
            Code::Response => 2,
            Code::Success => 3,
            Code::Failure => 4,
            Code::Unknown(v) => v,
        }
    }
}

/// Length of the Code, Identifier and Length fields.
pub const HEADER_LEN: usize = ppp_cp::HEADER_LEN;

/// A zero-copy view of a CHAP packet: the RFC 1661 §5 layout, with CHAP's codes.
pub type Packet<T> = ppp_cp::CpPacket<T, Code>;

/// What a CHAP packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message<'a> {
    /// Challenge: a fresh value and the authenticator's name.
    Challenge {
        /// Value.
        value: &'a [u8],
        /// Name.
        name: &'a [u8],
    },
    /// Response: the hash and the peer's name.
    Response {
        /// Value.
        value: &'a [u8],
        /// Name.
        name: &'a [u8],
    },
    /// Success with a message for the user.
    Success(&'a [u8]),
    /// Failure with a message for the user.
    Failure(&'a [u8]),
    /// Another code, with its data.
    Unknown {
        /// The code (not 1 to 4).
        code: u8,
        /// The data.
        data: &'a [u8],
    },
}

/// The meaning of a CHAP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Identifier: a Response echoes the Challenge's, Success and Failure
    /// the Response's.
    pub identifier: u8,
    /// The message.
    pub message: Message<'a>,
}

impl<'a> Repr<'a> {
    /// Read a packet. A Challenge or Response without its Value-Size, or
    /// whose Value-Size runs past Length, is [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        let data = packet.checked_data()?;
        let message = match packet.code() {
            Code::Challenge => {
                let (value, name) = take_counted(data)?;
                Message::Challenge { value, name }
            }
            Code::Response => {
                let (value, name) = take_counted(data)?;
                Message::Response { value, name }
            }
            Code::Success => Message::Success(data),
            Code::Failure => Message::Failure(data),
            Code::Unknown(code) => Message::Unknown { code, data },
        };
        Ok(Repr {
            identifier: packet.identifier(),
            message,
        })
    }

    /// The code this message is sent with.
    pub fn code(&self) -> Code {
        match self.message {
            Message::Challenge { .. } => Code::Challenge,
            Message::Response { .. } => Code::Response,
            Message::Success(_) => Code::Success,
            Message::Failure(_) => Code::Failure,
            Message::Unknown { code, .. } => Code::from(code),
        }
    }

    /// The whole packet's length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self.message {
                Message::Challenge { value, name } | Message::Response { value, name } => {
                    1 + value.len() + name.len()
                }
                Message::Success(d) | Message::Failure(d) | Message::Unknown { data: d, .. } => {
                    d.len()
                }
            }
    }

    /// Write the packet into the start of `buf`; returns the bytes written.
    /// A Value longer than 255 bytes is [`Error::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let Message::Unknown { code, .. } = self.message {
            if !matches!(Code::from(code), Code::Unknown(_)) {
                return Err(Error::Malformed);
            }
        }
        let len = self.buffer_len();
        let out = emit_header(buf, self.code(), self.identifier, len)?;
        match self.message {
            Message::Challenge { value, name } | Message::Response { value, name } => {
                let at = put_counted(out, value)?;
                out[at..].copy_from_slice(name);
            }
            Message::Success(d) | Message::Failure(d) | Message::Unknown { data: d, .. } => {
                out.copy_from_slice(d)
            }
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

    // The captures hold no CHAP (l2tpns asks for PAP first), so these are
    // built by hand after RFC 1994 §4.

    /// A Challenge from "lns1" with a 16-byte value.
    const CHALLENGE: [u8; 25] = [
        0x01, 0x2a, 0x00, 0x19, 0x10, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99,
        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, b'l', b'n', b's', b'1',
    ];

    /// The Response of "user1@lns.lab" with secret "test": the Value is
    /// MD5(0x2a, "test", challenge value).
    const RESPONSE: [u8; 34] = [
        0x02, 0x2a, 0x00, 0x22, 0x10, 0xbb, 0xfb, 0x3e, 0x85, 0xf1, 0x22, 0x3d, 0x99, 0x6b, 0xbb,
        0x42, 0x92, 0xe3, 0xba, 0x17, 0xe1, b'u', b's', b'e', b'r', b'1', b'@', b'l', b'n', b's',
        b'.', b'l', b'a', b'b',
    ];

    /// Success with a message.
    const SUCCESS: [u8; 12] = [
        0x03, 0x2a, 0x00, 0x0c, b'W', b'e', b'l', b'c', b'o', b'm', b'e', b'!',
    ];

    /// Failure with no message.
    const FAILURE: [u8; 4] = [0x04, 0x2a, 0x00, 0x04];

    const CHALLENGE_VALUE: &[u8] = &[
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];

    fn goldens() -> [(&'static [u8], Repr<'static>); 4] {
        [
            (
                &CHALLENGE,
                Repr {
                    identifier: 0x2a,
                    message: Message::Challenge {
                        value: CHALLENGE_VALUE,
                        name: b"lns1",
                    },
                },
            ),
            (
                &RESPONSE,
                Repr {
                    identifier: 0x2a,
                    message: Message::Response {
                        value: &RESPONSE[5..21],
                        name: b"user1@lns.lab",
                    },
                },
            ),
            (
                &SUCCESS,
                Repr {
                    identifier: 0x2a,
                    message: Message::Success(b"Welcome!"),
                },
            ),
            (
                &FAILURE,
                Repr {
                    identifier: 0x2a,
                    message: Message::Failure(b""),
                },
            ),
        ]
    }

    #[test]
    fn response_value_is_the_rfc_1994_hash() {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update([0x2a]);
        h.update(b"test");
        h.update(CHALLENGE_VALUE);
        assert_eq!(h.finalize()[..], RESPONSE[5..21]);
    }

    #[test]
    fn golden_to_fields() {
        let p = Packet::new_checked(&CHALLENGE[..]).unwrap();
        assert_eq!(
            (p.code(), p.identifier(), p.length()),
            (Code::Challenge, 0x2a, 25)
        );
        assert_eq!(p.data(), &CHALLENGE[4..]);
        for (bytes, repr) in goldens() {
            let p = Packet::new_checked(bytes).unwrap();
            assert_eq!(Repr::parse(&p), Ok(repr));
            assert_eq!(repr.code(), p.code());
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
    fn value_size_past_length_is_malformed() {
        let mut b = CHALLENGE;
        b[4] = 0x16;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        let b = [0x02, 0x01, 0x00, 0x04];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        let b = [0x01, 0x01, 0x00, 0x03];
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn emit_refusals() {
        let long = [0u8; 256];
        let r = Repr {
            identifier: 0,
            message: Message::Challenge {
                value: &long,
                name: b"",
            },
        };
        assert_eq!(r.emit(&mut [0u8; 300]), Err(Error::BufferTooSmall));
        let r = Repr {
            identifier: 0,
            message: Message::Unknown { code: 3, data: &[] },
        };
        assert_eq!(r.emit(&mut [0u8; 8]), Err(Error::Malformed));
        assert_eq!(
            goldens()[0].1.emit(&mut [0u8; 24]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn setters() {
        let mut b = FAILURE;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_code(Code::Success);
        p.set_identifier(1);
        p.set_length(4);
        assert_eq!(p.into_inner(), [3, 1, 0, 4]);
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40)
    }

    proptest! {
        #[test]
        fn round_trip(
            which in 0u8..5,
            identifier in any::<u8>(),
            a in arb_bytes(),
            b in arb_bytes(),
            code in prop_oneof![Just(0u8), 5u8..=255],
        ) {
            let message = match which {
                0 => Message::Challenge { value: &a, name: &b },
                1 => Message::Response { value: &a, name: &b },
                2 => Message::Success(&a),
                3 => Message::Failure(&a),
                _ => Message::Unknown { code, data: &a },
            };
            let repr = Repr { identifier, message };
            let buf = emit_with_spare(repr.buffer_len(), 3, |b| repr.emit(b));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
        }

        #[test]
        fn garbage_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            if bytes.len() >= 4 && bytes[1] & 1 == 0 {
                let len = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[0] %= 6;
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.code(), p.identifier(), p.data());
                if let Ok(r) = Repr::parse(&p) {
                    let mut out = vec![0; r.buffer_len()];
                    prop_assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
                    // Every CHAP field runs to Length: the bytes come back.
                    prop_assert_eq!(&out[..], &bytes[..usize::from(p.length())]);
                }
            }
        }
    }
}

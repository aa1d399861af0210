//! PAP, the Password Authentication Protocol (RFC 1334 §2.2), PPP protocol
//! 0xc023.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Authenticate-Request (1):
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Peer-ID Length|  Peer-Id ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Passwd-Length |  Password ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Authenticate-Ack (2), Authenticate-Nak (3):
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Msg-Length   |  Message ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Length narrows the buffer. An Ack or Nak with no data at all (some
//! implementations leave out Msg-Length) reads as an empty message; bytes
//! after the last field, inside Length, are ignored.

use super::ppp_cp::{self, emit_header, put_counted, take_counted};
use super::{Error, Result};

/// The Code field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1.
    AuthenticateRequest,
    /// 2.
    AuthenticateAck,
    /// 3.
    AuthenticateNak,
    /// Any other.
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Self {
        match v {
            1 => Code::AuthenticateRequest,
            2 => Code::AuthenticateAck,
            3 => Code::AuthenticateNak,
            other => Code::Unknown(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        match c {
            Code::AuthenticateRequest => 1,
            Code::AuthenticateAck => 2,
            Code::AuthenticateNak => 3,
            Code::Unknown(v) => v,
        }
    }
}

/// Length of the Code, Identifier and Length fields.
pub const HEADER_LEN: usize = ppp_cp::HEADER_LEN;

/// A zero-copy view of a PAP packet: the RFC 1661 §5 layout, with PAP's codes.
pub type Packet<T> = ppp_cp::CpPacket<T, Code>;

/// What a PAP packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message<'a> {
    /// Authenticate-Request: the peer's name and password in clear.
    Request {
        /// Peer-Id.
        peer_id: &'a [u8],
        /// Password.
        password: &'a [u8],
    },
    /// Authenticate-Ack with a message for the user.
    Ack(&'a [u8]),
    /// Authenticate-Nak with a message for the user.
    Nak(&'a [u8]),
    /// Another code, with its data.
    Unknown {
        /// The code (not 1, 2 or 3).
        code: u8,
        /// The data.
        data: &'a [u8],
    },
}

/// The meaning of a PAP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Identifier: an Ack or Nak echoes the Request's.
    pub identifier: u8,
    /// The message.
    pub message: Message<'a>,
}

impl<'a> Repr<'a> {
    /// Read a packet. A string whose length octet runs past Length is
    /// [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        let data = packet.checked_data()?;
        let message = match packet.code() {
            Code::AuthenticateRequest => {
                let (peer_id, rest) = take_counted(data)?;
                let (password, _) = take_counted(rest)?;
                Message::Request { peer_id, password }
            }
            Code::AuthenticateAck if data.is_empty() => Message::Ack(&[]),
            Code::AuthenticateNak if data.is_empty() => Message::Nak(&[]),
            Code::AuthenticateAck => Message::Ack(take_counted(data)?.0),
            Code::AuthenticateNak => Message::Nak(take_counted(data)?.0),
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
            Message::Request { .. } => Code::AuthenticateRequest,
            Message::Ack(_) => Code::AuthenticateAck,
            Message::Nak(_) => Code::AuthenticateNak,
            Message::Unknown { code, .. } => Code::from(code),
        }
    }

    /// The whole packet's length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self.message {
                Message::Request { peer_id, password } => 2 + peer_id.len() + password.len(),
                Message::Ack(m) | Message::Nak(m) => 1 + m.len(),
                Message::Unknown { data, .. } => data.len(),
            }
    }

    /// Write the packet into the start of `buf`; returns the bytes written.
    /// A string longer than 255 bytes is [`Error::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let strings: &[&[u8]] = match self.message {
            Message::Request { peer_id, password } => &[peer_id, password],
            Message::Ack(m) | Message::Nak(m) => &[m],
            Message::Unknown { code, .. } => {
                if !matches!(Code::from(code), Code::Unknown(_)) {
                    return Err(Error::Malformed);
                }
                &[]
            }
        };
        let len = self.buffer_len();
        let buf = emit_header(buf, self.code(), self.identifier, len)?;
        let mut at = 0;
        for s in strings {
            at += put_counted(&mut buf[at..], s)?;
        }
        if let Message::Unknown { data, .. } = self.message {
            buf[at..].copy_from_slice(data);
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

    /// pppoe-subscribers_l2tpns.pcap frame 54, after PPPoE and the PPP
    /// protocol: the first subscriber's Authenticate-Request.
    const CAPTURE_REQUEST: [u8; 23] = [
        0x01, 0x01, 0x00, 0x17, 0x0d, 0x75, 0x73, 0x65, 0x72, 0x31, 0x40, 0x6c, 0x6e, 0x73, 0x2e,
        0x6c, 0x61, 0x62, 0x04, 0x74, 0x65, 0x73, 0x74,
    ];

    /// Frame 106: l2tpns's Authenticate-Ack with an empty message.
    const CAPTURE_ACK: [u8; 5] = [0x02, 0x01, 0x00, 0x05, 0x00];

    /// A Nak with a message, by hand.
    const NAK: [u8; 11] = [
        0x03, 0x02, 0x00, 0x0b, 0x06, b'd', b'e', b'n', b'i', b'e', b'd',
    ];

    fn goldens() -> [(&'static [u8], Repr<'static>); 3] {
        [
            (
                &CAPTURE_REQUEST,
                Repr {
                    identifier: 1,
                    message: Message::Request {
                        peer_id: b"user1@lns.lab",
                        password: b"test",
                    },
                },
            ),
            (
                &CAPTURE_ACK,
                Repr {
                    identifier: 1,
                    message: Message::Ack(b""),
                },
            ),
            (
                &NAK,
                Repr {
                    identifier: 2,
                    message: Message::Nak(b"denied"),
                },
            ),
        ]
    }

    #[test]
    fn golden_to_fields() {
        let p = Packet::new_checked(&CAPTURE_REQUEST[..]).unwrap();
        assert_eq!(
            (p.code(), p.identifier(), p.length()),
            (Code::AuthenticateRequest, 1, 23)
        );
        assert_eq!(p.data(), &CAPTURE_REQUEST[4..]);
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
    fn strings_past_length_are_malformed() {
        // The request cut short by its own Length: the password is missing.
        let mut b = CAPTURE_REQUEST;
        b[3] = 18;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        // A Peer-ID Length past the end.
        let b = [0x01, 0x01, 0x00, 0x06, 0x05, 0x61];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        let b = [0x02, 0x01, 0x00, 0x05, 0x01];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
    }

    #[test]
    fn ack_without_msg_length() {
        let b = [0x02, 0x07, 0x00, 0x04];
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.message, Message::Ack(b""));
    }

    #[test]
    fn emit_refusals() {
        let long = [b'x'; 256];
        let r = Repr {
            identifier: 0,
            message: Message::Nak(&long),
        };
        assert_eq!(r.emit(&mut [0u8; 300]), Err(Error::BufferTooSmall));
        let r = Repr {
            identifier: 0,
            message: Message::Unknown { code: 2, data: &[] },
        };
        assert_eq!(r.emit(&mut [0u8; 8]), Err(Error::Malformed));
        assert_eq!(
            goldens()[0].1.emit(&mut [0u8; 22]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn setters() {
        let mut b = CAPTURE_ACK;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_code(Code::AuthenticateNak);
        p.set_identifier(9);
        p.set_length(4);
        assert_eq!(p.into_inner(), [3, 9, 0, 4, 0]);
    }

    fn arb_string() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40)
    }

    proptest! {
        #[test]
        fn round_trip(
            which in 0u8..4,
            identifier in any::<u8>(),
            a in arb_string(),
            b in arb_string(),
            code in 4u8..=255,
        ) {
            let message = match which {
                0 => Message::Request { peer_id: &a, password: &b },
                1 => Message::Ack(&a),
                2 => Message::Nak(&a),
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
                bytes[0] %= 5;
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.code(), p.identifier(), p.data());
                if let Ok(r) = Repr::parse(&p) {
                    let mut out = vec![0; r.buffer_len()];
                    prop_assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
                    let again = Repr::parse(&Packet::new_checked(&out[..]).unwrap());
                    prop_assert_eq!(again, Ok(r));
                }
            }
        }
    }
}

//! The RADIUS packet (RFC 2865 §3, §5; RFC 2866; RFC 2869; RFC 3579 §3.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! |                         Authenticator                         |
//! |                                                               |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attributes ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-
//!
//! Attribute:  | Type (1) | Length (1, counts itself and Type) | Value ... |
//! ```
//!
//! Two levels, as in the wire codecs of `dataplane::wire`: a zero-copy view
//! [`Packet`] whose [`Packet::new_checked`] validates the Length field and
//! every attribute header, after which no accessor panics; and a [`Repr`]
//! with `parse`, `buffer_len` and `emit`. The parser takes any bytes without
//! panicking. The cryptography of the protocol (User-Password hiding, the
//! authenticators, Message-Authenticator) is here too, as functions over the
//! emitted bytes.

use core::fmt;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Code, Identifier, Length and Authenticator.
pub const HEADER_LEN: usize = 20;
/// The largest packet (RFC 2865 §3: "The maximum length is 4096").
pub const MAX_PACKET_LEN: usize = 4096;
/// The largest attribute value: the Length octet counts the two header
/// octets too.
pub const MAX_VALUE_LEN: usize = 253;
/// The longest password User-Password can carry (RFC 2865 §5.2).
pub const MAX_PASSWORD_LEN: usize = 128;

/// Why bytes are not a RADIUS packet, or a packet cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or than its Length field (RFC 2865 §3: such
    /// a packet is silently discarded).
    Truncated,
    /// The Length field is below 20 or above 4096.
    BadLength,
    /// An attribute's Length is below 2 or runs past the packet.
    BadAttribute,
    /// An attribute value longer than 253 octets, a packet longer than
    /// 4096, or a password longer than 128.
    TooLong,
    /// The buffer given to `emit` is shorter than `buffer_len()`.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "RADIUS packet shorter than its header or Length field",
            Error::BadLength => "RADIUS Length field out of range (20 to 4096)",
            Error::BadAttribute => "RADIUS attribute length out of range",
            Error::TooLong => "RADIUS attribute or packet too long",
            Error::BufferTooSmall => "buffer too small for the RADIUS packet",
        })
    }
}

impl std::error::Error for Error {}

/// The packet Code (RFC 2865 §3, RFC 2866 §3, RFC 5997).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccountingRequest,
    AccountingResponse,
    AccessChallenge,
    StatusServer,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Self {
        match v {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            v => Code::Unknown(v),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        match c {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::Unknown(v) => v,
        }
    }
}

/// An attribute Type (RFC 2865 §5 and later). Any value is valid; the
/// constants name those we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(pub u8);

#[allow(missing_docs)]
impl AttributeType {
    pub const USER_NAME: Self = Self(1);
    pub const USER_PASSWORD: Self = Self(2);
    pub const CHAP_PASSWORD: Self = Self(3);
    pub const NAS_IP_ADDRESS: Self = Self(4);
    pub const NAS_PORT: Self = Self(5);
    pub const SERVICE_TYPE: Self = Self(6);
    pub const FRAMED_PROTOCOL: Self = Self(7);
    pub const FRAMED_IP_ADDRESS: Self = Self(8);
    pub const FRAMED_IP_NETMASK: Self = Self(9);
    pub const FRAMED_ROUTING: Self = Self(10);
    pub const FRAMED_MTU: Self = Self(12);
    pub const FRAMED_COMPRESSION: Self = Self(13);
    pub const LOGIN_IP_HOST: Self = Self(14);
    pub const LOGIN_SERVICE: Self = Self(15);
    pub const REPLY_MESSAGE: Self = Self(18);
    pub const CLASS: Self = Self(25);
    pub const VENDOR_SPECIFIC: Self = Self(26);
    pub const SESSION_TIMEOUT: Self = Self(27);
    pub const IDLE_TIMEOUT: Self = Self(28);
    pub const CALLED_STATION_ID: Self = Self(30);
    pub const CALLING_STATION_ID: Self = Self(31);
    pub const NAS_IDENTIFIER: Self = Self(32);
    pub const PROXY_STATE: Self = Self(33);
    pub const ACCT_STATUS_TYPE: Self = Self(40);
    pub const ACCT_DELAY_TIME: Self = Self(41);
    pub const ACCT_INPUT_OCTETS: Self = Self(42);
    pub const ACCT_OUTPUT_OCTETS: Self = Self(43);
    pub const ACCT_SESSION_ID: Self = Self(44);
    pub const ACCT_AUTHENTIC: Self = Self(45);
    pub const ACCT_SESSION_TIME: Self = Self(46);
    pub const ACCT_INPUT_PACKETS: Self = Self(47);
    pub const ACCT_OUTPUT_PACKETS: Self = Self(48);
    pub const ACCT_TERMINATE_CAUSE: Self = Self(49);
    pub const ACCT_INPUT_GIGAWORDS: Self = Self(52);
    pub const ACCT_OUTPUT_GIGAWORDS: Self = Self(53);
    pub const EVENT_TIMESTAMP: Self = Self(55);
    pub const CHAP_CHALLENGE: Self = Self(60);
    pub const NAS_PORT_TYPE: Self = Self(61);
    pub const MESSAGE_AUTHENTICATOR: Self = Self(80);
    pub const ACCT_INTERIM_INTERVAL: Self = Self(85);
}

/// Attribute values we send (RFC 2865 §5.6, §5.7, §5.41; RFC 2866 §5.1,
/// §5.6).
pub mod value {
    /// Service-Type Framed.
    pub const SERVICE_TYPE_FRAMED: u32 = 2;
    /// Framed-Protocol PPP.
    pub const FRAMED_PROTOCOL_PPP: u32 = 1;
    /// NAS-Port-Type Virtual: the port is a tunnel, not a physical line.
    pub const NAS_PORT_TYPE_VIRTUAL: u32 = 5;
    /// Acct-Status-Type Start.
    pub const ACCT_STATUS_START: u32 = 1;
    /// Acct-Status-Type Stop.
    pub const ACCT_STATUS_STOP: u32 = 2;
    /// Acct-Status-Type Interim-Update (RFC 2869 §2.1).
    pub const ACCT_STATUS_INTERIM_UPDATE: u32 = 3;
    /// Acct-Authentic RADIUS.
    pub const ACCT_AUTHENTIC_RADIUS: u32 = 1;
    /// Acct-Authentic Local.
    pub const ACCT_AUTHENTIC_LOCAL: u32 = 2;
}

/// A zero-copy view of a RADIUS packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps bytes without checking them; see [`Packet::check_len`].
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps untrusted bytes: [`Packet::check_len`] must pass.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the header, the Length field (RFC 2865 §3: 20 to 4096, the
    /// packet at least that long; octets past it are padding and ignored)
    /// and the length of every attribute. After `Ok`, no accessor panics.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
            return Err(Error::BadLength);
        }
        if b.len() < len {
            return Err(Error::Truncated);
        }
        let mut rest = &b[HEADER_LEN..len];
        while !rest.is_empty() {
            let [_, alen, ..] = rest else {
                return Err(Error::BadAttribute);
            };
            let alen = usize::from(*alen);
            if alen < 2 || alen > rest.len() {
                return Err(Error::BadAttribute);
            }
            rest = &rest[alen..];
        }
        Ok(())
    }

    /// The Code.
    pub fn code(&self) -> Code {
        Code::from(self.buffer.as_ref()[0])
    }

    /// The Identifier.
    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// The Length field.
    pub fn length(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(u16::from_be_bytes([b[2], b[3]]))
    }

    /// The Authenticator.
    pub fn authenticator(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[4..HEADER_LEN]);
        a
    }

    /// The packet up to its Length field (padding cut off).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.length()]
    }

    /// The attributes, in order.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            rest: &self.buffer.as_ref()[HEADER_LEN..self.length()],
            offset: HEADER_LEN,
        }
    }

    /// The value of the first attribute of type `kind`.
    pub fn attribute(&self, kind: AttributeType) -> Option<&[u8]> {
        self.attributes().find(|a| a.kind == kind).map(|a| a.value)
    }
}

/// One attribute in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Its Type.
    pub kind: AttributeType,
    /// Its Value.
    pub value: &'a [u8],
    /// Where its Value starts in the packet.
    pub value_offset: usize,
}

impl Attribute<'_> {
    /// The value as a 32-bit integer (RFC 2865 §5: "integer"), if it is 4
    /// octets.
    pub fn as_u32(&self) -> Option<u32> {
        value_u32(self.value)
    }
}

/// The value as a big-endian 32-bit integer, if it is 4 octets.
pub fn value_u32(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

/// The attributes of a checked [`Packet`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        let [kind, len, ..] = self.rest else {
            return None;
        };
        let len = usize::from(*len);
        // check_len vouched for every length; stop rather than panic if a
        // caller skipped it.
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let attribute = Attribute {
            kind: AttributeType(*kind),
            value: &self.rest[2..len],
            value_offset: self.offset + 2,
        };
        self.rest = &self.rest[len..];
        self.offset += len;
        Some(attribute)
    }
}

/// The meaning of a packet: what [`Repr::parse`] reads and [`Repr::emit`]
/// writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// The Code.
    pub code: Code,
    /// The Identifier.
    pub identifier: u8,
    /// The Authenticator as it is on the wire.
    pub authenticator: [u8; 16],
    /// The attributes in order, values as on the wire.
    pub attributes: Vec<(AttributeType, Vec<u8>)>,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Self {
        Repr {
            code: packet.code(),
            identifier: packet.identifier(),
            authenticator: packet.authenticator(),
            attributes: packet
                .attributes()
                .map(|a| (a.kind, a.value.to_vec()))
                .collect(),
        }
    }

    /// The packet's length on the wire.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self
                .attributes
                .iter()
                .map(|(_, v)| 2 + v.len())
                .sum::<usize>()
    }

    /// Writes exactly [`Repr::buffer_len`] octets at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        if len > MAX_PACKET_LEN || self.attributes.iter().any(|(_, v)| v.len() > MAX_VALUE_LEN) {
            return Err(Error::TooLong);
        }
        let Some(out) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall);
        };
        out[0] = self.code.into();
        out[1] = self.identifier;
        // len <= 4096 was checked above.
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        out[4..HEADER_LEN].copy_from_slice(&self.authenticator);
        let mut at = HEADER_LEN;
        for (kind, value) in &self.attributes {
            out[at] = kind.0;
            out[at + 1] = (value.len() + 2) as u8;
            out[at + 2..at + 2 + value.len()].copy_from_slice(value);
            at += 2 + value.len();
        }
        Ok(len)
    }

    /// The packet as a vector of bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut buf)?;
        Ok(buf)
    }

    /// Appends an attribute.
    pub fn push(&mut self, kind: AttributeType, value: impl Into<Vec<u8>>) {
        self.attributes.push((kind, value.into()));
    }

    /// Appends a 32-bit integer attribute.
    pub fn push_u32(&mut self, kind: AttributeType, value: u32) {
        self.attributes.push((kind, value.to_be_bytes().to_vec()));
    }
}

/// Hides a User-Password (RFC 2865 §5.2): the password padded with zeros to
/// a multiple of 16 octets, each block XORed with MD5(secret + the previous
/// ciphertext block), the first with MD5(secret + Request Authenticator).
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, Error> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::TooLong);
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded_len, 0);
    let mut previous: [u8; 16] = *request_authenticator;
    for block in out.chunks_mut(16) {
        let key: [u8; 16] = Md5::new()
            .chain_update(secret)
            .chain_update(previous)
            .finalize()
            .into();
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        previous.copy_from_slice(block);
    }
    Ok(out)
}

/// Reveals a hidden User-Password (the inverse of [`hide_password`]), with
/// the zero padding removed. `None` if the length is not a multiple of 16
/// between 16 and 128.
pub fn reveal_password(
    hidden: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Option<Vec<u8>> {
    if hidden.is_empty() || hidden.len() % 16 != 0 || hidden.len() > MAX_PASSWORD_LEN {
        return None;
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut previous: &[u8] = request_authenticator;
    for block in hidden.chunks(16) {
        let key: [u8; 16] = Md5::new()
            .chain_update(secret)
            .chain_update(previous)
            .finalize()
            .into();
        out.extend(block.iter().zip(key).map(|(c, k)| c ^ k));
        previous = block;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Some(out)
}

/// MD5(packet with `authenticator` in the Authenticator field + secret):
/// the Response Authenticator (RFC 2865 §3) when `authenticator` is the
/// request's, and the Accounting-Request Authenticator (RFC 2866 §3) when it
/// is sixteen zeros. `packet` must be at least a header long.
pub fn packet_digest(packet: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(packet.get(..4).unwrap_or_default());
    md5.update(authenticator);
    md5.update(packet.get(HEADER_LEN..).unwrap_or_default());
    md5.update(secret);
    md5.finalize().into()
}

/// HMAC-MD5 keyed with the secret over the packet with `authenticator` in
/// the Authenticator field and the Message-Authenticator value at
/// `mac_offset` taken as sixteen zeros (RFC 3579 §3.2).
pub fn message_authenticator(
    packet: &[u8],
    authenticator: &[u8; 16],
    mac_offset: usize,
    secret: &[u8],
) -> [u8; 16] {
    // new_from_slice fails only for key lengths HMAC cannot take; MD5's
    // HMAC takes any.
    let Ok(mut mac) = Hmac::<Md5>::new_from_slice(secret) else {
        return [0; 16];
    };
    mac.update(packet.get(..4).unwrap_or_default());
    mac.update(authenticator);
    let body = packet.get(HEADER_LEN..).unwrap_or_default();
    let before = mac_offset.saturating_sub(HEADER_LEN).min(body.len());
    mac.update(&body[..before]);
    let after = (before + 16).min(body.len());
    mac.update(&[0u8; 16][..after - before]);
    mac.update(&body[after..]);
    mac.finalize().into_bytes().into()
}

/// Fills in the Message-Authenticator of an emitted request whose value is
/// at `mac_offset` (RFC 3579 §3.2: computed with the Request Authenticator
/// in place). Call it after the Authenticator field is final.
pub fn sign_message_authenticator(packet: &mut [u8], mac_offset: usize, secret: &[u8]) {
    let mut authenticator = [0u8; 16];
    if let Some(a) = packet.get(4..HEADER_LEN) {
        authenticator.copy_from_slice(a);
    }
    let mac = message_authenticator(packet, &authenticator, mac_offset, secret);
    if let Some(slot) = packet.get_mut(mac_offset..mac_offset + 16) {
        slot.copy_from_slice(&mac);
    }
}

/// Whether a response to a request with `request_authenticator` is
/// authentic: its Response Authenticator (RFC 2865 §3, RFC 2866 §3) and,
/// if it has one, its Message-Authenticator (RFC 3579 §3.2, computed with
/// the Request Authenticator in place) are right for `secret`. Constant
/// time in the compared bytes.
pub fn verify_response<T: AsRef<[u8]>>(
    response: &Packet<T>,
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> bool {
    let bytes = response.as_bytes();
    let expected = packet_digest(bytes, request_authenticator, secret);
    if !bool::from(expected.ct_eq(&response.authenticator())) {
        return false;
    }
    let mut macs = response
        .attributes()
        .filter(|a| a.kind == AttributeType::MESSAGE_AUTHENTICATOR);
    match (macs.next(), macs.next()) {
        (None, _) => true,
        (Some(mac), None) if mac.value.len() == 16 => {
            let expected =
                message_authenticator(bytes, request_authenticator, mac.value_offset, secret);
            bool::from(expected.ct_eq(mac.value))
        }
        // A wrong length, or two of them (RFC 3579 §3.2 allows one).
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const SECRET: &[u8] = b"xyzzy5461";

    /// RFC 2865 §7.1: the NAS at 192.168.1.16 sends an Access-Request for
    /// user nemo, password arctangent, on port 3.
    const RFC2865_7_1_REQUEST: &str = "010000380f403f9473978057bd83d5cb98f4227a\
        01066e656d6f02120dbe708d93d413ce3196e43f782a0aee0406c0a80110050600000003";
    /// ... and the Access-Accept that answers it (Service-Type Login,
    /// Login-Service Telnet, Login-IP-Host 192.168.1.3).
    const RFC2865_7_1_ACCEPT: &str = "020000268 6fe220e7624ba2a1005f6bf9b55e0b2\
        06060000000 10f06000000000e06c0a80103";
    /// RFC 2865 §7.2: a CHAP Access-Request for user flopsy, the challenge
    /// in the Request Authenticator, on port 20, Service-Type Framed,
    /// Framed-Protocol PPP.
    const RFC2865_7_2_REQUEST: &str = "010100472aee86f08d0d55969ca5978e0d3367a2\
        0108666c6f707379031316e97557c316185895f293ff63440772750406c0a80110\
        0506000000140606000000020706000000 01";

    fn golden(s: &str) -> Vec<u8> {
        hex(&s.replace(' ', ""))
    }

    #[test]
    fn rfc2865_7_1_request_fields() {
        let bytes = golden(RFC2865_7_1_REQUEST);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.code(), Code::AccessRequest);
        assert_eq!(p.identifier(), 0);
        assert_eq!(p.length(), 56);
        assert_eq!(p.attribute(AttributeType::USER_NAME), Some(&b"nemo"[..]));
        let ra = p.authenticator();
        let hidden = p.attribute(AttributeType::USER_PASSWORD).unwrap();
        assert_eq!(reveal_password(hidden, SECRET, &ra).unwrap(), b"arctangent");
        assert_eq!(hide_password(b"arctangent", SECRET, &ra).unwrap(), hidden);
        assert_eq!(
            p.attribute(AttributeType::NAS_IP_ADDRESS),
            Some(&Ipv4Addr::new(192, 168, 1, 16).octets()[..])
        );
        let port = p
            .attributes()
            .find(|a| a.kind == AttributeType::NAS_PORT)
            .unwrap();
        assert_eq!(port.as_u32(), Some(3));
    }

    #[test]
    fn rfc2865_7_1_request_from_fields() {
        let ra: [u8; 16] = hex("0f403f9473978057bd83d5cb98f4227a").try_into().unwrap();
        let mut repr = Repr {
            code: Code::AccessRequest,
            identifier: 0,
            authenticator: ra,
            attributes: Vec::new(),
        };
        repr.push(AttributeType::USER_NAME, "nemo");
        repr.push(
            AttributeType::USER_PASSWORD,
            hide_password(b"arctangent", SECRET, &ra).unwrap(),
        );
        repr.push(AttributeType::NAS_IP_ADDRESS, [192, 168, 1, 16]);
        repr.push_u32(AttributeType::NAS_PORT, 3);
        assert_eq!(repr.to_bytes().unwrap(), golden(RFC2865_7_1_REQUEST));
    }

    #[test]
    fn rfc2865_7_1_response_authenticator_verifies() {
        let request = golden(RFC2865_7_1_REQUEST);
        let ra = Packet::new_checked(&request[..]).unwrap().authenticator();
        let accept = golden(RFC2865_7_1_ACCEPT);
        let p = Packet::new_checked(&accept[..]).unwrap();
        assert_eq!(p.code(), Code::AccessAccept);
        assert_eq!(
            p.attribute(AttributeType::LOGIN_IP_HOST),
            Some(&[192, 168, 1, 3][..])
        );
        assert!(verify_response(&p, &ra, SECRET));
        assert!(!verify_response(&p, &ra, b"xyzzy5462"));
        let mut other_ra = ra;
        other_ra[0] ^= 1;
        assert!(!verify_response(&p, &other_ra, SECRET));
        let mut tampered = accept.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let p = Packet::new_checked(&tampered[..]).unwrap();
        assert!(!verify_response(&p, &ra, SECRET));
    }

    #[test]
    fn rfc2865_7_2_chap_request_fields() {
        let bytes = golden(RFC2865_7_2_REQUEST);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (p.code(), p.identifier(), p.length()),
            (Code::AccessRequest, 1, 71)
        );
        assert_eq!(p.attribute(AttributeType::USER_NAME), Some(&b"flopsy"[..]));
        let chap = p.attribute(AttributeType::CHAP_PASSWORD).unwrap();
        assert_eq!(chap.len(), 17);
        assert_eq!(chap[0], 0x16);
        let values: Vec<_> = p
            .attributes()
            .filter_map(|a| Some((a.kind, a.as_u32()?)))
            .collect();
        assert_eq!(
            values,
            [
                (AttributeType::NAS_IP_ADDRESS, 0xc0a8_0110),
                (AttributeType::NAS_PORT, 20),
                (AttributeType::SERVICE_TYPE, value::SERVICE_TYPE_FRAMED),
                (AttributeType::FRAMED_PROTOCOL, value::FRAMED_PROTOCOL_PPP),
            ]
        );
        // Fields -> the same bytes.
        assert_eq!(Repr::parse(&p).to_bytes().unwrap(), bytes);
    }

    #[test]
    fn every_truncation_of_the_golden_packets_is_refused() {
        for golden_hex in [RFC2865_7_1_REQUEST, RFC2865_7_1_ACCEPT, RFC2865_7_2_REQUEST] {
            let bytes = golden(golden_hex);
            for len in 0..bytes.len() {
                assert_eq!(
                    Packet::new_checked(&bytes[..len]).unwrap_err(),
                    Error::Truncated,
                    "{len}"
                );
            }
        }
    }

    #[test]
    fn padding_past_the_length_is_ignored_and_bad_lengths_refused() {
        let mut bytes = golden(RFC2865_7_1_ACCEPT);
        bytes.extend_from_slice(&[0xAA; 7]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.as_bytes().len(), 38);
        assert_eq!(p.attributes().count(), 3);

        let mut short = golden(RFC2865_7_1_ACCEPT);
        short[3] = 19;
        short[2] = 0;
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::BadLength
        );
        let mut long = vec![0u8; 5000];
        long[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&long[..]).unwrap_err(),
            Error::BadLength
        );

        // An attribute of length 1, and one that runs past the Length.
        let mut bad = golden(RFC2865_7_1_ACCEPT);
        bad[21] = 1;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            Error::BadAttribute
        );
        bad[21] = 200;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            Error::BadAttribute
        );
    }

    #[test]
    fn passwords_of_every_length_round_trip() {
        let ra = [7u8; 16];
        for len in 0..=MAX_PASSWORD_LEN {
            let password: Vec<u8> = (1..=len as u8).collect();
            let hidden = hide_password(&password, b"s", &ra).unwrap();
            assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
            assert_eq!(reveal_password(&hidden, b"s", &ra).unwrap(), password);
        }
        assert_eq!(
            hide_password(&[1; 129], b"s", &ra).unwrap_err(),
            Error::TooLong
        );
    }

    #[test]
    fn message_authenticator_signs_and_verifies() {
        // A response carrying a Message-Authenticator, signed as a server
        // would: HMAC with the Request Authenticator in place, then the
        // Response Authenticator over the result (RFC 3579 §3.2).
        let request_authenticator = [0x42; 16];
        let mut repr = Repr {
            code: Code::AccessAccept,
            identifier: 9,
            authenticator: request_authenticator,
            attributes: Vec::new(),
        };
        repr.push(AttributeType::SESSION_TIMEOUT, 60u32.to_be_bytes());
        repr.push(AttributeType::MESSAGE_AUTHENTICATOR, [0; 16]);
        let mut bytes = repr.to_bytes().unwrap();
        let mac_offset = HEADER_LEN + 6 + 2;
        sign_message_authenticator(&mut bytes, mac_offset, b"secret");
        let response_authenticator = packet_digest(&bytes, &request_authenticator, b"secret");
        bytes[4..20].copy_from_slice(&response_authenticator);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(verify_response(&p, &request_authenticator, b"secret"));

        // A changed MAC with a recomputed Response Authenticator: only the
        // Message-Authenticator can tell.
        bytes[mac_offset] ^= 1;
        let response_authenticator = packet_digest(&bytes, &request_authenticator, b"secret");
        bytes[4..20].copy_from_slice(&response_authenticator);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!verify_response(&p, &request_authenticator, b"secret"));
    }

    /// RFC 2104's HMAC-MD5 test case 2 (key "Jefe"), through the same
    /// function with a message laid out as a "packet".
    #[test]
    fn hmac_md5_matches_rfc2104() {
        // The function hashes packet[..4] + authenticator + packet[20..];
        // give it "what do ya want for nothing?" split that way.
        let msg = b"what do ya want for nothing?";
        let mut packet = msg[..4].to_vec();
        packet.extend_from_slice(&[0; 16]);
        packet.extend_from_slice(&msg[20..]);
        let authenticator: [u8; 16] = msg[4..20].try_into().unwrap();
        let mac = message_authenticator(&packet, &authenticator, usize::MAX, b"Jefe");
        assert_eq!(mac.to_vec(), hex("750c783e6ab0b503eaa86e310a5db738"));
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            any::<u8>(),
            any::<u8>(),
            any::<[u8; 16]>(),
            proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..20,
            ),
        )
            .prop_map(|(code, identifier, authenticator, attributes)| Repr {
                code: Code::from(code),
                identifier,
                authenticator,
                attributes: attributes
                    .into_iter()
                    .map(|(t, v)| (AttributeType(t), v))
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_the_identity(repr in arb_repr()) {
            let mut buf = vec![0xEE; repr.buffer_len() + 3];
            let n = repr.emit(&mut buf).unwrap();
            prop_assert_eq!(n, repr.buffer_len());
            prop_assert!(buf[n..].iter().all(|b| *b == 0xEE));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), repr);
        }

        /// Any bytes: the parser answers without panicking, and what it
        /// accepts re-emits to the same bytes up to the Length.
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let repr = Repr::parse(&p);
                prop_assert_eq!(repr.to_bytes().unwrap(), p.as_bytes().to_vec());
                let _ = verify_response(&p, &[0; 16], b"s");
            }
        }

        /// Bytes that look like a header with a fitting Length.
        #[test]
        fn plausible_bytes_parse_without_panic(
            code in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = vec![code, 1];
            bytes.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
            bytes.extend_from_slice(&[0; 16]);
            bytes.extend_from_slice(&body);
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = verify_response(&p, &[0; 16], b"s");
                prop_assert_eq!(Repr::parse(&p).to_bytes().unwrap(), bytes.clone());
            }
        }
    }
}

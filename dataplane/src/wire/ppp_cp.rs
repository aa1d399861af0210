//! The control packet shared by LCP, IPCP and IPv6CP (RFC 1661 §5), and
//! their configuration options (RFC 1661 §6, RFC 1332, RFC 1877, RFC 5072).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Data ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The Data of Configure-Request/Ack/Nak/Reject is a list of options:
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |    Length     |    Data ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! where Length counts the Type and Length octets. Echo-Request, Echo-Reply
//! and Discard-Request start with a Magic-Number (RFC 1661 §5.8),
//! Protocol-Reject with the rejected protocol (§5.7), Code-Reject carries the
//! rejected packet (§5.6).
//!
//! PAP (RFC 1334 §2.2) and CHAP (RFC 1994 §4) use the same Code,
//! Identifier, Length and data with codes of their own: their views are
//! this module's [`CpPacket`] with their Code type.
//!
//! The view ([`Packet`], [`Options`]) is zero-copy. The [`CpRepr`] owns its
//! option list: it is built and read by the control plane's automaton.
//! A known option whose length is wrong for its type reads as `Unknown`, so
//! the automaton Configure-Rejects it as pppd does, rather than dropping the
//! whole packet.

use core::marker::PhantomData;
use core::net::Ipv4Addr;

use super::field::{set_u16_at, set_u32_at, u16_at, u32_at};
use super::{check_length_field, Error, Result};

/// The Code field (RFC 1661 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1.
    ConfigureRequest,
    /// 2.
    ConfigureAck,
    /// 3.
    ConfigureNak,
    /// 4.
    ConfigureReject,
    /// 5.
    TerminateRequest,
    /// 6.
    TerminateAck,
    /// 7.
    CodeReject,
    /// 8 (LCP only).
    ProtocolReject,
    /// 9 (LCP only).
    EchoRequest,
    /// 10 (LCP only).
    EchoReply,
    /// 11 (LCP only).
    DiscardRequest,
    /// Any other: answered with Code-Reject.
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Self {
        match v {
            1 => Code::ConfigureRequest,
            2 => Code::ConfigureAck,
            3 => Code::ConfigureNak,
            4 => Code::ConfigureReject,
            5 => Code::TerminateRequest,
            6 => Code::TerminateAck,
            7 => Code::CodeReject,
            8 => Code::ProtocolReject,
            9 => Code::EchoRequest,
            10 => Code::EchoReply,
            11 => Code::DiscardRequest,
            other => Code::Unknown(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        match c {
            Code::ConfigureRequest => 1,
            Code::ConfigureAck => 2,
            Code::ConfigureNak => 3,
            Code::ConfigureReject => 4,
            Code::TerminateRequest => 5,
            Code::TerminateAck => 6,
            Code::CodeReject => 7,
            Code::ProtocolReject => 8,
            Code::EchoRequest => 9,
            Code::EchoReply => 10,
            Code::DiscardRequest => 11,
            Code::Unknown(v) => v,
        }
    }
}

impl Code {
    /// Configure-Request/Ack/Nak/Reject: the data is an option list.
    pub const fn has_options(self) -> bool {
        matches!(
            self,
            Code::ConfigureRequest
                | Code::ConfigureAck
                | Code::ConfigureNak
                | Code::ConfigureReject
        )
    }

    /// Codes 8 to 11 exist only in LCP (RFC 1332 §2, RFC 5072 §2: the NCPs
    /// use codes 1 to 7 and Code-Reject the others).
    pub const fn is_lcp_only(self) -> bool {
        matches!(
            self,
            Code::ProtocolReject | Code::EchoRequest | Code::EchoReply | Code::DiscardRequest
        )
    }
}

mod field {
    pub(super) const CODE: usize = 0;
    pub(super) const IDENTIFIER: usize = 1;
    pub(super) const LENGTH: usize = 2;
}

/// Length of the Code, Identifier and Length fields.
pub const HEADER_LEN: usize = 4;

/// Length of an option's Type and Length fields.
pub const OPTION_HEADER_LEN: usize = 2;

/// A zero-copy view of the packet of RFC 1661 §5: Code, Identifier, a
/// Length that narrows the buffer, data.
///
/// PAP (RFC 1334 §2.2) and CHAP (RFC 1994 §4) use the same layout with codes
/// of their own, so the view is generic over the Code type `C`: each
/// protocol names it `Packet` with its code ([`Packet`] here,
/// [`pap::Packet`](super::pap::Packet), [`chap::Packet`](super::chap::Packet)).
/// What only LCP, IPCP and IPv6CP have (options, magic number, rejected
/// protocol) is on `CpPacket<T, Code>` alone.
#[derive(Debug, Clone)]
pub struct CpPacket<T: AsRef<[u8]>, C> {
    buffer: T,
    code: PhantomData<C>,
}

/// A zero-copy view of an LCP, IPCP or IPv6CP packet.
pub type Packet<T> = CpPacket<T, Code>;

impl<T: AsRef<[u8]>, C> CpPacket<T, C> {
    /// Wrap without checking; accessors may panic until [`Self::check_len`]
    /// has returned `Ok`.
    pub const fn new_unchecked(buffer: T) -> CpPacket<T, C> {
        CpPacket {
            buffer,
            code: PhantomData,
        }
    }

    /// Wrap untrusted bytes.
    pub fn new_checked(buffer: T) -> Result<CpPacket<T, C>> {
        let p = CpPacket::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Check that the header fits, that the Length covers it and that the
    /// buffer holds the Length. RFC 1661 §5: octets past the Length are
    /// padding; a Length past the end means the packet is discarded.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        check_length_field(b, HEADER_LEN, usize::from(self.length()))
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Code.
    pub fn code(&self) -> C
    where
        C: From<u8>,
    {
        C::from(self.buffer.as_ref()[field::CODE])
    }

    /// Identifier.
    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[field::IDENTIFIER]
    }

    /// Length: header plus data.
    pub fn length(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// The data, narrowed by Length.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.length())]
    }

    /// The packet as Length says: what Code-Reject must carry back
    /// (RFC 1661 §5.6).
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]>> CpPacket<T, Code> {
    /// The data read as an option list (meaningful for Configure-*).
    pub fn options(&self) -> Options<'_> {
        Options::new(self.data())
    }

    /// The Magic-Number of an Echo-Request/Reply or Discard-Request, if the
    /// data is long enough to hold one.
    pub fn magic_number(&self) -> Option<u32> {
        let d = self.data();
        (d.len() >= 4).then(|| u32_at(d, 0))
    }

    /// The rejected protocol of a Protocol-Reject, if the data holds one.
    pub fn rejected_protocol(&self) -> Option<u16> {
        let d = self.data();
        (d.len() >= 2).then(|| u16_at(d, 0))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized, C> CpPacket<&'a T, C> {
    /// What every `Repr::parse` starts with: check the length (a `Repr` may
    /// be handed a view made by `new_unchecked`), then borrow the data,
    /// narrowed by Length, for as long as the buffer rather than the view.
    pub(super) fn checked_data(&self) -> Result<&'a [u8]> {
        self.check_len()?;
        let buffer: &'a [u8] = T::as_ref(self.buffer);
        Ok(&buffer[HEADER_LEN..usize::from(self.length())])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, C> CpPacket<T, C> {
    /// Set the Code.
    pub fn set_code(&mut self, code: C)
    where
        u8: From<C>,
    {
        self.buffer.as_mut()[field::CODE] = code.into();
    }

    /// Set the Identifier.
    pub fn set_identifier(&mut self, id: u8) {
        self.buffer.as_mut()[field::IDENTIFIER] = id;
    }

    /// Set the Length.
    pub fn set_length(&mut self, len: u16) {
        set_u16_at(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// The data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CpPacket<T, Code> {
    /// Set the Magic-Number of an Echo or Discard packet: turning an
    /// Echo-Request into its Echo-Reply in place is a code and a magic
    /// number (RFC 1661 §5.8).
    pub fn set_magic_number(&mut self, magic: u32) -> Result<()> {
        if self.data().len() < 4 {
            return Err(Error::Truncated);
        }
        set_u32_at(self.buffer.as_mut(), HEADER_LEN, magic);
        Ok(())
    }
}

/// Split a one-octet length and the octets it counts off the front of
/// `data`: how PAP carries its Peer-ID, Password and Message (RFC 1334
/// §2.2.1, §2.2.2) and CHAP its Value (RFC 1994 §4.1). A length past the end
/// of the data is [`Error::Malformed`].
pub(super) fn take_counted(data: &[u8]) -> Result<(&[u8], &[u8])> {
    let (&len, rest) = data.split_first().ok_or(Error::Malformed)?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(Error::Malformed);
    }
    Ok(rest.split_at(len))
}

/// Write `octets` behind their one-octet length into the start of `buf`,
/// the other way of [`take_counted`]; returns the bytes written. More than
/// 255 octets, or a `buf` too short for them, is [`Error::BufferTooSmall`].
pub(super) fn put_counted(buf: &mut [u8], octets: &[u8]) -> Result<usize> {
    let len = u8::try_from(octets.len()).map_err(|_| Error::BufferTooSmall)?;
    let (first, rest) = buf.split_first_mut().ok_or(Error::BufferTooSmall)?;
    let rest = rest.get_mut(..octets.len()).ok_or(Error::BufferTooSmall)?;
    *first = len;
    rest.copy_from_slice(octets);
    Ok(1 + octets.len())
}

/// What every `Repr::emit` of these packets starts with: write the header of
/// a packet of `len` bytes (header included) into the start of `buf` and
/// give back the data, writable. A `len` that does not fit the Length field
/// or `buf` is [`Error::BufferTooSmall`].
pub(super) fn emit_header<C>(
    buf: &mut [u8],
    code: C,
    identifier: u8,
    len: usize,
) -> Result<&mut [u8]>
where
    u8: From<C>,
{
    let length = u16::try_from(len).map_err(|_| Error::BufferTooSmall)?;
    let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
    if len < HEADER_LEN {
        // No Repr asks for this (each counts the header in), but a wrong
        // length must not panic.
        return Err(Error::Malformed);
    }
    let mut packet = CpPacket::new_unchecked(buf);
    packet.set_code(code);
    packet.set_identifier(identifier);
    packet.set_length(length);
    Ok(&mut packet.into_inner()[HEADER_LEN..])
}

/// One option as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawOption<'a> {
    /// Type.
    pub kind: u8,
    /// Data (without the Type and Length octets).
    pub value: &'a [u8],
}

/// The options of a Configure-* packet, in order.
///
/// Yields an error once and stops if an option's Length is below 2
/// ([`Error::Malformed`]) or runs past the data ([`Error::Truncated`]).
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    /// Iterate over the options in `data`.
    pub const fn new(data: &'a [u8]) -> Options<'a> {
        Options { rest: data }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<RawOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let [kind, len, ..] = *rest else {
            return Some(Err(Error::Truncated));
        };
        let len = usize::from(len);
        if len < OPTION_HEADER_LEN {
            return Some(Err(Error::Malformed));
        }
        let Some(value) = rest.get(OPTION_HEADER_LEN..len) else {
            return Some(Err(Error::Truncated));
        };
        self.rest = &rest[len..];
        Some(Ok(RawOption { kind, value }))
    }
}

/// What a typed option set (LCP, IPCP, IPv6CP) provides to [`CpRepr`].
pub trait ConfigOption<'a>: Sized + Clone + PartialEq {
    /// Whether the protocol has LCP's codes 8 to 11 ([`Code::is_lcp_only`]).
    const LCP_CODES: bool;

    /// Interpret one option; never fails (a bad length gives `Unknown`).
    fn parse(raw: RawOption<'a>) -> Self;

    /// The Type octet.
    fn kind(&self) -> u8;

    /// Bytes of data after the Type and Length octets.
    fn value_len(&self) -> usize;

    /// Write the data into `value`, which is exactly `value_len()` long.
    fn emit_value(&self, value: &mut [u8]);

    /// Bytes the option takes on the wire.
    fn buffer_len(&self) -> usize {
        OPTION_HEADER_LEN + self.value_len()
    }

    /// Write the option into the start of `buf`; returns the bytes written.
    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let len_octet = u8::try_from(len).map_err(|_| Error::BufferTooSmall)?;
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        buf[0] = self.kind();
        buf[1] = len_octet;
        self.emit_value(&mut buf[OPTION_HEADER_LEN..]);
        Ok(len)
    }
}

/// The bytes a list of options takes.
pub fn options_len<'a, O: ConfigOption<'a>>(options: &[O]) -> usize {
    options.iter().map(ConfigOption::buffer_len).sum()
}

/// Write a list of options into the start of `buf`; returns the bytes
/// written.
pub fn emit_options<'a, O: ConfigOption<'a>>(options: &[O], buf: &mut [u8]) -> Result<usize> {
    let len = options_len(options);
    let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
    let mut at = 0;
    for option in options {
        at += option.emit(&mut buf[at..])?;
    }
    Ok(len)
}

/// Parse a list of options, failing on the first bad option length.
pub fn parse_options<'a, O: ConfigOption<'a>>(data: &'a [u8]) -> Result<Vec<O>> {
    Options::new(data).map(|raw| raw.map(O::parse)).collect()
}

/// CHAP algorithms of the LCP Authentication-Protocol option (RFC 1994 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChapAlgorithm {
    /// 5: CHAP with MD5.
    Md5,
    /// Any other (0x80 and 0x81 are Microsoft's).
    Unknown(u8),
}

impl From<u8> for ChapAlgorithm {
    fn from(v: u8) -> Self {
        match v {
            5 => ChapAlgorithm::Md5,
            other => ChapAlgorithm::Unknown(other),
        }
    }
}

impl From<ChapAlgorithm> for u8 {
    fn from(a: ChapAlgorithm) -> u8 {
        match a {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Unknown(v) => v,
        }
    }
}

/// The value of the LCP Authentication-Protocol option (RFC 1661 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProtocol<'a> {
    /// 0xc023 with no data (RFC 1334 §3.1).
    Pap,
    /// 0xc223 with one algorithm octet (RFC 1994 §3).
    Chap(ChapAlgorithm),
    /// Any other protocol, or PAP/CHAP with data of another length.
    Other {
        /// The protocol number.
        protocol: u16,
        /// The data after it.
        data: &'a [u8],
    },
}

/// An LCP Configuration Option (RFC 1661 §6, RFC 1662 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LcpOption<'a> {
    /// 1: Maximum-Receive-Unit.
    Mru(u16),
    /// 2: Async-Control-Character-Map (RFC 1662 §7.1).
    Accm(u32),
    /// 3: Authentication-Protocol.
    AuthProtocol(AuthProtocol<'a>),
    /// 5: Magic-Number.
    MagicNumber(u32),
    /// 7: Protocol-Field-Compression.
    Pfc,
    /// 8: Address-and-Control-Field-Compression.
    Acfc,
    /// Any other, including a known type with the wrong length. l2tpns
    /// sends Multilink MRRU (17) and Endpoint Discriminator (19), which a
    /// client without multilink Configure-Rejects.
    Unknown {
        /// Type.
        kind: u8,
        /// Data.
        value: &'a [u8],
    },
}

impl<'a> ConfigOption<'a> for LcpOption<'a> {
    const LCP_CODES: bool = true;

    fn parse(raw: RawOption<'a>) -> Self {
        let RawOption { kind, value } = raw;
        match (kind, value) {
            (1, &[a, b]) => LcpOption::Mru(u16::from_be_bytes([a, b])),
            (2, &[a, b, c, d]) => LcpOption::Accm(u32::from_be_bytes([a, b, c, d])),
            (3, &[a, b, ref data @ ..]) => {
                LcpOption::AuthProtocol(match (u16::from_be_bytes([a, b]), data) {
                    (0xc023, []) => AuthProtocol::Pap,
                    (0xc223, &[alg]) => AuthProtocol::Chap(ChapAlgorithm::from(alg)),
                    (protocol, data) => AuthProtocol::Other { protocol, data },
                })
            }
            (5, &[a, b, c, d]) => LcpOption::MagicNumber(u32::from_be_bytes([a, b, c, d])),
            (7, []) => LcpOption::Pfc,
            (8, []) => LcpOption::Acfc,
            _ => LcpOption::Unknown { kind, value },
        }
    }

    fn kind(&self) -> u8 {
        match self {
            LcpOption::Mru(_) => 1,
            LcpOption::Accm(_) => 2,
            LcpOption::AuthProtocol(_) => 3,
            LcpOption::MagicNumber(_) => 5,
            LcpOption::Pfc => 7,
            LcpOption::Acfc => 8,
            LcpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            LcpOption::Mru(_) => 2,
            LcpOption::Accm(_) | LcpOption::MagicNumber(_) => 4,
            LcpOption::AuthProtocol(AuthProtocol::Pap) => 2,
            LcpOption::AuthProtocol(AuthProtocol::Chap(_)) => 3,
            LcpOption::AuthProtocol(AuthProtocol::Other { data, .. }) => 2 + data.len(),
            LcpOption::Pfc | LcpOption::Acfc => 0,
            LcpOption::Unknown { value, .. } => value.len(),
        }
    }

    fn emit_value(&self, value: &mut [u8]) {
        match self {
            LcpOption::Mru(mru) => value.copy_from_slice(&mru.to_be_bytes()),
            LcpOption::Accm(v) | LcpOption::MagicNumber(v) => {
                value.copy_from_slice(&v.to_be_bytes())
            }
            LcpOption::AuthProtocol(AuthProtocol::Pap) => {
                value.copy_from_slice(&0xc023u16.to_be_bytes())
            }
            LcpOption::AuthProtocol(AuthProtocol::Chap(alg)) => {
                value[..2].copy_from_slice(&0xc223u16.to_be_bytes());
                value[2] = u8::from(*alg);
            }
            LcpOption::AuthProtocol(AuthProtocol::Other { protocol, data }) => {
                value[..2].copy_from_slice(&protocol.to_be_bytes());
                value[2..].copy_from_slice(data);
            }
            LcpOption::Pfc | LcpOption::Acfc => {}
            LcpOption::Unknown { value: v, .. } => value.copy_from_slice(v),
        }
    }
}

/// An IPCP Configuration Option (RFC 1332 §3, RFC 1877 §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpcpOption<'a> {
    /// 3: IP-Address (0.0.0.0 asks the peer to assign one).
    IpAddress(Ipv4Addr),
    /// 129: Primary-DNS-Server.
    PrimaryDns(Ipv4Addr),
    /// 130: Primary-NBNS-Server.
    PrimaryNbns(Ipv4Addr),
    /// 131: Secondary-DNS-Server.
    SecondaryDns(Ipv4Addr),
    /// 132: Secondary-NBNS-Server.
    SecondaryNbns(Ipv4Addr),
    /// Any other (IP-Compression-Protocol 2 among them), or a known type
    /// with the wrong length.
    Unknown {
        /// Type.
        kind: u8,
        /// Data.
        value: &'a [u8],
    },
}

impl<'a> ConfigOption<'a> for IpcpOption<'a> {
    const LCP_CODES: bool = false;

    fn parse(raw: RawOption<'a>) -> Self {
        let RawOption { kind, value } = raw;
        let &[a, b, c, d] = value else {
            return IpcpOption::Unknown { kind, value };
        };
        let addr = Ipv4Addr::new(a, b, c, d);
        match kind {
            3 => IpcpOption::IpAddress(addr),
            129 => IpcpOption::PrimaryDns(addr),
            130 => IpcpOption::PrimaryNbns(addr),
            131 => IpcpOption::SecondaryDns(addr),
            132 => IpcpOption::SecondaryNbns(addr),
            _ => IpcpOption::Unknown { kind, value },
        }
    }

    fn kind(&self) -> u8 {
        match self {
            IpcpOption::IpAddress(_) => 3,
            IpcpOption::PrimaryDns(_) => 129,
            IpcpOption::PrimaryNbns(_) => 130,
            IpcpOption::SecondaryDns(_) => 131,
            IpcpOption::SecondaryNbns(_) => 132,
            IpcpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            IpcpOption::Unknown { value, .. } => value.len(),
            _ => 4,
        }
    }

    fn emit_value(&self, value: &mut [u8]) {
        match self {
            IpcpOption::IpAddress(a)
            | IpcpOption::PrimaryDns(a)
            | IpcpOption::PrimaryNbns(a)
            | IpcpOption::SecondaryDns(a)
            | IpcpOption::SecondaryNbns(a) => value.copy_from_slice(&a.octets()),
            IpcpOption::Unknown { value: v, .. } => value.copy_from_slice(v),
        }
    }
}

/// An IPv6CP Configuration Option (RFC 5072 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv6cpOption<'a> {
    /// 1: Interface-Identifier, the low 64 bits of the link-local address.
    InterfaceIdentifier([u8; 8]),
    /// Any other, or Interface-Identifier with the wrong length.
    Unknown {
        /// Type.
        kind: u8,
        /// Data.
        value: &'a [u8],
    },
}

impl<'a> ConfigOption<'a> for Ipv6cpOption<'a> {
    const LCP_CODES: bool = false;

    fn parse(raw: RawOption<'a>) -> Self {
        let RawOption { kind, value } = raw;
        match (kind, <[u8; 8]>::try_from(value)) {
            (1, Ok(id)) => Ipv6cpOption::InterfaceIdentifier(id),
            _ => Ipv6cpOption::Unknown { kind, value },
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Ipv6cpOption::InterfaceIdentifier(_) => 1,
            Ipv6cpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            Ipv6cpOption::InterfaceIdentifier(_) => 8,
            Ipv6cpOption::Unknown { value, .. } => value.len(),
        }
    }

    fn emit_value(&self, value: &mut [u8]) {
        match self {
            Ipv6cpOption::InterfaceIdentifier(id) => value.copy_from_slice(id),
            Ipv6cpOption::Unknown { value: v, .. } => value.copy_from_slice(v),
        }
    }
}

/// The data of a control packet, by code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CpData<'a, O> {
    /// Configure-Request, -Ack, -Nak, -Reject.
    Options(Vec<O>),
    /// Terminate-Request, -Ack: uninterpreted data (RFC 1661 §5.4).
    Terminate(&'a [u8]),
    /// Code-Reject: the rejected packet, header included (RFC 1661 §5.6).
    CodeReject(&'a [u8]),
    /// Protocol-Reject (RFC 1661 §5.7).
    ProtocolReject {
        /// The protocol that was rejected.
        protocol: u16,
        /// The information field of the rejected frame.
        information: &'a [u8],
    },
    /// Echo-Request, Echo-Reply, Discard-Request (RFC 1661 §5.8).
    Echo {
        /// The sender's Magic-Number (0 if it negotiated none).
        magic_number: u32,
        /// Uninterpreted data.
        data: &'a [u8],
    },
    /// A code the protocol does not have: its data, for Code-Reject.
    Unknown(&'a [u8]),
}

/// The meaning of a control packet of LCP ([`LcpRepr`]), IPCP
/// ([`IpcpRepr`]) or IPv6CP ([`Ipv6cpRepr`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpRepr<'a, O> {
    /// Code. For IPCP and IPv6CP, codes 8 to 11 read as [`Code::Unknown`].
    pub code: Code,
    /// Identifier.
    pub identifier: u8,
    /// Data; its variant must fit the code.
    pub data: CpData<'a, O>,
}

/// An LCP packet.
pub type LcpRepr<'a> = CpRepr<'a, LcpOption<'a>>;
/// An IPCP packet.
pub type IpcpRepr<'a> = CpRepr<'a, IpcpOption<'a>>;
/// An IPv6CP packet.
pub type Ipv6cpRepr<'a> = CpRepr<'a, Ipv6cpOption<'a>>;

impl<'a, O: ConfigOption<'a>> CpRepr<'a, O> {
    /// The code as this protocol knows it: the NCPs have no codes 8 to 11.
    fn protocol_code(raw: u8) -> Code {
        let code = Code::from(raw);
        if code.is_lcp_only() && !O::LCP_CODES {
            Code::Unknown(raw)
        } else {
            code
        }
    }

    /// Read a packet. Fails on a bad option length, or on Echo, Discard or
    /// Protocol-Reject data too short for its fixed part.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<CpRepr<'a, O>> {
        let data = packet.checked_data()?;
        let code = Self::protocol_code(packet.code().into());
        let data = match code {
            Code::ConfigureRequest
            | Code::ConfigureAck
            | Code::ConfigureNak
            | Code::ConfigureReject => CpData::Options(parse_options(data)?),
            Code::TerminateRequest | Code::TerminateAck => CpData::Terminate(data),
            Code::CodeReject => CpData::CodeReject(data),
            Code::ProtocolReject => match data.split_first_chunk::<2>() {
                Some((protocol, information)) => CpData::ProtocolReject {
                    protocol: u16::from_be_bytes(*protocol),
                    information,
                },
                None => return Err(Error::Malformed),
            },
            Code::EchoRequest | Code::EchoReply | Code::DiscardRequest => {
                match data.split_first_chunk::<4>() {
                    Some((magic, data)) => CpData::Echo {
                        magic_number: u32::from_be_bytes(*magic),
                        data,
                    },
                    None => return Err(Error::Malformed),
                }
            }
            Code::Unknown(_) => CpData::Unknown(data),
        };
        Ok(CpRepr {
            code,
            identifier: packet.identifier(),
            data,
        })
    }

    fn data_len(&self) -> usize {
        match &self.data {
            CpData::Options(options) => options_len(options),
            CpData::Terminate(d) | CpData::CodeReject(d) | CpData::Unknown(d) => d.len(),
            CpData::ProtocolReject { information, .. } => 2 + information.len(),
            CpData::Echo { data, .. } => 4 + data.len(),
        }
    }

    /// The code and the data variant agree, and the code reads back as
    /// itself in this protocol.
    fn is_consistent(&self) -> bool {
        let fits = match &self.data {
            CpData::Options(_) => self.code.has_options(),
            CpData::Terminate(_) => {
                matches!(self.code, Code::TerminateRequest | Code::TerminateAck)
            }
            CpData::CodeReject(_) => self.code == Code::CodeReject,
            CpData::ProtocolReject { .. } => self.code == Code::ProtocolReject,
            CpData::Echo { .. } => matches!(
                self.code,
                Code::EchoRequest | Code::EchoReply | Code::DiscardRequest
            ),
            CpData::Unknown(_) => matches!(self.code, Code::Unknown(_)),
        };
        fits && Self::protocol_code(self.code.into()) == self.code
    }

    /// The whole packet's length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data_len()
    }

    /// Write the packet into the start of `buf`; returns the bytes written.
    /// A data variant that does not fit the code is [`Error::Malformed`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if !self.is_consistent() {
            return Err(Error::Malformed);
        }
        let len = self.buffer_len();
        let out = emit_header(buf, self.code, self.identifier, len)?;
        match &self.data {
            CpData::Options(options) => {
                emit_options(options, out)?;
            }
            CpData::Terminate(d) | CpData::CodeReject(d) | CpData::Unknown(d) => {
                out.copy_from_slice(d)
            }
            CpData::ProtocolReject {
                protocol,
                information,
            } => {
                set_u16_at(out, 0, *protocol);
                out[2..].copy_from_slice(information);
            }
            CpData::Echo { magic_number, data } => {
                set_u32_at(out, 0, *magic_number);
                out[4..].copy_from_slice(data);
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

    /// pppoe-subscribers_l2tpns.pcap frame 20, after PPPoE and the PPP
    /// protocol: l2tpns's first LCP Configure-Request, with Multilink MRRU
    /// and Endpoint Discriminator (class 2, its IP address).
    const CAPTURE_LCP_REQUEST: [u8; 29] = [
        0x01, 0x01, 0x00, 0x1d, 0x01, 0x04, 0x05, 0xb6, 0x03, 0x04, 0xc0, 0x23, 0x05, 0x06, 0x6b,
        0x05, 0x17, 0xdd, 0x11, 0x04, 0x06, 0x4e, 0x13, 0x07, 0x02, 0x0a, 0x00, 0x02, 0x03,
    ];

    /// Frame 29: the subscriber's Configure-Request (MRU 1492, magic 1).
    const CAPTURE_LCP_CLIENT_REQUEST: [u8; 14] = [
        0x01, 0x01, 0x00, 0x0e, 0x01, 0x04, 0x05, 0xd4, 0x05, 0x06, 0x00, 0x00, 0x00, 0x01,
    ];

    /// Frame 34: the subscriber's Configure-Reject of MRRU and Endpoint
    /// Discriminator.
    const CAPTURE_LCP_REJECT: [u8; 15] = [
        0x04, 0x01, 0x00, 0x0f, 0x11, 0x04, 0x06, 0x4e, 0x13, 0x07, 0x02, 0x0a, 0x00, 0x02, 0x03,
    ];

    /// Frame 191: the subscriber's Terminate-Request.
    const CAPTURE_LCP_TERMINATE: [u8; 4] = [0x05, 0x03, 0x00, 0x04];

    /// Frame 108: the subscriber's IPCP Configure-Request asking for an
    /// address and both DNS servers.
    const CAPTURE_IPCP_REQUEST: [u8; 22] = [
        0x01, 0x01, 0x00, 0x16, 0x03, 0x06, 0x00, 0x00, 0x00, 0x00, 0x81, 0x06, 0x00, 0x00, 0x00,
        0x00, 0x83, 0x06, 0x00, 0x00, 0x00, 0x00,
    ];

    /// Frame 110: l2tpns's IPCP Configure-Nak with the values to use.
    const CAPTURE_IPCP_NAK: [u8; 22] = [
        0x03, 0x01, 0x00, 0x16, 0x03, 0x06, 0x0a, 0x0a, 0x00, 0x01, 0x81, 0x06, 0x0a, 0x00, 0x01,
        0x35, 0x83, 0x06, 0x0a, 0x00, 0x01, 0x36,
    ];

    /// An LCP Echo-Request with l2tpns's magic number and 4 bytes of data,
    /// built by hand after RFC 1661 §5.8 (the capture has no echo).
    const ECHO_REQUEST: [u8; 12] = [
        0x09, 0x07, 0x00, 0x0c, 0x6b, 0x05, 0x17, 0xdd, 0xde, 0xad, 0xbe, 0xef,
    ];

    /// An LCP Protocol-Reject of an IPv6CP packet, by hand (RFC 1661 §5.7).
    const PROTOCOL_REJECT: [u8; 10] = [0x08, 0x02, 0x00, 0x0a, 0x80, 0x57, 0x01, 0x01, 0x00, 0x04];

    /// An IPv6CP Configure-Request, by hand (RFC 5072 §4.1).
    const IPV6CP_REQUEST: [u8; 14] = [
        0x01, 0x01, 0x00, 0x0e, 0x01, 0x0a, 0x02, 0x00, 0x5e, 0xff, 0xfe, 0x00, 0x53, 0x01,
    ];

    const ED: &[u8] = &[0x02, 0x0a, 0x00, 0x02, 0x03];

    fn lcp_request() -> LcpRepr<'static> {
        CpRepr {
            code: Code::ConfigureRequest,
            identifier: 1,
            data: CpData::Options(vec![
                LcpOption::Mru(1462),
                LcpOption::AuthProtocol(AuthProtocol::Pap),
                LcpOption::MagicNumber(0x6b05_17dd),
                LcpOption::Unknown {
                    kind: 17,
                    value: &[0x06, 0x4e],
                },
                LcpOption::Unknown {
                    kind: 19,
                    value: ED,
                },
            ]),
        }
    }

    fn lcp_reject() -> LcpRepr<'static> {
        CpRepr {
            code: Code::ConfigureReject,
            identifier: 1,
            data: CpData::Options(vec![
                LcpOption::Unknown {
                    kind: 17,
                    value: &[0x06, 0x4e],
                },
                LcpOption::Unknown {
                    kind: 19,
                    value: ED,
                },
            ]),
        }
    }

    fn ipcp_nak() -> IpcpRepr<'static> {
        CpRepr {
            code: Code::ConfigureNak,
            identifier: 1,
            data: CpData::Options(vec![
                IpcpOption::IpAddress(Ipv4Addr::new(10, 10, 0, 1)),
                IpcpOption::PrimaryDns(Ipv4Addr::new(10, 0, 1, 53)),
                IpcpOption::SecondaryDns(Ipv4Addr::new(10, 0, 1, 54)),
            ]),
        }
    }

    fn lcp_goldens() -> Vec<(&'static [u8], LcpRepr<'static>)> {
        vec![
            (&CAPTURE_LCP_REQUEST, lcp_request()),
            (
                &CAPTURE_LCP_CLIENT_REQUEST,
                CpRepr {
                    code: Code::ConfigureRequest,
                    identifier: 1,
                    data: CpData::Options(vec![LcpOption::Mru(1492), LcpOption::MagicNumber(1)]),
                },
            ),
            (&CAPTURE_LCP_REJECT, lcp_reject()),
            (
                &CAPTURE_LCP_TERMINATE,
                CpRepr {
                    code: Code::TerminateRequest,
                    identifier: 3,
                    data: CpData::Terminate(&[]),
                },
            ),
            (
                &ECHO_REQUEST,
                CpRepr {
                    code: Code::EchoRequest,
                    identifier: 7,
                    data: CpData::Echo {
                        magic_number: 0x6b05_17dd,
                        data: &[0xde, 0xad, 0xbe, 0xef],
                    },
                },
            ),
            (
                &PROTOCOL_REJECT,
                CpRepr {
                    code: Code::ProtocolReject,
                    identifier: 2,
                    data: CpData::ProtocolReject {
                        protocol: 0x8057,
                        information: &[0x01, 0x01, 0x00, 0x04],
                    },
                },
            ),
        ]
    }

    fn ipcp_goldens() -> Vec<(&'static [u8], IpcpRepr<'static>)> {
        vec![
            (
                &CAPTURE_IPCP_REQUEST,
                CpRepr {
                    code: Code::ConfigureRequest,
                    identifier: 1,
                    data: CpData::Options(vec![
                        IpcpOption::IpAddress(Ipv4Addr::UNSPECIFIED),
                        IpcpOption::PrimaryDns(Ipv4Addr::UNSPECIFIED),
                        IpcpOption::SecondaryDns(Ipv4Addr::UNSPECIFIED),
                    ]),
                },
            ),
            (&CAPTURE_IPCP_NAK, ipcp_nak()),
        ]
    }

    fn ipv6cp_request() -> Ipv6cpRepr<'static> {
        CpRepr {
            code: Code::ConfigureRequest,
            identifier: 1,
            data: CpData::Options(vec![Ipv6cpOption::InterfaceIdentifier([
                0x02, 0x00, 0x5e, 0xff, 0xfe, 0x00, 0x53, 0x01,
            ])]),
        }
    }

    #[test]
    fn golden_to_fields() {
        let p = Packet::new_checked(&CAPTURE_LCP_REQUEST[..]).unwrap();
        assert_eq!(p.code(), Code::ConfigureRequest);
        assert_eq!((p.identifier(), p.length()), (1, 29));
        let raw: Vec<_> = p.options().map(|o| o.unwrap().kind).collect();
        assert_eq!(raw, [1, 3, 5, 17, 19]);
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.magic_number(), Some(0x6b05_17dd));
        let p = Packet::new_checked(&PROTOCOL_REJECT[..]).unwrap();
        assert_eq!(p.rejected_protocol(), Some(0x8057));

        for (bytes, repr) in lcp_goldens() {
            let p = Packet::new_checked(bytes).unwrap();
            assert_eq!(LcpRepr::parse(&p).unwrap(), repr);
        }
        for (bytes, repr) in ipcp_goldens() {
            let p = Packet::new_checked(bytes).unwrap();
            assert_eq!(IpcpRepr::parse(&p).unwrap(), repr);
        }
        let p = Packet::new_checked(&IPV6CP_REQUEST[..]).unwrap();
        assert_eq!(Ipv6cpRepr::parse(&p).unwrap(), ipv6cp_request());
    }

    #[test]
    fn fields_to_golden() {
        fn check<'a, O: ConfigOption<'a>>(bytes: &[u8], repr: &CpRepr<'a, O>) {
            assert_emits_golden(bytes, repr.buffer_len(), |b| repr.emit(b));
        }
        for (bytes, repr) in lcp_goldens() {
            check(bytes, &repr);
        }
        for (bytes, repr) in ipcp_goldens() {
            check(bytes, &repr);
        }
        check(&IPV6CP_REQUEST, &ipv6cp_request());
    }

    #[test]
    fn every_truncation() {
        let all: [&[u8]; 9] = [
            &CAPTURE_LCP_REQUEST,
            &CAPTURE_LCP_CLIENT_REQUEST,
            &CAPTURE_LCP_REJECT,
            &CAPTURE_LCP_TERMINATE,
            &CAPTURE_IPCP_REQUEST,
            &CAPTURE_IPCP_NAK,
            &ECHO_REQUEST,
            &PROTOCOL_REJECT,
            &IPV6CP_REQUEST,
        ];
        for bytes in all {
            assert_every_truncation_fails(bytes, |b| Packet::new_checked(b).err());
        }
    }

    #[test]
    fn length_narrows() {
        let mut b = CAPTURE_LCP_TERMINATE.to_vec();
        b.extend_from_slice(&[0; 10]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.data().is_empty());
        assert_eq!(p.packet(), &CAPTURE_LCP_TERMINATE);
        let b = [0x05, 0x03, 0x00, 0x03];
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn bad_option_lengths_fail_cleanly() {
        // Length 1: below the option header.
        let b = [0x01, 0x01, 0x00, 0x0a, 0x01, 0x04, 0x05, 0xdc, 0x07, 0x01];
        let p = Packet::new_checked(&b[..]).unwrap();
        let got: Vec<_> = p.options().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err(Error::Malformed));
        assert_eq!(LcpRepr::parse(&p).unwrap_err(), Error::Malformed);
        // Length past the data.
        let b = [0x01, 0x01, 0x00, 0x07, 0x05, 0x06, 0x00];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options().collect::<Vec<_>>(), [Err(Error::Truncated)]);
        assert_eq!(LcpRepr::parse(&p).unwrap_err(), Error::Truncated);
        // One stray byte.
        let b = [0x01, 0x01, 0x00, 0x05, 0x07];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options().collect::<Vec<_>>(), [Err(Error::Truncated)]);
    }

    #[test]
    fn known_types_with_wrong_lengths_read_as_unknown() {
        let raw = |kind, value| RawOption { kind, value };
        assert_eq!(
            LcpOption::parse(raw(1, &[5])),
            LcpOption::Unknown {
                kind: 1,
                value: &[5]
            }
        );
        assert_eq!(
            LcpOption::parse(raw(7, &[0])),
            LcpOption::Unknown {
                kind: 7,
                value: &[0]
            }
        );
        assert_eq!(
            IpcpOption::parse(raw(3, &[1, 2])),
            IpcpOption::Unknown {
                kind: 3,
                value: &[1, 2]
            }
        );
        assert_eq!(
            Ipv6cpOption::parse(raw(1, &[1; 7])),
            Ipv6cpOption::Unknown {
                kind: 1,
                value: &[1; 7]
            }
        );
        assert_eq!(
            LcpOption::parse(raw(3, &[0xc2, 0x23, 0x05])),
            LcpOption::AuthProtocol(AuthProtocol::Chap(ChapAlgorithm::Md5))
        );
        assert_eq!(
            LcpOption::parse(raw(3, &[0xc2, 0x23])),
            LcpOption::AuthProtocol(AuthProtocol::Other {
                protocol: 0xc223,
                data: &[]
            })
        );
    }

    #[test]
    fn ncp_has_no_echo() {
        // An IPCP packet with code 9 is an unknown code, to be Code-Rejected
        // (RFC 1332 §2), even with too little data for an echo.
        let b = [0x09, 0x01, 0x00, 0x05, 0xaa];
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = IpcpRepr::parse(&p).unwrap();
        assert_eq!(r.code, Code::Unknown(9));
        assert_eq!(r.data, CpData::Unknown(&[0xaa]));
        assert_eq!(LcpRepr::parse(&p).unwrap_err(), Error::Malformed);
        let mut out = [0u8; 5];
        assert_eq!(r.emit(&mut out), Ok(5));
        assert_eq!(out, b);
    }

    #[test]
    fn emit_refuses_inconsistent_reprs() {
        let mut buf = [0u8; 64];
        let mut r = lcp_request();
        r.code = Code::EchoRequest;
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let r: LcpRepr<'_> = CpRepr {
            code: Code::Unknown(9),
            identifier: 0,
            data: CpData::Unknown(&[]),
        };
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        let r: IpcpRepr<'_> = CpRepr {
            code: Code::EchoRequest,
            identifier: 0,
            data: CpData::Echo {
                magic_number: 0,
                data: &[],
            },
        };
        assert_eq!(r.emit(&mut buf), Err(Error::Malformed));
        assert_eq!(
            lcp_request().emit(&mut buf[..28]),
            Err(Error::BufferTooSmall)
        );
        let big = [0u8; 254];
        let r: LcpRepr<'_> = CpRepr {
            code: Code::ConfigureRequest,
            identifier: 0,
            data: CpData::Options(vec![LcpOption::Unknown {
                kind: 99,
                value: &big,
            }]),
        };
        assert_eq!(r.emit(&mut [0u8; 300]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn emit_header_refuses_lengths_that_do_not_fit() {
        let mut buf = [0u8; 8];
        assert_eq!(
            emit_header(&mut buf, Code::TerminateAck, 1, 9),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            emit_header(&mut [0u8; 70_000], Code::TerminateAck, 1, 65_536),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            emit_header(&mut buf, Code::TerminateAck, 1, 3),
            Err(Error::Malformed)
        );
        let data = emit_header(&mut buf, Code::TerminateAck, 7, 6).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(buf, [6, 7, 0, 6, 0, 0, 0, 0]);
    }

    #[test]
    fn counted_octets() {
        assert_eq!(take_counted(&[2, 7, 8, 9]), Ok((&[7, 8][..], &[9][..])));
        assert_eq!(take_counted(&[3, 7, 8]), Err(Error::Malformed));
        assert_eq!(take_counted(&[]), Err(Error::Malformed));
        let mut buf = [0u8; 4];
        assert_eq!(put_counted(&mut buf, &[7, 8]), Ok(3));
        assert_eq!(buf, [2, 7, 8, 0]);
        assert_eq!(put_counted(&mut buf, &[7; 4]), Err(Error::BufferTooSmall));
        assert_eq!(put_counted(&mut [], &[]), Err(Error::BufferTooSmall));
        let long = [0u8; 256];
        assert_eq!(
            put_counted(&mut [0u8; 300], &long),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn echo_reply_in_place() {
        let mut b = ECHO_REQUEST;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_code(Code::EchoReply);
        p.set_magic_number(0x0102_0304).unwrap();
        p.set_identifier(8);
        assert_eq!(p.magic_number(), Some(0x0102_0304));
        assert_eq!(p.into_inner()[..8], [10, 8, 0, 12, 1, 2, 3, 4]);
        let mut b = CAPTURE_LCP_TERMINATE;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.set_magic_number(1), Err(Error::Truncated));
        assert_eq!(p.magic_number(), None);
        p.set_length(4);
        assert!(p.data_mut().is_empty());
    }

    #[test]
    fn options_from_a_slice() {
        let options = [LcpOption::Mru(1492), LcpOption::MagicNumber(1)];
        let mut buf = [0u8; 10];
        assert_eq!(options_len(&options), 10);
        assert_eq!(emit_options(&options, &mut buf), Ok(10));
        assert_eq!(buf, CAPTURE_LCP_CLIENT_REQUEST[4..]);
        assert_eq!(parse_options::<LcpOption<'_>>(&buf), Ok(options.to_vec()));
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    /// An option spec: the typed options are built from it in the test body
    /// so that their borrowed values live there.
    #[derive(Debug, Clone)]
    enum Spec {
        Lcp(u8, u32, Vec<u8>),
        Ipcp(u8, u32, Vec<u8>),
        Ipv6cp(u8, [u8; 8], Vec<u8>),
    }

    fn lcp_option(which: u8, n: u32, bytes: &[u8]) -> LcpOption<'_> {
        match which % 9 {
            0 => LcpOption::Mru(n as u16),
            1 => LcpOption::Accm(n),
            2 => LcpOption::AuthProtocol(AuthProtocol::Pap),
            3 => LcpOption::AuthProtocol(AuthProtocol::Chap(ChapAlgorithm::from(n as u8))),
            4 => LcpOption::AuthProtocol(AuthProtocol::Other {
                // Neither PAP nor CHAP, which would read back typed.
                protocol: (n as u16) | 0x0100,
                data: bytes,
            }),
            5 => LcpOption::MagicNumber(n),
            6 => LcpOption::Pfc,
            7 => LcpOption::Acfc,
            _ => LcpOption::Unknown {
                kind: [0, 4, 6, 9, 17, 19, 255][n as usize % 7],
                value: bytes,
            },
        }
    }

    fn ipcp_option(which: u8, n: u32, bytes: &[u8]) -> IpcpOption<'_> {
        let a = Ipv4Addr::from(n);
        match which % 6 {
            0 => IpcpOption::IpAddress(a),
            1 => IpcpOption::PrimaryDns(a),
            2 => IpcpOption::PrimaryNbns(a),
            3 => IpcpOption::SecondaryDns(a),
            4 => IpcpOption::SecondaryNbns(a),
            _ => IpcpOption::Unknown {
                kind: [1, 2, 4, 128, 133][n as usize % 5],
                value: bytes,
            },
        }
    }

    fn ipv6cp_option(which: u8, id: [u8; 8], bytes: &[u8]) -> Ipv6cpOption<'_> {
        match which % 2 {
            0 => Ipv6cpOption::InterfaceIdentifier(id),
            _ => Ipv6cpOption::Unknown {
                kind: 2 + which / 2,
                value: bytes,
            },
        }
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        prop_oneof![
            (any::<u8>(), any::<u32>(), arb_bytes(8)).prop_map(|(w, n, b)| Spec::Lcp(w, n, b)),
            (any::<u8>(), any::<u32>(), arb_bytes(8)).prop_map(|(w, n, b)| Spec::Ipcp(w, n, b)),
            (any::<u8>(), any::<[u8; 8]>(), arb_bytes(8))
                .prop_map(|(w, id, b)| Spec::Ipv6cp(w, id, b)),
        ]
    }

    fn round_trip<'a, O: ConfigOption<'a> + core::fmt::Debug>(
        repr: &CpRepr<'a, O>,
        buf: &'a mut Vec<u8>,
    ) -> core::result::Result<(), TestCaseError> {
        *buf = emit_with_spare(repr.buffer_len(), 3, |b| repr.emit(b));
        let buf: &'a [u8] = buf;
        let parsed = CpRepr::<O>::parse(&Packet::new_checked(buf).unwrap());
        prop_assert_eq!(parsed.as_ref(), Ok(repr));
        Ok(())
    }

    proptest! {
        #[test]
        fn options_round_trip(
            specs in prop::collection::vec(arb_spec(), 0..6),
            code in 1u8..5,
            identifier in any::<u8>(),
        ) {
            let code = Code::from(code);
            let lcp: Vec<_> = specs.iter().filter_map(|s| match s {
                Spec::Lcp(w, n, b) => Some(lcp_option(*w, *n, b)),
                _ => None,
            }).collect();
            let ipcp: Vec<_> = specs.iter().filter_map(|s| match s {
                Spec::Ipcp(w, n, b) => Some(ipcp_option(*w, *n, b)),
                _ => None,
            }).collect();
            let ipv6cp: Vec<_> = specs.iter().filter_map(|s| match s {
                Spec::Ipv6cp(w, id, b) => Some(ipv6cp_option(*w, *id, b)),
                _ => None,
            }).collect();
            round_trip(&CpRepr { code, identifier, data: CpData::Options(lcp) }, &mut Vec::new())?;
            round_trip(&CpRepr { code, identifier, data: CpData::Options(ipcp) }, &mut Vec::new())?;
            round_trip(&CpRepr { code, identifier, data: CpData::Options(ipv6cp) }, &mut Vec::new())?;
        }

        #[test]
        fn other_codes_round_trip(
            code in prop_oneof![5u8..=11, 12u8..=255, Just(0u8)],
            identifier in any::<u8>(),
            n in any::<u32>(),
            bytes in arb_bytes(16),
        ) {
            let code = Code::from(code);
            let data: CpData<'_, LcpOption<'_>> = match code {
                Code::TerminateRequest | Code::TerminateAck => CpData::Terminate(&bytes),
                Code::CodeReject => CpData::CodeReject(&bytes),
                Code::ProtocolReject => CpData::ProtocolReject { protocol: n as u16, information: &bytes },
                Code::Unknown(_) => CpData::Unknown(&bytes),
                _ => CpData::Echo { magic_number: n, data: &bytes },
            };
            round_trip(&CpRepr { code, identifier, data }, &mut Vec::new())?;
        }

        #[test]
        fn garbage_never_panics(mut bytes in arb_bytes(40)) {
            if bytes.len() >= 4 && bytes[1] & 1 == 0 {
                let len = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[0] %= 12;
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.code(), p.identifier(), p.magic_number(), p.rejected_protocol());
                prop_assert!(p.options().count() <= p.data().len() / 2 + 1);
                if let Ok(r) = LcpRepr::parse(&p) {
                    let mut out = vec![0; r.buffer_len()];
                    prop_assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
                    prop_assert_eq!(&out[..], p.packet());
                }
                if let Ok(r) = IpcpRepr::parse(&p) {
                    let mut out = vec![0; r.buffer_len()];
                    prop_assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
                    prop_assert_eq!(&out[..], p.packet());
                }
                let _ = Ipv6cpRepr::parse(&p);
            }
        }
    }
}

//! L2TPv2 control messages (RFC 2661 §3.2, §4): an L2TP header with the T, L
//! and S bits set followed by AVPs, the first of which is the Message Type.
//!
//! This is the typed layer the control plane works with. It allocates (AVP
//! values are owned) because it runs on the control-plane thread only.
//!
//! A message with no AVPs at all is a ZLB acknowledgement (RFC 2661 §5.8):
//! [`ControlMessage::message_type`] is `None`.
//!
//! Hidden AVPs (RFC 2661 §4.3) are hidden on emit and revealed on parse with
//! the tunnel's shared secret and the most recent Random Vector AVP that
//! precedes them in the same message.

use core::net::Ipv4Addr;

use super::avp::{self, Avps};
use super::field::{set_u16_at, u16_at, u32_at};
use super::l2tp::{self, HeaderRepr, Packet};
use super::{Error, Result};

/// The IETF message types of RFC 2661 §3.2 and the vendor message types of
/// the HA extension (DESIGN.md §3), as carried in the Message Type AVP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Start-Control-Connection-Request (1).
    Sccrq,
    /// Start-Control-Connection-Reply (2).
    Sccrp,
    /// Start-Control-Connection-Connected (3).
    Scccn,
    /// Stop-Control-Connection-Notification (4).
    StopCcn,
    /// Hello (6).
    Hello,
    /// Outgoing-Call-Request (7).
    Ocrq,
    /// Outgoing-Call-Reply (8).
    Ocrp,
    /// Outgoing-Call-Connected (9).
    Occn,
    /// Incoming-Call-Request (10).
    Icrq,
    /// Incoming-Call-Reply (11).
    Icrp,
    /// Incoming-Call-Connected (12).
    Iccn,
    /// Call-Disconnect-Notify (14).
    Cdn,
    /// WAN-Error-Notify (15).
    Wen,
    /// Set-Link-Info (16).
    Sli,
    /// LNS-State-Offload-Request (HA vendor 1).
    Lsorq,
    /// LNS-State-Offload-Reply (HA vendor 2).
    Lsors,
    /// Switchover-To-Peer-LNS-Request (HA vendor 3).
    Stplrq,
    /// Switchover-To-Peer-LNS-Reply (HA vendor 4).
    Stplrp,
    /// Any other (vendor id, value) pair. Vendor id 0 is IETF.
    Unknown { vendor_id: u32, value: u16 },
}

/// Offload-Operation values (DESIGN.md §3, vendor attribute 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffloadOperation {
    /// 1: add or update the state of a tunnel or session.
    AddUpdate,
    /// 2: the tunnel or session is gone.
    Remove,
    /// 3: a bulk synchronisation begins.
    BulkStart,
    /// 4: a bulk synchronisation is complete.
    BulkEnd,
    /// Any other value.
    Unknown(u16),
}

/// Switchover-Type values (DESIGN.md §3, vendor attribute 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwitchoverType {
    /// 0: all sessions (the default).
    All,
    /// 1: new sessions only.
    NewSessions,
    /// 2: the sessions listed in Session-List.
    Listed,
    /// Any other value.
    Unknown(u16),
}

/// Switchover-Action values (DESIGN.md §3, vendor attribute 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwitchoverAction {
    /// 1: granted.
    Granted,
    /// 2: denied.
    Denied,
    /// Any other value.
    Unknown(u16),
}

/// The value of one AVP, typed. Attribute numbers are RFC 2661 §4.4 for IETF
/// AVPs (vendor id 0) and DESIGN.md §3 for the HA vendor AVPs.
///
/// A known attribute whose value has the wrong length for it fails to parse
/// with [`super::Error::Malformed`]. An attribute the codec does not know
/// (any vendor), or one that arrives with a reserved header bit set (which
/// RFC 2661 §4.1 says to treat as unrecognized), parses as [`Avp::Unknown`];
/// its [`AvpEntry`] keeps the M bit, so the protocol layer decides what
/// RFC 2661 §4.1 requires (tear down if mandatory, ignore otherwise).
///
/// An `Unknown` that names a known attribute can only come from such an AVP
/// with reserved bits, so it is emitted with a reserved bit set, so that it
/// parses back as `Unknown` (RFC 2661 §4.1 asks senders to clear these bits;
/// this only happens when relaying what a peer sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Avp {
    // --- IETF, RFC 2661 §4.4 ---
    /// 1 Result Code: result, optional error code, optional message.
    ResultCode {
        result: u16,
        error: Option<u16>,
        message: Vec<u8>,
    },
    /// 2 Protocol Version: version 1, revision 0 for L2TPv2.
    ProtocolVersion { version: u8, revision: u8 },
    /// 3 Framing Capabilities (bit 0x1 sync, 0x2 async).
    FramingCapabilities(u32),
    /// 4 Bearer Capabilities (bit 0x1 digital, 0x2 analog).
    BearerCapabilities(u32),
    /// 5 Tie Breaker.
    TieBreaker([u8; 8]),
    /// 6 Firmware Revision.
    FirmwareRevision(u16),
    /// 7 Host Name.
    HostName(Vec<u8>),
    /// 8 Vendor Name.
    VendorName(Vec<u8>),
    /// 9 Assigned Tunnel ID.
    AssignedTunnelId(u16),
    /// 10 Receive Window Size.
    ReceiveWindowSize(u16),
    /// 11 Challenge.
    Challenge(Vec<u8>),
    /// 12 Q.931 Cause Code.
    Q931CauseCode {
        cause: u16,
        message: u8,
        advisory: Vec<u8>,
    },
    /// 13 Challenge Response (an MD5 digest).
    ChallengeResponse([u8; 16]),
    /// 14 Assigned Session ID.
    AssignedSessionId(u16),
    /// 15 Call Serial Number.
    CallSerialNumber(u32),
    /// 16 Minimum BPS.
    MinimumBps(u32),
    /// 17 Maximum BPS.
    MaximumBps(u32),
    /// 18 Bearer Type.
    BearerType(u32),
    /// 19 Framing Type.
    FramingType(u32),
    /// 21 Called Number.
    CalledNumber(Vec<u8>),
    /// 22 Calling Number.
    CallingNumber(Vec<u8>),
    /// 23 Sub-Address.
    SubAddress(Vec<u8>),
    /// 24 (Tx) Connect Speed.
    TxConnectSpeed(u32),
    /// 25 Physical Channel ID.
    PhysicalChannelId(u32),
    /// 26 Initial Received LCP CONFREQ (the options, without the LCP header).
    InitialReceivedLcpConfReq(Vec<u8>),
    /// 27 Last Sent LCP CONFREQ.
    LastSentLcpConfReq(Vec<u8>),
    /// 28 Last Received LCP CONFREQ.
    LastReceivedLcpConfReq(Vec<u8>),
    /// 29 Proxy Authen Type.
    ProxyAuthenType(u16),
    /// 30 Proxy Authen Name.
    ProxyAuthenName(Vec<u8>),
    /// 31 Proxy Authen Challenge.
    ProxyAuthenChallenge(Vec<u8>),
    /// 32 Proxy Authen ID (the low byte of the 16-bit field).
    ProxyAuthenId(u8),
    /// 33 Proxy Authen Response.
    ProxyAuthenResponse(Vec<u8>),
    /// 34 Call Errors.
    CallErrors {
        crc: u32,
        framing: u32,
        hardware_overruns: u32,
        buffer_overruns: u32,
        timeouts: u32,
        alignment: u32,
    },
    /// 35 ACCM.
    Accm { send: u32, receive: u32 },
    /// 36 Random Vector.
    RandomVector(Vec<u8>),
    /// 37 Private Group ID.
    PrivateGroupId(Vec<u8>),
    /// 38 Rx Connect Speed.
    RxConnectSpeed(u32),
    /// 39 Sequencing Required (no value).
    SequencingRequired,

    // --- HA vendor AVPs, DESIGN.md §3 ---
    /// 1 HA-Capability.
    HaCapability { version: u16, flags: u16 },
    /// 2 Peer-LNS-Address, in preference order.
    PeerLnsAddress(Vec<Ipv4Addr>),
    /// 3 Offload-Operation.
    OffloadOperation(OffloadOperation),
    /// 4 Tunnel-Identity.
    TunnelIdentity {
        lns_tunnel_id: u16,
        lac_tunnel_id: u16,
        lac_address: Ipv4Addr,
        lac_port: u16,
        primary_lns: Ipv4Addr,
    },
    /// 5 Session-Identity.
    SessionIdentity {
        lns_session_id: u16,
        lac_session_id: u16,
    },
    /// 6 Session-State: the versioned TLV blob, opaque here.
    SessionState(Vec<u8>),
    /// 7 Switchover-Type.
    SwitchoverType(SwitchoverType),
    /// 8 Session-List of LNS session ids.
    SessionList(Vec<u16>),
    /// 9 Switchover-Action with an optional reason.
    SwitchoverAction {
        action: SwitchoverAction,
        reason: Vec<u8>,
    },
    /// 10 Recovery-Tunnel.
    RecoveryTunnel {
        primary_lns: Ipv4Addr,
        lns_tunnel_id: u16,
        lac_tunnel_id: u16,
    },
    /// 11 Recovery-Session: the primary's LNS session id.
    RecoverySession(u16),
    /// 12 Ownership-Epoch.
    OwnershipEpoch(u32),

    /// An attribute this codec does not know, kept whole.
    Unknown {
        vendor_id: u32,
        attribute: u16,
        value: Vec<u8>,
    },
}

/// One AVP as it sits in a message: its value and its M and H bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvpEntry {
    /// The M (mandatory) bit, RFC 2661 §4.1.
    pub mandatory: bool,
    /// The H (hidden) bit, RFC 2661 §4.3. On emit the value is hidden with
    /// the secret and the nearest preceding Random Vector.
    pub hidden: bool,
    /// The value.
    pub avp: Avp,
}

/// A whole control message: the header fields and the AVPs in order, without
/// the Message Type AVP (which is [`ControlMessage::message_type`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMessage {
    /// Tunnel ID of the recipient (0 in an SCCRQ).
    pub tunnel_id: u16,
    /// Session ID of the recipient (0 for tunnel messages).
    pub session_id: u16,
    /// Ns: sequence number of this message.
    pub ns: u16,
    /// Nr: next sequence number expected from the peer.
    pub nr: u16,
    /// `None` for a ZLB (header only).
    pub message_type: Option<MessageType>,
    /// The M bit of the Message Type AVP.
    pub message_type_mandatory: bool,
    /// The other AVPs in wire order.
    pub avps: Vec<AvpEntry>,
}

/// What the codec needs beyond the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The tunnel's shared secret, used for hidden AVPs. Parsing a hidden AVP
    /// without a secret fails with [`super::Error::Unsupported`].
    pub secret: Option<&'a [u8]>,
    /// The vendor id of the HA extension (DESIGN.md §3; default 43). Not 0
    /// (that is the IETF's space), and at most 65535: RFC 2661 §4.1 gives
    /// the Vendor ID 16 bits, so emitting HA AVPs with a larger one fails.
    pub ha_vendor_id: u32,
}

/// The default HA vendor id (DESIGN.md §3).
pub const HA_VENDOR_ID: u32 = 43;

/// The Message Type AVP's attribute number, in every vendor's space
/// (RFC 2661 §4.4.1; DESIGN.md §3 reuses 0 for the HA vendor messages).
const MESSAGE_TYPE: u16 = 0;

/// The Message Type AVP: header and a 2-byte value.
const MESSAGE_TYPE_AVP_LEN: usize = avp::HEADER_LEN + 2;

/// The IETF Random Vector attribute (RFC 2661 §4.4.3).
const RANDOM_VECTOR: u16 = 36;

impl MessageType {
    /// The (vendor id, value) pair that carries this type in a Message Type
    /// AVP. The HA messages use the HA vendor id.
    pub fn code(self, ha_vendor_id: u32) -> (u32, u16) {
        use MessageType::*;
        match self {
            Sccrq => (0, 1),
            Sccrp => (0, 2),
            Scccn => (0, 3),
            StopCcn => (0, 4),
            Hello => (0, 6),
            Ocrq => (0, 7),
            Ocrp => (0, 8),
            Occn => (0, 9),
            Icrq => (0, 10),
            Icrp => (0, 11),
            Iccn => (0, 12),
            Cdn => (0, 14),
            Wen => (0, 15),
            Sli => (0, 16),
            Lsorq => (ha_vendor_id, 1),
            Lsors => (ha_vendor_id, 2),
            Stplrq => (ha_vendor_id, 3),
            Stplrp => (ha_vendor_id, 4),
            Unknown { vendor_id, value } => (vendor_id, value),
        }
    }

    /// The type a Message Type AVP of `vendor_id` carrying `value` names.
    /// IETF values win should the HA vendor id be 0 (a misconfiguration).
    pub fn from_code(vendor_id: u32, value: u16, ha_vendor_id: u32) -> Self {
        use MessageType::*;
        match (vendor_id, value) {
            (0, 1) => Sccrq,
            (0, 2) => Sccrp,
            (0, 3) => Scccn,
            (0, 4) => StopCcn,
            (0, 6) => Hello,
            (0, 7) => Ocrq,
            (0, 8) => Ocrp,
            (0, 9) => Occn,
            (0, 10) => Icrq,
            (0, 11) => Icrp,
            (0, 12) => Iccn,
            (0, 14) => Cdn,
            (0, 15) => Wen,
            (0, 16) => Sli,
            (v, 1) if v == ha_vendor_id => Lsorq,
            (v, 2) if v == ha_vendor_id => Lsors,
            (v, 3) if v == ha_vendor_id => Stplrq,
            (v, 4) if v == ha_vendor_id => Stplrp,
            (vendor_id, value) => Unknown { vendor_id, value },
        }
    }

    /// One of the HA extension's vendor messages (DESIGN.md §3).
    pub fn is_ha(self) -> bool {
        matches!(
            self,
            MessageType::Lsorq | MessageType::Lsors | MessageType::Stplrq | MessageType::Stplrp
        )
    }
}

impl From<u16> for OffloadOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => OffloadOperation::AddUpdate,
            2 => OffloadOperation::Remove,
            3 => OffloadOperation::BulkStart,
            4 => OffloadOperation::BulkEnd,
            n => OffloadOperation::Unknown(n),
        }
    }
}

impl From<OffloadOperation> for u16 {
    fn from(value: OffloadOperation) -> Self {
        match value {
            OffloadOperation::AddUpdate => 1,
            OffloadOperation::Remove => 2,
            OffloadOperation::BulkStart => 3,
            OffloadOperation::BulkEnd => 4,
            OffloadOperation::Unknown(n) => n,
        }
    }
}

impl From<u16> for SwitchoverType {
    fn from(value: u16) -> Self {
        match value {
            0 => SwitchoverType::All,
            1 => SwitchoverType::NewSessions,
            2 => SwitchoverType::Listed,
            n => SwitchoverType::Unknown(n),
        }
    }
}

impl From<SwitchoverType> for u16 {
    fn from(value: SwitchoverType) -> Self {
        match value {
            SwitchoverType::All => 0,
            SwitchoverType::NewSessions => 1,
            SwitchoverType::Listed => 2,
            SwitchoverType::Unknown(n) => n,
        }
    }
}

impl From<u16> for SwitchoverAction {
    fn from(value: u16) -> Self {
        match value {
            1 => SwitchoverAction::Granted,
            2 => SwitchoverAction::Denied,
            n => SwitchoverAction::Unknown(n),
        }
    }
}

impl From<SwitchoverAction> for u16 {
    fn from(value: SwitchoverAction) -> Self {
        match value {
            SwitchoverAction::Granted => 1,
            SwitchoverAction::Denied => 2,
            SwitchoverAction::Unknown(n) => n,
        }
    }
}

/// Whether the codec types the attribute `(vendor_id, attribute)`.
fn is_known(vendor_id: u32, attribute: u16, ha_vendor_id: u32) -> bool {
    // Attribute 20 is unassigned in RFC 2661 §4.4.
    (vendor_id == 0 && (1..=39).contains(&attribute) && attribute != 20)
        || (vendor_id == ha_vendor_id && (1..=12).contains(&attribute))
}

fn exact<const N: usize>(value: &[u8]) -> Result<[u8; N]> {
    value.try_into().map_err(|_| Error::Malformed)
}

fn be_u16(value: &[u8]) -> Result<u16> {
    exact::<2>(value).map(u16::from_be_bytes)
}

fn be_u32(value: &[u8]) -> Result<u32> {
    exact::<4>(value).map(u32::from_be_bytes)
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32_at(b, at))
}

fn at_least(value: &[u8], n: usize) -> Result<&[u8]> {
    if value.len() < n {
        Err(Error::Malformed)
    } else {
        Ok(value)
    }
}

/// Where [`Avp`]'s value encoding puts the bytes: a `Vec` keeps them,
/// [`ValueLen`] only counts them.
trait ValueSink {
    fn put(&mut self, bytes: &[u8]);

    fn put_u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

impl ValueSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts what the value encoding writes: [`Avp::value_len`].
struct ValueLen(usize);

impl ValueSink for ValueLen {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Avp {
    /// The (vendor id, attribute type) this AVP goes under.
    pub fn attribute(&self, ha_vendor_id: u32) -> (u32, u16) {
        use Avp::*;
        let ietf = |n| (0, n);
        let ha = |n| (ha_vendor_id, n);
        match self {
            ResultCode { .. } => ietf(1),
            ProtocolVersion { .. } => ietf(2),
            FramingCapabilities(_) => ietf(3),
            BearerCapabilities(_) => ietf(4),
            TieBreaker(_) => ietf(5),
            FirmwareRevision(_) => ietf(6),
            HostName(_) => ietf(7),
            VendorName(_) => ietf(8),
            AssignedTunnelId(_) => ietf(9),
            ReceiveWindowSize(_) => ietf(10),
            Challenge(_) => ietf(11),
            Q931CauseCode { .. } => ietf(12),
            ChallengeResponse(_) => ietf(13),
            AssignedSessionId(_) => ietf(14),
            CallSerialNumber(_) => ietf(15),
            MinimumBps(_) => ietf(16),
            MaximumBps(_) => ietf(17),
            BearerType(_) => ietf(18),
            FramingType(_) => ietf(19),
            CalledNumber(_) => ietf(21),
            CallingNumber(_) => ietf(22),
            SubAddress(_) => ietf(23),
            TxConnectSpeed(_) => ietf(24),
            PhysicalChannelId(_) => ietf(25),
            InitialReceivedLcpConfReq(_) => ietf(26),
            LastSentLcpConfReq(_) => ietf(27),
            LastReceivedLcpConfReq(_) => ietf(28),
            ProxyAuthenType(_) => ietf(29),
            ProxyAuthenName(_) => ietf(30),
            ProxyAuthenChallenge(_) => ietf(31),
            ProxyAuthenId(_) => ietf(32),
            ProxyAuthenResponse(_) => ietf(33),
            CallErrors { .. } => ietf(34),
            Accm { .. } => ietf(35),
            RandomVector(_) => ietf(RANDOM_VECTOR),
            PrivateGroupId(_) => ietf(37),
            RxConnectSpeed(_) => ietf(38),
            SequencingRequired => ietf(39),
            HaCapability { .. } => ha(1),
            PeerLnsAddress(_) => ha(2),
            OffloadOperation(_) => ha(3),
            TunnelIdentity { .. } => ha(4),
            SessionIdentity { .. } => ha(5),
            SessionState(_) => ha(6),
            SwitchoverType(_) => ha(7),
            SessionList(_) => ha(8),
            SwitchoverAction { .. } => ha(9),
            RecoveryTunnel { .. } => ha(10),
            RecoverySession(_) => ha(11),
            OwnershipEpoch(_) => ha(12),
            Unknown {
                vendor_id,
                attribute,
                ..
            } => (*vendor_id, *attribute),
        }
    }

    /// The length of the value as [`Avp::encode_value`] writes it (before
    /// any hiding): counted by the same code that writes it, so the two
    /// cannot disagree.
    pub fn value_len(&self) -> usize {
        let mut len = ValueLen(0);
        // A value encoding refuses counts up to the refusal; emit stops at
        // the refusal before the length matters.
        let _ = self.write_value(&mut len);
        len.0
    }

    /// Append the value (unhidden) to `out`. A value the wire cannot carry
    /// or that parsing would refuse (a Result Code message without an error
    /// code, an empty Host Name, Challenge or Peer-LNS-Address) is
    /// [`Error::Malformed`].
    pub fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        self.write_value(out)
    }

    /// [`Avp::encode_value`] into any [`ValueSink`].
    fn write_value(&self, out: &mut impl ValueSink) -> Result<()> {
        use Avp::*;
        match self {
            ResultCode {
                result,
                error,
                message,
            } => {
                out.put_u16(*result);
                match error {
                    Some(error) => {
                        out.put_u16(*error);
                        out.put(message);
                    }
                    // RFC 2661 §4.4.2: the message follows the error code.
                    None if !message.is_empty() => return Err(Error::Malformed),
                    None => {}
                }
            }
            ProtocolVersion { version, revision } => out.put(&[*version, *revision]),
            FramingCapabilities(v)
            | BearerCapabilities(v)
            | CallSerialNumber(v)
            | MinimumBps(v)
            | MaximumBps(v)
            | BearerType(v)
            | FramingType(v)
            | TxConnectSpeed(v)
            | PhysicalChannelId(v)
            | RxConnectSpeed(v)
            | OwnershipEpoch(v) => out.put_u32(*v),
            TieBreaker(v) => out.put(v),
            FirmwareRevision(v) | AssignedTunnelId(v) | ReceiveWindowSize(v)
            | AssignedSessionId(v) | ProxyAuthenType(v) | RecoverySession(v) => out.put_u16(*v),
            HostName(v) | Challenge(v) if v.is_empty() => return Err(Error::Malformed),
            Q931CauseCode {
                cause,
                message,
                advisory,
            } => {
                out.put_u16(*cause);
                out.put(&[*message]);
                out.put(advisory);
            }
            ChallengeResponse(v) => out.put(v),
            // RFC 2661 §4.4.5: the ID sits in the low byte of a 16-bit field.
            ProxyAuthenId(id) => out.put_u16(u16::from(*id)),
            CallErrors {
                crc,
                framing,
                hardware_overruns,
                buffer_overruns,
                timeouts,
                alignment,
            } => {
                out.put_u16(0);
                for v in [
                    crc,
                    framing,
                    hardware_overruns,
                    buffer_overruns,
                    timeouts,
                    alignment,
                ] {
                    out.put_u32(*v);
                }
            }
            Accm { send, receive } => {
                out.put_u16(0);
                out.put_u32(*send);
                out.put_u32(*receive);
            }
            SequencingRequired => {}
            HaCapability { version, flags } => {
                out.put_u16(*version);
                out.put_u16(*flags);
            }
            PeerLnsAddress(addresses) => {
                if addresses.is_empty() {
                    return Err(Error::Malformed);
                }
                for a in addresses {
                    out.put(&a.octets());
                }
            }
            OffloadOperation(op) => out.put_u16((*op).into()),
            TunnelIdentity {
                lns_tunnel_id,
                lac_tunnel_id,
                lac_address,
                lac_port,
                primary_lns,
            } => {
                out.put_u16(*lns_tunnel_id);
                out.put_u16(*lac_tunnel_id);
                out.put(&lac_address.octets());
                out.put_u16(*lac_port);
                out.put(&primary_lns.octets());
            }
            SessionIdentity {
                lns_session_id,
                lac_session_id,
            } => {
                out.put_u16(*lns_session_id);
                out.put_u16(*lac_session_id);
            }
            SwitchoverType(t) => out.put_u16((*t).into()),
            SessionList(ids) => {
                for id in ids {
                    out.put_u16(*id);
                }
            }
            SwitchoverAction { action, reason } => {
                out.put_u16((*action).into());
                out.put(reason);
            }
            RecoveryTunnel {
                primary_lns,
                lns_tunnel_id,
                lac_tunnel_id,
            } => {
                out.put(&primary_lns.octets());
                out.put_u16(*lns_tunnel_id);
                out.put_u16(*lac_tunnel_id);
            }
            HostName(v)
            | VendorName(v)
            | Challenge(v)
            | CalledNumber(v)
            | CallingNumber(v)
            | SubAddress(v)
            | InitialReceivedLcpConfReq(v)
            | LastSentLcpConfReq(v)
            | LastReceivedLcpConfReq(v)
            | ProxyAuthenName(v)
            | ProxyAuthenChallenge(v)
            | ProxyAuthenResponse(v)
            | RandomVector(v)
            | PrivateGroupId(v)
            | SessionState(v)
            | Unknown { value: v, .. } => out.put(v),
        }
        Ok(())
    }

    /// Type the (revealed) value of attribute `(vendor_id, attribute)`.
    /// `Ok(None)` for an attribute the codec does not know;
    /// [`Error::Malformed`] for a known one whose value has the wrong length
    /// (RFC 2661 §4.4.x, DESIGN.md §3).
    pub fn decode(
        vendor_id: u32,
        attribute: u16,
        value: &[u8],
        ha_vendor_id: u32,
    ) -> Result<Option<Avp>> {
        use Avp::*;
        let v = value;
        let avp = if vendor_id == 0 {
            match attribute {
                // §4.4.2: result (2), then optionally error (2) and message.
                1 => match v.len() {
                    2 => ResultCode {
                        result: u16_at(v, 0),
                        error: None,
                        message: Vec::new(),
                    },
                    n if n >= 4 => ResultCode {
                        result: u16_at(v, 0),
                        error: Some(u16_at(v, 2)),
                        message: v[4..].to_vec(),
                    },
                    _ => return Err(Error::Malformed),
                },
                2 => {
                    let [version, revision] = exact::<2>(v)?;
                    ProtocolVersion { version, revision }
                }
                3 => FramingCapabilities(be_u32(v)?),
                4 => BearerCapabilities(be_u32(v)?),
                5 => TieBreaker(exact(v)?),
                6 => FirmwareRevision(be_u16(v)?),
                // §4.4.3: the Host Name is at least one octet.
                7 => HostName(at_least(v, 1)?.to_vec()),
                8 => VendorName(v.to_vec()),
                9 => AssignedTunnelId(be_u16(v)?),
                10 => ReceiveWindowSize(be_u16(v)?),
                // §4.4.3: the Challenge is one or more octets.
                11 => Challenge(at_least(v, 1)?.to_vec()),
                // §4.4.2: cause code (2), cause message (1), advisory.
                12 => {
                    let v = at_least(v, 3)?;
                    Q931CauseCode {
                        cause: u16_at(v, 0),
                        message: v[2],
                        advisory: v[3..].to_vec(),
                    }
                }
                13 => ChallengeResponse(exact(v)?),
                14 => AssignedSessionId(be_u16(v)?),
                15 => CallSerialNumber(be_u32(v)?),
                16 => MinimumBps(be_u32(v)?),
                17 => MaximumBps(be_u32(v)?),
                18 => BearerType(be_u32(v)?),
                19 => FramingType(be_u32(v)?),
                21 => CalledNumber(v.to_vec()),
                22 => CallingNumber(v.to_vec()),
                23 => SubAddress(v.to_vec()),
                24 => TxConnectSpeed(be_u32(v)?),
                25 => PhysicalChannelId(be_u32(v)?),
                26 => InitialReceivedLcpConfReq(v.to_vec()),
                27 => LastSentLcpConfReq(v.to_vec()),
                28 => LastReceivedLcpConfReq(v.to_vec()),
                29 => ProxyAuthenType(be_u16(v)?),
                30 => ProxyAuthenName(v.to_vec()),
                31 => ProxyAuthenChallenge(v.to_vec()),
                // §4.4.5: a 16-bit field whose low byte is the PPP ID.
                32 => ProxyAuthenId(exact::<2>(v)?[1]),
                33 => ProxyAuthenResponse(v.to_vec()),
                // §4.4.6: 2 reserved bytes, then six 32-bit counters.
                34 => {
                    if v.len() != 26 {
                        return Err(Error::Malformed);
                    }
                    CallErrors {
                        crc: u32_at(v, 2),
                        framing: u32_at(v, 6),
                        hardware_overruns: u32_at(v, 10),
                        buffer_overruns: u32_at(v, 14),
                        timeouts: u32_at(v, 18),
                        alignment: u32_at(v, 22),
                    }
                }
                // §4.4.6: 2 reserved bytes, Send ACCM, Receive ACCM.
                35 => {
                    if v.len() != 10 {
                        return Err(Error::Malformed);
                    }
                    Accm {
                        send: u32_at(v, 2),
                        receive: u32_at(v, 6),
                    }
                }
                RANDOM_VECTOR => RandomVector(v.to_vec()),
                37 => PrivateGroupId(v.to_vec()),
                38 => RxConnectSpeed(be_u32(v)?),
                39 => {
                    if !v.is_empty() {
                        return Err(Error::Malformed);
                    }
                    SequencingRequired
                }
                _ => return Ok(None),
            }
        } else if vendor_id == ha_vendor_id {
            // DESIGN.md §3.
            match attribute {
                1 => {
                    let v = exact::<4>(v)?;
                    HaCapability {
                        version: u16_at(&v, 0),
                        flags: u16_at(&v, 2),
                    }
                }
                2 => {
                    if v.is_empty() || v.len() % 4 != 0 {
                        return Err(Error::Malformed);
                    }
                    PeerLnsAddress((0..v.len()).step_by(4).map(|at| ipv4_at(v, at)).collect())
                }
                3 => OffloadOperation(be_u16(v)?.into()),
                4 => {
                    let v = exact::<14>(v)?;
                    TunnelIdentity {
                        lns_tunnel_id: u16_at(&v, 0),
                        lac_tunnel_id: u16_at(&v, 2),
                        lac_address: ipv4_at(&v, 4),
                        lac_port: u16_at(&v, 8),
                        primary_lns: ipv4_at(&v, 10),
                    }
                }
                5 => {
                    let v = exact::<4>(v)?;
                    SessionIdentity {
                        lns_session_id: u16_at(&v, 0),
                        lac_session_id: u16_at(&v, 2),
                    }
                }
                6 => SessionState(v.to_vec()),
                7 => SwitchoverType(be_u16(v)?.into()),
                8 => {
                    if v.len() % 2 != 0 {
                        return Err(Error::Malformed);
                    }
                    SessionList((0..v.len()).step_by(2).map(|at| u16_at(v, at)).collect())
                }
                9 => {
                    let v = at_least(v, 2)?;
                    SwitchoverAction {
                        action: u16_at(v, 0).into(),
                        reason: v[2..].to_vec(),
                    }
                }
                10 => {
                    let v = exact::<8>(v)?;
                    RecoveryTunnel {
                        primary_lns: ipv4_at(&v, 0),
                        lns_tunnel_id: u16_at(&v, 4),
                        lac_tunnel_id: u16_at(&v, 6),
                    }
                }
                11 => RecoverySession(be_u16(v)?),
                12 => OwnershipEpoch(be_u32(v)?),
                _ => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        Ok(Some(avp))
    }
}

impl AvpEntry {
    /// An AVP with the M bit set, not hidden.
    pub fn mandatory(avp: Avp) -> Self {
        AvpEntry {
            mandatory: true,
            hidden: false,
            avp,
        }
    }

    /// An AVP with the M bit clear, not hidden: what every HA vendor AVP
    /// toward a peer that has not advertised HA-Capability must be
    /// (DESIGN.md §3).
    pub fn optional(avp: Avp) -> Self {
        AvpEntry {
            mandatory: false,
            hidden: false,
            avp,
        }
    }

    /// The same AVP, to be hidden on emit (RFC 2661 §4.3). A Random Vector
    /// must precede it in the message.
    pub fn hide(self) -> Self {
        AvpEntry {
            hidden: true,
            ..self
        }
    }

    /// Bytes this AVP takes on the wire, header and hidden subformat
    /// included.
    pub fn wire_len(&self) -> usize {
        let value = self.avp.value_len();
        avp::HEADER_LEN
            + if self.hidden {
                avp::hidden_len(value, 0)
            } else {
                value
            }
    }
}

impl ControlMessage {
    /// A ZLB acknowledgement (RFC 2661 §5.8): header only.
    pub fn zlb(tunnel_id: u16, session_id: u16, ns: u16, nr: u16) -> Self {
        ControlMessage {
            tunnel_id,
            session_id,
            ns,
            nr,
            message_type: None,
            message_type_mandatory: true,
            avps: Vec::new(),
        }
    }

    /// A message of `message_type` with a mandatory Message Type AVP, Ns and
    /// Nr 0 (the control channel fills them in) and no other AVPs yet.
    pub fn new(message_type: MessageType, tunnel_id: u16, session_id: u16) -> Self {
        ControlMessage {
            tunnel_id,
            session_id,
            ns: 0,
            nr: 0,
            message_type: Some(message_type),
            message_type_mandatory: true,
            avps: Vec::new(),
        }
    }

    /// Append an AVP (builder style).
    pub fn with(mut self, entry: AvpEntry) -> Self {
        self.avps.push(entry);
        self
    }

    /// A ZLB: no Message Type, no AVPs.
    pub fn is_zlb(&self) -> bool {
        self.message_type.is_none()
    }

    /// The first AVP `f` maps to `Some`.
    pub fn find<T>(&self, f: impl Fn(&Avp) -> Option<T>) -> Option<T> {
        self.avps.iter().find_map(|e| f(&e.avp))
    }

    /// Result Code: (result, error, message).
    pub fn result_code(&self) -> Option<(u16, Option<u16>, &[u8])> {
        self.avps.iter().find_map(|e| match &e.avp {
            Avp::ResultCode {
                result,
                error,
                message,
            } => Some((*result, *error, message.as_slice())),
            _ => None,
        })
    }

    /// Assigned Tunnel ID.
    pub fn assigned_tunnel_id(&self) -> Option<u16> {
        self.find(|a| match a {
            Avp::AssignedTunnelId(id) => Some(*id),
            _ => None,
        })
    }

    /// Assigned Session ID.
    pub fn assigned_session_id(&self) -> Option<u16> {
        self.find(|a| match a {
            Avp::AssignedSessionId(id) => Some(*id),
            _ => None,
        })
    }

    /// Receive Window Size.
    pub fn receive_window_size(&self) -> Option<u16> {
        self.find(|a| match a {
            Avp::ReceiveWindowSize(n) => Some(*n),
            _ => None,
        })
    }

    /// Host Name.
    pub fn host_name(&self) -> Option<&[u8]> {
        self.avps.iter().find_map(|e| match &e.avp {
            Avp::HostName(n) => Some(n.as_slice()),
            _ => None,
        })
    }

    /// Challenge.
    pub fn challenge(&self) -> Option<&[u8]> {
        self.avps.iter().find_map(|e| match &e.avp {
            Avp::Challenge(c) => Some(c.as_slice()),
            _ => None,
        })
    }

    /// Challenge Response.
    pub fn challenge_response(&self) -> Option<[u8; 16]> {
        self.find(|a| match a {
            Avp::ChallengeResponse(r) => Some(*r),
            _ => None,
        })
    }

    /// The first unknown AVP with the M bit set: RFC 2661 §4.1 says the
    /// tunnel or session that received it must be torn down.
    pub fn unknown_mandatory(&self) -> Option<&AvpEntry> {
        self.avps
            .iter()
            .find(|e| e.mandatory && matches!(e.avp, Avp::Unknown { .. }))
    }

    /// Parse a whole control message, header included. `buf` starts at the
    /// L2TP header (the UDP payload).
    pub fn parse(buf: &[u8], ctx: &Context<'_>) -> super::Result<ControlMessage> {
        let packet = Packet::new_checked(buf)?;
        if !packet.is_control() {
            return Err(Error::Malformed);
        }
        let header = HeaderRepr::parse(&packet)?;
        // check_len guarantees S on control messages (RFC 2661 §3.1).
        let (ns, nr) = header.sequence.ok_or(Error::Malformed)?;
        let mut raw_avps = Avps::new(packet.payload());
        let Some(first) = raw_avps.next() else {
            return Ok(ControlMessage::zlb(
                header.tunnel_id,
                header.session_id,
                ns,
                nr,
            ));
        };
        let first = first?;
        // RFC 2661 §4.4.1: the Message Type AVP comes first, is never hidden
        // and carries a 2-byte value. A reserved bit makes it unrecognized
        // (§4.1), and an unrecognizable message cannot be typed.
        if first.attribute_type() != MESSAGE_TYPE || first.hidden() || first.reserved() != 0 {
            return Err(Error::Malformed);
        }
        let message_type = MessageType::from_code(
            u32::from(first.vendor_id()),
            be_u16(first.value())?,
            ctx.ha_vendor_id,
        );
        let mut random_vector: Option<&[u8]> = None;
        let mut avps = Vec::new();
        for raw in raw_avps {
            let raw = raw?;
            let vendor_id = u32::from(raw.vendor_id());
            let attribute = raw.attribute_type();
            let recognized = raw.reserved() == 0;
            let is_random_vector = recognized && vendor_id == 0 && attribute == RANDOM_VECTOR;
            let revealed;
            let value: &[u8] = if raw.hidden() {
                // RFC 2661 §4.3: the Random Vector cannot itself be hidden.
                if is_random_vector {
                    return Err(Error::Malformed);
                }
                let secret = ctx.secret.ok_or(Error::Unsupported)?;
                let rv = random_vector.ok_or(Error::Unsupported)?;
                let mut out = vec![0; raw.value().len()];
                let n = avp::unhide(attribute, secret, rv, raw.value(), &mut out)?;
                out.truncate(n);
                revealed = out;
                &revealed
            } else {
                raw.value_of_message()
            };
            if is_random_vector {
                // The most recent Random Vector applies (RFC 2661 §4.3).
                random_vector = Some(raw.value_of_message());
            }
            let typed = if recognized {
                Avp::decode(vendor_id, attribute, value, ctx.ha_vendor_id)?
            } else {
                None
            };
            let avp = match typed {
                Some(avp) => avp,
                None => Avp::Unknown {
                    vendor_id,
                    attribute,
                    value: value.to_vec(),
                },
            };
            avps.push(AvpEntry {
                mandatory: raw.mandatory(),
                hidden: raw.hidden(),
                avp,
            });
        }
        Ok(ControlMessage {
            tunnel_id: header.tunnel_id,
            session_id: header.session_id,
            ns,
            nr,
            message_type: Some(message_type),
            message_type_mandatory: first.mandatory(),
            avps,
        })
    }

    /// Bytes [`ControlMessage::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let message_type = if self.message_type.is_some() {
            MESSAGE_TYPE_AVP_LEN
        } else {
            0
        };
        l2tp::CONTROL_HEADER_LEN
            + message_type
            + self.avps.iter().map(AvpEntry::wire_len).sum::<usize>()
    }

    /// Emit the message (header with T, L, S set and the Length filled in),
    /// hiding the AVPs marked hidden. Returns the bytes written, always
    /// `buffer_len()`.
    ///
    /// Hidden AVPs use the most recent preceding [`Avp::RandomVector`] and
    /// no padding (RFC 2661 §4.3 allows any, and none keeps the output
    /// deterministic); without one, or without a secret, emitting fails with
    /// [`Error::Unsupported`]. A ZLB with AVPs, or a value parsing would
    /// refuse, is [`Error::Malformed`]; a message or AVP too long for its
    /// Length field, or a vendor id over 16 bits, is
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8], ctx: &Context<'_>) -> super::Result<usize> {
        let len = self.buffer_len();
        if buf.len() < len || len > usize::from(u16::MAX) {
            return Err(Error::BufferTooSmall);
        }
        let buf = &mut buf[..len];
        HeaderRepr::control(self.tunnel_id, self.session_id, self.ns, self.nr)
            .emit(buf, len - l2tp::CONTROL_HEADER_LEN)?;
        let mut at = l2tp::CONTROL_HEADER_LEN;
        let Some(message_type) = self.message_type else {
            return if self.avps.is_empty() {
                Ok(at)
            } else {
                Err(Error::Malformed)
            };
        };
        let (vendor_id, value) = message_type.code(ctx.ha_vendor_id);
        avp::HeaderRepr {
            mandatory: self.message_type_mandatory,
            hidden: false,
            reserved: 0,
            vendor_id: u16::try_from(vendor_id).map_err(|_| Error::BufferTooSmall)?,
            attribute_type: MESSAGE_TYPE,
        }
        .emit(&mut buf[at..], 2)?;
        set_u16_at(buf, at + avp::HEADER_LEN, value);
        at += MESSAGE_TYPE_AVP_LEN;

        let mut random_vector: Option<&[u8]> = None;
        let mut value = Vec::new();
        let mut hidden = Vec::new();
        for entry in &self.avps {
            let (vendor_id, attribute) = entry.avp.attribute(ctx.ha_vendor_id);
            let vendor_id = u16::try_from(vendor_id).map_err(|_| Error::BufferTooSmall)?;
            value.clear();
            entry.avp.encode_value(&mut value)?;
            let wire_value = if entry.hidden {
                if let Avp::RandomVector(_) = entry.avp {
                    return Err(Error::Malformed);
                }
                let secret = ctx.secret.ok_or(Error::Unsupported)?;
                let rv = random_vector.ok_or(Error::Unsupported)?;
                hidden.resize(avp::hidden_len(value.len(), 0), 0);
                avp::hide(attribute, secret, rv, &value, &[], &mut hidden)?;
                &hidden
            } else {
                &value
            };
            // See the doc of `Avp`: an Unknown that names a known attribute
            // came with reserved bits, and goes out with one so that it
            // parses back as Unknown.
            let reserved = match entry.avp {
                Avp::Unknown {
                    vendor_id,
                    attribute,
                    ..
                } if is_known(vendor_id, attribute, ctx.ha_vendor_id) => 1,
                _ => 0,
            };
            avp::HeaderRepr {
                mandatory: entry.mandatory,
                hidden: entry.hidden,
                reserved,
                vendor_id,
                attribute_type: attribute,
            }
            .emit(&mut buf[at..], wire_value.len())?;
            at += avp::HEADER_LEN;
            buf[at..at + wire_value.len()].copy_from_slice(wire_value);
            at += wire_value.len();
            if let Avp::RandomVector(rv) = &entry.avp {
                random_vector = Some(rv);
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{assert_every_truncation_fails, emit_with_spare, hex};
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    /// UDP payloads of /work/shared/captures/xl2tpd-lac_l2tpns-lns.pcap
    /// (xl2tpd 1.3.18 as LAC, l2tpns 2.4.1 as LNS, secret "secret").
    const XL2TPD_SCCRQ: &str = "c802007b000000000000000080080000000000018008000000020100800a0000000300000003800a00000004000000000008000000060690800a000000076c61633100130000000878656c6572616e63652e636f6d800800000009a99680080000000a000480160000000b759e2b0616160fc3e58fec5f3128a0bf";
    const L2TPNS_SCCRP: &str = "c802004ca99600000000000180080000000000028008000000020100800a0000000300000003800800000007766d80160000000d4bc887ce5f4d9b6a795d58dddf358d0e8008000000090003";
    const XL2TPD_SCCCN: &str = "c802001400030000000100018008000000000003";
    const L2TPNS_ZLB_1: &str = "c802000ca996000000010002";
    const XL2TPD_ICRQ: &str = "c80200300003000000020001800800000000000a80080000000e73b3800a0000000f00000001800a0000001200000000";
    const L2TPNS_ICRP: &str = "c802001ca99673b300010003800800000000000b80080000000e0015";
    const XL2TPD_ICCN: &str = "c80200320003001500030002800800000000000c800a0000001800000000800a0000001300000001000a0000002600000000";
    const L2TPNS_ZLB_2: &str = "c802000ca996000000020004";
    const XL2TPD_CDN: &str =
        "c80200260003001500040002800800000000000e800a000000010001000080080000000e73b3";
    const L2TPNS_ZLB_3: &str = "c802000ca996000000020005";

    const CAPTURE: [&str; 10] = [
        XL2TPD_SCCRQ,
        L2TPNS_SCCRP,
        XL2TPD_SCCCN,
        L2TPNS_ZLB_1,
        XL2TPD_ICRQ,
        L2TPNS_ICRP,
        XL2TPD_ICCN,
        L2TPNS_ZLB_2,
        XL2TPD_CDN,
        L2TPNS_ZLB_3,
    ];

    const CTX: Context<'static> = Context {
        secret: Some(b"secret"),
        ha_vendor_id: HA_VENDOR_ID,
    };

    fn emit(m: &ControlMessage) -> Vec<u8> {
        let mut buf = vec![0xa5; m.buffer_len()];
        let n = m.emit(&mut buf, &CTX).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn capture_round_trips_byte_for_byte() {
        for golden in CAPTURE {
            let bytes = hex(golden);
            let m = ControlMessage::parse(&bytes, &CTX).unwrap();
            assert_eq!(emit(&m), bytes, "{m:?}");
        }
    }

    #[test]
    fn sccrq_fields() {
        let m = ControlMessage::parse(&hex(XL2TPD_SCCRQ), &CTX).unwrap();
        assert_eq!(m.message_type, Some(MessageType::Sccrq));
        assert_eq!((m.tunnel_id, m.session_id, m.ns, m.nr), (0, 0, 0, 0));
        assert_eq!(m.host_name(), Some(&b"lac1"[..]));
        assert_eq!(m.assigned_tunnel_id(), Some(43414));
        assert_eq!(m.receive_window_size(), Some(4));
        assert_eq!(m.challenge().map(<[u8]>::len), Some(16));
        assert_eq!(m.avps[3], AvpEntry::optional(Avp::FirmwareRevision(0x0690)));
    }

    #[test]
    fn capture_fields() {
        let parse = |s| ControlMessage::parse(&hex(s), &CTX).unwrap();
        let types: Vec<_> = CAPTURE.iter().map(|s| parse(s).message_type).collect();
        use MessageType::*;
        assert_eq!(
            types,
            [
                Some(Sccrq),
                Some(Sccrp),
                Some(Scccn),
                None,
                Some(Icrq),
                Some(Icrp),
                Some(Iccn),
                None,
                Some(Cdn),
                None
            ]
        );

        let sccrp = parse(L2TPNS_SCCRP);
        assert_eq!(sccrp.tunnel_id, 43414);
        assert_eq!(sccrp.assigned_tunnel_id(), Some(3));
        assert_eq!(sccrp.host_name(), Some(&b"vm"[..]));

        let icrq = parse(XL2TPD_ICRQ);
        assert_eq!(icrq.assigned_session_id(), Some(29619));
        assert_eq!(
            icrq.find(|a| if let Avp::CallSerialNumber(n) = a {
                Some(*n)
            } else {
                None
            }),
            Some(1)
        );
        assert_eq!(
            icrq.find(|a| if let Avp::BearerType(n) = a {
                Some(*n)
            } else {
                None
            }),
            Some(0)
        );

        let iccn = parse(XL2TPD_ICCN);
        assert_eq!(
            (iccn.tunnel_id, iccn.session_id, iccn.ns, iccn.nr),
            (3, 21, 3, 2)
        );
        assert!(iccn
            .avps
            .contains(&AvpEntry::mandatory(Avp::TxConnectSpeed(0))));
        assert!(iccn
            .avps
            .contains(&AvpEntry::mandatory(Avp::FramingType(1))));
        // xl2tpd sends Rx Connect Speed without the M bit.
        assert!(iccn
            .avps
            .contains(&AvpEntry::optional(Avp::RxConnectSpeed(0))));

        let cdn = parse(XL2TPD_CDN);
        assert_eq!(cdn.result_code(), Some((1, Some(0), &[][..])));
        assert_eq!(cdn.assigned_session_id(), Some(29619));

        let zlb = parse(L2TPNS_ZLB_3);
        assert_eq!(zlb, ControlMessage::zlb(43414, 0, 2, 5));
        assert!(zlb.is_zlb());
    }

    /// The capture's SCCRP answers the SCCRQ's challenge with
    /// MD5(message type 2 + secret + challenge) (RFC 2661 §4.4.3, after
    /// CHAP): proof that the secret and the parsed values are right.
    #[test]
    fn capture_challenge_response_checks_out() {
        let sccrq = ControlMessage::parse(&hex(XL2TPD_SCCRQ), &CTX).unwrap();
        let sccrp = ControlMessage::parse(&hex(L2TPNS_SCCRP), &CTX).unwrap();
        let expected: [u8; 16] = Md5::new()
            .chain_update([2u8])
            .chain_update(b"secret")
            .chain_update(sccrq.challenge().unwrap())
            .finalize()
            .into();
        assert_eq!(sccrp.challenge_response(), Some(expected));
    }

    #[test]
    fn built_messages_emit_the_capture_bytes() {
        let icrp = ControlMessage {
            ns: 1,
            nr: 3,
            ..ControlMessage::new(MessageType::Icrp, 43414, 29619)
                .with(AvpEntry::mandatory(Avp::AssignedSessionId(21)))
        };
        assert_eq!(emit(&icrp), hex(L2TPNS_ICRP));
        assert_eq!(
            emit(&ControlMessage::zlb(43414, 0, 1, 2)),
            hex(L2TPNS_ZLB_1)
        );
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for golden in CAPTURE {
            assert_every_truncation_fails(&hex(golden), |b| ControlMessage::parse(b, &CTX).err());
        }
    }

    /// Cut the AVPs short and fix the Length to match: the message parses
    /// exactly when the cut falls between AVPs, and fails cleanly inside
    /// one.
    #[test]
    fn every_avp_cut_fails_cleanly() {
        for golden in CAPTURE {
            let bytes = hex(golden);
            let mut boundaries = vec![l2tp::CONTROL_HEADER_LEN];
            for avp in Avps::new(&bytes[l2tp::CONTROL_HEADER_LEN..]) {
                let end = boundaries.last().copied().unwrap() + avp.unwrap().total_len();
                boundaries.push(end);
            }
            for cut in l2tp::CONTROL_HEADER_LEN..bytes.len() {
                let mut short = bytes[..cut].to_vec();
                set_u16_at(&mut short, 2, cut as u16);
                let r = ControlMessage::parse(&short, &CTX);
                assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}: {r:?}");
            }
        }
    }

    const RV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// An SCCRP with a Random Vector 00..0f, Assigned Tunnel ID 0x1234
    /// hidden, and an HA Session-State 0001000400000001 hidden (optional,
    /// vendor 43); the hidden values computed by hand from RFC 2661 §4.3
    /// with the secret "secret" (Python hashlib; see avp.rs).
    const HIDDEN_SCCRP: &str = concat!(
        "c8020044000100000000000080080000000000028016000000240001020304",
        "05060708090a0b0c0d0e0fc00a00000009be6a0ff34010002b0006a0d30dd8",
        "feb41adf1c4c"
    );

    fn hidden_sccrp() -> ControlMessage {
        ControlMessage::new(MessageType::Sccrp, 1, 0)
            .with(AvpEntry::mandatory(Avp::RandomVector(RV.to_vec())))
            .with(AvpEntry::mandatory(Avp::AssignedTunnelId(0x1234)).hide())
            .with(AvpEntry::optional(Avp::SessionState(hex("0001000400000001"))).hide())
    }

    #[test]
    fn hidden_avps_golden_both_ways() {
        let m = hidden_sccrp();
        assert_eq!(m.buffer_len(), 0x44);
        assert_eq!(emit(&m), hex(HIDDEN_SCCRP));
        assert_eq!(ControlMessage::parse(&hex(HIDDEN_SCCRP), &CTX).unwrap(), m);
    }

    #[test]
    fn hidden_avps_need_a_secret_and_a_random_vector() {
        let no_secret = Context {
            secret: None,
            ..CTX
        };
        assert_eq!(
            ControlMessage::parse(&hex(HIDDEN_SCCRP), &no_secret),
            Err(Error::Unsupported)
        );
        assert_eq!(
            hidden_sccrp().emit(&mut [0; 128], &no_secret),
            Err(Error::Unsupported)
        );
        let mut no_rv = hidden_sccrp();
        no_rv.avps.remove(0);
        assert_eq!(no_rv.emit(&mut [0; 128], &CTX), Err(Error::Unsupported));
        // The same bytes with the Random Vector's attribute changed to an
        // unknown one: the hidden AVPs now have no vector.
        let mut bytes = hex(HIDDEN_SCCRP);
        bytes[25] = 40;
        assert_eq!(ControlMessage::parse(&bytes, &CTX), Err(Error::Unsupported));
        // A hidden Random Vector cannot be (RFC 2661 §4.3).
        let mut bytes = hex(HIDDEN_SCCRP);
        bytes[20] |= 0x40;
        assert_eq!(ControlMessage::parse(&bytes, &CTX), Err(Error::Malformed));
        let mut hidden_rv = hidden_sccrp();
        hidden_rv.avps[0].hidden = true;
        assert_eq!(hidden_rv.emit(&mut [0; 128], &CTX), Err(Error::Malformed));
    }

    #[test]
    fn the_most_recent_random_vector_applies() {
        let m = hidden_sccrp()
            .with(AvpEntry::optional(Avp::RandomVector(vec![9; 20])))
            .with(AvpEntry::mandatory(Avp::HostName(b"lns".to_vec())).hide());
        let bytes = emit(&m);
        assert_eq!(ControlMessage::parse(&bytes, &CTX).unwrap(), m);
        // Hiding the Host Name with the first vector gives other bytes.
        let first_only =
            hidden_sccrp().with(AvpEntry::mandatory(Avp::HostName(b"lns".to_vec())).hide());
        let other = emit(&first_only);
        assert_ne!(bytes[bytes.len() - 5..], other[other.len() - 5..]);
    }

    /// An LSORQ (HA vendor message 1) with every fixed-layout HA AVP, byte
    /// layouts of DESIGN.md §3, written out by hand.
    const HA_LSORQ: &str = concat!(
        "c802008d000700000005000a", // header: tunnel 7, Ns 5, Nr 10, Length 141
        "8008002b00000001",         // Message Type, vendor 43, LSORQ
        "000a002b000100010003",     // HA-Capability version 1, flags 3
        "000e002b00020a0000020a000003", // Peer-LNS-Address 10.0.0.2, 10.0.0.3
        "0008002b00030001",         // Offload-Operation add/update
        "0014002b00041234abcdc0a801010f0a0a000001", // Tunnel-Identity
        "000a002b00050011002a",     // Session-Identity 17 / 42
        "0008002b00070002",         // Switchover-Type listed
        "000a002b000800010002",     // Session-List 1, 2
        "0009002b0009000262",       // Switchover-Action denied "b"
        "000e002b000a0a00000112340abc", // Recovery-Tunnel
        "0008002b000b0011",         // Recovery-Session 17
        "000a002b000c00000009"      // Ownership-Epoch 9
    );

    fn ha_lsorq() -> ControlMessage {
        let ip = Ipv4Addr::new;
        let o = AvpEntry::optional;
        ControlMessage {
            ns: 5,
            nr: 10,
            ..ControlMessage::new(MessageType::Lsorq, 7, 0)
        }
        .with(o(Avp::HaCapability {
            version: 1,
            flags: 3,
        }))
        .with(o(Avp::PeerLnsAddress(vec![
            ip(10, 0, 0, 2),
            ip(10, 0, 0, 3),
        ])))
        .with(o(Avp::OffloadOperation(OffloadOperation::AddUpdate)))
        .with(o(Avp::TunnelIdentity {
            lns_tunnel_id: 0x1234,
            lac_tunnel_id: 0xabcd,
            lac_address: ip(192, 168, 1, 1),
            lac_port: 0x0f0a,
            primary_lns: ip(10, 0, 0, 1),
        }))
        .with(o(Avp::SessionIdentity {
            lns_session_id: 17,
            lac_session_id: 42,
        }))
        .with(o(Avp::SwitchoverType(SwitchoverType::Listed)))
        .with(o(Avp::SessionList(vec![1, 2])))
        .with(o(Avp::SwitchoverAction {
            action: SwitchoverAction::Denied,
            reason: b"b".to_vec(),
        }))
        .with(o(Avp::RecoveryTunnel {
            primary_lns: ip(10, 0, 0, 1),
            lns_tunnel_id: 0x1234,
            lac_tunnel_id: 0x0abc,
        }))
        .with(o(Avp::RecoverySession(17)))
        .with(o(Avp::OwnershipEpoch(9)))
    }

    #[test]
    fn ha_avps_golden_both_ways() {
        assert_eq!(emit(&ha_lsorq()), hex(HA_LSORQ));
        assert_eq!(
            ControlMessage::parse(&hex(HA_LSORQ), &CTX).unwrap(),
            ha_lsorq()
        );
    }

    #[test]
    fn ha_vendor_id_is_configurable() {
        let ctx = Context {
            ha_vendor_id: 9999,
            ..CTX
        };
        let mut bytes = vec![0; ha_lsorq().buffer_len()];
        ha_lsorq().emit(&mut bytes, &ctx).unwrap();
        assert_eq!(ControlMessage::parse(&bytes, &ctx).unwrap(), ha_lsorq());
        // Read with the default vendor id, nothing is HA.
        let m = ControlMessage::parse(&bytes, &CTX).unwrap();
        assert_eq!(
            m.message_type,
            Some(MessageType::Unknown {
                vendor_id: 9999,
                value: 1
            })
        );
        assert!(m.avps.iter().all(|e| matches!(
            e.avp,
            Avp::Unknown {
                vendor_id: 9999,
                ..
            }
        )));
        // Vendor ids are 16 bits on the wire (RFC 2661 §4.1).
        let too_big = Context {
            ha_vendor_id: 0x1_0000,
            ..CTX
        };
        assert_eq!(
            ha_lsorq().emit(&mut bytes, &too_big),
            Err(Error::BufferTooSmall)
        );
    }

    /// Attribute, a value of a good length and one of a bad length.
    const LENGTH_RULES: &[(u32, u16, usize, usize)] = &[
        (0, 1, 2, 3),
        (0, 1, 4, 1),
        (0, 2, 2, 3),
        (0, 3, 4, 2),
        (0, 4, 4, 5),
        (0, 5, 8, 7),
        (0, 6, 2, 4),
        (0, 7, 1, 0),
        (0, 9, 2, 1),
        (0, 10, 2, 0),
        (0, 11, 1, 0),
        (0, 12, 3, 2),
        (0, 13, 16, 15),
        (0, 13, 16, 17),
        (0, 14, 2, 3),
        (0, 15, 4, 3),
        (0, 16, 4, 8),
        (0, 17, 4, 0),
        (0, 18, 4, 2),
        (0, 19, 4, 6),
        (0, 24, 4, 5),
        (0, 25, 4, 3),
        (0, 29, 2, 1),
        (0, 32, 2, 1),
        (0, 34, 26, 24),
        (0, 35, 10, 8),
        (0, 38, 4, 2),
        (0, 39, 0, 1),
        (43, 1, 4, 2),
        (43, 2, 4, 0),
        (43, 2, 8, 6),
        (43, 3, 2, 4),
        (43, 4, 14, 12),
        (43, 5, 4, 2),
        (43, 7, 2, 1),
        (43, 8, 4, 3),
        (43, 9, 2, 1),
        (43, 10, 8, 6),
        (43, 11, 2, 4),
        (43, 12, 4, 2),
    ];

    fn with_avp(flags: u16, vendor_id: u32, attribute: u16, value: &[u8]) -> Vec<u8> {
        let mut bytes = hex(XL2TPD_SCCCN);
        let len = avp::HEADER_LEN + value.len();
        bytes.extend_from_slice(&(flags | len as u16).to_be_bytes());
        bytes.extend_from_slice(&(vendor_id as u16).to_be_bytes());
        bytes.extend_from_slice(&attribute.to_be_bytes());
        bytes.extend_from_slice(value);
        let total = bytes.len() as u16;
        set_u16_at(&mut bytes, 2, total);
        bytes
    }

    #[test]
    fn known_attributes_with_a_wrong_length_are_malformed() {
        for &(vendor_id, attribute, good, bad) in LENGTH_RULES {
            let ok = ControlMessage::parse(
                &with_avp(0x8000, vendor_id, attribute, &vec![1; good]),
                &CTX,
            );
            let m = ok.unwrap_or_else(|e| panic!("{vendor_id}/{attribute} with {good} bytes: {e}"));
            assert!(!matches!(m.avps[0].avp, Avp::Unknown { .. }));
            let r =
                ControlMessage::parse(&with_avp(0x8000, vendor_id, attribute, &vec![1; bad]), &CTX);
            assert_eq!(
                r,
                Err(Error::Malformed),
                "{vendor_id}/{attribute} with {bad} bytes"
            );
        }
    }

    #[test]
    fn length_rules_details() {
        let parse = |attribute, value: &str| {
            ControlMessage::parse(&with_avp(0x8000, 0, attribute, &hex(value)), &CTX)
        };
        // Result Code: result only; result and error; and a message.
        assert_eq!(
            parse(1, "0002").unwrap().result_code(),
            Some((2, None, &[][..]))
        );
        assert_eq!(
            parse(1, "00020006").unwrap().result_code(),
            Some((2, Some(6), &[][..]))
        );
        assert_eq!(
            parse(1, "0002000668").unwrap().result_code(),
            Some((2, Some(6), &b"h"[..]))
        );
        // Proxy Authen ID: the ID is the low byte.
        assert_eq!(
            parse(32, "0007").unwrap().avps[0].avp,
            Avp::ProxyAuthenId(7)
        );
        // Call Errors and ACCM skip their 2 reserved bytes.
        let accm = parse(35, "0000ffffffff00000000").unwrap();
        assert_eq!(
            accm.avps[0].avp,
            Avp::Accm {
                send: u32::MAX,
                receive: 0
            }
        );
        let errors = parse(34, "0000000000010000000200000003000000040000000500000006").unwrap();
        assert_eq!(
            errors.avps[0].avp,
            Avp::CallErrors {
                crc: 1,
                framing: 2,
                hardware_overruns: 3,
                buffer_overruns: 4,
                timeouts: 5,
                alignment: 6
            }
        );
        let q931 = parse(12, "001002").unwrap();
        assert_eq!(
            q931.avps[0].avp,
            Avp::Q931CauseCode {
                cause: 16,
                message: 2,
                advisory: Vec::new()
            }
        );
    }

    #[test]
    fn values_parsing_would_refuse_are_not_emitted() {
        let mut buf = [0; 64];
        let bad = [
            Avp::ResultCode {
                result: 1,
                error: None,
                message: b"x".to_vec(),
            },
            Avp::HostName(Vec::new()),
            Avp::Challenge(Vec::new()),
            Avp::PeerLnsAddress(Vec::new()),
        ];
        for avp in bad {
            let m = ControlMessage::new(MessageType::Hello, 1, 0).with(AvpEntry::mandatory(avp));
            assert_eq!(m.emit(&mut buf, &CTX), Err(Error::Malformed));
        }
        let mut zlb_with_avps = ControlMessage::zlb(1, 0, 0, 0);
        zlb_with_avps
            .avps
            .push(AvpEntry::mandatory(Avp::SequencingRequired));
        assert_eq!(zlb_with_avps.emit(&mut buf, &CTX), Err(Error::Malformed));
        let m = ControlMessage::new(MessageType::Hello, 1, 0);
        assert_eq!(m.emit(&mut buf[..19], &CTX), Err(Error::BufferTooSmall));
        let huge = ControlMessage::new(MessageType::Hello, 1, 0).with(AvpEntry::optional(
            Avp::VendorName(vec![b'v'; avp::MAX_VALUE_LEN + 1]),
        ));
        assert_eq!(
            huge.emit(&mut vec![0; 2048], &CTX),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn value_len_is_what_encoding_writes() {
        let mut messages: Vec<_> = CAPTURE
            .iter()
            .map(|golden| ControlMessage::parse(&hex(golden), &CTX).unwrap())
            .collect();
        messages.extend([hidden_sccrp(), ha_lsorq()]);
        for entry in messages.iter().flat_map(|m| &m.avps) {
            let mut value = Vec::new();
            entry.avp.encode_value(&mut value).unwrap();
            assert_eq!(entry.avp.value_len(), value.len(), "{:?}", entry.avp);
        }
        // A value encoding refuses counts what comes before the refusal.
        let refused = [
            (
                Avp::ResultCode {
                    result: 1,
                    error: None,
                    message: b"x".to_vec(),
                },
                2,
            ),
            (Avp::HostName(Vec::new()), 0),
            (Avp::Challenge(Vec::new()), 0),
            (Avp::PeerLnsAddress(Vec::new()), 0),
        ];
        for (avp, len) in refused {
            assert_eq!(avp.value_len(), len, "{avp:?}");
        }
    }

    #[test]
    fn unknown_attributes_keep_their_m_bit() {
        let m = ControlMessage::parse(&with_avp(0x8000, 0, 40, b"ab"), &CTX).unwrap();
        let unknown = AvpEntry::mandatory(Avp::Unknown {
            vendor_id: 0,
            attribute: 40,
            value: b"ab".to_vec(),
        });
        assert_eq!(m.avps, std::slice::from_ref(&unknown));
        assert_eq!(m.unknown_mandatory(), Some(&unknown));
        let m = ControlMessage::parse(&with_avp(0, 311, 1, b""), &CTX).unwrap();
        assert_eq!(
            m.avps,
            [AvpEntry::optional(Avp::Unknown {
                vendor_id: 311,
                attribute: 1,
                value: Vec::new()
            })]
        );
        assert_eq!(m.unknown_mandatory(), None);
    }

    #[test]
    fn reserved_bits_make_an_avp_unrecognized() {
        // RFC 2661 §4.1. A Host Name with a reserved bit and a bad length
        // too: unrecognized, not malformed.
        for value in [&b"lns"[..], &b""[..]] {
            let bytes = with_avp(0x8000 | 0x0800, 0, 7, value);
            let m = ControlMessage::parse(&bytes, &CTX).unwrap();
            let unknown = Avp::Unknown {
                vendor_id: 0,
                attribute: 7,
                value: value.to_vec(),
            };
            assert_eq!(m.avps, [AvpEntry::mandatory(unknown)]);
            // It goes back out unrecognizable, with a reserved bit.
            let again = emit(&m);
            assert_ne!(u16_at(&again, 20) & 0x3c00, 0);
            assert_eq!(ControlMessage::parse(&again, &CTX).unwrap(), m);
        }
        // An unknown attribute loses its reserved bits: nothing to protect.
        let m = ControlMessage::parse(&with_avp(0x0400, 0, 40, b""), &CTX).unwrap();
        assert_eq!(u16_at(&emit(&m), 20) & 0x3c00, 0);
    }

    #[test]
    fn the_message_type_comes_first() {
        // Attribute 7 where the Message Type should be.
        let mut bytes = hex(XL2TPD_SCCCN);
        bytes[17] = 7;
        assert_eq!(ControlMessage::parse(&bytes, &CTX), Err(Error::Malformed));
        // Hidden, with a reserved bit, or of a bad length: malformed.
        let mut hidden = hex(XL2TPD_SCCCN);
        hidden[12] |= 0x40;
        assert_eq!(ControlMessage::parse(&hidden, &CTX), Err(Error::Malformed));
        let mut reserved = hex(XL2TPD_SCCCN);
        reserved[12] |= 0x04;
        assert_eq!(
            ControlMessage::parse(&reserved, &CTX),
            Err(Error::Malformed)
        );
        let long = hex("c80200150003000000010001800900000000000300");
        assert_eq!(ControlMessage::parse(&long, &CTX), Err(Error::Malformed));
        // A data message is not a control message.
        assert_eq!(
            ControlMessage::parse(&hex("0002000100020000"), &CTX),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn unknown_message_types_keep_their_m_bit() {
        let mut bytes = hex(XL2TPD_SCCCN);
        bytes[19] = 99;
        bytes[12] &= 0x7f;
        let m = ControlMessage::parse(&bytes, &CTX).unwrap();
        assert_eq!(
            m.message_type,
            Some(MessageType::Unknown {
                vendor_id: 0,
                value: 99
            })
        );
        assert!(!m.message_type_mandatory);
        assert_eq!(emit(&m), bytes);
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn nonempty(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..max)
    }

    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    fn ietf_fixed() -> impl Strategy<Value = Avp> {
        use Avp::*;
        prop_oneof![
            (
                any::<u16>(),
                proptest::option::of((any::<u16>(), bytes(12)))
            )
                .prop_map(|(result, e)| match e {
                    Some((error, message)) => ResultCode {
                        result,
                        error: Some(error),
                        message
                    },
                    None => ResultCode {
                        result,
                        error: None,
                        message: Vec::new()
                    },
                }),
            any::<(u8, u8)>().prop_map(|(version, revision)| ProtocolVersion { version, revision }),
            any::<u32>().prop_map(FramingCapabilities),
            any::<u32>().prop_map(BearerCapabilities),
            any::<[u8; 8]>().prop_map(TieBreaker),
            any::<u16>().prop_map(FirmwareRevision),
            any::<u16>().prop_map(AssignedTunnelId),
            any::<u16>().prop_map(ReceiveWindowSize),
            any::<[u8; 16]>().prop_map(ChallengeResponse),
            any::<u16>().prop_map(AssignedSessionId),
        ]
    }

    fn ietf_numbers() -> impl Strategy<Value = Avp> {
        use Avp::*;
        prop_oneof![
            any::<u32>().prop_map(CallSerialNumber),
            any::<u32>().prop_map(MinimumBps),
            any::<u32>().prop_map(MaximumBps),
            any::<u32>().prop_map(BearerType),
            any::<u32>().prop_map(FramingType),
            any::<u32>().prop_map(TxConnectSpeed),
            any::<u32>().prop_map(PhysicalChannelId),
            any::<u16>().prop_map(ProxyAuthenType),
            any::<u8>().prop_map(ProxyAuthenId),
            any::<u32>().prop_map(RxConnectSpeed),
        ]
    }

    fn ietf_strings() -> impl Strategy<Value = Avp> {
        use Avp::*;
        prop_oneof![
            nonempty(12).prop_map(HostName),
            bytes(12).prop_map(VendorName),
            nonempty(20).prop_map(Challenge),
            bytes(12).prop_map(CalledNumber),
            bytes(12).prop_map(CallingNumber),
            bytes(12).prop_map(SubAddress),
            bytes(12).prop_map(InitialReceivedLcpConfReq),
            bytes(12).prop_map(LastSentLcpConfReq),
            bytes(12).prop_map(LastReceivedLcpConfReq),
            bytes(12).prop_map(ProxyAuthenName),
        ]
    }

    fn ietf_rest() -> impl Strategy<Value = Avp> {
        use Avp::*;
        prop_oneof![
            bytes(12).prop_map(ProxyAuthenChallenge),
            bytes(12).prop_map(ProxyAuthenResponse),
            bytes(12).prop_map(PrivateGroupId),
            (any::<u16>(), any::<u8>(), bytes(8)).prop_map(|(cause, message, advisory)| {
                Q931CauseCode {
                    cause,
                    message,
                    advisory,
                }
            }),
            any::<[u32; 6]>().prop_map(|c| CallErrors {
                crc: c[0],
                framing: c[1],
                hardware_overruns: c[2],
                buffer_overruns: c[3],
                timeouts: c[4],
                alignment: c[5]
            }),
            any::<(u32, u32)>().prop_map(|(send, receive)| Accm { send, receive }),
            Just(SequencingRequired),
            // Unknown AVPs of any vendor, including numbers the codec
            // knows (they carried reserved bits).
            (
                prop_oneof![
                    Just(0u32),
                    Just(HA_VENDOR_ID),
                    any::<u16>().prop_map(u32::from)
                ],
                any::<u16>(),
                bytes(12)
            )
                .prop_map(|(vendor_id, attribute, value)| Unknown {
                    vendor_id,
                    attribute,
                    value
                }),
        ]
    }

    fn ha() -> impl Strategy<Value = Avp> {
        use Avp::*;
        prop_oneof![
            any::<(u16, u16)>().prop_map(|(version, flags)| HaCapability { version, flags }),
            proptest::collection::vec(ipv4(), 1..4).prop_map(PeerLnsAddress),
            any::<u16>().prop_map(|n| OffloadOperation(n.into())),
            (any::<u16>(), any::<u16>(), ipv4(), any::<u16>(), ipv4()).prop_map(
                |(lns, lac, addr, port, primary)| {
                    TunnelIdentity {
                        lns_tunnel_id: lns,
                        lac_tunnel_id: lac,
                        lac_address: addr,
                        lac_port: port,
                        primary_lns: primary,
                    }
                }
            ),
            any::<(u16, u16)>().prop_map(|(lns_session_id, lac_session_id)| SessionIdentity {
                lns_session_id,
                lac_session_id
            }),
            bytes(40).prop_map(SessionState),
            any::<u16>().prop_map(|n| SwitchoverType(n.into())),
            proptest::collection::vec(any::<u16>(), 0..6).prop_map(SessionList),
            (any::<u16>(), bytes(8)).prop_map(|(a, reason)| SwitchoverAction {
                action: a.into(),
                reason
            }),
            (ipv4(), any::<u16>(), any::<u16>()).prop_map(
                |(primary_lns, lns_tunnel_id, lac_tunnel_id)| {
                    RecoveryTunnel {
                        primary_lns,
                        lns_tunnel_id,
                        lac_tunnel_id,
                    }
                }
            ),
        ]
    }

    fn avp() -> impl Strategy<Value = Avp> {
        use Avp::*;
        prop_oneof![
            ietf_fixed(),
            ietf_numbers(),
            ietf_strings(),
            ietf_rest(),
            ha(),
            any::<u16>().prop_map(RecoverySession),
            any::<u32>().prop_map(OwnershipEpoch),
            bytes(20).prop_map(RandomVector),
        ]
    }

    fn entry() -> impl Strategy<Value = AvpEntry> {
        (any::<bool>(), any::<bool>(), avp()).prop_map(|(mandatory, hidden, avp)| AvpEntry {
            mandatory,
            hidden,
            avp,
        })
    }

    fn message() -> impl Strategy<Value = ControlMessage> {
        let message_type = (
            prop_oneof![
                Just(0u32),
                Just(HA_VENDOR_ID),
                any::<u16>().prop_map(u32::from)
            ],
            any::<u16>(),
        )
            .prop_map(|(vendor, value)| MessageType::from_code(vendor, value, HA_VENDOR_ID));
        (
            any::<(u16, u16, u16, u16)>(),
            proptest::option::of((message_type, any::<bool>())),
            proptest::collection::vec(entry(), 0..12),
        )
            .prop_map(
                |((tunnel_id, session_id, ns, nr), message_type, mut avps)| {
                    let Some((message_type, message_type_mandatory)) = message_type else {
                        return ControlMessage::zlb(tunnel_id, session_id, ns, nr);
                    };
                    // Hide only what RFC 2661 §4.3 can hide: after a Random
                    // Vector, and never the vector itself.
                    let mut seen_rv = false;
                    for e in &mut avps {
                        let is_rv = matches!(e.avp, Avp::RandomVector(_));
                        e.hidden &= seen_rv && !is_rv;
                        seen_rv |= is_rv;
                    }
                    ControlMessage {
                        tunnel_id,
                        session_id,
                        ns,
                        nr,
                        message_type: Some(message_type),
                        message_type_mandatory,
                        avps,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_the_identity(m in message()) {
            let buf = emit_with_spare(m.buffer_len(), 8, |b| m.emit(b, &CTX));
            prop_assert_eq!(ControlMessage::parse(&buf[..m.buffer_len()], &CTX).unwrap(), m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(tail in bytes(200), header in any::<bool>()) {
            // With a valid control header in front half of the time, so the
            // AVP code runs.
            let mut buf = if header { hex(XL2TPD_SCCCN) } else { Vec::new() };
            buf.extend_from_slice(&tail);
            if header {
                let len = buf.len() as u16;
                set_u16_at(&mut buf, 2, len);
            }
            if let Ok(m) = ControlMessage::parse(&buf, &CTX) {
                let mut out = vec![0; m.buffer_len()];
                prop_assert_eq!(m.emit(&mut out, &CTX), Ok(out.len()));
                prop_assert_eq!(ControlMessage::parse(&out, &CTX).unwrap(), m);
            }
        }

        #[test]
        fn mutated_golden_messages_never_panic(index in 0..CAPTURE.len(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut buf = hex(CAPTURE[index]);
            for (at, x) in flips {
                let len = buf.len();
                buf[at % len] ^= x;
            }
            if let Ok(m) = ControlMessage::parse(&buf, &CTX) {
                let mut out = vec![0; m.buffer_len()];
                prop_assert_eq!(m.emit(&mut out, &CTX), Ok(out.len()));
                prop_assert_eq!(ControlMessage::parse(&out, &CTX).unwrap(), m);
            }
        }
    }
}

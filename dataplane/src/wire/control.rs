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
/// Everything the codec does not know, or knows but cannot decode (a value of
/// the wrong length for its attribute), parses as [`Avp::Unknown`]-free error
/// handling is the protocol layer's job: a known attribute with a bad length
/// is [`super::Error::Malformed`], an unknown one is `Unknown` and keeps its
/// M bit so the protocol layer can apply RFC 2661 §4.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Avp {
    // --- IETF, RFC 2661 §4.4 ---
    /// 1 Result Code: result, optional error code, optional message.
    ResultCode { result: u16, error: Option<u16>, message: Vec<u8> },
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
    Q931CauseCode { cause: u16, message: u8, advisory: Vec<u8> },
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
    SessionIdentity { lns_session_id: u16, lac_session_id: u16 },
    /// 6 Session-State: the versioned TLV blob, opaque here.
    SessionState(Vec<u8>),
    /// 7 Switchover-Type.
    SwitchoverType(SwitchoverType),
    /// 8 Session-List of LNS session ids.
    SessionList(Vec<u16>),
    /// 9 Switchover-Action with an optional reason.
    SwitchoverAction { action: SwitchoverAction, reason: Vec<u8> },
    /// 10 Recovery-Tunnel.
    RecoveryTunnel { primary_lns: Ipv4Addr, lns_tunnel_id: u16, lac_tunnel_id: u16 },
    /// 11 Recovery-Session: the primary's LNS session id.
    RecoverySession(u16),
    /// 12 Ownership-Epoch.
    OwnershipEpoch(u32),

    /// An attribute this codec does not know, kept whole.
    Unknown { vendor_id: u32, attribute: u16, value: Vec<u8> },
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
    /// The vendor id of the HA extension (DESIGN.md §3; default 43).
    pub ha_vendor_id: u32,
}

/// The default HA vendor id (DESIGN.md §3).
pub const HA_VENDOR_ID: u32 = 43;

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

    /// Parse a whole control message, header included. `buf` starts at the
    /// L2TP header (the UDP payload).
    pub fn parse(buf: &[u8], ctx: &Context<'_>) -> super::Result<ControlMessage> {
        let _ = (buf, ctx);
        todo!("helper: wire-l2tp")
    }

    /// Bytes [`ControlMessage::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        todo!("helper: wire-l2tp")
    }

    /// Emit the message (header with T, L, S set and the Length filled in),
    /// hiding the AVPs marked hidden. Returns the bytes written, always
    /// `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8], ctx: &Context<'_>) -> super::Result<usize> {
        let _ = (buf, ctx);
        todo!("helper: wire-l2tp")
    }
}

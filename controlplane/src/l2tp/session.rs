//! One incoming call (RFC 2661 §7.4): its ids, state and what each side
//! said. The tunnel drives it through [`super::fsm::session_transition`].

use dataplane::wire::control::{Avp, AvpEntry, ControlMessage, MessageType};

use super::fsm::{CallSide, SessionState};
use super::{CallErrors, CallInfo, CallParams, ResultCode, SessionHandle};
use crate::time::Instant;

/// A session inside a tunnel.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) handle: SessionHandle,
    /// Our Session ID: what the peer puts in the header.
    pub(crate) local_id: u16,
    /// The peer's Session ID, 0 until its Assigned Session ID arrives.
    pub(crate) peer_id: u16,
    pub(crate) side: CallSide,
    pub(crate) state: SessionState,
    /// LAC: what we say about the call.
    pub(crate) call: CallParams,
    /// The Call Serial Number in use (ours on the LAC, the peer's on the LNS).
    pub(crate) call_serial_number: u32,
    /// What the peer said.
    pub(crate) info: CallInfo,
    /// The owner has been told the session is up. On the LAC that waits for
    /// the peer to acknowledge our ICCN (see `Tunnel::session_apply`).
    pub(crate) announced: bool,
    /// LAC: the number of our ICCN in the tunnel's control channel
    /// (`ControlChannel::next_message_number`), once it is queued.
    pub(crate) iccn_number: Option<u64>,
    /// LNS, HA: an ICRQ with Recovery-Session waits for the owner's answer
    /// (`Endpoint::answer_recovery_call`).
    pub(crate) awaiting_owner: bool,
    /// The owner was given the handle before the session came up
    /// ([`super::Event::RecoveryCall`]).
    pub(crate) told: bool,
    /// LNS, HA: extra AVPs for our ICRP (Ownership-Epoch).
    pub(crate) icrp_avps: Vec<AvpEntry>,
    /// HA: extra AVPs for our CDN (Ownership-Epoch of a session released
    /// after a load switchover).
    pub(crate) cdn_avps: Vec<AvpEntry>,
    /// LAC, [`CallParams::defer_connect`]: the ICRP arrived and our ICCN
    /// waits for `Endpoint::connect_call` until this deadline.
    pub(crate) connect_deadline: Option<Instant>,
}

impl Session {
    /// The owner has a handle for it: it opened it (LAC), or was told it
    /// came up (LNS). Events about any other session would name a handle the
    /// owner has never seen.
    pub(crate) fn known_to_owner(&self) -> bool {
        self.side == CallSide::Lac || self.announced || self.told
    }

    /// The header Session ID of messages to the peer (RFC 2661 §5.3: 0 until
    /// the peer's Assigned Session ID is known).
    fn header(&self, message_type: MessageType, peer_tunnel_id: u16) -> ControlMessage {
        ControlMessage::new(message_type, peer_tunnel_id, self.peer_id)
    }

    /// ICRQ (RFC 2661 §6.6): Assigned Session ID and Call Serial Number are
    /// required; Bearer Type and the owner's AVPs follow.
    pub(crate) fn icrq(&self, peer_tunnel_id: u16) -> ControlMessage {
        let mut m = self
            .header(MessageType::Icrq, peer_tunnel_id)
            .with(AvpEntry::mandatory(Avp::AssignedSessionId(self.local_id)))
            .with(AvpEntry::mandatory(Avp::CallSerialNumber(
                self.call_serial_number,
            )));
        if let Some(b) = self.call.bearer_type {
            m = m.with(AvpEntry::mandatory(Avp::BearerType(b)));
        }
        m.avps.extend(self.call.icrq_avps.iter().cloned());
        if let Some(primary) = self.call.recovery_session {
            // DESIGN.md §3: M bit clear.
            m = m.with(AvpEntry::optional(Avp::RecoverySession(primary)));
        }
        m
    }

    /// ICRP (RFC 2661 §6.7): Assigned Session ID.
    pub(crate) fn icrp(&self, peer_tunnel_id: u16) -> ControlMessage {
        let mut m = self
            .header(MessageType::Icrp, peer_tunnel_id)
            .with(AvpEntry::mandatory(Avp::AssignedSessionId(self.local_id)));
        m.avps.extend(self.icrp_avps.iter().cloned());
        m
    }

    /// ICCN (RFC 2661 §6.8): (Tx) Connect Speed and Framing Type are
    /// required; the owner's AVPs (proxy LCP and authentication) follow.
    pub(crate) fn iccn(&self, peer_tunnel_id: u16) -> ControlMessage {
        let mut m = self
            .header(MessageType::Iccn, peer_tunnel_id)
            .with(AvpEntry::mandatory(Avp::TxConnectSpeed(
                self.call.tx_connect_speed,
            )))
            .with(AvpEntry::mandatory(Avp::FramingType(
                self.call.framing_type,
            )));
        if let Some(rx) = self.call.rx_connect_speed {
            m = m.with(AvpEntry::optional(Avp::RxConnectSpeed(rx)));
        }
        m.avps.extend(self.call.iccn_avps.iter().cloned());
        m
    }

    /// CDN (RFC 2661 §6.12): Result Code and Assigned Session ID.
    pub(crate) fn cdn(&self, peer_tunnel_id: u16, result: &ResultCode) -> ControlMessage {
        let mut m = cdn(peer_tunnel_id, self.peer_id, self.local_id, result);
        m.avps.extend(self.cdn_avps.iter().cloned());
        m
    }

    /// Take in the AVPs of the peer's ICRQ (LNS side).
    pub(crate) fn record_icrq(&mut self, m: &ControlMessage) {
        self.info.call_serial_number = m.find(|a| match a {
            Avp::CallSerialNumber(n) => Some(*n),
            _ => None,
        });
        self.info.bearer_type = m.find(|a| match a {
            Avp::BearerType(n) => Some(*n),
            _ => None,
        });
        self.info.recovery_session = m.find(|a| match a {
            Avp::RecoverySession(id) => Some(*id),
            _ => None,
        });
        self.call_serial_number = self.info.call_serial_number.unwrap_or(0);
        self.info.avps.extend(m.avps.iter().cloned());
    }

    /// Take in the AVPs of the peer's ICCN (LNS side).
    pub(crate) fn record_iccn(&mut self, m: &ControlMessage) {
        self.info.framing_type = framing_type(m);
        self.info.tx_connect_speed = tx_connect_speed(m);
        self.info.rx_connect_speed = m.find(|a| match a {
            Avp::RxConnectSpeed(n) => Some(*n),
            _ => None,
        });
        self.info.avps.extend(m.avps.iter().cloned());
    }
}

/// A CDN for a session with the given ids.
pub(crate) fn cdn(
    peer_tunnel_id: u16,
    peer_session_id: u16,
    local_session_id: u16,
    result: &ResultCode,
) -> ControlMessage {
    ControlMessage::new(MessageType::Cdn, peer_tunnel_id, peer_session_id)
        .with(AvpEntry::mandatory(result.to_avp()))
        .with(AvpEntry::mandatory(Avp::AssignedSessionId(
            local_session_id,
        )))
}

pub(crate) fn framing_type(m: &ControlMessage) -> Option<u32> {
    m.find(|a| match a {
        Avp::FramingType(n) => Some(*n),
        _ => None,
    })
}

pub(crate) fn tx_connect_speed(m: &ControlMessage) -> Option<u32> {
    m.find(|a| match a {
        Avp::TxConnectSpeed(n) => Some(*n),
        _ => None,
    })
}

pub(crate) fn call_errors(m: &ControlMessage) -> Option<CallErrors> {
    m.find(|a| match a {
        Avp::CallErrors {
            crc,
            framing,
            hardware_overruns,
            buffer_overruns,
            timeouts,
            alignment,
        } => Some(CallErrors {
            crc: *crc,
            framing: *framing,
            hardware_overruns: *hardware_overruns,
            buffer_overruns: *buffer_overruns,
            timeouts: *timeouts,
            alignment: *alignment,
        }),
        _ => None,
    })
}

pub(crate) fn accm(m: &ControlMessage) -> Option<(u32, u32)> {
    m.find(|a| match a {
        Avp::Accm { send, receive } => Some((*send, *receive)),
        _ => None,
    })
}

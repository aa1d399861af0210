//! The HA vendor messages (DESIGN.md §3) as typed values: what
//! [`crate::l2tp::Endpoint::send_ha_message`] sends and what
//! [`crate::l2tp::Event::Message`] delivers.
//!
//! Every AVP is built with the M bit clear (RFC 2661 §4.1: a peer that does
//! not know a vendor AVP ignores it unless it is mandatory); the messages
//! themselves only go to peers that advertised HA-Capability. Session-State
//! is hidden (RFC 2661 §4.3) when the tunnel has a shared secret, which
//! every LNS-LNS tunnel must have.

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use dataplane::wire::control::{
    Avp, AvpEntry, ControlMessage, MessageType, OffloadOperation, SwitchoverAction, SwitchoverType,
};

use super::state::{SessionState, StateError};

/// Which tunnel an offload is about (HA vendor AVP 4): the primary's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelIdentity {
    /// The primary LNS's Tunnel ID.
    pub lns_tunnel_id: u16,
    /// The LAC's Tunnel ID.
    pub lac_tunnel_id: u16,
    /// The LAC's address and UDP port.
    pub lac: SocketAddrV4,
    /// The primary LNS's address (the one the LAC talks to).
    pub primary_lns: Ipv4Addr,
}

/// Which session (HA vendor AVP 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionIdentity {
    /// The primary LNS's Session ID.
    pub lns_session_id: u16,
    /// The LAC's Session ID.
    pub lac_session_id: u16,
}

/// LSORQ (HA vendor message 1), primary LNS → peer LNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadRequest {
    /// What to do.
    pub operation: OffloadOperation,
    /// The tunnel (absent in bulk-start and bulk-end).
    pub tunnel: Option<TunnelIdentity>,
    /// The session (absent for a tunnel's own add/update or remove).
    pub session: Option<SessionIdentity>,
    /// The session's Ownership-Epoch (HA vendor AVP 12).
    pub epoch: Option<u32>,
    /// The Session-State blob (add/update of a session).
    pub state: Option<Vec<u8>>,
}

/// LSORS (HA vendor message 2), peer LNS → primary LNS: the request's
/// operation and identities echoed, and the epoch the peer now holds for
/// the session. An epoch higher than the primary's means the session was
/// adopted elsewhere (fencing, DESIGN.md §3 step 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadReply {
    /// The request's operation.
    pub operation: OffloadOperation,
    /// The request's tunnel.
    pub tunnel: Option<TunnelIdentity>,
    /// The request's session.
    pub session: Option<SessionIdentity>,
    /// The epoch the peer holds for the session after the request.
    pub epoch: Option<u32>,
    /// Refused: the request could not be applied (a Result Code AVP, RFC
    /// 2661 §4.4.2, with result 2 and this message). The primary still
    /// counts it as answered.
    pub error: Option<String>,
}

/// STPLRQ (HA vendor message 3), LNS → LAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverRequest {
    /// Where to move: the peer LNS(es), in preference order.
    pub peers: Vec<Ipv4Addr>,
    /// What to move.
    pub kind: SwitchoverType,
    /// With [`SwitchoverType::Listed`]: the LNS Session IDs.
    pub sessions: Vec<u16>,
}

/// STPLRP (HA vendor message 4), LAC → LNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverReply {
    /// The request's type, echoed.
    pub kind: SwitchoverType,
    /// Granted or denied.
    pub action: SwitchoverAction,
    /// Why (for a denial), free text.
    pub reason: String,
}

/// One HA vendor message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaMessage {
    /// LSORQ.
    OffloadRequest(OffloadRequest),
    /// LSORS.
    OffloadReply(OffloadReply),
    /// STPLRQ.
    SwitchoverRequest(SwitchoverRequest),
    /// STPLRP.
    SwitchoverReply(SwitchoverReply),
}

/// Why a control message is not a usable HA message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Not one of the four HA message types.
    NotHa,
    /// A required AVP is missing.
    Missing(&'static str),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::NotHa => f.write_str("not an HA message"),
            MessageError::Missing(name) => write!(f, "HA message without {name}"),
        }
    }
}

impl std::error::Error for MessageError {}

fn opt(avp: Avp) -> AvpEntry {
    AvpEntry::optional(avp)
}

fn tunnel_avp(t: &TunnelIdentity) -> AvpEntry {
    opt(Avp::TunnelIdentity {
        lns_tunnel_id: t.lns_tunnel_id,
        lac_tunnel_id: t.lac_tunnel_id,
        lac_address: *t.lac.ip(),
        lac_port: t.lac.port(),
        primary_lns: t.primary_lns,
    })
}

fn session_avp(s: &SessionIdentity) -> AvpEntry {
    opt(Avp::SessionIdentity {
        lns_session_id: s.lns_session_id,
        lac_session_id: s.lac_session_id,
    })
}

fn find_tunnel(m: &ControlMessage) -> Option<TunnelIdentity> {
    m.find(|a| match a {
        Avp::TunnelIdentity {
            lns_tunnel_id,
            lac_tunnel_id,
            lac_address,
            lac_port,
            primary_lns,
        } => Some(TunnelIdentity {
            lns_tunnel_id: *lns_tunnel_id,
            lac_tunnel_id: *lac_tunnel_id,
            lac: SocketAddrV4::new(*lac_address, *lac_port),
            primary_lns: *primary_lns,
        }),
        _ => None,
    })
}

fn find_session(m: &ControlMessage) -> Option<SessionIdentity> {
    m.find(|a| match a {
        Avp::SessionIdentity {
            lns_session_id,
            lac_session_id,
        } => Some(SessionIdentity {
            lns_session_id: *lns_session_id,
            lac_session_id: *lac_session_id,
        }),
        _ => None,
    })
}

fn find_operation(m: &ControlMessage) -> Result<OffloadOperation, MessageError> {
    m.find(|a| match a {
        Avp::OffloadOperation(o) => Some(*o),
        _ => None,
    })
    .ok_or(MessageError::Missing("Offload-Operation"))
}

fn find_epoch(m: &ControlMessage) -> Option<u32> {
    m.find(|a| match a {
        Avp::OwnershipEpoch(e) => Some(*e),
        _ => None,
    })
}

fn find_type(m: &ControlMessage) -> SwitchoverType {
    // DESIGN.md §3: "all sessions" is the default.
    m.find(|a| match a {
        Avp::SwitchoverType(t) => Some(*t),
        _ => None,
    })
    .unwrap_or(SwitchoverType::All)
}

impl OffloadRequest {
    /// The add/update of a session.
    pub fn session_update(
        tunnel: TunnelIdentity,
        session: SessionIdentity,
        epoch: u32,
        state: &SessionState,
    ) -> Result<Self, StateError> {
        Ok(OffloadRequest {
            operation: OffloadOperation::AddUpdate,
            tunnel: Some(tunnel),
            session: Some(session),
            epoch: Some(epoch),
            state: Some(state.encode()?),
        })
    }

    /// The decoded Session-State, if the request carries one.
    pub fn session_state(&self) -> Option<Result<SessionState, StateError>> {
        self.state.as_deref().map(SessionState::decode)
    }
}

impl HaMessage {
    /// The control message (header ids are filled in by the endpoint).
    /// `hide_state`: hide Session-State (RFC 2661 §4.3; needs the tunnel's
    /// secret, the endpoint adds the Random Vector).
    pub fn to_control(&self, hide_state: bool) -> ControlMessage {
        match self {
            HaMessage::OffloadRequest(r) => {
                let mut m = ControlMessage::new(MessageType::Lsorq, 0, 0)
                    .with(opt(Avp::OffloadOperation(r.operation)));
                m.avps.extend(r.tunnel.as_ref().map(tunnel_avp));
                m.avps.extend(r.session.as_ref().map(session_avp));
                m.avps.extend(r.epoch.map(|e| opt(Avp::OwnershipEpoch(e))));
                if let Some(state) = &r.state {
                    let e = opt(Avp::SessionState(state.clone()));
                    m.avps.push(if hide_state { e.hide() } else { e });
                }
                m
            }
            HaMessage::OffloadReply(r) => {
                let mut m = ControlMessage::new(MessageType::Lsors, 0, 0)
                    .with(opt(Avp::OffloadOperation(r.operation)));
                m.avps.extend(r.tunnel.as_ref().map(tunnel_avp));
                m.avps.extend(r.session.as_ref().map(session_avp));
                m.avps.extend(r.epoch.map(|e| opt(Avp::OwnershipEpoch(e))));
                if let Some(why) = &r.error {
                    m.avps.push(opt(Avp::ResultCode {
                        result: 2,
                        error: Some(0),
                        message: why.as_bytes().to_vec(),
                    }));
                }
                m
            }
            HaMessage::SwitchoverRequest(r) => {
                let mut m = ControlMessage::new(MessageType::Stplrq, 0, 0)
                    .with(opt(Avp::SwitchoverType(r.kind)));
                if !r.peers.is_empty() {
                    m.avps.push(opt(Avp::PeerLnsAddress(r.peers.clone())));
                }
                if r.kind == SwitchoverType::Listed {
                    m.avps.push(opt(Avp::SessionList(r.sessions.clone())));
                }
                m
            }
            HaMessage::SwitchoverReply(r) => ControlMessage::new(MessageType::Stplrp, 0, 0)
                .with(opt(Avp::SwitchoverType(r.kind)))
                .with(opt(Avp::SwitchoverAction {
                    action: r.action,
                    reason: r.reason.as_bytes().to_vec(),
                })),
        }
    }

    /// Read an HA message the endpoint delivered ([`crate::l2tp::Event::Message`]).
    pub fn from_control(m: &ControlMessage) -> Result<Self, MessageError> {
        match m.message_type {
            Some(MessageType::Lsorq) => Ok(HaMessage::OffloadRequest(OffloadRequest {
                operation: find_operation(m)?,
                tunnel: find_tunnel(m),
                session: find_session(m),
                epoch: find_epoch(m),
                state: m.find(|a| match a {
                    Avp::SessionState(v) => Some(v.clone()),
                    _ => None,
                }),
            })),
            Some(MessageType::Lsors) => Ok(HaMessage::OffloadReply(OffloadReply {
                operation: find_operation(m)?,
                tunnel: find_tunnel(m),
                session: find_session(m),
                epoch: find_epoch(m),
                error: m
                    .result_code()
                    .map(|(_, _, text)| String::from_utf8_lossy(text).into_owned()),
            })),
            Some(MessageType::Stplrq) => {
                let kind = find_type(m);
                Ok(HaMessage::SwitchoverRequest(SwitchoverRequest {
                    peers: m
                        .find(|a| match a {
                            Avp::PeerLnsAddress(v) => Some(v.clone()),
                            _ => None,
                        })
                        .unwrap_or_default(),
                    kind,
                    // DESIGN.md §3: the Session-List belongs to type 2 (the
                    // listed sessions); on another type it means nothing
                    // and is ignored, as `to_control` leaves it out.
                    sessions: if kind == SwitchoverType::Listed {
                        m.find(|a| match a {
                            Avp::SessionList(v) => Some(v.clone()),
                            _ => None,
                        })
                        .unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                }))
            }
            Some(MessageType::Stplrp) => {
                let (action, reason) = m
                    .find(|a| match a {
                        Avp::SwitchoverAction { action, reason } => Some((*action, reason.clone())),
                        _ => None,
                    })
                    .ok_or(MessageError::Missing("Switchover-Action"))?;
                Ok(HaMessage::SwitchoverReply(SwitchoverReply {
                    kind: find_type(m),
                    action,
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                }))
            }
            _ => Err(MessageError::NotHa),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::control::{Context, HA_VENDOR_ID};

    fn round_trip(msg: &HaMessage, hide: bool) -> HaMessage {
        let secret = b"shared";
        let mut control = msg.to_control(hide);
        if hide {
            control
                .avps
                .insert(0, AvpEntry::mandatory(Avp::RandomVector(vec![1, 2, 3, 4])));
        }
        let ctx = Context {
            secret: Some(secret),
            ha_vendor_id: HA_VENDOR_ID,
        };
        let mut buf = vec![0; control.buffer_len()];
        let n = control.emit(&mut buf, &ctx).unwrap();
        let parsed = ControlMessage::parse(&buf[..n], &ctx).unwrap();
        // Every HA AVP goes with the M bit clear.
        assert!(parsed
            .avps
            .iter()
            .filter(|e| !matches!(e.avp, Avp::RandomVector(_)))
            .all(|e| !e.mandatory));
        HaMessage::from_control(&parsed).unwrap()
    }

    #[test]
    fn every_message_survives_the_wire() {
        let tunnel = TunnelIdentity {
            lns_tunnel_id: 7,
            lac_tunnel_id: 9,
            lac: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701),
            primary_lns: Ipv4Addr::new(10, 0, 0, 11),
        };
        let session = SessionIdentity {
            lns_session_id: 100,
            lac_session_id: 200,
        };
        let messages = [
            HaMessage::OffloadRequest(OffloadRequest {
                operation: OffloadOperation::AddUpdate,
                tunnel: Some(tunnel),
                session: Some(session),
                epoch: Some(3),
                state: Some(vec![0, 1, 0, 1, 0, 1, 0]),
            }),
            HaMessage::OffloadRequest(OffloadRequest {
                operation: OffloadOperation::BulkStart,
                tunnel: None,
                session: None,
                epoch: None,
                state: None,
            }),
            HaMessage::OffloadReply(OffloadReply {
                operation: OffloadOperation::Remove,
                tunnel: Some(tunnel),
                session: Some(session),
                epoch: Some(4),
                error: Some("stale".to_owned()),
            }),
            HaMessage::SwitchoverRequest(SwitchoverRequest {
                peers: vec![Ipv4Addr::new(10, 0, 0, 12)],
                kind: SwitchoverType::Listed,
                sessions: vec![1, 2, 3],
            }),
            HaMessage::SwitchoverReply(SwitchoverReply {
                kind: SwitchoverType::All,
                action: SwitchoverAction::Denied,
                reason: "peer unreachable".to_owned(),
            }),
        ];
        for m in &messages {
            assert_eq!(&round_trip(m, false), m);
            assert_eq!(&round_trip(m, true), m);
        }
    }

    #[test]
    fn a_message_without_its_required_avp_is_refused() {
        let m = ControlMessage::new(MessageType::Lsorq, 0, 0);
        assert_eq!(
            HaMessage::from_control(&m),
            Err(MessageError::Missing("Offload-Operation"))
        );
        let m = ControlMessage::new(MessageType::Hello, 0, 0);
        assert_eq!(HaMessage::from_control(&m), Err(MessageError::NotHa));
    }

    /// A Session-List on an STPLRQ that is not of type 2 means nothing
    /// (DESIGN.md §3): it is read as no sessions, as it would be written
    /// (found by the ha_message fuzz target).
    #[test]
    fn a_session_list_outside_a_listed_switchover_is_ignored() {
        for kind in [SwitchoverType::All, SwitchoverType::Unknown(9760)] {
            let m = ControlMessage::new(MessageType::Stplrq, 0, 0)
                .with(AvpEntry::optional(Avp::SwitchoverType(kind)))
                .with(AvpEntry::optional(Avp::SessionList(vec![256])));
            let read = HaMessage::from_control(&m).unwrap();
            assert_eq!(
                read,
                HaMessage::SwitchoverRequest(SwitchoverRequest {
                    peers: Vec::new(),
                    kind,
                    sessions: Vec::new(),
                })
            );
            assert_eq!(HaMessage::from_control(&read.to_control(false)), Ok(read));
        }
    }
}

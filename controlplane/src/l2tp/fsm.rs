//! The control connection and incoming-call state tables of RFC 2661 §7,
//! as pure functions: (state, event) → (next state, actions).
//!
//! The tunnel and session code decides what an arriving message *is* (an
//! acceptable SCCRP, an ICRQ that is not acceptable, ...), asks these tables
//! what to do, and performs the actions. Keeping the tables pure lets the
//! tests check them cell by cell against the RFC.
//!
//! Cells the RFC does not list are "ignore": the state stays and nothing is
//! done. The reliable-delivery layer has already acknowledged the message.

/// Control connection states (RFC 2661 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunnelState {
    /// No control connection (or one being cleaned up).
    Idle,
    /// We sent SCCRQ and wait for SCCRP.
    WaitCtlReply,
    /// We answered an SCCRQ with SCCRP and wait for SCCCN.
    WaitCtlConn,
    /// The control connection is up.
    Established,
}

impl TunnelState {
    /// Every state, for exhaustive tests.
    pub const ALL: [TunnelState; 4] = [
        TunnelState::Idle,
        TunnelState::WaitCtlReply,
        TunnelState::WaitCtlConn,
        TunnelState::Established,
    ];
}

/// What happened to a control connection (RFC 2661 §7.2.1 "Event" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelEvent {
    /// Local open request (a session wants a tunnel).
    LocalOpen,
    /// SCCRQ received and acceptable.
    SccrqAcceptable,
    /// SCCRQ received, not acceptable (version, missing AVP, authentication,
    /// policy).
    SccrqNotAcceptable,
    /// SCCRQ received from a peer we sent an SCCRQ to, and our tie breaker
    /// won (RFC 2661 §4.4.3): theirs is discarded.
    SccrqWinTie,
    /// SCCRQ received from a peer we sent an SCCRQ to, and our tie breaker
    /// lost (RFC 2661 §4.4.3): ours is discarded.
    SccrqLoseTie,
    /// SCCRP received and acceptable.
    SccrpAcceptable,
    /// SCCRP received, not acceptable.
    SccrpNotAcceptable,
    /// SCCCN received and acceptable.
    ScccnAcceptable,
    /// SCCCN received, not acceptable (authentication).
    ScccnNotAcceptable,
    /// StopCCN received.
    StopCcn,
    /// Administrative tunnel close.
    LocalClose,
    /// Retransmissions exhausted (RFC 2661 §5.8), not part of the §7.2.1
    /// table: the tunnel is cleared without a StopCCN.
    RetriesExhausted,
}

impl TunnelEvent {
    /// Every event, for exhaustive tests.
    pub const ALL: [TunnelEvent; 12] = [
        TunnelEvent::LocalOpen,
        TunnelEvent::SccrqAcceptable,
        TunnelEvent::SccrqNotAcceptable,
        TunnelEvent::SccrqWinTie,
        TunnelEvent::SccrqLoseTie,
        TunnelEvent::SccrpAcceptable,
        TunnelEvent::SccrpNotAcceptable,
        TunnelEvent::ScccnAcceptable,
        TunnelEvent::ScccnNotAcceptable,
        TunnelEvent::StopCcn,
        TunnelEvent::LocalClose,
        TunnelEvent::RetriesExhausted,
    ];
}

/// What a control connection does (RFC 2661 §7.2.1 "Action" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelAction {
    /// Send SCCRQ.
    SendSccrq,
    /// Send SCCRP.
    SendSccrp,
    /// Send SCCCN.
    SendScccn,
    /// Send StopCCN.
    SendStopCcn,
    /// Send the tunnel-open event to the sessions waiting for the tunnel.
    TunnelOpen,
    /// Clean up: the tunnel and its sessions are gone.
    CleanUp,
    /// Re-queue the received SCCRQ for the idle state: after losing the tie
    /// we answer the peer's SCCRQ as if we had never sent ours.
    RequeueSccrq,
}

/// One cell of a state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S: 'static, A: 'static> {
    /// The state after the event.
    pub next: S,
    /// What to do, in order.
    pub actions: &'static [A],
}

/// A tunnel table cell.
pub type TunnelTransition = Transition<TunnelState, TunnelAction>;

const fn go<S, A>(next: S, actions: &'static [A]) -> Transition<S, A> {
    Transition { next, actions }
}

/// The control connection state table (RFC 2661 §7.2.1).
pub fn tunnel_transition(state: TunnelState, event: TunnelEvent) -> TunnelTransition {
    use TunnelAction::*;
    use TunnelEvent as E;
    use TunnelState::*;
    match (state, event) {
        // idle
        (Idle, E::LocalOpen) => go(WaitCtlReply, &[SendSccrq]),
        (Idle, E::SccrqAcceptable) => go(WaitCtlConn, &[SendSccrp]),
        (Idle, E::SccrqNotAcceptable) => go(Idle, &[SendStopCcn, CleanUp]),
        (Idle, E::SccrpAcceptable | E::SccrpNotAcceptable) => go(Idle, &[SendStopCcn, CleanUp]),
        (Idle, E::ScccnAcceptable | E::ScccnNotAcceptable) => go(Idle, &[CleanUp]),
        (Idle, E::StopCcn) => go(Idle, &[CleanUp]),

        // wait-ctl-reply
        (WaitCtlReply, E::SccrpAcceptable) => go(Established, &[SendScccn, TunnelOpen]),
        (WaitCtlReply, E::SccrpNotAcceptable) => go(Idle, &[SendStopCcn, CleanUp]),
        (WaitCtlReply, E::SccrqLoseTie) => go(Idle, &[CleanUp, RequeueSccrq]),
        (WaitCtlReply, E::SccrqWinTie) => go(WaitCtlReply, &[]),
        // An SCCRQ on a connection we initiated that is not a tie: out of
        // sequence, like the SCCRQ rows of the other states.
        (WaitCtlReply, E::SccrqAcceptable | E::SccrqNotAcceptable) => {
            go(Idle, &[SendStopCcn, CleanUp])
        }
        (WaitCtlReply, E::ScccnAcceptable | E::ScccnNotAcceptable) => {
            go(Idle, &[SendStopCcn, CleanUp])
        }

        // wait-ctl-conn
        (WaitCtlConn, E::ScccnAcceptable) => go(Established, &[TunnelOpen]),
        (WaitCtlConn, E::ScccnNotAcceptable) => go(Idle, &[SendStopCcn, CleanUp]),
        (
            WaitCtlConn,
            E::SccrqAcceptable
            | E::SccrqNotAcceptable
            | E::SccrqWinTie
            | E::SccrqLoseTie
            | E::SccrpAcceptable
            | E::SccrpNotAcceptable,
        ) => go(Idle, &[SendStopCcn, CleanUp]),

        // established
        (Established, E::LocalOpen) => go(Established, &[TunnelOpen]),
        (
            Established,
            E::SccrqAcceptable
            | E::SccrqNotAcceptable
            | E::SccrqWinTie
            | E::SccrqLoseTie
            | E::SccrpAcceptable
            | E::SccrpNotAcceptable
            | E::ScccnAcceptable
            | E::ScccnNotAcceptable,
        ) => go(Idle, &[SendStopCcn, CleanUp]),

        // any state but idle
        (WaitCtlReply | WaitCtlConn | Established, E::StopCcn) => go(Idle, &[CleanUp]),
        (WaitCtlReply | WaitCtlConn | Established, E::LocalClose) => {
            go(Idle, &[SendStopCcn, CleanUp])
        }
        (WaitCtlReply | WaitCtlConn | Established, E::RetriesExhausted) => go(Idle, &[CleanUp]),

        // Not in the table: ignore.
        (s, _) => go(s, &[]),
    }
}

/// Incoming-call session states (RFC 2661 §7.4.1 for the LAC, §7.4.2 for
/// the LNS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionState {
    /// No session (or one being cleaned up).
    Idle,
    /// LAC: the call waits for the tunnel to come up.
    WaitTunnel,
    /// LAC: ICRQ sent, waiting for ICRP.
    WaitReply,
    /// LNS: ICRP sent, waiting for ICCN.
    WaitConnect,
    /// The session carries data.
    Established,
}

impl SessionState {
    /// Every state, for exhaustive tests.
    pub const ALL: [SessionState; 5] = [
        SessionState::Idle,
        SessionState::WaitTunnel,
        SessionState::WaitReply,
        SessionState::WaitConnect,
        SessionState::Established,
    ];
}

/// Which end of an incoming call a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallSide {
    /// The LAC: it received the call and sends ICRQ (RFC 2661 §7.4.1).
    Lac,
    /// The LNS: it answers ICRQ (RFC 2661 §7.4.2).
    Lns,
}

/// What happened to a session (RFC 2661 §7.4 "Event" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// LAC: bearer ring, or ready to indicate an incoming connection.
    LocalOpen,
    /// The tunnel came up.
    TunnelOpen,
    /// Local close request or bearer line drop.
    LocalClose,
    /// ICRQ received, acceptable.
    IcrqAcceptable,
    /// ICRQ received, not acceptable.
    IcrqNotAcceptable,
    /// ICRP received, acceptable.
    IcrpAcceptable,
    /// ICRP received, not acceptable.
    IcrpNotAcceptable,
    /// ICCN received, acceptable.
    IccnAcceptable,
    /// ICCN received, not acceptable.
    IccnNotAcceptable,
    /// CDN received.
    Cdn,
    /// The tunnel went down: StopCCN clears every session (RFC 2661 §5.7).
    TunnelDown,
}

impl SessionEvent {
    /// Every event, for exhaustive tests.
    pub const ALL: [SessionEvent; 11] = [
        SessionEvent::LocalOpen,
        SessionEvent::TunnelOpen,
        SessionEvent::LocalClose,
        SessionEvent::IcrqAcceptable,
        SessionEvent::IcrqNotAcceptable,
        SessionEvent::IcrpAcceptable,
        SessionEvent::IcrpNotAcceptable,
        SessionEvent::IccnAcceptable,
        SessionEvent::IccnNotAcceptable,
        SessionEvent::Cdn,
        SessionEvent::TunnelDown,
    ];
}

/// What a session does (RFC 2661 §7.4 "Action" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionAction {
    /// LAC: initiate a local tunnel open.
    OpenTunnel,
    /// Send ICRQ.
    SendIcrq,
    /// Send ICRP.
    SendIcrp,
    /// Send ICCN.
    SendIccn,
    /// Send CDN.
    SendCdn,
    /// The session is up: prepare for data.
    Connected,
    /// Clean up: the session is gone.
    CleanUp,
}

/// A session table cell.
pub type SessionTransition = Transition<SessionState, SessionAction>;

/// The incoming-call state tables (RFC 2661 §7.4.1 LAC, §7.4.2 LNS).
pub fn session_transition(
    side: CallSide,
    state: SessionState,
    event: SessionEvent,
) -> SessionTransition {
    use SessionAction::*;
    use SessionEvent as E;
    use SessionState::*;
    match side {
        // RFC 2661 §7.4.1
        CallSide::Lac => match (state, event) {
            (Idle, E::LocalOpen) => go(WaitTunnel, &[OpenTunnel]),
            (Idle, E::IccnAcceptable | E::IccnNotAcceptable) => go(Idle, &[CleanUp]),
            (Idle, E::IcrpAcceptable | E::IcrpNotAcceptable | E::Cdn) => go(Idle, &[CleanUp]),
            (WaitTunnel, E::LocalClose) => go(Idle, &[CleanUp]),
            (WaitTunnel, E::TunnelOpen) => go(WaitReply, &[SendIcrq]),
            (WaitReply, E::IcrpAcceptable) => go(Established, &[SendIccn, Connected]),
            (WaitReply, E::IcrpNotAcceptable) => go(Idle, &[SendCdn, CleanUp]),
            (WaitReply, E::IcrqAcceptable | E::IcrqNotAcceptable) => go(Idle, &[SendCdn, CleanUp]),
            (WaitReply, E::Cdn | E::IccnAcceptable | E::IccnNotAcceptable) => go(Idle, &[CleanUp]),
            (WaitReply, E::LocalClose) => go(Idle, &[SendCdn, CleanUp]),
            (Established, E::Cdn) => go(Idle, &[CleanUp]),
            (
                Established,
                E::IcrqAcceptable
                | E::IcrqNotAcceptable
                | E::IcrpAcceptable
                | E::IcrpNotAcceptable
                | E::IccnAcceptable
                | E::IccnNotAcceptable,
            ) => go(Idle, &[SendCdn, CleanUp]),
            (Established, E::LocalClose) => go(Idle, &[SendCdn, CleanUp]),
            (WaitTunnel | WaitReply | Established, E::TunnelDown) => go(Idle, &[CleanUp]),
            (s, _) => go(s, &[]),
        },
        // RFC 2661 §7.4.2
        CallSide::Lns => match (state, event) {
            (Idle, E::IcrqAcceptable) => go(WaitConnect, &[SendIcrp]),
            (Idle, E::IcrqNotAcceptable) => go(Idle, &[SendCdn, CleanUp]),
            (Idle, E::IcrpAcceptable | E::IcrpNotAcceptable) => go(Idle, &[SendCdn, CleanUp]),
            (Idle, E::IccnAcceptable | E::IccnNotAcceptable) => go(Idle, &[CleanUp]),
            (Idle | WaitConnect | Established, E::Cdn) => go(Idle, &[CleanUp]),
            (WaitConnect, E::IccnAcceptable) => go(Established, &[Connected]),
            (WaitConnect, E::IccnNotAcceptable) => go(Idle, &[SendCdn, CleanUp]),
            (
                WaitConnect,
                E::IcrqAcceptable | E::IcrqNotAcceptable | E::IcrpAcceptable | E::IcrpNotAcceptable,
            ) => go(Idle, &[SendCdn, CleanUp]),
            (WaitConnect | Established, E::LocalClose) => go(Idle, &[SendCdn, CleanUp]),
            (
                Established,
                E::IcrqAcceptable
                | E::IcrqNotAcceptable
                | E::IcrpAcceptable
                | E::IcrpNotAcceptable
                | E::IccnAcceptable
                | E::IccnNotAcceptable,
            ) => go(Idle, &[SendCdn, CleanUp]),
            (WaitConnect | Established, E::TunnelDown) => go(Idle, &[CleanUp]),
            (s, _) => go(s, &[]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use SessionAction as SA;
    use SessionEvent as SE;
    use SessionState as SS;
    use TunnelAction as TA;
    use TunnelEvent as TE;
    use TunnelState as TS;

    /// RFC 2661 §7.2.1, row by row, plus the rows this implementation adds
    /// (marked). Every (state, event) pair not listed must be "ignore".
    #[rustfmt::skip]
    const TUNNEL_TABLE: &[(TS, TE, &[TA], TS)] = &[
        (TS::Idle, TE::LocalOpen, &[TA::SendSccrq], TS::WaitCtlReply),
        (TS::Idle, TE::SccrqAcceptable, &[TA::SendSccrp], TS::WaitCtlConn),
        (TS::Idle, TE::SccrqNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Idle, TE::SccrpAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Idle, TE::SccrpNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Idle, TE::ScccnAcceptable, &[TA::CleanUp], TS::Idle),
        (TS::Idle, TE::ScccnNotAcceptable, &[TA::CleanUp], TS::Idle),
        (TS::WaitCtlReply, TE::SccrpAcceptable, &[TA::SendScccn, TA::TunnelOpen], TS::Established),
        (TS::WaitCtlReply, TE::SccrpNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlReply, TE::SccrqLoseTie, &[TA::CleanUp, TA::RequeueSccrq], TS::Idle),
        (TS::WaitCtlReply, TE::ScccnAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlReply, TE::ScccnNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::ScccnAcceptable, &[TA::TunnelOpen], TS::Established),
        (TS::WaitCtlConn, TE::ScccnNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::SccrqAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::SccrqNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::SccrpAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::SccrpNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::LocalOpen, &[TA::TunnelOpen], TS::Established),
        (TS::Established, TE::LocalClose, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::SccrqAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::SccrqNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::SccrpAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::SccrpNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::ScccnAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::ScccnNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Idle, TE::StopCcn, &[TA::CleanUp], TS::Idle),
        (TS::WaitCtlReply, TE::StopCcn, &[TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::StopCcn, &[TA::CleanUp], TS::Idle),
        (TS::Established, TE::StopCcn, &[TA::CleanUp], TS::Idle),
        // Added: tie breaker won (RFC 2661 §4.4.3: the loser discards).
        (TS::WaitCtlReply, TE::SccrqWinTie, &[], TS::WaitCtlReply),
        // Added: an SCCRQ that is no tie on a connection we initiated.
        (TS::WaitCtlReply, TE::SccrqAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlReply, TE::SccrqNotAcceptable, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        // Added: tie events outside wait-ctl-reply are plain SCCRQs.
        (TS::WaitCtlConn, TE::SccrqWinTie, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::SccrqLoseTie, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::SccrqWinTie, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::Established, TE::SccrqLoseTie, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        // Added: administrative close before the connection is up.
        (TS::WaitCtlReply, TE::LocalClose, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::LocalClose, &[TA::SendStopCcn, TA::CleanUp], TS::Idle),
        // Added: RFC 2661 §5.8 retransmissions exhausted.
        (TS::WaitCtlReply, TE::RetriesExhausted, &[TA::CleanUp], TS::Idle),
        (TS::WaitCtlConn, TE::RetriesExhausted, &[TA::CleanUp], TS::Idle),
        (TS::Established, TE::RetriesExhausted, &[TA::CleanUp], TS::Idle),
    ];

    #[test]
    fn tunnel_table_matches_rfc_2661_section_7_2_1_cell_by_cell() {
        let mut listed = HashMap::new();
        for &(state, event, actions, next) in TUNNEL_TABLE {
            assert!(
                listed.insert((state, event), (actions, next)).is_none(),
                "row listed twice: {state:?} {event:?}"
            );
        }
        for state in TS::ALL {
            for event in TE::ALL {
                let got = tunnel_transition(state, event);
                let (actions, next) = listed.get(&(state, event)).copied().unwrap_or((&[], state));
                assert_eq!(
                    (got.actions, got.next),
                    (actions, next),
                    "cell {state:?} × {event:?}"
                );
            }
        }
    }

    /// RFC 2661 §7.4.1, LAC side, row by row.
    #[rustfmt::skip]
    const LAC_TABLE: &[(SS, SE, &[SA], SS)] = &[
        (SS::Idle, SE::LocalOpen, &[SA::OpenTunnel], SS::WaitTunnel),
        (SS::Idle, SE::IccnAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IccnNotAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IcrpAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IcrpNotAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::Idle, SE::Cdn, &[SA::CleanUp], SS::Idle),
        (SS::WaitTunnel, SE::LocalClose, &[SA::CleanUp], SS::Idle),
        (SS::WaitTunnel, SE::TunnelOpen, &[SA::SendIcrq], SS::WaitReply),
        (SS::WaitReply, SE::IcrpAcceptable, &[SA::SendIccn, SA::Connected], SS::Established),
        (SS::WaitReply, SE::IcrpNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::IcrqAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::IcrqNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::Cdn, &[SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::IccnAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::IccnNotAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::LocalClose, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::Cdn, &[SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrqAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrqNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrpAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrpNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IccnAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IccnNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::LocalClose, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        // Added: StopCCN clears every session (RFC 2661 §5.7).
        (SS::WaitTunnel, SE::TunnelDown, &[SA::CleanUp], SS::Idle),
        (SS::WaitReply, SE::TunnelDown, &[SA::CleanUp], SS::Idle),
        (SS::Established, SE::TunnelDown, &[SA::CleanUp], SS::Idle),
    ];

    /// RFC 2661 §7.4.2, LNS side, row by row.
    #[rustfmt::skip]
    const LNS_TABLE: &[(SS, SE, &[SA], SS)] = &[
        (SS::Idle, SE::IcrqAcceptable, &[SA::SendIcrp], SS::WaitConnect),
        (SS::Idle, SE::IcrqNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IcrpAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IcrpNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IccnAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::Idle, SE::IccnNotAcceptable, &[SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::IccnAcceptable, &[SA::Connected], SS::Established),
        (SS::WaitConnect, SE::IccnNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::IcrqAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::IcrqNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::IcrpAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::IcrpNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Idle, SE::Cdn, &[SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::Cdn, &[SA::CleanUp], SS::Idle),
        (SS::Established, SE::Cdn, &[SA::CleanUp], SS::Idle),
        (SS::WaitConnect, SE::LocalClose, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::LocalClose, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrqAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrqNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrpAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IcrpNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IccnAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        (SS::Established, SE::IccnNotAcceptable, &[SA::SendCdn, SA::CleanUp], SS::Idle),
        // Added: StopCCN clears every session (RFC 2661 §5.7).
        (SS::WaitConnect, SE::TunnelDown, &[SA::CleanUp], SS::Idle),
        (SS::Established, SE::TunnelDown, &[SA::CleanUp], SS::Idle),
    ];

    fn check_session_table(side: CallSide, table: &[(SS, SE, &[SA], SS)]) {
        let mut listed = HashMap::new();
        for &(state, event, actions, next) in table {
            assert!(
                listed.insert((state, event), (actions, next)).is_none(),
                "row listed twice: {state:?} {event:?}"
            );
        }
        for state in SS::ALL {
            for event in SE::ALL {
                let got = session_transition(side, state, event);
                let (actions, next) = listed.get(&(state, event)).copied().unwrap_or((&[], state));
                assert_eq!(
                    (got.actions, got.next),
                    (actions, next),
                    "{side:?} cell {state:?} × {event:?}"
                );
            }
        }
    }

    #[test]
    fn lac_session_table_matches_rfc_2661_section_7_4_1_cell_by_cell() {
        check_session_table(CallSide::Lac, LAC_TABLE);
    }

    #[test]
    fn lns_session_table_matches_rfc_2661_section_7_4_2_cell_by_cell() {
        check_session_table(CallSide::Lns, LNS_TABLE);
    }
}

//! A LAC that holds its ICCN until its owner is ready for the call's data
//! ([`CallParams::defer_connect`], [`Event::CallAnswered`],
//! [`Endpoint::connect_call`]), and an LNS that holds its ICRP likewise
//! ([`Config::defer_answer`], [`Event::CallOffered`],
//! [`Endpoint::answer_call`]), over a perfect network driven by hand.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use dataplane::wire::control::{Context, ControlMessage, MessageType};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::codes::cdn;
use super::{
    CallParams, Config, Endpoint, Error, Event, SessionDownReason, SessionHandle, SessionState,
    TunnelHandle,
};
use crate::time::Instant;

const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1701);
const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1701);
const WAIT: Duration = Duration::from_secs(1);

/// Two endpoints, every datagram delivered at once, and what each sent and
/// heard.
struct Pair {
    now: Instant,
    lac: Endpoint,
    lns: Endpoint,
    /// Control message types the LAC sent, in order.
    lac_sent: Vec<MessageType>,
    /// Control message types the LNS sent, in order.
    lns_sent: Vec<MessageType>,
    lac_events: Vec<Event>,
    lns_events: Vec<Event>,
}

fn message_type(payload: &[u8]) -> Option<MessageType> {
    let ctx = Context {
        secret: None,
        ha_vendor_id: 43,
    };
    ControlMessage::parse(payload, &ctx)
        .ok()
        .and_then(|m| m.message_type)
}

impl Pair {
    fn new() -> Pair {
        let rng = |seed| Box::new(ChaCha8Rng::seed_from_u64(seed));
        Pair {
            now: Instant::ZERO,
            lac: Endpoint::new(Config::lac("lac"), rng(1)).unwrap(),
            lns: Endpoint::new(Config::lns("lns"), rng(2)).unwrap(),
            lac_sent: Vec::new(),
            lns_sent: Vec::new(),
            lac_events: Vec::new(),
            lns_events: Vec::new(),
        }
    }

    /// Exchange everything there is to exchange now.
    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.lac.poll_transmit(self.now) {
                self.lac_sent.extend(message_type(&t.payload));
                self.lns.handle_datagram(self.now, LAC, &t.payload);
                moved = true;
            }
            while let Some(t) = self.lns.poll_transmit(self.now) {
                self.lns_sent.extend(message_type(&t.payload));
                self.lac.handle_datagram(self.now, LNS, &t.payload);
                moved = true;
            }
            while let Some(e) = self.lac.poll_event() {
                self.lac_events.push(e);
            }
            while let Some(e) = self.lns.poll_event() {
                self.lns_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Run the timers and the network until `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.exchange();
            let next = [self.lac.poll_timeout(), self.lns.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.lac.handle_timeout(self.now);
                    self.lns.handle_timeout(self.now);
                }
                _ => {
                    self.now = until;
                    self.exchange();
                    return;
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// A tunnel and one call with `defer_connect`, run until the LNS has
    /// answered it.
    fn answered_call(&mut self) -> (TunnelHandle, SessionHandle) {
        let tunnel = self.lac.connect(self.now, LNS).unwrap();
        let call = CallParams {
            defer_connect: Some(WAIT),
            ..CallParams::default()
        };
        let session = self.lac.open_session(self.now, tunnel, call).unwrap();
        self.run_for(Duration::from_millis(100));
        assert!(
            self.lac_events
                .iter()
                .any(|e| matches!(e, Event::CallAnswered { session: s, .. } if *s == session)),
            "{:?}",
            self.lac_events
        );
        (tunnel, session)
    }

    fn iccns_sent(&self) -> usize {
        self.lac_sent
            .iter()
            .filter(|t| **t == MessageType::Iccn)
            .count()
    }

    fn lac_session_up(&self) -> bool {
        self.lac_events
            .iter()
            .any(|e| matches!(e, Event::SessionUp { .. }))
    }

    fn lns_session_up(&self) -> Option<(u16, u16)> {
        self.lns_events.iter().find_map(|e| match e {
            Event::SessionUp {
                local_session_id,
                peer_session_id,
                ..
            } => Some((*local_session_id, *peer_session_id)),
            _ => None,
        })
    }
}

#[test]
fn an_answered_call_sends_no_iccn_until_the_owner_connects_it() {
    let mut pair = Pair::new();
    let (tunnel, session) = pair.answered_call();
    let answered = pair
        .lac_events
        .iter()
        .find_map(|e| match e {
            Event::CallAnswered {
                local_tunnel_id,
                peer_tunnel_id,
                remote,
                local_session_id,
                peer_session_id,
                ..
            } => Some((
                *local_tunnel_id,
                *peer_tunnel_id,
                *remote,
                *local_session_id,
                *peer_session_id,
            )),
            _ => None,
        })
        .unwrap();
    // Everything the owner's fast path needs: the tunnel's ids and peer,
    // and the session's ids (checked against the LNS's below).
    let (local_tid, peer_tid) = pair.lac.tunnel_ids(tunnel).unwrap();
    assert_eq!(
        (answered.0, answered.1, answered.2),
        (local_tid, peer_tid, LNS)
    );
    assert_ne!(answered.4, 0);

    // The owner takes its time: no ICCN, nothing up on either side.
    pair.run_for(Duration::from_millis(500));
    assert_eq!(pair.iccns_sent(), 0, "{:?}", pair.lac_sent);
    assert_eq!(
        pair.lac.session_state(session),
        Some(SessionState::WaitReply)
    );
    assert!(!pair.lac_session_up());
    assert_eq!(pair.lns_session_up(), None);

    pair.lac.connect_call(pair.now, session).unwrap();
    pair.run_for(Duration::from_millis(200));
    assert_eq!(pair.iccns_sent(), 1, "{:?}", pair.lac_sent);
    assert!(pair.lac_session_up());
    assert_eq!(
        pair.lns_session_up(),
        Some((answered.4, answered.3)),
        "the LNS's ids are the ones CallAnswered gave"
    );
    assert_eq!(
        pair.lac.connect_call(pair.now, session),
        Err(Error::NotWaiting)
    );
    // Past the wait: nothing expires for a connected call.
    pair.run_for(2 * WAIT);
    assert_eq!(
        pair.lac.session_state(session),
        Some(SessionState::Established)
    );
    assert_eq!(pair.lac.tunnel_stats(tunnel).unwrap().connect_timeouts, 0);
}

#[test]
fn an_answered_call_the_owner_never_connects_is_cleared_with_a_cdn() {
    let mut pair = Pair::new();
    let (tunnel, session) = pair.answered_call();
    let answered_at = pair.now;
    pair.run_for(2 * WAIT);
    let down = pair
        .lac_events
        .iter()
        .find_map(|e| match e {
            Event::SessionDown { session: s, reason } if *s == session => Some(reason.clone()),
            _ => None,
        })
        .expect("the call is cleared when the wait runs out");
    match down {
        SessionDownReason::Closed(r) => assert_eq!(r.result, cdn::NO_FACILITIES_TEMPORARY),
        other => panic!("{other:?}"),
    }
    assert_eq!(pair.iccns_sent(), 0);
    assert_eq!(
        pair.lac_sent
            .iter()
            .filter(|t| **t == MessageType::Cdn)
            .count(),
        1
    );
    assert!(pair
        .lac_events
        .iter()
        .all(|e| !matches!(e, Event::SessionUp { .. })));
    assert_eq!(pair.lns_session_up(), None);
    assert!(pair.now >= answered_at + WAIT);
    // Counted; the tunnel and the LNS's state are clean.
    assert_eq!(pair.lac.tunnel_stats(tunnel).unwrap().connect_timeouts, 1);
    assert_eq!(pair.lac.session_count(tunnel), 0);
    let lns_tunnel = pair.lns.tunnels().next().unwrap();
    assert_eq!(pair.lns.session_count(lns_tunnel), 0);
    assert_eq!(
        pair.lac.connect_call(pair.now, session),
        Err(Error::UnknownSession)
    );
    // A later call on the same tunnel is not affected.
    let next = pair
        .lac
        .open_session(pair.now, tunnel, CallParams::default())
        .unwrap();
    pair.run_for(Duration::from_millis(200));
    assert_eq!(
        pair.lac.session_state(next),
        Some(SessionState::Established)
    );
}

#[test]
fn a_held_call_goes_down_with_its_tunnel_and_nothing_expires_later() {
    let mut pair = Pair::new();
    let (tunnel, session) = pair.answered_call();
    pair.lac
        .close_tunnel(pair.now, tunnel, super::ResultCode::new(1))
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    assert!(pair.lac_events.iter().any(
        |e| matches!(e, Event::SessionDown { session: s, reason: SessionDownReason::TunnelDown } if *s == session)
    ));
    pair.run_for(2 * WAIT);
    assert_eq!(
        pair.lac
            .tunnel_stats(tunnel)
            .map_or(0, |s| s.connect_timeouts),
        0
    );
    assert!(pair.lac.connect_call(pair.now, session).is_err());
}

#[test]
fn the_owner_may_close_a_held_call_with_a_cdn() {
    let mut pair = Pair::new();
    let (tunnel, session) = pair.answered_call();
    pair.lac
        .close_session(
            pair.now,
            session,
            super::ResultCode::new(cdn::ADMINISTRATIVE),
        )
        .unwrap();
    pair.run_for(2 * WAIT);
    assert_eq!(pair.iccns_sent(), 0);
    assert!(pair.lac_sent.contains(&MessageType::Cdn));
    assert_eq!(pair.lac.tunnel_stats(tunnel).unwrap().connect_timeouts, 0);
    let lns_tunnel = pair.lns.tunnels().next().unwrap();
    assert_eq!(pair.lns.session_count(lns_tunnel), 0);
}

/// An LNS with [`Config::defer_answer`], a tunnel and one call from the
/// LAC, run until the LNS's owner heard of it: (LAC tunnel, LAC session,
/// LNS session, the offer's ids: our tunnel, peer tunnel, remote, our
/// session, peer session).
#[allow(clippy::type_complexity)]
fn offered_call(
    pair: &mut Pair,
) -> (
    TunnelHandle,
    SessionHandle,
    SessionHandle,
    (u16, u16, SocketAddrV4, u16, u16),
) {
    pair.lns.set_defer_answer(Some(WAIT));
    let tunnel = pair.lac.connect(pair.now, LNS).unwrap();
    let session = pair
        .lac
        .open_session(pair.now, tunnel, CallParams::default())
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    let offer = pair
        .lns_events
        .iter()
        .find_map(|e| match e {
            Event::CallOffered {
                session,
                local_tunnel_id,
                peer_tunnel_id,
                remote,
                local_session_id,
                peer_session_id,
                ..
            } => Some((
                *session,
                (
                    *local_tunnel_id,
                    *peer_tunnel_id,
                    *remote,
                    *local_session_id,
                    *peer_session_id,
                ),
            )),
            _ => None,
        })
        .expect("the LNS's owner hears of the call");
    (tunnel, session, offer.0, offer.1)
}

fn icrps_sent(pair: &Pair) -> usize {
    pair.lns_sent
        .iter()
        .filter(|t| **t == MessageType::Icrp)
        .count()
}

#[test]
fn an_offered_call_gets_no_icrp_until_the_owner_answers_it() {
    let mut pair = Pair::new();
    let (tunnel, lac_session, lns_session, offer) = offered_call(&mut pair);
    // Every id the owner's fast path needs: the tunnel's ids and peer, the
    // session's ids (checked against the LAC's below).
    let lns_tunnel = pair.lns.tunnels().next().unwrap();
    let (local_tid, peer_tid) = pair.lns.tunnel_ids(lns_tunnel).unwrap();
    assert_eq!((offer.0, offer.1, offer.2), (local_tid, peer_tid, LAC));
    assert_eq!(pair.lac.tunnel_ids(tunnel), Some((peer_tid, local_tid)));
    assert_ne!(offer.3, 0);

    // The owner takes its time: no ICRP, so the LAC cannot connect the
    // call and send data the owner is not ready for.
    pair.run_for(Duration::from_millis(500));
    assert_eq!(icrps_sent(&pair), 0, "{:?}", pair.lns_sent);
    assert_eq!(pair.iccns_sent(), 0);
    assert_eq!(
        pair.lac.session_state(lac_session),
        Some(SessionState::WaitReply)
    );
    assert_eq!(
        pair.lns.session_state(lns_session),
        Some(SessionState::Idle)
    );

    pair.lns.answer_call(pair.now, lns_session, Ok(())).unwrap();
    pair.run_for(Duration::from_millis(200));
    assert_eq!(icrps_sent(&pair), 1);
    assert!(pair.lac_session_up());
    assert_eq!(
        pair.lns_session_up(),
        Some((offer.3, offer.4)),
        "the session's ids are the ones CallOffered gave"
    );
    assert_eq!(
        pair.lns.answer_call(pair.now, lns_session, Ok(())),
        Err(Error::NotWaiting)
    );
    // Past the wait: nothing expires for an answered call.
    pair.run_for(2 * WAIT);
    assert_eq!(
        pair.lns.session_state(lns_session),
        Some(SessionState::Established)
    );
    assert_eq!(
        pair.lns.tunnel_stats(lns_tunnel).unwrap().connect_timeouts,
        0
    );
}

#[test]
fn an_offered_call_the_owner_never_answers_is_cleared_with_a_cdn() {
    let mut pair = Pair::new();
    let (tunnel, lac_session, lns_session, _) = offered_call(&mut pair);
    let offered_at = pair.now;
    pair.run_for(2 * WAIT);
    let down = pair
        .lns_events
        .iter()
        .find_map(|e| match e {
            Event::SessionDown { session: s, reason } if *s == lns_session => Some(reason.clone()),
            _ => None,
        })
        .expect("the call is cleared when the wait runs out");
    // RFC 2661 §4.4.2 result 4: no facilities, temporary.
    match down {
        SessionDownReason::Closed(r) => assert_eq!(r.result, cdn::NO_FACILITIES_TEMPORARY),
        other => panic!("{other:?}"),
    }
    assert!(pair.lac_events.iter().any(|e| matches!(
        e,
        Event::SessionDown { session: s, reason: SessionDownReason::CdnReceived(r) }
            if *s == lac_session && r.result == cdn::NO_FACILITIES_TEMPORARY
    )));
    assert_eq!(icrps_sent(&pair), 0);
    assert!(pair.lns_sent.contains(&MessageType::Cdn));
    assert!(pair.now >= offered_at + WAIT);
    // Counted; the state is clean on both sides.
    let lns_tunnel = pair.lns.tunnels().next().unwrap();
    assert_eq!(
        pair.lns.tunnel_stats(lns_tunnel).unwrap().connect_timeouts,
        1
    );
    assert_eq!(pair.lns.session_count(lns_tunnel), 0);
    assert_eq!(pair.lac.session_count(tunnel), 0);
    assert!(pair.lns.answer_call(pair.now, lns_session, Ok(())).is_err());

    // The owner may refuse a call too: CDN with its result.
    pair.lns_events.clear();
    let next = pair
        .lac
        .open_session(pair.now, tunnel, CallParams::default())
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    let offered = pair
        .lns_events
        .iter()
        .find_map(|e| match e {
            Event::CallOffered { session, .. } => Some(*session),
            _ => None,
        })
        .unwrap();
    pair.lns
        .answer_call(
            pair.now,
            offered,
            Err(super::ResultCode::new(cdn::NO_FACILITIES_PERMANENT)),
        )
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.lac.session_state(next), None);
    assert_eq!(pair.lns.session_count(lns_tunnel), 0);
    assert_eq!(icrps_sent(&pair), 0);
}

#[test]
fn an_offered_call_goes_down_with_its_tunnel_and_nothing_expires_later() {
    let mut pair = Pair::new();
    let (tunnel, _, lns_session, _) = offered_call(&mut pair);
    let lns_tunnel = pair.lns.tunnels().next().unwrap();
    pair.lac
        .close_tunnel(pair.now, tunnel, super::ResultCode::new(1))
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    assert!(pair.lns_events.iter().any(
        |e| matches!(e, Event::SessionDown { session: s, reason: SessionDownReason::TunnelDown } if *s == lns_session)
    ));
    pair.run_for(2 * WAIT);
    assert_eq!(
        pair.lns
            .tunnel_stats(lns_tunnel)
            .map_or(0, |s| s.connect_timeouts),
        0
    );
    assert!(pair.lns.answer_call(pair.now, lns_session, Ok(())).is_err());
}

// --- owner AVPs that could never be sent ----------------------------------

#[test]
fn an_avp_too_long_for_its_length_field_is_refused_before_it_takes_an_ns() {
    use dataplane::wire::avp;
    use dataplane::wire::control::{Avp, AvpEntry};

    let mut pair = Pair::new();
    let tunnel = pair.lac.connect(pair.now, LNS).unwrap();
    pair.run_for(Duration::from_millis(100));
    let hello_with = |len: usize, hidden: bool| {
        let mut m = ControlMessage::new(MessageType::Hello, 0, 0);
        m.avps.push(AvpEntry {
            mandatory: false,
            hidden,
            avp: Avp::Unknown {
                vendor_id: 43,
                attribute: 99,
                value: vec![0x5a; len],
            },
        });
        m
    };
    // RFC 2661 §4.1: the AVP Length field has 10 bits, header included.
    let too_long = hello_with(avp::MAX_VALUE_LEN + 1, false);
    assert!(matches!(
        pair.lac.send_message(pair.now, tunnel, None, too_long),
        Err(Error::Encode(_))
    ));
    // Without a secret a hidden AVP is refused anyway; the longest plain
    // one goes out.
    assert!(pair
        .lac
        .send_message(
            pair.now,
            tunnel,
            None,
            hello_with(avp::MAX_VALUE_LEN, false)
        )
        .is_ok());
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.lac.stats().encode_errors, 0);
    // Nothing took an Ns it could not use: the channel goes on (a call is
    // answered through it).
    let call = CallParams {
        defer_connect: Some(WAIT),
        ..CallParams::default()
    };
    let session = pair.lac.open_session(pair.now, tunnel, call).unwrap();
    pair.run_for(Duration::from_millis(100));
    assert!(pair
        .lac_events
        .iter()
        .any(|e| matches!(e, Event::CallAnswered { session: s, .. } if *s == session)));
}

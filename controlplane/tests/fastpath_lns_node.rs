//! The LNS node's side of the fast path, sans-IO: subscribers come up with
//! every PPP frame from the LAC delivered the way the workers deliver it
//! (punted, into `lns::Node::handle_ppp`), never as a data message on the
//! node's socket; connected calls carry the ids the workers need; and a
//! new session's PPP waits until the fast path knows the session.
//!
//! The "fast path" here is the test's own loop: it takes the L2TP data
//! messages from the subscribers, drops those of calls it was not told
//! about (as a worker does: unknown tunnel or session) and hands the rest
//! to `handle_ppp`.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::{HashMap, HashSet};

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::l2tp::{SessionHandle, SessionState};
use controlplane::lns::{self, ConnectedCall};
use controlplane::subscriber::{self, AuthChoice};
use controlplane::time::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1701);
const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1701);
const SUBSCRIBERS: usize = 10;

/// The ids and PPP frame of an L2TP data message (T=0), else `None`.
fn data_message(message: &[u8]) -> Option<(u16, u16, &[u8])> {
    let flags = u16::from_be_bytes([*message.first()?, *message.get(1)?]);
    if flags & 0x8000 != 0 {
        return None;
    }
    let mut at = 2;
    if flags & 0x4000 != 0 {
        at += 2;
    }
    let tunnel = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
    let session = u16::from_be_bytes([*message.get(at + 2)?, *message.get(at + 3)?]);
    at += 4;
    if flags & 0x0800 != 0 {
        at += 4;
    }
    if flags & 0x0200 != 0 {
        let size = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
        at += 2 + usize::from(size);
    }
    Some((tunnel, session, message.get(at..)?))
}

#[test]
fn ppp_through_handle_ppp_only_and_held_until_released() {
    let users = Users::parse("sub lab\n", "users").unwrap();
    let mut lns = lns::Node::new(
        lns::Config::new("lns", Ipv4Addr::new(100, 64, 0, 1)),
        Authenticator::local(users),
        AddressPool::parse(&["100.64.0.0/24"]).unwrap(),
        Box::new(ChaCha8Rng::seed_from_u64(1)),
    )
    .unwrap();
    lns.report_connected_calls(true);
    let mut config = subscriber::Config::new(LNS, SUBSCRIBERS, "sub", "lab", AuthChoice::Chap);
    config.max_setting_up = SUBSCRIBERS;
    let mut subs = subscriber::Node::new(config, Box::new(ChaCha8Rng::seed_from_u64(2))).unwrap();

    let mut now = Instant::ZERO;
    subs.start(now).unwrap();
    // What the "workers" know: (our tunnel id, our session id) → call.
    let mut programmed: HashMap<(u16, u16), ConnectedCall> = HashMap::new();
    let mut released: HashSet<SessionHandle> = HashSet::new();
    let mut up = 0;
    let mut established = Vec::new();
    let mut dropped_unknown = 0;
    let mut punted = 0;
    for _ in 0..200_000 {
        let mut busy = false;
        while let Some((to, payload)) = subs.poll_transmit(now) {
            assert_eq!(to, LNS);
            busy = true;
            match data_message(&payload) {
                Some((tunnel, session, ppp)) => {
                    if programmed.contains_key(&(tunnel, session)) {
                        punted += 1;
                        assert!(lns.handle_ppp(now, tunnel, session, ppp));
                    } else {
                        dropped_unknown += 1;
                    }
                }
                None => lns.handle_datagram(now, LAC, &payload),
            }
        }
        while let Some((to, payload)) = lns.poll_transmit(now) {
            busy = true;
            assert_eq!(to, SocketAddr::V4(LAC));
            if let Some((tunnel, session, _)) = data_message(&payload) {
                // The LNS's PPP of a call leaves only once the call was
                // programmed and released.
                let call = programmed
                    .values()
                    .find(|c| (c.peer_tunnel_id, c.peer_session_id) == (tunnel, session))
                    .expect("PPP for a call the fast path was not told about");
                assert!(released.contains(&call.session), "PPP sent before release");
            }
            subs.handle_datagram(now, LNS, &payload);
        }
        while let Some(call) = lns.poll_connected_call() {
            busy = true;
            assert_eq!(call.remote, LAC);
            assert_eq!(call.local, None);
            assert!(!call.sequencing);
            assert_eq!(
                lns.endpoint().tunnel_ids(call.session.tunnel),
                Some((call.tunnel_id, call.peer_tunnel_id))
            );
            // Reported at its ICRQ: the ICRP waits for the release, so the
            // LAC cannot connect the call (and send PPP) before the
            // workers know it (RFC 2661 §7.4.1).
            assert_eq!(
                lns.endpoint().session_state(call.session),
                Some(SessionState::Idle),
                "the ICRP left before the call was programmed"
            );
            programmed.insert((call.tunnel_id, call.session_id), call);
            // Held: whatever the node queued now is not this call's PPP.
            while let Some((_, payload)) = lns.poll_transmit(now) {
                if let Some((t, s, _)) = data_message(&payload) {
                    assert_ne!((t, s), (call.peer_tunnel_id, call.peer_session_id));
                }
                subs.handle_datagram(now, LNS, &payload);
            }
            // The workers applied it: release.
            assert!(lns.release_call(now, call.session));
            released.insert(call.session);
        }
        while let Some(event) = lns.poll_event() {
            if let lns::Event::SessionEstablished(s) = event {
                established.push(s);
            }
        }
        while let Some(event) = subs.poll_event() {
            if let subscriber::Event::SessionUp(_) = event {
                up += 1;
            }
        }
        if up == SUBSCRIBERS && established.len() == SUBSCRIBERS {
            break;
        }
        if !busy {
            let next = [lns.poll_timeout(), subs.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("a timer");
            now = next.max(now);
            if lns.poll_timeout().is_some_and(|t| t <= now) {
                lns.handle_timeout(now);
            }
            if subs.poll_timeout().is_some_and(|t| t <= now) {
                subs.handle_timeout(now);
            }
        }
    }
    assert_eq!(up, SUBSCRIBERS, "subscribers up");
    assert_eq!(established.len(), SUBSCRIBERS);
    assert_eq!(programmed.len(), SUBSCRIBERS);
    assert_eq!(
        dropped_unknown, 0,
        "a PPP frame came before its call was programmed"
    );
    assert!(punted >= SUBSCRIBERS * 4, "{punted} frames handed in");
    assert_eq!(lns.stats().data_frames, 0);
    for s in &established {
        assert_eq!(s.subscriber_mru(), s.link.lcp_peer.mru);
        assert!(s.subscriber_mru() >= 576);
        let call = programmed[&(s.tunnel_ids.0, s.local_session_id)];
        assert_eq!(call.session, s.session);
        assert_eq!(
            lns.session_by_ids(call.tunnel_id, call.session_id),
            Some(call.session)
        );
        assert_eq!(call.peer_session_id, s.peer_session_id);
    }
    assert!(
        now < Instant::ZERO + Duration::from_secs(5),
        "setup took {now:?}: something waited for a restart timer"
    );
    // Frames for sessions the node does not have are refused.
    assert!(!lns.handle_ppp(now, 0xfff0, 1, &[0xc0, 0x21, 9, 1, 0, 8, 0, 0, 0, 0]));

    // Session down: its ids are forgotten.
    let first = established[0].session;
    assert!(lns.clear_session(now, first));
    for _ in 0..10_000 {
        let mut busy = false;
        while let Some((_, payload)) = subs.poll_transmit(now) {
            busy = true;
            match data_message(&payload) {
                Some((t, s, ppp)) => {
                    lns.handle_ppp(now, t, s, ppp);
                }
                None => lns.handle_datagram(now, LAC, &payload),
            }
        }
        while let Some((_, payload)) = lns.poll_transmit(now) {
            busy = true;
            subs.handle_datagram(now, LNS, &payload);
        }
        if lns.session_count() == SUBSCRIBERS - 1 {
            break;
        }
        if !busy {
            now = [lns.poll_timeout(), subs.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("a timer")
                .max(now);
            lns.handle_timeout(now);
            subs.handle_timeout(now);
        }
    }
    assert_eq!(lns.session_count(), SUBSCRIBERS - 1);
    let s = &established[0];
    assert_eq!(lns.session_by_ids(s.tunnel_ids.0, s.local_session_id), None);
}

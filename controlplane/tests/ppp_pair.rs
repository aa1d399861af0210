//! A server PppLink (the LNS) and a client PppLink (the subscriber) talking
//! through a tiny in-test link, with and without loss: PAP and CHAP up to
//! IPCP, bad passwords, echo failure, unknown protocols, a link rebuilt from
//! its state.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::HashMap;

use controlplane::ppp::{
    AuthMethod, Credentials, DownCause, Event, Ipv4Assignment, LinkState, Phase, PppConfig,
    PppLink, Role,
};
use controlplane::time::Instant;
use dataplane::wire::ppp::{self, Protocol};
use dataplane::wire::ppp_cp::{self, Code};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

fn assignment() -> Ipv4Assignment {
    Ipv4Assignment {
        local: Ipv4Addr::new(10, 0, 0, 1),
        peer: Ipv4Addr::new(10, 10, 0, 7),
        primary_dns: Some(Ipv4Addr::new(10, 0, 1, 53)),
        secondary_dns: Some(Ipv4Addr::new(10, 0, 1, 54)),
    }
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToClient,
    ToServer,
}

/// Two links and the wire between them. The server's owner is played
/// here: it checks passwords against `users` and assigns
/// [`assignment`] after authentication.
struct Pair {
    now: Instant,
    server: PppLink,
    client: PppLink,
    users: HashMap<Vec<u8>, Vec<u8>>,
    /// Percent of frames lost, each way.
    loss: u32,
    /// Frames never arrive (a cut cable).
    cut: bool,
    wire_rng: ChaCha8Rng,
    trace: Vec<(Instant, Dir, Vec<u8>)>,
    server_events: Vec<Event>,
    client_events: Vec<Event>,
}

impl Pair {
    fn new(server: PppConfig, client: PppConfig) -> Pair {
        let mut users = HashMap::new();
        users.insert(b"alice".to_vec(), b"wonderland".to_vec());
        Pair {
            now: Instant::ZERO,
            server: PppLink::new(Role::Server, server, rng(1)),
            client: PppLink::new(Role::Client, client, rng(2)),
            users,
            loss: 0,
            cut: false,
            wire_rng: ChaCha8Rng::seed_from_u64(3),
            trace: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    fn open(&mut self) {
        self.server.open(self.now);
        self.client.open(self.now);
    }

    fn lost(&mut self) -> bool {
        self.cut || self.wire_rng.next_u32() % 100 < self.loss
    }

    /// Deliver everything queued, both ways, until both are quiet; then
    /// play the owner. Returns whether anything moved.
    fn exchange(&mut self) -> bool {
        let mut moved = false;
        loop {
            let mut any = false;
            while let Some(f) = self.server.poll_transmit(self.now) {
                any = true;
                self.trace.push((self.now, Dir::ToClient, f.clone()));
                if !self.lost() {
                    self.client.handle_frame(self.now, &f);
                }
            }
            while let Some(f) = self.client.poll_transmit(self.now) {
                any = true;
                self.trace.push((self.now, Dir::ToServer, f.clone()));
                if !self.lost() {
                    self.server.handle_frame(self.now, &f);
                }
            }
            while let Some(e) = self.server.poll_event() {
                any = true;
                match &e {
                    Event::Authenticate(request) => {
                        let ok = self
                            .users
                            .get(&request.username)
                            .is_some_and(|pw| request.matches_password(pw));
                        self.server.auth_verdict(self.now, ok);
                    }
                    Event::Authenticated { .. } => {
                        self.server.set_ipv4_assignment(self.now, assignment());
                    }
                    _ => {}
                }
                self.server_events.push(e);
            }
            while let Some(e) = self.client.poll_event() {
                any = true;
                self.client_events.push(e);
            }
            if !any {
                return moved;
            }
            moved = true;
        }
    }

    /// Run until `done` or `limit`, jumping time to the next timer.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.exchange();
            if done(self) {
                return true;
            }
            let next = [self.server.poll_timeout(), self.client.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.server.handle_timeout(self.now);
                    self.client.handle_timeout(self.now);
                }
                _ => return false,
            }
        }
    }

    fn both_up(&self) -> bool {
        up(&self.server_events).is_some() && up(&self.client_events).is_some()
    }

    fn sent(&self, dir: Dir, protocol: Protocol, code: u8) -> usize {
        self.trace
            .iter()
            .filter(|(_, d, f)| *d == dir && header(f) == Some((protocol, code)))
            .count()
    }
}

fn up(events: &[Event]) -> Option<&LinkState> {
    events.iter().find_map(|e| match e {
        Event::Up(state) => Some(&**state),
        _ => None,
    })
}

fn down(events: &[Event]) -> Option<DownCause> {
    events.iter().find_map(|e| match e {
        Event::Down { cause } => Some(*cause),
        _ => None,
    })
}

/// The protocol and code of a frame we emitted.
fn header(frame: &[u8]) -> Option<(Protocol, u8)> {
    let packet = ppp::Packet::new_checked(frame).ok()?;
    Some((packet.protocol(), *packet.payload().first()?))
}

fn client_config(password: &[u8], methods: &[AuthMethod]) -> PppConfig {
    let mut c = PppConfig::client(Credentials {
        username: b"alice".to_vec(),
        password: password.to_vec(),
    });
    c.lcp.authenticate_self = methods.to_vec();
    c
}

fn server_config(methods: &[AuthMethod]) -> PppConfig {
    let mut c = PppConfig::server();
    c.lcp.authenticate_peer = methods.to_vec();
    c
}

#[track_caller]
fn assert_up(pair: &Pair, method: AuthMethod) {
    let server = up(&pair.server_events).expect("server up");
    let client = up(&pair.client_events).expect("client up");
    assert_eq!(server.auth_method, Some(method));
    assert_eq!(client.auth_method, Some(method));
    assert_eq!(server.username.as_deref(), Some(&b"alice"[..]));
    // The magic numbers cross: what one asked for is what the other acked.
    assert_ne!(server.lcp_local.magic_number, 0);
    assert_eq!(server.lcp_local.magic_number, client.lcp_peer.magic_number);
    assert_eq!(server.lcp_peer.magic_number, client.lcp_local.magic_number);
    assert_eq!(server.lcp_local.auth, Some(method));
    let a = assignment();
    let s = server.ipcp.expect("server IPCP");
    let c = client.ipcp.expect("client IPCP");
    assert_eq!((s.local, s.peer), (Some(a.local), Some(a.peer)));
    assert_eq!((c.local, c.peer), (Some(a.peer), Some(a.local)));
    assert_eq!(
        (c.primary_dns, c.secondary_dns),
        (a.primary_dns, a.secondary_dns)
    );
    assert_eq!(pair.server.phase(), Phase::Network);
    assert_eq!(pair.client.phase(), Phase::Network);
}

#[test]
fn chap_brings_the_link_up_to_ipcp() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::ChapMd5]),
        client_config(b"wonderland", &[AuthMethod::ChapMd5]),
    );
    pair.open();
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));
    assert_up(&pair, AuthMethod::ChapMd5);
    assert_eq!(
        pair.sent(Dir::ToClient, Protocol::Chap, 3),
        1,
        "one Success"
    );
    // Nothing was lost, so nothing waited for a timer.
    assert_eq!(pair.now, Instant::ZERO);
}

#[test]
fn pap_brings_the_link_up_to_ipcp() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::Pap]),
        client_config(b"wonderland", &[AuthMethod::Pap]),
    );
    pair.open();
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));
    assert_up(&pair, AuthMethod::Pap);
    assert_eq!(pair.sent(Dir::ToClient, Protocol::Pap, 2), 1, "one Ack");
}

#[test]
fn the_server_follows_a_client_that_naks_towards_pap() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::ChapMd5, AuthMethod::Pap]),
        client_config(b"wonderland", &[AuthMethod::Pap]),
    );
    pair.open();
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));
    assert_up(&pair, AuthMethod::Pap);
    assert_eq!(pair.sent(Dir::ToServer, Protocol::Lcp, 3), 1, "one Nak");
}

/// 40 links through 20% loss each way. (At 30%, one seed in 40 fails: a
/// PAP exchange that loses its Ack three times keeps the client in the
/// Authenticate phase, where it must discard the server's IPCP requests
/// (RFC 1661 §3.5), until the server's IPCP runs out of Max-Configure.)
#[test]
fn links_come_up_through_twenty_percent_loss() {
    let methods = [AuthMethod::ChapMd5, AuthMethod::Pap];
    let mut retried = 0;
    for (seed, method) in (0..40).map(|s| (s, methods[s as usize % 2])) {
        let mut pair = Pair::new(
            server_config(&[method]),
            client_config(b"wonderland", &[method]),
        );
        pair.wire_rng = ChaCha8Rng::seed_from_u64(seed);
        pair.loss = 20;
        pair.open();
        assert!(
            pair.run_until(Duration::from_secs(120), Pair::both_up),
            "seed {seed}: server {:?} client {:?}",
            pair.server_events,
            pair.client_events
        );
        assert_up(&pair, method);
        if pair.now > Instant::ZERO {
            retried += 1;
        }
    }
    assert!(retried > 20, "only {retried} links met a loss");
}

#[test]
fn a_bad_chap_password_ends_in_chap_failure_and_auth_failed() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::ChapMd5]),
        client_config(b"rabbit", &[AuthMethod::ChapMd5]),
    );
    pair.open();
    let both_down = |p: &Pair| down(&p.server_events).is_some() && down(&p.client_events).is_some();
    assert!(pair.run_until(Duration::from_secs(30), both_down));
    assert_eq!(
        pair.sent(Dir::ToClient, Protocol::Chap, 4),
        1,
        "one Failure"
    );
    assert_eq!(down(&pair.server_events), Some(DownCause::AuthFailed));
    assert_eq!(down(&pair.client_events), Some(DownCause::AuthFailed));
    assert!(up(&pair.server_events).is_none());
    assert_eq!(pair.server.phase(), Phase::Dead);
}

#[test]
fn a_bad_pap_password_ends_in_pap_nak_and_auth_failed() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::Pap]),
        client_config(b"rabbit", &[AuthMethod::Pap]),
    );
    pair.open();
    let both_down = |p: &Pair| down(&p.server_events).is_some() && down(&p.client_events).is_some();
    assert!(pair.run_until(Duration::from_secs(30), both_down));
    assert_eq!(pair.sent(Dir::ToClient, Protocol::Pap, 3), 1, "one Nak");
    assert_eq!(down(&pair.server_events), Some(DownCause::AuthFailed));
    assert_eq!(down(&pair.client_events), Some(DownCause::AuthFailed));
}

#[test]
fn echo_failure_ends_the_link_with_its_cause() {
    let mut server = server_config(&[AuthMethod::ChapMd5]);
    server.lcp.echo_interval = Some(Duration::from_secs(5));
    server.lcp.echo_failures = 3;
    let mut client = client_config(b"wonderland", &[AuthMethod::ChapMd5]);
    client.lcp.echo_interval = None;
    let mut pair = Pair::new(server, client);
    pair.open();
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));

    // Echoes are answered while the wire works.
    assert!(
        !pair.run_until(Duration::from_secs(60), |p| down(&p.server_events)
            .is_some())
    );
    assert!(pair.server.stats().echo_replies_received >= 10);

    pair.cut = true;
    let cut_at = pair.now;
    assert!(
        pair.run_until(Duration::from_secs(60), |p| down(&p.server_events)
            .is_some())
    );
    assert_eq!(down(&pair.server_events), Some(DownCause::EchoFailure));
    // Three unanswered echoes 5 s apart, a fourth interval to notice,
    // then two Terminate-Requests 3 s apart (Max-Terminate).
    let took = pair.now - cut_at;
    assert!(
        took >= Duration::from_secs(15) && took <= Duration::from_secs(27),
        "{took:?}"
    );
}

#[test]
fn an_unknown_protocol_is_protocol_rejected_once_lcp_is_opened() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::ChapMd5]),
        client_config(b"wonderland", &[AuthMethod::ChapMd5]),
    );
    // CCP (0x80fd) Configure-Request, which we do not speak.
    let ccp = [0xff, 0x03, 0x80, 0xfd, 0x01, 0x01, 0x00, 0x04];
    let now = pair.now;
    pair.server.open(now);
    // Before LCP is Opened it is silently discarded (RFC 1661 §5.7).
    pair.server.handle_frame(now, &ccp);
    let rejects = |p: &mut PppLink| {
        let mut n = 0;
        while let Some(f) = p.poll_transmit(now) {
            if header(&f) == Some((Protocol::Lcp, 8)) {
                n += 1;
            }
        }
        n
    };
    assert_eq!(rejects(&mut pair.server), 0);
    pair.client.open(now);
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));
    pair.server.handle_frame(pair.now, &ccp);
    let frame = pair
        .server
        .poll_transmit(pair.now)
        .expect("a Protocol-Reject");
    let packet = ppp::Packet::new_checked(&frame[..]).unwrap();
    assert_eq!(packet.protocol(), Protocol::Lcp);
    let lcp = ppp_cp::Packet::new_checked(packet.payload()).unwrap();
    assert_eq!(lcp.code(), Code::ProtocolReject);
    assert_eq!(lcp.rejected_protocol(), Some(0x80fd));
    assert_eq!(&lcp.data()[2..], &ccp[4..]);
}

#[test]
fn a_server_rebuilt_from_state_carries_on_without_renegotiating() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::ChapMd5]),
        client_config(b"wonderland", &[AuthMethod::ChapMd5]),
    );
    pair.open();
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));
    let state = pair.server.state();
    assert_eq!(Some(&state), up(&pair.server_events));

    // The peer LNS takes over with the offloaded state.
    let rebuilt = PppLink::from_state(pair.now, server_config(&[]), &state, rng(99));
    pair.server = rebuilt;
    assert_eq!(pair.server.phase(), Phase::Network);
    assert_eq!(pair.server.state(), state);
    let before = pair.trace.len();
    // A minute of echoes both ways, and nothing else.
    assert!(!pair.run_until(Duration::from_secs(60), |p| {
        down(&p.server_events).is_some() || down(&p.client_events).is_some()
    }));
    let codes: Vec<_> = pair.trace[before..]
        .iter()
        .map(|(_, _, f)| header(f))
        .collect();
    assert!(!codes.is_empty());
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Some((Protocol::Lcp, 9 | 10)))),
        "{codes:?}"
    );
    assert!(pair.client.stats().echo_replies_received > 0);
    assert!(pair
        .server_events
        .iter()
        .all(|e| !matches!(e, Event::Renegotiating)));
}

#[test]
fn a_close_terminates_both_ends() {
    let mut pair = Pair::new(
        server_config(&[AuthMethod::ChapMd5]),
        client_config(b"wonderland", &[AuthMethod::ChapMd5]),
    );
    pair.open();
    assert!(pair.run_until(Duration::from_secs(10), Pair::both_up));
    let now = pair.now;
    pair.client.close(now);
    let both_down = |p: &Pair| down(&p.server_events).is_some() && down(&p.client_events).is_some();
    assert!(pair.run_until(Duration::from_secs(10), both_down));
    assert_eq!(down(&pair.client_events), Some(DownCause::AdminClose));
    assert_eq!(down(&pair.server_events), Some(DownCause::PeerTerminated));
    assert_eq!(
        pair.sent(Dir::ToServer, Protocol::Lcp, 5),
        1,
        "Terminate-Request"
    );
    assert_eq!(
        pair.sent(Dir::ToClient, Protocol::Lcp, 6),
        1,
        "Terminate-Ack"
    );
}

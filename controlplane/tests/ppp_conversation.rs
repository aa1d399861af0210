//! One PppLink against a scripted peer, frame by frame, in the smoltcp
//! `send!`/`recv!` style: the l2tpns LCP Configure-Requests from the
//! capture, IPCP Max-Failure, loopback detection, Code-Reject, proxy LCP
//! and proxy authentication.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use core::net::Ipv4Addr;
use core::time::Duration;

use controlplane::ppp::{
    chap_md5, AuthMethod, AuthRequest, Credentials, DownCause, Event, Ipv4Assignment, Phase,
    PppConfig, PppLink, PresentedSecret, ProxyAuth, ProxyAuthType, ProxyLcp, ProxyOutcome,
    ProxyPolicy, ProxyRefusal, Role,
};
use controlplane::time::Instant;
use dataplane::wire::ppp::{self, Protocol};
use dataplane::wire::ppp_cp;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

const LCP: u16 = 0xc021;
const PAP: u16 = 0xc023;
const CHAP: u16 = 0xc223;
const IPCP: u16 = 0x8021;

/// A frame as an L2TP data message carries it: Address/Control, Protocol,
/// the packet.
fn frame(protocol: u16, packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff, 0x03];
    f.extend_from_slice(&protocol.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

/// A control packet: Code, Identifier, Length, data.
fn packet(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let mut p = vec![code, id];
    p.extend_from_slice(&((data.len() + 4) as u16).to_be_bytes());
    p.extend_from_slice(data);
    p
}

#[track_caller]
fn send_frame(link: &mut PppLink, now: Instant, bytes: &[u8]) {
    link.handle_frame(now, bytes);
}

/// The next frame out of `link`: its protocol and its packet.
#[track_caller]
fn recv_frame(link: &mut PppLink, now: Instant) -> (u16, Vec<u8>) {
    let f = link
        .poll_transmit(now)
        .unwrap_or_else(|| panic!("nothing sent; link {link:?}"));
    let p = ppp::Packet::new_checked(&f[..]).expect("a PPP frame");
    (u16::from(p.protocol()), p.payload().to_vec())
}

/// The next packet: check protocol and code, give identifier and data.
#[track_caller]
fn recv_packet(link: &mut PppLink, now: Instant, protocol: u16, code: u8) -> (u8, Vec<u8>) {
    let (got_protocol, packet) = recv_frame(link, now);
    let p = ppp_cp::Packet::new_checked(&packet[..]).expect("a control packet");
    assert_eq!(
        (got_protocol, u8::from(p.code())),
        (protocol, code),
        "expected protocol {protocol:#06x} code {code}, got {packet:02x?}"
    );
    (p.identifier(), p.data().to_vec())
}

/// `send!(link, now, PROTOCOL, packet)`: a packet from the peer.
macro_rules! send {
    ($link:expr, $now:expr, $protocol:expr, $packet:expr) => {
        send_frame(&mut $link, $now, &frame($protocol, &$packet))
    };
}

/// `recv!(link, now, PROTOCOL, code)` gives (identifier, data);
/// `recv!(link, now, PROTOCOL, code, id, data)` checks them too;
/// `recv!(link, now, nothing)` checks that nothing is queued.
macro_rules! recv {
    ($link:expr, $now:expr, nothing) => {
        assert_eq!($link.poll_transmit($now), None, "expected silence")
    };
    ($link:expr, $now:expr, $protocol:expr, $code:expr) => {
        recv_packet(&mut $link, $now, $protocol, $code)
    };
    ($link:expr, $now:expr, $protocol:expr, $code:expr, $id:expr, $data:expr) => {{
        let (id, data) = recv_packet(&mut $link, $now, $protocol, $code);
        assert_eq!((id, &data[..]), ($id, &$data[..]));
    }};
}

fn events(link: &mut PppLink) -> Vec<Event> {
    std::iter::from_fn(|| link.poll_event()).collect()
}

/// Run a link's timers (with its peer silent) until `limit`, throwing
/// away what it sends; gives the events.
fn idle(link: &mut PppLink, now: &mut Instant, limit: Duration) -> Vec<Event> {
    let end = *now + limit;
    let mut out = events(link);
    while let Some(t) = link.poll_timeout().filter(|t| *t <= end) {
        *now = t;
        link.handle_timeout(t);
        while link.poll_transmit(t).is_some() {}
        out.extend(events(link));
    }
    out
}

fn down(events: &[Event]) -> Option<DownCause> {
    events.iter().find_map(|e| match e {
        Event::Down { cause } => Some(*cause),
        _ => None,
    })
}

// --- the l2tpns capture ---------------------------------------------------

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/captures/pppoe-subscribers_l2tpns.pcap"
);

/// The Ethernet frames of a little-endian pcapng file (what bngblaster
/// wrote; see dataplane/tests/capture_pppoe.rs for why we walk it by hand).
fn capture_frames() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(CAPTURE)
        .or_else(|_| std::fs::read("/work/shared/captures/pppoe-subscribers_l2tpns.pcap"))
        .expect("the l2tpns capture in /work/shared/captures");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(u32_at(0), 0x0a0d_0d0a, "pcapng section header");
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let (kind, len) = (u32_at(at), u32_at(at + 4));
        assert!(len >= 12);
        if kind == 6 {
            let captured = u32_at(at + 20);
            frames.push(bytes[at + 28..at + 28 + captured].to_vec());
        }
        at += len;
    }
    frames
}

/// l2tpns's LCP Configure-Requests to the first subscriber, as PPP frames
/// (PPPoE payloads: no Address/Control).
fn l2tpns_lcp_requests() -> Vec<Vec<u8>> {
    const L2TPNS: [u8; 6] = [0xea, 0x51, 0xf2, 0x2b, 0x63, 0x5d];
    const SUBSCRIBER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    capture_frames()
        .into_iter()
        .filter(|f| f.len() > 23 && f[..6] == SUBSCRIBER && f[6..12] == L2TPNS)
        .filter(|f| f[12..14] == [0x88, 0x64] && f[20..22] == [0xc0, 0x21] && f[22] == 1)
        .map(|f| f[20..].to_vec())
        .collect()
}

#[test]
fn client_against_l2tpns_rejects_mrru_and_ed_naks_pap_to_chap_and_comes_up() {
    let requests = l2tpns_lcp_requests();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    let (first, second) = (&requests[0], &requests[1]);
    let mut config = PppConfig::client(Credentials {
        username: b"user1@lns.lab".to_vec(),
        password: b"test".to_vec(),
    });
    config.lcp.authenticate_self = vec![AuthMethod::ChapMd5];
    let mut client = PppLink::new(Role::Client, config, rng(5));
    let now = Instant::ZERO;
    client.open(now);
    let (our_id, our_request) = recv!(client, now, LCP, 1);

    // Frame 20: MRU 1462, PAP, magic, MRRU, Endpoint Discriminator. We
    // reject the last two exactly as the capture's subscriber did (frame
    // 34: 04 01 00 0f + the two options).
    send_frame(&mut client, now, first);
    recv!(client, now, LCP, 4, 1, first[2 + 4 + 14..]);

    // Frame 44: without them. PAP is not for us: Nak towards CHAP-MD5.
    send_frame(&mut client, now, second);
    recv!(client, now, LCP, 3, 2, [0x03, 0x05, 0xc2, 0x23, 0x05]);

    // l2tpns switches to CHAP (PEERS.md); the rest of its request as before.
    let mut third = second[2..].to_vec();
    third[1] = 3;
    third[8..12].copy_from_slice(&[0x03, 0x05, 0xc2, 0x23]);
    third.insert(12, 0x05);
    third[3] += 1;
    send!(client, now, LCP, third);
    recv!(client, now, LCP, 2, 3, third[4..]);

    // l2tpns acknowledges ours: LCP is Opened, and we wait for a Challenge.
    send!(client, now, LCP, packet(2, our_id, &our_request));
    recv!(client, now, nothing);
    assert_eq!(client.phase(), Phase::Authenticate);

    let challenge = [0x5a; 16];
    let mut data = vec![16];
    data.extend_from_slice(&challenge);
    data.extend_from_slice(b"l2tpns");
    send!(client, now, CHAP, packet(1, 7, &data));
    let mut response = vec![16];
    response.extend_from_slice(&chap_md5(7, b"test", &challenge));
    response.extend_from_slice(b"user1@lns.lab");
    recv!(client, now, CHAP, 2, 7, response);

    send!(client, now, CHAP, packet(3, 7, b""));
    // Frame 108's request: address and both DNS servers unknown.
    let zeros = [3, 6, 0, 0, 0, 0, 0x81, 6, 0, 0, 0, 0, 0x83, 6, 0, 0, 0, 0];
    let (ipcp_id, ipcp_request) = recv!(client, now, IPCP, 1);
    assert_eq!(ipcp_request, zeros);
    // Frame 110's Nak.
    let nak = [
        3, 6, 10, 10, 0, 1, 0x81, 6, 10, 0, 1, 53, 0x83, 6, 10, 0, 1, 54,
    ];
    send!(client, now, IPCP, packet(3, ipcp_id, &nak));
    let (ipcp_id, ipcp_request) = recv!(client, now, IPCP, 1);
    assert_eq!(ipcp_request, nak);
    send!(client, now, IPCP, packet(1, 1, &[3, 6, 10, 0, 0, 1]));
    recv!(client, now, IPCP, 2, 1, [3, 6, 10, 0, 0, 1]);
    send!(client, now, IPCP, packet(2, ipcp_id, &ipcp_request));

    let events = events(&mut client);
    let up = events
        .iter()
        .find_map(|e| match e {
            Event::Up(s) => Some(s.clone()),
            _ => None,
        })
        .expect("up");
    let ipcp = up.ipcp.expect("IPCP");
    assert_eq!(ipcp.local, Some(Ipv4Addr::new(10, 10, 0, 1)));
    assert_eq!(ipcp.peer, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(ipcp.primary_dns, Some(Ipv4Addr::new(10, 0, 1, 53)));
    assert_eq!(up.lcp_peer.mru, 1462);
    assert_eq!(up.lcp_peer.magic_number, 0x6b05_17dd);
    assert_eq!(up.auth_method, Some(AuthMethod::ChapMd5));
}

// --- server conversations ------------------------------------------------

fn assignment() -> Ipv4Assignment {
    Ipv4Assignment {
        local: Ipv4Addr::new(10, 0, 0, 1),
        peer: Ipv4Addr::new(10, 10, 0, 7),
        primary_dns: None,
        secondary_dns: None,
    }
}

/// A server without authentication, its address known, LCP Opened with
/// a scripted client that asks for nothing.
fn server_in_network_phase(now: Instant) -> PppLink {
    let mut config = PppConfig::server();
    config.lcp.authenticate_peer.clear();
    let mut server = PppLink::new(Role::Server, config, rng(8));
    server.set_ipv4_assignment(now, assignment());
    server.open(now);
    let (id, request) = recv!(server, now, LCP, 1);
    send!(server, now, LCP, packet(1, 1, &[]));
    recv!(server, now, LCP, 2, 1, []);
    send!(server, now, LCP, packet(2, id, &request));
    assert_eq!(server.phase(), Phase::Network);
    server
}

#[test]
fn a_peer_that_keeps_naking_ipcp_is_stopped_by_max_failure() {
    let mut now = Instant::ZERO;
    let mut server = server_in_network_phase(now);
    let (mut id, request) = recv!(server, now, IPCP, 1);
    assert_eq!(request, [3, 6, 10, 0, 0, 1]);
    // The peer wants us to be 192.0.2.1, for ever. Max-Failure (5) Naks
    // are taken; the sixth ends IPCP, and without it the link.
    for _ in 0..5 {
        send!(server, now, IPCP, packet(3, id, &[3, 6, 192, 0, 2, 1]));
        let (next, again) = recv!(server, now, IPCP, 1);
        assert_eq!(again, request, "our address is ours");
        id = next;
    }
    send!(server, now, IPCP, packet(3, id, &[3, 6, 192, 0, 2, 1]));
    recv!(server, now, IPCP, 5);
    let events = idle(&mut server, &mut now, Duration::from_secs(30));
    assert_eq!(down(&events), Some(DownCause::MaxFailure(Protocol::Ipcp)));
}

#[test]
fn a_peer_that_keeps_asking_the_wrong_address_is_rejected_then_stopped() {
    let mut now = Instant::ZERO;
    let mut server = server_in_network_phase(now);
    let _ = recv!(server, now, IPCP, 1);
    let wrong = [3, 6, 192, 0, 2, 99];
    // RFC 1661 §4.6: Max-Failure Naks, then the option is rejected.
    for id in 1..=5 {
        send!(server, now, IPCP, packet(1, id, &wrong));
        recv!(server, now, IPCP, 3, id, [3, 6, 10, 10, 0, 7]);
    }
    send!(server, now, IPCP, packet(1, 6, &wrong));
    recv!(server, now, IPCP, 4, 6, wrong);
    // Without the option there is nothing left to reject: the server
    // gives up rather than run an IPCP without a subscriber address.
    send!(server, now, IPCP, packet(1, 7, &[]));
    recv!(server, now, IPCP, 5);
    let events = idle(&mut server, &mut now, Duration::from_secs(30));
    assert_eq!(down(&events), Some(DownCause::MaxFailure(Protocol::Ipcp)));
}

#[test]
fn an_unknown_lcp_code_is_code_rejected() {
    let now = Instant::ZERO;
    let mut server = server_in_network_phase(now);
    let _ = recv!(server, now, IPCP, 1);
    let odd = packet(42, 9, &[1, 2, 3]);
    send!(server, now, LCP, odd);
    let (_, data) = recv!(server, now, LCP, 7);
    assert_eq!(data, odd);
    // An NCP has no Echo: code 9 in IPCP is unknown too (RFC 1332 §2).
    let echo = packet(9, 1, &[0, 0, 0, 0]);
    send!(server, now, IPCP, echo);
    recv!(server, now, IPCP, 7, 2, echo);
}

#[test]
fn echo_requests_are_answered_with_our_magic_number() {
    let now = Instant::ZERO;
    let mut config = PppConfig::server();
    config.lcp.authenticate_peer.clear();
    let mut server = PppLink::new(Role::Server, config, rng(8));
    server.open(now);
    let (id, request) = recv!(server, now, LCP, 1);
    let magic = &request[2..6];
    send!(server, now, LCP, packet(1, 1, &[5, 6, 1, 2, 3, 4]));
    recv!(server, now, LCP, 2, 1, [5, 6, 1, 2, 3, 4]);
    send!(server, now, LCP, packet(2, id, &request));
    send!(server, now, LCP, packet(9, 77, &[1, 2, 3, 4, 0xde, 0xad]));
    let mut reply = magic.to_vec();
    reply.extend_from_slice(&[0xde, 0xad]);
    recv!(server, now, LCP, 10, 77, reply);
}

#[test]
fn a_looped_back_link_is_detected_by_its_magic_number() {
    let mut config = PppConfig::client(Credentials::default());
    config.lcp.echo_interval = None;
    let mut link = PppLink::new(Role::Client, config, rng(21));
    let mut now = Instant::ZERO;
    link.open(now);
    let mut events = Vec::new();
    // Whatever it sends comes straight back.
    for _ in 0..200 {
        while let Some(f) = link.poll_transmit(now) {
            link.handle_frame(now, &f);
        }
        events.extend(std::iter::from_fn(|| link.poll_event()));
        if down(&events).is_some() {
            break;
        }
        match link.poll_timeout() {
            Some(t) => {
                now = t;
                link.handle_timeout(now);
            }
            None => break,
        }
    }
    assert_eq!(down(&events), Some(DownCause::LoopedBack));
}

// --- proxy LCP and proxy authentication -----------------------------------

const LAC_MAGIC: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// The LAC's proxied LCP: it asked for MRU 1460, CHAP-MD5 and its magic;
/// the subscriber asked for MRU 1492 and its magic.
fn proxy_lcp(auth: &[u8]) -> ProxyLcp {
    let mut last_sent = vec![1, 4, 0x05, 0xb4];
    last_sent.extend_from_slice(auth);
    last_sent.extend_from_slice(&[5, 6]);
    last_sent.extend_from_slice(&LAC_MAGIC);
    let last_received = vec![1, 4, 0x05, 0xd4, 5, 6, 0xa1, 0xb2, 0xc3, 0xd4];
    ProxyLcp {
        initial_received: last_received.clone(),
        last_sent,
        last_received,
    }
}

const CHAP_MD5: [u8; 5] = [3, 5, 0xc2, 0x23, 5];
const PAP_OPTION: [u8; 4] = [3, 4, 0xc0, 0x23];

fn proxy_chap(password: &[u8]) -> ProxyAuth {
    let challenge = vec![0x42; 16];
    ProxyAuth {
        kind: ProxyAuthType::Chap,
        name: b"alice".to_vec(),
        response: chap_md5(5, password, &challenge).to_vec(),
        challenge,
        id: 5,
    }
}

#[test]
fn proxied_lcp_and_chap_are_taken_without_renegotiation() {
    let now = Instant::ZERO;
    let mut server = PppLink::server_with_proxy(
        now,
        PppConfig::server(),
        &proxy_lcp(&CHAP_MD5),
        Some(&proxy_chap(b"wonderland")),
        rng(4),
    );
    assert_eq!(server.proxy_outcome(), ProxyOutcome::Accepted);
    assert_eq!(server.phase(), Phase::Authenticate);
    recv!(server, now, nothing);
    let request = match events(&mut server).as_slice() {
        [Event::Authenticate(r)] => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        request,
        AuthRequest {
            username: b"alice".to_vec(),
            method: PresentedSecret::Chap {
                id: 5,
                challenge: vec![0x42; 16],
                response: chap_md5(5, b"wonderland", &[0x42; 16]).to_vec(),
            },
        }
    );
    assert!(request.matches_password(b"wonderland"));
    server.set_ipv4_assignment(now, assignment());
    server.auth_verdict(now, true);
    // The subscriber hears Success under the LAC's Identifier, then IPCP.
    recv!(server, now, CHAP, 3, 5, []);
    recv!(server, now, IPCP, 1);
    assert_eq!(server.phase(), Phase::Network);
    let state = server.state();
    assert_eq!(state.lcp_local.magic_number, u32::from_be_bytes(LAC_MAGIC));
    assert_eq!(state.lcp_local.mru, 1460);
    assert_eq!(state.lcp_peer.mru, 1492);
    // Echoes carry the LAC's magic number, which the subscriber knows.
    send!(server, now, LCP, packet(9, 3, &[0xa1, 0xb2, 0xc3, 0xd4]));
    recv!(server, now, LCP, 10, 3, LAC_MAGIC);
}

#[test]
fn proxied_chap_with_a_wrong_password_ends_in_chap_failure() {
    let now = Instant::ZERO;
    let mut server = PppLink::server_with_proxy(
        now,
        PppConfig::server(),
        &proxy_lcp(&CHAP_MD5),
        Some(&proxy_chap(b"rabbit")),
        rng(4),
    );
    let Some(Event::Authenticate(request)) = server.poll_event() else {
        panic!("no credentials to check");
    };
    server.auth_verdict(now, request.matches_password(b"wonderland"));
    let (id, _) = recv!(server, now, CHAP, 4);
    assert_eq!(id, 5);
    recv!(server, now, LCP, 5);
    let mut now = now;
    let events = idle(&mut server, &mut now, Duration::from_secs(10));
    assert_eq!(down(&events), Some(DownCause::AuthFailed));
}

#[test]
fn proxied_lcp_without_proxied_auth_challenges_afresh() {
    let now = Instant::ZERO;
    let mut server = PppLink::server_with_proxy(
        now,
        PppConfig::server(),
        &proxy_lcp(&CHAP_MD5),
        None,
        rng(4),
    );
    assert_eq!(server.proxy_outcome(), ProxyOutcome::Accepted);
    let (_, data) = recv!(server, now, CHAP, 1);
    assert_eq!(data[0], 16);
}

#[test]
fn proxied_pap_is_verified_through_the_same_event() {
    let now = Instant::ZERO;
    let mut config = PppConfig::server();
    config.lcp.authenticate_peer = vec![AuthMethod::Pap];
    let auth = ProxyAuth {
        kind: ProxyAuthType::Pap,
        name: b"alice".to_vec(),
        challenge: Vec::new(),
        id: 0,
        response: b"wonderland".to_vec(),
    };
    let mut server =
        PppLink::server_with_proxy(now, config, &proxy_lcp(&PAP_OPTION), Some(&auth), rng(4));
    assert_eq!(server.proxy_outcome(), ProxyOutcome::Accepted);
    let Some(Event::Authenticate(request)) = server.poll_event() else {
        panic!("no credentials to check");
    };
    assert!(request.matches_password(b"wonderland"));
}

#[track_caller]
fn assert_renegotiates(server: &mut PppLink, why: ProxyRefusal) {
    assert_eq!(server.proxy_outcome(), ProxyOutcome::Renegotiated(why));
    assert_eq!(server.phase(), Phase::Establish);
    let (_, request) = recv!(*server, Instant::ZERO, LCP, 1);
    // Our own request, not the LAC's.
    assert!(!request.windows(4).any(|w| w == LAC_MAGIC));
}

#[test]
fn unacceptable_proxied_lcp_falls_back_to_renegotiation() {
    let now = Instant::ZERO;

    // The subscriber's MRU is too small for us.
    let mut small = proxy_lcp(&CHAP_MD5);
    small.last_received = vec![1, 4, 0, 100, 5, 6, 0xa1, 0xb2, 0xc3, 0xd4];
    let mut server = PppLink::server_with_proxy(now, PppConfig::server(), &small, None, rng(4));
    assert_renegotiates(&mut server, ProxyRefusal::PeerOptions);

    // The subscriber asked for something we do not know (MRRU).
    let mut mrru = proxy_lcp(&CHAP_MD5);
    mrru.last_received.extend_from_slice(&[17, 4, 0x05, 0xd4]);
    let mut server = PppLink::server_with_proxy(now, PppConfig::server(), &mrru, None, rng(4));
    assert_renegotiates(&mut server, ProxyRefusal::PeerOptions);

    // The LAC negotiated PAP; we allow CHAP only.
    let mut config = PppConfig::server();
    config.lcp.authenticate_peer = vec![AuthMethod::ChapMd5];
    let mut server = PppLink::server_with_proxy(now, config, &proxy_lcp(&PAP_OPTION), None, rng(4));
    assert_renegotiates(&mut server, ProxyRefusal::OurOptions);

    // The proxied authentication is not the negotiated method.
    let mut pap = proxy_chap(b"wonderland");
    pap.kind = ProxyAuthType::Pap;
    let mut server = PppLink::server_with_proxy(
        now,
        PppConfig::server(),
        &proxy_lcp(&CHAP_MD5),
        Some(&pap),
        rng(4),
    );
    assert_renegotiates(&mut server, ProxyRefusal::Authentication);

    // Configured to renegotiate always.
    let mut config = PppConfig::server();
    config.proxy = ProxyPolicy::Renegotiate;
    let mut server = PppLink::server_with_proxy(
        now,
        config,
        &proxy_lcp(&CHAP_MD5),
        Some(&proxy_chap(b"wonderland")),
        rng(4),
    );
    assert_renegotiates(&mut server, ProxyRefusal::Policy);
}

#[test]
fn a_nak_for_auth_we_cannot_do_ends_in_auth_refused() {
    let mut now = Instant::ZERO;
    let mut config = PppConfig::server();
    config.lcp.authenticate_peer = vec![AuthMethod::ChapMd5];
    let mut server = PppLink::new(Role::Server, config, rng(8));
    server.open(now);
    let (id, _) = recv!(server, now, LCP, 1);
    // The subscriber will only do PAP.
    send!(server, now, LCP, packet(3, id, &PAP_OPTION));
    recv!(server, now, LCP, 5);
    let events = idle(&mut server, &mut now, Duration::from_secs(10));
    assert_eq!(down(&events), Some(DownCause::AuthRefused));
    let _ = PAP;
}

//! PPPoE discovery (RFC 2516 §5): `pppoe::Client`s and a `pppoe::Server`
//! on an in-memory access port, and hand-made frames for what an honest
//! client never sends.

// The helpers below are test code too: a failed parse is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use controlplane::pppoe::{
    Client, ClientConfig, ClientEvent, ClientFailure, ClientState, DropReason, RateLimit, Refusal,
    Server, ServerConfig, ServerEvent,
};
use controlplane::time::Instant;
use dataplane::wire::ethernet::{self, Address, EtherType};
use dataplane::wire::pppoe::{Code, DiscoveryRepr, Packet, Tag};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const AC_MAC: Address = Address([0x02, 0xac, 0, 0, 0, 1]);

fn mac(n: u32) -> Address {
    let b = n.to_be_bytes();
    Address([0x02, 0x50, b[0], b[1], b[2], b[3]])
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn secs(s: u64) -> Instant {
    Instant::from_nanos(s * 1_000_000_000)
}

fn server_config() -> ServerConfig {
    ServerConfig {
        mac: AC_MAC,
        ac_name: "lab-lac".to_string(),
        ..ServerConfig::default()
    }
}

fn client_config(n: u32) -> ClientConfig {
    ClientConfig {
        mac: mac(n),
        ..ClientConfig::default()
    }
}

/// A server and clients on one port, with every frame kept for a look.
struct Port {
    now: Instant,
    server: Server,
    clients: Vec<Client>,
    /// Frames the server sent, in order.
    from_server: Vec<Vec<u8>>,
    /// Frames the clients sent, in order.
    from_clients: Vec<Vec<u8>>,
    server_events: Vec<ServerEvent>,
}

impl Port {
    fn new(config: ServerConfig) -> Port {
        Port {
            now: secs(1000),
            server: Server::new(config, secs(1000), &mut rng(1)),
            clients: Vec::new(),
            from_server: Vec::new(),
            from_clients: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn add(&mut self, config: ClientConfig) -> usize {
        let seed = self.clients.len() as u64 + 100;
        self.clients.push(Client::new(config, &mut rng(seed)));
        self.clients.len() - 1
    }

    /// Move frames until nothing moves.
    fn pump(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for c in 0..self.clients.len() {
                while self.clients[c].poll_frame(&mut buf) {
                    moved = true;
                    self.from_clients.push(buf.clone());
                    assert!(self.server.handle_frame(self.now, &buf));
                }
            }
            while self.server.poll_frame(&mut buf) {
                moved = true;
                self.from_server.push(buf.clone());
                let taken = self
                    .clients
                    .iter_mut()
                    .filter_map(|c| c.handle_frame(self.now, &buf).then_some(()))
                    .count();
                assert!(taken <= 1, "a frame taken by {taken} clients");
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    /// Let time pass to `until`, firing the clients' timers on the way.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let next = self.clients.iter().filter_map(Client::poll_timeout).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for c in &mut self.clients {
                        c.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn client_events(&mut self, c: usize) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.clients[c].poll_event()).collect()
    }
}

/// A Discovery frame from `src` to `dst`.
fn frame(dst: Address, src: Address, packet: &DiscoveryRepr<'_>) -> Vec<u8> {
    let eth = ethernet::Repr {
        dst_addr: dst,
        src_addr: src,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::PppoeDiscovery,
    };
    let mut buf = vec![0; eth.buffer_len() + packet.buffer_len()];
    eth.emit(&mut buf).unwrap();
    packet.emit(&mut buf[eth.buffer_len()..]).unwrap();
    buf
}

fn padi(src: Address, service: &[u8], host_uniq: &[u8]) -> Vec<u8> {
    let p = DiscoveryRepr {
        code: Code::Padi,
        session_id: 0,
        tags: vec![Tag::ServiceName(service), Tag::HostUniq(host_uniq)],
    };
    frame(Address::BROADCAST, src, &p)
}

fn padr(src: Address, service: &[u8], host_uniq: &[u8], cookie: Option<&[u8]>) -> Vec<u8> {
    let mut tags = vec![Tag::ServiceName(service), Tag::HostUniq(host_uniq)];
    tags.extend(cookie.map(Tag::AcCookie));
    let p = DiscoveryRepr {
        code: Code::Padr,
        session_id: 0,
        tags,
    };
    frame(AC_MAC, src, &p)
}

/// The Ethernet source and destination and the Discovery packet of a frame.
fn parse(frame: &[u8]) -> (Address, Address, DiscoveryRepr<'_>) {
    let eth = ethernet::Frame::new_checked(frame).unwrap();
    let repr = ethernet::Repr::parse(&eth).unwrap();
    assert_eq!(repr.ethertype, EtherType::PppoeDiscovery);
    let packet = Packet::new_checked(&frame[repr.buffer_len()..]).unwrap();
    (
        repr.dst_addr,
        repr.src_addr,
        DiscoveryRepr::parse(&packet).unwrap(),
    )
}

fn cookie_of(repr: &DiscoveryRepr<'_>) -> Vec<u8> {
    match repr.find(0x0104) {
        Some(Tag::AcCookie(c)) => c.to_vec(),
        other => panic!("no cookie: {other:?}"),
    }
}

/// Send `frame` to the server and take its one answer.
fn exchange(server: &mut Server, now: Instant, frame: &[u8]) -> Option<Vec<u8>> {
    assert!(server.handle_frame(now, frame));
    let mut buf = Vec::new();
    let answer = server.poll_frame(&mut buf).then_some(buf);
    assert!(!server.poll_frame(&mut Vec::new()), "more than one answer");
    answer
}

#[test]
fn full_exchange() {
    let mut port = Port::new(server_config());
    let c = port.add(client_config(7));
    port.clients[c].start(port.now);
    port.pump();

    let codes: Vec<Code> = port
        .from_clients
        .iter()
        .chain(&port.from_server)
        .map(|f| parse(f).2.code)
        .collect();
    assert_eq!(codes, [Code::Padi, Code::Padr, Code::Pado, Code::Pads]);
    let (dst, src, pado) = parse(&port.from_server[0]);
    assert_eq!((dst, src), (mac(7), AC_MAC));
    assert_eq!(pado.find(0x0102), Some(&Tag::AcName(b"lab-lac")));
    assert_eq!(pado.find(0x0101), Some(&Tag::ServiceName(b"")));
    let host_uniq = port.clients[c].host_uniq().to_vec();
    assert_eq!(pado.find(0x0103), Some(&Tag::HostUniq(&host_uniq)));

    let sid = parse(&port.from_server[1]).2.session_id;
    let events = port.client_events(c);
    assert_eq!(
        events,
        [ClientEvent::Up {
            ac_mac: AC_MAC,
            session_id: sid
        }]
    );
    assert_ne!(sid, 0);
    assert_eq!(port.clients[c].state(), ClientState::Up);
    assert_eq!(
        port.server_events,
        [ServerEvent::SessionRequested {
            mac: mac(7),
            session_id: sid,
            service_name: String::new(),
            host_uniq: Some(host_uniq),
            relay_session_id: None,
            agent_circuit_id: None,
            agent_remote_id: None,
            ppp_max_payload: None,
        }]
    );
    let sessions: Vec<_> = port.server.sessions().collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].mac, sessions[0].session_id, sessions[0].since),
        (mac(7), sid, port.now)
    );
    let stats = port.server.stats();
    assert_eq!((stats.pado_sent, stats.pads_sent), (1, 1));
    assert_eq!(stats.dropped_total() + stats.refused_total(), 0);
}

#[test]
fn forged_cookie_is_refused() {
    let mut server = Server::new(server_config(), secs(10), &mut rng(2));
    let now = secs(10);
    // No cookie, a made-up cookie, and a real cookie of another MAC.
    let pado = exchange(&mut server, now, &padi(mac(2), b"", b"h")).unwrap();
    let cookie_of_2 = cookie_of(&parse(&pado).2);
    let forged = [0x5a; 24];
    // Like rp-pppoe's pppoe-server: dropped without an answer.
    for frame in [
        padr(mac(1), b"", b"h", None),
        padr(mac(1), b"", b"h", Some(&forged)),
        padr(mac(1), b"", b"h", Some(&cookie_of_2)),
    ] {
        assert_eq!(exchange(&mut server, now, &frame), None);
    }
    assert_eq!(server.stats().refused(Refusal::BadCookie), 3);
    // A cookie with one bit flipped.
    let mut flipped = cookie_of_2.clone();
    flipped[12] ^= 1;
    let _ = exchange(&mut server, now, &padr(mac(2), b"", b"h", Some(&flipped)));
    assert_eq!(server.stats().refused(Refusal::BadCookie), 4);
    assert_eq!(server.session_count(), 0);
    assert_eq!(server.poll_event(), None);
    // The real one still works.
    let pads = exchange(
        &mut server,
        now,
        &padr(mac(2), b"", b"h", Some(&cookie_of_2)),
    )
    .unwrap();
    assert_ne!(parse(&pads).2.session_id, 0);
}

#[test]
fn expired_cookie_is_refused() {
    let mut server = Server::new(server_config(), secs(10), &mut rng(3));
    let pado = exchange(&mut server, secs(10), &padi(mac(1), b"", b"h")).unwrap();
    let cookie = cookie_of(&parse(&pado).2);
    let late = padr(mac(1), b"", b"h", Some(&cookie));
    assert_eq!(exchange(&mut server, secs(71), &late), None);
    assert_eq!(server.stats().refused(Refusal::ExpiredCookie), 1);
    // Within the lifetime it is fine.
    let pads = exchange(&mut server, secs(69), &late).unwrap();
    assert_ne!(parse(&pads).2.session_id, 0);
}

#[test]
fn wrong_service_name() {
    let config = ServerConfig {
        service_names: vec!["internet".into(), "iptv".into()],
        ..server_config()
    };
    let mut server = Server::new(config, secs(10), &mut rng(4));
    let now = secs(10);
    // §5.2: no PADO for a service we do not offer.
    assert_eq!(
        exchange(&mut server, now, &padi(mac(1), b"voip", b"h")),
        None
    );
    assert_eq!(server.stats().dropped(DropReason::ServiceNotOffered), 1);
    // An empty Service-Name gets every service offered.
    let pado = exchange(&mut server, now, &padi(mac(1), b"", b"h")).unwrap();
    let pado = parse(&pado).2;
    let offered: Vec<_> = pado.tags.iter().filter(|t| t.kind() == 0x0101).collect();
    assert_eq!(
        offered,
        [
            &Tag::ServiceName(b""),
            &Tag::ServiceName(b"internet"),
            &Tag::ServiceName(b"iptv")
        ]
    );
    // §5.4: a PADR for another service gets Service-Name-Error, SESSION_ID 0.
    let cookie = cookie_of(&pado);
    let pads = exchange(
        &mut server,
        now,
        &padr(mac(1), b"voip", b"h", Some(&cookie)),
    )
    .unwrap();
    let pads = parse(&pads).2;
    assert_eq!(pads.session_id, 0);
    assert!(matches!(pads.find(0x0201), Some(Tag::ServiceNameError(_))));
    assert_eq!(server.stats().refused(Refusal::ServiceName), 1);

    // A client asking for a service nobody offers: no PADO, gives up.
    let mut port = Port::new(ServerConfig {
        service_names: vec!["internet".into()],
        ..server_config()
    });
    let c = port.add(ClientConfig {
        service_name: "voip".into(),
        ..client_config(1)
    });
    port.clients[c].start(port.now);
    let start = port.now;
    port.run_until(start + Duration::from_secs(60));
    assert_eq!(
        port.client_events(c),
        [ClientEvent::Failed(ClientFailure::NoOffer)]
    );
    // One asking for "internet" comes up.
    let c = port.add(ClientConfig {
        service_name: "internet".into(),
        ..client_config(2)
    });
    port.clients[c].start(port.now);
    port.pump();
    assert!(matches!(
        port.client_events(c)[..],
        [ClientEvent::Up { .. }]
    ));
    assert!(matches!(
        &port.server_events[..],
        [ServerEvent::SessionRequested { service_name, .. }] if service_name == "internet"
    ));
}

#[test]
fn per_mac_and_total_session_limits() {
    let mut port = Port::new(ServerConfig {
        max_sessions_per_mac: 2,
        max_sessions: 3,
        ..server_config()
    });
    // Three clients behind one MAC address, told apart by Host-Uniq.
    for h in 0..3u8 {
        let c = port.add(ClientConfig {
            host_uniq: Some(vec![h]),
            ..client_config(1)
        });
        port.clients[c].start(port.now);
    }
    port.pump();
    let ups = (0..3)
        .filter(|&c| port.clients[c].state() == ClientState::Up)
        .count();
    assert_eq!(ups, 2);
    assert!(matches!(
        port.client_events(2)[..],
        [ClientEvent::Failed(ClientFailure::Refused {
            tag: 0x0202,
            ..
        })]
    ));
    assert_eq!(port.server.stats().refused(Refusal::MacLimit), 1);
    // Two other MACs: the third session in all is the last one.
    for n in [2, 3] {
        let c = port.add(client_config(n));
        port.clients[c].start(port.now);
    }
    port.pump();
    assert_eq!(port.clients[3].state(), ClientState::Up);
    assert_eq!(port.clients[4].state(), ClientState::Failed);
    assert_eq!(port.server.stats().refused(Refusal::SessionLimit), 1);
    assert_eq!(port.server.session_count(), 3);
    // Full: a PADI gets no PADO (RFC 2516 §5.2, cannot serve it).
    assert_eq!(
        exchange(&mut port.server, port.now, &padi(mac(9), b"", b"h")),
        None
    );
    assert_eq!(port.server.stats().dropped(DropReason::NoFreeSession), 1);
    // A session ends: room again for MAC 1.
    let (_, sid) = port.clients[0].session().unwrap();
    assert!(port.server.terminate(port.now, Some(mac(1)), sid));
    port.pump();
    port.clients[2].start(port.now);
    port.pump();
    assert_eq!(port.clients[2].state(), ClientState::Up);
}

#[test]
fn padi_rate_limits() {
    let config = ServerConfig {
        padi_limit_per_mac: RateLimit {
            per_second: 2,
            burst: 10,
        },
        padi_limit: RateLimit {
            per_second: 100,
            burst: 50,
        },
        ..server_config()
    };
    let mut server = Server::new(config, secs(10), &mut rng(5));
    let mut answered = 0;
    for _ in 0..25 {
        answered +=
            usize::from(exchange(&mut server, secs(10), &padi(mac(1), b"", b"h")).is_some());
    }
    assert_eq!(answered, 10);
    assert_eq!(
        server.stats().dropped(DropReason::PadiRateLimitedPerMac),
        15
    );
    // A second later, two more.
    let later = secs(11);
    answered = 0;
    for _ in 0..5 {
        answered += usize::from(exchange(&mut server, later, &padi(mac(1), b"", b"h")).is_some());
    }
    assert_eq!(answered, 2);
    // Many MACs at once: the port's bucket (50, 10 of them used, +100
    // earned in the second that passed, capped at 50) limits them.
    answered = 0;
    for n in 100..200 {
        answered += usize::from(exchange(&mut server, later, &padi(mac(n), b"", b"h")).is_some());
    }
    assert_eq!(answered, 48);
    assert_eq!(server.stats().dropped(DropReason::PadiRateLimited), 52);
    assert_eq!(server.stats().padi_received, 130);
}

#[test]
fn retransmitted_padr_gets_the_same_pads() {
    let mut server = Server::new(server_config(), secs(10), &mut rng(6));
    let now = secs(10);
    let pado = exchange(&mut server, now, &padi(mac(1), b"", b"h")).unwrap();
    let request = padr(mac(1), b"", b"h", Some(&cookie_of(&parse(&pado).2)));
    let first = exchange(&mut server, now, &request).unwrap();
    let second = exchange(&mut server, now + Duration::from_secs(1), &request).unwrap();
    assert_eq!(first, second);
    assert_eq!(server.session_count(), 1);
    assert!(server.poll_event().is_some());
    assert_eq!(server.poll_event(), None);
    assert_eq!(server.stats().pads_resent, 1);
    // A new discovery (new cookie) from the same host is a new session.
    let pado = exchange(&mut server, now, &padi(mac(1), b"", b"h")).unwrap();
    let request = padr(mac(1), b"", b"h", Some(&cookie_of(&parse(&pado).2)));
    let third = exchange(&mut server, now, &request).unwrap();
    assert_ne!(parse(&third).2.session_id, parse(&first).2.session_id);
    assert_eq!(server.session_count(), 2);
}

#[test]
fn lost_pads_is_recovered_by_the_client_retransmitting() {
    let mut port = Port::new(server_config());
    let c = port.add(client_config(1));
    port.clients[c].start(port.now);
    // PADI -> PADO -> PADR; lose the PADS.
    let mut buf = Vec::new();
    assert!(port.clients[c].poll_frame(&mut buf));
    port.server.handle_frame(port.now, &buf);
    assert!(port.server.poll_frame(&mut buf));
    assert!(port.clients[c].handle_frame(port.now, &buf));
    assert!(port.clients[c].poll_frame(&mut buf));
    port.server.handle_frame(port.now, &buf);
    assert!(port.server.poll_frame(&mut buf));
    let start = port.now;
    port.run_until(start + Duration::from_secs(2));
    assert_eq!(port.clients[c].state(), ClientState::Up);
    assert_eq!(port.server.session_count(), 1);
    assert_eq!(port.server.stats().pads_resent, 1);
}

#[test]
fn client_backs_off_and_gives_up() {
    let mut client = Client::new(client_config(1), &mut rng(7));
    let t0 = secs(0);
    client.start(t0);
    let mut sent = Vec::new();
    let mut buf = Vec::new();
    let mut now = t0;
    loop {
        while client.poll_frame(&mut buf) {
            sent.push((now - t0).as_secs());
            assert_eq!(parse(&buf).2.code, Code::Padi);
        }
        let Some(t) = client.poll_timeout() else {
            break;
        };
        now = t;
        client.handle_timeout(now);
    }
    // RFC 2516 §5: resend and double the wait, 1 s first; 16 s at most.
    assert_eq!(sent, [0, 1, 3, 7, 15]);
    assert_eq!((now - t0).as_secs(), 31);
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(ClientFailure::NoOffer))
    );
    assert_eq!(client.state(), ClientState::Failed);
}

#[test]
fn padt_both_ways() {
    let mut port = Port::new(server_config());
    let a = port.add(client_config(1));
    let b = port.add(client_config(2));
    port.clients[a].start(port.now);
    port.clients[b].start(port.now);
    port.pump();
    let (_, sid_a) = port.clients[a].session().unwrap();
    let (_, sid_b) = port.clients[b].session().unwrap();
    port.server_events.clear();

    // The subscriber hangs up.
    port.clients[a].close(port.now);
    port.pump();
    assert_eq!(
        port.server_events,
        [ServerEvent::SessionTerminated {
            mac: mac(1),
            session_id: sid_a
        }]
    );
    assert!(port.server.session(sid_a).is_none());
    assert!(matches!(
        port.client_events(a)[..],
        [
            ClientEvent::Up { .. },
            ClientEvent::Down { by_peer: false, .. }
        ]
    ));

    // A PADT for b's session from a's MAC address changes nothing.
    let forged = frame(
        AC_MAC,
        mac(1),
        &DiscoveryRepr {
            code: Code::Padt,
            session_id: sid_b,
            tags: vec![],
        },
    );
    assert_eq!(exchange(&mut port.server, port.now, &forged), None);
    assert_eq!(port.server.stats().dropped(DropReason::UnknownSession), 1);
    assert!(port.server.session(sid_b).is_some());

    // The LAC hangs up (the LNS ended the call).
    assert!(!port.server.terminate(port.now, Some(mac(1)), sid_b));
    assert!(port.server.terminate(port.now, None, sid_b));
    port.pump();
    assert!(matches!(
        port.client_events(b)[..],
        [
            ClientEvent::Up { .. },
            ClientEvent::Down { by_peer: true, .. }
        ]
    ));
    assert_eq!(port.server.session_count(), 0);
    assert_eq!(port.server.stats().sessions_closed, 2);
    assert_eq!(port.server.stats().padt_sent, 1);
}

#[test]
fn a_thousand_clients_get_distinct_session_ids() {
    let mut port = Port::new(server_config());
    for n in 0..1000 {
        let c = port.add(client_config(n));
        port.clients[c].start(port.now);
    }
    port.pump();
    let mut ids: Vec<u16> = port
        .clients
        .iter()
        .map(|c| c.session().expect("every client is up").1)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    assert!(ids.iter().all(|&id| id != 0 && id != 0xffff));
    assert_eq!(port.server.session_count(), 1000);
    for c in &port.clients {
        let (_, sid) = c.session().unwrap();
        assert!(port.server.session_of(c.mac(), sid).is_some());
        assert!(port.server.session_of(AC_MAC, sid).is_none());
    }
    // The LAC shuts down: a PADT to everyone.
    let now = port.now;
    assert_eq!(port.server.terminate_all(now), 1000);
    port.pump();
    assert!(port.clients.iter().all(|c| c.state() == ClientState::Down));
    assert_eq!(port.server.session_count(), 0);
    assert_eq!(port.server_events.len(), 1000);
}

#[test]
fn other_frames_are_not_taken() {
    let mut server = Server::new(server_config(), secs(0), &mut rng(8));
    let mut client = Client::new(client_config(1), &mut rng(9));
    let mut ipv4 = padi(mac(1), b"", b"h");
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    assert!(!server.handle_frame(secs(0), &ipv4));
    assert!(!client.handle_frame(secs(0), &ipv4));
    assert_eq!(server.stats().dropped_total(), 0);
    // Another client's PADO is not ours.
    client.start(secs(0));
    let mut buf = Vec::new();
    assert!(client.poll_frame(&mut buf));
    let pado = exchange(&mut server, secs(0), &padi(mac(2), b"", b"x")).unwrap();
    assert!(!client.handle_frame(secs(0), &pado));
    assert_eq!(client.state(), ClientState::Discovering);
}

/// The subscriber side of pppoe-subscribers_l2tpns.pcap (the codec's golden
/// packets, after Ethernet): a real client's PADI and PADR.
const CAPTURE_PADI: [u8; 50] = [
    0x11, 0x09, 0x00, 0x00, 0x00, 0x2c, 0x01, 0x01, 0x00, 0x00, 0x01, 0x05, 0x00, 0x24, 0x00, 0x00,
    0x0d, 0xe9, 0x01, 0x17, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2f, 0x30, 0x2e, 0x30, 0x2e,
    0x30, 0x2e, 0x30, 0x20, 0x65, 0x74, 0x68, 0x20, 0x30, 0x3a, 0x31, 0x02, 0x05, 0x4c, 0x41, 0x42,
    0x2e, 0x31,
];

const CAPTURE_PADR: [u8; 70] = [
    0x11, 0x19, 0x00, 0x00, 0x00, 0x40, 0x01, 0x01, 0x00, 0x00, 0x01, 0x04, 0x00, 0x10, 0xa3, 0x7d,
    0x6f, 0xbe, 0x5a, 0x32, 0x94, 0x91, 0x1f, 0x9b, 0x74, 0x75, 0x39, 0xa8, 0xc5, 0x1f, 0x01, 0x05,
    0x00, 0x24, 0x00, 0x00, 0x0d, 0xe9, 0x01, 0x17, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2f,
    0x30, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x30, 0x20, 0x65, 0x74, 0x68, 0x20, 0x30, 0x3a, 0x31, 0x02,
    0x05, 0x4c, 0x41, 0x42, 0x2e, 0x31,
];

fn with_ethernet(dst: Address, src: Address, pppoe: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(dst.as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&[0x88, 0x63]);
    f.extend_from_slice(pppoe);
    // Ethernet padding: LENGTH must narrow it away.
    f.resize(f.len().max(60), 0);
    f
}

#[test]
fn golden_real_client() {
    let sub = Address([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    let mut server = Server::new(server_config(), secs(5), &mut rng(10));
    let now = secs(5);
    let pado = exchange(
        &mut server,
        now,
        &with_ethernet(Address::BROADCAST, sub, &CAPTURE_PADI),
    )
    .unwrap();
    let (_, _, pado) = parse(&pado);
    // The real AC (l2tpns) sent AC-Name, Service-Name and AC-Cookie.
    let kinds: Vec<u16> = pado.tags.iter().map(Tag::kind).collect();
    assert_eq!(kinds, [0x0102, 0x0101, 0x0104]);
    assert_eq!(pado.find(0x0101), Some(&Tag::ServiceName(b"")));

    // The real PADR, with the cookie swapped for ours (l2tpns's cookie is
    // not one we made).
    let cookie = cookie_of(&pado);
    let real = Packet::new_checked(&CAPTURE_PADR[..]).unwrap();
    let mut padr = DiscoveryRepr::parse(&real).unwrap();
    for t in &mut padr.tags {
        if let Tag::AcCookie(_) = t {
            *t = Tag::AcCookie(&cookie);
        }
    }
    let mut bytes = vec![0; padr.buffer_len()];
    padr.emit(&mut bytes).unwrap();
    let pads = exchange(&mut server, now, &with_ethernet(AC_MAC, sub, &bytes)).unwrap();
    let (dst, src, pads) = parse(&pads);
    assert_eq!((dst, src, pads.code), (sub, AC_MAC, Code::Pads));
    assert_ne!(pads.session_id, 0);
    // l2tpns's PADS: AC-Name, Service-Name.
    let kinds: Vec<u16> = pads.tags.iter().map(Tag::kind).collect();
    assert_eq!(kinds, [0x0102, 0x0101]);
    // The TR-101 tag of the intermediate agent reaches the LAC.
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::SessionRequested {
            mac: sub,
            session_id: pads.session_id,
            service_name: String::new(),
            host_uniq: None,
            relay_session_id: None,
            agent_circuit_id: Some(b"0.0.0.0/0.0.0.0 eth 0:1".to_vec()),
            agent_remote_id: Some(b"LAB.1".to_vec()),
            ppp_max_payload: None,
        })
    );
    let session = server.session(pads.session_id).unwrap();
    assert_eq!(session.agent_remote_id.as_deref(), Some(&b"LAB.1"[..]));
    // The real PADR as captured (a foreign cookie) is refused.
    assert_eq!(
        exchange(&mut server, now, &with_ethernet(AC_MAC, sub, &CAPTURE_PADR)),
        None
    );
    assert_eq!(server.stats().refused(Refusal::BadCookie), 1);
}

#[test]
fn every_truncation_of_padi_and_padr() {
    let mut server = Server::new(server_config(), secs(5), &mut rng(11));
    let sub = mac(1);
    let frames = [
        with_ethernet(Address::BROADCAST, sub, &CAPTURE_PADI),
        with_ethernet(AC_MAC, sub, &CAPTURE_PADR),
        padi(sub, b"svc", b"hu"),
        padr(sub, b"svc", b"hu", Some(&[1; 24])),
    ];
    for f in &frames {
        for len in 0..f.len() {
            server.handle_frame(secs(5), &f[..len]);
        }
    }
    while server.poll_frame(&mut Vec::new()) {}
    assert_eq!(server.session_count(), 0);
    assert!(server.stats().dropped(DropReason::Malformed) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        code in prop_oneof![Just(0x09u8), Just(0x19), Just(0xa7), any::<u8>()],
    ) {
        let mut server = Server::new(server_config(), secs(5), &mut rng(12));
        let mut client = Client::new(client_config(1), &mut rng(13));
        client.start(secs(5));
        // Raw, and made to look like Discovery so that the tag walk runs.
        let mut shaped = bytes.clone();
        if shaped.len() >= 20 {
            shaped[..6].copy_from_slice(AC_MAC.as_bytes());
            shaped[12..14].copy_from_slice(&[0x88, 0x63]);
            shaped[14] = 0x11;
            shaped[15] = code;
        }
        for f in [&bytes, &shaped] {
            server.handle_frame(secs(5), f);
            client.handle_frame(secs(5), f);
        }
        let mut buf = Vec::new();
        while server.poll_frame(&mut buf) {
            prop_assert!(parse(&buf).2.buffer_len() <= 1500);
        }
    }
}

/// One step of a subscriber population that misbehaves at random.
#[derive(Debug, Clone)]
enum Step {
    Padi {
        host: u8,
        uniq: u8,
    },
    Padr {
        host: u8,
        uniq: u8,
        offer: usize,
        flip: Option<usize>,
    },
    Padt {
        host: u8,
        session: usize,
    },
    Terminate {
        session: usize,
    },
    Wait {
        secs: u8,
    },
    Garbage {
        bytes: Vec<u8>,
    },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4u8, 0..2u8).prop_map(|(host, uniq)| Step::Padi { host, uniq }),
        (
            0..4u8,
            0..2u8,
            any::<usize>(),
            prop::option::weighted(0.2, 0..24usize)
        )
            .prop_map(|(host, uniq, offer, flip)| Step::Padr {
                host,
                uniq,
                offer,
                flip
            }),
        (0..4u8, any::<usize>()).prop_map(|(host, session)| Step::Padt { host, session }),
        any::<usize>().prop_map(|session| Step::Terminate { session }),
        (0..40u8).prop_map(|secs| Step::Wait { secs }),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| Step::Garbage { bytes }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the order, loss, forgery and timing: the limits hold, ids
    /// stay unique and valid, and every session the LAC was told about is
    /// accounted for.
    #[test]
    fn random_conversations_keep_the_books(steps in prop::collection::vec(arb_step(), 1..60)) {
        let mut server = Server::new(
            ServerConfig {
                max_sessions: 5,
                max_sessions_per_mac: 2,
                padi_limit_per_mac: RateLimit { per_second: 1, burst: 3 },
                ..server_config()
            },
            secs(100),
            &mut rng(20),
        );
        let mut now = secs(100);
        let mut offers: Vec<(Address, Vec<u8>)> = Vec::new();
        let mut told: std::collections::BTreeMap<u16, Address> = Default::default();
        let mut buf = Vec::new();
        for step in steps {
            match step {
                Step::Padi { host, uniq } => {
                    server.handle_frame(now, &padi(mac(host.into()), b"", &[uniq]));
                }
                Step::Padr { host, uniq, offer, flip } => {
                    // Mostly a cookie made for this host; another host's
                    // when it has none.
                    let own: Vec<&Vec<u8>> = offers
                        .iter()
                        .filter(|(m, _)| *m == mac(host.into()))
                        .map(|(_, c)| c)
                        .collect();
                    let mut cookie = match own.get(offer % own.len().max(1)) {
                        Some(c) => (*c).clone(),
                        None => offers.get(offer % offers.len().max(1)).map_or(vec![0; 24], |o| o.1.clone()),
                    };
                    if let Some(i) = flip {
                        if let Some(b) = cookie.get_mut(i) {
                            *b ^= 0x40;
                        }
                    }
                    server.handle_frame(now, &padr(mac(host.into()), b"", &[uniq], Some(&cookie)));
                }
                Step::Padt { host, session } => {
                    let ids: Vec<u16> = told.keys().copied().collect();
                    let sid = ids.get(session % ids.len().max(1)).copied().unwrap_or(1);
                    let f = frame(AC_MAC, mac(host.into()), &DiscoveryRepr {
                        code: Code::Padt, session_id: sid, tags: vec![],
                    });
                    server.handle_frame(now, &f);
                }
                Step::Terminate { session } => {
                    let ids: Vec<u16> = told.keys().copied().collect();
                    if let Some(&sid) = ids.get(session % ids.len().max(1)) {
                        prop_assert!(server.terminate(now, None, sid));
                        told.remove(&sid);
                    }
                }
                Step::Wait { secs } => now += Duration::from_secs(secs.into()),
                Step::Garbage { bytes } => {
                    server.handle_frame(now, &bytes);
                }
            }
            while server.poll_frame(&mut buf) {
                let (dst, src, p) = parse(&buf);
                prop_assert_eq!(src, AC_MAC);
                prop_assert!(dst.is_unicast());
                match p.code {
                    Code::Pado => offers.push((dst, cookie_of(&p))),
                    Code::Pads if p.session_id != 0 => {
                        prop_assert!(p.session_id != 0xffff);
                        prop_assert_eq!(server.session(p.session_id).map(|s| s.mac), Some(dst));
                    }
                    Code::Pads | Code::Padt => {}
                    other => prop_assert!(false, "sent {:?}", other),
                }
            }
            while let Some(event) = server.poll_event() {
                match event {
                    ServerEvent::SessionRequested { mac, session_id, .. } => {
                        prop_assert!(told.insert(session_id, mac).is_none(), "id given twice");
                    }
                    ServerEvent::SessionTerminated { mac, session_id } => {
                        prop_assert_eq!(told.remove(&session_id), Some(mac));
                    }
                }
            }
            let sessions: Vec<_> = server.sessions().map(|s| (s.session_id, s.mac)).collect();
            let expected: Vec<_> = told.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(sessions, expected);
            prop_assert!(server.session_count() <= 5);
            for host in 0..4 {
                prop_assert!(told.values().filter(|m| **m == mac(host)).count() <= 2);
            }
            let stats = server.stats();
            prop_assert_eq!(stats.sessions_opened - stats.sessions_closed, told.len() as u64);
        }
    }
}

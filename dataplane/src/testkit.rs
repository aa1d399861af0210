//! A small lab for tests and benchmarks: addresses, tunnels and sessions
//! of an LNS and a LAC worker over [`MemoryPort`]s, and builders for the
//! frames each path takes, written with the [`crate::wire`] emitters.
//!
//! Port 0 is the access/tunnel side (toward the LACs, or the subscribers
//! on a LAC), port 1 the core side (LNS) or the tunnel side (LAC).
//! Session `i` lives in tunnel `1 + i / 50_000` with Session ID
//! `1 + i % 50_000`; its subscriber address is `100.64.0.0 + i`.
//!
//! Builders allocate: they run before the measured part.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::io::memory::{MemoryPort, MemoryPortConfig};
use crate::table::{Neighbour, PppoeBinding, SessionConfig, SessionKey, Tunnel};
use crate::update::Update;
use crate::wire::ethernet::{self, EtherType, VlanTag};
use crate::wire::{ipv4, l2tp, ppp, pppoe, udp};
use crate::worker::{Role, Worker, WorkerConfig};

/// Port toward the LACs (LNS) or the subscribers (LAC).
pub const ACCESS_PORT: u8 = 0;
/// Port toward the core (LNS) or the LNSs (LAC).
pub const CORE_PORT: u8 = 1;
/// Our MAC on the access port.
pub const ACCESS_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0x01, 0x00]);
/// Our MAC on the core port.
pub const CORE_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0x01, 0x01]);
/// The tunnel peer's MAC (the LAC seen from the LNS, the LNS seen from the LAC).
pub const PEER_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0x02, 0x00]);
/// The core router's MAC.
pub const GATEWAY_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0x03, 0x00]);
/// Our tunnel endpoint.
pub const LOCAL_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The tunnel peer.
pub const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The peer's UDP port (floated, RFC 2661 §8.1).
pub const PEER_PORT: u16 = 40_000;
/// The core gateway.
pub const GATEWAY_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// A server in the core.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Sessions per tunnel in this lab.
pub const SESSIONS_PER_TUNNEL: usize = 50_000;
/// The MRU every lab session has.
pub const MRU: u16 = 1400;

/// Our Tunnel ID and Session ID of session `i`.
pub fn session_key(i: usize) -> SessionKey {
    SessionKey {
        tunnel_id: (1 + i / SESSIONS_PER_TUNNEL) as u16,
        session_id: (1 + i % SESSIONS_PER_TUNNEL) as u16,
    }
}

/// The peer's ids for session `i` (tunnel id + 100, session id + 7).
pub fn peer_key(i: usize) -> SessionKey {
    let k = session_key(i);
    SessionKey {
        tunnel_id: k.tunnel_id + 100,
        session_id: k.session_id.wrapping_add(7),
    }
}

/// Subscriber address of session `i`.
pub fn subscriber_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(Ipv4Addr::new(100, 64, 0, 0).to_bits() + i as u32)
}

/// Subscriber MAC of LAC session `i`.
pub fn subscriber_mac(i: usize) -> ethernet::Address {
    let b = (i as u32).to_be_bytes();
    ethernet::Address([0x02, 0x55, b[0], b[1], b[2], b[3]])
}

/// PPPoE SESSION_ID of LAC session `i`.
pub fn pppoe_session_id(i: usize) -> u16 {
    (1 + i % 0xfffe) as u16
}

/// A memory port with `mac` and the default sizes.
pub fn port(mac: ethernet::Address) -> MemoryPort {
    MemoryPort::new(MemoryPortConfig::new(mac))
}

/// The lab's access and core memory ports, sharing one frame memory as
/// a worker's AF_XDP ports share a UMEM: packets cross without a copy.
pub fn ports() -> [MemoryPort; 2] {
    let configs = [
        MemoryPortConfig::new(ACCESS_MAC),
        MemoryPortConfig::new(CORE_MAC),
    ];
    let mut ports = MemoryPort::group(&configs).into_iter();
    match (ports.next(), ports.next()) {
        (Some(access), Some(core)) => [access, core],
        _ => unreachable!("a group of two configurations is two ports"),
    }
}

/// The lab's access and core memory ports, each with a memory of its
/// own: what crosses from one to the other is copied.
pub fn separate_ports() -> [MemoryPort; 2] {
    [port(ACCESS_MAC), port(CORE_MAC)]
}

/// The worker configuration of the lab, for `sessions` sessions.
pub fn config(role: Role, sessions: usize) -> WorkerConfig {
    WorkerConfig {
        max_sessions: sessions.max(1),
        ..WorkerConfig::new(role, vec![LOCAL_ADDR])
    }
}

fn tunnel(tunnel_id: u16) -> Tunnel {
    Tunnel {
        tunnel_id,
        peer_tunnel_id: tunnel_id + 100,
        local: SocketAddrV4::new(LOCAL_ADDR, l2tp::UDP_PORT),
        peer: SocketAddrV4::new(PEER_ADDR, PEER_PORT),
        next_hop: PEER_ADDR,
    }
}

/// The lab's session `i` for `role`.
pub fn session(role: Role, i: usize) -> SessionConfig {
    SessionConfig {
        key: session_key(i),
        peer_session_id: peer_key(i).session_id,
        subscriber_addr: (role == Role::Lns).then(|| subscriber_addr(i)),
        mru: MRU,
        sequencing: false,
        pppoe: (role == Role::Lac).then(|| PppoeBinding {
            port: ACCESS_PORT,
            subscriber_mac: subscriber_mac(i),
            session_id: pppoe_session_id(i),
        }),
    }
}

/// The updates that build the lab: neighbours, gateway, tunnels, sessions.
pub fn updates(role: Role, sessions: usize) -> Vec<Update> {
    let tunnel_side = if role == Role::Lns {
        ACCESS_PORT
    } else {
        CORE_PORT
    };
    let mut u = vec![
        Update::UpsertNeighbour {
            addr: PEER_ADDR,
            neighbour: Neighbour {
                mac: PEER_MAC,
                port: tunnel_side,
            },
        },
        Update::UpsertNeighbour {
            addr: GATEWAY_ADDR,
            neighbour: Neighbour {
                mac: GATEWAY_MAC,
                port: CORE_PORT,
            },
        },
        Update::SetGateway(Some(GATEWAY_ADDR)),
    ];
    let tunnels = sessions.div_ceil(SESSIONS_PER_TUNNEL).max(1);
    u.extend((0..tunnels).map(|t| Update::UpsertTunnel(tunnel(1 + t as u16))));
    u.extend((0..sessions).map(|i| Update::UpsertSession(session(role, i))));
    u
}

/// A worker with the lab's tables over the lab's [`ports`].
pub fn worker(role: Role, sessions: usize) -> Worker<MemoryPort> {
    worker_with(config(role, sessions), sessions, ports())
}

/// A worker with `config` and the lab's tables over `ports`.
pub fn worker_with(
    config: WorkerConfig,
    sessions: usize,
    ports: [MemoryPort; 2],
) -> Worker<MemoryPort> {
    let role = config.role;
    let Ok(mut w) = Worker::new(config, ports.into()) else {
        unreachable!("the latency histogram bounds are valid")
    };
    let channels = w.channels();
    for update in updates(role, sessions) {
        let mut update = update;
        while let Err(back) = channels.send(update) {
            w.apply_all_updates();
            update = back;
        }
    }
    w.apply_all_updates();
    while channels.poll_event().is_some() {}
    w
}

/// An IPv4 packet with `payload_len` bytes of UDP payload.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload_len];
    let ip = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ipv4::Protocol::Udp,
        ttl,
        dscp: 0,
        ecn: 0,
        ident: 0x1234,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp::HEADER_LEN + payload_len,
    };
    let _ = ip.emit(&mut p);
    let u = udp::Repr {
        src_port: 5001,
        dst_port: 5002,
        payload_len,
    };
    let _ = u.emit(&mut p[ipv4::HEADER_LEN..]);
    for (i, b) in p[ipv4::HEADER_LEN + udp::HEADER_LEN..]
        .iter_mut()
        .enumerate()
    {
        *b = i as u8;
    }
    let mut datagram = udp::Packet::new_unchecked(&mut p[ipv4::HEADER_LEN..]);
    datagram.fill_checksum(src, dst);
    p
}

/// An Ethernet frame around `payload`.
pub fn ethernet(
    dst: ethernet::Address,
    src: ethernet::Address,
    vlan: Option<u16>,
    ethertype: EtherType,
    payload: &[u8],
) -> Vec<u8> {
    let repr = ethernet::Repr {
        dst_addr: dst,
        src_addr: src,
        outer_tag: vlan.map(|vid| VlanTag {
            tpid: EtherType::Vlan,
            pcp: 0,
            dei: false,
            vid,
        }),
        inner_tag: None,
        ethertype,
    };
    let mut f = vec![0u8; repr.buffer_len() + payload.len()];
    let _ = repr.emit(&mut f);
    f[repr.buffer_len()..].copy_from_slice(payload);
    f
}

/// How an L2TP data message and its PPP frame are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoding {
    /// L bit.
    pub length: bool,
    /// S bit with this Ns.
    pub ns: Option<u16>,
    /// O bit with this many bytes of padding.
    pub offset: Option<u16>,
    /// P bit.
    pub priority: bool,
    /// Leave out FF 03.
    pub no_address_control: bool,
    /// One-byte Protocol.
    pub compressed_protocol: bool,
}

/// A PPP frame of `protocol` around `information`.
pub fn ppp_frame(protocol: ppp::Protocol, information: &[u8], enc: Encoding) -> Vec<u8> {
    let repr = ppp::Repr {
        address_control: !enc.no_address_control,
        protocol,
        compressed_protocol: enc.compressed_protocol,
    };
    let mut f = vec![0u8; repr.buffer_len() + information.len()];
    let _ = repr.emit(&mut f);
    f[repr.buffer_len()..].copy_from_slice(information);
    f
}

/// Ethernet/IPv4/UDP/L2TP from `src` (address, port) to us around `ppp`.
pub fn l2tp_frame(src: SocketAddrV4, key: SessionKey, ppp: &[u8], enc: Encoding) -> Vec<u8> {
    let header = l2tp::HeaderRepr {
        control: false,
        length_present: enc.length,
        tunnel_id: key.tunnel_id,
        session_id: key.session_id,
        sequence: enc.ns.map(|ns| (ns, 0)),
        offset_size: enc.offset,
        priority: enc.priority,
    };
    let l2tp_len = header.buffer_len();
    let mut msg = vec![0u8; l2tp_len + ppp.len()];
    let _ = header.emit(&mut msg, ppp.len());
    msg[l2tp_len..].copy_from_slice(ppp);
    let mut p = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + msg.len()];
    let _ = ipv4::Repr {
        src_addr: *src.ip(),
        dst_addr: LOCAL_ADDR,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 7,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp::HEADER_LEN + msg.len(),
    }
    .emit(&mut p);
    let _ = udp::Repr {
        src_port: src.port(),
        dst_port: l2tp::UDP_PORT,
        payload_len: msg.len(),
    }
    .emit(&mut p[ipv4::HEADER_LEN..]);
    p[ipv4::HEADER_LEN + udp::HEADER_LEN..].copy_from_slice(&msg);
    ethernet(ACCESS_MAC, PEER_MAC, None, EtherType::Ipv4, &p)
}

/// The peer's address and port.
pub fn peer() -> SocketAddrV4 {
    SocketAddrV4::new(PEER_ADDR, PEER_PORT)
}

/// LNS upstream: session `i` sends `payload_len` bytes of UDP to the server.
pub fn lns_upstream(i: usize, payload_len: usize, enc: Encoding) -> Vec<u8> {
    let ip = ipv4_udp(subscriber_addr(i), SERVER_ADDR, 64, payload_len);
    l2tp_frame(
        peer(),
        session_key(i),
        &ppp_frame(ppp::Protocol::Ipv4, &ip, enc),
        enc,
    )
}

/// LNS downstream: the server sends `payload_len` bytes of UDP to session `i`.
pub fn lns_downstream(i: usize, payload_len: usize) -> Vec<u8> {
    let ip = ipv4_udp(SERVER_ADDR, subscriber_addr(i), 64, payload_len);
    ethernet(CORE_MAC, GATEWAY_MAC, None, EtherType::Ipv4, &ip)
}

/// A PPPoE session frame from LAC subscriber `i` around `ppp` (Protocol
/// field first).
pub fn pppoe_frame(i: usize, ppp: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; pppoe::HEADER_LEN + ppp.len()];
    let _ = pppoe::Repr {
        code: pppoe::Code::Session,
        session_id: pppoe_session_id(i),
        payload_len: ppp.len(),
    }
    .emit(&mut p);
    p[pppoe::HEADER_LEN..].copy_from_slice(ppp);
    ethernet(
        ACCESS_MAC,
        subscriber_mac(i),
        None,
        EtherType::PppoeSession,
        &p,
    )
}

/// LAC upstream: subscriber `i` sends `payload_len` bytes of UDP.
pub fn lac_upstream(i: usize, payload_len: usize) -> Vec<u8> {
    let ip = ipv4_udp(subscriber_addr(i), SERVER_ADDR, 64, payload_len);
    let enc = Encoding {
        no_address_control: true,
        ..Encoding::default()
    };
    pppoe_frame(i, &ppp_frame(ppp::Protocol::Ipv4, &ip, enc))
}

/// LAC downstream: the LNS sends `payload_len` bytes of UDP to subscriber `i`.
pub fn lac_downstream(i: usize, payload_len: usize) -> Vec<u8> {
    let ip = ipv4_udp(SERVER_ADDR, subscriber_addr(i), 64, payload_len);
    let mut f = l2tp_frame(
        peer(),
        session_key(i),
        &ppp_frame(ppp::Protocol::Ipv4, &ip, Encoding::default()),
        Encoding::default(),
    );
    // On a LAC the tunnel arrives on the core side.
    f[..6].copy_from_slice(&CORE_MAC.0);
    f
}

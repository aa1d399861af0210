//! One datagram of any bytes into an endpoint (the LAC or the LNS) that has
//! an established tunnel with two sessions, from the peer or from anyone
//! else. Options in the first byte patch the datagram with the tunnel's real
//! Tunnel ID, a real Session ID, the Ns and Nr the endpoint expects and a
//! consistent Length, so the bytes reach past the demultiplexing.
//!
//! Checked: no panic; every datagram counted once; the owner's events make
//! sense; and when the datagram did not come from the peer's address and
//! port, the tunnel and its sessions are still established on both sides
//! after the endpoints have kept talking (Hellos included) for a while, and
//! neither owner heard of anything going down.
#![no_main]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::{Input, Knobs, LNS};
use controlplane::l2tp::{
    CallParams, Endpoint, Event, SessionHandle, SessionState, TunnelHandle, TunnelState,
};
use controlplane::sim::{Fate, NodeId, Sim};
use dataplane::wire::control::{Context, ControlMessage};
use libfuzzer_sys::fuzz_target;

struct Established {
    sim: Sim<Endpoint>,
    lac: NodeId,
    lns: NodeId,
    tunnels: [(NodeId, TunnelHandle); 2],
    sessions: Vec<(NodeId, SessionHandle)>,
}

fn bring_up(knobs: Knobs) -> Established {
    let (mut sim, lac, lns) = common::pair(knobs, Duration::from_millis(2));
    sim.record_trace(true);
    let now = sim.now();
    let tunnel = sim.node_mut(lac).connect(now, LNS).expect("connect");
    for _ in 0..2 {
        sim.node_mut(lac)
            .open_session(now, tunnel, CallParams::default())
            .expect("open");
    }
    let up = sim
        .run_until(now + Duration::from_secs(2), |sim| {
            let n = |node| {
                sim.events(node)
                    .iter()
                    .filter(|(_, e)| matches!(e, Event::SessionUp { .. }))
                    .count()
            };
            n(lac) == 2 && n(lns) == 2
        })
        .expect("no livelock");
    assert!(up, "the clean setup works");
    // Let the last acknowledgements go.
    sim.run_for(Duration::from_millis(100))
        .expect("no livelock");
    let mut sessions = Vec::new();
    let mut lns_tunnel = None;
    for node in [lac, lns] {
        for (_, e) in sim.events(node) {
            match e {
                Event::SessionUp { session, .. } => sessions.push((node, *session)),
                Event::TunnelUp { tunnel, .. } if node == lns => lns_tunnel = Some(*tunnel),
                _ => {}
            }
        }
    }
    Established {
        sim,
        lac,
        lns,
        tunnels: [(lac, tunnel), (lns, lns_tunnel.expect("LNS tunnel up"))],
        sessions,
    }
}

/// The next Ns `to` expects from `from` and the next Ns `from` will send
/// `to`... as `from` would put them in its next message (Ns, Nr).
fn sequence(sim: &Sim<Endpoint>, knobs: Knobs, from: SocketAddrV4) -> (u16, u16) {
    let ctx = Context {
        secret: knobs.secret().then_some(common::SECRET),
        ha_vendor_id: 43,
    };
    let mut ns = None;
    let mut nr = None;
    for r in sim.trace().iter().filter(|r| r.fate == Fate::Sent) {
        let Ok(m) = ControlMessage::parse(&r.payload, &ctx) else {
            continue;
        };
        if r.from == from {
            ns = Some(if m.is_zlb() {
                m.ns
            } else {
                m.ns.wrapping_add(1)
            });
            nr = Some(m.nr);
        }
    }
    (ns.unwrap_or(0), nr.unwrap_or(0))
}

fn patch(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(field) = bytes.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte_or_zero();
    let fixes = input.byte_or_zero();
    let knobs = Knobs(if mode & 0x80 != 0 { 0x01 } else { 0 });
    let mut lab = bring_up(knobs);
    let (target, peer) = if mode & 1 == 0 {
        (lab.lns, lab.lac)
    } else {
        (lab.lac, lab.lns)
    };
    let peer_addr = lab.sim.address(peer);
    let from = match (mode >> 1) & 3 {
        0 => peer_addr,
        1 => SocketAddrV4::new(*peer_addr.ip(), peer_addr.port().wrapping_add(1)),
        2 => SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 99), peer_addr.port()),
        _ => SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, mode), u16::from(fixes)),
    };
    let mut bytes = input.rest().to_vec();
    // Where the header fields are depends on the L bit (RFC 2661 §3.1).
    let flags = bytes.first().copied().unwrap_or(0);
    let ids_at = if flags & 0x40 != 0 { 4 } else { 2 };
    let target_tunnel = lab.tunnels.iter().find(|(n, _)| *n == target).map(|t| t.1);
    let ids = target_tunnel.and_then(|t| lab.sim.node(target).tunnel_ids(t));
    if fixes & 1 != 0 {
        if let Some((local, _)) = ids {
            patch(&mut bytes, ids_at, local);
        }
    }
    if fixes & 2 != 0 {
        let mine: Vec<u16> = lab
            .sim
            .events(target)
            .iter()
            .filter_map(|(_, e)| match e {
                Event::SessionUp {
                    local_session_id, ..
                } => Some(*local_session_id),
                _ => None,
            })
            .collect();
        if let Some(&sid) = mine.get(usize::from(fixes >> 7)) {
            patch(&mut bytes, ids_at + 2, sid);
        }
    }
    if fixes & 4 != 0 && flags & 0x08 != 0 {
        let (ns, nr) = sequence(&lab.sim, knobs, peer_addr);
        patch(&mut bytes, ids_at + 4, ns);
        patch(&mut bytes, ids_at + 6, nr);
    }
    if fixes & 8 != 0 && flags & 0x40 != 0 {
        let n = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        patch(&mut bytes, 2, n);
    }
    let seen = [lab.lac, lab.lns].map(|n| lab.sim.events(n).len());
    lab.sim.inject(from, lab.sim.address(target), bytes);
    // Long enough for Hellos both ways and a full retransmission cycle.
    lab.sim
        .run_for(Duration::from_secs(5))
        .expect("no livelock");

    for (node, who) in [(lab.lac, "LAC"), (lab.lns, "LNS")] {
        common::check_events(lab.sim.events(node), who);
        common::check_accounting(lab.sim.node(node), who);
    }
    if from != peer_addr {
        for (node, t) in lab.tunnels {
            assert_eq!(
                lab.sim.node(node).tunnel_state(t),
                Some(TunnelState::Established),
                "{node:?}"
            );
        }
        for &(node, s) in &lab.sessions {
            assert_eq!(
                lab.sim.node(node).session_state(s),
                Some(SessionState::Established)
            );
        }
        // A datagram from elsewhere may open a tunnel of its own (an SCCRQ),
        // which may fail; the established ones are never told of trouble.
        let ours = |t: TunnelHandle, node| lab.tunnels.contains(&(node, t));
        for (i, node) in [lab.lac, lab.lns].into_iter().enumerate() {
            let after = &lab.sim.events(node)[seen[i]..];
            assert!(
                after.iter().all(|(_, e)| match e {
                    Event::TunnelDown { tunnel, .. } => !ours(*tunnel, node),
                    Event::SessionDown { session, .. } => !ours(session.tunnel, node),
                    _ => true,
                }),
                "{after:?}"
            );
        }
    }
});

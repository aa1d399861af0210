//! Two endpoints, a LAC and an LNS, in the simulator. The input is a script:
//! a configuration, what the owners do and when (connect, open and close
//! sessions, close tunnels, send data and messages), and, datagram by
//! datagram, what an adversary on the link does (pass, drop, duplicate, flip
//! bits, set bytes, truncate, splice two datagrams, insert bytes, replay an
//! older one, spoof the source). Then the damage stops and the endpoints get
//! time to settle.
//!
//! Checked: no panic; every datagram counted once by what became of it; the
//! owner's events make sense (up before down, at most once each, sessions
//! and data only inside an up tunnel); and after quiescence every tunnel
//! either side holds is established with its twin on the other side, and
//! the owners were told about every tunnel that came or went.
//!
//! Not checked, because no L2TP implementation can promise it: that
//! sessions agree after quiescence. An adversary can turn an ICCN into a
//! Hello with the right Ns; the LAC then thinks the call is up and the LNS
//! waits for an ICCN, and RFC 2661 has no timer to notice.
#![no_main]

mod common;

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use common::{Input, Knobs, LAC, LNS};
use controlplane::l2tp::codes::{cdn, stop_ccn};
use controlplane::l2tp::{CallParams, Endpoint, Event, ResultCode, SessionHandle, TunnelHandle};
use controlplane::sim::{Datagram, NodeId, Sim, Tamper};
use dataplane::wire::control::{Avp, AvpEntry, ControlMessage, MessageType};
use libfuzzer_sys::fuzz_target;

/// The adversary's side of the input, and the datagrams it has seen (for
/// splices and replays).
struct Adversary {
    bytes: Vec<u8>,
    at: usize,
    seen: Vec<Vec<u8>>,
}

impl Adversary {
    fn act(&mut self, d: &mut Datagram) -> Tamper {
        let mut input = Input::new(&self.bytes[self.at.min(self.bytes.len())..]);
        let before = input.remaining();
        let verdict = tamper(&mut input, d, &self.seen);
        self.at += before - input.remaining();
        if self.seen.len() == 16 {
            self.seen.remove(0);
        }
        self.seen.push(d.payload.clone());
        verdict
    }
}

fn tamper(input: &mut Input<'_>, d: &mut Datagram, seen: &[Vec<u8>]) -> Tamper {
    let Some(op) = input.byte() else {
        // Out of input: the damage stops.
        return Tamper::Pass;
    };
    match op {
        0..=127 => return Tamper::Pass,
        128..=143 => return Tamper::Drop,
        144..=151 => return Tamper::Duplicate,
        _ => {}
    }
    let p = &mut d.payload;
    let len = p.len();
    let at = |n: u16| usize::from(n) % len.max(1);
    match op % 8 {
        0 => {
            let (pos, bit) = (input.u16(), input.byte_or_zero());
            if len > 0 {
                p[at(pos)] ^= 1 << (bit % 8);
            }
        }
        1 => {
            let (pos, value) = (input.u16(), input.byte_or_zero());
            if len > 0 {
                p[at(pos)] = value;
            }
        }
        2 => {
            let cut = usize::from(input.u16()) % (len + 1);
            p.truncate(cut);
        }
        3 => {
            let (which, cut) = (input.byte_or_zero(), input.u16());
            if let Some(other) = seen.get(usize::from(which) % seen.len().max(1)) {
                let cut = usize::from(cut) % (len + 1);
                p.truncate(cut);
                p.extend_from_slice(&other[cut.min(other.len())..]);
            }
        }
        4 => {
            // Header fields are 16 bits: Length, the IDs, Ns and Nr.
            let (pos, value) = (input.u16(), input.u16());
            if len >= 2 {
                let i = at(pos).min(len - 2);
                p[i..i + 2].copy_from_slice(&value.to_be_bytes());
            }
        }
        5 => {
            let (pos, n) = (input.u16(), input.byte_or_zero() % 8);
            let bytes = input.take(usize::from(n)).to_vec();
            let i = usize::from(pos) % (len + 1);
            p.splice(i..i, bytes);
        }
        6 => {
            // Spoof: another port of the same address, or another address.
            let port = input.u16();
            let host = input.byte_or_zero();
            let ip = if host & 1 == 0 {
                *d.from.ip()
            } else {
                Ipv4Addr::new(10, 0, 0, host)
            };
            d.from = SocketAddrV4::new(ip, port);
        }
        _ => {
            let which = input.byte_or_zero();
            if let Some(other) = seen.get(usize::from(which) % seen.len().max(1)) {
                *p = other.clone();
            }
        }
    }
    // Half the mutations keep the L2TP Length field consistent, so the
    // damage reaches the AVPs instead of stopping at the header.
    if (op / 8) % 2 == 1 && p.len() >= 4 && p[0] & 0x40 != 0 {
        let n = u16::try_from(p.len()).unwrap_or(u16::MAX);
        p[2..4].copy_from_slice(&n.to_be_bytes());
    }
    Tamper::Pass
}

fn pick<T: Copy>(items: &[T], i: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(i) % items.len()])
}

/// The LNS's sessions its owner knows and has not seen go down.
fn lns_sessions(sim: &Sim<Endpoint>, lns: NodeId) -> Vec<SessionHandle> {
    let mut up = Vec::new();
    for (_, e) in sim.events(lns) {
        match e {
            Event::SessionUp { session, .. } => up.push(*session),
            Event::SessionDown { session, .. } => up.retain(|s| s != session),
            _ => {}
        }
    }
    up
}

fn call(knobs: Knobs, arg: u8) -> CallParams {
    let mut call = CallParams::default();
    if arg & 1 != 0 {
        call.iccn_avps
            .push(AvpEntry::mandatory(Avp::ProxyAuthenType(2)));
        let name = AvpEntry::mandatory(Avp::ProxyAuthenName(b"subscriber".to_vec()));
        call.iccn_avps.push(if knobs.secret() && arg & 2 != 0 {
            name.hide()
        } else {
            name
        });
    }
    if arg & 4 != 0 {
        // An unknown optional AVP: passed through.
        call.icrq_avps.push(AvpEntry::optional(Avp::Unknown {
            vendor_id: 43,
            attribute: 999,
            value: vec![arg],
        }));
    }
    call
}

fn message(kind: u8) -> ControlMessage {
    match kind % 4 {
        0 => ControlMessage::new(MessageType::Hello, 0, 0),
        1 => {
            ControlMessage::new(MessageType::Wen, 0, 0).with(AvpEntry::mandatory(Avp::CallErrors {
                crc: 1,
                framing: 2,
                hardware_overruns: 3,
                buffer_overruns: 4,
                timeouts: 5,
                alignment: 6,
            }))
        }
        2 => ControlMessage::new(MessageType::Sli, 0, 0).with(AvpEntry::mandatory(Avp::Accm {
            send: 0,
            receive: u32::MAX,
        })),
        _ => ControlMessage::new(MessageType::Stplrq, 0, 0).with(AvpEntry::optional(
            Avp::PeerLnsAddress(vec![Ipv4Addr::new(10, 0, 0, 3)]),
        )),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let knobs = Knobs(input.byte_or_zero());
    let delay = Duration::from_millis(1 + u64::from(input.byte_or_zero() % 20));
    let commands = usize::from(input.byte_or_zero() % 24);
    let script: Vec<[u8; 4]> = (0..commands)
        .map(|_| {
            let mut c = [0; 4];
            for b in &mut c {
                *b = input.byte_or_zero();
            }
            c
        })
        .collect();
    let (mut sim, lac, lns) = common::pair(knobs, delay);
    let adversary = Rc::new(RefCell::new(Adversary {
        bytes: input.rest().to_vec(),
        at: 0,
        seen: Vec::new(),
    }));
    let a = adversary.clone();
    sim.set_adversary(Some(Box::new(move |_, d| a.borrow_mut().act(d))));

    let mut lac_tunnels: Vec<TunnelHandle> = Vec::new();
    let mut lns_tunnels: Vec<TunnelHandle> = Vec::new();
    let mut lac_sessions: Vec<SessionHandle> = Vec::new();
    for [wait, op, arg, arg2] in script {
        sim.run_for(Duration::from_millis(u64::from(wait) * 8))
            .expect("no livelock");
        let now = sim.now();
        match op % 10 {
            0 if lac_tunnels.len() < 4 => {
                if let Ok(t) = sim.node_mut(lac).connect(now, LNS) {
                    lac_tunnels.push(t);
                }
            }
            1 | 2 => {
                if let Some(t) = pick(&lac_tunnels, arg) {
                    if let Ok(s) = sim.node_mut(lac).open_session(now, t, call(knobs, arg2)) {
                        lac_sessions.push(s);
                    }
                }
            }
            3 => {
                if let Some(s) = pick(&lac_sessions, arg) {
                    let result = ResultCode::new(cdn::ADMINISTRATIVE);
                    let _ = sim.node_mut(lac).close_session(now, s, result);
                }
            }
            4 => {
                let result = ResultCode::with_message(stop_ccn::GENERAL_REQUEST, "bye");
                if arg2 & 1 == 0 {
                    if let Some(t) = pick(&lac_tunnels, arg) {
                        let _ = sim.node_mut(lac).close_tunnel(now, t, result);
                    }
                } else {
                    let held: Vec<_> = sim.node(lns).tunnels().collect();
                    if let Some(t) = pick(&held, arg) {
                        let _ = sim.node_mut(lns).close_tunnel(now, t, result);
                    }
                }
            }
            5 => {
                let sent = if arg2 & 1 == 0 {
                    pick(&lac_sessions, arg)
                        .and_then(|s| sim.node_mut(lac).send_data(s, &[arg2; 7]).ok())
                        .map(|t| (LAC, t))
                } else {
                    pick(&lns_sessions(&sim, lns), arg)
                        .and_then(|s| sim.node_mut(lns).send_data(s, &[arg2; 9]).ok())
                        .map(|t| (LNS, t))
                };
                if let Some((from, t)) = sent {
                    sim.inject(from, t.remote, t.payload);
                }
            }
            6 => {
                let m = message(arg2);
                if arg2 & 4 == 0 {
                    if let Some(t) = pick(&lac_tunnels, arg) {
                        let s = pick(&lac_sessions, arg2).filter(|s| s.tunnel == t);
                        let _ = sim.node_mut(lac).send_message(now, t, s, m);
                    }
                } else {
                    let sessions = lns_sessions(&sim, lns);
                    if let Some(s) = pick(&sessions, arg) {
                        let _ = sim.node_mut(lns).send_message(now, s.tunnel, Some(s), m);
                    }
                }
            }
            7 if knobs.symmetric() && lns_tunnels.len() < 2 => {
                // The LNS calls the LAC, possibly at the moment the LAC calls
                // it: a tie (RFC 2661 §4.4.3).
                if let Ok(t) = sim.node_mut(lns).connect(now, LAC) {
                    lns_tunnels.push(t);
                }
                if arg & 1 == 0 && lac_tunnels.len() < 4 {
                    if let Ok(t) = sim.node_mut(lac).connect(now, LNS) {
                        lac_tunnels.push(t);
                    }
                }
            }
            8 => {
                if let Some(s) = pick(&lns_sessions(&sim, lns), arg) {
                    let result = ResultCode::new(cdn::LOST_CARRIER);
                    let _ = sim.node_mut(lns).close_session(now, s, result);
                }
            }
            _ => {}
        }
    }
    // The damage stops; everything half-done settles or is given up.
    sim.set_adversary(None);
    sim.run_for(common::quiescence()).expect("no livelock");

    for (node, who) in [(lac, "LAC"), (lns, "LNS")] {
        common::check_events(sim.events(node), who);
        common::check_accounting(sim.node(node), who);
    }
    common::check_settled(&sim, lac, lns);
    // Every tunnel the owners opened is either held (and up) or was
    // reported down.
    for (node, opened) in [(lac, &lac_tunnels), (lns, &lns_tunnels)] {
        for &t in opened {
            let held = sim.node(node).tunnel_state(t).is_some();
            let down = sim
                .events(node)
                .iter()
                .any(|(_, e)| matches!(e, Event::TunnelDown { tunnel, .. } if *tunnel == t));
            assert!(held != down, "{t:?} held {held} reported down {down}");
        }
    }
});

//! What the endpoint targets share: reading the fuzzer's bytes, a LAC and an
//! LNS in the simulator with fast timers, and the invariants every run must
//! keep.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use controlplane::l2tp::{
    Config, Endpoint, Event, Retransmission, SessionHandle, TunnelHandle, TunnelState,
};
use controlplane::sim::{LinkConditions, NodeId, Sim};
use controlplane::time::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

pub const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
pub const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1701);
pub const SECRET: &[u8] = b"fuzz-secret";

/// The fuzzer's bytes, read front to back; reads past the end give `None`
/// (or zeros), so every input is a valid script.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    pub fn byte_or_zero(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte_or_zero(), self.byte_or_zero()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

pub fn rng(seed: u64) -> Box<ChaCha8Rng> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

/// What the configuration knobs byte chooses, for both endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Knobs(pub u8);

impl Knobs {
    pub fn secret(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// The LAC challenges the LNS too.
    fn lac_authenticates(self) -> bool {
        self.secret() && self.0 & 0x02 != 0
    }
    fn slow_start(self) -> bool {
        self.0 & 0x04 == 0
    }
    /// The LAC accepts tunnels and calls: the LNS may connect to it, and
    /// simultaneous SCCRQs make a tie.
    pub fn symmetric(self) -> bool {
        self.0 & 0x08 != 0
    }
    fn receive_window(self) -> u16 {
        [1, 2, 4, 16][usize::from((self.0 >> 4) & 3)]
    }
    fn lac_tie_breaker(self) -> bool {
        self.0 & 0x40 == 0
    }
    /// Sequence numbers start near the wrap.
    fn wrap(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// Retransmission schedule of every fuzzed endpoint: 100, 200, 400, 400,
/// 400 ms (a full cycle of 1.5 s).
pub const RETRANSMISSION: Retransmission = Retransmission {
    initial: Duration::from_millis(100),
    cap: Duration::from_millis(400),
    max_retries: 4,
};
pub const HELLO: Duration = Duration::from_secs(1);
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(3);

fn tune(mut c: Config, knobs: Knobs) -> Config {
    c.retransmission = RETRANSMISSION;
    c.ack_delay = Duration::from_millis(20);
    c.hello_interval = Some(HELLO);
    c.setup_timeout = SETUP_TIMEOUT;
    c.max_pending_tunnels = 4;
    c.max_refused_tunnels = 4;
    c.slow_start = knobs.slow_start();
    c.receive_window = knobs.receive_window();
    if knobs.wrap() {
        c.initial_sequence = 65530;
    }
    if knobs.secret() {
        c.secret = Some(SECRET.to_vec());
    }
    c
}

pub fn lac_config(knobs: Knobs) -> Config {
    let mut c = if knobs.symmetric() {
        Config::new("lac")
    } else {
        Config::lac("lac")
    };
    c.tie_breaker = knobs.lac_tie_breaker();
    c = tune(c, knobs);
    c.require_authentication = knobs.lac_authenticates();
    c
}

pub fn lns_config(knobs: Knobs) -> Config {
    let mut c = tune(Config::lns("lns"), knobs);
    c.require_authentication = knobs.secret();
    c
}

/// A LAC and an LNS on a clean link of `delay`.
pub fn pair(knobs: Knobs, delay: Duration) -> (Sim<Endpoint>, NodeId, NodeId) {
    let mut sim = Sim::new(rng(1), LinkConditions::delay(delay));
    let lac = sim.add_node(
        LAC,
        Endpoint::new(lac_config(knobs), rng(2)).expect("config"),
    );
    let lns = sim.add_node(
        LNS,
        Endpoint::new(lns_config(knobs), rng(3)).expect("config"),
    );
    (sim, lac, lns)
}

/// Long enough, on a clean link, for anything half-done to finish or be
/// given up: a setup timeout, a hold period, a Hello gone unanswered and a
/// full retransmission cycle, one after the other, three times over.
pub fn quiescence() -> Duration {
    let cycle = RETRANSMISSION.full_cycle();
    (SETUP_TIMEOUT + cycle + HELLO + cycle) * 3 + Duration::from_secs(2)
}

/// What an owner can rely on, whatever the network did: a tunnel comes up
/// at most once and goes down at most once, after; a session likewise, only
/// while its tunnel is up (for SessionUp) or not yet down; data and
/// messages only for what is up.
pub fn check_events(events: &[(Instant, Event)], who: &str) {
    #[derive(Default, Clone, Copy)]
    struct Life {
        up: bool,
        down: bool,
    }
    let mut tunnels: HashMap<TunnelHandle, Life> = HashMap::new();
    let mut sessions: HashMap<SessionHandle, Life> = HashMap::new();
    for (i, (at, e)) in events.iter().enumerate() {
        let ctx = || format!("{who}: event {i} at {at:?}: {e:?}");
        match e {
            Event::TunnelUp { tunnel, .. } => {
                let t = tunnels.entry(*tunnel).or_default();
                assert!(!t.up && !t.down, "{}", ctx());
                t.up = true;
            }
            Event::TunnelDown { tunnel, .. } => {
                let t = tunnels.entry(*tunnel).or_default();
                assert!(!t.down, "{}", ctx());
                t.down = true;
            }
            Event::SessionUp { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                assert!(t.up && !t.down, "{}", ctx());
                let s = sessions.entry(*session).or_default();
                assert!(!s.up && !s.down, "{}", ctx());
                s.up = true;
            }
            Event::SessionDown { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                assert!(!t.down, "{}", ctx());
                let s = sessions.entry(*session).or_default();
                assert!(!s.down, "{}", ctx());
                s.down = true;
            }
            Event::Data { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                let s = sessions.get(session).copied().unwrap_or_default();
                assert!(t.up && !t.down && s.up && !s.down, "{}", ctx());
            }
            Event::SetLinkInfo { session, .. } | Event::WanError { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                let s = sessions.get(session).copied().unwrap_or_default();
                assert!(t.up && !t.down && !s.down, "{}", ctx());
            }
            Event::SessionMoved { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                let s = sessions.get(session).copied().unwrap_or_default();
                assert!(t.up && !t.down && !s.down, "{}", ctx());
            }
            // An answered call waiting for its ICCN: the tunnel is up and
            // the session has not been reported before.
            Event::CallAnswered { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                assert!(t.up && !t.down, "{}", ctx());
                assert!(!sessions.contains_key(session), "{}", ctx());
            }
            Event::RecoveryCall { session, .. } => {
                let t = tunnels.get(&session.tunnel).copied().unwrap_or_default();
                assert!(t.up && !t.down, "{}", ctx());
                assert!(!sessions.contains_key(session), "{}", ctx());
            }
            Event::Message {
                tunnel, session, ..
            } => {
                let t = tunnels.get(tunnel).copied().unwrap_or_default();
                assert!(t.up && !t.down, "{}", ctx());
                if let Some(s) = session {
                    assert_eq!(s.tunnel, *tunnel, "{}", ctx());
                    assert!(
                        !sessions.get(s).copied().unwrap_or_default().down,
                        "{}",
                        ctx()
                    );
                }
            }
        }
    }
}

/// Every datagram an endpoint was given is counted once, by what became of
/// it.
pub fn check_accounting(endpoint: &Endpoint, who: &str) {
    let s = endpoint.stats();
    assert_eq!(s.accounted(), s.datagrams_received, "{who}: {s:?}");
}

/// After quiescence: every tunnel either endpoint holds is established,
/// the other endpoint holds its twin (the same two Tunnel IDs, crossed) at
/// the right address, and the owner was told: TunnelUp and no TunnelDown for
/// what is held, TunnelDown for what came up and is gone.
pub fn check_settled(sim: &Sim<Endpoint>, lac: NodeId, lns: NodeId) {
    for (me, other) in [(lac, lns), (lns, lac)] {
        let a = sim.node(me);
        let b = sim.node(other);
        let who = sim.address(me);
        for t in a.tunnels() {
            assert_eq!(
                a.tunnel_state(t),
                Some(TunnelState::Established),
                "{who}: {t:?} not established after quiescence"
            );
            let (local, peer) = a.tunnel_ids(t).expect("held");
            assert_eq!(a.tunnel_remote(t), Some(sim.address(other)), "{who}: {t:?}");
            let twins = b
                .tunnels()
                .filter(|&u| b.tunnel_ids(u) == Some((peer, local)))
                .count();
            assert_eq!(twins, 1, "{who}: {t:?} ids ({local}, {peer}) has no twin");
        }
        let mut told: HashMap<TunnelHandle, (bool, bool)> = HashMap::new();
        for (_, e) in sim.events(me) {
            match e {
                Event::TunnelUp { tunnel, .. } => told.entry(*tunnel).or_default().0 = true,
                Event::TunnelDown { tunnel, .. } => told.entry(*tunnel).or_default().1 = true,
                _ => {}
            }
        }
        for t in a.tunnels() {
            assert_eq!(told.get(&t), Some(&(true, false)), "{who}: {t:?}");
        }
        for (t, (up, down)) in told {
            let held = a.tunnel_state(t).is_some();
            let consistent = if down { !held } else { !up || held };
            assert!(consistent, "{who}: {t:?} up {up} down {down} held {held}");
        }
    }
}

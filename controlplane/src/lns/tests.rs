//! The node's authenticator swapped under live sessions, and its clean
//! stop, in simulation: subscribers on three LACs, two RADIUS servers that
//! answer whatever they are asked (one of them can hold its answers back),
//! and what each server saw.

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::VecDeque;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use super::{EndCause, Event, Node};
use crate::aaa::pool::AddressPool;
use crate::aaa::radius::packet::{packet_digest, value_u32, AttributeType, Code, Packet, Repr};
use crate::aaa::radius::{self, ClientConfig, Server, TerminateCause};
use crate::aaa::users::Users;
use crate::aaa::Authenticator;
use crate::sim::{self, LinkConditions, NodeId, Sim};
use crate::subscriber::{self, AuthChoice};
use crate::time::Instant;

const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1701);
const LAC_A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1701);
const LAC_B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 3), 1701);
const LAC_C: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 4), 1701);
const OLD_RADIUS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 1812);
const NEW_RADIUS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 20), 1812);

fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

/// A RADIUS server that accepts every Access-Request and acknowledges
/// every Accounting-Request, keeping what the latter said.
struct FakeRadius {
    secret: &'static [u8],
    /// Access-Requests are kept unanswered while this is on.
    hold: bool,
    held: Vec<(SocketAddr, Vec<u8>)>,
    access_requests: usize,
    /// (Acct-Status-Type, Acct-Terminate-Cause) of each Accounting-Request.
    accounting: Vec<(u32, Option<u32>)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl FakeRadius {
    fn new(secret: &'static [u8]) -> Self {
        FakeRadius {
            secret,
            hold: false,
            held: Vec::new(),
            access_requests: 0,
            accounting: Vec::new(),
            out: VecDeque::new(),
        }
    }

    fn answer(&mut self, to: SocketAddr, request: &[u8], code: Code) {
        let request = Packet::new_checked(request).unwrap();
        let repr = Repr {
            code,
            identifier: request.identifier(),
            authenticator: [0; 16],
            attributes: Vec::new(),
        };
        let mut bytes = repr.to_bytes().unwrap();
        // RFC 2865 §3 and RFC 2866 §3: the Response Authenticator.
        let digest = packet_digest(&bytes, &request.authenticator(), self.secret);
        bytes[4..20].copy_from_slice(&digest);
        self.out.push_back((to, bytes));
    }

    fn release(&mut self) {
        self.hold = false;
        for (to, request) in core::mem::take(&mut self.held) {
            self.answer(to, &request, Code::AccessAccept);
        }
    }

    /// Accounting records of `status` (1 Start, 2 Stop) with their cause.
    fn records(&self, status: u32) -> Vec<Option<u32>> {
        self.accounting
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, c)| *c)
            .collect()
    }
}

enum Party {
    Lns(Box<Node>),
    Subscribers(Box<subscriber::Node>),
    Radius(FakeRadius),
}

#[derive(Debug)]
enum Ev {
    Lns(Event),
    Other,
}

impl sim::Node for Party {
    type Event = Ev;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        match self {
            Party::Lns(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
            Party::Subscribers(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
            Party::Radius(r) => {
                let Ok(packet) = Packet::new_checked(payload) else {
                    return;
                };
                match packet.code() {
                    Code::AccessRequest => {
                        r.access_requests += 1;
                        if r.hold {
                            r.held.push((from, payload.to_vec()));
                        } else {
                            r.answer(from, payload, Code::AccessAccept);
                        }
                    }
                    Code::AccountingRequest => {
                        let status = packet
                            .attribute(AttributeType::ACCT_STATUS_TYPE)
                            .and_then(value_u32)
                            .unwrap();
                        let cause = packet
                            .attribute(AttributeType::ACCT_TERMINATE_CAUSE)
                            .and_then(value_u32);
                        r.accounting.push((status, cause));
                        r.answer(from, payload, Code::AccountingResponse);
                    }
                    _ => {}
                }
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Party::Lns(n) => sim::Node::poll_transmit(&mut **n, now, buf),
            Party::Subscribers(n) => sim::Node::poll_transmit(&mut **n, now, buf),
            Party::Radius(r) => {
                let (to, bytes) = r.out.pop_front()?;
                buf.clear();
                buf.extend_from_slice(&bytes);
                Some(to)
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Lns(n) => sim::Node::poll_timeout(&**n),
            Party::Subscribers(n) => sim::Node::poll_timeout(&**n),
            Party::Radius(_) => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Lns(n) => sim::Node::handle_timeout(&mut **n, now),
            Party::Subscribers(n) => sim::Node::handle_timeout(&mut **n, now),
            Party::Radius(_) => {}
        }
    }

    fn poll_event(&mut self) -> Option<Ev> {
        match self {
            Party::Lns(n) => sim::Node::poll_event(&mut **n).map(Ev::Lns),
            Party::Subscribers(n) => sim::Node::poll_event(&mut **n).map(|_| Ev::Other),
            Party::Radius(_) => None,
        }
    }
}

fn radius_client(server: SocketAddrV4, secret: &[u8], seed: u64) -> Authenticator {
    let server = Server {
        address: SocketAddr::V4(server),
        secret: secret.to_vec(),
    };
    let mut config = ClientConfig::new(vec![server.clone()], vec![server]);
    config.nas_identifier = Some("lns".to_owned());
    Authenticator::Radius(Box::new(radius::Client::new(config, rng(seed)).unwrap()))
}

struct Lab {
    sim: Sim<Party>,
    lns: NodeId,
}

impl Lab {
    fn new(authenticator: Authenticator) -> Lab {
        let mut sim = Sim::new(rng(99), LinkConditions::delay(Duration::from_millis(5)));
        let config = super::Config::new("lns", Ipv4Addr::new(10, 64, 0, 1));
        let node = Node::new(
            config,
            authenticator,
            AddressPool::parse(&["10.64.0.0/24"]).unwrap(),
            rng(1),
        )
        .unwrap();
        let lns = sim.add_node(LNS, Party::Lns(Box::new(node)));
        sim.add_node(OLD_RADIUS, Party::Radius(FakeRadius::new(b"old-secret")));
        sim.add_node(NEW_RADIUS, Party::Radius(FakeRadius::new(b"new-secret")));
        Lab { sim, lns }
    }

    /// One subscriber `user`/`password` behind a LAC at `lac`, calling now.
    fn call(&mut self, lac: SocketAddrV4, user: &str, password: &str, seed: u64) -> NodeId {
        let config = subscriber::Config::new(LNS, 1, user, password, AuthChoice::Chap);
        let mut node = subscriber::Node::new(config, rng(seed)).unwrap();
        node.start(self.sim.now()).unwrap();
        self.sim.add_node(lac, Party::Subscribers(Box::new(node)))
    }

    fn lns_mut(&mut self) -> &mut Node {
        match self.sim.node_mut(self.lns) {
            Party::Lns(n) => n,
            _ => unreachable!(),
        }
    }

    fn radius(&self, id: usize) -> &FakeRadius {
        match self.sim.node(NodeId(id)) {
            Party::Radius(r) => r,
            _ => unreachable!(),
        }
    }

    fn radius_mut(&mut self, id: usize) -> &mut FakeRadius {
        match self.sim.node_mut(NodeId(id)) {
            Party::Radius(r) => r,
            _ => unreachable!(),
        }
    }

    fn subscribers_mut(&mut self, id: NodeId) -> &mut subscriber::Node {
        match self.sim.node_mut(id) {
            Party::Subscribers(n) => n,
            _ => unreachable!(),
        }
    }

    fn up(sim: &Sim<Party>, id: NodeId) -> usize {
        match sim.node(id) {
            Party::Subscribers(n) => n.up_count(),
            _ => 0,
        }
    }

    #[track_caller]
    fn run_until(&mut self, what: &str, done: impl Fn(&Sim<Party>) -> bool) {
        let deadline = self.sim.now() + Duration::from_secs(20);
        assert!(self.sim.run_until(deadline, done).unwrap(), "never: {what}");
    }

    fn ended(&self) -> Vec<(EndCause, TerminateCause)> {
        self.sim
            .events(self.lns)
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Lns(Event::SessionDown(s)) => Some((s.cause.clone(), s.terminate_cause)),
                _ => None,
            })
            .collect()
    }
}

/// The node ids of the two servers, in the order [`Lab::new`] adds them.
const OLD: usize = 1;
const NEW: usize = 2;
const START: u32 = 1;
const STOP: u32 = 2;

#[test]
fn a_new_radius_client_takes_new_logins_while_the_old_one_finishes_its_own() {
    let mut lab = Lab::new(radius_client(OLD_RADIUS, b"old-secret", 5));

    // A comes up through the old server.
    let a = lab.call(LAC_A, "alice", "pw", 11);
    lab.run_until("A up", |sim| Lab::up(sim, a) == 1);
    lab.run_until("A's Start", |sim| match sim.node(NodeId(OLD)) {
        Party::Radius(r) => r.records(START).len() == 1,
        _ => false,
    });

    // B's Access-Request reaches the old server, which sits on it.
    lab.radius_mut(OLD).hold = true;
    let b = lab.call(LAC_B, "bob", "pw", 12);
    lab.run_until("B's Access-Request held", |sim| {
        match sim.node(NodeId(OLD)) {
            Party::Radius(r) => !r.held.is_empty(),
            _ => false,
        }
    });

    // The reload.
    let now = lab.sim.now();
    let node = lab.lns_mut();
    node.set_authenticator(now, radius_client(NEW_RADIUS, b"new-secret", 6));
    assert_eq!(node.retired_authenticators(), 1);

    // C logs in through the new server, and is accounted there.
    let c = lab.call(LAC_C, "carol", "pw", 13);
    lab.run_until("C up", |sim| Lab::up(sim, c) == 1);
    lab.run_until("C's Start", |sim| match sim.node(NodeId(NEW)) {
        Party::Radius(r) => r.records(START).len() == 1,
        _ => false,
    });
    assert_eq!(lab.radius(NEW).access_requests, 1);

    // The old server answers B at last (within the client's retries): B
    // is let in on that answer, and accounted with the old server that
    // accepted it. A never went down.
    lab.radius_mut(OLD).release();
    lab.run_until("B up", |sim| Lab::up(sim, b) == 1);
    lab.run_until("B's Start", |sim| match sim.node(NodeId(OLD)) {
        Party::Radius(r) => r.records(START).len() == 2,
        _ => false,
    });
    assert_eq!(Lab::up(&lab.sim, a), 1);
    assert!(lab.ended().is_empty(), "{:?}", lab.ended());
    assert_eq!(lab.lns_mut().retired_authenticators(), 1);

    // A and B hang up: their Stops go to the old server, which then has
    // nothing left and is let go.
    let now = lab.sim.now();
    lab.subscribers_mut(a).hang_up_all(now);
    lab.subscribers_mut(b).hang_up_all(now);
    lab.run_until("A's and B's Stops", |sim| match sim.node(NodeId(OLD)) {
        Party::Radius(r) => r.records(STOP).len() == 2,
        _ => false,
    });
    lab.sim.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(lab.lns_mut().retired_authenticators(), 0);
    assert!(lab.radius(NEW).records(STOP).is_empty());

    // The stop: C's Stop says Admin-Reboot (7), at the new server.
    let now = lab.sim.now();
    assert_eq!(lab.lns_mut().shut_down_sessions(now), 1);
    lab.run_until("C's Stop", |sim| match sim.node(NodeId(NEW)) {
        Party::Radius(r) => r.records(STOP).len() == 1,
        _ => false,
    });
    assert_eq!(lab.radius(NEW).records(STOP), [Some(7)]);
    assert_eq!(
        lab.ended().last(),
        Some(&(EndCause::Shutdown, TerminateCause::AdminReboot))
    );
    lab.sim.run_for(Duration::from_millis(100)).unwrap();
    assert!(lab.lns_mut().radius_settled());
    assert_eq!(lab.lns_mut().session_count(), 0);
}

#[test]
fn a_new_users_file_lets_added_users_in_and_keeps_removed_users_sessions() {
    let users = |text| Authenticator::local(Users::parse(text, "users").unwrap());
    let mut lab = Lab::new(users("alice pw\n"));
    let a = lab.call(LAC_A, "alice", "pw", 11);
    lab.run_until("alice up", |sim| Lab::up(sim, a) == 1);

    let now = lab.sim.now();
    let node = lab.lns_mut();
    node.set_authenticator(now, users("bob pw\n"));
    // Nothing in flight with a users file: nothing to drain.
    assert_eq!(node.retired_authenticators(), 0);

    let b = lab.call(LAC_B, "bob", "pw", 12);
    lab.run_until("bob up", |sim| Lab::up(sim, b) == 1);
    let c = lab.call(LAC_C, "alice", "pw", 13);
    lab.run_until("the second alice refused", |sim| {
        sim.events(NodeId(0))
            .iter()
            .any(|(_, e)| matches!(e, Ev::Lns(Event::AuthRejected { .. })))
    });
    lab.sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(Lab::up(&lab.sim, a), 1, "alice's first session stays up");
    assert_eq!(Lab::up(&lab.sim, c), 0);
    // The one session that ended is the refused one; the stop ends the
    // other two with Admin-Reboot.
    assert_eq!(lab.ended().len(), 1);
    let now = lab.sim.now();
    assert_eq!(lab.lns_mut().shut_down_sessions(now), 2);
    lab.sim.run_for(Duration::from_millis(100)).unwrap();
    let ended = lab.ended();
    assert_eq!(
        ended[1..],
        [
            (EndCause::Shutdown, TerminateCause::AdminReboot),
            (EndCause::Shutdown, TerminateCause::AdminReboot)
        ]
    );
}

#[test]
fn ha_commands_without_ha_say_so_and_a_flapping_load_config_is_refused() {
    let pool = || AddressPool::parse(&["100.64.0.0/24"]).unwrap();
    let users = || Authenticator::local(Users::parse("sub pw\n", "users").unwrap());
    let config = super::Config::new("lns", Ipv4Addr::new(100, 64, 0, 1));
    let mut node = Node::new(config.clone(), users(), pool(), rng(1)).unwrap();
    let now = Instant::ZERO;
    assert_eq!(
        node.ha_switchover(now, super::SwitchoverType::All, &[]),
        Err(super::HaError::NotConfigured)
    );
    assert_eq!(node.ha_drain(now), Err(super::HaError::NotConfigured));
    assert_eq!(node.ha_failback(now), Err(super::HaError::NotConfigured));
    assert_eq!(node.observe_load(now, super::LoadSample::default()), None);
    assert!(node.ha_status().is_none());

    // HA with no LAC yet: nobody to ask.
    let mut ha = super::HaConfig::new(Ipv4Addr::new(10, 0, 0, 1), Vec::new());
    ha.advertise = vec![Ipv4Addr::new(10, 0, 0, 2)];
    let mut node = Node::new(
        super::Config {
            ha: Some(ha.clone()),
            ..config.clone()
        },
        users(),
        pool(),
        rng(2),
    )
    .unwrap();
    assert_eq!(node.ha_drain(now), Err(super::HaError::NoHaLac));
    let status = node.ha_status().unwrap();
    assert!(!status.draining && !status.overloaded && status.lacs.is_empty());

    // Watermarks that would flap are a configuration error.
    ha.load = Some(super::LoadConfig {
        sessions: Some(super::Watermarks {
            high: 10.0,
            low: 10.0,
        }),
        ..super::LoadConfig::default()
    });
    let e = Node::new(
        super::Config {
            ha: Some(ha),
            ..config
        },
        users(),
        pool(),
        rng(3),
    )
    .unwrap_err();
    assert_eq!(e.field, "ha.load");
}

//! The LNS node against simulated subscribers (a LAC with PPP clients), on
//! a simulated lossy network: many sessions through loss, echo failure and
//! its accounting, bad passwords, a peer that Naks IPCP forever, an
//! exhausted pool, PAP and CHAP with the local users file, the
//! authenticator's timeouts and an operator's clear.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use std::collections::HashSet;

use controlplane::aaa::pool::AddressPool;
use controlplane::aaa::radius::{AcctStatus, TerminateCause};
use controlplane::aaa::users::Users;
use controlplane::aaa::Authenticator;
use controlplane::l2tp::codes::cdn;
use controlplane::lns::{self, EndCause, EndedSession, EstablishedSession};
use controlplane::ppp::{AuthMethod, DownCause};
use controlplane::sim::{self, Datagram, LinkConditions, NodeId, Sim, Tamper};
use controlplane::subscriber::{self, AuthChoice, DownReason, SubscriberUp};
use controlplane::time::Instant;
use dataplane::wire::ppp::Protocol;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1701);
const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1701);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);

const USERS: &str = "\
alice   alice-pw
bob     bob-pw      address=10.99.0.7
carol   carol-pw    session-timeout=5
dave    dave-pw     idle-timeout=20
";

fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

/// The simulation holds one node type: either side.
enum Party {
    Lns(Box<lns::Node>),
    Subscribers(Box<subscriber::Node>),
}

#[derive(Debug)]
enum Ev {
    Lns(lns::Event),
    Sub(subscriber::Event),
}

impl sim::Node for Party {
    type Event = Ev;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        match self {
            Party::Lns(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
            Party::Subscribers(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Party::Lns(n) => sim::Node::poll_transmit(&mut **n, now, buf),
            Party::Subscribers(n) => sim::Node::poll_transmit(&mut **n, now, buf),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Lns(n) => sim::Node::poll_timeout(&**n),
            Party::Subscribers(n) => sim::Node::poll_timeout(&**n),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Lns(n) => sim::Node::handle_timeout(&mut **n, now),
            Party::Subscribers(n) => sim::Node::handle_timeout(&mut **n, now),
        }
    }

    fn poll_event(&mut self) -> Option<Ev> {
        match self {
            Party::Lns(n) => sim::Node::poll_event(&mut **n).map(Ev::Lns),
            Party::Subscribers(n) => sim::Node::poll_event(&mut **n).map(Ev::Sub),
        }
    }
}

struct Lab {
    sim: Sim<Party>,
    lns: NodeId,
    subs: NodeId,
}

fn lns_config() -> lns::Config {
    let mut config = lns::Config::new("lns", GATEWAY);
    config.primary_dns = Some(Ipv4Addr::new(10, 0, 1, 53));
    config
}

impl Lab {
    fn new(
        conditions: LinkConditions,
        pool: &str,
        lns_config: lns::Config,
        subs: subscriber::Config,
    ) -> Lab {
        let mut sim = Sim::new(rng(99), conditions);
        sim.max_steps = 20_000_000;
        let users = Users::parse(USERS, "users").unwrap();
        let node = lns::Node::new(
            lns_config,
            Authenticator::local(users),
            AddressPool::parse(&[pool]).unwrap(),
            rng(1),
        )
        .unwrap();
        let lns = sim.add_node(LNS, Party::Lns(Box::new(node)));
        let subs = sim.add_node(
            LAC,
            Party::Subscribers(Box::new(subscriber::Node::new(subs, rng(2)).unwrap())),
        );
        let now = sim.now();
        let Party::Subscribers(s) = sim.node_mut(subs) else {
            unreachable!()
        };
        s.start(now).unwrap();
        Lab { sim, lns, subs }
    }

    fn lns(&self) -> &lns::Node {
        match self.sim.node(self.lns) {
            Party::Lns(n) => n,
            Party::Subscribers(_) => unreachable!(),
        }
    }

    fn lns_mut(&mut self) -> &mut lns::Node {
        match self.sim.node_mut(self.lns) {
            Party::Lns(n) => n,
            Party::Subscribers(_) => unreachable!(),
        }
    }

    fn subs(&self) -> &subscriber::Node {
        match self.sim.node(self.subs) {
            Party::Subscribers(n) => n,
            Party::Lns(_) => unreachable!(),
        }
    }

    fn subs_mut(&mut self) -> &mut subscriber::Node {
        match self.sim.node_mut(self.subs) {
            Party::Subscribers(n) => n,
            Party::Lns(_) => unreachable!(),
        }
    }

    /// Run until `n` subscribers are up (fails after `limit`).
    #[track_caller]
    fn until_up(&mut self, n: usize, limit: Duration) {
        let deadline = self.sim.now() + limit;
        let (subs, lns) = (self.subs, self.lns);
        // Both ends: the subscriber's IPCP may open a moment before ours.
        let up = self
            .sim
            .run_until(deadline, |sim| match (sim.node(subs), sim.node(lns)) {
                (Party::Subscribers(s), Party::Lns(l)) => {
                    s.up_count() >= n && l.established_count() >= n
                }
                _ => false,
            })
            .unwrap();
        assert!(
            up,
            "only {} of {n} subscribers up after {limit:?}; LNS: {:?}; first ended: {:?}",
            self.subs().up_count(),
            self.lns(),
            self.ended().first()
        );
    }

    fn lns_events(&self) -> Vec<(Instant, &lns::Event)> {
        self.sim
            .events(self.lns)
            .iter()
            .filter_map(|(t, e)| match e {
                Ev::Lns(e) => Some((*t, e)),
                Ev::Sub(_) => None,
            })
            .collect()
    }

    fn sub_events(&self) -> Vec<(Instant, &subscriber::Event)> {
        self.sim
            .events(self.subs)
            .iter()
            .filter_map(|(t, e)| match e {
                Ev::Sub(e) => Some((*t, e)),
                Ev::Lns(_) => None,
            })
            .collect()
    }

    fn established(&self) -> Vec<&EstablishedSession> {
        self.lns_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                lns::Event::SessionEstablished(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    fn ended(&self) -> Vec<&EndedSession> {
        self.lns_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                lns::Event::SessionDown(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    fn subscribers_up(&self) -> Vec<&SubscriberUp> {
        self.sub_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                subscriber::Event::SessionUp(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    fn subscriber_downs(&self) -> Vec<(&DownReason, bool)> {
        self.sub_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                subscriber::Event::SessionDown { reason, was_up, .. } => Some((reason, *was_up)),
                _ => None,
            })
            .collect()
    }

    fn accounting(&self) -> Vec<(AcctStatus, Option<TerminateCause>)> {
        self.lns_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                lns::Event::Accounting { status, cause, .. } => Some((*status, *cause)),
                _ => None,
            })
            .collect()
    }

    /// Run until the LNS has ended `n` sessions.
    #[track_caller]
    fn until_ended(&mut self, n: usize, limit: Duration) {
        let deadline = self.sim.now() + limit;
        let lns = self.lns;
        let done = self
            .sim
            .run_until(deadline, |sim| {
                sim.events(lns)
                    .iter()
                    .filter(|(_, e)| matches!(e, Ev::Lns(lns::Event::SessionDown(_))))
                    .count()
                    >= n
            })
            .unwrap();
        assert!(done, "LNS ended only {:?} sessions", self.ended());
    }
}

fn perfect() -> LinkConditions {
    LinkConditions::delay(Duration::from_millis(5))
}

#[test]
fn a_thousand_sessions_over_one_tunnel_come_up_under_five_percent_loss() {
    const N: usize = 1000;
    let conditions = LinkConditions {
        loss: 0.05,
        jitter: Duration::from_millis(2),
        ..LinkConditions::delay(Duration::from_millis(5))
    };
    // Three echoes lost in a row happen now and then at 5% loss each way
    // (about once per 1,000 sessions every 10 s); five do not, in the time
    // this takes. Setup is what is measured here.
    let mut subs = subscriber::Config::new(LNS, N, "alice", "alice-pw", AuthChoice::Chap);
    subs.ppp.lcp.echo_failures = 5;
    let mut config = lns_config();
    config.ppp.lcp.echo_failures = 5;
    let mut lab = Lab::new(conditions, "10.64.0.0/20", config, subs);
    let start = lab.sim.now();
    lab.until_up(N, Duration::from_secs(600));
    let elapsed = lab.sim.now().saturating_duration_since(start);

    let established = lab.established();
    assert_eq!(established.len(), N);
    let addresses: HashSet<Ipv4Addr> = established.iter().map(|s| s.address).collect();
    assert_eq!(addresses.len(), N, "every session has its own address");
    let pool = lab.lns().pool();
    assert!(addresses.iter().all(|a| pool.contains(*a)));
    assert_eq!(pool.in_use(), N as u64);
    assert!(established
        .iter()
        .all(|s| s.link.auth_method == Some(AuthMethod::ChapMd5) && s.username == "alice"));
    // What the subscribers were told matches what the LNS assigned.
    let told: HashSet<Ipv4Addr> = lab.subscribers_up().iter().map(|s| s.address).collect();
    assert_eq!(told, addresses);
    assert_eq!(lab.subs().endpoint().tunnel_count(), 1);
    assert!(
        lab.ended().is_empty(),
        "no session failed: {:?}",
        lab.ended()
    );

    let mut setup: Vec<Duration> = lab.subscribers_up().iter().map(|s| s.setup_time).collect();
    setup.sort();
    let rate = N as f64 / elapsed.as_secs_f64();
    println!(
        "{N} sessions up over one tunnel, 5% loss, 5 ms one-way: {:.1} s simulated, \
         {rate:.1} sessions/s; setup time median {:?}, p99 {:?}, max {:?}; link {:?}",
        elapsed.as_secs_f64(),
        setup[N / 2],
        setup[N * 99 / 100],
        setup[N - 1],
        lab.sim.stats()
    );
}

#[test]
fn an_echo_failure_ends_the_session_with_lost_carrier_accounting() {
    let subs = subscriber::Config::new(LNS, 1, "alice", "alice-pw", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.until_up(1, Duration::from_secs(10));
    assert_eq!(lab.accounting(), vec![(AcctStatus::Start, None)]);
    let address = lab.established()[0].address;

    lab.sim.partition(LNS, LAC);
    lab.until_ended(1, Duration::from_secs(120));
    let ended = lab.ended()[0].clone();
    assert_eq!(ended.cause, EndCause::Ppp(DownCause::EchoFailure));
    assert_eq!(ended.terminate_cause, TerminateCause::LostCarrier);
    assert_eq!(
        ended.cdn.as_ref().map(|r| r.result),
        Some(cdn::LOST_CARRIER)
    );
    assert!(ended.was_established);
    assert_eq!(
        lab.accounting(),
        vec![
            (AcctStatus::Start, None),
            (AcctStatus::Stop, Some(TerminateCause::LostCarrier))
        ]
    );
    assert!(!lab.lns().pool().is_in_use(address), "address released");
    assert_eq!(lab.lns().session_count(), 0);
}

#[test]
fn a_bad_password_ends_in_chap_failure_and_a_cdn() {
    let subs = subscriber::Config::new(LNS, 1, "alice", "wrong", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.until_ended(1, Duration::from_secs(60));
    let rejected = lab.lns_events().iter().any(
        |(_, e)| matches!(e, lns::Event::AuthRejected { username, .. } if username == "alice"),
    );
    assert!(rejected);
    let ended = lab.ended()[0].clone();
    assert_eq!(ended.cause, EndCause::Ppp(DownCause::AuthFailed));
    assert!(!ended.was_established);
    // The subscriber heard CHAP Failure (its link went down for it) ...
    lab.sim.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(
        lab.subscriber_downs(),
        vec![(&DownReason::Ppp(DownCause::AuthFailed), false)]
    );
    // ... and the L2TP session is gone on both sides: a CDN went one way
    // or crossed the other's.
    assert!(
        ended.cdn.is_some() || lab.subs().endpoint().session_count(lab.subs().tunnels()[0]) == 0
    );
    assert_eq!(
        lab.lns().endpoint().session_count(lab.subs().tunnels()[0]),
        0
    );
    assert!(
        lab.accounting().is_empty(),
        "no accounting without a session"
    );
    assert_eq!(lab.lns().pool().in_use(), 0);
}

/// The subscriber's Configure-Acks of the LNS's IPCP requests, rewritten
/// into Configure-Naks: a peer that Naks forever (RFC 1661 §4.6).
fn nak_every_ipcp_ack(_now: Instant, d: &mut Datagram) -> Tamper {
    let data_message = d.payload.first().is_some_and(|b| b & 0x80 == 0);
    if d.from == LAC && data_message {
        let ipcp = u16::from(Protocol::Ipcp).to_be_bytes();
        let needle = [0xff, 0x03, ipcp[0], ipcp[1], 2];
        if let Some(at) = d.payload.windows(5).position(|w| w == needle) {
            d.payload[at + 4] = 3;
        }
    }
    Tamper::Pass
}

#[test]
fn a_peer_that_keeps_naking_ipcp_is_stopped_by_max_failure() {
    let subs = subscriber::Config::new(LNS, 1, "alice", "alice-pw", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.sim.set_adversary(Some(Box::new(nak_every_ipcp_ack)));
    lab.until_ended(1, Duration::from_secs(120));
    let ended = lab.ended()[0].clone();
    assert_eq!(
        ended.cause,
        EndCause::Ppp(DownCause::MaxFailure(Protocol::Ipcp))
    );
    assert!(!ended.was_established);
    assert!(ended.cdn.is_some());
    assert_eq!(lab.lns().pool().in_use(), 0, "address released");
}

#[test]
fn an_exhausted_pool_fails_the_extra_session_cleanly() {
    // A /30 holds two usable addresses; three subscribers want one.
    let subs = subscriber::Config::new(LNS, 3, "alice", "alice-pw", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/30", lns_config(), subs);
    lab.until_ended(1, Duration::from_secs(30));
    lab.sim.run_for(Duration::from_secs(30)).unwrap();
    assert_eq!(lab.established().len(), 2);
    assert_eq!(lab.subs().up_count(), 2, "the others are unaffected");
    let ended = lab.ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].cause, EndCause::PoolExhausted);
    assert_eq!(
        ended[0].cdn.as_ref().map(|r| r.result),
        Some(cdn::NO_FACILITIES_TEMPORARY)
    );
    assert!(lab
        .lns_events()
        .iter()
        .any(|(_, e)| matches!(e, lns::Event::AddressUnavailable { .. })));
    assert_eq!(lab.lns().pool().in_use(), 2);
    assert_eq!(lab.lns().established_count(), 2);
}

#[test]
fn pap_with_the_users_file_gets_the_users_address() {
    let subs = subscriber::Config::new(LNS, 1, "bob", "bob-pw", AuthChoice::Pap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.until_up(1, Duration::from_secs(10));
    let s = lab.established()[0].clone();
    assert_eq!(s.link.auth_method, Some(AuthMethod::Pap));
    assert_eq!(s.username, "bob");
    assert_eq!(
        s.address,
        Ipv4Addr::new(10, 99, 0, 7),
        "address= of the users file"
    );
    let up = lab.subscribers_up()[0].clone();
    assert_eq!(up.address, Ipv4Addr::new(10, 99, 0, 7));
    assert_eq!(up.gateway, Some(GATEWAY));
    assert_eq!(up.dns.0, Some(Ipv4Addr::new(10, 0, 1, 53)));
    assert_eq!(up.local_magic, s.link.lcp_peer.magic_number);
    assert_eq!(up.peer_magic, s.link.lcp_local.magic_number);

    // The subscriber hangs up: Terminate-Request, User-Request.
    let now = lab.sim.now();
    lab.subs_mut().hang_up(now, 0);
    lab.until_ended(1, Duration::from_secs(30));
    assert_eq!(lab.ended()[0].terminate_cause, TerminateCause::UserRequest);
    assert!(!lab.lns().pool().is_in_use(Ipv4Addr::new(10, 99, 0, 7)));
}

#[test]
fn chap_with_the_users_file_gets_a_pool_address() {
    let subs = subscriber::Config::new(LNS, 1, "alice", "alice-pw", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.until_up(1, Duration::from_secs(10));
    let s = lab.established()[0].clone();
    assert_eq!(s.link.auth_method, Some(AuthMethod::ChapMd5));
    assert!(lab.lns().pool().contains(s.address));
    assert_eq!(
        s.tunnel_ids.0,
        lab.lns().endpoint().tunnel_ids(s.session.tunnel).unwrap().0
    );

    // The operator clears it: Admin-Reset, CDN result 3.
    let now = lab.sim.now();
    assert!(lab.lns_mut().clear_session(now, s.session));
    lab.until_ended(1, Duration::from_secs(30));
    let ended = lab.ended()[0].clone();
    assert_eq!(ended.terminate_cause, TerminateCause::AdminReset);
    assert_eq!(
        ended.cdn.as_ref().map(|r| r.result),
        Some(cdn::ADMINISTRATIVE)
    );
    lab.sim.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(lab.subs().down_count(), 1);
}

#[test]
fn session_timeout_and_idle_timeout_are_enforced() {
    let subs = subscriber::Config::new(LNS, 1, "carol", "carol-pw", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.until_up(1, Duration::from_secs(10));
    let up_at = lab.sim.now();
    lab.until_ended(1, Duration::from_secs(30));
    let ended = lab.ended()[0].clone();
    assert_eq!(ended.cause, EndCause::SessionTimeout);
    assert_eq!(ended.terminate_cause, TerminateCause::SessionTimeout);
    let after = lab.sim.now().saturating_duration_since(up_at);
    assert!(
        after >= Duration::from_secs(5) && after < Duration::from_secs(8),
        "{after:?}"
    );

    // Echoes are not traffic: dave goes idle after 20 s.
    let subs = subscriber::Config::new(LNS, 1, "dave", "dave-pw", AuthChoice::Chap);
    let mut lab = Lab::new(perfect(), "10.64.0.0/24", lns_config(), subs);
    lab.until_up(1, Duration::from_secs(10));
    lab.until_ended(1, Duration::from_secs(60));
    assert_eq!(lab.ended()[0].terminate_cause, TerminateCause::IdleTimeout);
}

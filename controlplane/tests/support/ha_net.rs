//! The simulated HA network's addresses and randomness, shared by the HA
//! simulation tests: one LAC and two peered LNSs on `10.0.0.0/24`, each
//! listening on the L2TP port (RFC 2661 §8.1: UDP 1701). Each test binary
//! that needs them includes this file:
//! `#[path = "support/ha_net.rs"] mod ha_net;`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use controlplane::l2tp::{Config, Retransmission};
use controlplane::sim::{self, Sim};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The LAC.
pub(crate) const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1701);
/// The primary LNS, where the subscribers' sessions start.
pub(crate) const LNS1: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 1701);
/// The primary's peer, which takes its sessions over.
pub(crate) const LNS2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 12), 1701);

/// `config` with fast failure detection (DESIGN.md §1 item 4): Hello every
/// 100 ms, the peer dead after 300 ms of silence, three retransmissions
/// 100 ms apart.
#[allow(dead_code, reason = "not every test that includes this file uses it")]
pub(crate) fn fast_failure_detection(config: Config) -> Config {
    Config {
        hello_interval: Some(Duration::from_millis(100)),
        dead_interval: Some(Duration::from_millis(300)),
        retransmission: Retransmission {
            initial: Duration::from_millis(100),
            cap: Duration::from_millis(100),
            max_retries: 3,
        },
        ack_delay: Duration::from_millis(10),
        ..config
    }
}

/// A seeded random-number source, so a run replays exactly.
pub(crate) fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

/// LNS1 dies, as far as the network can tell: cut off from the LAC and
/// from its peer.
#[allow(
    dead_code,
    reason = "not every test that includes this file kills LNS1"
)]
pub(crate) fn kill_lns1<N: sim::Node>(sim: &mut Sim<N>) {
    sim.partition(LAC, LNS1);
    sim.partition(LNS1, LNS2);
}

/// LNS1 comes back: the LAC and its peer reach it again.
#[allow(
    dead_code,
    reason = "not every test that includes this file revives LNS1"
)]
pub(crate) fn revive_lns1<N: sim::Node>(sim: &mut Sim<N>) {
    sim.heal(LAC, LNS1);
    sim.heal(LNS1, LNS2);
}

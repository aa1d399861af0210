//! The parties of a simulated LAC network, shared by the LAC simulation
//! tests: LNS nodes and one LAC site (a `lac::Node` with its subscribers),
//! held in one enum so a `Sim` can run them all, each test with its own
//! LNS and site types. Each test binary that needs them includes this
//! file after [`ha_net`](crate::ha_net) and
//! [`pppoe_subscribers`](crate::pppoe_subscribers):
//! `#[path = "support/lac_parties.rs"] mod lac_parties;`.

use std::net::SocketAddr;

use controlplane::lac::{self, LnsEntry};
use controlplane::lns;
use controlplane::sim::{self, NodeId, Sim};
use controlplane::time::Instant;

use crate::ha_net::{LAC, LNS1, LNS2};
use crate::pppoe_subscribers::LAC_MAC;

/// The LAC site's configuration: at [`LAC`], its access port at
/// [`LAC_MAC`], LNS1 preferred and LNS2 next.
pub(crate) fn site_config() -> lac::Config {
    let mut config = lac::Config::new(
        "lac",
        LAC_MAC,
        vec![
            LnsEntry {
                address: LNS1,
                preference: 0,
                weight: 1,
            },
            LnsEntry {
                address: LNS2,
                preference: 1,
                weight: 1,
            },
        ],
    );
    config.local_address = LAC;
    config
}

/// What the LAC site's owner (a fast path) does a moment after the node
/// reports something (`lac::Config::defer_connect`: connects an answered
/// call): each item with the instant it is due.
pub(crate) struct Scheduled<T>(Vec<(T, Instant)>);

impl<T> Scheduled<T> {
    /// Nothing scheduled.
    pub(crate) fn new() -> Scheduled<T> {
        Scheduled(Vec::new())
    }

    /// `item`, due at `at`.
    pub(crate) fn push(&mut self, item: T, at: Instant) {
        self.0.push((item, at));
    }

    /// The items due by `now`, in the order they were scheduled; the
    /// others stay.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<T> {
        let (due, later): (Vec<_>, Vec<_>) = core::mem::take(&mut self.0)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.0 = later;
        due.into_iter().map(|(item, _)| item).collect()
    }

    /// When the next item is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.0.iter().map(|(_, at)| *at).min()
    }
}

/// A party on the simulated network: an LNS (`L`) or the LAC site (`S`).
pub(crate) enum Party<L, S> {
    Lns(Box<L>),
    Site(Box<S>),
}

/// What a party reports: the LNS's or the LAC's events.
#[derive(Debug)]
pub(crate) enum PartyEvent {
    Lns(lns::Event),
    Lac(lac::Event),
}

impl<L, S> Party<L, S> {
    /// The LAC site this party is.
    pub(crate) fn site(&self) -> &S {
        match self {
            Party::Site(s) => s,
            Party::Lns(_) => unreachable!("an LNS is not the site"),
        }
    }

    /// The LAC site this party is, to change.
    pub(crate) fn site_mut(&mut self) -> &mut S {
        match self {
            Party::Site(s) => s,
            Party::Lns(_) => unreachable!("an LNS is not the site"),
        }
    }

    /// The LNS this party is.
    pub(crate) fn lns(&self) -> &L {
        match self {
            Party::Lns(n) => n,
            Party::Site(_) => unreachable!("the site is not an LNS"),
        }
    }

    /// The LNS this party is, to change.
    pub(crate) fn lns_mut(&mut self) -> &mut L {
        match self {
            Party::Lns(n) => n,
            Party::Site(_) => unreachable!("the site is not an LNS"),
        }
    }
}

impl<L, S> sim::Node for Party<L, S>
where
    L: sim::Node<Event = lns::Event>,
    S: sim::Node<Event = lac::Event>,
{
    type Event = PartyEvent;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        match self {
            Party::Lns(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
            Party::Site(n) => sim::Node::handle_datagram(&mut **n, now, from, payload),
        }
    }

    fn handle_unreachable(&mut self, now: Instant, remote: SocketAddr, refused: &[u8]) {
        match self {
            Party::Lns(n) => sim::Node::handle_unreachable(&mut **n, now, remote, refused),
            Party::Site(n) => sim::Node::handle_unreachable(&mut **n, now, remote, refused),
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Party::Lns(n) => sim::Node::poll_transmit(&mut **n, now, buf),
            Party::Site(n) => sim::Node::poll_transmit(&mut **n, now, buf),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Lns(n) => sim::Node::poll_timeout(&**n),
            Party::Site(n) => sim::Node::poll_timeout(&**n),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Lns(n) => sim::Node::handle_timeout(&mut **n, now),
            Party::Site(n) => sim::Node::handle_timeout(&mut **n, now),
        }
    }

    fn poll_event(&mut self) -> Option<PartyEvent> {
        match self {
            Party::Lns(n) => sim::Node::poll_event(&mut **n).map(PartyEvent::Lns),
            Party::Site(n) => sim::Node::poll_event(&mut **n).map(PartyEvent::Lac),
        }
    }
}

/// The events the LAC site `site` reported.
pub(crate) fn lac_events<L, S>(sim: &Sim<Party<L, S>>, site: NodeId) -> Vec<&lac::Event>
where
    L: sim::Node<Event = lns::Event>,
    S: sim::Node<Event = lac::Event>,
{
    sim.events(site)
        .iter()
        .filter_map(|(_, e)| match e {
            PartyEvent::Lac(e) => Some(e),
            PartyEvent::Lns(_) => None,
        })
        .collect()
}

/// The events the LNS `lns` reported.
pub(crate) fn lns_events<L, S>(sim: &Sim<Party<L, S>>, lns: NodeId) -> Vec<&lns::Event>
where
    L: sim::Node<Event = lns::Event>,
    S: sim::Node<Event = lac::Event>,
{
    sim.events(lns)
        .iter()
        .filter_map(|(_, e)| match e {
            PartyEvent::Lns(e) => Some(e),
            PartyEvent::Lac(_) => None,
        })
        .collect()
}

//! Emulated PPPoE subscribers on one Ethernet port, sans-IO.
//!
//! Subscriber *n* has the MAC address 02:00:00 followed by the 24 bits of
//! `0x100000 + n` (02:00:00:10:00:00 for the first: clear of the
//! hand-written 02:00:00:00:00:0x addresses tests give access
//! concentrators), the user name `sub{n}` and the configured password.
//! It runs PPPoE discovery ([`controlplane::pppoe::Client`]), then a PPP
//! client link ([`PppLink`], [`Role::Client`]) over the session
//! (RFC 2516 §6), and is up when IPCP is.
//!
//! Bring-up is paced like [`controlplane::subscriber::Node`]: at most
//! [`EmulatorConfig::max_setting_up`] subscribers between the first PADI
//! and PPP up (or failure); the next starts when one finishes.
//!
//! For the HA tests every subscriber records its flaps (down after having
//! been up) and renegotiations: any LCP or IPCP Configure-Request received
//! while it is up means the server side started over, which a switchover
//! must never cause.
//!
//! Frames in with [`Emulator::handle_frame`] (PPP control and discovery;
//! the caller takes the data frames first), out with
//! [`Emulator::poll_frame`]; timers with [`Emulator::poll_timeout`] and
//! [`Emulator::handle_timeout`]. A subscriber that goes down stays down
//! (no redial): the report counts it.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::{BTreeSet, VecDeque};

use controlplane::ppp::{self, AuthMethod, Credentials, PppConfig, PppLink, Role};
use controlplane::pppoe::{self, ClientEvent};
use controlplane::subscriber::AuthChoice;
use controlplane::time::Instant;
use dataplane::wire::ethernet::{self, Address, EtherType};
use dataplane::wire::ppp::{self as ppp_wire, Protocol};
use dataplane::wire::ppp_cp::Code;
use dataplane::wire::pppoe as pppoe_wire;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use super::traffic;

/// Added to the subscriber number to make the low 24 bits of its MAC.
const MAC_BASE: u32 = 0x10_0000;

/// Subscriber `n`'s MAC address.
pub fn subscriber_mac(n: usize) -> Address {
    let v = MAC_BASE.wrapping_add(n as u32);
    Address([0x02, 0, 0, (v >> 16) as u8, (v >> 8) as u8, v as u8])
}

/// The subscriber a MAC address belongs to, if it is one of ours.
pub fn subscriber_of(mac: Address) -> Option<usize> {
    let b = mac.0;
    if b[..3] != [0x02, 0, 0] {
        return None;
    }
    let v = u32::from(b[3]) << 16 | u32::from(b[4]) << 8 | u32::from(b[5]);
    v.checked_sub(MAC_BASE).map(|n| n as usize)
}

/// How the subscribers behave.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// How many subscribers.
    pub subscribers: usize,
    /// The number of the first (user `sub{first}`).
    pub first: usize,
    /// Everyone's password.
    pub password: String,
    /// Which authentication they agree to.
    pub auth: AuthChoice,
    /// Subscribers between the first PADI and PPP up at most.
    pub max_setting_up: usize,
    /// Discovery's timers and service (the MAC address is each
    /// subscriber's own).
    pub discovery: pppoe::ClientConfig,
    /// The LCP restart timer and echo keepalive.
    pub ppp: PppConfig,
}

impl EmulatorConfig {
    /// `subscribers` subscribers with `password`, CHAP or PAP as `auth`
    /// says, 64 setting up at a time.
    pub fn new(subscribers: usize, password: &str, auth: AuthChoice) -> Self {
        let mut ppp = PppConfig::client(Credentials::default());
        // RFC 2516 §7: no Address/Control in PPPoE, and an MRU of at most
        // 1492 (the Ethernet payload less PPPoE's 6 and PPP's 2 bytes).
        ppp.address_control = false;
        ppp.lcp.mru = 1492;
        ppp.lcp.authenticate_self = match auth {
            AuthChoice::Pap => vec![AuthMethod::Pap],
            AuthChoice::Chap => vec![AuthMethod::ChapMd5],
            AuthChoice::Either => vec![AuthMethod::ChapMd5, AuthMethod::Pap],
        };
        EmulatorConfig {
            subscribers,
            first: 0,
            password: password.to_string(),
            auth,
            max_setting_up: 64,
            discovery: pppoe::ClientConfig::default(),
            ppp,
        }
    }
}

/// Where a subscriber is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not started (waiting for its turn).
    Waiting,
    /// PPPoE discovery.
    Discovery,
    /// PPP is negotiating (first time).
    Negotiating,
    /// IPCP is up.
    Up,
    /// Up before, renegotiating now (no traffic).
    Renegotiating,
    /// Down for good (failed, or flapped).
    Down,
}

/// One subscriber as the report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStatus {
    /// Where it is.
    pub stage: Stage,
    /// Its MAC address.
    pub mac: Address,
    /// The AC's MAC address and the SESSION_ID, once discovery is done.
    pub session: Option<(Address, u16)>,
    /// The address IPCP gave it.
    pub address: Option<Ipv4Addr>,
    /// From the first PADI to the first PPP up.
    pub setup_time: Option<Duration>,
    /// Our LCP magic number.
    pub local_magic: Option<u32>,
    /// The server's LCP magic number.
    pub peer_magic: Option<u32>,
    /// Times it went down after being up.
    pub flaps: u32,
    /// LCP/IPCP Configure-Requests received while up.
    pub renegotiations: u32,
    /// Ever came up.
    pub ever_up: bool,
    /// Why it went down, if it did.
    pub down_cause: Option<String>,
}

/// What the emulator reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Subscriber `index` is up (again, after a renegotiation, if it was).
    Up(usize),
    /// Subscriber `index` is down for good.
    Down(usize),
}

#[derive(Debug)]
struct Subscriber {
    discovery: pppoe::Client,
    link: Option<PppLink>,
    started_at: Instant,
    deadline: Option<Instant>,
    status: SubscriberStatus,
}

/// The emulated subscribers: see the [module documentation](self).
pub struct Emulator {
    config: EmulatorConfig,
    rng: ChaCha8Rng,
    subscribers: Vec<Subscriber>,
    started: usize,
    setting_up: usize,
    deadlines: BTreeSet<(Instant, usize)>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    scratch: Vec<u8>,
    /// Frames addressed to none of ours, or not understood.
    pub ignored_frames: u64,
}

impl core::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Emulator")
            .field("subscribers", &self.subscribers.len())
            .field("started", &self.started)
            .field("setting_up", &self.setting_up)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Subscribers as `config` says; nothing is sent before
    /// [`Emulator::start`].
    pub fn new(config: EmulatorConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let subscribers = (0..config.subscribers)
            .map(|i| {
                let n = config.first + i;
                let mac = subscriber_mac(n);
                let discovery = pppoe::Client::new(
                    pppoe::ClientConfig {
                        mac,
                        ..config.discovery.clone()
                    },
                    &mut rng,
                );
                Subscriber {
                    discovery,
                    link: None,
                    started_at: Instant::ZERO,
                    deadline: None,
                    status: SubscriberStatus {
                        stage: Stage::Waiting,
                        mac,
                        session: None,
                        address: None,
                        setup_time: None,
                        local_magic: None,
                        peer_magic: None,
                        flaps: 0,
                        renegotiations: 0,
                        ever_up: false,
                        down_cause: None,
                    },
                }
            })
            .collect();
        Emulator {
            config,
            rng,
            subscribers,
            started: 0,
            setting_up: 0,
            deadlines: BTreeSet::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            ignored_frames: 0,
        }
    }

    /// Start bringing subscribers up.
    pub fn start(&mut self, now: Instant) {
        self.start_more(now);
    }

    /// How many subscribers.
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Subscriber `index` (0-based within this emulator).
    pub fn status(&self, index: usize) -> Option<&SubscriberStatus> {
        self.subscribers.get(index).map(|s| &s.status)
    }

    /// Subscribers up now (IPCP open).
    pub fn up_count(&self) -> usize {
        self.count(|s| s.stage == Stage::Up)
    }

    /// Subscribers that came up at least once.
    pub fn ever_up_count(&self) -> usize {
        self.count(|s| s.ever_up)
    }

    /// Subscribers done with bring-up: came up, or failed for good.
    pub fn settled_count(&self) -> usize {
        self.count(|s| s.ever_up || s.stage == Stage::Down)
    }

    fn count(&self, f: impl Fn(&SubscriberStatus) -> bool) -> usize {
        self.subscribers.iter().filter(|s| f(&s.status)).count()
    }

    /// Hang everyone up: LCP Terminate-Request and PADT.
    pub fn hang_up_all(&mut self, now: Instant) {
        for index in 0..self.subscribers.len() {
            let sub = &mut self.subscribers[index];
            if let Some(link) = sub.link.as_mut() {
                link.close(now);
            }
            self.service(now, index);
            let sub = &mut self.subscribers[index];
            sub.discovery.close(now);
            self.service(now, index);
        }
    }

    /// A frame from the port. Returns whether it was ours (discovery or
    /// PPP control of one of our sessions).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            self.ignored_frames += 1;
            return false;
        };
        let index = subscriber_of(eth.dst_addr())
            .and_then(|n| n.checked_sub(self.config.first))
            .filter(|&i| i < self.subscribers.len());
        let Some(index) = index else {
            self.ignored_frames += 1;
            return false;
        };
        match eth.ethertype() {
            EtherType::PppoeDiscovery => {
                let taken = self.subscribers[index].discovery.handle_frame(now, frame);
                self.service(now, index);
                taken
            }
            EtherType::PppoeSession => {
                let Some(session) = traffic::read_session(frame) else {
                    self.ignored_frames += 1;
                    return false;
                };
                self.handle_session(now, index, session.src, session.session_id, session.ppp)
            }
            _ => {
                self.ignored_frames += 1;
                false
            }
        }
    }

    fn handle_session(
        &mut self,
        now: Instant,
        index: usize,
        src: Address,
        session_id: u16,
        ppp_frame: &[u8],
    ) -> bool {
        let sub = &mut self.subscribers[index];
        if sub.status.session != Some((src, session_id)) {
            self.ignored_frames += 1;
            return false;
        }
        let Some(link) = sub.link.as_mut() else {
            return false;
        };
        if let Ok(packet) = ppp_wire::Packet::new_checked(ppp_frame) {
            let protocol = packet.protocol();
            let is_configure_request = packet
                .payload()
                .first()
                .is_some_and(|&c| Code::from(c) == Code::ConfigureRequest);
            // The server starting LCP or IPCP over on a link that was up:
            // a renegotiation (what an HA switchover must not cause).
            if matches!(protocol, Protocol::Lcp | Protocol::Ipcp)
                && is_configure_request
                && matches!(sub.status.stage, Stage::Up | Stage::Renegotiating)
            {
                sub.status.renegotiations += 1;
            }
        }
        link.handle_frame(now, ppp_frame);
        self.service(now, index);
        true
    }

    /// The next frame to send, into `buf` (cleared first).
    pub fn poll_frame(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.transmit.pop_front() {
            Some(frame) => {
                buf.clear();
                buf.extend_from_slice(&frame);
                true
            }
            None => false,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Emulator::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// Run what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, index)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, index));
            self.subscribers[index].deadline = None;
            let sub = &mut self.subscribers[index];
            if sub.discovery.poll_timeout().is_some_and(|t| t <= now) {
                sub.discovery.handle_timeout(now);
            }
            if let Some(link) = sub.link.as_mut() {
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    link.handle_timeout(now);
                }
            }
            self.service(now, index);
        }
    }

    fn start_more(&mut self, now: Instant) {
        while self.started < self.subscribers.len()
            && self.setting_up < self.config.max_setting_up.max(1)
        {
            let index = self.started;
            self.started += 1;
            self.setting_up += 1;
            let sub = &mut self.subscribers[index];
            sub.started_at = now;
            sub.status.stage = Stage::Discovery;
            sub.discovery.start(now);
            self.service(now, index);
        }
    }

    /// The subscriber left bring-up (up or failed): let the next start.
    fn settled(&mut self, now: Instant) {
        self.setting_up = self.setting_up.saturating_sub(1);
        self.start_more(now);
    }

    fn new_link(&mut self, index: usize) -> PppLink {
        let mut config = self.config.ppp.clone();
        config.credentials = Credentials {
            username: format!("sub{}", self.config.first + index).into_bytes(),
            password: self.config.password.as_bytes().to_vec(),
        };
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        PppLink::new(Role::Client, config, Box::new(ChaCha8Rng::from_seed(seed)))
    }

    /// Move what the subscriber's discovery and link produced: frames out,
    /// events into stage changes, the next deadline.
    fn service(&mut self, now: Instant, index: usize) {
        loop {
            let mut progress = false;
            let sub = &mut self.subscribers[index];
            while sub.discovery.poll_frame(&mut self.scratch) {
                self.transmit.push_back(core::mem::take(&mut self.scratch));
            }
            if let Some(event) = sub.discovery.poll_event() {
                progress = true;
                self.on_discovery(now, index, event);
            }
            let sub = &mut self.subscribers[index];
            if let (Some(link), Some((ac_mac, session_id))) =
                (sub.link.as_mut(), sub.status.session)
            {
                while let Some(frame) = link.poll_transmit(now) {
                    if let Some(f) = session_frame(sub.status.mac, ac_mac, session_id, &frame) {
                        self.transmit.push_back(f);
                    }
                }
            }
            let event = sub.link.as_mut().and_then(PppLink::poll_event);
            if let Some(event) = event {
                progress = true;
                self.on_link(now, index, event);
            }
            if !progress {
                break;
            }
        }
        let sub = &mut self.subscribers[index];
        let next = [
            sub.discovery.poll_timeout(),
            sub.link.as_ref().and_then(PppLink::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        if sub.deadline != next {
            if let Some(old) = sub.deadline {
                self.deadlines.remove(&(old, index));
            }
            if let Some(new) = next {
                self.deadlines.insert((new, index));
            }
            sub.deadline = next;
        }
    }

    fn on_discovery(&mut self, now: Instant, index: usize, event: ClientEvent) {
        match event {
            ClientEvent::Up { ac_mac, session_id } => {
                let mut link = self.new_link(index);
                let sub = &mut self.subscribers[index];
                sub.status.session = Some((ac_mac, session_id));
                sub.status.stage = Stage::Negotiating;
                // RFC 2516 §6: PPP starts in the Session stage at once.
                link.open(now);
                sub.link = Some(link);
            }
            ClientEvent::Failed(failure) => {
                self.go_down(now, index, format!("PPPoE discovery: {failure:?}"));
            }
            ClientEvent::Down { by_peer, .. } => {
                let sub = &mut self.subscribers[index];
                if let Some(link) = sub.link.as_mut() {
                    link.lower_down(now);
                }
                let cause = if by_peer {
                    "PADT from the access concentrator"
                } else {
                    "hung up"
                };
                self.go_down(now, index, cause.to_string());
            }
        }
    }

    fn on_link(&mut self, now: Instant, index: usize, event: ppp::Event) {
        let sub = &mut self.subscribers[index];
        match event {
            ppp::Event::Up(state) | ppp::Event::Updated(state) => {
                let ipcp = state.ipcp.unwrap_or_default();
                sub.status.address = ipcp.local;
                sub.status.local_magic = Some(state.lcp_local.magic_number);
                sub.status.peer_magic = Some(state.lcp_peer.magic_number);
                if sub.status.stage == Stage::Down {
                    return;
                }
                sub.status.stage = Stage::Up;
                if !sub.status.ever_up {
                    sub.status.ever_up = true;
                    sub.status.setup_time = Some(now.saturating_duration_since(sub.started_at));
                    self.events.push_back(Event::Up(index));
                    self.settled(now);
                } else {
                    self.events.push_back(Event::Up(index));
                }
            }
            ppp::Event::Renegotiating if sub.status.stage == Stage::Up => {
                sub.status.stage = Stage::Renegotiating;
            }
            ppp::Event::Down { cause } => {
                // RFC 2516 §5.5: end the session too.
                sub.discovery.close(now);
                self.go_down(now, index, format!("PPP: {cause:?}"));
            }
            _ => {}
        }
    }

    fn go_down(&mut self, now: Instant, index: usize, cause: String) {
        let sub = &mut self.subscribers[index];
        if sub.status.stage == Stage::Down {
            return;
        }
        let was_setting_up = !sub.status.ever_up && sub.status.stage != Stage::Waiting;
        if sub.status.ever_up {
            sub.status.flaps += 1;
        }
        sub.status.stage = Stage::Down;
        sub.status.down_cause = Some(cause);
        self.events.push_back(Event::Down(index));
        if was_setting_up {
            self.settled(now);
        }
    }
}

/// A PPP frame in a PPPoE session frame from `mac` to `ac_mac`.
fn session_frame(mac: Address, ac_mac: Address, session_id: u16, ppp: &[u8]) -> Option<Vec<u8>> {
    let eth = ethernet::Repr {
        dst_addr: ac_mac,
        src_addr: mac,
        outer_tag: None,
        inner_tag: None,
        ethertype: EtherType::PppoeSession,
    };
    let header = eth.buffer_len() + pppoe_wire::HEADER_LEN;
    // Ethernet's minimum frame: the PPPoE LENGTH tells where PPP ends.
    let mut frame = vec![0u8; (header + ppp.len()).max(60)];
    eth.emit(&mut frame).ok()?;
    pppoe_wire::Repr {
        code: pppoe_wire::Code::Session,
        session_id,
        payload_len: ppp.len(),
    }
    .emit(&mut frame[eth.buffer_len()..])
    .ok()?;
    frame[header..header + ppp.len()].copy_from_slice(ppp);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_map_back_to_subscribers() {
        for n in [0, 1, 255, 4095, 100_000] {
            assert_eq!(subscriber_of(subscriber_mac(n)), Some(n));
        }
        assert_eq!(subscriber_mac(0), Address([2, 0, 0, 0x10, 0, 0]));
        assert_eq!(subscriber_of(Address([2, 0, 0, 0, 0, 1])), None);
        assert_eq!(subscriber_of(Address([4, 0, 0, 0x10, 0, 0])), None);
    }
}

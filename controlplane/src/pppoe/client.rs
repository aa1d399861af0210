//! One subscriber's discovery (RFC 2516 §5), for the l2bench emulator:
//! PADI, the first acceptable PADO, PADR, PADS; retransmission with a
//! doubling timeout; PADT either way.
//!
//! Many clients share one port, so [`Client::handle_frame`] says whether a
//! frame was this client's (its MAC address, its Host-Uniq, its session).

use std::collections::VecDeque;
use std::time::Duration;

use dataplane::wire::ethernet::Address;
use dataplane::wire::pppoe::{Code, DiscoveryRepr, Tag};
use rand_core::RngCore;

use super::{read_frame, write_frame};
use crate::time::Instant;

/// A client's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The subscriber's MAC address.
    pub mac: Address,
    /// The service to ask for; empty asks for any.
    pub service_name: String,
    /// Take only PADOs with this AC-Name; `None` takes the first.
    pub ac_name: Option<String>,
    /// The Host-Uniq to send; `None` draws 8 random bytes.
    pub host_uniq: Option<Vec<u8>>,
    /// The first wait for a PADO or PADS; doubled at each retransmission
    /// (RFC 2516 §5: "resend its PADI packet and double the waiting
    /// period").
    pub initial_timeout: Duration,
    /// The longest wait between two retransmissions.
    pub max_timeout: Duration,
    /// PADIs (and PADRs) sent before giving up.
    pub max_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mac: Address([0x02, 0, 0, 0, 0, 0x02]),
            service_name: String::new(),
            ac_name: None,
            host_uniq: None,
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(16),
            max_attempts: 5,
        }
    }
}

/// Where the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Idle,
    /// PADI sent, waiting for a PADO.
    Discovering,
    /// PADR sent, waiting for the PADS.
    Requesting,
    /// Session confirmed.
    Up,
    /// Gave up or was refused.
    Failed,
    /// The session ended (PADT either way).
    Down,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No acceptable PADO after every PADI.
    NoOffer,
    /// No PADS after every PADR, even after discovering again.
    NoConfirmation,
    /// A PADS with SESSION_ID 0 or an error tag (RFC 2516 §5.4): its tag
    /// type (0x0201 Service-Name-Error, 0x0202 AC-System-Error, 0x0203
    /// Generic-Error, 0 if none) and text.
    Refused {
        /// TAG_TYPE of the error tag.
        tag: u16,
        /// Its value, lossy UTF-8.
        message: String,
    },
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The PADS came: PPP may start in the Session stage.
    Up {
        /// The access concentrator's MAC address.
        ac_mac: Address,
        /// The SESSION_ID.
        session_id: u16,
    },
    /// Discovery gave up.
    Failed(Failure),
    /// The session ended: a PADT from the AC, or [`Client::close`].
    Down {
        /// The access concentrator's MAC address.
        ac_mac: Address,
        /// The SESSION_ID.
        session_id: u16,
        /// Whether the AC ended it.
        by_peer: bool,
    },
}

/// One subscriber's PPPoE discovery.
#[derive(Debug)]
pub struct Client {
    config: Config,
    host_uniq: Vec<u8>,
    state: State,
    ac_mac: Address,
    ac_name: Vec<u8>,
    cookie: Option<Vec<u8>>,
    relay_session_id: Option<Vec<u8>>,
    session_id: u16,
    attempts: u32,
    restarted: bool,
    timeout: Duration,
    deadline: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl Client {
    /// A client that has sent nothing yet; call [`Client::start`].
    pub fn new(config: Config, rng: &mut dyn RngCore) -> Client {
        let host_uniq = match &config.host_uniq {
            Some(h) => h.clone(),
            None => rng.next_u64().to_be_bytes().to_vec(),
        };
        let timeout = config.initial_timeout;
        Client {
            config,
            host_uniq,
            state: State::Idle,
            ac_mac: Address::BROADCAST,
            ac_name: Vec::new(),
            cookie: None,
            relay_session_id: None,
            session_id: 0,
            attempts: 0,
            restarted: false,
            timeout,
            deadline: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Send the first PADI (from `Idle`, `Failed` or `Down`: start over).
    pub fn start(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::Discovering | State::Requesting | State::Up
        ) {
            return;
        }
        self.restarted = false;
        self.discover(now);
    }

    /// End the session from the subscriber's side: send a PADT
    /// (RFC 2516 §5.5) and report [`Event::Down`]. Before `Up`, stop
    /// trying. Does nothing when already failed or down.
    pub fn close(&mut self, now: Instant) {
        let _ = now;
        match self.state {
            State::Up => {
                let padt = DiscoveryRepr {
                    code: Code::Padt,
                    session_id: self.session_id,
                    tags: vec![Tag::HostUniq(&self.host_uniq)],
                };
                let frame = self.frame(self.ac_mac, &padt);
                self.send(frame);
                self.state = State::Down;
                self.deadline = None;
                self.events.push_back(Event::Down {
                    ac_mac: self.ac_mac,
                    session_id: self.session_id,
                    by_peer: false,
                });
            }
            State::Discovering | State::Requesting | State::Idle => {
                self.state = State::Down;
                self.deadline = None;
            }
            State::Failed | State::Down => {}
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the client is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The subscriber's MAC address.
    pub fn mac(&self) -> Address {
        self.config.mac
    }

    /// The Host-Uniq sent.
    pub fn host_uniq(&self) -> &[u8] {
        &self.host_uniq
    }

    /// The SESSION_ID and the AC's MAC address once `Up`.
    pub fn session(&self) -> Option<(Address, u16)> {
        (self.state == State::Up).then_some((self.ac_mac, self.session_id))
    }

    /// Take a whole Ethernet frame seen on the port. Returns whether it was
    /// this client's (addressed to its MAC address and, when it carries a
    /// Host-Uniq, its Host-Uniq); other frames are for other clients.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        // Most frames on a shared port are for other clients: look at the
        // destination before reading the tags.
        if frame.get(..6) != Some(self.config.mac.as_bytes().as_slice()) {
            return false;
        }
        let Ok(received) = read_frame(frame) else {
            return false;
        };
        let packet = &received.packet;
        let host_uniq = packet.tags.iter().find_map(|t| match t {
            Tag::HostUniq(v) => Some(*v),
            _ => None,
        });
        if host_uniq.is_some_and(|h| h != self.host_uniq.as_slice()) {
            return false;
        }
        // Without a Host-Uniq (a PADT need carry none, RFC 2516 §5.5) a
        // frame is ours only if it fits where we are: clients behind one
        // MAC address must not take each other's.
        let fits = match (packet.code, self.state) {
            (Code::Pado, State::Discovering) => true,
            (Code::Pads, State::Requesting) => received.src == self.ac_mac,
            (Code::Padt, State::Up) => {
                received.src == self.ac_mac && packet.session_id == self.session_id
            }
            _ => false,
        };
        if !fits {
            // A late offer or a duplicate PADS with our Host-Uniq is still
            // ours, and ignored.
            return host_uniq.is_some();
        }
        match packet.code {
            Code::Pado => self.handle_pado(now, received.src, packet),
            Code::Pads => self.handle_pads(packet),
            _ => {
                // RFC 2516 §5.5: after a PADT "no further PPP traffic is
                // allowed to be sent using that session".
                self.state = State::Down;
                self.events.push_back(Event::Down {
                    ac_mac: self.ac_mac,
                    session_id: self.session_id,
                    by_peer: true,
                });
            }
        }
        true
    }

    /// The next Ethernet frame to send, into `buf` (cleared first).
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

    /// When [`Client::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Retransmit, double the wait, or give up (RFC 2516 §5).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.state {
            State::Discovering => {
                if self.attempts >= self.config.max_attempts {
                    self.fail(Failure::NoOffer);
                } else {
                    self.send_padi(now);
                }
            }
            State::Requesting => {
                if self.attempts < self.config.max_attempts {
                    self.send_padr(now);
                } else if !self.restarted {
                    // RFC 2516 §5: "After a specified number of retries, the
                    // Host SHOULD then resend a PADI packet." Once.
                    self.restarted = true;
                    self.discover(now);
                } else {
                    self.fail(Failure::NoConfirmation);
                }
            }
            _ => self.deadline = None,
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.state = State::Failed;
        self.deadline = None;
        self.events.push_back(Event::Failed(failure));
    }

    fn discover(&mut self, now: Instant) {
        self.state = State::Discovering;
        self.attempts = 0;
        self.timeout = self.config.initial_timeout;
        self.cookie = None;
        self.relay_session_id = None;
        self.ac_mac = Address::BROADCAST;
        self.send_padi(now);
    }

    fn arm(&mut self, now: Instant) {
        self.attempts += 1;
        self.deadline = Some(now + self.timeout);
        self.timeout = (self.timeout * 2).min(self.config.max_timeout);
    }

    fn frame(&self, dst: Address, packet: &DiscoveryRepr<'_>) -> Option<Vec<u8>> {
        let mut frame = Vec::new();
        write_frame(&mut frame, dst, self.config.mac, (None, None), packet).then_some(frame)
    }

    fn send(&mut self, frame: Option<Vec<u8>>) {
        // Our own tags always fit a frame unless the configured Host-Uniq
        // or service name is absurd; then nothing goes out and the timer
        // gives up in the end.
        if let Some(frame) = frame {
            self.transmit.push_back(frame);
        }
    }

    /// RFC 2516 §5.1: broadcast, exactly one Service-Name.
    fn send_padi(&mut self, now: Instant) {
        let padi = DiscoveryRepr {
            code: Code::Padi,
            session_id: 0,
            tags: vec![
                Tag::ServiceName(self.config.service_name.as_bytes()),
                Tag::HostUniq(&self.host_uniq),
            ],
        };
        let frame = self.frame(Address::BROADCAST, &padi);
        self.send(frame);
        self.arm(now);
    }

    /// RFC 2516 §5.3: unicast to the chosen AC, one Service-Name, and the
    /// AC-Cookie and Relay-Session-Id of its PADO echoed.
    fn send_padr(&mut self, now: Instant) {
        let mut tags = vec![
            Tag::ServiceName(self.config.service_name.as_bytes()),
            Tag::HostUniq(&self.host_uniq),
        ];
        if let Some(cookie) = &self.cookie {
            tags.push(Tag::AcCookie(cookie));
        }
        if let Some(relay) = &self.relay_session_id {
            tags.push(Tag::RelaySessionId(relay));
        }
        let padr = DiscoveryRepr {
            code: Code::Padr,
            session_id: 0,
            tags,
        };
        let frame = self.frame(self.ac_mac, &padr);
        self.send(frame);
        self.arm(now);
    }

    fn handle_pado(&mut self, now: Instant, src: Address, pado: &DiscoveryRepr<'_>) {
        // RFC 2516 §5.2: a PADO has an AC-Name and offers our service (an
        // empty request takes any). A PADO with an error tag offers nothing.
        let mut ac_name = None;
        let mut offers = false;
        let mut cookie = None;
        let mut relay = None;
        for tag in &pado.tags {
            match *tag {
                Tag::AcName(v) => ac_name = ac_name.or(Some(v)),
                Tag::ServiceName(v) => {
                    offers |= self.config.service_name.is_empty()
                        || v == self.config.service_name.as_bytes()
                }
                Tag::AcCookie(v) => cookie = cookie.or(Some(v)),
                Tag::RelaySessionId(v) => relay = relay.or(Some(v)),
                Tag::ServiceNameError(_) | Tag::AcSystemError(_) | Tag::GenericError(_) => return,
                _ => {}
            }
        }
        let Some(ac_name) = ac_name else { return };
        if !offers || !src.is_unicast() {
            return;
        }
        if let Some(wanted) = &self.config.ac_name {
            if wanted.as_bytes() != ac_name {
                return;
            }
        }
        self.ac_mac = src;
        self.ac_name = ac_name.to_vec();
        self.cookie = cookie.map(<[u8]>::to_vec);
        self.relay_session_id = relay.map(<[u8]>::to_vec);
        self.state = State::Requesting;
        self.attempts = 0;
        self.timeout = self.config.initial_timeout;
        self.send_padr(now);
    }

    fn handle_pads(&mut self, pads: &DiscoveryRepr<'_>) {
        let error = pads.tags.iter().find_map(|t| match *t {
            Tag::ServiceNameError(v) | Tag::AcSystemError(v) | Tag::GenericError(v) => {
                Some((t.kind(), v))
            }
            _ => None,
        });
        // RFC 2516 §5.4: an error PADS has SESSION_ID 0; a PADS with an
        // error tag is a refusal whatever its SESSION_ID says, and 0xffff
        // is reserved (§4).
        if pads.session_id == 0 || pads.session_id == 0xffff || error.is_some() {
            let (tag, message) = error.unwrap_or((0, &[]));
            self.fail(Failure::Refused {
                tag,
                message: String::from_utf8_lossy(message).into_owned(),
            });
            return;
        }
        self.session_id = pads.session_id;
        self.state = State::Up;
        self.deadline = None;
        self.events.push_back(Event::Up {
            ac_mac: self.ac_mac,
            session_id: self.session_id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SUB: Address = Address([0x02, 0x50, 0, 0, 0, 1]);
    const AC1: Address = Address([0x02, 0xac, 0, 0, 0, 1]);
    const AC2: Address = Address([0x02, 0xac, 0, 0, 0, 2]);

    fn client(config: Config) -> Client {
        Client::new(
            Config {
                mac: SUB,
                host_uniq: Some(b"hu".to_vec()),
                ..config
            },
            &mut ChaCha8Rng::seed_from_u64(1),
        )
    }

    fn from_ac(ac: Address, code: Code, session_id: u16, tags: Vec<Tag<'_>>) -> Vec<u8> {
        let mut out = Vec::new();
        let packet = DiscoveryRepr {
            code,
            session_id,
            tags,
        };
        assert!(write_frame(&mut out, SUB, ac, (None, None), &packet));
        out
    }

    fn sent(c: &mut Client) -> Vec<(Address, Code)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while c.poll_frame(&mut buf) {
            let r = read_frame(&buf).unwrap();
            out.push((r.dst, r.packet.code));
        }
        out
    }

    #[test]
    fn picks_the_named_ac() {
        let mut c = client(Config {
            ac_name: Some("second".into()),
            ..Config::default()
        });
        let t = Instant::ZERO;
        c.start(t);
        assert_eq!(sent(&mut c), [(Address::BROADCAST, Code::Padi)]);
        let offer = |ac, name: &'static [u8]| {
            from_ac(
                ac,
                Code::Pado,
                0,
                vec![
                    Tag::AcName(name),
                    Tag::ServiceName(b""),
                    Tag::HostUniq(b"hu"),
                    Tag::AcCookie(b"c"),
                ],
            )
        };
        assert!(c.handle_frame(t, &offer(AC1, b"first")));
        assert_eq!(c.state(), State::Discovering);
        assert!(c.handle_frame(t, &offer(AC2, b"second")));
        assert_eq!(sent(&mut c), [(AC2, Code::Padr)]);
        // Another client's offer (its Host-Uniq) is not ours.
        let theirs = from_ac(AC1, Code::Pado, 0, vec![Tag::HostUniq(b"xx")]);
        assert!(!c.handle_frame(t, &theirs));
        // A PADS from the AC we did not choose changes nothing.
        assert!(c.handle_frame(t, &from_ac(AC1, Code::Pads, 9, vec![Tag::HostUniq(b"hu")])));
        assert_eq!(c.state(), State::Requesting);
        assert!(c.handle_frame(t, &from_ac(AC2, Code::Pads, 9, vec![Tag::HostUniq(b"hu")])));
        assert_eq!(c.session(), Some((AC2, 9)));
        assert_eq!(
            c.poll_event(),
            Some(Event::Up {
                ac_mac: AC2,
                session_id: 9
            })
        );
    }

    #[test]
    fn error_pads_fails() {
        let mut c = client(Config::default());
        let t = Instant::ZERO;
        c.start(t);
        let pado = from_ac(
            AC1,
            Code::Pado,
            0,
            vec![Tag::AcName(b"ac"), Tag::ServiceName(b"")],
        );
        assert!(c.handle_frame(t, &pado));
        let pads = from_ac(
            AC1,
            Code::Pads,
            0,
            vec![Tag::ServiceNameError(b"no such service")],
        );
        assert!(c.handle_frame(t, &pads));
        assert_eq!(c.state(), State::Failed);
        assert_eq!(
            c.poll_event(),
            Some(Event::Failed(Failure::Refused {
                tag: 0x0201,
                message: "no such service".into()
            }))
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn padr_retries_then_discovers_again_then_gives_up() {
        let mut c = client(Config {
            max_attempts: 2,
            ..Config::default()
        });
        let mut now = Instant::ZERO;
        c.start(now);
        let pado = from_ac(
            AC1,
            Code::Pado,
            0,
            vec![Tag::AcName(b"ac"), Tag::ServiceName(b"")],
        );
        let mut log = vec![];
        let mut offered = 0;
        loop {
            let mut buf = Vec::new();
            while c.poll_frame(&mut buf) {
                let code = read_frame(&buf).unwrap().packet.code;
                log.push(((now - Instant::ZERO).as_secs(), code));
                // The AC offers twice, then falls silent.
                if code == Code::Padi && offered < 2 {
                    offered += 1;
                    assert!(c.handle_frame(now, &pado));
                }
            }
            let Some(t) = c.poll_timeout() else { break };
            now = t;
            c.handle_timeout(now);
        }
        assert_eq!(
            log,
            [
                (0, Code::Padi),
                (0, Code::Padr),
                (1, Code::Padr),
                (3, Code::Padi),
                (3, Code::Padr),
                (4, Code::Padr),
            ]
        );
        assert_eq!(c.poll_event(), Some(Event::Failed(Failure::NoConfirmation)));
        assert_eq!((now - Instant::ZERO).as_secs(), 6);
    }

    #[test]
    fn close_before_up_stops_quietly() {
        let mut c = client(Config::default());
        c.start(Instant::ZERO);
        c.close(Instant::ZERO);
        assert_eq!(c.state(), State::Down);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.poll_event(), None);
        // And it can start again.
        c.start(Instant::ZERO);
        assert_eq!(c.state(), State::Discovering);
    }
}

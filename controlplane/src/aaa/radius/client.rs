//! A sans-IO RADIUS client: authentication (RFC 2865) and accounting
//! (RFC 2866, RFC 2869) with retransmission and failover.
//!
//! Input: [`Client::start_auth`], [`Client::accounting_start`],
//! [`Client::accounting_update`], [`Client::accounting_stop`],
//! [`Client::handle_datagram`] and [`Client::handle_timeout`]. Output:
//! [`Client::poll_transmit`] (datagrams to send), [`Client::poll_timeout`]
//! and [`Client::poll_event`] ([`Event`]: verdicts, accounting
//! acknowledgements and losses, servers going down).
//!
//! # Servers, retransmission, failover
//!
//! Authentication and accounting each have an ordered list of servers, each
//! with its own shared secret. A request goes to the first server that is
//! not marked down, and is sent up to [`ClientConfig::tries`] times, every
//! [`ClientConfig::timeout`], with the same Identifier and bytes (RFC 2865
//! §2.5: a retransmission is the same packet, so the server can spot the
//! duplicate). When a server leaves it unanswered that long it is marked
//! down for [`ClientConfig::dead_time`] and the request moves to the next
//! server, with a new Identifier and authenticator. A server that answers
//! is up again. When every server is down, they are tried in order anyway;
//! when each has had its tries, an authentication is refused with
//! [`RejectReason::NoServer`] and an accounting record is reported lost.
//!
//! Each server has 256 Identifiers; a request that finds them all in use
//! waits in order until one is free. Requests in flight and waiting are
//! bounded by [`ClientConfig::max_outstanding`]: past it an authentication
//! is refused at once ([`RejectReason::Overloaded`]) and an accounting
//! record is reported lost, so a dead RADIUS tier cannot grow memory.
//!
//! # Accounting
//!
//! [`Client::accounting_start`] sends Start and returns a handle;
//! Interim-Updates follow every [`ClientConfig::interim_interval`] (or the
//! session's Acct-Interim-Interval) with the counters last given to
//! [`Client::accounting_update`]; [`Client::accounting_stop`] sends Stop
//! with the final counters and the Acct-Terminate-Cause. Counters are 64
//! bits: the low 32 go in Acct-Input/Output-Octets, the high 32 in
//! Acct-Input/Output-Gigawords (RFC 2869 §5.1, §5.2). Event-Timestamp needs
//! the wall clock, which the driver gives with [`Client::set_wall_clock`].

use core::net::{Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::collections::{BTreeSet, HashMap, VecDeque};

use rand_core::RngCore;

use super::packet::{
    self, hide_password, packet_digest, sign_message_authenticator, value, verify_response,
    AttributeType, Code, Packet, Repr, HEADER_LEN,
};
use crate::aaa::{
    AuthHandle, AuthRequest, AuthResult, Credentials, FramedAddress, RejectReason,
    SessionAttributes,
};
use crate::time::Instant;

/// One RADIUS server.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    /// Its address and port (1812 for authentication, 1813 for
    /// accounting, by default).
    pub address: SocketAddr,
    /// The secret shared with it.
    pub secret: Vec<u8>,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Authentication servers in order of preference.
    pub auth_servers: Vec<Server>,
    /// Accounting servers in order of preference; none: no accounting.
    pub acct_servers: Vec<Server>,
    /// How long to wait for an answer before sending again.
    pub timeout: Duration,
    /// How many times a request is sent to one server before failing over.
    pub tries: u32,
    /// How long a server that did not answer is skipped.
    pub dead_time: Duration,
    /// Requests in flight and waiting for an Identifier, at most.
    pub max_outstanding: usize,
    /// NAS-IP-Address (RFC 2865 §5.4).
    pub nas_ip_address: Option<Ipv4Addr>,
    /// NAS-Identifier (RFC 2865 §5.32). RFC 2865 §4.1 wants this or
    /// NAS-IP-Address.
    pub nas_identifier: Option<String>,
    /// Interim-Updates every this long; `None`: none unless the server
    /// asks with Acct-Interim-Interval.
    pub interim_interval: Option<Duration>,
}

impl ClientConfig {
    /// Defaults for `auth_servers` and `acct_servers`: 1 s timeout,
    /// 3 tries, 30 s dead time, 4096 outstanding, NAS-Identifier "lnsd",
    /// no Interim-Updates.
    pub fn new(auth_servers: Vec<Server>, acct_servers: Vec<Server>) -> Self {
        ClientConfig {
            auth_servers,
            acct_servers,
            timeout: Duration::from_secs(1),
            tries: 3,
            dead_time: Duration::from_secs(30),
            max_outstanding: 4096,
            nas_ip_address: None,
            nas_identifier: Some("lnsd".to_owned()),
            interim_interval: None,
        }
    }
}

/// Names one accounting session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AcctHandle(pub u64);

/// How the user was authenticated (Acct-Authentic, RFC 2866 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentic {
    /// By RADIUS.
    Radius,
    /// By the local users file.
    Local,
}

/// What an accounting session reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountingSession {
    /// Acct-Session-Id (RFC 2866 §5.5): unique on this NAS.
    pub session_id: String,
    /// User-Name.
    pub username: String,
    /// Framed-IP-Address given to the subscriber.
    pub framed_address: Option<Ipv4Addr>,
    /// The Class attributes of the Access-Accept, echoed (RFC 2865 §5.25).
    pub class: Vec<Vec<u8>>,
    /// Calling-Station-Id.
    pub calling_station_id: Option<String>,
    /// NAS-Port.
    pub nas_port: Option<u32>,
    /// Acct-Authentic; `None` leaves it out.
    pub authentic: Option<Authentic>,
    /// Acct-Interim-Interval from the Access-Accept: overrides the
    /// configured interval.
    pub interim_interval: Option<Duration>,
}

/// A session's traffic so far, as 64-bit totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Octets from the subscriber.
    pub input_octets: u64,
    /// Octets to the subscriber.
    pub output_octets: u64,
    /// Packets from the subscriber.
    pub input_packets: u64,
    /// Packets to the subscriber.
    pub output_packets: u64,
}

/// Acct-Terminate-Cause (RFC 2866 §5.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminateCause {
    UserRequest,
    LostCarrier,
    LostService,
    IdleTimeout,
    SessionTimeout,
    AdminReset,
    AdminReboot,
    PortError,
    NasError,
    NasRequest,
    NasReboot,
    PortUnneeded,
    PortPreempted,
    PortSuspended,
    ServiceUnavailable,
    Callback,
    UserError,
    HostRequest,
    /// Another value.
    Other(u32),
}

impl From<TerminateCause> for u32 {
    fn from(c: TerminateCause) -> u32 {
        use TerminateCause::*;
        match c {
            UserRequest => 1,
            LostCarrier => 2,
            LostService => 3,
            IdleTimeout => 4,
            SessionTimeout => 5,
            AdminReset => 6,
            AdminReboot => 7,
            PortError => 8,
            NasError => 9,
            NasRequest => 10,
            NasReboot => 11,
            PortUnneeded => 12,
            PortPreempted => 13,
            PortSuspended => 14,
            ServiceUnavailable => 15,
            Callback => 16,
            UserError => 17,
            HostRequest => 18,
            Other(v) => v,
        }
    }
}

/// Which accounting record (Acct-Status-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctStatus {
    Start,
    InterimUpdate,
    Stop,
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The verdict on an authentication.
    Auth(AuthResult),
    /// A server acknowledged an accounting record.
    AccountingAcknowledged {
        handle: AcctHandle,
        status: AcctStatus,
    },
    /// An accounting record could not be delivered (no server answered, or
    /// too many were outstanding).
    AccountingLost {
        handle: AcctHandle,
        status: AcctStatus,
    },
    /// A server left a request unanswered and is skipped for a while.
    ServerDown { address: SocketAddr },
}

/// Counts of what the client did. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent for the first time to a server.
    pub requests: u64,
    /// Retransmissions to the same server.
    pub retransmissions: u64,
    /// Requests moved to another server.
    pub failovers: u64,
    /// Authentic responses matched to a request.
    pub responses: u64,
    /// Datagrams that are not RADIUS packets; dropped.
    pub malformed: u64,
    /// Responses from an address that is no server, or with an Identifier
    /// nothing waits for (a late answer after failover); dropped.
    pub unexpected: u64,
    /// Responses whose authenticators are wrong (a wrong secret or a
    /// forgery); dropped.
    pub bad_authenticator: u64,
    /// Requests refused because max_outstanding were outstanding.
    pub overloaded: u64,
    /// Requests that no server answered.
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Auth,
    Acct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RequestKey(u64);

#[derive(Debug)]
enum Body {
    Auth {
        handle: AuthHandle,
        request: AuthRequest,
    },
    Acct {
        handle: AcctHandle,
        status: AcctStatus,
        /// Every attribute but Acct-Delay-Time, which depends on when the
        /// record is (re)built.
        attributes: Vec<(AttributeType, Vec<u8>)>,
    },
}

#[derive(Debug)]
struct InFlight {
    server: usize,
    identifier: u8,
    request_authenticator: [u8; 16],
    bytes: Vec<u8>,
    sent: u32,
    deadline: Instant,
}

#[derive(Debug)]
struct Request {
    body: Body,
    created: Instant,
    /// Servers this request has been sent to (bit per server index).
    tried: u64,
    in_flight: Option<InFlight>,
}

impl Request {
    fn role(&self) -> Role {
        match self.body {
            Body::Auth { .. } => Role::Auth,
            Body::Acct { .. } => Role::Acct,
        }
    }
}

#[derive(Debug)]
struct ServerState {
    down_until: Option<Instant>,
    /// The request waiting on each Identifier.
    ids: Vec<Option<RequestKey>>,
    in_use: usize,
    next_id: u8,
}

impl ServerState {
    fn new() -> Self {
        ServerState {
            down_until: None,
            ids: vec![None; 256],
            in_use: 0,
            next_id: 0,
        }
    }

    fn is_up(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|t| now >= t)
    }

    /// A free Identifier, now taken by `key`. Identifiers go round so a late
    /// answer to an old request is unlikely to match a new one.
    fn take_id(&mut self, key: RequestKey) -> Option<u8> {
        if self.in_use >= 256 {
            return None;
        }
        for _ in 0..256 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if let Some(slot) = self.ids.get_mut(usize::from(id)) {
                if slot.is_none() {
                    *slot = Some(key);
                    self.in_use += 1;
                    return Some(id);
                }
            }
        }
        None
    }

    fn free_id(&mut self, id: u8) {
        if let Some(slot) = self.ids.get_mut(usize::from(id)) {
            if slot.take().is_some() {
                self.in_use -= 1;
            }
        }
    }
}

#[derive(Debug)]
struct AcctSessionState {
    session: AccountingSession,
    started: Instant,
    /// Session time before `started`: a session resumed from another LNS
    /// counts from its original start (which may lie before our clock's
    /// epoch).
    carried: Duration,
    counters: Counters,
    interim_interval: Option<Duration>,
    next_interim: Option<Instant>,
}

/// The RADIUS client: see the [module documentation](self).
pub struct Client {
    config: ClientConfig,
    rng: Box<dyn RngCore + Send>,
    auth_servers: Vec<ServerState>,
    acct_servers: Vec<ServerState>,
    requests: HashMap<RequestKey, Request>,
    /// Requests that wait for an Identifier, in order.
    waiting: VecDeque<RequestKey>,
    /// Retransmission deadlines.
    timers: BTreeSet<(Instant, RequestKey)>,
    sessions: HashMap<AcctHandle, AcctSessionState>,
    /// Interim-Update deadlines.
    interims: BTreeSet<(Instant, AcctHandle)>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    next_key: u64,
    next_auth: u64,
    next_acct: u64,
    /// The wall clock's time since the Unix epoch at an instant.
    wall_clock: Option<(Instant, Duration)>,
    stats: ClientStats,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("requests", &self.requests.len())
            .field("sessions", &self.sessions.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The most servers in one list (a bit each in a request's `tried`).
pub const MAX_SERVERS: usize = 64;

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Client {
    /// A client with `config`; `rng` makes the Request Authenticators
    /// (RFC 2865 §3: unpredictable), so a real one must be seeded from the
    /// OS ([`crate::driver::os_rng`]).
    pub fn new(config: ClientConfig, rng: Box<dyn RngCore + Send>) -> Result<Self, ConfigError> {
        if config.auth_servers.len() > MAX_SERVERS || config.acct_servers.len() > MAX_SERVERS {
            return Err(ConfigError(format!(
                "at most {MAX_SERVERS} RADIUS servers per list"
            )));
        }
        if config.tries == 0 || config.timeout.is_zero() {
            return Err(ConfigError(
                "RADIUS tries and timeout must be above zero".to_owned(),
            ));
        }
        if let Some(s) = config
            .auth_servers
            .iter()
            .chain(&config.acct_servers)
            .find(|s| s.secret.is_empty())
        {
            return Err(ConfigError(format!(
                "RADIUS server {} has an empty secret (RFC 2865 §3 requires one)",
                s.address
            )));
        }
        Ok(Client {
            auth_servers: config
                .auth_servers
                .iter()
                .map(|_| ServerState::new())
                .collect(),
            acct_servers: config
                .acct_servers
                .iter()
                .map(|_| ServerState::new())
                .collect(),
            config,
            rng,
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            timers: BTreeSet::new(),
            sessions: HashMap::new(),
            interims: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_key: 0,
            next_auth: 0,
            next_acct: 0,
            wall_clock: None,
            stats: ClientStats::default(),
        })
    }

    /// What the client did so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Tells the client that `now` is `since_unix_epoch` on the wall clock,
    /// for Event-Timestamp (RFC 2869 §5.3). Call again now and then to
    /// follow clock adjustments.
    pub fn set_wall_clock(&mut self, now: Instant, since_unix_epoch: Duration) {
        self.wall_clock = Some((now, since_unix_epoch));
    }

    /// Whether `address` is one of the servers (to route datagrams to this
    /// client).
    pub fn is_server(&self, address: SocketAddr) -> bool {
        self.config
            .auth_servers
            .iter()
            .chain(&self.config.acct_servers)
            .any(|s| s.address == address)
    }

    /// Asks the authentication servers about `request`. The verdict comes
    /// as [`Event::Auth`] with the returned handle.
    pub fn start_auth(&mut self, now: Instant, request: AuthRequest) -> AuthHandle {
        let handle = AuthHandle(self.next_auth);
        self.next_auth += 1;
        if self.config.auth_servers.is_empty() {
            self.events.push_back(Event::Auth(AuthResult::rejected(
                handle,
                RejectReason::NoServer,
                None,
            )));
            return handle;
        }
        if self.requests.len() >= self.config.max_outstanding {
            self.stats.overloaded += 1;
            self.events.push_back(Event::Auth(AuthResult::rejected(
                handle,
                RejectReason::Overloaded,
                None,
            )));
            return handle;
        }
        self.submit(now, Body::Auth { handle, request });
        handle
    }

    /// Starts accounting for a session: sends Start, and Interim-Updates
    /// from then on.
    pub fn accounting_start(&mut self, now: Instant, session: AccountingSession) -> AcctHandle {
        let handle = AcctHandle(self.next_acct);
        self.next_acct += 1;
        let interim_interval = session
            .interim_interval
            .or(self.config.interim_interval)
            .filter(|d| !d.is_zero());
        let next_interim = interim_interval.map(|d| now + d);
        if let Some(t) = next_interim {
            self.interims.insert((t, handle));
        }
        let state = AcctSessionState {
            session,
            started: now,
            carried: Duration::ZERO,
            counters: Counters::default(),
            interim_interval,
            next_interim,
        };
        let attributes = self.accounting_attributes(now, &state, AcctStatus::Start, None);
        self.sessions.insert(handle, state);
        self.submit_accounting(now, handle, AcctStatus::Start, attributes);
        handle
    }

    /// Carries on the accounting of a session that started elsewhere (an
    /// HA peer LNS that failed or handed it over) under its own
    /// Acct-Session-Id: no Start (the servers have the primary's), but an
    /// Interim-Update at once (RFC 2866 §5.1, Acct-Status-Type 3) with
    /// `counters` as the primary last offloaded them and Acct-Session-Time
    /// counted from the original start, `elapsed` ago (RFC 2866 §5.7), so
    /// the servers see the session go on from here; then Interim-Updates at
    /// the interval and a Stop as for any session.
    pub fn accounting_resume(
        &mut self,
        now: Instant,
        session: AccountingSession,
        counters: Counters,
        elapsed: Duration,
    ) -> AcctHandle {
        let handle = AcctHandle(self.next_acct);
        self.next_acct += 1;
        let interim_interval = session
            .interim_interval
            .or(self.config.interim_interval)
            .filter(|d| !d.is_zero());
        let next_interim = interim_interval.map(|d| now + d);
        if let Some(t) = next_interim {
            self.interims.insert((t, handle));
        }
        let state = AcctSessionState {
            session,
            started: now,
            carried: elapsed,
            counters,
            interim_interval,
            next_interim,
        };
        let attributes = self.accounting_attributes(now, &state, AcctStatus::InterimUpdate, None);
        self.sessions.insert(handle, state);
        self.submit_accounting(now, handle, AcctStatus::InterimUpdate, attributes);
        handle
    }

    /// Forgets a session's accounting without a Stop: it moved to another
    /// LNS, which carries the same Acct-Session-Id on and sends the Stop
    /// itself (a Stop from here too would end the servers' record while
    /// the session lives, or count its traffic twice). Records already
    /// submitted still go out. False if the handle is unknown.
    pub fn accounting_forget(&mut self, handle: AcctHandle) -> bool {
        let Some(state) = self.sessions.remove(&handle) else {
            return false;
        };
        if let Some(t) = state.next_interim {
            self.interims.remove(&(t, handle));
        }
        true
    }

    /// Accounting sessions this client keeps (started or resumed, not
    /// stopped or forgotten).
    pub fn accounting_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The session's counters now; the next Interim-Update carries them.
    pub fn accounting_update(&mut self, handle: AcctHandle, counters: Counters) {
        if let Some(s) = self.sessions.get_mut(&handle) {
            s.counters = counters;
        }
    }

    /// Ends accounting for a session: sends Stop with `counters` and
    /// `cause`. False if the handle is unknown.
    pub fn accounting_stop(
        &mut self,
        now: Instant,
        handle: AcctHandle,
        counters: Counters,
        cause: TerminateCause,
    ) -> bool {
        let Some(mut state) = self.sessions.remove(&handle) else {
            return false;
        };
        if let Some(t) = state.next_interim.take() {
            self.interims.remove(&(t, handle));
        }
        state.counters = counters;
        let attributes = self.accounting_attributes(now, &state, AcctStatus::Stop, Some(cause));
        self.submit_accounting(now, handle, AcctStatus::Stop, attributes);
        true
    }

    /// A datagram from `from`: a response to one of our requests, or
    /// dropped and counted.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(response) = Packet::new_checked(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        let role = match response.code() {
            Code::AccessAccept | Code::AccessReject | Code::AccessChallenge => Role::Auth,
            Code::AccountingResponse => Role::Acct,
            _ => {
                self.stats.unexpected += 1;
                return;
            }
        };
        let servers = match role {
            Role::Auth => &self.config.auth_servers,
            Role::Acct => &self.config.acct_servers,
        };
        // RFC 2865 §3: the Identifier matches a request to that server.
        let found = servers.iter().enumerate().find_map(|(i, s)| {
            if s.address != from {
                return None;
            }
            let key = self
                .server_states(role)
                .get(i)?
                .ids
                .get(usize::from(response.identifier()))?;
            Some((i, (*key)?))
        });
        let Some((server, key)) = found else {
            self.stats.unexpected += 1;
            return;
        };
        let Some(in_flight) = self.requests.get(&key).and_then(|r| r.in_flight.as_ref()) else {
            self.stats.unexpected += 1;
            return;
        };
        let secret = &servers[server].secret;
        if !verify_response(&response, &in_flight.request_authenticator, secret) {
            self.stats.bad_authenticator += 1;
            return;
        }
        self.stats.responses += 1;
        let (deadline, identifier) = (in_flight.deadline, in_flight.identifier);
        self.timers.remove(&(deadline, key));
        if let Some(state) = self.server_states_mut(role).get_mut(server) {
            state.down_until = None;
            state.free_id(identifier);
        }
        let Some(request) = self.requests.remove(&key) else {
            return;
        };
        match request.body {
            Body::Auth { handle, .. } => {
                let result = match response.code() {
                    Code::AccessAccept => {
                        AuthResult::accepted(handle, session_attributes(&response))
                    }
                    // We do not take part in multi-round exchanges: a
                    // challenge is a refusal (RFC 2865 §4.4 lets a NAS
                    // that does not support them treat it so).
                    _ => AuthResult::rejected(
                        handle,
                        RejectReason::BadCredentials,
                        reply_message(&response),
                    ),
                };
                self.events.push_back(Event::Auth(result));
            }
            Body::Acct { handle, status, .. } => {
                self.events
                    .push_back(Event::AccountingAcknowledged { handle, status });
            }
        }
        self.send_waiting(now);
    }

    /// When [`Client::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.timers.first().map(|(t, _)| *t);
        let interim = self.interims.first().map(|(t, _)| *t);
        match (retransmit, interim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Retransmits, fails over and sends Interim-Updates that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, key));
            self.request_timed_out(now, key);
        }
        while let Some(&(t, handle)) = self.interims.first() {
            if t > now {
                break;
            }
            self.interims.remove(&(t, handle));
            let Some(state) = self.sessions.get_mut(&handle) else {
                continue;
            };
            state.next_interim = state.interim_interval.map(|d| now + d);
            if let Some(next) = state.next_interim {
                self.interims.insert((next, handle));
            }
            let Some(state) = self.sessions.get(&handle) else {
                continue;
            };
            let attributes =
                self.accounting_attributes(now, state, AcctStatus::InterimUpdate, None);
            self.submit_accounting(now, handle, AcctStatus::InterimUpdate, attributes);
        }
    }

    /// The next datagram to send: its bytes in `buf` and where to.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, bytes) = self.transmits.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(to)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn server_states(&self, role: Role) -> &[ServerState] {
        match role {
            Role::Auth => &self.auth_servers,
            Role::Acct => &self.acct_servers,
        }
    }

    fn server_states_mut(&mut self, role: Role) -> &mut [ServerState] {
        match role {
            Role::Auth => &mut self.auth_servers,
            Role::Acct => &mut self.acct_servers,
        }
    }

    fn submit_accounting(
        &mut self,
        now: Instant,
        handle: AcctHandle,
        status: AcctStatus,
        attributes: Vec<(AttributeType, Vec<u8>)>,
    ) {
        if self.config.acct_servers.is_empty() {
            return;
        }
        if self.requests.len() >= self.config.max_outstanding {
            self.stats.overloaded += 1;
            self.events
                .push_back(Event::AccountingLost { handle, status });
            return;
        }
        self.submit(
            now,
            Body::Acct {
                handle,
                status,
                attributes,
            },
        );
    }

    fn submit(&mut self, now: Instant, body: Body) {
        let key = RequestKey(self.next_key);
        self.next_key += 1;
        self.requests.insert(
            key,
            Request {
                body,
                created: now,
                tried: 0,
                in_flight: None,
            },
        );
        self.dispatch(now, key);
    }

    /// Sends a request without a server to the next server it has not
    /// tried: the first that is up, else the first at all. Gives up when it
    /// has tried them all; waits when the server has no free Identifier.
    fn dispatch(&mut self, now: Instant, key: RequestKey) {
        let Some(request) = self.requests.get(&key) else {
            return;
        };
        let role = request.role();
        let tried = request.tried;
        let states = self.server_states(role);
        let untried = |i: &usize| tried & (1 << i) == 0;
        let choice = (0..states.len())
            .filter(untried)
            .find(|&i| states[i].is_up(now))
            .or_else(|| (0..states.len()).find(untried));
        let Some(server) = choice else {
            self.give_up(key);
            return;
        };
        let Some(identifier) = self.server_states_mut(role)[server].take_id(key) else {
            // All 256 Identifiers of that server are in flight.
            if !self.waiting.contains(&key) {
                self.waiting.push_back(key);
            }
            return;
        };
        let mut authenticator = [0u8; 16];
        if role == Role::Auth {
            // RFC 2865 §3: the Request Authenticator is unpredictable and
            // unique over the secret's lifetime.
            self.rng.fill_bytes(&mut authenticator);
        }
        let servers = match role {
            Role::Auth => &self.config.auth_servers,
            Role::Acct => &self.config.acct_servers,
        };
        let (secret, address) = (&servers[server].secret, servers[server].address);
        let Some(request) = self.requests.get_mut(&key) else {
            return;
        };
        let encoded = encode_request(
            &self.config,
            &request.body,
            identifier,
            &mut authenticator,
            secret,
            now.saturating_duration_since(request.created),
        );
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                // A password over 128 octets or a Class too long: nothing a
                // server could be sent.
                tracing::warn!(error = %e, "RADIUS request cannot be encoded");
                self.server_states_mut(role)[server].free_id(identifier);
                self.give_up(key);
                return;
            }
        };
        let Some(request) = self.requests.get_mut(&key) else {
            return;
        };
        if request.tried != 0 {
            self.stats.failovers += 1;
        }
        request.tried |= 1 << server;
        self.stats.requests += 1;
        let deadline = now + self.config.timeout;
        self.transmits.push_back((address, bytes.clone()));
        request.in_flight = Some(InFlight {
            server,
            identifier,
            request_authenticator: authenticator,
            bytes,
            sent: 1,
            deadline,
        });
        self.timers.insert((deadline, key));
    }

    fn request_timed_out(&mut self, now: Instant, key: RequestKey) {
        let Some(request) = self.requests.get_mut(&key) else {
            return;
        };
        let role = request.role();
        let Some(in_flight) = request.in_flight.as_mut() else {
            return;
        };
        let address = match role {
            Role::Auth => self.config.auth_servers.get(in_flight.server),
            Role::Acct => self.config.acct_servers.get(in_flight.server),
        }
        .map(|s| s.address);
        if in_flight.sent < self.config.tries {
            // RFC 2865 §2.5: the same Identifier and bytes, so the server
            // can tell a retransmission from a new request.
            in_flight.sent += 1;
            in_flight.deadline = now + self.config.timeout;
            self.timers.insert((in_flight.deadline, key));
            if let Some(address) = address {
                self.transmits.push_back((address, in_flight.bytes.clone()));
            }
            self.stats.retransmissions += 1;
            return;
        }
        let (server, identifier) = (in_flight.server, in_flight.identifier);
        request.in_flight = None;
        let dead_time = self.config.dead_time;
        if let Some(state) = self.server_states_mut(role).get_mut(server) {
            state.free_id(identifier);
            if state.is_up(now) {
                state.down_until = Some(now + dead_time);
                if let Some(address) = address {
                    tracing::warn!(%address, "RADIUS server not answering; marked down");
                    self.events.push_back(Event::ServerDown { address });
                }
            }
        }
        self.dispatch(now, key);
        self.send_waiting(now);
    }

    fn give_up(&mut self, key: RequestKey) {
        self.waiting.retain(|k| *k != key);
        let Some(request) = self.requests.remove(&key) else {
            return;
        };
        self.stats.timeouts += 1;
        self.events.push_back(match request.body {
            Body::Auth { handle, .. } => {
                Event::Auth(AuthResult::rejected(handle, RejectReason::NoServer, None))
            }
            Body::Acct { handle, status, .. } => Event::AccountingLost { handle, status },
        });
    }

    /// Gives freed Identifiers to the requests that wait for one, in order.
    fn send_waiting(&mut self, now: Instant) {
        let waiting = core::mem::take(&mut self.waiting);
        for key in waiting {
            self.dispatch(now, key);
        }
    }

    fn accounting_attributes(
        &self,
        now: Instant,
        state: &AcctSessionState,
        status: AcctStatus,
        cause: Option<TerminateCause>,
    ) -> Vec<(AttributeType, Vec<u8>)> {
        let s = &state.session;
        let mut a: Vec<(AttributeType, Vec<u8>)> = Vec::new();
        let u32_attr = |kind, v: u32| (kind, v.to_be_bytes().to_vec());
        a.push(u32_attr(
            AttributeType::ACCT_STATUS_TYPE,
            match status {
                AcctStatus::Start => value::ACCT_STATUS_START,
                AcctStatus::InterimUpdate => value::ACCT_STATUS_INTERIM_UPDATE,
                AcctStatus::Stop => value::ACCT_STATUS_STOP,
            },
        ));
        a.push((
            AttributeType::ACCT_SESSION_ID,
            s.session_id.as_bytes().to_vec(),
        ));
        a.push((AttributeType::USER_NAME, s.username.as_bytes().to_vec()));
        self.push_nas_attributes(&mut a, s.nas_port, s.calling_station_id.as_deref());
        if let Some(address) = s.framed_address {
            a.push((AttributeType::FRAMED_IP_ADDRESS, address.octets().to_vec()));
        }
        for class in &s.class {
            a.push((AttributeType::CLASS, class.clone()));
        }
        if let Some(authentic) = s.authentic {
            a.push(u32_attr(
                AttributeType::ACCT_AUTHENTIC,
                match authentic {
                    Authentic::Radius => value::ACCT_AUTHENTIC_RADIUS,
                    Authentic::Local => value::ACCT_AUTHENTIC_LOCAL,
                },
            ));
        }
        if status != AcctStatus::Start {
            let c = state.counters;
            // RFC 2866 §5.7 Acct-Session-Time: from the session's start,
            // wherever it started.
            let secs = (now.saturating_duration_since(state.started) + state.carried).as_secs();
            a.push(u32_attr(
                AttributeType::ACCT_SESSION_TIME,
                u32::try_from(secs).unwrap_or(u32::MAX),
            ));
            // RFC 2869 §5.1, §5.2: the octet counters wrap at 2^32;
            // Gigawords counts the wraps.
            a.push(u32_attr(
                AttributeType::ACCT_INPUT_OCTETS,
                c.input_octets as u32,
            ));
            a.push(u32_attr(
                AttributeType::ACCT_OUTPUT_OCTETS,
                c.output_octets as u32,
            ));
            a.push(u32_attr(
                AttributeType::ACCT_INPUT_GIGAWORDS,
                (c.input_octets >> 32) as u32,
            ));
            a.push(u32_attr(
                AttributeType::ACCT_OUTPUT_GIGAWORDS,
                (c.output_octets >> 32) as u32,
            ));
            a.push(u32_attr(
                AttributeType::ACCT_INPUT_PACKETS,
                u32::try_from(c.input_packets).unwrap_or(u32::MAX),
            ));
            a.push(u32_attr(
                AttributeType::ACCT_OUTPUT_PACKETS,
                u32::try_from(c.output_packets).unwrap_or(u32::MAX),
            ));
        }
        if let Some(cause) = cause {
            a.push(u32_attr(AttributeType::ACCT_TERMINATE_CAUSE, cause.into()));
        }
        if let Some((at, since_epoch)) = self.wall_clock {
            let unix = if now >= at {
                since_epoch + now.saturating_duration_since(at)
            } else {
                since_epoch.saturating_sub(at.saturating_duration_since(now))
            };
            a.push(u32_attr(
                AttributeType::EVENT_TIMESTAMP,
                u32::try_from(unix.as_secs()).unwrap_or(u32::MAX),
            ));
        }
        a
    }

    fn push_nas_attributes(
        &self,
        a: &mut Vec<(AttributeType, Vec<u8>)>,
        nas_port: Option<u32>,
        calling_station_id: Option<&str>,
    ) {
        nas_attributes(&self.config, a, nas_port, calling_station_id);
    }
}

/// NAS-IP-Address, NAS-Identifier, NAS-Port, NAS-Port-Type Virtual,
/// Service-Type Framed, Framed-Protocol PPP, Calling-Station-Id.
fn nas_attributes(
    config: &ClientConfig,
    a: &mut Vec<(AttributeType, Vec<u8>)>,
    nas_port: Option<u32>,
    calling_station_id: Option<&str>,
) {
    if let Some(ip) = config.nas_ip_address {
        a.push((AttributeType::NAS_IP_ADDRESS, ip.octets().to_vec()));
    }
    if let Some(id) = &config.nas_identifier {
        a.push((AttributeType::NAS_IDENTIFIER, id.as_bytes().to_vec()));
    }
    if let Some(port) = nas_port {
        a.push((AttributeType::NAS_PORT, port.to_be_bytes().to_vec()));
    }
    a.push((
        AttributeType::NAS_PORT_TYPE,
        value::NAS_PORT_TYPE_VIRTUAL.to_be_bytes().to_vec(),
    ));
    a.push((
        AttributeType::SERVICE_TYPE,
        value::SERVICE_TYPE_FRAMED.to_be_bytes().to_vec(),
    ));
    a.push((
        AttributeType::FRAMED_PROTOCOL,
        value::FRAMED_PROTOCOL_PPP.to_be_bytes().to_vec(),
    ));
    if let Some(id) = calling_station_id {
        a.push((AttributeType::CALLING_STATION_ID, id.as_bytes().to_vec()));
    }
}

/// The bytes of a request to one server with one Identifier. For an
/// Access-Request `authenticator` is the random Request Authenticator; for
/// an Accounting-Request it is computed here (RFC 2866 §3) and written
/// back.
fn encode_request(
    config: &ClientConfig,
    body: &Body,
    identifier: u8,
    authenticator: &mut [u8; 16],
    secret: &[u8],
    delay: Duration,
) -> Result<Vec<u8>, packet::Error> {
    match body {
        Body::Auth { request, .. } => {
            let mut repr = Repr {
                code: Code::AccessRequest,
                identifier,
                authenticator: *authenticator,
                attributes: Vec::new(),
            };
            repr.push(AttributeType::USER_NAME, request.username.as_bytes());
            match &request.credentials {
                Credentials::Pap { password } => {
                    // RFC 2865 §5.2.
                    repr.push(
                        AttributeType::USER_PASSWORD,
                        hide_password(password, secret, authenticator)?,
                    );
                }
                Credentials::Chap {
                    id,
                    challenge,
                    response,
                } => {
                    // RFC 2865 §5.3: the CHAP Identifier, then the response;
                    // §5.40: the challenge in its own attribute.
                    let mut value = vec![*id];
                    value.extend_from_slice(response);
                    repr.push(AttributeType::CHAP_PASSWORD, value);
                    repr.push(AttributeType::CHAP_CHALLENGE, challenge.as_slice());
                }
            }
            nas_attributes(
                config,
                &mut repr.attributes,
                request.nas_port,
                request.calling_station_id.as_deref(),
            );
            // RFC 3579 §3.2 (and the BlastRADIUS fix): every Access-Request
            // carries a Message-Authenticator, here first so a server
            // checks it before anything else.
            repr.attributes
                .insert(0, (AttributeType::MESSAGE_AUTHENTICATOR, vec![0; 16]));
            let mut bytes = repr.to_bytes()?;
            sign_message_authenticator(&mut bytes, HEADER_LEN + 2, secret);
            Ok(bytes)
        }
        Body::Acct { attributes, .. } => {
            let mut repr = Repr {
                code: Code::AccountingRequest,
                identifier,
                authenticator: [0; 16],
                attributes: attributes.clone(),
            };
            // RFC 2866 §5.2: how long the record waited to be sent; a new
            // value means a new Identifier, which a new server gives.
            let delay = u32::try_from(delay.as_secs()).unwrap_or(u32::MAX);
            repr.push_u32(AttributeType::ACCT_DELAY_TIME, delay);
            let mut bytes = repr.to_bytes()?;
            *authenticator = packet_digest(&bytes, &[0; 16], secret);
            if let Some(slot) = bytes.get_mut(4..HEADER_LEN) {
                slot.copy_from_slice(authenticator);
            }
            Ok(bytes)
        }
    }
}

fn reply_message<T: AsRef<[u8]>>(response: &Packet<T>) -> Option<String> {
    // RFC 2865 §5.18: several are concatenated.
    let text: Vec<u8> = response
        .attributes()
        .filter(|a| a.kind == AttributeType::REPLY_MESSAGE)
        .flat_map(|a| a.value.iter().copied())
        .collect();
    (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
}

/// The attributes of an Access-Accept that the session uses. Values of the
/// wrong size are ignored, as RFC 2865 §5 asks of unusable attributes.
fn session_attributes<T: AsRef<[u8]>>(response: &Packet<T>) -> SessionAttributes {
    let mut s = SessionAttributes {
        reply_message: reply_message(response),
        ..SessionAttributes::default()
    };
    let seconds = |v: u32| Duration::from_secs(u64::from(v));
    for a in response.attributes() {
        let ipv4 = <[u8; 4]>::try_from(a.value).ok().map(Ipv4Addr::from);
        match a.kind {
            AttributeType::FRAMED_IP_ADDRESS => {
                s.framed_address = ipv4.map(FramedAddress::from_attribute).or(s.framed_address);
            }
            AttributeType::FRAMED_IP_NETMASK => s.framed_netmask = ipv4.or(s.framed_netmask),
            AttributeType::SESSION_TIMEOUT => {
                s.session_timeout = a.as_u32().map(seconds).or(s.session_timeout);
            }
            AttributeType::IDLE_TIMEOUT => {
                s.idle_timeout = a.as_u32().map(seconds).or(s.idle_timeout);
            }
            AttributeType::ACCT_INTERIM_INTERVAL => {
                s.interim_interval = a.as_u32().map(seconds).or(s.interim_interval);
            }
            AttributeType::CLASS => s.class.push(a.value.to_vec()),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aaa::radius::packet::{message_authenticator, reveal_password, value_u32};
    use crate::aaa::users::chap_md5_response;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const MS: Duration = Duration::from_millis(1);

    fn server(port: u16, secret: &str) -> Server {
        Server {
            address: SocketAddr::from(([192, 0, 2, 1], port)),
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn config(auth: Vec<Server>, acct: Vec<Server>) -> ClientConfig {
        ClientConfig {
            timeout: 100 * MS,
            tries: 2,
            dead_time: Duration::from_secs(10),
            nas_ip_address: Some(Ipv4Addr::new(192, 0, 2, 9)),
            ..ClientConfig::new(auth, acct)
        }
    }

    fn client(config: ClientConfig) -> Client {
        Client::new(config, Box::new(ChaCha8Rng::seed_from_u64(7))).unwrap()
    }

    fn pap(user: &str, password: &str) -> AuthRequest {
        AuthRequest {
            username: user.to_owned(),
            credentials: Credentials::Pap {
                password: password.as_bytes().to_vec(),
            },
            calling_station_id: Some("00:11:22:33:44:55".to_owned()),
            nas_port: Some(17),
        }
    }

    fn transmits(c: &mut Client, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(to) = c.poll_transmit(now, &mut buf) {
            out.push((to, buf.clone()));
        }
        out
    }

    fn events(c: &mut Client) -> Vec<Event> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    /// What a server answers: `code` with `attributes`, signed for the
    /// request with `secret`.
    fn respond(
        request: &[u8],
        code: Code,
        attributes: &[(AttributeType, Vec<u8>)],
        secret: &str,
    ) -> Vec<u8> {
        let request = Packet::new_checked(request).unwrap();
        let repr = Repr {
            code,
            identifier: request.identifier(),
            authenticator: [0; 16],
            attributes: attributes.to_vec(),
        };
        let mut bytes = repr.to_bytes().unwrap();
        let digest = packet_digest(&bytes, &request.authenticator(), secret.as_bytes());
        bytes[4..20].copy_from_slice(&digest);
        bytes
    }

    fn attr(p: &Packet<&[u8]>, kind: AttributeType) -> Option<u32> {
        p.attribute(kind).and_then(value_u32)
    }

    #[test]
    fn pap_request_is_hidden_signed_and_complete() {
        let mut c = client(config(vec![server(1812, "s3cret")], vec![]));
        let now = Instant::ZERO;
        let handle = c.start_auth(now, pap("alice", "correct horse"));
        let sent = transmits(&mut c, now);
        assert_eq!(sent.len(), 1);
        let (to, bytes) = &sent[0];
        assert_eq!(*to, server(1812, "s3cret").address);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.code(), Code::AccessRequest);
        let ra = p.authenticator();
        assert_eq!(p.attribute(AttributeType::USER_NAME), Some(&b"alice"[..]));
        let hidden = p.attribute(AttributeType::USER_PASSWORD).unwrap();
        assert_eq!(
            reveal_password(hidden, b"s3cret", &ra).unwrap(),
            b"correct horse"
        );
        let mac = p
            .attributes()
            .find(|a| a.kind == AttributeType::MESSAGE_AUTHENTICATOR)
            .unwrap();
        assert_eq!(
            mac.value,
            message_authenticator(bytes, &ra, mac.value_offset, b"s3cret")
        );
        assert_eq!(attr(&p, AttributeType::NAS_PORT), Some(17));
        assert_eq!(attr(&p, AttributeType::NAS_PORT_TYPE), Some(5));
        assert_eq!(attr(&p, AttributeType::SERVICE_TYPE), Some(2));
        assert_eq!(attr(&p, AttributeType::FRAMED_PROTOCOL), Some(1));
        assert_eq!(
            p.attribute(AttributeType::NAS_IP_ADDRESS),
            Some(&[192, 0, 2, 9][..])
        );
        assert_eq!(
            p.attribute(AttributeType::NAS_IDENTIFIER),
            Some(&b"lnsd"[..])
        );
        assert_eq!(
            p.attribute(AttributeType::CALLING_STATION_ID),
            Some(&b"00:11:22:33:44:55"[..])
        );

        let accept = respond(
            bytes,
            Code::AccessAccept,
            &[
                (AttributeType::FRAMED_IP_ADDRESS, vec![10, 64, 0, 9]),
                (AttributeType::FRAMED_IP_NETMASK, vec![255, 255, 255, 255]),
                (
                    AttributeType::SESSION_TIMEOUT,
                    3600u32.to_be_bytes().to_vec(),
                ),
                (AttributeType::IDLE_TIMEOUT, 600u32.to_be_bytes().to_vec()),
                (
                    AttributeType::ACCT_INTERIM_INTERVAL,
                    60u32.to_be_bytes().to_vec(),
                ),
                (AttributeType::CLASS, b"gold".to_vec()),
                (AttributeType::CLASS, b"x".to_vec()),
                (AttributeType::REPLY_MESSAGE, b"Hello ".to_vec()),
                (AttributeType::REPLY_MESSAGE, b"alice".to_vec()),
            ],
            "s3cret",
        );
        c.handle_datagram(now + MS, *to, &accept);
        let Event::Auth(result) = events(&mut c).remove(0) else {
            panic!("no verdict");
        };
        assert_eq!(result.handle, handle);
        assert!(result.accept);
        let a = result.attributes;
        assert_eq!(
            a.framed_address,
            Some(FramedAddress::Static(Ipv4Addr::new(10, 64, 0, 9)))
        );
        assert_eq!(a.framed_netmask, Some(Ipv4Addr::BROADCAST));
        assert_eq!(a.session_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(a.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(a.interim_interval, Some(Duration::from_secs(60)));
        assert_eq!(a.class, [b"gold".to_vec(), b"x".to_vec()]);
        assert_eq!(a.reply_message.as_deref(), Some("Hello alice"));
        assert_eq!(c.poll_timeout(), None);
        // A duplicate answer finds nothing waiting.
        c.handle_datagram(now + MS, *to, &accept);
        assert!(events(&mut c).is_empty());
        assert_eq!(c.stats().unexpected, 1);
    }

    #[test]
    fn chap_request_carries_id_response_and_challenge() {
        let mut c = client(config(vec![server(1812, "s")], vec![]));
        let challenge = b"0123456789abcdefXYZ".to_vec();
        let response = chap_md5_response(42, b"pw", &challenge);
        c.start_auth(
            Instant::ZERO,
            AuthRequest {
                username: "bob".to_owned(),
                credentials: Credentials::Chap {
                    id: 42,
                    challenge: challenge.clone(),
                    response,
                },
                calling_station_id: None,
                nas_port: None,
            },
        );
        let (_, bytes) = transmits(&mut c, Instant::ZERO).remove(0);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        let chap = p.attribute(AttributeType::CHAP_PASSWORD).unwrap();
        assert_eq!(chap[0], 42);
        assert_eq!(&chap[1..], &response);
        assert_eq!(
            p.attribute(AttributeType::CHAP_CHALLENGE),
            Some(&challenge[..])
        );
        assert_eq!(p.attribute(AttributeType::USER_PASSWORD), None);
        // Reject, with its message; a Framed-IP-Address 255.255.255.254 would
        // mean "from the pool" on an accept.
        let reject = respond(
            &bytes,
            Code::AccessReject,
            &[(AttributeType::REPLY_MESSAGE, b"nope".to_vec())],
            "s",
        );
        c.handle_datagram(Instant::ZERO, server(1812, "s").address, &reject);
        let Event::Auth(result) = events(&mut c).remove(0) else {
            panic!();
        };
        assert!(!result.accept);
        assert_eq!(result.reject_reason, Some(RejectReason::BadCredentials));
        assert_eq!(result.attributes.reply_message.as_deref(), Some("nope"));
    }

    #[test]
    fn forged_or_misdirected_answers_are_dropped() {
        let mut c = client(config(vec![server(1812, "right")], vec![]));
        c.start_auth(Instant::ZERO, pap("a", "b"));
        let (to, bytes) = transmits(&mut c, Instant::ZERO).remove(0);
        let forged = respond(&bytes, Code::AccessAccept, &[], "wrong");
        c.handle_datagram(Instant::ZERO, to, &forged);
        assert_eq!(c.stats().bad_authenticator, 1);
        let right = respond(&bytes, Code::AccessAccept, &[], "right");
        c.handle_datagram(
            Instant::ZERO,
            SocketAddr::from(([192, 0, 2, 66], 1812)),
            &right,
        );
        assert_eq!(c.stats().unexpected, 1);
        c.handle_datagram(Instant::ZERO, to, &right[..10]);
        assert_eq!(c.stats().malformed, 1);
        assert!(events(&mut c).is_empty());
        // A bad Message-Authenticator in an otherwise good answer.
        let bad_mac = respond(
            &bytes,
            Code::AccessAccept,
            &[(AttributeType::MESSAGE_AUTHENTICATOR, vec![0; 16])],
            "right",
        );
        c.handle_datagram(Instant::ZERO, to, &bad_mac);
        assert_eq!(c.stats().bad_authenticator, 2);
        c.handle_datagram(Instant::ZERO, to, &right);
        assert!(matches!(&events(&mut c)[..], [Event::Auth(r)] if r.accept));
    }

    #[test]
    fn retransmits_then_fails_over_and_skips_the_dead_server() {
        let (a, b) = (server(1, "one"), server(2, "two"));
        let mut c = client(config(vec![a.clone(), b.clone()], vec![]));
        let t0 = Instant::ZERO;
        let h = c.start_auth(t0, pap("u", "p"));
        let first = transmits(&mut c, t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, a.address);
        assert_eq!(c.poll_timeout(), Some(t0 + 100 * MS));

        c.handle_timeout(t0 + 100 * MS);
        let again = transmits(&mut c, t0 + 100 * MS);
        assert_eq!(again, first, "a retransmission is the same packet");

        c.handle_timeout(t0 + 200 * MS);
        let over = transmits(&mut c, t0 + 200 * MS);
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].0, b.address);
        assert_eq!(events(&mut c), [Event::ServerDown { address: a.address }]);
        let accept = respond(&over[0].1, Code::AccessAccept, &[], "two");
        // An answer from the first server to its old request is too late.
        let late = respond(&first[0].1, Code::AccessAccept, &[], "one");
        c.handle_datagram(t0 + 210 * MS, a.address, &late);
        assert_eq!(c.stats().unexpected, 1);
        c.handle_datagram(t0 + 210 * MS, b.address, &accept);
        assert!(matches!(&events(&mut c)[..], [Event::Auth(r)] if r.accept && r.handle == h));
        assert_eq!(c.stats().failovers, 1);
        assert_eq!(c.stats().retransmissions, 1);

        // While the first is down, new requests go straight to the second.
        c.start_auth(t0 + Duration::from_secs(1), pap("u", "p"));
        let sent = transmits(&mut c, t0 + Duration::from_secs(1));
        assert_eq!(sent[0].0, b.address);
        let accept = respond(&sent[0].1, Code::AccessAccept, &[], "two");
        c.handle_datagram(t0 + Duration::from_secs(1), b.address, &accept);
        events(&mut c);
        // After the dead time, the first is back in front.
        let later = t0 + Duration::from_secs(11);
        c.start_auth(later, pap("u", "p"));
        assert_eq!(transmits(&mut c, later)[0].0, a.address);
    }

    #[test]
    fn no_server_answering_is_a_rejection() {
        let mut c = client(config(vec![server(1, "x"), server(2, "y")], vec![]));
        let h = c.start_auth(Instant::ZERO, pap("u", "p"));
        let mut sent = 0;
        while let Some(t) = c.poll_timeout() {
            sent += transmits(&mut c, t).len();
            c.handle_timeout(t);
        }
        sent += transmits(&mut c, Instant::ZERO).len();
        assert_eq!(sent, 4, "two tries to each of two servers");
        let evs = events(&mut c);
        assert_eq!(
            evs.last(),
            Some(&Event::Auth(AuthResult::rejected(
                h,
                RejectReason::NoServer,
                None
            )))
        );
        assert_eq!(c.stats().timeouts, 1);
        // Both are down now; the next request still tries them in order.
        c.start_auth(Instant::from_nanos(1), pap("u", "p"));
        assert_eq!(
            transmits(&mut c, Instant::ZERO)[0].0,
            server(1, "x").address
        );
    }

    #[test]
    fn identifiers_run_out_at_256_and_waiting_requests_follow() {
        let s = server(1812, "s");
        let mut c = client(config(vec![s.clone()], vec![]));
        for _ in 0..300 {
            c.start_auth(Instant::ZERO, pap("u", "p"));
        }
        let sent = transmits(&mut c, Instant::ZERO);
        assert_eq!(sent.len(), 256);
        let ids: std::collections::HashSet<u8> = sent.iter().map(|(_, b)| b[1]).collect();
        assert_eq!(ids.len(), 256);
        for (_, bytes) in &sent[..10] {
            c.handle_datagram(
                Instant::ZERO,
                s.address,
                &respond(bytes, Code::AccessAccept, &[], "s"),
            );
        }
        assert_eq!(transmits(&mut c, Instant::ZERO).len(), 10);
        assert_eq!(events(&mut c).len(), 10);
    }

    #[test]
    fn outstanding_requests_are_bounded() {
        let mut cfg = config(vec![server(1812, "s")], vec![server(1813, "s")]);
        cfg.max_outstanding = 3;
        let mut c = client(cfg);
        for _ in 0..3 {
            c.start_auth(Instant::ZERO, pap("u", "p"));
        }
        let h = c.start_auth(Instant::ZERO, pap("u", "p"));
        let acct = c.accounting_start(Instant::ZERO, AccountingSession::default());
        assert_eq!(
            events(&mut c),
            [
                Event::Auth(AuthResult::rejected(h, RejectReason::Overloaded, None)),
                Event::AccountingLost {
                    handle: acct,
                    status: AcctStatus::Start
                }
            ]
        );
        assert_eq!(transmits(&mut c, Instant::ZERO).len(), 3);
        assert_eq!(c.stats().overloaded, 2);
    }

    #[test]
    fn a_resumed_session_sends_an_interim_update_at_once_and_its_stop_counts_from_the_original_start(
    ) {
        let s = server(1813, "acct");
        let mut cfg = config(vec![], vec![s.clone()]);
        cfg.interim_interval = Some(Duration::from_secs(30));
        let mut c = client(cfg);
        let t0 = Instant::from_nanos(5_000_000_000);
        let session = AccountingSession {
            session_id: "moved-1".to_owned(),
            username: "alice".to_owned(),
            framed_address: Some(Ipv4Addr::new(10, 64, 0, 9)),
            ..AccountingSession::default()
        };
        let carried = Counters {
            input_octets: 1000,
            output_octets: 2000,
            input_packets: 10,
            output_packets: 20,
        };
        // The primary started it 100 s ago.
        let h = c.accounting_resume(t0, session, carried, Duration::from_secs(100));
        let sent = transmits(&mut c, t0);
        assert_eq!(sent.len(), 1, "one record, and no Start");
        let p = Packet::new_checked(&sent[0].1[..]).unwrap();
        // RFC 2866 §5.1: Acct-Status-Type 3, Interim-Update.
        assert_eq!(attr(&p, AttributeType::ACCT_STATUS_TYPE), Some(3));
        assert_eq!(
            p.attribute(AttributeType::ACCT_SESSION_ID),
            Some(&b"moved-1"[..])
        );
        assert_eq!(attr(&p, AttributeType::ACCT_SESSION_TIME), Some(100));
        assert_eq!(attr(&p, AttributeType::ACCT_INPUT_OCTETS), Some(1000));
        assert_eq!(attr(&p, AttributeType::ACCT_OUTPUT_PACKETS), Some(20));
        // The next one at the interval, then the Stop with the counters
        // carried on.
        assert_eq!(c.poll_timeout(), Some(t0 + 100 * MS));
        c.handle_datagram(
            t0,
            s.address,
            &respond(&sent[0].1, Code::AccountingResponse, &[], "acct"),
        );
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        let later = Counters {
            input_octets: 1500,
            ..carried
        };
        let t1 = t0 + Duration::from_secs(10);
        assert!(c.accounting_stop(t1, h, later, TerminateCause::UserRequest));
        let stop = transmits(&mut c, t1).remove(0).1;
        let p = Packet::new_checked(&stop[..]).unwrap();
        assert_eq!(attr(&p, AttributeType::ACCT_STATUS_TYPE), Some(2));
        assert_eq!(attr(&p, AttributeType::ACCT_SESSION_TIME), Some(110));
        assert_eq!(attr(&p, AttributeType::ACCT_INPUT_OCTETS), Some(1500));
    }

    #[test]
    fn a_forgotten_session_sends_no_stop_and_no_more_interim_updates() {
        let s = server(1813, "acct");
        let mut cfg = config(vec![], vec![s.clone()]);
        cfg.interim_interval = Some(Duration::from_secs(30));
        let mut c = client(cfg);
        let t0 = Instant::ZERO;
        let h = c.accounting_start(t0, AccountingSession::default());
        let start = transmits(&mut c, t0).remove(0).1;
        c.handle_datagram(
            t0,
            s.address,
            &respond(&start, Code::AccountingResponse, &[], "acct"),
        );
        assert_eq!(c.accounting_sessions(), 1);
        assert!(c.accounting_forget(h));
        assert!(!c.accounting_forget(h));
        assert_eq!(c.accounting_sessions(), 0);
        assert_eq!(c.poll_timeout(), None, "no Interim-Update left");
        assert!(!c.accounting_stop(t0, h, Counters::default(), TerminateCause::NasRequest));
        assert!(transmits(&mut c, t0).is_empty());
    }

    #[test]
    fn accounting_start_interim_stop() {
        let s = server(1813, "acct");
        let mut cfg = config(vec![], vec![s.clone()]);
        cfg.interim_interval = Some(Duration::from_secs(30));
        let mut c = client(cfg);
        let t0 = Instant::from_nanos(5_000_000_000);
        c.set_wall_clock(t0, Duration::from_secs(1_700_000_000));
        let session = AccountingSession {
            session_id: "0000002a".to_owned(),
            username: "alice".to_owned(),
            framed_address: Some(Ipv4Addr::new(10, 64, 0, 9)),
            class: vec![b"gold".to_vec()],
            calling_station_id: None,
            nas_port: Some(3),
            authentic: Some(Authentic::Radius),
            interim_interval: None,
        };
        let h = c.accounting_start(t0, session);
        let check = |bytes: &[u8], status: u32| {
            let p = Packet::new_checked(bytes).unwrap();
            assert_eq!(p.code(), Code::AccountingRequest);
            // RFC 2866 §3: MD5 over the packet with a zero authenticator
            // and the secret.
            assert_eq!(p.authenticator(), packet_digest(bytes, &[0; 16], b"acct"));
            assert_eq!(attr(&p, AttributeType::ACCT_STATUS_TYPE), Some(status));
            assert_eq!(
                p.attribute(AttributeType::ACCT_SESSION_ID),
                Some(&b"0000002a"[..])
            );
            assert_eq!(p.attribute(AttributeType::CLASS), Some(&b"gold"[..]));
            assert_eq!(attr(&p, AttributeType::ACCT_AUTHENTIC), Some(1));
            assert_eq!(
                p.attribute(AttributeType::FRAMED_IP_ADDRESS),
                Some(&[10, 64, 0, 9][..])
            );
        };
        let start = transmits(&mut c, t0).remove(0).1;
        check(&start, 1);
        let p = Packet::new_checked(&start[..]).unwrap();
        assert_eq!(
            attr(&p, AttributeType::EVENT_TIMESTAMP),
            Some(1_700_000_000)
        );
        assert_eq!(attr(&p, AttributeType::ACCT_DELAY_TIME), Some(0));
        assert_eq!(p.attribute(AttributeType::ACCT_INPUT_OCTETS), None);
        c.handle_datagram(
            t0,
            s.address,
            &respond(&start, Code::AccountingResponse, &[], "acct"),
        );
        assert_eq!(
            events(&mut c),
            [Event::AccountingAcknowledged {
                handle: h,
                status: AcctStatus::Start
            }]
        );

        let counters = Counters {
            input_octets: (5 << 32) + 1234,
            output_octets: 99,
            input_packets: 10,
            output_packets: 20,
        };
        c.accounting_update(h, counters);
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(c.poll_timeout(), Some(t1));
        c.handle_timeout(t1);
        let interim = transmits(&mut c, t1).remove(0).1;
        check(&interim, 3);
        let p = Packet::new_checked(&interim[..]).unwrap();
        assert_eq!(attr(&p, AttributeType::ACCT_INPUT_OCTETS), Some(1234));
        assert_eq!(attr(&p, AttributeType::ACCT_INPUT_GIGAWORDS), Some(5));
        assert_eq!(attr(&p, AttributeType::ACCT_OUTPUT_OCTETS), Some(99));
        assert_eq!(attr(&p, AttributeType::ACCT_OUTPUT_GIGAWORDS), Some(0));
        assert_eq!(attr(&p, AttributeType::ACCT_INPUT_PACKETS), Some(10));
        assert_eq!(attr(&p, AttributeType::ACCT_OUTPUT_PACKETS), Some(20));
        assert_eq!(attr(&p, AttributeType::ACCT_SESSION_TIME), Some(30));
        assert_eq!(
            attr(&p, AttributeType::EVENT_TIMESTAMP),
            Some(1_700_000_030)
        );
        c.handle_datagram(
            t1,
            s.address,
            &respond(&interim, Code::AccountingResponse, &[], "acct"),
        );

        let t2 = t0 + Duration::from_secs(45);
        assert!(c.accounting_stop(t2, h, counters, TerminateCause::IdleTimeout));
        assert!(!c.accounting_stop(t2, h, counters, TerminateCause::IdleTimeout));
        let stop = transmits(&mut c, t2).remove(0).1;
        check(&stop, 2);
        let p = Packet::new_checked(&stop[..]).unwrap();
        assert_eq!(attr(&p, AttributeType::ACCT_TERMINATE_CAUSE), Some(4));
        assert_eq!(attr(&p, AttributeType::ACCT_SESSION_TIME), Some(45));
        c.handle_datagram(
            t2,
            s.address,
            &respond(&stop, Code::AccountingResponse, &[], "acct"),
        );
        let evs = events(&mut c);
        assert_eq!(
            evs.last(),
            Some(&Event::AccountingAcknowledged {
                handle: h,
                status: AcctStatus::Stop
            })
        );
        // No more Interim-Updates for a stopped session.
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let err = Client::new(
            config(vec![server(1, "")], vec![]),
            Box::new(ChaCha8Rng::seed_from_u64(1)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty secret"), "{err}");
    }

    proptest! {
        /// Whatever arrives from a server's address, nothing panics and
        /// nothing but a verdict of a real request comes out.
        #[test]
        fn any_datagram_is_handled_without_panic(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..20),
        ) {
            let s = server(1812, "s");
            let mut c = client(config(vec![s.clone()], vec![server(1813, "s")]));
            c.start_auth(Instant::ZERO, pap("u", "p"));
            c.accounting_start(Instant::ZERO, AccountingSession::default());
            for d in datagrams {
                c.handle_datagram(Instant::ZERO, s.address, &d);
            }
            prop_assert!(events(&mut c).is_empty());
        }
    }
}

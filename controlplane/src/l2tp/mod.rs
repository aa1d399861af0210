//! The L2TPv2 control connection (RFC 2661), sans-IO: reliable delivery,
//! the tunnel state machine and the incoming-call session state machines.
//!
//! # Shape
//!
//! An [`Endpoint`] is one L2TP node (LAC, LNS, or both) on one UDP socket. It
//! holds any number of tunnels and their sessions, and never does I/O:
//!
//! * datagrams go in with [`Endpoint::handle_datagram`] (control *and* data
//!   messages: data messages come out as [`Event::Data`]);
//! * datagrams come out of [`Endpoint::poll_transmit`];
//! * [`Endpoint::poll_timeout`] says when to call [`Endpoint::handle_timeout`];
//! * what happened comes out of [`Endpoint::poll_event`];
//! * the owner acts with [`Endpoint::connect`], [`Endpoint::open_session`],
//!   [`Endpoint::close_session`], [`Endpoint::close_tunnel`] and
//!   [`Endpoint::send_data`]; a LAC that handles data outside the endpoint
//!   (a fast path) holds its ICCNs until it is ready
//!   ([`CallParams::defer_connect`], [`Event::CallAnswered`],
//!   [`Endpoint::connect_call`]);
//! * the HA extension (DESIGN.md §3, [`Config::ha`]): HA-Capability and
//!   Peer-LNS-Address in the handshake ([`PeerInfo::ha`],
//!   [`PeerInfo::peer_lns_addresses`], [`Endpoint::peer_info`]), the vendor
//!   messages with [`Endpoint::send_ha_message`] and [`Event::Message`],
//!   Recovery-Tunnel ([`Endpoint::connect_for_recovery`],
//!   [`PeerInfo::recovery_tunnel`]) and Recovery-Session
//!   ([`CallParams::recovery_session`], [`Event::RecoveryCall`],
//!   [`Endpoint::answer_recovery_call`], [`CallInfo::ownership_epoch`]),
//!   and the release of a moved session ([`Endpoint::release_session`],
//!   [`Event::SessionMoved`]).
//!
//! Time is [`crate::time::Instant`], passed in; randomness (tunnel and
//! session ids, challenges, tie breakers, random vectors) comes from the RNG
//! given to [`Endpoint::new`].
//!
//! # Example: a LAC opens a tunnel and a session
//!
//! ```
//! use controlplane::l2tp::{CallParams, Config, Endpoint, Event};
//! use controlplane::time::Instant;
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use core::time::Duration;
//! # struct Rng(u64);
//! # impl rand_core::RngCore for Rng {
//! #     fn next_u32(&mut self) -> u32 { self.next_u64() as u32 }
//! #     fn next_u64(&mut self) -> u64 { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); self.0 >> 11 }
//! #     fn fill_bytes(&mut self, d: &mut [u8]) { rand_core::impls::fill_bytes_via_next(self, d) }
//! #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> { self.fill_bytes(d); Ok(()) }
//! # }
//!
//! let lac_addr = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1701);
//! let lns_addr = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1701);
//! let mut lac = Endpoint::new(Config::lac("lac"), Box::new(Rng(1))).unwrap();
//! let mut lns = Endpoint::new(Config::lns("lns"), Box::new(Rng(2))).unwrap();
//!
//! let mut now = Instant::ZERO;
//! let tunnel = lac.connect(now, lns_addr).unwrap();
//! // Sessions may be opened at once: the ICRQ waits for the tunnel.
//! let session = lac.open_session(now, tunnel, CallParams::default()).unwrap();
//!
//! // The driver's loop, with a perfect network in between.
//! let mut up = false;
//! for _ in 0..100 {
//!     while let Some(t) = lac.poll_transmit(now) {
//!         lns.handle_datagram(now, lac_addr, &t.payload);
//!     }
//!     while let Some(t) = lns.poll_transmit(now) {
//!         lac.handle_datagram(now, lns_addr, &t.payload);
//!     }
//!     while let Some(event) = lac.poll_event() {
//!         if let Event::SessionUp { session: s, .. } = event {
//!             assert_eq!(s, session);
//!             up = true;
//!         }
//!     }
//!     while lns.poll_event().is_some() {}
//!     if up {
//!         break;
//!     }
//!     // Jump to the next timer (the ZLB acknowledgements, retransmissions).
//!     match [lac.poll_timeout(), lns.poll_timeout()].into_iter().flatten().min() {
//!         Some(t) => {
//!             now = t;
//!             lac.handle_timeout(now);
//!             lns.handle_timeout(now);
//!         }
//!         None => now += Duration::from_millis(10),
//!     }
//! }
//! assert!(up);
//! ```
//!
//! [`crate::sim`] runs endpoints like this over a lossy simulated link.
//!
//! # What the network cannot do to an endpoint
//!
//! No input from the network or a peer panics, and nothing already
//! established is lost because of one bad datagram or peer:
//!
//! * a control message that does not parse is dropped *unacknowledged*, so
//!   the peer retransmits a genuine one (RFC 2661 §7.1 would clear the
//!   tunnel; [`Endpoint::handle_datagram`] says why we do not);
//! * a datagram carrying a tunnel's ID counts only from that tunnel's peer
//!   address and port (RFC 2661 §8.1), so spoofed StopCCNs, CDNs and data
//!   are dropped;
//! * half-open state is bounded: [`Config::max_pending_tunnels`],
//!   [`Config::max_refused_tunnels`], [`Config::setup_timeout`], and a peer
//!   that never acknowledges cannot grow our send queue
//!   ([`reliable::MAX_WAITING`]);
//! * every datagram is counted once by what became of it
//!   ([`EndpointStats`], [`TunnelStats`]), and drops raise no event.
//!
//! The fuzz targets under `controlplane/fuzz` hold the endpoint to this.

pub mod codes;
#[cfg(test)]
mod defer_tests;
mod endpoint;
pub mod fsm;
pub mod reliable;
mod session;
mod tunnel;

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use dataplane::wire::control::{Avp, AvpEntry, ControlMessage, HA_VENDOR_ID};

pub use codes::ResultCode;
pub use endpoint::{Endpoint, EndpointStats};
pub use fsm::{CallSide, SessionState, TunnelState};
pub use reliable::{ChannelStats, Retransmission};

/// The L2TP protocol version we speak: version 1, revision 0 (RFC 2661
/// §4.4.3 Protocol Version).
pub const PROTOCOL_VERSION: (u8, u8) = (1, 0);

/// Framing Capabilities bit: synchronous framing (RFC 2661 §4.4.3).
pub const FRAMING_SYNC: u32 = 0x1;
/// Framing Capabilities bit: asynchronous framing (RFC 2661 §4.4.3).
pub const FRAMING_ASYNC: u32 = 0x2;
/// Bearer Capabilities bit: digital access (RFC 2661 §4.4.3).
pub const BEARER_DIGITAL: u32 = 0x1;
/// Bearer Capabilities bit: analog access (RFC 2661 §4.4.3).
pub const BEARER_ANALOG: u32 = 0x2;

/// How an endpoint behaves. Build one with [`Config::lac`], [`Config::lns`]
/// or [`Config::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our Host Name AVP (RFC 2661 §4.4.3). Must not be empty.
    pub host_name: String,
    /// Our Vendor Name AVP, if any.
    pub vendor_name: Option<String>,
    /// Our Firmware Revision AVP, if any.
    pub firmware_revision: Option<u16>,
    /// Our Framing Capabilities ([`FRAMING_SYNC`] | [`FRAMING_ASYNC`]).
    pub framing_capabilities: u32,
    /// Our Bearer Capabilities, if we advertise any.
    pub bearer_capabilities: Option<u32>,
    /// Our receive window (the Receive Window Size AVP we send): how many
    /// control messages the peer may have unacknowledged, and how many
    /// out-of-order ones we hold. Default 16.
    pub receive_window: u16,
    /// Retransmission schedule (RFC 2661 §5.8). Default 1 s initial, doubling
    /// to 8 s, 5 retransmissions.
    pub retransmission: Retransmission,
    /// Slow start and congestion avoidance on the control channel (RFC 2661
    /// Appendix A). Default on.
    pub slow_start: bool,
    /// How long an acknowledgement waits for a message of ours to carry it
    /// before it is sent as a ZLB. Default 50 ms; must be less than
    /// `retransmission.initial` (the peer's timeout is presumably similar).
    pub ack_delay: Duration,
    /// Send a Hello after this long with nothing received from the peer
    /// (RFC 2661 §5.5, §6.5; recommended 60 s). `None` disables Hellos.
    pub hello_interval: Option<Duration>,
    /// Declare an established tunnel's peer unreachable when nothing
    /// (control or data) has been heard from it for this long, without
    /// waiting for a whole retransmission cycle (RFC 2661 §5.8). With
    /// `hello_interval` well below it (and the peer's acknowledgement delay
    /// too), a live peer always answers in time: 100 ms Hellos and 300 ms
    /// here detect a dead LNS in 300-400 ms (DESIGN.md §1 item 4, failure
    /// switchover). Reported as [`TunnelDownReason::RetriesExhausted`], and
    /// no StopCCN is sent (the peer cannot be reached, or will find out by
    /// itself). `None` (the default): only retransmissions decide.
    pub dead_interval: Option<Duration>,
    /// How long an established tunnel's peer has to be heard from (it is
    /// probed with a Hello) after its host reported our datagrams' port
    /// unreachable ([`Endpoint::handle_unreachable`]) before it counts as
    /// dead as by `dead_interval`. A process killed on a live host is then
    /// found within a round trip of the next datagram plus this, instead of
    /// a dead interval. ICMP is no proof (RFC 1122 §4.2.3.9 calls these
    /// hard errors, but anyone on the path can forge one): a live peer
    /// answers the probe in time and nothing happens, so it must exceed the
    /// peer's acknowledgement delay and round trip. `None` (the default):
    /// such reports are ignored.
    pub unreachable_timeout: Option<Duration>,
    /// The tunnel secret shared with every peer: answers challenges (RFC
    /// 2661 §5.1.1) and hides and reveals hidden AVPs (§4.3).
    pub secret: Option<Vec<u8>>,
    /// Challenge every peer and refuse a tunnel whose Challenge Response is
    /// missing or wrong (RFC 2661 §5.1.1). Needs `secret`.
    pub require_authentication: bool,
    /// Put a Tie Breaker AVP in our SCCRQs (RFC 2661 §4.4.3), so that only
    /// one tunnel survives when two endpoints open one to each other at
    /// once. Default on.
    pub tie_breaker: bool,
    /// Vendor id of the HA extension (DESIGN.md §3). Default 43.
    pub ha_vendor_id: u32,
    /// Take part in the HA extension (DESIGN.md §3): advertise
    /// HA-Capability in our SCCRQ and SCCRP, send Peer-LNS-Address to
    /// HA-capable peers, and allow [`Endpoint::send_ha_message`]. `None`
    /// (the default): a plain RFC 2661 endpoint.
    pub ha: Option<HaConfig>,
    /// Answer SCCRQs from peers (an LNS does). A refused SCCRQ is answered
    /// with StopCCN result 4.
    pub accept_tunnels: bool,
    /// Answer ICRQs with ICRP (an LNS does). A refused ICRQ is answered with
    /// CDN result 5.
    pub accept_calls: bool,
    /// Extra AVPs for every SCCRQ we send (HA-Capability, ...), after ours.
    pub sccrq_avps: Vec<AvpEntry>,
    /// Extra AVPs for every SCCRP we send (HA-Capability, Peer-LNS-Address).
    pub sccrp_avps: Vec<AvpEntry>,
    /// A tunnel that is not established this long after it started (our
    /// SCCRQ, or the peer's) is cleared with StopCCN. RFC 2661 has no such
    /// timer, but without it a peer that acknowledges our SCCRP (or SCCRQ)
    /// and never sends SCCCN (or SCCRP) would hold the tunnel half-open
    /// forever. Default 60 s: longer than a full retransmission cycle, so a
    /// peer that is merely silent is still reported as
    /// [`TunnelDownReason::RetriesExhausted`].
    pub setup_timeout: Duration,
    /// Tunnels a peer's SCCRQ created that are not established yet (we sent
    /// SCCRP and wait for SCCCN). SCCRQs beyond this are dropped unanswered
    /// and counted ([`EndpointStats::sccrq_over_pending_limit`]), so a flood
    /// of SCCRQs from spoofed addresses holds bounded state and leaves the
    /// established tunnels alone. Default 1024.
    pub max_pending_tunnels: usize,
    /// Tunnels a peer's SCCRQ created that never came up and are held after
    /// StopCCN (RFC 2661 §5.7): refused SCCRQs, failed authentication. An
    /// SCCRQ we would refuse while this many are held is dropped unanswered
    /// ([`EndpointStats::sccrq_over_refused_limit`]); a tunnel refused later
    /// at the limit is freed at once instead of held. Default 1024.
    pub max_refused_tunnels: usize,
    /// Incoming calls per tunnel answered with ICRP and waiting for ICCN
    /// (RFC 2661 §7.4.2 wait-connect). An ICRQ beyond this is refused with
    /// CDN result 4 (no facilities, temporary) and error 4 (insufficient
    /// resources), so a peer that opens calls and never connects them holds
    /// bounded state; its established sessions are not touched. Default
    /// 1024: an honest LAC pipelines ICRQs within our receive window, and
    /// each waits one round trip for its ICCN.
    pub max_pending_calls: usize,
    /// LNS: hold the ICRP of an incoming call at most this long: the owner
    /// hears [`Event::CallOffered`] with every id of the call, prepares for
    /// the LAC's data (programs a fast path) and then answers with
    /// [`Endpoint::answer_call`]. RFC 2661 §7.4.2 has the LNS established,
    /// and so bound to accept the LAC's data, once the ICCN arrives, and a
    /// LAC sends the subscriber's held PPP frames as soon as its ICCN is
    /// acknowledged: anything that handles data outside the endpoint must
    /// know the session before then, or those frames are lost and PPP waits
    /// for a restart timer (3 s). A call not answered in time is cleared
    /// with CDN (result 4, no facilities) and counted
    /// ([`TunnelStats::connect_timeouts`]). Calls with Recovery-Session
    /// under [`HaConfig::defer_recovery_calls`] wait for their own answer
    /// instead. `None` (the default): the ICRP follows the ICRQ at once.
    pub defer_answer: Option<Duration>,
    /// The first Ns of every tunnel, and the first Ns expected from the
    /// peer. RFC 2661 says 0; tests set it near 65535 on both ends to
    /// exercise the wrap. Do not change it against a real peer.
    #[doc(hidden)]
    pub initial_sequence: u16,
}

impl Config {
    /// A configuration that accepts tunnels and calls, with the RFC's
    /// recommended timers.
    pub fn new(host_name: impl Into<String>) -> Self {
        Config {
            host_name: host_name.into(),
            vendor_name: None,
            firmware_revision: None,
            framing_capabilities: FRAMING_SYNC | FRAMING_ASYNC,
            bearer_capabilities: None,
            receive_window: 16,
            retransmission: Retransmission::default(),
            slow_start: true,
            ack_delay: Duration::from_millis(50),
            hello_interval: Some(Duration::from_secs(60)),
            dead_interval: None,
            unreachable_timeout: None,
            secret: None,
            require_authentication: false,
            tie_breaker: true,
            ha_vendor_id: HA_VENDOR_ID,
            ha: None,
            accept_tunnels: true,
            accept_calls: true,
            sccrq_avps: Vec::new(),
            sccrp_avps: Vec::new(),
            setup_timeout: Duration::from_secs(60),
            max_pending_tunnels: 1024,
            max_refused_tunnels: 1024,
            max_pending_calls: 1024,
            defer_answer: None,
            initial_sequence: 0,
        }
    }

    /// A LAC: opens tunnels and calls, accepts neither.
    pub fn lac(host_name: impl Into<String>) -> Self {
        Config {
            accept_tunnels: false,
            accept_calls: false,
            ..Config::new(host_name)
        }
    }

    /// An LNS: accepts tunnels and incoming calls.
    pub fn lns(host_name: impl Into<String>) -> Self {
        Config::new(host_name)
    }

    /// Check the configuration; [`Endpoint::new`] does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.host_name.is_empty() {
            return err("host_name", "must not be empty (RFC 2661 §4.4.3)");
        }
        if self.receive_window == 0 {
            return err("receive_window", "must be at least 1 (RFC 2661 §4.4.3)");
        }
        if self.retransmission.initial.is_zero() {
            return err("retransmission.initial", "must be more than zero");
        }
        if self.retransmission.cap < self.retransmission.initial {
            return err(
                "retransmission.cap",
                "must be at least retransmission.initial",
            );
        }
        if self.ack_delay >= self.retransmission.initial {
            return err(
                "ack_delay",
                "must be less than retransmission.initial, or every message is retransmitted",
            );
        }
        if self.hello_interval.is_some_and(|h| h.is_zero()) {
            return err(
                "hello_interval",
                "must be more than zero (or None to disable Hellos)",
            );
        }
        if self.dead_interval.is_some_and(|d| d.is_zero()) {
            return err(
                "dead_interval",
                "must be more than zero (or None to rely on retransmissions)",
            );
        }
        if self.unreachable_timeout.is_some_and(|d| d.is_zero()) {
            return err(
                "unreachable_timeout",
                "must be more than zero (or None to ignore ICMP port unreachable)",
            );
        }
        if self.secret.as_ref().is_some_and(|s| s.is_empty()) {
            return err("secret", "must not be empty (or None for no secret)");
        }
        if self.require_authentication && self.secret.is_none() {
            return err("require_authentication", "needs a secret");
        }
        if self.setup_timeout.is_zero() {
            return err("setup_timeout", "must be more than zero");
        }
        if self.ha.is_some() && (self.ha_vendor_id == 0 || self.ha_vendor_id > 0xffff) {
            return err(
                "ha_vendor_id",
                "must be 1 to 65535 when HA is on (RFC 2661 §4.1: a 16-bit vendor id, 0 is the IETF)",
            );
        }
        if self
            .ha
            .as_ref()
            .is_some_and(|h| h.lns_peers.iter().any(|p| p.secret.is_empty()))
        {
            return err("ha.lns_peers", "every LNS peer needs a non-empty secret");
        }
        if self.accept_calls && self.max_pending_calls == 0 {
            return err(
                "max_pending_calls",
                "must be at least 1 when accept_calls is on, or every ICRQ is refused",
            );
        }
        if self.accept_tunnels && self.max_pending_tunnels == 0 {
            return err(
                "max_pending_tunnels",
                "must be at least 1 when accept_tunnels is on, or every SCCRQ is dropped",
            );
        }
        Ok(())
    }

    fn lns_peer(&self, remote: Ipv4Addr) -> Option<&LnsPeer> {
        self.ha
            .as_ref()
            .and_then(|h| h.lns_peers.iter().find(|p| p.address == remote))
    }

    /// The tunnel secret for a peer at `remote`: its own if it is one of
    /// [`HaConfig::lns_peers`], else [`Config::secret`].
    pub fn secret_for(&self, remote: Ipv4Addr) -> Option<&[u8]> {
        match self.lns_peer(remote) {
            Some(p) => Some(&p.secret),
            None => self.secret.as_deref(),
        }
    }

    /// Whether a tunnel with `remote` must authenticate (RFC 2661 §5.1.1):
    /// always for an LNS peer, else [`Config::require_authentication`].
    pub fn requires_authentication_from(&self, remote: Ipv4Addr) -> bool {
        self.lns_peer(remote).is_some() || self.require_authentication
    }

    fn channel(&self) -> reliable::ChannelConfig {
        reliable::ChannelConfig {
            receive_window: self.receive_window,
            retransmission: self.retransmission,
            ack_delay: self.ack_delay,
            initial_sequence: self.initial_sequence,
            slow_start: self.slow_start,
        }
    }
}

/// The HA extension's part of [`Config`] (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// What our HA-Capability AVP says.
    pub capability: HaCapability,
    /// LNS: the peer LNSs to put in Peer-LNS-Address, in preference order,
    /// in every SCCRP to a peer that advertised HA-Capability (never to
    /// one that did not). Empty: no Peer-LNS-Address.
    pub peer_lns_addresses: Vec<Ipv4Addr>,
    /// LNS: an ICRQ carrying Recovery-Session is not answered at once: the
    /// owner hears [`Event::RecoveryCall`] and answers with
    /// [`Endpoint::answer_recovery_call`] (ICRP with Ownership-Epoch, or
    /// CDN), after looking the session up in its offloaded state. Off: such
    /// an ICRQ is answered like any other, and the owner finds
    /// [`CallInfo::recovery_session`] in [`Event::SessionUp`].
    pub defer_recovery_calls: bool,
    /// The LNSs we exchange state with (LNS-LNS control connections).
    /// Tunnels to and from these addresses use the peer's own secret
    /// instead of [`Config::secret`] and always require tunnel
    /// authentication (RFC 2661 §5.1.1), whatever
    /// [`Config::require_authentication`] says for LACs: a peer without the
    /// secret is refused.
    pub lns_peers: Vec<LnsPeer>,
}

/// An LNS we peer with for state offload ([`HaConfig::lns_peers`]).
#[derive(Clone, PartialEq, Eq)]
pub struct LnsPeer {
    /// Its address (the LNS-LNS tunnel's remote).
    pub address: Ipv4Addr,
    /// The secret shared with it.
    pub secret: Vec<u8>,
}

impl fmt::Debug for LnsPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("LnsPeer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            capability: HaCapability {
                version: HA_VERSION,
                flags: 0,
            },
            peer_lns_addresses: Vec::new(),
            defer_recovery_calls: true,
            lns_peers: Vec::new(),
        }
    }
}

/// The version of the HA extension we speak (HA-Capability, DESIGN.md §3).
pub const HA_VERSION: u16 = 1;

/// An HA-Capability AVP's value (HA vendor attribute 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaCapability {
    /// Version of the extension.
    pub version: u16,
    /// Flags (none defined yet; sent as 0, ignored on receipt).
    pub flags: u16,
}

/// A Recovery-Tunnel AVP's value (HA vendor attribute 10): which of the
/// primary's tunnels a LAC's SCCRQ to a peer LNS replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecoveryTunnel {
    /// The primary LNS's address.
    pub primary_lns: Ipv4Addr,
    /// The primary's (LNS-side) Tunnel ID.
    pub lns_tunnel_id: u16,
    /// The LAC's Tunnel ID of the old tunnel.
    pub lac_tunnel_id: u16,
}

impl RecoveryTunnel {
    /// The AVP, M bit clear (DESIGN.md §3).
    pub fn to_avp(self) -> AvpEntry {
        AvpEntry::optional(Avp::RecoveryTunnel {
            primary_lns: self.primary_lns,
            lns_tunnel_id: self.lns_tunnel_id,
            lac_tunnel_id: self.lac_tunnel_id,
        })
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field of [`Config`].
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "l2tp config: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Identifies a tunnel for the lifetime of its [`Endpoint`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelHandle(pub u64);

/// Identifies a session (and its tunnel) for the lifetime of its
/// [`Endpoint`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle {
    /// The tunnel that carries the session.
    pub tunnel: TunnelHandle,
    /// Unique within the endpoint.
    pub id: u64,
}

/// A datagram to send: UDP payload and destination. The source is the
/// endpoint's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub remote: SocketAddrV4,
    /// The L2TP message.
    pub payload: Vec<u8>,
}

/// What the peer told us about itself in its SCCRQ or SCCRP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's Assigned Tunnel ID (the Tunnel ID we send to).
    pub tunnel_id: u16,
    /// Host Name.
    pub host_name: String,
    /// Receive Window Size (4 if absent, RFC 2661 §4.4.3).
    pub receive_window: u16,
    /// Vendor Name, if sent.
    pub vendor_name: Option<String>,
    /// Firmware Revision, if sent.
    pub firmware_revision: Option<u16>,
    /// Framing Capabilities.
    pub framing_capabilities: u32,
    /// Bearer Capabilities, if sent.
    pub bearer_capabilities: Option<u32>,
    /// Every AVP of the SCCRQ or SCCRP (after the Message Type), in order:
    /// vendor AVPs such as HA-Capability and Peer-LNS-Address are here.
    pub avps: Vec<AvpEntry>,
    /// The peer's HA-Capability, if it advertised one (DESIGN.md §3).
    pub ha: Option<HaCapability>,
    /// Peer-LNS-Address from an LNS's SCCRP: where to go if it fails or
    /// asks us to move, in preference order. Empty if none.
    pub peer_lns_addresses: Vec<Ipv4Addr>,
    /// Recovery-Tunnel from a LAC's SCCRQ: the primary's tunnel this one
    /// takes over.
    pub recovery_tunnel: Option<RecoveryTunnel>,
}

/// What the LAC says about a call it opens ([`Endpoint::open_session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallParams {
    /// Call Serial Number; `None` takes the endpoint's next one.
    pub call_serial_number: Option<u32>,
    /// Bearer Type for the ICRQ, if any.
    pub bearer_type: Option<u32>,
    /// Framing Type for the ICCN (default [`FRAMING_SYNC`], what PPPoE
    /// carries).
    pub framing_type: u32,
    /// (Tx) Connect Speed for the ICCN, bits per second.
    pub tx_connect_speed: u32,
    /// Rx Connect Speed for the ICCN, if any.
    pub rx_connect_speed: Option<u32>,
    /// Extra AVPs for the ICRQ (Calling Number, ...).
    pub icrq_avps: Vec<AvpEntry>,
    /// HA: this call recovers the primary's session with this (LNS) Session
    /// ID; the ICRQ carries Recovery-Session (M bit clear, DESIGN.md §3).
    pub recovery_session: Option<u16>,
    /// Extra AVPs for the ICCN: the proxy LCP and proxy authentication AVPs
    /// (RFC 2661 §4.4.5), Sequencing Required, ...
    pub iccn_avps: Vec<AvpEntry>,
    /// Hold the ICCN when the ICRP arrives, at most this long: the owner
    /// hears [`Event::CallAnswered`] with every id of the call, prepares
    /// for the LNS's data (programs a fast path) and then sends the ICCN
    /// with [`Endpoint::connect_call`]. RFC 2661 §7.4.1 has the LAC
    /// established, and so bound to accept the LNS's data, from the moment
    /// it sends ICCN, and an LNS sends its first PPP frames (LCP
    /// Configure-Request) right after receiving it: anything that handles
    /// data outside the endpoint must know the session before then, or
    /// those frames are lost and PPP waits for the LNS's restart timer. A
    /// call not connected in time is cleared with CDN (result 4, no
    /// facilities) and counted ([`TunnelStats::connect_timeouts`]). `None`
    /// (the default): the ICCN follows the ICRP at once.
    pub defer_connect: Option<core::time::Duration>,
}

impl Default for CallParams {
    fn default() -> Self {
        CallParams {
            call_serial_number: None,
            bearer_type: None,
            framing_type: FRAMING_SYNC,
            tx_connect_speed: 100_000_000,
            rx_connect_speed: None,
            icrq_avps: Vec::new(),
            recovery_session: None,
            iccn_avps: Vec::new(),
            defer_connect: None,
        }
    }
}

/// What the peer said about a call while setting it up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// Call Serial Number (from the ICRQ).
    pub call_serial_number: Option<u32>,
    /// Bearer Type (ICRQ).
    pub bearer_type: Option<u32>,
    /// Framing Type (ICCN).
    pub framing_type: Option<u32>,
    /// (Tx) Connect Speed (ICCN).
    pub tx_connect_speed: Option<u32>,
    /// Rx Connect Speed (ICCN).
    pub rx_connect_speed: Option<u32>,
    /// Every AVP the peer sent while setting up the call, in order: the
    /// ICRQ's then the ICCN's on the LNS (proxy LCP and authentication AVPs
    /// included), the ICRP's on the LAC.
    pub avps: Vec<AvpEntry>,
    /// LNS: the Recovery-Session of the ICRQ (the primary's Session ID this
    /// call takes over), if any.
    pub recovery_session: Option<u16>,
    /// LAC: the Ownership-Epoch of the ICRP (a recovered session's), if
    /// any.
    pub ownership_epoch: Option<u32>,
}

/// Why a tunnel went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelDownReason {
    /// The owner closed it ([`Endpoint::close_tunnel`]); we sent StopCCN.
    Closed(ResultCode),
    /// The peer sent StopCCN with this result.
    StopCcnReceived(ResultCode),
    /// A control message went unacknowledged through every retransmission
    /// (RFC 2661 §5.8): the peer is unreachable.
    RetriesExhausted,
    /// Tunnel authentication failed (RFC 2661 §5.1.1): the peer's Challenge
    /// Response was missing or wrong, or it challenged us and we have no
    /// secret. We sent StopCCN with this result (4).
    AuthenticationFailed(ResultCode),
    /// We stopped the tunnel for a protocol error or refused it (unknown
    /// mandatory AVP, message out of sequence, unsupported version, missing
    /// AVP, not accepting tunnels); we sent StopCCN with this result.
    ProtocolError(ResultCode),
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionDownReason {
    /// The owner closed it ([`Endpoint::close_session`]); we sent CDN.
    Closed(ResultCode),
    /// The peer sent CDN with this result.
    CdnReceived(ResultCode),
    /// We stopped it for a protocol error; we sent CDN with this result.
    ProtocolError(ResultCode),
    /// Its tunnel went down.
    TunnelDown,
}

/// The Call Errors AVP of a WAN-Error-Notify (RFC 2661 §4.4.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallErrors {
    /// CRC errors.
    pub crc: u32,
    /// Framing errors.
    pub framing: u32,
    /// Hardware overruns.
    pub hardware_overruns: u32,
    /// Buffer overruns.
    pub buffer_overruns: u32,
    /// Time-out errors.
    pub timeouts: u32,
    /// Alignment errors.
    pub alignment: u32,
}

/// Counters of one tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Reliable delivery of control messages.
    pub control: ChannelStats,
    /// Hellos we sent (RFC 2661 §6.5).
    pub hellos_sent: u64,
    /// Reports that the peer's host answered our datagrams with port
    /// unreachable ([`Endpoint::handle_unreachable`]).
    pub unreachable_reports: u64,
    /// Of those, the ones that quoted a control message of ours still
    /// unacknowledged: the peer counted dead at once.
    pub unreachable_confirmed: u64,
    /// Data messages received for an established session.
    pub data_received: u64,
    /// Data messages built with [`Endpoint::send_data`].
    pub data_sent: u64,
    /// Data messages dropped: unknown session, or session not established.
    pub data_dropped: u64,
    /// Datagrams (control or data) carrying this tunnel's ID from an
    /// address or port other than the peer's; dropped.
    pub wrong_source: u64,
    /// Control messages from the peer whose header parsed but whose body did
    /// not (bad AVP lengths, a hidden AVP we cannot reveal, ...); dropped
    /// without acknowledging them, so a genuine message is retransmitted.
    pub malformed_dropped: u64,
    /// Incoming calls refused with a CDN (not acceptable, unknown mandatory
    /// AVP, not accepting calls).
    pub calls_rejected: u64,
    /// Session messages for a session we do not know.
    pub unknown_session: u64,
    /// Session messages dropped because they were malformed (no Assigned
    /// Session ID) or arrived before the tunnel was up.
    pub session_messages_dropped: u64,
    /// Set-Link-Info messages received.
    pub set_link_info: u64,
    /// WAN-Error-Notify messages received.
    pub wan_error_notify: u64,
    /// LAC calls with [`CallParams::defer_connect`] that the owner did not
    /// connect in time, and LNS calls under [`Config::defer_answer`] it did
    /// not answer in time; cleared with CDN.
    pub connect_timeouts: u64,
    /// When anything (control or data) was last heard from the peer, once
    /// the tunnel was established ([`Endpoint::last_heard`]); in
    /// [`Event::TunnelDown`], the last sign of life of a peer found dead.
    pub last_heard: Option<crate::time::Instant>,
}

/// What happened, for the owner of an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The control connection is established: the SCCRP was accepted (we
    /// initiated) or the SCCCN arrived (we answered).
    TunnelUp {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// The peer's address.
        remote: SocketAddrV4,
        /// Our Tunnel ID (what the peer sends to).
        local_tunnel_id: u16,
        /// What the peer said in its SCCRQ or SCCRP.
        peer: PeerInfo,
    },
    /// The tunnel is down; its sessions went down just before (one
    /// [`Event::SessionDown`] each). A tunnel we answered may go down
    /// without having come up (its SCCRQ was refused or never completed).
    TunnelDown {
        /// The tunnel.
        tunnel: TunnelHandle,
        /// Why.
        reason: TunnelDownReason,
        /// Its counters at that moment.
        stats: TunnelStats,
    },
    /// A session is established and may carry data: the LNS received ICCN,
    /// or the LNS acknowledged the LAC's ICCN (or sent data on the session,
    /// which it only does after receiving it). RFC 2661 §7.4.1 has the LAC
    /// established once it has *sent* ICCN, and
    /// [`Endpoint::session_state`] says so from then on; the owner hears of
    /// it only after the acknowledgement, so that its first PPP frame cannot
    /// reach the LNS before the ICCN does (§5.8: control messages are
    /// delivered reliably, data messages are not).
    SessionUp {
        /// The session.
        session: SessionHandle,
        /// Our Session ID.
        local_session_id: u16,
        /// The peer's Session ID (what data messages are sent to).
        peer_session_id: u16,
        /// What the peer said while setting the call up.
        call: CallInfo,
    },
    /// A session is down. Sessions the owner never heard of (an incoming
    /// call that did not complete) go without this event.
    SessionDown {
        /// The session.
        session: SessionHandle,
        /// Why.
        reason: SessionDownReason,
    },
    /// A data message (RFC 2661 §3.1, T bit clear) for an established
    /// session: usually PPP control frames the fast path punted.
    Data {
        /// The session.
        session: SessionHandle,
        /// The L2TP payload: the PPP frame.
        payload: Vec<u8>,
    },
    /// Set-Link-Info (RFC 2661 §6.14): the peer's ACCM for the session.
    SetLinkInfo {
        /// The session.
        session: SessionHandle,
        /// Send ACCM.
        send_accm: u32,
        /// Receive ACCM.
        receive_accm: u32,
    },
    /// WAN-Error-Notify (RFC 2661 §6.13).
    WanError {
        /// The session.
        session: SessionHandle,
        /// The error counters.
        errors: CallErrors,
    },
    /// LNS with [`HaConfig::defer_recovery_calls`]: an ICRQ with
    /// Recovery-Session arrived. Answer it with
    /// [`Endpoint::answer_recovery_call`]: accept with an Ownership-Epoch
    /// (ICRP) or refuse (CDN). Until then the call waits. If the tunnel
    /// goes down first, [`Event::SessionDown`] follows for it.
    RecoveryCall {
        /// The session (not up yet).
        session: SessionHandle,
        /// The primary's LNS Session ID from Recovery-Session.
        primary_session_id: u16,
        /// The LAC's Session ID.
        peer_session_id: u16,
        /// What the ICRQ said.
        call: CallInfo,
    },
    /// LNS with [`Config::defer_answer`]: an ICRQ arrived and its ICRP
    /// waits for [`Endpoint::answer_call`]. Everything data messages of the
    /// session need is here but sequencing, which the LAC asks for in its
    /// ICCN (RFC 2661 §4.4.6): [`Event::SessionUp`] has it. SessionUp
    /// follows once the ICCN arrives; [`Event::SessionDown`] if the call is
    /// cleared first (the LAC's CDN, its tunnel, the owner's refusal, or
    /// the owner's time ran out).
    CallOffered {
        /// The session (not up yet).
        session: SessionHandle,
        /// Our Tunnel ID (what the LAC sends to).
        local_tunnel_id: u16,
        /// The LAC's Tunnel ID.
        peer_tunnel_id: u16,
        /// The LAC's address.
        remote: SocketAddrV4,
        /// Our Session ID (what the LAC's data messages carry).
        local_session_id: u16,
        /// The LAC's Session ID (what our data messages are sent to).
        peer_session_id: u16,
        /// What the ICRQ said.
        call: CallInfo,
    },
    /// LAC, a call with [`CallParams::defer_connect`]: the LNS answered
    /// (ICRP) and the ICCN waits for [`Endpoint::connect_call`]. Everything
    /// data messages of the session need is here (our local address is the
    /// owner's socket's). [`Event::SessionUp`] follows once the LNS has
    /// acknowledged the ICCN; [`Event::SessionDown`] if the call is cleared
    /// first (the LNS's CDN, its tunnel, or the owner's time ran out).
    CallAnswered {
        /// The session (not up yet).
        session: SessionHandle,
        /// Our Tunnel ID (what the LNS sends to).
        local_tunnel_id: u16,
        /// The LNS's Tunnel ID.
        peer_tunnel_id: u16,
        /// The LNS's address.
        remote: SocketAddrV4,
        /// Our Session ID.
        local_session_id: u16,
        /// The LNS's Session ID (what data messages are sent to).
        peer_session_id: u16,
        /// What the LNS said in its ICRP.
        call: CallInfo,
    },
    /// HA: the peer released the session with a CDN carrying
    /// Ownership-Epoch ([`Endpoint::release_session`]): it lives on at
    /// another LNS with this epoch. Drop it silently (no LCP Terminate);
    /// [`Event::SessionDown`] follows.
    SessionMoved {
        /// The session.
        session: SessionHandle,
        /// Its new Ownership-Epoch.
        epoch: u32,
    },
    /// A control message the state machines do not handle themselves: the HA
    /// extension's vendor messages (LSORQ, LSORS, STPLRQ, STPLRP). Already
    /// acknowledged.
    Message {
        /// The tunnel it came on.
        tunnel: TunnelHandle,
        /// The session its header names, if we know it.
        session: Option<SessionHandle>,
        /// The message.
        message: ControlMessage,
    },
}

/// Why a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No such tunnel (never existed, or freed).
    UnknownTunnel,
    /// No such session.
    UnknownSession,
    /// The tunnel is down or going down.
    TunnelClosed,
    /// The session or tunnel is not established yet (for data: the owner
    /// has not had [`Event::SessionUp`] for the session).
    NotEstablished,
    /// Every Tunnel ID (or Session ID in the tunnel) is in use.
    IdsExhausted,
    /// A message could not be encoded.
    Encode(dataplane::wire::Error),
    /// HA: we are not HA-aware ([`Config::ha`] is `None`), the peer did not
    /// advertise HA-Capability, or the message is not an HA message; it is
    /// not sent (DESIGN.md §3: only to peers that advertised it).
    NotHaCapable,
    /// [`Endpoint::answer_recovery_call`] or [`Endpoint::connect_call`]
    /// for a session that is not waiting for the owner.
    NotWaiting,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownTunnel => f.write_str("no such tunnel"),
            Error::UnknownSession => f.write_str("no such session"),
            Error::TunnelClosed => f.write_str("the tunnel is closed or closing"),
            Error::NotEstablished => f.write_str("not established yet"),
            Error::IdsExhausted => f.write_str("every id is in use"),
            Error::Encode(e) => write!(f, "cannot encode the message: {e}"),
            Error::NotHaCapable => f.write_str(
                "not an HA message, HA is off here, or the peer did not advertise HA-Capability",
            ),
            Error::NotWaiting => f.write_str("the session is not waiting for the owner"),
        }
    }
}

impl std::error::Error for Error {}

//! PPP (RFC 1661), sans-IO: the option negotiation automaton shared by LCP,
//! IPCP and IPv6CP, LCP with its echo keepalive, PAP and CHAP-MD5, and the
//! link phases that tie them together.
//!
//! A [`PppLink`] is one subscriber's link, as the LNS ([`Role::Server`]) or
//! as the subscriber ([`Role::Client`]):
//!
//! * PPP frames (as an L2TP data message or a PPPoE session carries them)
//!   go in with [`PppLink::handle_frame`] and come out of
//!   [`PppLink::poll_transmit`];
//! * [`PppLink::poll_timeout`] says when to call [`PppLink::handle_timeout`];
//! * [`PppLink::poll_event`] reports credentials to check, the link up
//!   with what was negotiated ([`LinkState`]) and the link down with its
//!   cause;
//! * the owner acts with [`PppLink::open`], [`PppLink::close`],
//!   [`PppLink::auth_verdict`], [`PppLink::set_ipv4_assignment`] and
//!   [`PppLink::ipv4_unavailable`].
//!
//! Time is [`crate::time::Instant`], passed in; magic numbers, CHAP
//! challenges and interface identifiers come from the RNG given to the
//! constructor.

pub mod auth;
pub mod fsm;
pub mod ipcp;
pub mod lcp;
mod link;

pub use auth::{chap_md5, AuthRequest, Credentials, PresentedSecret};
pub use ipcp::{IpcpResult, Ipv4Assignment, Ipv6cpResult};
pub use lcp::{AuthMethod, LcpOptions};
pub use link::{
    DownCause, Event, LinkState, LinkStats, Phase, PppConfig, PppLink, ProxyAuth, ProxyAuthType,
    ProxyLcp, ProxyOutcome, ProxyPolicy, ProxyRefusal, Role,
};

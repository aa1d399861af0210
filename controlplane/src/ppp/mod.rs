//! PPP (RFC 1661), sans-IO: the option negotiation automaton shared by LCP,
//! IPCP and IPv6CP, LCP with its echo keepalive, PAP and CHAP-MD5, and the
//! link phases that tie them together.

pub mod auth;
pub mod fsm;
pub mod ipcp;
pub mod lcp;

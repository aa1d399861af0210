//! Support for the tests against real peers: a network-namespace lab, packet
//! captures read back with tshark, the real peers (xl2tpd, l2tpns) started
//! from the templates in `deploy/interop/`, and a FreeRADIUS, beside l2tpns
//! in a lab or on the machine's loopback.
//!
//! Everything here needs root (network namespaces, veth pairs, TUN devices,
//! packet capture), except a FreeRADIUS on the machine's loopback
//! ([`radius::Place::Loopback`]), which the AAA and LNS tests use without
//! root. CI runs as root; a test that finds itself without root or
//! without a peer binary fails with a message saying what to install, it never
//! passes silently.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub(crate) mod capture;
pub(crate) mod netns;
pub(crate) mod peers;
pub(crate) mod radius;

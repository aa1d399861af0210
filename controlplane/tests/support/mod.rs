//! Support for the interop tests: a network-namespace lab, packet captures
//! read back with tshark, the real peers (xl2tpd, l2tpns) started from the
//! templates in `deploy/interop/`, and a FreeRADIUS beside l2tpns.
//!
//! Everything here needs root (network namespaces, veth pairs, TUN devices,
//! packet capture). CI runs as root; a test that finds itself without root or
//! without a peer binary fails with a message saying what to install, it never
//! passes silently.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub(crate) mod capture;
pub(crate) mod netns;
pub(crate) mod peers;
pub(crate) mod radius;

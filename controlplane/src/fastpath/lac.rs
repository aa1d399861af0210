//! Programming the fast path from the LAC node's events (waits for
//! `controlplane::lac`'s events; see [`super::lns`] for the LNS).

//! The fast path of the L2TP LAC/LNS: wire codecs today; per-worker tables,
//! poll-mode workers and ports as the fast-path issue lands.
//!
//! Nothing in this crate reads a clock, takes a lock or allocates per packet.
//! The control plane depends on [`wire`] for its message codecs.

pub mod wire;
pub mod io;

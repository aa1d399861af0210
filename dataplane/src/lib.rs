//! The fast path of the L2TP LAC/LNS: wire codecs, ports ([`io`]),
//! per-worker tables ([`table`]), poll-mode workers ([`worker`]) running the
//! LNS ([`lns`]) and LAC ([`lac`]) data paths, and the queues to the control
//! plane ([`update`], [`punt`]).
//!
//! Nothing in this crate takes a lock, logs or allocates per packet; a
//! worker reads the clock once per burst.
//! The control plane depends on [`wire`] for its message codecs.

pub mod counters;
mod fragment;
pub mod io;
pub mod lac;
pub mod lns;
mod pages;
pub mod path;
pub mod punt;
pub mod replay;
pub mod table;
pub mod testkit;
pub mod update;
pub mod wire;
pub mod worker;

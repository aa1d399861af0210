//! The control plane: sans-IO protocol state machines and the one driver that
//! does I/O.
//!
//! Every component below [`driver`] takes input with `handle_*(now, ..)` and
//! gives output with `poll_transmit`, `poll_timeout` and `poll_event`. None of
//! them reads a clock, opens a socket, spawns a thread or draws from an OS
//! random source: time ([`time::Instant`]) and a seeded RNG are passed in.

pub mod aaa;
pub mod config;
pub mod ctl;
pub mod driver;
pub mod fastpath;
pub mod ha;
pub mod l2tp;
pub mod lac;
pub mod lns;
pub mod metrics;
pub mod node;
pub mod ppp;
pub mod pppoe;
pub mod sim;
pub mod subscriber;
pub mod time;

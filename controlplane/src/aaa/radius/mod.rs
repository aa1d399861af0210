//! RADIUS: the packet codec and a sans-IO client for authentication
//! (RFC 2865) and accounting (RFC 2866, RFC 2869).

pub mod client;
pub mod packet;

pub use client::{
    AccountingSession, AcctHandle, AcctStatus, Authentic, Client, ClientConfig, ClientStats,
    Counters, Event, Server, TerminateCause,
};

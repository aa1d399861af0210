//! RADIUS: the packet codec and a sans-IO client for authentication
//! (RFC 2865) and accounting (RFC 2866, RFC 2869).

pub mod client;
pub mod packet;

pub use client::{
    AccountingSession, AcctHandle, AcctStatus, Authentic, Client, ClientConfig, ClientStats,
    Counters, Event, Server, TerminateCause,
};

use core::net::SocketAddr;

use crate::time::Instant;

/// The client over its own UDP socket, run by [`crate::driver::Driver`]:
/// the thin adapter a daemon or test uses. The client stays sans-IO.
impl crate::node::Node for Client {
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) {
        Client::handle_datagram(self, now, remote, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Client::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Client::poll_timeout(self)
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        Client::poll_transmit(self, now, buf)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Client::poll_event(self)
    }
}

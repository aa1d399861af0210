//! The one interface every sans-IO node offers to what runs it: the
//! [`crate::driver::Driver`] over a real UDP socket, or the
//! [`crate::sim::Sim`] over a simulated network. A node implements it once
//! and runs in both.

use core::net::SocketAddr;

use crate::time::Instant;

/// A sans-IO protocol node that speaks over one UDP socket (the quinn-proto
/// shape; see DESIGN.md §2.2).
pub trait Node {
    /// What the node reports to its owner.
    type Event;

    /// A datagram arrived from `remote`.
    fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]);

    /// The host at `remote` answered a datagram we sent it with a hard
    /// ICMP error (port or protocol unreachable, RFC 1122 §4.2.3.9): no one
    /// listens there now. `refused` is the start of that datagram, as far
    /// as the ICMP message quoted it. ICMP is unauthenticated: a node acts
    /// on it only as far as the quote proves it saw what the node sent (RFC
    /// 5927 §4.1). Default: ignored.
    fn handle_unreachable(&mut self, now: Instant, remote: SocketAddr, refused: &[u8]) {
        let _ = (now, remote, refused);
    }

    /// The time returned by [`Node::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Instant);

    /// When the node next needs [`Node::handle_timeout`], if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next datagram to send: its bytes in `buf` (cleared first) and
    /// where to send it. `None` when nothing is waiting.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr>;

    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;
}

//! Packets between a worker and the control plane: punts (worker → control
//! plane) and injects (control plane → worker), both carried in
//! [`PacketBuffer`]s from one pool made at start-up.
//!
//! A buffer circulates: the worker takes one from the pool, copies a packet
//! in and queues it as a [`Punt`]; the control plane reads it and either
//! returns it to the pool or fills it with a reply and queues it as an
//! [`Inject`], after which the worker sends it and returns the buffer. An
//! empty pool or a full queue costs the packet (a counted drop), never an
//! allocation.

use core::net::Ipv4Addr;

use crate::counters::PuntKind;
use crate::table::SessionKey;
use crate::wire::ethernet;

/// Capacity of a [`PacketBuffer`]: a full-size Ethernet frame with two
/// tags and room to spare.
pub const PACKET_BUFFER_SIZE: usize = 2048;

/// A fixed-size packet buffer.
#[derive(Debug)]
pub struct PacketBuffer {
    data: Box<[u8]>,
    len: usize,
}

impl PacketBuffer {
    /// A new buffer (allocates: call at start-up, when filling the pool).
    pub fn new() -> PacketBuffer {
        PacketBuffer {
            data: vec![0; PACKET_BUFFER_SIZE].into_boxed_slice(),
            len: 0,
        }
    }

    /// The packet.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Replace the packet with a copy of `bytes`; false (and empty) when it
    /// does not fit.
    pub fn set(&mut self, bytes: &[u8]) -> bool {
        match self.data.get_mut(..bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = bytes.len();
                true
            }
            None => {
                self.len = 0;
                false
            }
        }
    }
}

impl Default for PacketBuffer {
    fn default() -> Self {
        PacketBuffer::new()
    }
}

/// Why a packet was punted, with what the control plane needs to act on it.
///
/// The buffer holds what the reason is about: the PPP frame (from the
/// Address/Control or Protocol field) for the PPP reasons, the inner IPv4
/// packet for [`PuntReason::NeighbourMissing`],
/// [`PuntReason::TimeExceeded`] and [`PuntReason::FragmentationNeeded`],
/// and the whole Ethernet frame otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PuntReason {
    /// A PPP control frame (or an unknown protocol) of this LNS session.
    LnsPpp(SessionKey),
    /// A PPP frame of a PPPoE session the LAC does not relay.
    LacPpp {
        /// The subscriber.
        subscriber_mac: ethernet::Address,
        /// Its PPPoE session.
        pppoe_session_id: u16,
    },
    /// An L2TP control message.
    L2tpControl,
    /// ARP, PPPoE Discovery, or IPv4 to one of our addresses.
    Local,
    /// The next hop has no MAC address: resolve it with ARP.
    NeighbourMissing {
        /// The address to resolve.
        next_hop: Ipv4Addr,
    },
    /// The TTL ran out: send ICMP Time Exceeded (RFC 792).
    TimeExceeded,
    /// Over the session's MRU with DF set: send ICMP Fragmentation Needed
    /// with this next-hop MTU (RFC 1191 §4).
    FragmentationNeeded {
        /// The MTU to announce.
        mtu: u16,
    },
}

impl PuntReason {
    /// The counter this reason counts in.
    pub fn kind(&self) -> PuntKind {
        match self {
            PuntReason::LnsPpp(_) => PuntKind::LnsPpp,
            PuntReason::LacPpp { .. } => PuntKind::LacPpp,
            PuntReason::L2tpControl => PuntKind::L2tpControl,
            PuntReason::Local => PuntKind::Local,
            PuntReason::NeighbourMissing { .. } => PuntKind::NeighbourMissing,
            PuntReason::TimeExceeded => PuntKind::TimeExceeded,
            PuntReason::FragmentationNeeded { .. } => PuntKind::FragmentationNeeded,
        }
    }
}

/// A packet for the control plane.
#[derive(Debug)]
pub struct Punt {
    /// Why.
    pub reason: PuntReason,
    /// The port it arrived on.
    pub port: u8,
    /// The packet (see [`PuntReason`] for which part).
    pub buffer: PacketBuffer,
}

/// Where an injected packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectTarget {
    /// The buffer is a whole Ethernet frame: send it out of this port.
    Port(u8),
    /// The buffer is a PPP frame (from the Address/Control or Protocol
    /// field): send it to the LAC in this LNS session's tunnel.
    LnsSession(SessionKey),
    /// The buffer is a PPP frame (from the Protocol field): send it to this
    /// LAC session's subscriber over PPPoE (an alias's ids name their
    /// session, [`crate::update::Update::AliasSession`]).
    LacSubscriber(SessionKey),
}

/// A packet from the control plane.
#[derive(Debug)]
pub struct Inject {
    /// Where to.
    pub target: InjectTarget,
    /// The packet.
    pub buffer: PacketBuffer,
}

//! Per-worker counters: every way a packet can end, named once.
//!
//! A packet ends as forwarded (by path), punted (by [`PuntReason`]), held
//! (LAC switchover) or dropped (by [`DropReason`]). The worker owns its
//! counters and nobody else writes them; the control plane gets a copy in a
//! [`crate::update::WorkerReport`].

/// Declares an enum of fieldless reasons together with `COUNT`, `ALL` and
/// a stable snake_case `name()`, so each reason is written down once.
macro_rules! reasons {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every reason, in declaration order (the counter index).
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = $name::ALL.len();
            /// The name operators see (`l2tpctl show counters`).
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }
    };
}

reasons! {
    /// Why a packet was dropped.
    pub enum DropReason {
        /// Not IPv4 or PPPoE session, and not something the control plane reads.
        UnexpectedEthertype = "unexpected_ethertype",
        /// Ethernet header truncated or with a third VLAN tag.
        MalformedEthernet = "malformed_ethernet",
        /// Outer IPv4 header truncated or inconsistent.
        MalformedIpv4 = "malformed_ipv4",
        /// An IPv4 header checksum is wrong (RFC 1812 §5.2.2: a router
        /// verifies it).
        Ipv4Checksum = "ipv4_checksum",
        /// An outer IPv4 fragment: the fast path does not reassemble tunnels.
        OuterFragment = "outer_fragment",
        /// UDP header truncated or its Length inconsistent.
        MalformedUdp = "malformed_udp",
        /// A UDP checksum is wrong (only when checking is configured).
        UdpChecksum = "udp_checksum",
        /// L2TP header truncated, unknown version or illegal flags.
        MalformedL2tp = "malformed_l2tp",
        /// The Tunnel ID is not one of ours.
        UnknownTunnel = "unknown_tunnel",
        /// The tunnel exists but the packet came from another address or
        /// port, or to another local address or port.
        TunnelAddressMismatch = "tunnel_address_mismatch",
        /// No session with this (Tunnel ID, Session ID).
        UnknownSession = "unknown_session",
        /// The session requires sequencing and the S bit is clear
        /// (RFC 2661 §5.4).
        SequenceMissing = "sequence_missing",
        /// Ns is behind what was already received (RFC 2661 §5.4: "out of
        /// order" packets are discarded rather than reordered).
        SequenceOutOfOrder = "sequence_out_of_order",
        /// PPP header truncated or with an even Protocol.
        MalformedPpp = "malformed_ppp",
        /// IPv6 inside PPP: not forwarded by this fast path yet.
        Ipv6NotForwarded = "ipv6_not_forwarded",
        /// The IPv4 packet inside PPP is truncated or inconsistent.
        MalformedInnerIpv4 = "malformed_inner_ipv4",
        /// The subscriber sent from an address that is not its own.
        SpoofedSource = "spoofed_source",
        /// TTL would reach zero (punted for ICMP Time Exceeded).
        TtlExpired = "ttl_expired",
        /// No MAC address for the next hop (punted so ARP resolves it).
        NoNeighbour = "no_neighbour",
        /// IPv4 neither to one of our tunnel addresses nor (on an LNS) to a
        /// subscriber.
        NotForUs = "not_for_us",
        /// No session owns this destination address.
        NoSessionForDestination = "no_session_for_destination",
        /// Longer than the session's MRU with DF set (punted for ICMP
        /// Fragmentation Needed, RFC 1191).
        FragmentationNeeded = "fragmentation_needed",
        /// Longer than the session's MRU with DF clear, and impossible to
        /// fragment (RFC 791 §3.2): the MRU leaves no room for 8 bytes of
        /// data after the header, or the last fragment's offset would not
        /// fit 13 bits. Packets that can be fragmented are, and count in
        /// `Counters::fragmented`.
        FragmentationUnsupported = "fragmentation_unsupported",
        /// The frame has no room in front for the headers to prepend.
        NoHeadroom = "no_headroom",
        /// Out of frames on the port the packet had to be copied to, or
        /// for a fragment (the fragments before it were sent).
        NoFrame = "no_frame",
        /// The transmit ring was full.
        TxRingFull = "tx_ring_full",
        /// The punt buffer pool was empty.
        PuntPoolEmpty = "punt_pool_empty",
        /// The punt queue to the control plane was full.
        PuntQueueFull = "punt_queue_full",
        /// PPPoE header truncated, wrong version or a Discovery code in a
        /// session frame.
        MalformedPppoe = "malformed_pppoe",
        /// A PPPoE session frame for a session we do not relay.
        UnknownPppoeSession = "unknown_pppoe_session",
        /// A holding session's ring was full (the frame is lost, counted).
        HoldingOverflow = "holding_overflow",
        /// A session was put in holding but every ring was taken.
        HoldingNoRing = "holding_no_ring",
        /// A session's tunnel is gone.
        SessionWithoutTunnel = "session_without_tunnel",
        /// An inject named a port or session that does not exist, or did
        /// not fit a frame.
        InjectInvalid = "inject_invalid",
        /// A header could not be written (a bug if it ever counts).
        EncapsulationFailed = "encapsulation_failed",
    }
}

reasons! {
    /// Why a packet went to the control plane.
    pub enum PuntKind {
        /// A PPP control frame (LCP, PAP, CHAP, IPCP, IPv6CP, or an
        /// unknown protocol for an LCP Protocol-Reject) of an LNS session.
        LnsPpp = "lns_ppp",
        /// A PPP frame of a PPPoE session the LAC does not relay (yet).
        LacPpp = "lac_ppp",
        /// An L2TP control message (T bit) that steering let through.
        L2tpControl = "l2tp_control",
        /// ARP, PPPoE Discovery or IPv4 to one of our own addresses.
        Local = "local",
        /// Copy of a packet whose next hop has no MAC address yet.
        NeighbourMissing = "neighbour_missing",
        /// Copy of a packet whose TTL ran out, for ICMP Time Exceeded.
        TimeExceeded = "time_exceeded",
        /// Copy of a packet over the MRU with DF, for ICMP Fragmentation
        /// Needed.
        FragmentationNeeded = "fragmentation_needed",
    }
}

reasons! {
    /// Which path forwarded a packet.
    pub enum PathKind {
        /// LNS: L2TP from a LAC to IPv4 toward the core.
        LnsUpstream = "lns_upstream",
        /// LNS: IPv4 from the core into a session's tunnel.
        LnsDownstream = "lns_downstream",
        /// LAC: PPPoE from a subscriber into L2TP.
        LacUpstream = "lac_upstream",
        /// LAC: L2TP from an LNS to the subscriber's PPPoE session.
        LacDownstream = "lac_downstream",
        /// A packet the control plane injected.
        Inject = "inject",
    }
}

/// A worker's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Packets taken from the ports.
    pub received: u64,
    /// Packets accepted by a port for transmission.
    pub transmitted: u64,
    /// Forwarded, by path.
    pub forwarded: [u64; PathKind::COUNT],
    /// Punted, by reason.
    pub punted: [u64; PuntKind::COUNT],
    /// Dropped, by reason.
    pub dropped: [u64; DropReason::COUNT],
    /// Packets over a session's MRU with DF clear that were fragmented
    /// (RFC 791 §3.2); each fragment also counts as forwarded.
    pub fragmented: u64,
    /// Frames put in a holding ring.
    pub held: u64,
    /// Held frames taken out of a ring when their session was flushed.
    pub flushed: u64,
    /// Frames relayed toward an LNS found dead put back in their session's
    /// holding ring, to go again to the new LNS (`Update::HoldTunnel`).
    pub replayed: u64,
    /// Frames that should have been replayed but were not: the ring was
    /// full, or the access port had no free frame.
    pub replay_dropped: u64,
    /// ARP requests for subscriber addresses the worker answered itself
    /// (LNS proxy ARP, RFC 826); each reply also counts as transmitted.
    pub arp_replies: u64,
    /// Table updates applied.
    pub updates: u64,
    /// Polls that received nothing.
    pub idle_polls: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            received: 0,
            transmitted: 0,
            forwarded: [0; PathKind::COUNT],
            punted: [0; PuntKind::COUNT],
            dropped: [0; DropReason::COUNT],
            fragmented: 0,
            held: 0,
            flushed: 0,
            replayed: 0,
            replay_dropped: 0,
            arp_replies: 0,
            updates: 0,
            idle_polls: 0,
        }
    }
}

impl Counters {
    /// Packets dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Packets punted for `kind`.
    pub fn punts(&self, kind: PuntKind) -> u64 {
        self.punted[kind as usize]
    }

    /// Packets forwarded by `path`.
    pub fn forwards(&self, path: PathKind) -> u64 {
        self.forwarded[path as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Count a drop. Cold: drops are the exception and their bookkeeping
    /// should stay out of the hot loop's instruction cache.
    #[cold]
    #[inline(never)]
    pub(crate) fn drop_packet(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// Add `from`, counter by counter (the sum over workers).
    pub fn add(&mut self, from: &Counters) {
        // Destructured so that a new counter cannot be left out.
        let Counters {
            received,
            transmitted,
            forwarded,
            punted,
            dropped,
            fragmented,
            held,
            flushed,
            replayed,
            replay_dropped,
            arp_replies,
            updates,
            idle_polls,
        } = from;
        self.received += received;
        self.transmitted += transmitted;
        for (a, b) in self.forwarded.iter_mut().zip(forwarded) {
            *a += b;
        }
        for (a, b) in self.punted.iter_mut().zip(punted) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(dropped) {
            *a += b;
        }
        self.fragmented += fragmented;
        self.held += held;
        self.flushed += flushed;
        self.replayed += replayed;
        self.replay_dropped += replay_dropped;
        self.arp_replies += arp_replies;
        self.updates += updates;
        self.idle_polls += idle_polls;
    }

    /// Every non-zero counter as (name, value), for reports and logs.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let drops = DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.dropped[*r as usize]));
        let punts = PuntKind::ALL
            .iter()
            .map(|r| (r.name(), self.punted[*r as usize]));
        let paths = PathKind::ALL
            .iter()
            .map(|r| (r.name(), self.forwarded[*r as usize]));
        let others = [
            ("arp_replies", self.arp_replies),
            ("replayed", self.replayed),
            ("replay_dropped", self.replay_dropped),
        ];
        drops
            .chain(punts)
            .chain(paths)
            .chain(others)
            .filter(|(_, v)| *v != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_indices_dense() {
        let names: HashSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in PuntKind::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}

//! ICMP errors for packets the workers could not forward: Time Exceeded
//! (RFC 792) when the TTL runs out, Fragmentation Needed with the next-hop
//! MTU (RFC 1191 §4) when a packet with DF set is over a subscriber's MRU.
//! The workers punt a copy of the packet; the glue builds the error here
//! and injects it. Sans-IO: bytes in, bytes out, and a token bucket that
//! takes the time from the caller.

use core::net::Ipv4Addr;
use core::time::Duration;

use dataplane::wire::{checksum, ipv4};

use crate::time::Instant;

/// Which error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Type 11, code 0: TTL exceeded in transit.
    TimeExceeded,
    /// Type 3, code 4: fragmentation needed and DF set, with the MTU of
    /// the next hop.
    FragmentationNeeded {
        /// The next-hop MTU.
        mtu: u16,
    },
}

/// The largest ICMP error datagram (RFC 1812 §4.3.2.3: as much of the
/// original as fits in 576 bytes).
const MAX_ERROR_LEN: usize = 576;
/// ICMP header: type, code, checksum, and four bytes (unused, or the MTU).
const ICMP_HEADER_LEN: usize = 8;
/// TTL of the errors we send.
const TTL: u8 = 64;

/// The ICMP error `kind` about `original` (an IPv4 packet), from `src`, as
/// an IPv4 packet; `None` for packets that must not be answered
/// (RFC 1812 §4.3.2.7): ICMP errors themselves, fragments after the first,
/// packets from an address that is not one host (0.0.0.0, loopback,
/// broadcast, multicast, class E), and anything that does not parse.
pub fn error_packet(kind: IcmpError, src: Ipv4Addr, original: &[u8]) -> Option<Vec<u8>> {
    let packet = ipv4::Packet::new_checked(original).ok()?;
    let sender = packet.src_addr();
    if sender.is_unspecified()
        || sender.is_loopback()
        || sender.is_broadcast()
        || sender.is_multicast()
        || u32::from(sender) >= u32::from(Ipv4Addr::new(240, 0, 0, 0))
        || packet.frag_offset() != 0
    {
        return None;
    }
    let header_len = packet.header_len();
    if packet.protocol() == ipv4::Protocol::Icmp {
        // An error about an error would never end; a query (echo) may be
        // answered. ICMP error types: 3, 4, 5, 11, 12.
        let icmp_type = *original.get(header_len)?;
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) {
            return None;
        }
    }
    let quoted_len = original
        .len()
        .min(usize::from(packet.total_len()))
        .min(MAX_ERROR_LEN - ipv4::HEADER_LEN - ICMP_HEADER_LEN);
    let quoted = original.get(..quoted_len)?;
    let (icmp_type, code, rest) = match kind {
        IcmpError::TimeExceeded => (11, 0, [0; 4]),
        IcmpError::FragmentationNeeded { mtu } => {
            let m = mtu.to_be_bytes();
            (3, 4, [0, 0, m[0], m[1]])
        }
    };
    let icmp_len = ICMP_HEADER_LEN + quoted.len();
    let mut out = vec![0u8; ipv4::HEADER_LEN + icmp_len];
    ipv4::Repr {
        src_addr: src,
        dst_addr: sender,
        protocol: ipv4::Protocol::Icmp,
        ttl: TTL,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: icmp_len,
    }
    .emit(&mut out)
    .ok()?;
    let icmp = out.get_mut(ipv4::HEADER_LEN..)?;
    icmp[0] = icmp_type;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&rest);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quoted);
    let sum = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(out)
}

/// A token bucket for ICMP errors (RFC 1812 §4.3.2.8: a router SHOULD
/// limit the rate at which it sends them).
#[derive(Debug, Clone)]
pub struct RateLimit {
    tokens: u32,
    burst: u32,
    every: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    /// `per_second` errors a second on average, bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            tokens: burst,
            burst,
            every: Duration::from_secs(1) / per_second.max(1),
            last: None,
        }
    }

    /// Take a token at `now`; false when the bucket is empty.
    pub fn allow(&mut self, now: Instant) -> bool {
        let last = *self.last.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let earned = (elapsed.as_nanos() / self.every.as_nanos().max(1)) as u32;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.last = Some(last + self.every * earned);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::udp;

    fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: usize, frag_offset: u16) -> Vec<u8> {
        let mut p = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload];
        ipv4::Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ipv4::Protocol::Udp,
            ttl: 1,
            dscp: 0,
            ecn: 0,
            ident: 7,
            dont_frag: true,
            more_frags: false,
            frag_offset,
            payload_len: udp::HEADER_LEN + payload,
        }
        .emit(&mut p)
        .unwrap();
        p
    }

    const SUB: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 9);
    const US: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
    const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    #[test]
    fn time_exceeded_quotes_the_original_to_its_sender() {
        let original = udp_packet(SUB, FAR, 20, 0);
        let e = error_packet(IcmpError::TimeExceeded, US, &original).unwrap();
        let ip = ipv4::Packet::new_checked(&e[..]).unwrap();
        assert_eq!(ip.src_addr(), US);
        assert_eq!(ip.dst_addr(), SUB);
        assert_eq!(ip.protocol(), ipv4::Protocol::Icmp);
        assert!(ip.verify_checksum());
        let icmp = &e[ipv4::HEADER_LEN..];
        assert_eq!(&icmp[..2], &[11, 0]);
        assert_eq!(checksum::checksum(icmp), 0, "ICMP checksum");
        assert_eq!(&icmp[8..], &original[..]);
    }

    #[test]
    fn fragmentation_needed_carries_the_mtu_and_fits_576_bytes() {
        let original = udp_packet(FAR, SUB, 1400, 0);
        let e = error_packet(IcmpError::FragmentationNeeded { mtu: 1400 }, US, &original).unwrap();
        assert_eq!(e.len(), MAX_ERROR_LEN);
        let icmp = &e[ipv4::HEADER_LEN..];
        assert_eq!(&icmp[..2], &[3, 4]);
        assert_eq!(&icmp[4..8], &[0, 0, 0x05, 0x78]);
        assert_eq!(checksum::checksum(icmp), 0);
        assert_eq!(&icmp[8..], &original[..MAX_ERROR_LEN - 28]);
    }

    #[test]
    fn some_packets_get_no_error() {
        let not_first = udp_packet(SUB, FAR, 20, 800);
        assert!(error_packet(IcmpError::TimeExceeded, US, &not_first).is_none());
        for src in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 5),
            Ipv4Addr::new(240, 0, 0, 1),
        ] {
            let p = udp_packet(src, FAR, 20, 0);
            assert!(
                error_packet(IcmpError::TimeExceeded, US, &p).is_none(),
                "{src}"
            );
        }
        // An ICMP error about an ICMP error: no.
        let original = udp_packet(SUB, FAR, 20, 0);
        let error = error_packet(IcmpError::TimeExceeded, FAR, &original).unwrap();
        assert!(error_packet(IcmpError::TimeExceeded, US, &error).is_none());
        assert!(error_packet(IcmpError::TimeExceeded, US, &[0x45, 0]).is_none());
    }

    #[test]
    fn the_rate_limit_refills_over_time() {
        let mut limit = RateLimit::new(100, 3);
        let t0 = Instant::ZERO;
        assert!((0..3).all(|_| limit.allow(t0)));
        assert!(!limit.allow(t0));
        assert!(!limit.allow(t0 + Duration::from_millis(5)));
        assert!(limit.allow(t0 + Duration::from_millis(10)));
        assert!(!limit.allow(t0 + Duration::from_millis(10)));
        let later = t0 + Duration::from_secs(10);
        assert!((0..3).all(|_| limit.allow(later)));
        assert!(!limit.allow(later));
    }
}

//! PPPoE discovery (RFC 2516 §5): the LAC's access concentrator
//! ([`Server`]) and one subscriber's discovery ([`Client`], for the
//! l2bench emulator).
//!
//! Both are sans-IO, in the control plane's shape: whole Ethernet frames
//! go in with `handle_frame(now, frame)` and come out of
//! `poll_frame(buf)`; what happened comes out of `poll_event()`; time is
//! passed in and the RNG is the caller's. The bytes are read and written
//! by the codecs of [`dataplane::wire::ethernet`] and
//! [`dataplane::wire::pppoe`]; this module only decides.
//!
//! # The exchange (RFC 2516 §5)
//!
//! ```text
//! subscriber                                  access concentrator
//!   PADI  (broadcast, Service-Name, Host-Uniq)  ->            §5.1
//!        <-  PADO (AC-Name, Service-Name(s), Host-Uniq, AC-Cookie)  §5.2
//!   PADR  (unicast, Service-Name, Host-Uniq, AC-Cookie) ->    §5.3
//!        <-  PADS (SESSION_ID, or 0 and an error tag)         §5.4
//!   ... PPP in the Session stage (EtherType 0x8864) ...
//!   PADT  (either side, SESSION_ID)              <->          §5.5
//! ```
//!
//! # What the server defends against
//!
//! Discovery is the one part of the LAC that anyone on the access network
//! can make allocate state, so the server keeps none until a PADR proves
//! that its sender saw our PADO: the AC-Cookie is an HMAC-MD5, under a
//! secret drawn at start, over the subscriber's MAC address, the time the
//! cookie was made and a counter (RFC 2516 §5.2 suggests the cookie as a
//! defence against denial of service). A PADR with a missing, forged or
//! expired cookie is dropped without an answer, as rp-pppoe's
//! `pppoe-server` does; an honest client retransmits and, after its
//! retries, starts over with a PADI (RFC 2516 §5) and a fresh cookie.
//!
//! | limit ([`ServerConfig`]) | default | over it |
//! |---|---|---|
//! | `cookie_lifetime` | 60 s | PADR dropped ([`Refusal::ExpiredCookie`]) |
//! | `padi_limit_per_mac` | 2/s, burst 10 | PADI dropped ([`DropReason::PadiRateLimitedPerMac`]) |
//! | `padi_limit` (the port) | 1000/s, burst 2000 | PADI dropped ([`DropReason::PadiRateLimited`]) |
//! | `max_sessions` | 65534 | no PADO ([`DropReason::NoFreeSession`], §5.2); a PADR already under way gets a PADS with AC-System-Error ([`Refusal::SessionLimit`]) |
//! | `max_sessions_per_mac` | 4 | PADS with AC-System-Error ([`Refusal::MacLimit`]) |
//! | `service_names` | empty: any | no PADO (§5.2); PADR gets Service-Name-Error (§5.4) |
//!
//! The per-MAC bucket is checked before the port's, so one flooding host
//! does not use up everyone's PADIs; buckets of quiet hosts are forgotten.
//! Every frame the server does not answer is counted by reason in
//! [`ServerStats`]; nothing from the network can make it panic (the tests
//! feed it random bytes and every truncation of real PADIs and PADRs).
//!
//! A retransmitted PADR (same MAC address, Host-Uniq and cookie: our PADS
//! was lost) gets the same PADS again and opens no second session. Replies
//! carry the VLAN tags of the request. SESSION_IDs are unique on the whole
//! port, not just per MAC address as RFC 2516 §4 requires: 1..=0xfffe,
//! never 0 (no session yet) nor 0xffff (reserved), handed out in turn from
//! a random start so that a restarted LAC does not reuse the last ids at
//! once.
//!
//! # The client
//!
//! [`Client`] sends a PADI with its Service-Name and Host-Uniq, takes the
//! first PADO that offers the service (and has the configured AC-Name, if
//! any), sends a PADR echoing the AC-Cookie and Relay-Session-Id, and is
//! [`ClientEvent::Up`] on the PADS. It retransmits PADI and PADR with a
//! doubling wait (RFC 2516 §5; 1 s first, 16 s at most, 5 tries by
//! default), goes back to PADI once when PADRs go unanswered, and then
//! reports [`ClientEvent::Failed`]. A PADT either way is
//! [`ClientEvent::Down`].

pub mod client;
pub mod server;

pub use client::{
    Client, Config as ClientConfig, Event as ClientEvent, Failure as ClientFailure,
    State as ClientState,
};
pub use server::{
    DropReason, Event as ServerEvent, RateLimit, Refusal, Server, ServerConfig, ServerStats,
    Session,
};

use dataplane::wire::ethernet::{self, Address, EtherType, VlanTag};
use dataplane::wire::pppoe::{DiscoveryRepr, Packet, Tag};

/// Vendor-Specific (BBF) sub-option: Agent-Circuit-Id (TR-101 §3.9.3).
const BBF_AGENT_CIRCUIT_ID: u8 = 0x01;
/// Vendor-Specific (BBF) sub-option: Agent-Remote-Id (TR-101 §3.9.3).
const BBF_AGENT_REMOTE_ID: u8 = 0x02;

/// The smallest Ethernet frame without its FCS: shorter frames are padded
/// (the PPPoE LENGTH field tells the receiver where the tags end).
const MIN_FRAME_LEN: usize = 60;

/// The largest Discovery packet (header and tags) we send: what fits in a
/// standard 1500-byte Ethernet payload (RFC 2516 §5.1 keeps a PADI to 1484
/// bytes so that a relay can add its tags).
const MAX_DISCOVERY_LEN: usize = 1500;

/// A received Discovery frame: the Ethernet addressing and the packet.
struct Received<'a> {
    dst: Address,
    src: Address,
    outer_tag: Option<VlanTag>,
    inner_tag: Option<VlanTag>,
    packet: DiscoveryRepr<'a>,
}

/// Why a frame could not be read as PPPoE Discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadError {
    /// Not EtherType 0x8863: somebody else's frame.
    NotDiscovery,
    /// The Ethernet header or the PPPoE packet does not parse.
    Malformed,
}

/// Read a whole Ethernet frame as PPPoE Discovery.
fn read_frame(frame: &[u8]) -> Result<Received<'_>, ReadError> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| ReadError::Malformed)?;
    let repr = ethernet::Repr::parse(&eth).map_err(|_| ReadError::Malformed)?;
    if repr.ethertype != EtherType::PppoeDiscovery {
        return Err(ReadError::NotDiscovery);
    }
    let payload = frame.get(repr.buffer_len()..).ok_or(ReadError::Malformed)?;
    let packet = Packet::new_checked(payload).map_err(|_| ReadError::Malformed)?;
    let packet = DiscoveryRepr::parse(&packet).map_err(|_| ReadError::Malformed)?;
    Ok(Received {
        dst: repr.dst_addr,
        src: repr.src_addr,
        outer_tag: repr.outer_tag,
        inner_tag: repr.inner_tag,
        packet,
    })
}

/// Write `packet` in an Ethernet frame into `out` (cleared first), padded
/// to the Ethernet minimum. Returns false if it does not fit a frame.
fn write_frame(
    out: &mut Vec<u8>,
    dst: Address,
    src: Address,
    tags: (Option<VlanTag>, Option<VlanTag>),
    packet: &DiscoveryRepr<'_>,
) -> bool {
    let eth = ethernet::Repr {
        dst_addr: dst,
        src_addr: src,
        outer_tag: tags.0,
        inner_tag: tags.1,
        ethertype: EtherType::PppoeDiscovery,
    };
    let header = eth.buffer_len();
    let len = packet.buffer_len();
    if len > MAX_DISCOVERY_LEN {
        return false;
    }
    out.clear();
    out.resize((header + len).max(MIN_FRAME_LEN), 0);
    eth.emit(out).is_ok() && packet.emit(&mut out[header..]).is_ok()
}

/// The TR-101 sub-options of the BBF Vendor-Specific tags in `tags`
/// (Agent-Circuit-Id, Agent-Remote-Id). Malformed sub-options end the walk.
fn bbf_agent_ids(tags: &[Tag<'_>]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut circuit = None;
    let mut remote = None;
    for tag in tags {
        let Tag::VendorSpecific { vendor_id, data } = tag else {
            continue;
        };
        if *vendor_id != dataplane::wire::pppoe::VENDOR_ID_BBF {
            continue;
        }
        let mut rest: &[u8] = data;
        while let [kind, len, tail @ ..] = rest {
            let Some(value) = tail.get(..usize::from(*len)) else {
                break;
            };
            match *kind {
                BBF_AGENT_CIRCUIT_ID => circuit = Some(value.to_vec()),
                BBF_AGENT_REMOTE_ID => remote = Some(value.to_vec()),
                _ => {}
            }
            rest = &tail[usize::from(*len)..];
        }
    }
    (circuit, remote)
}

/// How many tags of one kind there are.
fn count_tags(tags: &[Tag<'_>], kind: u16) -> usize {
    tags.iter().filter(|t| t.kind() == kind).count()
}

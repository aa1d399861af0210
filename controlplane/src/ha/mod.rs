//! The HA extension (DESIGN.md §3; the protocol as built is in
//! `docs/ha-protocol.md`): what one LNS offloads to its peer so that the peer
//! can adopt a session with no PPP renegotiation.
//!
//! * [`state`]: the Session-State blob (vendor AVP 6) and its mapping from
//!   the PPP link and the AAA attributes.
//! * [`message`]: the HA vendor messages (LSORQ, LSORS, STPLRQ, STPLRP) as
//!   typed values, built for and read from [`crate::l2tp`] control messages.
//! * [`offload`]: the sans-IO offload protocol: the primary's
//!   [`offload::OffloadSender`] and the peer's [`offload::OffloadStore`].
//! * [`peering`]: one LNS's side of the peering: an offload sender per peer
//!   over its own connection (reconnected), the store, and adoption of a
//!   recovered call; the glue the LNS node runs on its endpoint.
//! * [`load`]: the load monitor with hysteresis that decides when an LNS
//!   asks its LACs to switch over (STPLRQ).
//!
//! Like the rest of the control plane, nothing here reads a clock or does
//! I/O: time comes in as [`crate::time::Instant`].

pub mod load;
pub mod message;
pub mod offload;
pub mod peering;
pub mod state;

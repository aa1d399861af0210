//! One LNS's side of the LNS-LNS peering (DESIGN.md §1 items 2 and 4): an
//! [`OffloadSender`] per configured peer, each over the control connection
//! this LNS opens to it (reopened when it fails), and one [`OffloadStore`]
//! for what the peers offload here; plus the peer side of a failure
//! switchover (adopting a recovered call from the store).
//!
//! This is the glue an LNS node runs beside its subscriber sessions, on the
//! same [`Endpoint`]: it takes the endpoint's events first
//! ([`LnsPeering::handle_event`] says whether an event was the peering's),
//! and the node tells it about its sessions
//! ([`LnsPeering::session_update`], [`LnsPeering::session_removed`]).
//! Sans-IO like the rest: time is passed in.
//!
//! Each LNS opens its own connection to each peer and offloads over it; the
//! store takes LSORQs from any tunnel whose remote is a configured peer, so
//! two LNSs that are each other's peer run both directions at once.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use std::collections::VecDeque;

use dataplane::wire::control::{ControlMessage, OffloadOperation};
use hdrhistogram::Histogram;

use super::message::{HaMessage, SessionIdentity, TunnelIdentity};
use super::offload::{Adoption, OffloadConfig, OffloadSender, OffloadStore, SenderEvent};
use super::state::{SessionState, StateError};
use crate::l2tp::codes::cdn;
use crate::l2tp::{Endpoint, Event, ResultCode, SessionHandle, TunnelHandle};
use crate::time::Instant;

/// A receive buffer for the socket an LNS's LNS-LNS tunnels use
/// (`SO_RCVBUF`; the kernel caps it at `net.core.rmem_max` and doubles it
/// for its bookkeeping) that holds a whole offload window of any size up
/// to 4096 back to back: each small datagram costs the socket about 1.3 KB
/// of buffer, so the default 208 KB overflows past about 160 of them (see
/// [`OffloadConfig::window`]).
pub const SOCKET_RECEIVE_BUFFER: usize = 4 << 20;

/// How an LNS peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringConfig {
    /// The peer LNSs' LNS-LNS addresses. Each must also be in the
    /// endpoint's [`crate::l2tp::HaConfig::lns_peers`] with its secret, so
    /// the connection is authenticated.
    pub peers: Vec<SocketAddrV4>,
    /// The offload senders' behaviour.
    pub offload: OffloadConfig,
    /// After a failed connection, try again this long after. Default 1 s.
    pub reconnect_after: Duration,
}

impl Default for PeeringConfig {
    fn default() -> Self {
        PeeringConfig {
            peers: Vec::new(),
            offload: OffloadConfig::default(),
            reconnect_after: Duration::from_secs(1),
        }
    }
}

/// What the peering reports to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeeringEvent {
    /// A session of ours was adopted by a peer (higher Ownership-Epoch):
    /// drop it silently, no LCP Terminate, no CDN.
    Fenced {
        /// The peer that said so.
        peer: SocketAddrV4,
        /// The tunnel (our Tunnel ID in it).
        tunnel: TunnelIdentity,
        /// The session (our Session ID in it).
        session: SessionIdentity,
        /// The epoch it has now.
        epoch: u32,
    },
    /// A bulk sync to a peer completed.
    BulkSyncDone {
        /// The peer.
        peer: SocketAddrV4,
        /// Tunnels and sessions it carried.
        entries: u64,
        /// How long it took.
        took: Duration,
    },
    /// A peer offloaded a session here that it adopted (its epoch is above
    /// the first): if it is one of ours (same Acct-Session-Id, lower
    /// epoch), it moved away while we still hold it (the LAC-primary link
    /// alone was cut): drop it silently, before its echoes fail.
    AdoptedElsewhere {
        /// The peer.
        peer: Ipv4Addr,
        /// The session's Acct-Session-Id, which a move keeps.
        acct_session_id: String,
        /// Its epoch at the peer.
        epoch: u32,
    },
    /// The connection to a peer is up.
    PeerUp(SocketAddrV4),
    /// The connection to a peer is down; offload to it waits for the next.
    PeerDown(SocketAddrV4),
}

#[derive(Debug)]
struct Link {
    peer: SocketAddrV4,
    sender: OffloadSender,
    /// The connection we opened, once requested.
    tunnel: Option<TunnelHandle>,
    up: bool,
    retry_at: Option<Instant>,
}

/// The peering (see the module documentation).
#[derive(Debug)]
pub struct LnsPeering {
    config: PeeringConfig,
    links: Vec<Link>,
    store: OffloadStore,
    events: VecDeque<PeeringEvent>,
}

impl LnsPeering {
    /// A peering with the configured peers, not connected yet
    /// ([`Self::start`]).
    pub fn new(config: PeeringConfig) -> Self {
        let links = config
            .peers
            .iter()
            .map(|&peer| Link {
                peer,
                sender: OffloadSender::new(config.offload),
                tunnel: None,
                up: false,
                retry_at: None,
            })
            .collect();
        LnsPeering {
            config,
            links,
            store: OffloadStore::new(),
            events: VecDeque::new(),
        }
    }

    /// Open the connection to every peer.
    pub fn start(&mut self, now: Instant, endpoint: &mut Endpoint) {
        for link in &mut self.links {
            connect(now, endpoint, link, self.config.reconnect_after);
        }
    }

    /// What peers offloaded here.
    pub fn store(&self) -> &OffloadStore {
        &self.store
    }

    /// The store, to adopt or release sessions directly.
    pub fn store_mut(&mut self) -> &mut OffloadStore {
        &mut self.store
    }

    /// The offload sender toward `peer`, if configured.
    pub fn sender(&self, peer: SocketAddrV4) -> Option<&OffloadSender> {
        self.links
            .iter()
            .find(|l| l.peer == peer)
            .map(|l| &l.sender)
    }

    /// Whether the connection we opened to `peer` is up.
    pub fn peer_connected(&self, peer: SocketAddrV4) -> bool {
        self.links.iter().any(|l| l.peer == peer && l.up)
    }

    /// Offload lag to every peer, merged (microseconds).
    pub fn lag(&self) -> Option<Histogram<u64>> {
        let mut links = self.links.iter();
        let mut merged = links.next()?.sender.lag().clone();
        for l in links {
            // Same bounds everywhere: adding cannot fail.
            let _ = merged.add(l.sender.lag());
        }
        Some(merged)
    }

    /// Whether a tunnel's remote is a configured peer LNS.
    pub fn is_peer(&self, remote: SocketAddrV4) -> bool {
        self.links.iter().any(|l| l.peer.ip() == remote.ip())
    }

    /// A session of ours is up or changed: offload it to every peer.
    pub fn session_update(
        &mut self,
        now: Instant,
        tunnel: TunnelIdentity,
        session: SessionIdentity,
        epoch: u32,
        state: &SessionState,
    ) -> Result<(), StateError> {
        for link in &mut self.links {
            link.sender
                .add_or_update(now, tunnel, session, epoch, state)?;
        }
        Ok(())
    }

    /// A session's counters moved on: every peer's next update or refresh
    /// of it carries `state`, without an LSORQ of its own
    /// ([`OffloadSender::refresh_state`]).
    pub fn session_refresh(
        &mut self,
        lns_tunnel_id: u16,
        session: SessionIdentity,
        epoch: u32,
        state: &SessionState,
    ) -> Result<(), StateError> {
        for link in &mut self.links {
            link.sender
                .refresh_state(lns_tunnel_id, session, epoch, state)?;
        }
        Ok(())
    }

    /// A session of ours is gone.
    pub fn session_removed(&mut self, now: Instant, lns_tunnel_id: u16, lns_session_id: u16) {
        for link in &mut self.links {
            link.sender.remove(now, lns_tunnel_id, lns_session_id);
        }
    }

    /// A tunnel of ours (to a LAC) is gone, and its sessions.
    pub fn tunnel_removed(&mut self, now: Instant, lns_tunnel_id: u16) {
        for link in &mut self.links {
            link.sender.remove_tunnel(now, lns_tunnel_id);
        }
    }

    /// Take an endpoint event. Returns true if it was the peering's (an
    /// LNS-LNS tunnel coming or going, LSORQ, LSORS): the node ignores it
    /// then.
    pub fn handle_event(&mut self, now: Instant, endpoint: &mut Endpoint, event: &Event) -> bool {
        match event {
            Event::TunnelUp { tunnel, remote, .. } => {
                if let Some(link) = self.links.iter_mut().find(|l| l.tunnel == Some(*tunnel)) {
                    link.up = true;
                    link.sender.connected(now);
                    self.events.push_back(PeeringEvent::PeerUp(link.peer));
                    return true;
                }
                // A peer's own connection to us: its LSORQs come on it.
                self.is_peer(*remote)
            }
            Event::TunnelDown { tunnel, .. } => {
                if let Some(link) = self.links.iter_mut().find(|l| l.tunnel == Some(*tunnel)) {
                    let was_up = link.up;
                    link.tunnel = None;
                    link.up = false;
                    link.sender.disconnected();
                    link.retry_at = Some(now + self.config.reconnect_after);
                    if was_up {
                        self.events.push_back(PeeringEvent::PeerDown(link.peer));
                    }
                    return true;
                }
                false
            }
            Event::Message {
                tunnel, message, ..
            } => self.on_message(now, endpoint, *tunnel, message),
            _ => false,
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        tunnel: TunnelHandle,
        message: &ControlMessage,
    ) -> bool {
        let Some(remote) = endpoint.tunnel_remote(tunnel) else {
            return false;
        };
        if !self.is_peer(remote) {
            // LSORQs only from configured, authenticated peers.
            return false;
        }
        match HaMessage::from_control(message) {
            Ok(HaMessage::OffloadRequest(r)) => {
                let reply = self.store.handle_request(*remote.ip(), &r);
                // Epoch 1 is a session set up where it is; above, it moved.
                if let (None, OffloadOperation::AddUpdate, Some(t), Some(sid), Some(e)) =
                    (&reply.error, r.operation, r.tunnel, r.session, r.epoch)
                {
                    if e > 1 {
                        if let Some(s) =
                            self.store
                                .session(t.primary_lns, t.lns_tunnel_id, sid.lns_session_id)
                        {
                            self.events.push_back(PeeringEvent::AdoptedElsewhere {
                                peer: *remote.ip(),
                                acct_session_id: s.state.accounting.session_id.clone(),
                                epoch: s.epoch,
                            });
                        }
                    }
                }
                let m = HaMessage::OffloadReply(reply).to_control(false);
                if let Err(e) = endpoint.send_ha_message(now, tunnel, None, m) {
                    tracing::warn!(%remote, %e, "cannot answer an LSORQ");
                }
                true
            }
            Ok(HaMessage::OffloadReply(r)) => {
                if let Some(link) = self.links.iter_mut().find(|l| l.tunnel == Some(tunnel)) {
                    link.sender.handle_reply(now, &r);
                }
                true
            }
            _ => false,
        }
    }

    /// The peer side of a failure or load switchover: an
    /// [`Event::RecoveryCall`] on a LAC's tunnel. Looks the session up by the
    /// tunnel's Recovery-Tunnel and the call's Recovery-Session, adopts it
    /// (epoch + 1) and answers the call: ICRP with Ownership-Epoch, or CDN
    /// result 5 if nothing is held for it (the LAC then places a fresh call).
    /// The node rebuilds the PPP link from the adoption's state
    /// ([`crate::ppp::PppLink::from_state`]) when the session comes up.
    pub fn recovery_call(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint,
        session: SessionHandle,
        primary_session_id: u16,
    ) -> Option<Adoption> {
        let adoption = self.adopt_for_recovery(endpoint, session, primary_session_id);
        let answer = match &adoption {
            Some(a) => Ok(a.epoch),
            None => Err(no_offloaded_state()),
        };
        if let Err(e) = endpoint.answer_recovery_call(now, session, answer) {
            tracing::warn!(%e, "cannot answer a recovery call");
        }
        adoption
    }

    /// The lookup half of [`Self::recovery_call`], for an owner that
    /// answers later (after programming its fast path): adopts the session
    /// (epoch + 1) if the store holds it under the tunnel's Recovery-Tunnel,
    /// and answers nothing. `None`: refuse at once with
    /// [`no_offloaded_state`], so the LAC places a fresh call without
    /// waiting. A call then cleared before its ICRP left goes back with
    /// [`OffloadStore::unadopt`].
    pub fn adopt_for_recovery(
        &mut self,
        endpoint: &Endpoint,
        session: SessionHandle,
        primary_session_id: u16,
    ) -> Option<Adoption> {
        let r = endpoint
            .peer_info(session.tunnel)
            .and_then(|p| p.recovery_tunnel)?;
        self.store
            .adopt(r.primary_lns, r.lns_tunnel_id, primary_session_id)
    }

    /// Send what the senders have for their peers, within their windows.
    /// Call after handling events and after changes.
    pub fn flush(&mut self, now: Instant, endpoint: &mut Endpoint) {
        for link in &mut self.links {
            let Some(tunnel) = link.tunnel.filter(|_| link.up) else {
                continue;
            };
            while let Some(request) = link.sender.poll_request(now) {
                // Session-State hidden (RFC 2661 §4.3): the LNS-LNS tunnel
                // has its peer's secret.
                let m = HaMessage::OffloadRequest(request).to_control(true);
                if let Err(e) = endpoint.send_ha_message(now, tunnel, None, m) {
                    tracing::warn!(peer = %link.peer, %e, "cannot send an LSORQ");
                    break;
                }
            }
            while let Some(e) = link.sender.poll_event() {
                self.events.push_back(match e {
                    SenderEvent::Fenced {
                        tunnel,
                        session,
                        epoch,
                    } => PeeringEvent::Fenced {
                        peer: link.peer,
                        tunnel,
                        session,
                        epoch,
                    },
                    SenderEvent::BulkSyncDone { started, entries } => PeeringEvent::BulkSyncDone {
                        peer: link.peer,
                        entries,
                        took: now - started,
                    },
                });
            }
        }
    }

    /// When to call [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.links
            .iter()
            .flat_map(|l| [l.retry_at, l.sender.poll_timeout()])
            .flatten()
            .min()
    }

    /// Reconnect failed peers and run the periodic refreshes that are due.
    pub fn handle_timeout(&mut self, now: Instant, endpoint: &mut Endpoint) {
        for link in &mut self.links {
            if link.retry_at.is_some_and(|t| t <= now) {
                connect(now, endpoint, link, self.config.reconnect_after);
            }
            link.sender.handle_timeout(now);
        }
        self.flush(now, endpoint);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PeeringEvent> {
        self.events.pop_front()
    }

    /// The primary address a LAC uses for us is not known here; the node
    /// builds [`TunnelIdentity`] with it. This helper does so from an
    /// endpoint's tunnel.
    pub fn tunnel_identity(
        endpoint: &Endpoint,
        tunnel: TunnelHandle,
        our_address: Ipv4Addr,
    ) -> Option<TunnelIdentity> {
        let (local, peer) = endpoint.tunnel_ids(tunnel)?;
        Some(TunnelIdentity {
            lns_tunnel_id: local,
            lac_tunnel_id: peer,
            lac: endpoint.tunnel_remote(tunnel)?,
            primary_lns: our_address,
        })
    }
}

/// The CDN for a recovery call with nothing offloaded for it (the bulk
/// sync had not reached it, or the primary never offloaded it): result 5,
/// permanent, so the LAC stops trying recovery and places a fresh call
/// (RFC 2661 §4.4.2 result codes; docs/ha-protocol.md §5.5).
pub fn no_offloaded_state() -> ResultCode {
    ResultCode::with_message(
        cdn::NO_FACILITIES_PERMANENT,
        "no offloaded state for this session",
    )
}

fn connect(now: Instant, endpoint: &mut Endpoint, link: &mut Link, retry: Duration) {
    link.retry_at = None;
    match endpoint.connect(now, link.peer) {
        Ok(t) => link.tunnel = Some(t),
        Err(e) => {
            tracing::warn!(peer = %link.peer, %e, "cannot open the LNS-LNS connection");
            link.retry_at = Some(now + retry);
        }
    }
}

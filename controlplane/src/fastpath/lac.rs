//! The LAC's fast path: [`lac::Node`] events turned into worker table
//! updates, and the access port's punts fed back to the node.
//!
//! Ports: 0 is the access interface (PPPoE subscribers), 1 the wan
//! interface (L2TP to the LNSs): start the [`Fastpath`] with
//! `interfaces: vec![access, wan]` and `Role::Lac`.
//!
//! * Call answered ([`lac::Event::CallAnswered`], the node runs with
//!   [`lac::Config::defer_connect`]): `UpsertTunnel` when the tunnel is new
//!   to the workers (its next hop resolved through the kernel) and
//!   `UpsertSession` with the subscriber's PPPoE binding, holding its
//!   upstream frames (`SetHolding`), then a barrier; once every worker has
//!   echoed it (or after [`CONNECT_LIMIT`]) the call is connected
//!   ([`lac::Node::connect_call`]: the ICCN goes). The LNS sends its first
//!   PPP frames as soon as it has the ICCN (RFC 2661 §7.4.1), and the
//!   workers relay them down: programming at call up instead would drop
//!   them, and PPP would wait for the LNS's restart timer. The
//!   subscriber's frames wait in the workers meanwhile: sent before the
//!   LNS has the ICCN they would be dropped there.
//! * Call up ([`lac::Event::SessionUp`], ICCN acknowledged): the held
//!   upstream frames go, in order, after those the node queued before the
//!   session was programmed; or the same programming for a call not
//!   programmed yet (a node without `defer_connect`). The workers relay
//!   PPPoE ↔ L2TP both ways.
//! * Session down and answered calls abandoned: `RemoveSession`; tunnel
//!   down: `RemoveTunnel`.
//! * Punts: PPPoE discovery (`Local`, whole frames) and PPP control of
//!   sessions the workers do not relay yet (`LacPpp`, the PPP frame, which
//!   is put back into an Ethernet/PPPoE frame) go to
//!   [`lac::Node::handle_access_frame`]; what the node sends on the access
//!   side ([`lac::Node::poll_access_frame`]) is injected on port 0.
//!
//! ```text
//! let mut fp = LacFastpath::start(config, access_mac)?; // interfaces: [access, wan]
//! loop {
//!     driver.run_until(driver.now() + Duration::from_millis(1), |_node, event| {
//!         fp.program(&event);
//!         ControlFlow::Continue(())
//!     })?;
//!     fp.service(driver.node_mut(), driver.now());
//! }
//! ```

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use dataplane::punt::{InjectTarget, PuntReason};
use dataplane::table::{SessionConfig, SessionKey, Tunnel};
use dataplane::wire::ethernet;

use super::{Fastpath, FastpathConfig, FastpathError};
use crate::l2tp::SessionHandle;
use crate::lac;
use crate::time::Instant;

/// The access port: the first interface.
pub const ACCESS_PORT: u8 = 0;

/// The PPPoE session EtherType (RFC 2516 §4).
const PPPOE_SESSION: u16 = 0x8864;
/// PPPoE VER 1, TYPE 1 (RFC 2516 §4).
const PPPOE_VER_TYPE: u8 = 0x11;
/// Ethernet and PPPoE headers.
const PPPOE_HEAD: usize = 14 + 6;

/// The MRU programmed for LAC sessions: the LAC relays, it does not
/// enforce one.
const RELAY_MRU: u16 = 1500;

/// How long an answered call's ICCN waits for the workers to confirm they
/// know the session, at most (a stuck worker must not stall every call; the
/// node's own bound, [`lac::Config::defer_connect`], should be longer).
pub const CONNECT_LIMIT: Duration = Duration::from_millis(200);

/// Punts handled per [`LacFastpath::service`] call at most.
const PUNTS_PER_SERVICE: usize = 1024;

/// Counters of the LAC glue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LacFastpathStats {
    /// Sessions programmed.
    pub sessions: u64,
    /// Sessions removed.
    pub removed: u64,
    /// Answered calls connected once the workers knew them.
    pub connected: u64,
    /// Answered calls connected after [`CONNECT_LIMIT`] without the
    /// workers' confirmation (or with no barrier to wait for).
    pub connected_unconfirmed: u64,
    /// Tunnels programmed.
    pub tunnels: u64,
    /// Access frames (discovery, PPP control) handed to the node.
    pub access_punts: u64,
    /// Frames the node sent on the access side through the workers.
    pub injected: u64,
    /// Of those, the ones the workers had no room for.
    pub inject_failures: u64,
    /// Punts for next hops without a MAC address.
    pub neighbour_punts: u64,
    /// Other punts, dropped.
    pub other_punts: u64,
    /// Table updates that failed.
    pub update_errors: u64,
}

/// The LAC's fast path: a [`Fastpath`] and what was programmed into it.
#[derive(Debug)]
pub struct LacFastpath {
    fp: Fastpath,
    /// Our MAC address on the access port (the node's PPPoE MAC).
    access_mac: ethernet::Address,
    /// By our Tunnel ID.
    tunnels: HashMap<u16, Tunnel>,
    /// Sessions programmed.
    sessions: HashSet<SessionKey>,
    /// Of those, the answered calls whose upstream frames the workers hold
    /// until the call is up.
    holding: HashSet<SessionKey>,
    /// Answered calls programmed whose ICCN waits: the barrier that says
    /// the workers know them and when it was sent (both `None` until
    /// [`LacFastpath::service`] sends it; the token alone stays `None` if
    /// it could not be sent).
    unconnected: Vec<(SessionHandle, Option<u64>, Option<Instant>)>,
    frame: Vec<u8>,
    stats: LacFastpathStats,
}

impl LacFastpath {
    /// Start the workers ([`Fastpath::start`], in the calling thread's
    /// network namespace; `config.interfaces` is `[access, wan]`).
    /// `access_mac` is the node's PPPoE MAC address (the destination of
    /// the frames handed to it).
    pub fn start(
        config: FastpathConfig,
        access_mac: ethernet::Address,
    ) -> Result<LacFastpath, FastpathError> {
        Ok(LacFastpath::with_fastpath(
            Fastpath::start(config)?,
            access_mac,
        ))
    }

    /// Over a fast path already running.
    pub fn with_fastpath(fp: Fastpath, access_mac: ethernet::Address) -> LacFastpath {
        LacFastpath {
            fp,
            access_mac,
            tunnels: HashMap::new(),
            sessions: HashSet::new(),
            holding: HashSet::new(),
            unconnected: Vec::new(),
            frame: Vec::with_capacity(2048),
            stats: LacFastpathStats::default(),
        }
    }

    /// The fast path (reports, barriers, stop).
    pub fn fastpath(&mut self) -> &mut Fastpath {
        &mut self.fp
    }

    /// Counters of the glue.
    pub fn stats(&self) -> LacFastpathStats {
        self.stats
    }

    /// Apply one node event to the tables. An answered call is connected
    /// by a later [`LacFastpath::service`].
    pub fn program(&mut self, event: &lac::Event) {
        let result = match event {
            lac::Event::CallAnswered(call) => {
                self.unconnected.push((call.session, None, None));
                let key = SessionKey {
                    tunnel_id: call.local_tunnel_id,
                    session_id: call.local_session_id,
                };
                // Held until the LNS has the ICCN (call up): the workers
                // keep the subscriber's frames instead of sending them
                // ahead of it. The two updates go back to back, and a
                // worker applies its updates in batches between bursts.
                self.upsert_call(call).and_then(|()| {
                    self.holding.insert(key);
                    self.fp.set_holding(key, true)
                })
            }
            lac::Event::SessionUp(call) => {
                let key = SessionKey {
                    tunnel_id: call.local_tunnel_id,
                    session_id: call.local_session_id,
                };
                if self.holding.remove(&key) {
                    self.fp.set_holding(key, false)
                } else if self.sessions.contains(&key) {
                    Ok(())
                } else {
                    self.upsert_call(call)
                }
            }
            lac::Event::CallAbandoned {
                local_tunnel_id,
                local_session_id,
                ..
            } => self.remove_session(*local_tunnel_id, *local_session_id),
            lac::Event::SessionDown(ended) => match (ended.tunnel_ids, ended.session_ids) {
                (Some((tunnel_id, _)), Some((session_id, _))) => {
                    self.remove_session(tunnel_id, session_id)
                }
                _ => Ok(()),
            },
            lac::Event::TunnelDown {
                local_tunnel_id, ..
            } => {
                self.sessions.retain(|k| k.tunnel_id != *local_tunnel_id);
                self.holding.retain(|k| k.tunnel_id != *local_tunnel_id);
                match self.tunnels.remove(local_tunnel_id) {
                    Some(_) => self.fp.remove_tunnel(*local_tunnel_id),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.stats.update_errors += 1;
            tracing::error!(error = %e, "fast path not programmed");
        }
    }

    fn remove_session(&mut self, tunnel_id: u16, session_id: u16) -> Result<(), FastpathError> {
        let key = SessionKey {
            tunnel_id,
            session_id,
        };
        self.holding.remove(&key);
        if !self.sessions.remove(&key) {
            return Ok(());
        }
        self.stats.removed += 1;
        self.fp.remove_session(key)
    }

    fn upsert_call(&mut self, call: &lac::CallUp) -> Result<(), FastpathError> {
        let tunnel = Tunnel {
            tunnel_id: call.local_tunnel_id,
            peer_tunnel_id: call.peer_tunnel_id,
            local: call.local,
            peer: call.peer,
            next_hop: self.fp.next_hop(*call.peer.ip()),
        };
        if self.tunnels.get(&tunnel.tunnel_id) != Some(&tunnel) {
            self.fp.want_neighbour(tunnel.next_hop);
            self.fp.upsert_tunnel(tunnel)?;
            self.tunnels.insert(tunnel.tunnel_id, tunnel);
            self.stats.tunnels += 1;
        }
        self.stats.sessions += 1;
        let key = SessionKey {
            tunnel_id: call.local_tunnel_id,
            session_id: call.local_session_id,
        };
        self.sessions.insert(key);
        self.fp.upsert_session(SessionConfig {
            key,
            peer_session_id: call.peer_session_id,
            subscriber_addr: None,
            mru: RELAY_MRU,
            sequencing: call.sequencing,
            pppoe: Some(call.subscriber.binding(ACCESS_PORT)),
        })
    }

    /// The control loop's turn, once per slice: queued updates and the
    /// workers' answers ([`Fastpath::poll`]), access-side punts to the
    /// node, and the node's access frames out through the workers. Returns
    /// how many punts were handled.
    pub fn service(&mut self, node: &mut lac::Node, now: Instant) -> usize {
        self.await_workers(now);
        self.fp.poll();
        self.connect_calls(node, now);
        let our_mac = self.access_mac;
        let mut handled = 0;
        while handled < PUNTS_PER_SERVICE {
            let Some((worker, punt)) = self.fp.poll_punt() else {
                break;
            };
            handled += 1;
            match punt.reason {
                PuntReason::LacPpp {
                    subscriber_mac,
                    pppoe_session_id,
                } => {
                    self.stats.access_punts += 1;
                    pppoe_frame(
                        &mut self.frame,
                        our_mac,
                        subscriber_mac,
                        pppoe_session_id,
                        punt.buffer.bytes(),
                    );
                    node.handle_access_frame(now, &self.frame);
                }
                PuntReason::Local if punt.port == ACCESS_PORT => {
                    self.stats.access_punts += 1;
                    node.handle_access_frame(now, punt.buffer.bytes());
                }
                PuntReason::L2tpControl => match super::udp_datagram(punt.buffer.bytes()) {
                    // As if it came through the node's socket.
                    Some((from, payload)) => node.handle_datagram(now, from, payload),
                    None => self.stats.other_punts += 1,
                },
                PuntReason::NeighbourMissing { next_hop } => {
                    self.stats.neighbour_punts += 1;
                    self.fp.resolve_neighbour(next_hop);
                }
                _ => self.stats.other_punts += 1,
            }
            self.fp.recycle(worker, punt.buffer);
        }
        while node.poll_access_frame(&mut self.frame) {
            self.stats.injected += 1;
            if !self.fp.inject(InjectTarget::Port(ACCESS_PORT), &self.frame) {
                self.stats.inject_failures += 1;
            }
        }
        handled
    }

    /// One barrier for the answered calls programmed since the last turn.
    fn await_workers(&mut self, now: Instant) {
        if !self.unconnected.iter().any(|c| c.2.is_none()) {
            return;
        }
        let token = match self.fp.barrier_quiet() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "no barrier for answered calls: connecting them unconfirmed");
                None
            }
        };
        for call in self.unconnected.iter_mut().filter(|c| c.2.is_none()) {
            call.1 = token;
            call.2 = Some(now);
        }
    }

    /// Connect the answered calls the workers know (or that waited
    /// [`CONNECT_LIMIT`]): their ICCN goes out with the node's next
    /// transmissions.
    fn connect_calls(&mut self, node: &mut lac::Node, now: Instant) {
        let fp = &self.fp;
        let stats = &mut self.stats;
        self.unconnected.retain(|&(session, token, since)| {
            let Some(since) = since else {
                return true;
            };
            let known = token.is_some_and(|t| !fp.barrier_pending(t));
            if !known && now.saturating_duration_since(since) < CONNECT_LIMIT && token.is_some() {
                return true;
            }
            if known {
                stats.connected += 1;
            } else {
                stats.connected_unconfirmed += 1;
            }
            // False when the call ended meanwhile: nothing to do.
            node.connect_call(now, session);
            false
        });
    }

    /// Answered calls whose ICCN waits for the workers.
    pub fn unconnected_calls(&self) -> usize {
        self.unconnected.len()
    }

    /// Stop the workers (see [`Fastpath::stop`]).
    pub fn stop(&mut self) -> Vec<dataplane::update::WorkerReport> {
        self.fp.stop()
    }
}

/// Ethernet/PPPoE session around `ppp` (from the Protocol field, as the
/// workers punt it), from the subscriber to us, into `out`.
fn pppoe_frame(
    out: &mut Vec<u8>,
    to: ethernet::Address,
    from: ethernet::Address,
    session_id: u16,
    ppp: &[u8],
) {
    out.clear();
    out.reserve(PPPOE_HEAD + ppp.len());
    out.extend_from_slice(&to.0);
    out.extend_from_slice(&from.0);
    out.extend_from_slice(&PPPOE_SESSION.to_be_bytes());
    // RFC 2516 §4: VER/TYPE, CODE 0 (session data), SESSION_ID, LENGTH of
    // the payload.
    out.extend_from_slice(&[PPPOE_VER_TYPE, 0x00]);
    out.extend_from_slice(&session_id.to_be_bytes());
    let len = u16::try_from(ppp.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(ppp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::pppoe;

    #[test]
    fn punted_ppp_goes_back_into_a_pppoe_session_frame() {
        let mut out = Vec::new();
        let us = ethernet::Address([2, 0, 0, 0, 0, 1]);
        let sub = ethernet::Address([2, 0, 0, 0, 0, 2]);
        let lcp = [0xc0, 0x21, 1, 1, 0, 4];
        pppoe_frame(&mut out, us, sub, 0x1234, &lcp);
        let eth = ethernet::Frame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), us);
        assert_eq!(eth.src_addr(), sub);
        assert_eq!(u16::from(eth.ethertype()), PPPOE_SESSION);
        let p = pppoe::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(p.code(), pppoe::Code::Session);
        assert_eq!(p.session_id(), 0x1234);
        assert_eq!(usize::from(p.length()), lcp.len());
        assert_eq!(&out[PPPOE_HEAD..], &lcp);
    }
}

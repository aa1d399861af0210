//! What `lnsd` and `lacd` share: logging, how an L2TP or LNS event reads in
//! the log, a clean shutdown, and (in [`ops`]) signals, the control socket
//! and the metrics.

// Each daemon compiles this module and uses part of it.
#![allow(dead_code)]

pub(crate) mod load;
pub(crate) mod ops;

use std::error::Error;
use std::ops::ControlFlow;
use std::time::Duration;

use controlplane::driver::{self, Driver};
use controlplane::l2tp::{
    Endpoint, Event, ResultCode, SessionDownReason, TunnelDownReason, TunnelHandle,
};
use controlplane::lns;
use controlplane::time::Instant;
use dataplane::wire::{ppp, ppp_cp};
use tracing::{info, warn};

/// A boxed error for `main`: the daemons print it and exit non-zero.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// How long a shutdown waits for the peers to acknowledge our StopCCNs.
// Under the 5 s a service manager (and deploy/lab.sh) gives before SIGKILL:
// a LAC that is still there acknowledges within a round trip, or after our
// first retransmissions (1 s, then 2 s later).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Log to stderr, `RUST_LOG` filtering (default `info`); colours only on a
/// terminal, so a log file stays greppable. [`ops::Logging::init`] does the
/// same with a filter a reload can change.
pub(crate) fn init_logging() {
    let _ = ops::Logging::init(None);
}

/// One log line per event, with the ids an operator matches against the
/// peer's logs and a capture.
pub(crate) fn log_event(event: &Event) {
    match event {
        Event::TunnelUp {
            tunnel,
            remote,
            local_tunnel_id,
            peer,
        } => info!(
            tunnel = tunnel.0,
            %remote,
            local_tunnel_id,
            peer_tunnel_id = peer.tunnel_id,
            peer_host_name = %peer.host_name,
            peer_receive_window = peer.receive_window,
            "tunnel up"
        ),
        Event::TunnelDown {
            tunnel,
            reason,
            stats,
        } => info!(
            tunnel = tunnel.0,
            reason = %tunnel_down_reason(reason),
            sent = stats.control.sent,
            acked = stats.control.acked,
            retransmitted = stats.control.retransmitted,
            "tunnel down"
        ),
        Event::SessionUp {
            session,
            local_session_id,
            peer_session_id,
            ..
        } => info!(
            tunnel = session.tunnel.0,
            session = session.id,
            local_session_id,
            peer_session_id,
            "session up"
        ),
        Event::SessionDown { session, reason } => info!(
            tunnel = session.tunnel.0,
            session = session.id,
            reason = %session_down_reason(reason),
            "session down"
        ),
        Event::Data { session, payload } => info!(
            tunnel = session.tunnel.0,
            session = session.id,
            bytes = payload.len(),
            ppp = %describe_ppp(payload),
            "data message"
        ),
        other => info!(event = ?other, "event"),
    }
}

/// One log line per LNS event: sessions up and down with the user and the
/// address, what AAA refused, what went wrong with RADIUS.
pub(crate) fn log_lns_event(event: &lns::Event) {
    match event {
        lns::Event::TunnelUp {
            tunnel,
            remote,
            peer_host_name,
        } => info!(tunnel = tunnel.0, %remote, %peer_host_name, "tunnel up"),
        lns::Event::TunnelDown { tunnel, reason } => info!(
            tunnel = tunnel.0,
            reason = %tunnel_down_reason(reason),
            "tunnel down"
        ),
        lns::Event::SessionEstablished(s) => match s.adopted_epoch {
            // HA: a peer's session taken over from its offloaded state, PPP
            // not renegotiated (docs/ha-protocol.md §5.5).
            Some(epoch) => info!(
                tunnel = s.session.tunnel.0,
                session = s.session.id,
                user = %s.username,
                address = %s.address,
                acct_session_id = %s.acct_session_id,
                epoch,
                "session adopted"
            ),
            None => info!(
                tunnel = s.session.tunnel.0,
                session = s.session.id,
                user = %s.username,
                address = %s.address,
                auth = ?s.link.auth_method,
                proxy = ?s.proxy,
                acct_session_id = %s.acct_session_id,
                setup_ms = s.setup_time.as_millis() as u64,
                "session up"
            ),
        },
        // HA: moved to another LNS (released by the LAC, or fenced by a
        // higher epoch): dropped silently, no Terminate, CDN or Stop.
        lns::Event::SessionDown(s) if matches!(s.cause, lns::EndCause::Moved { .. }) => info!(
            tunnel = s.session.tunnel.0,
            session = s.session.id,
            user = s.username.as_deref().unwrap_or("-"),
            address = %s.address.map_or("-".to_owned(), |a| a.to_string()),
            cause = ?s.cause,
            seconds = s.duration.as_secs(),
            "session moved to another LNS"
        ),
        lns::Event::SessionDown(s) => info!(
            tunnel = s.session.tunnel.0,
            session = s.session.id,
            user = s.username.as_deref().unwrap_or("-"),
            address = %s.address.map_or("-".to_owned(), |a| a.to_string()),
            cause = ?s.cause,
            terminate_cause = ?s.terminate_cause,
            cdn = %s.cdn.as_ref().map_or("-".to_owned(), |r| r.to_string()),
            seconds = s.duration.as_secs(),
            "session down"
        ),
        lns::Event::AuthRejected {
            session,
            username,
            reason,
        } => info!(
            tunnel = session.tunnel.0,
            session = session.id,
            user = %username,
            reason = ?reason,
            "authentication refused"
        ),
        lns::Event::AddressUnavailable {
            session,
            username,
            error,
        } => warn!(
            tunnel = session.tunnel.0,
            session = session.id,
            user = %username,
            %error,
            "no address for the subscriber (grow --pool?)"
        ),
        lns::Event::AccountingLost { status } => {
            warn!(?status, "RADIUS accounting record lost")
        }
        lns::Event::RadiusServerDown { address } => {
            warn!(%address, "RADIUS server not answering")
        }
        lns::Event::Accounting { .. } | lns::Event::SessionUpdated { .. } => {
            tracing::debug!(event = ?event, "event")
        }
    }
}

/// A node that holds an L2TP endpoint, run by a daemon's driver.
pub(crate) trait L2tpNode: driver::Node {
    /// Its endpoint.
    fn endpoint(&self) -> &Endpoint;
    /// Its endpoint, for commands.
    fn endpoint_mut(&mut self) -> &mut Endpoint;
    /// Log one of its events.
    fn log(event: &Self::Event);
    /// Close a tunnel with StopCCN.
    fn close_tunnel(&mut self, now: Instant, tunnel: TunnelHandle, result: ResultCode) {
        // A tunnel already down (in its hold period) has nothing to close.
        let _ = self.endpoint_mut().close_tunnel(now, tunnel, result);
    }
}

impl L2tpNode for Endpoint {
    fn endpoint(&self) -> &Endpoint {
        self
    }
    fn endpoint_mut(&mut self) -> &mut Endpoint {
        self
    }
    fn log(event: &Event) {
        log_event(event);
    }
}

impl L2tpNode for lns::Node {
    fn endpoint(&self) -> &Endpoint {
        lns::Node::endpoint(self)
    }
    fn endpoint_mut(&mut self) -> &mut Endpoint {
        lns::Node::endpoint_mut(self)
    }
    fn log(event: &lns::Event) {
        log_lns_event(event);
    }
    fn close_tunnel(&mut self, now: Instant, tunnel: TunnelHandle, result: ResultCode) {
        lns::Node::close_tunnel(self, now, tunnel, result);
    }
}

fn tunnel_down_reason(reason: &TunnelDownReason) -> String {
    match reason {
        TunnelDownReason::Closed(r) => format!("we closed it: {r}"),
        TunnelDownReason::StopCcnReceived(r) => format!("peer sent StopCCN: {r}"),
        TunnelDownReason::RetriesExhausted => "peer stopped acknowledging".to_owned(),
        TunnelDownReason::AuthenticationFailed(r) => format!("authentication failed: {r}"),
        TunnelDownReason::ProtocolError(r) => format!("protocol error: {r}"),
    }
}

fn session_down_reason(reason: &SessionDownReason) -> String {
    match reason {
        SessionDownReason::Closed(r) => format!("we closed it: {r}"),
        SessionDownReason::CdnReceived(r) => format!("peer sent CDN: {r}"),
        SessionDownReason::ProtocolError(r) => format!("protocol error: {r}"),
        SessionDownReason::TunnelDown => "its tunnel went down".to_owned(),
    }
}

/// What a data message carries, e.g. "Lcp ConfigureRequest id 1".
pub(crate) fn describe_ppp(payload: &[u8]) -> String {
    let Ok(frame) = ppp::Packet::new_checked(payload) else {
        return "not a PPP frame".to_owned();
    };
    let protocol = frame.protocol();
    if protocol.is_control() {
        if let Ok(cp) = ppp_cp::Packet::new_checked(frame.payload()) {
            return format!("{protocol:?} {:?} id {}", cp.code(), cp.identifier());
        }
    }
    format!("{protocol:?}")
}

/// True when the peers have acknowledged every control message we sent on
/// every tunnel still held.
pub(crate) fn all_acknowledged(endpoint: &Endpoint) -> bool {
    endpoint.tunnels().all(|t| {
        endpoint
            .tunnel_stats(t)
            .is_none_or(|s| s.control.acked >= s.control.sent)
    })
}

/// Runs until the peers have acknowledged every control message we sent, at
/// most `grace`. Returns whether they did.
pub(crate) fn settle<N: L2tpNode>(
    driver: &mut Driver<N>,
    grace: Duration,
) -> Result<bool, BoxError> {
    let deadline = driver.now() + grace;
    settle_until(driver, deadline)
}

/// Runs until the peers have acknowledged every control message we sent, or
/// until `deadline`. Returns whether they did.
pub(crate) fn settle_until<N: L2tpNode>(
    driver: &mut Driver<N>,
    deadline: Instant,
) -> Result<bool, BoxError> {
    // An acknowledgement (a ZLB) is no event, so look at the state between
    // short runs.
    while !all_acknowledged(driver.node().endpoint()) && driver.now() < deadline {
        let step = (driver.now() + Duration::from_millis(50)).min(deadline);
        driver.run_until(step, |_, event| {
            N::log(&event);
            ControlFlow::Continue(())
        })?;
    }
    Ok(all_acknowledged(driver.node().endpoint()))
}

/// Closes every tunnel with StopCCN `result` and runs until the peers have
/// acknowledged, at most [`SHUTDOWN_GRACE`] in all. Returns whether they did.
///
/// What the caller queued before (a CDN for every call, so each peer learns
/// why its calls end) is let through first, for at most half the grace
/// time: the CDNs go out only as fast as the peer's receive window and our
/// slow start allow (RFC 2661 §5.8, Appendix A), and a StopCCN discards
/// whatever still waits for the window (it clears the calls anyway, RFC
/// 2661 §5.7, but without their result codes).
pub(crate) fn shutdown<N: L2tpNode>(driver: &mut Driver<N>, result: u16) -> Result<bool, BoxError> {
    let start = driver.now();
    let deadline = start + SHUTDOWN_GRACE;
    let calls_acknowledged = settle_until(driver, start + SHUTDOWN_GRACE / 2)?;
    if !calls_acknowledged {
        warn!("not every message before the StopCCNs was acknowledged in time (CDNs may be lost)");
    }
    let now = driver.now();
    let tunnels: Vec<_> = driver.node().endpoint().tunnels().collect();
    for tunnel in tunnels {
        driver
            .node_mut()
            .close_tunnel(now, tunnel, ResultCode::new(result));
    }
    let acknowledged = settle_until(driver, deadline)?;
    info!(
        calls_acknowledged,
        acknowledged,
        stats = ?driver.stats(),
        "shut down"
    );
    Ok(acknowledged)
}

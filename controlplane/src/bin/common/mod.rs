//! What `lnsd` and `lacd` share: logging, how an L2TP event reads in the log,
//! and a clean shutdown.

use std::error::Error;
use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::time::Duration;

use controlplane::driver::Driver;
use controlplane::l2tp::{Endpoint, Event, ResultCode, SessionDownReason, TunnelDownReason};
use dataplane::wire::{ppp, ppp_cp};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// A boxed error for `main`: the daemons print it and exit non-zero.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// How long a shutdown waits for the peers to acknowledge our StopCCNs.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Log to stderr, `RUST_LOG` filtering (default `info`); colours only on a
/// terminal, so a log file stays greppable.
pub(crate) fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
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
pub(crate) fn settle(driver: &mut Driver<Endpoint>, grace: Duration) -> Result<bool, BoxError> {
    // An acknowledgement (a ZLB) is no event, so look at the state between
    // short runs.
    let deadline = driver.now() + grace;
    while !all_acknowledged(driver.node()) && driver.now() < deadline {
        let step = (driver.now() + Duration::from_millis(50)).min(deadline);
        driver.run_until(step, |_, event| {
            log_event(&event);
            ControlFlow::Continue(())
        })?;
    }
    Ok(all_acknowledged(driver.node()))
}

/// Closes every tunnel with StopCCN `result` and runs until the peers have
/// acknowledged, at most [`SHUTDOWN_GRACE`]. Returns whether they did.
pub(crate) fn shutdown(driver: &mut Driver<Endpoint>, result: u16) -> Result<bool, BoxError> {
    let now = driver.now();
    let tunnels: Vec<_> = driver.node().tunnels().collect();
    for tunnel in tunnels {
        // A tunnel already down (in its hold period) has nothing to close.
        let _ = driver
            .node_mut()
            .close_tunnel(now, tunnel, ResultCode::new(result));
    }
    let acknowledged = settle(driver, SHUTDOWN_GRACE)?;
    info!(acknowledged, stats = ?driver.stats(), "shut down");
    Ok(acknowledged)
}

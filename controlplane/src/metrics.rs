//! Prometheus metrics of the daemons, and the small HTTP server that serves
//! them (`GET /metrics`, the text exposition format).
//!
//! The daemon's control thread owns a [`Metrics`] and updates it from what
//! it already has: session and tunnel counts, session setups and their
//! failures (from the node's events), the L2TP tunnels' control counters and
//! the fast-path workers' counters (sampled, turned into monotonic counters
//! here). [`MetricsServer`] encodes the registry on its own thread, so a
//! slow scraper never holds the control thread.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `l2tp_sessions` | gauge | |
//! | `l2tp_tunnels` | gauge | |
//! | `l2tp_sessions_set_up_total` | counter | |
//! | `l2tp_session_setup_rate` | gauge (per second, last 10 s) | |
//! | `l2tp_session_setup_failures_total` | counter | `reason` |
//! | `l2tp_control_messages_sent_total` | counter | |
//! | `l2tp_control_messages_retransmitted_total` | counter | |
//! | `l2tp_fastpath_packets_total` | counter | `path` |
//! | `l2tp_fastpath_drops_total` | counter | `reason` ([`DropReason::name`]) |
//! | `l2tp_fastpath_punts_total` | counter | `kind` ([`PuntKind::name`]) |
//! | `l2tp_ha_offload_lag_microseconds` | gauge (LNS with HA: change → peer's acknowledgement, since start) | `quantile` (`0.5`, `0.99`) |
//! | `l2tp_ha_offloaded_sessions` | gauge (LNS with HA: sessions peers offloaded here) | |
//! | `l2tp_ha_events_total` | counter (HA: recoveries, adoptions, fencing, switchovers asked and answered, overloads) | `event` |
//! | `l2tp_ha_peers_connected` | gauge (LNS with HA: peer LNSs whose connection is up) | |
//! | `l2tp_ha_in_sync` | gauge (LNS with HA: 1 when every peer holds all our sessions) | |
//! | `l2tp_ha_overloaded` | gauge (LNS with `[ha.load]`: 1 while the load monitor says overloaded) | |
//! | `l2tp_ha_load_percent` | gauge (LNS with `[ha.load]`: the last sample) | `resource` (`cpu`, `memory`) |

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::counters::{Counters, DropReason, PathKind, PuntKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Over how long the setup rate gauge averages.
pub const SETUP_RATE_WINDOW: Duration = Duration::from_secs(10);

/// A `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// A `path` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

/// A `kind` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// An `event` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// A `resource` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: &'static str,
}

/// The HA state a daemon shows in its metrics ([`Metrics::observe_ha`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HaGauges {
    /// Peer LNSs connected (LNS).
    pub peers_connected: usize,
    /// Every peer holds all our sessions (LNS).
    pub in_sync: bool,
    /// The load monitor says overloaded (LNS).
    pub overloaded: bool,
    /// The last load sample's CPU and memory, percent (LNS with a load
    /// monitor).
    pub load_percent: Option<(f64, f64)>,
}

/// A `quantile` label (as Prometheus summaries name theirs).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    quantile: &'static str,
}

/// The daemon's metrics: see the [module documentation](self).
pub struct Metrics {
    registry: Arc<Registry>,
    sessions: Gauge,
    tunnels: Gauge,
    sessions_set_up: Counter,
    setup_rate: Gauge<f64, AtomicU64>,
    setup_failures: Family<ReasonLabel, Counter>,
    control_sent: Counter,
    control_retransmitted: Counter,
    fastpath_packets: Family<PathLabel, Counter>,
    fastpath_drops: Family<ReasonLabel, Counter>,
    fastpath_punts: Family<KindLabel, Counter>,
    offload_lag: Family<QuantileLabel, Gauge>,
    offloaded_sessions: Gauge,
    ha_events: Family<EventLabel, Counter>,
    ha_peers_connected: Gauge,
    ha_in_sync: Gauge,
    ha_overloaded: Gauge,
    ha_load: Family<ResourceLabel, Gauge<f64, AtomicU64>>,
    /// The HA event totals last seen, by event.
    ha_seen: HashMap<&'static str, u64>,
    /// (when, sessions set up so far), oldest first, for the rate.
    setups: VecDeque<(Instant, u64)>,
    /// Per tunnel: the control counters last seen (sent, retransmitted).
    tunnels_seen: HashMap<u64, (u64, u64)>,
    /// The fast-path totals last seen.
    fastpath_seen: Counters,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("sessions", &self.sessions.get())
            .field("tunnels", &self.tunnels.get())
            .field("sessions_set_up", &self.sessions_set_up.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `l2tp_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("l2tp");
        let sessions = Gauge::default();
        let tunnels = Gauge::default();
        let sessions_set_up = Counter::default();
        let setup_rate = Gauge::<f64, AtomicU64>::default();
        let setup_failures = Family::<ReasonLabel, Counter>::default();
        let control_sent = Counter::default();
        let control_retransmitted = Counter::default();
        let fastpath_packets = Family::<PathLabel, Counter>::default();
        let fastpath_drops = Family::<ReasonLabel, Counter>::default();
        let fastpath_punts = Family::<KindLabel, Counter>::default();
        let offload_lag = Family::<QuantileLabel, Gauge>::default();
        let offloaded_sessions = Gauge::default();
        let ha_events = Family::<EventLabel, Counter>::default();
        let ha_peers_connected = Gauge::default();
        let ha_in_sync = Gauge::default();
        let ha_overloaded = Gauge::default();
        let ha_load = Family::<ResourceLabel, Gauge<f64, AtomicU64>>::default();
        registry.register("sessions", "Sessions held", sessions.clone());
        registry.register("tunnels", "Tunnels held", tunnels.clone());
        registry.register(
            "sessions_set_up",
            "Sessions that came up (PPP up on an LNS, call connected on a LAC)",
            sessions_set_up.clone(),
        );
        registry.register(
            "session_setup_rate",
            "Sessions set up per second over the last 10 s",
            setup_rate.clone(),
        );
        registry.register(
            "session_setup_failures",
            "Sessions that ended before coming up, by reason",
            setup_failures.clone(),
        );
        registry.register(
            "control_messages_sent",
            "L2TP control messages sent, first transmissions (ZLBs not included)",
            control_sent.clone(),
        );
        registry.register(
            "control_messages_retransmitted",
            "L2TP control messages retransmitted",
            control_retransmitted.clone(),
        );
        registry.register(
            "fastpath_packets",
            "Packets the fast path forwarded, by path",
            fastpath_packets.clone(),
        );
        registry.register(
            "fastpath_drops",
            "Packets the fast path dropped, by reason",
            fastpath_drops.clone(),
        );
        registry.register(
            "fastpath_punts",
            "Packets the fast path handed to the control plane, by kind",
            fastpath_punts.clone(),
        );
        registry.register(
            "ha_offload_lag_microseconds",
            "HA state offload lag, a session's change to the peer's acknowledgement, by quantile",
            offload_lag.clone(),
        );
        registry.register(
            "ha_offloaded_sessions",
            "HA: sessions the peer LNSs offloaded here",
            offloaded_sessions.clone(),
        );
        registry.register(
            "ha_events",
            "HA events: recoveries, adoptions, fencing, switchovers asked and answered, overloads",
            ha_events.clone(),
        );
        registry.register(
            "ha_peers_connected",
            "HA: peer LNSs whose connection is up",
            ha_peers_connected.clone(),
        );
        registry.register(
            "ha_in_sync",
            "HA: 1 when every peer LNS holds all our sessions",
            ha_in_sync.clone(),
        );
        registry.register(
            "ha_overloaded",
            "HA: 1 while the load monitor says overloaded",
            ha_overloaded.clone(),
        );
        registry.register(
            "ha_load_percent",
            "HA: the load monitor's last sample, percent of the machine",
            ha_load.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            sessions,
            tunnels,
            sessions_set_up,
            setup_rate,
            setup_failures,
            control_sent,
            control_retransmitted,
            fastpath_packets,
            fastpath_drops,
            fastpath_punts,
            offload_lag,
            offloaded_sessions,
            ha_events,
            ha_peers_connected,
            ha_in_sync,
            ha_overloaded,
            ha_load,
            ha_seen: HashMap::new(),
            setups: VecDeque::new(),
            tunnels_seen: HashMap::new(),
            fastpath_seen: Counters::default(),
        }
    }

    /// Sessions and tunnels held now.
    pub fn set_counts(&self, sessions: usize, tunnels: usize) {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        self.tunnels.set(i64::try_from(tunnels).unwrap_or(i64::MAX));
    }

    /// A session came up.
    pub fn session_set_up(&self) {
        self.sessions_set_up.inc();
    }

    /// A session ended before it came up, for `reason` (a short snake_case
    /// name: `auth_rejected`, `no_address`, `lcp_timeout`, ...).
    pub fn session_setup_failed(&self, reason: &'static str) {
        self.setup_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Sessions set up so far.
    pub fn sessions_set_up(&self) -> u64 {
        self.sessions_set_up.get()
    }

    /// Updates the setup rate gauge; call it now and then (every control
    /// loop slice is fine: it keeps one sample per call within the window).
    pub fn tick(&mut self, now: Instant) {
        let total = self.sessions_set_up.get();
        self.setups.push_back((now, total));
        while self.setups.len() > 2
            && self
                .setups
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= SETUP_RATE_WINDOW)
        {
            self.setups.pop_front();
        }
        // Bound the samples whatever the call rate: keep one per 100 ms.
        if self.setups.len() > 200 {
            self.setups.remove(self.setups.len() / 2);
        }
        let rate = match self.setups.front() {
            Some((t, n)) if now > *t => {
                total.saturating_sub(*n) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        };
        self.setup_rate.set(rate);
    }

    /// The setup rate the gauge shows.
    pub fn setup_rate(&self) -> f64 {
        self.setup_rate.get()
    }

    /// The control counters of every tunnel held now: (tunnel id, messages
    /// sent, retransmitted). What grew since the last call goes into the
    /// counters; tunnels no longer listed are forgotten.
    pub fn observe_tunnels(&mut self, tunnels: impl IntoIterator<Item = (u64, u64, u64)>) {
        let mut seen = HashMap::with_capacity(self.tunnels_seen.len());
        for (id, sent, retransmitted) in tunnels {
            let (s0, r0) = self.tunnels_seen.get(&id).copied().unwrap_or((0, 0));
            self.control_sent.inc_by(sent.saturating_sub(s0));
            self.control_retransmitted
                .inc_by(retransmitted.saturating_sub(r0));
            seen.insert(id, (sent.max(s0), retransmitted.max(r0)));
        }
        self.tunnels_seen = seen;
    }

    /// The fast path's counters (summed over the workers): what grew since
    /// the last call goes into the counters.
    pub fn observe_fastpath(&mut self, totals: &Counters) {
        for path in PathKind::ALL {
            let i = *path as usize;
            let grew = delta(&totals.forwarded, &self.fastpath_seen.forwarded, i);
            if grew > 0 {
                self.fastpath_packets
                    .get_or_create(&PathLabel { path: path.name() })
                    .inc_by(grew);
            }
        }
        for reason in DropReason::ALL {
            let i = *reason as usize;
            let grew = delta(&totals.dropped, &self.fastpath_seen.dropped, i);
            if grew > 0 {
                self.fastpath_drops
                    .get_or_create(&ReasonLabel {
                        reason: reason.name(),
                    })
                    .inc_by(grew);
            }
        }
        for kind in PuntKind::ALL {
            let i = *kind as usize;
            let grew = delta(&totals.punted, &self.fastpath_seen.punted, i);
            if grew > 0 {
                self.fastpath_punts
                    .get_or_create(&KindLabel { kind: kind.name() })
                    .inc_by(grew);
            }
        }
        self.fastpath_seen = totals.clone();
    }

    /// HA: the offload lag's quantiles (microseconds) and the sessions the
    /// peers offloaded here.
    pub fn observe_offload(&self, lag_p50_us: u64, lag_p99_us: u64, offloaded_sessions: usize) {
        for (quantile, v) in [("0.5", lag_p50_us), ("0.99", lag_p99_us)] {
            self.offload_lag
                .get_or_create(&QuantileLabel { quantile })
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        self.offloaded_sessions
            .set(i64::try_from(offloaded_sessions).unwrap_or(i64::MAX));
    }

    /// HA: event totals since start (`recoveries_accepted`,
    /// `switchovers_granted`, ...: what grew since the last call goes into
    /// `l2tp_ha_events_total`) and the state gauges.
    pub fn observe_ha(&mut self, totals: &[(&'static str, u64)], gauges: &HaGauges) {
        for &(event, total) in totals {
            let seen = self.ha_seen.entry(event).or_insert(0);
            let grew = total.saturating_sub(*seen);
            // Created at zero too, so a scrape lists every event.
            let counter = self.ha_events.get_or_create(&EventLabel { event });
            counter.inc_by(grew);
            *seen = (*seen).max(total);
        }
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.ha_peers_connected.set(count(gauges.peers_connected));
        self.ha_in_sync.set(i64::from(gauges.in_sync));
        self.ha_overloaded.set(i64::from(gauges.overloaded));
        if let Some((cpu, memory)) = gauges.load_percent {
            for (resource, v) in [("cpu", cpu), ("memory", memory)] {
                self.ha_load
                    .get_or_create(&ResourceLabel { resource })
                    .set(v);
            }
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }

    /// A server for these metrics on `address`.
    pub fn serve(&self, address: SocketAddr) -> io::Result<MetricsServer> {
        MetricsServer::start(address, self.registry.clone())
    }
}

/// How much `now[i]` grew over `before[i]` (a worker restarted: all of it).
fn delta(now: &[u64], before: &[u64], i: usize) -> u64 {
    let n = now.get(i).copied().unwrap_or(0);
    let b = before.get(i).copied().unwrap_or(0);
    if n >= b {
        n - b
    } else {
        n
    }
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// The longest request head the server reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long one scrape may take to send its request and read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP server of the metrics: one thread, one connection at a time,
/// `GET /metrics` answered, anything else 404. Stops when dropped.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    fn start(address: SocketAddr, registry: Arc<Registry>) -> io::Result<Self> {
        let listener = TcpListener::bind(address).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("metrics: cannot listen on {address}: {e}"),
            )
        })?;
        let address = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = answer(stream, &registry) {
                                tracing::debug!(error = %e, "metrics scrape failed");
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "metrics accept failed");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it.
fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let request_line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_owned())
        .unwrap_or_default();
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next(), words.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    match (method, path) {
        (Some("GET"), Some("/metrics")) => respond(
            &mut stream,
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &encode(registry),
        ),
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(address: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_scrape_shows_the_metrics_and_other_paths_are_404() {
        let mut m = Metrics::new();
        m.set_counts(3, 1);
        m.session_set_up();
        m.session_set_up();
        m.session_setup_failed("auth_rejected");
        m.observe_tunnels([(1, 10, 2)]);
        m.observe_tunnels([(1, 15, 2), (2, 4, 0)]);
        // Tunnel 1 goes away, a new tunnel 3 counts from zero.
        m.observe_tunnels([(3, 1, 1)]);
        let mut fp = Counters::default();
        fp.forwarded[PathKind::LnsUpstream as usize] = 100;
        fp.dropped[DropReason::UnknownSession as usize] = 7;
        fp.punted[PuntKind::LnsPpp as usize] = 3;
        m.observe_fastpath(&fp);
        fp.forwarded[PathKind::LnsUpstream as usize] = 150;
        m.observe_fastpath(&fp);
        m.observe_offload(200, 900, 12);
        let gauges = HaGauges {
            peers_connected: 1,
            in_sync: true,
            overloaded: false,
            load_percent: Some((42.5, 60.0)),
        };
        m.observe_ha(
            &[("sessions_adopted", 3), ("switchovers_denied", 0)],
            &gauges,
        );
        m.observe_ha(
            &[("sessions_adopted", 5), ("switchovers_denied", 0)],
            &gauges,
        );

        let server = m.serve(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let page = scrape(server.address(), "/metrics");
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        for line in [
            "l2tp_sessions 3",
            "l2tp_tunnels 1",
            "l2tp_sessions_set_up_total 2",
            "l2tp_session_setup_failures_total{reason=\"auth_rejected\"} 1",
            "l2tp_control_messages_sent_total 20",
            "l2tp_control_messages_retransmitted_total 3",
            "l2tp_fastpath_packets_total{path=\"lns_upstream\"} 150",
            "l2tp_fastpath_drops_total{reason=\"unknown_session\"} 7",
            "l2tp_fastpath_punts_total{kind=\"lns_ppp\"} 3",
            "l2tp_ha_offload_lag_microseconds{quantile=\"0.99\"} 900",
            "l2tp_ha_offloaded_sessions 12",
            "l2tp_ha_events_total{event=\"sessions_adopted\"} 5",
            "l2tp_ha_events_total{event=\"switchovers_denied\"} 0",
            "l2tp_ha_peers_connected 1",
            "l2tp_ha_in_sync 1",
            "l2tp_ha_overloaded 0",
            "l2tp_ha_load_percent{resource=\"cpu\"} 42.5",
        ] {
            assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
        }
        let page = scrape(server.address(), "/");
        assert!(page.starts_with("HTTP/1.1 404"), "{page}");
        // A client that sends nothing does not stop the next scrape for
        // longer than the timeout.
        let _silent = TcpStream::connect(server.address()).unwrap();
        let page = scrape(server.address(), "/metrics?x=1");
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    }

    #[test]
    fn the_setup_rate_averages_over_the_window() {
        let mut m = Metrics::new();
        let t0 = Instant::now();
        m.tick(t0);
        for _ in 0..50 {
            m.session_set_up();
        }
        m.tick(t0 + Duration::from_secs(5));
        assert!((m.setup_rate() - 10.0).abs() < 1e-9, "{}", m.setup_rate());
        // 20 s later with nothing new: the window holds no setups.
        m.tick(t0 + Duration::from_secs(25));
        m.tick(t0 + Duration::from_secs(26));
        assert_eq!(m.setup_rate(), 0.0);
    }
}

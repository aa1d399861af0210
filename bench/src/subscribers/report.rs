//! The JSON report of `l2bench run` and its human summary. The schema is
//! documented in bench/README.md ("l2bench run report").

use core::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::stream::{Receiver, SentState, StreamState};

/// Percentiles of a distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram, scaled by `scale` (e.g. µs → ms: 0.001); all zero
    /// when it is empty.
    pub fn of(h: &Histogram<u64>, scale: f64) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5) as f64 * scale,
            p99: h.value_at_quantile(0.99) as f64 * scale,
            max: h.max() as f64 * scale,
        }
    }
}

/// One direction of traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionReport {
    /// Packets sent, all streams.
    pub sent: u64,
    /// Distinct packets received.
    pub received: u64,
    /// `sent - received`, per stream, summed (never negative).
    pub lost: u64,
    /// Packets that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// The longest time one stream went without a packet while its sender
    /// was sending, ms (over all streams): the interruption of a
    /// switchover.
    pub max_gap_ms: f64,
    /// `received` over the traffic phase's duration.
    pub throughput_pps: f64,
    /// One-way latency (sender's and receiver's CLOCK_MONOTONIC), µs.
    pub latency_us: Percentiles,
    /// Packets that were not probes of a known stream.
    pub foreign: u64,
    /// With `--event-at`: per stream, the longest silence that ended at or
    /// after the event (the interruption it caused), ms, over the streams
    /// that were sending: p50, p99, max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_gap_ms: Option<Percentiles>,
    /// With `--event-at`: of the packets sent at or after the event, per
    /// stream sent − received, summed (what the event cost; `lost` minus
    /// this is the loss before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_after_event: Option<u64>,
    /// With `--event-at`: the one-way latency of the packets sent before
    /// the event, µs: the baseline for the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_before_event_us: Option<Percentiles>,
    /// With `--event-at`: the one-way latency of the packets sent at or
    /// after it, µs. Its max over the baseline's is the longest a packet
    /// waited because of the event (a hold), without the senders' pacing
    /// jitter that a gap carries; lost packets are not in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_after_event_us: Option<Percentiles>,
}

impl DirectionReport {
    /// Combine the senders' counts with the receiver's view. `receiver`
    /// streams are closed against the senders' last send times first.
    pub fn new(sent: &[SentState], receiver: &mut Receiver, duration_s: f64) -> Self {
        let mut r = DirectionReport {
            foreign: receiver.foreign,
            ..DirectionReport::default()
        };
        let mut max_gap_ns = 0;
        let mut lost_after_event = 0;
        let mut event_gaps = (receiver.event_ns != 0)
            .then(|| Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok())
            .flatten();
        for (i, stream) in receiver.streams.iter_mut().enumerate() {
            let tx = sent.get(i).copied().unwrap_or_default();
            if tx.sent > 0 {
                stream.close(tx.first_ns, tx.last_ns);
                if let Some(h) = event_gaps.as_mut() {
                    h.saturating_record((stream.event_gap_ns / 1000).max(1));
                    lost_after_event += tx.after_event.saturating_sub(stream.received_after_event);
                }
            }
            r.sent += tx.sent;
            r.received += stream.received;
            r.lost += tx.sent.saturating_sub(stream.received);
            r.reordered += stream.reordered;
            r.duplicated += stream.duplicated;
            max_gap_ns = max_gap_ns.max(stream.max_gap_ns);
        }
        r.max_gap_ms = max_gap_ns as f64 / 1e6;
        r.lost_after_event = event_gaps.as_ref().map(|_| lost_after_event);
        r.event_gap_ms = event_gaps.map(|h| Percentiles::of(&h, 1e-3));
        if duration_s > 0.0 {
            r.throughput_pps = r.received as f64 / duration_s;
        }
        r.latency_us = Percentiles::of(&receiver.latency_us(), 1.0);
        if receiver.event_ns != 0 {
            r.latency_before_event_us =
                Some(Percentiles::of(&receiver.latency_before_event_us, 1.0));
            r.latency_after_event_us = Some(Percentiles::of(&receiver.latency_after_event_us, 1.0));
        }
        r
    }
}

/// One subscriber, as it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriberReport {
    /// 0-based index (user "sub{index}").
    pub index: usize,
    /// Its MAC (PPPoE mode).
    pub mac: Option<String>,
    /// PPPoE session id or L2TP session id (the LNS's), once up.
    pub session_id: Option<u16>,
    /// Assigned address.
    pub address: Option<String>,
    /// Time from the first PADI (or ICRQ) to IPCP up, ms.
    pub setup_ms: Option<f64>,
    /// Our LCP magic number.
    pub local_magic: Option<u32>,
    /// The server's LCP magic number.
    pub peer_magic: Option<u32>,
    /// Times it went down after being up.
    pub flaps: u32,
    /// LCP or IPCP Configure-Requests received while up.
    pub renegotiations: u32,
    /// Up at the end of the run.
    pub up_at_end: bool,
    /// Why it went down (last time), if it did.
    pub down_cause: Option<String>,
    /// Its upstream stream (none without traffic, or if it never sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<StreamReport>,
    /// Its downstream stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<StreamReport>,
}

/// One stream (one subscriber, one direction), as it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// Packets sent.
    pub sent: u64,
    /// `sent` − distinct packets received (never negative).
    pub lost: u64,
    /// The longest silence while its sender was sending, ms.
    pub max_gap_ms: f64,
    /// With `--event-at`: the longest silence that ended after the event, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_gap_ms: Option<f64>,
}

impl StreamReport {
    /// From the sender's and the (closed) receiver's view; none if the
    /// stream sent nothing.
    pub fn of(sent: Option<&SentState>, received: Option<&StreamState>) -> Option<Self> {
        let (sent, received) = (sent?, received?);
        if sent.sent == 0 {
            return None;
        }
        Some(StreamReport {
            sent: sent.sent,
            lost: sent.sent.saturating_sub(received.received),
            max_gap_ms: received.max_gap_ns as f64 / 1e6,
            event_gap_ms: (received.event_ns != 0).then(|| received.event_gap_ns as f64 / 1e6),
        })
    }
}

/// Frames the subscribers' port lost on the bench's side: any loss beyond
/// these is the system under test's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDropsReport {
    /// Frames the kernel would not take for sending.
    pub send: u64,
    /// Frames the kernel dropped before the bench read them.
    pub receive: u64,
}

/// One second of the run, as the progress line saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Subscribers up.
    pub sessions_up: usize,
    /// Test packets received upstream per second over the last second.
    pub upstream_pps: f64,
    /// The same downstream.
    pub downstream_pps: f64,
}

/// The run's event (`--event-at`, `--event-command`): what was run when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    /// The shell command.
    pub command: String,
    /// When it was started, seconds since the traffic started.
    pub at_s: f64,
    /// When it was started, seconds since the Unix epoch (to find it in
    /// the daemons' logs).
    #[serde(default)]
    pub at_unix_s: f64,
    /// Its exit status (`None`: killed by a signal, or still running at
    /// the end and killed then).
    pub exit_status: Option<i32>,
    /// How long it ran, ms.
    pub ran_ms: f64,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// "pppoe" or "l2tp".
    pub mode: String,
    /// Subscribers asked for.
    pub sessions_requested: usize,
    /// Subscribers that came up (at least once).
    pub sessions_up: usize,
    /// Subscribers up when the traffic stopped.
    pub sessions_up_at_end: usize,
    /// Subscribers that went down after being up.
    pub sessions_flapped: usize,
    /// LCP/IPCP Configure-Requests received by subscribers that were up,
    /// all subscribers.
    pub renegotiations: u64,
    /// Sessions up per second of the bring-up phase (first PADI to the
    /// last session up).
    pub setup_rate_per_s: f64,
    /// Per-subscriber setup time, ms.
    pub setup_ms: Percentiles,
    /// Length of the bring-up phase, s.
    pub setup_phase_s: f64,
    /// Length of the traffic phase, s.
    pub duration_s: f64,
    /// Offered rate per direction, packets per second over all
    /// subscribers.
    pub rate_pps: u64,
    /// UDP payload bytes per packet.
    pub payload_bytes: usize,
    /// Time between two packets of one stream, ms (streams / rate): a
    /// gap measured on a stream is an interruption plus up to this.
    #[serde(default)]
    pub stream_interval_ms: f64,
    /// The event run during the traffic, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventReport>,
    /// Subscribers → traffic address.
    pub upstream: DirectionReport,
    /// Traffic address → subscribers.
    pub downstream: DirectionReport,
    /// The subscribers' port's own losses.
    #[serde(default)]
    pub port_drops: PortDropsReport,
    /// Every subscriber.
    pub subscribers: Vec<SubscriberReport>,
    /// Once a second from the start: sessions up and the rates received
    /// (where an interruption shows in time).
    #[serde(default)]
    pub timeline: Vec<TimelinePoint>,
}

impl Report {
    /// Whether every requested session came up.
    pub fn all_up(&self) -> bool {
        self.sessions_up == self.sessions_requested
    }

    /// Packets lost, both directions.
    pub fn lost(&self) -> u64 {
        self.upstream.lost + self.downstream.lost
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sessions: {}/{} up ({} at the end), {} flapped, {} renegotiations",
            self.sessions_up,
            self.sessions_requested,
            self.sessions_up_at_end,
            self.sessions_flapped,
            self.renegotiations
        )?;
        writeln!(
            f,
            "setup: {:.1} sessions/s over {:.2} s; per session p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.setup_rate_per_s,
            self.setup_phase_s,
            self.setup_ms.p50,
            self.setup_ms.p99,
            self.setup_ms.max
        )?;
        writeln!(
            f,
            "traffic: {} pps per direction offered, {} B payload, {:.1} s",
            self.rate_pps, self.payload_bytes, self.duration_s
        )?;
        if self.port_drops != PortDropsReport::default() {
            writeln!(
                f,
                "bench's own losses on the subscribers' port: {} not sent, {} dropped on receipt",
                self.port_drops.send, self.port_drops.receive
            )?;
        }
        for (name, d) in [
            ("upstream", &self.upstream),
            ("downstream", &self.downstream),
        ] {
            writeln!(
                f,
                "{name:>10}: sent {} received {} lost {} reordered {} duplicated {}; \
                 max gap {:.1} ms; {:.0} pps; latency p50 {:.0} µs p99 {:.0} µs max {:.0} µs",
                d.sent,
                d.received,
                d.lost,
                d.reordered,
                d.duplicated,
                d.max_gap_ms,
                d.throughput_pps,
                d.latency_us.p50,
                d.latency_us.p99,
                d.latency_us.max
            )?;
        }
        if let Some(e) = &self.event {
            let status = e
                .exit_status
                .map_or_else(|| "no exit status".to_string(), |c| format!("exit {c}"));
            writeln!(
                f,
                "event: `{}` at {:.2} s of traffic ({status}, {:.0} ms)",
                e.command, e.at_s, e.ran_ms
            )?;
            for (name, d) in [
                ("upstream", &self.upstream),
                ("downstream", &self.downstream),
            ] {
                if let Some(g) = d.event_gap_ms {
                    writeln!(
                        f,
                        "{name:>10}: lost after the event {}; gap after it per stream p50 {:.1} ms \
                         p99 {:.1} ms max {:.1} ms (packets {:.1} ms apart in a stream)",
                        d.lost_after_event.unwrap_or(0),
                        g.p50,
                        g.p99,
                        g.max,
                        self.stream_interval_ms
                    )?;
                }
                if let (Some(before), Some(after)) =
                    (d.latency_before_event_us, d.latency_after_event_us)
                {
                    writeln!(
                        f,
                        "{:>10}  latency of the packets sent before the event p99 {:.0} µs max \
                         {:.0} µs, at or after it p99 {:.0} µs max {:.0} µs",
                        "", before.p99, before.max, after.p99, after.max
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::stream::{Probe, PROBE_LEN};

    #[test]
    fn stream_report_is_one_subscriber_one_direction() {
        let mut rx = Receiver::new(1).unwrap();
        let mut buf = [0u8; PROBE_LEN];
        for (seq, at) in [(0, 1_000_000), (2, 4_000_000)] {
            if at > 2_000_000 {
                rx.set_event(2_000_000);
            }
            Probe {
                subscriber: 0,
                sequence: seq,
                sent_ns: at - 100_000,
            }
            .emit(&mut buf);
            rx.receive(&buf, at);
        }
        let tx = SentState {
            sent: 3,
            first_ns: 900_000,
            last_ns: 3_900_000,
            after_event: 1,
        };
        rx.streams[0].close(tx.first_ns, tx.last_ns);
        let r = StreamReport::of(Some(&tx), rx.streams.first()).unwrap();
        assert_eq!(r.sent, 3);
        assert_eq!(r.lost, 1);
        assert_eq!(r.max_gap_ms, 3.0);
        assert_eq!(r.event_gap_ms, Some(3.0));
        // A stream that never sent has nothing to say.
        assert_eq!(
            StreamReport::of(Some(&SentState::default()), rx.streams.first()),
            None
        );
        assert_eq!(StreamReport::of(None, rx.streams.first()), None);
    }

    #[test]
    fn direction_report_sums_streams() {
        let mut rx = Receiver::new(2).unwrap();
        let mut buf = [0u8; PROBE_LEN];
        // Stream 0: 0, 2, 1 (reordered), 2 again (duplicate); 4 sent.
        // Stream 1: 0 only; 3 sent, the last 30 ms after it.
        for (sub, seq, at) in [(0, 0, 1_000_000), (0, 2, 2_000_000), (0, 1, 3_000_000)]
            .into_iter()
            .chain([(0, 2, 4_000_000), (1, 0, 1_000_000)])
        {
            Probe {
                subscriber: sub,
                sequence: seq,
                sent_ns: at - 100_000,
            }
            .emit(&mut buf);
            rx.receive(&buf, at);
        }
        let sent = [
            SentState {
                sent: 4,
                first_ns: 900_000,
                last_ns: 3_900_000,
                after_event: 0,
            },
            SentState {
                sent: 3,
                first_ns: 900_000,
                last_ns: 31_000_000,
                after_event: 0,
            },
        ];
        let d = DirectionReport::new(&sent, &mut rx, 2.0);
        assert_eq!((d.sent, d.received, d.lost), (7, 4, 3));
        assert_eq!((d.reordered, d.duplicated), (1, 1));
        assert_eq!(d.max_gap_ms, 30.0);
        assert_eq!(d.throughput_pps, 2.0);
        assert_eq!(d.latency_us.p50, 100.0);
    }

    #[test]
    fn report_json_round_trip_and_shape() {
        let report = Report {
            mode: "pppoe".into(),
            sessions_requested: 2,
            sessions_up: 2,
            sessions_up_at_end: 2,
            setup_rate_per_s: 40.0,
            setup_ms: Percentiles {
                p50: 20.0,
                p99: 30.0,
                max: 31.0,
            },
            upstream: DirectionReport {
                sent: 10,
                received: 9,
                lost: 1,
                max_gap_ms: 12.5,
                ..DirectionReport::default()
            },
            subscribers: vec![SubscriberReport {
                index: 1,
                address: Some("100.64.0.3".into()),
                local_magic: Some(0xdead_beef),
                ..SubscriberReport::default()
            }],
            timeline: vec![TimelinePoint {
                t_s: 1.0,
                sessions_up: 2,
                upstream_pps: 10.0,
                downstream_pps: 9.0,
            }],
            ..Report::default()
        };
        let json = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        // The keys scripts and the HA tests read.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "sessions_requested",
            "sessions_up",
            "sessions_flapped",
            "renegotiations",
            "setup_rate_per_s",
        ] {
            assert!(v[key].is_number(), "{key}");
        }
        for key in ["p50", "p99", "max"] {
            assert!(v["setup_ms"][key].is_number(), "setup_ms.{key}");
        }
        for dir in ["upstream", "downstream"] {
            for key in [
                "sent",
                "received",
                "lost",
                "reordered",
                "duplicated",
                "max_gap_ms",
                "throughput_pps",
            ] {
                assert!(v[dir][key].is_number(), "{dir}.{key}");
            }
            for key in ["p50", "p99", "max"] {
                assert!(
                    v[dir]["latency_us"][key].is_number(),
                    "{dir}.latency_us.{key}"
                );
            }
        }
        assert_eq!(v["upstream"]["lost"], 1);
        assert_eq!(v["subscribers"][0]["local_magic"], 0xdead_beef_u32);
        assert!(report.to_string().contains("2/2 up"));
    }
}

//! The traffic streams: the probe payload every test packet carries, and
//! what a receiver makes of the packets of one stream.
//!
//! There is one stream per subscriber and direction. Each packet's UDP
//! payload starts with a [`Probe`]: a magic number, the subscriber, a
//! sequence number counted from 0 and the send time (CLOCK_MONOTONIC in
//! nanoseconds, which every network namespace of one host shares, so the
//! receiver in another namespace can take the one-way latency).
//!
//! A receiver keeps one [`StreamState`] per subscriber in a `Vec` and one
//! latency histogram per direction: nothing is allocated per packet.

use hdrhistogram::Histogram;

/// The first four bytes of every probe: "L2BN".
pub const MAGIC: u32 = 0x4c32_424e;

/// Bytes of a probe; the payload may be longer (padding).
pub const PROBE_LEN: usize = 24;

/// Sequence numbers this far below the highest seen are remembered, so a
/// second copy is a duplicate and a late one a reordering. Older ones count
/// as reordered (a duplicate that late cannot be told apart).
const WINDOW: u64 = 1024;
const WINDOW_WORDS: usize = (WINDOW / 64) as usize;

/// The head of a test packet's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The subscriber whose stream this is.
    pub subscriber: u32,
    /// Counted from 0 per stream and direction.
    pub sequence: u64,
    /// CLOCK_MONOTONIC at sending, nanoseconds.
    pub sent_ns: u64,
}

impl Probe {
    /// Write the probe into the start of `buf` (at least [`PROBE_LEN`]
    /// bytes); returns false if it is too short.
    pub fn emit(&self, buf: &mut [u8]) -> bool {
        let Some(buf) = buf.get_mut(..PROBE_LEN) else {
            return false;
        };
        buf[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        buf[4..8].copy_from_slice(&self.subscriber.to_be_bytes());
        buf[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        buf[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        true
    }

    /// Read a probe from the start of a payload; `None` if it is not one.
    pub fn parse(payload: &[u8]) -> Option<Probe> {
        let b = payload.get(..PROBE_LEN)?;
        let word = |r: core::ops::Range<usize>| -> u64 {
            b[r].iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x))
        };
        if word(0..4) != u64::from(MAGIC) {
            return None;
        }
        Some(Probe {
            subscriber: u32::try_from(word(4..8)).ok()?,
            sequence: word(8..16),
            sent_ns: word(16..24),
        })
    }
}

/// What a receiver knows about one stream.
#[derive(Debug, Clone)]
pub struct StreamState {
    /// Distinct packets received (duplicates not counted).
    pub received: u64,
    /// Packets that came after one with a higher sequence number.
    pub reordered: u64,
    /// Second (or later) copies of a packet.
    pub duplicated: u64,
    /// Longest time between two packets received in a row, ns.
    pub max_gap_ns: u64,
    /// When the last packet arrived (receiver's clock, ns); 0 before any.
    pub last_rx_ns: u64,
    /// When the run's event happened (an LNS killed, a switchover asked
    /// for), CLOCK_MONOTONIC ns; 0: none (yet).
    pub event_ns: u64,
    /// Longest time between two packets received in a row where the
    /// silence ended at or after `event_ns` (the interruption the event
    /// caused, and the stream's ordinary gaps after it), ns.
    pub event_gap_ns: u64,
    /// Distinct packets received that were sent at or after `event_ns`.
    pub received_after_event: u64,
    /// The highest sequence number seen plus one (0: none yet).
    next: u64,
    /// Bit `s % WINDOW` set: sequence `s` (within the window below `next`)
    /// was received.
    seen: [u64; WINDOW_WORDS],
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            received: 0,
            reordered: 0,
            duplicated: 0,
            max_gap_ns: 0,
            last_rx_ns: 0,
            event_ns: 0,
            event_gap_ns: 0,
            received_after_event: 0,
            next: 0,
            seen: [0; WINDOW_WORDS],
        }
    }
}

impl StreamState {
    fn bit(sequence: u64) -> (usize, u64) {
        let slot = sequence % WINDOW;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    /// Packet `sequence` arrived at `now_ns`.
    pub fn receive(&mut self, sequence: u64, now_ns: u64) {
        if sequence >= self.next {
            // Forget the slots the window slides past, so they read unseen
            // when their sequence numbers come round.
            let slide = (sequence + 1 - self.next).min(WINDOW);
            for s in self.next..self.next + slide {
                let (w, m) = Self::bit(s);
                self.seen[w] &= !m;
            }
            self.next = sequence + 1;
        } else if self.next - sequence <= WINDOW {
            let (w, m) = Self::bit(sequence);
            if self.seen[w] & m != 0 {
                self.duplicated += 1;
                return;
            }
            self.reordered += 1;
        } else {
            self.reordered += 1;
        }
        let (w, m) = Self::bit(sequence);
        self.seen[w] |= m;
        self.received += 1;
        if self.last_rx_ns != 0 {
            self.gap(now_ns.saturating_sub(self.last_rx_ns), now_ns);
        }
        self.last_rx_ns = now_ns;
    }

    /// A silence of `gap_ns` that ended at `end_ns`.
    fn gap(&mut self, gap_ns: u64, end_ns: u64) {
        self.max_gap_ns = self.max_gap_ns.max(gap_ns);
        if self.event_ns != 0 && end_ns >= self.event_ns {
            self.event_gap_ns = self.event_gap_ns.max(gap_ns);
        }
    }

    /// The gap at the end: the stream's sender went on sending until
    /// `last_sent_ns` but nothing arrived after `last_rx_ns` (or nothing at
    /// all since `first_sent_ns`).
    pub fn close(&mut self, first_sent_ns: u64, last_sent_ns: u64) {
        let since = if self.last_rx_ns == 0 {
            first_sent_ns
        } else {
            self.last_rx_ns
        };
        if last_sent_ns > since {
            self.gap(last_sent_ns - since, last_sent_ns);
        }
    }
}

/// A latency histogram in microseconds: 1 µs to 60 s, 3 significant
/// digits (larger values are clamped to 60 s).
pub fn latency_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
}

/// One direction's receiver: per-stream state plus the latency histograms.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Indexed by subscriber.
    pub streams: Vec<StreamState>,
    /// One-way latency, µs, of the packets sent before the event (all of
    /// them while there is none): the baseline. [`Receiver::latency_us`]
    /// is all of them.
    pub latency_before_event_us: Histogram<u64>,
    /// The same, of the packets sent at or after the event. A packet the
    /// event held (a LAC's ring during a move) shows here as the hold's
    /// length over the baseline, free of the senders' pacing jitter, which
    /// a stream's gap carries.
    pub latency_after_event_us: Histogram<u64>,
    /// Packets whose payload was not a probe of a known subscriber.
    pub foreign: u64,
    /// When the run's event happened (0: none yet); see
    /// [`StreamState::event_gap_ns`].
    pub event_ns: u64,
}

impl Receiver {
    /// A receiver for `subscribers` streams.
    pub fn new(subscribers: usize) -> Result<Self, hdrhistogram::CreationError> {
        Ok(Receiver {
            streams: vec![StreamState::default(); subscribers],
            latency_before_event_us: latency_histogram()?,
            latency_after_event_us: latency_histogram()?,
            foreign: 0,
            event_ns: 0,
        })
    }

    /// The event happened at `event_ns` (CLOCK_MONOTONIC): from now on
    /// every stream also measures its gaps that end after it. Only the
    /// first call counts.
    pub fn set_event(&mut self, event_ns: u64) {
        if self.event_ns != 0 || event_ns == 0 {
            return;
        }
        self.event_ns = event_ns;
        for stream in &mut self.streams {
            stream.event_ns = event_ns;
        }
    }

    /// A payload arrived at `now_ns` (CLOCK_MONOTONIC).
    pub fn receive(&mut self, payload: &[u8], now_ns: u64) {
        let Some(probe) = Probe::parse(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(stream) = usize::try_from(probe.subscriber)
            .ok()
            .and_then(|i| self.streams.get_mut(i))
        else {
            self.foreign += 1;
            return;
        };
        let duplicated = stream.duplicated;
        stream.receive(probe.sequence, now_ns);
        if stream.duplicated == duplicated {
            let us = (now_ns.saturating_sub(probe.sent_ns) / 1000).max(1);
            if self.event_ns != 0 && probe.sent_ns >= self.event_ns {
                stream.received_after_event += 1;
                self.latency_after_event_us.saturating_record(us);
            } else {
                self.latency_before_event_us.saturating_record(us);
            }
        }
    }

    /// One-way latency of every packet, µs: before and after the event
    /// together.
    pub fn latency_us(&self) -> Histogram<u64> {
        let mut all = self.latency_before_event_us.clone();
        // Both have the bounds of latency_histogram: adding cannot fail.
        let _ = all.add(&self.latency_after_event_us);
        all
    }

    /// Distinct packets received over all streams.
    pub fn received(&self) -> u64 {
        self.streams.iter().map(|s| s.received).sum()
    }
}

/// One direction's sender bookkeeping, per stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentState {
    /// Packets sent (the next sequence number).
    pub sent: u64,
    /// CLOCK_MONOTONIC of the first and last send, ns (0: none).
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
    /// Packets sent at or after the run's event (see
    /// [`StreamState::received_after_event`]).
    pub after_event: u64,
}

impl SentState {
    /// Account one packet sent at `now_ns`, after the event if `event_ns`
    /// (0: none yet) is not later; returns its sequence number.
    pub fn next_after(&mut self, now_ns: u64, event_ns: u64) -> u64 {
        if event_ns != 0 && now_ns >= event_ns {
            self.after_event += 1;
        }
        self.next(now_ns)
    }

    /// Account one packet sent at `now_ns`; returns its sequence number.
    pub fn next(&mut self, now_ns: u64) -> u64 {
        let sequence = self.sent;
        self.sent += 1;
        if self.first_ns == 0 {
            self.first_ns = now_ns;
        }
        self.last_ns = now_ns;
        sequence
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the probes carry.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(sequence: &[u64]) -> StreamState {
        let mut s = StreamState::default();
        for (i, &q) in sequence.iter().enumerate() {
            s.receive(q, 1_000 + 10 * i as u64);
        }
        s
    }

    #[test]
    fn probe_round_trip() {
        let p = Probe {
            subscriber: 4095,
            sequence: 1 << 40,
            sent_ns: 123_456_789,
        };
        let mut buf = [0u8; 40];
        assert!(p.emit(&mut buf));
        assert_eq!(Probe::parse(&buf), Some(p));
        assert_eq!(&buf[..4], b"L2BN");
        assert!(!p.emit(&mut buf[..PROBE_LEN - 1]));
        assert_eq!(Probe::parse(&buf[..PROBE_LEN - 1]), None);
        buf[0] = 0;
        assert_eq!(Probe::parse(&buf), None);
    }

    #[test]
    fn in_order_stream_has_nothing_to_report() {
        let s = stream(&[0, 1, 2, 3, 4]);
        assert_eq!((s.received, s.reordered, s.duplicated), (5, 0, 0));
        assert_eq!(s.max_gap_ns, 10);
    }

    #[test]
    fn loss_is_sent_minus_received() {
        let s = stream(&[0, 1, 4, 5]);
        assert_eq!((s.received, s.reordered, s.duplicated), (4, 0, 0));
        let sent = 6u64;
        assert_eq!(sent - s.received, 2);
    }

    #[test]
    fn late_packet_is_reordered_not_lost() {
        let s = stream(&[0, 2, 1, 3]);
        assert_eq!((s.received, s.reordered, s.duplicated), (4, 1, 0));
    }

    #[test]
    fn second_copy_is_duplicated_in_order_or_not() {
        let s = stream(&[0, 1, 1, 2, 0, 2]);
        assert_eq!((s.received, s.reordered, s.duplicated), (3, 0, 3));
    }

    #[test]
    fn window_wraps_without_false_duplicates() {
        // Every sequence number once, jumping over whole windows: slots
        // reused by later numbers must read as unseen.
        let seq: Vec<u64> = (0..5 * WINDOW).step_by(3).collect();
        let s = stream(&seq);
        assert_eq!(s.received, seq.len() as u64);
        assert_eq!((s.reordered, s.duplicated), (0, 0));
        // A big jump, then a number just below it, then very old ones.
        let mut s = stream(&[0, 10 * WINDOW, 10 * WINDOW - 1, 5]);
        assert_eq!((s.received, s.reordered, s.duplicated), (4, 2, 0));
        s.receive(10 * WINDOW - 1, 2_000);
        assert_eq!(s.duplicated, 1);
    }

    #[test]
    fn gap_is_the_longest_silence() {
        let mut s = StreamState::default();
        for (q, t) in [(0, 100), (1, 110), (2, 5_110), (3, 5_120)] {
            s.receive(q, t);
        }
        assert_eq!(s.max_gap_ns, 5_000);
        // The sender went on for 20 s after the last arrival.
        s.close(90, 20_005_120);
        assert_eq!(s.max_gap_ns, 20_000_000);
        // Nothing ever arrived: the whole sending time is the gap.
        let mut silent = StreamState::default();
        silent.close(1_000, 9_000);
        assert_eq!(silent.max_gap_ns, 8_000);
    }

    #[test]
    fn event_gap_is_the_longest_silence_ending_after_the_event() {
        let mut r = Receiver::new(1).unwrap();
        let s = &mut r.streams[0];
        // 5 µs of silence before the event: not the event's.
        for (q, t) in [(0, 100), (1, 5_100), (2, 5_200)] {
            s.receive(q, t);
        }
        r.set_event(5_300);
        // A later call does not move the event.
        r.set_event(9_999_999);
        let s = &mut r.streams[0];
        assert_eq!(s.event_ns, 5_300);
        // The silence that spans the event ends after it and counts whole.
        s.receive(3, 7_200);
        s.receive(4, 7_300);
        assert_eq!((s.max_gap_ns, s.event_gap_ns), (5_000, 2_000));
        // The sender went on after the last arrival: that counts too.
        s.close(100, 10_300);
        assert_eq!(s.event_gap_ns, 3_000);
        // Without an event nothing is measured.
        let mut quiet = StreamState::default();
        quiet.receive(0, 10);
        quiet.receive(1, 1_000);
        assert_eq!((quiet.max_gap_ns, quiet.event_gap_ns), (990, 0));
    }

    #[test]
    fn packets_sent_after_the_event_are_counted_both_ends() {
        let mut tx = SentState::default();
        let mut rx = Receiver::new(1).unwrap();
        rx.set_event(2_000);
        let mut buf = [0u8; PROBE_LEN];
        for (sent_ns, event_ns) in [(1_000, 0), (1_500, 0), (2_000, 2_000), (2_500, 2_000)] {
            let sequence = tx.next_after(sent_ns, event_ns);
            Probe {
                subscriber: 0,
                sequence,
                sent_ns,
            }
            .emit(&mut buf);
            // The last one is lost; the one before arrives twice.
            if sent_ns < 2_500 {
                rx.receive(&buf, sent_ns + 100);
            }
            if sent_ns == 2_000 {
                rx.receive(&buf, sent_ns + 200);
            }
        }
        assert_eq!((tx.sent, tx.after_event), (4, 2));
        assert_eq!(rx.streams[0].received_after_event, 1);
    }

    #[test]
    fn latency_is_split_at_the_event_by_send_time() {
        let mut r = Receiver::new(1).unwrap();
        let mut buf = [0u8; PROBE_LEN];
        // (sent, received) in µs: two before the event at 10 ms, one sent
        // before it and received after, two after, one of them held 8 ms.
        let packets = [
            (0, 100),
            (5_000, 5_100),
            (9_950, 10_050),
            (12_000, 12_100),
            (14_000, 22_000),
        ];
        for (seq, &(sent, received)) in packets.iter().enumerate() {
            if received >= 10_000 {
                r.set_event(10_000_000);
            }
            Probe {
                subscriber: 0,
                sequence: seq as u64,
                sent_ns: sent * 1000,
            }
            .emit(&mut buf);
            r.receive(&buf, received * 1000);
        }
        assert_eq!(r.latency_us().len(), 5);
        assert_eq!(r.latency_before_event_us.len(), 3);
        assert_eq!(r.latency_before_event_us.max(), 100);
        assert_eq!(r.latency_after_event_us.len(), 2);
        // Within the histogram's three significant digits.
        let held = r.latency_after_event_us.max();
        assert!(r.latency_after_event_us.equivalent(held, 8_000), "{held}");
    }

    #[test]
    fn receiver_counts_latency_and_foreign_packets() {
        let mut r = Receiver::new(2).unwrap();
        let mut buf = [0u8; PROBE_LEN];
        for (sub, seq) in [(0u32, 0u64), (1, 0), (0, 1), (0, 1)] {
            Probe {
                subscriber: sub,
                sequence: seq,
                sent_ns: 1_000_000,
            }
            .emit(&mut buf);
            r.receive(&buf, 1_250_000);
        }
        r.receive(b"not a probe at all, really", 0);
        Probe {
            subscriber: 7,
            sequence: 0,
            sent_ns: 0,
        }
        .emit(&mut buf);
        r.receive(&buf, 0);
        assert_eq!(r.received(), 3);
        assert_eq!(r.streams[0].duplicated, 1);
        assert_eq!(r.foreign, 2);
        assert_eq!(r.latency_us().len(), 3);
        assert_eq!(r.latency_us().value_at_quantile(0.5), 250);
    }
}

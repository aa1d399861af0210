//! Per-packet cost of a whole worker (criterion): LNS upstream, LNS
//! downstream and the LAC relay (half PPPoE → L2TP, half L2TP → PPPoE),
//! each over `MemoryPort`s, in bursts of 32 and 64, with 1 and with
//! 100,000 sessions in the tables; with 100,000 also without the worker's
//! burst prefetch (`-noprefetch`), to see what it saves in the same run.
//! The usual input cycles through 4,096 of the sessions (about 1 MB of
//! sessions and map slots: the second-level cache and L3 hold them); the
//! `-allsessions` variants cycle through one frame for every one of the
//! 100,000 sessions, so that every table line the path reads (some 18 MB,
//! plus 10 MB of frames) is as likely to be out of the cache as on a
//! busy LNS whose tables outgrow L3: there the prefetch is meant to pay.
//!
//! One iteration is what a worker does for one burst on real hardware:
//! one `Worker::poll` runs it to completion (classify, look up, rewrite in
//! place, transmit, flush, balance the ports' free lists, and in one poll
//! of 64 the latency sample's clock reads), and only that is timed. The
//! port's side, which a NIC does on real hardware, is not: copying the
//! burst into port frames before (as the NIC's DMA would write them), and
//! giving the transmitted frames back to the pool after. The instruction
//! gate draws the same line. The benchmark's own two clock reads a burst
//! (some 50 ns on this VM, under 2 ns a packet at a burst of 32) are in
//! the figures. With
//! 100,000 sessions, consecutive packets belong to sessions spread across
//! the table, so lookups miss the cache as they would in production.
//!
//! `Throughput::Elements` is the burst, so criterion prints packets per
//! second; time per packet = iteration time / burst. The target is at most
//! 50 ns per packet per core (issue 4).
//!
//! Run: `cargo bench -p bench --bench fastpath`. Nothing here asserts a time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bench::Path;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SESSION_COUNTS: [usize; 2] = [1, 100_000];
/// Distinct input frames cycled through (each for its own session when
/// there are enough sessions).
const FRAMES: usize = 4096;

fn fastpath(c: &mut Criterion) {
    for path in Path::ALL {
        let mut group = c.benchmark_group(format!("fastpath/{}", path.name()));
        for sessions in SESSION_COUNTS {
            let frames: Vec<(usize, Vec<u8>)> =
                (0..FRAMES).map(|n| path.frame(n, sessions)).collect();
            // With 100,000 sessions, also without the burst prefetch: what
            // it saves, measured in the same run.
            let variants: &[(usize, bool)] = if sessions > 1 {
                &[(32, true), (64, true), (32, false), (64, false)]
            } else {
                &[(32, true), (64, true)]
            };
            // With 100,000 sessions, every session in turn, with and
            // without the prefetch.
            let all: Vec<(usize, Vec<u8>)> = if sessions > 1 {
                (0..sessions).map(|n| path.frame(n, sessions)).collect()
            } else {
                Vec::new()
            };
            let cold: &[(usize, bool)] = if sessions > 1 {
                &[(32, true), (32, false)]
            } else {
                &[]
            };
            let runs = variants
                .iter()
                .map(|&v| (v, false))
                .chain(cold.iter().map(|&v| (v, true)));
            for ((burst, prefetch), all_sessions) in runs {
                let frames = if all_sessions { &all } else { &frames };
                let mut w = path.worker_with_prefetch(sessions, burst, prefetch);
                group.throughput(Throughput::Elements(burst as u64));
                let name = format!(
                    "burst{burst}{}{}",
                    if all_sessions { "-allsessions" } else { "" },
                    if prefetch { "" } else { "-noprefetch" }
                );
                let id = BenchmarkId::new(name, format!("{sessions}sessions"));
                let mut next = 0;
                group.bench_function(id, |b| {
                    b.iter_custom(|bursts| {
                        let mut polling = Duration::ZERO;
                        for _ in 0..bursts {
                            for _ in 0..burst {
                                let (port, frame) = &frames[next];
                                next = (next + 1) % frames.len();
                                w.ports_mut()[*port].push_rx(frame);
                            }
                            let started = Instant::now();
                            black_box(w.poll());
                            polling += started.elapsed();
                            for port in w.ports_mut() {
                                port.drain_tx(|f| {
                                    black_box(f);
                                });
                            }
                        }
                        polling
                    })
                });
                let counters = w.counters();
                // A benchmark that drops is measuring the wrong thing.
                assert_eq!(counters.total_drops(), 0, "{}: {counters:?}", path.name());
                // Counted over the two ports' shared memory.
                assert_eq!(w.ports_mut()[0].frames_in_use(), 0);
            }
        }
        group.finish();
    }
}

criterion_group!(benches, fastpath);
criterion_main!(benches);

//! The workload of the instruction-count gate (`bench/gate.sh`): one path's
//! packets through a whole worker, with only `Worker::poll` inside the
//! function that callgrind counts (`--toggle-collect=*measured_polls*`).
//!
//! Usage: `fastpath_instructions <lns_upstream|lns_downstream|lac_relay>
//! [sessions] [rounds] [noprefetch]` (`noprefetch`: the worker without its
//! burst prefetch, to see what it costs). Prints the number of packets the measured
//! function processed; the script divides callgrind's instruction total
//! by it. Filling the receive ring and draining the transmit ring (the
//! test's side of the memory port, a NIC's on real hardware) happen
//! outside the measured function.

use std::hint::black_box;
use std::process::ExitCode;

use bench::Path;
use dataplane::io::memory::MemoryPort;
use dataplane::worker::Worker;

const BURST: usize = 32;
/// Bursts per round: the receive ring (1024) holds them all.
const POLLS_PER_ROUND: usize = 16;
/// Distinct input frames cycled through.
const FRAMES: usize = 1024;

/// The measured part: `polls` polls of the worker.
#[inline(never)]
fn measured_polls(w: &mut Worker<MemoryPort>, polls: usize) -> usize {
    let mut received = 0;
    for _ in 0..polls {
        received += w.poll();
    }
    received
}

/// One round: fill the receive rings, poll, empty the transmit rings.
/// Returns the packets polled.
fn round(
    w: &mut Worker<MemoryPort>,
    frames: &[(usize, Vec<u8>)],
    next: &mut usize,
    measure: bool,
) -> usize {
    for _ in 0..BURST * POLLS_PER_ROUND {
        let (port, frame) = &frames[*next];
        *next = (*next + 1) % frames.len();
        w.ports_mut()[*port].push_rx(frame);
    }
    // A LAC relay has packets on both ports; one poll takes a burst from
    // each, so it may need fewer polls. Extra polls are idle and cheap,
    // and counted the same in every run.
    let received = if measure {
        measured_polls(w, POLLS_PER_ROUND)
    } else {
        let mut n = 0;
        for _ in 0..POLLS_PER_ROUND {
            n += w.poll();
        }
        n
    };
    for port in w.ports_mut() {
        port.drain_tx(|f| {
            black_box(f);
        });
    }
    received
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1).and_then(|a| Path::from_name(a)) else {
        eprintln!(
            "usage: {} <lns_upstream|lns_downstream|lac_relay> [sessions] [rounds]",
            args.first().map_or("fastpath_instructions", |a| a.as_str())
        );
        return ExitCode::FAILURE;
    };
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(Some(default), |a| a.parse().ok())
            .filter(|&n| n > 0)
    };
    let (Some(sessions), Some(rounds)) = (number(2, 100_000), number(3, 20)) else {
        eprintln!("sessions and rounds are positive integers");
        return ExitCode::FAILURE;
    };
    let frames: Vec<(usize, Vec<u8>)> = (0..FRAMES).map(|n| path.frame(n, sessions)).collect();
    let prefetch = args.get(4).map(String::as_str) != Some("noprefetch");
    let mut w = path.worker_with_prefetch(sessions, BURST, prefetch);
    let mut next = 0;
    // Warm up (first touches, lazily built state) outside the count.
    round(&mut w, &frames, &mut next, false);
    let mut packets = 0;
    for _ in 0..rounds {
        packets += round(&mut w, &frames, &mut next, true);
    }
    let leaked = w.ports_mut().iter().any(|p| p.frames_in_use() != 0);
    let counters = w.counters();
    if counters.total_drops() != 0 || leaked {
        eprintln!(
            "{}: the workload dropped or leaked: {counters:?}",
            path.name()
        );
        return ExitCode::FAILURE;
    }
    println!("{packets}");
    ExitCode::SUCCESS
}

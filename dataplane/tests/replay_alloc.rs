//! A LAC worker recording its upstream for replay allocates nothing after
//! start-up either: its arena wraps many times, tunnels are held with
//! their frames replayed into the rings and flushed, round after round.
//!
//! Its own test binary, because the allocator is global.

#![cfg(test)]

use std::time::Duration;

use dataplane::io::memory::MemoryPort;
use dataplane::testkit as lab;
use dataplane::update::Update;
use dataplane::worker::{Role, Worker, WorkerConfig};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

const SESSIONS: usize = 8;
const ROUNDS: usize = 200;

fn round(w: &mut Worker<MemoryPort>, frames: &[(u8, Vec<u8>)], updates: &[Update]) -> usize {
    let channels = w.channels();
    for (port, f) in frames {
        assert!(w.ports_mut()[usize::from(*port)].push_rx(f));
    }
    // 16 polls: one update point, after the frames went.
    for _ in 0..16 {
        w.poll();
    }
    for u in updates {
        assert!(channels.send(*u).is_ok());
    }
    for _ in 0..16 {
        w.poll();
    }
    let mut out = 0;
    for port in w.ports_mut() {
        out += port.drain_tx(|_| {});
    }
    while channels.poll_event().is_some() {}
    out
}

#[test]
fn recording_and_replaying_allocate_nothing_after_start_up() {
    let config = WorkerConfig {
        replay_window: Duration::from_secs(1),
        // A few rounds' worth: it wraps all the time.
        replay_bytes: 8 << 10,
        ..lab::config(Role::Lac, SESSIONS)
    };
    let mut w = lab::worker_with(config, SESSIONS, lab::separate_ports());
    let frames: Vec<(u8, Vec<u8>)> = (0..4 * SESSIONS)
        .flat_map(|n| {
            [
                (0, lab::lac_upstream(n % SESSIONS, 20 + n)),
                (1, lab::lac_downstream(n % SESSIONS, 40)),
            ]
        })
        .collect();
    let mut updates = vec![Update::HoldTunnel {
        tunnel_id: lab::session_key(0).tunnel_id,
        replay_ns: 1_000_000_000,
    }];
    updates.extend((0..SESSIONS).map(|i| Update::SetHolding {
        key: lab::session_key(i),
        holding: false,
    }));
    updates.push(Update::Barrier(1));
    round(&mut w, &frames, &updates);

    let (out, allocations) = counting_alloc::allocations_in(|| {
        let mut out = 0;
        for _ in 0..ROUNDS {
            out += round(&mut w, &frames, &updates);
        }
        out
    });
    assert_eq!(allocations, 0, "allocations in the hot loop");
    let replayed = w.counters().replayed;
    assert!(replayed > ROUNDS as u64, "{replayed} replayed");
    // Every frame relayed, every replayed one relayed again.
    assert!(out >= ROUNDS * 8 * SESSIONS + ROUNDS, "{out}");
    assert_eq!(w.ports_mut()[0].frames_in_use(), 0, "no frame leaked");
}

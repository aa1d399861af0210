//! The hot loop allocates nothing after start-up: a counting global
//! allocator watches thousands of packets through both data paths (with
//! punts, drops, injects and table updates mixed in) on workers holding
//! 100,000 sessions.
//!
//! Its own test binary, because the allocator is global.

#![cfg(test)]

use dataplane::io::memory::MemoryPort;
use dataplane::punt::InjectTarget;
use dataplane::testkit::{self as lab, Encoding};
use dataplane::update::Update;
use dataplane::wire::{ipv4, ppp};
use dataplane::worker::{Role, Worker};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

const SESSIONS: usize = 100_000;
const ROUNDS: usize = 100;

/// One round: a burst of mixed traffic in, every output drained, punts
/// handed back, an inject and a few updates.
fn round(
    w: &mut Worker<MemoryPort>,
    frames: &[(u8, Vec<u8>)],
    updates: &[Update],
    inject: Option<(InjectTarget, &[u8])>,
) -> usize {
    let channels = w.channels();
    for (port, f) in frames {
        assert!(w.ports_mut()[usize::from(*port)].push_rx(f));
    }
    for u in updates {
        assert!(channels.send(*u).is_ok());
    }
    if let Some((target, bytes)) = inject {
        assert!(channels.inject(target, bytes));
    }
    // 16 polls: one update point.
    for _ in 0..16 {
        w.poll();
    }
    let mut out = 0;
    for port in w.ports_mut() {
        out += port.drain_tx(|_| {});
    }
    while let Some(p) = channels.poll_punt() {
        channels.recycle(p.buffer);
    }
    while channels.poll_event().is_some() {}
    out
}

#[test]
fn the_hot_loop_allocates_nothing_after_start_up() {
    // Start-up, allowed to allocate: tables, ports, pools, input frames.
    let mut lns = lab::worker(Role::Lns, SESSIONS);
    let mut lac = lab::worker(Role::Lac, SESSIONS);
    assert_eq!(lns.tables().session_count(), SESSIONS);
    let spread = |n: usize| (n * 7919) % SESSIONS;
    let lcp = lab::ppp_frame(
        ppp::Protocol::Lcp,
        &[9, 1, 0, 8, 1, 2, 3, 4],
        Encoding::default(),
    );
    let lns_frames: Vec<(u8, Vec<u8>)> = (0..32)
        .flat_map(|n| {
            [
                (0, lab::lns_upstream(spread(n), 64, Encoding::default())),
                (1, lab::lns_downstream(spread(n + 100), 64)),
            ]
        })
        .chain([
            (
                0,
                lab::l2tp_frame(lab::peer(), lab::session_key(3), &lcp, Encoding::default()),
            ),
            (1, lab::lns_downstream(SESSIONS + 5, 64)),
            // Over the MRU with DF clear: fragmented into two.
            (1, {
                let mut f = lab::lns_downstream(spread(200), 1450);
                f[14 + 6] &= !0x40;
                ipv4::Packet::new_unchecked(&mut f[14..]).fill_checksum();
                f
            }),
        ])
        .collect();
    let lac_frames: Vec<(u8, Vec<u8>)> = (0..32)
        .flat_map(|n| {
            [
                (0, lab::lac_upstream(spread(n), 64)),
                (1, lab::lac_downstream(spread(n + 9), 64)),
            ]
        })
        .collect();
    let held = lab::session_key(11);
    let lns_updates = [
        Update::UpsertSession(lab::session(Role::Lns, 42)),
        Update::Barrier(1),
    ];
    let lac_updates = [
        Update::SetHolding {
            key: held,
            holding: true,
        },
        Update::SetHolding {
            key: held,
            holding: false,
        },
        Update::Barrier(2),
    ];
    let reply = &lcp[..];
    let lns_inject = Some((InjectTarget::LnsSession(lab::session_key(3)), reply));
    // Warm-up round: first touches of every path.
    round(&mut lns, &lns_frames, &lns_updates, lns_inject);
    round(&mut lac, &lac_frames, &lac_updates, None);

    let (forwarded, allocations) = counting_alloc::allocations_in(|| {
        let mut forwarded = 0;
        for _ in 0..ROUNDS {
            forwarded += round(&mut lns, &lns_frames, &lns_updates, lns_inject);
            forwarded += round(&mut lac, &lac_frames, &lac_updates, None);
        }
        forwarded
    });
    assert_eq!(allocations, 0, "allocations in the hot loop");
    // 64 LNS packets, 2 fragments, 1 inject and 64 LAC packets a round
    // get out.
    assert_eq!(forwarded, ROUNDS * (64 + 2 + 1 + 64));
    assert!(lns.counters().punts(dataplane::counters::PuntKind::LnsPpp) > ROUNDS as u64);
}

#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test (unit,
# simulation, codec golden/property tests, tshark dissection, and the
# interop tests against xl2tpd and l2tpns in network namespaces, which need root),
# the end-to-end lab run, and the fast path's instruction-count gate.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Namespace tests start real daemons; one test thread per core keeps them from
# starving each other on small machines.
cargo test --workspace --locked -- --test-threads=2
# The whole chain in the lab (DESIGN.md §2.4): l2bench's PPPoE subscribers
# through lacd to both lnsd, traffic both ways, no loss allowed.
bash deploy/e2e/run.sh --debug --subscribers 100 --rate 1000 --duration 3 --expect-zero-loss
# HA in the lab (issue 6): lns1's lnsd killed (-9), then a planned switchover
# of all its sessions, 100 subscribers each. No session may flap or
# renegotiate; the failure loses no upstream packet (the LAC replays what the
# dead LNS may have missed) and its interruption stays bounded (debug builds on
# a shared machine: generous); the planned move loses nothing either way.
bash deploy/e2e/ha.sh --debug --kill-primary --subscribers 100 --rate 1000 --duration 4 --event-at 2 \
    --expect-zero-upstream-loss --max-upstream-gap-ms 1500
bash deploy/e2e/ha.sh --debug --switchover all --subscribers 100 --rate 1000 --duration 4 --event-at 2 \
    --expect-zero-loss
# The fast path's instruction-count gate against bench/baseline/ (callgrind).
bash bench/gate.sh

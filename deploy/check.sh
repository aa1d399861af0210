#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test (unit,
# simulation, codec golden/property tests, tshark dissection, and the
# interop tests against xl2tpd and l2tpns in network namespaces, which need root).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Namespace tests start real daemons; one test thread per core keeps them from
# starving each other on small machines.
cargo test --workspace --locked -- --test-threads=2
# The fast path's instruction-count gate against bench/baseline/ (callgrind).
bash bench/gate.sh

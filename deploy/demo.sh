#!/usr/bin/env bash
# The demo, in one command:
#
#   sudo deploy/demo.sh [lab|interop|l2tpns|ha|all]     (default all)
#
# 1. lab: the end-to-end scenario (deploy/e2e/run.sh) on the namespace lab
#    (deploy/lab.sh): 1000 PPPoE subscribers dial through our LAC (lacd) to
#    our two LNSs (lnsd on lns1 and lns2), authenticate with CHAP, get
#    addresses from the two pools, and exchange numbered UDP both ways with
#    the core network through the AF_XDP fast paths; l2bench prints sessions
#    up, setup rate, loss, reordering, gaps and latency per direction, and
#    keeps its JSON report. E2E_SUBSCRIBERS, E2E_RATE and E2E_DURATION change
#    the load (defaults 1000, 5000 packets/s each way, 10 s).
# 2. interop: our control plane against real peers (deploy/e2e/interop.sh):
#    xl2tpd dials our lnsd; our lacd dials l2tpns; our PPP subscribers come up
#    through our LAC against l2tpns and FreeRADIUS. Each prints the events
#    and a tshark summary of what was on the wire.
# 3. l2tpns: our LAC's fast path against a real LNS (deploy/e2e/l2tpns.sh):
#    l2bench's PPPoE subscribers through lacd to l2tpns and FreeRADIUS, in
#    relay mode then in proxy mode (lacd negotiates LCP and authenticates,
#    l2tpns takes the proxy AVPs), traffic both ways, a tshark verdict.
# 4. ha: failure and planned switchover (deploy/e2e/ha.sh): 1000 subscribers
#    on lns1, lns2 its backup, traffic both ways; lns1's lnsd killed with -9
#    (lacd finds it dead, holds and replays upstream, lns2 adopts every
#    session: none flaps or renegotiates, no upstream packet is lost), then
#    in a fresh lab `l2tpctl ha switchover all` on lns1 (make-before-break,
#    no loss either way).
#
# Needs root and what deploy/setup.sh installs. Everything either part starts
# or creates is removed on exit, also on failure or Ctrl-C. Every part runs
# even if one before it failed; the exit status says whether all passed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PART=${1:-all}

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

case $PART in
lab | interop | l2tpns | ha | all) ;;
*) die "unknown part \"$PART\": lab, interop, l2tpns, ha or all" ;;
esac
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth, AF_XDP, TUN, capture)"
command -v cargo >/dev/null || die "a Rust toolchain (cargo) is required"

# One release build for both parts; they take the binaries from here.
printf '\n==> building lnsd, lacd, l2tpctl and l2bench (release)\n'
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" \
    -p controlplane --bins -p bench --bin l2bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export LNSD="$TARGET/lnsd" LACD="$TARGET/lacd" L2BENCH="$TARGET/l2bench" L2TPCTL="$TARGET/l2tpctl"

failed=()
if [[ $PART == lab || $PART == all ]]; then
    printf '\n######## 1. the lab: subscribers through lacd to lnsd x2, traffic both ways\n'
    "$ROOT/deploy/e2e/run.sh" --subscribers "${E2E_SUBSCRIBERS:-1000}" \
        --rate "${E2E_RATE:-5000}" --duration "${E2E_DURATION:-10}" --no-build || failed+=(lab)
fi
if [[ $PART == interop || $PART == all ]]; then
    printf '\n######## 2. interop: xl2tpd, l2tpns and FreeRADIUS against our daemons\n'
    "$ROOT/deploy/e2e/interop.sh" || failed+=(interop)
fi
if [[ $PART == l2tpns || $PART == all ]]; then
    for mode in relay proxy; do
        printf '\n######## 3. l2tpns: PPPoE subscribers through lacd (%s) to l2tpns, traffic both ways\n' "$mode"
        "$ROOT/deploy/e2e/l2tpns.sh" --mode "$mode" --no-build || failed+=("l2tpns-$mode")
    done
fi

if [[ $PART == ha || $PART == all ]]; then
    printf '\n######## 4a. HA: kill -9 of the LNS holding 1000 subscribers\n'
    "$ROOT/deploy/e2e/ha.sh" --standby --kill-primary --subscribers 1000 --rate 10000 \
        --duration 10 --event-at 4 --expect-zero-upstream-loss --out /tmp/l2lab-ha-kill --no-build || failed+=(ha-kill)
    printf '\n######## 4b. HA: planned switchover of all 1000 subscribers to the peer\n'
    "$ROOT/deploy/e2e/ha.sh" --standby --switchover all --subscribers 1000 --rate 10000 \
        --duration 10 --event-at 4 --expect-zero-loss --out /tmp/l2lab-ha-switchover --no-build || failed+=(ha-switchover)
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    die "failed: ${failed[*]}"
fi
printf '\ndemo: done, every part passed\n'

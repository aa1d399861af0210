#!/usr/bin/env bash
# The end-to-end scenario on the lab (deploy/lab.sh): PPPoE subscribers in
# l2lab-cpe dial through our LAC (lacd) to our two LNSs (lnsd on lns1 and
# lns2), each gets an address from its LNS's pool, and l2bench sends
# sequence-numbered UDP both ways between every subscriber and l2lab-net
# through both fast paths; then it hangs everyone up and reports.
#
#   sudo deploy/e2e/run.sh [--mode pppoe|l2tp] [--subscribers N] [--rate PPS]
#                          [--duration SECONDS] [--out DIR] [--no-build]
#
#   --mode            pppoe (default): the whole chain, cpe -> lacd -> lnsd x2 -> net;
#                     l2tp: the LNS alone, l2bench in l2lab-lac plays the LAC and
#                     calls lns1 with PPP sessions straight over L2TP (no lacd)
#   --subscribers N   subscribers, users sub0..subN-1 (default 1000, at most 4096)
#   --rate PPS        test packets per second in each direction, all subscribers together
#                     (default 5000: moderate, the lab shares its cores with everything else)
#   --duration S      seconds of traffic once every session is up (default 10)
#   --out DIR         where the report, the summary and the logs go (default /tmp/l2lab-e2e)
#   --no-build        use the binaries as they are (default: cargo build --release first)
#   --expect-zero-loss  fail when a single test packet was lost (for CI; the demo
#                     only reports loss, since a loaded machine may drop some)
#   --setup-timeout S how long all the sessions may take to come up (default 180)
#   --debug           the debug build instead of release (quicker to build, as CI
#                     has it already from cargo test; fine at a moderate rate)
#
# Binaries: LNSD, LACD, L2BENCH, L2TPCTL in the environment, else the release
# build of this checkout (CARGO_TARGET_DIR honoured). E2E_FASTPATH=0 runs the
# daemons without their fast path (control plane only: no traffic gets
# through then, so the traffic part is skipped).
#
# It holds /run/l2lab.lock while it runs (the lab has fixed names), and on
# exit, also on failure or Ctrl-C, stops the daemons and takes the lab down.
# The exit status is l2bench's: 0 when every subscriber came up.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LAB="$ROOT/deploy/lab.sh"
LOCK=/run/l2lab.lock
SUBSCRIBERS=1000
RATE=5000
DURATION=10
OUT=/tmp/l2lab-e2e
BUILD=1
MODE=pppoe
SETUP_TIMEOUT=180
PROFILE=release
EXTRA=()
LAB_IS_OURS=0
BOXES=()

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/e2e/common.sh
source "$ROOT/deploy/e2e/common.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
    --mode) MODE=$2; shift 2 ;;
    --subscribers) SUBSCRIBERS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --expect-zero-loss) EXTRA+=(--expect-zero-loss); shift ;;
    --setup-timeout) SETUP_TIMEOUT=$2; shift 2 ;;
    --debug) PROFILE=debug; shift ;;
    -h | --help) sed -n '8,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $SUBSCRIBERS =~ ^[0-9]+$ && $SUBSCRIBERS -ge 1 && $SUBSCRIBERS -le 4096 ]] ||
    die "--subscribers: 1 to 4096 (the lab's users file has sub0..sub4095)"
[[ $MODE == pppoe || $MODE == l2tp ]] || die "--mode: pppoe or l2tp"
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth, AF_XDP)"
e2e_check_out "$OUT" .l2lab-e2e
export PATH="$PATH:/usr/sbin:/sbin"

# --- binaries -------------------------------------------------------------------
e2e_binaries

# --- the lab, ours alone until we exit -----------------------------------------
e2e_take_lab e2e

cleanup() {
    local status=$?
    set +e
    if [[ $LAB_IS_OURS -eq 1 ]]; then
        say "stopping the daemons and taking the lab down"
        # The LAC first, as an operator would: it closes its tunnels to
        # LNSs that are still there to answer.
        local reversed=() i
        for ((i = ${#BOXES[@]} - 1; i >= 0; i--)); do reversed+=("${BOXES[i]}"); done
        [[ ${#reversed[@]} -gt 0 ]] && lab stop "${reversed[@]}"
        # The daemons' logs outlive the lab in the output directory.
        for box in "${BOXES[@]}"; do
            [[ -f /run/l2lab/$box.log ]] && cp "/run/l2lab/$box.log" "$OUT/$box.log"
        done
        lab down
    fi
    echo "e2e: files in $OUT"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
touch "$OUT/.l2lab-e2e"
say "lab up (deploy/lab.sh)"
LAB_IS_OURS=1
# A lab left by someone who did not hold the lock starts over from nothing.
lab down >/dev/null
L2LAB_FASTPATH=${E2E_FASTPATH:-1} lab up

if [[ $MODE == pppoe ]]; then
    BOXES=(lns1 lns2 lac)
    # Where the subscribers are: PPPoE clients on the CPE's port.
    subscribers=(--mode pppoe --netns l2lab-cpe --interface cpe0)
else
    BOXES=(lns1)
    # l2bench is the LAC: in its namespace, from its address, toward lns1.
    subscribers=(--mode l2tp --netns l2lab-lac --bind 10.0.0.1:1701 --lns 10.0.0.11:1701)
fi
say "starting ${BOXES[*]}"
lab start "${BOXES[@]}"

# --- the scenario ---------------------------------------------------------------
traffic=(--traffic-netns l2lab-net --traffic-addr 10.1.0.2 --rate "$RATE" --duration "$DURATION")
if [[ ${E2E_FASTPATH:-1} == 0 ]]; then
    echo "(E2E_FASTPATH=0: sessions only, no traffic)"
    traffic=(--duration 0)
fi
say "l2bench: $SUBSCRIBERS $MODE subscribers (CHAP), $RATE packets/s each way for ${DURATION}s"
bench_status=0
# Bounded: setup + traffic + hang-up, with room to spare.
timeout --kill-after=10s $((SETUP_TIMEOUT + ${DURATION%.*} + 60)) \
    "$L2BENCH" run "${subscribers[@]}" --subscribers "$SUBSCRIBERS" \
    --password lab --auth chap "${traffic[@]}" --report "$OUT/report.json" \
    --setup-timeout "$SETUP_TIMEOUT" ${EXTRA[@]+"${EXTRA[@]}"} \
    2> >(tee "$OUT/l2bench.log" >&2) | tee "$OUT/summary.txt" || bench_status=$?

# What each daemon says it did (its counters), while it still runs.
if [[ -x $L2TPCTL ]]; then
    for box in "${BOXES[@]}"; do
        if lab exec "$box" true 2>/dev/null && [[ -S /run/l2lab/$box.sock ]]; then
            timeout 5 "$L2TPCTL" --socket "/run/l2lab/$box.sock" show stats --json \
                >"$OUT/$box-stats.json" 2>&1 || true
            say "$box: l2tpctl show stats"
            timeout 5 "$L2TPCTL" --socket "/run/l2lab/$box.sock" show stats 2>&1 || true
        fi
    done
fi

say "report: $OUT/report.json"
if [[ $bench_status -ne 0 ]]; then
    echo "e2e: l2bench failed (status $bench_status); the daemons' logs end with:" >&2
    for box in "${BOXES[@]}"; do
        echo "--- $box ---" >&2
        tail -n 15 "/run/l2lab/$box.log" >&2 2>/dev/null || true
    done
    exit "$bench_status"
fi
say "done: end-to-end scenario passed"

#!/usr/bin/env bash
# The HA scenario on the lab (issue 6 §5, "In the lab"): PPPoE subscribers in
# l2lab-cpe dial through lacd to lns1 and lns2, which peer each other
# (deploy/lab.sh with L2LAB_HA=1 and L2LAB_ONLINK=1); l2bench runs traffic
# both ways; a few seconds into the traffic the primary fails (kill -9 of
# lns1's lnsd) or is asked to move its sessions away (l2tpctl ha switchover
# on lns1); the traffic goes on; then the report: sessions flapped,
# renegotiations seen by the subscribers, and per direction the packets lost
# and the longest gap a stream saw after the event.
#
#   sudo deploy/e2e/ha.sh (--kill-primary | --switchover all|new) [--subscribers N]
#                         [--rate PPS] [--duration S] [--event-at S] [--out DIR]
#                         [--expect-zero-upstream-loss] [--max-upstream-gap-ms N]
#                         [--expect-zero-loss] [--max-gap-ms N] [--standby] [--hello-ms N] [--dead-ms N]
#                         [--no-build] [--debug]
#
#   --kill-primary    kill -9 lns1's lnsd: failure switchover (the LAC sees the
#                     Hellos go unanswered, holds the sessions, recovers them on lns2)
#   --switchover KIND `l2tpctl --socket /run/l2lab/lns1.sock ha switchover KIND`:
#                     a planned (make-before-break) switchover; KIND all or new
#   --subscribers N   subscribers (default 1000, at most 4096)
#   --rate PPS        test packets per second each way, all subscribers together
#                     (default 10000: a stream's packets are N/PPS s apart, which
#                     is the resolution of its gap)
#   --duration S      seconds of traffic (default 15)
#   --event-at S      seconds into the traffic for the kill or switchover (default 5)
#   --out DIR         report, summary, status snapshots and logs (default /tmp/l2lab-ha)
#   --expect-zero-upstream-loss   fail if one upstream test packet was lost
#   --max-upstream-gap-ms N       fail if a stream's upstream gap after the event exceeds N
#   --expect-zero-loss            fail if one test packet was lost either way
#   --max-gap-ms N                fail if a stream's gap after the event exceeds N, either way
#   --hello-ms N, --dead-ms N  lacd's Hello interval and dead interval toward the
#                     LNSs (default 100 and 300)
#   --standby         every call on lns1, lns2 only its backup (lacd gives lns2
#                     preference 1); default: calls shared between the two
#   --setup-timeout S how long all the sessions may take to come up (default 240)
#   --max-setting-up N  subscribers between PADI and IPCP up at once (l2bench's;
#                     default 64, as fast as the daemons go: ~4000/s)
#   --realtime-priority N  the daemons' control threads run SCHED_RR at N
#                     ([control] realtime_priority); default 0, ordinary
#                     threads. On the lab's two shared cores it trades the
#                     data path for the control plane (bench/README.md, HA)
#   --no-build        use the binaries as they are (default: cargo build --release first)
#   --debug           the debug build instead of release
#
# Always a failure: a session that did not come up, flapped, or saw an LCP or
# IPCP Configure-Request after it was up (a renegotiation), and an event
# command that did not succeed.
#
# Binaries: LNSD, LACD, L2BENCH, L2TPCTL in the environment, else the build of
# this checkout (CARGO_TARGET_DIR honoured). E2E_ONLINK=0 keeps the core's
# `via` routes (downstream of moved sessions then goes to the dead LNS).
# It holds /run/l2lab.lock while it runs, and on exit, also on failure or
# Ctrl-C, stops the daemons and takes the lab down. Every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LAB="$ROOT/deploy/lab.sh"
LOCK=/run/l2lab.lock
SUBSCRIBERS=1000
RATE=10000
DURATION=15
EVENT_AT=5
OUT=/tmp/l2lab-ha
BUILD=1
SETUP_TIMEOUT=240
MAX_SETTING_UP=64
PROFILE=release
EVENT=""
SWITCHOVER_KIND=""
ZERO_UP_LOSS=0
ZERO_LOSS=0
MAX_UP_GAP=""
MAX_GAP=""
LAB_IS_OURS=0
BOXES=(lns1 lns2 lac)
BENCH_PID=""
L2LAB_RT_PRIORITY=0

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'ha: %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/e2e/common.sh
source "$ROOT/deploy/e2e/common.sh"
number() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1: give a number, not \"$2\""; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --kill-primary) EVENT="kill"; shift ;;
    --switchover) EVENT=switchover; SWITCHOVER_KIND=${2:-}; shift 2 || die "--switchover: all or new" ;;
    --subscribers) SUBSCRIBERS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --event-at) EVENT_AT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --expect-zero-upstream-loss) ZERO_UP_LOSS=1; shift ;;
    --max-upstream-gap-ms) MAX_UP_GAP=$2; shift 2 ;;
    --expect-zero-loss) ZERO_LOSS=1; shift ;;
    --max-gap-ms) MAX_GAP=$2; shift 2 ;;
    --setup-timeout) SETUP_TIMEOUT=$2; shift 2 ;;
    --max-setting-up) MAX_SETTING_UP=$2; shift 2 ;;
    --hello-ms) export L2LAB_HA_HELLO_MS=$2; shift 2 ;;
    --standby) export L2LAB_HA_STANDBY=1; shift ;;
    --dead-ms) export L2LAB_HA_DEAD_MS=$2; shift 2 ;;
    --realtime-priority) L2LAB_RT_PRIORITY=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --debug) PROFILE=debug; shift ;;
    -h | --help) sed -n '2,54p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ -n $EVENT ]] || die "say what happens: --kill-primary or --switchover all|new"
[[ $EVENT != switchover || $SWITCHOVER_KIND == all || $SWITCHOVER_KIND == new ]] ||
    die "--switchover: all or new"
[[ $SUBSCRIBERS =~ ^[0-9]+$ && $SUBSCRIBERS -ge 1 && $SUBSCRIBERS -le 4096 ]] ||
    die "--subscribers: 1 to 4096 (the lab's users file has sub0..sub4095)"
[[ $RATE =~ ^[0-9]+$ && $RATE -ge 1 ]] || die "--rate: packets per second, at least 1"
[[ $MAX_SETTING_UP =~ ^[0-9]+$ && $MAX_SETTING_UP -ge 1 ]] || die "--max-setting-up: at least 1"
[[ $L2LAB_RT_PRIORITY =~ ^[0-9]+$ && $L2LAB_RT_PRIORITY -le 99 ]] ||
    die "--realtime-priority: 0 to 99"
export L2LAB_RT_PRIORITY
number --duration "$DURATION"
number --event-at "$EVENT_AT"
number --setup-timeout "$SETUP_TIMEOUT"
[[ -z $MAX_UP_GAP ]] || number --max-upstream-gap-ms "$MAX_UP_GAP"
[[ -z $MAX_GAP ]] || number --max-gap-ms "$MAX_GAP"
awk -v a="$EVENT_AT" -v d="$DURATION" 'BEGIN { exit !(a < d) }' ||
    die "--event-at must fall inside --duration"
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth, AF_XDP)"
command -v jq >/dev/null || die "jq not found (apt-get install jq): it reads the report"
e2e_check_out "$OUT" .l2lab-ha
export PATH="$PATH:/usr/sbin:/sbin"

# --- binaries -------------------------------------------------------------------
e2e_binaries

# --- the lab, ours alone until we exit -----------------------------------------
e2e_take_lab ha

# What each daemon says about HA and its counters, into OUT/WHEN-BOX-*.txt.
snapshot() {
    local when=$1 box
    for box in "${BOXES[@]}"; do
        [[ -S /run/l2lab/$box.sock ]] || continue
        timeout 5 "$L2TPCTL" --socket "/run/l2lab/$box.sock" ha status \
            >"$OUT/$when-$box-ha.txt" 2>&1 || true
        timeout 5 "$L2TPCTL" --socket "/run/l2lab/$box.sock" show stats \
            >"$OUT/$when-$box-stats.txt" 2>&1 || true
    done
}

cleanup() {
    local status=$?
    set +e
    if [[ -n $BENCH_PID ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null
        wait "$BENCH_PID" 2>/dev/null
    fi
    if [[ $LAB_IS_OURS -eq 1 ]]; then
        say "stopping the daemons and taking the lab down"
        lab stop lac lns2 lns1
        for box in "${BOXES[@]}"; do
            [[ -f /run/l2lab/$box.log ]] && cp "/run/l2lab/$box.log" "$OUT/$box.log"
            [[ -f /run/l2lab/$box.toml ]] && cp "/run/l2lab/$box.toml" "$OUT/$box.toml"
        done
        lab down
    fi
    echo "ha: files in $OUT"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
touch "$OUT/.l2lab-ha"
say "lab up with HA (deploy/lab.sh, L2LAB_HA=1, L2LAB_ONLINK=${E2E_ONLINK:-1})"
LAB_IS_OURS=1
# A lab left by someone who did not hold the lock starts over from nothing.
lab down >/dev/null
export L2LAB_HA=1 L2LAB_ONLINK=${E2E_ONLINK:-1} L2LAB_FASTPATH=1
lab up
say "starting ${BOXES[*]}"
lab start "${BOXES[@]}"

lns1_pid=$(<"/run/l2lab/lns1.pid")
if ! [[ $lns1_pid =~ ^[0-9]+$ ]] || ! tr '\0' ' ' <"/proc/$lns1_pid/cmdline" | grep -q lnsd; then
    die "cannot find lns1's lnsd (pid file /run/l2lab/lns1.pid)"
fi
case $EVENT in
kill) event_command="kill -9 $lns1_pid" ;;
switchover) event_command="$L2TPCTL --socket /run/l2lab/lns1.sock ha switchover $SWITCHOVER_KIND" ;;
esac

# --- the scenario ---------------------------------------------------------------
say "l2bench: $SUBSCRIBERS subscribers, $RATE packets/s each way for ${DURATION}s; at ${EVENT_AT}s: $event_command"
bench_status=0
timeout --kill-after=10s "$(awk -v s="$SETUP_TIMEOUT" -v d="$DURATION" 'BEGIN { printf "%d", s + d + 60 }')" \
    "$L2BENCH" run --mode pppoe --netns l2lab-cpe --interface cpe0 \
    --subscribers "$SUBSCRIBERS" --password lab --auth chap \
    --traffic-netns l2lab-net --traffic-addr 10.1.0.2 --rate "$RATE" --duration "$DURATION" \
    --setup-timeout "$SETUP_TIMEOUT" --max-setting-up "$MAX_SETTING_UP" \
    --event-at "$EVENT_AT" --event-command "$event_command" \
    --report "$OUT/report.json" \
    >"$OUT/summary.txt" 2> >(tee "$OUT/l2bench.log" >&2) &
BENCH_PID=$!
# Once the traffic runs (the progress line shows the rates), what the
# daemons say before the event. Bounded by l2bench's own timeout.
for ((i = 0; i < (SETUP_TIMEOUT + 30) * 10; i++)); do
    kill -0 "$BENCH_PID" 2>/dev/null || break
    grep -q 'upstream [0-9]' "$OUT/l2bench.log" 2>/dev/null && { snapshot before; break; }
    sleep 0.1
done
wait "$BENCH_PID" || bench_status=$?
BENCH_PID=""
snapshot after
cat "$OUT/summary.txt"

# --- the verdict ----------------------------------------------------------------
[[ -s $OUT/report.json ]] || die "l2bench wrote no report (status $bench_status); see $OUT/l2bench.log"
# The sessions lns1 held before the event: their addresses are in its pool
# (100.64.0.0/22); lns2's are in 100.64.4.0/22.
q0() { jq -r "$1" "$OUT/report.json"; }
summary=$(jq -r '
    def ms: if . == null then "n/a" else (. * 10 | round / 10 | tostring) + " ms" end;
    ([.subscribers[] | select(.address != null and (.address | test("^100\\.64\\.[0-3]\\.")))] | length) as $lns1 |
    "HA \(.event.command // "no event"): \(.sessions_up)/\(.sessions_requested) up, \($lns1) on lns1; "
    + "flapped \(.sessions_flapped), renegotiations \(.renegotiations); "
    + "upstream lost \(.upstream.lost)/\(.upstream.sent) (\(.upstream.lost_after_event // "n/a") after the event), "
    + "longest upstream gap \(.upstream.event_gap_ms.max | ms); "
    + "downstream lost \(.downstream.lost)/\(.downstream.sent) (\(.downstream.lost_after_event // "n/a") after the event), "
    + "longest downstream gap \(.downstream.event_gap_ms.max | ms); "
    + "stream packets \(.stream_interval_ms | ms) apart; event exit \(.event.exit_status // "none")"
    ' "$OUT/report.json")
# The same per LNS: the sessions lns1 held (they move) and lns2's (they
# should see nothing). A stream's gap is its interruption plus up to one
# packet interval (stream_interval_ms).
per_lns=$(jq -r '
    def ms: if . == null then "n/a" else (. * 10 | round / 10 | tostring) + " ms" end;
    def p50: if length == 0 then null else sort | .[(length / 2 | floor)] end;
    def figures($name; $subs):
        ($subs | map(.upstream.event_gap_ms // empty)) as $up |
        ($subs | map(.downstream.event_gap_ms // empty)) as $down |
        "\($name) (\($subs | length) sessions): upstream lost \($subs | map(.upstream.lost // 0) | add // 0), "
        + "gap p50 \($up | p50 | ms) max \($up | max | ms); "
        + "downstream lost \($subs | map(.downstream.lost // 0) | add // 0), "
        + "gap p50 \($down | p50 | ms) max \($down | max | ms)";
    . as $top |
    [.subscribers[] | select(.address != null)] as $s |
    figures("lns1'"'"'s sessions"; [$s[] | select(.address | test("^100\\.64\\.[0-3]\\."))]),
    figures("lns2'"'"'s sessions"; [$s[] | select(.address | test("^100\\.64\\.[0-3]\\.") | not)]),
    "interruption (longest gap minus the packet interval): upstream \((.upstream.event_gap_ms.max // null) as $g | if $g == null then null else $g - .stream_interval_ms end | ms), downstream \((.downstream.event_gap_ms.max // null) as $g | if $g == null then null else $g - .stream_interval_ms end | ms)",
    # A packet held by the event arrives late by the hold: the latency of
    # what was sent after it over that of what was sent before measures
    # the hold without the pacing jitter of the senders (lost packets aside).
    "longest hold (latency max after the event minus before it): \(["upstream", "downstream"] | map(. as $d | "\($d) \(($top[$d].latency_after_event_us.max // null) as $a | ($top[$d].latency_before_event_us.max // null) as $b | if $a == null or $b == null then null else ($a - $b) / 1000 end | ms)") | join(", "))"
    ' "$OUT/report.json")
echo "$summary" | tee -a "$OUT/summary.txt"
echo "$per_lns" | tee -a "$OUT/summary.txt"
at_unix=$(q0 '.event.at_unix_s // 0')
[[ $at_unix == 0 ]] || echo "(the event at $(date -u -d "@$at_unix" +%H:%M:%S.%N | cut -c1-12) UTC in the daemons' logs)"

failures=()
[[ $bench_status -eq 0 ]] || failures+=("l2bench failed (status $bench_status): not every session came up")
q() { jq -r "$1" "$OUT/report.json"; }
[[ $(q .sessions_flapped) -eq 0 ]] || failures+=("$(q .sessions_flapped) sessions flapped")
[[ $(q .renegotiations) -eq 0 ]] || failures+=("$(q .renegotiations) renegotiations")
[[ $(q '.event.exit_status // -1') -eq 0 ]] || failures+=("the event command failed: $event_command")
if [[ $ZERO_UP_LOSS -eq 1 || $ZERO_LOSS -eq 1 ]]; then
    [[ $(q .upstream.lost) -eq 0 ]] || failures+=("$(q .upstream.lost) upstream packets lost")
fi
if [[ $ZERO_LOSS -eq 1 ]]; then
    [[ $(q .downstream.lost) -eq 0 ]] || failures+=("$(q .downstream.lost) downstream packets lost")
fi
over() { awk -v g="$1" -v m="$2" 'BEGIN { exit !(g == "null" || g > m) }'; }
for limit in "upstream:${MAX_UP_GAP:-$MAX_GAP}" "downstream:$MAX_GAP"; do
    dir=${limit%%:*} max=${limit#*:}
    [[ -n $max ]] || continue
    gap=$(q ".$dir.event_gap_ms.max")
    if over "$gap" "$max"; then failures+=("longest $dir gap $gap ms > $max ms"); fi
done

say "report: $OUT/report.json, summary: $OUT/summary.txt"
if [[ ${#failures[@]} -gt 0 ]]; then
    printf 'ha: FAILED: %s\n' "${failures[@]}" >&2
    for box in "${BOXES[@]}"; do
        echo "--- $box ---" >&2
        tail -n 15 "/run/l2lab/$box.log" >&2 2>/dev/null || true
    done
    exit 1
fi
say "done: HA scenario passed"

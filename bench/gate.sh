#!/usr/bin/env bash
# Performance regression gate of the fast path (issue 4 §6): instructions
# per packet of LNS upstream, LNS downstream and the LAC relay, counted by
# callgrind over a whole worker (100,000 sessions, bursts of 32), against
# the committed baseline bench/baseline/instructions.toml.
#
#   bench/gate.sh            check: fail when a path costs more than 10%
#                            over its baseline
#   bench/gate.sh --update   rewrite the baseline from this tree; commit it
#                            on its own, saying why the cost moved
#
# Instruction counts, not times: they do not depend on the machine's load,
# so the gate is stable on a shared CI box. They do depend on the compiler;
# a toolchain upgrade is a reason to --update.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=bench/baseline/instructions.toml
tolerance_pct=10
sessions=100000
rounds=20

update=false
case "${1:-}" in
"") ;;
--update) update=true ;;
*)
    echo "usage: $0 [--update]" >&2
    exit 2
    ;;
esac

if ! command -v valgrind >/dev/null; then
    echo "gate: valgrind is not installed (Debian: apt-get install valgrind)" >&2
    exit 2
fi

cargo build --release --locked -p bench --bin fastpath_instructions --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/fastpath_instructions"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Instructions per packet of path $1, with one decimal.
measure() {
    local path=$1 packets total
    packets=$(valgrind --tool=callgrind --toggle-collect='*measured_polls*' \
        --callgrind-out-file="$work/$path.out" "$bin" "$path" "$sessions" "$rounds" \
        2>"$work/$path.log") || {
        cat "$work/$path.log" >&2
        return 1
    }
    total=$(awk '/^totals:/ { print $2 }' "$work/$path.out")
    awk -v t="$total" -v n="$packets" 'BEGIN { printf "%.1f\n", t / n }'
}

# The baseline value of path $1, empty when absent.
baseline_of() {
    [ -f "$baseline" ] || return 0
    awk -F' *= *' -v k="$1" '$1 == k { print $2 }' "$baseline"
}

paths=(lns_upstream lns_downstream lac_relay)
declare -A now
for path in "${paths[@]}"; do
    now[$path]=$(measure "$path")
done

if $update; then
    mkdir -p "$(dirname "$baseline")"
    {
        echo "# Instructions per packet through a whole worker (bench/gate.sh):"
        echo "# $sessions sessions, bursts of 32, callgrind, $(rustc --version)."
        echo "# Written by 'bench/gate.sh --update'; commit changes on their own."
        for path in "${paths[@]}"; do
            echo "$path = ${now[$path]}"
        done
    } >"$baseline"
    cat "$baseline"
    exit 0
fi

failed=0
printf '%-16s %10s %10s %8s\n' path baseline now change
for path in "${paths[@]}"; do
    base=$(baseline_of "$path")
    if [ -z "$base" ]; then
        printf '%-16s %10s %10s\n' "$path" "-" "${now[$path]}"
        echo "gate: no baseline for $path in $baseline; run bench/gate.sh --update" >&2
        failed=1
        continue
    fi
    verdict=$(awk -v b="$base" -v n="${now[$path]}" -v tol="$tolerance_pct" 'BEGIN {
        pct = (n - b) * 100 / b
        printf "%+.1f%% %s\n", pct, (pct > tol ? "FAIL" : "ok")
    }')
    printf '%-16s %10s %10s %8s\n' "$path" "$base" "${now[$path]}" "$verdict"
    case "$verdict" in *FAIL) failed=1 ;; esac
done
if [ "$failed" -ne 0 ]; then
    echo "gate: a fast path costs more than ${tolerance_pct}% over its baseline instructions per packet." >&2
    echo "      Profile it: valgrind --tool=callgrind --toggle-collect='*measured_polls*' $bin <path>;" >&2
    echo "      if the cost is deliberate, run bench/gate.sh --update and commit the baseline on its own." >&2
    exit 1
fi

# Shared by the lab scenarios (run.sh, ha.sh): sourced after they set ROOT,
# LOCK, PROFILE (release or debug), BUILD (1: cargo build first) and define
# say and die. NAME is the scenario's name in its messages.

# e2e_check_out DIR MARKER: DIR is emptied by the run only if an earlier run
# made it (its MARKER file or a report is there); anything else is refused.
e2e_check_out() {
    local out=$1 marker=$2
    if [[ -e $out && ! -f $out/$marker && ! -f $out/report.json && -n $(ls -A "$out" 2>/dev/null) ]]; then
        die "$out exists and is not an earlier run's output: choose another --out"
    fi
}

# e2e_binaries: build (unless BUILD=0) and find lnsd, lacd, l2bench and
# l2tpctl: LNSD, LACD, L2BENCH, L2TPCTL from the environment, else this
# checkout's build (CARGO_TARGET_DIR honoured).
e2e_binaries() {
    local target="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE" release=() binary
    if [[ $BUILD -eq 1 ]]; then
        say "building lnsd, lacd, l2tpctl and l2bench ($PROFILE)"
        [[ $PROFILE == release ]] && release=(--release)
        cargo build ${release[@]+"${release[@]}"} --quiet --manifest-path "$ROOT/Cargo.toml" \
            -p controlplane --bins -p bench --bin l2bench
    fi
    export LNSD=${LNSD:-$target/lnsd}
    export LACD=${LACD:-$target/lacd}
    L2BENCH=${L2BENCH:-$target/l2bench}
    L2TPCTL=${L2TPCTL:-$target/l2tpctl}
    for binary in "$LNSD" "$LACD" "$L2BENCH" "$L2TPCTL"; do
        [[ -x $binary ]] || die "$binary not found: build it (drop --no-build) or set LNSD/LACD/L2BENCH/L2TPCTL"
    done
}

# e2e_take_lab NAME: the lab is ours alone until we exit (LOCK, waiting up
# to 10 minutes for whoever holds it); `lab ARGS` then runs deploy/lab.sh
# with the lock's descriptor closed, so that the daemons it starts do not
# hold the lock after we are gone.
e2e_take_lab() {
    local name=$1
    exec {lock_fd}>"$LOCK"
    if ! flock --nonblock "$lock_fd"; then
        echo "$name: the lab is in use (a test or another run holds $LOCK); waiting up to 10 min"
        flock --wait 600 "$lock_fd" || die "the lab stayed busy for 10 minutes"
    fi
}
lab() { "$LAB" "$@" {lock_fd}>&-; }

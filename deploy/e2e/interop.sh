#!/usr/bin/env bash
# The interop part of the demo (deploy/demo.sh runs it after the lab's
# end-to-end scenario): our L2TP control plane against the real peers.
#
#   sudo deploy/e2e/interop.sh
#
# 1. xl2tpd (a LAC) dials our `lnsd`: tunnel and incoming call come up; the
#    call then goes down with xl2tpd's CDN (its pppd cannot start without
#    /dev/ppp) and xl2tpd closes the tunnel with StopCCN.
# 2. Our `lacd` dials l2tpns (an LNS): tunnel and session come up, l2tpns
#    sends its first LCP Configure-Request in an L2TP data message, and lacd
#    tears down with CDN and StopCCN.
# 3. Our PPP subscribers, through our LAC, against l2tpns with FreeRADIUS
#    beside it: one with PAP, one with CHAP, then a batch of 50, all fully up
#    (LCP, authentication checked by FreeRADIUS, IPCP with an address from
#    l2tpns's pool and its DNS servers), then torn down (LCP Terminate, CDN,
#    StopCCN) with accounting Start and Stop for each. This one runs the
#    integration test controlplane/tests/interop_l2tpns_ppp.rs (it builds its
#    own namespaces, and asserts every step) and shows what it kept: the
#    setup rate, l2tpns's log, FreeRADIUS's accounting and the capture.
#
# Each scenario runs in two fresh network namespaces joined by a veth pair
# (10.200.1.0/24, which exists only inside them) and prints our daemon's
# events and a one-line-per-packet tshark summary of the capture.
#
# Needs root and the Debian packages iproute2 xl2tpd l2tpns freeradius
# tshark (those .ci/run installs), plus cargo. Everything it starts or creates is
# removed on exit, also on failure or Ctrl-C. L2TP_DEMO_KEEP=1 keeps the
# scratch directory (configs, logs, captures).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TEMPLATES="$ROOT/deploy/interop"
TAG="demo-$$"
SECRET="demo-secret"
LAC_ADDR=10.200.1.1
LNS_ADDR=10.200.1.2
WORK=""
PIDS=()
NAMESPACES=()

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

need() {
    local program=$1 package=$2
    command -v "$program" >/dev/null 2>&1 || [[ -x /usr/sbin/$program ]] ||
        die "\`$program\` not found: apt-get install $package"
}

cleanup() {
    local pid ns
    set +e
    # SIGINT: dumpcap writes out its capture; the daemons just exit.
    for pid in "${PIDS[@]}"; do
        kill -INT -- "-$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    PIDS=()
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    NAMESPACES=()
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ -n ${L2TP_DEMO_KEEP:-} ]]; then
            echo "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# render TEMPLATE OUT NAME=VALUE...: fill the @NAME@ placeholders of a file of
# deploy/interop; one left over is an error (the template and this script
# drifted apart).
render() {
    local template=$1 out=$2 pair
    shift 2
    cp "$TEMPLATES/$template" "$out"
    for pair in "$@"; do
        local name=${pair%%=*} value=${pair#*=}
        value=${value//\\/\\\\}
        value=${value//|/\\|}
        value=${value//&/\\&}
        sed -i "s|@$name@|$value|g" "$out"
    done
    if grep -n '@[A-Z_]\+@' "$out"; then
        die "$template: placeholders left in $out"
    fi
}

# start NAME NAMESPACE COMMAND...: run a long-lived program in its own
# process group (so it and its children are killed together) with its output
# in $WORK/NAME.log.
start() {
    local name=$1 ns=$2
    shift 2
    setsid ip netns exec "$ns" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}

# wait_for FILE TEXT SECONDS: until FILE contains TEXT, bounded.
wait_for() {
    local file=$1 text=$2 limit=$3 i
    for ((i = 0; i < limit * 10; i++)); do
        grep -qF -- "$text" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "--- $file ---" >&2
    tail -n 30 "$file" >&2 || true
    die "waited ${limit}s for \"$text\" in $file"
}

# lab: two fresh namespaces, LAC and LNS, joined by veth1.
lab() {
    local lac="$TAG-lac" lns="$TAG-lns"
    ip netns add "$lac"
    NAMESPACES+=("$lac")
    ip netns add "$lns"
    NAMESPACES+=("$lns")
    ip link add veth1 netns "$lac" type veth peer name veth1 netns "$lns"
    ip -n "$lac" addr add "$LAC_ADDR/24" dev veth1
    ip -n "$lns" addr add "$LNS_ADDR/24" dev veth1
    for ns in "$lac" "$lns"; do
        ip -n "$ns" link set lo up
        ip -n "$ns" link set veth1 up
    done
}

# dumpcap (it comes with tshark) says it is capturing before it is, and
# writes packets up to a second late, dropping the unwritten ones when it is
# stopped. So a marker datagram (UDP to the discard port, in the capture
# filter) crosses the link until it is in the file: at start and before stop.
capture_start() {
    local name=$1
    start "dumpcap-$name" "$TAG-lac" dumpcap -i veth1 -f "udp port 1701 or udp port 9" -P \
        -w "$WORK/$name.pcap"
    wait_for "$WORK/dumpcap-$name.log" "File: " 10
    mark "$name" start
}

# mark NAME LABEL: send a marker until the capture NAME holds it (bounded).
mark() {
    local name=$1 marker="l2tp-demo-capture-marker-$2" i
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$TAG-lac" bash -c "echo $marker > /dev/udp/$LNS_ADDR/9" 2>/dev/null || true
        sleep 0.1
        grep -qaF "$marker" "$WORK/$name.pcap" 2>/dev/null && return 0
    done
    die "capture $name: marker $2 never reached the file"
}

# stop_all NAME: once the capture NAME holds everything, end every process
# of the scenario (the daemons have logged what they saw) and tear the lab
# down.
stop_all() {
    mark "$1" end
    cleanup_keep_work
}

cleanup_keep_work() {
    local work=$WORK
    WORK=""
    cleanup
    WORK=$work
}

summary() {
    local name=$1
    say "what was on the wire ($name, tshark)"
    tshark -n -r "$WORK/$name.pcap" -d udp.port==1701,l2tp -Y l2tp 2>/dev/null
    local problems
    problems=$(tshark -n -r "$WORK/$name.pcap" -d udp.port==1701,l2tp \
        -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null)
    if [[ -n $problems ]]; then
        echo "tshark found problems:"
        echo "$problems"
        return 1
    fi
    echo "(tshark: no malformed packet, no error)"
}

# --- checks and build ---------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth, TUN, capture)"
need ip iproute2
need xl2tpd xl2tpd
need l2tpns l2tpns
need freeradius freeradius
need dumpcap tshark
need tshark tshark
need cargo "a Rust toolchain"
export PATH="$PATH:/usr/sbin:/sbin"

# LNSD and LACD in the environment (deploy/demo.sh builds once for all its
# parts) or this checkout's release build.
if [[ -z ${LNSD:-} || -z ${LACD:-} ]]; then
    say "building lnsd and lacd (release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p controlplane --bins
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    LNSD="$TARGET_DIR/release/lnsd"
    LACD="$TARGET_DIR/release/lacd"
fi
[[ -x $LNSD && -x $LACD ]] || die "no lnsd or lacd binary ($LNSD, $LACD)"

WORK=$(mktemp -d /tmp/l2tp-demo.XXXXXX)

# --- 1. xl2tpd LAC -> our lnsd ------------------------------------------------
say "1. xl2tpd (LAC, $LAC_ADDR) dials our lnsd (LNS, $LNS_ADDR)"
lab
capture_start xl2tpd
start lnsd "$TAG-lns" env RUST_LOG=info "$LNSD" --listen "$LNS_ADDR:1701" \
    --secret "$SECRET" --require-auth --hostname demo-lnsd --socket "$WORK/lnsd.sock"
wait_for "$WORK/lnsd.log" "listening" 10
printf '* * %s\n' "$SECRET" >"$WORK/xl2tpd-secrets"
chmod 600 "$WORK/xl2tpd-secrets"
cp "$TEMPLATES/xl2tpd-ppp-options" "$WORK/xl2tpd-ppp-options"
render xl2tpd-lac.conf.in "$WORK/xl2tpd.conf" \
    LISTEN_ADDR=$LAC_ADDR LNS_ADDR=$LNS_ADDR AUTH_FILE="$WORK/xl2tpd-secrets" \
    LAC_NAME=peer CHALLENGE=yes HOSTNAME=xl2tpd-lac PPP_OPTIONS="$WORK/xl2tpd-ppp-options"
start xl2tpd "$TAG-lac" xl2tpd -D -c "$WORK/xl2tpd.conf" -p "$WORK/xl2tpd.pid" \
    -C "$WORK/xl2tpd.control"
wait_for "$WORK/lnsd.log" "session down" 15
# xl2tpd keeps the tunnel after its call ends; ask it to close it.
timeout 5 sh -c "printf 'd peer\n' > '$WORK/xl2tpd.control'"
wait_for "$WORK/lnsd.log" "tunnel down" 15
stop_all xl2tpd
say "what lnsd saw"
grep -v '^\s*$' "$WORK/lnsd.log"
summary xl2tpd

# --- 2. our lacd -> l2tpns LNS ------------------------------------------------
say "2. our lacd (LAC, $LAC_ADDR) dials l2tpns (LNS, $LNS_ADDR)"
lab
render l2tpns.cfg.in "$WORK/l2tpns.cfg" \
    LOG_FILE="$WORK/l2tpns-log.txt" PID_FILE="$WORK/l2tpns.pid" HOSTNAME=l2tpns-lns \
    BIND_ADDR=$LNS_ADDR SECRET="$SECRET" RADIUS_PORT=18120 RADIUS_SECRET=demo-radius \
    DNS_ADDR=192.0.2.53 DNS2_ADDR=192.0.2.54
start l2tpns "$TAG-lns" l2tpns -c "$WORK/l2tpns.cfg"
echo "waiting for l2tpns to elect itself cluster master (about 3 s)"
wait_for "$WORK/l2tpns-log.txt" "I am declaring myself the master" 30
capture_start l2tpns
# lacd exits by itself: sessions up, first PPP frame seen, clean teardown.
lacd_status=0
ip netns exec "$TAG-lac" env RUST_LOG=info timeout 30 "$LACD" --lns "$LNS_ADDR:1701" \
    --bind "$LAC_ADDR:1701" --secret "$SECRET" --require-auth --hostname demo-lacd --sessions 1 \
    --hold 1 >"$WORK/lacd.log" 2>&1 || lacd_status=$?
stop_all l2tpns
say "what lacd saw"
grep -v '^\s*$' "$WORK/lacd.log"
say "what l2tpns logged about it"
grep -E 'tunnel|session|Received|Sending|LCP' "$WORK/l2tpns-log.txt" | grep -v 'Setting' | tail -n 20
summary l2tpns
[[ $lacd_status -eq 0 ]] || die "lacd exited with status $lacd_status"

# --- 3. our PPP subscribers -> our LAC -> l2tpns + FreeRADIUS ----------------
say "3. our PPP subscribers through our LAC against l2tpns, FreeRADIUS beside it"
echo "(the integration test interop_l2tpns_ppp: it builds its own lab and checks every step)"
cargo test --quiet --manifest-path "$ROOT/Cargo.toml" -p controlplane --test interop_l2tpns_ppp \
    --no-run 2>&1 | grep -v '^\s*$' || true
ppp_status=0
L2TP_INTEROP_KEEP=1 timeout 300 cargo test --quiet --manifest-path "$ROOT/Cargo.toml" \
    -p controlplane --test interop_l2tpns_ppp -- --nocapture >"$WORK/ppp-test.log" 2>&1 ||
    ppp_status=$?
PPP_DIR=$(sed -n 's/^.*kept \(\/tmp\/l2tp-interop-[^ ]*\).*$/\1/p' "$WORK/ppp-test.log" | tail -n 1)
if [[ $ppp_status -ne 0 ]]; then
    tail -n 60 "$WORK/ppp-test.log"
    [[ -n $PPP_DIR ]] && rm -rf "$PPP_DIR"
    die "the PPP scenario failed (status $ppp_status)"
fi
[[ -n $PPP_DIR && -d $PPP_DIR ]] || die "the PPP scenario kept no scratch directory"
say "what our subscribers measured"
grep -E 'setup rate|one session alone|overtook|test result' "$WORK/ppp-test.log"
say "what l2tpns logged about authentication and addresses (first subscribers)"
grep -E 'authentication allowed|assign_ip_address|Assigned' "$PPP_DIR/l2tpns-log.txt" | head -n 8
echo "... $(grep -c 'authentication allowed' "$PPP_DIR/l2tpns-log.txt") logins allowed in all"
say "what FreeRADIUS accounted (detail file)"
for status in Start Stop; do
    echo "Acct-Status-Type = $status: $(grep -c "Acct-Status-Type = $status" \
        "$PPP_DIR/radius/radacct/detail") records"
done
grep -m 1 -B 1 -A 9 'Acct-Status-Type = Start' "$PPP_DIR/radius/radacct/detail"
say "what was on the wire (l2tpns-ppp, tshark): the tunnel and the first two subscribers"
tshark -n -r "$PPP_DIR/l2tpns-ppp.pcap" -d udp.port==1701,l2tp -Y l2tp 2>/dev/null | head -n 60
echo "... $(tshark -n -r "$PPP_DIR/l2tpns-ppp.pcap" -d udp.port==1701,l2tp -Y l2tp 2>/dev/null |
    wc -l) L2TP packets in all"
problems=$(tshark -n -r "$PPP_DIR/l2tpns-ppp.pcap" -d udp.port==1701,l2tp \
    -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null)
if [[ -n ${L2TP_DEMO_KEEP:-} ]]; then
    echo "kept $PPP_DIR"
else
    rm -rf "$PPP_DIR"
fi
[[ -z $problems ]] || die "tshark found problems: $problems"
echo "(tshark: no malformed packet, no error)"

say "done: all three interop scenarios ran"

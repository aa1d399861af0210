#!/usr/bin/env bash
# Our LAC against a real LNS, with real subscribers' traffic: l2bench's PPPoE
# subscribers dial through our `lacd` (the AF_XDP fast path) to l2tpns, which
# authenticates them through FreeRADIUS, gives them addresses from its pool
# and routes their traffic through its TUN device.
#
#   sudo deploy/e2e/l2tpns.sh [--subscribers N] [--rate PPS] [--duration S]
#                             [--auth chap|pap] [--mode relay|proxy] [--no-build]
#
# 1. Three fresh namespaces: cpe (l2bench's subscribers on veth1), lac (lacd:
#    access veth1 without IPv4, wan veth2 10.200.2.1/24), lns (l2tpns on veth2
#    10.200.2.2/24, FreeRADIUS on its loopback, l2tpns's tun0 with routes to
#    its pool, and the traffic address 10.201.0.1 on its loopback).
# 2. l2bench brings N subscribers up (PPPoE discovery, LCP, CHAP or PAP
#    relayed to l2tpns, or with --mode proxy negotiated by lacd and handed
#    to l2tpns as proxy AVPs, IPCP), sends numbered UDP both ways between each
#    subscriber and 10.201.0.1 (upstream: l2tpns writes it into tun0;
#    downstream: the kernel routes it into tun0 and l2tpns sends it down the
#    session) and reports loss, reordering and latency (JSON kept).
# 3. `l2tpctl show sessions` on lacd lists the sessions; lacd is stopped with
#    SIGTERM: PADT to the subscribers, CDNs and StopCCN, after which l2tpns
#    has ended every session; tshark shows the capture of the wan link.
#
# The same scenario, with every step asserted, is the integration test
# bench/tests/interop_lacd_l2tpns.rs (cargo test runs it as root).
#
# Needs root and the Debian packages iproute2 ethtool l2tpns freeradius tshark
# (deploy/setup.sh installs them). LACD, L2BENCH and L2TPCTL in the
# environment name the binaries (deploy/demo.sh builds them once); otherwise
# this checkout's release build is used (built unless --no-build). Everything
# it starts or creates is removed on exit, also on failure or Ctrl-C;
# L2TP_DEMO_KEEP=1 keeps the scratch directory (configs, logs, capture,
# report).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TEMPLATES="$ROOT/deploy/interop"
TAG="l2il-$$"
CPE="$TAG-cpe"
LAC="$TAG-lac"
LNS="$TAG-lns"
SECRET="demo-secret"
RADIUS_SECRET="demo-radius"
LAC_ADDR=10.200.2.1
LNS_ADDR=10.200.2.2
TRAFFIC_ADDR=10.201.0.1
SUBSCRIBERS=20
RATE=2000
DURATION=5
AUTH=chap
MODE=relay
BUILD=1
WORK=""
PIDS=()
NAMESPACES=()

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'l2tpns.sh: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --subscribers) SUBSCRIBERS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --auth) AUTH=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) die "unknown option $1 (--subscribers N, --rate PPS, --duration S, --auth chap|pap, --mode relay|proxy, --no-build)" ;;
    esac
done

need() {
    local program=$1 package=$2
    command -v "$program" >/dev/null 2>&1 || [[ -x /usr/sbin/$program ]] ||
        die "\`$program\` not found: apt-get install $package"
}

cleanup() {
    local pid ns
    set +e
    # SIGINT: dumpcap writes out its capture; the daemons exit.
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

# render TEMPLATE OUT NAME=VALUE...: fill the @NAME@ placeholders of a file
# of deploy/interop; one left over is an error.
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

# start NAME NAMESPACE COMMAND...: a long-lived program in its own process
# group, output in $WORK/NAME.log; its pid (the group) in LAST_PID.
start() {
    local name=$1 ns=$2
    shift 2
    setsid ip netns exec "$ns" "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
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

namespace() {
    ip netns add "$1"
    NAMESPACES+=("$1")
    ip netns exec "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$1" link set lo up
}

# veth NS_A NS_B NAME: a pair named NAME on both sides, up, checksums
# filled in by software (an AF_XDP socket sees the raw bytes; a veth would
# leave only the pseudo-header sum in them: see deploy/lab.sh).
veth() {
    local a=$1 b=$2 name=$3 ns
    ip link add "$name" netns "$a" type veth peer name "$name" netns "$b"
    for ns in "$a" "$b"; do
        ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$name.disable_ipv6=1"
        ip netns exec "$ns" ethtool -K "$name" tx off >/dev/null
        ip -n "$ns" link set "$name" up
    done
}

# FreeRADIUS's private configuration: deploy/radius/ with the l2bench users
# of deploy/interop/radius-l2bench/ laid over it.
radius_config() {
    local dir=$1
    cp -r "$ROOT/deploy/radius" "$dir"
    cp "$TEMPLATES/radius-l2bench/clients.conf" "$dir/clients.conf"
    cp "$TEMPLATES/radius-l2bench/authorize" "$dir/mods-config/files/authorize"
    find "$dir" -type f -exec sed -i "s|@DIR@|$dir|g; s|@AUTH_PORT@|1812|g; \
        s|@ACCT_PORT@|1813|g; s|@SECRET@|$RADIUS_SECRET|g" {} +
    mkdir -p "$dir/log" "$dir/radacct" "$dir/run"
}

# --- checks and build ---------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth, AF_XDP, TUN, capture)"
export PATH="$PATH:/usr/sbin:/sbin"
need ip iproute2
need ethtool ethtool
need l2tpns l2tpns
need freeradius freeradius
need dumpcap tshark
need tshark tshark
[[ $AUTH == chap || $AUTH == pap ]] || die "--auth chap or pap"
[[ $MODE == relay || $MODE == proxy ]] || die "--mode relay or proxy"

if [[ -z ${LACD:-} || -z ${L2BENCH:-} || -z ${L2TPCTL:-} ]]; then
    if [[ $BUILD -eq 1 ]]; then
        say "building lacd, l2tpctl and l2bench (release)"
        cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" \
            -p controlplane --bin lacd --bin l2tpctl -p bench --bin l2bench
    fi
    TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
    LACD=${LACD:-$TARGET/lacd}
    L2BENCH=${L2BENCH:-$TARGET/l2bench}
    L2TPCTL=${L2TPCTL:-$TARGET/l2tpctl}
fi
for binary in "$LACD" "$L2BENCH" "$L2TPCTL"; do
    [[ -x $binary ]] || die "no binary $binary (build it, or set LACD, L2BENCH, L2TPCTL)"
done

WORK=$(mktemp -d /tmp/l2tp-l2tpns.XXXXXX)

# --- 1. the lab ---------------------------------------------------------------
say "1. namespaces: $CPE (l2bench) - $LAC (lacd) - $LNS (l2tpns + FreeRADIUS)"
namespace "$CPE"
namespace "$LAC"
namespace "$LNS"
veth "$CPE" "$LAC" veth1
veth "$LAC" "$LNS" veth2
ip -n "$LAC" addr add "$LAC_ADDR/24" dev veth2
ip -n "$LNS" addr add "$LNS_ADDR/24" dev veth2
# The far end of the subscribers' traffic: an address of the lns namespace,
# which l2tpns's upstream packets (written into tun0) are delivered to, and
# whose answers the kernel routes back into tun0 (the pool's routes).
ip -n "$LNS" addr add "$TRAFFIC_ADDR/32" dev lo

radius_config "$WORK/radius"
start freeradius "$LNS" freeradius -X -d "$WORK/radius"
wait_for "$WORK/freeradius.log" "Ready to process requests" 20

render l2tpns.cfg.in "$WORK/l2tpns.cfg" \
    LOG_FILE="$WORK/l2tpns-log.txt" PID_FILE="$WORK/l2tpns.pid" HOSTNAME=l2tpns-lns \
    BIND_ADDR=$LNS_ADDR SECRET="$SECRET" RADIUS_PORT=1812 RADIUS_SECRET="$RADIUS_SECRET" \
    DNS_ADDR=192.0.2.53 DNS2_ADDR=192.0.2.54
start l2tpns "$LNS" l2tpns -c "$WORK/l2tpns.cfg"
L2TPNS_PID=$LAST_PID
echo "waiting for l2tpns to elect itself cluster master (about 3 s)"
wait_for "$WORK/l2tpns-log.txt" "I am declaring myself the master" 30

cat >"$WORK/lacd.toml" <<EOF
listen = "$LAC_ADDR:1701"
hostname = "demo-lacd"
secret = "$SECRET"
mode = "$MODE"
[[lns]]
address = "$LNS_ADDR:1701"
[pppoe]
interface = "veth1"
[dataplane]
enabled = true
wan = "veth2"
[control]
socket = "$WORK/lacd.sock"
EOF
start lacd "$LAC" env RUST_LOG=info "$LACD" --config "$WORK/lacd.toml"
LACD_PID=$LAST_PID
wait_for "$WORK/lacd.log" "listening" 20

# On l2tpns's side: lacd sends and takes L2TP data through AF_XDP, which
# packet taps in its own namespace do not see.
start dumpcap "$LNS" dumpcap -i veth2 -f "udp port 1701" -P -w "$WORK/wan.pcap"
DUMPCAP_PID=$LAST_PID
wait_for "$WORK/dumpcap.log" "File: " 10
# dumpcap says "File:" a moment before it captures.
sleep 1

# --- 2. subscribers up, traffic both ways ------------------------------------
say "2. l2bench: $SUBSCRIBERS subscribers ($AUTH, lacd in $MODE mode), $RATE packets/s each way for ${DURATION}s"
bench_status=0
timeout 120 "$L2BENCH" run --netns "$CPE" --interface veth1 --subscribers "$SUBSCRIBERS" \
    --password lab --auth "$AUTH" --traffic-netns "$LNS" --traffic-addr "$TRAFFIC_ADDR" \
    --rate "$RATE" --duration "$DURATION" --report "$WORK/report.json" --no-hang-up \
    --expect-zero-loss --quiet || bench_status=$?

say "what lacd lists (l2tpctl show sessions)"
"$L2TPCTL" --socket "$WORK/lacd.sock" show sessions || true
say "what l2tpns logged about authentication and addresses (first subscribers)"
grep -E 'authentication allowed' "$WORK/l2tpns-log.txt" | head -n 4 || true
echo "... $(grep -c 'authentication allowed' "$WORK/l2tpns-log.txt" || true) logins allowed in all"
[[ $bench_status -eq 0 ]] || die "l2bench failed (status $bench_status); see above"

# --- 3. lacd stops: PADT, CDN, StopCCN ----------------------------------------
say "3. lacd stops (SIGTERM): PADT to each subscriber, CDNs, StopCCN"
kill -TERM -- "-$LACD_PID"
for _ in $(seq 100); do kill -0 "$LACD_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$LACD_PID" 2>/dev/null && die "lacd still running 10 s after SIGTERM"
wait_for "$WORK/l2tpns-log.txt" "Received StopCCN" 10
grep -E 'acknowledged|stopp|down' "$WORK/lacd.log" | tail -n 5 || true
say "what l2tpns logged about the end"
grep -E 'CDN|StopCCN|Shutdown|shutdown' "$WORK/l2tpns-log.txt" | tail -n 6 || true

# The capture holds everything once dumpcap has written it out (SIGINT).
# dumpcap hands packets to the file up to a second late and drops the
# unwritten ones when stopped: give it that second first.
sleep 1.5
kill -INT -- "-$DUMPCAP_PID"
for _ in $(seq 30); do kill -0 "$DUMPCAP_PID" 2>/dev/null || break; sleep 0.1; done
say "what was on the wire (wan, tshark): L2TP control messages, the first and the last"
tshark -n -r "$WORK/wan.pcap" -d udp.port==1701,l2tp -Y 'l2tp.type == 1 && l2tp.avp.message_type' \
    2>/dev/null >"$WORK/control.txt"
head -n 8 "$WORK/control.txt"
echo "    ..."
tail -n 8 "$WORK/control.txt"
problems=$(tshark -n -r "$WORK/wan.pcap" -d udp.port==1701,l2tp \
    -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null)
[[ -z $problems ]] || die "tshark found problems: $problems"
echo "(tshark: no malformed packet, no error)"
cdn=$(tshark -n -r "$WORK/wan.pcap" -d udp.port==1701,l2tp \
    -Y "ip.src == $LAC_ADDR && l2tp.avp.message_type == 14" 2>/dev/null | wc -l)
stop=$(tshark -n -r "$WORK/wan.pcap" -d udp.port==1701,l2tp \
    -Y "ip.src == $LAC_ADDR && l2tp.avp.message_type == 4" 2>/dev/null | wc -l)
ended=$(grep -c 'Shutting down session' "$WORK/l2tpns-log.txt" || true)
data=$(tshark -n -r "$WORK/wan.pcap" -d udp.port==1701,l2tp -Y 'l2tp.type == 0' 2>/dev/null | wc -l)
echo "... lacd sent $cdn CDN and $stop StopCCN; l2tpns ended $ended sessions; $data L2TP data messages"
# lacd queues a CDN per call and closes the tunnel at once: the CDNs within
# l2tpns's receive window go out, the StopCCN clears the rest (RFC 2661
# §4.4.1: a StopCCN clears every session of the tunnel).
[[ $cdn -ge 1 && $stop -eq 1 ]] || die "expected CDNs and one StopCCN from lacd"
[[ $ended -eq $SUBSCRIBERS ]] || die "l2tpns ended $ended of $SUBSCRIBERS sessions"
kill -QUIT -- "-$L2TPNS_PID" 2>/dev/null || true

say "done: $SUBSCRIBERS subscribers through lacd to l2tpns, traffic both ways, clean stop"

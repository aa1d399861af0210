#!/usr/bin/env bash
# The lab: the test topology of DESIGN.md §2.4 in network namespaces on one
# machine. Tests, the demo (deploy/e2e/run.sh) and the benchmarks use it.
#
#   [cpe] --veth-- [lac] --veth-- (br-wan) --veth-- [lns1] --veth-- (br-core) --veth-- [net]
#                                     \------veth-- [lns2] --veth------/
#
#   deploy/lab.sh up                 build it (idempotent: up twice = one lab)
#   deploy/lab.sh down               remove everything it made (idempotent, also half-built)
#   deploy/lab.sh status             namespaces, interfaces, addresses, routes, daemons
#   deploy/lab.sh exec NS CMD...     run CMD inside NS (l2lab-lac or just lac)
#   deploy/lab.sh start lns1|lns2|lac   start that box's daemon in the background
#   deploy/lab.sh stop  lns1|lns2|lac   stop it: SIGTERM, a bounded wait, then SIGKILL
#
# Names and addresses (everyone relies on them; see the issue-5 plan):
#   l2lab-cpe   cpe0 (no IPv4)                        <-> l2lab-lac access0 (no IPv4)
#   l2lab-lac   wan0  10.0.0.1/24   -> br-wan
#   l2lab-lns1  wan0  10.0.0.11/24  -> br-wan,  core0 10.1.0.11/24 -> br-core, default via 10.1.0.2
#   l2lab-lns2  wan0  10.0.0.12/24  -> br-wan,  core0 10.1.0.12/24 -> br-core, default via 10.1.0.2
#   l2lab-net   core0 10.1.0.2/24   -> br-core, 100.64.0.0/22 via 10.1.0.11, 100.64.4.0/22 via 10.1.0.12
#               (L2LAB_ONLINK=1: 100.64.0.0/21 dev core0 instead, see below)
#   l2lab-sw    the bridges br-wan and br-core and their ports (no addresses)
# Subscriber pools: lns1 100.64.0.0/22 (gateway 100.64.0.1), lns2 100.64.4.0/22
# (gateway 100.64.4.1). Users: sub0..sub4095, password "lab", in /run/l2lab/users.
#
# Every interface is created straight inside its namespace, so nothing of the
# lab exists in the root namespace and no packet of it can leave the machine.
# The links carry IPv4 only (no IPv6 link-local chatter), and every veth end
# fills checksums in software like a real NIC (ethtool; see
# checksums_in_software), so that what AF_XDP sees is what a wire would carry.
# State lives under /run/l2lab/: the users file, each box's config
# (NAME.toml), log (NAME.log), pid file (NAME.pid) and control socket
# (NAME.sock).
#
# Whoever runs a scenario on the lab (a test, deploy/e2e/run.sh) holds an
# exclusive flock on /run/l2lab.lock for its whole duration, so that two of
# them never tear down each other's lab; this script itself does not lock, so
# it can be called while the lock is held.
#
# Environment: LNSD, LACD (the daemons' binaries; default: the release build of
# this checkout, honouring CARGO_TARGET_DIR, then PATH), RUST_LOG (the
# daemons' log filter; default: the config's [control] log), L2LAB_STOP_GRACE (seconds between
# SIGTERM and SIGKILL, default 5), L2LAB_FASTPATH (0: the daemons' configs
# say [dataplane] enabled = false; default 1), L2LAB_START_WAIT (seconds `start` waits
# for the control socket, default 10), L2LAB_EXAMPLES (where the config
# templates are, default deploy/examples), L2LAB_RT_PRIORITY (N: the
# daemons' [control] realtime_priority, their control threads SCHED_RR at N;
# default 0, ordinary threads).
#
# HA (issue 6; deploy/e2e/ha.sh sets both):
#   L2LAB_HA=1      lnsd on lns1 and lns2 peer each other ([ha]: the other LNS
#                   with a shared secret, advertised to the LAC in SCCRP), and
#                   lacd runs [ha] with 100 ms Hellos and a 300 ms dead
#                   interval toward the LNSs (L2LAB_HA_HELLO_MS and
#                   L2LAB_HA_DEAD_MS change them). Default 0: the configs as
#                   the examples have them.
#   L2LAB_HA_STANDBY=1  lacd prefers lns1 (lns2 gets preference 1): every
#                   call goes to lns1 and lns2 only backs it up. Default 0:
#                   both preference 0, calls shared by weight.
#   L2LAB_ONLINK=1  l2lab-net reaches both pools on-link (100.64.0.0/21 dev
#                   core0) instead of a route via each LNS: whichever LNS
#                   holds a session answers the core's ARP for its address
#                   (the workers' proxy ARP) and announces it when it adopts
#                   the session (gratuitous ARP), so downstream follows a
#                   session that moved to the other LNS. Default 0: the
#                   two `via` routes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=/run/l2lab
EXAMPLES=${L2LAB_EXAMPLES:-$ROOT/deploy/examples}
NAMESPACES=(l2lab-cpe l2lab-lac l2lab-lns1 l2lab-lns2 l2lab-net l2lab-sw)
SWITCH=l2lab-sw
USERS=4096
BOXES=(lns1 lns2 lac)
STOP_GRACE=${L2LAB_STOP_GRACE:-5}
START_WAIT=${L2LAB_START_WAIT:-10}

# The links to the bridges, one line each:
#   namespace interface address/len MAC bridge switch-port
# The MACs are fixed (02: is locally administered; the last byte is the
# address's last byte) so that captures and neighbour tables read the same on
# every run. The switch port's MAC is the box's with 02 -> 06.
ATTACHMENTS=(
    "l2lab-lac  wan0  10.0.0.1/24  02:00:0a:00:00:01 br-wan  wan-lac"
    "l2lab-lns1 wan0  10.0.0.11/24 02:00:0a:00:00:0b br-wan  wan-lns1"
    "l2lab-lns2 wan0  10.0.0.12/24 02:00:0a:00:00:0c br-wan  wan-lns2"
    "l2lab-lns1 core0 10.1.0.11/24 02:00:0a:01:00:0b br-core core-lns1"
    "l2lab-lns2 core0 10.1.0.12/24 02:00:0a:01:00:0c br-core core-lns2"
    "l2lab-net  core0 10.1.0.2/24  02:00:0a:01:00:02 br-core core-net"
)
CPE_MAC=02:00:c0:00:00:01
ACCESS_MAC=02:00:ac:00:00:01

die() { printf 'lab: %s\n' "$*" >&2; exit 1; }
say() { printf 'lab: %s\n' "$*"; }

usage() {
    sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth pairs, BPF)"
    export PATH="$PATH:/usr/sbin:/sbin"
    command -v ip >/dev/null || die "\`ip\` not found: apt-get install iproute2"
}

ns_exists() { [[ -e /run/netns/$1 ]]; }
link_exists() { ip -n "$1" link show dev "$2" >/dev/null 2>&1; }

# The namespace of a short or full name: lac -> l2lab-lac.
ns_name() {
    local name=$1
    [[ $name == l2lab-* ]] || name="l2lab-$name"
    printf '%s\n' "$name"
}

# --- up ---------------------------------------------------------------------

ensure_ns() {
    local ns=$1
    ns_exists "$ns" || ip netns add "$ns"
    # The lab is IPv4 (subscribers' IPv6 would ride inside PPP, not on these
    # links): no IPv6 on the links, so no router solicitations, multicast
    # listener reports or DAD in the captures, in the XDP programs' path,
    # or on the subscriber's line. Set before the links exist, and per link
    # below for links made by an older version.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
}

no_ipv6() {
    local ns=$1 dev=$2
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
}

# A veth's operational state follows its carrier a moment later (the
# kernel's link watch runs deferred), so right after `ip link set up` a link
# can still read DOWN. Wait, bounded, until every lab link is UP, so that
# whatever runs after `up` finds the lab ready.
wait_links_up() {
    local i ns down
    for ((i = 0; i < 50; i++)); do
        down=""
        for ns in "${NAMESPACES[@]}"; do
            down+=$(ip -n "$ns" -br link show | awk '$1 != "lo" && $2 != "UP" { print ns "/" $1 " " }' ns="$ns")
        done
        [[ -z $down ]] && return 0
        sleep 0.1
    done
    die "links still not up after 5 s: $down"
}

# ensure_veth NS_A IF_A MAC_A NS_B IF_B MAC_B: one veth pair, both ends
# created in place. A veth end cannot outlive its peer, so if one end exists
# the pair exists; a lone interface of that name is something else and goes.
ensure_veth() {
    local ns_a=$1 if_a=$2 mac_a=$3 ns_b=$4 if_b=$5 mac_b=$6
    if link_exists "$ns_a" "$if_a" && link_exists "$ns_b" "$if_b"; then
        return 0
    fi
    link_exists "$ns_a" "$if_a" && ip -n "$ns_a" link del "$if_a"
    link_exists "$ns_b" "$if_b" && ip -n "$ns_b" link del "$if_b"
    ip link add "$if_a" netns "$ns_a" address "$mac_a" type veth \
        peer name "$if_b" netns "$ns_b" address "$mac_b"
}

# A veth hands the peer's stack its packets with the checksum offloaded
# (CHECKSUM_PARTIAL: the UDP/TCP checksum field holds only the pseudo-header
# sum). The kernel on the other end accepts that, but an AF_XDP socket sees
# raw bytes, and the LNS forwards the inner packets as they are: a
# subscriber would get datagrams whose checksum does not verify. Real NICs
# fill checksums before the wire, so the lab makes every veth end do it in
# software (ethtool -K tx off; iproute2 cannot change offloads).
checksums_in_software() {
    local ns=$1 dev=$2
    if command -v ethtool >/dev/null; then
        ip netns exec "$ns" ethtool -K "$dev" tx off >/dev/null 2>&1 ||
            say "warning: cannot turn off checksum offload on $ns/$dev"
    else
        say "warning: ethtool missing (deploy/setup.sh installs it): $ns/$dev keeps checksum offload"
    fi
}

ensure_bridge() {
    local br=$1
    if ! link_exists "$SWITCH" "$br"; then
        # No STP: the topology has no loop, and STP would keep new ports
        # blocked for seconds. No multicast snooping: nothing uses it.
        ip -n "$SWITCH" link add "$br" type bridge stp_state 0 mcast_snooping 0
    fi
    no_ipv6 "$SWITCH" "$br"
    ip -n "$SWITCH" link set "$br" up
}

write_users() {
    local tmp="$STATE/users.tmp" i
    {
        echo "# The lab's subscribers (format: controlplane/src/aaa/users.rs); written by deploy/lab.sh."
        for ((i = 0; i < USERS; i++)); do
            printf 'sub%d lab\n' "$i"
        done
    } >"$tmp"
    # Passwords in clear (CHAP needs them): readable by root only.
    chmod 600 "$tmp"
    mv -f "$tmp" "$STATE/users"
}

up() {
    need_root
    local ns line
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    for ns in "${NAMESPACES[@]}"; do
        ensure_ns "$ns"
    done
    ensure_bridge br-wan
    ensure_bridge br-core

    # The subscriber's line: cpe0 is where l2bench's PPPoE clients send and
    # receive raw Ethernet, access0 the LAC's access port. No IPv4 on either.
    ensure_veth l2lab-cpe cpe0 "$CPE_MAC" l2lab-lac access0 "$ACCESS_MAC"
    checksums_in_software l2lab-cpe cpe0
    checksums_in_software l2lab-lac access0
    no_ipv6 l2lab-cpe cpe0
    no_ipv6 l2lab-lac access0
    ip -n l2lab-cpe link set cpe0 up
    ip -n l2lab-lac link set access0 up

    for line in "${ATTACHMENTS[@]}"; do
        local box dev addr mac br port
        read -r box dev addr mac br port <<<"$line"
        ensure_veth "$box" "$dev" "$mac" "$SWITCH" "$port" "06${mac:2}"
        ip -n "$SWITCH" link set "$port" master "$br"
        checksums_in_software "$box" "$dev"
        checksums_in_software "$SWITCH" "$port"
        no_ipv6 "$box" "$dev"
        no_ipv6 "$SWITCH" "$port"
        ip -n "$box" addr replace "$addr" dev "$dev"
        ip -n "$SWITCH" link set "$port" up
        ip -n "$box" link set "$dev" up
    done

    core_routes
    # The LNSs send subscriber traffic to the core next hop 10.1.0.2; the
    # daemons resolve its MAC from the kernel's neighbour table.
    ip -n l2lab-lns1 route replace default via 10.1.0.2
    ip -n l2lab-lns2 route replace default via 10.1.0.2
    # As README "LNS hosts" recommends: no per-destination limit on the
    # port unreachables an LNS host sends (ICMP type 3 out of the ratemask,
    # default 6168), so that once lnsd is gone the refusal of the LAC's
    # probe Hello is not dropped behind the first six refused data packets
    # (the limit is then one a second). The global icmp_msgs_per_sec stays.
    for ns in l2lab-lns1 l2lab-lns2; do
        ip netns exec "$ns" sysctl -qw net.ipv4.icmp_ratemask=6160
    done

    wait_links_up
    write_users
    write_configs
    say "up: ${NAMESPACES[*]} (state in $STATE)"
}

# The core's view of the subscriber pools. By default each LNS's pool is
# behind that LNS. With L2LAB_ONLINK=1 both pools are on the core link: the
# LNS that holds a subscriber's session answers ARP for its address, so a
# session adopted by the other LNS (HA) keeps its address and downstream
# follows it. `up` switches between the two, whichever was there before.
core_routes() {
    if [[ ${L2LAB_ONLINK:-0} == 1 ]]; then
        ip -n l2lab-net route del 100.64.0.0/22 2>/dev/null || true
        ip -n l2lab-net route del 100.64.4.0/22 2>/dev/null || true
        ip -n l2lab-net route replace 100.64.0.0/21 dev core0
    else
        ip -n l2lab-net route del 100.64.0.0/21 2>/dev/null || true
        ip -n l2lab-net route replace 100.64.0.0/22 via 10.1.0.11
        ip -n l2lab-net route replace 100.64.4.0/22 via 10.1.0.12
    fi
}

# --- configs ------------------------------------------------------------------

# Each box's config comes from the example in deploy/examples, which is
# written for lns1 and the LAC of this lab; lns2 gets lns1's with its own
# address, name, pool, gateway and socket. Every box runs in its own
# namespace, so the metrics port (on each one's 127.0.0.1) needs no change.
# The lab runs the fast path (it exists to test it) unless L2LAB_FASTPATH=0.
# `up` (re)writes them; edit /run/l2lab/NAME.toml by hand between `up` and
# `start` to try something else. A missing example is not an error: `start`
# says so then.
render_config() {
    local box=$1 template=$2 out="$STATE/$1.toml" tmp enabled=true
    if [[ ! -f $template ]]; then
        rm -f "$out"
        return 0
    fi
    [[ ${L2LAB_FASTPATH:-1} == 0 ]] && enabled=false
    tmp="$out.tmp"
    cp "$template" "$tmp"
    # The state goes under /run/l2lab whatever the example says; the keys
    # are matched at the start of a line, the values replaced whole, and
    # `enabled` only in [dataplane] ([ha] has one too).
    sed -i -E \
        -e "s|^([[:space:]]*socket[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$STATE/$box.sock\"|" \
        -e "s|^([[:space:]]*users[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$STATE/users\"|" \
        -e "/^[[:space:]]*\\[dataplane\\]/,/^[[:space:]]*\\[/ s|^([[:space:]]*enabled[[:space:]]*=[[:space:]]*)[a-z]+|\\1$enabled|" \
        "$tmp"
    if [[ $box == lns2 ]]; then
        sed -i -E \
            -e 's/10\.0\.0\.11([^0-9]|$)/10.0.0.12\1/g' \
            -e 's/10\.1\.0\.11([^0-9]|$)/10.1.0.12\1/g' \
            -e 's|100\.64\.0\.0/22|100.64.4.0/22|g' \
            -e 's/100\.64\.0\.1([^0-9]|$)/100.64.4.1\1/g' \
            -e 's/lns1/lns2/g' \
            "$tmp"
    fi
    if [[ ${L2LAB_HA:-0} == 1 ]]; then
        ha_section "$box" "$tmp"
    fi
    if [[ ${L2LAB_RT_PRIORITY:-0} != 0 ]]; then
        sed -i -E "/^[[:space:]]*\\[control\\]/a realtime_priority = $L2LAB_RT_PRIORITY" "$tmp"
    fi
    chmod 600 "$tmp"
    mv -f "$tmp" "$out"
}

# The secret lns1 and lns2 share for their HA control connection.
HA_SECRET=l2lab-ha

# ha_section BOX FILE: replace whatever [ha] the example has (the [ha]
# table and its sub-tables such as [[ha.peers]]) with the lab's.
ha_section() {
    local box=$1 file=$2 peer
    awk '/^[[:space:]]*\[/ { skip = ($0 ~ /^[[:space:]]*\[\[?[[:space:]]*ha[].[:space:]]/) } !skip' \
        "$file" >"$file.ha"
    mv -f "$file.ha" "$file"
    case $box in
    lns1 | lns2)
        if [[ $box == lns1 ]]; then peer=10.0.0.12; else peer=10.0.0.11; fi
        # Each LNS peers the other (offload, adoption, fencing) and
        # advertises it to the LAC in SCCRP (advertise defaults to the
        # peers).
        cat >>"$file" <<EOF

# lab (deploy/lab.sh, L2LAB_HA=1): peer the other LNS.
[ha]

[[ha.peers]]
address = "$peer"
secret = "$HA_SECRET"
EOF
        ;;
    lac)
        if [[ ${L2LAB_HA_STANDBY:-0} == 1 ]]; then
            # lns2 is the standby: the [[lns]] entry after its address
            # gets preference 1.
            awk '/^[[:space:]]*address[[:space:]]*=[[:space:]]*"10\.0\.0\.12:/ { standby = 1 }
                 standby && /^[[:space:]]*preference[[:space:]]*=/ { $0 = "preference = 1"; standby = 0 }
                 { print }' "$file" >"$file.ha"
            mv -f "$file.ha" "$file"
        fi
        # Failure detection within 300 ms: a Hello every 100 ms toward
        # each LNS, the LNS dead after 300 ms of silence.
        cat >>"$file" <<EOF

# lab (deploy/lab.sh, L2LAB_HA=1): fast failure detection.
[ha]
enabled = true
hello_ms = ${L2LAB_HA_HELLO_MS:-100}
dead_ms = ${L2LAB_HA_DEAD_MS:-300}
EOF
        ;;
    esac
}

write_configs() {
    render_config lns1 "$EXAMPLES/lnsd.toml"
    render_config lns2 "$EXAMPLES/lnsd.toml"
    render_config lac "$EXAMPLES/lacd.toml"
}

# --- down ---------------------------------------------------------------------

# Ends every process still inside NS: a namespace with a process in it only
# loses its name on `ip netns del`, and would live on with its interfaces.
kill_inside() {
    local ns=$1 pids i
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < STOP_GRACE * 10; i++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -n $pids ]] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

down() {
    need_root
    local box ns
    for box in "${BOXES[@]}"; do
        stop_box "$box" quiet
    done
    for ns in "${NAMESPACES[@]}"; do
        if ns_exists "$ns"; then
            kill_inside "$ns"
            # Deleting the namespace deletes its veth ends, and with them
            # their peers in the other namespaces.
            ip netns del "$ns"
        fi
    done
    rm -rf "$STATE"
    say "down"
}

# --- status -------------------------------------------------------------------

status() {
    need_root
    local ns any=0 box
    for ns in "${NAMESPACES[@]}"; do
        if ! ns_exists "$ns"; then
            printf '%-11s absent\n' "$ns"
            continue
        fi
        any=1
        printf '%s\n' "$ns"
        ip -n "$ns" -br link show | sed 's/^/    link  /'
        ip -n "$ns" -br -4 addr show | awk 'NF > 2' | sed 's/^/    addr  /'
        ip -n "$ns" -4 route show | sed 's/^/    route /'
    done
    for box in "${BOXES[@]}"; do
        local pid
        if pid=$(box_pid "$box"); then
            printf 'daemon %-5s running (pid %s, log %s)\n' "$box" "$pid" "$STATE/$box.log"
        elif [[ -f $STATE/$box.toml ]]; then
            printf 'daemon %-5s stopped (config %s)\n' "$box" "$STATE/$box.toml"
        fi
    done
    if [[ $any -eq 0 ]]; then
        echo "the lab is down"
    fi
    for box in "${BOXES[@]}"; do
        if [[ -f $STATE/$box.toml ]] && grep -q '^\[ha\]' "$STATE/$box.toml"; then
            printf 'ha     %-5s [ha] configured\n' "$box"
        fi
    done
}

# --- daemons ------------------------------------------------------------------

box_ns() { printf 'l2lab-%s\n' "$1"; }
box_daemon() { if [[ $1 == lac ]]; then echo lacd; else echo lnsd; fi; }

valid_box() {
    local box=$1 b
    for b in "${BOXES[@]}"; do
        [[ $b == "$box" ]] && return 0
    done
    die "no box \"$box\": one of ${BOXES[*]}"
}

# The binary of a daemon: $LNSD/$LACD, else this checkout's release build,
# else PATH.
daemon_binary() {
    local daemon=$1 var path
    var=$(tr '[:lower:]' '[:upper:]' <<<"$daemon")
    path=${!var:-}
    if [[ -z $path ]]; then
        path="${CARGO_TARGET_DIR:-$ROOT/target}/release/$daemon"
        [[ -x $path ]] || path=$(command -v "$daemon" || true)
    fi
    [[ -n $path && -x $path ]] ||
        die "no $daemon binary: cargo build --release -p controlplane --bins, or set $var"
    printf '%s\n' "$path"
}

# The pid of BOX's daemon if it runs. The pid file alone is not trusted (the
# pid may have been reused): the process must be ours, run with our config.
box_pid() {
    local box=$1 pid
    [[ -f $STATE/$box.pid ]] || return 1
    pid=$(<"$STATE/$box.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "--config $STATE/$box.toml" ||
        return 1
    printf '%s\n' "$pid"
}

start_box() {
    need_root
    local box=$1 ns daemon binary config pid i
    valid_box "$box"
    ns=$(box_ns "$box")
    ns_exists "$ns" || die "the lab is down: deploy/lab.sh up first"
    if pid=$(box_pid "$box"); then
        say "$box already running (pid $pid)"
        return 0
    fi
    daemon=$(box_daemon "$box")
    binary=$(daemon_binary "$daemon")
    config="$STATE/$box.toml"
    # Written now if `up` found no example then.
    [[ -f $config ]] || write_configs
    [[ -f $config ]] || die "no config for $box: deploy/examples/$daemon.toml is missing"
    rm -f "$STATE/$box.sock"
    # A session of its own (setsid), so that the daemon and anything it
    # starts form one process group that `stop` signals as a whole, and a
    # Ctrl-C in this terminal does not reach it.
    # RUST_LOG only when the caller set it: it wins over the config's log.
    local log_filter=()
    [[ -n ${RUST_LOG:-} ]] && log_filter=("RUST_LOG=$RUST_LOG")
    setsid ip netns exec "$ns" env ${log_filter[@]+"${log_filter[@]}"} \
        "$binary" --config "$config" </dev/null >>"$STATE/$box.log" 2>&1 &
    pid=$!
    echo "$pid" >"$STATE/$box.pid"
    # Ready when its control socket is there; dead if it exited meanwhile.
    for ((i = 0; i < START_WAIT * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$STATE/$box.pid"
            tail -n 20 "$STATE/$box.log" >&2 || true
            die "$box ($daemon) exited at start; log: $STATE/$box.log"
        fi
        [[ -S $STATE/$box.sock ]] && break
        sleep 0.1
    done
    [[ -S $STATE/$box.sock ]] || say "warning: $box runs but has no control socket $STATE/$box.sock after ${START_WAIT}s"
    say "$box started (pid $pid, log $STATE/$box.log)"
}

# stop_box BOX [quiet]: SIGTERM to the daemon's process group, up to
# STOP_GRACE seconds for it to exit (it closes its tunnels cleanly), then
# SIGKILL.
stop_box() {
    local box=$1 quiet=${2:-} pid i
    valid_box "$box"
    if ! pid=$(box_pid "$box"); then
        rm -f "$STATE/$box.pid"
        [[ -n $quiet ]] || say "$box not running"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_GRACE * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$box did not exit within ${STOP_GRACE}s of SIGTERM: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$box.pid" "$STATE/$box.sock"
    [[ -n $quiet ]] || say "$box stopped"
}

# --- main ---------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
command=$1
shift
case $command in
up) up ;;
down) down ;;
status) status ;;
exec)
    [[ $# -ge 2 ]] || usage
    need_root
    ns=$(ns_name "$1")
    shift
    ns_exists "$ns" || die "no namespace $ns: deploy/lab.sh up first"
    exec ip netns exec "$ns" "$@"
    ;;
start | stop)
    [[ $# -ge 1 ]] || usage
    need_root
    for box in "$@"; do
        if [[ $command == start ]]; then start_box "$box"; else stop_box "$box"; fi
    done
    ;;
*) usage ;;
esac

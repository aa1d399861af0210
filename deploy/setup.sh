#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the demo need.
# Idempotent; needs root (the tests build network namespaces, so they need it too).
set -euo pipefail

packages=(
    # xsk-rs / libbpf build and the XDP program
    clang llvm libelf-dev zlib1g-dev libpcap-dev pkg-config m4
    # the lab and the tests
    iproute2 nftables procps ethtool
    # the instruction-count gate of the fast path (bench/gate.sh)
    valgrind
    # real peers and the dissector we check our packets with
    tshark xl2tpd l2tpns freeradius
    # real PPPoE clients (rp-pppoe's pppoe, and pppoe-discovery from ppp) and
    # python3 for the packet-socket bridge their interop test runs them through
    pppoe ppp python3
)

if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/setup.sh: run as root (apt-get, network namespaces)" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; the answer does not matter here.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian packages start their services; the tests run private instances.
for svc in xl2tpd l2tpns freeradius; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done

command -v cargo >/dev/null || { echo "deploy/setup.sh: a Rust toolchain (cargo) is required: https://rustup.rs" >&2; exit 1; }
echo "deploy/setup.sh: ready"

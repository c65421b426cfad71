#!/usr/bin/env bash
# Install tcpdump and iproute2 (ip netns, veth) from Debian if missing; idempotent.
# Used by the traffic integration tests (tests/integration/traffic) and `pymirror mirror pcap:-`.
set -euo pipefail
missing=()
command -v tcpdump >/dev/null 2>&1 || [[ -x /usr/sbin/tcpdump ]] || missing+=(tcpdump)
command -v ip >/dev/null 2>&1 || [[ -x /usr/sbin/ip ]] || missing+=(iproute2)
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
PATH="$PATH:/usr/sbin:/sbin"
tcpdump --version 2>&1 | sed -n 1p  # not head: see install-kube-apiserver.sh
ip -V

#!/usr/bin/env bash
# Model transfer on a link of a given line rate: `mcdnn-chaos bench transfer` (the node's shard
# fetch against one raw QUIC stream, rounds alternating, both over loopback) with the loopback
# interface shaped by a token bucket to RATE (tc's syntax; default 1gbit). The shaping is
# removed on exit. Unshaped, both ends share this machine's cores and the bench compares CPU
# costs; shaped, it shows whether the shard path keeps a real link full.
#
# Usage: scripts/bench-transfer-link.sh [RATE] [extra mcdnn-chaos bench transfer arguments]
# Needs root (CAP_NET_ADMIN) and tc, and shapes ALL loopback traffic while it runs: run it
# alone. Refuses to touch a loopback that already has a root qdisc. Build first:
# cargo build --release --workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-1gbit}"
shift || true
chaos=target/release/mcdnn-chaos
[ -x "$chaos" ] || { echo "bench-transfer-link: $chaos is not built (cargo build --release --workspace)" >&2; exit 1; }
command -v tc >/dev/null || { echo "bench-transfer-link: tc is missing (apt install iproute2)" >&2; exit 1; }
if tc qdisc show dev lo | grep -qv "noqueue"; then
  echo "bench-transfer-link: lo already has a qdisc; not touching it:" >&2
  tc qdisc show dev lo >&2
  exit 1
fi
# A bucket of 1 MB (about 8 ms at 1 Gbit/s) and at most 20 ms of queue, as a switch port.
tc qdisc add dev lo root tbf rate "$rate" burst 1mb latency 20ms
trap 'tc qdisc del dev lo root 2>/dev/null || true' EXIT
echo "bench-transfer-link: loopback shaped to $rate" >&2
"$chaos" --json bench transfer "$@"

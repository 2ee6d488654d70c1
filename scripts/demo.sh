#!/usr/bin/env bash
# Sets up a fresh machine (idempotently), builds, and runs the main job: a local fleet of a
# coordinator and node agents over QUIC with mutual TLS, doing real ONNX inference on
# Fashion-MNIST, with a live view and a summary. Extra arguments go to `mcdnnctl demo`
# (e.g. --nodes 5 --duration 60s --json).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --workspace --quiet
exec ./target/release/mcdnnctl demo "$@"

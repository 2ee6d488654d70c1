#!/usr/bin/env bash
# Sets up a fresh machine (idempotently), builds, and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --workspace --quiet
exec ./target/release/mcdnn-node catalog eval "$@"

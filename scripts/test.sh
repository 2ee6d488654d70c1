#!/usr/bin/env bash
# Sets up a fresh machine (idempotently) and runs every check and test the project has.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast

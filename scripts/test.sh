#!/usr/bin/env bash
# The project's test command (README, CI): build the binaries the end-to-end tests start,
# then run every test in the workspace. --locked: Cargo.lock is part of the reproducible build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"

#!/usr/bin/env bash
# The project's test command (README, CI): build the binaries the end-to-end tests start,
# then run every test in the workspace. --locked: Cargo.lock is part of the reproducible build.
set -euo pipefail
cd "$(dirname "$0")/.."
# The etcd store's tests start a real etcd (Debian's etcd-server); installed here when it can be.
if ! command -v etcd >/dev/null 2>&1 && [ -z "${EKMS_ETCD:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null
  else
    printf 'test.sh: etcd is not installed; the etcd store tests will fail (apt-get install etcd-server, or EKMS_ETCD=/path/to/etcd)\n' >&2
  fi
fi
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"

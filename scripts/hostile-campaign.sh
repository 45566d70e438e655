#!/usr/bin/env bash
# A longer random campaign of the hostile-parent harness (tests/tests/hostile_parent.rs):
# ITERATIONS runs (default 10) of the ignored `random_campaign` test, each with its own seed,
# each a fresh deployment through the hostile store-channel proxy for ROUNDS rounds (workload
# under hostile commits, restart under a hostile load, invariants checked). The seeds follow
# from SEED (default: from the clock), so a whole campaign replays from its first seed. Prints
# the seed of every failing run, and how to replay it; exits non-zero if any failed.
#
#   scripts/hostile-campaign.sh                  # 10 runs, seeds from the clock
#   scripts/hostile-campaign.sh 50 1234          # 50 runs from seed 1234
#   ROUNDS=12 scripts/hostile-campaign.sh 5      # longer runs
#
# Environment: ROUNDS (rounds per run, default 6), EKMS_HOSTILE_UNSTORED=1 (the parent also
# stores records of commits it refused: finds the known generation-reuse bug), KEEP_LOGS=1
# (keep every run's output in target/hostile-campaign/, not only the failing ones'),
# CARGO_TARGET_DIR as cargo reads it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

iterations=${1:-10}
seed=${2:-$(date +%s)}
rounds=${ROUNDS:-6}
if [[ ! $iterations =~ ^[0-9]+$ ]] || [[ ! $seed =~ ^[0-9]+$ ]] || [[ ! $rounds =~ ^[0-9]+$ ]]; then
    printf 'usage: scripts/hostile-campaign.sh [ITERATIONS] [SEED]   (ROUNDS=N in the environment)\n' >&2
    exit 2
fi

# The end-to-end tests run the built binaries; build them and the test first, once.
cargo build --workspace --bins
cargo test -p ekms-tests --test hostile_parent --no-run

logs=${CARGO_TARGET_DIR:-target}/hostile-campaign
mkdir -p "$logs"
failed=()
for ((i = 0; i < iterations; i++)); do
    run_seed=$((seed + i))
    log="$logs/seed-$run_seed.log"
    start=$(date +%s)
    if EKMS_HOSTILE_SEED=$run_seed EKMS_HOSTILE_ROUNDS=$rounds \
        cargo test -q -p ekms-tests --test hostile_parent random_campaign -- \
        --ignored --exact --nocapture >"$log" 2>&1; then
        printf 'hostile-campaign: run %d/%d seed %d ok (%ds)\n' \
            $((i + 1)) "$iterations" "$run_seed" $(($(date +%s) - start))
        [[ -n "${KEEP_LOGS:-}" ]] || rm -f "$log"
    else
        printf 'hostile-campaign: run %d/%d seed %d FAILED (%ds), log: %s\n' \
            $((i + 1)) "$iterations" "$run_seed" $(($(date +%s) - start)) "$log"
        grep -m1 -A3 "panicked at" "$log" | sed 's/^/    /' || true
        failed+=("$run_seed")
    fi
done

if ((${#failed[@]} > 0)); then
    printf '\nhostile-campaign: %d of %d runs failed; seeds: %s\n' \
        "${#failed[@]}" "$iterations" "${failed[*]}"
    printf 'replay one with:\n  EKMS_HOSTILE_SEED=%s EKMS_HOSTILE_ROUNDS=%s cargo test -p ekms-tests --test hostile_parent random_campaign -- --ignored --exact --nocapture\n' \
        "${failed[0]}" "$rounds"
    exit 1
fi
printf 'hostile-campaign: %d runs ok (seeds %d..%d, %d rounds each)\n' \
    "$iterations" "$seed" $((seed + iterations - 1)) "$rounds"

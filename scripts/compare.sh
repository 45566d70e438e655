#!/usr/bin/env bash
# Compares two builds of ekms by the same-run ratio to the baseline, interleaved.
#
# On a shared or virtual machine the speed drifts by more than most changes are worth, so two
# builds measured one after the other differ by ±15% with no change at all. `ekms bench
# --baseline` measures ekms and a bare baseline in alternating slices of one run, so the ratio
# of the two cancels most of the drift; this script takes that ratio for each build, alternating
# builds round by round, and prints every ratio and the mean per build.
#
#   scripts/compare.sh DIR_A DIR_B [ROUNDS]
#
# DIR_A and DIR_B each hold a release build's ekms, ekms-enclave and ekms-parent (copy them out
# of target/release after each build). ROUNDS defaults to 4. Knobs (environment):
#   COMPARE_OP           operation (default encrypt)
#   COMPARE_CONNECTIONS  connections (default 64)
#   COMPARE_DURATION     seconds per run, for ekms and again for the baseline (default 6)
#   COMPARE_TLS          1 for HTTPS (default 0)
#   COMPARE_PORT         loopback port (default 4631)
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
dirs=("$1" "$2")
rounds=${3:-4}
op=${COMPARE_OP:-encrypt}
connections=${COMPARE_CONNECTIONS:-64}
duration=${COMPARE_DURATION:-6}
tls=${COMPARE_TLS:-0}
port=${COMPARE_PORT:-4631}
for dir in "${dirs[@]}"; do
	for bin in ekms ekms-enclave ekms-parent; do
		[ -x "$dir/$bin" ] || { echo "compare.sh: $dir/$bin is missing" >&2; exit 2; }
	done
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ekms-compare.XXXXXX")
dev_pid=
stop_dev() {
	if [ -n "$dev_pid" ]; then
		kill -TERM "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
		dev_pid=
	fi
}
trap 'stop_dev; rm -rf "$work"' EXIT

# run DIR: one fresh `ekms dev` from DIR, one `ekms bench --baseline`; prints the ratio.
run() {
	local dir=$1 data="$work/data" scheme=http
	local dev_args=() bench_args=()
	rm -rf "$data"
	if [ "$tls" = 1 ]; then
		scheme=https
		dev_args=(--tls)
		bench_args=(--tls --ca "$data/ca.pem")
	fi
	"$dir/ekms" dev --listen "127.0.0.1:$port" --data-dir "$data" "${dev_args[@]}" \
		>"$work/dev.log" 2>&1 &
	dev_pid=$!
	for _ in $(seq 1 240); do
		grep -q "ekms dev is ready" "$work/dev.log" 2>/dev/null && break
		if ! kill -0 "$dev_pid" 2>/dev/null; then
			cat "$work/dev.log" >&2
			echo "compare.sh: ekms dev from $dir exited before it was ready" >&2
			exit 1
		fi
		sleep 0.25
	done
	grep -q "ekms dev is ready" "$work/dev.log" || {
		echo "compare.sh: ekms dev from $dir not ready after 60 s" >&2
		exit 1
	}
	AWS_SHARED_CREDENTIALS_FILE="$data/credentials" AWS_PROFILE=ekms AWS_DEFAULT_REGION=us-east-1 \
		"$dir/ekms" bench --endpoint "$scheme://127.0.0.1:$port" --op "$op" --size 4096 \
		--connections "$connections" --duration "$duration" "${bench_args[@]}" --baseline --json \
		>"$work/bench.json"
	stop_dev
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if d["errors"]:
    sys.exit("compare.sh: %d errors in the run" % d["errors"])
print("%.4f %.0f %.0f" % (d["requests_per_sec"] / d["baseline_requests_per_sec"],
                          d["requests_per_sec"], d["baseline_requests_per_sec"]))
' "$work/bench.json"
}

echo "compare.sh: $op, $connections connections, $([ "$tls" = 1 ] && echo TLS || echo plain), $rounds rounds" >&2
results="$work/results"
: >"$results"
for round in $(seq 1 "$rounds"); do
	for i in 0 1; do
		line=$(run "${dirs[$i]}")
		echo "$i $line" >>"$results"
		read -r ratio ekms base <<<"$line"
		printf 'round %d  %-30s ratio %s  (ekms %s, baseline %s req/s)\n' \
			"$round" "${dirs[$i]}" "$ratio" "$ekms" "$base"
	done
done
python3 - "$results" "${dirs[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for i, name in enumerate(sys.argv[2:4]):
    ratios = [float(r[1]) for r in rows if r[0] == str(i)]
    spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    print(f"{name}: mean ratio {statistics.mean(ratios):.3f} (sd {spread:.3f}, n {len(ratios)})")
PY

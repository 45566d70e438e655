#!/usr/bin/env bash
# Checks the Nitro deployment files without Docker, nitro-cli or a Nitro instance:
#   1. bash -n and shellcheck on the scripts (the deployment ones must be clean);
#   2. systemd-analyze verify on ekms-parent.service and ekms-join.service (when
#      systemd-analyze exists);
#   3. the enclave entrypoint that scripts/enclave.Dockerfile generates: extracted, run
#      with the image's ENV against a stand-in binary, its flags compared;
#   4. build-eif.sh and run-enclave.sh against stand-in docker and nitro-cli commands:
#      pcrs.json must come out in the flat form `ekms init --expect-pcrs` reads, and
#      run-enclave.sh must pass the expected nitro-cli flags.
# What it cannot check: that docker builds the image, that nitro-cli accepts it, or that
# the enclave boots. Those need a Nitro-enabled instance (docs/nitro.md).
#
#   scripts/check-scripts.sh         # needs bash, shellcheck, jq, python3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
    printf 'check-scripts: FAIL: %s\n' "$*" >&2
    exit 1
}
ok() {
    printf 'check-scripts: ok: %s\n' "$*"
}

command -v shellcheck >/dev/null 2>&1 || fail "shellcheck not found (apt-get install -y shellcheck)"
command -v jq >/dev/null 2>&1 || fail "jq not found (apt-get install -y jq)"
command -v python3 >/dev/null 2>&1 || fail "python3 not found"

tmp=$(mktemp -d)
trap '[[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"' EXIT

# 1. Syntax and lint: the deployment scripts strictly (every shellcheck severity); the
#    other scripts/*.sh (bench.sh, test.sh, ...) only reported, at warning level and up.
deploy=(scripts/build-eif.sh scripts/run-enclave.sh scripts/check-scripts.sh)
for script in "${deploy[@]}"; do
    bash -n "$script" || fail "bash -n $script"
    shellcheck --shell=bash "$script" || fail "shellcheck $script"
done
ok "bash -n and shellcheck: ${deploy[*]}"
for script in scripts/*.sh; do
    [[ " ${deploy[*]} " == *" $script "* ]] && continue
    if bash -n "$script" && shellcheck --shell=bash --severity=warning "$script" >/dev/null; then
        ok "bash -n and shellcheck --severity=warning: $script"
    else
        printf 'check-scripts: note: %s has shellcheck warnings (not a deployment script)\n' "$script"
    fi
done

# 2. The systemd unit (the binary is not installed here: point ExecStart at true).
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s#/usr/local/bin/ekms-parent#$(command -v true)#" scripts/ekms-parent.service \
        >"$tmp/ekms-parent.service"
    systemd-analyze verify "$tmp/ekms-parent.service" || fail "systemd-analyze verify"
    ok "systemd-analyze verify scripts/ekms-parent.service"
    sed "s#/usr/local/bin/ekms #$(command -v true) #" scripts/ekms-join.service \
        >"$tmp/ekms-join.service"
    systemd-analyze verify "$tmp/ekms-join.service" || fail "systemd-analyze verify"
    ok "systemd-analyze verify scripts/ekms-join.service"
else
    printf 'check-scripts: skipped: systemd-analyze not found\n'
fi

# 3. The generated entrypoint, with the ENV defaults of the Dockerfile.
python3 - scripts/enclave.Dockerfile "$tmp" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
start = text.index("RUN printf '%s\\n'")
end = text.index("> /out/usr/local/bin/ekms-enclave-entrypoint", start)
lines = re.findall(r"'([^']*)'", text[start:end])[1:]  # skip the '%s\n' format
open(sys.argv[2] + "/entrypoint", "w").write("\n".join(lines) + "\n")
env = {}
block = text[text.index("ENV EKMS_LISTEN_CID"):]
block = block[:block.index("\n\n")]
args = {m[0]: m[1] or m[2]
        for m in re.findall(r'^ARG (EKMS_\w+)=(?:"([^"]*)"|(\S+))', text, re.M)}
for name, value in re.findall(r'(EKMS_\w+)=("[^"]*"|\S+)', block):
    value = value.strip('"')
    value = re.sub(r'\$\{(\w+)\}', lambda m: args[m.group(1)], value)
    env[name] = value
with open(sys.argv[2] + "/entrypoint.env", "w") as f:
    for k, v in env.items():
        f.write(f"{k}={v}\n")
EOF
cat >"$tmp/show-args" <<'EOF'
#!/bin/sh
for a; do printf '%s\n' "$a"; done
EOF
chmod +x "$tmp/show-args"
sed "s#exec /usr/local/bin/ekms-enclave #exec $tmp/show-args #" "$tmp/entrypoint" >"$tmp/entrypoint.test"
grep -q "show-args" "$tmp/entrypoint.test" || fail "the entrypoint does not exec /usr/local/bin/ekms-enclave"
env_args=()
while IFS= read -r line; do env_args+=("$line"); done <"$tmp/entrypoint.env"
got=$(env -i "${env_args[@]}" /bin/sh "$tmp/entrypoint.test" | paste -sd' ')
want="--listen vsock://4294967295:5000 --store vsock://3:5001 --region us-east-1 --account 111122223333 --tls-name localhost --tls-name 127.0.0.1 --tls-name ::1"
[[ "$got" == "$want" ]] || fail "entrypoint flags: got '$got', want '$want'"
if env -i /bin/sh "$tmp/entrypoint.test" >/dev/null 2>&1; then
    fail "the entrypoint ran without its environment"
fi
ok "enclave entrypoint: $got"

# 4. build-eif.sh and run-enclave.sh against stand-ins.
mkdir -p "$tmp/bin" "$tmp/out"
cat >"$tmp/bin/docker" <<'EOF'
#!/usr/bin/env bash
printf 'docker %s\n' "$*" >>"$STUB_LOG"
case "$1" in
info) exit 0 ;;
build) exit 0 ;;
image) echo "sha256:stub" ;;
*) exit 1 ;;
esac
EOF
cat >"$tmp/bin/nitro-cli" <<'EOF'
#!/usr/bin/env bash
printf 'nitro-cli %s\n' "$*" >>"$STUB_LOG"
state="$STUB_DIR/enclaves.json"
[[ -f "$state" ]] || echo '[]' >"$state"
case "$1" in
build-enclave)
    while (($#)); do [[ "$1" == --output-file ]] && out=$2; shift; done
    echo "EIF" >"$out"
    echo "Start building the Enclave Image..." >&2
    echo "Enclave Image successfully created." >&2
    p0=$(printf 'a%.0s' {1..96}); p1=$(printf 'b%.0s' {1..96}); p2=$(printf 'c%.0s' {1..96})
    printf '{\n  "Measurements": {\n    "HashAlgorithm": "Sha384 { ... }",\n    "PCR0": "%s",\n    "PCR1": "%s",\n    "PCR2": "%s"\n  }\n}\n' "$p0" "$p1" "$p2"
    ;;
describe-enclaves) cat "$state" ;;
terminate-enclave) echo '[]' >"$state" ;;
run-enclave)
    while (($#)); do
        case "$1" in --enclave-name) n=$2 ;; --enclave-cid) c=$2 ;; esac
        shift
    done
    printf '[{"EnclaveName":"%s","EnclaveID":"i-stub-enc","EnclaveCID":%s,"State":"RUNNING","Flags":"NONE"}]\n' "$n" "$c" >"$state"
    cat "$state"
    ;;
*) exit 1 ;;
esac
EOF
chmod +x "$tmp/bin/docker" "$tmp/bin/nitro-cli"
export STUB_LOG="$tmp/calls.log" STUB_DIR="$tmp"

PATH="$tmp/bin:$PATH" OUT_DIR="$tmp/out" ALLOW_DIRTY=1 TLS_NAMES="kms.example.com 10.0.0.5" \
    scripts/build-eif.sh >"$tmp/build.out" 2>&1 || { cat "$tmp/build.out"; fail "build-eif.sh with stand-ins"; }
jq -e 'keys == ["PCR0", "PCR1", "PCR2"] and (.PCR0 | test("^a{96}$"))' "$tmp/out/pcrs.json" >/dev/null ||
    fail "pcrs.json is not {PCR0, PCR1, PCR2}: $(cat "$tmp/out/pcrs.json")"
grep -q -- '--build-arg EKMS_TLS_NAMES=kms.example.com 10.0.0.5' "$STUB_LOG" || fail "TLS_NAMES did not reach docker build"
grep -q -- 'nitro-cli build-enclave --docker-uri ekms-enclave:' "$STUB_LOG" || fail "nitro-cli build-enclave not called"
ok "build-eif.sh: pcrs.json $(jq -c 'map_values(.[:8] + "...")' "$tmp/out/pcrs.json")"

PATH="$tmp/bin:$PATH" EIF="$tmp/out/ekms.eif" CID=21 MEMORY=3072 CPUS=4 \
    scripts/run-enclave.sh >"$tmp/run.out" 2>&1 || { cat "$tmp/run.out"; fail "run-enclave.sh with stand-ins"; }
grep -q -- "nitro-cli run-enclave --enclave-name ekms --eif-path $tmp/out/ekms.eif --memory 3072 --cpu-count 4 --enclave-cid 21\$" "$STUB_LOG" ||
    fail "run-enclave.sh flags: $(grep run-enclave "$STUB_LOG")"
if PATH="$tmp/bin:$PATH" EIF="$tmp/out/ekms.eif" scripts/run-enclave.sh >/dev/null 2>&1; then
    fail "run-enclave.sh started a second enclave of the same name"
fi
PATH="$tmp/bin:$PATH" EIF="$tmp/out/ekms.eif" CID=21 DEBUG=1 REPLACE=1 \
    scripts/run-enclave.sh >"$tmp/debug.out" 2>&1 || true
grep -q 'DEBUG MODE' "$tmp/debug.out" || fail "DEBUG=1 printed no warning"
grep -q -- '--enclave-cid 21 --debug-mode$' "$STUB_LOG" || fail "DEBUG=1 did not pass --debug-mode"
if PATH="$tmp/bin:$PATH" EIF="$tmp/out/ekms.eif" CID=3 REPLACE=1 scripts/run-enclave.sh >/dev/null 2>&1; then
    fail "run-enclave.sh accepted CID 3 (the parent)"
fi
ok "run-enclave.sh: nitro-cli flags, no duplicate, DEBUG warning, CID check"

# Missing tools: a clear error, not a bash one.
mkdir -p "$tmp/empty"
ln -s "$(command -v jq)" "$tmp/empty/jq"
for tool in dirname git sed mkdir; do ln -sf "$(command -v "$tool")" "$tmp/empty/$tool"; done
msg=$(PATH="$tmp/empty" "$BASH" scripts/build-eif.sh 2>&1) && fail "build-eif.sh ran without docker"
[[ "$msg" == *"docker not found"* ]] || fail "build-eif.sh without docker said: $msg"
msg=$(PATH="$tmp/empty" "$BASH" scripts/run-enclave.sh 2>&1) && fail "run-enclave.sh ran without nitro-cli"
[[ "$msg" == *"nitro-cli not found"* ]] || fail "run-enclave.sh without nitro-cli said: $msg"
ok "missing docker / nitro-cli: clear errors"

echo "check-scripts: all passed (docker, nitro-cli and the enclave itself are not exercised here)"

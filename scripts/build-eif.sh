#!/usr/bin/env bash
# Builds the ekms enclave image file (EIF) and the PCRs custodians pin.
#
#   scripts/build-eif.sh                      # writes ./ekms.eif, ./pcrs.json, ./ekms.eif.json
#   OUT_DIR=dist TLS_NAMES="kms.internal.example.com" scripts/build-eif.sh
#
# Steps: `docker build -f scripts/enclave.Dockerfile`, then `nitro-cli build-enclave`, whose
# JSON output is kept as ekms.eif.json and reduced to pcrs.json:
#   {"PCR0": "hex", "PCR1": "hex", "PCR2": "hex"}        (plus "PCR8" for a signed EIF)
# the file `ekms init --expect-pcrs` and `ekms unseal --expect-pcrs` read.
#
# Needs docker (a running engine), nitro-cli (aws-nitro-enclaves-cli) and jq: in practice a
# Nitro-enabled EC2 instance or any Linux machine with those installed (build-enclave does
# not need enclave support, only its blobs under /usr/share/nitro_enclaves/blobs).
#
# Environment (all optional):
#   OUT_DIR            where ekms.eif, ekms.eif.json and pcrs.json go         [.]
#   IMAGE              docker tag to build                [ekms-enclave:<git short hash>]
#   TLS_NAMES          names/addresses for the boot TLS certificate, space-separated
#                      [the Dockerfile's default: localhost 127.0.0.1 ::1]
#   REGION, ACCOUNT    region and 12-digit account id in ARNs     [us-east-1, 111122223333]
#   SOURCE_DATE_EPOCH  timestamps in the image                         [the commit's time]
#   SIGNING_CERT, SIGNING_KEY
#                      sign the EIF (nitro-cli --signing-certificate/--private-key);
#                      adds PCR8 (the signing certificate's hash) to pcrs.json
#   DOCKER_BUILD_ARGS  extra arguments for docker build, word-split (e.g. "--no-cache")
#   ALLOW_DIRTY=1      build from a checkout with uncommitted changes anyway
#
# Every value baked into the image (TLS_NAMES, REGION, ACCOUNT) changes PCR0 and PCR2.
set -euo pipefail

die() {
    printf 'build-eif.sh: error: %s\n' "$*" >&2
    exit 1
}
note() {
    printf 'build-eif.sh: %s\n' "$*" >&2
}
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH. $2"
}

need docker "Install Docker and start the engine (Amazon Linux 2023: dnf install docker && systemctl enable --now docker)."
need nitro-cli "Install the AWS Nitro Enclaves CLI (Amazon Linux 2023: dnf install aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel)."
need jq "Install jq (dnf install jq / apt-get install jq)."
docker info >/dev/null 2>&1 ||
    die "docker cannot reach an engine (is the daemon running, and may this user use it? try: sudo usermod -aG docker \"\$USER\")"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dockerfile="$repo/scripts/enclave.Dockerfile"
[[ -f "$dockerfile" ]] || die "$dockerfile is missing"
[[ -f "$repo/Cargo.lock" ]] || die "$repo/Cargo.lock is missing: the enclave is built with --locked"

out_dir=${OUT_DIR:-.}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
eif="$out_dir/ekms.eif"
build_json="$out_dir/ekms.eif.json"
pcrs="$out_dir/pcrs.json"

commit=unknown
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    commit=$(git -C "$repo" rev-parse HEAD)
    if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no -- Cargo.toml Cargo.lock shared enclave parent cli tests scripts/enclave.Dockerfile)" ]]; then
        if [[ "${ALLOW_DIRTY:-0}" == 1 ]]; then
            note "WARNING: uncommitted changes in the build inputs: these PCRs match no commit"
        else
            die "uncommitted changes in the build inputs (git status); the PCRs would match no commit anyone can rebuild. Commit, or set ALLOW_DIRTY=1 for a throwaway build."
        fi
    fi
    : "${SOURCE_DATE_EPOCH:=$(git -C "$repo" log -1 --format=%ct)}"
fi
[[ -n "${SOURCE_DATE_EPOCH:-}" ]] || die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970) for reproducible timestamps"
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds, got '$SOURCE_DATE_EPOCH'"
export SOURCE_DATE_EPOCH

image=${IMAGE:-ekms-enclave:${commit:0:12}}

build_args=(--build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH")
[[ -n "${TLS_NAMES:-}" ]] && build_args+=(--build-arg "EKMS_TLS_NAMES=$TLS_NAMES")
[[ -n "${REGION:-}" ]] && build_args+=(--build-arg "EKMS_REGION=$REGION")
if [[ -n "${ACCOUNT:-}" ]]; then
    [[ "$ACCOUNT" =~ ^[0-9]{12}$ ]] || die "ACCOUNT must be 12 digits, got '$ACCOUNT'"
    build_args+=(--build-arg "EKMS_ACCOUNT=$ACCOUNT")
fi
extra=()
if [[ -n "${DOCKER_BUILD_ARGS:-}" ]]; then
    read -r -a extra <<<"$DOCKER_BUILD_ARGS"
fi

note "building $image from $repo (commit $commit, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
docker build --file "$dockerfile" --tag "$image" "${build_args[@]}" "${extra[@]}" "$repo"

sign=()
if [[ -n "${SIGNING_CERT:-}${SIGNING_KEY:-}" ]]; then
    [[ -n "${SIGNING_CERT:-}" && -n "${SIGNING_KEY:-}" ]] || die "set both SIGNING_CERT and SIGNING_KEY, or neither"
    [[ -f "$SIGNING_CERT" ]] || die "SIGNING_CERT $SIGNING_CERT does not exist"
    [[ -f "$SIGNING_KEY" ]] || die "SIGNING_KEY $SIGNING_KEY does not exist"
    sign=(--signing-certificate "$SIGNING_CERT" --private-key "$SIGNING_KEY")
fi

note "nitro-cli build-enclave -> $eif"
rm -f "$eif" "$build_json" "$pcrs"
# nitro-cli prints its progress on stderr and the measurements as JSON on stdout.
raw=$(nitro-cli build-enclave --docker-uri "$image" --output-file "$eif" "${sign[@]}") ||
    die "nitro-cli build-enclave failed (see its message above; 'nitro-cli explain <code>' explains E-codes)"
[[ -s "$eif" ]] || die "nitro-cli build-enclave succeeded but wrote no $eif"

# Keep only the JSON, should a nitro-cli version print text lines before it on stdout.
json=$(printf '%s\n' "$raw" | sed -n '/^[[:space:]]*{/,$p')
printf '%s\n' "$json" | jq -e '.Measurements.PCR0' >/dev/null 2>&1 ||
    die "no Measurements in the nitro-cli output: $raw"
printf '%s\n' "$json" | jq . >"$build_json"

# The flat form `ekms init --expect-pcrs` reads (shared/src/attestation/policy.rs,
# pcr_set_from_json): PCR0 (whole image), PCR1 (kernel and boot ramdisk), PCR2 (the
# application), and PCR8 (signing certificate) when the EIF is signed.
jq '.Measurements
    | with_entries(select(.key | test("^PCR[0-9]+$")))
    | {PCR0, PCR1, PCR2} + (if .PCR8 then {PCR8} else {} end)' \
    "$build_json" >"$pcrs.tmp"
jq -e 'to_entries | all(.value | type == "string" and test("^[0-9a-f]{96}$"))' "$pcrs.tmp" >/dev/null ||
    die "unexpected PCR values (expected 48-byte SHA-384 hex): $(cat "$pcrs.tmp")"
if jq -e '.PCR0 | test("^0+$")' "$pcrs.tmp" >/dev/null; then
    die "PCR0 is all zero: that is what a debug-mode enclave reports, never a build"
fi
mv "$pcrs.tmp" "$pcrs"

note "done"
printf '  image      %s (%s)\n' "$image" "$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || echo '?')"
printf '  eif        %s (sha256 %s)\n' "$eif" "$(sha256sum "$eif" | cut -d' ' -f1)"
printf '  nitro-cli  %s\n' "$build_json"
printf '  pcrs       %s\n' "$pcrs"
jq . "$pcrs"
cat <<EOF

Publish pcrs.json with the commit ($commit) so that every custodian can rebuild and
compare before trusting it: ekms init/unseal --expect-pcrs $pcrs
EOF

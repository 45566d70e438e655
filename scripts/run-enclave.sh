#!/usr/bin/env bash
# Starts the ekms enclave from ekms.eif on this (Nitro-enabled) parent instance.
#
#   scripts/run-enclave.sh                           # ./ekms.eif, 2048 MiB, 2 vCPUs, CID 16
#   EIF=dist/ekms.eif MEMORY=4096 CPUS=4 CID=16 scripts/run-enclave.sh
#
# Start ekms-parent first (systemctl start ekms-parent): at boot the enclave connects to
# the parent's store (vsock CID 3, port 5001), gives up after 30 seconds and exits if it
# cannot. CID must be the one in the parent's `--enclave vsock://CID:5000`.
#
# Environment (all optional):
#   EIF          the enclave image                                          [./ekms.eif]
#   MEMORY       MiB for the enclave; must fit the allocator's memory_mib        [2048]
#   CPUS         vCPUs for the enclave; must fit the allocator's cpu_count          [2]
#   CID          the enclave's vsock context id (4 .. 4294967294)                  [16]
#   NAME         the enclave's name for nitro-cli                                [ekms]
#   REPLACE=1    terminate a running enclave of that name first
#   DEBUG=1      --debug-mode: console access, and all-zero PCRs. NEVER with real keys.
set -euo pipefail

die() {
    printf 'run-enclave.sh: error: %s\n' "$*" >&2
    exit 1
}
note() {
    printf 'run-enclave.sh: %s\n' "$*" >&2
}

command -v nitro-cli >/dev/null 2>&1 ||
    die "nitro-cli not found on PATH. Install the AWS Nitro Enclaves CLI (Amazon Linux 2023: dnf install aws-nitro-enclaves-cli) on a Nitro-enabled instance."
command -v jq >/dev/null 2>&1 || die "jq not found on PATH (dnf install jq / apt-get install jq)."

eif=${EIF:-./ekms.eif}
memory=${MEMORY:-2048}
cpus=${CPUS:-2}
cid=${CID:-16}
name=${NAME:-ekms}

[[ -f "$eif" ]] || die "$eif does not exist: build it with scripts/build-eif.sh (or set EIF)"
[[ "$memory" =~ ^[1-9][0-9]*$ ]] || die "MEMORY must be a number of MiB, got '$memory'"
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "CPUS must be a positive number, got '$cpus'"
if ! [[ "$cid" =~ ^[0-9]{1,10}$ ]] || ((cid < 4 || cid > 4294967294)); then
    die "CID must be from 4 to 4294967294 (0-2 are reserved, 3 is the parent), got '$cid'"
fi

if ! [[ -w /dev/nitro_enclaves ]]; then
    note "WARNING: /dev/nitro_enclaves is missing or not writable by $(id -un):" \
        "is this a Nitro instance with enclaves enabled, and is this user in group 'ne'?"
fi

running=$(nitro-cli describe-enclaves)
existing=$(jq -r --arg name "$name" '.[] | select(.EnclaveName == $name) | .EnclaveID' <<<"$running")
other=$(jq -r --argjson cid "$cid" --arg name "$name" \
    '.[] | select(.EnclaveCID == $cid and .EnclaveName != $name) | .EnclaveName' <<<"$running")
[[ -z "$other" ]] || die "enclave '$other' already uses CID $cid"
if [[ -n "$existing" ]]; then
    if [[ "${REPLACE:-0}" == 1 ]]; then
        note "terminating the running enclave $name ($existing); it will come back sealed"
        nitro-cli terminate-enclave --enclave-id "$existing" >/dev/null
    else
        die "an enclave named $name is already running ($existing); set REPLACE=1 to terminate and restart it (it comes back sealed: custodians must unseal again)"
    fi
fi

args=(run-enclave
    --enclave-name "$name"
    --eif-path "$eif"
    --memory "$memory"
    --cpu-count "$cpus"
    --enclave-cid "$cid")

if [[ "${DEBUG:-0}" == 1 ]]; then
    cat >&2 <<'EOF'
######################################################################################
##  DEBUG MODE. The parent can read this enclave's console, and its attestation     ##
##  documents carry ALL-ZERO PCR0/PCR1/PCR2: they prove nothing about what runs.    ##
##  `ekms init` and `ekms unseal` refuse such an enclave unless given --allow-debug, ##
##  and custodians MUST refuse to pass --allow-debug for any deployment holding      ##
##  real keys. Use debug mode only to diagnose a boot with throwaway custodians.     ##
######################################################################################
EOF
    args+=(--debug-mode)
fi

note "starting $eif: ${memory} MiB, ${cpus} vCPUs, CID ${cid}"
nitro-cli "${args[@]}"

note "enclaves now running:"
described=$(nitro-cli describe-enclaves)
printf '%s\n' "$described"
state=$(jq -r --arg name "$name" '.[] | select(.EnclaveName == $name) | .State' <<<"$described")
[[ "$state" == RUNNING ]] || die "enclave $name is not RUNNING (state: ${state:-absent}); run with DEBUG=1 and 'nitro-cli console --enclave-name $name' to see why it stopped"
cat >&2 <<EOF

The enclave is running: uninitialized on an empty store, else sealed. Check with: ekms status --endpoint https://<host>:4599 --ca <ca.pem>
Then ekms init (first time) or each custodian's ekms unseal: docs/nitro.md.
EOF

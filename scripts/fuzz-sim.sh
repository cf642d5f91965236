#!/usr/bin/env bash
# Contract fuzzing of the RunPod simulator: Schemathesis generates requests from RunPod's REST v2
# OpenAPI document for every path the simulator serves, valid and invalid ones, and checks that
# the simulator accepts exactly what the document accepts and answers as it describes. Bounded:
# a fixed number of examples per operation, a fixed seed and a time budget
# (scripts/fuzz-sim/schemathesis.toml). Exits non-zero on any finding.
#
# Needs python3 with venv (Debian: python3-venv) and RunPod's document: RPB_RUNPOD_OPENAPI, else
# ../shared/spec/runpod-rest-v2-openapi.json. The fuzzer lives in a venv under
# ${XDG_CACHE_HOME:-~/.cache}/rpb/ (RPB_FUZZ_VENV overrides), rebuilt when the pins change.
set -euo pipefail
cd "$(dirname "$0")/.."

spec="${RPB_RUNPOD_OPENAPI:-$(pwd)/../shared/spec/runpod-rest-v2-openapi.json}"
if [ ! -f "$spec" ]; then
    echo "fuzz-sim: $spec is missing: set RPB_RUNPOD_OPENAPI to RunPod's REST v2 document" >&2
    exit 1
fi

requirements=scripts/fuzz-sim/requirements.txt
venv="${RPB_FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rpb/fuzz-sim-venv}"
pins="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "fuzz-sim: python3 cannot create a venv; install python3-venv (Debian)" >&2
        exit 1
    fi
    echo "fuzz-sim: installing the fuzzer into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$requirements"
    echo "$pins" >"$venv/.pins"
fi

cargo build -q --locked -p runpod-api --features sim --bin runpod-sim
simulator="${CARGO_TARGET_DIR:-target}/debug/runpod-sim"

work="$(mktemp -d)"
sim_pid=""
# Stops the simulator this script started, by its PID, and removes the scratch directory.
trap '[ -z "$sim_pid" ] || { kill -TERM "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }; rm -rf "$work"' EXIT

# A fresh random token, passed through the environment (arguments show in ps).
RUNPOD_SIM_API_KEY="fuzz-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export RUNPOD_SIM_API_KEY
"$simulator" --listen 127.0.0.1:0 >"$work/url" 2>"$work/simulator.log" &
sim_pid=$!
for _ in $(seq 100); do
    [ -s "$work/url" ] && break
    if ! kill -0 "$sim_pid" 2>/dev/null; then
        echo "fuzz-sim: the simulator exited early:" >&2
        cat "$work/simulator.log" >&2
        exit 1
    fi
    sleep 0.1
done
base_url="$(head -n 1 "$work/url")"
if [ -z "$base_url" ]; then
    echo "fuzz-sim: the simulator printed no URL within 10 s" >&2
    exit 1
fi
# The document's paths start with /v2; Schemathesis appends them to the origin.
origin="${base_url%/v2}"

# Every path the simulator serves, and only those.
served='^/v2/(pods(/\{id\}(/(action|logs))?)?|catalog/(gpus|datacenters)(/\{id\})?'
served+='|account/ssh-keys|billing/(pods|network-volumes)|network-volumes(/\{id\})?|templates(/\{id\})?)$'

echo "fuzz-sim: fuzzing $origin against $spec"
status=0
"$venv/bin/schemathesis" --config-file scripts/fuzz-sim/schemathesis.toml run "$spec" \
    --url "$origin" --include-path-regex "$served" || status=$?
if [ "$status" -ne 0 ]; then
    echo "fuzz-sim: findings (exit $status); the simulator's log follows" >&2
    tail -n 50 "$work/simulator.log" >&2
fi
exit "$status"

#!/usr/bin/env bash
# The full test suite, as the README gives it: installs the real peers the tests use (sshd,
# Blender, Xvfb, x11vnc, noVNC, Chromium), then runs every test of every crate.
#
# Set RPB_RUNPOD_OPENAPI to RunPod's REST v2 OpenAPI document to add the contract check.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# Blender 4.5 LTS and 5.0 as Python modules (PyPI bpy), and the pinned blender-mcp server.
bash scripts/install-python-peers.sh

features=()
if [ -n "${RPB_RUNPOD_OPENAPI:-}" ]; then
    if [ ! -f "$RPB_RUNPOD_OPENAPI" ]; then
        echo "test: RPB_RUNPOD_OPENAPI=$RPB_RUNPOD_OPENAPI does not exist" >&2
        exit 1
    fi
    features=(--features runpod-api/contract)
    echo "test: contract check against $RPB_RUNPOD_OPENAPI"
fi

cargo test --workspace --all-targets --exclude rpb-e2e --features runpod-api/sim "${features[@]}"
# The end-to-end suite last, with its output shown: it prints the fault summary table.
cargo test -p rpb-e2e --all-targets -- --nocapture

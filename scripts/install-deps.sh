#!/usr/bin/env bash
# Installs the Debian packages rpb's tests and demo use as real peers. Idempotent: packages that
# are already installed are skipped, so a second run does nothing and needs no network.
set -euo pipefail

packages=(
    openssh-server openssh-client   # sshd test peer, ssh/scp for benchmarks
    blender xvfb x11vnc             # the local pod's Blender session
    novnc websockify                # noVNC served next to it
    chromium                        # a real browser for noVNC tests
    git ca-certificates pkg-config libssl-dev   # building libssh2/openssl-sys, git for project-store
    shellcheck                      # lints the pod-side and CI shell scripts
    procps                          # kill(1): tests pause and resume sshd by PID
    iproute2                        # ss(8): the session script names who holds a busy port
    python3                         # scripts/check-shape.py, in .ci/run
    python3-venv                    # scripts/fuzz-sim.sh's venv for Schemathesis
    python3-pip                     # the local pod's setup downloads the blender-mcp addon's release
    slurmctld slurmd slurm-client munge   # the local render farm (Slurm on loopback)
)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
echo "install-deps: done"

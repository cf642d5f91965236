#!/usr/bin/env bash
# Blender 4.5 LTS and 5.0 as Python modules (PyPI `bpy`, about 370 MB each), one virtual
# environment per version, for the tests that run rpb's addon on the Blender that real pods run
# (blender-session/tests/it/bpy_versions.rs). Hash-pinned (scripts/bpy/requirements-*.txt);
# a venv is rebuilt only when its pins change, so a second run takes a second.
#
# Where: ${RPB_BPY_VENVS:-${XDG_CACHE_HOME:-~/.cache}/rpb}/bpy-<version>. Needs CPython 3.11
# (the wheels' only Python) with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

root="${RPB_BPY_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/rpb}"
if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "install-bpy: bpy's wheels need CPython 3.11; python3 is $(python3 --version 2>&1)" >&2
    exit 1
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "install-bpy: python3 cannot create a venv; install python3-venv (Debian)" >&2
    exit 1
fi
for requirements in scripts/bpy/requirements-*.txt; do
    version="${requirements##*/requirements-}"
    version="${version%.txt}"
    venv="$root/bpy-$version"
    pins="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$pins" ]; then
        continue
    fi
    echo "install-bpy: installing Blender $version (bpy) into $venv"
    rm -rf "$venv"
    mkdir -p "$root"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$requirements"
    echo "$pins" >"$venv/.pins"
done

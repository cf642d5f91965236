#!/usr/bin/env bash
# The Python programs some tests run as real peers, one virtual environment each, hash-pinned
# (scripts/python-peers/<name>.txt gives the venv <name>):
#   bpy-4.5.15, bpy-5.0.1     Blender 4.5 LTS and 5.0 as Python modules (PyPI bpy, ~370 MB
#                             each), for rpb's addon on the Blender real pods run
#                             (blender-session/tests/it/bpy_versions.rs)
#   mcp-for-blender-2.2.4     the blender-mcp MCP server rpb pins in .mcp.json, driven by the
#                             MCP SDK's client in the real-client test (rpb-cli/tests/it/mcp_server.rs)
# A venv is rebuilt only when its pins change, so a second run takes a second.
#
# Where: ${RPB_PYTHON_PEERS:-${XDG_CACHE_HOME:-~/.cache}/rpb}/<name>. Needs CPython 3.11 (bpy's
# wheels' only Python) with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

root="${RPB_PYTHON_PEERS:-${XDG_CACHE_HOME:-$HOME/.cache}/rpb}"
if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "install-python-peers: bpy's wheels need CPython 3.11; python3 is $(python3 --version 2>&1)" >&2
    exit 1
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "install-python-peers: python3 cannot create a venv; install python3-venv (Debian)" >&2
    exit 1
fi
for requirements in scripts/python-peers/*.txt; do
    name="${requirements##*/}"
    name="${name%.txt}"
    venv="$root/$name"
    pins="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$pins" ]; then
        continue
    fi
    echo "install-python-peers: installing $name into $venv"
    rm -rf "$venv"
    mkdir -p "$root"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$requirements"
    echo "$pins" >"$venv/.pins"
done

# The wheel of the pinned MCP server release, in the download cache local pods share
# (blender-session's LocalPod sets RPB_DOWNLOAD_CACHE there): their setup installs the
# blender-mcp addon from it, hash-checked, without going online. The script tests use it too.
downloads="${XDG_CACHE_HOME:-$HOME/.cache}/rpb/local-pod-downloads"
for requirements in scripts/python-peers/mcp-for-blender-*.txt; do
    version="${requirements##*/mcp-for-blender-}"
    version="${version%.txt}"
    wheel="$downloads/mcp_for_blender-$version-py3-none-any.whl"
    hash="$(grep -A1 "^mcp-for-blender==$version " "$requirements" | sed -n 's/.*--hash=sha256:\([0-9a-f]*\).*/\1/p')"
    if [ -f "$wheel" ] && echo "$hash  $wheel" | sha256sum -c --quiet - >/dev/null 2>&1; then
        continue
    fi
    mkdir -p "$downloads"
    pin="$(mktemp)"
    printf 'mcp-for-blender==%s --hash=sha256:%s\n' "$version" "$hash" >"$pin"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes --dest "$downloads" -r "$pin"
    rm -f "$pin"
done

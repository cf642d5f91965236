#!/usr/bin/env bash
# Installs the cargo tools CI uses beyond the toolchain, each pinned to one version. Skips a tool
# whose pinned version is already installed, so a machine that kept ~/.cargo/bin needs neither
# network nor build time. Not part of the README's test command: developers don't need these.
set -euo pipefail

# cargo-deny: licenses, bans and sources of the dependency tree (deny.toml). Building it from
# source takes about 4-7 minutes on two cores.
deny_version="0.20.2"

installed="$(cargo deny --version 2>/dev/null || true)"
if [ "$installed" = "cargo-deny $deny_version" ]; then
    echo "install-ci-tools: cargo-deny $deny_version present"
else
    echo "install-ci-tools: installing cargo-deny $deny_version (found: ${installed:-none})"
    cargo install --locked "cargo-deny@$deny_version"
fi

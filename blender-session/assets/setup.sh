#!/usr/bin/env bash
# rpb setup script: prepares a pod's persistent volume for rpb sessions.
#
#   setup.sh            (run from the folder holding the other rpb assets)
#
# Idempotent and safe to re-run. It installs Blender into $RPB_HOME (or records BLENDER_BIN):
# downloaded over https only and checked against RPB_BLENDER_SHA256, which the default version
# has built in and any other version must be given. It installs the addon, the session script
# and the boot hook, caches the session's Debian
# packages as .deb files under $RPB_HOME/debs (so each start installs them from disk), persists
# the SSH host keys under $RPB_HOME/ssh-host-keys (restored by the boot hook at every boot), and
# installs the upstream blender-mcp addon for the MCP port from the pinned mcp-for-blender
# release (downloaded by pip from the Python package index with its hash checked, cached under
# $RPB_DOWNLOAD_CACHE; RPB_MCP_ADDON=rpb skips it for pods without internet), and
# records the assets version last, so an interrupted setup is simply run again. Progress goes to
# stderr; the last line on stdout is a JSON summary starting with {"rpb_setup".
set -Eeuo pipefail
umask 022

RPB_POD_ROOT=${RPB_POD_ROOT:-/runpod}
RPB_HOME=${RPB_HOME:-$RPB_POD_ROOT/rpb}
RPB_ASSETS_DIR=${RPB_ASSETS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
# The default Blender and the SHA-256 of its linux-x64 archive, as published in Blender's
# blender-4.5.3.sha256 (and the AUR blender-bin 4.5.3 PKGBUILD). The library embeds the same
# pair (blender_session::assets::DEFAULT_BLENDER_VERSION, DEFAULT_BLENDER_SHA256); a unit test
# keeps them equal.
DEFAULT_BLENDER_VERSION=4.5.3
DEFAULT_BLENDER_SHA256=975c58fcb244273838534bba771e64ad87739216b0f9b39a888531a49a72d845
# RPB_BLENDER_SHA256 that installs a download unchecked: an explicit, hard-to-mistype opt-out.
UNVERIFIED=unverified
RPB_BLENDER_VERSION=${RPB_BLENDER_VERSION:-$DEFAULT_BLENDER_VERSION}
RPB_BLENDER_SERIES=${RPB_BLENDER_VERSION%.*}
RPB_BLENDER_URL=${RPB_BLENDER_URL:-https://download.blender.org/release/Blender$RPB_BLENDER_SERIES/blender-$RPB_BLENDER_VERSION-linux-x64.tar.xz}
RPB_BLENDER_SHA256=${RPB_BLENDER_SHA256:-}
if [[ -z $RPB_BLENDER_SHA256 && $RPB_BLENDER_VERSION == "$DEFAULT_BLENDER_VERSION" ]]; then
    RPB_BLENDER_SHA256=$DEFAULT_BLENDER_SHA256
fi
# Tests only: lets setup.sh download from file:// and http:// URLs (a local fixture). Downloads
# are https-only otherwise, redirects included.
RPB_ALLOW_INSECURE_DOWNLOAD_FOR_TESTS=${RPB_ALLOW_INSECURE_DOWNLOAD_FOR_TESTS:-}
RPB_DOWNLOAD_TIMEOUT=${RPB_DOWNLOAD_TIMEOUT:-1800}
RPB_DEB_SOURCE=${RPB_DEB_SOURCE:-}
# The MCP server release whose addon serves the MCP port, and the SHA-256 of its wheel
# (blender_session::mcp::UPSTREAM_VERSION and UPSTREAM_WHEEL_SHA256; a unit test keeps them
# equal). Another release needs its hash: pip refuses a download without one.
DEFAULT_MCP_SERVER_VERSION=2.2.4
DEFAULT_MCP_SERVER_SHA256=c6c3286da735cd44eef43186759da7f19696b0d50991a1b64399280f9744ae14
RPB_MCP_ADDON=${RPB_MCP_ADDON:-upstream}
RPB_MCP_SERVER_VERSION=${RPB_MCP_SERVER_VERSION:-$DEFAULT_MCP_SERVER_VERSION}
RPB_MCP_SERVER_SHA256=${RPB_MCP_SERVER_SHA256:-}
if [[ -z $RPB_MCP_SERVER_SHA256 && $RPB_MCP_SERVER_VERSION == "$DEFAULT_MCP_SERVER_VERSION" ]]; then
    RPB_MCP_SERVER_SHA256=$DEFAULT_MCP_SERVER_SHA256
fi
# Downloads kept across setups (on the volume: a new pod on it downloads nothing again).
RPB_DOWNLOAD_CACHE=${RPB_DOWNLOAD_CACHE:-$RPB_HOME/downloads}
# A Python with pip for the download; else python3, then Blender's own Python.
RPB_PYTHON=${RPB_PYTHON:-}
RPB_SSH_DIR=${RPB_SSH_DIR:-/etc/ssh}
RPB_LOCK_TIMEOUT=${RPB_LOCK_TIMEOUT:-300}
DEFAULT_PACKAGES="xvfb x11vnc novnc websockify libgl1 libegl1 libxrender1 libxi6 libxxf86vm1 libxfixes3 libxkbcommon0 libsm6 libice6 libx11-xcb1"
RPB_PACKAGES=${RPB_PACKAGES-$DEFAULT_PACKAGES}

DEB_DIR=$RPB_HOME/debs
KEYS=$RPB_HOME/ssh-host-keys
CHANGED=()

log() { printf 'rpb-setup: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Installs $1 as $2 with mode $3 when the content or mode differs: a temporary file renamed
# into place, so a reader never sees half a file.
install_file() {
    local source=$1 target=$2 mode=$3
    if [[ -f $target ]] && cmp -s "$source" "$target" && [[ $(stat -c %a "$target") == "${mode#0}" ]]; then
        return 0
    fi
    cp -f "$source" "$target.rpb-tmp"
    chmod "$mode" "$target.rpb-tmp"
    mv -f "$target.rpb-tmp" "$target"
    CHANGED+=("${target#"$RPB_HOME"/}")
}

check_assets() {
    local name
    for name in session.sh boot-hook.sh rpb_mcp.py rpb_render.py rpb_novnc_origin.py assets-version; do
        [[ -f $RPB_ASSETS_DIR/$name ]] || die "missing $name in $RPB_ASSETS_DIR (set RPB_ASSETS_DIR to the folder of the rpb assets)"
    done
    [[ $RPB_HOME == /* ]] || die "RPB_HOME must be an absolute path, got '$RPB_HOME'"
}

install_assets() {
    mkdir -p "$RPB_HOME/bin" "$RPB_HOME/blender-scripts/addons" "$RPB_HOME/logs" "$RPB_HOME/run"
    install_file "$RPB_ASSETS_DIR/session.sh" "$RPB_HOME/bin/session.sh" 0755
    install_file "$RPB_ASSETS_DIR/boot-hook.sh" "$RPB_HOME/bin/boot-hook.sh" 0755
    install_file "$RPB_ASSETS_DIR/setup.sh" "$RPB_HOME/bin/setup.sh" 0755
    install_file "$RPB_ASSETS_DIR/rpb_mcp.py" "$RPB_HOME/blender-scripts/addons/rpb_mcp.py" 0644
    install_file "$RPB_ASSETS_DIR/rpb_render.py" "$RPB_HOME/bin/rpb_render.py" 0644
    install_file "$RPB_ASSETS_DIR/rpb_novnc_origin.py" "$RPB_HOME/bin/rpb_novnc_origin.py" 0644
}

record() {
    local file=$RPB_HOME/$1
    if [[ -f $file ]] && [[ $(cat "$file") == "$2" ]]; then
        return 0
    fi
    printf '%s\n' "$2" >"$file.rpb-tmp"
    mv -f "$file.rpb-tmp" "$file"
    CHANGED+=("$1")
}

download() {
    local url=$1 target=$2 https_only=(--proto "=https" --proto-redir "=https") wget_https=(--https-only)
    if [[ $RPB_ALLOW_INSECURE_DOWNLOAD_FOR_TESTS == 1 ]]; then
        https_only=()
        wget_https=()
    elif [[ $url != https://* ]]; then
        die "refusing to download $url: only https:// URLs are allowed"
    fi
    if command -v curl >/dev/null 2>&1; then
        curl -fL "${https_only[@]}" --retry 3 --connect-timeout 30 --max-time "$RPB_DOWNLOAD_TIMEOUT" -o "$target" "$url"
    elif command -v wget >/dev/null 2>&1; then
        # wget cannot refuse a redirect to http: the checksum (required unless opted out)
        # still rejects anything but the expected archive.
        timeout "$RPB_DOWNLOAD_TIMEOUT" wget -q "${wget_https[@]}" -O "$target" "$url"
    else
        die "neither curl nor wget is installed to download $url"
    fi
}

# Refuses, before anything is downloaded, a Blender archive that could not be checked.
check_blender_checksum_setting() {
    case $RPB_BLENDER_SHA256 in
    "$UNVERIFIED")
        log "warning: RPB_BLENDER_SHA256=$UNVERIFIED: Blender $RPB_BLENDER_VERSION is installed without checking the download"
        ;;
    "")
        die "no checksum for Blender $RPB_BLENDER_VERSION: set RPB_BLENDER_SHA256 to the SHA-256 of blender-$RPB_BLENDER_VERSION-linux-x64.tar.xz (listed in blender-$RPB_BLENDER_VERSION.sha256 next to it on download.blender.org), or to '$UNVERIFIED' to install it unchecked"
        ;;
    *)
        [[ $RPB_BLENDER_SHA256 =~ ^[0-9a-fA-F]{64}$ ]] ||
            die "RPB_BLENDER_SHA256 must be the 64 hex digits of the archive's SHA-256, or '$UNVERIFIED'"
        ;;
    esac
}

install_blender() {
    if [[ -n ${BLENDER_BIN:-} && $BLENDER_BIN != */* ]]; then
        BLENDER_BIN=$(command -v "$BLENDER_BIN") || die "BLENDER_BIN: no $BLENDER_BIN on PATH"
    fi
    if [[ -n ${BLENDER_BIN:-} ]]; then
        [[ -x $BLENDER_BIN ]] || die "BLENDER_BIN $BLENDER_BIN is not an executable file"
        record blender-bin "$BLENDER_BIN"
        BLENDER_PATH=$BLENDER_BIN
        log "using Blender at $BLENDER_BIN (BLENDER_BIN): no download"
        return 0
    fi
    local root=$RPB_HOME/blender dir=$RPB_HOME/blender/blender-$RPB_BLENDER_VERSION
    BLENDER_PATH=$dir/blender
    if [[ -x $BLENDER_PATH ]]; then
        record blender-bin "$BLENDER_PATH"
        log "Blender $RPB_BLENDER_VERSION is already installed in $dir"
        return 0
    fi
    check_blender_checksum_setting
    mkdir -p "$root"
    local archive=$root/.download-$RPB_BLENDER_VERSION.tar.xz staging=$root/.staging-$RPB_BLENDER_VERSION
    log "downloading Blender $RPB_BLENDER_VERSION from $RPB_BLENDER_URL"
    rm -f "$archive.partial"
    if ! download "$RPB_BLENDER_URL" "$archive.partial"; then
        rm -f "$archive.partial"
        die "could not download $RPB_BLENDER_URL (set RPB_BLENDER_URL, or BLENDER_BIN to an installed Blender)"
    fi
    if [[ $RPB_BLENDER_SHA256 != "$UNVERIFIED" ]] &&
        ! echo "$RPB_BLENDER_SHA256  $archive.partial" | sha256sum -c --quiet - >&2; then
        # Never keep bytes that failed the check, not even as a partial download.
        rm -f "$archive.partial"
        die "the Blender download does not match RPB_BLENDER_SHA256"
    fi
    mv -f "$archive.partial" "$archive"
    rm -rf "$staging"
    mkdir -p "$staging"
    tar -xJf "$archive" -C "$staging" --strip-components=1 || die "could not unpack $archive"
    [[ -x $staging/blender ]] || die "the archive from $RPB_BLENDER_URL has no blender executable at its top"
    rm -rf "$dir"
    mv "$staging" "$dir"
    rm -f "$archive"
    record blender-bin "$BLENDER_PATH"
    CHANGED+=("blender/blender-$RPB_BLENDER_VERSION")
    log "installed Blender $RPB_BLENDER_VERSION in $dir"
}

cache_packages() {
    mkdir -p "$DEB_DIR"
    # shellcheck disable=SC2086 # one line per package
    printf '%s\n' $RPB_PACKAGES >"$RPB_HOME/packages.list.rpb-tmp"
    if ! cmp -s "$RPB_HOME/packages.list.rpb-tmp" "$RPB_HOME/packages.list" 2>/dev/null; then
        mv -f "$RPB_HOME/packages.list.rpb-tmp" "$RPB_HOME/packages.list"
        CHANGED+=(packages.list)
        rm -f "$DEB_DIR/.complete"
    else
        rm -f "$RPB_HOME/packages.list.rpb-tmp"
    fi
    if [[ -n $RPB_DEB_SOURCE ]]; then
        [[ -d $RPB_DEB_SOURCE ]] || die "RPB_DEB_SOURCE $RPB_DEB_SOURCE is not a folder"
        local deb
        for deb in "$RPB_DEB_SOURCE"/*.deb; do
            [[ -f $deb ]] || continue
            install_file "$deb" "$DEB_DIR/${deb##*/}" 0644
        done
        cp "$RPB_HOME/packages.list" "$DEB_DIR/.complete"
        log "package cache filled from $RPB_DEB_SOURCE (offline)"
        return 0
    fi
    if [[ -z $RPB_PACKAGES ]]; then
        return 0
    fi
    if [[ -f $DEB_DIR/.complete ]] && cmp -s "$DEB_DIR/.complete" "$RPB_HOME/packages.list"; then
        log "package cache is up to date"
        return 0
    fi
    if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
        log "not root or no apt-get: the package cache is left empty (session.sh checks packages itself)"
        return 0
    fi
    log "downloading the session's packages into $DEB_DIR"
    mkdir -p "$DEB_DIR/partial"
    # shellcheck disable=SC2086 # one word per package
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only \
                --no-install-recommends -o Dir::Cache::archives="$DEB_DIR" $RPB_PACKAGES
    } >>"$RPB_HOME/logs/setup-packages.log" 2>&1 || die "could not download the packages; see $RPB_HOME/logs/setup-packages.log"
    rm -rf "$DEB_DIR/partial" "$DEB_DIR/lock"
    cp "$RPB_HOME/packages.list" "$DEB_DIR/.complete"
    CHANGED+=(debs)
}

# The first Python that has pip: RPB_PYTHON, python3, or the Python inside the Blender install.
pip_python() {
    local candidate candidates=()
    [[ -n $RPB_PYTHON ]] && candidates+=("$RPB_PYTHON")
    candidates+=(python3)
    if [[ -n ${BLENDER_PATH:-} ]]; then
        for candidate in "$(dirname "$BLENDER_PATH")"/[0-9]*/python/bin/python3*; do
            [[ -x $candidate ]] && candidates+=("$candidate")
        done
    fi
    for candidate in "${candidates[@]}"; do
        if "$candidate" -m pip --version >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

wheel_verified() {
    [[ -f $1 ]] && echo "$RPB_MCP_SERVER_SHA256  $1" | sha256sum -c --quiet - >/dev/null 2>&1
}

# Installs the addon of the pinned mcp-for-blender release as blender-scripts/addons/blender_mcp.py
# (the name upstream's own installer gives it), so the AI client's MCP server finds the addon it
# expects on the MCP port. Never from a git branch: from the release's wheel, hash-checked.
install_mcp_addon() {
    local target=$RPB_HOME/blender-scripts/addons/blender_mcp.py
    if [[ $RPB_MCP_ADDON == rpb ]]; then
        MCP_ADDON="rpb"
        if [[ -f $target ]]; then
            rm -f "$target" "$RPB_HOME/mcp-addon"
            CHANGED+=(blender-scripts/addons/blender_mcp.py)
        fi
        log "RPB_MCP_ADDON=rpb: rpb's addon serves the MCP port; no download"
        return 0
    fi
    [[ $RPB_MCP_ADDON == upstream ]] || die "RPB_MCP_ADDON must be upstream or rpb, got '$RPB_MCP_ADDON'"
    [[ $RPB_MCP_SERVER_VERSION =~ ^[0-9]+(\.[0-9]+)*$ ]] ||
        die "RPB_MCP_SERVER_VERSION must be a release number such as $DEFAULT_MCP_SERVER_VERSION, got '$RPB_MCP_SERVER_VERSION'"
    [[ $RPB_MCP_SERVER_SHA256 =~ ^[0-9a-fA-F]{64}$ ]] ||
        die "no SHA-256 for mcp-for-blender $RPB_MCP_SERVER_VERSION: set RPB_MCP_SERVER_SHA256 to its wheel's (listed on pypi.org)"
    MCP_ADDON="mcp-for-blender $RPB_MCP_SERVER_VERSION sha256:$RPB_MCP_SERVER_SHA256"
    if [[ -f $target ]] && [[ $(cat "$RPB_HOME/mcp-addon" 2>/dev/null) == "$MCP_ADDON" ]]; then
        log "the blender-mcp addon of mcp-for-blender $RPB_MCP_SERVER_VERSION is already installed"
        return 0
    fi
    local wheel=$RPB_DOWNLOAD_CACHE/mcp_for_blender-$RPB_MCP_SERVER_VERSION-py3-none-any.whl python
    python=$(pip_python) ||
        die "no Python with pip on the pod to download mcp-for-blender $RPB_MCP_SERVER_VERSION (install python3-pip, or set RPB_PYTHON), or set RPB_MCP_ADDON=rpb to serve rpb's own addon on the MCP port"
    mkdir -p "$RPB_DOWNLOAD_CACHE"
    if ! wheel_verified "$wheel"; then
        local staging
        staging=$(mktemp -d "$RPB_DOWNLOAD_CACHE/.download-XXXXXX")
        printf 'mcp-for-blender==%s --hash=sha256:%s\n' "$RPB_MCP_SERVER_VERSION" "$RPB_MCP_SERVER_SHA256" \
            >"$staging/requirements.txt"
        log "downloading mcp-for-blender $RPB_MCP_SERVER_VERSION (pip, hash-checked)"
        if ! timeout "$RPB_DOWNLOAD_TIMEOUT" "$python" -m pip download --quiet --disable-pip-version-check \
            --no-deps --only-binary=:all: --require-hashes --dest "$staging" \
            -r "$staging/requirements.txt" >>"$RPB_HOME/logs/setup-mcp-addon.log" 2>&1; then
            rm -rf "$staging"
            die "could not download mcp-for-blender $RPB_MCP_SERVER_VERSION with its hash checked; see $RPB_HOME/logs/setup-mcp-addon.log (or set RPB_MCP_ADDON=rpb for a pod without internet)"
        fi
        # pip checked the hash; check the file kept, whatever pip named it.
        if ! wheel_verified "$staging/${wheel##*/}"; then
            rm -rf "$staging"
            die "the mcp-for-blender $RPB_MCP_SERVER_VERSION wheel does not match RPB_MCP_SERVER_SHA256"
        fi
        mv -f "$staging/${wheel##*/}" "$wheel"
        rm -rf "$staging"
    fi
    # The addon is one file inside the wheel (a zip archive).
    "$python" - "$wheel" "$target.rpb-new" <<'PY' || die "the mcp-for-blender $RPB_MCP_SERVER_VERSION wheel has no usable blender_mcp/bundled/addon.py"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    source = wheel.read("blender_mcp/bundled/addon.py")
if b"ADDON_PROTOCOL_VERSION" not in source or b"def register" not in source:
    sys.exit(1)
with open(sys.argv[2], "wb") as out:
    out.write(source)
PY
    install_file "$target.rpb-new" "$target" 0644
    rm -f "$target.rpb-new"
    record mcp-addon "$MCP_ADDON"
    log "installed the blender-mcp addon of mcp-for-blender $RPB_MCP_SERVER_VERSION"
}

persist_host_keys() {
    HOST_KEYS=none
    local existing=("$KEYS"/ssh_host_*_key)
    if [[ -e ${existing[0]} ]]; then
        HOST_KEYS=kept
        log "SSH host keys already persisted in $KEYS"
        return 0
    fi
    local current=("$RPB_SSH_DIR"/ssh_host_*_key)
    if [[ ! -e ${current[0]} ]]; then
        log "no SSH host keys in $RPB_SSH_DIR to persist"
        return 0
    fi
    mkdir -p "$KEYS"
    chmod 0700 "$KEYS"
    local key
    for key in "${current[@]}"; do
        install_file "$key" "$KEYS/${key##*/}" 0600
        [[ -f $key.pub ]] && install_file "$key.pub" "$KEYS/${key##*/}.pub" 0644
    done
    HOST_KEYS=persisted
    log "persisted ${#current[@]} SSH host key(s) in $KEYS"
}

# A JSON string literal for $1 (escapes backslashes, quotes and control characters).
json_string() {
    local value=${1//\\/\\\\}
    value=${value//\"/\\\"}
    value=${value//$'\n'/\\n}
    value=${value//$'\t'/\\t}
    value=${value//$'\r'/\\r}
    printf '"%s"' "$value"
}

json_list() {
    local first=1 item
    printf '['
    for item in "$@"; do
        ((first)) || printf ','
        json_string "$item"
        first=0
    done
    printf ']'
}

main() {
    (($# == 0)) || die "setup.sh takes no arguments (it reads the environment; see the README)"
    check_assets
    mkdir -p "$RPB_HOME/run"
    exec 9>"$RPB_HOME/run/setup.lock"
    flock -w "$RPB_LOCK_TIMEOUT" 9 || die "another setup.sh holds $RPB_HOME/run/setup.lock"
    install_assets
    install_blender
    install_mcp_addon
    cache_packages
    persist_host_keys
    local version debs=("$DEB_DIR"/*.deb) count=0
    [[ -e ${debs[0]} ]] && count=${#debs[@]}
    version=$(tr -dc 0-9a-f <"$RPB_ASSETS_DIR/assets-version")
    # Last: a setup that stopped half-way records no version and is run again.
    record assets-version "$version"
    # rpb's stamp of this setup's inputs (assets, Blender, MCP addon): a pod whose stamp
    # differs from what rpb wants is set up again.
    if [[ -n ${RPB_SETUP_STAMP:-} ]]; then
        [[ $RPB_SETUP_STAMP =~ ^[0-9a-f-]+$ ]] || die "RPB_SETUP_STAMP must be hex digits and dashes"
        record setup-stamp "$RPB_SETUP_STAMP"
    fi
    if ((${#CHANGED[@]} == 0)); then
        log "nothing to do: the pod is set up for assets version $version"
    fi
    printf '{"rpb_setup":"done","assets_version":"%s","blender_bin":%s,"mcp_addon":%s,"cached_debs":%s,"host_keys":"%s","changed":%s}\n' \
        "$version" "$(json_string "$BLENDER_PATH")" "$(json_string "$MCP_ADDON")" "$count" "$HOST_KEYS" "$(json_list "${CHANGED[@]}")"
}

main "$@"

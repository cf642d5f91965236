#!/usr/bin/env bash
# rpb boot hook: runs at container start, before the image's own sshd starts.
#
#   boot-hook.sh [COMMAND [ARGS...]]
#
# Restores the SSH host keys that setup.sh persisted under $RPB_HOME/ssh-host-keys into
# $RPB_SSH_DIR (default /etc/ssh), so the pod keeps the same host key across restarts and the
# client can pin it; then replaces itself with COMMAND (the image's own start command, e.g.
# /start.sh), if given. A failure to restore is reported on stderr but never stops the boot.
set -uo pipefail

RPB_POD_ROOT=${RPB_POD_ROOT:-/runpod}
RPB_HOME=${RPB_HOME:-$RPB_POD_ROOT/rpb}
RPB_SSH_DIR=${RPB_SSH_DIR:-/etc/ssh}
KEYS=$RPB_HOME/ssh-host-keys

log() { printf 'rpb-boot-hook: %s\n' "$*" >&2; }

# Copies $1 to $2 with mode $3, through a temporary file renamed into place.
put() {
    local temporary=$2.rpb-tmp
    if (umask 077 && cp -f "$1" "$temporary") && chmod "$3" "$temporary" && mv -f "$temporary" "$2"; then
        return 0
    fi
    rm -f "$temporary"
    return 1
}

restore() {
    local key name restored=0
    [[ -d $KEYS ]] || {
        log "no persisted host keys in $KEYS (setup.sh has not run yet): keeping the image's"
        return 0
    }
    mkdir -p "$RPB_SSH_DIR" || return 1
    for key in "$KEYS"/ssh_host_*_key; do
        [[ -f $key ]] || continue
        name=${key##*/}
        put "$key" "$RPB_SSH_DIR/$name" 0600 || {
            log "could not restore $name into $RPB_SSH_DIR"
            continue
        }
        if [[ -f $key.pub ]]; then
            put "$key.pub" "$RPB_SSH_DIR/$name.pub" 0644 || log "could not restore $name.pub"
        fi
        restored=$((restored + 1))
    done
    log "restored $restored SSH host key(s) into $RPB_SSH_DIR"
}

restore || log "restoring the SSH host keys failed; the pod keeps the image's keys"

if (($#)); then
    exec "$@"
fi

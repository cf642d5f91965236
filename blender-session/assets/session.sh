#!/usr/bin/env bash
# rpb session script: runs the remote Blender session on a pod (or any Linux machine).
#
#   session.sh start [--vnc-password-stdin]   start what is not running, wait, print a report
#   session.sh status                         print the report without starting anything
#   session.sh stop                           stop the processes named in the PID files
#   session.sh render-start|render-poll|render-cancel JOB_ID [...]
#                                             render jobs (see "render jobs" below)
#   session.sh farm-env|farm-conf|farm-node-up|farm-slurm|farm-task [...]
#                                             the render farm (see "render farm" below)
#
# `start` is idempotent: parts that run and answer are left alone, a crashed part is restarted
# (and, when Xvfb itself restarts, everything drawn on it). Progress goes to stderr; the last
# line on stdout is a JSON report starting with {"rpb_session". Processes are tracked by PID
# files under $RPB_HOME/run (PID and kernel start time, so a recycled PID is never signalled)
# and stopped by those PIDs only. Every path, port and the display can be set from the
# environment; see the blender-session README for the list.
set -Eeuo pipefail
umask 022

RPB_POD_ROOT=${RPB_POD_ROOT:-/runpod}
RPB_HOME=${RPB_HOME:-$RPB_POD_ROOT/rpb}
RPB_DISPLAY=${RPB_DISPLAY:-99}
RPB_SCREEN=${RPB_SCREEN:-1920x1080x24}
RPB_MCP_PORT=${RPB_MCP_PORT:-9876}
RPB_CONTROL_PORT=${RPB_CONTROL_PORT:-9877}
# Who serves the MCP port: "upstream" (the blender-mcp addon setup.sh installed from the pinned
# mcp-for-blender release) or "rpb" (rpb's own addon, for pods without internet). rpb's addon
# always serves rpb's commands on RPB_CONTROL_PORT.
RPB_MCP_ADDON=${RPB_MCP_ADDON:-upstream}
RPB_VNC_PORT=${RPB_VNC_PORT:-5900}
RPB_NOVNC_PORT=${RPB_NOVNC_PORT:-6080}
RPB_NOVNC_WEB=${RPB_NOVNC_WEB:-/usr/share/novnc}
RPB_BLENDER_TIMEOUT=${RPB_BLENDER_TIMEOUT:-180}
RPB_SERVICE_TIMEOUT=${RPB_SERVICE_TIMEOUT:-30}
RPB_STOP_TIMEOUT=${RPB_STOP_TIMEOUT:-15}
RPB_LOCK_TIMEOUT=${RPB_LOCK_TIMEOUT:-300}
RPB_BLENDER_FILE=${RPB_BLENDER_FILE:-}

RUN_DIR=$RPB_HOME/run
LOG_DIR=$RPB_HOME/logs
DEB_DIR=$RPB_HOME/debs
VNC_DIR=$RPB_HOME/vnc
VNC_PASSWD=$VNC_DIR/passwd
SCRIPTS_DIR=$RPB_HOME/blender-scripts
CONFIG_DIR=$RPB_HOME/blender-config
STATUS_FILE=$RUN_DIR/blender-addon.json
# websockify's Origin check (installed by setup.sh); RPB_NOVNC_ORIGINS is read by the plugin.
NOVNC_ORIGIN_PLUGIN=$RPB_HOME/bin/rpb_novnc_origin.py
DEFAULT_PACKAGES="xvfb x11vnc novnc websockify libgl1 libegl1 libxrender1 libxi6 libxxf86vm1 libxfixes3 libxkbcommon0 libsm6 libice6 libx11-xcb1"
COMPONENTS="xvfb x11vnc websockify blender"

log() { printf 'rpb-session: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Prints the last lines of a component's log to stderr, to explain a failure.
show_log() {
    local file=$LOG_DIR/$1.log
    if [[ -s $file ]]; then
        log "last lines of $file:"
        tail -n 25 "$file" | sed 's/^/    /' >&2
    fi
}

# --- PID files -----------------------------------------------------------------------------

# The kernel start time of a process (field 22 of /proc/PID/stat), empty once it is gone. A
# zombie counts as gone only when it has no other threads left: the main thread of a killed
# multi-threaded program (Blender) turns zombie while its other threads still hold its files
# and sockets. The command name (field 2) may hold spaces and parentheses: cut after the last
# ')'.
start_time() {
    local stat pid=$1 tasks
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    # shellcheck disable=SC2086 # word splitting into fields is the point
    set -- $stat
    if [[ $1 == Z || $1 == X ]]; then
        tasks=("/proc/$pid/task"/*)
        ((${#tasks[@]} > 1)) || return 0
    fi
    printf '%s' "${20}"
}

# Sets PID to the live process recorded for component $1, or 0. A PID file whose process is
# gone, or whose PID now belongs to another process, is removed.
read_pid() {
    local file=$RUN_DIR/$1.pid pid recorded current
    PID=0
    [[ -f $file ]] || return 0
    read -r pid recorded <"$file" || true
    if [[ $pid =~ ^[0-9]+$ && -n ${recorded:-} ]]; then
        current=$(start_time "$pid")
        if [[ -n $current && $current == "$recorded" ]]; then
            PID=$pid
            return 0
        fi
    fi
    rm -f "$file"
}

write_pid() {
    local started
    started=$(start_time "$2")
    [[ -n $started ]] || return 1
    printf '%s %s\n' "$2" "$started" >"$RUN_DIR/$1.pid.tmp"
    mv -f "$RUN_DIR/$1.pid.tmp" "$RUN_DIR/$1.pid"
}

# Starts "$@" as component $1's process in its own session, detached from this script (stdin
# from /dev/null, output appended to its log, the lock descriptor closed), and records its PID.
launch() {
    local name=$1 file=$LOG_DIR/$1.log
    shift
    if [[ -f $file && $(stat -c %s "$file") -gt 10485760 ]]; then
        mv -f "$file" "$file.1"
    fi
    printf '==== %s: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" >>"$file"
    setsid "$@" </dev/null >>"$file" 2>&1 9>&- &
    local pid=$!
    write_pid "$name" "$pid" || {
        show_log "$name"
        die "$name exited at once; see $file"
    }
    STARTED+=("$name")
    log "started $name (pid $pid)"
}

# Stops component $1 by its recorded PID: SIGTERM, then SIGKILL after RPB_STOP_TIMEOUT.
stop_component() {
    local name=$1 waited=0 limit=$((RPB_STOP_TIMEOUT * 10))
    read_pid "$name"
    if ((PID == 0)); then
        return 1
    fi
    local pid=$PID recorded
    recorded=$(start_time "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    while [[ -n $(start_time "$pid") && $(start_time "$pid") == "$recorded" ]] && ((waited < limit)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -n $(start_time "$pid") && $(start_time "$pid") == "$recorded" ]]; then
        log "$name (pid $pid) ignored SIGTERM for ${RPB_STOP_TIMEOUT}s: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        waited=0
        while [[ -n $(start_time "$pid") ]] && ((waited < 50)); do
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    rm -f "$RUN_DIR/$name.pid"
    log "stopped $name (pid $pid)"
    return 0
}

# --- probes (bounded; bash's /dev/tcp, no extra tools) --------------------------------------

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether 127.0.0.1:$1 speaks RFB (sends an "RFB 003.00x" banner).
rfb_answers() {
    local banner=""
    {
        exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
        IFS= read -r -t 3 -n 12 banner <&3 || true
        exec 3<&-
    } 2>/dev/null
    [[ $banner == RFB\ 003.* ]]
}

# Whether 127.0.0.1:$1 serves noVNC's vnc.html with HTTP 200.
novnc_answers() {
    local status=""
    {
        exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
        printf 'GET /vnc.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        IFS= read -r -t 5 status <&3 || true
        exec 3<&-
    } 2>/dev/null
    [[ $status == HTTP/1.?\ 200* ]]
}

# Sends one command to rpb's addon on the control port; sets REPLY_JSON to the reply line. The
# addon ends each reply with a newline, so one bounded `read` gets it.
mcp_call() {
    REPLY_JSON=""
    {
        exec 3<>"/dev/tcp/127.0.0.1/$RPB_CONTROL_PORT" || return 1
        printf '{"type": "%s", "params": {}}' "$1" >&3
        IFS= read -r -t "${2:-10}" REPLY_JSON <&3 || true
        exec 3<&-
    } 2>/dev/null
    [[ $REPLY_JSON == '{"status": "success"'* ]]
}

blender_answers() {
    mcp_call ping 10
}

# Whether the MCP port is served: by the upstream addon (which starts its server from a timer
# once Blender's window is up), or by rpb's addon.
mcp_port_served() {
    port_open "$RPB_MCP_PORT"
}

display_up() {
    [[ -S /tmp/.X11-unix/X$RPB_DISPLAY ]]
}

# Waits until "$@" succeeds, while component $1's process lives, at most $2 seconds.
wait_for() {
    local name=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    while ! "$@"; do
        read_pid "$name"
        if ((PID == 0)); then
            show_log "$name"
            die "$name exited while starting; see $LOG_DIR/$name.log"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$name"
            stop_component "$name" || true
            die "$name did not answer within ${limit}s and was stopped; see $LOG_DIR/$name.log"
        fi
        sleep 0.2
    done
}

# Fails when another X server holds the display (a stale lock of a dead one is fine: Xvfb
# removes it).
require_free_display() {
    local lock=/tmp/.X$RPB_DISPLAY-lock owner
    if [[ -f $lock ]]; then
        owner=$(tr -dc 0-9 <"$lock" || true)
        if [[ -n $owner && -n $(start_time "$owner") ]]; then
            die "display :$RPB_DISPLAY is in use by process $owner: choose another with RPB_DISPLAY"
        fi
    fi
}

# Fails when a port this session needs is taken by a process that is not ours.
# The program listening on TCP port $1, as "NAME (pid N)"; nothing when ss (iproute2) is
# missing or does not say.
port_holder() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -H -ltnp "sport = :$1" 2>/dev/null |
        sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
}

require_free_port() {
    # A program that just exited may hold its port for a moment: allow it 5 seconds.
    local tries=0 holder
    while port_open "$2"; do
        if ((tries >= 25)); then
            holder=$(port_holder "$2")
            # Never stopped here: it is not ours (the pod's own start script's, perhaps).
            die "port $2 (for $1) is in use by ${holder:-another process}, which rpb did not start and leaves running: stop it yourself, or choose another port with $3"
        fi
        sleep 0.2
        tries=$((tries + 1))
    done
}

# --- packages ------------------------------------------------------------------------------

package_list() {
    if [[ -n ${RPB_PACKAGES+set} ]]; then
        printf '%s' "$RPB_PACKAGES"
    elif [[ -f $RPB_HOME/packages.list ]]; then
        tr '\n' ' ' <"$RPB_HOME/packages.list"
    else
        printf '%s' "$DEFAULT_PACKAGES"
    fi
}

missing_packages() {
    local package status
    for package in $(package_list); do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
        [[ $status == installed ]] || printf '%s ' "$package"
    done
}

ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log "no dpkg here: not checking packages"
        return 0
    fi
    local missing
    missing=$(missing_packages)
    [[ -n $missing ]] || return 0
    if ((EUID != 0)); then
        die "missing packages: ${missing}(install them as root, or run this script as root)"
    fi
    local debs=("$DEB_DIR"/*.deb)
    if [[ -e ${debs[0]} ]]; then
        log "installing from the package cache $DEB_DIR: $missing"
        DEBIAN_FRONTEND=noninteractive dpkg -i --skip-same-version "${debs[@]}" \
            >>"$LOG_DIR/packages.log" 2>&1 9>&- || log "dpkg reported problems; see $LOG_DIR/packages.log"
        missing=$(missing_packages)
    fi
    if [[ -n $missing ]]; then
        log "installing from the network (not in the cache): $missing"
        # shellcheck disable=SC2086 # one word per package
        {
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends $missing
        } >>"$LOG_DIR/packages.log" 2>&1 9>&- || {
            show_log packages
            die "could not install: $missing"
        }
    fi
}

# --- VNC password --------------------------------------------------------------------------

# Makes the x11vnc password file (mode 0600) from --vnc-password-stdin, VNC_PASSWORD_FILE or
# VNC_PASSWORD, without the password ever appearing in a process's arguments (printf is a
# shell builtin; x11vnc reads it from stdin). Sets PASSWORD_CHANGED=1 when the file changed.
prepare_vnc_password() {
    local password="" source=""
    PASSWORD_CHANGED=0
    if ((PASSWORD_FROM_STDIN)); then
        IFS= read -r password || true
        source="standard input"
    elif [[ -n ${VNC_PASSWORD_FILE:-} ]]; then
        [[ -r $VNC_PASSWORD_FILE ]] || die "cannot read VNC_PASSWORD_FILE $VNC_PASSWORD_FILE"
        IFS= read -r password <"$VNC_PASSWORD_FILE" || true
        source="VNC_PASSWORD_FILE"
    elif [[ -n ${VNC_PASSWORD:-} ]]; then
        password=$VNC_PASSWORD
        source="VNC_PASSWORD"
    fi
    unset VNC_PASSWORD
    mkdir -p "$VNC_DIR"
    chmod 0700 "$VNC_DIR"
    if [[ -z $password ]]; then
        [[ -z $source ]] || die "the VNC password from $source is empty"
        [[ -s $VNC_PASSWD ]] || die "no VNC password: set VNC_PASSWORD (or VNC_PASSWORD_FILE, or pass --vnc-password-stdin)"
        return 0
    fi
    command -v x11vnc >/dev/null 2>&1 || die "x11vnc is not installed (Debian package x11vnc)"
    local temporary=$VNC_DIR/passwd.new
    rm -f "$temporary"
    (
        umask 077
        printf '%s\n%s\ny\n' "$password" "$password" |
            setsid -w x11vnc -storepasswd "$temporary" >/dev/null 2>&1 9>&-
    ) || die "x11vnc could not store the VNC password"
    [[ -s $temporary ]] || die "x11vnc did not write the VNC password file"
    chmod 0600 "$temporary"
    if [[ -f $VNC_PASSWD ]] && cmp -s "$temporary" "$VNC_PASSWD"; then
        rm -f "$temporary"
    else
        mv -f "$temporary" "$VNC_PASSWD"
        PASSWORD_CHANGED=1
    fi
}

# --- components ----------------------------------------------------------------------------

blender_bin() {
    if [[ -n ${BLENDER_BIN:-} && $BLENDER_BIN != */* ]]; then
        command -v "$BLENDER_BIN" || true
    elif [[ -n ${BLENDER_BIN:-} ]]; then
        printf '%s' "$BLENDER_BIN"
    elif [[ -s $RPB_HOME/blender-bin ]]; then
        cat "$RPB_HOME/blender-bin"
    else
        command -v blender || true
    fi
}

ensure_xvfb() {
    XVFB_STARTED=0
    read_pid xvfb
    if ((PID != 0)) && display_up; then
        return 0
    fi
    ((PID == 0)) || stop_component xvfb || true
    require_free_display
    command -v Xvfb >/dev/null 2>&1 || die "Xvfb is not installed (Debian package xvfb)"
    launch xvfb Xvfb ":$RPB_DISPLAY" -screen 0 "$RPB_SCREEN" -nolisten tcp -noreset
    wait_for xvfb "$RPB_SERVICE_TIMEOUT" display_up
    XVFB_STARTED=1
}

ensure_x11vnc() {
    read_pid x11vnc
    if ((PID != 0)) && ((!XVFB_STARTED && !PASSWORD_CHANGED)) && rfb_answers "$RPB_VNC_PORT"; then
        return 0
    fi
    ((PID == 0)) || stop_component x11vnc || true
    require_free_port x11vnc "$RPB_VNC_PORT" RPB_VNC_PORT
    command -v x11vnc >/dev/null 2>&1 || die "x11vnc is not installed (Debian package x11vnc)"
    launch x11vnc x11vnc -display ":$RPB_DISPLAY" -rfbauth "$VNC_PASSWD" -localhost \
        -rfbport "$RPB_VNC_PORT" -forever -shared -noxdamage -nopw -quiet
    wait_for x11vnc "$RPB_SERVICE_TIMEOUT" rfb_answers "$RPB_VNC_PORT"
}

ensure_websockify() {
    read_pid websockify
    if ((PID != 0)) && novnc_answers "$RPB_NOVNC_PORT"; then
        return 0
    fi
    ((PID == 0)) || stop_component websockify || true
    require_free_port websockify "$RPB_NOVNC_PORT" RPB_NOVNC_PORT
    command -v websockify >/dev/null 2>&1 || die "websockify is not installed (Debian package websockify)"
    [[ -f $RPB_NOVNC_WEB/vnc.html ]] || die "no noVNC at $RPB_NOVNC_WEB (Debian package novnc, or set RPB_NOVNC_WEB)"
    [[ -f $NOVNC_ORIGIN_PLUGIN ]] || die "missing $NOVNC_ORIGIN_PLUGIN (run setup.sh)"
    # Only a page on a loopback origin (the tunnel's) may open the WebSocket: another web page
    # in the user's browser must not reach the desktop. See rpb_novnc_origin.py.
    launch websockify env PYTHONPATH="${NOVNC_ORIGIN_PLUGIN%/*}${PYTHONPATH:+:$PYTHONPATH}" \
        websockify --auth-plugin rpb_novnc_origin.LoopbackOrigin --web "$RPB_NOVNC_WEB" \
        "127.0.0.1:$RPB_NOVNC_PORT" "127.0.0.1:$RPB_VNC_PORT"
    wait_for websockify "$RPB_SERVICE_TIMEOUT" novnc_answers "$RPB_NOVNC_PORT"
}

addon_status_settled() {
    [[ -s $STATUS_FILE ]] && ! grep -q '"state": "listening"' "$STATUS_FILE" 2>/dev/null && return 0
    blender_answers
}

ensure_blender() {
    read_pid blender
    if ((PID != 0)) && ((!XVFB_STARTED)) && blender_answers; then
        return 0
    fi
    ((PID == 0)) || stop_component blender || true
    require_free_port blender "$RPB_MCP_PORT" RPB_MCP_PORT
    require_free_port blender "$RPB_CONTROL_PORT" RPB_CONTROL_PORT
    local blender
    blender=$(blender_bin)
    [[ -n $blender && -x $blender ]] ||
        die "no Blender found: run setup.sh, set BLENDER_BIN, or install Blender (Debian package blender)"
    [[ -f $SCRIPTS_DIR/addons/rpb_mcp.py ]] || die "the rpb addon is not installed in $SCRIPTS_DIR: run setup.sh first"
    local addons=rpb_mcp
    if [[ $RPB_MCP_ADDON == upstream ]]; then
        [[ -f $SCRIPTS_DIR/addons/blender_mcp.py ]] ||
            die "the blender-mcp addon is not installed in $SCRIPTS_DIR/addons: run setup.sh with RPB_MCP_ADDON=upstream, or set RPB_MCP_ADDON=rpb to serve rpb's addon on the MCP port"
        # Upstream first, so its scene properties exist when rpb's addon sets the port.
        addons=blender_mcp,rpb_mcp
    fi
    mkdir -p "$CONFIG_DIR"
    rm -f "$STATUS_FILE"
    local file_args=()
    if [[ -n $RPB_BLENDER_FILE ]]; then
        [[ -f $RPB_BLENDER_FILE ]] || die "RPB_BLENDER_FILE $RPB_BLENDER_FILE does not exist"
        file_args=("$RPB_BLENDER_FILE")
    fi
    DISPLAY=":$RPB_DISPLAY" BLENDER_USER_SCRIPTS=$SCRIPTS_DIR BLENDER_USER_CONFIG=$CONFIG_DIR \
        RPB_MCP_PORT=$RPB_MCP_PORT RPB_CONTROL_PORT=$RPB_CONTROL_PORT RPB_MCP_ADDON=$RPB_MCP_ADDON \
        RPB_MCP_STATUS_FILE=$STATUS_FILE BLENDERMCP_NO_UPDATE_CHECK=1 \
        launch blender "$blender" --addons "$addons" "${file_args[@]}"
    wait_for blender "$RPB_BLENDER_TIMEOUT" addon_status_settled
    if ! blender_answers; then
        local status
        status=$(cat "$STATUS_FILE" 2>/dev/null || echo 'no status')
        show_log blender
        stop_component blender || true
        die "the rpb addon did not start ($status); Blender was stopped"
    fi
    # The upstream addon's server starts from a timer after the window is up.
    wait_for blender "$RPB_SERVICE_TIMEOUT" mcp_port_served
}

# --- render jobs ---------------------------------------------------------------------------
#
# A render job lives in $RPB_HOME/jobs/<id>/: spec.json (written by rpb), job.pid (the runner's
# PID and start time; the runner leads its own process group, Blender runs in it), blender.log,
# events.jsonl (the driver's records: accepted, done, failed, skipped, invalid), frames/ (one
# done record per verified frame), out/ (the images) and result.json once it ended.

JOBS_DIR=$RPB_HOME/jobs
RENDER_DRIVER=${RPB_RENDER_DRIVER:-$RPB_HOME/bin/rpb_render.py}

job_dir() {
    [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "bad render job id '$1'"
    JOB=$JOBS_DIR/$1
}

# Sets PID to the job's live runner, or 0 (a stale PID file stays: it marks a job that died).
job_pid() {
    local pid recorded current
    PID=0
    [[ -f $JOB/job.pid ]] || return 0
    read -r pid recorded <"$JOB/job.pid" || true
    if [[ $pid =~ ^[0-9]+$ && -n ${recorded:-} ]]; then
        current=$(start_time "$pid")
        [[ -n $current && $current == "$recorded" ]] && PID=$pid
    fi
    return 0
}

job_result() {
    write_result "$JOB/result.json" "$@"
}

write_result() {
    local file=$1 state=$2 reason=$3
    printf '{"state":"%s","reason":%s,"at":%s}\n' "$state" "$(json_string "$reason")" "$(date +%s)" \
        >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

cmd_render_start() {
    job_dir "$1"
    [[ -f $JOB/spec.json ]] || die "render job $1 has no spec.json in $JOB"
    job_pid
    ((PID == 0)) || die "render job $1 already runs (pid $PID)"
    local blend
    blend=$(sed -n 's/.*"blend": *"\([^"]*\)".*/\1/p' "$JOB/spec.json" | head -n 1)
    [[ -f $blend ]] || die "the .blend file $blend does not exist on the pod"
    [[ -f $RENDER_DRIVER ]] || die "the render driver $RENDER_DRIVER is missing: run setup.sh"
    local blender
    blender=$(blender_bin)
    [[ -n $blender && -x $blender ]] ||
        die "no Blender found: run setup.sh, set BLENDER_BIN, or install Blender (Debian package blender)"
    # A resumed job starts over from its done records: the previous outcome no longer holds.
    rm -f "$JOB/result.json"
    mkdir -p "$JOB/out" "$JOB/frames"
    setsid bash "${BASH_SOURCE[0]}" render-run "$1" </dev/null >>"$JOB/runner.log" 2>&1 9>&- &
    local pid=$! started
    started=$(start_time "$pid")
    [[ -n $started ]] || die "the render runner exited at once; see $JOB/runner.log"
    printf '%s %s\n' "$pid" "$started" >"$JOB/job.pid.tmp"
    mv -f "$JOB/job.pid.tmp" "$JOB/job.pid"
    printf '{"rpb_render_started":%s,"job_dir":%s}\n' "$pid" "$(json_string "$JOB")"
}

# The runner: Blender with the driver, again after a crash (each crash uses up an attempt of
# the frame it was rendering), until the driver writes its result.
cmd_render_run() {
    job_dir "$1"
    date +%s >"$JOB/started_at.tmp"
    mv -f "$JOB/started_at.tmp" "$JOB/started_at"
    run_driver "$JOB/blender.log" "$JOB/result.json"
}

# Runs Blender with the driver on $JOB, logging to $1, until the driver writes the result file
# $2 (or the attempts run out, which writes a failed result there).
run_driver() {
    local log_file=$1 result=$2 blend blender retries launches=0 code crash=""
    blend=$(sed -n 's/.*"blend": *"\([^"]*\)".*/\1/p' "$JOB/spec.json" | head -n 1)
    retries=$(sed -n 's/.*"retries": *\([0-9]*\).*/\1/p' "$JOB/spec.json" | head -n 1)
    blender=$(blender_bin)
    while :; do
        launches=$((launches + 1))
        printf 'rpb-render: launch %s at %s\n' "$launches" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$log_file"
        code=0
        # `--log render`: Blender 5 prints render progress only for that log category (older
        # versions print it anyway and accept the option).
        RPB_RENDER_LOG=$log_file RPB_RENDER_RESULT=$result RPB_RENDER_LAST_CRASH=$crash \
            stdbuf -oL -eL "$blender" --factory-startup --log render -b "$blend" \
            --python-exit-code 3 --python "$RENDER_DRIVER" -- "$JOB" </dev/null >>"$log_file" 2>&1 || code=$?
        [[ -f $result ]] && break
        if ((code > 128)); then
            crash="killed by signal $((code - 128))"
        else
            crash="exit code $code"
        fi
        printf 'rpb-render: Blender ended without finishing the job (%s)\n' "$crash" >>"$log_file"
        if ((launches > ${retries:-2} + 1)); then
            write_result "$result" failed "Blender ended $launches times without finishing the job (last: $crash); see $log_file"
            break
        fi
        sleep 1
    done
}

# Prints $3 bytes of file $1 from byte $2 on. No pipe: the file grows while it is read (Blender
# writes on), and `tail | head` would then end in SIGPIPE, failing the script under pipefail.
read_bytes() {
    dd if="$1" bs=65536 iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}

# One line of JSON about the job, then the events from byte $2 on, then the log from byte $3
# on (at most 1 MiB of each per call; the JSON says how many bytes follow).
cmd_render_poll() {
    job_dir "$1"
    # Byte counts, not characters.
    local LC_ALL=C
    local events_from=${2:-0} log_from=${3:-0} state events_size=0 log_size=0 events_bytes log_bytes
    [[ $events_from =~ ^[0-9]+$ && $log_from =~ ^[0-9]+$ ]] || die "offsets must be numbers"
    if [[ ! -d $JOB ]]; then
        printf '{"rpb_render":"missing"}\n'
        return 0
    fi
    job_pid
    if [[ -f $JOB/result.json ]]; then
        state=$(sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' "$JOB/result.json")
    elif ((PID != 0)); then
        state=running
    elif [[ -f $JOB/job.pid ]]; then
        state=stopped
    else
        state=new
    fi
    [[ -f $JOB/events.jsonl ]] && events_size=$(stat -c %s "$JOB/events.jsonl")
    [[ -f $JOB/blender.log ]] && log_size=$(stat -c %s "$JOB/blender.log")
    events_bytes=$((events_size > events_from ? events_size - events_from : 0))
    log_bytes=$((log_size > log_from ? log_size - log_from : 0))
    ((events_bytes <= 1048576)) || events_bytes=1048576
    ((log_bytes <= 1048576)) || log_bytes=1048576
    # Whole lines of events only: a record being appended right now waits for the next poll.
    if ((events_bytes > 0)); then
        local chunk
        chunk=$(read_bytes "$JOB/events.jsonl" "$events_from" "$events_bytes"; printf x)
        chunk=${chunk%x}
        chunk=${chunk%"${chunk##*$'\n'}"}
        events_bytes=${#chunk}
    fi
    # Only well-formed values go into the answer (a file can be missing, or mid-write).
    local started=null result=null
    [[ -f $JOB/started_at ]] && started=$(<"$JOB/started_at")
    [[ $started =~ ^[0-9]+$ ]] || started=null
    [[ -s $JOB/result.json ]] && result=$(<"$JOB/result.json")
    [[ $result == \{*\} ]] || result=null
    printf '{"rpb_render":"%s","pid":%s,"started_at":%s,"now":%s,"events_size":%s,"events_bytes":%s,"log_size":%s,"log_bytes":%s,"result":%s}\n' \
        "$state" "$PID" "$started" "$(date +%s)" \
        "$events_size" "$events_bytes" "$log_size" "$log_bytes" "$result"
    ((events_bytes == 0)) || read_bytes "$JOB/events.jsonl" "$events_from" "$events_bytes"
    ((log_bytes == 0)) || read_bytes "$JOB/blender.log" "$log_from" "$log_bytes"
    return 0
}

# Ends a job's runner and Blender (its process group) by the recorded PID: SIGTERM, then
# SIGKILL after RPB_STOP_TIMEOUT. $2 is the state to record (cancelled), or empty to leave the
# job resumable as "stopped" (the pod stops).
end_job() {
    local state=$1 pid waited=0 limit=$((RPB_STOP_TIMEOUT * 10))
    job_pid
    pid=$PID
    if ((pid == 0)); then
        return 1
    fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    while kill -0 -- "-$pid" 2>/dev/null && ((waited < limit)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        waited=0
        while kill -0 -- "-$pid" 2>/dev/null && ((waited < 50)); do
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    [[ -z $state || -f $JOB/result.json ]] || job_result "$state" "cancelled by request"
    return 0
}

cmd_render_cancel() {
    job_dir "$1"
    [[ -d $JOB ]] || die "no render job $1 on this pod ($JOB)"
    local was=false
    if end_job cancelled; then
        was=true
    elif [[ ! -f $JOB/result.json ]]; then
        job_result cancelled "cancelled by request"
    fi
    printf '{"rpb_render_cancelled":%s}\n' "$was"
}

# Every running job ends with the session (a container stopping ends them too); they resume.
stop_render_jobs() {
    local dir
    for dir in "$JOBS_DIR"/*/; do
        [[ -f $dir/job.pid ]] || continue
        JOB=${dir%/}
        if end_job ""; then
            log "stopped render job ${JOB##*/}"
        fi
    done
}

# --- report --------------------------------------------------------------------------------

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

report() {
    local state=ready addon=null down=() name
    local -A pids
    for name in $COMPONENTS; do
        read_pid "$name"
        pids[$name]=$PID
        ((PID != 0)) || down+=("$name")
    done
    if ((pids[blender] != 0)) && mcp_call get_addon_info 10; then
        addon=${REPLY_JSON#'{"status": "success", "result": '}
        addon=${addon%'}'}
        mcp_port_served || down+=(mcp-port)
    elif ((pids[blender] != 0)); then
        down+=(blender-addon)
    fi
    if ((${#down[@]} == 4)); then
        state=stopped
    elif ((${#down[@]} > 0)); then
        state=degraded
    fi
    local version=unknown
    [[ -s $RPB_HOME/assets-version ]] && version=$(tr -dc 0-9a-f <"$RPB_HOME/assets-version")
    printf '{"rpb_session":"%s","assets_version":"%s","display":%s,' "$state" "$version" "$RPB_DISPLAY"
    local mcp_addon=$RPB_MCP_ADDON
    [[ $RPB_MCP_ADDON == upstream && -s $RPB_HOME/mcp-addon ]] && mcp_addon=$(head -n 1 "$RPB_HOME/mcp-addon")
    printf '"ports":{"mcp":%s,"control":%s,"vnc":%s,"novnc":%s},"mcp_addon":%s,' "$RPB_MCP_PORT" \
        "$RPB_CONTROL_PORT" "$RPB_VNC_PORT" "$RPB_NOVNC_PORT" "$(json_string "$mcp_addon")"
    printf '"pids":{"xvfb":%s,"x11vnc":%s,"websockify":%s,"blender":%s},' \
        "${pids[xvfb]}" "${pids[x11vnc]}" "${pids[websockify]}" "${pids[blender]}"
    printf '"started":%s,"down":%s,"addon":%s,"log_dir":%s}\n' \
        "$(json_list "${STARTED[@]}")" "$(json_list "${down[@]}")" "$addon" "$(json_string "$LOG_DIR")"
    [[ $state == ready ]]
}

# --- render farm (Slurm) -------------------------------------------------------------------
#
# A farm is pods sharing one network volume. On the volume ($RPB_HOME/farm): slurm.conf (rpb
# writes it with farm-conf), Slurm's state, each node's spool and log folders, and the jobs.
# On each pod ($RPB_FARM_RUN): the munge key (mode 0400, read from stdin, never an argument),
# munged's socket and the daemons' PID files. Node names are pod ids. A render job's chunks
# are Slurm array tasks; each runs `session.sh farm-task JOB_ID`, which renders its chunk's
# frames with the same driver as a job on one pod.

FARM_DIR=$RPB_HOME/farm
FARM_CONF=$FARM_DIR/slurm.conf
FARM_STATE=$FARM_DIR/state
FARM_DEBS=$FARM_DIR/debs
RPB_FARM_RUN=${RPB_FARM_RUN:-/run/rpb-farm}
FARM_PACKAGES="slurmctld slurmd slurm-client munge"
FARM_PROGRAMS="munged slurmctld slurmd sbatch squeue sinfo scontrol scancel"

farm_program() {
    PATH=$PATH:/usr/sbin:/sbin command -v "$1" 2>/dev/null || true
}

farm_missing() {
    local program
    for program in $FARM_PROGRAMS; do
        [[ -n $(farm_program "$program") ]] || printf '%s ' "$program"
    done
}

# Slurm and munge from the volume's package cache (kept there by the first pod that downloaded
# them), else from the network, keeping the packages for the next pods.
ensure_farm_packages() {
    local missing
    missing=$(farm_missing)
    [[ -n $missing ]] || return 0
    # A machine that is not a pod (the local pod) never installs anything itself.
    [[ ${RPB_FARM_NO_INSTALL:-} != 1 ]] ||
        die "Slurm and munge are missing (${missing% }): install the Debian packages $FARM_PACKAGES"
    ((EUID == 0)) || die "Slurm and munge are missing (${missing% }): install the Debian packages $FARM_PACKAGES as root"
    mkdir -p "$FARM_DEBS/partial"
    local debs=("$FARM_DEBS"/*.deb)
    if [[ -e ${debs[0]} ]]; then
        log "installing Slurm and munge from the volume's package cache $FARM_DEBS"
        DEBIAN_FRONTEND=noninteractive dpkg -i --skip-same-version "${debs[@]}" \
            >>"$LOG_DIR/packages.log" 2>&1 9>&- || log "dpkg reported problems; see $LOG_DIR/packages.log"
        missing=$(farm_missing)
    fi
    if [[ -n $missing ]]; then
        log "installing Slurm and munge from the network; the packages stay in $FARM_DEBS for the next pods"
        # shellcheck disable=SC2086 # one word per package
        {
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends -o "Dir::Cache::archives=$FARM_DEBS" $FARM_PACKAGES
        } >>"$LOG_DIR/packages.log" 2>&1 9>&- || {
            show_log packages
            die "could not install $FARM_PACKAGES"
        }
        missing=$(farm_missing)
        [[ -z $missing ]] || die "still missing after installing $FARM_PACKAGES: $missing"
    fi
}

# What rpb needs to write slurm.conf for this pod: where munged's socket is, the address and
# ports the local farm uses (empty on RunPod: <pod id>.runpod.internal and Slurm's own ports),
# the host name, CPUs and GPUs.
cmd_farm_env() {
    local gpus=0 device
    for device in /dev/nvidia[0-9]*; do
        [[ -e $device ]] && gpus=$((gpus + 1))
    done
    local clients_missing="" program
    for program in sbatch squeue sinfo scontrol scancel; do
        [[ -n $(farm_program "$program") ]] || clients_missing+="$program "
    done
    printf '{"rpb_farm_env":%s,"addr":%s,"ports":%s,"hostname":%s,"cpus":%s,"gpus":%s,"missing":%s,"clients_missing":%s,"blender":%s}\n' \
        "$(json_string "$RPB_FARM_RUN")" "$(json_string "${RPB_FARM_NODE_ADDR:-}")" \
        "$(json_string "${RPB_FARM_PORTS:-}")" "$(json_string "$(uname -n)")" "$(nproc)" "$gpus" \
        "$(json_string "$(farm_missing)")" "$(json_string "$clients_missing")" \
        "$(json_string "$(blender_bin)")"
}

# Writes slurm.conf from stdin onto the volume, atomically, and the farm's gres.conf when the
# input goes on after a line "# --- gres.conf ---" (without one, gres.conf is removed); says
# whether either changed.
GRES_MARK="# --- gres.conf ---"
cmd_farm_conf() {
    mkdir -p "$FARM_DIR" "$FARM_STATE/ctld"
    local input=$FARM_DIR/.farm-conf.in new=$FARM_DIR/.slurm.conf.new new_gres=$FARM_DIR/.gres.conf.new
    local gres=$FARM_DIR/gres.conf changed=0
    cat >"$input"
    awk -v conf="$new" -v gres="$new_gres" -v mark="$GRES_MARK" \
        'BEGIN { out = conf; printf "" > conf } $0 == mark { out = gres; printf "" > gres; next } { print > out }' \
        "$input"
    rm -f "$input"
    [[ -s $new ]] || {
        rm -f "$new" "$new_gres"
        die "no slurm.conf on stdin"
    }
    if [[ -f $FARM_CONF ]] && cmp -s "$new" "$FARM_CONF"; then
        rm -f "$new"
    else
        mv -f "$new" "$FARM_CONF"
        changed=1
    fi
    if [[ -f $new_gres ]]; then
        if [[ -f $gres ]] && cmp -s "$new_gres" "$gres"; then
            rm -f "$new_gres"
        else
            mv -f "$new_gres" "$gres"
            changed=1
        fi
    elif [[ -f $gres ]]; then
        rm -f "$gres"
        changed=1
    fi
    if ((changed)); then
        printf '{"rpb_farm_conf":"written"}\n'
    else
        printf '{"rpb_farm_conf":"unchanged"}\n'
    fi
}

# Starts what is not running of node $1's daemons (role $2: controller or worker), with the
# munge key from stdin. A changed key restarts munged; a changed slurm.conf restarts the node's
# slurmd and the controller's slurmctld (Slurm 22.05 takes new nodes only at a restart; its
# state is saved and running tasks go on). Idempotent: a node that runs as asked is left alone.
cmd_farm_node_up() {
    local node=${1:-} role=${2:-worker}
    [[ $node =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,63}$ ]] || die "bad farm node name '$node'"
    [[ $role == controller || $role == worker ]] || die "the farm role must be controller or worker, got '$role'"
    [[ -s $FARM_CONF ]] || die "no slurm.conf at $FARM_CONF: \`rpb farm up\` writes it"
    local RUN_DIR=$RPB_FARM_RUN LOG_DIR=$RPB_FARM_RUN/logs
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    # munged wants its socket's folder open to all; the key in it is 0400.
    chmod 0755 "$RUN_DIR"
    exec 9>"$RUN_DIR/farm.lock"
    flock -w "$RPB_LOCK_TIMEOUT" 9 || die "another farm-node-up has held $RUN_DIR/farm.lock for ${RPB_LOCK_TIMEOUT}s"
    STARTED=()
    local key=$RUN_DIR/munge.key new=$RUN_DIR/.munge.key.new key_changed=0
    rm -f "$new"
    (
        umask 0377
        cat >"$new"
    )
    if (($(stat -c %s "$new") < 32)); then
        rm -f "$new"
        die "no munge key on stdin (at least 32 bytes)"
    fi
    if [[ -f $key ]] && cmp -s "$new" "$key"; then
        rm -f "$new"
    else
        mv -f "$new" "$key"
        key_changed=1
    fi
    ensure_farm_packages
    read_pid munged
    if ((PID != 0 && key_changed)); then
        stop_component munged
    fi
    read_pid munged
    if ((PID == 0)); then
        rm -f "$RUN_DIR/munge.socket"
        launch munged "$(farm_program munged)" -F --key-file "$key" --socket "$RUN_DIR/munge.socket" \
            --pid-file "$RUN_DIR/munged.own.pid" --seed-file "$RUN_DIR/munged.seed" \
            --log-file "$LOG_DIR/munged.log"
        wait_for munged 15 test -S "$RUN_DIR/munge.socket"
    fi
    local sum
    sum=$({
        cat "$FARM_CONF"
        [[ ! -f $FARM_DIR/gres.conf ]] || cat "$FARM_DIR/gres.conf"
    } | sha256sum)
    sum=${sum%% *}
    mkdir -p "$FARM_STATE/ctld" "$FARM_STATE/node-$node" "$FARM_STATE/spool-$node"
    if [[ $role == controller ]]; then
        read_pid slurmctld
        if ((PID != 0)) && [[ $key_changed == 1 || $(cat "$RUN_DIR/slurmctld.conf-sum" 2>/dev/null) != "$sum" ]]; then
            log "slurm.conf or the key changed: restarting slurmctld (its state is saved)"
            stop_component slurmctld
        fi
        read_pid slurmctld
        if ((PID == 0)); then
            launch slurmctld "$(farm_program slurmctld)" -D -f "$FARM_CONF"
            printf '%s\n' "$sum" >"$RUN_DIR/slurmctld.conf-sum"
            printf '%s\n' "$node" >"$RUN_DIR/slurmctld.node"
        fi
    fi
    read_pid "slurmd-$node"
    if ((PID != 0)) && [[ $key_changed == 1 || $(cat "$RUN_DIR/slurmd-$node.conf-sum" 2>/dev/null) != "$sum" ]]; then
        log "slurm.conf or the key changed: restarting slurmd of $node (running tasks go on)"
        stop_component "slurmd-$node"
    fi
    read_pid "slurmd-$node"
    if ((PID == 0)); then
        launch "slurmd-$node" "$(farm_program slurmd)" -D -N "$node" -f "$FARM_CONF"
        printf '%s\n' "$sum" >"$RUN_DIR/slurmd-$node.conf-sum"
    fi
    printf '{"rpb_farm_node":%s,"role":"%s","started":%s}\n' "$(json_string "$node")" "$role" \
        "$(json_list "${STARTED[@]}")"
}

# Runs a Slurm client program against the farm's slurm.conf, or, on a cluster of the user's
# own (RPB_FARM_CLUSTER=1), against the cluster's configuration.
cmd_farm_slurm() {
    local program=${1:-}
    shift || true
    case $program in
    sbatch | squeue | sinfo | scontrol | scancel) ;;
    *) die "farm-slurm runs sbatch, squeue, sinfo, scontrol or scancel, not '$program'" ;;
    esac
    local binary
    binary=$(farm_program "$program")
    [[ -n $binary ]] || die "$program is missing: install the Debian package slurm-client"
    if [[ ${RPB_FARM_CLUSTER:-} == 1 ]]; then
        exec "$binary" "$@"
    fi
    [[ -s $FARM_CONF ]] || die "no slurm.conf at $FARM_CONF: run \`rpb farm up\`"
    SLURM_CONF=$FARM_CONF exec "$binary" "$@"
}

# One array task of a farm render job (run by Slurm): renders the frames of its chunk
# (chunks.txt: "TASK FRAME,FRAME,..." per line) with the job's spec, logging to
# tasks/TASK.log. A requeued task skips the frames its earlier run verified.
cmd_farm_task() {
    job_dir "$1"
    local task=${SLURM_ARRAY_TASK_ID:-} frames
    [[ $task =~ ^[0-9]+$ ]] || die "farm-task runs as a Slurm array task (no SLURM_ARRAY_TASK_ID)"
    [[ -f $JOB/spec.json && -f $JOB/chunks.txt ]] || die "render job $1 has no spec.json or chunks.txt in $JOB"
    frames=$(awk -v task="$task" '$1 == task { print $2; exit }' "$JOB/chunks.txt")
    [[ $frames =~ ^-?[0-9]+(,-?[0-9]+)*$ ]] || die "render job $1 has no chunk $task in $JOB/chunks.txt"
    mkdir -p "$JOB/tasks" "$JOB/out" "$JOB/frames"
    local result=$JOB/tasks/$task.result.json
    rm -f "$result"
    log "task $task of job $1 on node ${SLURMD_NODENAME:-?}: frames $frames (restart ${SLURM_RESTART_COUNT:-0})"
    export RPB_RENDER_FRAMES=$frames RPB_RENDER_NODE=${SLURMD_NODENAME:-}
    run_driver "$JOB/tasks/$task.log" "$result"
    grep -q '"state": *"done"' "$result"
}

# Every farm daemon this pod runs ends with the session (as with a container's end).
stop_farm() {
    [[ -d $RPB_FARM_RUN ]] || return 0
    local RUN_DIR=$RPB_FARM_RUN file name
    for file in "$RUN_DIR"/slurmd-*.pid; do
        [[ -f $file ]] || continue
        name=${file##*/}
        stop_component "${name%.pid}" || true
    done
    stop_component slurmctld || true
    stop_component munged || true
}

# --- entry points --------------------------------------------------------------------------

validate() {
    local name value
    for name in RPB_DISPLAY RPB_MCP_PORT RPB_CONTROL_PORT RPB_VNC_PORT RPB_NOVNC_PORT RPB_BLENDER_TIMEOUT \
        RPB_SERVICE_TIMEOUT RPB_STOP_TIMEOUT RPB_LOCK_TIMEOUT; do
        value=${!name}
        [[ $value =~ ^[0-9]+$ ]] || die "$name must be a number, got '$value'"
    done
    [[ $RPB_SCREEN =~ ^[0-9]+x[0-9]+x[0-9]+$ ]] || die "RPB_SCREEN must look like 1920x1080x24"
    [[ $RPB_HOME == /* ]] || die "RPB_HOME must be an absolute path, got '$RPB_HOME'"
    [[ $RPB_MCP_ADDON == upstream || $RPB_MCP_ADDON == rpb ]] ||
        die "RPB_MCP_ADDON must be upstream or rpb, got '$RPB_MCP_ADDON'"
}

take_lock() {
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    exec 9>"$RUN_DIR/session.lock"
    flock -w "$RPB_LOCK_TIMEOUT" 9 || die "another session.sh has held $RUN_DIR/session.lock for ${RPB_LOCK_TIMEOUT}s"
}

# Before starting anything: every port of a part that is not running must be free, so a clash
# fails fast and leaves nothing half-started.
preflight() {
    local name port variable
    for name in x11vnc websockify blender; do
        case $name in
        x11vnc) port=$RPB_VNC_PORT variable=RPB_VNC_PORT ;;
        websockify) port=$RPB_NOVNC_PORT variable=RPB_NOVNC_PORT ;;
        blender) port=$RPB_MCP_PORT variable=RPB_MCP_PORT ;;
        esac
        read_pid "$name"
        ((PID != 0)) || require_free_port "$name" "$port" "$variable"
    done
    read_pid blender
    ((PID != 0)) || require_free_port blender "$RPB_CONTROL_PORT" RPB_CONTROL_PORT
    read_pid xvfb
    ((PID != 0)) || require_free_display
    local distinct
    distinct=$(printf '%s\n' "$RPB_MCP_PORT" "$RPB_CONTROL_PORT" "$RPB_VNC_PORT" "$RPB_NOVNC_PORT" | sort -u | wc -l)
    ((distinct == 4)) || die "RPB_MCP_PORT, RPB_CONTROL_PORT, RPB_VNC_PORT and RPB_NOVNC_PORT must differ"
}

cmd_start() {
    take_lock
    STARTED=()
    preflight
    ensure_packages
    prepare_vnc_password
    ensure_xvfb
    ensure_x11vnc
    ensure_websockify
    ensure_blender
    if ((${#STARTED[@]} == 0)); then
        log "everything was already running"
    fi
    report
}

cmd_status() {
    take_lock
    STARTED=()
    report || return 3
}

cmd_stop() {
    take_lock
    local stopped=() name
    # Blender first (it draws on the display), Xvfb last.
    for name in blender websockify x11vnc xvfb; do
        if stop_component "$name"; then
            stopped+=("$name")
        fi
    done
    rm -f "$STATUS_FILE"
    stop_render_jobs
    stop_farm
    printf '{"rpb_stopped":%s}\n' "$(json_list "${stopped[@]}")"
}

main() {
    local command=${1:-start}
    PASSWORD_FROM_STDIN=0
    shift || true
    case $command in
    render-start | render-run | render-poll | render-cancel | farm-task)
        validate
        [[ $# -ge 1 ]] || die "usage: session.sh $command JOB_ID"
        "cmd_${command//-/_}" "$@"
        return
        ;;
    farm-env | farm-conf | farm-node-up | farm-slurm)
        validate
        "cmd_${command//-/_}" "$@"
        return
        ;;
    esac
    while (($#)); do
        case $1 in
        --vnc-password-stdin) PASSWORD_FROM_STDIN=1 ;;
        *) die "unknown argument '$1' (usage: session.sh start|status|stop [--vnc-password-stdin])" ;;
        esac
        shift
    done
    validate
    case $command in
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *) die "unknown command '$command' (usage: session.sh start|status|stop [--vnc-password-stdin])" ;;
    esac
}

main "$@"

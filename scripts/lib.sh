# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It only defines functions; nothing happens at source time.

# repo_root: print the absolute path of the repository (the parent of scripts/).
repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

# log MESSAGE...: one progress line on stderr, so stdout stays for results.
log() {
    printf '==> %s\n' "$*" >&2
}

# die MESSAGE...: print an error and exit the calling script.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ensure_apt PKG...: install the Debian packages that are not installed yet.
# Runs `apt-get update` at most once per script run, and only when something is missing,
# so a second run of a script that calls this is instant and needs no network.
_LIB_APT_UPDATED=0
ensure_apt() {
    local pkg missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
    if ((_LIB_APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -qq
        _LIB_APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv DIR PYTHON REQUIREMENTS_FILE: make DIR a venv of PYTHON with the
# requirements installed. The venv remembers a hash of the requirements file and of the
# interpreter's version; when both match, this returns without starting pip. A venv made
# by another interpreter version is rebuilt from scratch.
ensure_venv() {
    local dir=$1 python=$2 requirements=$3
    [[ -f $requirements ]] || die "no requirements file: $requirements"
    command -v "$python" >/dev/null || die "no such python: $python"

    local version key stamp="$dir/.requirements.sha256"
    version=$("$python" -c 'import sys; print(sys.version)')
    key=$({ printf '%s\n' "$version"; cat "$requirements"; } | sha256sum | cut -d' ' -f1)
    if [[ -f $stamp && $(<"$stamp") == "$key" && -x $dir/bin/python ]]; then
        return 0
    fi

    if [[ -x $dir/bin/python ]] && [[ $("$dir/bin/python" -c 'import sys; print(sys.version)') == "$version" ]]; then
        log "updating venv $dir"
    else
        log "creating venv $dir ($python)"
        # Debian's own python3 keeps venv's pip bootstrap in a separate package.
        "$python" -c 'import ensurepip' 2>/dev/null || ensure_apt python3-venv
        "$python" -m venv --clear "$dir"
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    printf '%s\n' "$key" >"$stamp"
}

# ensure_node MAJOR: make sure `node` and `npm` are on PATH and node is at least MAJOR.
# Installs Debian's nodejs when there is none; an older node is an error naming the fix
# (Debian 12's own nodejs is 18, which has no WebSocket; NodeSource packages 20 and up).
ensure_node() {
    local want=$1 have
    command -v node >/dev/null && command -v npm >/dev/null || ensure_apt nodejs npm
    have=$(node -p 'process.versions.node.split(".")[0]')
    ((have >= want)) || die "node $have is too old: the client's tests need node >= $want (https://github.com/nodesource/distributions)"
}

# node_websocket_flag: print the flag node needs for a global WebSocket (node 20 and 21
# keep it behind --experimental-websocket; 22 and up have it by default), or nothing.
node_websocket_flag() {
    if [[ $(node -p 'typeof WebSocket') != function ]]; then
        printf '%s\n' --experimental-websocket
    fi
}

# ensure_npm_packages DIR: install DIR's package-lock.json into DIR/node_modules with
# `npm ci`, unless the lock file is the one installed last time (a stamp beside it).
ensure_npm_packages() {
    local dir=$1 stamp=$1/node_modules/.lock.sha256 want
    [[ -f $dir/package-lock.json ]] || die "no package-lock.json in $dir"
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want" >"$stamp"
}

# listening_ports PID: the TCP ports process PID listens on, one a line, lowest first;
# nothing while it listens on none. Read from /proc: PID's socket inodes, matched against
# the kernel's table of listening sockets (state 0A), IPv4 and IPv6.
listening_ports() {
    local pid=$1 inodes
    inodes=$(find /proc/"$pid"/fd -lname 'socket:\[*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n')
    [[ -n $inodes ]] || return 0
    awk -v inodes="$inodes" '
        BEGIN { n = split(inodes, list, "\n"); for (i = 1; i <= n; i++) mine[list[i]] = 1 }
        FNR > 1 && $4 == "0A" && ($10 in mine) { split($2, local, ":"); print local[2] }
    ' /proc/"$pid"/net/tcp /proc/"$pid"/net/tcp6 2>/dev/null |
        while read -r hex; do printf '%d\n' "0x$hex"; done | sort -nu
}

# wait_listening PID WHAT: wait (bounded, 30 s) until process PID listens on a TCP port,
# then print its ports (listening_ports). For servers started on port 0: the kernel picks
# a port nobody holds and the script reads it back, instead of guessing a free port that
# another process may take first. Fails at once when PID exits.
wait_listening() {
    local pid=$1 what=$2 i ports
    for ((i = 0; i < 300; i++)); do
        ports=$(listening_ports "$pid")
        [[ -n $ports ]] && { printf '%s\n' "$ports"; return 0; }
        kill -0 "$pid" 2>/dev/null || { printf 'error: %s exited during start-up\n' "$what" >&2; return 1; }
        sleep 0.1
    done
    printf 'error: %s not listening after 30 s\n' "$what" >&2
    return 1
}

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago. Only for servers
# that cannot bind port 0 and be read back (nginx): anything else binds port 0 and the
# caller reads the port with wait_listening, since another process may take this one
# between the check and the bind.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready PID WHAT CMD...: run CMD every 0.1 s until it succeeds. Fails at once when
# process PID has exited (its own error is already on the terminal), or after 30 s.
wait_ready() {
    local pid=$1 what=$2 i
    shift 2
    for ((i = 0; i < 300; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { printf 'error: %s exited during start-up\n' "$what" >&2; return 1; }
        sleep 0.1
    done
    printf 'error: %s not ready after 30 s\n' "$what" >&2
    return 1
}

# stop_group PID [SECONDS]: SIGTERM the process group led by PID (a child started with
# `setsid`), wait up to SECONDS (default 10) for all of it to exit, then SIGKILL what is
# left, and reap PID. Safe to call with an empty PID or one that already exited.
stop_group() {
    local pid=$1 seconds=${2:-10} i
    [[ -n $pid ]] || return 0
    if kill -TERM -- "-$pid" 2>/dev/null; then
        for ((i = 0; i < seconds * 10; i++)); do
            _group_alive "$pid" || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# _group_alive PID: true while a process of PID's group still runs. The leader is our
# child, so once it exits it stays a zombie (which signals still "reach") until reaped.
_group_alive() {
    local pid=$1 stat state
    if read -r stat 2>/dev/null </proc/"$pid"/stat; then
        state=${stat##*) }
        [[ ${state%% *} == Z ]] && wait "$pid" 2>/dev/null
    fi
    kill -0 -- "-$pid" 2>/dev/null
}

# toml_string VALUE: print VALUE as a TOML basic string (quoted, \ and " escaped).
toml_string() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# switchyard_knows_django BIN DIR DATABASE_URL: true when switchyard BIN accepts a
# `[django]` section reading DATABASE_URL (probed with `check` on a scratch config in
# DIR). Transitional: builds from before the session bridge's config refuse the section.
switchyard_knows_django() {
    local bin=$1 probe=$2/django-probe.toml database=$3 status=0
    cat >"$probe" <<TOML
[server]
listen = "127.0.0.1:9"
[upstream]
url = "http://127.0.0.1:9"
[django]
secret_key_env = "DJANGO_SECRET_KEY"
database = $(toml_string "$database")
TOML
    DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-probe} "$bin" check --config "$probe" >/dev/null 2>&1 || status=$?
    rm -f "$probe"
    return "$status"
}

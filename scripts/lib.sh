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
        "$python" -m venv --clear "$dir"
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    printf '%s\n' "$key" >"$stamp"
}

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for CMD...: run CMD every 0.1 s until it succeeds; give up after 30 s.
wait_for() {
    local i
    for ((i = 0; i < 300; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

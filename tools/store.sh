#!/usr/bin/env bash
# Local MongoDB-compatible store for mod_aiproxy development and tests.
#
# There is no real MongoDB here, so we run mongo-java-server (a Java
# implementation of the MongoDB wire protocol) through the tiny launcher in
# tools/mongo-server/.
#
#   tools/store.sh build                   build tools/mongo-server/target/mongo-server.jar
#                                          (only if missing or older than its sources)
#   tools/store.sh start DIR PORT [--memory]
#                                          start on 127.0.0.1:PORT in the background;
#                                          pid -> DIR/store.pid, log -> DIR/store.log,
#                                          data -> DIR/store.h2 (none with --memory)
#   tools/store.sh stop DIR                stop the server started with DIR
#   tools/store.sh status DIR              exit 0 if it is running
#
# Environment: STORE_JAVA_OPTS (default "-Xmx1g"), STORE_START_TIMEOUT (seconds, default 60).

set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVER_DIR="$TOOLS_DIR/mongo-server"
JAR="$SERVER_DIR/target/mongo-server.jar"
START_TIMEOUT="${STORE_START_TIMEOUT:-60}"
STOP_TIMEOUT=15

die() {
    echo "store: $*" >&2
    exit 1
}

usage() {
    echo "usage:" >&2
    sed -n '8,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# True while process $1 exists and is not a zombie (kill -0 also succeeds
# for an exited child that has not been reaped yet).
is_alive() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Install Debian packages, running apt-get update only when something is missing.
apt_install() {
    command -v apt-get >/dev/null || die "need $* but apt-get is not available; install them by hand"
    echo "store: installing $* ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

ensure_java() {
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v java >/dev/null || die "java still missing after install"
}

ensure_build_tools() {
    local missing=()
    # Compiling needs javac, which only the JDK package has.
    command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
    if ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
        die "javac/mvn still missing after install"
    fi
}

jar_is_current() {
    [[ -f "$JAR" ]] || return 1
    # Stale if any source file or the pom is newer than the jar.
    [[ -z "$(find "$SERVER_DIR/pom.xml" "$SERVER_DIR/src" -type f -newer "$JAR" -print -quit)" ]]
}

cmd_build() {
    if jar_is_current; then
        return 0
    fi
    ensure_build_tools
    echo "store: building $JAR ..." >&2
    local log
    log="$(mktemp)"
    # -q keeps Maven quiet; the full output is shown only if the build fails.
    if ! (cd "$SERVER_DIR" && mvn -q -B package) >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "build failed"
    fi
    rm -f "$log"
    [[ -f "$JAR" ]] || die "build finished but $JAR is missing"
    touch "$JAR"   # so that jar_is_current holds even if Maven kept an older file
}

# Prints the pid recorded in DIR/store.pid if that process is our server.
running_pid() {
    local dir="$1" pid
    [[ -f "$dir/store.pid" ]] || return 1
    pid="$(<"$dir/store.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Guard against a recycled pid: the process must be our jar.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'mongo-server\.jar' || return 1
    echo "$pid"
}

cmd_start() {
    (($# >= 2 && $# <= 3)) || usage
    local dir="$1" port="$2" memory=0
    if (($# == 3)); then
        [[ "$3" == "--memory" ]] || usage
        memory=1
    fi
    if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        die "bad port: $port"
    fi

    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local pid
    if pid="$(running_pid "$dir")"; then
        die "already running in $dir (pid $pid)"
    fi

    ensure_java
    cmd_build

    local args=(--host 127.0.0.1 --port "$port")
    local what="memory backend"
    if ((memory == 0)); then
        args+=(--h2 "$dir/store.h2")
        what="data in $dir/store.h2"
    fi

    local log="$dir/store.log"
    # shellcheck disable=SC2086  # STORE_JAVA_OPTS is a list of words
    nohup java ${STORE_JAVA_OPTS:--Xmx1g} -jar "$JAR" "${args[@]}" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/store.pid"

    # Wait for the launcher's "READY <port>" line.
    local deadline=$((SECONDS + START_TIMEOUT))
    until grep -q '^READY ' "$log" 2>/dev/null; do
        if ! is_alive "$pid"; then
            rm -f "$dir/store.pid"
            echo "---- $log" >&2
            tail -n 20 "$log" >&2
            die "server exited during startup (port $port in use?); see $log"
        fi
        if ((SECONDS >= deadline)); then
            kill -TERM "$pid" 2>/dev/null || true
            rm -f "$dir/store.pid"
            die "server not ready after ${START_TIMEOUT}s; see $log"
        fi
        sleep 0.1
    done
    echo "store: ready on 127.0.0.1:$port (pid $pid, $what)" >&2
}

cmd_stop() {
    (($# == 1)) || usage
    local dir="$1" pid
    if ! pid="$(running_pid "$dir")"; then
        rm -f "$dir/store.pid"
        echo "store: not running in $dir" >&2
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while is_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            echo "store: pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s, killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$dir/store.pid"
    echo "store: stopped (pid $pid)" >&2
}

cmd_status() {
    (($# == 1)) || usage
    local pid
    if pid="$(running_pid "$1")"; then
        echo "store: running (pid $pid)"
    else
        echo "store: not running"
        return 1
    fi
}

(($# >= 1)) || usage
command="$1"
shift
case "$command" in
    build) (($# == 0)) || usage; cmd_build ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac

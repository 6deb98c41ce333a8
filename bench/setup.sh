#!/usr/bin/env bash
# Installs what the benchmark needs, idempotently (quick when nothing is
# missing). bench/run.sh calls it first.
#   - the project itself (tools/setup.sh: httpd, the module, .venv, the store)
#   - wrk (Debian), Go (for bench/tools: fake upstream, stream client, relay)
#   - the peers, pinned in bench/pins/: @portkey-ai/gateway (npm ci in
#     bench/peers/) and LiteLLM's proxy (a venv in bench/.venv-litellm/)
#   - with --profile: valgrind and perf
# A peer that cannot be installed does not stop the benchmark: the reason is
# left in bench/.build/PEER.unavailable and the report shows it.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
BUILD="$BENCH/.build"
LITELLM_VERSION=1.100.5   # 1.106.10+ need a certifi newer than the registry here serves
cd "$ROOT"
mkdir -p "$BUILD"

"$ROOT/tools/setup.sh"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_missing() {
    local p out=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
    done
    echo "${out[*]:-}"
}
apt_install() {
    local missing
    missing="$(apt_missing "$@")"
    [ -z "$missing" ] && return 0
    echo "bench setup: installing $missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

pkgs=(wrk util-linux)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
if [ "${1:-}" = "--profile" ]; then
    pkgs+=(valgrind)
    command -v perf >/dev/null || pkgs+=(linux-perf)
fi
apt_install "${pkgs[@]}"

# Go: the machine's toolchain, else Debian's (bench/tools needs Go >= 1.19).
if ! command -v go >/dev/null; then
    if [ -x /usr/local/go/bin/go ]; then
        export PATH="/usr/local/go/bin:$PATH"
    else
        apt_install golang-go
    fi
fi
need_build=0
for b in upstream ssebench storecount; do
    if [ ! -x "$BUILD/$b" ] ||
       [ -n "$(find "$BENCH/tools" \( -name '*.go' -o -name go.mod \) -newer "$BUILD/$b" -print -quit)" ]; then
        need_build=1
    fi
done
if [ "$need_build" = 1 ]; then
    echo "bench setup: building bench/tools" >&2
    (cd "$BENCH/tools" && go build -o "$BUILD/" ./...)
fi

# Portkey's gateway, exactly as pinned in bench/pins/package-lock.json,
# installed in bench/peers/ (ignored by git).
want="$(sed -n 's/.*"@portkey-ai\/gateway": "\(.*\)".*/\1/p' "$BENCH/pins/package.json")"
have="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' \
    "$BENCH/peers/node_modules/@portkey-ai/gateway/package.json" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    echo "bench setup: installing @portkey-ai/gateway@$want" >&2
    mkdir -p "$BENCH/peers"
    cp "$BENCH/pins/package.json" "$BENCH/pins/package-lock.json" "$BENCH/peers/"
    if (cd "$BENCH/peers" && npm ci --no-audit --no-fund) >"$BUILD/install-portkey.log" 2>&1; then
        rm -f "$BUILD/portkey.unavailable"
    else
        { echo "npm ci failed:"; tail -n 3 "$BUILD/install-portkey.log"; } \
            | tr '\n' ' ' >"$BUILD/portkey.unavailable"
        echo "bench setup: Portkey not installed, see $BUILD/install-portkey.log" >&2
    fi
fi

# LiteLLM's proxy, pinned, in its own venv (its dependencies are many).
V="$BENCH/.venv-litellm"
have="$("$V/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)"
if [ "$have" != "$LITELLM_VERSION" ]; then
    echo "bench setup: installing litellm[proxy]==$LITELLM_VERSION (a few minutes)" >&2
    # The versions of the run in bench/README.md as constraints; if this
    # registry cannot serve them all, the pinned LiteLLM with what it can.
    pip=("$V/bin/pip" install -q --disable-pip-version-check)
    if { python3 -m venv "$V" &&
         { "${pip[@]}" -c "$BENCH/pins/litellm-constraints.txt" "litellm[proxy]==$LITELLM_VERSION" ||
           "${pip[@]}" "litellm[proxy]==$LITELLM_VERSION"; }; } \
            >"$BUILD/install-litellm.log" 2>&1; then
        rm -f "$BUILD/litellm.unavailable"
    else
        { echo "pip install failed:"; grep -E '^ERROR' "$BUILD/install-litellm.log" | tail -n 2; } \
            | tr '\n' ' ' >"$BUILD/litellm.unavailable"
        echo "bench setup: LiteLLM not installed, see $BUILD/install-litellm.log" >&2
    fi
fi

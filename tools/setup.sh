#!/usr/bin/env bash
# Installs and builds what mod_aiproxy needs on Debian bookworm: to run it
# (tools/run calls this), or with --test also to test it (tools/test).
# Idempotent and quick when nothing is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TEST=0
[ "${1:-}" != --test ] || TEST=1

# Running: httpd, the module's libraries and their build tools, Python for
# the schema.
APT_PACKAGES=(
    apache2 apache2-dev libjwt-dev libmongoc-dev libbson-dev libjansson-dev
    libssl-dev libcurl4-openssl-dev pkg-config make gcc ca-certificates curl
    openssl python3 python3-venv libapache2-mod-auth-openidc
)
# The local store is a Java server: wanted without MONGODB_URI, and always
# by the tests (some stop and restart their own).
STORE=0
if [ -z "${MONGODB_URI:-}" ] || ((TEST)); then
    STORE=1
    APT_PACKAGES+=(openjdk-17-jdk-headless maven)
fi
# Testing adds: the dashboard's browser (chromium), a shared cache
# (redis), a moved clock (month rollover), the fuzzers (clang's libFuzzer),
# node for the test OpenID provider (unless the machine has its own).
if ((TEST)); then
    APT_PACKAGES+=(chromium redis-server faketime clang libclang-rt-14-dev)
    # The Debian package (t/test_debian_package.py): its build tools, and
    # what it depends on, so that installing it needs no download.
    APT_PACKAGES+=(dpkg-dev debhelper lintian python3-pymongo)
    command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# httpd's children drop root for this user when started as root.
if [ "$(id -u)" -eq 0 ]; then
    id aiproxy >/dev/null 2>&1 || useradd --system --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin aiproxy
fi

# Python, pinned: the schema tool's driver to run (tools/requirements.txt),
# the test suite's packages to test (t/requirements.txt, which includes it).
req=tools/requirements.txt mark=.venv/.installed-run
if ((TEST)); then req=t/requirements.txt mark=.venv/.installed-test; fi
if [ ! -x .venv/bin/python ] || [ ! -e "$mark" ] || [ "$req" -nt "$mark" ] \
        || [ tools/requirements.txt -nt "$mark" ]; then
    echo "setup: installing Python packages into .venv ($req)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r "$req"
    touch "$mark"
fi

# Network faults between the gateway and the store (t/test_store_toxics.py):
# Toxiproxy's server, built from its Go module at a pinned version into
# .tools/ (the machine's Go, else Debian's).
TOXIPROXY_VERSION=v2.12.0
if ((TEST)) && { [ ! -x .tools/bin/toxiproxy-server ] ||
        [ "$(cat .tools/toxiproxy.version 2>/dev/null)" != "$TOXIPROXY_VERSION" ]; }; then
    go=go
    if ! command -v go >/dev/null; then
        if [ -x /usr/local/go/bin/go ]; then
            go=/usr/local/go/bin/go
        else
            sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo"
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
                --no-install-recommends golang-go >/dev/null
        fi
    fi
    # Toxiproxy's go.mod needs Go 1.22: say so rather than fail obscurely.
    gov=$("$go" env GOVERSION 2>/dev/null | sed 's/^go//')
    if ! printf '1.22\n%s\n' "$gov" | sort -V -C; then
        echo "setup: Toxiproxy needs Go 1.22 or newer; this machine has ${gov:-none}" >&2
        exit 1
    fi
    echo "setup: building Toxiproxy $TOXIPROXY_VERSION" >&2
    mkdir -p .tools/bin
    GOPATH="$ROOT/.tools/go" GOCACHE="$ROOT/.tools/go-cache" GOBIN="$ROOT/.tools/gobin" \
        GOFLAGS=-modcacherw "$go" install \
        -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
        "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
    mv -f .tools/gobin/server .tools/bin/toxiproxy-server
    echo "$TOXIPROXY_VERSION" > .tools/toxiproxy.version
fi

# A real OpenID provider for t/test_oidc.py: npm's oidc-provider, pinned
# with its dependencies by t/oidc/package-lock.json, in a project-local
# prefix.
if ((TEST)) && ! cmp -s t/oidc/package-lock.json .tools/npm-oidc/.installed-lock; then
    echo "setup: installing oidc-provider (t/oidc/package-lock.json)" >&2
    rm -rf .tools/npm-oidc
    mkdir -p .tools/npm-oidc
    cp t/oidc/package.json t/oidc/package-lock.json .tools/npm-oidc/
    (cd .tools/npm-oidc && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp t/oidc/package-lock.json .tools/npm-oidc/.installed-lock
fi

# The coding agents the tests drive (t/test_agents.py): Claude Code and the
# Codex CLI, pinned, from npm into .tools/npm (each ships a native binary
# per platform as an optional dependency, so Node 18+ is enough to install).
AGENTS="@anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0"
if ((TEST)) && [ "$(cat .tools/npm/agents.version 2>/dev/null)" != "$AGENTS" ]; then
    echo "setup: installing $AGENTS into .tools/npm" >&2
    mkdir -p .tools/npm
    # shellcheck disable=SC2086
    npm install --prefix .tools/npm --no-audit --no-fund --loglevel=error \
        --omit=dev $AGENTS >/dev/null
    echo "$AGENTS" > .tools/npm/agents.version
fi

((STORE)) && tools/store.sh build
if ((TEST)); then
    make -s -f Makefile.apxs all >/dev/null
else
    make -s -f Makefile.apxs deps-check module cli >/dev/null
fi

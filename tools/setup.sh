#!/usr/bin/env bash
# Installs and builds everything mod_aiproxy needs on Debian bookworm.
# Idempotent and quick when nothing is missing; the run and test commands
# call it first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(
    apache2 apache2-dev libjwt-dev libmongoc-dev libbson-dev libjansson-dev
    libssl-dev pkg-config make gcc ca-certificates curl openssl
    openjdk-17-jdk-headless maven python3 python3-venv
    libcurl4-openssl-dev chromium
    # tests: a shared cache (redis), a moved clock (month rollover), the
    # fuzzers (clang's libFuzzer)
    redis-server faketime clang libclang-rt-14-dev
)

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

# httpd's children drop root for this user when started as root; they
# serve the dashboard from admin/www, so every directory above it must let
# them through (a clone under /root would not).
if [ "$(id -u)" -eq 0 ]; then
    id aiproxy >/dev/null 2>&1 || useradd --system --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin aiproxy
    if ! runuser -u aiproxy -- test -r "$ROOT/admin/www/index.html"; then
        dir="$ROOT/admin/www"
        while [ "$dir" != / ]; do
            chmod o+x "$dir"
            dir="$(dirname "$dir")"
        done
        chmod -R o+rX "$ROOT/admin/www"
    fi
fi

# Python for the tests and tools, pinned.
if [ ! -x .venv/bin/python ] || [ t/requirements.txt -nt .venv/.installed ]; then
    echo "setup: installing Python packages into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r t/requirements.txt
    touch .venv/.installed
fi

tools/store.sh build
make -s -f Makefile.apxs all >/dev/null

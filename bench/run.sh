#!/usr/bin/env bash
# The benchmark, on loopback only and bounded in time:
#   bench/run.sh [--quick|--full|--soak|--profile] [--targets direct,httpd-proxy,...]
#     --quick    (default) ~2.5 minutes: all targets, one round
#     --full     ~15 minutes: three rounds, delayed upstream at every c, more streams
#     --soak     100,000 requests through mod_aiproxy: RSS before/after, errors
#     --profile  mod_aiproxy under callgrind (httpd -X) and perf
# Prints a markdown report; writes bench/results/latest-MODE.{json,md}.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
mode=quick
case "${1:-}" in
    --quick|--full|--soak|--profile) mode="${1#--}"; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if [ "$mode" = profile ]; then
    "$BENCH/setup.sh" --profile
else
    "$BENCH/setup.sh"
fi
[ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
cd "$ROOT"
# bench.py bounds itself (a budget per mode, then an alarm); this is the
# last resort if it hangs past that.
case "$mode" in quick) limit=900 ;; soak|profile) limit=1500 ;; *) limit=2400 ;; esac
exec timeout --kill-after=30 "$limit" "$ROOT/.venv/bin/python" "$BENCH/bench.py" "$mode" "$@"

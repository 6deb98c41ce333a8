# Sourced by tools/run: the environment conf/httpd.conf reads.
# shellcheck shell=bash
aiproxy_env() {
    local root="$1" var="$2"
    export AIPROXY_ROOT="$root"
    export AIPROXY_VAR="$var"
    export AIPROXY_LISTEN="${AIPROXY_LISTEN:-127.0.0.1:8080}"
    export AIPROXY_DB="${AIPROXY_DB:-aiproxy}"
    export AIPROXY_LOGLEVEL="${AIPROXY_LOGLEVEL:-warn}"
    export AIPROXY_ADMINS="${AIPROXY_ADMINS:-admin@example.com}"
    export OPENAI_BASE_URL="${OPENAI_BASE_URL:-https://api.openai.com/v1}"
    export AIPROXY_REGION="${AIPROXY_REGION:-local}"
    export AIPROXY_WWW="${AIPROXY_WWW:-$root/admin/www}"   # the dashboard
}

# shellcheck shell=bash disable=SC2034 # variables are used by the sourcing scripts
# Shared settings and helpers for scripts/testenv and tests/smoke/*.
# Source it after setting nothing; it derives everything from its own location.

TE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
TE_TARGET="$TE_ROOT/target"
TE_TOOLS="$TE_TARGET/tools"
TE_DIR="$TE_TARGET/testenv"
TE_BIN="$TE_DIR/bin"
TE_LOGS="$TE_DIR/logs"
TE_PIDS="$TE_DIR/pids"
TE_KUBE="$TE_DIR/kube"
TE_REGISTRY="$TE_DIR/registry"
TE_REPO="$TE_DIR/chartrepo"
TE_HELM_HOME="$TE_DIR/helm-home"
TE_ENV_FILE="$TE_DIR/env"
TE_STAMP="$TE_TOOLS/versions.stamp"
TE_CHARTS_SRC="$TE_ROOT/testenv/charts"

# Pinned versions (changing one makes `up` rebuild that tool).
HELM3_VERSION="v3.22.0"
HELM4_VERSION="v4.3.1"

# Ports: the defaults are what other tools expect; override only to run a
# second checkout's test env side by side.
KUBE_PORT="${TESTENV_KUBE_PORT:-6443}"
REGISTRY_ADDR="127.0.0.1:${TESTENV_REGISTRY_PORT:-5000}"
CHART_REPO_HOST="127.0.0.1"
CHART_REPO_PORT="${TESTENV_CHART_REPO_PORT:-8879}"
CHART_REPO_URL_DEFAULT="http://${CHART_REPO_HOST}:${CHART_REPO_PORT}"
KUBE_NODE_NAME="localkube-node"

# Cloudflare API double (testenv/cmd/cloudflare-double): zone paas.test, the
# operator's domain apps.paas.test below it.
CLOUDFLARE_ADDR="127.0.0.1:${TESTENV_CLOUDFLARE_PORT:-8788}"
CLOUDFLARE_ZONE_NAME="paas.test"
CLOUDFLARE_DOMAIN="apps.$CLOUDFLARE_ZONE_NAME"
CLOUDFLARE_BIN="$TE_BIN/cloudflare-double"
TE_CLOUDFLARE="$TE_DIR/cloudflare"

HELM3_BIN="$TE_TOOLS/helm3"
HELM4_BIN="$TE_TOOLS/helm4"
KUBECTL_BIN="$TE_TOOLS/kubectl"
LOCALKUBE_BIN="$TE_BIN/localkube"
KUBECONFIG_FILE="$TE_KUBE/admin.kubeconfig"

te_log() { printf '[testenv %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
te_warn() { printf '[testenv %s] WARNING: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
te_die() { printf '[testenv %s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

# te_now: seconds since epoch.
te_now() { date +%s; }

# te_port_open HOST PORT: true when something accepts TCP connections there.
te_port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# te_pid_alive NAME: prints the PID and succeeds when the process recorded in
# pids/NAME.pid is alive and its command line still contains the expected marker
# stored on the pid file's second line (guards against PID reuse).
te_pid_alive() {
  local f="$TE_PIDS/$1.pid" pid marker cmdline
  [[ -f "$f" ]] || return 1
  { read -r pid; read -r marker; } <"$f" || true
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  { cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"; } 2>/dev/null || cmdline=""
  # A zombie has an empty command line: treat it as dead.
  [[ -n "$cmdline" ]] || return 1
  if [[ -n "${marker:-}" && "$cmdline" != *"$marker"* ]]; then
    return 1
  fi
  printf '%s\n' "$pid"
}

#!/usr/bin/env bash
# Helm smoke test against the local test environment (scripts/testenv up).
#
# For Helm 3 and for Helm 4: in a fresh namespace with a ResourceQuota, install
# chart `web` 0.1.0 from the OCI registry, wait for Running/Ready pods, upgrade
# to 0.2.0 (revision 2, appVersion 2.0.0), roll back to revision 1, uninstall,
# delete the namespace and wait until it is gone. Then install `web` once from
# the classic HTTP chart repository (--repo).
#
# Prints PASS/FAIL per case and ends with "N passed, M failed"; exits non-zero
# on any failure. Needs target/testenv/env (written by `scripts/testenv up`).
# SMOKE_TIMEOUT (seconds, default 120) bounds every wait.
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd -P)"
ENV_FILE="$ROOT/target/testenv/env"
T="${SMOKE_TIMEOUT:-120}"

PASSED=0
FAILED=0
NAMESPACES=()
WORK=""

summary() { echo "$PASSED passed, $FAILED failed"; }

if [[ ! -f "$ENV_FILE" ]]; then
  echo "FAIL: $ENV_FILE not found: run scripts/testenv up first"
  FAILED=1
  summary
  exit 1
fi
# shellcheck source=/dev/null
source "$ENV_FILE"
for v in KUBECONFIG HELM_BINARY HELM3_BINARY HELM4_BINARY OCI_REGISTRY CHART_REPO_URL; do
  if [[ -z "${!v:-}" ]]; then
    echo "FAIL: $v is not set by $ENV_FILE"
    FAILED=1
    summary
    exit 1
  fi
done
command -v kubectl >/dev/null || { echo "FAIL: kubectl not on PATH after sourcing $ENV_FILE"; FAILED=1; summary; exit 1; }
command -v jq >/dev/null || { echo "FAIL: jq is required"; FAILED=1; summary; exit 1; }

# Helm gets private, writable cache/config/data dirs.
mkdir -p "$ROOT/target/testenv"
WORK="$(mktemp -d "$ROOT/target/testenv/smoke.XXXXXX")"
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"

cleanup() {
  local ns
  for ns in "${NAMESPACES[@]}"; do
    if kubectl get namespace "$ns" >/dev/null 2>&1; then
      echo "    cleanup: deleting leftover namespace $ns"
      kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    fi
  done
  NAMESPACES=()
  if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
  WORK=""
}
trap cleanup EXIT

rand() { od -An -N4 -tx1 /dev/urandom | tr -d ' \n'; }
say() { echo "    $*"; }

# step DESC CMD...: run CMD; show its output only when it fails.
step() {
  local desc="$1" out rc=0
  shift
  out="$("$@" 2>&1)" || rc=$?
  if ((rc == 0)); then
    say "ok: $desc"
    return 0
  fi
  say "FAILED: $desc (exit $rc)"
  say "  command: $*"
  tail -n 40 <<<"$out" | sed "s/^/      | /"
  return 1
}

# check DESC ACTUAL EXPECTED
check() {
  if [[ "$2" == "$3" ]]; then
    say "ok: $1 = $3"
    return 0
  fi
  say "FAILED: $1: expected '$3', got '$2'"
  return 1
}

helm_major() { "$1" version --template '{{.Version}}' 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }

# Flags that wait for resources, valid for the given Helm major version:
# Helm 3 `--wait` is a bool, Helm 4 `--wait` takes a strategy.
wait_flags() {
  if [[ "$1" -ge 4 ]]; then
    echo "--wait=watcher --timeout=${T}s"
  else
    echo "--wait --timeout=${T}s"
  fi
}

# Last entry of `helm history -o json` as "revision chart app_version status".
release_state() {
  local helm="$1" rel="$2" ns="$3"
  "$helm" history "$rel" -n "$ns" -o json |
    jq -r 'sort_by(.revision|tonumber) | last | "\(.revision) \(.chart) \(.app_version) \(.status)"'
}

create_namespace_with_quota() {
  local ns="$1"
  NAMESPACES+=("$ns")
  step "create namespace $ns" kubectl create namespace "$ns" || return 1
  step "create ResourceQuota (cpu/memory/pods)" kubectl -n "$ns" create quota smoke-quota \
    --hard=requests.cpu=1,requests.memory=1Gi,limits.cpu=2,limits.memory=2Gi,pods=10 || return 1
  # The quota admission plugin rejects pods until the controller has computed
  # the quota's status: wait for it.
  step "quota status computed" kubectl -n "$ns" wait resourcequota/smoke-quota \
    --for=jsonpath='{.status.hard.pods}'=10 --timeout="${T}s" || return 1
}

# wait_web_ready REL NS APPVERSION: the Deployment is rolled out and the pods of
# that appVersion are Running and Ready.
wait_web_ready() {
  local rel="$1" ns="$2" appver="$3" sel pods
  sel="app.kubernetes.io/instance=$rel,app.kubernetes.io/version=$appver"
  step "deployment $rel-web rolled out" kubectl -n "$ns" rollout status "deployment/$rel-web" --timeout="${T}s" || return 1
  step "pods ($appver) Running" kubectl -n "$ns" wait pod -l "$sel" --for=jsonpath='{.status.phase}'=Running --timeout="${T}s" || return 1
  step "pods ($appver) Ready" kubectl -n "$ns" wait pod -l "$sel" --for=condition=Ready --timeout="${T}s" || return 1
  pods="$(kubectl -n "$ns" get pods -l "$sel" -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)
            | select(.spec.containers[0].image | endswith(":'"$appver"'"))
            | select(.status.phase == "Running")
            | select([.status.containerStatuses[]?.ready] | (length > 0 and all))] | length')"
  check "Running+Ready pods with image tag $appver" "$pods" 1 || return 1
}

delete_namespace() {
  local ns="$1"
  step "delete namespace $ns" kubectl delete namespace "$ns" --wait=false || return 1
  step "namespace $ns gone" kubectl wait --for=delete "namespace/$ns" --timeout="${T}s" || return 1
  if kubectl get namespace "$ns" >/dev/null 2>&1; then
    say "FAILED: namespace $ns still exists"
    return 1
  fi
}

# The OCI lifecycle for one Helm binary.
lifecycle_oci() {
  local label="$1" helm="$2" major id ns rel chart used
  major="$(helm_major "$helm")"
  check "$label major version" "$major" "${label#helm}" || return 1
  id="$(rand)"
  ns="smoke-$label-$id"
  rel="web-$id"
  chart="oci://$OCI_REGISTRY/charts/web"
  # shellcheck disable=SC2207 # word-splitting of fixed flag lists is intended
  local wf=($(wait_flags "$major"))

  create_namespace_with_quota "$ns" || return 1
  step "install $chart 0.1.0" "$helm" install "$rel" "$chart" --version 0.1.0 --plain-http -n "$ns" "${wf[@]}" || return 1
  wait_web_ready "$rel" "$ns" 1.0.0 || return 1
  check "after install (revision chart appVersion status)" "$(release_state "$helm" "$rel" "$ns")" "1 web-0.1.0 1.0.0 deployed" || return 1
  used="$(kubectl -n "$ns" get resourcequota smoke-quota -o jsonpath='{.status.used.pods}')"
  say "quota in effect: used.pods=$used"

  step "upgrade to 0.2.0" "$helm" upgrade "$rel" "$chart" --version 0.2.0 --plain-http -n "$ns" "${wf[@]}" || return 1
  wait_web_ready "$rel" "$ns" 2.0.0 || return 1
  check "after upgrade (revision chart appVersion status)" "$(release_state "$helm" "$rel" "$ns")" "2 web-0.2.0 2.0.0 deployed" || return 1

  step "rollback to revision 1" "$helm" rollback "$rel" 1 -n "$ns" "${wf[@]}" || return 1
  wait_web_ready "$rel" "$ns" 1.0.0 || return 1
  check "after rollback (revision chart appVersion status)" "$(release_state "$helm" "$rel" "$ns")" "3 web-0.1.0 1.0.0 deployed" || return 1

  step "uninstall" "$helm" uninstall "$rel" -n "$ns" --timeout="${T}s" || return 1
  step "deployment deleted" kubectl -n "$ns" wait --for=delete "deployment/$rel-web" --timeout="${T}s" || return 1
  check "release records left" "$(kubectl -n "$ns" get secrets -l "owner=helm,name=$rel" -o name | wc -l)" 0 || return 1
  delete_namespace "$ns" || return 1
}

# One install from the classic HTTP chart repository.
classic_repo() {
  local helm="$1" major id ns rel
  major="$(helm_major "$helm")"
  id="$(rand)"
  ns="smoke-repo-$id"
  rel="web-$id"
  # shellcheck disable=SC2207
  local wf=($(wait_flags "$major"))
  create_namespace_with_quota "$ns" || return 1
  step "install web 0.2.0 --repo $CHART_REPO_URL" "$helm" install "$rel" web --repo "$CHART_REPO_URL" --version 0.2.0 -n "$ns" "${wf[@]}" || return 1
  wait_web_ready "$rel" "$ns" 2.0.0 || return 1
  check "after install (revision chart appVersion status)" "$(release_state "$helm" "$rel" "$ns")" "1 web-0.2.0 2.0.0 deployed" || return 1
  step "uninstall" "$helm" uninstall "$rel" -n "$ns" --timeout="${T}s" || return 1
  delete_namespace "$ns" || return 1
}

run_case() {
  local name="$1" start rc=0
  shift
  echo "== $name"
  start="$(date +%s)"
  "$@" || rc=$?
  if ((rc == 0)); then
    echo "PASS: $name ($(($(date +%s) - start))s)"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL: $name ($(($(date +%s) - start))s)"
    FAILED=$((FAILED + 1))
  fi
}

if ! out="$(kubectl get --raw /readyz 2>&1)" || [[ "$out" != ok ]]; then
  echo "FAIL: kube-apiserver is not ready (KUBECONFIG=$KUBECONFIG): $out"
  FAILED=1
  summary
  exit 1
fi
run_case "helm3 $("$HELM3_BINARY" version --short 2>/dev/null): OCI install, upgrade, rollback, uninstall, namespace delete" lifecycle_oci helm3 "$HELM3_BINARY"
run_case "helm4 $("$HELM4_BINARY" version --short 2>/dev/null): OCI install, upgrade, rollback, uninstall, namespace delete" lifecycle_oci helm4 "$HELM4_BINARY"
run_case "helm $("$HELM_BINARY" version --short 2>/dev/null): install from classic chart repo $CHART_REPO_URL" classic_repo "$HELM_BINARY"

# Clean up before the summary so that "N passed, M failed" is the last line.
cleanup
trap - EXIT
summary
((FAILED == 0))

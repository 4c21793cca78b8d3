#!/usr/bin/env bash
# Deployment checks against the local test environment (scripts/testenv up):
#
#  (a) k8s/ passes the server-side dry run (kubectl apply -k and -R -f) and
#      holds Deployment, Service, ServiceAccount, Secret, ClusterRoles,
#      ClusterRoleBinding (and the admission policy);
#  (b) k8s/ applied for real: objects exist, the Deployment rolls out 2/2
#      (pods are played Running by the fake kubelet; the image is never pulled);
#  (c) charts/paas-operator: helm lint, template (same kinds as k8s/), install
#      into a fresh namespace, rollout, uninstall — with Helm 3 and Helm 4;
#  (d) RBAC of the ServiceAccount paas-system/paas-operator: the negative
#      checks (no Secrets in kube-system, nothing in default, no pods/exec, no
#      namespace create/delete/relabel or RoleBindings outside paas-ws-*),
#      then what the operator does for a tenant (namespace + RoleBinding
#      paas-operator-tenant + quota) and helm install/uninstall there with a
#      real token (TokenRequest API), Helm 3 and Helm 4; the `escape` chart
#      (objects outside the tenant) is refused.
#
# Prints PASS/FAIL per check and ends with "N passed, M failed"; exits non-zero
# on any failure. Cleans up what it created (k8s/ objects only if paas-system
# did not exist before). DEPLOY_TIMEOUT (seconds, default 120) bounds waits.
set -uo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd -P)"
ENV_FILE="${TESTENV_ENV_FILE:-$ROOT/target/testenv/env}"   # override only for debugging
T="${DEPLOY_TIMEOUT:-120}"
PASSED=0
FAILED=0
summary() { echo "$PASSED passed, $FAILED failed"; }
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
# check "description" command...: PASS when the command succeeds; on failure
# prints the last lines of its output.
check() {
  local what="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$what"; else fail "$what"; printf '%s\n' "$out" | tail -n 8 | sed 's/^/    /'; fi
}

if [[ ! -f "$ENV_FILE" ]]; then
  echo "FAIL: $ENV_FILE not found: run scripts/testenv up first"; FAILED=1; summary; exit 1
fi
# shellcheck source=/dev/null
source "$ENV_FILE"
for v in KUBECONFIG HELM3_BINARY HELM4_BINARY; do
  [[ -n "${!v:-}" ]] || { echo "FAIL: $v is not set by $ENV_FILE"; FAILED=1; summary; exit 1; }
done
command -v kubectl >/dev/null || { echo "FAIL: kubectl not on PATH"; FAILED=1; summary; exit 1; }

cd "$ROOT" || exit 1
SUFFIX="$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SA_USER=system:serviceaccount:paas-system:paas-operator
WORK="$(mktemp -d "$ROOT/target/testenv/deploy.XXXXXX")"
chmod 0700 "$WORK"
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
NAMESPACES=()
CREATED_K8S=0

cleanup() {
  local ns
  for ns in "${NAMESPACES[@]}"; do kubectl delete namespace "$ns" --wait=false --ignore-not-found >/dev/null 2>&1; done
  if [[ "$CREATED_K8S" == 1 ]]; then kubectl delete -k k8s/ --wait=false --ignore-not-found >/dev/null 2>&1; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Kinds in a multi-document YAML/kubectl "-o name" stream, sorted, unique.
kinds_of_yaml() { sed -n 's/^kind: *//p' | sort | uniq -c | awk '{print $2"x"$1}' | tr '\n' ' '; }

echo "== (a) k8s/: server-side dry run"
if [[ "$(kubectl get namespace paas-system -o jsonpath='{.status.phase}' 2>/dev/null)" == Terminating ]]; then
  kubectl wait --for=delete namespace/paas-system --timeout="${T}s" >/dev/null 2>&1
fi
if kubectl get namespace paas-system >/dev/null 2>&1; then
  echo "    (namespace paas-system exists already: k8s/ is left in place afterwards)"
else
  # Namespaced objects cannot be dry-run into a namespace that does not exist:
  # create it first (for real), everything else is a dry run.
  CREATED_K8S=1
  check "create namespace paas-system (k8s/namespace.yaml) for the dry run" kubectl apply -f k8s/namespace.yaml
fi
check "kubectl apply --dry-run=server -k k8s/" kubectl apply --dry-run=server -k k8s/
check "kubectl apply --dry-run=server -R -f k8s/" kubectl apply --dry-run=server -R -f k8s/
RENDERED="$(kubectl kustomize k8s/ 2>&1)"
KINDS="$(kinds_of_yaml <<<"$RENDERED")"
echo "    rendered: $KINDS"
for want in Deployment Service ServiceAccount Secret ClusterRoleBinding ValidatingAdmissionPolicy Namespace; do
  check "k8s/ holds a $want" grep -qx "kind: $want" <<<"$RENDERED"
done
check "k8s/ holds ClusterRoles paas-operator and paas-operator-tenant" \
  bash -c 'grep -c "^kind: ClusterRole$" <<<"$1" | grep -qx 2' _ "$RENDERED"

echo "== (b) k8s/: applied for real"
check "kubectl apply -k k8s/" kubectl apply -k k8s/
for obj in deployment/paas-operator service/paas-operator serviceaccount/paas-operator secret/paas-operator-api-keys poddisruptionbudget/paas-operator; do
  check "$obj exists in paas-system" kubectl -n paas-system get "$obj"
done
for obj in clusterrole/paas-operator clusterrole/paas-operator-tenant clusterrolebinding/paas-operator \
           validatingadmissionpolicy/paas-operator-tenant-scope validatingadmissionpolicybinding/paas-operator-tenant-scope; do
  check "$obj exists" kubectl get "$obj"
done
check "deployment/paas-operator rolls out 2/2 (restricted Pod Security admits the pods)" \
  kubectl -n paas-system rollout status deployment/paas-operator --timeout="${T}s"
check "service paas-operator is ClusterIP 80 -> http" \
  bash -c '[[ "$(kubectl -n paas-system get svc paas-operator -o jsonpath="{.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort}")" == "ClusterIP 80 http" ]]'

echo "== (d) RBAC of $SA_USER"
# A real ServiceAccount token (TokenRequest API) and a kubeconfig using only it.
SERVER="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$WORK/ca.crt" 2>/dev/null
TOKEN="$(kubectl -n paas-system create token paas-operator --duration=20m 2>/dev/null)"
SA_KUBECONFIG="$WORK/sa.kubeconfig"
if [[ -n "$TOKEN" ]]; then
  pass "kubectl create token paas-operator -n paas-system"
  KUBECONFIG="$SA_KUBECONFIG" kubectl config set-cluster c --server="$SERVER" --certificate-authority="$WORK/ca.crt" --embed-certs=true >/dev/null
  KUBECONFIG="$SA_KUBECONFIG" kubectl config set-credentials sa --token="$TOKEN" >/dev/null
  KUBECONFIG="$SA_KUBECONFIG" kubectl config set-context c --cluster=c --user=sa >/dev/null
  KUBECONFIG="$SA_KUBECONFIG" kubectl config use-context c >/dev/null
else
  fail "kubectl create token paas-operator -n paas-system"
fi
sa() { KUBECONFIG="$SA_KUBECONFIG" kubectl "$@"; }
cani() { kubectl auth can-i --as="$SA_USER" "$@" 2>/dev/null; }   # prints yes/no
expect_no() { local a; a="$(cani "$@")"; if [[ "$a" == no ]]; then pass "can-i $* = no"; else fail "can-i $* = '$a', want no"; fi; }
expect_yes() { local a; a="$(cani "$@")"; if [[ "$a" == yes ]]; then pass "can-i $* = yes"; else fail "can-i $* = '$a', want yes"; fi; }

expect_no get secrets -n kube-system
expect_no list secrets --all-namespaces
expect_no create configmaps -n default
expect_no create deployments -n default
expect_no create pods/exec -n default
expect_no create clusterroles
expect_no bind clusterroles/cluster-admin
expect_yes create namespaces
expect_yes bind clusterroles/paas-operator-tenant

OUT="$(sa get secrets -n kube-system 2>&1)"
if grep -q "Forbidden\|forbidden" <<<"$OUT"; then pass "token: get secrets -n kube-system is Forbidden"; else fail "token: get secrets -n kube-system: $OUT"; fi
OUT="$(sa create configmap deploy-test-$SUFFIX -n default --from-literal=a=b 2>&1)"
if grep -qi "forbidden" <<<"$OUT"; then pass "token: create configmap -n default is Forbidden"; else fail "token: create configmap -n default: $OUT"; kubectl -n default delete configmap "deploy-test-$SUFFIX" >/dev/null 2>&1; fi
# What RBAC cannot express, the admission policy enforces:
OUT="$(sa create namespace "deploy-test-$SUFFIX" --dry-run=server 2>&1)"
if grep -q "paas-operator-tenant-scope" <<<"$OUT"; then pass "token: namespace outside paas-ws-* denied by the admission policy"; else fail "token: namespace outside paas-ws-*: $OUT"; fi
VICTIM="deploy-victim-$SUFFIX"   # kube-system itself is protected by NamespaceLifecycle already
NAMESPACES+=("$VICTIM")
kubectl create namespace "$VICTIM" >/dev/null 2>&1
OUT="$(sa delete namespace "$VICTIM" --dry-run=server 2>&1)"
if grep -q "paas-operator-tenant-scope" <<<"$OUT"; then pass "token: deleting a namespace outside paas-ws-* denied by the admission policy"; else fail "token: delete namespace $VICTIM: $OUT"; fi
OUT="$(sa label namespace default paas-managed=true --dry-run=server 2>&1)"
if grep -q "paas-operator-tenant-scope" <<<"$OUT"; then pass "token: relabelling namespace default denied by the admission policy"; else fail "token: label namespace default: $OUT"; fi
OUT="$(sa create rolebinding paas-operator-tenant -n kube-system --clusterrole=paas-operator-tenant --serviceaccount=paas-system:paas-operator --dry-run=server 2>&1)"
if grep -q "paas-operator-tenant-scope" <<<"$OUT"; then pass "token: tenant RoleBinding in kube-system denied by the admission policy"; else fail "token: tenant RoleBinding in kube-system: $OUT"; fi

# What the operator does on POST /api/namespaces, as the ServiceAccount itself.
TENANT="paas-ws-$SUFFIX"
NAMESPACES+=("$TENANT")
check "token: create namespace $TENANT" sa create namespace "$TENANT"
check "token: label it paas-managed=true" sa label namespace "$TENANT" paas-managed=true
cat >"$WORK/rolebinding.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: paas-operator-tenant
  namespace: $TENANT
  labels: {app.kubernetes.io/managed-by: paas-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: paas-operator-tenant}
subjects: [{kind: ServiceAccount, name: paas-operator, namespace: paas-system}]
EOF
check "token: create RoleBinding paas-operator-tenant in $TENANT (bind, no escalation)" sa apply --server-side --field-manager=paas-operator -f "$WORK/rolebinding.yaml"
# The authorizer's RoleBinding cache follows within moments.
for _ in $(seq 1 20); do [[ "$(cani create deployments -n "$TENANT")" == yes ]] && break; sleep 0.5; done
expect_yes create deployments -n "$TENANT"
expect_yes get secrets -n "$TENANT"
expect_yes create resourcequotas -n "$TENANT"
expect_no create pods/exec -n "$TENANT"
expect_no create daemonsets -n "$TENANT"
expect_yes create leases.coordination.k8s.io -n "$TENANT"
expect_yes create limitranges -n "$TENANT"
expect_yes create networkpolicies.networking.k8s.io -n "$TENANT"
expect_yes delete "namespaces/$TENANT"
check "token: create ResourceQuota $TENANT-quota" sa -n "$TENANT" create quota "$TENANT-quota" \
  --hard=requests.cpu=2,limits.cpu=2,requests.memory=4Gi,limits.memory=4Gi,requests.storage=20Gi,persistentvolumeclaims=10
OUT="$(sa create rolebinding too-much -n "$TENANT" --clusterrole=admin --serviceaccount=paas-system:paas-operator --dry-run=server 2>&1)"
if grep -q "attempting to grant RBAC permissions not currently held" <<<"$OUT"; then pass "token: binding ClusterRole admin in the tenant is refused (escalation check)"; else fail "token: binding admin in the tenant: $OUT"; fi

# helm, authenticated only by the token, inside the tenant (as the operator
# runs it). Charts from testenv/charts/ (local paths: no registry needed).
for h in 3 4; do
  var="HELM${h}_BINARY"; HELM="${!var}"; rel="web-h$h"
  check "helm$h (token): install testenv chart web into $TENANT --wait" \
    env KUBECONFIG="$SA_KUBECONFIG" "$HELM" install "$rel" testenv/charts/web -n "$TENANT" --wait --timeout "${T}s"
  check "helm$h (token): status $rel" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" status "$rel" -n "$TENANT"
  check "helm$h (token): upgrade $rel (replicaCount=2)" \
    env KUBECONFIG="$SA_KUBECONFIG" "$HELM" upgrade "$rel" testenv/charts/web -n "$TENANT" --set replicaCount=2 --wait --timeout "${T}s"
  check "helm$h (token): rollback $rel 1" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" rollback "$rel" 1 -n "$TENANT" --wait --timeout "${T}s"
  check "helm$h (token): history of $rel has 3 revisions" \
    bash -c '[[ "$(env KUBECONFIG="$1" "$2" history "$3" -n "$4" -o json | grep -o "\"revision\"" | wc -l)" == 3 ]]' _ "$SA_KUBECONFIG" "$HELM" "$rel" "$TENANT"
  check "helm$h (token): uninstall $rel" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" uninstall "$rel" -n "$TENANT" --wait --timeout "${T}s"
done
OUT="$(KUBECONFIG="$SA_KUBECONFIG" "$HELM4_BINARY" install escape testenv/charts/escape -n "$TENANT" --timeout 60s 2>&1)"
RC=$?
if [[ $RC -ne 0 ]] && grep -qi "forbidden" <<<"$OUT"; then pass "helm4 (token): chart with a ClusterRole and a ConfigMap in default is refused (forbidden)"; else fail "helm4 (token): escape chart (rc=$RC): $OUT"; fi
if kubectl get clusterrole escape-escape >/dev/null 2>&1; then fail "escape chart created ClusterRole escape-escape"; kubectl delete clusterrole escape-escape >/dev/null 2>&1; fi
if kubectl -n default get configmap escape-escaped >/dev/null 2>&1; then fail "escape chart created ConfigMap default/escape-escaped"; kubectl -n default delete configmap escape-escaped >/dev/null 2>&1; fi
KUBECONFIG="$SA_KUBECONFIG" "$HELM4_BINARY" uninstall escape -n "$TENANT" >/dev/null 2>&1

echo "== (c) charts/paas-operator"
K8S_KINDS="$(kinds_of_yaml <<<"$RENDERED" | tr ' ' '\n' | grep -v '^Namespacex' | tr '\n' ' ')"
for h in 3 4; do
  var="HELM${h}_BINARY"; HELM="${!var}"
  check "helm$h lint charts/paas-operator" "$HELM" lint charts/paas-operator
  check "helm$h lint --strict (custom values)" "$HELM" lint --strict charts/paas-operator \
    --set auth.existingSecret=keys,config.allowedChartSources=oci://r/,replicaCount=1
  TPL_KINDS="$("$HELM" template po charts/paas-operator -n ops 2>&1 | kinds_of_yaml)"
  if [[ "$TPL_KINDS" == "$K8S_KINDS" ]]; then pass "helm$h template renders the same kinds as k8s/ ($TPL_KINDS)"; else fail "helm$h template kinds '$TPL_KINDS' != k8s/ '$K8S_KINDS'"; fi
  OUT="$("$HELM" template po charts/paas-operator --set terminationGracePeriodSeconds=300 2>&1)"
  if [[ $? -ne 0 ]] && grep -q "terminationGracePeriodSeconds must exceed" <<<"$OUT"; then pass "helm$h template refuses a grace period below SHUTDOWN_GRACE"; else fail "helm$h template accepted terminationGracePeriodSeconds=300"; fi
  ns="paas-op-h$h-$SUFFIX"; rel="po-h$h-$SUFFIX"
  NAMESPACES+=("$ns")
  check "helm$h install $rel into $ns --create-namespace --wait" \
    "$HELM" install "$rel" charts/paas-operator -n "$ns" --create-namespace --wait --timeout "${T}s" --set image.tag=dev
  check "helm$h: deployment $rel-paas-operator is 2/2 available" \
    bash -c '[[ "$(kubectl -n "$1" get deploy "$2" -o jsonpath="{.status.availableReplicas}")" == 2 ]]' _ "$ns" "$rel-paas-operator"
  check "helm$h: generated API key Secret exists" kubectl -n "$ns" get secret "$rel-paas-operator-api-keys"
  KEY1="$(kubectl -n "$ns" get secret "$rel-paas-operator-api-keys" -o jsonpath='{.data.api-keys}' 2>/dev/null)"
  check "helm$h upgrade $rel (replicaCount=1)" "$HELM" upgrade "$rel" charts/paas-operator -n "$ns" --wait --timeout "${T}s" --set image.tag=dev,replicaCount=1
  KEY2="$(kubectl -n "$ns" get secret "$rel-paas-operator-api-keys" -o jsonpath='{.data.api-keys}' 2>/dev/null)"
  if [[ -n "$KEY1" && "$KEY1" == "$KEY2" ]]; then pass "helm$h: generated API key kept across upgrade"; else fail "helm$h: generated API key changed on upgrade"; fi
  SA_CHART="system:serviceaccount:$ns:$rel-paas-operator"
  a="$(kubectl auth can-i --as="$SA_CHART" get secrets -n kube-system 2>/dev/null)"
  if [[ "$a" == no ]]; then pass "helm$h: chart's ServiceAccount cannot get secrets -n kube-system"; else fail "helm$h: chart SA get secrets -n kube-system = $a"; fi
  a="$(kubectl auth can-i --as="$SA_CHART" bind "clusterroles/$rel-paas-operator-tenant" 2>/dev/null)"
  if [[ "$a" == yes ]]; then pass "helm$h: chart's ServiceAccount may bind its tenant role"; else fail "helm$h: chart SA bind tenant role = $a"; fi
  check "helm$h uninstall $rel --wait" "$HELM" uninstall "$rel" -n "$ns" --wait --timeout "${T}s"
  check "helm$h: cluster-scoped objects of $rel are gone" \
    bash -c '! kubectl get clusterrole,clusterrolebinding,validatingadmissionpolicy -o name | grep -q "$1"' _ "$rel-"
done

summary
[[ "$FAILED" == 0 ]]

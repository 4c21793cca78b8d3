#!/usr/bin/env bash
# Deployment checks against the local test environment (scripts/testenv up):
#
#  (a) k8s/ passes the server-side dry run (kubectl apply -k and -R -f) and
#      holds Deployment, Service, ServiceAccount, Secret, ClusterRoles,
#      ClusterRoleBinding, the admission policies (operator scope + tenant
#      isolation, tenant-policy.yaml);
#  (b) k8s/ applied for real: objects exist, the Deployment rolls out 2/2
#      (pods are played Running by the fake kubelet; the image is never pulled);
#  (c) charts/paas-operator: helm lint, template (same kinds as k8s/), install
#      into a fresh namespace, rollout, uninstall — with Helm 3 and Helm 4;
#  (d) RBAC of the ServiceAccount paas-system/paas-operator: the negative
#      checks (Secrets outside tenants: list/watch for the read cache only, no
#      get or write; nothing in default, no pods/exec, no
#      namespace create/delete/relabel or RoleBindings outside paas-ws-*),
#      then what the operator does for a tenant (namespace, RoleBindings
#      paas-operator-tenant and paas-tenant, ServiceAccount paas-tenant,
#      quota, LimitRange, NetworkPolicy) with a real token (TokenRequest API);
#      the reduced tenant role (no chart kinds, impersonate paas-tenant only);
#      helm install/upgrade/rollback/uninstall there as the operator runs it,
#      --kube-as-user system:serviceaccount:<ns>:paas-tenant, Helm 3 and 4;
#      the `escape` chart and a cross-namespace `lookup` are refused;
#  (e) the tenant admission policies (k8s/tenant-policy.yaml): for each, one
#      request allowed and one denied, as paas-tenant (through the token's
#      impersonation), as another ServiceAccount of the namespace, as the
#      operator and as admin (scheduling fences and reserved names included);
#      the tenant namespace is then deleted completely.
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
check "k8s/ holds ClusterRoles paas-operator, paas-operator-reads, paas-operator-tenant and paas-tenant" \
  bash -c 'grep -c "^kind: ClusterRole$" <<<"$1" | grep -qx 4' _ "$RENDERED"
TENANT_POLICIES=(paas-tenant-protected-objects paas-tenant-helm-records paas-tenant-workloads paas-tenant-services paas-tenant-rolebinding-subjects paas-tenant-ingresses paas-tenant-scheduling paas-tenant-reserved-names)
check "k8s/ holds 9 ValidatingAdmissionPolicies and 9 bindings (operator scope + ${#TENANT_POLICIES[@]} tenant policies)" \
  bash -c '[[ "$(grep -c "^kind: ValidatingAdmissionPolicy$" <<<"$1") $(grep -c "^kind: ValidatingAdmissionPolicyBinding$" <<<"$1")" == "9 9" ]]' _ "$RENDERED"

echo "== (b) k8s/: applied for real"
check "kubectl apply -k k8s/" kubectl apply -k k8s/
for obj in deployment/paas-operator service/paas-operator serviceaccount/paas-operator secret/paas-operator-api-keys poddisruptionbudget/paas-operator; do
  check "$obj exists in paas-system" kubectl -n paas-system get "$obj"
done
for obj in clusterrole/paas-operator clusterrole/paas-operator-tenant clusterrole/paas-tenant clusterrolebinding/paas-operator \
           validatingadmissionpolicy/paas-operator-tenant-scope validatingadmissionpolicybinding/paas-operator-tenant-scope; do
  check "$obj exists" kubectl get "$obj"
done
for p in "${TENANT_POLICIES[@]}"; do
  check "validatingadmissionpolicy $p and its binding exist" kubectl get "validatingadmissionpolicy/$p" "validatingadmissionpolicybinding/$p"
  # The API server type-checks each expression against the matched kinds and
  # reports problems in status.typeChecking (the policy loads all the same).
  check "validatingadmissionpolicy $p: no type-checking warnings" \
    bash -c 'for _ in $(seq 1 20); do s="$(kubectl get validatingadmissionpolicy "$1" -o jsonpath="{.status.observedGeneration}|{.status.typeChecking.expressionWarnings}")"; [[ "$s" == "|"* ]] || break; sleep 0.5; done; [[ "$s" == *"|" ]] || { echo "$s"; exit 1; }' _ "$p"
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
# The read cache's cluster-wide watches (ClusterRole paas-operator-reads,
# READ_CACHE=cluster): list and watch of Secrets and Pods everywhere, and
# nothing more (docs/rbac.md, "Reads").
expect_yes list secrets --all-namespaces
expect_yes watch pods --all-namespaces
expect_no update secrets -n kube-system
expect_no delete pods -n kube-system
expect_no create configmaps -n default
expect_no create deployments -n default
expect_no create pods --subresource=exec -n default
expect_no create clusterroles
expect_no bind clusterroles/cluster-admin
expect_yes create namespaces
expect_yes list namespaces   # paas-operator migrate finds the earlier operator's
expect_no watch namespaces
expect_yes bind clusterroles/paas-operator-tenant
expect_yes bind clusterroles/paas-tenant
expect_no impersonate serviceaccounts/paas-tenant -n kube-system
expect_no impersonate users
expect_no impersonate groups

OUT="$(sa get secret paas-deploy-test -n kube-system 2>&1)"
if grep -q "Forbidden\|forbidden" <<<"$OUT"; then pass "token: get secret -n kube-system (by name) is Forbidden"; else fail "token: get secret -n kube-system: $OUT"; fi
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
TENANT_USER="system:serviceaccount:$TENANT:paas-tenant"
MANAGED='labels: {app.kubernetes.io/managed-by: paas-operator}'
cat >"$WORK/rolebinding.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: paas-operator-tenant
  namespace: $TENANT
  $MANAGED
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: paas-operator-tenant}
subjects: [{kind: ServiceAccount, name: paas-operator, namespace: paas-system}]
EOF
# The rest of the tenant set-up, applied through the role just bound (so it
# may have to wait until the authorizer has seen the RoleBinding).
cat >"$WORK/tenant.yaml" <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: paas-tenant, namespace: $TENANT, $MANAGED}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: paas-tenant, namespace: $TENANT, $MANAGED}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: paas-tenant}
subjects: [{kind: ServiceAccount, name: paas-tenant, namespace: $TENANT}]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: $TENANT-quota, namespace: $TENANT, $MANAGED}
spec: {hard: {requests.cpu: "2", limits.cpu: "2", requests.memory: 4Gi, limits.memory: 4Gi, requests.storage: 20Gi, persistentvolumeclaims: "10",
  pods: "20", services: "20", count/secrets: "100", count/configmaps: "50"}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: $TENANT-defaults, namespace: $TENANT, $MANAGED}
spec: {limits: [{type: Container, default: {cpu: 500m, memory: 512Mi}, defaultRequest: {cpu: 100m, memory: 128Mi}, min: {cpu: 10m, memory: 16Mi}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $TENANT-isolation, namespace: $TENANT, $MANAGED}
spec: {podSelector: {}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {}}]}]}
EOF
check "token: create RoleBinding paas-operator-tenant in $TENANT (bind, no escalation)" sa apply --server-side --field-manager=paas-operator -f "$WORK/rolebinding.yaml"
# The authorizer's RoleBinding cache follows within moments.
for _ in $(seq 1 20); do [[ "$(cani get secrets -n "$TENANT")" == yes ]] && break; sleep 0.5; done
check "token: apply ServiceAccount + RoleBinding paas-tenant (bind without holding it), quota, LimitRange, NetworkPolicy" \
  bash -c 'for _ in $(seq 1 20); do out="$(KUBECONFIG="$1" kubectl apply --server-side --field-manager=paas-operator -f "$2" 2>&1)" && exit 0; sleep 0.5; done; echo "$out"; exit 1' \
  _ "$SA_KUBECONFIG" "$WORK/tenant.yaml"
for _ in $(seq 1 20); do [[ "$(kubectl auth can-i --as="$TENANT_USER" create deployments -n "$TENANT" 2>/dev/null)" == yes ]] && break; sleep 0.5; done
# The operator's own rights in a tenant: Helm's records, pods, Leases, the
# tenant objects, Ingresses, services/proxy, impersonating paas-tenant; no
# chart kinds any more (helm creates those as paas-tenant).
expect_yes get secrets -n "$TENANT"
expect_yes watch configmaps -n "$TENANT"
expect_yes update secrets -n "$TENANT"
# RBAC lets it create and delete Secrets (what it keeps about a release);
# admission (paas-operator-tenant-scope) narrows that to its own.
expect_yes create secrets -n "$TENANT"
expect_yes delete secrets -n "$TENANT"
OUT="$(sa create secret generic stolen -n "$TENANT" --from-literal=k=v --dry-run=server 2>&1)"
if grep -q "paas-operator may only write its own Secrets" <<<"$OUT"; then pass "token: creating a Secret not named paas-operator.* in $TENANT is refused by admission"; else fail "token: create secret stolen: $OUT"; fi
check "token: creating its own Secret paas-operator.svc-x in $TENANT is allowed" \
  sa create secret generic paas-operator.svc-x -n "$TENANT" --from-literal=k=v --dry-run=server
expect_no create deployments -n "$TENANT"
expect_no create jobs.batch -n "$TENANT"
expect_no create services -n "$TENANT"
expect_no create roles.rbac.authorization.k8s.io -n "$TENANT"
expect_no create daemonsets -n "$TENANT"
expect_no create pods --subresource=exec -n "$TENANT"
expect_no get pods --subresource=log -n "$TENANT"
expect_no delete resourcequotas -n "$TENANT"
expect_yes patch resourcequotas -n "$TENANT"
expect_yes create leases.coordination.k8s.io -n "$TENANT"
expect_yes create limitranges -n "$TENANT"
expect_yes patch networkpolicies.networking.k8s.io -n "$TENANT"
expect_yes patch serviceaccounts -n "$TENANT"
expect_yes create ingresses.networking.k8s.io -n "$TENANT"
expect_yes create services --subresource=proxy -n "$TENANT"
expect_yes impersonate serviceaccounts/paas-tenant -n "$TENANT"
expect_no impersonate serviceaccounts/default -n "$TENANT"
expect_yes delete "namespaces/$TENANT"
OUT="$(sa create rolebinding too-much -n "$TENANT" --clusterrole=admin --serviceaccount=paas-system:paas-operator --dry-run=server 2>&1)"
if grep -q "attempting to grant RBAC permissions not currently held" <<<"$OUT"; then pass "token: binding ClusterRole admin in the tenant is refused (escalation check)"; else fail "token: binding admin in the tenant: $OUT"; fi
# Impersonation with the token: paas-tenant only, and only where bound. With
# no group given, the API server adds the ServiceAccount's groups itself.
OUT="$(sa auth whoami --as="$TENANT_USER" -o jsonpath='{.status.userInfo.groups}' 2>&1)"
if [[ "$OUT" == *'"system:serviceaccounts"'* && "$OUT" == *"\"system:serviceaccounts:$TENANT\""* && "$OUT" == *'"system:authenticated"'* ]]; then
  pass "token: --as $TENANT_USER alone gets the groups system:serviceaccounts, system:serviceaccounts:$TENANT, system:authenticated"
else fail "token: whoami as paas-tenant: $OUT"; fi
OUT="$(sa get configmaps -n "$TENANT" --as="system:serviceaccount:$TENANT:default" 2>&1)"
if grep -q 'cannot impersonate resource "serviceaccounts"' <<<"$OUT"; then pass "token: impersonating $TENANT:default is Forbidden"; else fail "token: impersonate default: $OUT"; fi
OUT="$(sa get configmaps -n kube-system --as="system:serviceaccount:kube-system:paas-tenant" 2>&1)"
if grep -q 'cannot impersonate resource "serviceaccounts"' <<<"$OUT"; then pass "token: impersonating kube-system:paas-tenant is Forbidden"; else fail "token: impersonate kube-system:paas-tenant: $OUT"; fi
OUT="$(sa get configmaps -n "$TENANT" --as="$TENANT_USER" --as-group=system:masters 2>&1)"
if grep -q 'cannot impersonate resource "groups"' <<<"$OUT"; then pass "token: impersonating a group is Forbidden"; else fail "token: impersonate a group: $OUT"; fi

# helm, authenticated only by the token and impersonating the tenant's helm
# identity, as the operator runs it. Charts from testenv/charts/ (local
# paths: no registry needed).
AS=(--kube-as-user "$TENANT_USER")
OUT="$(KUBECONFIG="$SA_KUBECONFIG" "$HELM4_BINARY" install direct testenv/charts/web -n "$TENANT" --timeout 60s 2>&1)"
RC=$?
if [[ $RC -ne 0 ]] && grep -qi "forbidden" <<<"$OUT"; then pass "helm4 (token, no --kube-as-user): the operator itself cannot install a chart"; else fail "helm4 (token) without impersonation (rc=$RC): $OUT"; fi
KUBECONFIG="$SA_KUBECONFIG" "$HELM4_BINARY" uninstall direct -n "$TENANT" "${AS[@]}" >/dev/null 2>&1
for h in 3 4; do
  var="HELM${h}_BINARY"; HELM="${!var}"; rel="web-h$h"
  check "helm$h (token as paas-tenant): install testenv chart web into $TENANT --wait" \
    env KUBECONFIG="$SA_KUBECONFIG" "$HELM" install "$rel" testenv/charts/web -n "$TENANT" "${AS[@]}" --wait --timeout "${T}s"
  check "helm$h (token as paas-tenant): status $rel" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" status "$rel" -n "$TENANT" "${AS[@]}"
  check "helm$h (token as paas-tenant): upgrade $rel (replicaCount=2)" \
    env KUBECONFIG="$SA_KUBECONFIG" "$HELM" upgrade "$rel" testenv/charts/web -n "$TENANT" "${AS[@]}" --set replicaCount=2 --wait --timeout "${T}s"
  check "helm$h (token as paas-tenant): rollback $rel 1" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" rollback "$rel" 1 -n "$TENANT" "${AS[@]}" --wait --timeout "${T}s"
  check "helm$h (token as paas-tenant): history of $rel has 3 revisions" \
    bash -c '[[ "$(env KUBECONFIG="$1" "$2" history "$3" -n "$4" --kube-as-user "$5" -o json | grep -o "\"revision\"" | wc -l)" == 3 ]]' _ "$SA_KUBECONFIG" "$HELM" "$rel" "$TENANT" "$TENANT_USER"
  check "helm$h (token as paas-tenant): uninstall $rel" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" uninstall "$rel" -n "$TENANT" "${AS[@]}" --wait --timeout "${T}s"
  check "helm$h (token as paas-tenant): install chart hooks (pre-install Job hook) --wait" \
    env KUBECONFIG="$SA_KUBECONFIG" "$HELM" install "hooks-h$h" testenv/charts/hooks -n "$TENANT" "${AS[@]}" --wait --timeout "${T}s"
  check "helm$h (token as paas-tenant): uninstall hooks-h$h" env KUBECONFIG="$SA_KUBECONFIG" "$HELM" uninstall "hooks-h$h" -n "$TENANT" "${AS[@]}" --wait --timeout "${T}s"
done
OUT="$(KUBECONFIG="$SA_KUBECONFIG" "$HELM4_BINARY" install escape testenv/charts/escape -n "$TENANT" "${AS[@]}" --timeout 60s 2>&1)"
RC=$?
if [[ $RC -ne 0 ]] && grep -qi "forbidden" <<<"$OUT"; then pass "helm4 (token as paas-tenant): chart with a ClusterRole and a ConfigMap in default is refused (forbidden)"; else fail "helm4 (token as paas-tenant): escape chart (rc=$RC): $OUT"; fi
if kubectl get clusterrole escape-escape >/dev/null 2>&1; then fail "escape chart created ClusterRole escape-escape"; kubectl delete clusterrole escape-escape >/dev/null 2>&1; fi
if kubectl -n default get configmap escape-escaped >/dev/null 2>&1; then fail "escape chart created ConfigMap default/escape-escaped"; kubectl -n default delete configmap escape-escaped >/dev/null 2>&1; fi
KUBECONFIG="$SA_KUBECONFIG" "$HELM4_BINARY" uninstall escape -n "$TENANT" "${AS[@]}" >/dev/null 2>&1
# A template that reads the Secrets of another namespace through `lookup`.
mkdir -p "$WORK/lookup/templates"
printf 'apiVersion: v2\nname: lookup\nversion: 0.1.0\n' >"$WORK/lookup/Chart.yaml"
cat >"$WORK/lookup/templates/cm.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-stolen}
data: {secrets: {{ lookup "v1" "Secret" "kube-system" "" | toJson | quote }}}
EOF
for h in 3 4; do
  var="HELM${h}_BINARY"; HELM="${!var}"
  OUT="$(KUBECONFIG="$SA_KUBECONFIG" "$HELM" install "lookup-h$h" "$WORK/lookup" -n "$TENANT" "${AS[@]}" 2>&1)"
  RC=$?
  if [[ $RC -ne 0 ]] && grep -q 'cannot list resource "secrets"' <<<"$OUT"; then pass "helm$h (token as paas-tenant): lookup of the Secrets of kube-system is forbidden"; else fail "helm$h (token as paas-tenant): lookup (rc=$RC): $OUT"; fi
  KUBECONFIG="$SA_KUBECONFIG" "$HELM" uninstall "lookup-h$h" -n "$TENANT" "${AS[@]}" >/dev/null 2>&1
done

echo "== (e) tenant admission policies in $TENANT"
APP_USER="system:serviceaccount:$TENANT:app"
as_tenant() { sa --as="$TENANT_USER" "$@"; }   # the operator's token impersonating helm's identity
as_app() { kubectl --as="$APP_USER" "$@"; }    # another ServiceAccount of the namespace (a chart's pod)
# expect_denied POLICY "what" command...: refused by that admission policy.
expect_denied() {
  local policy=$1 what=$2 out; shift 2
  if out="$("$@" 2>&1)"; then fail "$what: allowed, want denied by $policy"; return; fi
  if grep -q "ValidatingAdmissionPolicy '$policy'" <<<"$out"; then pass "$what: denied by $policy"; else fail "$what: $(tail -n 3 <<<"$out")"; fi
}
check "as paas-tenant: create ServiceAccount app and bind paas-tenant to it (what a chart may do for its own SA)" \
  bash -c 'KUBECONFIG="$1" kubectl -n "$2" --as="$3" create serviceaccount app && KUBECONFIG="$1" kubectl -n "$2" --as="$3" create rolebinding app --clusterrole=paas-tenant --serviceaccount="$2:app"' \
  _ "$SA_KUBECONFIG" "$TENANT" "$TENANT_USER"
for _ in $(seq 1 20); do [[ "$(kubectl auth can-i --as="$APP_USER" create secrets -n "$TENANT" 2>/dev/null)" == yes ]] && break; sleep 0.5; done
DRY=(--dry-run=server)   # admission runs on server-side dry runs too
# paas-tenant-protected-objects
expect_denied paas-tenant-protected-objects "as paas-tenant: delete NetworkPolicy $TENANT-isolation" as_tenant -n "$TENANT" delete networkpolicy "$TENANT-isolation" "${DRY[@]}"
expect_denied paas-tenant-protected-objects "as paas-tenant: delete RoleBinding paas-operator-tenant" as_tenant -n "$TENANT" delete rolebinding paas-operator-tenant "${DRY[@]}"
expect_denied paas-tenant-protected-objects "as app: strip the managed-by label of ServiceAccount paas-tenant" as_app -n "$TENANT" label serviceaccount paas-tenant app.kubernetes.io/managed-by- "${DRY[@]}"
expect_denied paas-tenant-protected-objects "as paas-tenant: create a ConfigMap labelled managed-by=paas-operator" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"forged","labels":{"app.kubernetes.io/managed-by":"paas-operator"}}}'
check "as paas-tenant: create its own NetworkPolicy (allowed)" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<'{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"mine"},"spec":{"podSelector":{},"ingress":[{}]}}'
check "token (operator): re-apply the tenant objects (allowed)" sa apply --server-side --field-manager=paas-operator -f "$WORK/tenant.yaml"
check "admin: label NetworkPolicy $TENANT-isolation (allowed)" kubectl -n "$TENANT" label networkpolicy "$TENANT-isolation" probe=1 "${DRY[@]}"
# paas-tenant-helm-records
RECORD='{"apiVersion":"v1","kind":"Secret","type":"helm.sh/release.v1","metadata":{"name":"sh.helm.release.v1.web.v9","labels":{"owner":"helm","name":"web","status":"deployed","version":"9"}},"data":{"release":"eA=="}}'
expect_denied paas-tenant-helm-records "as app: create a Helm release record (type helm.sh/release.v1)" as_app -n "$TENANT" create -f - "${DRY[@]}" <<<"$RECORD"
expect_denied paas-tenant-helm-records "as app: create an Opaque Secret named sh.helm.release.v1.web.v9" as_app -n "$TENANT" create secret generic sh.helm.release.v1.web.v9 --from-literal=release=x "${DRY[@]}"
check "as app: create an ordinary Secret (allowed)" as_app -n "$TENANT" create secret generic app-config --from-literal=a=b "${DRY[@]}"
check "as paas-tenant: create a Helm release record (allowed: helm's identity)" as_tenant -n "$TENANT" create -f - "${DRY[@]}" <<<"$RECORD"
check "admin: create a Helm release record (allowed)" kubectl -n "$TENANT" create -f - "${DRY[@]}" <<<"$RECORD"
# paas-tenant-workloads
DEPLOY='{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"d"}},"template":{"metadata":{"labels":{"a":"d"}},"spec":{"serviceAccountName":"SA","containers":[{"name":"c","image":"registry.local/web:1"}]}}}}'
expect_denied paas-tenant-workloads "as paas-tenant: Deployment whose pods run as paas-tenant" as_tenant -n "$TENANT" create -f - "${DRY[@]}" <<<"${DEPLOY/\"SA\"/\"paas-tenant\"}"
expect_denied paas-tenant-workloads "admin: Pod running as paas-tenant" kubectl -n "$TENANT" run p --image=registry.local/web:1 --overrides='{"spec":{"serviceAccountName":"paas-tenant"}}' "${DRY[@]}"
expect_denied paas-tenant-workloads "as paas-tenant: legacy token Secret for paas-tenant" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<'{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token","metadata":{"name":"t","annotations":{"kubernetes.io/service-account.name":"paas-tenant"}}}'
check "as paas-tenant: Deployment whose pods run as app (allowed)" as_tenant -n "$TENANT" create -f - "${DRY[@]}" <<<"${DEPLOY/\"SA\"/\"app\"}"
# paas-tenant-services
expect_denied paas-tenant-services "as paas-tenant: Service of type NodePort" as_tenant -n "$TENANT" create service nodeport np --tcp=80 "${DRY[@]}"
expect_denied paas-tenant-services "as app: Service with externalIPs" as_app -n "$TENANT" create -f - "${DRY[@]}" \
  <<<'{"apiVersion":"v1","kind":"Service","metadata":{"name":"eip"},"spec":{"ports":[{"port":80}],"externalIPs":["10.0.0.1"]}}'
expect_denied paas-tenant-services "admin: Service of type ExternalName" kubectl -n "$TENANT" create service externalname en --external-name=kubernetes.default.svc.cluster.local "${DRY[@]}"
check "as paas-tenant: ClusterIP Service (allowed)" as_tenant -n "$TENANT" create service clusterip ok --tcp=80 "${DRY[@]}"
# paas-tenant-rolebinding-subjects
expect_denied paas-tenant-rolebinding-subjects "as paas-tenant: bind paas-tenant to group system:serviceaccounts" as_tenant -n "$TENANT" create rolebinding all --clusterrole=paas-tenant --group=system:serviceaccounts "${DRY[@]}"
expect_denied paas-tenant-rolebinding-subjects "as app: bind paas-tenant to a ServiceAccount of kube-system" as_app -n "$TENANT" create rolebinding ks --clusterrole=paas-tenant --serviceaccount=kube-system:default "${DRY[@]}"
check "as paas-tenant: bind paas-tenant to its own ServiceAccount app (allowed)" as_tenant -n "$TENANT" create rolebinding app2 --clusterrole=paas-tenant --serviceaccount="$TENANT:app" "${DRY[@]}"
# paas-tenant-ingresses
INGRESS='{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"i","annotations":{ANNOTATION}},"spec":{"rules":[{"host":"a.example","http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"s","port":{"number":80}}}}]}}]}}'
expect_denied paas-tenant-ingresses "as paas-tenant: Ingress with a configuration snippet" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"${INGRESS/ANNOTATION/\"nginx.ingress.kubernetes.io/server-snippet\":\"x\"}"
expect_denied paas-tenant-ingresses "as paas-tenant: Ingress using another namespace's Secret" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"${INGRESS/ANNOTATION/\"nginx.ingress.kubernetes.io/auth-tls-secret\":\"kube-system/x\"}"
check "as paas-tenant: Ingress using its own namespace's Secret (allowed)" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"${INGRESS/ANNOTATION/\"nginx.ingress.kubernetes.io/auth-tls-secret\":\"$TENANT/own\"}"
# paas-tenant-scheduling (whoever writes the pod or its template)
POD='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{SPEC"containers":[{"name":"c","image":"registry.local/web:1"}]}}'
pod_with() { printf '%s' "${POD/SPEC/$1}"; }   # pod_with '"field":value,'
expect_denied paas-tenant-scheduling "as paas-tenant: Deployment with priorityClassName system-node-critical" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"${DEPLOY/\"serviceAccountName\":\"SA\"/\"priorityClassName\":\"system-node-critical\"}"
expect_denied paas-tenant-scheduling "admin: Pod tolerating every taint" kubectl -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"$(pod_with '"tolerations":[{"operator":"Exists"}],')"
expect_denied paas-tenant-scheduling "admin: Pod with nodeName" kubectl -n "$TENANT" create -f - "${DRY[@]}" <<<"$(pod_with '"nodeName":"n1",')"
expect_denied paas-tenant-scheduling "as app: Deployment with nodeName" as_app -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"${DEPLOY/\"serviceAccountName\":\"SA\"/\"nodeName\":\"n1\"}"
expect_denied paas-tenant-scheduling "as paas-tenant: Deployment with another scheduler" as_tenant -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"${DEPLOY/\"serviceAccountName\":\"SA\"/\"schedulerName\":\"mine\"}"
check "admin: Pod with the tolerations Kubernetes adds itself (allowed)" kubectl -n "$TENANT" create -f - "${DRY[@]}" \
  <<<"$(pod_with '"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],')"
# paas-tenant-reserved-names
expect_denied paas-tenant-reserved-names "as app: create Secret paas-operator.web (the operator's kept state)" as_app -n "$TENANT" create secret generic paas-operator.web --from-literal=a=b "${DRY[@]}"
expect_denied paas-tenant-reserved-names "as paas-tenant: create ConfigMap paas-operator.web" as_tenant -n "$TENANT" create configmap paas-operator.web --from-literal=a=b "${DRY[@]}"
check "token (operator): create Secret paas-operator.web (allowed)" sa -n "$TENANT" create secret generic paas-operator.web --from-literal=a=b "${DRY[@]}"
# The namespace controller (not a ServiceAccount of the namespace) still
# deletes everything, protected objects included.
check "admin: delete namespace $TENANT: gone within ${T}s (the policies do not block the namespace controller)" \
  kubectl delete namespace "$TENANT" --timeout="${T}s"

echo "== (c) charts/paas-operator"
K8S_KINDS="$(kinds_of_yaml <<<"$RENDERED" | tr ' ' '\n' | grep -v '^Namespacex' | tr '\n' ' ')"
for h in 3 4; do
  var="HELM${h}_BINARY"; HELM="${!var}"
  check "helm$h lint charts/paas-operator" "$HELM" lint charts/paas-operator
  check "helm$h lint --strict (custom values)" "$HELM" lint --strict charts/paas-operator \
    --set auth.existingSecret=keys,config.allowedChartSources=oci://r/,replicaCount=1
  OUT="$("$HELM" template po charts/paas-operator --set exposure.backend=cloudflare,cloudflare.accountId=acc,cloudflare.tunnelId=tun,cloudflare.domain=apps.example.com,cloudflare.apiTokenSecret.name=cf-api,exposure.connectorNamespace=cloudflared,apps.platformNamespace=odoo 2>&1)"
  if grep -q 'name: EXPOSURE_BACKEND' <<<"$OUT" && grep -A1 'name: CLOUDFLARE_TUNNEL_ID' <<<"$OUT" | grep -q '"tun"' \
     && grep -A4 'name: CLOUDFLARE_API_TOKEN' <<<"$OUT" | grep -q 'name: "cf-api"' && ! grep -q 'value: .*cf-api' <<<"$OUT" \
     && grep -A1 'name: PLATFORM_NAMESPACE' <<<"$OUT" | grep -q '"odoo"'; then
    pass "helm$h template: exposure and app values become the operator's settings, the Cloudflare token only by secretKeyRef"
  else fail "helm$h template: exposure/app values not rendered as expected"; fi
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
  a="$(kubectl auth can-i --as="$SA_CHART" bind "clusterroles/$rel-paas-operator-paas-tenant" 2>/dev/null)"
  if [[ "$a" == yes ]]; then pass "helm$h: chart's ServiceAccount may bind its helm tenant role $rel-paas-operator-paas-tenant"; else fail "helm$h: chart SA bind helm tenant role = $a"; fi
  check "helm$h: chart made ClusterRole $rel-paas-operator-paas-tenant and its 8 tenant policies + bindings" \
    bash -c '[[ "$(kubectl get clusterrole,validatingadmissionpolicy,validatingadmissionpolicybinding -o name | grep -c "/$1-paas-operator-paas-tenant")" == 17 ]]' _ "$rel"
  check "helm$h uninstall $rel --wait" "$HELM" uninstall "$rel" -n "$ns" --wait --timeout "${T}s"
  check "helm$h: cluster-scoped objects of $rel are gone" \
    bash -c '! kubectl get clusterrole,clusterrolebinding,validatingadmissionpolicy -o name | grep -q "$1"' _ "$rel-"
done

summary
[[ "$FAILED" == 0 ]]

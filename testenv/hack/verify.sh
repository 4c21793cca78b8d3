#!/usr/bin/env bash
# Checks a running localkube end to end with kubectl: TokenRequest and token
# authentication, RBAC, quota + Deployment, StatefulSet with a volume claim,
# Job completion, CrashLoopBackOff, ErrImagePull, PodSecurity, namespace and
# volume cleanup. Usage: testenv/hack/verify.sh KUBECONFIG  (needs kubectl on PATH)
set -euo pipefail
export KUBECONFIG="${1:?usage: $0 KUBECONFIG}"
ns=verify-$$
pass() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; exit 1; }
cleanup() { kubectl delete ns "$ns" "$ns-ps" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

[[ "$(kubectl get --raw /readyz)" == ok ]] && pass "/readyz" || fail "/readyz"
kubectl wait --for=condition=Ready node/localkube-node --timeout=30s >/dev/null || fail "node Ready"
pass "node Ready"

server="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(mktemp)"; kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$ca"
token="$(kubectl create token default -n default)" || fail "TokenRequest"
pass "TokenRequest (kubectl create token)"
who="$(kubectl --kubeconfig=/dev/null --server "$server" --certificate-authority "$ca" --token "$token" auth whoami -o jsonpath='{.status.userInfo.username}')"
[[ "$who" == system:serviceaccount:default:default ]] && pass "ServiceAccount token authenticates" || fail "token auth: $who"
if kubectl --kubeconfig=/dev/null --server "$server" --certificate-authority "$ca" --token "$token" get secrets -n kube-system >/dev/null 2>&1; then
  fail "RBAC let the default ServiceAccount read secrets"
fi
pass "RBAC denies the default ServiceAccount"
rm -f "$ca"

kubectl create ns "$ns" >/dev/null
kubectl -n "$ns" create quota q --hard=cpu=2,memory=2Gi,pods=10 >/dev/null
kubectl -n "$ns" apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx, resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 200m, memory: 128Mi}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      initContainers: [{name: init, image: busybox, resources: {limits: {cpu: 50m, memory: 32Mi}}}]
      containers: [{name: db, image: postgres, resources: {limits: {cpu: 100m, memory: 64Mi}}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: job}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: j, image: busybox, resources: {limits: {cpu: 50m, memory: 32Mi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers: [{name: c, image: example/crashloop, resources: {limits: {cpu: 50m, memory: 32Mi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: pull}
spec:
  containers: [{name: c, image: example/imagepullfail, resources: {limits: {cpu: 50m, memory: 32Mi}}}]
YAML
kubectl -n "$ns" rollout status deploy/web --timeout=60s >/dev/null || fail "Deployment under ResourceQuota Ready"
pass "Deployment under ResourceQuota Ready"
kubectl -n "$ns" rollout status sts/db --timeout=60s >/dev/null || fail "StatefulSet with volumeClaimTemplate Ready"
pass "StatefulSet with volumeClaimTemplate Ready"
[[ "$(kubectl -n "$ns" get pvc data-db-0 -o jsonpath='{.status.phase}')" == Bound ]] && pass "PVC Bound" || fail "PVC not Bound"
kubectl -n "$ns" wait --for=condition=complete job/job --timeout=60s >/dev/null || fail "Job complete"
pass "Job complete"
sleep 12
reason="$(kubectl -n "$ns" get pod crash -o jsonpath='{.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].restartCount}')"
[[ "$reason" == CrashLoopBackOff* && "${reason#* }" -ge 2 ]] && pass "crashloop image: $reason" || fail "crashloop: $reason"
reason="$(kubectl -n "$ns" get pod pull -o jsonpath='{.status.phase} {.status.containerStatuses[0].state.waiting.reason}')"
[[ "$reason" == "Pending ImagePullBackOff" || "$reason" == "Pending ErrImagePull" ]] && pass "imagepullfail image: $reason" || fail "imagepullfail: $reason"

kubectl create ns "$ns-ps" >/dev/null
kubectl label ns "$ns-ps" pod-security.kubernetes.io/enforce=baseline >/dev/null
out="$(kubectl -n "$ns-ps" run priv --image=nginx \
  --overrides='{"spec":{"containers":[{"name":"priv","image":"nginx","securityContext":{"privileged":true}}]}}' 2>&1 || true)"
if [[ "$out" == *"violates PodSecurity"* ]]; then
  pass "PodSecurity baseline refuses a privileged pod"
else
  fail "PodSecurity did not refuse a privileged pod"
fi

pv="$(kubectl -n "$ns" get pvc data-db-0 -o jsonpath='{.spec.volumeName}')"
kubectl delete ns "$ns" "$ns-ps" --timeout=90s >/dev/null || fail "namespace deletion completes"
pass "namespace deletion completes"
for _ in $(seq 30); do kubectl get pv "$pv" >/dev/null 2>&1 || break; sleep 1; done
kubectl get pv "$pv" >/dev/null 2>&1 && fail "volume $pv not deleted" || pass "released volume deleted"

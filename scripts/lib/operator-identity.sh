#!/usr/bin/env bash
# Sourced by scripts/test after `scripts/testenv up`: installs the operator's
# ServiceAccount and RBAC, its admission policy and the tenant isolation
# (ClusterRole paas-tenant + admission policies) from k8s/ into the local
# control plane, asks the TokenRequest API for a token of that
# ServiceAccount, and exports OPERATOR_KUBECONFIG, a kubeconfig with that
# token. The end-to-end tests run the operator with it (helm impersonating
# each tenant's paas-tenant), so they prove the least-privilege RBAC is
# enough and the policies let helm work; the tests themselves arrange and
# check the cluster as admin.
operator_identity() {
  local root=$1 out=$1/target/testenv/operator.kubeconfig server ca token
  kubectl apply -f "$root/k8s/namespace.yaml" -f "$root/k8s/rbac.yaml" \
    -f "$root/k8s/admission-policy.yaml" -f "$root/k8s/tenant-policy.yaml" >/dev/null
  token=$(kubectl create token paas-operator -n paas-system --duration=4h)
  server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  umask 077
  cat > "$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
- name: paas-operator
  user: {token: "$token"}
contexts:
- name: paas-operator
  context: {cluster: local, user: paas-operator}
current-context: paas-operator
KUBECONFIG
  export OPERATOR_KUBECONFIG=$out
  echo "operator identity: system:serviceaccount:paas-system:paas-operator ($out)"
}

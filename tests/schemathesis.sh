#!/usr/bin/env bash
# Property-based run of schemathesis against /openapi.json of a running
# operator (real helm, local control plane): no 5xx, no status, content type,
# header or body outside the schema.
#
# Needs the local control plane (`scripts/testenv up`; this script sources
# target/testenv/env). Installs schemathesis (pinned) into a venv under
# target/ on first use. Namespaces the fuzzer manages to create use a
# private prefix and are deleted at the end.
#
#   tests/schemathesis.sh            # ~100 cases per operation
#   SCHEMATHESIS_MAX_EXAMPLES=500 tests/schemathesis.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

SCHEMATHESIS_VERSION=4.32.5
venv=target/schemathesis-venv
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}

# shellcheck disable=SC1091
source target/testenv/env

if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --locked
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="schemathesis-$RANDOM$RANDOM"
prefix="paas-st-$(printf '%04x' $((RANDOM % 65536)))-"
log=target/schemathesis-operator.log

API_KEY="$key" HOST=127.0.0.1 PORT="$port" HELM_BINARY="$HELM4_BINARY" \
  NAMESPACE_PREFIX="$prefix" PLAIN_HTTP_REGISTRIES="$OCI_REGISTRY" ALLOWED_CHART_SOURCES="oci://$OCI_REGISTRY/charts" \
  HELM_TIMEOUT=30 RELEASE_LOCK_WAIT=1 LOG_LEVEL=warn \
  target/debug/paas-operator >"$log" 2>&1 &
operator=$!
cleanup() {
  kill -TERM "$operator" 2>/dev/null || true
  wait "$operator" 2>/dev/null || true
  kubectl get namespaces -o name 2>/dev/null | sed 's|^namespace/||' | grep "^$prefix" |
    xargs -r kubectl delete namespace --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done

# Run from target/ so schemathesis's replay store (.schemathesis/) lands there.
mkdir -p target/schemathesis
cd target/schemathesis
"$root/$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --header "X-API-Key: $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$max_examples" \
  --phases examples,coverage,fuzzing \
  --workers 2 \
  --request-timeout 60 \
  --generation-database none \
  --seed "${SCHEMATHESIS_SEED:-20261126}" \
  --no-color

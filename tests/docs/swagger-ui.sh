#!/usr/bin/env bash
# Swagger UI in a real browser: starts the operator binary, renders
# http://127.0.0.1:PORT/docs/ in headless Chromium (Debian's `chromium`,
# installed when missing) and checks that every operation of the OpenAPI
# document (/openapi.json) is rendered into the DOM, by its path and by its
# operation id. Saves a screenshot to target/docs.png.
#
# Prints PASS/FAIL per endpoint and ends with "N passed, M failed"; exits
# non-zero on any failure. Needs target/testenv/env (scripts/testenv up):
# the operator checks helm and the kubeconfig at start.
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd -P)"
ENV_FILE="$ROOT/target/testenv/env"
PASSED=0
FAILED=0
WORK=""
OPERATOR_PID=""

summary() { echo "$PASSED passed, $FAILED failed"; }
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }

cleanup() {
  if [[ -n "$OPERATOR_PID" ]]; then
    kill -TERM "$OPERATOR_PID" 2>/dev/null || true
    wait "$OPERATOR_PID" 2>/dev/null || true
  fi
  if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

abort() {
  fail "$*"
  if [[ -n "$WORK" && -f "$WORK/operator.log" ]]; then tail -n 20 "$WORK/operator.log"; fi
  summary
  exit 1
}

if [[ -z "${HELM4_BINARY:-}" ]]; then
  [[ -f "$ENV_FILE" ]] || abort "$ENV_FILE not found: run scripts/testenv up first"
  # shellcheck disable=SC1090
  source "$ENV_FILE"
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
    || abort "cannot install chromium"
fi

cd "$ROOT"
cargo build --quiet --locked --bin paas-operator
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

HOST=127.0.0.1 PORT="$PORT" API_KEY="docs-test-$RANDOM$RANDOM" HELM_BINARY="$HELM4_BINARY" \
  LOG_FORMAT=json "$ROOT/target/debug/paas-operator" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!

for _ in $(seq 1 150); do
  curl -fsS "$BASE/health" >/dev/null 2>&1 && break
  kill -0 "$OPERATOR_PID" 2>/dev/null || abort "the operator exited at start"
  sleep 0.2
done
curl -fsS "$BASE/openapi.json" >"$WORK/openapi.json" || abort "no /openapi.json"

# One line per operation: "<path> <operationId> <tag>".
python3 - "$WORK/openapi.json" >"$WORK/operations" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for path, item in doc["paths"].items():
    for method, op in item.items():
        if method in ("get", "put", "post", "patch", "delete", "head", "options"):
            tag = (op.get("tags") or ["default"])[0]
            print(path, op["operationId"], tag)
EOF
[[ -s "$WORK/operations" ]] || abort "the OpenAPI document lists no operation"

chromium_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-dev-shm-usage --virtual-time-budget=10000)
timeout 120 chromium "${chromium_flags[@]}" --user-data-dir="$(mktemp -d -p "$WORK")" \
  --dump-dom "$BASE/docs/" >"$WORK/dom.html" 2>"$WORK/chromium.log" \
  || abort "chromium failed: $(tail -n 5 "$WORK/chromium.log")"
mkdir -p "$ROOT/target"
timeout 120 chromium "${chromium_flags[@]}" --user-data-dir="$(mktemp -d -p "$WORK")" \
  --window-size=1280,2000 --screenshot="$ROOT/target/docs.png" "$BASE/docs/" \
  >/dev/null 2>>"$WORK/chromium.log" || echo "note: no screenshot (see chromium's log)"

if grep -q 'class="swagger-ui' "$WORK/dom.html"; then
  pass "Swagger UI rendered at /docs/"
else
  fail "Swagger UI did not render at /docs/"
fi

# Swagger UI renders each operation as a block with id
# operations-<tag>-<operationId> and its path in data-path="<path>".
while read -r path operation tag; do
  if grep -qF "id=\"operations-$tag-$operation\"" "$WORK/dom.html" \
    && grep -qF "data-path=\"$path\"" "$WORK/dom.html"; then
    pass "$operation $path rendered"
  else
    fail "$operation $path not rendered"
  fi
done <"$WORK/operations"

summary
[[ "$FAILED" -eq 0 ]]

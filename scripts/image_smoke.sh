#!/bin/sh
# make image-smoke: run the built image the way deploy/ runs it (read-only root filesystem, uid
# 10001, a tmpfs /tmp) and check that every component starts and works:
#   1. every entrypoint's --help, the default command, uid 10001, / not writable, no pip;
#   2. the sandbox API server in a container, called with curl (its CA and token; 401 without);
#   3. the gateway and the three services, each in its own container against that sandbox,
#      until every /healthz and /readyz answers 200;
#   4. a CloneSet created through the sandbox's API gets its two pods from the rollout service;
#   5. every container stops on SIGTERM with exit code 0.
# Everything listens on 127.0.0.1 (host network) on free ports; the containers (named
# kruise-mesh-smoke-<pid>-*) and the state directory under /tmp are removed at the end, also on
# failure. Each wait is bounded; the whole run takes about 30 s. Not part of make test.
#
# Environment: IMAGE (default localhost/kruise-mesh:0.1.0), RUN_FLAGS (default: podman, the
# flags scripts/container_flags.sh prints; docker: --network host), WAIT (seconds per wait, 60).
# Needs podman (or a docker engine), curl and python3 on the host.
set -eu

IMAGE=${IMAGE:-localhost/kruise-mesh:0.1.0}
WAIT=${WAIT:-60}
here=$(dirname "$0")
prefix=kruise-mesh-smoke-$$
started=$(date +%s)

if command -v podman >/dev/null 2>&1; then
  tool=podman; RUN_FLAGS=${RUN_FLAGS:-$("$here/container_flags.sh")}
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  tool=docker; RUN_FLAGS=${RUN_FLAGS:---network host}
else
  echo "image_smoke: needs podman or a docker engine" >&2; exit 1
fi
for cmd in curl python3; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "image_smoke: needs $cmd on the host" >&2; exit 1; }
done

state=$(mktemp -d /tmp/kruise-mesh-smoke.XXXXXX)
chmod 1777 "$state"  # the sandbox writes here as uid 10001
names=
cleanup() {
  for n in $names; do "$tool" rm --force --time 0 "$n" >/dev/null 2>&1 || "$tool" rm --force "$n" >/dev/null 2>&1 || true; done
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...: ok when the command succeeds
  desc=$1; shift
  if out=$("$@" 2>&1); then ok "$desc"; else fail "$desc"; echo "$out" | tail -n 5 | sed 's/^/     /'; fi
}

# shellcheck disable=SC2086 # RUN_FLAGS holds several flags
run() { "$tool" run --rm $RUN_FLAGS --read-only --user 10001:10001 "$IMAGE" "$@"; }
# shellcheck disable=SC2086
start() {  # start NAME ARGS...: a detached container, read-only, uid 10001, tmpfs /tmp
  name=$prefix-$1; shift
  names="$names $name"
  if ! out=$("$tool" run -d --name "$name" $RUN_FLAGS --read-only --user 10001:10001 \
               --tmpfs /tmp "$@" 2>&1); then
    fail "start $name"; echo "$out" | tail -n 5 | sed 's/^/     /'; return 1
  fi
}
summary() {
  echo "image_smoke: $failures failure(s) in $(($(date +%s) - started))s"
  [ "$failures" = 0 ]
}
wait_for() {  # wait_for DESCRIPTION COMMAND...: retry the command for up to WAIT seconds
  desc=$1; shift
  deadline=$(($(date +%s) + WAIT))
  while ! "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then fail "$desc (not within ${WAIT}s)"; return 1; fi
    sleep 0.5
  done
  ok "$desc"
}
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" || true; }
is_200() { [ "$(http_code "$1")" = 200 ]; }

echo "image_smoke: $tool, $IMAGE, flags: $RUN_FLAGS"
"$tool" image inspect "$IMAGE" >/dev/null 2>&1 \
  || { echo "image_smoke: no image $IMAGE here; run make image first" >&2; exit 1; }

# --- 1. entrypoints and the user ----------------------------------------------------------------
usage_of() { run "$@" --help | grep -q '^usage:'; }
for m in services.gateway services.placement services.rollout services.budget sandbox; do
  check "python -m $m --help" usage_of python -m "$m"
done
check "kruise-mesh --help" usage_of kruise-mesh
# shellcheck disable=SC2086
as_image_user() { "$tool" run --rm $RUN_FLAGS --read-only "$IMAGE" "$@"; }  # no --user
default_command() { as_image_user | grep -q 'python -m services.budget'; }
check "the default command lists the components" default_command
uid_gid() { [ "$(as_image_user sh -c 'echo "$(id -u):$(id -g)"')" = 10001:10001 ]; }
check "runs as 10001:10001 without --user" uid_gid
read_only() { run python -c "open('/probe', 'w')" 2>&1 | grep -q 'Read-only file system'; }
check "the root filesystem is read-only (python cannot write /probe)" read_only
no_pip() { run python -m pip --version 2>&1 | grep -q 'No module named pip'; }
check "no pip at run time" no_pip
check "bytecode compiled at build time" run python -c "import pathlib, services.gateway as g
assert list(pathlib.Path(g.__file__).parent.glob('__pycache__/*.pyc'))"

# --- 2. the sandbox API server -------------------------------------------------------------------
ports=$(python3 -c '
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
# shellcheck disable=SC2086
set -- $ports
api=$1 gw_grpc=$2 gw_webhook=$3 gw_ops=$4
crds=/opt/kruise-mesh/lib/python3.11/site-packages/services/_deploy/crds
start sandbox -v "$state:/tmp/sb" "$IMAGE" \
  python -m sandbox --state-dir /tmp/sb/state --port "$api" --crds "$crds" || { summary; exit 1; }
ready_line() { "$tool" logs "$prefix-sandbox" 2>/dev/null | grep -m 1 '^{"url"'; }
if wait_for "sandbox prints its ready line" ready_line; then
  token=$(ready_line | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
else
  "$tool" logs "$prefix-sandbox" 2>&1 | tail -n 5 | sed 's/^/     /'; summary; exit 1
fi
ca=$state/state/ca.crt
kube() { curl -sS --max-time 5 --cacert "$ca" -H "Authorization: Bearer $token" \
              -H 'Content-Type: application/json' "$@"; }
version() { kube "https://127.0.0.1:$api/version" | grep -q gitVersion; }
check "curl https://127.0.0.1:$api/version (the sandbox's CA and token)" version
no_token() { [ "$(http_code --cacert "$ca" "https://127.0.0.1:$api/api/v1/namespaces")" = 401 ]; }
check "the sandbox refuses a call without a token (401)" no_token

# --- 3. the gateway and the services, one container each ----------------------------------------
services=placement=127.0.0.1:$5\;rollout=127.0.0.1:$6\;budget=127.0.0.1:$7
start gateway -v "$state:/tmp/sb:ro" "$IMAGE" python -m services.gateway \
  --kubeconfig /tmp/sb/state/kubeconfig --host 127.0.0.1 --grpc-port "$gw_grpc" \
  --webhook-port "$gw_webhook" --ops-port "$gw_ops" --cert-dir /tmp/certs \
  --api-port off --api-http-port off --identity smoke-gateway --services "$services" || true
start placement "$IMAGE" python -m services.placement --host 127.0.0.1 --port "$5" \
  --ops-port "$8" --gateway "127.0.0.1:$gw_grpc" --advertise "127.0.0.1:$5" || true
start rollout "$IMAGE" python -m services.rollout --host 127.0.0.1 --port "$6" \
  --ops-port "$9" --gateway "127.0.0.1:$gw_grpc" --advertise "127.0.0.1:$6" || true
start budget "$IMAGE" python -m services.budget --host 127.0.0.1 --port "$7" \
  --ops-port "${10}" --gateway "127.0.0.1:$gw_grpc" --advertise "127.0.0.1:$7" || true
for pair in gateway:$gw_ops placement:$8 rollout:$9 budget:${10}; do
  c=${pair%%:*} p=${pair#*:}
  wait_for "$c: curl http://127.0.0.1:$p/healthz is 200" is_200 "http://127.0.0.1:$p/healthz" || true
  wait_for "$c: curl http://127.0.0.1:$p/readyz is 200" is_200 "http://127.0.0.1:$p/readyz" \
    || "$tool" logs "$prefix-$c" 2>&1 | tail -n 5 | sed 's/^/     /'
done

# --- 4. a CloneSet gets its pods ------------------------------------------------------------------
base=https://127.0.0.1:$api
check "create namespace smoke" kube --fail -o /dev/null -X POST "$base/api/v1/namespaces" \
  -d '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"smoke"}}'
check "create CloneSet smoke/web (2 replicas)" kube --fail -o /dev/null -X POST \
  "$base/apis/apps.kruise.io/v1alpha1/namespaces/smoke/clonesets" -d '{
    "apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet", "metadata": {"name": "web"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}}'
two_pods() {
  [ "$(kube "$base/api/v1/namespaces/smoke/pods?labelSelector=app%3Dweb" \
       | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))')" = 2 ]
}
wait_for "the rollout service created the CloneSet's 2 pods" two_pods || true

# --- 5. SIGTERM stops every container cleanly -----------------------------------------------------
for c in budget rollout placement gateway sandbox; do
  "$tool" stop --time 20 "$prefix-$c" >/dev/null 2>&1 || true
  code=$("$tool" inspect --format '{{.State.ExitCode}}' "$prefix-$c" 2>/dev/null || echo '?')
  if [ "$code" = 0 ]; then ok "$c stops on SIGTERM with exit code 0"; else fail "$c exit code $code after SIGTERM"; fi
done

summary

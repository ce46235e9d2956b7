#!/usr/bin/env bash
# End-to-end check of the docker-compose NSMC service on this machine, without an image registry:
#   1. a Docker engine (Debian's docker.io; dockerd started by hand when not running),
#   2. a local base image: Debian bookworm from debootstrap, carrying the host's CA bundle so pip
#      inside the build trusts the same TLS (intercepting) proxy as the host,
#   3. docker-compose 1.29.2 in its own venv (the project's .venv is left alone),
#   4. `docker-compose build` and `up -d` on the bundled NSMC sample with a tiny random-init model,
#      then a check that outputs/results.json holds a test accuracy.
# Exits 0 with "SKIP:" when no engine can be installed (not root, no apt-get); any other
# failure exits non-zero.
#
# Usage: scripts/docker_smoke.sh                 the whole check
#        scripts/docker_smoke.sh --compose-only  only install docker-compose (no root needed)
# Environment: COMPOSE_VENV (default ~/.cache/electra_ko/compose-venv), BASE_IMAGE_TAG
# (default electra-ko-base:bookworm), DEBIAN_MIRROR (default: read from apt's sources).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

COMPOSE_VENV=${COMPOSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/electra_ko/compose-venv}
BASE_IMAGE_TAG=${BASE_IMAGE_TAG:-electra-ko-base:bookworm}
PROJECT=electra_ko_smoke
SCRIPT_START=$SECONDS
STEP_START=$SECONDS
CURRENT_STEP=""
STARTED_DOCKERD_PID=""
WORK_DIR=""

step() {
  [ -n "$CURRENT_STEP" ] && echo "    done in $((SECONDS - STEP_START)) s"
  CURRENT_STEP=$*
  STEP_START=$SECONDS
  echo
  echo "=== [docker_smoke +$((SECONDS - SCRIPT_START)) s] $*"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

skip() {
  echo "SKIP: $* -- the docker-compose smoke test did not run."
  exit 0
}

install_compose() {
  if [ -x "$COMPOSE_VENV/bin/docker-compose" ]; then
    echo "docker-compose already in $COMPOSE_VENV"
    return
  fi
  echo "installing docker-compose 1.29.2 into $COMPOSE_VENV"
  rm -rf "$COMPOSE_VENV"
  python3 -m venv "$COMPOSE_VENV"
  local pip=("$COMPOSE_VENV/bin/python" -m pip install --quiet)
  # PyYAML 5.4.1 (pinned by docker-compose 1.29.2) only builds with Cython 2 and no isolation.
  "${pip[@]}" 'cython<3' wheel setuptools
  "${pip[@]}" --no-build-isolation PyYAML==5.4.1
  # docker 7 and requests 2.32 dropped what docker-compose 1.29.2 uses to reach the engine.
  "${pip[@]}" docker-compose==1.29.2 docker==6.1.3 'requests<2.32'
}

install_engine() {
  if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then
    echo "dockerd and debootstrap present"
    return
  fi
  [ "$(id -u)" = 0 ] || skip "dockerd/debootstrap missing and not running as root"
  command -v apt-get >/dev/null || skip "dockerd/debootstrap missing and no apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
}

engine_ready() {
  docker info >/dev/null 2>&1
}

start_engine() {
  if engine_ready; then
    echo "Docker engine already running"
    return
  fi
  [ "$(id -u)" = 0 ] || skip "no running Docker engine and not root to start one"
  local log=${DOCKERD_LOG:-/tmp/electra_ko_dockerd.log}
  echo "starting dockerd (log: $log)"
  dockerd >"$log" 2>&1 &
  STARTED_DOCKERD_PID=$!
  for _ in $(seq 60); do
    engine_ready && return
    kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  tail -20 "$log" >&2
  fail "dockerd did not come up within 60 s (see $log)"
}

# The Debian mirror apt already uses here (deb822 .sources or one-line sources.list format).
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ && u ~ /debian\/?$/ {print u; exit}')
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '$1 == "deb" && $3 == "bookworm" && $2 ~ /debian\/?$/ {print $2; exit}')
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# The CA bundle the host's pip trusts (it may include a TLS-intercepting proxy's CA).
host_ca_bundle() {
  local bundle=${PIP_CERT:-${SSL_CERT_FILE:-}}
  if [ -z "$bundle" ]; then
    bundle=$(python3 -m pip config get global.cert 2>/dev/null || true)
  fi
  echo "${bundle:-/etc/ssl/certs/ca-certificates.crt}"
}

build_base_image() {
  local ca ca_sha have
  ca=$(host_ca_bundle)
  [ -r "$ca" ] || fail "host CA bundle $ca not readable"
  ca_sha=$(sha256sum "$ca" | cut -c1-64)
  have=$(docker image inspect -f '{{index .Config.Labels "electra_ko.ca_sha256"}}' \
         "$BASE_IMAGE_TAG" 2>/dev/null || true)
  if [ "$have" = "$ca_sha" ]; then
    echo "$BASE_IMAGE_TAG already built (same CA bundle)"
    return
  fi
  local mirror rootfs
  mirror=$(debian_mirror)
  rootfs="$WORK_DIR/rootfs"
  echo "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$WORK_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK_DIR/debootstrap.log" >&2; fail "debootstrap failed"; }
  cp "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  local cert=/etc/ssl/certs/ca-certificates.crt
  tar -C "$rootfs" -c . | docker import \
    --change "ENV SSL_CERT_FILE=$cert" --change "ENV PIP_CERT=$cert" \
    --change "ENV REQUESTS_CA_BUNDLE=$cert" \
    --change "LABEL electra_ko.ca_sha256=$ca_sha" \
    --change 'CMD ["python3"]' - "$BASE_IMAGE_TAG" >/dev/null
  rm -rf "$rootfs"
  echo "imported $BASE_IMAGE_TAG"
}

# ./data, ./models and ./outputs of the service, in a scratch directory.
prepare_inputs() {
  mkdir -p "$WORK_DIR/data" "$WORK_DIR/models" "$WORK_DIR/outputs"
  cp electra_ko/sample/nsmc_train.tsv "$WORK_DIR/data/ratings_train.txt"
  cp electra_ko/sample/nsmc_test.tsv "$WORK_DIR/data/ratings_test.txt"
  cut -f2 electra_ko/sample/nsmc_train.tsv | tail -n +2 >"$WORK_DIR/data/corpus.txt"
  # The container runs as uid 1000, not root: it must be able to write the outputs.
  chown -R "${NSMC_UID}:${NSMC_GID}" "$WORK_DIR/models" "$WORK_DIR/outputs"
}

compose() {
  "$COMPOSE_VENV/bin/docker-compose" -p "$PROJECT" -f "$REPO/docker-compose.yml" "$@"
}

build_vocab_in_image() {
  docker run --rm --user "${NSMC_UID}:${NSMC_GID}" \
    -v "$WORK_DIR/data:/data:ro" -v "$WORK_DIR/models:/models" "$NSMC_IMAGE" \
    python -m electra_ko.vocab --corpus=/data/corpus.txt --output_dir=/models \
    --vocab_size=2000 --num_unused=10 --heldout_lines=20
}

run_service() {
  compose up -d
  local container status
  container=$(compose ps -q nsmc)
  [ -n "$container" ] || fail "docker-compose started no nsmc container"
  status=$(docker wait "$container")
  compose logs --no-color nsmc | tail -40
  echo
  [ "$status" = 0 ] || fail "the nsmc service exited with status $status"
}

check_results() {
  local outputs="$WORK_DIR/outputs" owner
  [ -s "$outputs/results.json" ] || fail "$outputs/results.json was not written"
  [ -s "$outputs/predictions.tsv" ] || fail "$outputs/predictions.tsv was not written"
  owner=$(stat -c %u "$outputs/results.json")
  [ "$owner" = "$NSMC_UID" ] || fail "results.json belongs to uid $owner, not the service's $NSMC_UID"
  python3 - "$outputs/results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1], encoding="utf-8"))
accuracy = ((results.get("final") or {}).get("test") or {}).get("accuracy")
if not isinstance(accuracy, (int, float)) or not 0.0 <= accuracy <= 100.0:
    sys.exit(f"FAIL: no final test accuracy (0-100) in {sys.argv[1]}: {json.dumps(results)[:300]}")
if not results["init_checkpoint"].get("random_init"):
    sys.exit(f"FAIL: expected a random initialisation, got {results['init_checkpoint']}")
print(f"test accuracy on the {results['examples']['test']}-row sample: {accuracy:.2f}% "
      f"(tiny random-init model, {results['wall_seconds']} s in the container)")
EOF
}

cleanup() {
  local rc=$?
  if [ -n "$WORK_DIR" ]; then
    [ -x "$COMPOSE_VENV/bin/docker-compose" ] && compose down --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$WORK_DIR"
  fi
  if [ -n "$STARTED_DOCKERD_PID" ]; then
    kill "$STARTED_DOCKERD_PID" 2>/dev/null && wait "$STARTED_DOCKERD_PID" 2>/dev/null || true
  fi
  exit "$rc"
}

main() {
  if [ "${1:-}" = "--compose-only" ]; then
    install_compose
    return
  fi
  trap cleanup EXIT
  WORK_DIR=$(mktemp -d /tmp/electra_ko_smoke.XXXXXX)
  export NSMC_UID=1000 NSMC_GID=1000 NSMC_IMAGE=electra-ko:smoke NSMC_BASE_IMAGE=$BASE_IMAGE_TAG
  export NSMC_DATA_DIR=$WORK_DIR/data NSMC_MODELS_DIR=$WORK_DIR/models
  export NSMC_OUTPUTS_DIR=$WORK_DIR/outputs NSMC_EPOCHS=1

  step "Docker engine and debootstrap"
  install_engine
  start_engine
  step "docker-compose"
  install_compose
  step "local base image $BASE_IMAGE_TAG"
  build_base_image
  step "image build (docker-compose build; TensorFlow is downloaded on the first run only)"
  compose build
  step "NSMC sample and a small vocab built inside the image"
  prepare_inputs
  build_vocab_in_image
  step "docker-compose up -d: fine-tune + evaluate on the sample, tiny random-init model"
  run_service
  step "results"
  check_results
  step "PASS: docker-compose NSMC smoke test in $((SECONDS - SCRIPT_START)) s"
}

main "$@"

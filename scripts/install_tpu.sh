#!/usr/bin/env bash
# Install electra_ko on a Cloud TPU VM: TensorFlow's newest TPU build, not the generic wheel.
#
#   scripts/install_tpu.sh            # into .venv (created if missing), then checks TPU access
#   scripts/install_tpu.sh --check    # resolve the install with pip --dry-run only (any machine)
#
# TensorFlow 2.21 has no TPU build: PyPI's tensorflow-tpu stops at 2.20, and the generic
# tensorflow 2.21 wheel cannot load libtpu. So this installs tensorflow-tpu 2.20 with
# libtpu, the matching tensorflow-text without its dependencies (it pins the generic
# `tensorflow`, which would replace the TPU build), the Keras 3 that tensorflow-tpu
# requires, and electra_ko with ELECTRA_KO_TENSORFLOW=external (see setup.py).
# Google's libtpu builds for TensorFlow come from LIBTPU_FIND_LINKS (set it empty to use
# PyPI's libtpu only).
set -euo pipefail
cd "$(dirname "$0")/.."
TENSORFLOW_TPU="${TENSORFLOW_TPU:-tensorflow-tpu==2.20.*}"
LIBTPU_FIND_LINKS="${LIBTPU_FIND_LINKS-https://storage.googleapis.com/libtpu-tf-releases/index.html}"
FIND_LINKS=()
[ -n "$LIBTPU_FIND_LINKS" ] && FIND_LINKS=(--find-links "$LIBTPU_FIND_LINKS")

if [ "${1:-}" = "--check" ]; then
  report="$(mktemp)" log="$(mktemp)"
  trap 'rm -f "$report" "$log"' EXIT
  if ! ELECTRA_KO_TENSORFLOW=external python3 -m pip install --quiet --dry-run --ignore-installed \
      --report "$report" "${FIND_LINKS[@]}" "$TENSORFLOW_TPU" . >"$log" 2>&1; then
    grep -v "is ignored" "$log" | tail -n 15
    echo "TPU install check FAILED: pip cannot resolve $TENSORFLOW_TPU with electra_ko" >&2
    exit 1
  fi
  python3 - "$report" <<'PY'
import json, sys
names = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
         for item in json.load(open(sys.argv[1]))["install"]}
problems = [f"{bad} would be installed" for bad in ("tensorflow", "tensorflow-cpu", "tensorflow-text")
            if bad in names]
problems += [f"{need} is missing" for need in ("tensorflow-tpu", "libtpu", "keras", "electra-ko")
             if need not in names]
summary = ", ".join(f"{n} {names[n]}" for n in ("tensorflow-tpu", "libtpu", "keras") if n in names)
if problems:
    sys.exit("TPU install check FAILED: " + "; ".join(problems))
print(f"TPU install check PASS: {summary}; no generic tensorflow wheel")
PY
  exit 0
fi

source scripts/venv.sh
PIP_FIND_LINKS="${LIBTPU_FIND_LINKS}" ensure_venv "." .venv "$TENSORFLOW_TPU"
python - <<'PY'
import tensorflow as tf
print("tensorflow", tf.__version__, "TPU devices:", tf.config.list_logical_devices("TPU") or
      "none visible before initialisation (run scripts/tpu_smoke.sh)")
PY

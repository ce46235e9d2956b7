#!/usr/bin/env bash
# Install electra_ko with its test extras into .venv (created if missing) and run the tests,
# then the TPU install check and the core tests under TensorFlow 2.20 (the newest TensorFlow
# with a TPU build) in .venv-tf220, so no 2.21-only API slips in.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_corpus.py -k dedup
# ELECTRA_KO_TF220=0 skips the TPU check and the TensorFlow 2.20 run (a quick local loop).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv ".[test,hf]"
python -m pytest tests "$@"
[ "${ELECTRA_KO_TF220:-1}" = "0" ] && exit 0

echo "[electra_ko] TPU install resolution (tensorflow-tpu, no generic tensorflow wheel)"
LIBTPU_FIND_LINKS="" bash scripts/install_tpu.sh --check

# The core: model, objective, input, training loop, export parity (no subprocess-heavy tests).
CORE_TESTS=(tests/test_modeling.py tests/test_masking.py tests/test_randomness.py
            tests/test_data.py tests/test_optimization.py tests/test_export.py tests/test_pretrain.py
            tests/test_training.py tests/test_layers.py tests/test_golden.py tests/test_classifier.py
            tests/test_tfrecord.py tests/test_architecture.py tests/test_shards.py
            tests/test_warm_start.py)
deactivate
ensure_venv ".[test,hf]" .venv-tf220 "tensorflow==2.20.*" "tensorboard==2.20.*"
python -c "import tensorflow as tf; assert tf.__version__.startswith('2.20'), tf.__version__"
python -m pytest "${CORE_TESTS[@]}" -k "not two_workers and not sigterm" "$@"

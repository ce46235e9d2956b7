#!/usr/bin/env bash
# Install electra_ko with its test extras into .venv (created if missing) and run the tests.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_corpus.py -k dedup
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv ".[test,hf]"
exec python -m pytest tests "$@"

# Sourced by the scripts: create .venv if missing and install electra_ko into it.
# torch is pinned to the CPU build (2.13.0) so the Hugging Face extras never pull a CUDA build.
ensure_venv() {
  local spec="$1"
  if [ ! -x .venv/bin/python ]; then
    echo "[electra_ko] creating virtualenv .venv"
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  echo "[electra_ko] installing ${spec} (first run downloads TensorFlow; later runs are quick)"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e "${spec}"
}

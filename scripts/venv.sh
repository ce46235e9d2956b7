# Sourced by the scripts: create a virtualenv if missing and install electra_ko into it.
# torch is pinned to the CPU build (2.13.0) so the Hugging Face extras never pull a CUDA build.
#
#   ensure_venv SPEC [VENV] [TENSORFLOW_REQUIREMENT...]
#
# SPEC is what to install (".[test,hf]"), VENV the folder (default .venv). Without
# TENSORFLOW_REQUIREMENTs electra_ko brings the generic TensorFlow 2.21; with them (e.g.
# "tensorflow-tpu==2.20.*") those are installed first, the matching tensorflow-text
# without its dependencies (it would pull the generic `tensorflow` wheel over them), and
# electra_ko with ELECTRA_KO_TENSORFLOW=external (see setup.py).
ensure_venv() {
  local spec="$1" venv="${2:-.venv}"
  shift; shift || true
  if [ ! -x "$venv/bin/python" ]; then
    echo "[electra_ko] creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  echo "[electra_ko] installing ${spec} into $venv ${*:+with $*} (first run downloads TensorFlow; later runs are quick)"
  python -m pip install --quiet --upgrade pip
  if [ "$#" -gt 0 ]; then
    python -m pip install --quiet "$@"
    python -m pip install --quiet --no-deps "tensorflow-text==$(tensorflow_minor).*"
    ELECTRA_KO_TENSORFLOW=external python -m pip install --quiet -e "${spec}"
  else
    python -m pip install --quiet -e "${spec}"
  fi
}

# The installed TensorFlow's major.minor version, e.g. 2.20.
tensorflow_minor() {
  python - <<'PY'
from importlib.metadata import PackageNotFoundError, version
for name in ("tensorflow", "tensorflow-tpu", "tensorflow-cpu"):
    try:
        print(".".join(version(name).split(".")[:2]))
        break
    except PackageNotFoundError:
        pass
PY
}

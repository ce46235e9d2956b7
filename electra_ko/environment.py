"""Settings TensorFlow reads once, when it is imported: call `configure_tensorflow()` first.

Both are CPU speed-ups measured on the ELECTRA-Small training step (benchmarks/README.md);
GPUs and TPUs ignore them. A value the user already set is kept.
- `TF_ENABLE_ONEDNN_OPTS=1`: oneDNN kernels, which TensorFlow leaves off on AMD CPUs.
- `--xla_cpu_prefer_vector_width=512` in `XLA_FLAGS`: XLA's CPU code uses 256-bit vectors
  by default even where AVX-512 is available; on a CPU without it, LLVM uses its widest.
"""
import os
import sys

XLA_CPU_FLAGS = {"--xla_cpu_prefer_vector_width": "512"}


def configure_tensorflow():
    """Set our defaults for TensorFlow's import-time settings, keeping the user's. Once
    TensorFlow is imported they no longer take effect, so then this changes nothing (and
    returns False): a notebook that imported TensorFlow first keeps its own settings."""
    if "tensorflow" in sys.modules:
        return False
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ["XLA_FLAGS"] = with_default_flags(os.environ.get("XLA_FLAGS", ""), XLA_CPU_FLAGS)
    return True


def with_default_flags(xla_flags: str, defaults: dict) -> str:
    """`xla_flags` plus each default flag it does not set already."""
    given = {flag.split("=", 1)[0] for flag in xla_flags.split()}
    added = [f"{name}={value}" for name, value in defaults.items() if name not in given]
    return " ".join([xla_flags.strip()] + added).strip()

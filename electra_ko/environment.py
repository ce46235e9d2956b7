"""Settings TensorFlow reads once, when it is imported, and a quiet start-up.

Importing `electra_ko` calls `configure_tensorflow()` and `quiet_tensorflow_startup()`, so
every module may simply `import tensorflow` at its top.

The settings are CPU speed-ups measured on the ELECTRA-Small training step (benchmarks/README.md);
GPUs and TPUs ignore them. A value the user already set is kept.
- `TF_ENABLE_ONEDNN_OPTS=1`: oneDNN kernels, which TensorFlow leaves off on AMD CPUs.
- `--xla_cpu_prefer_vector_width=512` in `XLA_FLAGS`: XLA's CPU code uses 256-bit vectors
  by default even where AVX-512 is available; on a CPU without it, LLVM uses its widest.
"""
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

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


# TensorFlow's start-up lines that say nothing to act on. They are printed before absl's
# logging is set up (so TF_CPP_MIN_LOG_LEVEL cannot hide them), by each of TensorFlow's two
# shared libraries. cuInit's failure is only noise where no CUDA driver is installed.
STARTUP_NOISE = re.compile("|".join([
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"port\.cc:\d+\] oneDNN custom operations are on",
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler",
]))
NO_CUDA_DRIVER = re.compile(r"cudart_stub\.cc:\d+\] Could not find cuda drivers")
CUINIT_FAILED = re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit")


def startup_messages_worth_showing(text: str) -> str:
    """`text` (TensorFlow's start-up stderr) without the lines in STARTUP_NOISE, and without
    the CUDA lines when they only say that this machine has no CUDA driver."""
    lines = text.splitlines(keepends=True)
    no_driver = any(NO_CUDA_DRIVER.search(line) for line in lines)
    return "".join(line for line in lines if not (
        STARTUP_NOISE.search(line)
        or no_driver and (NO_CUDA_DRIVER.search(line) or CUINIT_FAILED.search(line))))


class _FilteredStderr:
    """Within the block, file descriptor 2 goes to a temporary file; at its end the lines
    worth showing go to the real stderr. A C library writes to the descriptor directly."""

    def __enter__(self):
        sys.stderr.flush()
        try:
            self._saved = os.dup(2)
        except OSError:  # no descriptor 2 (a detached process): nothing to filter
            self._saved = None
            return
        self._captured = tempfile.TemporaryFile()
        os.dup2(self._captured.fileno(), 2)

    def __exit__(self, *exc):
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._captured.seek(0)
        shown = startup_messages_worth_showing(self._captured.read().decode("utf-8", "replace"))
        self._captured.close()
        if shown:
            sys.stderr.write(shown)
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with its start-up noise filtered (`_FilteredStderr`).
    The GPU listing inside it is where CUDA is initialised, and reports a missing driver."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with _FilteredStderr():
            self._loader.exec_module(module)
            module.config.list_physical_devices("GPU")


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, once, and hands it `_QuietLoader`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_startup():
    """Filter TensorFlow's start-up noise when it is imported later (returns False, changing
    nothing, if it already is). Real warnings and errors still reach stderr."""
    if "tensorflow" in sys.modules:
        return False
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
    return True

import os
import subprocess
import sys

from electra_ko import environment

WIDTH = "--xla_cpu_prefer_vector_width"


def test_default_flags_are_added_unless_the_user_set_them():
    assert environment.with_default_flags("", {WIDTH: "512"}) == f"{WIDTH}=512"
    assert (environment.with_default_flags(" --xla_dump_to=/tmp/d ", {WIDTH: "512"})
            == f"--xla_dump_to=/tmp/d {WIDTH}=512")
    assert environment.with_default_flags(f"{WIDTH}=256", {WIDTH: "512"}) == f"{WIDTH}=256"


def run_python(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, check=True,
                          capture_output=True, text=True).stdout.split()


def test_configure_sets_defaults_before_tensorflow_and_keeps_the_users():
    show = ("import os; from electra_ko import environment; "
            "print(environment.configure_tensorflow(), os.environ['TF_ENABLE_ONEDNN_OPTS'], "
            "os.environ['XLA_FLAGS'])")
    assert run_python(show) == ["True", "1", f"{WIDTH}=512"]
    assert run_python(show, TF_ENABLE_ONEDNN_OPTS="0", XLA_FLAGS=f"{WIDTH}=256") == [
        "True", "0", f"{WIDTH}=256"]
    # too late once TensorFlow is imported: nothing changes
    late = ("import os, tensorflow; from electra_ko import environment; "
            "print(environment.configure_tensorflow(), os.environ.get('XLA_FLAGS', '-'))")
    assert run_python(late, TF_CPP_MIN_LOG_LEVEL="3") == ["False", "-"]


def test_the_clis_configure_tensorflow_on_import():
    show = "import os, electra_ko.finetune; print(os.environ['XLA_FLAGS'])"
    assert run_python(show, TF_CPP_MIN_LOG_LEVEL="3") == [f"{WIDTH}=512"]


NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1.2 20608 port.cc:153] oneDNN custom operations are on. You may see ...\n",
    "I0000 00:00:1.3 20608 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use\n",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.\n",
]
NO_DRIVER = "I0000 00:00:1.4 20608 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
CUINIT = "E0000 00:00:1.5 20608 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
REAL = "W0000 00:00:1.6 20608 some_op.cc:10] a real warning\n"


def test_startup_noise_is_dropped_and_everything_else_kept():
    assert environment.startup_messages_worth_showing("".join(NOISE + [REAL])) == REAL
    # cuInit's failure is noise only where there is no CUDA driver at all
    assert environment.startup_messages_worth_showing(NO_DRIVER + CUINIT + REAL) == REAL
    assert environment.startup_messages_worth_showing(CUINIT + REAL) == CUINIT + REAL


def test_tensorflow_starts_without_noise_and_c_level_warnings_still_show():
    code = ("import os, electra_ko, tensorflow as tf; tf.constant(1) + 1\n"
            "with electra_ko.environment._FilteredStderr():\n"
            f"    os.write(2, {(NOISE[1] + REAL).encode()!r})\n")
    stderr = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stderr
    assert stderr == REAL

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

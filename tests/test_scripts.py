"""The Cloud TPU scripts, run against stand-ins for gcloud and git that log their calls."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_cloud(tmp_path):
    """gcloud and git stand-ins on PATH; `git ls-remote` fails for URLs containing 'missing'."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(f'#!/bin/sh\necho "gcloud $*" >> {log}\n')
    (bin_dir / "git").write_text(
        f'#!/bin/sh\necho "git $*" >> {log}\ncase "$*" in *missing*) exit 128;; esac\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PROJECT="p", BUCKET="b")
    return env, log


def _create(env, **values):
    return subprocess.run(["bash", str(ROOT / "scripts" / "tpu_create.sh")], capture_output=True,
                          text=True, env=dict(env, **values), timeout=60)


def _calls(log):
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("source,message", [
    (None, "set SOURCE"), ("https://github.com/your-org/electra_ko.git", "placeholder"),
    ("https://example.invalid/missing.git", "cannot read git repository")])
def test_tpu_create_checks_the_source_before_creating_anything(fake_cloud, source, message):
    env, log = fake_cloud
    result = _create(env, **({"SOURCE": source} if source else {}))
    assert result.returncode != 0 and message in result.stderr
    assert not [c for c in _calls(log) if c.startswith("gcloud")]


@pytest.mark.parametrize("accelerator,runtime,tpu", [
    ("v3-8", "tpu-ubuntu2204-base", "local"), ("v4-32", "tpu-ubuntu2204-base", "electra-ko"),
    ("v5litepod-16", "v2-alpha-tpuv5-lite", "electra-ko"), ("v6e-8", "v2-alpha-tpuv6e", "local")])
def test_tpu_create_installs_on_every_host_of_a_slice(fake_cloud, accelerator, runtime, tpu):
    env, log = fake_cloud
    result = _create(env, SOURCE="https://example.org/electra_ko.git", ACCELERATOR=accelerator)
    assert result.returncode == 0, result.stderr
    calls = _calls(log)
    create = next(c for c in calls if "tpu-vm create" in c)
    assert f"--accelerator-type {accelerator}" in create and f"--version {runtime}" in create
    ssh = next(c for c in calls if "tpu-vm ssh" in c)
    assert "--worker=all" in ssh and "scripts/install_tpu.sh" in ssh
    assert f"TPU={tpu} " in result.stdout


def test_tpu_create_refuses_an_unknown_accelerator(fake_cloud):
    env, log = fake_cloud
    result = _create(env, SOURCE="https://example.org/electra_ko.git", ACCELERATOR="v9z-8")
    assert result.returncode == 2 and "unknown ACCELERATOR" in result.stderr
    assert not _calls(log)

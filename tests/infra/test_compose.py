"""infra/docker/docker-compose.yml against the code: commands, variables, volumes, images."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import Environment, Settings
from orchestration.cli import _build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra/docker/docker-compose.yml"
CANDLEFLOW_IMAGE = "candleflow:"
CODE_DIRS = ("orchestration", "assets", "streaming", "ml", "execution", "mt5_bridge", "quality",
             "infra")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?error} with every variable set to 'x'."""
    return re.sub(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}", "x", value)


def _candleflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith(CANDLEFLOW_IMAGE)
    }


def _steps(command: str) -> list[list[str]]:
    """The programs a service command runs: `sh -c "a && exec b"` gives [a, b]."""
    argv = shlex.split(command)
    if argv[:2] == ["sh", "-c"]:
        parts = [shlex.split(p) for p in argv[2].split("&&")]
        return [p[1:] if p and p[0] == "exec" else p for p in parts]
    return [argv]


def _code_text() -> str:
    return "\n".join(
        p.read_text() for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")
    )


def test_compose_when_parsed_then_every_image_is_pinned_and_every_service_restarts(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and "latest" not in tag and re.search(r"\d", tag), f"{name}: {image} not pinned"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_compose_when_parsed_then_one_candleflow_image_built_once_from_a_lean_context(compose):
    services = _candleflow_services(compose)
    built = [n for n, s in services.items() if "build" in s]
    assert len(built) == 1 and len(services) >= 3
    assert len({s["image"] for s in services.values()}) == 1
    assert services[built[0]]["image"] == f"candleflow:{version('candleflow')}"
    for name, svc in services.items():
        assert name in built or svc.get("pull_policy") == "never", name
    build = services[built[0]]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT
    dockerfile = (context / build["dockerfile"]).read_text()
    for package in CODE_DIRS:
        assert f"COPY {package} {package}" in dockerfile
    ignored = (context / ".dockerignore").read_text().split()
    assert {".venv/", ".git/", "var/"} <= set(ignored)


def test_compose_when_parsed_then_mlflow_serves_artifacts_and_allows_the_service_names(compose):
    svc = compose["services"]["mlflow"]
    assert svc["image"] == f"ghcr.io/mlflow/mlflow:v{version('mlflow')}"
    argv = shlex.split(svc["command"])
    assert argv[:2] == ["mlflow", "server"] and "--serve-artifacts" in argv
    allowed = set(argv[argv.index("--allowed-hosts") + 1].split(","))
    uri = compose["x-candleflow-env"]["MLFLOW_TRACKING_URI"]
    host_port = uri.split("://", 1)[1].rstrip("/")
    assert {host_port, host_port.split(":")[0], "localhost:5000"} <= allowed
    assert "/health" in " ".join(svc["healthcheck"]["test"])


def test_compose_when_parsed_then_every_command_is_one_the_code_accepts(compose):
    for name, svc in _candleflow_services(compose).items():
        steps = _steps(svc["command"])
        assert steps[0][:2] == ["candleflow", "init-home"], f"{name}: no Dagster home at start"
        for argv in steps:
            if argv[0] == "candleflow":
                _build_parser().parse_args(argv[1:])  # SystemExit on an unknown option
            else:
                assert argv[0] in ("dagster-webserver", "dagster-daemon"), argv
                module = argv[argv.index("-m") + 1]
                assert importlib.util.find_spec(module) is not None, module
                assert shutil.which(argv[0]) or (ROOT / ".venv/bin" / argv[0]).exists()
    worker = compose["services"]["streaming-worker"]
    assert "--wait-for-champion" in worker["command"]
    assert worker.get("stop_grace_period")


def test_compose_when_parsed_then_env_and_volumes_match_settings(compose):
    env = {k: _interpolate(str(v)) for k, v in compose["x-candleflow-env"].items()}
    settings = Settings.from_env(env)
    assert settings.env is Environment.TIMESCALE
    assert env["DAGSTER_HOME"] == str(Path(env["CANDLEFLOW_HOME"]) / "dagster")
    dsn_host = env["CANDLEFLOW_TIMESCALE_DSN"].split("@", 1)[1].split(":")[0]
    assert "healthcheck" in compose["services"][dsn_host]
    tsdb_env = compose["services"][dsn_host]["environment"]
    assert env["CANDLEFLOW_TIMESCALE_DSN"].endswith(f"/{tsdb_env['POSTGRES_DB']}")
    assert f"//{tsdb_env['POSTGRES_USER']}:" in env["CANDLEFLOW_TIMESCALE_DSN"]
    code = _code_text()
    for name in env:
        if name.startswith(("CANDLEFLOW_", "ALPHAVANTAGE_")):
            assert f'"{name}"' in code, f"{name} is set in compose but read nowhere"
    declared = set(compose["volumes"])
    for name, svc in _candleflow_services(compose).items():
        mounts = dict(v.split(":")[:2][::-1] for v in svc["volumes"])
        assert mounts.get(env["CANDLEFLOW_HOME"]) in declared, f"{name}: home not on a volume"
    worker = compose["services"]["streaming-worker"]
    port = worker["environment"]["CANDLEFLOW_METRICS_PORT"]
    assert any(p.endswith(f":{port}:{port}") for p in worker["ports"])
    assert worker["environment"]["CANDLEFLOW_BROKER"] == "paper"


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _docker_engine(), reason="needs a Docker engine (CI has one)")
def test_compose_when_docker_checks_it_then_config_is_valid() -> None:
    out = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env={"POSTGRES_PASSWORD": "x", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert out.returncode == 0, out.stderr

"""The config file through the CLI, as a user runs it (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.config import CandleflowConfig

BIN = Path(sys.executable).parent / "candleflow"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANDLEFLOW_HOME": str(cwd / "home"), "CANDLEFLOW_ENV": "local"}
    env.pop("CANDLEFLOW_CONFIG", None)
    return subprocess.run(
        [str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False,
        timeout=300,
    )


def test_init_when_run_twice_then_writes_a_loadable_example_and_refuses_to_overwrite(tmp_path):
    first = run(tmp_path, "init")
    second = run(tmp_path, "init")

    assert first.returncode == 0, first.stderr
    cfg = CandleflowConfig.from_file(tmp_path / "candleflow.toml")
    assert cfg.universe.keys == ("SPX@1d",)
    assert second.returncode == 2
    assert "--force" in second.stderr.strip().splitlines()[-1]


def test_command_when_config_has_unknown_key_then_exit_2_naming_key_and_allowed(tmp_path):
    (tmp_path / "bad.toml").write_text("[research]\nn_fold = 3\n")

    out = run(tmp_path, "research", "--config", str(tmp_path / "bad.toml"))

    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("candleflow: error:")
    assert "n_fold" in last and "allowed:" in last and "n_folds" in last

"""MLflow adapter: training runs, the model registry and alias-based promotion.

The tracking store is real MLflow: local SQLite under CANDLEFLOW_HOME by default, or whatever
MLFLOW_TRACKING_URI points at. Models are saved by their own `save(path)` and logged as run
artifacts; registry versions point at them, and the aliases `challenger` and `champion` say which
version is on trial and which one trades. The deployable bundle is also logged as an MLflow
pyfunc model (signature and input example: bars in, probabilities out), which fills MLflow's
"Logged models" view; its registry version carries the logged model's id as a tag.

The experiment is tagged as custom model development, so MLflow opens it in the model-training
view. A series' walk-forward family runs (and its deployable run) are nested under one research
run per series and Dagster run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "ModelTracker",
    "PromotionDecision",
    "PromotionRule",
    "RegistryError",
    "TrackingConfig",
    "TrainingRecord",
    "choose_deployable",
    "config_hash",
    "data_fingerprint",
    "git_revision",
    "registered_model_name",
]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
PARENT_TAG = "mlflow.parentRunId"
LOGGED_MODEL_TAG = "candleflow.logged_model_id"
_BATCH = 900  # metrics per log_batch call; MLflow accepts at most 1000


def registered_model_name(symbol: str, timeframe: str) -> str:
    """The registry name of the deployable model for one series, e.g. candleflow.SPX.1d."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in symbol)
    return f"candleflow.{safe}.{timeframe}"
CHALLENGER = "challenger"
APPROVAL_TAG = "candleflow.approval"  # pending | approved (require_approval)


class RegistryError(RuntimeError):
    """The model registry could not answer; promotion and approval fail closed."""
_COMPLETE = ".complete"  # marks a fully downloaded model version


def git_revision(cwd: Path | None = None) -> str:
    """The commit of candleflow's own checkout (or of `cwd`), with a -dirty suffix when it has
    local changes; 'unknown' outside a git checkout. Not the caller's working directory: a
    command run from elsewhere still names the code that ran."""
    cwd = cwd if cwd is not None else Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH is intended
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A stable sha256 of a frame's values and index (column order matters)."""
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    h = hashlib.sha256(hashed.tobytes())
    h.update("|".join(map(str, frame.columns)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str  # e.g. sqlite:////abs/path/mlflow.db or http://mlflow:5000
    artifact_root: Path  # where a new experiment keeps artifacts (local stores only)
    experiment: str = "candleflow"
    # The resolved candleflow config (infra.config.CandleflowConfig.to_json): every run this
    # tracker creates carries it as `config.json` and its hash as the tag candleflow.config_hash.
    run_config_json: str = ""
    run_tags: Mapping[str, str] = field(default_factory=dict)  # e.g. candleflow.data_version


@dataclass(frozen=True)
class TrainingRecord:
    run_id: str
    experiment_id: str
    model_name: str
    version: str | None  # registry version, when registered


@dataclass(frozen=True)
class PromotionRule:
    """A challenger becomes champion when it passes the checks and beats the champion OOS."""

    metric: str = "oos_sharpe"  # a metric logged on the run, higher is better
    min_margin: float = 0.0  # challenger must exceed champion by more than this
    min_trades: int = 10  # fewer OOS trades than this is not evidence
    min_metric: float = 0.0  # a first champion must at least beat this


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None  # the champion after the decision


class ModelTracker:
    """Logs training runs and manages registry aliases. One instance per process is enough."""

    def __init__(self, config: TrackingConfig) -> None:
        import mlflow

        self._mlflow = mlflow
        self.config = config
        self._client = _ConfigRecordingClient(
            mlflow.MlflowClient(tracking_uri=config.tracking_uri),
            config.run_config_json,
            dict(config.run_tags),
        )
        exp = self._client.get_experiment_by_name(config.experiment)
        if exp is None:
            config.artifact_root.mkdir(parents=True, exist_ok=True)
            self.experiment_id = self._client.create_experiment(
                config.experiment,
                artifact_location=config.artifact_root.resolve().as_uri(),
                tags=EXPERIMENT_KIND,
            )
        else:
            self.experiment_id = exp.experiment_id
            for key, value in EXPERIMENT_KIND.items():
                if exp.tags.get(key) != value:
                    self._client.set_experiment_tag(self.experiment_id, key, value)

    @property
    def client(self) -> Any:
        return self._client

    def log_training(
        self,
        *,
        run_name: str,
        params: Mapping[str, Any],
        fold_metrics: Sequence[Mapping[str, float]],
        summary_metrics: Mapping[str, float],
        model_dir: Path,
        features: Sequence[str],
        fingerprint: str,
        tags: Mapping[str, str] | None = None,
        artifacts: Mapping[str, Path] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Log one training run; returns its run id. The model directory goes under `model/`.

        Fold metrics are one series each, `fold_<name>` at step = fold number, so the run page
        charts them fold by fold. With `parent_run_id` the run nests under that run.
        """
        from mlflow.entities import Metric, Param

        client = self._client
        run = client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={
                "candleflow.git_revision": git_revision(),
                "candleflow.data_fingerprint": fingerprint,
                **({PARENT_TAG: parent_run_id} if parent_run_id else {}),
                **(tags or {}),
            },
        )
        run_id = run.info.run_id
        now = _now_ms()
        metrics = [
            Metric(f"fold_{key}", float(value), now, step)
            for step, row in enumerate(fold_metrics)
            for key, value in row.items()
            if _finite(value)
        ]
        metrics += [Metric(k, float(v), now, 0) for k, v in summary_metrics.items() if _finite(v)]
        try:
            items = [Param(key, str(value)[:6000]) for key, value in params.items()]
            for start in range(0, len(items), 100):  # MLflow takes 100 params per batch
                client.log_batch(run_id, params=items[start : start + 100])
            for start in range(0, len(metrics), _BATCH):
                client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
            client.log_dict(run_id, {"features": list(features)}, "features.json")
            client.log_artifacts(run_id, str(model_dir), artifact_path="model")
            for name, path in (artifacts or {}).items():
                client.log_artifact(run_id, str(path), artifact_path=name)
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        return run_id

    def research_run(self, series: str, dagster_run_id: str) -> str:
        """The parent run of one series' research in one Dagster run: found by its tags, or
        created (left RUNNING; `finish_run` ends it). Family and deployable runs nest under it."""
        tags = {
            "candleflow.role": "research",
            "candleflow.series": series,
            "dagster.run_id": dagster_run_id,
        }
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self._client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        if found:
            return found[0].info.run_id
        run = self._client.create_run(
            self.experiment_id,
            run_name=f"{series} research",
            tags={**tags, "candleflow.git_revision": git_revision()},
        )
        return run.info.run_id

    def finish_run(self, run_id: str, metrics: Mapping[str, float] | None = None) -> None:
        """Log `metrics` (finite ones) on a run and mark it finished."""
        from mlflow.entities import Metric

        now = _now_ms()
        batch = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _finite(v)]
        if batch:
            self._client.log_batch(run_id, metrics=batch)
        self._client.set_terminated(run_id, status="FINISHED")

    def log_bundle_model(
        self, run_id: str, bundle_dir: Path, input_example: pd.DataFrame, *, name: str
    ) -> str:
        """Log the bundle at `bundle_dir` as an MLflow pyfunc model of the run (signature and
        input example from `input_example` bars); returns the logged model's id."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        from infra._mlflow_model import save_bundle_model

        client = self._client
        # Logged-model names refuse '.', ':', '/': candleflow.SPX.1d becomes candleflow-SPX-1d.
        safe = "".join("-" if ch in "/:.%\"'" else ch for ch in name)
        model = client.create_logged_model(
            self.experiment_id, name=safe, source_run_id=run_id, model_type="candleflow-bundle"
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = save_bundle_model(bundle_dir, Path(tmp) / "mlflow_model", input_example)
                client.log_model_artifacts(model.model_id, str(local))
        except Exception:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        return str(model.model_id)

    def register(self, model_name: str, run_id: str, model_id: str | None = None) -> str:
        """Register the run's model as a new version and point `challenger` at it; with
        `model_id` the version is tagged with that logged MLflow model (its source stays the
        run's `model/` bundle, which the live plane downloads)."""
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(model_name)
        except MlflowException:
            self._client.create_registered_model(model_name)
        mv = self._client.create_model_version(
            model_name,
            source=f"runs:/{run_id}/model",
            run_id=run_id,
            tags={LOGGED_MODEL_TAG: model_id} if model_id else None,
        )
        self._client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
        return str(mv.version)

    def alias_version(self, model_name: str, alias: str) -> Any | None:
        """The version behind `alias`, None when the model or the alias does not exist. Any
        other registry failure raises RegistryError: it never reads as "no champion"."""
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if _is_absent(exc):
                return None
            msg = f"model registry: cannot read alias {alias!r} of {model_name!r}: {exc}"
            raise RegistryError(msg) from exc

    def run_metric(self, run_id: str, metric: str) -> float:
        value = self._client.get_run(run_id).data.metrics.get(metric)
        return float("nan") if value is None else float(value)

    def promote(
        self,
        model_name: str,
        challenger_version: str,
        rule: PromotionRule,
        *,
        oos_trades: int,
        require_approval: bool = False,
    ) -> PromotionDecision:
        """Apply the promotion rule and move `champion` when it says so; with
        `require_approval` a winning challenger waits for `approve` (`candleflow promote`).
        A registry failure raises (fails closed): it never promotes by default."""
        client = self._client
        challenger = client.get_model_version(model_name, challenger_version)
        score = self.run_metric(challenger.run_id, rule.metric)
        champion = self.alias_version(model_name, CHAMPION)
        champ_version = None if champion is None else str(champion.version)
        wins = False
        if oos_trades < rule.min_trades:
            reason = f"not promoted: {oos_trades} OOS trades < min_trades {rule.min_trades}"
        elif not _finite(score):
            reason = f"not promoted: {rule.metric} is not a number"
        elif champion is None:
            wins = score > rule.min_metric
            reason = (
                f"promoted: first champion, {rule.metric}={score:.4f} > {rule.min_metric}"
                if wins
                else f"not promoted: {rule.metric}={score:.4f} <= {rule.min_metric}"
            )
        elif champ_version == challenger_version:
            reason = "already champion"
        else:
            champ_score = self.run_metric(champion.run_id, rule.metric)
            wins = not _finite(champ_score) or score > champ_score + rule.min_margin
            reason = (
                f"promoted: {rule.metric} {score:.4f} beats champion v{champ_version} "
                f"{champ_score:.4f} by more than {rule.min_margin}"
                if wins
                else f"not promoted: {rule.metric} {score:.4f} does not beat champion "
                f"v{champ_version} {champ_score:.4f} + {rule.min_margin}"
            )
        if wins and require_approval:
            reason = (
                "awaiting approval: " + reason.removeprefix("promoted: ")
                + "; stays challenger until `candleflow promote`"
            )
            client.set_model_version_tag(model_name, challenger_version, APPROVAL_TAG, "pending")
        elif wins:
            client.set_registered_model_alias(model_name, CHAMPION, challenger_version)
            champ_version = challenger_version
        client.set_model_version_tag(model_name, challenger_version, "promotion", reason)
        logger.info("model %s v%s: %s", model_name, challenger_version, reason)
        return PromotionDecision(
            promoted=reason.startswith("promoted"),
            reason=reason,
            challenger_version=challenger_version,
            champion_version=champ_version,
        )

    def approve(self, model_name: str, version: str | None = None) -> PromotionDecision:
        """A person's approval: make `version` (default: the challenger) the champion."""
        target = self.alias_version(model_name, CHALLENGER) if version is None else (
            self._client.get_model_version(model_name, version)
        )
        if target is None:
            msg = f"registered model {model_name!r} has no challenger to approve"
            raise RegistryError(msg)
        target_version = str(target.version)
        self._client.set_registered_model_alias(model_name, CHAMPION, target_version)
        self._client.set_model_version_tag(model_name, target_version, APPROVAL_TAG, "approved")
        reason = f"promoted: v{target_version} approved by hand"
        self._client.set_model_version_tag(model_name, target_version, "promotion", reason)
        logger.info("model %s v%s: %s", model_name, target_version, reason)
        return PromotionDecision(True, reason, target_version, target_version)

    def download_model(
        self, model_name: str, alias: str, cache_dir: Path
    ) -> tuple[Path, str]:
        """The model directory behind an alias, as (path, version), cached by version.

        Versions are immutable, so cache_dir/<model>/v<version>/model is downloaded once and then
        reused by every caller (live worker, strategy lookup, drift sensor).
        """
        mv = self.alias_version(model_name, alias)
        if mv is None:
            msg = (
                f"registered model {model_name!r} has no {alias!r} alias yet; "
                "run the research pipeline (`make demo`) so a model gets promoted"
            )
            raise LookupError(msg)
        version = str(mv.version)
        home = Path(cache_dir) / model_name / f"v{version}"
        if (home / _COMPLETE).exists():
            return home / "model", version
        home.mkdir(parents=True, exist_ok=True)
        # Download beside the final place, then rename: a crash never leaves half a model.
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            self._mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path="model",
                dst_path=tmp,
                tracking_uri=self.config.tracking_uri,
            )
            shutil.rmtree(home / "model", ignore_errors=True)
            os.replace(Path(tmp) / "model", home / "model")
        (home / _COMPLETE).touch()
        return home / "model", version


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_absent(exc: Any) -> bool:
    """True when MLflow says the registered model or the alias does not exist."""
    code = getattr(exc, "error_code", "")
    text = str(exc)
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text
    )


def choose_deployable(
    scores: Mapping[str, tuple[float, int]], *, min_trades: int, deploy: str = "auto"
) -> tuple[str, str]:
    """The family to deploy and why. `scores` maps each candidate family to its OOS (deflated
    Sharpe, trades) on the series. "auto": the best deflated Sharpe among families with at
    least `min_trades` trades (else the most trades, which the promotion rule then refuses);
    any other `deploy` value names the family."""
    if not scores:
        msg = "no model family can be deployed (the GARCH families cannot run live)"
        raise ValueError(msg)
    if deploy != "auto":
        if deploy not in scores:
            msg = f"deploy = {deploy!r} is not a deployable family here: {', '.join(scores)}"
            raise ValueError(msg)
        dsr, trades = scores[deploy]
        return deploy, f"{deploy}: named by the config (DSR {dsr:.3f}, {trades} OOS trades)"
    ok = {f: s for f, s in scores.items() if s[1] >= min_trades}
    ranked = ", ".join(
        f"{f} {d:.3f}/{t}" for f, (d, t) in sorted(scores.items(), key=lambda kv: -_key(kv[1]))
    )
    if ok:
        best = max(ok, key=lambda f: (_key(ok[f]), -list(scores).index(f)))
        return best, f"{best}: best deflated Sharpe with >= {min_trades} OOS trades ({ranked})"
    best = max(scores, key=lambda f: (scores[f][1], -list(scores).index(f)))
    return best, f"{best}: no family has >= {min_trades} OOS trades; most trades ({ranked})"


def _key(score: tuple[float, int]) -> float:
    dsr = score[0]
    return dsr if _finite(dsr) else float("-inf")


def config_hash(config_json: str) -> str:
    """The hash `infra.config.CandleflowConfig.config_hash` gives the same JSON ("": defaults)."""
    if not config_json:
        from infra.config import CandleflowConfig

        config_json = CandleflowConfig().to_json()
    return hashlib.sha256(config_json.encode()).hexdigest()[:16]


class _ConfigRecordingClient:
    """An MlflowClient whose `create_run` records the resolved config on every new run, so no
    caller (training, deployable model, report) can create a run without it."""

    def __init__(self, client: Any, config_json: str, tags: Mapping[str, str]) -> None:
        self._inner = client
        self._config_json = config_json
        self._tags = tags

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_run(self, experiment_id: str, *args: Any, **kwargs: Any) -> Any:
        import json

        tags = dict(kwargs.pop("tags", None) or {})
        tags.setdefault("candleflow.config_hash", config_hash(self._config_json))
        for key, value in self._tags.items():
            tags.setdefault(key, value)
        run = self._inner.create_run(experiment_id, *args, tags=tags, **kwargs)
        if self._config_json:
            self._inner.log_dict(run.info.run_id, json.loads(self._config_json), "config.json")
        return run


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False

"""The research recipe: which models run, how they are split and labelled, as one typed config.

The Dagster assets call these functions; nothing here knows about Dagster or MLflow. The
deployable family (`DEPLOYABLE`) is trained without the per-fold GARCH feature, so the model the
live plane loads is built from exactly the inputs its walk-forward backtest saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

from ml.bundle import ModelBundle
from ml.errors import ConfigError
from ml.features import FeatureConfig, compute_features, feature_columns
from ml.labels import Labels, direction_labels
from ml.models.base import Model
from ml.walkforward import (
    GARCH_COLUMN,
    Fold,
    OptunaTuner,
    WalkForwardResult,
    run_walk_forward,
    walk_forward_splits,
)

__all__ = [
    "BASELINES",
    "DEPLOYABLE",
    "MODEL_FAMILIES",
    "ResearchConfig",
    "feature_importance",
    "fit_deployable",
    "fit_deployable_on",
    "make_factory",
    "research_folds",
    "research_labels",
    "run_family",
]

DEPLOYABLE = "xgboost"
# family -> (uses the per-fold GARCH volatility feature)
MODEL_FAMILIES: Mapping[str, bool] = {
    "xgboost": False,
    "xgboost_garch": True,
    "lstm": False,
    "meta": False,
}
BASELINES = ("buy_and_hold", "sma_crossover", "flat")


@dataclass(frozen=True)
class ResearchConfig:
    models: tuple[str, ...] = ("xgboost", "xgboost_garch", "lstm", "meta")
    baselines: tuple[str, ...] = BASELINES
    n_folds: int = 5
    oos_fraction: float = 0.5  # share of the usable rows that are out of sample
    horizon: int = 1  # bars a label holds the trade; the purge is this + 1 (next-bar fill)
    embargo: int = 5  # extra bars between training and test (feature memory)
    dead_zone_k: float = 0.25  # flat-label dead zone in units of rolling volatility
    round_trip_cost: float = 0.0006  # log-return cost of a round trip (fees + spread)
    lstm_epochs: int = 6
    lstm_seq_len: int = 16
    xgb_estimators: int = 150
    tune_trials: int = 0  # Optuna trials per fold for the xgboost families (0 = no search)
    seed: int = 0
    # Combinatorial purged CV (ml.cpcv) beside the walk-forward, for these series only (it
    # fits C(N, k) models per family): N groups, k test groups, phi = k/N * C(N, k) paths.
    cpcv_series: tuple[str, ...] = ("SPX@1d",)
    cpcv_families: tuple[str, ...] = ("xgboost", "lstm")  # meta refits both: ~2x the time
    cpcv_groups: int = 6
    cpcv_test_groups: int = 2
    # User feature functions "module:function" (ml.user_features), added to the built-ins in
    # research and live, and the bars the live plane hands each (their longest lookback).
    features: tuple[str, ...] = ()
    feature_window: int = 250

    def __post_init__(self) -> None:
        # A user family is an import path (module:Class); make_factory resolves it.
        unknown = [m for m in self.models if m not in MODEL_FAMILIES and ":" not in m]
        unknown += [b for b in self.baselines if b not in BASELINES]
        unknown += [f for f in self.cpcv_families if f not in MODEL_FAMILIES]
        if unknown:
            msg = f"unknown model families {unknown}; choose from {[*MODEL_FAMILIES, *BASELINES]}"
            raise ConfigError(msg)
        if self.n_folds < 1 or self.horizon < 1 or self.embargo < 0:
            msg = "n_folds and horizon must be >= 1, embargo >= 0"
            raise ConfigError(msg)
        if not (self.cpcv_groups >= 2 and 1 <= self.cpcv_test_groups < self.cpcv_groups):
            msg = (
                "need cpcv_groups >= 2 and 1 <= cpcv_test_groups < cpcv_groups, got "
                f"{self.cpcv_groups}, {self.cpcv_test_groups}"
            )
            raise ConfigError(msg)
        if not 0.05 <= self.oos_fraction <= 0.9:
            msg = f"oos_fraction must be in [0.05, 0.9], got {self.oos_fraction}"
            raise ConfigError(msg)
        if self.feature_window < 2:
            msg = f"feature_window must be >= 2, got {self.feature_window}"
            raise ConfigError(msg)
        self.feature_config  # noqa: B018 - user features are checked at load, not mid-research

    @property
    def feature_config(self) -> FeatureConfig:
        """The feature recipe: the built-ins plus the user feature functions."""
        return FeatureConfig(user_features=self.features, feature_window=self.feature_window)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ResearchConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            msg = f"unknown ResearchConfig keys {unknown}; known: {sorted(names)}"
            raise ConfigError(msg)
        vals = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**vals)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def n_trials(self) -> int:
        """Model families tried, before tuning: the least the deflated Sharpe ratio deflates for
        (each Optuna trial of each fold counts too, see assets._research_core.trial_pool)."""
        return len(self.models)

    @property
    def cpcv_models(self) -> tuple[str, ...]:
        """Families CPCV runs: the cpcv_families among the models, without the per-fold GARCH
        feature (it needs training history before every test row, which CPCV's splits lack)."""
        return tuple(
            m for m in self.cpcv_families if m in self.models and not MODEL_FAMILIES.get(m, False)
        )


def research_labels(
    bars: pd.DataFrame, config: ResearchConfig, fill: str = "next_open"
) -> Labels:
    """Direction labels measured at the prices the backtest fills at (`StrategyConfig.fill`)."""
    return direction_labels(
        bars,
        config.horizon,
        k=config.dead_zone_k,
        round_trip_cost=config.round_trip_cost,
        fill=fill,
    )


def research_folds(features: pd.DataFrame, config: ResearchConfig) -> list[Fold]:
    """Expanding forward-only folds over the last `oos_fraction` of the post-warm-up rows.

    The purge is the label's span plus one bar: a label decided at t fills at t + 1 and reads
    bars up to t + 1 + horizon (research_labels), so no training label reaches a test bar.
    """
    usable = int((~features["warmup"]).sum())
    test_size = max(1, int(usable * config.oos_fraction) // config.n_folds)
    return walk_forward_splits(
        features.index,
        n_folds=config.n_folds,
        test_size=test_size,
        purge=config.horizon + 1,
        embargo=config.embargo,
        min_train_size=50,
    )


def make_factory(family: str, config: ResearchConfig) -> Callable[[dict[str, Any]], Model]:
    """A fresh-model factory for `family`: a built-in name or a user's `module:attribute`."""
    from ml.models import family_factory

    build = family_factory(family)
    return lambda params: build(config, params)


def run_family(
    family: str,
    features: pd.DataFrame,
    labels: Labels,
    folds: list[Fold],
    config: ResearchConfig,
) -> WalkForwardResult:
    """Purged walk-forward of one family: a fresh model per fold, OOS predictions only."""
    tuner = None
    if config.tune_trials > 0 and family in ("xgboost", "xgboost_garch"):
        # Searched on an inner walk-forward of each fold's training rows only, never on OOS rows.
        tuner = OptunaTuner(_xgb_space, n_trials=config.tune_trials, seed=config.seed)
    return run_walk_forward(
        features,
        labels,
        make_factory(family, config),
        folds,
        tuner=tuner,
        garch=MODEL_FAMILIES.get(family, False),
        feature_columns=list(feature_columns(config.feature_config)),
    )


def _xgb_space(trial: Any) -> dict[str, Any]:
    return {
        "max_depth": trial.suggest_int("max_depth", 2, 5),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 10.0, log=True),
    }


def feature_importance(result: WalkForwardResult, columns: list[str]) -> pd.Series | None:
    """Mean gain importance over the fold models of a tree family; None for other families."""
    scores = []
    for model in result.models:
        booster = getattr(model, "booster_", None)
        if booster is None:
            return None
        raw = booster.get_score(importance_type="gain")
        names = [*columns, GARCH_COLUMN]  # run_walk_forward appends the GARCH column last
        named = {
            (names[int(k[1:])] if k.startswith("f") and k[1:].isdigit() else k): v
            for k, v in raw.items()
        }
        scores.append(pd.Series(named, dtype=float))
    if not scores:
        return None
    return pd.concat(scores, axis=1).fillna(0.0).mean(axis=1).sort_values(ascending=False)


def fit_deployable(
    bars: pd.DataFrame,
    config: ResearchConfig,
    feature_config: FeatureConfig | None = None,
    fill: str = "next_open",
) -> ModelBundle:
    """Fit the deployable family on every labelled post-warm-up row: the live model."""
    feature_config = feature_config or config.feature_config
    features = compute_features(bars, feature_config)
    labels = research_labels(bars, config, fill).values
    return fit_deployable_on(features, labels, config, feature_config)


def fit_deployable_on(
    features: pd.DataFrame,
    labels: pd.Series,
    config: ResearchConfig,
    feature_config: FeatureConfig | None = None,
    family: str = DEPLOYABLE,
) -> ModelBundle:
    """fit_deployable from features and labels (-1/0/+1, NaN where none) already computed with
    `feature_config` and `config`, e.g. by the research assets. `family` is the model family
    chosen for deployment (not a GARCH one: the live plane has no per-fold GARCH feature)."""
    if MODEL_FAMILIES.get(family, False):
        msg = f"{family} uses the per-fold GARCH feature and cannot be deployed"
        raise ConfigError(msg)
    feature_config = feature_config or config.feature_config
    cols = list(feature_columns(feature_config))
    rows = (~features["warmup"].to_numpy(dtype=bool)) & labels.notna().to_numpy()
    if int(rows.sum()) < 100:
        msg = f"only {int(rows.sum())} labelled rows past warm-up; need >= 100 to fit a model"
        raise ConfigError(msg)
    model = make_factory(family, config)({})
    index = features.index[rows]
    model.fit(features.loc[index, cols], labels.loc[index])
    return ModelBundle(
        model=model,  # type: ignore[arg-type]
        feature_config=feature_config,
        columns=tuple(cols),
        name=family,
    )

"""The research assets' work, free of Dagster: each function takes plain values and returns plain
values, so the assets stay thin and this module is testable without a Dagster context."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from execution.config import StrategyConfig
from execution.metrics import compute_metrics
from infra.series import SeriesRegistry, SeriesSpec
from infra.tracking import (
    ModelTracker,
    PromotionRule,
    data_fingerprint,
    git_revision,
    registered_model_name,
)
from ml.features import (
    FeatureConfig,
    builtin_feature_columns,
    compute_features,
    feature_columns,
)
from ml.labels import LABEL_PRICES, Labels
from ml.metrics import single_class_warning
from ml.pipeline import (
    BASELINES,
    DEPLOYABLE,
    ResearchConfig,
    feature_importance,
    fit_deployable_on,
    make_factory,
    research_folds,
    research_labels,
    run_family,
)
from ml.walkforward import WalkForwardResult

__all__ = ["ResearchError"]

logger = logging.getLogger(__name__)
Log = Callable[[str], None]
PROBA = ["p_down", "p_flat", "p_up"]


class ResearchError(RuntimeError):
    """A research step cannot run on the data it was given; the message says what to do."""


def fingerprint(bars: pd.DataFrame) -> str:
    cols = ["ts", "open", "high", "low", "close", "volume"]
    return data_fingerprint(bars[cols])


# --- features and labels ---------------------------------------------------------------------


def features_of(bars: pd.DataFrame, cfg: ResearchConfig | None = None) -> pd.DataFrame:
    """The built-in features plus the recipe's user feature functions."""
    return compute_features(bars, _feature_config(cfg))


def _feature_config(cfg: ResearchConfig | None) -> FeatureConfig:
    return cfg.feature_config if cfg is not None else FeatureConfig()


def look_ahead_probe(
    bars: pd.DataFrame,
    feats: pd.DataFrame,
    cuts: int = 3,
    seed: int = 0,
    feature_config: FeatureConfig | None = None,
) -> dict[str, Any]:
    """Recompute features on history truncated at t, and with bars after t perturbed: rows at or
    before t must not change. Run on the real series every time the asset materializes. User
    feature columns are probed too, and also recomputed on the `feature_window` bars ending at t
    (what the live plane hands them): that last row must equal the full history's."""
    fc = feature_config or FeatureConfig()
    n = len(bars)
    cols = list(feature_columns(fc))
    if n < 50:
        return {"passed": True, "cut_points": 0, "note": "fewer than 50 bars; nothing to probe"}
    rng = np.random.default_rng(seed)
    points = sorted({int(x) for x in rng.integers(n // 3, n - 2, size=cuts)})
    worst = 0.0
    for t in points:
        truncated = compute_features(bars.iloc[: t + 1], fc)[cols].to_numpy()
        perturbed_bars = bars.copy()
        scale = rng.uniform(0.5, 1.5, size=n - t - 1)
        for c in ("open", "high", "low", "close"):
            perturbed_bars.iloc[t + 1 :, perturbed_bars.columns.get_loc(c)] *= scale
        perturbed_bars.iloc[t + 1 :, perturbed_bars.columns.get_loc("volume")] *= scale[::-1]
        perturbed = compute_features(perturbed_bars, fc)[cols].to_numpy()[: t + 1]
        full = feats[cols].to_numpy()[: t + 1]
        others = [("truncated", truncated), ("perturbed", perturbed)]
        if fc.user_features:
            from ml.user_features import probe_frame

            user = [c for c in cols if c not in set(builtin_feature_columns(fc))]
            window = bars.iloc[max(0, t + 1 - fc.feature_window) : t + 1]
            live = feats[cols].to_numpy()[: t + 1].copy()
            live[t, [cols.index(c) for c in user]] = probe_frame(window, fc)[user].to_numpy()[-1]
            others.append(("live_window", live))
        for how, other in others:
            differs = ~(
                (np.isnan(full) & np.isnan(other)) | np.isclose(full, other, rtol=0, atol=1e-9)
            )
            if differs.any():
                bad = [cols[j] for j in np.flatnonzero(differs.any(axis=0))][:5]
                at = str(bars["ts"].iloc[t]) if "ts" in bars.columns else str(bars.index[t])
                why = (
                    f"{', '.join(bad)} at or before {at} change when bars after it are "
                    f"{'removed' if how == 'truncated' else 'perturbed'}: look-ahead"
                    if how != "live_window"
                    else f"{', '.join(bad)} at {at} differ on the last feature_window="
                    f"{fc.feature_window} bars: it reads more history than the live plane keeps"
                )
                return {"passed": False, "cut_points": len(points), "failed_at": at,
                        "columns": bad, "reason": why}
            both = ~np.isnan(full) & ~np.isnan(other)
            diff = float(np.abs(full[both] - other[both]).max()) if both.any() else 0.0
            worst = max(worst, diff)
    return {"passed": worst <= 1e-9, "cut_points": len(points), "max_abs_diff": worst}


def labels_of(bars: pd.DataFrame, cfg: ResearchConfig, fill: str = "next_open") -> pd.DataFrame:
    """Labels measured at the prices the series' backtest fills at (StrategyConfig.fill)."""
    lab = research_labels(bars, cfg, fill)
    frame = pd.DataFrame(
        {
            "label": lab.values,
            "forward_return": lab.forward_return,
            "threshold": lab.threshold,
        }
    )
    frame["horizon"] = lab.horizon
    frame["fill"] = lab.fill
    return frame


def label_fill_probe(bars: pd.DataFrame, labels: pd.DataFrame, horizon: int) -> dict[str, Any]:
    """Recompute every forward return from the fill prices it claims, independently of
    ml.labels: a label decided at t with next-open fills must earn open[t+1] -> open[t+1+h]."""
    fill = str(labels["fill"].iloc[0]) if "fill" in labels.columns else "close"
    column, lag = LABEL_PRICES[fill]
    price = pd.Series(bars[column].to_numpy(np.float64), index=labels.index)
    expected = np.log(price.shift(-(lag + horizon)) / price.shift(-lag)).to_numpy()
    got = labels["forward_return"].to_numpy(np.float64)
    same_nan = bool((np.isnan(expected) == np.isnan(got)).all())
    diff = float(np.nanmax(np.abs(expected - got))) if np.isfinite(got).any() else 0.0
    reach = int(labels["horizon"].iloc[0]) if len(labels) else 0
    return {
        "passed": same_nan and diff <= 1e-12 and reach == lag + horizon,
        "fill": fill,
        "max_abs_diff": diff,
        "label_reach_bars": reach,
    }


def _labels_from_frame(frame: pd.DataFrame) -> Labels:
    return Labels(
        values=frame["label"],
        forward_return=frame["forward_return"],
        threshold=frame["threshold"],
        horizon=int(frame["horizon"].iloc[0]),
        kind="direction",
        fill=str(frame["fill"].iloc[0]) if "fill" in frame.columns else "close",
    )


# --- walk-forward ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WalkForwardAll:
    predictions: dict[str, pd.DataFrame]  # family -> p_down, p_flat, p_up, fold, label by ts
    run_ids: dict[str, str]  # family -> MLflow run id
    accuracy: dict[str, float]
    fold_metrics: dict[str, list[dict[str, float]]]
    oos_rows: int
    oos_start: str
    oos_end: str
    single_class: dict[str, str]  # model family -> why it is flagged as a single-class model
    trials: dict[str, int]  # family -> configurations evaluated on data (Optuna trials or 1)
    trading: dict[str, dict[str, float]]  # family -> OOS trading metrics logged to MLflow


def trading_summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The trading numbers of an OOS backtest that a walk-forward MLflow run carries."""
    return {
        "oos_sharpe": float(metrics["sharpe"]),
        "oos_total_return": float(metrics["total_return"]),
        "oos_max_drawdown": float(metrics["max_drawdown"]),
        "oos_trades": float(metrics["n_trades"]),
    }


def families_of(cfg: ResearchConfig) -> list[str]:
    """The families one series' walk-forward fits, in the order their MLflow runs are logged."""
    return [*cfg.models, *cfg.baselines]


def fit_family(
    family: str, features: pd.DataFrame, labels: pd.DataFrame, cfg: ResearchConfig
) -> WalkForwardResult:
    """Purged walk-forward of one family on one series. The families share nothing, so each is
    one step of the walk_forward graph and the executor decides how many run at once."""
    folds = research_folds(features, cfg)
    return run_family(family, features, _labels_from_frame(labels), folds, cfg)


def record_walk_forward(
    spec: SeriesSpec,
    features: pd.DataFrame,
    cfg: ResearchConfig,
    tracker: ModelTracker,
    fitted: Mapping[str, WalkForwardResult],
    *,
    log: Log,
    dagster_run_id: str,
    bars: pd.DataFrame | None = None,
    strategy: StrategyConfig | None = None,
) -> WalkForwardAll:
    """Everything after the fits of one series: one MLflow run per family under one parent run,
    logged in the configured order whatever order the fits finished in, so runs, predictions
    and metrics do not depend on how the executor spread them. With `bars` and `strategy`, each
    family's OOS predictions are also backtested alone on this series and the run logs their
    Sharpe, return, drawdown and trades beside the classification metrics."""
    families = families_of(cfg)
    if sorted(fitted) != sorted(families):
        msg = (
            f"{spec.key}: walk-forward fits of {sorted(fitted)} do not match the configured "
            f"families {families}"
        )
        raise ResearchError(msg)
    fp = data_fingerprint(features.drop(columns=["warmup"]))
    predictions, run_ids, accuracy, fold_metrics = {}, {}, {}, {}
    single_class: dict[str, str] = {}
    trials: dict[str, int] = {}
    trading: dict[str, dict[str, float]] = {}
    parent = tracker.research_run(spec.key, dagster_run_id)
    for i, family in enumerate(families, start=1):
        t0 = datetime.now(UTC)
        result = fitted[family]
        predictions[family] = result.predictions
        importance = feature_importance(result, list(feature_columns(cfg.feature_config)))
        if importance is not None:
            predictions[family].attrs["feature_importance"] = importance.to_dict()
        tuned = [t for t in result.tuning if t is not None]
        # Every Optuna trial of every fold was a configuration evaluated on data.
        trials[family] = sum(t.n_trials for t in tuned) if tuned else 1
        predictions[family].attrs["n_trials"] = trials[family]
        predictions[family].attrs["trial_sharpes"] = [x for t in tuned for x in t.trial_sharpes]
        flag = single_class_warning(result.predictions[PROBA].to_numpy())
        if flag and family not in BASELINES:
            single_class[family] = flag
            log(f"{spec.key} {family}: {flag}")
        summary = {f"oos_{k}": v for k, v in result.overall_metrics.items()}
        summary["n_trials"] = float(trials[family])
        if bars is not None and strategy is not None:
            bt = backtest_series({spec.symbol: bars}, {spec.symbol: result.predictions}, strategy)
            trading[family] = trading_summary(bt["metrics"])
            summary |= trading[family]
        rows = [
            {k: float(v) for k, v in r.items() if isinstance(v, (int, float, np.number))}
            for r in result.fold_metrics.to_dict("records")
        ]
        for row, tuning in zip(rows, result.tuning, strict=True):
            if tuning is not None:
                row["tuning_trials"] = float(tuning.n_trials)  # trials tried in this fold
        fold_metrics[family] = rows
        accuracy[family] = float(result.overall_metrics.get("accuracy", float("nan")))
        with tempfile.TemporaryDirectory() as tmp:
            for fold, model in zip(result.folds, result.models, strict=True):
                model.save(Path(tmp) / f"fold_{fold.fold_id}")
            run_ids[family] = tracker.log_training(
                run_name=f"{spec.key} {family} walk-forward",
                params={
                    "series": spec.key,
                    "family": family,
                    "kind": "baseline" if family in BASELINES else "model",
                    "model_params": json.dumps(result.models[0].params, default=str),
                    **{f"research.{k}": v for k, v in cfg.to_dict().items()},
                },
                fold_metrics=rows,
                summary_metrics=summary,
                model_dir=Path(tmp),
                features=list(feature_columns(cfg.feature_config)),
                fingerprint=fp,
                tags={
                    "candleflow.series": spec.key,
                    "candleflow.family": family,
                    "dagster.run_id": dagster_run_id,
                },
                parent_run_id=parent,
            )
        secs = (datetime.now(UTC) - t0).total_seconds()
        log(
            f"[{i}/{len(families)}] {spec.key} {family}: {len(result.folds)} folds, OOS "
            f"accuracy {accuracy[family]:.3f}, logged in {secs:.1f}s, MLflow run {run_ids[family]}"
        )
    tracker.finish_run(parent, {f"{f}.oos_accuracy": a for f, a in accuracy.items()})
    any_pred = next(iter(predictions.values()))
    return WalkForwardAll(
        predictions=predictions,
        run_ids=run_ids,
        accuracy=accuracy,
        fold_metrics=fold_metrics,
        oos_rows=len(any_pred),
        oos_start=str(any_pred.index[0]),
        oos_end=str(any_pred.index[-1]),
        single_class=single_class,
        trials=trials,
        trading=trading,
    )


POOLED_PREFIX = "pooled_"  # the portfolio strategy of a pooled family: "pooled_xgboost"


def pooled_name(family: str) -> str:
    """The strategy name the portfolio report gives the pooled model of `family`."""
    return f"{POOLED_PREFIX}{family}"


def pooled_of(
    features: Mapping[str, pd.DataFrame],
    labels: Mapping[str, pd.DataFrame],
    cfg: ResearchConfig,
    tracker: ModelTracker,
    *,
    dagster_run_id: str,
    versions: Mapping[str, str | None] | None = None,
    log: Log = logger.info,
) -> dict[str, Any]:
    """Timeframe -> the pooled walk-forward of the deployable family over that timeframe's
    series: one model per fold for all of them (ml.pooled), predictions per series, and one
    MLflow run per timeframe (parameters, per-fold metrics as steps, the fold models).
    `versions` (series -> the data version its features were computed on) travels with the
    predictions so the portfolio trades them only beside the same bars."""
    from infra.series import parse_series_key
    from ml.pooled import run_pooled_walk_forward

    by_tf: dict[str, list[str]] = {}
    for key in sorted(features):
        by_tf.setdefault(parse_series_key(key)[1], []).append(key)
    columns = list(feature_columns(cfg.feature_config))
    out = {}
    for tf, keys in by_tf.items():
        t0 = datetime.now(UTC)
        labs = {k: _labels_from_frame(labels[k]) for k in keys}
        result = run_pooled_walk_forward(
            {k: features[k] for k in keys},
            labs,
            make_factory(DEPLOYABLE, cfg),
            n_folds=cfg.n_folds,
            purge=max(cfg.horizon + 1, *(lab.horizon for lab in labs.values())),
            embargo=cfg.embargo,
            oos_fraction=cfg.oos_fraction,
            feature_columns=columns,
        )
        rows = [
            {k: float(v) for k, v in r.items() if isinstance(v, (int, float, np.number))}
            for r in result.fold_metrics.to_dict("records")
        ]
        strategy = pooled_name(DEPLOYABLE)
        fp = data_fingerprint(
            pd.DataFrame({"fingerprint": [
                data_fingerprint(features[k].drop(columns=["warmup"])) for k in keys
            ]}, index=keys)
        )
        with tempfile.TemporaryDirectory() as tmp:
            for fold, model in zip(result.folds, result.models, strict=True):
                model.save(Path(tmp) / "model" / f"fold_{fold.fold_id}")
            (Path(tmp) / "series.json").write_text(json.dumps(keys))
            run_id = tracker.log_training(
                run_name=f"pooled {tf} {DEPLOYABLE} walk-forward",
                params={
                    "timeframe": tf,
                    "family": DEPLOYABLE,
                    "kind": "pooled",
                    "n_series": len(keys),
                    "model_params": json.dumps(result.models[0].params, default=str),
                    **{f"research.{k}": v for k, v in cfg.to_dict().items()},
                },
                fold_metrics=rows,
                summary_metrics={
                    **{f"oos_{k}": v for k, v in result.overall_metrics.items()},
                    "n_trials": 1.0,
                    "fits": float(len(result.models)),
                },
                model_dir=Path(tmp) / "model",
                features=columns,
                fingerprint=fp,
                tags={
                    "candleflow.role": "pooled",
                    "candleflow.timeframe": tf,
                    "candleflow.family": DEPLOYABLE,
                    "dagster.run_id": dagster_run_id,
                },
                artifacts={"pooled": Path(tmp) / "series.json"},
            )
        secs = (datetime.now(UTC) - t0).total_seconds()
        log(f"pooled {tf} {DEPLOYABLE}: {len(result.models)} fits over {len(keys)} series, "
            f"{secs:.1f}s, MLflow run {run_id}")
        out[tf] = {
            "family": DEPLOYABLE,
            "strategy": strategy,
            "series": keys,
            "fits": len(result.models),
            "predictions": result.predictions,
            "overall_metrics": result.overall_metrics,
            "fold_metrics": rows,
            "mlflow_run": run_id,
            "data_versions": {k: (versions or {}).get(k) for k in result.predictions},
        }
    return out


# --- combinatorial purged cross-validation ---------------------------------------------------


def cpcv_of(
    spec: SeriesSpec,
    bars: pd.DataFrame,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    cfg: ResearchConfig,
    strategy: StrategyConfig,
    *,
    log: Log,
) -> dict[str, Any]:
    """CPCV of the series' GARCH-free model families: the phi backtest paths of each family
    through the strategy's own rules, each path's metrics, and PBO by CSCV over the families'
    path returns (each family's paths laid end to end, one column per family)."""
    from execution.metrics import pbo_with_reason
    from ml.cpcv import cpcv_path_count, run_cpcv

    t0 = datetime.now(UTC)
    lab = _labels_from_frame(labels)
    cols = list(feature_columns(cfg.feature_config))
    rows, returns = [], {}
    for family in cfg.cpcv_models:
        t1 = datetime.now(UTC)
        result = run_cpcv(
            features,
            lab,
            make_factory(family, cfg),
            n_groups=cfg.cpcv_groups,
            n_test_groups=cfg.cpcv_test_groups,
            embargo=cfg.embargo,
            feature_columns=cols,
        )
        path_returns = []
        for number, path in enumerate(result.paths):
            bt = backtest_series({spec.symbol: bars}, {spec.symbol: path}, strategy)
            m = bt["metrics"]
            rows.append(
                {
                    "series": spec.key,
                    "family": family,
                    "path": number,
                    "sharpe": m["sharpe"],
                    "total_return": m["total_return"],
                    "max_drawdown": m["max_drawdown"],
                    "n_trades": m["n_trades"],
                }
            )
            path_returns.append(bt["equity"].pct_change().iloc[1:].fillna(0.0).to_numpy())
        returns[family] = np.concatenate(path_returns)
        sharpes = [r["sharpe"] for r in rows if r["family"] == family]
        log(
            f"CPCV {spec.key} {family}: {len(result.splits)} splits, {len(result.paths)} paths, "
            f"path Sharpe {np.nanmin(sharpes):.2f} .. {np.nanmax(sharpes):.2f}, "
            f"{(datetime.now(UTC) - t1).total_seconds():.1f}s"
        )
    if returns:
        length = min(len(r) for r in returns.values())
        matrix = np.column_stack([r[:length] for r in returns.values()])
        pbo, why = pbo_with_reason(matrix, 16)
    else:
        pbo, why = float("nan"), "no GARCH-free model family to run"
    return {
        "series": spec.key,
        "paths": pd.DataFrame(rows),
        "families": list(cfg.cpcv_models),
        "n_groups": cfg.cpcv_groups,
        "n_test_groups": cfg.cpcv_test_groups,
        "n_splits": math.comb(cfg.cpcv_groups, cfg.cpcv_test_groups),
        "n_paths": cpcv_path_count(cfg.cpcv_groups, cfg.cpcv_test_groups),
        "pbo": pbo,
        "pbo_note": why,
        "seconds": (datetime.now(UTC) - t0).total_seconds(),
    }


def cpcv_spread(entry: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Family -> min / median / max / std of its path Sharpe ratios."""
    paths = entry["paths"]
    if paths.empty:
        return {}
    grouped = paths.groupby("family", sort=False)["sharpe"]
    return {
        str(f): {
            "min": float(g.min()),
            "median": float(g.median()),
            "max": float(g.max()),
            "std": float(g.std(ddof=1)),
            "paths": float(len(g)),
        }
        for f, g in grouped
    }


# --- backtests -------------------------------------------------------------------------------


def _prediction_frame(symbol: str, pred: pd.DataFrame) -> pd.DataFrame:
    out = pred[PROBA].copy()
    out.insert(0, "ts", pred.index)
    out.insert(0, "symbol", symbol)
    return out.reset_index(drop=True)


def backtest_series(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    preds_by_symbol: Mapping[str, pd.DataFrame],
    config: StrategyConfig,
) -> dict[str, Any]:
    """Backtest and score OOS predictions as a single configuration (n_trials 1)."""
    res = _run_series(bars_by_symbol, preds_by_symbol, config)
    return with_trials(res, config, n_trials=1, trial_returns=None)


def _run_series(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    preds_by_symbol: Mapping[str, pd.DataFrame],
    config: StrategyConfig,
) -> dict[str, Any]:
    """Backtest OOS predictions of one or several symbols sharing one cash balance; no metrics
    yet (they depend on how many configurations were tried, see with_trials)."""
    from execution.backtest import run_backtest

    frames, preds = [], []
    for symbol, pred in preds_by_symbol.items():
        if pred.empty:
            continue
        bars = bars_by_symbol[symbol]
        frames.append(bars[bars["ts"] >= pred.index[0]])
        preds.append(_prediction_frame(symbol, pred))
    if not frames:
        msg = "no OOS predictions to backtest"
        raise ResearchError(msg)
    bars_all = pd.concat(frames, ignore_index=True)
    pred_all = pd.concat(preds, ignore_index=True)
    result = run_backtest(bars_all, pred_all, config)
    fills = result.fills
    positions = result.positions
    return {
        "equity": result.equity,
        "trades": result.trades,
        "turnover_notional": float((fills["quantity"] * fills["price"]).abs().sum())
        if len(fills)
        else 0.0,
        "costs_paid": _costs_paid(result),
        "fills": fills,
        "orders": result.orders,
        "exposure": result.exposure,
        "unrealized": float(positions["unrealized_pnl"].sum()) if len(positions) else 0.0,
    }


def with_trials(
    res: dict[str, Any],
    config: StrategyConfig,
    *,
    n_trials: int,
    trial_returns: pd.DataFrame | None,
    trial_sharpes: list[float] | None = None,
) -> dict[str, Any]:
    """`res` with its metrics computed for `n_trials` configurations tried (DSR, PBO)."""
    res["metrics"] = compute_metrics(
        res["equity"],
        res["trades"],
        periods_per_year=config.periods_per_year,
        exposure=res["exposure"],
        turnover_notional=res["turnover_notional"],
        costs_paid=res["costs_paid"],
        n_trials=n_trials,
        trial_returns=trial_returns,
        trial_sharpes=trial_sharpes,
    ).to_dict()
    return res


def _costs_paid(result: Any) -> float:
    """Commissions plus spread and slippage (a fill's slippage_cost holds both)."""
    fills = result.fills
    return float(fills["commission"].sum() + fills["slippage_cost"].sum()) if len(fills) else 0.0


def register_deployable(
    spec: SeriesSpec,
    bars: pd.DataFrame,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    oos_predictions: Mapping[str, pd.DataFrame],
    cfg: ResearchConfig,
    strategy: StrategyConfig,
    tracker: ModelTracker,
    rule: PromotionRule | None = None,
    *,
    dagster_run_id: str | None = None,
    family: str = DEPLOYABLE,
    choice: str = "",
    require_approval: bool = False,
) -> dict[str, Any]:
    """Fit the live model (`family`, chosen by `choose_deployable` for the reason `choice`) on
    all history, register it as challenger, apply the promotion rule with that family's own
    out-of-sample backtest on this series."""
    rule = rule or PromotionRule()
    oos = backtest_series(
        {spec.symbol: bars}, {spec.symbol: oos_predictions[family]}, strategy
    )
    m = oos["metrics"]
    bundle = fit_deployable_on(features, labels["label"], cfg, family=family)
    model_name = registered_model_name(spec.symbol, spec.timeframe)
    oos_frame = oos_predictions[family]
    labelled = oos_frame[oos_frame["label"].notna()]
    hits = (labelled[PROBA].to_numpy().argmax(axis=1) - 1) == labelled["label"].to_numpy()
    oos_accuracy = float(hits.mean()) if len(labelled) else float("nan")
    parent = tracker.research_run(spec.key, dagster_run_id) if dagster_run_id else None
    with tempfile.TemporaryDirectory() as tmp:
        bundle.save(Path(tmp))
        (Path(tmp) / "strategy.json").write_text(json.dumps(strategy.to_dict(), indent=2))
        # The drift sensor compares live predictions with these, and live hit rate with the
        # walk-forward accuracy: both travel with the model version.
        oos_frame.to_parquet(Path(tmp) / "oos_predictions.parquet")
        run_id = tracker.log_training(
            run_name=f"{spec.key} {family} deployable",
            params={"series": spec.key, "family": family, **bundle.model.params},
            fold_metrics=[],
            summary_metrics={
                "oos_sharpe": m["sharpe"],
                "oos_trades": m["n_trades"],
                "oos_total_return": m["total_return"],
                "oos_max_drawdown": m["max_drawdown"],
                "oos_accuracy": oos_accuracy,
            },
            model_dir=Path(tmp),
            features=list(bundle.columns),
            fingerprint=fingerprint(bars),
            tags={
                "candleflow.series": spec.key,
                "candleflow.role": "deployable",
                "candleflow.train_end": bars["ts"].iloc[-1].isoformat(),
                **({"dagster.run_id": dagster_run_id} if dagster_run_id else {}),
                "candleflow.family": family,
                "candleflow.family_choice": choice[:5000],
            },
            parent_run_id=parent,
        )
        if parent:
            tracker.finish_run(parent)
        example = bars[["ts", "open", "high", "low", "close", "volume"]].tail(bundle.history + 5)
        model_id = tracker.log_bundle_model(
            run_id, Path(tmp), example.reset_index(drop=True), name=model_name
        )
    version = tracker.register(model_name, run_id, model_id=model_id)
    decision = tracker.promote(
        model_name, version, rule, oos_trades=int(m["n_trades"]),
        require_approval=require_approval,
    )
    return {
        "family": family,
        "model_name": model_name,
        "version": version,
        "champion_version": decision.champion_version,
        "decision": decision.reason,
        "oos_sharpe": float(m["sharpe"]),
        "oos_trades": int(m["n_trades"]),
        "run_id": run_id,
    }


# The two benchmarks beside every table; the names say which is which.
BUY_AND_HOLD = "buy_and_hold"  # fully invested, no risk rules, costs once in and once out
ALWAYS_LONG = "always_long"  # the always-long signal through the strategy's risk rules
BENCHMARK_DESCRIPTIONS = {
    BUY_AND_HOLD: "buy and hold: fully invested from the first fill, no sizing, stops or risk "
    "rules, costs paid once in and once out",
    ALWAYS_LONG: "always-long signal traded through the strategy's sizing, stops, risk rules "
    "and costs (not buy and hold)",
}
_ALWAYS_LONG_FAMILY = "buy_and_hold"  # the ml baseline that always predicts up


def _buy_and_hold_series(
    bars_by_symbol: Mapping[str, pd.DataFrame], start: pd.Timestamp, config: StrategyConfig
) -> dict[str, Any]:
    """True buy and hold of the portfolio's symbols over the OOS period, shaped like _run_series."""
    from execution.benchmark import buy_and_hold

    frames = [b[b["ts"] >= start] for b in bars_by_symbol.values()]
    res = buy_and_hold(pd.concat(frames, ignore_index=True), config)
    return {
        "equity": res.equity,
        "trades": res.trades,
        "turnover_notional": res.turnover_notional,
        "costs_paid": res.costs_paid,
        "fills": pd.DataFrame(),
        "orders": pd.DataFrame(),
        "exposure": res.exposure,
        "unrealized": 0.0,
    }


def _always_long_predictions(pred: pd.DataFrame) -> pd.DataFrame:
    """The always-up baseline's probabilities (BuyAndHoldModel's) on the rows of `pred`."""
    from ml.models import BuyAndHoldModel

    up = BuyAndHoldModel().confidence
    rest = (1.0 - up) / 2.0
    return pd.DataFrame({"p_down": rest, "p_flat": rest, "p_up": up}, index=pred.index)


def trial_pool(
    oos_predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    keys: list[str],
    models: tuple[str, ...],
    model_returns: pd.DataFrame,
) -> tuple[list[float], dict[str, int]]:
    """Per-bar Sharpe ratios of every configuration evaluated on data, and the count per family.

    An untuned family is one configuration: its OOS portfolio returns give its Sharpe ratio. A
    tuned family contributes every Optuna trial of every fold of every series (each scored as a
    trading signal on its inner folds); the configurations it finally traded are among them.
    """
    from execution.metrics import sharpe_ratio

    pool: list[float] = []
    counts: dict[str, int] = {}
    for family in models:
        tuned = [
            float(x)
            for key in keys
            if family in oos_predictions[key]
            for x in oos_predictions[key][family].attrs.get("trial_sharpes", [])
        ]
        if tuned:
            pool.extend(tuned)
        else:
            pool.append(sharpe_ratio(model_returns[family].to_numpy(), 1.0))
        counts[family] = len(tuned) or 1
    return pool, counts


def deployable_scores(
    spec: SeriesSpec,
    bars: pd.DataFrame,
    oos_predictions: Mapping[str, pd.DataFrame],
    cfg: ResearchConfig,
    strategy: StrategyConfig,
) -> dict[str, tuple[float, int]]:
    """(deflated Sharpe, OOS trades) on this series of every family the live plane can run,
    deflated for all the families tried: what `choose_deployable` ranks."""
    from ml.pipeline import MODEL_FAMILIES

    families = [f for f in cfg.models if f in oos_predictions]
    results = {
        f: _run_series({spec.symbol: bars}, {spec.symbol: oos_predictions[f]}, strategy)
        for f in families
    }
    # Deflated exactly as the portfolio tables are: by every configuration tried.
    rets = pd.DataFrame(
        {f: results[f]["equity"].pct_change() for f in families}
    ).iloc[1:].fillna(0.0)
    pool, _ = trial_pool({spec.key: oos_predictions}, [spec.key], tuple(families), rets)
    out = {}
    for family in families:
        if MODEL_FAMILIES.get(family, False):
            continue
        m = with_trials(
            results[family], strategy, n_trials=len(pool), trial_returns=rets, trial_sharpes=pool
        )["metrics"]
        out[family] = (float(m["deflated_sharpe"]), int(m["n_trades"]))
    return out


def portfolio_backtests(
    oos_predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    registry: SeriesRegistry,
    store: Any,
    research: Any,
    *,
    log: Log,
    pooled_left_out: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """One shared-cash portfolio per timeframe, for every family, baseline and benchmark, and
    for each pooled model (a `pooled_<family>` entry in the predictions, see pooled_of). A pooled
    model is a model like the others (its trial counted in the DSR, its returns in the PBO); it
    trades the series that have its predictions, and its row warns of each one that does not
    (`pooled_left_out`: strategy -> series -> why, else "no pooled predictions")."""
    cfg: ResearchConfig = research.config()
    # The family whose OOS rows date the portfolio (every family has the same rows).
    ref = DEPLOYABLE if DEPLOYABLE in cfg.models else [*cfg.models, *cfg.baselines][0]
    groups: dict[str, list[SeriesSpec]] = {}
    for key in sorted(oos_predictions):
        spec = registry.get(key)
        groups.setdefault(spec.timeframe, []).append(spec)
    books: dict[str, Any] = {}
    for tf, specs in groups.items():
        bars = {s.symbol: store.read_bars(s.symbol, s.timeframe) for s in specs}
        strategy = research.strategy(specs[0])
        keys = [s.key for s in specs]
        pooled = sorted(
            {f for s in specs for f in oos_predictions[s.key] if f.startswith(POOLED_PREFIX)}
        )
        models = (*cfg.models, *pooled)
        results: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for family in [*models, *cfg.baselines]:
            if family == _ALWAYS_LONG_FAMILY:
                continue
            preds = {
                s.symbol: oos_predictions[s.key][family]
                for s in specs
                if family in oos_predictions[s.key]
            }
            results[family] = _run_series(bars, preds, strategy)
            kinds[family] = "baseline" if family in BASELINES else "model"
            log(f"portfolio {tf} {family}: {len(results[family]['trades'])} trades")
        first = min(oos_predictions[s.key][ref].index[0] for s in specs)
        last = max(oos_predictions[s.key][ref].index[-1] for s in specs)
        long_preds = {
            s.symbol: _always_long_predictions(oos_predictions[s.key][ref]) for s in specs
        }
        results[ALWAYS_LONG] = _run_series(bars, long_preds, strategy)
        results[BUY_AND_HOLD] = _buy_and_hold_series(bars, first, strategy)
        kinds[ALWAYS_LONG] = kinds[BUY_AND_HOLD] = "benchmark"
        # Deflate every model's Sharpe by every configuration evaluated on data; PBO (CSCV)
        # across the model families. Degenerate cases (a family that never trades, fewer than
        # two that do) give NaN with a reason in the metrics' notes, never an exception.
        rets = pd.DataFrame(
            {f: results[f]["equity"].pct_change() for f in models}
        ).iloc[1:].fillna(0.0)
        pool, trial_counts = trial_pool(oos_predictions, keys, models, rets)
        for name in results:
            model = name in models
            with_trials(
                results[name],
                strategy,
                n_trials=len(pool) if model else 1,
                trial_returns=rets if model else None,
                trial_sharpes=pool if model else None,
            )
        warnings = _warnings_by_family(oos_predictions, specs, models)
        for name, lines in _pooled_warnings(
            oos_predictions, specs, pooled, pooled_left_out or {}
        ).items():
            warnings.setdefault(name, []).extend(lines)
        books[tf] = {
            "series": keys,
            "strategies": results,
            "kinds": kinds,
            "descriptions": BENCHMARK_DESCRIPTIONS
            | {p: _pooled_description(p, oos_predictions, specs) for p in pooled},
            "trials": trial_counts,
            "warnings": warnings,
            "strategy_config": strategy.to_dict(),
            "research_config": cfg.to_dict(),
            "oos_start": str(first),
            "oos_end": str(last),
            "fingerprint": fingerprint(pd.concat(list(bars.values()))),
            "folds": [row for s in specs for row in _fold_rows(s, oos_predictions[s.key], cfg)],
            # Deployable family's gain importance per series, each the mean over its fold models.
            "feature_importance": {
                s.key: dict(oos_predictions[s.key][ref].attrs["feature_importance"])
                for s in specs
                if oos_predictions[s.key][ref].attrs.get("feature_importance")
            },
            "importance_model": ref,
            "prices": {s.symbol: _close_between(bars[s.symbol], first, last) for s in specs},
        }
    return books


def _close_between(bars: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp) -> pd.Series:
    inside = bars[(bars["ts"] >= first) & (bars["ts"] <= last)]
    return pd.Series(
        inside["close"].to_numpy(dtype=float), index=pd.DatetimeIndex(inside["ts"]), name="close"
    )


def _fold_rows(
    spec: SeriesSpec, predictions: Mapping[str, pd.DataFrame], cfg: ResearchConfig
) -> list[dict[str, Any]]:
    """Per walk-forward fold of one series: its OOS window and each model's hit rate there."""
    rows = []
    ref = DEPLOYABLE if DEPLOYABLE in predictions else next(iter(predictions))
    for fold, part in predictions[ref].groupby("fold", sort=True):
        row: dict[str, Any] = {
            "series": spec.key,
            "symbol": spec.symbol,
            "fold": int(fold),
            "start": part.index[0],
            "end": part.index[-1],
            "rows": len(part),
        }
        for family in cfg.models:
            pred = predictions[family]
            labelled = pred[(pred["fold"] == fold) & pred["label"].notna()]
            hits = (labelled[PROBA].to_numpy().argmax(axis=1) - 1) == labelled["label"].to_numpy()
            row[f"accuracy {family}"] = float(hits.mean()) if len(labelled) else float("nan")
        rows.append(row)
    return rows


def _warnings_by_family(
    oos_predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    specs: list[SeriesSpec],
    models: tuple[str, ...],
) -> dict[str, list[str]]:
    """Model family -> one line per series on which it collapsed onto a single class."""
    out: dict[str, list[str]] = {}
    for family in models:
        for spec in specs:
            if family not in oos_predictions[spec.key]:
                continue
            flag = single_class_warning(oos_predictions[spec.key][family][PROBA].to_numpy())
            if flag:
                out.setdefault(family, []).append(f"{spec.key}: {flag}")
    return out


def _pooled_warnings(
    oos_predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    specs: list[SeriesSpec],
    pooled: list[str],
    left_out: Mapping[str, Mapping[str, str]],
) -> dict[str, list[str]]:
    """Pooled strategy -> one line per series of the portfolio it does not trade, and why."""
    from execution.report import left_out_warning

    out: dict[str, list[str]] = {}
    for name in pooled:
        why = left_out.get(name, {})
        missing = [s.key for s in specs if name not in oos_predictions[s.key]]
        if missing:
            out[name] = [
                left_out_warning(k, why.get(k, "no pooled predictions")) for k in missing
            ]
    return out


def _pooled_description(
    name: str, oos_predictions: Mapping[str, Mapping[str, pd.DataFrame]], specs: list[SeriesSpec]
) -> str:
    traded = [s.key for s in specs if name in oos_predictions[s.key]]
    family = name.removeprefix(POOLED_PREFIX)
    return (
        f"pooled {family}: one model per walk-forward fold trained across {len(traded)} series "
        f"({', '.join(traded)}) on their shared time axis, traded through the same rules"
    )


def consistency(books: Mapping[str, Any]) -> list[str]:
    """Violations of metric identities; an empty list means every book is consistent."""
    bad = []
    for tf, book in books.items():
        for name, res in book["strategies"].items():
            m, trades = res["metrics"], res["trades"]
            pnl = float(trades["pnl"].sum()) if len(trades) else 0.0
            pf = m["profit_factor"]
            if len(trades) and np.isfinite(pf) and (pf > 1) != (pnl > 0):
                bad.append(f"{tf}/{name}: profit factor {pf:.4f} vs summed P&L {pnl:.2f}")
            eq = res["equity"]
            start = float(book["strategy_config"]["initial_cash"])
            unreal = res["unrealized"]
            if np.isfinite(unreal):
                gap = abs(float(eq.iloc[-1]) - (start + pnl + unreal))
                if gap > 1e-6 * max(1.0, start):
                    bad.append(f"{tf}/{name}: equity does not reconcile (gap {gap:.6f})")
    return bad


def too_few_trades(books: Mapping[str, Any], min_trades: int) -> list[str]:
    return [
        f"{tf}/{name}: {res['metrics']['n_trades']} trades"
        for tf, book in books.items()
        for name, res in book["strategies"].items()
        if book["kinds"][name] == "model" and res["metrics"]["n_trades"] < min_trades
    ]


def portfolio_overview(books: Mapping[str, Any]) -> dict[str, Any]:
    return {
        tf: {
            name: {
                k: _num(res["metrics"][k])
                for k in ("annual_return", "sharpe", "deflated_sharpe", "max_drawdown", "n_trades")
            }
            for name, res in book["strategies"].items()
        }
        for tf, book in books.items()
    }


def _pbo_text(entry: Mapping[str, Any]) -> str:
    pbo = entry["pbo"]
    return f"{pbo:.1%}" if np.isfinite(pbo) else f"n/a ({entry['pbo_note']})"


SCORECARD_FIELDS = {
    "sharpe": "sharpe",
    "deflated_sharpe": "deflated_sharpe",
    "total_return": "total_return",
    "max_drawdown": "max_drawdown",
    "n_trades": "n_trades",
}


def series_scorecard(
    spec: SeriesSpec,
    bars: pd.DataFrame,
    predictions: Mapping[str, pd.DataFrame],
    cfg: ResearchConfig,
    strategy: StrategyConfig,
) -> dict[str, dict[str, float]]:
    """Each family's OOS predictions on this one series, backtested alone: Sharpe, DSR (models
    deflated by the trials tried), return, drawdown and trades, the numbers a run's metadata
    carries so Dagster can chart them across materializations."""
    results = {
        f: _run_series({spec.symbol: bars}, {spec.symbol: p}, strategy)
        for f, p in predictions.items()
    }
    models = tuple(f for f in cfg.models if f in results)
    rets = (
        pd.DataFrame({f: results[f]["equity"].pct_change() for f in models}).iloc[1:].fillna(0.0)
    )
    pool, _ = trial_pool({spec.key: predictions}, [spec.key], models, rets)
    card = {}
    for family, res in results.items():
        model = family in models
        with_trials(
            res,
            strategy,
            n_trials=len(pool) if model else 1,
            trial_returns=rets if model else None,
            trial_sharpes=pool if model else None,
        )
        card[family] = {k: float(res["metrics"][v]) for k, v in SCORECARD_FIELDS.items()}
    return card


def numeric_metadata(card: Mapping[str, Mapping[str, float]], prefix: str = "") -> dict[str, float]:
    """Flat `<prefix><family>.<metric>` floats, finite ones only (Dagster plots floats)."""
    return {
        f"{prefix}{family}.{name}": float(value)
        for family, metrics in card.items()
        for name, value in metrics.items()
        if np.isfinite(value)
    }


def markdown_table(card: Mapping[str, Mapping[str, float]], kinds: Mapping[str, str]) -> str:
    """One row per family: the scorecard as a Markdown table for the asset's metadata."""
    head = "| family | kind | Sharpe | DSR | total return | max drawdown | trades |"
    rows = [head, "|---|---|---:|---:|---:|---:|---:|"]

    def cell(value: float, fmt: str) -> str:
        return "n/a" if not np.isfinite(value) else format(value, fmt)

    for family, m in card.items():
        rows.append(
            f"| {family} | {kinds.get(family, '')} | {cell(m['sharpe'], '.2f')} | "
            f"{cell(m['deflated_sharpe'], '.3f')} | {cell(m['total_return'], '.2%')} | "
            f"{cell(m['max_drawdown'], '.2%')} | {cell(m['n_trades'], '.0f')} |"
        )
    return "\n".join(rows)


def portfolio_scorecards(books: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """timeframe -> family -> the scorecard fields of the portfolio backtest."""
    return {
        tf: {
            name: {k: float(res["metrics"][v]) for k, v in SCORECARD_FIELDS.items()}
            for name, res in book["strategies"].items()
        }
        for tf, book in books.items()
    }


def _num(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


# --- reports ---------------------------------------------------------------------------------

RESULT_FIELDS = {
    "ann_return": "annual_return",
    "sharpe": "sharpe",
    "deflated_sharpe": "deflated_sharpe",
    "sortino": "sortino",
    "max_drawdown": "max_drawdown",
    "n_trades": "n_trades",
    "win_rate": "win_rate",
    "profit_factor": "profit_factor",
    "n_trials": "n_trials",
    "pbo": "pbo",
}


def result_rows(book: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The results.json row of each strategy of one portfolio book (its metrics, rounded the
    way the report shows them, and its notes)."""
    descriptions = book.get("descriptions", {})
    warnings = book.get("warnings", {})
    rows = []
    for name, res in book["strategies"].items():
        m = res["metrics"]
        row: dict[str, Any] = {"strategy": name, "kind": book["kinds"][name]}
        row |= {k: _num(m[v]) for k, v in RESULT_FIELDS.items()}
        row["min_trl_years"] = _num(m["min_track_record_length"] / m["periods_per_year"])
        row["track_years"] = _num((m["n_bars"] - 1) / m["periods_per_year"])
        if name in descriptions:
            row["description"] = descriptions[name]
        if warnings.get(name):
            row["warnings"] = list(warnings[name])
        if m.get("notes"):
            row["na_reasons"] = dict(m["notes"])
        rows.append(row)
    return rows


def write_reports(
    books: Mapping[str, Any],
    reports_dir: Path,
    tracker: ModelTracker,
    *,
    dagster_run_id: str,
    cpcv: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Render one HTML report + JSON summary per portfolio; log both to MLflow. `cpcv` maps a
    series key to its cpcv_of result; a portfolio shows those of its series."""
    from execution.metrics import Metrics
    from execution.report import (
        ReportInput,
        ReportMetadata,
        StrategyKind,
        StrategyResult,
        render_report,
        write_summary_json,
    )

    paths: dict[str, str] = {}
    now = datetime.now(UTC)
    for tf, book in books.items():
        out_dir = Path(reports_dir) / f"portfolio_{tf}"
        descriptions = book.get("descriptions", {})
        warnings = book.get("warnings", {})
        strategies = {
            name: StrategyResult(
                equity=res["equity"],
                metrics=Metrics.from_dict(res["metrics"]),
                trades=res["trades"],
                kind=StrategyKind(book["kinds"][name]),
                description=descriptions.get(name, ""),
                warnings=tuple(warnings.get(name, ())),
                exposure=res.get("exposure"),
            )
            for name, res in book["strategies"].items()
        }
        run_id = tracker.client.create_run(
            tracker.experiment_id,
            run_name=f"portfolio {tf} report",
            tags={"candleflow.role": "report", "dagster.run_id": dagster_run_id},
        ).info.run_id
        meta = ReportMetadata(
            generated_at=now,
            data_fingerprint=book["fingerprint"],
            git_rev=git_revision(),
            mlflow_run_ids={"report": run_id},
            config={"strategy": book["strategy_config"], "research": book["research_config"]},
        )
        folds = pd.DataFrame(book["folds"]).set_index("series")
        importance = pd.DataFrame(book["feature_importance"], dtype=float)
        n_folds = book["research_config"]["n_folds"]
        mine = [v for k, v in (cpcv or {}).items() if k in book["series"]]
        cpcv_paths = pd.concat([v["paths"] for v in mine], ignore_index=True) if mine else None
        cpcv_info = {
            f"{v['series']}": f"N={v['n_groups']} groups, k={v['n_test_groups']} test groups, "
            f"{v['n_splits']} splits, phi={v['n_paths']} paths per family, PBO (CSCV over path "
            f"returns) {_pbo_text(v)}, {v['seconds']:.0f}s"
            for v in mine
        }
        report = ReportInput(
            cpcv_paths=cpcv_paths,
            cpcv_summary=cpcv_info,
            title=f"candleflow walk-forward backtest: {tf} portfolio of "
            + ", ".join(book["series"]),
            strategies=strategies,
            metadata=meta,
            benchmark="buy_and_hold" if "buy_and_hold" in strategies else next(iter(strategies)),
            folds=folds,
            feature_importance=importance if not importance.empty else None,
            importance_title=f"{book['importance_model']} gain importance, one bar per series "
            f"({', '.join(importance.columns)}), each the mean over its {n_folds} walk-forward "
            "fold models (folds 0 to "
            f"{n_folds - 1}); top 15 features by the mean over series.",
            prices=book["prices"],
            primary=book["importance_model"] if book["importance_model"] in strategies else None,
        )
        # MLflow's artifact viewer shows one file without its neighbours: log a self-contained
        # copy there, keep one shared plotly.min.js on disk.
        with tempfile.TemporaryDirectory() as tmp:
            standalone = Path(tmp) / "report.html"
            html_path = render_report(report, out_dir / "report.html", standalone=standalone)
            tracker.client.log_artifact(run_id, str(standalone), artifact_path="report")
        write_summary_json(report, out_dir / "summary.json")
        rows = result_rows(book)
        results = {
            "portfolio": tf,
            "series": book["series"],
            "oos_start": book["oos_start"],
            "oos_end": book["oos_end"],
            "n_folds": book["research_config"]["n_folds"],
            "strategies": rows,
            "cpcv": {
                v["series"]: {
                    "n_groups": v["n_groups"],
                    "n_test_groups": v["n_test_groups"],
                    "n_paths": v["n_paths"],
                    "pbo": _num(v["pbo"]),
                    "pbo_note": v["pbo_note"],
                    "path_sharpe": cpcv_spread(v),
                    "seconds": v["seconds"],
                }
                for v in mine
            },
            "report_path": str(html_path.resolve()),
            "mlflow_runs": {"report": run_id},
            "generated_at": now.isoformat(),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        client = tracker.client
        client.log_artifact(run_id, str(out_dir / "summary.json"), artifact_path="report")
        for row in rows:
            for k in ("sharpe", "deflated_sharpe", "ann_return"):
                v = row.get(k)
                if isinstance(v, (int, float)) and np.isfinite(v):
                    client.log_metric(run_id, f"{row['strategy']}.{k}", float(v))
        client.set_terminated(run_id, status="FINISHED")
        paths[tf] = str(html_path.resolve())
        logger.info("report for %s: %s", tf, html_path)
    return paths

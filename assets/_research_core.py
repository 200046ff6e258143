"""The research assets' work, free of Dagster: each function takes plain values and returns plain
values, so the assets stay thin and this module is testable without a Dagster context."""

from __future__ import annotations

import json
import logging
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
from ml.features import FeatureConfig, compute_features, feature_columns
from ml.labels import Labels
from ml.pipeline import (
    BASELINES,
    DEPLOYABLE,
    ResearchConfig,
    feature_importance,
    fit_deployable_on,
    research_folds,
    research_labels,
    run_family,
)

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


def features_of(bars: pd.DataFrame) -> pd.DataFrame:
    return compute_features(bars, FeatureConfig())


def look_ahead_probe(
    bars: pd.DataFrame, feats: pd.DataFrame, cuts: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Recompute features on history truncated at t, and with bars after t perturbed: rows at or
    before t must not change. Run on the real series every time the asset materializes."""
    n = len(bars)
    cols = list(feature_columns(FeatureConfig()))
    if n < 50:
        return {"passed": True, "cut_points": 0, "note": "fewer than 50 bars; nothing to probe"}
    rng = np.random.default_rng(seed)
    points = sorted({int(x) for x in rng.integers(n // 3, n - 2, size=cuts)})
    worst = 0.0
    for t in points:
        truncated = compute_features(bars.iloc[: t + 1], FeatureConfig())[cols].to_numpy()
        perturbed_bars = bars.copy()
        scale = rng.uniform(0.5, 1.5, size=n - t - 1)
        for c in ("open", "high", "low", "close"):
            perturbed_bars.iloc[t + 1 :, perturbed_bars.columns.get_loc(c)] *= scale
        perturbed_bars.iloc[t + 1 :, perturbed_bars.columns.get_loc("volume")] *= scale[::-1]
        perturbed = compute_features(perturbed_bars, FeatureConfig())[cols].to_numpy()[: t + 1]
        full = feats[cols].to_numpy()[: t + 1]
        for other in (truncated, perturbed):
            same_nan = np.isnan(full) == np.isnan(other)
            if not same_nan.all():
                at = str(bars["ts"].iloc[t])
                return {"passed": False, "cut_points": len(points), "failed_at": at}
            diff = np.nanmax(np.abs(np.nan_to_num(full - other))) if full.size else 0.0
            worst = max(worst, float(diff))
    return {"passed": worst <= 1e-9, "cut_points": len(points), "max_abs_diff": worst}


def labels_of(bars: pd.DataFrame, cfg: ResearchConfig) -> pd.DataFrame:
    lab = research_labels(bars, cfg)
    frame = pd.DataFrame(
        {
            "label": lab.values,
            "forward_return": lab.forward_return,
            "threshold": lab.threshold,
        }
    )
    frame["horizon"] = lab.horizon
    return frame


def _labels_from_frame(frame: pd.DataFrame) -> Labels:
    return Labels(
        values=frame["label"],
        forward_return=frame["forward_return"],
        threshold=frame["threshold"],
        horizon=int(frame["horizon"].iloc[0]),
        kind="direction",
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


def walk_forward_all(
    spec: SeriesSpec,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    cfg: ResearchConfig,
    tracker: ModelTracker,
    *,
    log: Log,
    dagster_run_id: str,
) -> WalkForwardAll:
    lab = _labels_from_frame(labels)
    folds = research_folds(features, cfg)
    fp = data_fingerprint(features.drop(columns=["warmup"]))
    predictions, run_ids, accuracy, fold_metrics = {}, {}, {}, {}
    families = [*cfg.models, *cfg.baselines]
    for i, family in enumerate(families, start=1):
        t0 = datetime.now(UTC)
        result = run_family(family, features, lab, folds, cfg)
        predictions[family] = result.predictions
        importance = feature_importance(result, list(feature_columns(FeatureConfig())))
        if importance is not None:
            predictions[family].attrs["feature_importance"] = importance.to_dict()
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
                summary_metrics={f"oos_{k}": v for k, v in result.overall_metrics.items()},
                model_dir=Path(tmp),
                features=list(feature_columns(FeatureConfig())),
                fingerprint=fp,
                tags={
                    "candleflow.series": spec.key,
                    "candleflow.family": family,
                    "dagster.run_id": dagster_run_id,
                },
            )
        secs = (datetime.now(UTC) - t0).total_seconds()
        log(
            f"[{i}/{len(families)}] {spec.key} {family}: {len(folds)} folds, OOS accuracy "
            f"{accuracy[family]:.3f}, {secs:.1f}s, MLflow run {run_ids[family]}"
        )
    any_pred = next(iter(predictions.values()))
    return WalkForwardAll(
        predictions=predictions,
        run_ids=run_ids,
        accuracy=accuracy,
        fold_metrics=fold_metrics,
        oos_rows=len(any_pred),
        oos_start=str(any_pred.index[0]),
        oos_end=str(any_pred.index[-1]),
    )


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
) -> dict[str, Any]:
    """Fit the live model on all history, register it as challenger, apply the promotion rule
    with the deployable family's own out-of-sample backtest on this series."""
    rule = rule or PromotionRule()
    oos = backtest_series(
        {spec.symbol: bars}, {spec.symbol: oos_predictions[DEPLOYABLE]}, strategy
    )
    m = oos["metrics"]
    bundle = fit_deployable_on(features, labels["label"], cfg)
    model_name = registered_model_name(spec.symbol, spec.timeframe)
    oos_frame = oos_predictions[DEPLOYABLE]
    labelled = oos_frame[oos_frame["label"].notna()]
    hits = (labelled[PROBA].to_numpy().argmax(axis=1) - 1) == labelled["label"].to_numpy()
    oos_accuracy = float(hits.mean()) if len(labelled) else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        bundle.save(Path(tmp))
        (Path(tmp) / "strategy.json").write_text(json.dumps(strategy.to_dict(), indent=2))
        # The drift sensor compares live predictions with these, and live hit rate with the
        # walk-forward accuracy: both travel with the model version.
        oos_frame.to_parquet(Path(tmp) / "oos_predictions.parquet")
        run_id = tracker.log_training(
            run_name=f"{spec.key} {DEPLOYABLE} deployable",
            params={"series": spec.key, "family": DEPLOYABLE, **bundle.model.params},
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
            },
        )
    version = tracker.register(model_name, run_id)
    decision = tracker.promote(model_name, version, rule, oos_trades=int(m["n_trades"]))
    return {
        "model_name": model_name,
        "version": version,
        "champion_version": decision.champion_version,
        "decision": decision.reason,
        "oos_sharpe": float(m["sharpe"]),
        "oos_trades": int(m["n_trades"]),
        "run_id": run_id,
    }


def portfolio_backtests(
    oos_predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    registry: SeriesRegistry,
    store: Any,
    research: Any,
    *,
    log: Log,
) -> dict[str, Any]:
    """One shared-cash portfolio per timeframe, for every family and baseline."""
    cfg: ResearchConfig = research.config()
    groups: dict[str, list[SeriesSpec]] = {}
    for key in sorted(oos_predictions):
        spec = registry.get(key)
        groups.setdefault(spec.timeframe, []).append(spec)
    books: dict[str, Any] = {}
    for tf, specs in groups.items():
        bars = {s.symbol: store.read_bars(s.symbol, s.timeframe) for s in specs}
        strategy = research.strategy(specs[0])
        families = [*cfg.models, *cfg.baselines]
        results: dict[str, Any] = {}
        for family in families:
            preds = {s.symbol: oos_predictions[s.key][family] for s in specs}
            results[family] = _run_series(bars, preds, strategy)
            log(f"portfolio {tf} {family}: {len(results[family]['trades'])} trades")
        # Deflate every model's Sharpe by the configurations tried; PBO across them (CSCV).
        rets = pd.DataFrame(
            {f: results[f]["equity"].pct_change().dropna() for f in cfg.models}
        ).dropna()
        # A family that never traded has no Sharpe ratio to rank; CSCV needs >= 2 that did.
        rets = rets.loc[:, rets.std() > 0]
        for family in families:
            model = family in cfg.models
            with_trials(
                results[family],
                strategy,
                n_trials=cfg.n_trials if model else 1,
                trial_returns=rets if model and rets.shape[1] > 1 else None,
            )
        first = min(oos_predictions[s.key][DEPLOYABLE].index[0] for s in specs)
        last = max(oos_predictions[s.key][DEPLOYABLE].index[-1] for s in specs)
        books[tf] = {
            "series": [s.key for s in specs],
            "strategies": results,
            "kinds": {f: ("baseline" if f in BASELINES else "model") for f in families},
            "strategy_config": strategy.to_dict(),
            "research_config": cfg.to_dict(),
            "oos_start": str(first),
            "oos_end": str(last),
            "fingerprint": fingerprint(pd.concat(list(bars.values()))),
            "folds": [row for s in specs for row in _fold_rows(s, oos_predictions[s.key], cfg)],
            # Deployable family's gain importance per series, each the mean over its fold models.
            "feature_importance": {
                s.key: dict(oos_predictions[s.key][DEPLOYABLE].attrs["feature_importance"])
                for s in specs
                if oos_predictions[s.key][DEPLOYABLE].attrs.get("feature_importance")
            },
            "importance_model": DEPLOYABLE,
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
    for fold, part in predictions[DEPLOYABLE].groupby("fold", sort=True):
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
}


def write_reports(
    books: Mapping[str, Any], reports_dir: Path, tracker: ModelTracker, *, dagster_run_id: str
) -> dict[str, str]:
    """Render one HTML report + JSON summary per portfolio; log both to MLflow."""
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
        strategies = {
            name: StrategyResult(
                equity=res["equity"],
                metrics=Metrics.from_dict(res["metrics"]),
                trades=res["trades"],
                kind=StrategyKind(book["kinds"][name]),
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
        report = ReportInput(
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
            f"{n_folds - 1}); top 20 features by the mean over series.",
            prices=book["prices"],
            primary=book["importance_model"] if book["importance_model"] in strategies else None,
        )
        html_path = render_report(report, out_dir / "report.html")
        write_summary_json(report, out_dir / "summary.json")
        # MLflow's artifact viewer shows one file without its neighbours: log a self-contained
        # copy there, keep one shared plotly.min.js on disk.
        with tempfile.TemporaryDirectory() as tmp:
            standalone = render_report(report, Path(tmp) / "report.html", plotly_js="inline")
            tracker.client.log_artifact(run_id, str(standalone), artifact_path="report")
        rows = []
        for name, res in book["strategies"].items():
            row: dict[str, Any] = {"strategy": name, "kind": book["kinds"][name]}
            row |= {k: _num(res["metrics"][v]) for k, v in RESULT_FIELDS.items()}
            rows.append(row)
        results = {
            "portfolio": tf,
            "series": book["series"],
            "oos_start": book["oos_start"],
            "oos_end": book["oos_end"],
            "n_folds": book["research_config"]["n_folds"],
            "strategies": rows,
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

"""Research-plane assets: features → labels → walk-forward models → OOS predictions → promotion,
then one portfolio backtest per timeframe and its report.

Every asset is a thin adapter: it loads, calls pure functions from ml/ and execution/ (through
assets._research_core), and returns the value with metadata that makes the lineage visible.
"""

import json
from typing import Any

import dagster as dg
import pandas as pd

from assets import _research_core as core
from assets.partitions import SERIES
from orchestration.resources import (
    BarStoreResource,
    MlflowResource,
    ResearchResource,
    SeriesRegistryResource,
)

__all__ = [
    "cpcv",
    "deployable_model",
    "features",
    "labels",
    "portfolio_backtest",
    "research_report",
    "walk_forward",
]


def _by_partition(context: dg.AssetExecutionContext, name: str, value: Any) -> dict[str, Any]:
    """Series key -> value of a partitioned input that a report asset reads whole. The IO
    manager hands over a bare value, not a dict, when only one series exists."""
    keys = sorted(context.asset_partition_keys_for_input(name))
    return {keys[0]: value} if len(keys) == 1 else dict(value)


def _bars(context: dg.AssetExecutionContext, store_res: BarStoreResource, registry: Any) -> Any:
    spec = registry.get(context.partition_key)
    with store_res.open() as store:
        bars = store.read_bars(spec.symbol, spec.timeframe)
    if bars.empty:
        msg = (
            f"no validated bars stored for {spec.key}; materialize validated_bars for this "
            "partition first (or run `candleflow ingest`)"
        )
        raise core.ResearchError(msg)
    return spec, bars


@dg.asset(
    partitions_def=SERIES,
    group_name="research",
    deps=["validated_bars"],
    kinds={"python", "pandas"},
    description="The full feature set (technical, statistical) of one series, from the same "
    "function the live dataflow runs. Warm-up rows are marked, not dropped.",
    check_specs=[
        dg.AssetCheckSpec(
            "no_look_ahead",
            asset="features",
            blocking=True,
            description="features at t are unchanged when bars after t are removed or perturbed",
        )
    ],
)
def features(
    context: dg.AssetExecutionContext,
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
) -> Any:
    spec, bars = _bars(context, bar_store, series_registry)
    feats = core.features_of(bars)
    look = core.look_ahead_probe(bars, feats)
    yield dg.Output(
        feats,
        metadata={
            "rows": len(feats),
            "warmup_rows": int(feats["warmup"].sum()),
            "n_features": len(feats.columns) - 1,
            "data_fingerprint": core.fingerprint(bars),
            "first_ts": str(feats.index[0]),
            "last_ts": str(feats.index[-1]),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_look_ahead",
        passed=look["passed"],
        description=f"{spec.key}: features recomputed at {look['cut_points']} cut points "
        + ("match the full-history features" if look["passed"] else "differ: look-ahead"),
        metadata={"series": spec.key, **{k: v for k, v in look.items() if k != "passed"}},
    )


@dg.asset(
    partitions_def=SERIES,
    group_name="research",
    deps=["validated_bars"],
    kinds={"python", "pandas"},
    description="Direction labels (down/flat/up) with a dead zone scaled to volatility and "
    "costs, measured at the prices the backtest fills at (next open or next close), plus the "
    "forward return. The horizon (bars the label reads) is what the splitter purges.",
    check_specs=[
        dg.AssetCheckSpec(
            "label_fill_alignment",
            asset="labels",
            blocking=True,
            description="every forward return equals the log return between the fill prices "
            "of a trade decided at t and held `horizon` bars",
        )
    ],
)
def labels(
    context: dg.AssetExecutionContext,
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> Any:
    spec, bars = _bars(context, bar_store, series_registry)
    cfg = research.config()
    frame = core.labels_of(bars, cfg, research.strategy(spec).fill)
    probe = core.label_fill_probe(bars, frame, cfg.horizon)
    counts = frame["label"].value_counts(dropna=False)
    yield dg.Output(
        frame,
        metadata={
            "horizon": int(frame["horizon"].iloc[0]),
            "fill": str(frame["fill"].iloc[0]),
            "rows": len(frame),
            "labelled": int(frame["label"].notna().sum()),
            "class_counts": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()}),
        },
    )
    yield dg.AssetCheckResult(
        check_name="label_fill_alignment",
        passed=bool(probe["passed"]),
        metadata={k: v for k, v in probe.items() if k != "passed"},
    )


@dg.multi_asset(
    partitions_def=SERIES,
    group_name="research",
    outs={
        "fold_models": dg.AssetOut(
            description="One fitted model per walk-forward fold and family, logged to MLflow "
            "with its parameters, per-fold metrics, feature list, data fingerprint and git rev. "
            "The value maps each family to its MLflow run id.",
            kinds={"mlflow", "xgboost", "pytorch"},
        ),
        "oos_predictions": dg.AssetOut(
            description="Out-of-sample class probabilities of every family and baseline: only "
            "rows no model of that fold trained on (purge >= label horizon, plus embargo).",
            kinds={"pandas"},
        ),
    },
)
def walk_forward(
    context: dg.AssetExecutionContext,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
    mlflow: MlflowResource,
    research: ResearchResource,
) -> Any:
    spec, bars = _bars(context, bar_store, series_registry)
    cfg = research.config()
    tracker = mlflow.tracker()
    result = core.walk_forward_all(
        spec, features, labels, cfg, tracker, log=context.log.info,
        dagster_run_id=context.run.run_id, bars=bars, strategy=research.strategy(spec),
    )
    # Each family backtested alone on this series: numbers the Plots tab charts per partition.
    card = core.series_scorecard(spec, bars, result.predictions, cfg, research.strategy(spec))
    kinds = {f: ("model" if f in cfg.models else "baseline") for f in card}
    yield dg.Output(
        result.run_ids,
        output_name="fold_models",
        metadata={
            "mlflow_runs": dg.MetadataValue.json(result.run_ids),
            "n_folds": cfg.n_folds,
            "families": dg.MetadataValue.json(list(result.predictions)),
            "oos_accuracy": dg.MetadataValue.json(result.accuracy),
            "oos_trading": dg.MetadataValue.json(result.trading),
            "trials": dg.MetadataValue.json(result.trials),
            "single_class_models": dg.MetadataValue.json(result.single_class),
            **{f"{f}.oos_accuracy": v for f, v in result.accuracy.items() if v == v},
        },
    )
    yield dg.Output(
        result.predictions,
        output_name="oos_predictions",
        metadata={
            "oos_rows": result.oos_rows,
            "oos_start": result.oos_start,
            "oos_end": result.oos_end,
            "mlflow_runs": dg.MetadataValue.json(result.run_ids),
            "scorecard": dg.MetadataValue.md(core.markdown_table(card, kinds)),
            **core.numeric_metadata(card),
        },
    )


@dg.asset(
    partitions_def=SERIES,
    group_name="research",
    kinds={"mlflow", "xgboost"},
    description="The deployable model (fitted on all labelled history) registered in MLflow as "
    "`challenger`; it becomes `champion` only when it beats the current champion out of sample "
    "and has enough OOS trades (the promotion rule).",
)
def deployable_model(
    context: dg.AssetExecutionContext,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    oos_predictions: dict[str, pd.DataFrame],
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
    mlflow: MlflowResource,
    research: ResearchResource,
) -> dg.MaterializeResult:
    spec, bars = _bars(context, bar_store, series_registry)
    out = core.register_deployable(
        spec,
        bars,
        features,
        labels,
        oos_predictions,
        research.config(),
        research.strategy(spec),
        mlflow.tracker(),
        dagster_run_id=context.run.run_id,
    )
    context.log.info(out["decision"])
    return dg.MaterializeResult(
        metadata={
            "registered_model": out["model_name"],
            "version": out["version"],
            "champion_version": str(out["champion_version"]),
            "promotion": out["decision"],
            "oos_sharpe": out["oos_sharpe"],
            "oos_trades": out["oos_trades"],
            "mlflow_run": out["run_id"],
        }
    )


@dg.asset(
    group_name="report",
    kinds={"python"},
    description="One portfolio backtest per timeframe: every series of that timeframe shares "
    "one cash balance; each model family and baseline trades its OOS predictions through the "
    "same decision, sizing, risk and cost code the live plane uses.",
    check_specs=[
        dg.AssetCheckSpec(
            "min_trades",
            asset="portfolio_backtest",
            description="every model family made enough trades for its metrics to mean much",
        ),
        dg.AssetCheckSpec(
            "metric_consistency",
            asset="portfolio_backtest",
            blocking=True,
            description="profit factor > 1 exactly when summed trade P&L > 0; equity reconciles "
            "with cash, trades and open positions",
        ),
    ],
)
def portfolio_backtest(
    context: dg.AssetExecutionContext,
    oos_predictions: Any,
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> Any:
    registry = series_registry.registry()
    by_series = _by_partition(context, "oos_predictions", oos_predictions)
    with bar_store.open() as store:
        books = core.portfolio_backtests(
            by_series, registry, store, research, log=context.log.info
        )
    consistency = core.consistency(books)
    few = core.too_few_trades(books, research.min_trades)
    evaluated = "; ".join(f"{tf}: {', '.join(b['series'])}" for tf, b in books.items())
    # Floats per timeframe and family (the Plots tab charts them run over run) and a table each.
    numbers: dict[str, Any] = {}
    for tf, card in core.portfolio_scorecards(books).items():
        numbers |= core.numeric_metadata(card, f"{tf}.")
        numbers[f"scorecard_{tf}"] = dg.MetadataValue.md(
            core.markdown_table(card, books[tf]["kinds"])
        )
    yield dg.Output(
        books,
        metadata={"portfolios": dg.MetadataValue.json(core.portfolio_overview(books)), **numbers},
    )
    yield dg.AssetCheckResult(
        check_name="min_trades",
        passed=not few,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"trades per model family in the portfolios {evaluated}"
        + (f"; below {research.min_trades}: {', '.join(few)}" if few else ""),
        metadata={
            "portfolios": evaluated,
            "below_min": dg.MetadataValue.json(few),
            "min_trades": research.min_trades,
        },
    )
    yield dg.AssetCheckResult(
        check_name="metric_consistency",
        passed=not consistency,
        description=f"profit factor vs P&L and equity reconciliation in the portfolios {evaluated}"
        + (f"; {len(consistency)} violations" if consistency else ""),
        metadata={"portfolios": evaluated, "violations": dg.MetadataValue.json(consistency)},
    )


@dg.asset(
    group_name="report",
    kinds={"python", "xgboost", "pytorch"},
    description="Combinatorial purged cross-validation (AFML ch. 12) beside the walk-forward, "
    "for the series and families the research config names (cpcv_series, cpcv_families): "
    "C(N, k) purged and embargoed splits per family, phi = k/N * C(N, k) backtest paths "
    "through the strategy's rules, and PBO by CSCV over the path returns.",
)
def cpcv(
    context: dg.AssetExecutionContext,
    features: Any,
    labels: Any,
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> dg.Output[dict[str, Any]]:
    cfg = research.config()
    features = _by_partition(context, "features", features)
    labels = _by_partition(context, "labels", labels)
    registry = series_registry.registry()
    out: dict[str, Any] = {}
    with bar_store.open() as store:
        for key in cfg.cpcv_series:
            if key not in features or key not in labels:
                context.log.info(f"CPCV: {key} has no features/labels yet; skipped")
                continue
            spec = registry.get(key)
            bars = store.read_bars(spec.symbol, spec.timeframe)
            out[key] = core.cpcv_of(
                spec, bars, features[key], labels[key], cfg, research.strategy(spec),
                log=context.log.info,
            )
    return dg.Output(
        out,
        metadata={
            "series": dg.MetadataValue.json(list(out)),
            "path_sharpe": dg.MetadataValue.json({k: core.cpcv_spread(v) for k, v in out.items()}),
            "pbo": dg.MetadataValue.json({k: core._num(v["pbo"]) for k, v in out.items()}),
        },
    )


@dg.asset(
    group_name="report",
    kinds={"html", "mlflow"},
    description="A self-contained HTML report and a JSON summary per portfolio, logged to MLflow.",
)
def research_report(
    context: dg.AssetExecutionContext,
    portfolio_backtest: dict[str, Any],
    cpcv: dict[str, Any],
    mlflow: MlflowResource,
    research: ResearchResource,
) -> dg.MaterializeResult:
    paths = core.write_reports(
        portfolio_backtest,
        research.reports_dir,
        mlflow.tracker(),
        dagster_run_id=context.run.run_id,
        cpcv=cpcv,
    )
    return dg.MaterializeResult(
        metadata={
            **{f"report_{k}": dg.MetadataValue.path(v) for k, v in paths.items()},
            "reports": dg.MetadataValue.json(json.loads(json.dumps(paths))),
        }
    )

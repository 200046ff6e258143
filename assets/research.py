"""Research-plane assets: features → labels → walk-forward models → OOS predictions → promotion,
then one portfolio backtest per timeframe and its report.

Every asset is a thin adapter: it loads, calls pure functions from ml/ and execution/ (through
assets._research_core), and returns the value with metadata that makes the lineage visible.
"""

import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets import _research_core as core
from assets._reproduce import archive_inputs, archive_results
from assets.data_plane import bars_version
from assets.partitions import SERIES
from execution.report import add_left_out, left_out_warning
from infra.series import parse_series_key
from infra.tracking import PromotionRule, choose_deployable, git_revision
from orchestration.resources import (
    BarStoreResource,
    MlflowResource,
    ResearchResource,
    SeriesRegistryResource,
)

__all__ = [
    "assets_for",
    "bars_snapshot",
    "build_portfolio_backtest",
    "cpcv",
    "deployable_model",
    "features",
    "labels",
    "pooled_predictions",
    "portfolio_backtest",
    "research_report",
    "walk_forward",
]


@dg.asset(
    partitions_def=SERIES,
    group_name="research",
    deps=["validated_bars"],
    kinds={"python", "pandas"},
    description="The exact bars one research run uses, read once from the store: every later "
    "step (features, labels, training, deployable model, portfolio backtest) reads this "
    "snapshot, so an ingest landing mid-run cannot mix two data versions. Its data version is "
    "the content hash validated_bars records.",
)
def bars_snapshot(
    context: dg.AssetExecutionContext,
    bar_store: BarStoreResource,
    series_registry: SeriesRegistryResource,
) -> dg.Output[pd.DataFrame]:
    spec = series_registry.get(context.partition_key)
    with bar_store.open() as store:
        bars = store.read_bars(spec.symbol, spec.timeframe)
    if bars.empty:
        msg = (
            f"no validated bars stored for {spec.key}; materialize validated_bars for this "
            "partition first (or run `candleflow ingest`)"
        )
        raise core.ResearchError(msg)
    version = bars_version(bars)
    return dg.Output(
        bars,
        data_version=dg.DataVersion(version),
        metadata={
            "data_version": version,
            "rows": len(bars),
            "first_ts": str(bars["ts"].iloc[0]),
            "last_ts": str(bars["ts"].iloc[-1]),
        },
    )


@dg.asset(
    partitions_def=SERIES,
    group_name="research",
    kinds={"python", "pandas"},
    description="The full feature set (technical, statistical, plus the config's user feature "
    "functions) of one series, from the same function the live dataflow runs. Warm-up rows "
    "are marked, not dropped.",
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
    bars_snapshot: pd.DataFrame,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> Any:
    spec, bars = series_registry.get(context.partition_key), bars_snapshot
    cfg = research.config()
    feats = core.features_of(bars, cfg)
    look = core.look_ahead_probe(bars, feats, feature_config=cfg.feature_config)
    yield dg.Output(
        feats,
        metadata={
            "rows": len(feats),
            "warmup_rows": int(feats["warmup"].sum()),
            "n_features": len(feats.columns) - 1,
            "user_features": dg.MetadataValue.json(list(cfg.features)),
            "data_fingerprint": core.fingerprint(bars),
            "data_version": bars_version(bars),
            "first_ts": str(feats.index[0]),
            "last_ts": str(feats.index[-1]),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_look_ahead",
        passed=look["passed"],
        description=f"{spec.key}: features recomputed at {look['cut_points']} cut points "
        + ("match the full-history features" if look["passed"]
           else f"differ: {look.get('reason', 'look-ahead')}"),
        metadata={"series": spec.key, **{k: v for k, v in look.items() if k != "passed"}},
    )


@dg.asset(
    partitions_def=SERIES,
    group_name="research",
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
    bars_snapshot: pd.DataFrame,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> Any:
    spec, bars = series_registry.get(context.partition_key), bars_snapshot
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


# walk_forward is a graph: one step lists the configured families, one step per family fits it
# (they share nothing, so the run's executor decides how many run at once: in_process one after
# another, multiprocess up to max_concurrent, k8s/celery a pod/task each), and one step logs
# them all to MLflow in the configured order and yields the two assets.


@dg.op(
    out=dg.DynamicOut(str),
    description="The configured model families and baselines, one dynamic output each.",
)
def walk_forward_families(research: ResearchResource) -> Any:
    taken: set[str] = set()
    for family in core.families_of(research.config()):
        yield _family_output(family, taken)


def _family_output(family: str, taken: set[str]) -> dg.DynamicOutput:
    """The family as a dynamic output whose mapping key (the step's `[...]`) is step-key-safe
    (`examples.user_model:LogisticModel` has `.` and `:`), not a name Dagster reserves (`meta`,
    `config`) and unique within the run."""
    key = re.sub(r"[^A-Za-z0-9_]", "_", family)
    while True:
        if key not in taken:
            try:
                out = dg.DynamicOutput(family, mapping_key=key)
            except dg.DagsterInvalidDefinitionError:  # reserved: Dagster's own check says so
                pass
            else:
                taken.add(key)
                return out
        key += "_"


@dg.op(description="Purged walk-forward of one family on one series: a fresh model per fold.")
def fit_family(
    context: dg.OpExecutionContext,
    family: str,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    research: ResearchResource,
) -> tuple[str, Any]:
    t0 = time.monotonic()
    result = core.fit_family(family, features, labels, research.config())
    context.log.info(
        f"{context.partition_key} {family}: {len(result.folds)} folds fitted in "
        f"{time.monotonic() - t0:.1f}s"
    )
    return family, result


@dg.op(
    out={"fold_models": dg.Out(), "oos_predictions": dg.Out()},
    description="Log every family's walk-forward to MLflow (one parent run, a nested run per "
    "family, in the configured order) and yield the run ids and the OOS predictions.",
)
def record_walk_forward(
    context: dg.OpExecutionContext,
    fitted: list[tuple[str, Any]],
    features: pd.DataFrame,
    bars_snapshot: pd.DataFrame,
    series_registry: SeriesRegistryResource,
    mlflow: MlflowResource,
    research: ResearchResource,
) -> Any:
    spec, bars = series_registry.get(context.partition_key), bars_snapshot
    cfg = research.config()
    version = bars_version(bars_snapshot)
    tracker = mlflow.tracker({"candleflow.data_version": version})
    result = core.record_walk_forward(
        spec, features, cfg, tracker, dict(fitted), log=context.log.info,
        dagster_run_id=context.run_id, bars=bars, strategy=research.strategy(spec),
    )
    # Each family backtested alone on this series: numbers the Plots tab charts per partition.
    card = core.series_scorecard(spec, bars, result.predictions, cfg, research.strategy(spec))
    kinds = {f: ("model" if f in cfg.models else "baseline") for f in card}
    yield dg.Output(
        result.run_ids,
        output_name="fold_models",
        metadata={
            "mlflow_runs": dg.MetadataValue.json(result.run_ids),
            "data_version": version,
            "config_hash": research.app_config().config_hash,
            "config": dg.MetadataValue.json(json.loads(research.app_config().to_json())),
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
            # the report pairs these predictions only with the bars snapshot of this version
            "data_version": version,
            "oos_start": result.oos_start,
            "oos_end": result.oos_end,
            "mlflow_runs": dg.MetadataValue.json(result.run_ids),
            "scorecard": dg.MetadataValue.md(core.markdown_table(card, kinds)),
            **core.numeric_metadata(card),
        },
    )


@dg.graph_multi_asset(
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
            "rows no model of that fold trained on (purge >= label horizon, plus embargo). "
            "Each family is fitted in its own step.",
            kinds={"pandas"},
        ),
    },
)
def walk_forward(features: pd.DataFrame, labels: pd.DataFrame, bars_snapshot: pd.DataFrame) -> Any:
    fitted = walk_forward_families().map(lambda family: fit_family(family, features, labels))
    fold_models, oos_predictions = record_walk_forward(fitted.collect(), features, bars_snapshot)
    return {"fold_models": fold_models, "oos_predictions": oos_predictions}


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
    bars_snapshot: pd.DataFrame,
    series_registry: SeriesRegistryResource,
    mlflow: MlflowResource,
    research: ResearchResource,
) -> dg.MaterializeResult:
    spec, bars = series_registry.get(context.partition_key), bars_snapshot
    version = bars_version(bars)
    app = research.app_config().research
    strategy = research.strategy(spec)
    scores = core.deployable_scores(spec, bars, oos_predictions, app.recipe, strategy)
    family, choice = choose_deployable(scores, min_trades=app.min_trades, deploy=app.deploy)
    context.log.info(f"deployed family {choice}")
    out = core.register_deployable(
        spec,
        bars,
        features,
        labels,
        oos_predictions,
        app.recipe,
        strategy,
        mlflow.tracker({"candleflow.data_version": version}),
        PromotionRule(min_trades=app.min_trades, min_margin=app.promotion_margin),
        dagster_run_id=context.run.run_id,
        family=family,
        choice=choice,
        require_approval=app.require_approval,
    )
    context.log.info(out["decision"])
    return dg.MaterializeResult(
        metadata={
            "registered_model": out["model_name"],
            "family": family,
            "family_choice": choice,
            "family_scores": dg.MetadataValue.json(
                {f: {"deflated_sharpe": str(d), "n_trades": t} for f, (d, t) in scores.items()}
            ),
            "version": out["version"],
            "champion_version": str(out["champion_version"]),
            "promotion": out["decision"],
            "oos_sharpe": out["oos_sharpe"],
            "oos_trades": out["oos_trades"],
            "mlflow_run": out["run_id"],
            "data_version": version,
            "config_hash": research.app_config().config_hash,
        }
    )


# A series whose research failed (or never ran) has no stored predictions: it is left out of the
# portfolio with a warning, instead of failing every later report rebuild.
_PARTIAL = dg.AssetIn(metadata={"allow_missing_partitions": True})


def build_portfolio_backtest(*, pooled: bool) -> dg.AssetsDefinition:
    """The portfolio_backtest asset; with `pooled` it also reads pooled_predictions (so the
    pooled model is upstream of the report) and trades it as one more model."""
    ins = {"oos_predictions": _PARTIAL, "bars_snapshot": _PARTIAL}
    if pooled:
        ins["pooled_predictions"] = dg.AssetIn()

    @dg.asset(
        name="portfolio_backtest",
        group_name="report",
        kinds={"python"},
        ins=ins,
        description="One portfolio backtest per timeframe: every series of that timeframe "
        "shares one cash balance; each model family and baseline (and, with [research] pooled "
        "= true, the pooled model) trades its OOS predictions through the same decision, "
        "sizing, risk and cost code the live plane uses.",
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
                description="profit factor > 1 exactly when summed trade P&L > 0; equity "
                "reconciles with cash, trades and open positions",
            ),
        ],
    )
    def portfolio_backtest(
        context: dg.AssetExecutionContext,
        series_registry: SeriesRegistryResource,
        research: ResearchResource,
        **inputs: Any,
    ) -> Any:
        yield from _portfolio_backtest(
            context,
            inputs["oos_predictions"],
            inputs["bars_snapshot"],
            inputs.get("pooled_predictions"),
            series_registry,
            research,
        )

    return portfolio_backtest


portfolio_backtest = build_portfolio_backtest(pooled=False)


def _portfolio_backtest(
    context: dg.AssetExecutionContext,
    oos_predictions: Any,
    bars_snapshot: Any,
    pooled: dict[str, Any] | None,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> Any:
    registry = series_registry.registry()
    # Every registered series counts, with or without a partition (a series whose research
    # failed keeps its registry entry but not its partition): none is left out silently.
    known = sorted(set(context.instance.get_dynamic_partitions(SERIES.name)) | set(registry.load()))
    oos_predictions = _by_partition(context, "oos_predictions", oos_predictions)
    bars_snapshot = _by_partition(context, "bars_snapshot", bars_snapshot)
    usable, left_out = usable_series(oos_predictions, bars_snapshot, known)
    versions = {k: bars_version(bars_snapshot[k]) for k in usable}  # each series hashed once
    usable, left_out = same_version_only(
        usable, left_out, _recorded_versions(context, "oos_predictions", usable), versions
    )
    predictions = {k: oos_predictions[k] for k in usable}
    pooled_left_out: dict[str, dict[str, str]] = {}
    if pooled is not None:
        predictions, pooled_left_out = with_pooled(
            predictions, pooled, {k: versions[k] for k in usable}
        )
    warnings = list(left_out.values())
    for warning in warnings:
        context.log.warning(warning)
    if not usable:
        msg = "no series has out-of-sample predictions yet; run `candleflow research` first"
        raise core.ResearchError(msg)
    store = SnapshotStore({parse_series_key(k): bars_snapshot[k] for k in usable})
    books = core.portfolio_backtests(
        predictions, registry, store, research, log=context.log.info,
        pooled_left_out=pooled_left_out,
    )
    cfg = research.app_config()
    for tf, book in books.items():
        book["left_out"] = left_out_of(left_out, tf)
        book["config_hash"] = cfg.config_hash
        book["data_versions"] = {k: versions[k] for k in book["series"]}
        # What this backtest traded, kept so `candleflow reproduce` can rebuild it exactly.
        book["inputs"] = archive_inputs(
            Path(research.reports_dir) / f"portfolio_{tf}",
            {k: predictions[k] for k in book["series"]},
            {k: bars_snapshot[k] for k in book["series"]},
            {k: registry.get(k) for k in book["series"]},
            cfg.to_json(),
        )
    consistency = core.consistency(books)
    few = core.too_few_trades(books, research.min_trade_count())
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
        metadata={
            "portfolios": dg.MetadataValue.json(core.portfolio_overview(books)),
            **numbers,
            "left_out": dg.MetadataValue.json(warnings),
            "config_hash": cfg.config_hash,
            "data_versions": dg.MetadataValue.json(
                {tf: book["data_versions"] for tf, book in books.items()}
            ),
        },
    )
    yield dg.AssetCheckResult(
        check_name="min_trades",
        passed=not few,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"trades per model family in the portfolios {evaluated}"
        + (f"; below {research.min_trade_count()}: {', '.join(few)}" if few else ""),
        metadata={
            "portfolios": evaluated,
            "below_min": dg.MetadataValue.json(few),
            "min_trades": research.min_trade_count(),
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
    group_name="pooled",
    kinds={"python", "xgboost"},
    ins={"features": _PARTIAL, "labels": _PARTIAL},
    description="With [research] pooled = true: one deployable-family model per walk-forward "
    "fold trained across every series of a timeframe, folds on their shared time axis (no "
    "training label reads a bar of any series' test window); OOS predictions per series, so "
    "a universe of N series costs n_folds fits, not N * n_folds. One MLflow run per timeframe "
    "holds its parameters, per-fold metrics and fold models; the portfolio report trades it "
    "as `pooled_<family>`.",
)
def pooled_predictions(
    context: dg.AssetExecutionContext,
    features: Any,
    labels: Any,
    mlflow: MlflowResource,
    research: ResearchResource,
) -> dg.Output[dict[str, Any]]:
    feats = _by_partition(context, "features", features)
    labs = _by_partition(context, "labels", labels)
    keys = sorted(set(feats) & set(labs))
    if not keys:
        msg = "no series has features and labels yet; run `candleflow research` first"
        raise core.ResearchError(msg)
    out = core.pooled_of(
        {k: feats[k] for k in keys},
        {k: labs[k] for k in keys},
        research.config(),
        mlflow.tracker(),
        dagster_run_id=context.run.run_id,
        versions=_recorded_versions(context, "features", keys),
        log=context.log.info,
    )
    return dg.Output(
        out,
        metadata={
            "series": dg.MetadataValue.json({tf: v["series"] for tf, v in out.items()}),
            "fits": dg.MetadataValue.json({tf: v["fits"] for tf, v in out.items()}),
            "mlflow_runs": dg.MetadataValue.json({tf: v["mlflow_run"] for tf, v in out.items()}),
            **{
                f"{tf}.oos_accuracy": float(v["overall_metrics"]["accuracy"])
                for tf, v in out.items()
                if "accuracy" in v["overall_metrics"]
            },
        },
    )


def _by_partition(context: dg.AssetExecutionContext, name: str, loaded: Any) -> dict[str, Any]:
    """The IO manager hands over one partition's value bare (None when missing) and several as a
    {partition: value} dict; always the dict here."""
    keys = context.asset_partition_keys_for_input(name)
    if len(keys) == 1:
        return {} if loaded is None else {keys[0]: loaded}
    return dict(loaded or {})


def _add_left_out(report: Path, left_out: list[str], tracker: Any) -> None:
    """The left-out series into the report on disk and into its copy in MLflow."""
    if not left_out:
        add_left_out(report, left_out)
        return
    run_id = json.loads((report.parent / "results.json").read_text())["mlflow_runs"]["report"]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / report.name
        add_left_out(report, left_out, standalone=copy)
        tracker.client.log_artifact(run_id, str(copy), artifact_path="report")


def annotate_results(path: Path, extra: dict[str, Any]) -> None:
    """Add provenance (data version, code revision, config hash) and warnings to results.json."""
    data = json.loads(path.read_text())
    data.update(extra)
    path.write_text(json.dumps(data, indent=2, default=str))


def bars_version_of_book(book: dict[str, Any]) -> str:
    """One data version for a portfolio: the hash of its series' versions, in key order."""
    versions = book.get("data_versions") or {}
    if not versions:
        return str(book.get("fingerprint", ""))[:16]
    joined = "|".join(f"{k}={v}" for k, v in sorted(versions.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def usable_series(
    predictions: dict[str, Any], snapshots: dict[str, Any], known: list[str]
) -> tuple[list[str], dict[str, str]]:
    """The series with both OOS predictions and a bars snapshot, and for each other known
    series (registered, or with a partition) the warning that it was left out, by series key."""
    usable = sorted(k for k in predictions if k in snapshots)
    left_out = {
        key: left_out_warning(key, "no bars snapshot" if key in predictions else "no predictions")
        for key in sorted(set(known) | set(predictions))
        if key not in usable
    }
    return usable, left_out


def same_version_only(
    usable: list[str],
    left_out: dict[str, str],
    predicted_on: dict[str, str | None],
    snapshot: dict[str, str],
) -> tuple[list[str], dict[str, str]]:
    """Keep a series only when its predictions were made on the bars snapshot the backtest
    would trade them on (a research run that failed after its snapshot leaves the older
    predictions beside newer bars: one backtest must not mix two data versions). Predictions
    recorded without a version (older runs) are taken as they are."""
    keep, out = [], dict(left_out)
    for key in usable:
        made = predicted_on.get(key)
        if made is None or made == snapshot[key]:
            keep.append(key)
        else:
            out[key] = left_out_warning(
                key, f"predictions of data version {made}, bars snapshot {snapshot[key]}"
            )
    return keep, out


def with_pooled(
    predictions: dict[str, Any], pooled: dict[str, Any], snapshot: dict[str, str]
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Each series' predictions with its pooled model's beside its families (as
    `pooled_<family>`), and why each series is not traded by a pooled model: no pooled
    prediction, or pooled predictions made on features of another data version than the bars
    snapshot (features recorded without a version are taken as they are)."""
    out = {k: dict(v) for k, v in predictions.items()}
    left_out: dict[str, dict[str, str]] = {}
    for tf, entry in pooled.items():
        name = entry["strategy"]
        for key in predictions:
            if parse_series_key(key)[1] != tf:
                continue
            made = entry["data_versions"].get(key)
            if key not in entry["predictions"]:
                left_out.setdefault(name, {})[key] = "no pooled predictions"
            elif made is not None and made != snapshot[key]:
                left_out.setdefault(name, {})[key] = (
                    f"pooled predictions of data version {made}, bars snapshot {snapshot[key]}"
                )
            else:
                out[key][name] = entry["predictions"][key]
    return out, left_out


def _recorded_versions(
    context: dg.AssetExecutionContext, asset: str, keys: list[str]
) -> dict[str, Any]:
    """The data version each series' latest materialization of `asset` recorded."""
    out: dict[str, Any] = {}
    for key in keys:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]),
            limit=1,
        ).records
        meta = records[0].asset_materialization.metadata if records else {}
        version = meta.get("data_version")
        out[key] = None if version is None else str(getattr(version, "value", version))
    return out


def left_out_of(left_out: dict[str, str], timeframe: str) -> list[str]:
    """The warnings of one portfolio: those of the series of its timeframe only."""
    return [w for key, w in sorted(left_out.items()) if parse_series_key(key)[1] == timeframe]


class SnapshotStore:
    """The read side of a bar store over the snapshots a research run used (portfolio backtests
    read exactly the bars the models were trained and scored on)."""

    def __init__(self, frames: dict[tuple[str, str], pd.DataFrame]) -> None:
        self._frames = dict(frames)  # (symbol, timeframe) -> bars

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        return self._frames[(symbol, timeframe)]


@dg.asset(
    group_name="report",
    kinds={"python", "xgboost", "pytorch"},
    ins={"features": _PARTIAL, "labels": _PARTIAL, "bars_snapshot": _PARTIAL},
    description="Combinatorial purged cross-validation (AFML ch. 12) beside the walk-forward, "
    "for the series and families the research config names (cpcv_series, cpcv_families): "
    "C(N, k) purged and embargoed splits per family, phi = k/N * C(N, k) backtest paths "
    "through the strategy's rules, and PBO by CSCV over the path returns.",
)
def cpcv(
    context: dg.AssetExecutionContext,
    features: Any,
    labels: Any,
    bars_snapshot: Any,
    series_registry: SeriesRegistryResource,
    research: ResearchResource,
) -> dg.Output[dict[str, Any]]:
    cfg = research.config()
    registry = series_registry.registry()
    features = _by_partition(context, "features", features)
    labels = _by_partition(context, "labels", labels)
    bars_snapshot = _by_partition(context, "bars_snapshot", bars_snapshot)
    out: dict[str, Any] = {}
    for key in cfg.cpcv_series:
        if key not in features or key not in labels or key not in bars_snapshot:
            context.log.info(f"CPCV: {key} has no features/labels yet; skipped")
            continue
        spec = registry.get(key)
        out[key] = core.cpcv_of(
            spec, bars_snapshot[key], features[key], labels[key], cfg, research.strategy(spec),
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
    tracker = mlflow.tracker()
    paths = core.write_reports(
        portfolio_backtest,
        research.reports_dir,
        tracker,
        dagster_run_id=context.run.run_id,
        cpcv=cpcv,
    )
    revision = git_revision()
    for tf, path in paths.items():
        book = portfolio_backtest[tf]
        _add_left_out(Path(path), book.get("left_out", []), tracker)
        annotate_results(
            Path(path).parent / "results.json",
            {
                "data_version": bars_version_of_book(book),
                "data_versions": book.get("data_versions", {}),
                "code_revision": revision,
                "config_hash": book.get("config_hash", ""),
                "left_out": book.get("left_out", []),
                "inputs": book.get("inputs", ""),
            },
        )
        archive_results(Path(path).parent / "results.json")
    return dg.MaterializeResult(
        metadata={
            "code_revision": revision,
            "config_hash": research.app_config().config_hash,
            **{f"report_{k}": dg.MetadataValue.path(v) for k, v in paths.items()},
            "reports": dg.MetadataValue.json(json.loads(json.dumps(paths))),
        }
    )


def assets_for(*, pooled: bool) -> list[dg.AssetsDefinition]:
    """This module's assets for a config: with [research] pooled = true, pooled_predictions and
    a portfolio_backtest that trades it; without, neither."""
    pooled_only = {pooled_predictions.key, portfolio_backtest.key}
    base = [
        a
        for a in dg.load_assets_from_modules([sys.modules[__name__]])
        if not pooled_only & set(getattr(a, "keys", ()))
    ]
    if pooled:
        return [*base, pooled_predictions, build_portfolio_backtest(pooled=True)]
    return [*base, portfolio_backtest]

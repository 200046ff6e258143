"""`candleflow demo`, `research` and `results`: the research pipeline end to end, in Dagster."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from execution.report import left_out_warning
from infra.config import CandleflowConfig
from infra.series import SeriesRegistry, SeriesSpec
from infra.settings import Settings
from orchestration.commands import init_home, series_specs_for_demo

__all__ = [
    "left_out_warning", "print_results", "reports_dir_of", "run_demo", "run_report",
    "run_research",
]

RESULT_COLUMNS = (
    ("strategy", "strategy", "{}"),
    ("ann_return", "ann.ret", "{:+.2%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("deflated_sharpe", "DSR", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("max_drawdown", "maxDD", "{:.2%}"),
    ("n_trades", "trades", "{:d}"),
    ("win_rate", "win", "{:.1%}"),
    ("profit_factor", "PF", "{:.2f}"),
    ("n_trials", "N", "{:d}"),
    ("min_trl_years", "minTRL(y)", "{:.1f}"),
)


# The console shows progress lines at INFO; Dagster's per-event DEBUG lines stay in the UI.
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def run_demo(
    settings: Settings,
    *,
    series: list[str] | None,
    say: Callable[[str], None],
    config: CandleflowConfig | None = None,
) -> int:
    """The bundled series end to end: register them, then `run_research`."""
    return run_research(settings, config or CandleflowConfig(), series_specs_for_demo(series),
                        say=say)


def register_partitions(settings: Settings, keys: Sequence[str]) -> Any:
    """Add Dagster partitions for `keys` in the instance under CANDLEFLOW_HOME; returns it."""
    import dagster as dg

    init_home(settings)
    # The CLI's runs must land in the same instance `make ui` opens.
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    instance = dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions("series"))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions("series", new)
    return instance


def run_research(
    settings: Settings,
    config: CandleflowConfig,
    specs: Sequence[SeriesSpec],
    *,
    say: Callable[[str], None],
) -> int:
    """Register `specs`, run the research job of each through Dagster, then the portfolio report
    job, and print the results table. Returns 1 when any series or the report failed."""
    started = time.monotonic()
    init_home(settings, config.executor.max_concurrent_runs)
    registry = SeriesRegistry(settings.home / "series.json")
    for spec in specs:
        registry.put(spec)
    instance = register_partitions(settings, [s.key for s in specs])

    from orchestration.definitions import RESEARCH_JOB, build_defs
    from orchestration.launch import execute_as_location_run

    defs = build_defs(settings, config)
    job = defs.resolve_job_def(RESEARCH_JOB)
    tags = {"candleflow/config_hash": config.config_hash}
    say(f"config: {config.path or 'defaults (no candleflow.toml)'} (hash {config.config_hash})")
    failures: list[str] = []

    def finished(i: int, spec: SeriesSpec, result: Any, t0: float) -> None:
        if result.success:
            say(
                f"[{i}/{len(specs)}] {spec.key}: done in {time.monotonic() - t0:.0f}s "
                f"(Dagster run {result.run_id})"
            )
        else:
            failures.append(spec.key)
            _say_failures(result, say)
            if getattr(result, "log", None):
                say(f"  run output: {result.log}")
            _drop_partition_without_bars(settings, instance, spec)

    if config.executor.cli_runs == "executor":
        # Each series a run on the configured executor, several at once (`dagster job execute`
        # processes; they rebuild the code location from the environment).
        from orchestration.launch import execute_research_runs, export_for_step_processes

        export_for_step_processes(settings, config)
        # Create the MLflow store once here: parallel runs would race to migrate a fresh one.
        from infra.tracking import ModelTracker, TrackingConfig

        ModelTracker(TrackingConfig(settings.mlflow_uri, settings.mlflow_artifacts_dir))
        index = {s.key: (i, s) for i, s in enumerate(specs, start=1)}
        t0 = time.monotonic()
        say(
            f"{len(specs)} research runs on the {config.executor.kind} executor, "
            f"{config.executor.max_concurrent_runs} at a time"
        )
        execute_research_runs(
            [s.key for s in specs],
            instance,
            max_concurrent_runs=config.executor.max_concurrent_runs,
            tags=tags,
            run_config=_QUIET,
            on_done=lambda key, result: finished(*index[key], result, t0),
        )
    else:
        for i, spec in enumerate(specs, start=1):
            t0 = time.monotonic()
            say(
                f"[{i}/{len(specs)}] {spec.key}: ingest → validate → features → labels → "
                "walk-forward training (MLflow) → OOS predictions → deployable model"
            )
            # Attributed to the code location, so the run shows in the UI's timeline and jobs.
            result = execute_as_location_run(
                job, instance, partition_key=spec.key, run_config=_QUIET, tags=tags
            )
            finished(i, spec, result, t0)
    if len(failures) < len(specs) and not run_report(settings, config, say=say):
        failures.append("portfolio_report")
    print_results(settings, as_json=False, reports_dir=reports_dir_of(settings, config))
    say(f"finished in {time.monotonic() - started:.0f}s")
    say(f"reports:      {reports_dir_of(settings, config)}/portfolio_<timeframe>/report.html")
    say(f"bars store:   {settings.data_dir}  (try: candleflow bars --symbol SPX --timeframe 1d)")
    say(f"MLflow store: {settings.mlflow_uri}")
    say("Dagster UI:   make ui  → http://127.0.0.1:3000 (runs, materializations, checks)")
    if failures:
        say(f"FAILED series: {', '.join(failures)}")
        return 1
    return 0


def run_report(settings: Settings, config: CandleflowConfig, *, say: Callable[[str], None]) -> bool:
    """Run the portfolio report job through Dagster (the backtests read each series' pinned
    bars snapshot, never the store's latest bars); returns whether it succeeded."""
    from orchestration.definitions import REPORT_JOB, build_defs
    from orchestration.launch import execute_as_location_run

    instance = register_partitions(settings, [])
    say("portfolio backtests (shared cash per timeframe) → HTML reports")
    report = execute_as_location_run(
        build_defs(settings, config).resolve_job_def(REPORT_JOB),
        instance,
        run_config=_QUIET,
        tags={"candleflow/config_hash": config.config_hash},
    )
    if not report.success:
        _say_failures(report, say)
    return bool(report.success)


def _drop_partition_without_bars(settings: Settings, instance: Any, spec: SeriesSpec) -> None:
    """An empty or fully quarantined series keeps no Dagster partition (the registry keeps its
    spec, so fixing the input and running again needs nothing else)."""
    from orchestration.commands import open_store

    with open_store(settings) as store:
        empty = store.count_bars(spec.symbol, spec.timeframe) == 0
    if empty:
        instance.delete_dynamic_partition("series", spec.key)


def reports_dir_of(settings: Settings, config: CandleflowConfig) -> Path:
    """Where the reports are: the config file's [reports] dir, else CANDLEFLOW_HOME's."""
    return Path(config.reports.dir) if config.reports.dir else settings.reports_dir


def _say_failures(result: Any, say: Callable[[str], None]) -> None:
    for event in result.all_events:
        if event.is_step_failure:
            say(f"  step {event.step_key} failed: {_failure_reason(event.step_failure_data)}")


def _failure_reason(data: Any) -> str:
    """The user-facing reason of a step failure: a Failure's description, else the root error."""
    user = getattr(data, "user_failure_data", None)
    if user is not None and user.description:
        return str(user.description).strip()
    err = data.error
    while err is not None and err.cause is not None:
        err = err.cause
    return err.message.strip() if err is not None else "?"


def _summaries(reports_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(reports_dir.glob("*/results.json")):
        out.append((path.parent.name, json.loads(path.read_text())))
    return out


def _with_unreported(
    summaries: list[tuple[str, dict[str, Any]]], registered: Sequence[str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Each portfolio's warnings plus one for every registered series of its timeframe that is
    neither in it nor already named (ingested after the report was written, say); and the
    warnings of registered series whose timeframe has no portfolio at all."""
    from infra.series import parse_series_key

    by_tf: dict[str, list[str]] = {}
    for key in sorted(registered):
        by_tf.setdefault(parse_series_key(key)[1], []).append(key)
    out = []
    for name, summary in summaries:
        tf = str(summary.get("portfolio") or name.removeprefix("portfolio_"))
        named = list(summary.get("left_out", []))
        seen = {*summary.get("series", []), *(w.split(":", 1)[0] for w in named)}
        extra = [left_out_warning(key) for key in by_tf.pop(tf, []) if key not in seen]
        out.append((name, {**summary, "left_out": named + extra} if extra else summary))
    orphans = [left_out_warning(key) for keys in by_tf.values() for key in keys]
    return out, orphans


def print_results(settings: Settings, *, as_json: bool, reports_dir: Path | None = None) -> int:
    summaries, orphans = _with_unreported(
        _summaries(reports_dir or settings.reports_dir),
        list(SeriesRegistry(settings.home / "series.json").load()),
    )
    if as_json:
        print(json.dumps({k: v for k, v in summaries}, default=str, indent=2))
        for warning in orphans:
            print(f"warning: {warning} (no portfolio of its timeframe yet)", file=sys.stderr)
        return 0 if summaries else 1
    if not summaries:
        print(
            "no results yet: run `candleflow research` or `make demo` (or materialize the "
            "research job in Dagster)",
            file=sys.stderr,
        )
        return 1
    for key, summary in summaries:
        print(
            f"\n== {key}  out-of-sample {summary.get('oos_start', '?')} → "
            f"{summary.get('oos_end', '?')}  ({summary.get('n_folds', '?')} folds)"
        )
        # A user family's name is its import path: the first column is as wide as it needs.
        width = max([16, *(len(str(r.get("strategy", ""))) + 2 for r in summary["strategies"])])
        header = "".join(
            f"{title:>12}" if i else f"{title:<{width}}"
            for i, (_, title, _) in enumerate(RESULT_COLUMNS)
        )
        print(header)
        for row in summary.get("strategies", []):
            cells = []
            for i, (field, _, fmt) in enumerate(RESULT_COLUMNS):
                value = row.get(field)
                cells.append(_fmt(value, fmt, first=width if i == 0 else 0))
            print("".join(cells))
        for row in summary.get("strategies", []):
            if row.get("description"):
                print(f"  {row['strategy']}: {row['description']}")
        for row in summary.get("strategies", []):
            for warning in row.get("warnings", []):
                print(f"  warning: {row['strategy']} {warning}")
        for key, cv in summary.get("cpcv", {}).items():
            pbo = cv.get("pbo")
            pbo_text = f"{pbo:.1%}" if isinstance(pbo, float) else f"n/a ({cv.get('pbo_note')})"
            print(
                f"CPCV {key}: N={cv['n_groups']} k={cv['n_test_groups']} "
                f"phi={cv['n_paths']} paths, PBO {pbo_text}"
            )
            for family, spread in cv.get("path_sharpe", {}).items():
                print(
                    f"  {family:<14} path Sharpe median {spread['median']:+.2f} "
                    f"[{spread['min']:+.2f} .. {spread['max']:+.2f}]"
                )
        print(f"series: {', '.join(summary.get('series', []))}")
        print(f"report: {Path(summary.get('report_path', ''))}")
        runs = summary.get("mlflow_runs", {})
        if runs:
            print("MLflow runs: " + ", ".join(f"{k}={v}" for k, v in runs.items()))
        if summary.get("champion"):
            print(f"registry: {summary['champion']}")
        if summary.get("data_version"):
            print(
                f"data version: {summary['data_version']}  code: "
                f"{summary.get('code_revision', '?')}  config: {summary.get('config_hash', '?')}"
            )
        for warning in summary.get("left_out", []):
            print(f"warning: {warning}")
    for warning in orphans:
        print(f"\nwarning: {warning} (no portfolio of its timeframe yet)")
    return 0


def _fmt(value: Any, fmt: str, *, first: int) -> str:
    """One cell; `first` is the width of the left-aligned first column (0 for the others)."""
    if first:
        return f"{value!s:<{first}}"
    try:
        number = float(value)  # the JSON keeps NaN and inf as the strings "nan" / "inf"
    except (TypeError, ValueError):
        return f"{'n/a' if value is None else str(value):>12}"
    if math.isnan(number):
        return f"{'n/a':>12}"
    if fmt == "{:d}":
        return f"{int(number):>12d}"
    return f"{fmt.format(number):>12}"

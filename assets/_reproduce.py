"""Reports that can be rebuilt: each portfolio backtest keeps the exact inputs it traded (the
bars snapshot and OOS predictions of every series, the series specs and the resolved config),
content-addressed beside its report, and `reproduce` rebuilds the backtest from them and
compares every number of the recorded results.json.

Layout: <reports_dir>/portfolio_<tf>/inputs/<id>/{config.json, series.json, results.json,
bars/<i>.parquet, predictions/<i>/<family>.parquet}. `id` hashes all of it, so a later report on
other data writes a new directory and an older report's inputs stay where its results.json
names them. The directory appears whole (written aside, then renamed) or not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from infra.series import SeriesSpec

__all__ = ["ReproduceError", "archive_inputs", "archive_results", "reproduce"]

INPUTS = "inputs"


class ReproduceError(RuntimeError):
    """A report cannot be rebuilt: its inputs are missing or unreadable (message says which)."""


def _frame_hash(frame: pd.DataFrame) -> str:
    h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    h.update("|".join(map(str, frame.columns)).encode())
    return h.hexdigest()


def archive_inputs(
    portfolio_dir: Path,
    predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    bars: Mapping[str, pd.DataFrame],
    specs: Mapping[str, SeriesSpec],
    config_json: str,
) -> str:
    """Keep the inputs of one portfolio backtest (series keys of `predictions`); returns their id.
    Idempotent: the same inputs give the same id and are written once."""
    keys = sorted(predictions)
    h = hashlib.sha256(config_json.encode())
    for key in keys:
        h.update(json.dumps(specs[key].to_dict(), sort_keys=True, default=str).encode())
        h.update(_frame_hash(bars[key]).encode())
        for family in sorted(predictions[key]):
            h.update(family.encode() + _frame_hash(predictions[key][family]).encode())
    ident = h.hexdigest()[:16]
    final = Path(portfolio_dir) / INPUTS / ident
    if (final / "series.json").exists():
        return ident
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ident}-", dir=final.parent))
    try:
        (tmp / "config.json").write_text(config_json)
        index = []
        (tmp / "bars").mkdir()
        for i, key in enumerate(keys):
            bars[key].to_parquet(tmp / "bars" / f"{i}.parquet")
            pred_dir = tmp / "predictions" / str(i)
            pred_dir.mkdir(parents=True)
            for family, frame in predictions[key].items():
                frame.to_parquet(pred_dir / f"{family}.parquet")
            index.append({"key": key, "file": i, "spec": specs[key].to_dict(),
                          "families": sorted(predictions[key])})
        (tmp / "series.json").write_text(json.dumps(index, indent=2, default=str))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "series.json").exists():  # not a concurrent writer of the same id
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ident


def archive_results(results_path: Path) -> None:
    """Keep a copy of a finished results.json beside the inputs it names."""
    results = json.loads(Path(results_path).read_text())
    ident = results.get(INPUTS)
    if ident:
        target = Path(results_path).parent / INPUTS / ident / "results.json"
        target.write_text(json.dumps(results, indent=2, default=str))


class _Registry:
    def __init__(self, specs: Mapping[str, SeriesSpec]) -> None:
        self._specs = dict(specs)

    def get(self, key: str) -> SeriesSpec:
        return self._specs[key]


def _load(inputs_dir: Path) -> tuple[str, dict[str, SeriesSpec], dict, dict]:
    try:
        index = json.loads((inputs_dir / "series.json").read_text())
        config_json = (inputs_dir / "config.json").read_text()
    except OSError as exc:
        msg = f"no recorded inputs at {inputs_dir} ({exc.strerror}): rerun the report"
        raise ReproduceError(msg) from None
    specs, bars, preds = {}, {}, {}
    for item in index:
        key, i = item["key"], item["file"]
        specs[key] = SeriesSpec.from_mapping(item["spec"])
        bars[key] = pd.read_parquet(inputs_dir / "bars" / f"{i}.parquet")
        preds[key] = {
            f: pd.read_parquet(inputs_dir / "predictions" / str(i) / f"{f}.parquet")
            for f in item["families"]
        }
    return config_json, specs, bars, preds


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def reproduce(results_path: Path) -> tuple[dict[str, Any], list[str]]:
    """Rebuild the portfolio backtest behind `results_path` from its recorded inputs; returns the
    recorded results and the differences ("strategy.field: recorded X, rebuilt Y"), empty when
    every number is reproduced exactly."""
    from assets import _research_core as core
    from assets.research import SnapshotStore
    from orchestration.resources import ResearchResource

    path = Path(results_path)
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise ReproduceError(msg) from None
    ident = recorded.get(INPUTS)
    if not ident:
        msg = f"{path} records no inputs (a report from before inputs were kept): rerun it"
        raise ReproduceError(msg)
    inputs_dir = path.parent / INPUTS / ident
    if path.parent.name == ident:  # the copy kept beside the inputs
        inputs_dir = path.parent
    config_json, specs, bars, preds = _load(inputs_dir)
    tf = recorded["portfolio"]
    research = ResearchResource(config_json=config_json)
    store = SnapshotStore({(s.symbol, s.timeframe): bars[k] for k, s in specs.items()})
    books = core.portfolio_backtests(preds, _Registry(specs), store, research, log=lambda _m: None)
    rebuilt = {row["strategy"]: row for row in core.result_rows(books[tf])}
    diffs = []
    for row in recorded["strategies"]:
        name = row["strategy"]
        other = rebuilt.get(name)
        if other is None:
            diffs.append(f"{name}: recorded, not rebuilt")
            continue
        for field, value in row.items():
            if isinstance(value, int | float | str) and not _same(value, other.get(field)):
                diffs.append(f"{name}.{field}: recorded {value!r}, rebuilt {other.get(field)!r}")
    diffs += [f"{name}: rebuilt, not recorded" for name in sorted(set(rebuilt) - {
        r["strategy"] for r in recorded["strategies"]})]
    return recorded, diffs

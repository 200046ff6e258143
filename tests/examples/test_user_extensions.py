"""The user-feature and user-rule examples run as the README's "Extending" section says: named in
a config file, used by the features asset (and its no-look-ahead check), the walk-forward and
the backtest, on the bundled S&P 500 series (arch.data)."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from assets import _research_core as core
from assets import data_plane, research
from execution.config import StrategyConfig
from infra.config import load_config
from infra.series import SeriesRegistry
from infra.settings import Settings
from ml.features import feature_columns
from ml.pipeline import research_folds, research_labels, run_family
from orchestration.definitions import build_resources

FEATURE = "examples.user_feature:range_position"
RULE = "examples.user_rule:long_only_hold"
MODEL = "examples.user_model:LogisticModel"
README = Path(__file__).resolve().parents[2] / "README.md"

CONFIG = f"""
[[universe.series]]
symbol = "SPX"
timeframe = "1d"
source = "bundled"
options = {{ dataset = "sp500" }}

[research]
models = ["{MODEL}"]
baselines = []
n_folds = 2
features = ["{FEATURE}"]
feature_window = 60

[strategy]
rule = "{RULE}"
"""


@pytest.mark.slow
def test_research_and_backtest_when_config_names_user_feature_and_rule_then_both_are_used(
    tmp_path,
):
    path = tmp_path / "candleflow.toml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    spec = cfg.universe.series[0]
    settings = Settings(home=tmp_path / "home")
    SeriesRegistry(settings.home / "series.json").put(spec)
    resources = build_resources(settings, cfg)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("series", [spec.key])

    run = dg.materialize(
        [data_plane.raw_bars, data_plane.validated_bars, research.bars_snapshot,
         research.features],
        partition_key=spec.key, resources=resources, instance=instance,
    )

    checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
    assert checks["no_look_ahead"].passed
    feats = run.output_for_node("features")
    bars = run.output_for_node("bars_snapshot")
    assert {"range_pos_20", "open_gap"} <= set(feats.columns)

    recipe = cfg.research.recipe
    labels = research_labels(bars, recipe)
    result = run_family(MODEL, feats, labels, research_folds(feats, recipe), recipe)
    assert "range_pos_20" in result.models[0].feature_names_  # the model was fed the column

    strategy = cfg.strategy.for_series(spec)
    assert strategy.rule == RULE
    preds = {spec.symbol: result.predictions}
    user = core.backtest_series({spec.symbol: bars}, preds, strategy)
    builtin = core.backtest_series(
        {spec.symbol: bars}, preds, StrategyConfig.from_dict({**strategy.to_dict(), "rule": ""})
    )
    user_sides = set(user["trades"]["side"])
    assert user_sides == {"long"}, "long_only_hold never shorts"
    assert "short" in set(builtin["trades"]["side"]), "the built-in rule shorts down calls"
    assert len(user["trades"]) != len(builtin["trades"])


@pytest.mark.slow
def test_features_asset_when_user_feature_reads_next_bar_then_blocking_check_fails_naming_it(
    tmp_path,
):
    path = tmp_path / "candleflow.toml"
    text = CONFIG.replace(FEATURE, "tests.examples.bad_features:peek_next_close")
    path.write_text(text.replace(f'rule = "{RULE}"', ""))
    cfg = load_config(path)
    spec = cfg.universe.series[0]
    settings = Settings(home=tmp_path / "home")
    SeriesRegistry(settings.home / "series.json").put(spec)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("series", [spec.key])

    run = dg.materialize(
        [data_plane.raw_bars, data_plane.validated_bars, research.bars_snapshot,
         research.features],
        partition_key=spec.key, resources=build_resources(settings, cfg), instance=instance,
        raise_on_error=False,
    )

    check = next(e for e in run.get_asset_check_evaluations() if e.check_name == "no_look_ahead")
    assert not check.passed
    assert "next_ret" in check.description and "look-ahead" in check.description


def test_readme_extending_snippet_when_loaded_as_a_config_file_then_features_and_rule_reach_recipe(
    tmp_path,
):
    section = README.read_text().split("## Extending", 1)[1].split("\n## ", 1)[0]
    snippet = re.search(r"```toml\n(.*?)```", section, re.S)
    assert snippet is not None, "the README's Extending section shows a candleflow.toml snippet"
    path = tmp_path / "candleflow.toml"
    path.write_text(snippet.group(1))

    cfg = load_config(path)

    assert cfg.research.recipe.features == (FEATURE,)
    fc = cfg.research.recipe.feature_config
    assert fc.user_features == (FEATURE,) and fc.feature_window == 250
    assert {"range_pos_20", "open_gap"} <= set(feature_columns(fc))
    assert cfg.strategy.rule == RULE

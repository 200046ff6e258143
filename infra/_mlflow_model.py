"""The deployable bundle as an MLflow pyfunc model: bars in, class probabilities out.

MLflow's "Logged models" view, the model's input/output schema and `mlflow.pyfunc.load_model`
all come from this wrapper; the live plane keeps loading the bundle itself (the run's `model/`
artifact), which is what the wrapper carries inside.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import infer_signature

__all__ = ["BundleModel", "save_bundle_model"]

BUNDLE_ARTIFACT = "bundle"
# What loading the model needs beyond candleflow itself (installed from the checkout).
_REQUIREMENTS = ("mlflow", "pandas", "numpy", "xgboost", "torch", "TA-Lib", "arch")


class BundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc over ml.bundle.ModelBundle: input OHLCV bars (ts, open, high, low, close, volume)
    long enough for the feature warm-up; output p_down, p_flat, p_up per post-warm-up bar.

    MLflow schemas hold naive datetimes only, so `ts` crosses this boundary as naive UTC and
    becomes tz-aware UTC again inside."""

    def load_context(self, context: Any) -> None:
        from ml.bundle import load_bundle

        self._bundle = load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self._bundle.predict_frame(_aware(model_input)).reset_index(drop=True)


def _aware(bars: pd.DataFrame) -> pd.DataFrame:
    ts = pd.to_datetime(bars["ts"])
    return bars.assign(ts=ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC"))


def _naive(bars: pd.DataFrame) -> pd.DataFrame:
    ts = pd.to_datetime(bars["ts"])
    return bars.assign(ts=ts.dt.tz_convert("UTC").dt.tz_localize(None) if ts.dt.tz else ts)


def _requirements() -> list[str]:
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


def save_bundle_model(bundle_dir: Path, out_dir: Path, input_example: pd.DataFrame) -> Path:
    """Write an MLflow model directory at `out_dir` wrapping the bundle at `bundle_dir`, with a
    signature inferred from `input_example` (bars) and the bundle's own output on it."""
    from ml.bundle import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    example = _naive(input_example)
    output = bundle.predict_frame(_aware(example)).reset_index(drop=True)
    signature = infer_signature(example, output)
    mlflow.pyfunc.save_model(
        path=str(out_dir),
        python_model=str(Path(__file__).with_name("_mlflow_model_code.py")),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=signature,
        input_example=example,
        pip_requirements=_requirements(),
    )
    return Path(out_dir)

"""A deployable model: the fitted model plus everything needed to rebuild its inputs from bars.

The research plane saves one bundle per registered model version; the live plane loads the
bundle behind the registry alias `champion` and calls `predict_frame` on its rolling buffer of
bars. Both planes therefore compute the model's inputs with the same function and the same
configuration.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml._kernels import has_nan
from ml.errors import ModelError
from ml.features import FeatureConfig, compute_features, feature_columns, required_history
from ml.models.base import PROBA_COLUMNS, BaseModel, load_model

__all__ = ["BUNDLE_FILE", "ModelBundle", "load_bundle"]

BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True)
class ModelBundle:
    model: BaseModel
    feature_config: FeatureConfig
    columns: tuple[str, ...]  # the model's input columns, in training order
    name: str  # the model family, e.g. "xgboost"

    @functools.cached_property
    def history(self) -> int:
        """Bars a live buffer must hold so its last prediction equals the batch one."""
        seq = int(self.model.params.get("seq_len", 1))
        return required_history(self.feature_config) + seq

    def predict_frame(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Probabilities for every bar of one symbol past warm-up, indexed by bar ts.

        Row t uses bars up to and including t only (compute_features has no look-ahead).
        """
        feats = compute_features(bars, self.feature_config)
        ready = feats.loc[~feats["warmup"], list(self.columns)]
        if ready.empty:
            return pd.DataFrame(columns=list(PROBA_COLUMNS), index=ready.index, dtype=float)
        proba = np.asarray(self.model.predict_proba(ready), dtype=float)
        return pd.DataFrame(proba, index=ready.index, columns=list(PROBA_COLUMNS))

    def predict_last(self, bars: pd.DataFrame) -> np.ndarray | None:
        """[p_down, p_flat, p_up] of the newest bar; None while it is in warm-up.

        Equal to `predict_frame(bars).iloc[-1]`. A row-wise model (seq_len 1) is handed only
        the newest feature row, which is what makes per-bar live scoring cheap; a sequence
        model reads the rows before it too and goes through predict_frame.
        """
        if int(self.model.params.get("seq_len", 1)) > 1:
            proba = self.predict_frame(bars)
            if len(proba) and proba.index[-1] == bars.index[-1]:
                return proba.iloc[-1].to_numpy(dtype=np.float64)
            return None
        feats = compute_features(bars, self.feature_config)
        if bool(feats["warmup"].iloc[-1]):
            return None
        cols = list(self.columns)
        idx = feats.columns.get_indexer(cols)
        if (idx < 0).any():  # a column the features lack: let the model name it
            return np.asarray(self.model.predict_proba(feats.iloc[-1:]), dtype=np.float64)[0]
        # One row built from numpy: selecting ~50 columns through pandas costs more than the model.
        last = pd.DataFrame(feats.to_numpy()[-1:, idx], columns=cols)
        return np.asarray(self.model.predict_proba(last), dtype=np.float64)[0]

    @functools.cached_property
    def row_wise(self) -> bool:
        """True when a prediction reads one feature row only (not a sequence of rows)."""
        return int(self.model.params.get("seq_len", 1)) <= 1

    @functools.cached_property
    def _row_index(self) -> np.ndarray | None:
        """Positions of the model's columns in a `feature_columns(feature_config)` row."""
        pos = {name: i for i, name in enumerate(feature_columns(self.feature_config))}
        names = self.model.feature_names_ or self.columns  # the order the model was fitted in
        if any(c not in pos for c in names):
            return None
        return np.asarray([pos[c] for c in names], dtype=np.intp)

    def predict_row(self, features: np.ndarray) -> np.ndarray | None:
        """[p_down, p_flat, p_up] from one full feature row (`feature_columns` order, as
        ml.online.OnlineFeatures.update returns it); None while the row is in warm-up.

        Equal to `predict_last` on the bars that produced the row, for a row-wise model.
        """
        if not self.row_wise:
            msg = f"{self.name} reads sequences of rows; use predict_last on a bar buffer"
            raise ModelError(msg)
        if has_nan(features):  # warm-up: some feature is still undefined
            return None
        idx = self._row_index
        if idx is None:  # a column the features lack: let the model name it
            names = list(feature_columns(self.feature_config))
            frame = pd.DataFrame(np.reshape(features, (1, -1)), columns=names)
            return np.asarray(self.model.predict_proba(frame), dtype=np.float64)[0]
        return self.model.predict_proba_row(features[idx])

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / "model")
        cfg = asdict(self.feature_config)
        cls = type(self.model)
        meta: dict[str, Any] = {
            "name": self.name,
            "model_class": f"{cls.__module__}:{cls.__qualname__}",  # loads a user's model
            "columns": list(self.columns),
            "feature_config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        }
        (path / BUNDLE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path


def load_bundle(path: Path) -> ModelBundle:
    """Load a bundle saved by ModelBundle.save; a clear ModelError if `path` is not one."""
    meta_path = path / BUNDLE_FILE
    if not meta_path.exists():
        msg = f"{path} is not a model bundle (no {BUNDLE_FILE}); was it saved by ModelBundle.save?"
        raise ModelError(msg)
    meta = json.loads(meta_path.read_text())
    raw_cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["feature_config"].items()}
    ref = str(meta.get("model_class", ""))
    if ref and not ref.startswith("ml."):
        from ml.models import resolve_ref

        model = resolve_ref(ref).load(path / "model")
    else:
        model = load_model(path / "model")
    return ModelBundle(
        model=model,
        feature_config=FeatureConfig.from_mapping(raw_cfg),
        columns=tuple(meta["columns"]),
        name=str(meta["name"]),
    )

"""A small LSTM classifier (PyTorch) behind the Model interface.

Row i of X is classified from the window of rows i-seq_len+1 .. i of the same X, so the rows of
X must be consecutive bars of one symbol. Windows never reach past row i (no look-ahead).

Warm-up choice (explicit): the first seq_len-1 rows of X get probabilities from a window that is
left-padded with zeros, i.e. with the training mean after standardisation. They are not marked;
callers that want full windows pass the preceding rows too and drop the first seq_len-1 outputs.

Inputs are standardised with the mean/std of the training part of `fit` (the validation tail
excluded); NaN features become 0 after standardisation (the training mean). Training stops early
on the log loss of a chronological validation tail and keeps the best epoch's weights.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from ml.errors import ConfigError, ModelError, NotFittedError
from ml.models.base import BaseModel, register_model

__all__ = ["LSTMModel"]

logger = logging.getLogger(__name__)

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


class _Net(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


def _limit_threads() -> None:
    """One intra-op thread unless the user configured threading through the environment.

    Two threads spin-wait on each other when the host is busy: a 10k-bar walk-forward took
    321 s with two and 23 s with one at load 8 on two cores. Research spreads over processes
    (Dagster's executors), not threads."""
    if not any(var in os.environ for var in _THREAD_ENV) and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


@register_model
class LSTMModel(BaseModel):
    name = "lstm"

    def __init__(
        self,
        *,
        seq_len: int = 16,
        hidden_size: int = 16,
        num_layers: int = 1,
        dropout: float = 0.0,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        patience: int = 3,
        val_fraction: float = 0.2,
        seed: int = 0,
        device: str | None = None,  # None: cuda when available, else cpu
    ) -> None:
        super().__init__()
        ints = {"seq_len": seq_len, "hidden_size": hidden_size, "num_layers": num_layers}
        ints |= {"epochs": epochs, "batch_size": batch_size, "patience": patience}
        bad = [k for k, v in ints.items() if int(v) < 1]
        if bad:
            msg = f"LSTMModel: {', '.join(bad)} must be >= 1"
            raise ConfigError(msg)
        if not 0.0 <= val_fraction < 1.0 or not 0.0 <= dropout < 1.0 or learning_rate <= 0:
            msg = "LSTMModel: val_fraction and dropout must be in [0, 1), learning_rate > 0"
            raise ConfigError(msg)
        self._params: dict[str, Any] = {
            "seq_len": int(seq_len),
            "hidden_size": int(hidden_size),
            "num_layers": int(num_layers),
            "dropout": float(dropout),
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "learning_rate": float(learning_rate),
            "weight_decay": float(weight_decay),
            "patience": int(patience),
            "val_fraction": float(val_fraction),
            "seed": int(seed),
            "device": device,
        }
        self.net_: _Net | None = None
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.best_epoch_: int | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def _device(self) -> torch.device:
        wanted = self._params["device"]
        if wanted is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(wanted)

    def _windows(self, features: np.ndarray) -> np.ndarray:
        """(n, seq_len, f) windows ending at each row, left-padded with zeros."""
        if self.mean_ is None or self.std_ is None:
            msg = "lstm: model is not fitted"
            raise NotFittedError(msg)
        scaled = (features - self.mean_) / self.std_
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        seq_len = self._params["seq_len"]
        padded = np.concatenate([np.zeros((seq_len - 1, scaled.shape[1]), np.float32), scaled])
        view = np.lib.stride_tricks.sliding_window_view(padded, seq_len, axis=0)
        # A copy always: for one window the view is already contiguous, and read-only, which
        # torch.from_numpy warns of on every live bar.
        return np.array(view.transpose(0, 2, 1), order="C")

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        features, target, weights = self._fit_inputs(X, y, sample_weight)
        p = self._params
        _limit_threads()
        n = len(features)
        n_val = int(n * p["val_fraction"])
        n_fit = n - n_val
        if n_fit < 2:
            msg = f"lstm: needs >= 2 training rows after the validation tail, got {n_fit}"
            raise ModelError(msg)
        fit_part = features[:n_fit]
        self.mean_ = np.nanmean(fit_part, axis=0)
        self.mean_ = np.where(np.isnan(self.mean_), 0.0, self.mean_)
        std = np.nanstd(fit_part, axis=0)
        self.std_ = np.where(np.isnan(std) | (std == 0.0), 1.0, std)

        device = self._device()
        torch.manual_seed(p["seed"])
        generator = torch.Generator().manual_seed(p["seed"])
        net = _Net(features.shape[1], p["hidden_size"], p["num_layers"], p["dropout"]).to(device)
        xs = torch.from_numpy(self._windows(features)).to(device)
        ys = torch.from_numpy(target).to(device)
        ws = torch.from_numpy(
            np.ones(n, np.float32) if weights is None else weights.astype(np.float32)
        ).to(device)
        optimiser = torch.optim.Adam(
            net.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"]
        )
        loss_fn = nn.CrossEntropyLoss(reduction="none")

        def weighted_loss(idx: torch.Tensor) -> torch.Tensor:
            losses = loss_fn(net(xs[idx]), ys[idx])
            return (losses * ws[idx]).sum() / ws[idx].sum().clamp_min(1e-12)

        best_loss = float("inf")
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        best_epoch = 0
        stale = 0
        val_idx = torch.arange(n_fit, n, device=device)
        for epoch in range(1, p["epochs"] + 1):
            net.train()
            order = torch.randperm(n_fit, generator=generator).to(device)
            for start in range(0, n_fit, p["batch_size"]):
                batch = order[start : start + p["batch_size"]]
                optimiser.zero_grad()
                weighted_loss(batch).backward()
                optimiser.step()
            if n_val == 0:
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                best_epoch = epoch
                continue
            net.eval()
            with torch.no_grad():
                val_loss = float(weighted_loss(val_idx))
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= p["patience"]:
                    break
        net.load_state_dict(best_state)
        net.eval()
        self.net_ = net
        self.best_epoch_ = best_epoch
        logger.debug("lstm fitted: best epoch %d, validation loss %.5f", best_epoch, best_loss)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_inputs(X)
        if self.net_ is None:
            msg = "lstm: predict_proba called before fit"
            raise NotFittedError(msg)
        device = next(self.net_.parameters()).device
        windows = self._windows(features)
        out = np.empty((len(features), 3), dtype=np.float64)
        self.net_.eval()
        with torch.no_grad():
            for start in range(0, len(windows), 4096):
                chunk = torch.from_numpy(windows[start : start + 4096]).to(device)
                probs = torch.softmax(self.net_(chunk), dim=1)
                out[start : start + len(chunk)] = probs.double().cpu().numpy()
        return out

    def save(self, path: Path) -> None:
        if self.net_ is None or self.mean_ is None or self.std_ is None:
            msg = "lstm: save called before fit"
            raise NotFittedError(msg)
        extra = {
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
            "best_epoch": self.best_epoch_,
            "n_features": int(self.mean_.shape[0]),
        }
        directory = self._write_meta(path, extra)
        state = {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}
        torch.save(state, directory / "weights.pt")

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        model = cls(**meta["params"])
        p = model._params
        net = _Net(meta["n_features"], p["hidden_size"], p["num_layers"], p["dropout"])
        state = torch.load(Path(path) / "weights.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.to(model._device())
        net.eval()
        model.net_ = net
        model.mean_ = np.asarray(meta["mean"], dtype=np.float64)
        model.std_ = np.asarray(meta["std"], dtype=np.float64)
        model.best_epoch_ = meta["best_epoch"]
        model.feature_names_ = tuple(meta["feature_names"])
        return model

    def __repr__(self) -> str:
        return f"LSTMModel({json.dumps(self.params)})"

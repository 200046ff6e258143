"""GARCH(1,1) volatility, fitted on a training window and filtered forward out of sample.

Fitting uses `arch` on the training returns only. Out of sample the parameters stay fixed and
the conditional-variance recursion runs forward over the data as it arrives:

    sigma2[t+1] = omega + alpha * (r[t] - mu)^2 + beta * sigma2[t]

The value reported at row t is sqrt(sigma2[t+1]): the one-step-ahead volatility forecast that is
known at the close of bar t, so it is a legitimate feature for a decision taken at t.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from arch import arch_model

from ml.errors import ModelError, NotFittedError

__all__ = ["GarchParams", "GarchVolForecaster", "garch_volatility"]

logger = logging.getLogger(__name__)

_BACKCAST_TAU = 75  # arch's default: exponentially weighted mean of the first 75 squared residuals
_BACKCAST_DECAY = 0.94


@dataclass(frozen=True)
class GarchParams:
    """Fitted GARCH(1,1) parameters, in units of the original (unscaled) returns."""

    mu: float  # constant mean of returns
    omega: float  # variance intercept
    alpha: float  # weight of the last squared residual
    beta: float  # weight of the last conditional variance
    sigma2_0: float  # initial variance (backcast from the training residuals)
    n_train: int  # number of returns the parameters were fitted on


def _backcast(resid: np.ndarray) -> float:
    tau = min(_BACKCAST_TAU, len(resid))
    weights = _BACKCAST_DECAY ** np.arange(tau)
    weights /= weights.sum()
    return float(np.sum(weights * resid[:tau] ** 2))


def _as_float_array(returns: pd.Series) -> tuple[np.ndarray, int]:
    """Values and the position of the first finite value; interior NaNs are rejected."""
    values = returns.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        msg = "returns have no finite values"
        raise ModelError(msg)
    first = int(np.argmax(finite))
    if not finite[first:].all():
        bad = returns.index[first:][~finite[first:]][:3].tolist()
        msg = f"returns have NaN/inf after the first valid value, e.g. at {bad}"
        raise ModelError(msg)
    return values, first


class GarchVolForecaster:
    """GARCH(1,1) with a constant mean: `fit` on training returns, `filter` any later series."""

    name = "garch11"

    def __init__(self, *, min_train: int = 100) -> None:
        self.min_train = min_train  # fewer training returns than this raise ModelError
        self.params_: GarchParams | None = None

    @property
    def params(self) -> dict[str, Any]:
        return {"min_train": self.min_train}

    def fit(self, returns: pd.Series) -> GarchVolForecaster:
        """Estimate the parameters on `returns` (leading NaNs are skipped)."""
        values, first = _as_float_array(returns)
        y = values[first:]
        if len(y) < self.min_train:
            msg = f"GARCH needs >= {self.min_train} training returns, got {len(y)}"
            raise ModelError(msg)
        std = float(np.std(y))
        if not std > 0.0:
            msg = "training returns are constant; GARCH variance is not identified"
            raise ModelError(msg)
        # arch's optimiser is best conditioned for returns of unit scale.
        scale = 1.0 / std
        result = arch_model(
            y * scale, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False
        ).fit(disp="off", show_warning=False)
        if result.convergence_flag != 0:
            logger.warning("GARCH optimiser did not converge (flag %s)", result.convergence_flag)
        p = result.params
        mu = float(p["mu"]) / scale
        # arch backcasts from the residuals of its starting values (the sample mean), not mu.
        resid = y - y.mean()
        self.params_ = GarchParams(
            mu=mu,
            omega=float(p["omega"]) / scale**2,
            alpha=float(p["alpha[1]"]),
            beta=float(p["beta[1]"]),
            sigma2_0=_backcast(resid),
            n_train=len(y),
        )
        return self

    def filter(self, returns: pd.Series) -> pd.Series:
        """One-step-ahead conditional volatility known at each row, with the fitted parameters.

        Row t uses returns up to and including t. Rows before the first finite return are NaN.
        `returns` must start where the training returns started for in-sample rows to match the
        fit; the recursion itself is causal wherever it starts.
        """
        if self.params_ is None:
            msg = "GarchVolForecaster.filter called before fit"
            raise NotFittedError(msg)
        p = self.params_
        values, first = _as_float_array(returns)
        out = np.full(len(values), np.nan)
        # Variance of the first row, as arch initialises it: the backcast stands in for both the
        # unseen previous squared residual and the previous variance.
        sigma2 = p.omega + (p.alpha + p.beta) * p.sigma2_0
        for t in range(first, len(values)):
            eps = values[t] - p.mu
            sigma2 = p.omega + p.alpha * eps * eps + p.beta * sigma2
            out[t] = math.sqrt(sigma2)
        return pd.Series(out, index=returns.index, name="garch_vol")

    def save(self, path: Path) -> None:
        if self.params_ is None:
            msg = "GarchVolForecaster.save called before fit"
            raise NotFittedError(msg)
        payload = {"model": self.name, "params": self.params, "fitted": asdict(self.params_)}
        Path(path).write_text(json.dumps(payload))

    @classmethod
    def load(cls, path: Path) -> GarchVolForecaster:
        payload = json.loads(Path(path).read_text())
        if payload.get("model") != cls.name:
            msg = f"{path} holds {payload.get('model')!r}, not a {cls.name} model"
            raise ModelError(msg)
        model = cls(**payload["params"])
        model.params_ = GarchParams(**payload["fitted"])
        return model


def garch_volatility(returns: pd.Series, train_end: int | pd.Timestamp) -> pd.Series:
    """Fit GARCH(1,1) on returns up to `train_end` and filter forward over the whole series.

    `train_end` is inclusive: a position (the last training row, 0-based) or a timestamp (the
    last training label). The result at row t is the one-step-ahead volatility known at t; rows
    after train_end use the fixed training parameters, so they never see their own future.
    """
    if isinstance(train_end, pd.Timestamp):
        stop = int(returns.index.searchsorted(train_end, side="right"))
    elif isinstance(train_end, (int, np.integer)):
        stop = int(train_end) + 1
    else:
        msg = f"train_end must be an int position or a pd.Timestamp, got {type(train_end).__name__}"
        raise TypeError(msg)
    if not 0 < stop <= len(returns):
        msg = f"train_end {train_end!r} selects {stop} of {len(returns)} rows"
        raise ModelError(msg)
    model = GarchVolForecaster().fit(returns.iloc[:stop])
    return model.filter(returns)

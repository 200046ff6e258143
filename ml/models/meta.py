"""MetaAgent: a confidence-weighted vote of several models that abstains when unsure.

Per row, each agent a gives probabilities p_a = [down, flat, up]. Its confidence is
c_a = (max(p_a) - 1/3) / (2/3), in [0, 1]: 0 for a uniform (uninformative) answer. The ensemble is
sum(w_a * c_a * p_a) / sum(w_a * c_a) (plain average of the agents if every c_a is 0).
Disagreement is the population std across agents of their score p_up - p_down, in [0, 1].

The ensemble abstains on a row when its own top probability is below `confidence_threshold` or
the disagreement is above `disagreement_threshold`. An abstained row's probabilities are
`abstain_flat_prob` on flat and the rest split evenly, which the decision layer reads as "no
position"; `decide` also returns the mask explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from ml.errors import ConfigError, ModelError, NotFittedError
from ml.models.base import BaseModel, Model, load_model, register_model

__all__ = ["MetaAgent"]


@register_model
class MetaAgent(BaseModel):
    name = "meta"

    def __init__(
        self,
        agents: Sequence[Model],
        *,
        weights: Sequence[float] | None = None,
        confidence_threshold: float = 0.45,
        disagreement_threshold: float = 0.5,
        abstain_flat_prob: float = 0.9,
    ) -> None:
        super().__init__()
        if not agents:
            msg = "MetaAgent needs at least one agent"
            raise ConfigError(msg)
        w = np.ones(len(agents)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(agents),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
            msg = f"weights must be {len(agents)} finite values >= 0, not all 0; got {weights}"
            raise ConfigError(msg)
        if not 0.0 <= confidence_threshold <= 1.0 or not 0.0 <= disagreement_threshold <= 1.0:
            msg = "confidence_threshold and disagreement_threshold must be in [0, 1]"
            raise ConfigError(msg)
        if not 1.0 / 3.0 <= abstain_flat_prob <= 1.0:
            msg = f"abstain_flat_prob must be in [1/3, 1], got {abstain_flat_prob}"
            raise ConfigError(msg)
        self.agents = list(agents)
        self.weights = w
        self.confidence_threshold = float(confidence_threshold)
        self.disagreement_threshold = float(disagreement_threshold)
        self.abstain_flat_prob = float(abstain_flat_prob)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "agents": [a.name for a in self.agents],
            "weights": self.weights.tolist(),
            "confidence_threshold": self.confidence_threshold,
            "disagreement_threshold": self.disagreement_threshold,
            "abstain_flat_prob": self.abstain_flat_prob,
        }

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        """Fit every agent on the same rows."""
        self._fit_inputs(X, y, sample_weight)
        for agent in self.agents:
            agent.fit(X, y, sample_weight=sample_weight)
        return self

    def agent_probas(self, X: pd.DataFrame) -> np.ndarray:
        """(agents, rows, 3) probabilities of each agent."""
        if self.feature_names_ is None:
            msg = "meta: predict called before fit"
            raise NotFittedError(msg)
        probas = np.stack([np.asarray(a.predict_proba(X), dtype=np.float64) for a in self.agents])
        if probas.shape[1:] != (len(X), 3):
            msg = f"meta: an agent returned probabilities of shape {probas.shape[1:]}"
            raise ModelError(msg)
        return probas

    def combine(self, probas: np.ndarray) -> pd.DataFrame:
        """Ensemble probabilities, confidence, disagreement and abstain mask from agent probas."""
        confidence = np.clip((probas.max(axis=2) - 1.0 / 3.0) * 1.5, 0.0, 1.0)  # (agents, rows)
        votes = self.weights[:, None] * confidence
        total = votes.sum(axis=0)
        equal = np.broadcast_to(self.weights[:, None], votes.shape)
        votes = np.where(total > 0, votes, equal)
        combined = (votes[:, :, None] * probas).sum(axis=0) / votes.sum(axis=0)[:, None]
        scores = probas[:, :, 2] - probas[:, :, 0]
        disagreement = scores.std(axis=0)
        top = combined.max(axis=1)
        abstain = (top < self.confidence_threshold) | (disagreement > self.disagreement_threshold)
        rest = (1.0 - self.abstain_flat_prob) / 2.0
        final = combined.copy()
        final[abstain] = (rest, self.abstain_flat_prob, rest)
        return pd.DataFrame(
            {
                "p_down": final[:, 0],
                "p_flat": final[:, 1],
                "p_up": final[:, 2],
                "confidence": top,
                "disagreement": disagreement,
                "abstain": abstain,
            }
        )

    def decide(self, X: pd.DataFrame) -> pd.DataFrame:
        """Frame indexed like X: p_down, p_flat, p_up (after abstention), the ensemble's top
        probability before abstention (`confidence`), `disagreement` and the `abstain` mask."""
        frame = self.combine(self.agent_probas(X))
        frame.index = X.index
        return frame

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        frame = self.combine(self.agent_probas(X))
        return frame[["p_down", "p_flat", "p_up"]].to_numpy()

    def abstain_mask(self, X: pd.DataFrame) -> np.ndarray:
        return self.combine(self.agent_probas(X))["abstain"].to_numpy()

    def save(self, path: Path) -> None:
        directory = self._write_meta(path, {"n_agents": len(self.agents)})
        for i, agent in enumerate(self.agents):
            agent.save(directory / f"agent_{i}")

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        params = dict(meta["params"])
        params.pop("agents")
        agents = [load_model(Path(path) / f"agent_{i}") for i in range(meta["n_agents"])]
        model = cls(agents, **params)
        model.feature_names_ = tuple(meta["feature_names"])
        return model

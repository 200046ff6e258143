"""Classification metrics for 3-class direction probabilities ([down, flat, up])."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support

from ml.errors import MLError
from ml.labels import encode_classes

__all__ = [
    "brier_multiclass",
    "classification_metrics",
    "predicted_class_counts",
    "single_class_warning",
]

_LABELS = [0, 1, 2]
_CLASS_NAMES = {-1: "down", 0: "flat", 1: "up"}


def _inputs(y_true: pd.Series | np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y as 0/1/2 (given as -1/0/+1) and a checked (n, 3) probability matrix."""
    target = encode_classes(np.asarray(y_true))
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (len(target), 3):
        msg = f"proba must have shape ({len(target)}, 3), got {p.shape}"
        raise MLError(msg)
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        msg = "proba rows must be finite, non-negative and sum to 1"
        raise MLError(msg)
    return target, p


def brier_multiclass(y_true: pd.Series | np.ndarray, proba: np.ndarray) -> float:
    """Mean over rows of sum_k (p_k - 1[y = k])^2; 0 is perfect, 2 is the worst."""
    target, p = _inputs(y_true, proba)
    onehot = np.eye(3)[target]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def classification_metrics(y_true: pd.Series | np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """accuracy, macro precision/recall/F1, log loss and multiclass Brier of y (-1/0/+1).

    The predicted class is the argmax of proba. Classes absent from both y and the predictions
    count as 0 in the macro averages (zero_division=0), so folds stay comparable.
    """
    target, p = _inputs(y_true, proba)
    if len(target) == 0:
        msg = "no labelled rows to score"
        raise MLError(msg)
    predicted = p.argmax(axis=1)
    # A confident wrong 0 would make log loss infinite; clip and renormalise like sklearn did.
    clipped = np.clip(p, 1e-15, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    precision, recall, f1, _ = precision_recall_fscore_support(
        target, predicted, labels=_LABELS, average="macro", zero_division=0
    )
    return {
        "n": float(len(target)),
        "accuracy": float(accuracy_score(target, predicted)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "log_loss": float(log_loss(target, clipped, labels=_LABELS)),
        "brier": brier_multiclass(y_true, p),
    }


def predicted_class_counts(proba: np.ndarray) -> dict[int, int]:
    """How often each class (-1/0/+1) is the argmax of the (n, 3) [down, flat, up] rows."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        msg = f"proba must have shape (n, 3), got {p.shape}"
        raise MLError(msg)
    counts = np.bincount(p.argmax(axis=1), minlength=3) if len(p) else np.zeros(3, dtype=int)
    return {cls: int(counts[i]) for i, cls in enumerate((-1, 0, 1))}


def single_class_warning(proba: np.ndarray, max_share: float = 0.99) -> str | None:
    """A sentence when one class is the argmax of more than `max_share` of the rows (a model
    that has collapsed onto one class, e.g. always 'flat'), else None."""
    counts = predicted_class_counts(proba)
    total = sum(counts.values())
    if not total:
        return None
    cls, n = max(counts.items(), key=lambda kv: kv[1])
    if n / total <= max_share and n != total:
        return None
    return (
        f"predicts '{_CLASS_NAMES[cls]}' on {n} of {total} out-of-sample rows "
        f"({n / total:.2%}): effectively a single-class model"
    )

"""The errors the ML core raises. All derive from MLError so callers can catch the family."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FeatureInputError",
    "LabelError",
    "MLError",
    "ModelError",
    "NotFittedError",
    "SplitError",
]


class MLError(Exception):
    """Base class of every error raised by `ml`."""


class ConfigError(MLError, ValueError):
    """A configuration value is invalid or a configuration mapping has unknown keys."""


class FeatureInputError(MLError, ValueError):
    """A bar frame cannot be turned into features (missing columns, unsorted, bad values)."""


class LabelError(MLError, ValueError):
    """Labels cannot be computed from the given bars or parameters."""


class SplitError(MLError, ValueError):
    """A walk-forward split cannot be built with the given sizes."""


class ModelError(MLError):
    """A model cannot be fitted, used, saved or loaded."""


class NotFittedError(ModelError):
    """predict_proba or save was called before fit."""

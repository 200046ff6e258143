"""Shared helper: build a frozen config dataclass from a mapping, rejecting unknown keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from ml.errors import ConfigError

__all__ = ["config_from_mapping"]

T = TypeVar("T")


def config_from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Return cls(**values); unknown keys raise ConfigError naming them and the allowed keys."""
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - allowed)
    if unknown:
        msg = (
            f"unknown {cls.__name__} keys: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
        raise ConfigError(msg)
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)

"""Where the live plane gets its model: the registry alias `champion`, or a bundle in hand.

A provider is asked for the bundle on every bar; the champion provider answers from memory and
only every `check_every_s` seconds asks the registry whether the alias moved, so the per-bar
cost is a clock read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ml.bundle import ModelBundle, load_bundle

__all__ = ["ChampionProvider", "LocalBundleProvider", "ModelProvider", "ModelUnavailableError"]

logger = logging.getLogger(__name__)

CHAMPION = "champion"


class ModelUnavailableError(RuntimeError):
    """No deployable model: the registry has no champion for this series, or it cannot load."""


class ModelProvider(Protocol):
    def bundle(self) -> ModelBundle:
        """The bundle to predict with now."""
        ...

    @property
    def version(self) -> str:
        """A label of the bundle's version, stamped on every prediction."""
        ...


class LocalBundleProvider:
    """A fixed bundle (tests, parity runs, benchmarks)."""

    def __init__(self, bundle: ModelBundle, version: str = "local") -> None:
        self._bundle = bundle
        self._version = version

    def bundle(self) -> ModelBundle:
        return self._bundle

    @property
    def version(self) -> str:
        return self._version


class ChampionProvider:
    """The bundle behind `champion` of one registered model, reloaded when the alias moves.

    `tracker` is an infra.tracking.ModelTracker (alias_version, download_model). A failed check
    keeps the bundle already loaded and logs; only the first load raises ModelUnavailableError.
    """

    def __init__(
        self,
        tracker: Any,
        model_name: str,
        cache_dir: Path,
        check_every_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if check_every_s < 0:
            msg = f"check_every_s must be >= 0, got {check_every_s}"
            raise ValueError(msg)
        self._tracker = tracker
        self.model_name = model_name
        self._cache_dir = Path(cache_dir)
        self._check_every_s = float(check_every_s)
        self._clock = clock
        self._bundle: ModelBundle | None = None
        self._version = ""
        self._checked_at = float("-inf")

    @property
    def version(self) -> str:
        return self._version

    def bundle(self) -> ModelBundle:
        now = self._clock()
        if self._bundle is None or now - self._checked_at >= self._check_every_s:
            self._checked_at = now
            self._refresh()
        assert self._bundle is not None
        return self._bundle

    def _refresh(self) -> None:
        try:
            mv = self._tracker.alias_version(self.model_name, CHAMPION)
        except Exception as exc:  # the registry is remote: any failure means "ask again later"
            if self._bundle is None:
                msg = f"cannot reach the model registry for {self.model_name}: {exc}"
                raise ModelUnavailableError(msg) from exc
            logger.warning("event=registry_check_failed model=%s error=%s", self.model_name, exc)
            return
        if mv is None:
            if self._bundle is None:
                msg = (
                    f"registered model {self.model_name!r} has no {CHAMPION!r} alias; run the "
                    "research pipeline so a model gets promoted"
                )
                raise ModelUnavailableError(msg)
            logger.warning(
                "event=champion_alias_gone model=%s keeping=v%s", self.model_name, self._version
            )
            return
        version = str(mv.version)
        if self._bundle is not None and version == self._version:
            return
        try:
            path, got = self._tracker.download_model(self.model_name, CHAMPION, self._cache_dir)
            bundle = load_bundle(Path(path))
        except Exception as exc:
            if self._bundle is None:
                msg = f"cannot load champion v{version} of {self.model_name}: {exc}"
                raise ModelUnavailableError(msg) from exc
            logger.error(
                "event=champion_load_failed model=%s version=%s error=%s",
                self.model_name,
                version,
                exc,
            )
            return
        previous = self._version
        self._bundle, self._version = bundle, str(got)
        logger.info(
            "event=champion_loaded model=%s version=%s previous=%s history=%d",
            self.model_name,
            self._version,
            previous or "-",
            bundle.history,
        )

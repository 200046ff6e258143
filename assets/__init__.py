"""Dagster assets: thin adapters around the pure packages."""

import warnings

from dagster import BetaWarning

# Output(data_version=...) is how the assets pin the exact rows a run read (the data version);
# Dagster marks that parameter beta, a notice that would otherwise repeat on every run.
warnings.filterwarnings("ignore", message="Parameter `data_version`", category=BetaWarning)

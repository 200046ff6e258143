"""Two real CSVs, the way users get them, from the S&P 500 and NASDAQ Composite daily bars that
ship with arch (arch.data, 1999-2018): `spx_yahoo.csv` as Yahoo Finance writes it (Date, Open,
High, Low, Close, Adj Close, Volume; ISO dates) and `ixic_dmy.csv` with dd.mm.yyyy dates, as a
European spreadsheet exports them (the first days of January are all <= 12, so only the whole
column tells day from month). Used by examples/walkthrough.sh.

    python -m examples.walkthrough_csvs OUT_DIR [--start 2013-01-01] [--end 2016-12-31]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

__all__ = ["write_sample_csvs"]

logger = logging.getLogger(__name__)

COLUMNS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]


def _window(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    out = frame.loc[start:end, COLUMNS].copy()
    out.index.name = "Date"
    return out


def write_sample_csvs(out_dir: Path, start: str, end: str) -> dict[str, Path]:
    """Write both CSVs for sessions in [start, end] into `out_dir`; returns name -> path."""
    from arch.data import nasdaq, sp500

    out_dir.mkdir(parents=True, exist_ok=True)
    spx = _window(sp500.load(), start, end)
    spx.index = spx.index.strftime("%Y-%m-%d")
    ixic = _window(nasdaq.load(), start, end)
    ixic.index = ixic.index.strftime("%d.%m.%Y")
    paths = {"spx_yahoo": out_dir / "spx_yahoo.csv", "ixic_dmy": out_dir / "ixic_dmy.csv"}
    spx.to_csv(paths["spx_yahoo"], float_format="%.6f")
    ixic.to_csv(paths["ixic_dmy"], float_format="%.6f")
    for path in paths.values():
        logger.info("wrote %s", path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2016-12-31")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_sample_csvs(args.out_dir, args.start, args.end)


if __name__ == "__main__":
    main()

"""The rate tables the built-in engine uses: the CSV files kept next to the rules (`domain/tax/data/`).

Read once per process. The files are data with a source and a check date on every row; README ("Tax") says how
they are kept current.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from domain.tax import RateTable

RATE_FILES = ("eu_vat_rates.csv", "us_sales_tax_rates.csv")


def rate_file_text(name: str) -> str:
    return resources.files("domain.tax").joinpath("data", name).read_text(encoding="utf-8")


@cache
def default_rate_table() -> RateTable:
    return RateTable.from_csv(*(rate_file_text(name) for name in RATE_FILES))

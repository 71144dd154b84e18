"""bench/fraud_bias.py: its frozen builtin-v1 still gives v1's numbers, and its population shows what changed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from domain.fraud import BUILTIN_MODEL, FraudFeatures, FraudPolicy

UNIT = 1_000_000
DAY = 86_400


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "fraud_bias.py"
    spec = importlib.util.spec_from_file_location("fraud_bias", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fraud_bias"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def features(**overrides: Any) -> FraudFeatures:
    base: dict[str, Any] = dict(
        amount_micros=50 * UNIT, currency="USD", customer_median_amount_micros=40 * UNIT,
        customer_completed_count=12, payments_last_hour=0, payments_last_day=1,
        payment_method_age_seconds=90 * DAY, payment_method_previous_uses=8, card_country="GB",
        customer_country="GB", prior_failed_last_day=0,
    )
    return FraudFeatures(**{**base, **overrides})


@pytest.mark.parametrize(("overrides", "uncapped", "action"), [
    ({}, 0, "allow"),
    # the first purchase abroad that builtin-v1 challenged
    ({"customer_completed_count": 0, "customer_median_amount_micros": None, "payment_method_age_seconds": 120,
      "payment_method_previous_uses": 0, "card_country": "US"}, 45, "require_3ds"),
    ({"customer_completed_count": 0, "customer_median_amount_micros": None, "payments_last_hour": 4,
      "payments_last_day": 4, "prior_failed_last_day": 3, "payment_method_age_seconds": 60,
      "payment_method_previous_uses": 0}, 65, "review"),
    ({"amount_micros": 10_000 * UNIT, "payments_last_hour": 9, "payments_last_day": 30, "prior_failed_last_day": 5,
      "payment_method_age_seconds": None, "payment_method_previous_uses": 0, "card_country": "NG"}, 120, "review"),
    ({"payment_method_age_seconds": 3600, "payment_method_previous_uses": 3, "payments_last_day": 8}, 14, "allow"),
])
def test_the_frozen_v1_gives_v1s_numbers(bench: ModuleType, overrides: dict[str, Any], uncapped: int,
                                         action: str) -> None:
    a = bench.score_v1(features(**overrides), FraudPolicy())
    assert (a.uncapped_score, a.score, a.action, a.model) == (uncapped, min(100, uncapped), action, "builtin-v1")


def test_v1_challenged_exactly_the_first_purchases_with_a_foreign_card_and_the_current_model_none(
        bench: ModuleType) -> None:
    purchases = bench.population(per_country=4, seed=1)
    results = bench.score_in_process(purchases, FraudPolicy())
    assert set(results) == {"builtin-v1", BUILTIN_MODEL}
    foreign = [p.card_country != p.customer_country for p in purchases]
    assert [a.flagged for _, a in results["builtin-v1"]] == foreign
    assert not any(a.flagged for _, a in results[BUILTIN_MODEL])
    assert sum(foreign) == 2 * (len(bench.COUNTRIES) - 1)  # every other customer abroad pays with a US card

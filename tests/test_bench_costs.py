"""The pure parts of bench/payments.py: the API's request-duration histogram read from its /metrics text.

The bench is a script, not a package: it is loaded from its file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_payments", ROOT / "bench" / "payments.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_post_histogram_delta_and_quantiles(bench: ModuleType) -> None:
    def scrape(fast: int, slow: int, ok: int) -> str:
        lines = []
        for status, counts in (("503", (fast, fast + slow, fast + slow)), ("201", (0, ok, ok))):
            for le, n in zip(("0.1", "1.0", "+Inf"), counts, strict=True):
                lines.append(f'paysaga_http_request_duration_seconds_bucket{{le="{le}",method="POST",'
                             f'route="/v1/payments",status="{status}"}} {n}.0')
        lines.append('paysaga_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/v1/payments",'
                     'status="200"} 99.0')
        return "\n".join(lines) + "\n"

    delta = bench.histogram_delta(bench.post_histogram(scrape(10, 5, 7)), bench.post_histogram(scrape(4, 1, 7)))
    assert delta == {"503": {0.1: 6, 1.0: 10, float("inf"): 10}}  # no new 201, no GET
    assert bench.bucket_quantile(delta["503"], 0.5) == 0.1
    assert bench.bucket_quantile(delta["503"], 0.95) == 1.0

"""The pure parts of bench/payments.py: history costs, the API's counters (webhooks, durations), /proc stat lines.

The bench is a script, not a package: it is loaded from its file. Expected counts were read off the recorded
histories' event types by hand (tests/histories/*.json).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from temporalio.client import WorkflowHistory

from tests.benches import load_bench

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("payments")


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())


def test_happy_path_costs(bench: ModuleType) -> None:
    costs = bench.history_costs(recorded("payment_happy_path_lean_v1").events)
    assert {k: v for k, v in costs.items() if k != "first_task_wait_ms"} == {
        "workflow_tasks": 3, "events": 24, "local_activities": 4, "other_markers": 1, "activities": 0,
        "timers": 1, "signals": 1, "updates": 1, "upserts": 3, "visibility_writes": 5, "task_failures": 0,
    }
    assert costs["first_task_wait_ms"] == pytest.approx(1.0)  # 17:26:38.320 → .321


def test_one_step_submission_saves_a_local_activity(bench: ModuleType) -> None:
    """The provider call and its transition are one step: one marker (and event) fewer than the shape before."""
    costs = bench.history_costs(recorded("payment_happy_path").events)
    assert {k: v for k, v in costs.items() if k != "first_task_wait_ms"} == {
        "workflow_tasks": 3, "events": 23, "local_activities": 3, "other_markers": 1, "activities": 0,
        "timers": 1, "signals": 1, "updates": 1, "upserts": 3, "visibility_writes": 5, "task_failures": 0,
    }


def test_step_by_step_shape_schedules_an_activity(bench: ModuleType) -> None:
    costs = bench.history_costs(recorded("payment_happy_path_pre_lean").events)
    assert (costs["workflow_tasks"], costs["activities"], costs["local_activities"], costs["other_markers"]) == \
        (5, 1, 4, 0)
    assert costs["visibility_writes"] == 1 + 2 + 1


def test_a_running_workflow_has_no_close_write_yet(bench: ModuleType) -> None:
    events = list(recorded("payment_three_ds_abandoned").events)[:-1]  # as it was before it timed out
    costs = bench.history_costs(events)
    assert costs["upserts"] == 3
    assert costs["visibility_writes"] == 1 + 3


def test_mean_and_max(bench: ModuleType) -> None:
    samples = [bench.history_costs(recorded(n).events) for n in ("payment_happy_path", "payment_compensation")]
    summary = bench.mean_and_max(samples)
    assert summary["timers"] == {"mean": 4.0, "max": 7}
    assert summary["workflow_tasks"] == {"mean": 5.5, "max": 8}
    assert bench.mean_and_max([]) == {}


def test_webhook_counters(bench: ModuleType) -> None:
    text = (
        "# HELP paysaga_webhook_events_total Webhook deliveries by outcome\n"
        "# TYPE paysaga_webhook_events_total counter\n"
        'paysaga_webhook_events_total{outcome="no-op"} 28.0\n'
        'paysaga_webhook_events_total{outcome="accepted"} 23.0\n'
        'paysaga_webhook_events_created{outcome="accepted"} 1.7961475624626422e+09\n'
    )
    assert bench.webhook_counters(text) == {"no-op": 28, "accepted": 23}


def test_proc_stat_with_spaces_and_parentheses_in_the_command(bench: ModuleType) -> None:
    line = "4242 (postgres: io (worker) 0) S 4200 4200 4200 0 -1 4194560 120 0 0 0 57 13 0 0 20 0 1 0 9 1 2 3\n"
    assert bench.parse_proc_stat(line) == (4200, 70)


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

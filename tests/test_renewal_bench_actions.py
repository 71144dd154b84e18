"""bench/renewals.py counts Temporal actions by Temporal Cloud's documented rules; checked on recorded histories
whose billable events were read off by hand (tests/histories/*.json)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from tests.benches import load_bench

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("renewals")


def events(name: str) -> list[HistoryEvent]:
    return list(WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text()).events)


def test_markers_of_one_workflow_task_are_one_action_and_change_versions_are_free(bench: ModuleType) -> None:
    # started 1; markers in 2 workflow tasks (the patch and two local activities in the first, one local activity
    # in the second) 2; PaymentStatus upserts 2 (the TemporalChangeVersion one is exempt); timer 1; update 1;
    # signal 1.
    assert bench.actions_in(events("payment_happy_path")) == 8


def test_a_dunning_ladder_counts_its_activities_timers_children_and_stage_upserts(bench: ModuleType) -> None:
    # started 1; markers in 5 workflow tasks 5; advice and notice twice 4; two timers 2; DunningStage upserts 2;
    # two child payment workflows initiated 2.
    assert bench.actions_in(events("dunning_recovered_at_stage_2_pre_local")) == 16


def test_a_dunning_ladder_with_local_advice_and_notices(bench: ModuleType) -> None:
    # started 1; markers in 5 workflow tasks (advice and notices among them) 5; two timers 2; DunningStage upserts
    # 2; two child payment workflows initiated 2. Before its first wait: 3 (start, one marker action, the timer).
    history = events("dunning_recovered_at_stage_2")
    assert bench.actions_in(history) == 12
    first_timer = next(n for n, e in enumerate(history) if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)
    assert bench.actions_in(history[:first_timer + 1]) == 3


def test_a_renewal_run_costs_its_start_and_its_batch_activities(bench: ModuleType) -> None:
    assert bench.actions_in(events("renewal_run_continue_as_new")) == 4

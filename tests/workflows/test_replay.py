"""Replay every recorded workflow history (each kind the worker runs) against today's workflow code: a change that
would break running workflows (non-determinism) fails here, before it reaches a worker.

Histories are recorded by the tests (tests/recording.py): `PAYSAGA_RECORD_HISTORIES=1 .venv/bin/pytest tests`.
Re-record only when a change is deliberately incompatible (and then version it with workflow.patched()).
Keep histories of older code under their own names (payment_compensation_pre_dead_letter.json predates the
`dead-letter-v1` patch): they prove runs started before a patch still replay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from worker import WORKFLOWS

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded_for_every_workflow_kind() -> None:
    assert len(FILES) >= 4, f"expected recorded histories in {HISTORIES}; record them with PAYSAGA_RECORD_HISTORIES=1"
    kinds = {load(p).events[0].workflow_execution_started_event_attributes.workflow_type.name for p in FILES}
    assert kinds == {w.__name__ for w in WORKFLOWS}, f"histories cover {sorted(kinds)}"


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


# Each history replays in the sandbox (which refuses a non-deterministic call) and without it, as the production
# worker runs workflows.
RUNNERS: dict[str, WorkflowRunner] = {"sandboxed": SandboxedWorkflowRunner(),
                                      "unsandboxed": UnsandboxedWorkflowRunner()}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_replay(path: Path, runner: str) -> None:
    history = load(path)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=RUNNERS[runner])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"

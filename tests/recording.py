"""Recording workflow histories for the replay test (tests/workflows/test_replay.py).

`PAYSAGA_RECORD_HISTORIES=1 make test` (or pytest on the tests that record) writes `tests/histories/<kind>_<case>.json`.
Re-record only when a change is deliberately incompatible, and version that change with workflow.patched().
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"
RECORD = os.environ.get("PAYSAGA_RECORD_HISTORIES") == "1"


async def record_history(handle: WorkflowHandle[Any, Any], case: str, kind: str = "payment") -> None:
    if not RECORD:
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    # Failure stack traces name files by absolute path: keep machine paths out of the repository.
    text = history.to_json().replace(str(ROOT) + "/", "").replace(str(Path.home()) + "/", "~/")
    (HISTORIES / f"{kind}_{case}.json").write_text(text + "\n")

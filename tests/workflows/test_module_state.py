"""Workflow modules hold no state a run could change and another run could see.

The production worker runs workflow code without Temporal's import sandbox, whose fresh copy of a workflow module
per run is what would otherwise isolate runs from each other's module globals. So the rule is kept statically: no
`global`/`nonlocal`, and no module- or class-level value of a mutable kind (list, dict, set, or a call building
one). The sandbox's other half, refusing non-deterministic calls, still applies wherever workflows are tested:
these tests and the replay of recorded histories run them in the sandbox.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
MUTABLE_BUILDERS = {"list", "dict", "set", "bytearray", "defaultdict", "deque", "Counter", "OrderedDict"}


def _mutable(value: ast.expr | None) -> bool:
    if isinstance(value, ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp):
        return True
    if isinstance(value, ast.Call):
        fn = value.func
        name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
        return name in MUTABLE_BUILDERS
    return False


def shared_state(source: str) -> list[str]:
    """Each place in `source` where a value outlives a run: `line: what`."""
    tree = ast.parse(source)
    found = [f"{n.lineno}: {type(n).__name__.lower()} statement" for n in ast.walk(tree)
             if isinstance(n, ast.Global | ast.Nonlocal)]
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for stmt in body:
            value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
            if _mutable(value):
                found.append(f"{stmt.lineno}: mutable value {ast.unparse(stmt)[:60]}")
    return found


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.py")), ids=lambda p: p.name)
def test_no_workflow_module_holds_shared_mutable_state(path: Path) -> None:
    assert shared_state(path.read_text()) == [], path


@pytest.mark.parametrize("source, caught", [
    ("SEEN = set()\n", True),
    ("FINAL = {s for s in 'ab'}\n", True),
    ("class W:\n    pending: list[str] = []\n", True),
    ("def f():\n    global X\n", True),
    ("import collections\nQ = collections.deque()\n", True),
    ("FINAL = frozenset({'a'})\nLIMIT = 3\nclass W:\n    def __init__(self):\n        self.seen = set()\n", False),
])
def test_the_rule_itself(source: str, caught: bool) -> None:
    assert bool(shared_state(source)) is caught

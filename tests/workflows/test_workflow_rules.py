"""Two rules every workflow module keeps, checked on its source.

The production worker runs workflow code without Temporal's import sandbox (the tests and the replay of recorded
histories still run it in the sandbox). The sandbox's two guards are therefore also kept statically here:

- isolation: a workflow module holds no state a run could change and another run could see — no
  `global`/`nonlocal`, no module- or class-level value of a mutable kind (list, dict, set, or a call building one);
- determinism: no import of a module whose answers differ between a run and its replay (clock, randomness, ids,
  the environment, I/O), and no call of the wall clock through `datetime`/`date`; `workflow.now()`,
  `workflow.random()` and `workflow.uuid4()` are the deterministic ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
MUTABLE_BUILDERS = {"list", "dict", "set", "bytearray", "defaultdict", "deque", "Counter", "OrderedDict"}
NON_DETERMINISTIC_MODULES = {"time", "random", "secrets", "uuid", "os", "socket", "threading", "subprocess",
                             "multiprocessing", "urllib", "http", "httpx", "requests", "asyncpg", "stripe", "boto3"}
WALL_CLOCK_CALLS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}
WALL_CLOCK_OWNERS = {"datetime", "date"}


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


def non_deterministic(source: str) -> list[str]:
    """Each import or call in `source` whose answer a replay would not reproduce: `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in NON_DETERMINISTIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in NON_DETERMINISTIC_MODULES:
                found.append(f"{node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) \
                else ""
            if node.func.attr in WALL_CLOCK_CALLS and owner_name in WALL_CLOCK_OWNERS:
                found.append(f"{node.lineno}: {ast.unparse(node)[:60]}")
    return found


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.py")), ids=lambda p: p.name)
def test_no_workflow_module_holds_shared_mutable_state(path: Path) -> None:
    assert shared_state(path.read_text()) == [], path


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.py")), ids=lambda p: p.name)
def test_no_workflow_module_reaches_for_the_clock_randomness_or_io(path: Path) -> None:
    assert non_deterministic(path.read_text()) == [], path


@pytest.mark.parametrize("source, caught", [
    ("SEEN = set()\n", True),
    ("FINAL = {s for s in 'ab'}\n", True),
    ("class W:\n    pending: list[str] = []\n", True),
    ("def f():\n    global X\n", True),
    ("import collections\nQ = collections.deque()\n", True),
    ("FINAL = frozenset({'a'})\nLIMIT = 3\nclass W:\n    def __init__(self):\n        self.seen = set()\n", False),
])
def test_the_isolation_rule_itself(source: str, caught: bool) -> None:
    assert bool(shared_state(source)) is caught


@pytest.mark.parametrize("source, caught", [
    ("import time\n", True),
    ("import os.path\n", True),
    ("from random import choice\n", True),
    ("from uuid import uuid4\n", True),
    ("from datetime import datetime\nx = datetime.now()\n", True),
    ("import datetime\nx = datetime.date.today()\n", True),
    ("from datetime import UTC, datetime, time, timedelta\nx = workflow.now() + timedelta(days=1)\n", False),
    ("from temporalio import workflow\nx = workflow.uuid4()\ny = workflow.random().random()\n", False),
])
def test_the_determinism_rule_itself(source: str, caught: bool) -> None:
    assert bool(non_deterministic(source)) is caught

"""The import rules of the house (README, "Architecture"): every module's imports, walked with `ast`.

    domain/     pure rules                      imports nothing of ours but domain/
    contracts/  what layers exchange            domain/ (and pydantic, temporalio's plain types)
    activities/ every side effect               domain/, contracts/, paysaga's db/settings/logs/json_text
    workflows/  deterministic orchestration     domain/, contracts/, activities/ (the activity references)
    services/   use cases and read models       domain/, contracts/, activities/, paysaga's db/settings/temporal/logs/
                                                json_text
    api/        HTTP                            services/, contracts/, domain/, paysaga's settings/logs
    paysaga/    settings, db, CLI, dev stack    contracts/, services/ (the CLI), paysaga/; the CLI's process
                                                commands import what they run (api.app, worker, the sandbox)
    worker.py   the worker's composition root   anything; imported only by the CLI's `worker` command

A module that imports across a forbidden arrow fails this test, naming the file, the line and the import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"domain", "contracts", "activities", "workflows", "services", "api", "paysaga", "worker"}
PAYSAGA_BASE = {"paysaga.db", "paysaga.settings", "paysaga.logs", "paysaga.json_text"}

# package → which of our top-level packages (or exact modules) it may import
ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    "contracts": {"contracts", "domain"},
    "activities": {"activities", "contracts", "domain", *PAYSAGA_BASE},
    "workflows": {"workflows", "activities", "contracts", "domain"},
    "services": {"services", "activities", "contracts", "domain", "paysaga.temporal", *PAYSAGA_BASE},
    "api": {"api", "services", "contracts", "domain", "paysaga.settings", "paysaga.logs"},
    "paysaga": {"paysaga", "contracts", "services"},
}
# Third-party libraries a layer must not reach for: the domain is pure, contracts are I/O free, the API runs no SQL.
FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "domain": {"temporalio", "asyncpg", "fastapi", "stripe", "httpx", "pydantic", "structlog"},
    "contracts": {"asyncpg", "fastapi", "stripe", "httpx", "structlog", "temporalio.client", "temporalio.worker",
                  "temporalio.activity", "temporalio.workflow"},
    "api": {"asyncpg"},
    "workflows": {"asyncpg", "httpx", "stripe", "fastapi"},
}
# The CLI starts the processes: its `api`, `worker` and `sandbox-network` commands import what they run.
EXCEPTIONS = {("paysaga/cli.py", "api", "api.app"), ("paysaga/cli.py", "worker", "worker"),
              ("paysaga/cli.py", "sandbox_network", "activities.providers.sandbox.network")}


@dataclass(frozen=True)
class Import:
    path: str
    line: int
    module: str
    function: str | None


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            scope = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Import):
                found.extend(Import(rel(path), child.lineno, a.name, function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Import(rel(path), child.lineno, child.module, function))
                # `from activities import stores` names a submodule: check it as such too
                found.extend(Import(rel(path), child.lineno, f"{child.module}.{a.name}", function)
                             for a in child.names if (ROOT / child.module.replace(".", "/") / a.name).exists()
                             or (ROOT / child.module.replace(".", "/") / f"{a.name}.py").exists())
            visit(child, scope)

    visit(tree, None)
    return found


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def layer_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def app_modules() -> list[Path]:
    files = [p for package in ALLOWED for p in (ROOT / package).rglob("*.py")]
    return sorted([*files, ROOT / "worker.py"])


def allowed(layer: str, module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED[layer])


def violations() -> list[str]:
    found = []
    for path in app_modules():
        layer = layer_of(path)
        for imp in imports_of(path):
            top = imp.module.split(".")[0]
            if layer == "worker" or top not in OURS:
                bad_lib = any(imp.module == lib or imp.module.startswith(lib + ".")
                              for lib in FORBIDDEN_LIBRARIES.get(layer, ()))
                if bad_lib:
                    found.append(f"{imp.path}:{imp.line} imports {imp.module} ({layer}/ must not)")
                continue
            if (imp.path, imp.function, imp.module) in EXCEPTIONS:
                continue
            if not allowed(layer, imp.module):
                found.append(f"{imp.path}:{imp.line} imports {imp.module} ({layer}/ may import "
                             f"{', '.join(sorted(ALLOWED[layer]))})")
    return found


def test_no_module_imports_across_a_forbidden_arrow() -> None:
    assert violations() == []


def test_only_the_cli_worker_command_imports_worker() -> None:
    importers = [f"{imp.path}:{imp.line}" for path in app_modules() for imp in imports_of(path)
                 if imp.module.split(".")[0] == "worker" and layer_of(path) != "worker"]
    assert importers == ["paysaga/cli.py:" + str(_line_of("paysaga/cli.py", "worker", "worker"))]


def _line_of(path: str, function: str, module: str) -> int:
    return next(imp.line for imp in imports_of(ROOT / path) if imp.function == function and imp.module == module)


@pytest.mark.parametrize(("layer", "module", "ok"), [
    ("activities", "workflows.policies", False), ("api", "workflows.payment", False),
    ("api", "activities.stores.payments", False), ("paysaga", "api.payments", False),
    ("domain", "contracts.payments", False), ("services", "workflows.payment", False),
    ("api", "services.payments", True), ("workflows", "activities.payments", True),
    ("services", "paysaga.temporal", True), ("activities", "paysaga.temporal", False),
])
def test_the_rules_themselves(layer: str, module: str, ok: bool) -> None:
    """The checker would catch each of these arrows (so a rule cannot silently stop applying)."""
    assert allowed(layer, module) is ok


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from workflows.payment import PaymentWorkflow\n")
    assert [(i.module, i.function) for i in imports_of(source)] == [("workflows.payment", "f")]

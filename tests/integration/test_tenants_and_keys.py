"""Operators manage tenants and keys from the checkout: `paysaga tenants …` and `paysaga keys …` find the dev
stack's database with no environment variables; a key can carry fewer roles; a revoked key is refused at once."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from paysaga.settings import DEV_ENV_NAME
from tests.stack import Stack

PAYSAGA = [sys.executable, "-m", "paysaga.cli"]


async def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_ADMIN_URL", "DATABASE_URL",
                                                              "PAYSAGA_DATABASE_ADMIN_URL")}
    proc = await asyncio.create_subprocess_exec(*PAYSAGA, *args, cwd=cwd, env={**base, **(env or {})},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def value(output: str, name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", output, re.M)
    assert match, output
    return match.group(1)


@pytest.fixture
def checkout(tmp_path: Path, stack: Stack) -> Path:
    """A directory like the checkout while `make run` is up: `.paysaga/dev.env` says where the stack is."""
    (tmp_path / ".paysaga").mkdir()
    (tmp_path / ".paysaga" / DEV_ENV_NAME).write_text(f"DATABASE_ADMIN_URL={stack.db.admin_url}\n")
    return tmp_path


async def test_tenants_and_keys_from_the_checkout_with_no_environment(stack: Stack, checkout: Path) -> None:
    name = f"shop-{os.getpid()}-{id(checkout) % 10_000}"
    code, out = await cli("tenants", "create", name, "--role", "payments", "--role", "finance", cwd=checkout)
    assert code == 0, out
    tenant_id, owner_key = value(out, "tenant_id"), value(out, "api_key")
    code, out = await cli("tenants", "list", cwd=checkout)
    assert code == 0 and tenant_id in out and name in out

    code, out = await cli("keys", "create", "--tenant", name, "--role", "payments", "--name", "shop front",
                          cwd=checkout)
    assert code == 0, out
    shop_key_id, shop_key = value(out, "key_id"), value(out, "api_key")
    async with stack.http(shop_key) as shop, stack.http(owner_key) as owner:
        assert (await shop.get("/v1/payments")).status_code == 200
        refused = await shop.get("/v1/audit")  # a payments-only key cannot read the audit trail
        assert refused.status_code == 403 and refused.json()["type"].endswith("/forbidden")
        assert (await owner.get("/v1/audit")).status_code == 200

        code, out = await cli("keys", "list", "--tenant", tenant_id, cwd=checkout)
        assert code == 0 and shop_key_id in out and "shop front" in out
        line = next(ln for ln in out.splitlines() if ln.startswith(shop_key_id))
        assert line.split()[1] == "payments" and "-" != line.split()[4]  # last used: just now

        code, out = await cli("keys", "revoke", shop_key_id, cwd=checkout)
        assert code == 0 and "revoked" in out
        gone = await shop.get("/v1/payments")  # at once: no cache between the key and its row
        assert gone.status_code == 401 and gone.json()["type"].endswith("/unauthorized")
        assert (await owner.get("/v1/payments")).status_code == 200

    actions = await stack.admin_pool.fetch(  # type: ignore[attr-defined]
        "SELECT action, resource_id FROM paysaga.audit_log WHERE tenant_id = $1 AND actor = 'cli' ORDER BY audit_id",
        tenant_id)
    assert [(a["action"], a["resource_id"]) for a in actions][-2:] == [
        ("api_key.create", shop_key_id), ("api_key.revoke", shop_key_id)]


async def test_an_explicit_admin_url_wins_and_mistakes_are_explained(stack: Stack, checkout: Path) -> None:
    (checkout / ".paysaga" / DEV_ENV_NAME).write_text("DATABASE_ADMIN_URL=postgresql://nobody@127.0.0.1:1/none\n")
    code, out = await cli("tenants", "list", cwd=checkout, env={"DATABASE_ADMIN_URL": stack.db.admin_url})
    assert code == 0, out
    code, out = await cli("keys", "create", "--tenant", "no-such-tenant", cwd=checkout,
                          env={"DATABASE_ADMIN_URL": stack.db.admin_url})
    assert code != 0 and "no tenant" in out
    code, out = await cli("keys", "create", "--tenant", "x", "--role", "root", cwd=checkout,
                          env={"DATABASE_ADMIN_URL": stack.db.admin_url})
    assert code != 0 and "unknown roles" in out
    code, out = await cli("tenants", "list", cwd=checkout.parent)  # no dev stack here, no variable
    assert code != 0 and "make run" in out

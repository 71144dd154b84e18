"""Connection pool and the tenant-scoped transaction every query runs in."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from paysaga import json_text


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("jsonb", "json"):
        await conn.set_type_codec(typ, encoder=json_text.dumps, decoder=json_text.loads, schema="pg_catalog")


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's (jsonb as Python values)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: asyncpg has already rolled back an open
    transaction and dropped its listeners, and the code keeps no session state of its own (the tenant setting
    and advisory locks are transaction-local; the one LISTEN unlistens before it lets go). The default reset
    would cost a round trip per checkout."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, durable_commits: bool = True
                      ) -> asyncpg.Pool:
    """`durable_commits=False` answers a commit before its WAL is flushed (a crash of the server may lose the
    last fraction of a second of commits, never corrupt anything): only for bookkeeping that is safe to redo."""
    settings = {} if durable_commits else {"synchronous_commit": "off"}
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     reset=_keep_session, server_settings=settings)


async def analyze_grown_tables(pool: asyncpg.Pool, *, min_rows: int = 1000) -> list[str]:
    """Fresh planner statistics for the tables that outgrew theirs (see the migration of
    `paysaga.analyze_grown_tables`); answers the tables analyzed. For bulk writers, after each bulk step: the
    check is one catalogue query when nothing grew."""
    return [r[0] for r in await pool.fetch("SELECT * FROM paysaga.analyze_grown_tables($1)", min_rows)]


def _canonical_uuid(tenant_id: str) -> str | None:
    """The tenant id in the one spelling that is safe to put in SQL text (hex digits and dashes), or None."""
    try:
        parsed = uuid.UUID(str(tenant_id))
    except ValueError:
        return None
    return str(parsed) if str(parsed) == str(tenant_id) else None


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which row-level security sees exactly one tenant (set_config(..., is_local=true)).

    A tenant id is a UUID, so BEGIN and the setting go to the server as one simple query: one round trip
    instead of two, on every transaction the service opens. The id is put in the SQL text only in its
    canonical form (hex and dashes, nothing to escape); anything else takes the parameterised path.

    Inside it, a savepoint is a `SAVEPOINT` statement: asyncpg refuses `conn.transaction()` within a
    transaction it did not start itself."""
    canonical = _canonical_uuid(tenant_id)
    if canonical is None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
            yield conn
        return
    async with pool.acquire() as conn:
        await conn.execute(f"BEGIN; SELECT set_config('app.tenant_id', '{canonical}', true)")
        try:
            yield conn
        except BaseException:
            # A broken connection cannot roll back; releasing it to the pool rolls back or discards it.
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

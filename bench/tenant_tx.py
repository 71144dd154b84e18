"""What opening a tenant's transaction costs the client: `tenant_tx` with a tenant id in its canonical UUID spelling
(BEGIN and the tenant setting sent as one simple query) against the same id upper-cased (not canonical, so the
parameterised path: BEGIN, then the setting as a prepared statement). Each transaction runs one small query.

    .venv/bin/python bench/tenant_tx.py [--n 2000] [--rounds 3] [--dsn postgresql://…]

Needs a running Postgres with the schema (`make run`); the default DSN is the service's own (DATABASE_URL, or the
dev stack's). Rounds alternate the two paths; the first round warms the connection and statement caches.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from paysaga.db import create_pool, tenant_tx
from paysaga.settings import get_settings


async def one_path(pool: object, tenant_id: str, n: int) -> tuple[float, float]:
    """(client CPU ms, wall ms) per transaction."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        async with tenant_tx(pool, tenant_id) as conn:  # type: ignore[arg-type]
            await conn.fetchval("SELECT count(*) FROM paysaga.payments")
    return (time.process_time() - cpu) / n * 1000, (time.perf_counter() - wall) / n * 1000


async def main(args: argparse.Namespace) -> None:
    pool = await create_pool(args.dsn or get_settings().database_url, max_size=1)
    tenant_id = str(uuid.uuid4())  # RLS shows it nothing: the cost measured is the transaction's, not the query's
    print("| round | path | client CPU ms / tx | wall ms / tx |\n|---:|---|---:|---:|")
    try:
        for rnd in range(1, args.rounds + 1):
            for label, spelling in (("one query (canonical UUID)", tenant_id),
                                    ("parameterised (upper-case UUID)", tenant_id.upper())):
                cpu, wall = await one_path(pool, spelling, args.n)
                print(f"| {rnd} | {label} | {cpu:.3f} | {wall:.3f} |")
    finally:
        await pool.close()
    print(f"\nCommand: `.venv/bin/python bench/tenant_tx.py --n {args.n} --rounds {args.rounds}`")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="transactions per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default=None)
    asyncio.run(main(parser.parse_args()))

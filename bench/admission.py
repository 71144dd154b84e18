"""What admitting a payment costs (the payment workflow's first step: record, hard rules, fraud score), with the
built-in scorer asked inside the admission's transaction (as the worker does) against a second transaction for the
score (as it does for a model outside this process). Rounds alternate the two.

    PAYSAGA_RISK_VELOCITY_MAX_PAYMENTS=1000000 .venv/bin/python bench/admission.py [--n 150] [--rounds 3]

Needs `make run` (its database and demo API key); the velocity limit is raised so that one customer's many
payments are scored rather than declined by the hard rules. Prints client CPU (this process: the activity and
its SQL), Postgres CPU (all its processes) and wall time per admission.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
from temporalio.testing import ActivityEnvironment

from activities.ai_client import BuiltinScorer
from activities.payments import PaymentActivities
from activities.providers.sandbox import SandboxProvider
from contracts.payments import PaymentInput
from paysaga.db import create_pool
from paysaga.settings import get_settings
from worker import risk_limits


class AsIfRemote(BuiltinScorer):
    """The built-in score, taken the way a model outside this process is: after the admission's transaction."""

    in_process = False


def postgres_cpu() -> float:
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace, key: str) -> None:
    settings = get_settings()
    async with httpx.AsyncClient(base_url=args.base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        customer = (await http.post("/v1/customers", json={"email": "bench@example.com"})).json()
        method = (await http.post(f"/v1/customers/{customer['id']}/payment_methods",
                                  json={"token": "pm_card_visa"})).json()
    admin = await create_pool(settings.database_admin_url, max_size=1)
    tenant_id = await admin.fetchval("SELECT tenant_id::text FROM paysaga.customers WHERE customer_id = $1",
                                     customer["id"])
    await admin.close()
    pool = await create_pool(settings.database_url, max_size=2)
    provider, limits = SandboxProvider(pool, settings), risk_limits(settings)
    paths = {True: PaymentActivities(pool, provider, limits, BuiltinScorer()),
             False: PaymentActivities(pool, provider, limits, AsIfRemote())}
    env = ActivityEnvironment()
    print("| round | fraud score written | client CPU ms | Postgres CPU ms | wall ms |\n|---:|---|---:|---:|---:|")
    try:
        for rnd in range(1, args.rounds + 1):
            for inside in (True, False):
                acts = paths[inside]
                cpu, pg, wall = time.process_time(), postgres_cpu(), time.perf_counter()
                for i in range(args.n):
                    await env.run(acts.admit_payment, PaymentInput(
                        tenant_id=tenant_id, payment_id=f"pay_{uuid.uuid4().hex[:12]}", customer_id=customer["id"],
                        payment_method_id=method["id"], amount_micros=1_000_000 + i, currency="USD"))
                label = "in the admission's transaction" if inside else "in a second transaction"
                per = [(time.process_time() - cpu), (postgres_cpu() - pg), (time.perf_counter() - wall)]
                print(f"| {rnd} | {label} | " + " | ".join(f"{v / args.n * 1000:.2f}" for v in per) + " |")
    finally:
        await pool.close()
    print(f"\nCommand: `PAYSAGA_RISK_VELOCITY_MAX_PAYMENTS=1000000 .venv/bin/python bench/admission.py "
          f"--n {args.n} --rounds {args.rounds}`")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=150, help="admissions per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--key-file", default=".paysaga/demo-api-key")
    parsed = parser.parse_args()
    asyncio.run(main(parsed, Path(parsed.key_file).read_text().strip()))

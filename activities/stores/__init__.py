"""Persistence: plain SQL over asyncpg, one module per aggregate (cosmicpython's repositories).

Every function takes the caller's connection: the caller's `paysaga.db.tenant_tx` is the unit of work, so a row,
its lifecycle event, its outbox message (and its audit row) commit together or not at all. Row-level security
scopes every statement to the transaction's tenant.
"""

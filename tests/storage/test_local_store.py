"""LocalObjectStore: files under a root, whole or not at all, and no key that reaches outside the root."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import pytest

from activities.storage import InvalidObjectKey, LocalObjectStore, ObjectNotFound, ObjectStore, build_object_store
from paysaga.settings import Settings

BAD_KEYS = [
    "", "/etc/passwd", "../outside.pdf", "invoices/../../outside.pdf", "invoices/./x.pdf", "invoices//x.pdf",
    "invoices/", ".hidden", "invoices/.x.pdf.meta.json", "invoices\\x.pdf", "invoices/x\x00.pdf", "~/x.pdf",
    "invoices/ x.pdf", "rechnungen/für.pdf", "x" * 1025,
]


def _everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


async def test_round_trip_is_byte_identical(store: LocalObjectStore) -> None:
    data = bytes(range(256)) * 4096 + b"\r\n\x00"
    stored = await store.put("invoices/ten_1/inv_1.pdf", data, "application/pdf")

    assert await store.get("invoices/ten_1/inv_1.pdf") == data
    assert stored.size == len(data) and stored.content_type == "application/pdf"
    assert stored.etag == hashlib.sha256(data).hexdigest()
    assert Path(stored.location) == store.root / "invoices" / "ten_1" / "inv_1.pdf"
    assert await store.head("invoices/ten_1/inv_1.pdf") == stored
    assert await store.exists("invoices/ten_1/inv_1.pdf")
    assert isinstance(store, ObjectStore)


async def test_a_put_replaces_the_object(store: LocalObjectStore) -> None:
    await store.put("a/b.txt", b"first", "text/plain")
    stored = await store.put("a/b.txt", b"second, longer", "text/csv")
    assert await store.get("a/b.txt") == b"second, longer"
    assert await store.head("a/b.txt") == stored
    assert sorted(p.name for p in (store.root / "a").iterdir()) == [".b.txt.meta.json", "b.txt"]  # no temp left


async def test_a_missing_key_is_a_clear_error(store: LocalObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match=r"no object stored under 'invoices/ten_1/nope.pdf'") as raised:
        await store.get("invoices/ten_1/nope.pdf")
    assert raised.value.key == "invoices/ten_1/nope.pdf"
    assert isinstance(raised.value, LookupError)
    assert await store.head("invoices/ten_1/nope.pdf") is None
    assert not await store.exists("invoices/ten_1/nope.pdf")
    await store.put("invoices/ten_1/inv.pdf", b"x", "application/pdf")
    with pytest.raises(ObjectNotFound):
        await store.get("invoices/ten_1/inv.pdf/deeper")  # a file where a folder would be is still "not found"
    with pytest.raises(ObjectNotFound):
        await store.get("invoices/ten_1")  # a folder is not an object


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_unsafe_keys_are_refused_and_nothing_is_written(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    for call in (store.put(key, b"x", "text/plain"), store.get(key), store.head(key), store.exists(key)):
        with pytest.raises(InvalidObjectKey):
            await call
    assert _everything_under(tmp_path) == []


async def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    (tmp_path / "elsewhere").mkdir()
    store.root.mkdir()
    (store.root / "invoices").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InvalidObjectKey, match="leads out of"):
        await store.put("invoices/x.pdf", b"x", "application/pdf")
    assert list((tmp_path / "elsewhere").iterdir()) == []


async def test_a_failed_write_leaves_the_old_object_whole(store: LocalObjectStore,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    await store.put("k/doc.pdf", b"old", "application/pdf")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        await store.put("k/doc.pdf", b"new" * 1000, "application/pdf")
    monkeypatch.undo()
    assert await store.get("k/doc.pdf") == b"old"
    assert [p.name for p in (store.root / "k").iterdir() if p.name.endswith(".tmp")] == []


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    """Writers replace a 2 MiB object again and again; every concurrent read is one whole version."""
    store = LocalObjectStore(tmp_path)
    versions = [bytes([i]) * (2 * 1024 * 1024) for i in range(3)]
    asyncio.run(store.put("k/big.bin", versions[0], "application/octet-stream"))
    done = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not done.is_set():
            seen.append(store._get("k/big.bin"))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(30):
        store._put("k/big.bin", versions[i % 3], "application/octet-stream")
    done.set()
    reader.join(timeout=10)
    assert seen and all(data in versions for data in seen)


async def test_calls_run_off_the_event_loop(store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = LocalObjectStore._put

    def spy(self: LocalObjectStore, key: str, data: bytes, content_type: str) -> object:
        threads.append(threading.get_ident())
        return real(self, key, data, content_type)

    monkeypatch.setattr(LocalObjectStore, "_put", spy)
    await store.put("k/x", b"x", "text/plain")
    assert threads and threads[0] != threading.get_ident()


def test_the_default_store_is_local_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = build_object_store(Settings(_env_file=None, data_dir=tmp_path / ".paysaga"))
    assert isinstance(store, LocalObjectStore) and store.root == (tmp_path / ".paysaga" / "objects").resolve()

    monkeypatch.setenv("PAYSAGA_OBJECT_STORE_DIR", str(tmp_path / "pdfs"))
    store = build_object_store(Settings(_env_file=None))
    assert isinstance(store, LocalObjectStore) and store.root == (tmp_path / "pdfs").resolve()

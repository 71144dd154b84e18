"""`LocalObjectStore`: objects as files under a root directory (the default; `.paysaga/objects` in the dev stack).

An object is the file ``<root>/<key>``; its content type is kept beside it in ``.<name>.meta.json`` (keys never
start a segment with a dot, so no key can name a metadata or temporary file). Writes go to a temporary file in
the same directory, are fsynced and renamed over the target, so a reader (or a crash) sees the whole old file or
the whole new one, never a torn one. The metadata is written first: an object exists once its data file does.
File I/O runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from activities.storage.base import InvalidObjectKey, ObjectNotFound, check_key
from contracts.documents import StoredObject

_DEFAULT_CONTENT_TYPE = "application/octet-stream"


class LocalObjectStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        return await asyncio.to_thread(self._put, key, bytes(data), content_type)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    async def head(self, key: str) -> StoredObject | None:
        return await asyncio.to_thread(self._head, key)

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    # ---- in the worker thread ----------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # check_key already refuses '..'; this also refuses a symlinked directory pointing out of the root.
        if not path.is_relative_to(self.root):
            raise InvalidObjectKey(f"{key!r} leads out of {self.root}")
        return path

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.meta.json")

    def _put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(self._meta_path(path), json.dumps({"content_type": content_type}).encode())
        _write_atomically(path, data)
        return self._stored(key, path, len(data), content_type, hashlib.sha256(data).hexdigest())

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key, str(self.root)) from None

    def _head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        # Read rather than stat: the etag is the content's hash, and the files kept here are small.
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            content_type = json.loads(self._meta_path(path).read_text())["content_type"]
        except (OSError, ValueError, KeyError):
            content_type = _DEFAULT_CONTENT_TYPE
        return self._stored(key, path, len(data), content_type, hashlib.sha256(data).hexdigest())

    @staticmethod
    def _stored(key: str, path: Path, size: int, content_type: str, etag: str) -> StoredObject:
        return StoredObject(key=key, size=size, content_type=content_type, etag=etag, location=str(path))


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory is.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

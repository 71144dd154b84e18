"""The `ObjectStore` port: where rendered files (invoice PDFs) are kept, by key.

A key is a relative, slash-separated path such as ``invoices/<tenant>/<invoice>.pdf``. Every adapter checks it
with `check_key` under the same rules, so a key that works in development works on S3 and cannot escape the
local store's root: segments of letters, digits and ``._=-`` that do not start with a dot (so never ``.``,
``..`` or a hidden file), no empty segment, no leading slash, at most 1024 bytes (S3's limit).
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from contracts.documents import StoredObject

MAX_KEY_BYTES = 1024
_SEGMENT = re.compile(r"[A-Za-z0-9_=-][A-Za-z0-9._=-]*")


class ObjectStoreError(Exception):
    """Base of the errors an object store raises on purpose."""


class InvalidObjectKey(ObjectStoreError, ValueError):
    """The key is not a safe relative path (see the module docstring)."""


class ObjectNotFound(ObjectStoreError, LookupError):
    """No object is stored under the key."""

    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"no object stored under {key!r} in {where}")
        self.key = key


def check_key(key: str) -> str:
    """Return `key` unchanged if it is safe, else raise `InvalidObjectKey` saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey(f"an object key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8", errors="replace")) > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"an object key has at most {MAX_KEY_BYTES} bytes, got {len(key)} characters")
    if key.startswith("/"):
        raise InvalidObjectKey(f"an object key is relative, got the absolute {key!r}")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidObjectKey(
                f"{key!r}: each '/'-separated part is letters, digits and '._=-', not starting with '.' "
                f"(no '..', no empty part); {segment!r} is not"
            )
    return key


@runtime_checkable
class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store `data` under `key`, replacing what was there, atomically: a reader sees the old or the new."""
        ...

    async def get(self, key: str) -> bytes:
        """The stored bytes; `ObjectNotFound` if there are none."""
        ...

    async def head(self, key: str) -> StoredObject | None:
        """What is stored under `key` (size, type, etag, location), or None, without reading it."""
        ...

    async def exists(self, key: str) -> bool: ...

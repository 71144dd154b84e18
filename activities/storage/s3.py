"""`S3ObjectStore`: objects in an S3 bucket (or any S3-compatible server), encrypted with SSE-KMS on every put.

Every put asks for ``ServerSideEncryption="aws:kms"`` — with `kms_key_id` if one is configured, else the
account's AWS-managed ``aws/s3`` key — whatever the bucket's default encryption says, so an invoice is never
stored with weaker encryption because a bucket was set up carelessly. Credentials come from boto3's usual chain
(environment, shared config, the instance or task role); paysaga has no setting for them.

boto3 is synchronous: every call runs in a worker thread (`asyncio.to_thread`), never on the event loop. One
client serves all threads (botocore clients are thread-safe; sessions are not, so the session stays private).
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from activities.storage.base import ObjectNotFound, check_key
from contracts.documents import StoredObject

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


class S3ObjectStore:
    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        kms_key_id: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "max_attempts": 5},
            # A custom endpoint (MinIO, moto, a gateway) is addressed by path: bucket names need no DNS there.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._client: BaseClient = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, endpoint={self._client.meta.endpoint_url!r})"

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        check_key(key)
        encryption: dict[str, str] = {"ServerSideEncryption": "aws:kms"}
        if self.kms_key_id:
            encryption["SSEKMSKeyId"] = self.kms_key_id
        answer = await asyncio.to_thread(
            self._client.put_object, Bucket=self.bucket, Key=key, Body=bytes(data), ContentType=content_type,
            **encryption,
        )
        return StoredObject(key=key, size=len(data), content_type=content_type, etag=_etag(answer),
                            location=self._location(key))

    async def get(self, key: str) -> bytes:
        check_key(key)
        return await asyncio.to_thread(self._get, key)

    async def head(self, key: str) -> StoredObject | None:
        check_key(key)
        try:
            answer = await asyncio.to_thread(self._client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _error_code(e) in _NOT_FOUND_CODES:
                return None
            raise
        return StoredObject(key=key, size=int(answer["ContentLength"]),
                            content_type=answer.get("ContentType") or "application/octet-stream",
                            etag=_etag(answer), location=self._location(key))

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    def _get(self, key: str) -> bytes:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _error_code(e) in _NOT_FOUND_CODES:
                raise ObjectNotFound(key, f"s3://{self.bucket}") from None
            raise
        with answer["Body"] as body:
            return bytes(body.read())

    def _location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _etag(answer: dict[str, Any]) -> str | None:
    etag = answer.get("ETag")
    return etag.strip('"') if isinstance(etag, str) else None

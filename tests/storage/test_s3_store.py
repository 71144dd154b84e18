"""S3ObjectStore against a real S3-compatible server (moto's, on loopback): SSE-KMS on every put, exact bytes."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from activities.storage import InvalidObjectKey, ObjectNotFound, ObjectStore, build_object_store
from activities.storage.s3 import S3ObjectStore
from paysaga.settings import Settings
from tests.s3_server import REGION, S3Server


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return s3.new_bucket("paysaga-documents")


@pytest.fixture(scope="module")
def kms_key_arn(s3: S3Server) -> str:
    return str(s3.client("kms").create_key(Description="paysaga invoices")["KeyMetadata"]["Arn"])


def store_for(s3: S3Server, bucket: str, kms_key_id: str | None = None) -> S3ObjectStore:
    return S3ObjectStore(bucket, region=REGION, endpoint_url=s3.endpoint_url, kms_key_id=kms_key_id)


@pytest.fixture(scope="module")
def store(s3: S3Server, bucket: str) -> S3ObjectStore:
    """With no key configured: the account's AWS-managed key."""
    return store_for(s3, bucket)


async def test_every_put_is_encrypted_with_sse_kms(s3: S3Server, bucket: str, store: S3ObjectStore) -> None:
    await store.put("invoices/ten_1/inv_1.pdf", b"%PDF-1.7 ...", "application/pdf")

    head = s3.client().head_object(Bucket=bucket, Key="invoices/ten_1/inv_1.pdf")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentType"] == "application/pdf"


async def test_a_configured_kms_key_is_the_one_used(s3: S3Server, bucket: str, kms_key_arn: str) -> None:
    store = store_for(s3, bucket, kms_key_id=kms_key_arn)
    await store.put("invoices/ten_1/inv_2.pdf", b"%PDF-1.7 ...", "application/pdf")

    head = s3.client().head_object(Bucket=bucket, Key="invoices/ten_1/inv_2.pdf")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == kms_key_arn


async def test_round_trip_is_byte_identical(s3: S3Server, bucket: str, store: S3ObjectStore) -> None:
    data = bytes(range(256)) * 4096 + b"\r\n\x00"
    stored = await store.put("invoices/ten_1/inv_3.pdf", data, "application/pdf")

    assert await store.get("invoices/ten_1/inv_3.pdf") == data
    assert stored.size == len(data) and stored.content_type == "application/pdf"
    assert stored.location == f"s3://{bucket}/invoices/ten_1/inv_3.pdf"
    assert stored.etag
    assert await store.head("invoices/ten_1/inv_3.pdf") == stored
    assert await store.exists("invoices/ten_1/inv_3.pdf")
    raw = s3.client().get_object(Bucket=bucket, Key="invoices/ten_1/inv_3.pdf")["Body"].read()
    assert hashlib.sha256(raw).digest() == hashlib.sha256(data).digest()
    assert isinstance(store, ObjectStore)


async def test_a_put_replaces_the_object(s3: S3Server, bucket: str, store: S3ObjectStore) -> None:
    await store.put("a/b.txt", b"first", "text/plain")
    await store.put("a/b.txt", b"second", "text/csv")
    assert await store.get("a/b.txt") == b"second"
    head = await store.head("a/b.txt")
    assert head is not None and head.content_type == "text/csv" and head.size == 6


async def test_a_missing_key_is_a_clear_error(s3: S3Server, bucket: str, store: S3ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match=rf"no object stored under 'invoices/nope.pdf' in s3://{bucket}"):
        await store.get("invoices/nope.pdf")
    assert await store.head("invoices/nope.pdf") is None
    assert not await store.exists("invoices/nope.pdf")


async def test_a_missing_bucket_is_not_mistaken_for_a_missing_key(s3: S3Server) -> None:
    store = store_for(s3, "paysaga-no-such-bucket")
    with pytest.raises(Exception, match="NoSuchBucket") as raised:
        await store.get("invoices/x.pdf")
    assert not isinstance(raised.value, ObjectNotFound)


@pytest.mark.parametrize("key", ["../x.pdf", "/abs.pdf", "a//b.pdf", ".hidden", "a/./b"])
async def test_unsafe_keys_are_refused_before_any_request(store: S3ObjectStore, key: str) -> None:
    for call in (store.put(key, b"x", "text/plain"), store.get(key), store.head(key)):
        with pytest.raises(InvalidObjectKey):
            await call


async def test_boto3_runs_off_the_event_loop(store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    client = store._client
    real_put, real_get = client.put_object, client.get_object

    def spying(real: Any) -> Any:
        def call(**kwargs: Any) -> Any:
            threads.append(threading.get_ident())
            return real(**kwargs)
        return call

    monkeypatch.setattr(client, "put_object", spying(real_put))
    monkeypatch.setattr(client, "get_object", spying(real_get))
    await store.put("k/x", b"x", "text/plain")
    await store.get("k/x")
    assert len(threads) == 2 and threading.get_ident() not in threads


async def test_the_factory_builds_the_s3_store_from_settings(s3: S3Server, bucket: str, kms_key_arn: str) -> None:
    settings = Settings(_env_file=None, object_store="s3", s3_bucket=bucket, s3_region=REGION,
                        s3_endpoint_url=s3.endpoint_url, s3_kms_key_id=kms_key_arn)
    store = build_object_store(settings)
    assert isinstance(store, S3ObjectStore)
    await store.put("from/settings.pdf", b"x", "application/pdf")
    assert s3.client().head_object(Bucket=bucket, Key="from/settings.pdf")["SSEKMSKeyId"] == kms_key_arn

    with pytest.raises(ValueError, match="PAYSAGA_S3_BUCKET"):
        build_object_store(Settings(_env_file=None, object_store="s3"))

"""Object storage behind one port (`base.ObjectStore`): local files (the default) or S3 with SSE-KMS.

`build_object_store(settings)` is the one place a deployment chooses: ``PAYSAGA_OBJECT_STORE=local`` keeps files
under ``PAYSAGA_OBJECT_STORE_DIR`` (default ``.paysaga/objects``); ``PAYSAGA_OBJECT_STORE=s3`` uses
``PAYSAGA_S3_BUCKET`` (with ``PAYSAGA_S3_REGION``, ``PAYSAGA_S3_ENDPOINT_URL``, ``PAYSAGA_S3_KMS_KEY_ID``).
"""

from __future__ import annotations

from activities.storage.base import InvalidObjectKey, ObjectNotFound, ObjectStore, ObjectStoreError, check_key
from activities.storage.local import LocalObjectStore
from paysaga.settings import Settings

__all__ = ["InvalidObjectKey", "LocalObjectStore", "ObjectNotFound", "ObjectStore", "ObjectStoreError",
           "build_object_store", "check_key"]


def build_object_store(settings: Settings) -> ObjectStore:
    if settings.object_store == "s3":
        if not settings.s3_bucket:
            raise ValueError("PAYSAGA_OBJECT_STORE=s3 needs PAYSAGA_S3_BUCKET")
        # Imported here so that a deployment on the local store never loads boto3.
        from activities.storage.s3 import S3ObjectStore

        return S3ObjectStore(settings.s3_bucket, region=settings.s3_region, endpoint_url=settings.s3_endpoint_url,
                             kms_key_id=settings.s3_kms_key_id)
    return LocalObjectStore(settings.object_store_root)

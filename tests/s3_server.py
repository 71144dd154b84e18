"""A real S3-compatible server for tests, with no Docker: moto's server, in a thread, on a free loopback port.

It answers the S3 (and KMS) wire protocol as AWS does, so boto3 runs its real request signing, serialisation and
error parsing against it. `running_s3()` yields the endpoint with dummy credentials in the environment (moto
accepts any), and stops the server on exit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from moto.server import ThreadedMotoServer

REGION = "eu-central-1"
_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self, service: str = "s3") -> BaseClient:
        return boto3.session.Session().client(service, endpoint_url=self.endpoint_url, region_name=REGION,
                                              config=Config(s3={"addressing_style": "path"}))

    def new_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        return name


@contextmanager
def running_s3() -> Iterator[S3Server]:
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: the kernel picks a free one
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

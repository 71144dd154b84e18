from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3_server import S3Server, running_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server

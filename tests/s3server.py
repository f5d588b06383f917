"""A real S3-compatible server for the tests: inferops.devcluster.s3 (versitygw) on loopback.

Loaded by the conftest of each test folder that needs it (`from s3server import s3_server`).
"""

from __future__ import annotations

import pytest

from inferops.devcluster.s3 import LocalS3, S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    server = LocalS3(tmp_path_factory.mktemp("s3"))
    try:
        yield server.start()
    finally:
        server.stop()

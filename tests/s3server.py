"""A real S3-compatible server for the tests: versitygw (POSIX backend) on a tmp dir, on loopback.

Loaded by the conftest of each test folder that needs it (`from s3server import s3_server`).
The binary is built from the pinned Go module in inferops/devcluster/gomod/versitygw on first use.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for a client process (or os.environ) that talks to this server."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }
        env.update(overrides)
        return env

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"versitygw exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"versitygw did not listen on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    from inferops.devcluster.binaries import ensure_binaries

    binary = ensure_binaries(("versitygw",))["versitygw"]
    root = tmp_path_factory.mktemp("s3root")
    sidecar = tmp_path_factory.mktemp("s3meta")
    port = free_port()
    access, secret = "AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
    log = open(tmp_path_factory.mktemp("s3log") / "versitygw.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "--port", f"127.0.0.1:{port}", "--access", access, "--secret", secret, "--quiet",
         "posix", "--sidecar", str(sidecar), str(root)],
        stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "")},
    )
    try:
        _wait_listening(port, proc)
        yield S3Server(f"http://127.0.0.1:{port}", access, secret, root)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

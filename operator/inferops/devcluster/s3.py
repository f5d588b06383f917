"""A local S3-compatible server: versitygw (built from its pinned Go module) over a folder.

Used by the tests, and by `inferops up` as the cluster's artifact and model store. It listens on
one address of this host: loopback, or the real node's bridge address so that pods reach it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import binaries
from .cluster import die_with_parent, free_port


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
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
        )

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


class LocalS3:
    """versitygw (POSIX backend) on `root`; start() returns the S3Server, stop() ends it."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int | None = None):
        self.root, self.host = Path(root), host
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> S3Server:
        binary = binaries.ensure_binaries(("versitygw",))["versitygw"]  # a build is not timed
        data, sidecar, iam = self.root / "data", self.root / "meta", self.root / "iam"
        for folder in (data, sidecar, iam):
            folder.mkdir(parents=True, exist_ok=True)
        access, secret = "AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
        with open(self.root / "versitygw.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--port", f"{self.host}:{self.port}", "--access", access, "--secret", secret, "--quiet",
                 # Its own IAM: users that bucket policies can limit to a prefix (devcluster/s3_tenants.py).
                 "--iam-dir", str(iam), "posix", "--sidecar", str(sidecar), str(data)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "")},
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"versitygw exited with {self.proc.returncode}; log: {self.root / 'versitygw.log'}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"versitygw did not listen on {self.host}:{self.port} within {timeout:.0f}s") from None
                time.sleep(0.1)
        return S3Server(f"http://{self.host}:{self.port}", access, secret, data)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

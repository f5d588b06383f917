"""Per-namespace artifact-store credentials on the local S3 server (versitygw): one user per
namespace, and a bucket policy that lets it read, write and list `<root>/<namespace>/` only.

What a platform does in its own store for `operator.tenantStorageSecret` (an IAM user and
policy per namespace on AWS, a scoped HMAC key elsewhere), done here for the tests and local
runs: the Secret of that name in a namespace then holds keys that cannot touch another
namespace's artifacts.
"""

from __future__ import annotations

import json
import secrets
import subprocess

from . import binaries
from .s3 import S3Server


def _statements(sid: str, access_key: str, bucket: str, prefix: str) -> list[dict]:
    principal = {"AWS": [access_key]}
    return [
        {"Sid": f"{sid}-objects", "Effect": "Allow", "Principal": principal,
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"]},
        {"Sid": f"{sid}-list", "Effect": "Allow", "Principal": principal, "Action": ["s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{bucket}"], "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
    ]


def grant_prefix(server: S3Server, bucket: str, prefix: str, name: str) -> S3Server:
    """A new user of `server` that may read, write and list `s3://bucket/prefix` only (prefix
    ends with '/'); returns the server as that user sees it. `name` labels the grant (a
    namespace); granting it again replaces its statements."""
    assert prefix.endswith("/"), "a prefix grant ends with '/', or ns-a would also cover ns-ab"
    access = "T" + secrets.token_hex(9).upper()
    secret = secrets.token_urlsafe(24)
    binary = binaries.ensure_binaries(("versitygw",))["versitygw"]
    subprocess.run(
        [str(binary), "admin", "--access", server.access_key, "--secret", server.secret_key, "--endpoint-url", server.endpoint,
         "create-user", "--access", access, "--secret", secret, "--role", "user"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    client = server.client()
    try:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    sid = f"inferops-{name}"
    ours = _statements(sid, access, bucket, prefix)
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") not in {o["Sid"] for o in ours}] + ours
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return S3Server(server.endpoint, access, secret, server.root)

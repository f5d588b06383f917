"""s3://bucket/key with boto3; any S3-compatible server through AWS_ENDPOINT_URL.

S3 has no rename, so a tree is published in three steps: upload everything under a sibling
staging prefix (`<parent>/.<name>.staging-<id>/`), then server-side copy each object to the
final prefix, then write the commit marker (report.json) last, then delete the staging prefix.
Readers (`inferops pull`, the operator) require the marker, so they never take a partial tree; on
failure the objects already copied are removed.

Write-once: a prefix that holds its marker is committed and is never written or deleted again; a
second publish there changes nothing (it checks before uploading and again before copying, and
writes the marker with If-None-Match: *, so of two racing publishers only one commits). Two
publishers racing before either commits may overwrite each other's uncommitted objects: the
marker's checksums then make the pull step refuse the mix rather than serve it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import COMMIT_MARKER, Backend, ordered_for_publish, staging_name, too_large
from .credentials import S3Settings
from .errors import AccessDenied, NotFound, StorageError, TooLarge, Unreachable
from .progress import Progress, log

LARGE = 8 * 1024 * 1024
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "InvalidToken", "ExpiredToken", "AllAccessDisabled"}
_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


def make_client(settings: S3Settings | None = None):
    import boto3
    from botocore.config import Config

    from botocore import UNSIGNED

    s = settings or S3Settings.load()
    extra = {}
    if s.isolated:
        extra["ignore_configured_endpoint_urls"] = True  # not AWS_ENDPOINT_URL: that is the platform's
        if not s.access_key_id:
            extra["signature_version"] = UNSIGNED  # anonymous, not botocore's search for AWS_* keys
    config = Config(
        connect_timeout=5,
        read_timeout=120,
        retries={"max_attempts": 3, "mode": "standard"},
        # Custom endpoints (MinIO, versitygw, Ceph...) rarely have wildcard DNS for bucket hosts.
        s3={"addressing_style": "path" if s.endpoint_url else "auto"},
        **extra,
    )
    session = boto3.session.Session(
        aws_access_key_id=s.access_key_id,
        aws_secret_access_key=s.secret_access_key,
        aws_session_token=s.session_token,
        region_name=s.region or "us-east-1",
    )
    return session.client("s3", endpoint_url=s.endpoint_url, config=config)


class S3Backend(Backend):
    def __init__(self, uri, client=None, settings: S3Settings | None = None) -> None:
        super().__init__(uri)
        self._client = client
        self._settings = settings

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self._settings)
        return self._client

    @property
    def bucket(self) -> str:
        return self.uri.authority

    @property
    def prefix(self) -> str:
        return self.uri.path.rstrip("/")

    def _key(self, rel: str, prefix: str | None = None) -> str:
        p = self.prefix if prefix is None else prefix
        return f"{p}/{rel}" if p else rel

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # botocore's exception tree is wide; translate what we can name
            raise translate(exc, f"{what} {self.uri}") from None

    def list_files(self, prefix: str | None = None) -> list[str]:
        p = self.prefix if prefix is None else prefix
        pager = self.client.get_paginator("list_objects_v2")
        out: list[str] = []

        def walk() -> None:
            for page in pager.paginate(Bucket=self.bucket, Prefix=f"{p}/" if p else ""):
                out.extend(o["Key"][len(p) + 1 if p else 0 :] for o in page.get("Contents", []))

        self._call("list", walk)
        return sorted(out)

    def _is_object(self) -> int | None:
        if not self.prefix:
            return None
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.prefix)["ContentLength"]
        except Exception as exc:
            err = translate(exc, f"read {self.uri}")
            if isinstance(err, NotFound):
                return None
            raise err from None

    def _download(self, key: str, target: Path, size: int | None) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        progress = Progress(f"download s3://{self.bucket}/{key}", size)
        self._call("download", self.client.download_file, self.bucket, key, str(target), Callback=progress)
        if size and size >= LARGE:
            progress.finish()

    def fetch(self, dest: Path) -> Path:
        size = self._is_object()
        if size is not None:
            target = dest / self.basename
            self._download(self.prefix, target, size)
            return target
        files = self.list_files()
        if not files:
            raise NotFound(f"nothing at {self.uri} (no object and no objects under that prefix)")
        target = dest / self.basename
        for rel in files:
            self._download(self._key(rel), target / rel, None)
        return target

    def _committed(self, marker: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(marker))
            return True
        except Exception as exc:
            err = translate(exc, f"write {self.uri} (looking for a committed {marker} first)")
            if isinstance(err, NotFound):
                return False
            raise err from None

    def publish(self, src_dir: Path, marker: str = COMMIT_MARKER) -> bool:
        if self._committed(marker):
            log.info("%s is already committed: left as it is (artifacts are write-once)", self.uri)
            return False
        parent, _, name = self.prefix.rpartition("/")
        staging = f"{parent}/{staging_name(name)}" if parent else staging_name(name)
        files = ordered_for_publish(src_dir, marker)
        rels = [f.relative_to(src_dir).as_posix() for f in files]
        data = [(f, rel) for f, rel in zip(files, rels) if rel != marker]
        copied: list[str] = []
        committed = False
        try:
            for f, rel in data:
                size = f.stat().st_size
                progress = Progress(f"upload {rel}", size)
                self._call("write", self.client.upload_file, str(f), self.bucket, self._key(rel, staging), Callback=progress)
                if size >= LARGE:
                    progress.finish()
            if self._committed(marker):  # another publisher committed while we uploaded
                log.info("%s was committed by another publisher meanwhile: left as it is", self.uri)
                return False
            # No marker: whatever is under the prefix is a failed attempt's, never a committed tree.
            for rel in [r for r in self.list_files() if r not in rels]:
                self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(rel))
            for _, rel in data:
                src = {"Bucket": self.bucket, "Key": self._key(rel, staging)}
                self._call("write", self.client.copy, src, self.bucket, self._key(rel))
                copied.append(rel)
            if marker in rels:
                committed = self._put_marker(src_dir / marker, marker)
            else:
                committed = True
            if not committed:
                log.info("%s was committed by another publisher meanwhile: left as it is", self.uri)
                return False
        except BaseException:
            if not committed and not self._committed_quietly(marker):
                self._remove(copied, None)
            raise
        finally:
            self._remove([rel for _, rel in data], staging)
        log.info("published %d files to %s", len(rels), self.uri)
        return True

    def _put_marker(self, path: Path, marker: str) -> bool:
        """Write the commit marker only if none is there (a conditional write, If-None-Match: *),
        so two publishers of one artifact never both commit; False if another one did. A server
        that does not implement conditional writes gets a plain write after the check above."""
        body = path.read_bytes()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(marker), Body=body, IfNoneMatch="*")
            return True
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            if code not in ("NotImplemented", "501"):
                raise translate(exc, f"write {self.uri}/{marker}") from None
        self._call("write", self.client.put_object, Bucket=self.bucket, Key=self._key(marker), Body=body)
        return True

    def _committed_quietly(self, marker: str) -> bool:
        try:
            return self._committed(marker)
        except Exception:
            return True  # cannot tell: leave what is there rather than remove a committed tree's files

    def read_small(self, limit: int) -> bytes:
        """A ranged GET of limit+1 bytes at most: a bigger object is refused without reading it."""
        response = self._call("read", self.client.get_object, Bucket=self.bucket, Key=self.prefix, Range=f"bytes=0-{limit}")
        with response["Body"] as body:
            data = body.read(limit + 1)
        if len(data) > limit:
            total = (response.get("ContentRange") or "").rpartition("/")[2]
            raise TooLarge(too_large(self.uri, int(total) if total.isdigit() else None, limit))
        return data

    def _remove(self, rels: list[str], prefix: str | None) -> None:
        for rel in rels:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(rel, prefix))
            except Exception as exc:  # cleanup is best effort; the marker is what readers trust
                logging.getLogger("inferops.storage").warning("could not remove %s: %s", rel, type(exc).__name__)


def translate(exc: Exception, what: str) -> StorageError:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(f"cannot {what}: no S3 credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or mount a Secret at $INFEROPS_CREDENTIALS_DIR)")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)):
        return Unreachable(f"cannot {what}: S3 endpoint unreachable ({type(exc).__name__})")
    code = ""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
    elif type(exc).__name__ == "S3UploadFailedError" or "ClientError" in str(exc):
        text = str(exc)
        code = next((c for c in _DENIED | _MISSING if c in text), "")
    if code in _DENIED:
        return AccessDenied(f"cannot {what}: access denied by the S3 server ({code}); check the credentials and bucket policy")
    if code in _MISSING:
        return NotFound(f"cannot {what}: not found ({code})")
    return StorageError(f"cannot {what}: {type(exc).__name__}{' ' + code if code else ''}")

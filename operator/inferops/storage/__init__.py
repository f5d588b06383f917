"""Model and artifact storage: read and write s3://, file://, pvc://; read https://.

    fetch(uri, dest_dir) -> Path        copy a file or a tree down
    publish(src_dir, uri) -> bool       write a tree once, all or nothing, report.json last
    read_small(uri, limit) -> bytes     one object, refused (TooLarge) above the limit
    list_files(uri) -> list[str]        what is there

Credentials come from the environment or a Secret mounted at $INFEROPS_CREDENTIALS_DIR (see
credentials.py) and never reach a log line or an error message. gs:// is not in this build:
Google Cloud Storage serves the S3 API, so use s3:// with AWS_ENDPOINT_URL=https://storage.googleapis.com
and an HMAC key.
"""

from __future__ import annotations

from pathlib import Path

from .base import COMMIT_MARKER, Backend
from .errors import AccessDenied, IncompleteArtifact, NotFound, StorageError, TooLarge, Unreachable, UnsupportedScheme
from .uri import ParsedUri, parse_uri, redact_uri

__all__ = [
    "COMMIT_MARKER",
    "AccessDenied",
    "IncompleteArtifact",
    "NotFound",
    "StorageError",
    "TooLarge",
    "Unreachable",
    "UnsupportedScheme",
    "backend_for",
    "fetch",
    "list_files",
    "parse_uri",
    "publish",
    "read_small",
    "redact_uri",
]


def backend_for(uri: str | ParsedUri, *, source: bool = False) -> Backend:
    """`source`: a URI the spec names (model, eval data), read with the user's credentials
    (credentials.source_settings); otherwise the artifact store, with the platform's."""
    parsed = parse_uri(uri) if isinstance(uri, str) else uri
    if parsed.scheme in ("file", "pvc"):
        from .local import LocalBackend

        return LocalBackend(parsed)
    if parsed.scheme == "s3":
        from .credentials import source_settings
        from .s3 import S3Backend

        return S3Backend(parsed, settings=source_settings() if source else None)
    if parsed.scheme == "https":
        from .https import HttpsBackend

        return HttpsBackend(parsed)
    raise UnsupportedScheme(
        f"{parsed.scheme}:// is not supported in this build ({parsed}); for Google Cloud Storage use "
        "s3://bucket/key with AWS_ENDPOINT_URL=https://storage.googleapis.com and an HMAC key"
    )


def fetch(uri: str, dest: Path, *, source: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return backend_for(uri, source=source).fetch(dest)


def publish(src_dir: Path, uri: str, marker: str = COMMIT_MARKER) -> bool:
    """True if this call committed the tree, False if one was already committed there (kept)."""
    return backend_for(uri).publish(src_dir, marker)


def read_small(uri: str, limit: int) -> bytes:
    """The object at `uri` (platform credentials) if it holds at most `limit` bytes, else TooLarge."""
    return backend_for(uri).read_small(limit)


def list_files(uri: str) -> list[str]:
    return backend_for(uri).list_files()

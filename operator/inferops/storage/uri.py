"""Model URIs: s3://bucket/key, gs://bucket/key, https://host/path, file:///abs/path, pvc://claim/path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import StorageError, UnsupportedScheme

SCHEMES = ("s3", "gs", "https", "file", "pvc")
PVC_ROOT_ENV = "INFEROPS_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"
# A PersistentVolumeClaim's name (DNS-1123 subdomain): `.` or `..` as the authority would resolve
# to the root of every claim or above it, which the containment check below cannot tell apart.
_CLAIM_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class ParsedUri:
    scheme: str
    authority: str  # bucket, claim or host; empty for file://
    path: str  # key or path inside it, without a leading slash (file:// keeps the absolute path)
    raw: str

    def __str__(self) -> str:
        return redact_uri(self.raw)


def parse_uri(uri: str) -> ParsedUri:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UnsupportedScheme(f"unsupported URI scheme in {redact_uri(uri)!r}; use one of: {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file URI must be absolute (file:///path): {redact_uri(uri)!r}")
        return ParsedUri(scheme, "", parts.path, uri)
    if not parts.netloc:
        raise StorageError(f"{scheme} URI has no {'claim' if scheme == 'pvc' else 'bucket or host'}: {redact_uri(uri)!r}")
    return ParsedUri(scheme, parts.netloc, parts.path.lstrip("/"), uri)


def local_path(parsed: ParsedUri) -> Path:
    """The filesystem path of a file:// or pvc:// URI (a PVC is mounted at $INFEROPS_PVC_ROOT/<claim>)."""
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "pvc":
        if len(parsed.authority) > 253 or not _CLAIM_NAME.match(parsed.authority):
            raise StorageError(f"{parsed}: {parsed.authority!r} is not a claim name (pvc://CLAIM/path, CLAIM a DNS-1123 name)")
        root = Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))
        path = (root / parsed.authority / parsed.path).resolve()
        claim_root = (root / parsed.authority).resolve()
        if path != claim_root and claim_root not in path.parents:
            raise StorageError(f"path escapes its claim: {parsed}")
        return path
    raise StorageError(f"{parsed} is not a local path")


_SECRET_QUERY = re.compile(r"(?i)(signature|token|credential|key|sig|secret|password)")


def redact_uri(uri: str) -> str:
    """Drop user:password@ and secret-looking query parameters (presigned URLs) from a URI."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable uri>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        query = "&".join(
            (kv.split("=", 1)[0] + "=***") if _SECRET_QUERY.search(kv.split("=", 1)[0]) else kv for kv in query.split("&")
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

"""Copy a published tree down, check its commit marker and checksums, then move it into place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import COMMIT_MARKER, IncompleteArtifact, fetch, parse_uri
from .base import tree_files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def verify_tree(root: Path, uri: str) -> None:
    marker = root / COMMIT_MARKER
    if not marker.is_file():
        raise IncompleteArtifact(f"{parse_uri(uri)} has no {COMMIT_MARKER}: not a complete InferOps artifact (still being written, or its write failed)")
    try:
        checksums = json.loads(marker.read_text()).get("checksums") or {}
    except ValueError:
        raise IncompleteArtifact(f"{COMMIT_MARKER} at {parse_uri(uri)} is not valid JSON") from None
    for rel, expected in checksums.items():
        f = root / rel
        if not f.is_file():
            raise IncompleteArtifact(f"{parse_uri(uri)} lacks {rel}, which its report lists")
        if sha256_file(f) != expected:
            raise IncompleteArtifact(f"{rel} at {parse_uri(uri)} does not match its sha256 in the report")


def pull(uri: str, dest: Path, *, require_marker: bool = True) -> list[str]:
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.pull-", dir=dest.parent) as tmp:
        got = fetch(uri, Path(tmp))
        if not got.is_dir():
            raise IncompleteArtifact(f"{parse_uri(uri)} is a single file, not a model repository")
        if require_marker:
            verify_tree(got, uri)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(got, dest)
    return [f.relative_to(dest).as_posix() for f in tree_files(dest)]

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
from .digest import artifact_digest
from .errors import ArtifactTampered


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def published_beside(rel: str) -> bool:
    """A result published next to a committed artifact after it: the tuning Job's
    tuning-<hash>.json. Only at the repository's top level, where Triton reads no files; anything
    inside a model's folder must be listed in the report."""
    return "/" not in rel and rel.startswith("tuning-") and rel.endswith(".json")


def verify_tree(root: Path, uri: str, digest: str | None = None) -> None:
    """The commit marker is there and every file it lists matches its sha256; with `digest`
    (what the operator recorded from the Job's report), the listing itself must be the one the
    operator saw, and the tree may hold nothing it does not list."""
    marker = root / COMMIT_MARKER
    if not marker.is_file():
        raise IncompleteArtifact(f"{parse_uri(uri)} has no {COMMIT_MARKER}: not a complete InferOps artifact (still being written, or its write failed)")
    try:
        checksums = json.loads(marker.read_text()).get("checksums") or {}
    except ValueError:
        raise IncompleteArtifact(f"{COMMIT_MARKER} at {parse_uri(uri)} is not valid JSON") from None
    if digest is not None:
        found = artifact_digest(checksums)
        if found != digest:
            raise ArtifactTampered(
                f"{parse_uri(uri)} was changed after it was published: its {COMMIT_MARKER} lists files with digest {found}, "
                f"but the operator recorded {digest} from the optimization Job's report; refusing to serve it"
            )
        extra = sorted(
            rel for f in tree_files(root)
            if (rel := f.relative_to(root).as_posix()) not in checksums and f != marker and not published_beside(rel)
        )
        if extra:
            raise ArtifactTampered(f"{parse_uri(uri)} holds {', '.join(extra[:5])}, which its report does not list: it was changed after it was published; refusing to serve it")
    for rel, expected in checksums.items():
        f = root / rel
        if not f.is_file():
            raise IncompleteArtifact(f"{parse_uri(uri)} lacks {rel}, which its report lists")
        if sha256_file(f) != expected:
            raise (ArtifactTampered if digest else IncompleteArtifact)(f"{rel} at {parse_uri(uri)} does not match its sha256 in the report")


def pull(uri: str, dest: Path, *, require_marker: bool = True, digest: str | None = None) -> list[str]:
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.pull-", dir=dest.parent) as tmp:
        got = fetch(uri, Path(tmp))
        if not got.is_dir():
            raise IncompleteArtifact(f"{parse_uri(uri)} is a single file, not a model repository")
        if require_marker or digest:
            verify_tree(got, uri, digest)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(got, dest)
    return [f.relative_to(dest).as_posix() for f in tree_files(dest)]

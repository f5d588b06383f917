"""The artifact root as the collector (`inferops gc`) sees it: every `<root>/<namespace>/<model>/<hash>`
with when its report.json was committed, and deletion of one artifact, marker first, so that a
reader never takes a tree that is half gone as complete."""

from __future__ import annotations

import os
import shutil

from ..reconcile.retention import Artifact
from . import COMMIT_MARKER, backend_for, parse_uri
from .base import staging_name
from .uri import local_path


def list_artifacts(root: str) -> list[Artifact]:
    parsed = parse_uri(root)
    if parsed.scheme in ("file", "pvc"):
        return _list_local(root.rstrip("/"), local_path(parsed))
    if parsed.scheme == "s3":
        return _list_s3(root.rstrip("/"))
    raise ValueError(f"cannot collect artifacts under {parsed}: s3://, file:// or pvc:// only")


def _list_local(root: str, base) -> list[Artifact]:
    out = []
    if not base.is_dir():
        return out
    for ns in sorted(p for p in base.iterdir() if p.is_dir()):
        for model in sorted(p for p in ns.iterdir() if p.is_dir()):
            for tree in sorted(p for p in model.iterdir() if p.is_dir()):
                marker = tree / COMMIT_MARKER
                committed = marker.is_file()
                at = (marker if committed else tree).stat().st_mtime
                out.append(Artifact(ns.name, model.name, tree.name, f"{root}/{ns.name}/{model.name}/{tree.name}", at, committed))
    return out


def _list_s3(root: str) -> list[Artifact]:
    backend = backend_for(root)
    prefix = backend.prefix
    trees: dict[tuple[str, str, str], tuple[float, bool]] = {}
    pager = backend.client.get_paginator("list_objects_v2")
    for page in pager.paginate(Bucket=backend.bucket, Prefix=f"{prefix}/" if prefix else ""):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(prefix) + 1 if prefix else 0 :].split("/")
            if len(parts) < 4:
                continue
            key = (parts[0], parts[1], parts[2])
            at, committed = trees.get(key, (0.0, False))
            if "/".join(parts[3:]) == COMMIT_MARKER:
                trees[key] = (obj["LastModified"].timestamp(), True)
            elif not committed:
                trees[key] = (max(at, obj["LastModified"].timestamp()), False)
    return [Artifact(ns, model, h, f"{root}/{ns}/{model}/{h}", at, committed) for (ns, model, h), (at, committed) in sorted(trees.items())]


def delete_artifact(uri: str) -> None:
    parsed = parse_uri(uri)
    if parsed.scheme in ("file", "pvc"):
        path = local_path(parsed)
        aside = path.parent / staging_name(path.name + ".collected")
        os.rename(path, aside)  # gone at once for readers, then removed
        shutil.rmtree(aside, ignore_errors=True)
        return
    backend = backend_for(uri)
    files = backend.list_files()
    for rel in sorted(files, key=lambda r: r != COMMIT_MARKER):  # the marker first
        backend._call("delete", backend.client.delete_object, Bucket=backend.bucket, Key=backend._key(rel))

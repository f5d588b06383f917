"""`inferops gc`: collect artifacts of deleted models and of retired revisions.

Keeps, per InferenceModel that exists, its last N committed revisions (INFEROPS_KEEP_REVISIONS,
default 3) and always the one it serves and the one its current spec names; deletes every artifact
of a model that no longer exists. Nothing committed less than --min-age ago is touched. Run it by
hand or as a CronJob with the operator's ServiceAccount and storage Secret."""

from __future__ import annotations

import argparse
import os
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=os.environ.get("INFEROPS_ARTIFACT_ROOT"), help="the artifact root (default: $INFEROPS_ARTIFACT_ROOT)")
    parser.add_argument("--keep", type=int, default=int(os.environ.get("INFEROPS_KEEP_REVISIONS", "3")), help="committed revisions kept per model (default: $INFEROPS_KEEP_REVISIONS or 3)")
    parser.add_argument("--min-age", type=float, default=3600, help="seconds: younger artifacts are never collected (default 3600)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")


def collect(root: str, models: dict, keep: int, min_age_s: float, dry_run: bool = False, now: float | None = None) -> list[str]:
    from .reconcile.retention import to_collect
    from .storage.collect import delete_artifact, list_artifacts

    chosen = to_collect(list_artifacts(root), models, keep, time.time() if now is None else now, min_age_s)
    for artifact in chosen:
        if not dry_run:
            delete_artifact(artifact.uri)
    return [a.uri for a in chosen]


def run(args: argparse.Namespace) -> int:
    from .kube import load_config
    import kubernetes

    if not args.root:
        print("inferops gc: no artifact root (--root or INFEROPS_ARTIFACT_ROOT)")
        return 2
    load_config()
    items = kubernetes.client.CustomObjectsApi().list_cluster_custom_object("inferops.dev", "v1alpha1", "inferencemodels")["items"]
    models = {(m["metadata"]["namespace"], m["metadata"]["name"]): m.get("status") or {} for m in items}
    for uri in collect(args.root, models, args.keep, args.min_age, args.dry_run):
        print(("would delete " if args.dry_run else "deleted ") + uri)
    return 0

"""Which committed artifacts to collect (pure): those of deleted models, and of each live model all
but its last `keep` revisions, never the one it serves or the one its current spec names, and none
committed less than `min_age_s` ago (a model being created while the collector lists)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Artifact:
    namespace: str
    model: str
    hash: str
    uri: str
    committed_at: float  # epoch seconds of its report.json; None-like 0 for an uncommitted leftover
    committed: bool = True


def to_collect(artifacts: list[Artifact], models: dict[tuple[str, str], dict[str, Any]], keep: int, now: float, min_age_s: float) -> list[Artifact]:
    """`models`: the status of every InferenceModel that exists, by (namespace, name)."""
    by_model: dict[tuple[str, str], list[Artifact]] = {}
    for artifact in artifacts:
        by_model.setdefault((artifact.namespace, artifact.model), []).append(artifact)
    out: list[Artifact] = []
    for key, items in by_model.items():
        status = models.get(key)
        old_enough = [a for a in items if now - a.committed_at >= min_age_s]
        if status is None:  # the model is gone: so are its revisions
            out += old_enough
            continue
        protected = {_hash_of(status.get("artifactUri")), _hash_of(status.get("jobName"), sep="-opt-")}
        newest = sorted((a for a in items if a.committed), key=lambda a: a.committed_at, reverse=True)
        kept = {a.hash for a in newest[: max(keep, 0)]} | protected
        out += [a for a in old_enough if a.hash not in kept]
    return sorted(out, key=lambda a: (a.namespace, a.model, a.committed_at))


def _hash_of(value: str | None, sep: str = "/") -> str | None:
    return value.rstrip("/").rsplit(sep, 1)[-1] if value else None

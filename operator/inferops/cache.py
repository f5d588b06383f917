"""What the watches last delivered of the objects the operator owns, so that a reconcile reads
them from memory instead of asking the API server again (issue "At scale": each reconcile
made seven reads, and the watch that triggered it had just delivered most of them).

Each kind is primed by one LIST at startup (before Kopf's watches start) and then kept by the
watch events; only once primed is a miss authoritative ("it does not exist"). The reconciler
also stores what its own applies return, so a reconcile right after an apply sees it before
the watch echoes it. An object is replaced only by a newer resourceVersion (Kubernetes calls
them opaque; etcd's revisions are integers, and a non-integer one always replaces).

The InferenceModels themselves are kept too (fed by Kopf's watch of them, which lists them at
startup, and by the responses of our status writes): at 100 models the GET of the model at the
start of every reconcile was 1,492 of the operator's 3,350 requests (15 a model). A model
missing from the cache is read with a GET; its kind is "kept" (a watch keeps it), not primed.

What is kept is slimmed (slim()): at 500 models the operator's peak RSS was 194 MiB, most of it
these objects as Python dicts (a Job's or Deployment's pod template, every object's
managedFields, kubectl's last-applied annotation on models: 14-18 KB a rendered Job or
Deployment, several times that as the server returns it). The reconciler reads metadata,
status, a Deployment's spec.replicas and whether our manager applies it, a Service's spec and
the applied-hash annotation; what it never reads is dropped. Reading something new from a
cached object? Check slim() keeps it.
"""

from __future__ import annotations

import sys
from typing import Any

from .reconcile.naming import MODEL_LABEL
from .reconcile.settings import FIELD_MANAGER

Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# spec fields dropped per kind: pod templates (immutable for a Job, ours for a Deployment and
# compared by the applied-hash annotation), a ConfigMap's data (the same)
_DROP_SPEC = {"Job": ("template",), "Deployment": ("template",)}


def slim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of `obj` without what the reconciler never reads (shallow: shares the rest)."""
    meta = dict(obj.get("metadata") or {})
    fields = meta.pop("managedFields", None) or []
    if kind == "Deployment":
        # _applies_replicas: whether our manager's Apply owns spec.replicas; keep only that.
        meta["managedFields"] = [
            {"manager": e.get("manager"), "operation": e.get("operation"), "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            for e in fields
            if e.get("manager") == FIELD_MANAGER and "f:replicas" in ((e.get("fieldsV1") or {}).get("f:spec") or {})
        ]
    if LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
    out = {**obj, "metadata": meta}
    if kind == "ConfigMap":
        out.pop("data", None)
        out.pop("binaryData", None)
    drop = _DROP_SPEC.get(kind)
    if drop and isinstance(obj.get("spec"), dict):
        out["spec"] = {k: v for k, v in obj["spec"].items() if k not in drop}
    return out


def compact(value: Any) -> Any:
    """A deep copy whose keys and short strings are interned: every cached object repeats the
    same keys ("metadata", "lastTransitionTime"...) and values ("True", reasons, timestamps of
    the same second), which json.loads makes anew each time. Halves what the cache holds (28 to
    12 KB for a model's Job, ConfigMap, Deployment and Service, tracemalloc), and the copy no
    longer pins the thread arena that parsed the response."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= 40:
        return sys.intern(value)
    return value


def _version(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj["metadata"].get("resourceVersion") or "")
    except ValueError:
        return None


class OwnedCache:
    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_model: dict[tuple[str, str, str], set[str]] = {}  # (kind, namespace, model) -> names
        self._primed: set[str] = set()
        self._kept: set[str] = set()  # kinds a watch keeps current without a priming LIST

    def keep(self, kind: str) -> None:
        """Mark `kind` as kept by a watch: a resync does not forget it (a miss is still no answer)."""
        self._kept.add(kind)

    def primed(self, kind: str) -> bool:
        return kind in self._primed

    def prime(self, kind: str, items: list[dict[str, Any]]) -> None:
        for obj in items:
            self.put(kind, obj)
        self._primed.add(kind)

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (kind, meta.get("namespace") or "", meta["name"])
        old = self._objects.get(key)
        if old is not None:
            new_v, old_v = _version(obj), _version(old)
            if new_v is not None and old_v is not None and new_v < old_v:
                return  # an older event than the apply response we stored
        obj = compact(slim(kind, obj))
        # The items of a LIST response carry no kind (the list does): the reconciler reads it.
        obj.setdefault("kind", kind)
        self._objects[key] = obj
        model = (meta.get("labels") or {}).get(MODEL_LABEL)
        if model:
            self._by_model.setdefault((kind, key[1], model), set()).add(key[2])

    def remove(self, kind: str, namespace: str, name: str) -> None:
        obj = self._objects.pop((kind, namespace or "", name), None)
        model = ((obj or {}).get("metadata", {}).get("labels") or {}).get(MODEL_LABEL)
        if model:
            names = self._by_model.get((kind, namespace or "", model), set())
            names.discard(name)
            if not names:
                self._by_model.pop((kind, namespace or "", model), None)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((kind, namespace or "", name))

    def of_model(self, kind: str, namespace: str, model: str) -> list[dict[str, Any]]:
        names = sorted(self._by_model.get((kind, namespace, model), ()))
        return [self._objects[(kind, namespace, n)] for n in names if (kind, namespace, n) in self._objects]

    def forget_unwatched(self) -> None:
        """Drop what no watch keeps (ConfigMaps, Services: what our applies returned): the
        next reconcile reads them again, and so restores one someone deleted."""
        for key in [k for k in self._objects if not self.primed(k[0]) and k[0] not in self._kept]:
            self.remove(*key)

    def __len__(self) -> int:
        return len(self._objects)

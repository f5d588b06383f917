"""The status write as a JSON merge patch (RFC 7386) that leaves the stored status equal to the
desired one. A merge patch merges objects key by key: writing `report` as a whole value still
kept every key of the old report that the new one lacks (a revision's tuning, notes or accuracy
outlived it, and stored != desired made a write on every reconcile). So every key that is gone
is sent as null, at every depth."""

from __future__ import annotations

from typing import Any, Iterable


def merge_patch(live: Any, desired: Any) -> Any:
    """The merge patch that turns `live` into `desired` (lists and scalars are replaced whole)."""
    if not (isinstance(live, dict) and isinstance(desired, dict)):
        return desired
    patch: dict[str, Any] = {k: None for k in live if k not in desired}
    for key, value in desired.items():
        if key not in live:
            patch[key] = value
        elif live[key] != value:
            patch[key] = merge_patch(live[key], value)
    return patch


def status_patch(live: dict[str, Any], desired: dict[str, Any], owned: Iterable[str]) -> dict[str, Any]:
    """The patch for the fields we own (`owned`): others (Kopf's own `kopf`) are left alone."""
    patch = {k: merge_patch(live.get(k), v) for k, v in desired.items() if live.get(k) != v}
    patch.update({k: None for k in owned if k in live and k not in desired})
    return patch

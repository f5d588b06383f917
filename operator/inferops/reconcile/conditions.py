"""Kubernetes-convention conditions: a transition time that moves only when the status does."""

from __future__ import annotations

from typing import Any


def condition(type_: str, status: bool | None, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": reason,
        "message": message,
    }


def merge_conditions(previous: list[dict[str, Any]], current: list[dict[str, Any]], generation: int, now: str) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for cond in current:
        old = before.get(cond["type"])
        changed = old is None or old.get("status") != cond["status"]
        merged.append(
            {
                **cond,
                "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
                "observedGeneration": generation,
            }
        )
    return merged

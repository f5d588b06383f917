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


def job_state(job: dict[str, Any] | None, what: str) -> tuple[str, str, str]:
    """(state, reason, message) of the `what` (optimization, tuning) Job; state: absent, running,
    succeeded or failed."""
    if job is None:
        return "absent", "", ""
    for cond in job.get("status", {}).get("conditions", []) or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "succeeded", "JobSucceeded", ""
        if cond.get("type") == "Failed":
            return "failed", cond.get("reason") or "JobFailed", cond.get("message") or f"the {what} Job failed"
    return "running", "JobRunning", f"{what} Job {job['metadata']['name']} is running"

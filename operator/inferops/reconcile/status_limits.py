"""Caps on what is written to an InferenceModel's status. Much of it comes from report.json and
error text a tenant's Job or model decides; the API server refuses a condition message over 32768
characters and an object over ~1.5 MB, and a refused status write fails every reconcile after it.
So whatever is too long is cut here, with a note saying so, before the write."""

from __future__ import annotations

import copy
import json
from typing import Any

MESSAGE_LIMIT = 4096  # characters of a condition message (the API's limit is 32768)
STRING_LIMIT = 1024  # characters of any other string taken from the report (a note, a tool version)
NOTES_LIMIT = 32
POINTS_LIMIT = 64  # tuning points shown; report.json keeps them all
MAP_LIMIT = 128  # checksums, tools: entries shown
STATUS_BYTES_LIMIT = 128 * 1024  # the whole status, as JSON: far below the object limit


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"... [truncated: {len(text) - limit} more characters]"
    return text[: max(0, limit - len(note))] + note


def bounded_status(status: dict[str, Any]) -> dict[str, Any]:
    """A copy of `status` within the limits above; unchanged when it already is."""
    if _fits(status):
        return status
    out = copy.deepcopy(status)
    for cond in out.get("conditions") or []:
        if isinstance(cond.get("message"), str):
            cond["message"] = truncate(cond["message"], MESSAGE_LIMIT)
    if isinstance(out.get("report"), dict):
        out["report"] = bounded_report(out["report"], out.get("artifactUri"))
    return out


def bounded_report(report: dict[str, Any], where: str | None) -> dict[str, Any]:
    notes: list[str] = []
    full = f"report.json at {where or report.get('artifactUri')} has them all"
    tuning = report.get("tuning")
    if isinstance(tuning, dict) and len(tuning.get("points") or []) > POINTS_LIMIT:
        notes.append(f"status shows the first {POINTS_LIMIT} of {len(tuning['points'])} tuning points; {full}")
        tuning["points"] = tuning["points"][:POINTS_LIMIT]
    for key in ("checksums", "tools"):
        value = report.get(key)
        if isinstance(value, dict) and len(value) > MAP_LIMIT:
            notes.append(f"status shows {MAP_LIMIT} of {len(value)} {key}; {full}")
            report[key] = dict(list(value.items())[:MAP_LIMIT])
    _cut_strings(report)
    old_notes = report.get("notes") or []
    if len(old_notes) + len(notes) > NOTES_LIMIT:
        shown = NOTES_LIMIT - len(notes) - 1  # room for these notes: the result fits, and stays as it is
        notes.append(f"status shows the first {shown} of {len(old_notes)} notes; {full}")
        old_notes = old_notes[:shown]
    report["notes"] = old_notes + notes
    if len(json.dumps(report)) > STATUS_BYTES_LIMIT:
        # Still too big (a huge signature, many attempts): keep what serving and a reader need most.
        keep = ("artifactUri", "modelName", "backend", "signature", "accelerators", "passed", "accuracy", "sizeBytes", "latencyMsBatch1", "latencyMsBatch32")
        small = {k: report[k] for k in keep if k in report}
        if isinstance(tuning, dict):
            small["tuning"] = {**tuning, "points": []}
        small["notes"] = [f"the report is too large for status; {full}"]
        if len(json.dumps(small)) > STATUS_BYTES_LIMIT:
            small.pop("signature", None)
        report = small
    return report


def _cut_strings(value: Any) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = _cut_strings(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = _cut_strings(v)
    elif isinstance(value, str):
        return truncate(value, STRING_LIMIT)
    return value


def _fits(status: dict[str, Any]) -> bool:
    if any(len(c.get("message") or "") > MESSAGE_LIMIT for c in status.get("conditions") or []):
        return False
    report = status.get("report")
    if not isinstance(report, dict):
        return True
    tuning = report.get("tuning") or {}
    if len(tuning.get("points") or []) > POINTS_LIMIT or len(report.get("notes") or []) > NOTES_LIMIT:
        return False
    if any(len(report.get(k) or {}) > MAP_LIMIT for k in ("checksums", "tools")):
        return False
    text = json.dumps(report)
    return len(text) <= STATUS_BYTES_LIMIT and not _has_long_string(report)


def _has_long_string(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_long_string(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_long_string(v) for v in value)
    return isinstance(value, str) and len(value) > STRING_LIMIT

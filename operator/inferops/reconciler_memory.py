"""What the reconciler remembers per model between reconciles (report and tuning reads, a failed
tuning Job's reason, smoke results), kept
per model so that it goes with the model, and bounded so that it cannot only grow: a few entries
per model (revisions come and go), and the least recently used models beyond a total."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .api.report import OptimizationReport

REPORTS_PER_MODEL = 4  # the serving revision, the one being made, and a spec reverted back and forth
SMOKES_PER_MODEL = 2
TUNINGS_PER_MODEL = 4  # tuning results and failed tuning Jobs: the serving tuning and a few re-tunes
MODELS = 10_000  # a model whose deletion the operator never saw (it was down) is dropped eventually


@dataclass(frozen=True)
class ReportRead:
    at: float  # time.monotonic() of the read
    job_seen: bool  # whether the hash's Job existed when it was read
    report: OptimizationReport | None
    error: str | None = None
    missing: bool = False  # no report.json: nothing committed for that hash (then)


@dataclass
class _Entry:
    reports: OrderedDict[str, ReportRead] = field(default_factory=OrderedDict)
    smokes: OrderedDict[Any, tuple[float, Any]] = field(default_factory=OrderedDict)
    smoke_running: asyncio.Future | None = None
    tunings: OrderedDict[str, tuple[float, Any, str | None]] = field(default_factory=OrderedDict)  # by result URI
    tuning_ends: OrderedDict[str, Any] = field(default_factory=OrderedDict)  # by failed tuning Job uid


class ModelMemory:
    def __init__(self, per_model_reports: int = REPORTS_PER_MODEL, models: int = MODELS) -> None:
        self._models: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._per_model_reports = per_model_reports
        self._max_models = models

    def __len__(self) -> int:
        return len(self._models)

    def entries(self, namespace: str, name: str) -> int:
        entry = self._models.get((namespace, name))
        return 0 if entry is None else len(entry.reports) + len(entry.smokes) + len(entry.tunings) + len(entry.tuning_ends)

    def _entry(self, namespace: str, name: str, create: bool) -> _Entry | None:
        key = (namespace, name)
        entry = self._models.get(key)
        if entry is None and create:
            entry = self._models[key] = _Entry()
            while len(self._models) > self._max_models:
                self._models.popitem(last=False)
        if entry is not None:
            self._models.move_to_end(key)
        return entry

    def forget(self, namespace: str, name: str) -> None:
        self._models.pop((namespace, name), None)

    def report(self, namespace: str, name: str, uri: str) -> ReportRead | None:
        entry = self._entry(namespace, name, create=False)
        return None if entry is None else entry.reports.get(uri)

    def remember_report(self, namespace: str, name: str, uri: str, read: ReportRead) -> None:
        _bounded_put(self._entry(namespace, name, create=True).reports, uri, read, self._per_model_reports)

    def smoke(self, namespace: str, name: str, key: Any) -> tuple[float, Any] | None:
        entry = self._entry(namespace, name, create=False)
        return None if entry is None else entry.smokes.get(key)

    def remember_smoke(self, namespace: str, name: str, key: Any, value: tuple[float, Any]) -> None:
        _bounded_put(self._entry(namespace, name, create=True).smokes, key, value, SMOKES_PER_MODEL)

    def smoke_running(self, namespace: str, name: str) -> asyncio.Future | None:
        entry = self._entry(namespace, name, create=False)
        return None if entry is None else entry.smoke_running

    def set_smoke_running(self, namespace: str, name: str, future: asyncio.Future) -> None:
        self._entry(namespace, name, create=True).smoke_running = future

    def tuning(self, namespace: str, name: str, uri: str) -> tuple[float, Any, str | None] | None:
        entry = self._entry(namespace, name, create=False)
        return None if entry is None else entry.tunings.get(uri)

    def remember_tuning(self, namespace: str, name: str, uri: str, read: tuple[float, Any, str | None]) -> None:
        _bounded_put(self._entry(namespace, name, create=True).tunings, uri, read, TUNINGS_PER_MODEL)

    def tuning_end(self, namespace: str, name: str, uid: str) -> tuple[bool, Any]:
        """(known, the failed tuning Job's termination) for the Job with this uid."""
        entry = self._entry(namespace, name, create=False)
        if entry is None or uid not in entry.tuning_ends:
            return False, None
        return True, entry.tuning_ends[uid]

    def remember_tuning_end(self, namespace: str, name: str, uid: str, termination: Any) -> None:
        _bounded_put(self._entry(namespace, name, create=True).tuning_ends, uid, termination, TUNINGS_PER_MODEL)


def _bounded_put(entries: OrderedDict, key: Any, value: Any, limit: int) -> None:
    """Keep `value` as the most recent entry, dropping the oldest beyond `limit`."""
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > limit:
        entries.popitem(last=False)

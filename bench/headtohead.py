"""Helpers the benches share: the exhaustive sweep and ratios of configs driven head to head.

Only benches (and their tests) use these; the tuner itself needs neither.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from inferops.api.report import TuningReport
from inferops.triton.tuner import tune_repository


def paired_ratio(a: list, b: list) -> float:
    """Throughput of `a` over `b` from head_to_head's results: the median of the per-round ratios."""
    return statistics.median(x.throughput_per_s / y.throughput_per_s for x, y in zip(a, b))


def sweep_repository(repository: Path, model_name: str, latency_objective_ms: float, instance_kind: str = "KIND_CPU", **kwargs) -> TuningReport:
    """The exhaustive sweep of the tuner's grid, for comparison with tune_repository."""
    return tune_repository(repository, model_name, latency_objective_ms, instance_kind, exhaustive_search=True, **kwargs)

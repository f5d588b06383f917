"""Helpers the benches share: the exhaustive sweep and ratios of configs driven head to head.

Only benches (and their tests) use these; the tuner itself needs neither.
"""

from __future__ import annotations

import random
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


def shuffled_rounds(profiler, configs: dict, *, rounds: int, slice_s: float, seed: int = 13) -> dict[str, list]:
    """profiler.head_to_head's results, with two changes that the judge of a search needs:
    - the configs are driven in a fresh random order every round instead of one rotating order.
      A rotation keeps the cycle (each config always follows the same other one), and with four
      configs the two copies of one config (an A/A pair) read 1.03-1.08 apart in three runs out
      of three, always the same way;
    - every copy is loaded afresh each round. A loaded copy keeps its own speed while it stays
      loaded (on the python backend, its own stub processes: four copies of one config, driven in
      turns for 8 rounds, averaged 5,543 to 5,792/s), so one load per config would make that
      copy's luck the config's."""
    runs: dict[str, list] = {label: [] for label in configs}
    order = random.Random(seed)
    for _ in range(rounds):
        labels = list(configs)
        order.shuffle(labels)
        for label, results in profiler.head_to_head({label: configs[label] for label in labels}, rounds=1, slice_s=slice_s).items():
            runs[label] += results
        profiler.close()  # unloads the copies: the next round loads new ones
    return runs

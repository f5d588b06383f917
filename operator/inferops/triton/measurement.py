"""What one measurement of a grid point says, how measurements of a point pool, and what a search returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from inferops.api.report import TuningPoint, TuningReport

from .grid import Point, batching_for
from .loadgen import percentiles


@dataclass(frozen=True)
class Measurement:
    point: Point
    throughput_per_s: float
    p50_ms: float
    p99_ms: float
    error: str | None = None
    observations: int = 1
    # The counted requests' latencies, so that every window a point was seen in pools into one p99.
    latencies_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)
    # The server's count of executions per batch size while the point was driven ((size, count)
    # pairs, from Triton's model statistics); empty when the server's statistics were not read.
    batches: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    def feasible(self, objective_ms: float) -> bool:
        return self.error is None and self.p99_ms <= objective_ms

    @property
    def mean_batch(self) -> float | None:
        executions = sum(count for _, count in self.batches)
        return sum(size * count for size, count in self.batches) / executions if executions else None

    def share_at(self, size: int) -> float | None:
        """The share of executions that ran a batch of `size` rows or more."""
        executions = sum(count for _, count in self.batches)
        return sum(count for s, count in self.batches if s >= size) / executions if executions else None

    def merged(self, other: "Measurement") -> "Measurement":
        """Everything seen of one point: mean throughput over the observations, p50 and p99 over
        all their requests, the first error. Pooling keeps one slow window (another process on a
        shared CPU) from ruling out a config, while a config whose batcher stalls now and then
        pays for it where it belongs: in throughput, which charges every stalled request its
        time. Measurements without latencies (a failed point) keep the worst p99."""
        n, k = self.observations, other.observations
        pooled = self.latencies_ms + other.latencies_ms
        if self.latencies_ms and other.latencies_ms:
            p50, p99 = percentiles(pooled, 50, 99)
        else:
            p50, p99 = (self.p50_ms * n + other.p50_ms * k) / (n + k), max(self.p99_ms, other.p99_ms)
        return Measurement(
            self.point,
            (self.throughput_per_s * n + other.throughput_per_s * k) / (n + k),
            p50,
            p99,
            self.error or other.error,
            n + k,
            pooled,
            merge_batches(self.batches, other.batches),
        )


def merge_batches(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    counts: dict[int, int] = {}
    for size, count in (*a, *b):
        counts[size] = counts.get(size, 0) + count
    return tuple(sorted(counts.items()))


def better(a: Measurement, b: Measurement | None, objective_ms: float) -> bool:
    """Meeting the objective beats missing it; then throughput decides; among misses, lower p99."""
    if b is None:
        return True
    fa, fb = a.feasible(objective_ms), b.feasible(objective_ms)
    if fa != fb:
        return fa
    if fa:
        return a.throughput_per_s > b.throughput_per_s
    return (a.error is None, -a.p99_ms) > (b.error is None, -b.p99_ms)


@dataclass
class SearchResult:
    best: Measurement | None  # None: nothing was measured (a time limit that passed first)
    measured: dict[Point, Measurement] = field(default_factory=dict)
    grid_size: int = 0
    objective_ms: float = 0.0
    measurements: int | None = None  # calls to measure, re-measurements included; default len(measured)

    def report(self) -> TuningReport:
        assert self.best is not None, "nothing was measured: no report to make"
        return TuningReport(
            chosen=batching_for(self.best.point),
            throughput_per_s=round(self.best.throughput_per_s, 2),
            p99_ms=round(self.best.p99_ms, 3),
            latency_objective_ms=self.objective_ms,
            measurements=self.measurements if self.measurements is not None else len(self.measured),
            grid_size=self.grid_size,
            points=[
                TuningPoint(
                    max_batch_size=m.point[0],
                    max_queue_delay_microseconds=m.point[1],
                    instance_count=m.point[2],
                    preferred_batch_sizes=batching_for(m.point).preferred_batch_sizes,
                    throughput_per_s=round(m.throughput_per_s, 2),
                    p99_ms=round(m.p99_ms, 3) if math.isfinite(m.p99_ms) else None,
                    mean_batch_size=round(m.mean_batch, 2) if m.mean_batch is not None else None,
                    observations=m.observations,
                    error=m.error[:300] if m.error else None,
                )
                for m in self.measured.values()
            ],
        )

"""The batching search, pure: where to start on the grid and how to climb it (measurement.py says
what a measurement of a point is, grid.py what the points are).

No server here: `hill_climb` and `exhaustive` take a `measure(point)` (and `duel`) callable, so
the search is tested on known surfaces and driven by profiler.ServerProfiler on a real server.
See tuner.py for why the search is shaped this way (duels, pooled p99, rematch).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from .grid import PREFERRED_CHOICES, Point, Preferred, TuningGrid, batching_for, point_label, preferred_of  # noqa: F401 - the search's vocabulary, for its callers
from .measurement import Measurement, SearchResult, better  # noqa: F401 - the search's results, for its callers


class _Cache:
    """Measures each point once per search; counts what the search cost."""

    def __init__(self, measure: Callable[[Point], Measurement]):
        self._measure = measure
        self.measured: dict[Point, Measurement] = {}
        self.meetings: dict[frozenset, list[tuple[Measurement, Measurement]]] = {}

    def __call__(self, point: Point) -> Measurement:
        if point not in self.measured:
            self.measured[point] = self._measure(point)
        return self.measured[point]

    def record(self, m: Measurement) -> None:
        """Add an observation made elsewhere (a duel, a re-measurement) to the point's record."""
        seen = self.measured.get(m.point)
        self.measured[m.point] = seen.merged(m) if seen else m

    def record_duel(self, incumbent: Measurement | None, candidate: Measurement) -> None:
        """A duel's view of both points (the incumbent's is None when the candidate failed)."""
        self.record(candidate)
        if incumbent is not None:
            self.record(incumbent)
            self.meetings.setdefault(frozenset((incumbent.point, candidate.point)), []).append((incumbent, candidate))

    def head_to_head_totals(self, a: Point, b: Point) -> dict[Point, float]:
        """Each point's throughput summed over the duels in which the two met."""
        totals = {a: 0.0, b: 0.0}
        for pair in self.meetings.get(frozenset((a, b)), []):
            for m in pair:
                totals[m.point] += m.throughput_per_s
        return totals

    def leader(self, objective_ms: float, excluding: Point | None = None) -> Measurement | None:
        """The best record by `better`; the first measured wins a tie."""
        top = None
        for m in self.measured.values():
            if m.point != excluding and better(m, top, objective_ms):
                top = m
        return top


def exhaustive(measure: Callable[[Point], Measurement], grid: TuningGrid, objective_ms: float) -> SearchResult:
    cache = _Cache(measure)
    for point in grid.points():
        cache(point)
    return SearchResult(cache.leader(objective_ms), cache.measured, grid.size, objective_ms)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def start_point(grid: TuningGrid, rows_in_flight: int, cores: int) -> tuple[int, ...]:
    """Grid indices of the start, from what the load allows (the rows its requests carry at once):
    - as many instances as the server has cores (each CPU instance runs one ONNX Runtime thread);
    - the largest batch that each instance can fill at once from the requests in flight;
    - the grid's shortest delay when those rows fill the instances' batches only once over (fewer
      than two batches per instance in flight): an instance then finishes when the queue holds
      only the rows of the clients it just answered, which come back one by one, and without a
      delay it sends the first of them alone (16 clients, max batch 8, 2 instances, on this
      project's CPU model: 32% of the executions were full batches with no delay, 79% with 1 ms);
      no delay when the queue refills while the instances are busy;
    - preferred sizes [max_batch_size] where the grid has that choice: the start the search had
      before the axis existed.
    Only a start: the climb steps along every axis from it in every pass, so no region of the
    grid is ruled out here (an earlier start kept a core for the load generator and, with the
    budget spent on batch sizes, never measured two instances on 2 cores)."""
    fitting = [i for i, count in enumerate(grid.instance_counts) if count <= cores]
    instance_index = fitting[-1] if fitting else 0
    per_instance = max(1, rows_in_flight // grid.instance_counts[instance_index])
    fillable = [i for i, size in enumerate(grid.max_batch_sizes) if size <= per_instance]
    batch_index = fillable[-1] if fillable else 0
    refills = rows_in_flight >= 2 * grid.instance_counts[instance_index] * grid.max_batch_sizes[batch_index]
    delay_index = 0 if refills else next((i for i, delay in enumerate(grid.queue_delays_us) if delay > 0), 0)
    start = (batch_index, delay_index, instance_index)
    if grid.varies_preferred:
        start += (grid.preferred.index("max") if "max" in grid.preferred else 0,)
    return start


Duel = Callable[[Point, Point], tuple["Measurement | None", Measurement]]

FULL = 0.95  # the share of full batches above which a longer delay is taken to change nothing


class Climb:
    """Coordinate hill climbing over the grid's index space, at most `budget` measurements
    (default: a quarter of the grid's batch size x delay x instance points, TuningGrid.batching_size).

    The preferred-sizes axis, where the grid has one, is the last one stepped along and buys no
    budget of its own: a quarter of the grid with it would double the default climb's cost (6 to 12
    measurements) for an axis that changes when the batcher stops waiting and how it cuts the queue,
    not the batch size and instance count the throughput mostly follows, and the goal is fewer
    measurements than Model Analyzer's quick search, not more. So the climb reaches it only when
    the axes before it leave budget over: with duels and the default budget on the default grid,
    when the first pass moves along an axis (it then skips that axis's other direction); a larger
    `budget` (--budget) buys it.

    Along each axis it steps in one direction while that improves, then tries the other; it
    repeats passes over the axes until a pass moves nowhere, then tries the points two steps out
    along each axis and climbs on from one that improves. A step must gain `min_gain` of
    throughput (or newly meet the objective): by default 3% when the incumbent's measurement is
    an older one (smaller gains are within the noise between two runs), any gain in a duel.
    Batch sizes above the rows in flight (`concurrency` requests of `request_rows` rows each) are
    never tried: that many rows are never queued at once. Nor are steps that the server's
    statistics at the incumbent show to change nothing (changes_nothing).
    The climb starts from start_point for `cores` (default: the cores this process may use).

    With `duel(incumbent, candidate)`, each step measures the candidate and the incumbent head to
    head within one measurement's time (the profiler serves both and drives them in turns), so
    the decision compares two configs under the same machine load; it counts as one measurement,
    and the last one of the budget is a rematch of the climb's choice with the best other point
    seen (rematch). Without it, a candidate's measurement is compared with the incumbent's
    earlier one, and budget left at the end re-measures the two leaders when they are close.
    With duels, `seed` (default `measure`) measures the start: its record only seeds the climb,
    and every duel the start takes part in watches it again, so a shorter run does.
    Past `deadline` (time.monotonic()), no new point is measured and the best seen is chosen."""

    def __init__(
        self,
        measure: Callable[[Point], Measurement],
        grid: TuningGrid,
        objective_ms: float,
        *,
        concurrency: int,
        budget: int | None = None,
        cores: int | None = None,
        min_gain: float | None = None,
        duel: Duel | None = None,
        deadline: float | None = None,
        request_rows: int = 1,
        seed: Callable[[Point], Measurement] | None = None,
    ):
        self.grid, self.objective_ms, self.duel, self.deadline = grid, objective_ms, duel, deadline
        self.seed = seed if duel is not None else None
        self.concurrency, self.request_rows = concurrency, request_rows
        self.rows_in_flight = concurrency * request_rows
        self.budget = budget if budget is not None else max(1, grid.batching_size // 4)
        # With duels, the last measurement is kept for a rematch of the two best points seen.
        self.climb_budget = self.budget - 1 if duel is not None and self.budget > 2 else self.budget
        self.min_gain = min_gain if min_gain is not None else (0.0 if duel else 0.03)
        self.cores = cores or usable_cores()
        self.calls = 0
        self._measure = measure
        self.cache = _Cache(self._counted)
        self.axes = grid.axes
        self.limits = [len(a) - 1 for a in self.axes]
        fillable = [i for i, size in enumerate(grid.max_batch_sizes) if size <= self.rows_in_flight]
        self.limits[0] = fillable[-1] if fillable else 0
        if concurrency == 1:
            self.limits[1] = 0  # a lone request is never joined by another: a delay only adds latency

    # -- bookkeeping ---------------------------------------------------------------------------
    def _counted(self, point: Point) -> Measurement:
        self.calls += 1
        return self._measure(point)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def point_of(self, index: tuple[int, ...]) -> Point:
        return tuple(axis[i] for axis, i in zip(self.axes, index))  # type: ignore[return-value]

    def index_of(self, point: Point) -> tuple[int, ...]:
        return tuple(axis.index(value) for axis, value in zip(self.axes, point))

    # -- one step ------------------------------------------------------------------------------
    def improves(self, m: Measurement, incumbent: Measurement) -> bool:
        if m.feasible(self.objective_ms) and incumbent.feasible(self.objective_ms):
            return m.throughput_per_s > incumbent.throughput_per_s * (1 + self.min_gain)
        return better(m, incumbent, self.objective_ms)

    def evaluate(self, point: Point, incumbent: Measurement) -> tuple[Measurement, Measurement]:
        """The candidate's measurement and the incumbent's to compare it with. A duel's view of
        the incumbent is added to the incumbent's record. An incumbent that failed (the start
        point refused) cannot serve beside the candidate: the candidate is measured alone."""
        if self.duel is None or point in self.cache.measured or incumbent.error is not None:
            return self.cache(point), incumbent
        self.calls += 1
        seen_incumbent, m = self.duel(incumbent.point, point)
        self.cache.record_duel(seen_incumbent, m)
        return m, seen_incumbent or incumbent

    def changes_nothing(self, m: Measurement, axis: int, offset: int) -> bool:
        """Whether the server's batch statistics at `m` show a step to be a no-op, one the climb
        need not measure:
        - a larger max batch size, when no batch reached the current one: the cap never bound, so
          every batch already held all the queue had when it was sent;
        - a longer delay, when nearly every batch (FULL) was full: the delay hardly ever ran out
          to cut one short.
        A batch counts as full when one more request would not fit in it. Only with preferred
        "max": with "half" a larger max batch size moves the size the batcher sends at once too."""
        if offset <= 0 or not m.batches or m.error is not None or preferred_of(m.point) != "max":
            return False
        share_full = m.share_at(max(1, m.point[0] - self.request_rows + 1)) or 0.0
        if axis == 0:
            return share_full == 0.0
        return axis == 1 and share_full >= FULL

    def try_step(self, current: tuple[int, ...], axis: int, offset: int) -> tuple[int, ...] | None:
        """The index to move to, or None. When the incumbent's record misses the objective (a duel
        just caught it stalling), that is the best point measured so far: a candidate that merely
        did not stall beside it is no better than the points the climb already left. Otherwise
        the step, if it is in range, affordable and improves."""
        candidate = tuple(i + offset if a == axis else i for a, i in enumerate(current))
        if not 0 <= candidate[axis] <= self.limits[axis]:
            return None
        point, here = self.point_of(candidate), self.point_of(current)
        if point not in self.cache.measured and (
            self.calls >= self.climb_budget or self.out_of_time() or self.changes_nothing(self.cache.measured[here], axis, offset)
        ):
            return None
        m, incumbent = self.evaluate(point, self.cache.measured[here])
        if not self.cache.measured[here].feasible(self.objective_ms):
            leader = self.cache.leader(self.objective_ms).point
            return self.index_of(leader) if leader != here else None
        return candidate if self.improves(m, incumbent) else None

    # -- the climb -----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        if self.out_of_time():  # a server that took the whole time limit to start: nothing to choose from
            return SearchResult(None, {}, self.grid.size, self.objective_ms, measurements=0)
        current = tuple(min(i, limit) for i, limit in zip(start_point(self.grid, self.rows_in_flight, self.cores), self.limits))
        if self.seed is not None:
            self.calls += 1
            self.cache.record(self.seed(self.point_of(current)))
        else:
            self.cache(self.point_of(current))
        moved = True
        while moved and self.calls < self.climb_budget:
            moved = False
            for axis in range(len(self.axes)):
                for direction in (+1, -1):
                    stepped = False
                    while (step := self.try_step(current, axis, direction)) is not None:
                        current, stepped, moved = step, True, True
                    if stepped:
                        break  # improved going this way: the other way is where we came from
            if not moved:
                # A local top; with budget left, look two steps out along each axis: a queue delay
                # can start paying only once it is long enough to fill the batch.
                for axis in range(len(self.axes)):
                    for direction in (+2, -2):
                        if not moved and (step := self.try_step(current, axis, direction)) is not None:
                            current, moved = step, True
        best = self.cache.measured[self.point_of(current)]
        if self.out_of_time():
            best = self.cache.leader(self.objective_ms)
        elif self.duel is None:
            best = self.confirm(best)
        elif self.calls < self.budget and (runner_up := self.cache.leader(self.objective_ms, excluding=best.point)) is not None:
            self.calls += 1
            best = self.rematch(best, runner_up)
        return SearchResult(best, self.cache.measured, self.grid.size, self.objective_ms, measurements=self.calls)

    def rematch(self, best: Measurement, runner_up: Measurement) -> Measurement:
        """Duel the climb's choice with the best other point seen once more, and keep the one with
        the higher throughput over all their meetings (meeting the objective first). The climb's last
        move was decided by a single duel of 0.75 s a side, where luck decides often enough to
        matter: the same config driven twice differs by up to 30% in a 0.5 s round on 2 cores."""
        seen_best, seen_runner_up = self.duel(best.point, runner_up.point)
        self.cache.record_duel(seen_best, seen_runner_up)
        a, b = self.cache.measured[best.point], self.cache.measured[runner_up.point]
        if a.feasible(self.objective_ms) != b.feasible(self.objective_ms):
            return a if a.feasible(self.objective_ms) else b
        totals = self.cache.head_to_head_totals(best.point, runner_up.point)
        return b if totals[runner_up.point] > totals[best.point] else a

    def confirm(self, best: Measurement) -> Measurement:
        """With two spare measurements, measure the best and the runner-up again when they are within
        10% of each other, and keep the one with the higher mean."""
        spare = self.budget - self.calls
        feasible = sorted((m for m in self.cache.measured.values() if m.feasible(self.objective_ms)), key=lambda m: -m.throughput_per_s)
        if spare < 2 or len(feasible) < 2 or feasible[1].throughput_per_s < 0.9 * feasible[0].throughput_per_s:
            return best
        for first in feasible[:2]:
            self.cache.record(self._counted(first.point))
        leaders = [self.cache.measured[m.point] for m in feasible[:2]]
        return leaders[0] if better(leaders[0], leaders[1], self.objective_ms) else leaders[1]


def hill_climb(measure: Callable[[Point], Measurement], grid: TuningGrid, objective_ms: float, **options) -> SearchResult:
    """Climb(...).run(): see Climb for the options."""
    return Climb(measure, grid, objective_ms, **options).run()

"""What the server's batch statistics tell the climb: where it starts its delay, which steps it skips."""

from __future__ import annotations

import math

import pytest

from inferops.triton.search import Measurement, TuningGrid, hill_climb, start_point

GRID = TuningGrid(max_batch_sizes=(4, 8, 16, 32), queue_delays_us=(0, 1000, 5000), instance_counts=(1, 2), preferred=("max",))


@pytest.mark.parametrize(("rows", "cores", "start"), [
    (16, 2, (1, 1, 1)),   # 8 rows per instance, filled once over: the shortest delay
    (64, 2, (3, 1, 1)),   # 32 per instance, still once over
    (128, 2, (3, 0, 1)),  # two batches per instance in flight: the queue refills while they run
    (16, 1, (2, 1, 0)),
])
def test_the_start_waits_the_shortest_delay_only_when_the_batches_are_filled_once_over(rows, cores, start):
    assert start_point(GRID, rows, cores) == start
    assert start_point(TuningGrid(queue_delays_us=(0,), preferred=("max",)), rows, cores)[1] == 0


def surface_with_statistics(full_share_at, peak=(8, 1000, 2), reached=lambda point: True):
    """A unimodal surface whose measurements carry batch statistics: a share `full_share_at(point)`
    of the executions full, the rest half batches, or (where `reached` says no) no batch at the cap."""
    calls = []

    def measure(point):
        calls.append(point)
        size = point[0]
        distance = sum(abs(math.log2(max(a, 1) / max(b, 1))) for a, b in zip(point, peak))
        full = round(100 * full_share_at(point))
        batches = ((max(1, size // 2), 100 - full), (size, full)) if reached(point) else ((max(1, size // 2), 100),)
        return Measurement(point, 1000.0 / (1 + distance), 5.0, 10.0, batches=tuple((s, c) for s, c in batches if c))

    return measure, calls


def test_a_longer_delay_is_not_measured_when_nearly_every_batch_was_full():
    measure, calls = surface_with_statistics(lambda point: 0.97)
    result = hill_climb(measure, GRID, objective_ms=50, concurrency=16, cores=2)
    assert result.best.point == (8, 1000, 2)
    assert (8, 5000, 2) not in calls and (8, 0, 2) in calls, "the step down still changes something"


def test_a_longer_delay_is_measured_when_batches_were_cut_short():
    measure, calls = surface_with_statistics(lambda point: 0.5, peak=(8, 5000, 2))
    result = hill_climb(measure, GRID, objective_ms=50, concurrency=16, cores=2)
    assert (8, 5000, 2) in calls and result.best.point == (8, 5000, 2)


def test_a_larger_max_batch_is_not_measured_when_no_batch_reached_the_current_one():
    measure, calls = surface_with_statistics(lambda point: 0.0, peak=(16, 1000, 2), reached=lambda point: False)
    hill_climb(measure, GRID, objective_ms=50, concurrency=16, cores=2)
    assert not any(point[0] > 8 for point in calls)


def test_requests_of_several_rows_count_a_batch_full_when_one_more_would_not_fit():
    """Requests of 8 rows under a cap of 12: batches of 8 are as full as they get, so the cap bound."""
    grid = TuningGrid(max_batch_sizes=(8, 12, 16), queue_delays_us=(0,), instance_counts=(1,), preferred=("max",))
    calls = []

    def measure(point):
        calls.append(point)
        return Measurement(point, 100.0 * point[0], 5.0, 10.0, batches=((8, 50),))

    result = hill_climb(measure, grid, objective_ms=50, concurrency=2, cores=1, request_rows=8, budget=3)
    assert (16, 0, 1) in calls and result.best.point == (16, 0, 1)


def test_without_statistics_every_step_is_measured_as_before():
    measure, _ = surface_with_statistics(lambda point: 1.0)
    seen = []

    def without_statistics(point):
        seen.append(point)
        return Measurement(point, measure(point).throughput_per_s, 5.0, 10.0)

    hill_climb(without_statistics, GRID, objective_ms=50, concurrency=16, cores=2)
    assert (8, 5000, 2) in seen


def test_a_points_record_sums_its_executions_and_the_report_shows_its_mean_batch():
    a = Measurement((8, 0, 2), 100.0, 1.0, 2.0, batches=((4, 10), (8, 10)))
    b = Measurement((8, 0, 2), 120.0, 1.0, 2.0, batches=((8, 20),))
    merged = a.merged(b)
    assert merged.batches == ((4, 10), (8, 30)) and merged.mean_batch == 7.0 and merged.share_at(8) == 0.75
    assert Measurement((8, 0, 2), 1.0, 1.0, 1.0).mean_batch is None

    result = hill_climb(lambda p: Measurement(p, 10.0, 1.0, 2.0, batches=((p[0], 3),)), GRID, objective_ms=50, concurrency=16, cores=2)
    assert {q.mean_batch_size for q in result.report().points} <= {4.0, 8.0, 16.0, 32.0}
    assert result.report().model_dump(by_alias=True)["points"][0]["meanBatchSize"] == 8.0


def test_with_preferred_half_a_larger_max_batch_is_measured_even_when_none_reached_the_cap():
    """[4, 8] sends at 4 rows; [8, 16] waits for 8: a larger max batch size changes what is sent."""
    grid = TuningGrid(max_batch_sizes=(8, 16), queue_delays_us=(1000,), instance_counts=(2,), preferred=("half",))
    calls = []

    def measure(point):
        calls.append(point)
        return Measurement(point, 100.0 * point[0], 5.0, 10.0, batches=((4, 50),))

    hill_climb(measure, grid, objective_ms=50, concurrency=16, cores=2, budget=2)
    assert calls == [(8, 1000, 2, "half"), (16, 1000, 2, "half")]

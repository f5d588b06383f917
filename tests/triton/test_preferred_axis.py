"""Preferred batch sizes as a grid axis: the grid, the climb along it, the sweep and the report."""

from __future__ import annotations

import argparse
import math

import pytest

from inferops.triton.grid import point_label
from inferops.triton.search import Measurement, TuningGrid, batching_for, exhaustive, hill_climb, start_point

AXES = {"max_batch_sizes": (4, 8, 16, 32), "queue_delays_us": (0, 1000, 5000), "instance_counts": (1, 2)}
GRID = TuningGrid(**AXES, preferred=("max", "half"))
BEFORE = TuningGrid(**AXES, preferred=("max",))  # the grid as it was before the axis


def surface(peak, gain_of_half: float = 0.0):
    """Unimodal over batch size, delay and instances with its best at `peak` (three values); a point
    with preferred "half" gets `gain_of_half` more throughput (negative: less). Records every call."""
    calls = []

    def measure(point):
        calls.append(point)
        distance = sum(abs(math.log2(max(a, 1) / max(b, 1))) for a, b in zip(point[:3], peak))
        half = len(point) > 3 and point[3] == "half"
        return Measurement(point, 1000.0 / (1 + distance) * (1 + (gain_of_half if half else 0.0)), 5.0, 10.0)

    return measure, calls


def test_the_default_grid_varies_preferred_sizes_and_a_single_max_choice_keeps_three_element_points():
    assert TuningGrid() == GRID and GRID.size == 48 and GRID.batching_size == 24
    assert len(GRID.points()) == 48 and {p[3] for p in GRID.points()} == {"max", "half"}
    assert BEFORE.size == 24 and all(len(p) == 3 for p in BEFORE.points())
    assert batching_for((16, 1000, 2, "half")).preferred_batch_sizes == [8, 16]
    assert batching_for((1, 0, 1, "half")).preferred_batch_sizes == [1]
    assert batching_for((16, 1000, 2, "max")) == batching_for((16, 1000, 2))
    assert batching_for((16, 1000, 2, "max")).preferred_batch_sizes == [16]
    only_half = TuningGrid(**AXES, preferred=("half",))
    assert only_half.size == 24 and all(p[3] == "half" for p in only_half.points())


@pytest.mark.parametrize("preferred", [(), ("half", "max"), ("max", "max"), ("none",)])
def test_preferred_choices_are_checked(preferred):
    with pytest.raises(ValueError, match="preferred choices"):
        TuningGrid(preferred=preferred)


def test_points_that_differ_only_in_preferred_sizes_are_served_under_different_names():
    """A duel serves both points as copies named by their labels: one name would be one copy."""
    assert point_label((8, 0, 2, "max")) != point_label((8, 0, 2, "half"))
    assert point_label((8, 0, 2)) == "b8-d0-i2"


def test_the_climb_starts_from_full_batches_and_keeps_the_old_budget():
    assert start_point(GRID, 16, 2) == (*start_point(BEFORE, 16, 2), 0)
    assert GRID.preferred[0] == "max"
    measure, calls = surface((8, 0, 2))
    result = hill_climb(measure, GRID, objective_ms=50, concurrency=16, cores=2)
    assert result.report().measurements == len(calls) <= BEFORE.size // 4 == 6, "the axis buys no measurements"


def test_a_grid_with_one_preferred_choice_climbs_the_points_it_climbed_before():
    """(16, 1000, 1) is three steps away: the climb walks the same path with "half" as with "max"."""
    paths = {}
    for preferred in (("max",), ("half",)):
        measure, calls = surface((16, 1000, 1))
        result = hill_climb(measure, TuningGrid(**AXES, preferred=preferred), objective_ms=50, concurrency=16, cores=2)
        paths[preferred] = [p[:3] for p in calls]
        assert result.best.point[:3] == (16, 1000, 1)
    assert paths[("max",)] == paths[("half",)]


def test_the_climb_steps_along_the_preferred_axis_when_it_pays():
    """The start's batch size, delay and instances are the peak: the only step that improves is
    along the new axis, which the climb reaches within the old budget."""
    measure, calls = surface((8, 0, 2), gain_of_half=0.2)
    result = hill_climb(measure, GRID, objective_ms=50, concurrency=16, cores=2, budget=8)
    assert result.best.point == (8, 0, 2, "half")
    assert (8, 0, 2, "half") in calls and len(calls) == len(set(calls)) <= 8
    assert result.report().chosen.preferred_batch_sizes == [4, 8]


def test_the_preferred_axis_is_decided_in_a_duel_too():
    truth = {(8, 0, 2, "max"): 1000.0, (8, 0, 2, "half"): 1150.0}
    duels = []

    def measure(point):
        return Measurement(point, truth.get(point, 500.0), 5.0, 10.0)

    def duel(incumbent, candidate):
        duels.append((incumbent, candidate))
        return measure(incumbent), measure(candidate)

    result = hill_climb(measure, GRID, objective_ms=50, concurrency=16, cores=2, duel=duel, budget=10)
    assert ((8, 0, 2, "max"), (8, 0, 2, "half")) in duels
    assert result.best.point == (8, 0, 2, "half") and result.report().measurements <= 10


def test_the_sweep_covers_both_choices_and_the_report_shows_each_points_preferred_sizes():
    measure, calls = surface((8, 1000, 2), gain_of_half=-0.1)
    result = exhaustive(measure, GRID, objective_ms=50)
    assert sorted(calls) == sorted(GRID.points()) and result.best.point == (8, 1000, 2, "max")
    report = result.report()
    assert report.measurements == report.grid_size == 48
    seen = {(q.max_batch_size, q.max_queue_delay_microseconds, q.instance_count, tuple(q.preferred_batch_sizes)) for q in report.points}
    assert (8, 1000, 2, (8,)) in seen and (8, 1000, 2, (4, 8)) in seen and len(seen) == 48
    dumped = report.model_dump(by_alias=True, mode="json")["points"]
    assert {tuple(p["preferredBatchSizes"]) for p in dumped if p["maxBatchSize"] == 16} == {(16,), (8, 16)}


def test_the_tune_command_parses_the_axis_in_the_grids_order():
    from inferops.triton.tune_cmd import _preferred, configure

    parser = argparse.ArgumentParser()
    configure(parser)
    base = ["--server", "localhost:8000", "--model", "m", "--latency-objective-ms", "50"]
    assert parser.parse_args(base).preferred_batch_sizes == GRID.preferred
    assert parser.parse_args([*base, "--preferred-batch-sizes", "half,max"]).preferred_batch_sizes == ("max", "half")
    assert parser.parse_args([*base, "--preferred-batch-sizes", "half"]).preferred_batch_sizes == ("half",)
    with pytest.raises(argparse.ArgumentTypeError, match="subset of max,half"):
        _preferred("max,none")

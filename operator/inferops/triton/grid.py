"""The batching grid the search walks: its axes, its points, and the config each point stands for.

A point is (max_batch_size, max_queue_delay_us, instance_count), plus the preferred-sizes choice
when the grid varies it: a grid whose only choice is "max" (what every search chose before the
axis existed) keeps three-element points, so its searches, reports and callers are unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal, Union, get_args

from inferops.api.tensors import BatchingConfig

# How a point sets dynamic_batching.preferred_batch_size:
# - "max": [max_batch_size]: with a queue delay, the batcher waits for a full batch (or the delay).
#   It is also what a config without preferred sizes gets: Triton fills an empty list with
#   [max_batch_size] when it loads the config, so "no preferred sizes" is not a choice of its own;
# - "half": [max_batch_size / 2, max_batch_size]: the batcher sends as soon as half a batch is
#   queued instead of waiting out the delay for a full one: shorter waits, smaller batches.
Preferred = Literal["max", "half"]
PREFERRED_CHOICES: tuple[Preferred, ...] = get_args(Preferred)
DEFAULT_PREFERRED: Preferred = "max"

Point = Union[tuple[int, int, int], tuple[int, int, int, Preferred]]


@dataclass(frozen=True)
class TuningGrid:
    max_batch_sizes: tuple[int, ...] = (4, 8, 16, 32)
    queue_delays_us: tuple[int, ...] = (0, 1000, 5000)
    instance_counts: tuple[int, ...] = (1, 2)
    preferred: tuple[Preferred, ...] = PREFERRED_CHOICES

    def __post_init__(self):
        for axis in self.numeric_axes:
            if not axis or list(axis) != sorted(set(axis)):
                raise ValueError(f"grid axis {axis} must be non-empty, sorted and without repeats")
        if self.max_batch_sizes[0] < 1:
            raise ValueError("max batch sizes must be >= 1 for dynamic batching")
        # One canonical order, so that a grid's points (and the climb's neighbours) do not depend
        # on how a flag listed the choices.
        if not self.preferred or list(self.preferred) != [c for c in PREFERRED_CHOICES if c in self.preferred] or len(set(self.preferred)) != len(self.preferred):
            raise ValueError(f"preferred choices {self.preferred} must be non-empty, without repeats, in the order {PREFERRED_CHOICES}")

    @property
    def numeric_axes(self) -> tuple[tuple[int, ...], ...]:
        return (self.max_batch_sizes, self.queue_delays_us, self.instance_counts)

    @property
    def varies_preferred(self) -> bool:
        """Whether points carry a preferred choice (see the module's docstring)."""
        return self.preferred != (DEFAULT_PREFERRED,)

    @property
    def axes(self) -> tuple[tuple, ...]:
        return self.numeric_axes + ((self.preferred,) if self.varies_preferred else ())

    @property
    def size(self) -> int:
        return math.prod(len(a) for a in self.axes)

    @property
    def batching_size(self) -> int:
        """Points over batch size, delay and instances only: the default climb budget's base. The
        preferred axis refines the batcher's behaviour rather than opening a region of its own, so it
        buys the climb no extra measurements (see Climb)."""
        return math.prod(len(a) for a in self.numeric_axes)

    def points(self) -> list[Point]:
        return list(itertools.product(*self.axes))


def preferred_of(point: Point) -> Preferred:
    return point[3] if len(point) > 3 else DEFAULT_PREFERRED  # type: ignore[misc]


def point_label(point: Point) -> str:
    """A short name for a point (a served copy's name, a progress line)."""
    label = "b{}-d{}-i{}".format(*point[:3])
    return label if len(point) == 3 else f"{label}-p{preferred_of(point)}"


def preferred_sizes(max_batch_size: int, preferred: Preferred) -> list[int]:
    return [max_batch_size] if preferred == "max" else sorted({max(1, max_batch_size // 2), max_batch_size})


def batching_for(point: Point) -> BatchingConfig:
    """The config of a grid point. With "max" the batcher is asked to prefer full batches: with the
    delay it waits for max_batch_size requests, and sends what it has when the delay runs out."""
    max_batch_size, delay_us, instances = point[:3]
    return BatchingConfig(
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred_sizes(max_batch_size, preferred_of(point)),
        max_queue_delay_microseconds=delay_us,
        instance_count=instances,
        dynamic_batching=True,
    )

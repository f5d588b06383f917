"""memoized(): rendering the same inputs again returns the kept result, as a fresh copy."""

from __future__ import annotations

import pytest

from inferops.reconcile.children import desired_job, desired_serving
from inferops.reconcile.memo import memoized
from inferops.reconcile.naming import optimization_hash

from .test_reconcile import CPU, SETTINGS, model, spec


def test_same_arguments_render_once_and_every_caller_gets_its_own_copy():
    calls = []

    @memoized(maxsize=2)
    def render(ref, n: int) -> tuple[list[dict], str]:
        calls.append(n)
        return [{"n": n, "name": ref.name}], "batching"

    first = render(model(), 1)
    first[0][0]["n"] = "edited by the caller"
    assert render(model(), 1) == ([{"n": 1, "name": "digits"}], "batching") and calls == [1]
    render(model(spec(serving={"replicas": 5})), 1)  # another spec: another key
    assert calls == [1, 1]
    render(model(), 2), render(model(), 3)  # the LRU holds two
    render(model(), 1)
    assert calls == [1, 1, 2, 3, 1]


def test_an_exception_is_not_kept():
    attempts = []

    @memoized()
    def flaky(x: int) -> dict:
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first time")
        return {"x": x}

    with pytest.raises(ValueError):
        flaky(1)
    assert flaky(1) == {"x": 1} and attempts == [1, 1]


def test_the_renderers_are_memoized_and_equal_to_a_fresh_render():
    ref = model(spec(hardware={"class": "cpu"}))
    spec_hash = optimization_hash(ref.spec, CPU)
    job = desired_job(ref, CPU, spec_hash, SETTINGS)
    desired_job.cache_clear()
    assert desired_job(ref, CPU, spec_hash, SETTINGS) == job
    assert desired_job(ref, CPU, spec_hash, SETTINGS) is not desired_job(ref, CPU, spec_hash, SETTINGS)
    assert hasattr(desired_serving, "cache_clear")

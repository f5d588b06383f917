"""Reconcile requests for one model coalesce while one is queued: the queued one has read nothing yet."""

from __future__ import annotations

import asyncio

import pytest

from inferops.metrics import METRICS
from inferops.reconcile.settings import OperatorSettings
from inferops.reconciler import Reconciler


class GatedKube:
    """get_model waits for the gate; every model is already gone (so a reconcile ends there)."""

    def __init__(self):
        self.gate = asyncio.Event()
        self.reads: list[str] = []

    async def get_model(self, namespace, name):
        self.reads.append(name)
        await self.gate.wait()
        return None


@pytest.mark.asyncio
async def test_requests_for_a_model_already_queued_are_answered_by_the_queued_one():
    kube = GatedKube()
    reconciler = Reconciler(kube, OperatorSettings(artifact_root="s3://a", smoke_test=False))
    coalesced_before = METRICS.reconciles.labels("coalesced")._value.get()
    running = asyncio.create_task(reconciler.reconcile("ns", "m"))
    await asyncio.sleep(0)  # it holds the model's lock and waits in get_model
    queued = [asyncio.create_task(reconciler.reconcile("ns", "m")) for _ in range(5)]
    other = asyncio.create_task(reconciler.reconcile("ns", "other"))
    await asyncio.sleep(0.01)
    assert kube.reads == ["m", "other"]
    kube.gate.set()
    await asyncio.gather(running, *queued, other)
    assert kube.reads == ["m", "other", "m"], "one running and one queued reconcile of m; four requests coalesced"
    assert METRICS.reconciles.labels("coalesced")._value.get() - coalesced_before == 4

    # Once nothing is queued, the next request reconciles again.
    await reconciler.reconcile("ns", "m")
    assert kube.reads == ["m", "other", "m", "m"]

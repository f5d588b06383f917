"""Blocking I/O runs on one bounded pool per kind of target: hung smoke targets hold only the
smoke pool, and the operator's API calls go on (issue 14 point 9, issue "At scale")."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inferops.executors import IOPools, run_in
from inferops.reconcile.settings import OperatorSettings


@pytest.mark.asyncio
async def test_hung_smoke_targets_do_not_hold_up_api_calls():
    pools = IOPools(api_threads=2, storage_threads=1, smoke_threads=2)
    hang = threading.Event()
    try:
        hung = [asyncio.ensure_future(run_in(pools.smoke, hang.wait, 30)) for _ in range(5)]  # more than the pool holds
        await asyncio.sleep(0.05)
        answers = await asyncio.wait_for(asyncio.gather(*(run_in(pools.api, lambda i=i: i * 2) for i in range(20))), 5)
        assert answers == [i * 2 for i in range(20)]
        assert await asyncio.wait_for(run_in(pools.storage, str, 7), 5) == "7"
        assert not any(t.done() for t in hung), "the smoke calls are still hung"
    finally:
        hang.set()
        pools.shutdown()


def test_pool_sizes_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("INFEROPS_API_THREADS", "24")
    monkeypatch.setenv("INFEROPS_SMOKE_THREADS", "0")
    settings = OperatorSettings.from_env()
    assert (settings.api_threads, settings.storage_threads, settings.smoke_threads) == (24, 4, 1)

"""Bounded thread pools for the operator's blocking I/O, one per kind of target.

The Kubernetes client, the artifact store (report.json) and Triton (smoke inferences) are
blocking libraries, so their calls run in threads. They used to share asyncio's default pool
(min(32, cores + 4) threads: 6 on a 2-core node), so a few hung smoke targets or a slow
object store held every thread and the API calls of all other models queued behind them
(issue 14, point 9; issue "At scale"). Each kind now has its own pool, sized by a setting
(reconcile/settings.py): a slow target starves only its own kind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class IOPools:
    def __init__(self, api_threads: int, storage_threads: int, smoke_threads: int) -> None:
        self.api = concurrent.futures.ThreadPoolExecutor(api_threads, thread_name_prefix="inferops-api")
        self.storage = concurrent.futures.ThreadPoolExecutor(storage_threads, thread_name_prefix="inferops-storage")
        self.smoke = concurrent.futures.ThreadPoolExecutor(smoke_threads, thread_name_prefix="inferops-smoke")

    def shutdown(self) -> None:
        for pool in (self.api, self.storage, self.smoke):
            pool.shutdown(wait=False, cancel_futures=True)


async def run_in(pool: concurrent.futures.Executor | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in `pool` (asyncio's default pool when None)."""
    return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))

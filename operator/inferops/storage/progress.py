"""Progress lines in the log for long transfers: at most one every few seconds, plus the last one."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("inferops.storage")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """A callable taking byte counts (boto3's Callback protocol), thread-safe."""

    def __init__(self, label: str, total: int | None, every_s: float = 5.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.done = 0
        self._started = self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if now - self._last >= self.every_s:
                self._last = now
                self._emit(now)

    def finish(self) -> None:
        self._emit(time.monotonic())

    def _emit(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-6)
        of = f" of {_human(self.total)} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        log.info("%s: %s%s, %s/s", self.label, _human(self.done), of, _human(self.done / elapsed))

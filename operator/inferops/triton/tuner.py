"""`dynamicBatching: auto`: profile a model on a real Triton server and pick its batching config.

The search space is a grid of max_batch_size x max_queue_delay x instance count x preferred
batch sizes ([max_batch_size] or none: grid.py). Each point
is measured by reloading the model with that config (explicit model control) and driving it
with `concurrency` closed-loop clients. The objective: the highest throughput whose p99
latency meets the latency objective. A config whose batcher stalls now and then must not look
best from a lucky window (Triton 2.51's one-instance batcher held a whole batch for its 500 ms
default wait in about one burst of three, until the renderer stopped turning payload
prefetching off: see config.QueuePolicy). Two things keep such a config from looking best:
the load generator charges every request the time it took, the ones still in flight when a
window closes included (a stall that outlasts a short window costs it what it costs a client),
and a single measurement's throughput is the slowest third of its window
(LoadResult.sustained_per_s).

`hill_climb` walks the grid one axis at a time from a start point that follows from the load
(batches never grow past the number of requests in flight), keeps every measured point in a
cache, and stops when no neighbour improves or its budget (a quarter of the grid) is spent.
Each step is a duel: the candidate and the incumbent are served at once and driven in turns
within one measurement's time (Profiler.duel). On a shared CPU, configs measured one after the
other differ by +-20% from the machine's drift alone, more than the top of the grid differs in
truth; slices taken in turns see the same drift. Every duel also adds to each point's record
(Measurement.merged: mean throughput, p99 over all the requests seen), so a config that won a
duel by luck is watched again as the incumbent, and one slow window does not rule out a config
that met the objective everywhere else. When the incumbent's record misses the objective, the
climber goes back to the best point it has seen. The budget's last measurement is a rematch of
the climb's choice with the best other point seen, so no config is chosen on one duel alone.
`exhaustive` measures every point; it exists to check the climber.

The search lives in search.py (pure), the server-driving profiler in profiler.py (it works on
any running server in explicit model-control mode: `inferops tune` runs it in the tuning pod).
This module runs them on the wheel's tritonserver on this machine (`tune_repository`, what
`inferops optimize --tune` does on a laptop), so that result holds for the CPU (python backend
running ONNX Runtime).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from inferops.api.report import TuningReport

from .config import parse_model_config
from .profiler import ServerProfiler
from .python_backend import ONNX_FILE, to_python_backend
from .search import Measurement, TuningGrid, batching_for, exhaustive, hill_climb  # noqa: F401 - also for this module's callers


class Profiler(ServerProfiler):
    """A ServerProfiler on a tritonserver of its own: the wheel's, on loopback, in explicit
    model-control mode, over a private copy of `repository/model_name` (ONNX models turned into
    python-backend ones, as the wheel has no onnxruntime backend)."""

    def __init__(
        self,
        repository: Path,
        model_name: str,
        instance_kind: str = "KIND_CPU",
        *,
        concurrency: int = 16,
        duration_s: float = 1.0,
        warmup_s: float = 0.5,
        protocol: str = "grpc",
        measure_with: str | None = None,
    ):
        super().__init__("", model_name, instance_kind=instance_kind, concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s, measure_with=measure_with)
        self._source = Path(repository) / model_name
        self._wanted_protocol = protocol
        self._workdir: Path | None = None
        self.server = None

    def __enter__(self) -> "Profiler":
        from .server import TritonServer

        self._workdir = Path(tempfile.mkdtemp(prefix="inferops-tune-"))
        self.repository = self._workdir / "repository"
        model_dir = self.repository / self.model_name
        shutil.copytree(self._source, model_dir)
        if parse_model_config((model_dir / "config.pbtxt").read_text()).backend == "onnxruntime" and any(model_dir.glob(f"*/{ONNX_FILE}")):
            to_python_backend(model_dir)
        self.server = TritonServer(self.repository, explicit_models=[])
        try:
            self.server.start()
            self.http_url = self.server.http_url
            self.grpc_url = self.server.grpc_url if self._wanted_protocol == "grpc" else None
            self.read_config()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.server is not None:
            self.server.cleanup()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def tune_repository(
    repository: Path,
    model_name: str,
    latency_objective_ms: float,
    instance_kind: str = "KIND_CPU",
    *,
    grid: TuningGrid | None = None,
    concurrency: int = 16,
    duration_s: float = 1.0,
    budget: int | None = None,
    exhaustive_search: bool = False,
) -> TuningReport:
    """Profile `repository/model_name` on the local tritonserver and return the batching config
    with the highest throughput whose p99 meets `latency_objective_ms` (the lowest p99 if none does).
    The repository is not modified: write the chosen config with build_model_config."""
    grid = grid or TuningGrid()
    with Profiler(repository, model_name, instance_kind, concurrency=concurrency, duration_s=duration_s) as profiler:
        started = time.monotonic()
        if exhaustive_search:
            result = exhaustive(profiler.measure, grid, latency_objective_ms)
        else:
            result = hill_climb(profiler.measure, grid, latency_objective_ms, concurrency=concurrency, budget=budget, duel=profiler.duel, seed=profiler.seed)
        report = result.report()
        report.wall_seconds = round(time.monotonic() - started, 1)
        report.measured_with = profiler.instrument.name
    report.concurrency, report.instance_kind = concurrency, instance_kind
    return report

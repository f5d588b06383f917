"""Drive a running Triton server over its API: load batching candidates, measure them, duel them.

`ServerProfiler` talks to a server that already runs in explicit model-control mode (the
tuning pod's Triton container, or a local one): it reads the model's config from the server,
so a candidate keeps everything the served config has (signature, backend or platform,
parameters, instance kind, GPUs, execution accelerators) and only its max batch size, dynamic
batching and instance count change; it loads a candidate with Triton's repository API and a
config override (`load_model(name, config=json)`), so no point needs a server restart.

A duel serves two candidates at once under names of their own. Triton loads a name only if
the repository has a directory for it, so duels need the server's repository as a folder the
profiler can write (`repository=`, a volume shared with the server): each copy is a directory of
relative symlinks to the model's own files, with no config.pbtxt (the override is the config).
Without it, points are measured one after the other, reloading the model under its own name.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import shutil
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from inferops.api.tensors import BatchingConfig, Signature

from .loadgen import percentiles
from .grid import Point, batching_for, point_label
from .measurement import Measurement

COPY_MARK = "-tune-"  # copies are named <model>-tune-<label>


class ProfilerError(RuntimeError):
    """The server or the model cannot be profiled at all (not a bad point)."""


def wait_live(http_url: str, timeout_s: float) -> None:
    """Poll /v2/health/live until it answers 200; ProfilerError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(f"http://{http_url}/v2/health/live", timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise ProfilerError(f"the Triton server at {http_url} was not live after {timeout_s:.0f}s ({last})")
        time.sleep(0.5)


def signature_of(config: dict) -> Signature:
    """The signature of a model config as the server returns it (JSON)."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    from .config import signature_from_config

    return signature_from_config(json_format.ParseDict(config, model_config_pb2.ModelConfig(), ignore_unknown_fields=True))


def batchable(config: dict) -> dict:
    """The config with a batch dimension Triton can batch on. A config served with max_batch_size 0
    whose every tensor starts with a variable dim gets that dim back as Triton's batch dimension;
    one without refuses dynamic batching."""
    if int(config.get("max_batch_size", 0)) > 0:
        return config
    tensors = [*config.get("input", []), *config.get("output", [])]
    if not tensors or any(not t.get("dims") or int(t["dims"][0]) != -1 for t in tensors):
        raise ProfilerError("the model's tensors have no free first (batch) dimension: dynamic batching cannot apply to it")
    config = copy.deepcopy(config)
    for tensor in [*config.get("input", []), *config.get("output", [])]:
        tensor["dims"] = tensor["dims"][1:]
    config.pop("model_warmup", None)  # its dims carried the batch dimension too
    return config


def candidate_config(base: dict, name: str, batching: BatchingConfig, instance_kind: str | None = None) -> dict:
    """`base` (the served config) with `batching`'s max batch size, dynamic batching and instance
    count, everything else kept. The instance groups' names are dropped: Triton names them after
    the model, and a copy is another model."""
    config = copy.deepcopy(base)
    config["name"] = name
    config["max_batch_size"] = batching.max_batch_size
    if batching.dynamic_batching:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": batching.max_queue_delay_microseconds,
            "preferred_batch_size": sorted(batching.preferred_batch_sizes),
        }
    else:
        config.pop("dynamic_batching", None)
    groups = config.get("instance_group") or [{"kind": instance_kind or "KIND_CPU"}]
    for group in groups:
        group.pop("name", None)
        group["count"] = batching.instance_count
        if instance_kind:
            group["kind"] = instance_kind
    config["instance_group"] = groups
    return config


def executions_since(before: dict[int, int], after: dict[int, int]) -> tuple[tuple[int, int], ...]:
    """(batch size, executions) pairs counted between two reads of a model's statistics."""
    return tuple((size, count - before.get(size, 0)) for size, count in sorted(after.items()) if count > before.get(size, 0))


class ServerProfiler:
    """Measures batching configs of one model on a running server. `http_url` (HOST:PORT) for the
    repository API; the load goes to `grpc_url` when given, else over HTTP."""

    def __init__(
        self,
        http_url: str,
        model_name: str,
        *,
        grpc_url: str | None = None,
        repository: Path | None = None,
        instance_kind: str | None = None,
        concurrency: int = 16,
        duration_s: float = 1.0,
        warmup_s: float = 0.5,
        on_measure: Callable[[Measurement], None] | None = None,
        measure_with: str | None = None,
        request_rows: int = 1,
    ):
        self.http_url = http_url
        self.model_name = model_name
        self.grpc_url = grpc_url  # perf_analyzer's endpoint when given (the loadgen uses HTTP)
        self.repository = Path(repository) if repository else None
        self.instance_kind = instance_kind
        self.concurrency = concurrency
        self.request_rows = request_rows  # rows each request carries (the clients' batch)
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        self.on_measure = on_measure
        self.measure_with = measure_with  # perf_analyzer, inferops-loadgen, or None: perf_analyzer when found
        self._instrument = None
        self.log: list[Measurement] = []
        self._copies: dict[str, BatchingConfig] = {}  # names loaded by head_to_head, with their config
        self._meetings = 0  # head_to_head calls so far: who goes first rotates from one to the next
        self.last_batches: dict[str, tuple[tuple[int, int], ...]] = {}  # per label, executions per batch size in the last head_to_head
        self._base: dict | None = None
        self.signature: Signature | None = None

    # -- the server --------------------------------------------------------------------------
    def _client(self):
        import tritonclient.http as http

        return http.InferenceServerClient(self.http_url, network_timeout=300.0, connection_timeout=300.0)

    def read_config(self) -> dict:
        """The served config of the model (loading it first if it is not ready), made batchable."""
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            if not client.is_model_ready(self.model_name):
                client.load_model(self.model_name)
            self._base = batchable(client.get_model_config(self.model_name))
        except InferenceServerException as error:
            raise ProfilerError(f"cannot read the config of model {self.model_name!r} from the server at {self.http_url}: {error}") from None
        finally:
            client.close()
        self.signature = signature_of(self._base)
        if self.instance_kind is None:
            groups = self._base.get("instance_group") or []
            self.instance_kind = groups[0].get("kind", "KIND_CPU") if groups else "KIND_CPU"
        return self._base

    @property
    def base_config(self) -> dict:
        return self._base if self._base is not None else self.read_config()

    @property
    def can_duel(self) -> bool:
        return self.repository is not None

    def load(self, batching: BatchingConfig, name: str | None = None) -> None:
        name = name or self.model_name
        if name != self.model_name:
            self._make_copy(name)
        config = candidate_config(self.base_config, name, batching, self.instance_kind)
        client = self._client()
        try:
            client.load_model(name, config=json.dumps(config))
        finally:
            client.close()

    def _make_copy(self, name: str) -> None:
        """A repository directory for `name` whose entries link to the model's own (no config.pbtxt)."""
        if self.repository is None:
            raise ProfilerError("serving two configs at once needs the server's model repository (repository=)")
        target = self.repository / name
        if target.exists():
            return
        source = self.repository / self.model_name
        if not source.is_dir():
            raise ProfilerError(f"the model {self.model_name!r} is not a folder of the repository {self.repository}")
        target.mkdir()
        for entry in source.iterdir():
            if entry.name != "config.pbtxt":
                (target / entry.name).symlink_to(Path("..") / self.model_name / entry.name)

    def close(self) -> None:
        """Unload the copies and remove their directories."""
        client = self._client()
        try:
            for name in list(self._copies):
                try:
                    client.unload_model(name)
                except Exception:  # noqa: BLE001 - the server may be gone; the folders still go
                    pass
                del self._copies[name]
        finally:
            client.close()
        if self.repository is not None:
            for path in self.repository.glob(f"{self.model_name}{COPY_MARK}*"):
                shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> "ServerProfiler":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def batch_counts(self, name: str) -> dict[int, int]:
        """Executions per batch size the server has counted for `name` so far (its model
        statistics); empty when they cannot be read (measuring goes on without them)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/models/{name}/stats", timeout=5) as response:
                versions = json.load(response).get("model_stats", [])
        except (OSError, ValueError):
            return {}
        counts: dict[int, int] = {}
        for version in versions:
            for entry in version.get("batch_stats", []):
                size = int(entry.get("batch_size", 0))
                counts[size] = counts.get(size, 0) + int(entry.get("compute_infer", {}).get("count", 0))
        return counts

    # -- measuring -----------------------------------------------------------------------------
    def _record(self, m: Measurement) -> Measurement:
        self.log.append(m)
        if self.on_measure is not None:
            self.on_measure(m)
        return m

    @property
    def instrument(self):
        """perf_analyzer or the loadgen (instruments.instrument), chosen on first use."""
        if self._instrument is None:
            from .instruments import instrument

            self._instrument = instrument(self.http_url, self.grpc_url, prefer=self.measure_with)
        return self._instrument

    def _drive(self, name: str, batching: BatchingConfig, *, concurrency: int | None, duration_s: float | None, warmup_s: float | None = None):
        if self.signature is None:
            self.read_config()
        return self.instrument.drive(
            name, self.signature, batching.max_batch_size,
            concurrency=concurrency or self.concurrency,
            duration_s=duration_s or self.duration_s,
            warmup_s=self.warmup_s if warmup_s is None else warmup_s,
            rows=self.request_rows,
        )

    def head_to_head(
        self, configs: dict[str, BatchingConfig], *, rounds: int, slice_s: float, concurrency: int | None = None, warmup_s: float = 0.2
    ) -> dict[str, list]:
        """Serve every config at once, each under a name of its own, and drive them in turns:
        `rounds` rounds of one `slice_s` run each, the order rotating every round and from one
        call to the next (a one-round duel does not always drive the incumbent first). Returns
        each label's LoadResults, one per round, and leaves each label's executions per batch
        size, from the server's statistics, in `last_batches`. Measuring configs one after the other (a reload
        each) swings by +-20% on a shared CPU as the machine's other load drifts; slices
        taken in turns see the same drift, so their per-round ratios cancel it."""
        names = {label: f"{self.model_name}{COPY_MARK}{label}" for label in configs}
        self._keep_loaded({names[label]: batching for label, batching in configs.items()})
        labels = list(configs)
        before = {label: self.batch_counts(names[label]) for label in labels}
        results: dict[str, list] = {label: [] for label in labels}
        for index in range(rounds):
            shift = (index + self._meetings) % len(labels)
            for label in labels[shift:] + labels[:shift]:
                results[label].append(self._drive(names[label], configs[label], concurrency=concurrency, duration_s=slice_s, warmup_s=warmup_s))
        self._meetings += 1
        self.last_batches = {label: executions_since(before[label], self.batch_counts(names[label])) for label in labels}
        return results

    def _keep_loaded(self, wanted: dict[str, BatchingConfig]) -> None:
        """Load the named copies that are not loaded with their config; unload the others."""
        client = self._client()
        try:
            for name in [n for n in self._copies if n not in wanted]:
                client.unload_model(name)
                del self._copies[name]
        finally:
            client.close()
        for name, batching in wanted.items():
            if self._copies.get(name) != batching:
                self._copies.pop(name, None)
                self.load(batching, name)
                self._copies[name] = batching

    def duel(self, incumbent: Point, candidate: Point) -> tuple[Measurement | None, Measurement]:
        """Both points head to head within one `measure`'s time: each gets half of it, in slices
        taken in turns (the loadgen's an eighth of a second; perf_analyzer's at least half a
        second, so by default one each). A point's throughput is its mean over its
        slices and its p50 and p99 are over all their requests. Each slice starts with a burst of
        `concurrency` requests, the moment a batcher is likeliest to stall (Triton 2.51's did, in
        about one slice of three, while payload prefetching was off): more slices give a config
        that stalls more chances to show it. perf_analyzer starts a process per turn, so it takes
        fewer, longer turns (Instrument.min_slice_s)."""
        slices = max(1, round(self.duration_s / 2 / self.instrument.min_slice_s))
        labels = {point_label(point): point for point in (incumbent, candidate)}
        try:
            results = self.head_to_head({label: batching_for(point) for label, point in labels.items()},
                                        rounds=slices, slice_s=self.duration_s / 2 / slices, warmup_s=0.1)
        except Exception as error:  # noqa: BLE001 - a point that fails to load or serve is a bad point, not a crash
            # The incumbent served before: the candidate's config is what failed to load or serve.
            return None, self._record(Measurement(candidate, 0.0, math.inf, math.inf, f"{type(error).__name__}: {error}"))
        measured = []
        for label, point in labels.items():
            runs = results[label]
            errors = [r.first_error for r in runs if r.errors]
            latencies = tuple(itertools.chain.from_iterable(r.latencies_ms for r in runs))
            measured.append(self._record(Measurement(
                point,
                statistics.fmean(r.throughput_per_s for r in runs),
                *percentiles(latencies, 50, 99),
                errors[0] if errors else None,
                latencies_ms=latencies,
                batches=self.last_batches.get(label, ()),
            )))
        return measured[0], measured[1]

    def seed(self, point: Point) -> Measurement:
        """The climb's start before its duels: one side of a duel's time (Climb's `seed`)."""
        return self.measure(point, duration_s=self.duration_s / 2)

    def measure(self, point: Point, duration_s: float | None = None) -> Measurement:
        try:
            batching = batching_for(point)
            self.load(batching)
            before = self.batch_counts(self.model_name)
            result = self._drive(self.model_name, batching, concurrency=None, duration_s=duration_s)
            batches = executions_since(before, self.batch_counts(self.model_name))
            m = Measurement(point, result.sustained_per_s, result.p50_ms, result.p99_ms, result.first_error if result.errors else None,
                            latencies_ms=result.latencies_ms, batches=batches)
        except Exception as error:  # noqa: BLE001 - a point that fails to load or serve is a bad point, not a crash
            m = Measurement(point, 0.0, math.inf, math.inf, f"{type(error).__name__}: {error}")
        return self._record(m)


"""What the profiler measures with: perf_analyzer where its binary is there, else the project's loadgen.

Both drive `concurrency` closed-loop clients at one model for a window, each request carrying
`rows` rows of the batch dimension, and return a LoadResult (throughput in inferences, that is
rows, a second, as perf_analyzer counts them; every counted request's latency; the slowest
third's throughput). perf_analyzer is
the field's instrument (Triton's SDK image ships it; Model Analyzer drives it): the profiler
uses it when $INFEROPS_PERF_ANALYZER names the binary (or a wrapper that sets its
LD_LIBRARY_PATH) or `perf_analyzer` is on PATH. The fallback is loadgen over raw HTTP sockets
(rawhttp.py), which costs the server's CPU less per request than perf_analyzer does.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from inferops.api.tensors import Signature

from .loadgen import WINDOWS, LoadError, LoadResult, percentiles, request_inputs, run_load

PERF_ANALYZER_ENV = "INFEROPS_PERF_ANALYZER"
PERF_ANALYZER = "perf_analyzer"
LOADGEN = "inferops-loadgen"


def find_perf_analyzer() -> str | None:
    """The perf_analyzer to use: $INFEROPS_PERF_ANALYZER ('' or 'none' turns it off), else PATH."""
    named = os.environ.get(PERF_ANALYZER_ENV)
    if named is not None:
        return None if named.strip().lower() in ("", "none", "off") else named
    return shutil.which("perf_analyzer")


class Loadgen:
    """The project's closed loop (loadgen.run_load): raw HTTP sockets by default."""

    name = LOADGEN
    min_slice_s = 0.125  # no start-up cost: a duel can take many short turns

    def __init__(self, http_url: str, grpc_url: str | None = None, protocol: str = "http"):
        self.url = grpc_url if protocol == "grpc" else http_url
        self.protocol = protocol

    def drive(self, model: str, signature: Signature, max_batch_size: int, *, concurrency: int, duration_s: float, warmup_s: float, rows: int = 1) -> LoadResult:
        result = run_load(self.url, model, request_inputs(signature, max_batch_size, batch=rows), concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s, protocol=self.protocol)
        if rows == 1:
            return result
        return replace(result, throughput_per_s=result.throughput_per_s * rows, sustained_per_s=result.sustained_per_s * rows)


class PerfAnalyzer:
    """NVIDIA's perf_analyzer, one run per measurement: `--concurrency-range C`, three time
    windows of a third of the duration each (stability not required: -s 1000; a window in which no
    request completed still counts as unstable, so up to 6 windows are allowed), its own inputs
    (random data). Throughput is perf_analyzer's own figure; latencies come from its profile
    export (every request of the measured windows), so they pool across a duel like loadgen's."""

    name = PERF_ANALYZER
    min_slice_s = 0.5  # each run starts a process and connects: ~0.4 s of overhead, so fewer, longer turns

    def __init__(self, binary: str, http_url: str, grpc_url: str | None = None):
        self.binary = binary
        self.url, self.protocol = (grpc_url, "grpc") if grpc_url else (http_url, "http")

    def command(self, model: str, concurrency: int, window_ms: int, csv_path: Path, export_path: Path, rows: int = 1) -> list[str]:
        return [
            self.binary, "-m", model, "-u", self.url, "-i", self.protocol, "--concurrency-range", str(concurrency), "-b", str(rows),
            "--measurement-interval", str(window_ms), "--max-trials", "6", "--stability-percentage", "1000",
            "-f", str(csv_path), "--profile-export-file", str(export_path),
        ]

    def drive(self, model: str, signature: Signature, max_batch_size: int, *, concurrency: int, duration_s: float, warmup_s: float, rows: int = 1) -> LoadResult:
        window_ms = max(50, round(duration_s * 1000 / 3))
        with tempfile.TemporaryDirectory(prefix="inferops-pa-") as tmp:
            csv_path, export_path = Path(tmp) / "out.csv", Path(tmp) / "export.json"
            done = subprocess.run(self.command(model, concurrency, window_ms, csv_path, export_path, rows), capture_output=True, text=True, timeout=60 + duration_s * 10)
            if done.returncode != 0 or not csv_path.exists():
                said = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip() and not line.startswith((" ", "\t", "*"))]
                raise LoadError(f"perf_analyzer failed on {model!r} (exit {done.returncode}): {' '.join(said[-3:])[:400]}")
            row = next(csv.DictReader(csv_path.open()))
            # Output tensors are exported as raw bytes in JSON strings: not always valid UTF-8.
            export = json.loads(export_path.read_bytes().decode("latin-1"))
        return result_from_export(float(row["Inferences/Second"]), export, concurrency, rows)


def result_from_export(throughput: float, export: dict, concurrency: int, rows: int = 1) -> LoadResult:
    """A LoadResult from perf_analyzer's throughput and its profile export: the latencies of the
    requests sent inside the measured windows, and the slowest window's throughput (in rows)."""
    experiment = export["experiments"][0]
    bounds = experiment.get("window_boundaries") or []
    requests = experiment["requests"]
    start, end = (bounds[0], bounds[-1]) if len(bounds) >= 2 else (min(r["timestamp"] for r in requests), max(r["timestamp"] for r in requests))
    inside = [r for r in requests if start <= r["timestamp"] < end and r.get("response_timestamps")]
    if not inside:
        raise LoadError("perf_analyzer measured no request")
    ms = np.array([(r["response_timestamps"][-1] - r["timestamp"]) / 1e6 for r in inside])
    finished = np.array([r["response_timestamps"][-1] for r in inside], dtype=float)
    edges = bounds if len(bounds) == WINDOWS + 1 else np.linspace(start, end, WINDOWS + 1)
    per_window = [rows * ((finished >= a) & (finished < b)).sum() / ((b - a) / 1e9) for a, b in zip(edges[:-1], edges[1:])]
    p50, p90, p99 = percentiles(ms, 50, 90, 99)
    return LoadResult(
        concurrency=concurrency, requests=len(inside), errors=0, duration_s=(end - start) / 1e9, throughput_per_s=throughput,
        p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=float(ms.mean()), sustained_per_s=float(min(per_window)),
        latencies_ms=tuple(ms.tolist()),
    )


def instrument(http_url: str, grpc_url: str | None = None, *, prefer: str | None = None):
    """perf_analyzer when found (and not `prefer`red away), else the loadgen."""
    binary = find_perf_analyzer() if prefer != LOADGEN else None
    if prefer == PERF_ANALYZER and binary is None:
        raise LoadError(f"perf_analyzer asked for but not found: set ${PERF_ANALYZER_ENV} or put it on PATH")
    return PerfAnalyzer(binary, http_url, grpc_url) if binary else Loadgen(http_url)

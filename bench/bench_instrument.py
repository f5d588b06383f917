"""Does the tuner's load generator read what perf_analyzer reads? Per config, on one server.

For each batching config (the grid's corners, large batches and two instances included), one
server serves it and the load generators take turns driving it, `--rounds` rounds of one run
each, the order rotating every round: the project's loadgen as it was (tritonclient's aio gRPC
client), as it is now (raw HTTP sockets, rawhttp.py), and perf_analyzer over gRPC twice (an A/A
pair: how far two runs of the same instrument differ by the machine's noise alone). Each ratio
is the median of the per-round ratios to the first perf_analyzer run; "cpu us/req" is the load
generator's own CPU time per request (the CPU it takes from the server on a shared machine).

    sh bench/get_perf_analyzer.sh          # once; prints the wrapper's path
    INFEROPS_PERF_ANALYZER=~/.cache/inferops/perf_analyzer/perf_analyzer \\
        .venv/bin/python bench/bench_instrument.py [--concurrency 16] [--rounds 8] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from inferops.api.tensors import BatchingConfig
from inferops.triton.config import build_model_config
from inferops.triton.instruments import PerfAnalyzer, find_perf_analyzer
from inferops.triton.loadgen import request_inputs, run_load
from inferops.triton.sample_model import SIGNATURE, mlp_to_onnx, train_digits_mlp
from inferops.triton.search import batching_for
from inferops.triton.tuner import Profiler

MODEL = "digits"
CONFIGS = [(4, 0, 1), (8, 0, 1), (16, 0, 1), (8, 0, 2), (16, 0, 2), (16, 1000, 2), (32, 0, 2)]


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.5, help="measured seconds per run")
    args = parser.parse_args()
    binary = find_perf_analyzer()
    if binary is None:
        sys.exit("perf_analyzer not found: run bench/get_perf_analyzer.sh and set INFEROPS_PERF_ANALYZER")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-instrument-") as tmp:
        repository = Path(tmp) / "repository"
        classifier, _ = train_digits_mlp()
        mlp_to_onnx(classifier, repository / MODEL / "1" / "model.onnx")
        (repository / MODEL / "config.pbtxt").write_text(build_model_config(MODEL, "onnxruntime", SIGNATURE, BatchingConfig(max_batch_size=16)))
        rows = []
        with Profiler(repository, MODEL, concurrency=args.concurrency) as profiler:
            pa = PerfAnalyzer(binary, profiler.http_url, profiler.grpc_url)
            name = f"{MODEL}-tune-bench"
            for point in CONFIGS:
                profiler._keep_loaded({name: batching_for(point)})
                arrays = request_inputs(profiler.signature, point[0])

                def loadgen(url, protocol, lean):
                    before = cpu_s(resource.RUSAGE_SELF)
                    result = run_load(url, name, arrays, concurrency=args.concurrency, duration_s=args.seconds, warmup_s=0.3, protocol=protocol, lean=lean)
                    return result.throughput_per_s, (cpu_s(resource.RUSAGE_SELF) - before) / max(1, result.requests) * 1e6

                def perf_analyzer():
                    before = cpu_s(resource.RUSAGE_CHILDREN)
                    result = pa.drive(name, profiler.signature, point[0], concurrency=args.concurrency, duration_s=args.seconds, warmup_s=0)
                    # Its CPU over the requests of its windows (start-up included: an upper bound).
                    return result.throughput_per_s, (cpu_s(resource.RUSAGE_CHILDREN) - before) / max(1, result.requests) * 1e6

                runs = {
                    "pa": perf_analyzer,
                    "old": lambda: loadgen(profiler.server.grpc_url, "grpc", False),
                    "new": lambda: loadgen(profiler.server.http_url, "http", True),
                    "pa2": perf_analyzer,
                }
                seen: dict[str, list] = {label: [] for label in runs}
                labels = list(runs)
                for index in range(args.rounds):
                    shift = index % len(labels)
                    for label in labels[shift:] + labels[:shift]:
                        seen[label].append(runs[label]())
                ratio = {label: statistics.median(x[0] / y[0] for x, y in zip(seen[label], seen["pa"])) for label in ("old", "new", "pa2")}
                cpu = {label: statistics.median(x[1] for x in seen[label]) for label in labels}
                rows.append((point, statistics.median(x[0] for x in seen["pa"]), ratio, cpu))
                print(f"{point}: old/pa {ratio['old']:.2f}  new/pa {ratio['new']:.2f}  pa/pa {ratio['pa2']:.2f}", flush=True)
    print(f"\n{args.concurrency} clients, {args.rounds} rounds of {args.seconds}s per instrument per config, {time.monotonic() - started:.0f}s in all")
    header = f"{'config (mbs,delay,inst)':>24} | {'pa /s':>7} | {'old/pa':>6} {'new/pa':>6} {'A/A':>5} | cpu us/req: {'old':>4} {'new':>4} {'pa':>4}"
    print(header)
    print("-" * len(header))
    for point, throughput, ratio, cpu in rows:
        print(f"{str(point):>24} | {throughput:>7.0f} | {ratio['old']:>6.2f} {ratio['new']:>6.2f} {ratio['pa2']:>5.2f} | {'':>11} {cpu['old']:>4.0f} {cpu['new']:>4.0f} {cpu['pa']:>4.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

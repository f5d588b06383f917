"""Dynamic batching on the real tritonserver: no batching vs the tuned config vs the exhaustive best.

For each concurrency (1, 8, 32 by default) the tuner (hill climbing, each step a duel of the
candidate with the incumbent within one measurement's time) and an exhaustive sweep of the same
grid (one measurement per point) each pick a config under the same p99 objective; then the
configs are served at once by one server and driven head to head in turns
(Profiler.head_to_head), and each ratio is the median of its per-round ratios ("totals": the
ratio of the rounds' sums; "over obj": rounds whose p99 broke the objective, tuned and
exhaustive; p99 is over every request of a config's rounds). A second copy of the exhaustive
best is driven in the same rounds: "exh/copy" compares a config with itself, so it shows how far
from 1 this run's head-to-head wanders by noise alone. Where the tuner and the sweep chose the
same config it is measured once and the ratio is 1 by identity. "sweep view" is the tuned
point's throughput in the sweep's own table over the sweep's best: no extra measurement, but
each is a single run.

    .venv/bin/python bench/bench_batching.py [--concurrency 1 8 32] [--objective-ms 200] [--json out.json]

The model is the digits MLP of inferops.triton.sample_model served by the python backend
running ONNX Runtime (one thread per instance). "No batching" uses max_batch_size 16 without
dynamic batching and as many instances as the grid's largest count, so it has the same cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from inferops.api.tensors import BatchingConfig
from inferops.triton.config import build_model_config
from inferops.triton.sample_model import SIGNATURE, mlp_to_onnx, train_digits_mlp
from inferops.triton.loadgen import percentiles
from inferops.triton.tuner import Profiler, TuningGrid, exhaustive, hill_climb

from headtohead import paired_ratio

MODEL = "digits"


def build_repository(root: Path) -> Path:
    classifier, accuracy = train_digits_mlp()
    print(f"digits MLP {classifier.hidden_layer_sizes}: held-out accuracy {accuracy:.3f}")
    mlp_to_onnx(classifier, root / MODEL / "1" / "model.onnx")
    (root / MODEL / "config.pbtxt").write_text(build_model_config(MODEL, "onnxruntime", SIGNATURE, BatchingConfig(max_batch_size=16)))
    return root


def describe(b: BatchingConfig) -> str:
    if not b.dynamic_batching:
        return f"none (mbs {b.max_batch_size}, {b.instance_count} inst)"
    return f"mbs {b.max_batch_size} delay {b.max_queue_delay_microseconds}us {b.instance_count} inst"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--objective-ms", type=float, default=200.0, help="p99 latency objective for tuner and sweep")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds measured per grid point")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of the head-to-head comparison")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds each config is driven per round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    grid = TuningGrid()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    rows = []
    try:
        repository = build_repository(workdir / "repository")
        baseline = BatchingConfig(max_batch_size=16, dynamic_batching=False, instance_count=max(grid.instance_counts))
        for concurrency in args.concurrency:
            with Profiler(repository, MODEL, concurrency=concurrency, duration_s=args.duration) as profiler:
                tuned = hill_climb(profiler.measure, grid, args.objective_ms, concurrency=concurrency, duel=profiler.duel, seed=profiler.seed)
                swept = exhaustive(profiler.measure, grid, args.objective_ms)
                exhaustive_best = swept.report().chosen
                configs = {"none": baseline, "tuned": tuned.report().chosen, "exhaustive": exhaustive_best, "copy": exhaustive_best}
                same = configs["tuned"] == configs["exhaustive"]
                runs = profiler.head_to_head({k: v for k, v in configs.items() if not (same and k == "exhaustive")},
                                             rounds=args.rounds, slice_s=args.slice, concurrency=concurrency)
            if same:
                runs["exhaustive"] = runs["tuned"]
            sweep_view = swept.measured[tuned.best.point].throughput_per_s / swept.best.throughput_per_s
            row = {"concurrency": concurrency, "tuner_measurements": tuned.report().measurements, "sweep_measurements": swept.report().measurements,
                   "same_config": same, "sweep_view_tuned_over_best": sweep_view}
            for label, results in runs.items():
                row[label] = {
                    "config": configs[label].model_dump(by_alias=True),
                    "throughput_per_s": statistics.median(r.throughput_per_s for r in results),
                    "p99_ms": percentiles([ms for r in results for ms in r.latencies_ms], 99)[0],  # over every request of every round
                    "errors": sum(r.errors for r in results),
                    # A batcher that stalls now and then keeps a good median; these show it.
                    "rounds_over_objective": sum(r.p99_ms > args.objective_ms for r in results),
                    "worst_p99_ms": max(r.p99_ms for r in results),
                }
            for a, b in (("tuned", "none"), ("exhaustive", "none"), ("tuned", "exhaustive"), ("exhaustive", "copy")):
                row[f"{a}/{b}"] = 1.0 if same and {a, b} == {"tuned", "exhaustive"} else paired_ratio(runs[a], runs[b])
            # Over all rounds (slices of equal length), tuned / exhaustive: the long-run ratio, any stall included.
            row["tuned/exhaustive totals"] = sum(r.throughput_per_s for r in runs["tuned"]) / sum(r.throughput_per_s for r in runs["exhaustive"])
            rows.append(row)
            print(f"concurrency {concurrency}: tuner {describe(configs['tuned'])} ({row['tuner_measurements']} measurements), "
                  f"exhaustive {describe(configs['exhaustive'])} ({row['sweep_measurements']})", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\np99 objective {args.objective_ms} ms; grid {grid.max_batch_sizes} x {grid.queue_delays_us} us x {grid.instance_counts} instances x preferred {grid.preferred}; "
          f"{args.duration}s per grid point; head to head: {args.rounds} rounds of {args.slice}s per config; {time.monotonic() - started:.0f}s in all\n")
    header = (f"{'conc':>4} | {'none /s':>8} {'p99':>6} | {'tuned /s':>8} {'p99':>6} | {'exh /s':>8} {'p99':>6} | "
              f"{'tuned/none':>10} {'exh/none':>8} {'tuned/exh':>9} {'totals':>6} {'exh/copy':>8} {'sweep view':>10} | {'over obj':>8} | {'meas.':>6}")
    print(header)
    print("-" * len(header))
    for row in rows:
        none, tuned, best = row["none"], row["tuned"], row["exhaustive"]
        same = " (same config)" if row["same_config"] else ""
        print(
            f"{row['concurrency']:>4} | {none['throughput_per_s']:>8.0f} {none['p99_ms']:>6.1f} | {tuned['throughput_per_s']:>8.0f} {tuned['p99_ms']:>6.1f} | "
            f"{best['throughput_per_s']:>8.0f} {best['p99_ms']:>6.1f} | {row['tuned/none']:>10.2f} {row['exhaustive/none']:>8.2f} "
            f"{row['tuned/exhaustive']:>9.2f} {row['tuned/exhaustive totals']:>6.2f} {row['exhaustive/copy']:>8.2f} {row['sweep_view_tuned_over_best']:>10.2f} | "
            f"{tuned['rounds_over_objective']:>3} {best['rounds_over_objective']:>4} | {row['tuner_measurements']:>2}/{row['sweep_measurements']:<3}{same}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

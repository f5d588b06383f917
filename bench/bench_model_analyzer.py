"""InferOps's batching search against Triton Model Analyzer's, judged by perf_analyzer head to head.

One model (the digits MLP of inferops.triton.sample_model on the python backend running ONNX
Runtime), one tritonserver binary (the nvidia-pytriton wheel's), one p99 objective and one client
concurrency. Three searches choose a batching config:
- InferOps: the tuner's climb (duels on one server; its default budget, a quarter of the grid's
  batch size x delay x instance points) over max batch size x queue delay x instances x
  preferred sizes ("max": [max batch size]; "half": [max / 2, max]);
- Model Analyzer's quick search (`run_config_search_mode: quick`, max batch size and instances
  over the grid's range, concurrency pinned; its configs set no preferred sizes);
- Model Analyzer's brute force over max batch size x max queue delay x instance count, which is
  InferOps's grid's "max" slice: its configs set no preferred sizes, and Triton loads a config
  without them as preferred [max batch size] (read back from the server, a config asked with []
  and one asked with [8] are the same). Its model_config_parameters sweep each field
  independently, so a preferred size cannot follow max_batch_size (listing [[4], [8], ...]
  crosses every size with every max batch size and drops the illegal pairs): "half" is beyond it.
Then one server serves the three choices and a second copy of InferOps's (the A/A pair: how far
two copies of one config read apart by noise alone) and perf_analyzer drives them in turns,
`--rounds` rounds of one `--slice` run each, in a fresh random order every round (headtohead.shuffled_rounds). Each ratio is the
median of the per-round ratios; p99s are over every request of a config's rounds.

What each search cost is counted in one unit for all: every search gets its own copy of one
counting wrapper around the real perf_analyzer (bench/pa_counter.py; InferOps through
$INFEROPS_PERF_ANALYZER, Model Analyzer through perf_analyzer_path), which logs each run, its
exit status and its measurement windows. Printed per search: configs measured (each search's own
unit), perf_analyzer runs, windows, seconds under load (perf_analyzer run times summed: load plus each
run's start-up) and wall time, then InferOps / MA quick for windows and seconds. `--max-batch-sizes`,
`--queue-delays-us`, `--instance-counts` and `--preferred-batch-sizes` shrink the grid for a quick
check (brute force over the full grid takes about 10 minutes here).

Setup (once), from the repository root:
    apt-get install -y libb64-0d                          # perf_analyzer's one system library
    sh bench/get_perf_analyzer.sh                         # -> ~/.cache/inferops/perf_analyzer/perf_analyzer
    python3 -m venv .venv-ma && .venv-ma/bin/pip install triton-model-analyzer==1.58.0
Run:
    INFEROPS_PERF_ANALYZER=~/.cache/inferops/perf_analyzer/perf_analyzer \\
        .venv/bin/python bench/bench_model_analyzer.py [--model-analyzer .venv-ma/bin/model-analyzer] \\
        [--concurrency 16] [--objective-ms 200] [--rounds 12] [--slice 1.0] [--json out.json] \\
        [--max-batch-sizes 4,8,16,32] [--queue-delays-us 0,1000,5000] [--instance-counts 1,2] [--preferred-batch-sizes max,half]

Model Analyzer runs the wheel's tritonserver in its `local` launch mode through a wrapper script
(the wheel's libraries, the python backend and its stub, this venv's packages for the stub) on
loopback ports of its own, and perf_analyzer through the wrapper that sets its library path, with
`perf_analyzer_cpu_util` raised (it stops perf_analyzer above 80% CPU by default; on 2 cores
perf_analyzer and the server share every core) and perf_analyzer's stability tolerance widened
(--stability, 25% over up to 20 windows: its 10% over 10 never settled here under other load).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from inferops.api.tensors import BatchingConfig
from inferops.triton.config import build_model_config, parse_model_config
from inferops.triton.instruments import PERF_ANALYZER_ENV, find_perf_analyzer
from inferops.triton.loadgen import percentiles
from inferops.triton.python_backend import local_repository
from inferops.triton.sample_model import SIGNATURE, mlp_to_onnx, train_digits_mlp
from inferops.triton.search import TuningGrid, hill_climb
from inferops.triton.server import TritonServer, free_port, wheel_paths
from inferops.triton.tune_cmd import _preferred, _sizes
from inferops.triton.tuner import Profiler

from headtohead import paired_ratio, shuffled_rounds
from pa_counter import PerfAnalyzerWork, counting_wrapper

MODEL = "digits"


def build_repository(root: Path) -> Path:
    """The model as served on the wheel's server: a python-backend model running ONNX Runtime."""
    source = root / "source"
    classifier, _ = train_digits_mlp()
    mlp_to_onnx(classifier, source / MODEL / "1" / "model.onnx")
    (source / MODEL / "config.pbtxt").write_text(build_model_config(MODEL, "onnxruntime", SIGNATURE, BatchingConfig(max_batch_size=32, dynamic_batching=False)))
    return local_repository(source, root / "repository")


def server_wrapper(root: Path) -> Path:
    """A `tritonserver` for Model Analyzer's local mode: the wheel's binary with what it needs."""
    paths = wheel_paths()
    server = TritonServer(root)  # only for its environment and backends layout
    server._workdir = root
    backends = server._backends_dir(paths)
    env = server.environment(paths)
    wrapper = root / "tritonserver"
    exports = "".join(f"export {key}={shlex_quote(env[key])}\n" for key in ("LD_LIBRARY_PATH", "PYTHONPATH", "PATH", "OMP_NUM_THREADS"))
    wrapper.write_text(
        f"#!/bin/sh\n{exports}exec {shlex_quote(str(paths['binary']))} \"$@\" --backend-directory={shlex_quote(str(backends))} "
        # Model Analyzer kills the server 5 s after asking it to stop: 4 s is time for the python
        # backend to unload and remove its /tmp/python_env_* directory, within that.
        f"--cache-directory={shlex_quote(str(paths['caches']))} --exit-timeout-secs=4\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def ma_config(args, work: Path, repository: Path, wrapper: Path, perf_analyzer: str, mode: str, grid: TuningGrid) -> dict:
    http, grpc, metrics = free_port(), free_port(), free_port()
    model: dict = {"cpu_only": True, "parameters": {"concurrency": [args.concurrency]}}
    config = {
        "model_repository": str(repository),
        "output_model_repository_path": str(work / "output"),
        "override_output_model_repository": True,
        "export_path": str(work / "export"),
        "checkpoint_directory": str(work / "checkpoints"),
        "triton_launch_mode": "local",
        "triton_server_path": str(wrapper),
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "triton_server_flags": {"http-address": "127.0.0.1", "grpc-address": "127.0.0.1", "metrics-address": "127.0.0.1", "allow-gpu-metrics": False},
        "perf_analyzer_path": perf_analyzer,
        "perf_analyzer_cpu_util": 1000,
        # Its default (10% between 3 windows, 10 tries) never settles on this shared machine.
        "perf_analyzer_flags": {"stability-percentage": args.stability, "max-trials": 20},
        "objectives": ["perf_throughput"],
        "constraints": {"perf_latency_p99": {"max": args.objective_ms}},
        "run_config_search_mode": mode,
        "profile_models": {MODEL: model},
    }
    if mode == "quick":
        del model["parameters"]  # quick search refuses a concurrency list: its min and max pin it instead
        config.update({
            "run_config_search_min_concurrency": args.concurrency, "run_config_search_max_concurrency": args.concurrency,
            "run_config_search_min_model_batch_size": grid.max_batch_sizes[0], "run_config_search_max_model_batch_size": grid.max_batch_sizes[-1],
            "run_config_search_min_instance_count": grid.instance_counts[0], "run_config_search_max_instance_count": grid.instance_counts[-1],
        })
    else:
        model["model_config_parameters"] = {
            "max_batch_size": list(grid.max_batch_sizes),
            "dynamic_batching": {"max_queue_delay_microseconds": list(grid.queue_delays_us)},
            "instance_group": [{"kind": "KIND_CPU", "count": list(grid.instance_counts)}],
        }
    return config


def run_model_analyzer(args, root: Path, repository: Path, wrapper: Path, perf_analyzer: str, mode: str, grid: TuningGrid) -> dict:
    """Run `model-analyzer profile` with its own counting copy of `perf_analyzer`; return its choice
    (a BatchingConfig), configs measured, perf_analyzer work and wall time."""
    import yaml

    work = root / f"ma-{mode}"
    work.mkdir()
    counted, log = counting_wrapper(root / "counters", f"ma-{mode}", perf_analyzer)
    (work / "config.yaml").write_text(yaml.safe_dump(ma_config(args, work, repository, wrapper, str(counted), mode, grid)))
    started = time.monotonic()
    tmp = work / "tmp"  # the server logs Model Analyzer writes to temporary files and never deletes
    tmp.mkdir()
    done = subprocess.run(
        [args.model_analyzer, "profile", "-f", str(work / "config.yaml")], capture_output=True, text=True, cwd=work, env={**os.environ, "TMPDIR": str(tmp)}
    )
    wall = time.monotonic() - started
    (work / "log.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"model-analyzer {mode} failed ({done.returncode}); its log: {work / 'log.txt'}\n{(done.stdout + done.stderr)[-3000:]}")
    rows = list(csv.DictReader((work / "export" / "results" / "metrics-model-inference.csv").open()))
    measured = [r for r in rows if r.get("Model", "").strip() == MODEL or r.get("Model Config Path")]
    feasible = [r for r in measured if r.get("Satisfies Constraints", "").strip().lower() in ("yes", "true")]
    best = max(feasible or measured, key=lambda r: float(r["Throughput (infer/sec)"]))
    config_dir = work / "output" / best["Model Config Path"].strip()
    return {
        "mode": mode, "choice": batching_of(config_dir / "config.pbtxt"), "config_name": best["Model Config Path"].strip(),
        "measurements": len(measured), "work": PerfAnalyzerWork.of(log), "wall_s": wall, "own_throughput": float(best["Throughput (infer/sec)"]),
        "own_p99_ms": float(best.get("p99 Latency (ms)") or "nan"), "met_objective": bool(feasible),
    }


def batching_of(config_path: Path) -> BatchingConfig:
    config = parse_model_config(config_path.read_text())
    dynamic = config.HasField("dynamic_batching")
    return BatchingConfig(
        max_batch_size=config.max_batch_size,
        dynamic_batching=dynamic,
        preferred_batch_sizes=list(config.dynamic_batching.preferred_batch_size) if dynamic else [],
        max_queue_delay_microseconds=config.dynamic_batching.max_queue_delay_microseconds if dynamic else 0,
        instance_count=sum(g.count or 1 for g in config.instance_group) or 1,
    )


def describe(b: BatchingConfig) -> str:
    if not b.dynamic_batching:
        return f"mbs {b.max_batch_size}, no dynamic batching, {b.instance_count} inst"
    preferred = f" pref {b.preferred_batch_sizes}" if b.preferred_batch_sizes else ""
    return f"mbs {b.max_batch_size}{preferred} delay {b.max_queue_delay_microseconds}us {b.instance_count} inst"


@contextmanager
def perf_analyzer_named(binary: Path):
    """$INFEROPS_PERF_ANALYZER set to `binary` inside the block (the profiler finds its instrument
    there), put back after it: the judge measures with the real one, uncounted."""
    before = os.environ.get(PERF_ANALYZER_ENV)
    os.environ[PERF_ANALYZER_ENV] = str(binary)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PERF_ANALYZER_ENV, None)
        else:
            os.environ[PERF_ANALYZER_ENV] = before


def describe_work(work: PerfAnalyzerWork) -> str:
    failed = f", {work.failed} failed" if work.failed else ""
    return f"{work.runs} perf_analyzer runs{failed}, {work.windows} windows, {work.seconds:.0f}s under load"


def fraction(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-analyzer", default=shutil.which("model-analyzer") or ".venv-ma/bin/model-analyzer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--objective-ms", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=1.0, help="InferOps: seconds per measurement (a duel's two sides together; the tuner's default)")
    parser.add_argument("--rounds", type=int, default=12, help="head-to-head rounds")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds each config is driven per round")
    parser.add_argument("--stability", type=int, default=25, help="Model Analyzer's perf_analyzer stability percentage (its default, 10, never settles on a busy 2-core machine)")
    parser.add_argument("--inferops-measure-with", choices=("perf_analyzer", "inferops-loadgen"),
                        help="InferOps's instrument while it searches (default: perf_analyzer, found as for the judge)")
    parser.add_argument("--max-batch-sizes", type=_sizes, default=TuningGrid.max_batch_sizes, metavar="N,N,...")
    parser.add_argument("--queue-delays-us", type=_sizes, default=TuningGrid.queue_delays_us, metavar="N,N,...")
    parser.add_argument("--instance-counts", type=_sizes, default=TuningGrid.instance_counts, metavar="N,N,...")
    parser.add_argument("--preferred-batch-sizes", type=_preferred, default=TuningGrid.preferred, metavar="CHOICE,...",
                        help="InferOps's grid only (Model Analyzer's brute force cannot express 'half': see above)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    perf_analyzer = find_perf_analyzer()
    if perf_analyzer is None:
        sys.exit("perf_analyzer not found: run bench/get_perf_analyzer.sh and set INFEROPS_PERF_ANALYZER (see this file's docstring)")
    args.model_analyzer = str(Path(args.model_analyzer).absolute())  # it runs in its own work folder
    if not Path(args.model_analyzer).exists():
        sys.exit(f"model-analyzer not found at {args.model_analyzer}: see this file's docstring")
    grid = TuningGrid(max_batch_sizes=args.max_batch_sizes, queue_delays_us=args.queue_delays_us, instance_counts=args.instance_counts,
                      preferred=args.preferred_batch_sizes)
    root = Path(tempfile.mkdtemp(prefix="bench-ma-"))
    results = {}
    try:
        repository = build_repository(root)
        wrapper = server_wrapper(root)

        counted, log = counting_wrapper(root / "counters", "inferops", perf_analyzer)
        with perf_analyzer_named(counted), Profiler(repository, MODEL, concurrency=args.concurrency, duration_s=args.duration,
                                                    measure_with=args.inferops_measure_with) as profiler:
            started = time.monotonic()
            climb = hill_climb(profiler.measure, grid, args.objective_ms, concurrency=args.concurrency, duel=profiler.duel, seed=profiler.seed)
            results["inferops"] = {"choice": climb.report().chosen, "measurements": climb.measurements, "wall_s": time.monotonic() - started,
                                   "measured_with": profiler.instrument.name, "work": PerfAnalyzerWork.of(log)}
        print(f"InferOps: {describe(results['inferops']['choice'])}, {climb.measurements} measurements, {results['inferops']['wall_s']:.0f}s "
              f"({results['inferops']['measured_with']}; {describe_work(results['inferops']['work'])})", flush=True)
        for mode in ("quick", "brute"):
            results[mode] = run_model_analyzer(args, root, repository, wrapper, perf_analyzer, mode, grid)
            print(f"Model Analyzer {mode}: {describe(results[mode]['choice'])} ({results[mode]['config_name']}), "
                  f"{results[mode]['measurements']} measurements, {results[mode]['wall_s']:.0f}s ({describe_work(results[mode]['work'])})", flush=True)

        configs = {"inferops": results["inferops"]["choice"], "quick": results["quick"]["choice"], "brute": results["brute"]["choice"],
                   "inferops-again": results["inferops"]["choice"]}
        with Profiler(repository, MODEL, concurrency=args.concurrency, measure_with="perf_analyzer") as judge:
            load_before = os.getloadavg()
            runs = shuffled_rounds(judge, configs, rounds=args.rounds, slice_s=args.slice)
            load_after = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    p99 = {label: percentiles([ms for r in rs for ms in r.latencies_ms], 99)[0] for label, rs in runs.items()}
    throughput = {label: statistics.median(r.throughput_per_s for r in rs) for label, rs in runs.items()}
    ratio = {"quick": paired_ratio(runs["inferops"], runs["quick"]), "brute": paired_ratio(runs["inferops"], runs["brute"]),
             "A/A": paired_ratio(runs["inferops-again"], runs["inferops"])}
    below = {k: sum(a.throughput_per_s < b.throughput_per_s for a, b in zip(runs["inferops"], runs[k])) for k in ("quick", "brute")}
    print(f"\n{args.concurrency} clients, p99 objective {args.objective_ms:g} ms; judged by perf_analyzer, {args.rounds} rounds of {args.slice}s per config; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (a shared 2-core machine: other work runs beside this)")
    header = (f"{'search':>16} | {'choice':<40} | {'configs':>7} {'pa runs':>7} {'windows':>7} {'load s':>6} {'wall s':>6} | "
              f"{'/s (pa)':>8} {'p99 ms':>7} | {'InferOps/this':>13} {'rounds below':>12}")
    print(header)
    print("-" * len(header))
    for label, key in (("InferOps", "inferops"), ("MA quick", "quick"), ("MA brute", "brute")):
        r, work = results[key], results[key]["work"]
        versus = "" if key == "inferops" else f"{ratio[key]:>13.2f} {below[key]:>7}/{args.rounds}"
        print(f"{label:>16} | {describe(r['choice']):<40} | {r['measurements']:>7} {work.runs:>7} {work.windows:>7} {work.seconds:>6.0f} {r['wall_s']:>6.0f} | "
              f"{throughput[key]:>8.0f} {p99[key]:>7.1f} | {versus}")
    print(f"{'A/A (noise)':>16} | {'InferOps choice, second copy':<40} | {'':>7} {'':>7} {'':>7} {'':>6} {'':>6} | "
          f"{throughput['inferops-again']:>8.0f} {p99['inferops-again']:>7.1f} | {ratio['A/A']:>13.2f}")
    ours, quick = results["inferops"]["work"], results["quick"]["work"]
    print(f"InferOps / MA quick: perf_analyzer windows {fraction(ours.windows, quick.windows)}, seconds under load {fraction(ours.seconds, quick.seconds)}, "
          f"wall time {fraction(results['inferops']['wall_s'], results['quick']['wall_s'])} "
          f"(configs measured, each in its own unit: {results['inferops']['measurements']} / {results['quick']['measurements']})")
    if args.json:
        dump = {k: {**v, "choice": v["choice"].model_dump(by_alias=True), "work": vars(v["work"])} for k, v in results.items()}
        args.json.write_text(json.dumps({"results": dump, "ratio": ratio, "throughput": throughput, "p99_ms": p99, "below": below}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

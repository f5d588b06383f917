"""`inferops tune`: tune dynamic batching against a running Triton server (the tuning pod's tuner).

The server runs in explicit model-control mode and serves the model; this reads the model's
config from it, loads each candidate through the repository API with a config override, runs
the search and writes a TuningReport (JSON) to --output. Progress goes to stderr, a line per
point measured. Exit 0 on success; EXIT_TUNING_FAILED (4) when no config could be chosen (the
server never became live, every point was refused, the time ran out before a point was
measured), with a one-line reason on stderr and in the termination message.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

EXIT_TUNING_FAILED = 4
# The tuning pod's environment, recorded in the report (what the tuning measured on).
IMAGE_ENV = "INFEROPS_TUNING_IMAGE"
NODE_ENV = "INFEROPS_NODE_NAME"
ACCELERATOR_ENV = "INFEROPS_ACCELERATOR"

EPILOG = """\
The model's config is read from the server, so every candidate keeps what the served config has
(signature, backend, parameters, instance kind, GPUs, accelerators); only max_batch_size, dynamic
batching (preferred sizes, queue delay) and the instance count vary.
--repository: the server's model repository as a folder this process can write (a volume shared
with the server). With it two candidates are served at once and measured head to head in turns
(duels, which cancel the machine's drift); without it points are measured one after the other.
--output: a local path, file://, pvc:// or s3://bucket/key.json (S3 credentials as for
`inferops optimize`: AWS_* variables or $INFEROPS_CREDENTIALS_DIR, AWS_ENDPOINT_URL).
Recorded from the environment when set: $INFEROPS_TUNING_IMAGE, $INFEROPS_NODE_NAME,
$INFEROPS_ACCELERATOR. On failure the reason is also written to $INFEROPS_TERMINATION_LOG, else
to /dev/termination-log when it exists.
exit status: 0 tuned and written; 4 nothing could be chosen (or the report could not be written).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--server", required=True, metavar="HOST:PORT", help="the server's HTTP endpoint (repository API, health)")
    parser.add_argument("--grpc-server", metavar="HOST:PORT", help="drive the load over gRPC at this endpoint (default: HTTP at --server)")
    parser.add_argument("--model", required=True, help="the model's name on the server")
    parser.add_argument("--latency-objective-ms", type=float, required=True, help="p99 latency objective")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients to tune for (default %(default)s)")
    parser.add_argument("--request-batch-size", type=int, default=1, metavar="ROWS",
                        help="rows each client request carries (default %(default)s); max batch sizes below it are left out of the grid")
    parser.add_argument("--instance-kind", choices=("KIND_CPU", "KIND_GPU"), help="instance kind of the candidates (default: the served config's)")
    parser.add_argument("--repository", help="the server's model repository, writable (enables head-to-head duels)")
    parser.add_argument("--output", help="where to write the TuningReport JSON (default: stdout only)")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="give up waiting and stop measuring after this long (default %(default)s)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of load per measurement: a duel's two sides together (default %(default)s)")
    parser.add_argument("--max-batch-sizes", type=_sizes, default=(4, 8, 16, 32), metavar="N,N,...", help="grid: max batch sizes (default 4,8,16,32)")
    parser.add_argument("--queue-delays-us", type=_sizes, default=(0, 1000, 5000), metavar="N,N,...", help="grid: max queue delays in microseconds (default 0,1000,5000)")
    parser.add_argument("--instance-counts", type=_sizes, default=(1, 2), metavar="N,N,...", help="grid: instance counts (default 1,2)")
    parser.add_argument("--preferred-batch-sizes", type=_preferred, default=("max", "half"), metavar="CHOICE,...",
                        help="grid: preferred batch sizes, 'max' ([max batch size], also Triton's default) and/or 'half' ([max/2, max]) (default max,half)")
    parser.add_argument("--budget", type=int, help="most measurements (default: a quarter of the grid's batch size x delay x instance points)")
    parser.add_argument("--measure-with", choices=("perf_analyzer", "inferops-loadgen"),
                        help="load generator (default: perf_analyzer when $INFEROPS_PERF_ANALYZER or PATH has it, else inferops-loadgen)")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _preferred(text: str) -> tuple[str, ...]:
    """Choices in the grid's canonical order, whatever order the flag lists them in."""
    from .grid import PREFERRED_CHOICES

    named = {v.strip() for v in text.split(",") if v.strip()}
    if not named or named - set(PREFERRED_CHOICES):
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(PREFERRED_CHOICES)}, got {text!r}")
    return tuple(c for c in PREFERRED_CHOICES if c in named)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        report = tune(args, started)
        text = report.model_dump_json(by_alias=True, indent=2, exclude_none=True)
        if args.output:
            write_output(args.output, text)
    except TuningFailed as exc:
        return fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a storage error or a crash: say why in one line
        from inferops.storage.credentials import redact

        return fail(redact(f"{type(exc).__name__}: {exc}"))
    print(text)
    return 0


class TuningFailed(RuntimeError):
    pass


def tune(args: argparse.Namespace, started: float):
    from .loadgen import LoadError
    from .profiler import ProfilerError, ServerProfiler, wait_live
    from .search import TuningGrid, hill_climb, preferred_of

    if args.concurrency < 1 or args.request_batch_size < 1:
        raise TuningFailed("--concurrency and --request-batch-size must be >= 1")
    deadline = started + args.max_minutes * 60
    try:
        wait_live(args.server, max(1.0, deadline - time.monotonic()))
    except ProfilerError as exc:
        raise TuningFailed(str(exc)) from None

    def progress(m) -> None:
        batch, delay, instances = m.point[:3]
        batches = f", {m.mean_batch:.1f} rows a batch" if m.mean_batch is not None else ""
        said = f"error {m.error[:200]}" if m.error else f"{m.throughput_per_s:.1f}/s p99 {m.p99_ms:.1f} ms{batches}"
        preferred = f" preferred={preferred_of(m.point)}" if len(m.point) > 3 else ""
        print(f"tune: maxBatchSize={batch} queueDelayUs={delay} instances={instances}{preferred}: {said}", file=sys.stderr, flush=True)

    try:
        # Triton refuses a request larger than the model's max batch size.
        sizes = tuple(n for n in args.max_batch_sizes if n >= args.request_batch_size) or (args.request_batch_size,)
        grid = TuningGrid(max_batch_sizes=sizes, queue_delays_us=args.queue_delays_us, instance_counts=args.instance_counts,
                          preferred=args.preferred_batch_sizes)
    except ValueError as exc:
        raise TuningFailed(f"grid: {exc}") from None
    profiler = ServerProfiler(
        args.server, args.model, grpc_url=args.grpc_server, repository=args.repository, instance_kind=args.instance_kind,
        concurrency=args.concurrency, duration_s=args.duration, on_measure=progress, measure_with=args.measure_with,
        request_rows=args.request_batch_size,
    )
    with profiler:
        try:
            profiler.read_config()
            measured_with = profiler.instrument.name
        except (ProfilerError, LoadError) as exc:
            raise TuningFailed(str(exc)) from None
        print(f"tune: {args.model} at {args.concurrency} clients of {args.request_batch_size} row(s), p99 objective {args.latency_objective_ms:g} ms, "
              f"{'duels' if profiler.can_duel else 'one point at a time'}, {profiler.instance_kind}, measured with {measured_with}, "
              f"grid {grid.size} points", file=sys.stderr, flush=True)
        tuning_started = time.monotonic()
        result = hill_climb(
            profiler.measure, grid, args.latency_objective_ms, concurrency=args.concurrency, budget=args.budget,
            duel=profiler.duel if profiler.can_duel else None, seed=profiler.seed, deadline=deadline, request_rows=args.request_batch_size,
        )
    best = result.best
    if best is None or best.error is not None:
        if best is not None:
            why = best.error
        elif time.monotonic() >= deadline:
            why = f"the tuning time limit (--max-minutes {args.max_minutes:g}) passed before a point was measured"
        else:
            why = "nothing was measured"
        raise TuningFailed(f"no batching config of {args.model!r} could be measured ({result.measurements} tried): {why}"[:900])
    report = result.report()
    report.concurrency = args.concurrency
    report.request_batch_size = args.request_batch_size
    report.wall_seconds = round(time.monotonic() - tuning_started, 1)
    report.measured_with = measured_with
    report.instance_kind = profiler.instance_kind
    report.image = _env(IMAGE_ENV)
    report.node = _env(NODE_ENV)
    report.accelerator = _env(ACCELERATOR_ENV)
    print(f"tune: chose {report.chosen.model_dump(by_alias=True, exclude_none=True)} "
          f"({report.throughput_per_s}/s, p99 {report.p99_ms} ms) in {report.measurements} measurements, {report.wall_seconds} s", file=sys.stderr, flush=True)
    return report


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def write_output(uri: str, text: str) -> None:
    """A local path, file://, pvc:// or s3://bucket/key: the whole JSON or nothing."""
    from pathlib import Path

    from inferops.storage.uri import local_path, parse_uri

    if "://" not in uri:
        target = Path(uri)
    else:
        parsed = parse_uri(uri)
        if parsed.scheme == "s3":
            from inferops.storage.s3 import S3Backend

            backend = S3Backend(parsed)
            backend._call("write", backend.client.put_object, Bucket=backend.bucket, Key=backend.prefix, Body=text.encode(), ContentType="application/json")
            return
        target = local_path(parsed)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial")
    staging.write_text(text)
    staging.replace(target)


def fail(reason: str) -> int:
    from inferops.api.outcomes import TERMINATION_LOG, TERMINATION_LOG_ENV, TERMINATION_MESSAGE_MAX

    line = " ".join(reason.split())
    print(f"error: {line}", file=sys.stderr, flush=True)
    path = os.environ.get(TERMINATION_LOG_ENV) or (TERMINATION_LOG if os.path.exists(TERMINATION_LOG) else None)
    if path:
        try:
            with open(path, "w") as f:
                f.write(line[:TERMINATION_MESSAGE_MAX])
        except OSError as exc:
            print(f"warning: could not write the termination message to {path}: {exc.strerror}", file=sys.stderr)
    return EXIT_TUNING_FAILED

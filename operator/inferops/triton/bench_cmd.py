"""`inferops bench`: drive a Triton model with concurrent clients; report throughput and latency."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="host:port of the server (the gRPC port with --protocol grpc)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, default=1, help="requests kept in flight")
    parser.add_argument("--requests", type=int, default=None, help="measured requests (default: run for --duration)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds when --requests is not given")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load first")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from .loadgen import LoadError, request_inputs, run_load
    from .probe import ProbeError, served_signature

    try:
        signature, max_batch_size = served_signature(args.url, args.model, args.protocol)
        arrays = request_inputs(signature, max_batch_size, batch=args.batch)
        result = run_load(
            args.url,
            args.model,
            arrays,
            concurrency=args.concurrency,
            requests=args.requests,
            duration_s=None if args.requests else args.duration,
            warmup_s=args.warmup,
            protocol=args.protocol,
        )
    except (LoadError, ProbeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        print(
            f"{args.model} at {args.url} ({args.protocol}), concurrency {result.concurrency}: "
            f"{result.throughput_per_s:.1f} infer/s, p50 {result.p50_ms:.2f} ms, p90 {result.p90_ms:.2f} ms, p99 {result.p99_ms:.2f} ms "
            f"({result.requests} requests, {result.errors} errors, {result.duration_s:.1f} s)"
        )
    return 0 if result.errors == 0 else 1

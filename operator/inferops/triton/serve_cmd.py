"""`inferops serve REPOSITORY`: serve a Triton model repository locally with the wheel's tritonserver.

ONNX models (onnxruntime backend) are moved onto the python backend in a copy of the
repository, since the wheel's server has no onnxruntime backend. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", help="model repository: <model>/config.pbtxt and <model>/<version>/model.onnx (or model.py)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model instance (default 1)")
    parser.add_argument("--cache-bytes", type=int, default=0, help="size of the response cache; needed by models with response_cache enabled")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the models to load")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys
    import tempfile
    import threading
    from pathlib import Path

    from .python_backend import local_repository
    from .server import TritonServer, TritonServerError

    source = Path(args.repository)
    if not source.is_dir():
        print(f"error: {source} is not a directory", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="inferops-serve-") as workdir:
        repository = local_repository(source, Path(workdir) / "repository", threads=args.threads)
        server = TritonServer(
            repository,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            cache_size_bytes=args.cache_bytes,
            ready_timeout_s=args.ready_timeout,
        )
        try:
            server.start()
        except TritonServerError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        try:
            print(f"serving {source} (log: {server.log_path})", flush=True)
            print(f"  http    {server.http_url}\n  grpc    {server.grpc_url}\n  metrics 127.0.0.1:{server.metrics_port}", flush=True)
            while not stop.wait(0.5):
                if not server.is_running():
                    print(f"error: tritonserver exited; log tail:\n{server.logs()[-4000:]}", file=sys.stderr)
                    return 1
        finally:
            server.cleanup()
    return 0

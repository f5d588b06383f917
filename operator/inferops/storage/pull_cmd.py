"""`inferops pull --uri URI --dest PATH`: copy a published model repository down (the Triton pod's init step).

The repository must carry its commit marker (report.json, written last by `inferops optimize`)
and every file listed in the report's checksums must match its sha256; with --digest, the
listing must be the one the operator recorded and nothing unlisted may be there; otherwise
nothing is placed at PATH (exit 2, the reason on stderr). --allow-unmarked takes a repository that was not written by InferOps as it is.
"""

from __future__ import annotations

import argparse
import logging
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", required=True, help="model repository URI (s3://, https://, file://, pvc://claim/path)")
    parser.add_argument("--dest", required=True, help="local folder to fill (replaced as a whole)")
    parser.add_argument(
        "--digest",
        help="sha256:... of the report's file checksums, as the operator recorded it from the optimization Job: "
        "refuse an artifact whose report or files changed since (the Deployment's pull step passes it)",
    )
    parser.add_argument("--allow-unmarked", action="store_true", help="accept a repository without report.json (not written by inferops optimize)")
    parser.add_argument(
        "--python-backend", action="store_true",
        help="serve its ONNX models through Triton's Python backend (writes model.py beside model.onnx): for a Triton image without the onnxruntime backend",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .logsetup import setup_logging
    from .pull import pull

    setup_logging()
    try:
        files = pull(args.uri, Path(args.dest), require_marker=not args.allow_unmarked, digest=args.digest)
    except Exception as exc:
        from . import StorageError
        from .credentials import redact

        if not isinstance(exc, StorageError):
            raise
        logging.getLogger("inferops.pull").error("%s", exc)
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    logging.getLogger("inferops.pull").info("pulled %d files into %s", len(files), args.dest)
    if args.python_backend:
        from inferops.triton.python_backend import to_python_backend

        for model_dir in sorted(p for p in Path(args.dest).iterdir() if p.is_dir() and any(p.glob("*/model.onnx"))):
            to_python_backend(model_dir)
            logging.getLogger("inferops.pull").info("%s: ONNX Runtime inside the Python backend", model_dir.name)
    return 0

"""`inferops down`: stop everything `inferops up` started (the same as `inferops dev down`): the
cluster's processes, the real node (its pods drained, its host changes undone) and the S3 server."""

from __future__ import annotations

import argparse
from pathlib import Path

from .binaries import cache_root


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=cache_root() / "dev", help="the state folder `inferops up` used")


def run(args: argparse.Namespace) -> int:
    from .cli import down

    return down(args)

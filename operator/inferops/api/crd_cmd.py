"""`inferops crds [--write DIR...]`: print the CRDs, or write them where they are checked in."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", type=Path, nargs="*", metavar="DIR", help="write one file per CRD into each DIR instead of printing")


def run(args: argparse.Namespace) -> int:
    from .crdgen import render_crds

    files = render_crds()
    if args.write:
        for directory in args.write:
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (directory / name).write_text(text)
        return 0
    print("---\n".join(files.values()), end="")
    return 0

"""`inferops ...`: one entry point; each subcommand lives in the module that owns the work.

A command module provides `configure(parser)` and `run(args) -> int`, and keeps heavy
imports inside `run` so that `inferops --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("inferops.devcluster.up_cmd", "everything on this machine: a local cluster with a real node, the images, the operator and a served demo model"),
    "down": ("inferops.devcluster.down_cmd", "stop everything `inferops up` started"),
    "operator": ("inferops.operator_cmd", "run the operator (extra arguments pass to `kopf run`)"),
    "crds": ("inferops.api.crd_cmd", "print the CRDs generated from the API models"),
    "dev": ("inferops.devcluster.cli", "start or stop the local control plane"),
    "optimize": ("inferops.optimize.cli", "optimize a model into a Triton model repository (what the Job runs)"),
    "pull": ("inferops.storage.pull_cmd", "copy a model repository from a URI to a local folder (the Triton pod's init step)"),
    "serve": ("inferops.triton.serve_cmd", "serve a Triton model repository locally with the wheel's tritonserver"),
    "bench": ("inferops.triton.bench_cmd", "drive a Triton server with concurrent clients and report throughput and latency"),
    "gc": ("inferops.gc_cmd", "delete the artifacts of deleted models and of revisions beyond the last N per model"),
    "tune": ("inferops.triton.tune_cmd", "tune dynamic batching against a running Triton server (what the tuning pod runs)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferops", description="Optimize trained models and serve them on tuned Triton deployments.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("inferops"):
                continue  # a command whose module is not part of this build
            raise
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "operator":
        args, extra = parser.parse_known_args(argv)
        args.kopf_args = extra
    else:
        args = parser.parse_args(argv)
    sys.exit(args._run(args) or 0)


if __name__ == "__main__":
    main()

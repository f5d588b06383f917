"""`inferops operator [KOPF RUN ARGS...]`: run the operator with Kopf.

Without namespace arguments it watches all namespaces; without peering arguments it runs
standalone. INFEROPS_WEBHOOK turns on the admission webhook: `local:PORT` for a cluster on
this machine, `service:NAME.NAMESPACE:PORT` inside a cluster.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Any other argument passes to `kopf run`, e.g. --namespace=ml --liveness=http://0.0.0.0:8080/healthz --verbose."


def kopf_arguments(extra: list[str]) -> list[str]:
    args = ["run", "-m", "inferops.handlers", *extra]
    if not any(a.startswith(("-n", "--namespace", "-A", "--all-namespaces")) for a in extra):
        args.append("--all-namespaces")
    if not any(a.startswith(("--standalone", "--peering", "--priority")) for a in extra):
        args.append("--standalone")
    return args


def run(args: argparse.Namespace) -> int:
    import sys

    from .preflight import PreflightError, check_cluster

    try:
        check_cluster()
    except PreflightError as exc:
        print(f"inferops operator: {exc}", file=sys.stderr)
        return 2
    import kopf.cli

    try:
        kopf.cli.main(args=kopf_arguments(list(getattr(args, "kopf_args", []))), standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0

"""The operator at 1,000 InferenceModels on the local control plane: time until all are Ready,
the operator's peak RSS, and its API request rate (every request it makes, reads included,
counted from the API server's audit log), while converging and then at rest.

    python bench/bench_load.py [--models 1000] [--rest 60]

The control plane, nodes and models are those of bench/bench_operator.py (imported from it).
The operator runs with its shipped defaults (worker limit 16, watch server timeout 300 s) and
the chart's RBAC subject (ServiceAccount inferops-system/inferops).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_operator import USER, bench_cluster, models, peak_rss_mib, rss_mib, summarize  # noqa: E402

from inferops.devcluster.cluster import LocalCluster  # noqa: E402


def requests_between(cluster: LocalCluster, start: float, end: float) -> list[dict]:
    """The operator's requests whose audit timestamp falls in [start, end) (wall clock)."""
    import datetime

    def ts(event: dict) -> float:
        return datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()

    return [e for e in cluster.audit_requests(user=USER) if start <= ts(e) < end]


def run(count: int, rest_seconds: float, timeout: float) -> dict:
    with bench_cluster(count) as (cluster, operator):
        samples: list[float] = []
        time.sleep(2)
        idle_rss = rss_mib(operator.pid)
        wall_start, started = time.time(), time.monotonic()
        cluster.kubectl("apply", "--server-side", "-f", "-", input=models(count), timeout=600)
        ready = 0
        while time.monotonic() < started + timeout:
            samples.append(rss_mib(operator.pid))
            phases = cluster.kubectl("get", "im", "-n", "bench", "-o", "jsonpath={.items[*].status.phase}", timeout=120).stdout.split()
            ready = phases.count("Ready")
            if ready == count:
                break
            if len(samples) % 15 == 0:
                print(f"  {time.monotonic() - started:6.0f} s: {ready} Ready, {phases.count('Optimizing')} Optimizing, RSS {samples[-1]:.0f} MiB", flush=True)
            time.sleep(2)
        converge_s = time.monotonic() - started
        wall_ready = time.time()
        time.sleep(rest_seconds)
        samples.append(rss_mib(operator.pid))
        wall_end = time.time()
        converging = requests_between(cluster, wall_start, wall_ready)
        resting = requests_between(cluster, wall_ready, wall_end)
        peak = peak_rss_mib(operator.pid)
        restarts = operator.log_path.read_text().count("Traceback")
    return {
        "models": count,
        "ready": ready,
        "seconds_to_all_ready": round(converge_s, 1),
        "idle_rss_mib": round(idle_rss, 1),
        "peak_rss_mib": round(peak, 1),
        "rss_at_rest_mib": round(samples[-1], 1),
        "requests_converging": len(converging),
        "requests_per_s_converging": round(len(converging) / max(converge_s, 1e-9), 1),
        "requests_per_model_converging": round(len(converging) / count, 2),
        "requests_at_rest": len(resting),
        "requests_per_s_at_rest": round(len(resting) / rest_seconds, 2),
        "converging_by_kind": summarize(converging),
        "resting_by_kind": summarize(resting),
        "tracebacks_in_log": restarts,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rest", type=float, default=60, help="seconds to watch the request rate after all are Ready")
    parser.add_argument("--timeout", type=float, default=1500)
    args = parser.parse_args()
    r = run(args.models, args.rest, args.timeout)
    print(f"models {r['models']}, Ready {r['ready']} after {r['seconds_to_all_ready']} s")
    print(f"operator RSS MiB: idle {r['idle_rss_mib']}, peak {r['peak_rss_mib']}, at rest {r['rss_at_rest_mib']}")
    print(
        f"operator API requests while converging: {r['requests_converging']} "
        f"({r['requests_per_s_converging']}/s, {r['requests_per_model_converging']}/model)"
    )
    print(f"operator API requests at rest ({args.rest:.0f} s): {r['requests_at_rest']} ({r['requests_per_s_at_rest']}/s)")
    print("converging by kind:", json.dumps(r["converging_by_kind"]))
    print("at rest by kind:", json.dumps(r["resting_by_kind"]))
    print("tracebacks in the operator log:", r["tracebacks_in_log"])


if __name__ == "__main__":
    main()

"""The operator against the bound (issue "At scale"): for N models, the time from apply to all
Ready, next to a baseline client that creates exactly the objects the operator would, with no
operator, as fast as the control plane takes them.

    python bench/bench_scale.py [--counts 100 300] [--rest 30] [--profile DIR] [--env KEY=VALUE ...] [--idle 3600]

Each N runs twice, each on a fresh control plane (bench_operator.bench_cluster):
(a) baseline: server-side apply of each model's Job (rendered by reconcile/children.py, the
    operator's own content), then, once that Job succeeded on kwok, its ConfigMap, Deployment
    and Service; timed until every Deployment is available. ownerReferences are dropped: there is
    no InferenceModel to own them, and the garbage collector would delete orphans.
(b) operator: the models applied with kubectl; each Job's report.json committed where the Job
    would write it once kwok completes it (kwok pods publish nothing); timed until every model is Ready.
Printed: operator/baseline ratio; the operator's phase latencies from object timestamps (one
second resolution), p50/p99; its API requests/s converging and at rest (audit log); its peak
RSS; the machine's load average. --profile DIR runs the operator under py-spy (if installed).
--env passes operator settings (e.g. INFEROPS_WORKER_LIMIT=16 to compare with an older default).
--idle SECONDS keeps the N models Ready that long afterwards and samples the operator's RSS each
minute (memory flat at rest; an hour at 1,000 is the issue's check, not run in CI).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import requests_between  # noqa: E402
from bench_operator import USER, bench_cluster, models, peak_rss_mib, summarize  # noqa: E402
from kubernetes import client as k8s, config as k8s_config  # noqa: E402

from inferops.api.hardware_class import HardwareClassSpec  # noqa: E402
from inferops.api.inference_model import InferenceModelSpec  # noqa: E402
from inferops.api.report import OptimizationReport  # noqa: E402
from inferops.devcluster.kwok_artifacts import KwokPublisher  # noqa: E402
from inferops.kube import Kube  # noqa: E402
from inferops.reconcile.children import ModelRef, Revision, artifact_uri, desired_job, desired_serving  # noqa: E402
from inferops.reconcile.naming import optimization_hash  # noqa: E402
from inferops.reconcile.settings import OperatorSettings  # noqa: E402

CLASS = HardwareClassSpec.model_validate({"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "bench"}})
SELECTOR = "app.kubernetes.io/managed-by=inferops"


def _client(kubeconfig: Path) -> Kube:
    config = k8s.Configuration()
    k8s_config.load_kube_config(str(kubeconfig), client_configuration=config)
    config.connection_pool_maxsize = 32
    return Kube(k8s.ApiClient(config))


def _ts(value: str | None) -> float | None:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _model_refs(count: int) -> list[ModelRef]:
    items = json.loads(models(count))["items"]
    return [ModelRef(m["metadata"]["name"], "bench", f"baseline-{i}", 1, InferenceModelSpec.model_validate(m["spec"])) for i, m in enumerate(items)]


def _report(uri: str, name: str) -> dict[str, Any]:
    return {"artifactUri": uri, "modelName": name, "backend": "onnxruntime"}


def _apply(kube: Kube, obj: dict[str, Any]) -> None:
    obj = json.loads(json.dumps(obj))
    obj["metadata"].pop("ownerReferences", None)
    meta = obj["metadata"]
    path = {"Job": "/apis/batch/v1/namespaces/{ns}/jobs", "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
            "Service": "/api/v1/namespaces/{ns}/services", "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
            "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"}[obj["kind"]]
    kube._call("PATCH", f"{path.format(ns=meta['namespace'])}/{meta['name']}", body=obj, content_type="application/apply-patch+yaml",
               query=[("fieldManager", "baseline"), ("force", "true")])


def _list(kube: Kube, path: str) -> list[dict[str, Any]]:
    return kube._call("GET", path, query=[("labelSelector", SELECTOR)]).get("items", [])


def _complete(job: dict[str, Any]) -> bool:
    return any(c.get("type") == "Complete" and c.get("status") == "True" for c in (job.get("status") or {}).get("conditions") or [])


def _available(dep: dict[str, Any]) -> bool:
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in (dep.get("status") or {}).get("conditions") or [])


class Watched:
    """The bench namespace's objects of one kind, as a LIST then a WATCH from its resourceVersion
    show them, each passed to on_change (in a thread). A real client watches: polling a LIST of
    1,000 Jobs and 1,000 Deployments twice a second loaded the API server (and this client)
    more than the objects themselves, which flattered the operator's ratio."""

    def __init__(self, kube: Kube, path: str, on_change) -> None:
        import threading

        self.kube, self.path, self.on_change = kube, path, on_change
        self.stop = threading.Event()
        self.listed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rv = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    data = self.kube._call("GET", self.path, query=[("labelSelector", SELECTOR)])
                    for item in data.get("items", []):
                        self.on_change(item)
                    rv = data["metadata"]["resourceVersion"]
                    self.listed.set()
                query = [("labelSelector", SELECTOR), ("watch", "true"), ("resourceVersion", rv), ("allowWatchBookmarks", "true"), ("timeoutSeconds", "20")]
                method, url, headers, body, post = self.kube.client.param_serialize("GET", self.path, query_params=query, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
                response = self.kube.client.call_api(method, url, headers, body, post, _request_timeout=60).response
                try:
                    for line in response:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            rv = None  # 410 Gone: list again
                            break
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self.on_change(event["object"])
                        if self.stop.is_set():
                            break
                finally:
                    response.release_conn()
            except Exception:
                time.sleep(0.5)


def run_baseline(count: int, timeout: float) -> dict[str, Any]:
    import threading

    settings = OperatorSettings(artifact_root="file:///bench-artifacts")
    with bench_cluster(count, start_operator=False) as (cluster, _):
        kube = _client(cluster.kubeconfig)
        refs = {m.name: m for m in _model_refs(count)}
        hashes = {n: optimization_hash(m.spec, CLASS) for n, m in refs.items()}
        served: set[str] = set()
        available: set[str] = set()
        lock, done = threading.Lock(), threading.Event()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            futures: list[concurrent.futures.Future] = []

            def job_changed(job: dict[str, Any]) -> None:
                name = job["metadata"]["labels"]["inferops.dev/model"]
                with lock:
                    if name in served or not _complete(job):
                        return
                    served.add(name)
                m = refs[name]
                uri = artifact_uri(m, hashes[name], settings)
                objs, _ = desired_serving(m, CLASS, Revision(uri, OptimizationReport.model_validate(_report(uri, name))), settings)
                futures.append(pool.submit(lambda objs=objs: [_apply(kube, o) for o in objs]))

            def deployment_changed(dep: dict[str, Any]) -> None:
                if _available(dep):
                    with lock:
                        available.add(dep["metadata"]["name"])
                        if len(available) == count:
                            done.set()

            watches = [Watched(kube, "/apis/batch/v1/namespaces/bench/jobs", job_changed), Watched(kube, "/apis/apps/v1/namespaces/bench/deployments", deployment_changed)]
            for w in watches:
                w.listed.wait(60)
            started = time.monotonic()
            futures.extend(pool.submit(_apply, kube, desired_job(m, CLASS, hashes[n], settings)) for n, m in refs.items())
            done.wait(timeout)
            elapsed = time.monotonic() - started
            for w in watches:
                w.stop.set()
            for f in list(futures):
                f.result()
    return {"seconds": round(elapsed, 1), "available": len(available)}


@contextlib.contextmanager
def _publishing(cluster):
    """kwok's Job pods publish nothing: this commits each Job's report.json when kwok completes the
    Job, where and as the optimizer would (devcluster/kwok_artifacts.py). Seeding them before the
    apply would find every artifact committed, and the operator would (rightly) make no Job."""
    publisher = KwokPublisher(cluster.kubeconfig).start()
    try:
        yield publisher
    finally:
        publisher.stop()


def _pcts(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[len(values) // 2]:.0f}/{values[min(len(values) - 1, int(len(values) * 0.99))]:.0f}"


def phases(kube: Kube) -> dict[str, str]:
    """p50/p99 seconds of the operator's own steps, from the objects' timestamps."""
    ims = {m["metadata"]["name"]: m for m in kube._call("GET", "/apis/inferops.dev/v1alpha1/namespaces/bench/inferencemodels")["items"]}
    jobs = {j["metadata"]["labels"]["inferops.dev/model"]: j for j in _list(kube, "/apis/batch/v1/namespaces/bench/jobs")}
    deps = {d["metadata"]["labels"]["inferops.dev/model"]: d for d in _list(kube, "/apis/apps/v1/namespaces/bench/deployments")}
    to_job, to_deploy, to_ready = [], [], []
    for name, m in ims.items():
        job, dep = jobs.get(name), deps.get(name)
        ready = next((c for c in m.get("status", {}).get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"), None)
        if job:
            to_job.append(_ts(job["metadata"]["creationTimestamp"]) - _ts(m["metadata"]["creationTimestamp"]))
        if job and dep and job.get("status", {}).get("completionTime"):
            to_deploy.append(_ts(dep["metadata"]["creationTimestamp"]) - _ts(job["status"]["completionTime"]))
        avail = next((c for c in (dep or {}).get("status", {}).get("conditions", []) if c["type"] == "Available" and c["status"] == "True"), None)
        if avail and ready:
            to_ready.append(_ts(ready["lastTransitionTime"]) - _ts(avail["lastTransitionTime"]))
    return {"model->Job": _pcts(to_job), "Job done->Deployment": _pcts(to_deploy), "available->Ready": _pcts(to_ready)}


def api_latency_ms(cluster, start: float, end: float) -> str:
    """p50/p99 of the API server's time for the operator's requests (watches aside) received in
    [start, end): request received -> response complete, from the audit log. Tells an API server
    that is itself the bottleneck from an operator that is slow to ask."""
    latencies = []
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event.get("verb") == "watch" or event.get("user", {}).get("username") != USER:
            continue
        received = _ts(event["requestReceivedTimestamp"])
        if start <= received < end:
            latencies.append((_ts(event["stageTimestamp"]) - received) * 1000)
    return _pcts(latencies)


def reports_read(kube: Kube) -> int:
    """Models whose status carries the report seeded for them: the operator read it (issue 4)."""
    items = kube._call("GET", "/apis/inferops.dev/v1alpha1/namespaces/bench/inferencemodels")["items"]
    return sum(((m.get("status") or {}).get("report") or {}).get("modelName") == m["metadata"]["name"] for m in items)


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (its share of the machine's cores)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_rss(pid: int, seconds: float) -> list[float]:
    """The operator's RSS (MiB) each minute for `seconds`, everything Ready and unchanged."""
    from bench_operator import rss_mib

    samples = [round(rss_mib(pid), 1)]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(60.0, max(0.0, end - time.monotonic())))
        samples.append(round(rss_mib(pid), 1))
        print(f"  idle: RSS {samples[-1]} MiB", flush=True)
    return samples


def run_operator(count: int, timeout: float, rest: float, profile: Path | None, env: dict[str, str] | None = None, idle: float = 0) -> dict[str, Any]:
    with bench_cluster(count, {"INFEROPS_RESYNC_SECONDS": "3600", **(env or {})}) as (cluster, operator), _publishing(cluster):
        kube = _client(cluster.kubeconfig)
        spy = None
        if profile is not None:
            import subprocess

            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-r", "50", "-f", "speedscope", "-o", str(profile / f"operator-{count}.json"), "-p", str(operator.pid), "--idle"])
        wall_start, started, cpu_start = time.time(), time.monotonic(), cpu_seconds(operator.pid)
        cluster.kubectl("apply", "--server-side", "-f", "-", input=models(count), timeout=600)
        ready = 0
        while time.monotonic() < started + timeout:
            items = kube._call("GET", "/apis/inferops.dev/v1alpha1/namespaces/bench/inferencemodels")["items"]
            ready = sum((m.get("status") or {}).get("phase") == "Ready" for m in items)
            if ready == count:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        wall_ready = time.time()
        cpu = cpu_seconds(operator.pid) - cpu_start
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)
        time.sleep(rest)
        converging = requests_between(cluster, wall_start, wall_ready)
        resting = requests_between(cluster, wall_ready + 5, wall_ready + rest)
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        rss_idle = idle_rss(operator.pid, idle) if idle else []
        return {
            "seconds": round(elapsed, 1),
            "ready": ready,
            "phases": phases(kube),
            "req_s_converging": round(len(converging) / elapsed, 1),
            "api_latency_ms": api_latency_ms(cluster, wall_start, wall_ready),
            "req_per_model": round(len(converging) / count, 1),
            "converging_by_kind": summarize(converging),
            "req_s_at_rest": round(len([e for e in resting if e["verb"] != "watch"]) / max(rest - 5, 1), 2),
            "resting_by_kind": summarize(resting),
            "peak_rss_mib": round(peak_rss_mib(operator.pid), 1),
            "operator_cpu_s": round(cpu, 1),
            "load": load,
            "reports_read": reports_read(kube),
            "idle_rss_mib": rss_idle,
            "tracebacks": operator.log_path.read_text().count("Traceback"),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 300], help="1000 possible: it takes long on a small machine")
    parser.add_argument("--rest", type=float, default=30, help="seconds to count requests after all are Ready")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--profile", type=Path, help="write a py-spy speedscope profile of the operator per N here")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-operator", action="store_true")
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="operator environment, e.g. INFEROPS_WORKER_LIMIT=16")
    parser.add_argument("--idle", type=float, default=0, help="then keep the models that many seconds and sample RSS each minute (not in CI)")
    args = parser.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    rows = []
    for n in args.counts:
        # The operator first: a 1,000-model run is long, and its numbers are the ones to watch.
        if args.skip_operator:
            print(json.dumps({"models": n, "baseline": run_baseline(n, args.timeout)}), flush=True)
            continue
        op = run_operator(n, args.timeout, args.rest, args.profile, env, args.idle)
        print(json.dumps({"models": n, "operator": op}), flush=True)
        base = {"seconds": float("nan")} if args.skip_baseline else run_baseline(n, args.timeout)
        rows.append((n, op, base))
        print(json.dumps({"models": n, "baseline": base}), flush=True)
    print(f"{'N':>5} {'operator s':>10} {'baseline s':>10} {'ratio':>6} {'model->Job':>11} {'Job->Deploy':>11} {'avail->Ready':>12} {'req/s conv':>10} {'req/model':>9} {'req/s rest':>10} {'API ms':>9} {'RSS MiB':>8} {'op CPU s':>8} {'reports':>7} {'load':>14}")
    for n, op, base in rows:
        p = op["phases"]
        print(f"{n:>5} {op['seconds']:>10} {base['seconds']:>10} {op['seconds'] / base['seconds']:>6.2f} {p['model->Job']:>11} {p['Job done->Deployment']:>11} {p['available->Ready']:>12} "
              f"{op['req_s_converging']:>10} {op['req_per_model']:>9} {op['req_s_at_rest']:>10} {op['api_latency_ms']:>9} {op['peak_rss_mib']:>8} {op['operator_cpu_s']:>8} {op['reports_read']:>7} {op['load']:>14}")


if __name__ == "__main__":
    main()

"""Convergence after faults, and failover between two peering replicas, on a fresh local
control plane with the real operator (run as the chart's ServiceAccount and RBAC):

    python bench/bench_faults.py

For each fault it prints the seconds from the end of the fault (the component is back) until
the model is Ready again, and from its start. Failover: seconds from SIGKILL of the acting
replica until the standby resumes, and until a model applied right after the kill is Ready.
The fixtures' helpers of tests/cluster are reused (operator process, chart RBAC, manifests)."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "cluster")]

from conftest import OPERATOR_NAMESPACE, OPERATOR_SA, OperatorProcess, chart_rbac  # noqa: E402
from test_faults import CPU_CLASS, poll  # noqa: E402
from test_operator import model_manifest, names, wait_phase  # noqa: E402

from inferops.devcluster.cluster import LocalCluster, free_port  # noqa: E402


def setup(cluster: LocalCluster, workdir: Path, sets: tuple[str, ...] = ()) -> dict[str, str]:
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("apply", "-f", str(REPO / "charts" / "inferops" / "crds" / "clusterkopfpeerings.kopf.dev.yaml"))
    for crd in ("inferencemodels.inferops.dev", "hardwareclasses.inferops.dev", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", f"crd/{crd}", "--for=condition=Established", "--timeout=30s")
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE)
    for obj in chart_rbac(OPERATOR_NAMESPACE, *sets):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    token = cluster.kubectl("create", "token", OPERATOR_SA, "-n", OPERATOR_NAMESPACE, "--duration=2h").stdout.strip()
    cluster.with_token(token, workdir / "operator.kubeconfig")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CPU_CLASS))
    cluster.create_namespace("faults", timeout=60)
    return dict(
        os.environ,
        KUBECONFIG=str(workdir / "operator.kubeconfig"),
        INFEROPS_ARTIFACT_ROOT=f"file://{workdir}/artifacts",
        INFEROPS_SMOKE_TEST="false",
        INFEROPS_RESYNC_SECONDS="3600",
        INFEROPS_WATCH_SERVER_TIMEOUT="60",
        INFEROPS_METRICS_PORT="0",
        INFEROPS_WEBHOOK=f"local:{free_port()}",
    )


def apply(cluster, name: str) -> None:
    cluster.kubectl("apply", "-n", "faults", "-f", "-", input=model_manifest(name, hardware="faults-cpu"))


def ready(cluster, name: str) -> float:
    wait_phase(cluster, "faults", name, "Ready", timeout=180)
    assert names(cluster, "faults", "jobs", name) and len(names(cluster, "faults", "deployments", name)) == 1
    return time.monotonic()


def control_plane_restart(cluster, process: str, name: str) -> tuple[float, float]:
    apply(cluster, name)
    wait_phase(cluster, "faults", name, "Optimizing")
    began = time.monotonic()
    cluster.stop_process(process)
    time.sleep(3)
    cluster.start_process(process)
    back = time.monotonic()
    done = ready(cluster, name)
    return done - back, done - began


def operator_kill(cluster, operator: OperatorProcess, name: str) -> tuple[float, float]:
    apply(cluster, name)
    wait_phase(cluster, "faults", name, "Optimizing")
    began = time.monotonic()
    operator.kill()
    operator.start()
    back = time.monotonic()
    done = ready(cluster, name)
    return done - back, done - began


def job_pod_failure(cluster, name: str) -> tuple[float, float]:
    apply(cluster, name)
    model = wait_phase(cluster, "faults", name, "Optimizing")
    job = model["status"]["jobName"]

    def running() -> str | None:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", "faults", "-l", f"job-name={job}", "-o", "json").stdout)["items"]
        return next((p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"), None)

    pod = poll("the Job's pod", running, interval=0.05)
    began = time.monotonic()
    cluster.kubectl("patch", "pod", pod, "-n", "faults", "--subresource=status", "--type=merge", "-p", json.dumps({"status": {"phase": "Failed"}}))
    done = ready(cluster, name)
    return done - began, done - began


def class_deleted(cluster, name: str) -> tuple[float, float]:
    apply(cluster, name)
    ready(cluster, name)
    began = time.monotonic()
    cluster.kubectl("delete", "hardwareclass", "faults-cpu")
    poll("HardwareClassResolved=False", lambda: "HardwareClassNotFound" in cluster.kubectl("get", "im", name, "-n", "faults", "-o", "json").stdout)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CPU_CLASS))
    back = time.monotonic()
    done = ready(cluster, name)
    return done - back, done - began


def failover(cluster, env: dict[str, str], workdir: Path) -> tuple[float, float]:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "bench"}}))
    pair = []
    for i in range(2):
        replica = OperatorProcess(cluster, workdir, dict(env, INFEROPS_WEBHOOK=f"local:{free_port()}", POD_ID=f"replica-{i}"), args=("--peering=bench",), log_name=f"replica-{i}.log")
        replica.start()
        pair.append(replica)
    try:
        prio = {id(r): int(re.findall(r"with priority (\d+)", r.log.read_text())[-1]) for r in pair}
        active, standby = sorted(pair, key=lambda r: prio[id(r)], reverse=True)
        apply(cluster, "before-failover")
        ready(cluster, "before-failover")
        time.sleep(2)
        resumes = standby.log.read_text().count("Resuming the watch-stream for inferencemodels")
        killed = time.monotonic()
        active.kill()
        apply(cluster, "after-failover")
        poll("the standby to resume", lambda: standby.log.read_text().count("Resuming the watch-stream for inferencemodels") > resumes, timeout=120, interval=0.1)
        resumed = time.monotonic()
        done = ready(cluster, "after-failover")
        return resumed - killed, done - killed
    finally:
        for r in pair:
            r.stop()


def main() -> None:
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cluster = LocalCluster(workdir / "cluster").start()
        try:
            env = setup(cluster, workdir, ("replicaCount=2",))
            operator = OperatorProcess(cluster, workdir, env)
            operator.start()
            try:
                results["kube-apiserver restart (3 s down)"] = control_plane_restart(cluster, "kube-apiserver", "apiserver")
                results["etcd restart (3 s down)"] = control_plane_restart(cluster, "etcd", "etcd")
                results["operator SIGKILL in Optimizing"] = operator_kill(cluster, operator, "killed")
                results["Job pod Failed (Job backoff)"] = job_pod_failure(cluster, "flaky")
                results["HardwareClass deleted, re-created"] = class_deleted(cluster, "orphan")
            finally:
                operator.stop()
            resumed, failover_ready = failover(cluster, env, workdir)
        finally:
            cluster.stop()
    print("model Ready again, seconds after the fault ended (component back and ready) and after it began:")
    print(f"{'fault':<40} {'after it ended':>15} {'after it began':>15}")
    for fault, (after_end, after_begin) in results.items():
        print(f"{fault:<40} {after_end:>15.1f} {after_begin:>15.1f}")
    print(f"failover (peering lifetime 15 s): SIGKILL of the acting replica -> standby's watches resume {resumed:.1f} s; -> a model applied after the kill Ready {failover_ready:.1f} s")


if __name__ == "__main__":
    main()

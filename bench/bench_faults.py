"""Convergence after faults, and failover between two peering replicas, on a fresh local
control plane with the real operator (run as the chart's ServiceAccount and RBAC):

    python bench/bench_faults.py

For each fault it prints the seconds from the end of the fault (the component is back) until
the model is Ready again, and from its start. The integrity faults (issue 14): a Job deleted after
it succeeded (no Job may be made again, the committed artifact keeps serving), report.json of a new
revision unreadable for 60 s (the previous revision serves meanwhile), and a 100 MB report.json in
another namespace (refused unread while another model goes to Ready). At the end every model must
serve its last good revision and be Ready at its current generation; the script says so per model. Failover: seconds from SIGKILL of the acting
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
sys.path[:0] = [str(REPO / "tests" / "cluster"), str(REPO / "tests")]

from operator_harness import OPERATOR_NAMESPACE, OPERATOR_SA, OperatorProcess, chart_rbac  # noqa: E402
from test_faults import CPU_CLASS, poll  # noqa: E402
from test_operator import model_manifest, names, wait_phase  # noqa: E402

from inferops.devcluster.cluster import LocalCluster, free_port  # noqa: E402
from inferops.devcluster.kwok_artifacts import KwokPublisher  # noqa: E402


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


def artifact_path(workdir: Path, namespace: str, name: str, manifest: str) -> Path:
    import yaml

    from inferops.api.hardware_class import HardwareClassSpec
    from inferops.api.inference_model import InferenceModelSpec
    from inferops.reconcile.naming import optimization_hash

    spec = InferenceModelSpec.model_validate(yaml.safe_load(manifest)["spec"])
    return workdir / "artifacts" / namespace / name / optimization_hash(spec, HardwareClassSpec.model_validate(CPU_CLASS["spec"]))


def status_of(cluster, namespace: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "im", name, "-n", namespace, "-o", "json").stdout)


def serving_artifact(cluster, namespace: str, name: str) -> str:
    deployment = json.loads(cluster.kubectl("get", "deployment", f"{name}-triton", "-n", namespace, "-o", "json").stdout)
    return deployment["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"]


def ready_at_generation(cluster, namespace: str, name: str, timeout: float = 120) -> float:
    def now_ready():
        m = status_of(cluster, namespace, name)
        return m.get("status", {}).get("phase") == "Ready" and m["status"].get("observedGeneration") == m["metadata"]["generation"]

    poll(f"{name} Ready at its generation", now_ready, timeout=timeout, interval=0.2)
    return time.monotonic()


def job_deleted_after_success(cluster, workdir: Path, name: str) -> tuple[float, float]:
    apply(cluster, name)
    ready(cluster, name)
    marker = artifact_path(workdir, "faults", name, model_manifest(name, hardware="faults-cpu")) / "report.json"
    before = (marker.stat().st_mtime_ns, marker.read_bytes())
    began = time.monotonic()
    cluster.kubectl("delete", "jobs", "-n", "faults", "-l", f"inferops.dev/model={name}")
    cluster.kubectl("annotate", "im", name, "-n", "faults", "touched=1", "--overwrite")  # an event for certain
    done = ready_at_generation(cluster, "faults", name)
    time.sleep(5)  # long enough for a Job to be made again, if it were
    assert names(cluster, "faults", "jobs", name) == [], "a Job was made again for a committed artifact"
    assert (marker.stat().st_mtime_ns, marker.read_bytes()) == before, "the committed report.json changed"
    assert serving_artifact(cluster, "faults", name) == status_of(cluster, "faults", name)["status"]["artifactUri"]
    return done - began, done - began


def report_unreadable(cluster, workdir: Path, name: str, seconds: float = 60) -> tuple[float, float]:
    apply(cluster, name)
    ready(cluster, name)
    first = status_of(cluster, "faults", name)["status"]["artifactUri"]
    second = model_manifest(name, recipe="prune", hardware="faults-cpu")
    marker = artifact_path(workdir, "faults", name, second) / "report.json"
    marker.parent.mkdir(parents=True)
    good = json.dumps({"artifactUri": f"file://{marker.parent}", "modelName": name, "backend": "onnxruntime", "notes": ["revision 2"]})
    marker.write_text(good[:15])  # torn: unreadable as a report
    began = time.monotonic()
    cluster.kubectl("apply", "-n", "faults", "-f", "-", input=second)
    while time.monotonic() - began < seconds:
        assert serving_artifact(cluster, "faults", name) == first, "a revision was rendered without its report"
        assert status_of(cluster, "faults", name)["status"].get("artifactUri") == first
        time.sleep(1)
    m = status_of(cluster, "faults", name)
    said = next(c for c in m["status"]["conditions"] if c["type"] == "Optimized")["reason"]
    assert said == "ReportUnavailable", said
    marker.write_text(good)
    back = time.monotonic()
    done = ready_at_generation(cluster, "faults", name)
    assert serving_artifact(cluster, "faults", name) == status_of(cluster, "faults", name)["status"]["artifactUri"] != first
    return done - back, done - began


def huge_report_elsewhere(cluster, workdir: Path, name: str) -> tuple[float, float]:
    cluster.create_namespace("faults-big", timeout=60)
    big = model_manifest("big", hardware="faults-cpu")
    marker = artifact_path(workdir, "faults-big", "big", big) / "report.json"
    marker.parent.mkdir(parents=True)
    with open(marker, "wb") as f:
        f.truncate(100 * 1024 * 1024)
    began = time.monotonic()
    cluster.kubectl("apply", "-n", "faults-big", "-f", "-", input=big)
    apply(cluster, name)
    done = ready(cluster, name)

    def refused():
        conditions = status_of(cluster, "faults-big", "big").get("status", {}).get("conditions", [])
        return any(c["type"] == "Optimized" and c["reason"] == "ReportUnavailable" and "over the limit" in c["message"] for c in conditions)

    poll("the 100 MB report refused", refused, timeout=60)
    cluster.kubectl("delete", "namespace", "faults-big", "--wait=false")
    return done - began, done - began


def last_good_revisions(cluster) -> list[str]:
    """Every model in the faults namespace: Ready at its generation, serving its status' artifact."""
    lines = []
    for m in json.loads(cluster.kubectl("get", "im", "-n", "faults", "-o", "json").stdout)["items"]:
        name, status = m["metadata"]["name"], m.get("status", {})
        ok = status.get("phase") == "Ready" and status.get("observedGeneration") == m["metadata"]["generation"] and serving_artifact(cluster, "faults", name) == status.get("artifactUri")
        lines.append(f"  {name:<16} {status.get('phase'):<10} generation {m['metadata']['generation']} observed {status.get('observedGeneration')} serving {status.get('artifactUri', '').rsplit('/', 1)[-1]} {'ok' if ok else 'NOT OK'}")
    return lines


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
            publisher = KwokPublisher(cluster.kubeconfig).start()  # kwok's Jobs publish what the optimizer would
            operator = OperatorProcess(cluster, workdir, env)
            operator.start()
            try:
                results["kube-apiserver restart (3 s down)"] = control_plane_restart(cluster, "kube-apiserver", "apiserver")
                results["etcd restart (3 s down)"] = control_plane_restart(cluster, "etcd", "etcd")
                results["operator SIGKILL in Optimizing"] = operator_kill(cluster, operator, "killed")
                results["Job pod Failed (Job backoff)"] = job_pod_failure(cluster, "flaky")
                results["HardwareClass deleted, re-created"] = class_deleted(cluster, "orphan")
                results["Job deleted after success"] = job_deleted_after_success(cluster, workdir, "jobless")
                results["report.json unreadable for 60 s"] = report_unreadable(cluster, workdir, "torn")
                results["100 MB report.json, other namespace"] = huge_report_elsewhere(cluster, workdir, "neighbour")
                final = last_good_revisions(cluster)
            finally:
                operator.stop()
            resumed, failover_ready = failover(cluster, env, workdir)
            publisher.stop()
        finally:
            cluster.stop()
    print("model Ready again, seconds after the fault ended (component back and ready) and after it began:")
    print(f"{'fault':<40} {'after it ended':>15} {'after it began':>15}")
    for fault, (after_end, after_begin) in results.items():
        print(f"{fault:<40} {after_end:>15.1f} {after_begin:>15.1f}")
    print("after every fault, each model (Ready at its generation, serving the artifact its status names):")
    print("\n".join(final))
    print(f"failover (peering lifetime 15 s): SIGKILL of the acting replica -> standby's watches resume {resumed:.1f} s; -> a model applied after the kill Ready {failover_ready:.1f} s")


if __name__ == "__main__":
    main()

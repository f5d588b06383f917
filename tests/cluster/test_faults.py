"""Faults on the real control plane: the operator converges, makes no duplicate Jobs or
Deployments, and loses no status after an API server restart, an etcd restart, its own death
in each phase, a failing Job pod, and a HardwareClass that goes away and comes back.

Every test leaves the control plane and the session's operator running."""

from __future__ import annotations

import json
import time

import pytest

from test_operator import condition, get, model_manifest, names, poll, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CPU_CLASS = {
    "apiVersion": "inferops.dev/v1alpha1",
    "kind": "HardwareClass",
    "metadata": {"name": "faults-cpu"},
    "spec": {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
}
# Serving pods need a resource no node has until a test adds a (tainted) node with it: that
# holds a model in Deploying. Jobs of a CPU class take only cpu/memory, so they run anyway.
WIDGET_CLASS = {
    "apiVersion": "inferops.dev/v1alpha1",
    "kind": "HardwareClass",
    "metadata": {"name": "faults-widget"},
    "spec": {
        "instanceKind": "KIND_CPU",
        "nodeSelector": {"inferops.dev/pool": "cpu"},
        "tolerations": [{"key": "inferops.dev/faults", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"limits": {"example.com/widget": "1"}},
    },
}


def widget_node(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"type": "kwok", "inferops.dev/pool": "cpu", "kubernetes.io/hostname": name},
        },
        "spec": {"taints": [{"key": "inferops.dev/faults", "value": "yes", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110", "example.com/widget": "4"},
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "example.com/widget": "4"},
        },
    }


@pytest.fixture(scope="module", autouse=True)
def fault_classes(cluster, operator):
    for hc in (CPU_CLASS, WIDGET_CLASS):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(hc))
    yield
    cluster.kubectl("delete", "hardwareclass", "faults-cpu", "faults-widget", "--ignore-not-found")


@pytest.fixture(autouse=True)
def control_plane_and_operator_back(cluster, operator):
    """Whatever a test stopped comes back, even when the test fails half-way."""
    yield
    for name in list(getattr(cluster, "_stopped", {})):
        cluster.start_process(name)
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()


def operator_creates(cluster, operator, namespace: str) -> list[str]:
    """Server-side apply creates through PATCH: a `create` of a child means a duplicate attempt."""
    return [
        f"{w['objectRef']['resource']}/{w['objectRef'].get('name')}"
        for w in cluster.audit_writes(user=operator.user)
        if w["verb"] == "create" and w["objectRef"].get("namespace") == namespace and w["objectRef"]["resource"] != "events"
    ]


def assert_converged(cluster, operator, namespace: str, name: str, timeout: int = 90) -> dict:
    """Ready, one Job (the status's), one Deployment with one ReplicaSet, and a complete status."""
    model = wait_phase(cluster, namespace, name, "Ready", timeout=timeout)
    status = model["status"]
    assert status["observedGeneration"] == model["metadata"]["generation"]
    for type_ in ("HardwareClassResolved", "Optimized", "Ready"):
        assert condition(model, type_)["status"] == "True", condition(model, type_)
    assert status["artifactUri"]
    assert status["endpoint"] == f"http://{name}-triton.{namespace}.svc:8000"
    assert status["readyReplicas"] == 1
    assert names(cluster, namespace, "jobs", name) == [status["jobName"]]
    assert names(cluster, namespace, "deployments", name) == [f"{name}-triton"]
    assert len(names(cluster, namespace, "replicasets", name)) == 1
    assert operator_creates(cluster, operator, namespace) == []
    return model


def apply_model(cluster, namespace: str, name: str, hardware: str = "faults-cpu") -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest(name, hardware=hardware))


def test_api_server_restart_mid_reconcile(cluster, operator, namespace):
    if not hasattr(cluster, "stop_process"):
        pytest.skip("needs the local control plane")
    apply_model(cluster, namespace, "apiserver")
    # Down as soon as the operator has started on the model: its reconcile and the Job's
    # progress are cut off midway; events that would have followed never reach it.
    poll("the operator to pick the model up", lambda: f"[{namespace}/apiserver]" in operator.log.read_text(), interval=0.05)
    cluster.stop_process("kube-apiserver")
    time.sleep(3)  # an outage, not a blip: the operator's watches and calls fail meanwhile
    cluster.start_process("kube-apiserver")
    first = assert_converged(cluster, operator, namespace, "apiserver")
    # And once more with the model Ready: nothing is redone after the restart.
    cluster.restart_process("kube-apiserver")
    second = assert_converged(cluster, operator, namespace, "apiserver")
    assert second["status"]["jobName"] == first["status"]["jobName"]
    assert operator.proc.poll() is None, "the operator survived both restarts"


def test_etcd_restart(cluster, operator, namespace):
    if not hasattr(cluster, "stop_process"):
        pytest.skip("needs the local control plane")
    apply_model(cluster, namespace, "etcd")
    cluster.kubectl("wait", "inferencemodel/etcd", "-n", namespace, "--for=jsonpath={.status.phase}=Optimizing", "--timeout=30s")
    cluster.stop_process("etcd")
    time.sleep(3)
    cluster.start_process("etcd")
    assert_converged(cluster, operator, namespace, "etcd")
    assert operator.proc.poll() is None


@pytest.mark.parametrize("phase", ["Optimizing", "Deploying", "Ready"])
def test_operator_killed_in_each_phase(cluster, operator, namespace, phase):
    name = f"killed-{phase.lower()}"
    node = f"faults-widget-{namespace}"
    apply_model(cluster, namespace, name, hardware="faults-cpu" if phase == "Optimizing" else "faults-widget")
    try:
        if phase == "Optimizing":
            wait_phase(cluster, namespace, name, "Optimizing")
        else:
            wait_phase(cluster, namespace, name, "Deploying")  # serving pods wait for a widget
            if phase == "Ready":
                cluster.kubectl("apply", "-f", "-", input=json.dumps(widget_node(node)))
                wait_phase(cluster, namespace, name, "Ready")
        before = get(cluster, namespace, "inferencemodel", name)
        operator.kill()
        if phase != "Ready":
            # The world moves on while no operator runs: the Job finishes, or the pods find room.
            if phase == "Deploying":
                cluster.kubectl("apply", "-f", "-", input=json.dumps(widget_node(node)))
            poll("the Job to complete without the operator", lambda: names(cluster, namespace, "jobs", name) and get(cluster, namespace, "jobs", names(cluster, namespace, "jobs", name)[0]).get("status", {}).get("succeeded"))
        operator.start()
        model = assert_converged(cluster, operator, namespace, name)
        # No lost status: what the model said before the kill is still said (or moved forward).
        for key in ("jobName", "selector"):
            assert model["status"][key] == before["status"][key]
        for cond in before["status"]["conditions"]:
            if cond["type"] == "HardwareClassResolved":
                assert condition(model, cond["type"])["lastTransitionTime"] == cond["lastTransitionTime"]
    finally:
        cluster.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false")


def test_failing_job_pod_is_retried_with_backoff(cluster, operator, namespace):
    apply_model(cluster, namespace, "flaky")
    model = wait_phase(cluster, namespace, "flaky", "Optimizing")
    job = model["status"]["jobName"]

    def running_pod() -> str | None:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"job-name={job}", "-o", "json").stdout)["items"]
        return next((p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"), None)

    pod = poll("the Job's pod to run", running_pod, interval=0.05)
    # What a kubelet reports when the optimizer exits non-zero.
    failed = {
        "status": {
            "phase": "Failed",
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodFailed"}],
            "containerStatuses": [
                {
                    "name": "optimize", "image": "optimizer", "imageID": "", "ready": False, "restartCount": 0, "started": False,
                    "state": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"}},
                }
            ],
        }
    }
    cluster.kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(failed))
    poll("the Job to count the failure", lambda: (get(cluster, namespace, "jobs", job).get("status", {}).get("failed") or 0) >= 1)
    during = get(cluster, namespace, "inferencemodel", "flaky")
    assert during["status"]["phase"] == "Optimizing", "one failed pod within backoffLimit is not a failed model"
    assert condition(during, "Optimized")["status"] == "Unknown"
    # The Job controller retries after its backoff (10 s); the second pod succeeds.
    model = assert_converged(cluster, operator, namespace, "flaky", timeout=120)
    assert model["status"]["jobName"] == job
    job_status = get(cluster, namespace, "jobs", job)["status"]
    assert job_status["failed"] == 1 and job_status["succeeded"] == 1


def test_hardware_class_deleted_while_in_use(cluster, operator, namespace):
    hc = json.loads(json.dumps(CPU_CLASS))
    hc["metadata"]["name"] = f"faults-vanishing-{namespace}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(hc))
    try:
        apply_model(cluster, namespace, "orphan", hardware=hc["metadata"]["name"])
        ready = assert_converged(cluster, operator, namespace, "orphan")
        deployment = get(cluster, namespace, "deployment", "orphan-triton")

        cluster.kubectl("delete", "hardwareclass", hc["metadata"]["name"])
        model = poll(
            "HardwareClassResolved=False",
            lambda: (m := get(cluster, namespace, "inferencemodel", "orphan"))
            and condition(m, "HardwareClassResolved")["status"] == "False" and m,
        )
        assert condition(model, "HardwareClassResolved")["reason"] == "HardwareClassNotFound"
        # It keeps serving what it has: the Deployment is untouched and still ready, the
        # status keeps where and what it serves.
        assert condition(model, "Ready")["status"] == "True"
        for key in ("endpoint", "artifactUri", "jobName", "readyReplicas"):
            assert model["status"][key] == ready["status"][key], key
        still = get(cluster, namespace, "deployment", "orphan-triton")
        assert still["metadata"]["generation"] == deployment["metadata"]["generation"]
        assert still["status"]["readyReplicas"] == 1
        assert names(cluster, namespace, "jobs", "orphan") == [ready["status"]["jobName"]]

        cluster.kubectl("apply", "-f", "-", input=json.dumps(hc))
        back = assert_converged(cluster, operator, namespace, "orphan")
        assert back["status"]["jobName"] == ready["status"]["jobName"], "the same class brings back the same Job, not a new one"
        assert get(cluster, namespace, "deployment", "orphan-triton")["metadata"]["generation"] == deployment["metadata"]["generation"]
    finally:
        cluster.kubectl("delete", "hardwareclass", hc["metadata"]["name"], "--ignore-not-found")

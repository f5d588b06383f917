"""High availability: two operator replicas in Kopf peering, as the chart runs them with
replicaCount=2 (the chart's peering CRD and RBAC, `--peering=NAME`, random priorities).
Exactly one acts; when it is killed, the other takes over and converges what changed."""

from __future__ import annotations

import json
import re
import time

import pytest

from inferops.devcluster.cluster import free_port

from operator_harness import OPERATOR_NAMESPACE, REPO, OperatorProcess, chart_rbac
from test_operator import model_manifest, names, poll, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PEERING = "inferops-ha"
HA_CLASS = {
    "apiVersion": "inferops.dev/v1alpha1",
    "kind": "HardwareClass",
    "metadata": {"name": "ha-cpu"},
    "spec": {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}, "resources": {"requests": {"cpu": "1"}}},
}


def priority_of(replica: OperatorProcess) -> int:
    found = re.findall(rf"peering '{PEERING}' with priority (\d+)", replica.log.read_text())
    assert found, replica.tail()
    return int(found[-1])


def streaming(replica: OperatorProcess) -> bool:
    """Whether the replica's model watch runs: Kopf starts every watch paused until the peering
    is resolved, then resumes it on the replica that acts and keeps it paused on the others."""
    since_start = replica.log.read_text().split("===== start")[-1]
    marks = re.findall(r"(Pausing|Resuming) the watch-stream for inferencemodels", since_start)
    return bool(marks) and marks[-1] == "Resuming"


def handled(replica: OperatorProcess, namespace: str, model: str) -> int:
    return replica.log.read_text().count(f"[{namespace}/{model}] Handler 'model_event' is invoked")





@pytest.fixture(scope="module")
def replicas(cluster, operator, tmp_path_factory):
    """Two peering replicas in place of the session's standalone operator, restored afterwards."""
    cluster.kubectl("apply", "-f", str(REPO / "charts" / "inferops" / "crds" / "clusterkopfpeerings.kopf.dev.yaml"))
    cluster.kubectl("wait", "crd/clusterkopfpeerings.kopf.dev", "--for=condition=Established", "--timeout=30s")
    for obj in chart_rbac(OPERATOR_NAMESPACE, "replicaCount=2"):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}}))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(HA_CLASS))
    operator.stop()
    workdir = tmp_path_factory.mktemp("ha")
    pair = []
    try:
        for i in range(2):
            env = dict(operator.env, INFEROPS_METRICS_PORT="0", INFEROPS_WEBHOOK=f"local:{free_port()}", POD_ID=f"replica-{i}")
            replica = OperatorProcess(cluster, workdir, env, args=(f"--peering={PEERING}",), log_name=f"replica-{i}.log")
            replica.user = operator.user
            replica.start()
            pair.append(replica)
        yield pair
    finally:
        for replica in pair:
            replica.stop()
        cluster.kubectl("delete", "clusterkopfpeering", PEERING, "--ignore-not-found")
        cluster.kubectl("delete", "hardwareclass", "ha-cpu", "--ignore-not-found")
        for obj in chart_rbac(OPERATOR_NAMESPACE):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        operator.start()


def active_and_standby(pair: list[OperatorProcess]) -> tuple[OperatorProcess, OperatorProcess]:
    live = [r for r in pair if r.proc and r.proc.poll() is None]
    assert len(live) == 2
    first, second = sorted(live, key=priority_of, reverse=True)
    assert priority_of(first) != priority_of(second)
    return first, second


def test_exactly_one_replica_acts(cluster, namespace, replicas):
    active, standby = active_and_standby(replicas)
    poll("the higher priority to stream", lambda: streaming(active))
    assert not streaming(standby)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("shared", hardware="ha-cpu"))
    model = wait_phase(cluster, namespace, "shared", "Ready", timeout=90)
    assert handled(active, namespace, "shared") >= 1
    assert handled(standby, namespace, "shared") == 0, "the paused replica never reconciles"
    assert streaming(active) and not streaming(standby)
    assert names(cluster, namespace, "jobs", "shared") == [model["status"]["jobName"]]
    assert names(cluster, namespace, "deployments", "shared") == ["shared-triton"]
    peers = json.loads(cluster.kubectl("get", "clusterkopfpeering", PEERING, "-o", "json").stdout)["status"]
    assert {"replica-0", "replica-1"} <= set(peers)


def test_failover_when_the_active_replica_dies(cluster, namespace, replicas):
    active, standby = active_and_standby(replicas)
    active.kill()  # SIGKILL: it cannot leave the peering; its keep-alive must expire
    killed = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("after", hardware="ha-cpu"))
    poll("the standby to resume", lambda: "Resuming operations after the pause" in standby.log.read_text(), timeout=60)
    resumed = time.monotonic() - killed
    model = wait_phase(cluster, namespace, "after", "Ready", timeout=90)
    converged = time.monotonic() - killed
    print(f"failover: standby resumed {resumed:.1f}s after the kill; new model Ready {converged:.1f}s after it")
    assert handled(standby, namespace, "after") >= 1
    assert names(cluster, namespace, "jobs", "after") == [model["status"]["jobName"]]
    assert names(cluster, namespace, "deployments", "after") == ["after-triton"]
    assert streaming(standby)
    # The killed replica comes back and joins again (with a new random priority): still
    # exactly one streams, the one with the higher priority.
    active.start()
    new_active, new_standby = active_and_standby(replicas)
    poll("exactly the higher priority to stream", lambda: streaming(new_active) and not streaming(new_standby))


def test_only_the_acting_replica_resyncs(cluster, replicas):
    """The periodic resync is our own task, which Kopf's pause does not stop: it asks the
    peering whether this replica leads, and only the acting one does."""
    import asyncio

    import kopf
    import kubernetes

    from inferops import handlers
    from inferops.kube import Kube

    active, standby = active_and_standby(replicas)
    poll("the peering to settle", lambda: streaming(active) and not streaming(standby))
    kube = Kube(kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    verdicts = {}
    for replica in (active, standby):
        settings = kopf.OperatorSettings()
        settings.peering.name, settings.peering.priority = PEERING, priority_of(replica)
        verdicts[replica.env["POD_ID"]] = asyncio.run(handlers._leading(kube, settings))
    assert verdicts == {active.env["POD_ID"]: True, standby.env["POD_ID"]: False}

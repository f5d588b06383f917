"""Security on the real API server: the generated pods pass Pod Security "restricted", storage
Secrets are referenced and never copied into ConfigMaps, status or the operator's log, the
operator cannot read them, and the API refuses what the schema forbids."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from test_operator import get, model_manifest, names, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SECURITY_CLASS = {
    "apiVersion": "inferops.dev/v1alpha1",
    "kind": "HardwareClass",
    "metadata": {"name": "security-cpu"},
    "spec": {"instanceKind": "KIND_CPU", "nodeSelector": {"inferops.dev/pool": "cpu"}, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
}


@pytest.fixture(scope="module", autouse=True)
def security_class(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=json.dumps(SECURITY_CLASS))
    yield
    cluster.kubectl("delete", "hardwareclass", "security-cpu", "--ignore-not-found")


def events_of(cluster, namespace: str, kind: str) -> list[dict]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"]["kind"] == kind]


def test_generated_pods_pass_pod_security_restricted(cluster, namespace):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")
    # The label is live: a pod that is not restricted is refused here.
    refused = cluster.kubectl("run", "privileged", "-n", namespace, "--image=busybox", "--privileged", check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=model_manifest("restricted", hardware="security-cpu"))
    model = wait_phase(cluster, namespace, "restricted", "Ready", timeout=90)
    assert model["status"]["readyReplicas"] == 1
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "inferops.dev/model=restricted", "-o", "json").stdout)["items"]
    owners = sorted({p["metadata"]["ownerReferences"][0]["kind"] for p in pods})
    assert owners == ["Job", "ReplicaSet"], owners
    for kind in ("Job", "ReplicaSet"):
        failed = [e["message"] for e in events_of(cluster, namespace, kind) if e["reason"] == "FailedCreate"]
        assert failed == [], failed


def test_storage_secret_is_referenced_never_copied(cluster, namespace, operator):
    marker = f"s3cr3t-{uuid.uuid4().hex}"
    cluster.kubectl(
        "create", "secret", "generic", "model-store", "-n", namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID=AKIA{marker}", f"--from-literal=AWS_SECRET_ACCESS_KEY={marker}",
    )
    manifest = yaml.safe_load(model_manifest("private", hardware="security-cpu"))
    manifest["spec"]["model"]["credentialsSecret"] = "model-store"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    model = wait_phase(cluster, namespace, "private", "Ready", timeout=90)

    job = get(cluster, namespace, "job", model["status"]["jobName"])
    # The model's Secret reads the model in the Job, under its own prefix (the platform's AWS_* stay the platform's).
    assert {"prefix": "INFEROPS_SOURCE_", "secretRef": {"name": "model-store"}} in job["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    pod = get(cluster, namespace, "deployment", "private-triton")["spec"]["template"]["spec"]
    readers = [c for c in pod.get("initContainers", []) + pod["containers"] if "model-store" in json.dumps(c.get("envFrom") or [])]
    assert readers == [], "the pull reads only the artifact, with the platform's credentials"

    # The value itself appears nowhere the operator writes or logs.
    owned = {kind: names(cluster, namespace, kind, "private") for kind in ("configmaps", "jobs", "deployments", "services")}
    assert owned["configmaps"]
    for kind, objs in owned.items():
        for name in objs:
            assert marker not in cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout, f"{kind}/{name}"
    all_configmaps = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout
    assert marker not in all_configmaps
    assert marker not in json.dumps(get(cluster, namespace, "inferencemodel", "private"))
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert marker not in events
    assert marker not in operator.log.read_text()

    # And the operator could not have read it: its ServiceAccount has no access to Secrets.
    for verb in ("get", "list", "watch"):
        can = cluster.kubectl("auth", "can-i", verb, "secrets", "-n", namespace, f"--as={operator.user}", check=False)
        assert can.stdout.strip() == "no", f"{verb} secrets: {can.stdout}"
    reads = [
        w for w in cluster.audit_requests(user=operator.user)
        if (w.get("objectRef") or {}).get("resource") == "secrets"
    ] if hasattr(cluster, "audit_requests") else []
    assert reads == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "hardware", "class"), 'cpu"\nkind: Secret', "spec.hardware.class"),
        (("spec", "model", "uri"), "s3://bucket/model.onnx\n---\nkind: Secret", "spec.model.uri"),
        (("spec", "model", "credentialsSecret"), "creds{{ 7*7 }}", "spec.model.credentialsSecret"),
        (("spec", "serving", "tritonImage"), "nvcr.io/triton' --privileged", "spec.serving.tritonImage"),
        (("spec", "optimization", "recipe"), "prune\n- --evil", "spec.optimization.recipe"),
        (("spec", "model", "uri"), "s3://" + "a" * 5000, "spec.model.uri"),
    ],
    ids=["class-newline", "uri-document", "secret-template", "image-quote", "recipe-newline", "uri-huge"],
)
def test_api_refuses_what_the_schema_forbids(cluster, namespace, path, value, message):
    manifest = yaml.safe_load(model_manifest("hostile", hardware="security-cpu"))
    node = manifest
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert cluster.kubectl("get", "im", "-n", namespace, "-o", "name").stdout.strip() == ""

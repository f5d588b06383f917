"""Least privilege, asked of the real API server with `kubectl auth can-i` (issue 14, point 5):
with watchNamespaces the chart binds what the operator does to models in those namespaces
only; the webhook configurations are patched by name only; nothing touches Secrets."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from .conftest import CHART, KUBE_VERSION, apply_crds, run_helm

pytestmark = pytest.mark.cluster

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding"}


@pytest.fixture(scope="module")
def scoped(cluster, helm):
    """The chart's ServiceAccount and RBAC, watching two namespaces, webhook on."""
    apply_crds(cluster)  # can-i answers "no" for a resource the server does not serve
    suffix = uuid.uuid4().hex[:6]
    release, ops, watched, other = f"rb{suffix}", f"ops-{suffix}", [f"ml-a-{suffix}", f"ml-b-{suffix}"], f"other-{suffix}"
    for ns in (ops, *watched, other):
        cluster.kubectl("create", "namespace", ns)
    rendered = run_helm(
        helm, "template", release, str(CHART), "--namespace", ops, "--kube-version", KUBE_VERSION,
        "--set", f"watchNamespaces={{{','.join(watched)}}}", "--set", "webhook.enabled=true", "--set", "webhook.certSecret=tls",
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] in RBAC_KINDS]
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    try:
        yield {"user": f"system:serviceaccount:{ops}:{release}-inferops", "watched": watched, "other": other, "ops": ops}
    finally:
        for obj in objects:
            if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found", check=False)
        for ns in (ops, *watched, other):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def can(cluster, user: str, verb: str, resource: str, *where: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", *where, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


NAMESPACED = [
    ("delete", "jobs.batch"), ("create", "jobs.batch"), ("watch", "jobs.batch"), ("patch", "deployments.apps"),
    ("create", "configmaps"), ("patch", "services"), ("list", "pods"), ("delete", "horizontalpodautoscalers.autoscaling"),
    ("list", "inferencemodels.inferops.dev"), ("create", "events"),
]


@pytest.mark.parametrize(("verb", "resource"), NAMESPACED, ids=[f"{v}-{r}" for v, r in NAMESPACED])
def test_model_work_only_in_watched_namespaces(cluster, scoped, verb, resource):
    user = scoped["user"]
    assert all(can(cluster, user, verb, resource, "-n", ns) for ns in scoped["watched"])
    assert not can(cluster, user, verb, resource, "-n", scoped["other"]), f"{verb} {resource} outside the watched namespaces"
    assert not can(cluster, user, verb, resource, "--all-namespaces"), f"{verb} {resource} cluster-wide"
    assert not can(cluster, user, verb, resource, "-n", scoped["ops"])


def test_model_status_is_patched_only_in_watched_namespaces(cluster, scoped):
    user = scoped["user"]
    where = ["--subresource=status"]
    assert can(cluster, user, "patch", "inferencemodels.inferops.dev", *where, "-n", scoped["watched"][0])
    assert not can(cluster, user, "patch", "inferencemodels.inferops.dev", *where, "-n", scoped["other"])


@pytest.mark.parametrize(
    ("verb", "resource"),
    [("list", "hardwareclasses.inferops.dev"), ("watch", "hardwareclasses.inferops.dev"), ("watch", "namespaces"), ("get", "namespaces"),
     ("list", "customresourcedefinitions.apiextensions.k8s.io")],
)
def test_cluster_scoped_reads_it_truly_needs(cluster, scoped, verb, resource):
    assert can(cluster, scoped["user"], verb, resource)


def test_webhook_configurations_are_patched_by_name_only(cluster, scoped):
    user = scoped["user"]
    for kind in ("validatingwebhookconfigurations.admissionregistration.k8s.io", "mutatingwebhookconfigurations.admissionregistration.k8s.io"):
        assert can(cluster, user, "patch", f"{kind}/validate.inferops.dev")
        assert can(cluster, user, "get", f"{kind}/validate.inferops.dev")
        assert not can(cluster, user, "patch", f"{kind}/someone-elses-webhook"), "another webhook configuration"
        assert not can(cluster, user, "patch", kind), "any webhook configuration"
        assert not can(cluster, user, "delete", f"{kind}/validate.inferops.dev")
        assert not can(cluster, user, "list", kind)


@pytest.mark.parametrize(("verb", "resource"), [("get", "secrets"), ("list", "secrets"), ("update", "namespaces"), ("patch", "hardwareclasses.inferops.dev")])
def test_nothing_beyond(cluster, scoped, verb, resource):
    user = scoped["user"]
    assert not can(cluster, user, verb, resource, "--all-namespaces")
    assert not can(cluster, user, verb, resource, "-n", scoped["watched"][0])

"""`helm install` onto the real control plane: CRDs, RBAC, a running operator pod, uninstall.

This module sorts before the dry-run one, so on a fresh cluster the CRDs come from Helm."""

from __future__ import annotations

import json
import uuid

import pytest

from .conftest import CHART, run_helm
from .test_render import NAMESPACE_RULES, OPERATOR_RULES

pytestmark = pytest.mark.cluster

RESTRICTED = ("pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted")


@pytest.fixture(scope="module")
def release(cluster, helm):
    """The chart installed into a fresh namespace that enforces Pod Security "restricted"."""
    suffix = uuid.uuid4().hex[:6]
    namespace, name = f"inferops-{suffix}", f"r{suffix}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, *RESTRICTED)
    crds_before = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    result = run_helm(helm, "install", name, str(CHART), "--namespace", namespace, "--wait", "--timeout=120s", kubeconfig=cluster.kubeconfig, timeout=180)
    assert result.returncode == 0, result.stderr
    try:
        yield {"namespace": namespace, "name": name, "fullname": f"{name}-inferops", "crds_before": crds_before, "notes": result.stdout}
    finally:
        run_helm(helm, "uninstall", name, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _get(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def test_install_creates_crds_rbac_and_a_running_operator(cluster, release):
    ns, fullname = release["namespace"], release["fullname"]
    for crd in ("inferencemodels.inferops.dev", "hardwareclasses.inferops.dev"):
        conditions = {c["type"]: c["status"] for c in _get(cluster, "crd", crd)["status"]["conditions"]}
        assert conditions["Established"] == "True"
    binding = _get(cluster, "clusterrolebinding", fullname)
    assert binding["roleRef"]["name"] == fullname
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": ns}]
    assert _get(cluster, "serviceaccount", fullname, "-n", ns)["metadata"]["name"] == fullname
    deployment = _get(cluster, "deployment", fullname, "-n", ns)
    assert deployment["status"]["availableReplicas"] == 1
    (pod,) = _get(cluster, "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={release['name']}")["items"]
    assert pod["status"]["phase"] == "Running"  # admitted under enforce=restricted
    assert pod["spec"]["nodeName"].startswith("cpu-node-")
    assert pod["spec"]["serviceAccountName"] == fullname
    assert f"installed as {fullname} in namespace {ns}" in release["notes"]


def test_helm_installed_the_crds(cluster, release):
    if "customresourcedefinition.apiextensions.k8s.io/inferencemodels.inferops.dev" in release["crds_before"]:
        pytest.skip("the CRDs existed before this install; Helm leaves existing CRDs alone")
    for crd in ("inferencemodels.inferops.dev", "hardwareclasses.inferops.dev"):
        managers = {m["manager"] for m in _get(cluster, "crd", crd, "--show-managed-fields")["metadata"]["managedFields"]}
        assert "helm" in managers, managers


def _can(cluster, user: str, verb: str, resource: str, *extra: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", *extra, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def _resource(group: str, resource: str) -> tuple[str, ...]:
    name, _, sub = resource.partition("/")
    qualified = f"{name}.{group}" if group else name
    return (qualified, f"--subresource={sub}") if sub else (qualified,)


def test_service_account_can_make_every_call_the_operator_makes(cluster, release):
    user = f"system:serviceaccount:{release['namespace']}:{release['fullname']}"
    denied = [
        (group, resource, verb)
        for group, resource, verb in sorted(OPERATOR_RULES | NAMESPACE_RULES)
        if not _can(cluster, user, verb, *_resource(group, resource), "--all-namespaces")
    ]
    assert denied == []


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("delete", "inferencemodels.inferops.dev"),
        ("update", "inferencemodels.inferops.dev"),
        ("patch", "inferencemodels.inferops.dev"),
        ("create", "inferencemodels.inferops.dev"),
        ("update", "inferencemodels.inferops.dev/status"),
        ("create", "hardwareclasses.inferops.dev"),
        ("delete", "deployments.apps"),
        ("update", "deployments.apps"),
        ("delete", "services"),
        ("create", "pods"),
        ("get", "pods"),  # list by the Job's label is all it needs
        ("watch", "pods"),
        ("get", "pods/log"),
        ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("list", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ],
)
def test_service_account_cannot_go_beyond(cluster, release, verb, resource):
    user = f"system:serviceaccount:{release['namespace']}:{release['fullname']}"
    name, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    assert not _can(cluster, user, verb, name, *extra, "--all-namespaces")


def test_service_account_token_lists_models_but_not_secrets(cluster, release, tmp_path):
    ns, sa = release["namespace"], release["fullname"]
    token = cluster.kubectl("create", "token", sa, "-n", ns, "--duration=10m").stdout.strip()
    operator = cluster.with_token(token, tmp_path / "operator.kubeconfig")
    assert operator.kubectl("get", "inferencemodels", "--all-namespaces", "-o", "name").returncode == 0
    assert operator.kubectl("get", "hardwareclasses", "-o", "name").returncode == 0
    secrets = operator.kubectl("get", "secrets", "-n", ns, check=False)
    assert secrets.returncode != 0 and "Forbidden" in secrets.stderr


def test_uninstall_removes_the_release_but_keeps_the_crds(cluster, helm, release):
    ns, fullname = release["namespace"], release["fullname"]
    result = run_helm(helm, "uninstall", release["name"], "--namespace", ns, "--wait", kubeconfig=cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    for kind, extra in (("clusterrole", ()), ("clusterrolebinding", ()), ("deployment", ("-n", ns)), ("serviceaccount", ("-n", ns))):
        gone = cluster.kubectl("get", kind, fullname, *extra, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, f"{kind} {fullname} survived uninstall"
    # Helm never deletes what crds/ installed: models in other namespaces keep their data.
    assert cluster.kubectl("get", "crd", "inferencemodels.inferops.dev", check=False).returncode == 0


def test_notes_tell_how_to_finish_with_the_webhook(cluster, helm, namespace):
    result = run_helm(
        helm, "install", "notes", str(CHART), "--namespace", namespace, "--dry-run=server",
        "--set", "webhook.enabled=true", "--set", "webhook.certSecret=inferops-webhook-tls", "--set", "watchNamespaces={ml}",
        kubeconfig=cluster.kubeconfig,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "reconciles InferenceModels in namespaces ml." in notes
    assert "kubectl delete validatingwebhookconfiguration,mutatingwebhookconfiguration validate.inferops.dev" in notes
    assert "No HardwareClass was created." in notes

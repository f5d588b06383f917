"""The chart renders, lints clean, and its values schema refuses bad values (no cluster needed)."""

from __future__ import annotations

import json

import pytest

from inferops.api.recipes import RECIPES

from .conftest import CHART, KUBE_VERSION, render, run_helm, set_args

ALL_ON = {
    "webhook.enabled": "true",
    "webhook.certSecret": "inferops-webhook-tls",
    "hardwareClasses.create": "true",
    "watchNamespaces": "{ml-a,ml-b}",
    "operator.storageSecret": "artifact-store",
}


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def container(docs: list[dict]) -> dict:
    (deployment,) = by_kind(docs, "Deployment")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(docs: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"] if "value" in e}


def _role_rules(role: dict) -> set[tuple[str, ...]]:
    """(group, resource, verb), or (group, resource, verb, name) for a grant limited by resourceNames."""
    return {
        (g, r, v, *([n] if n else []))
        for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        for n in (rule.get("resourceNames") or [None])
    }


def _bound(docs: list[dict], binding: dict) -> set[tuple[str, ...]]:
    assert binding["roleRef"]["kind"] == "ClusterRole"
    (role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == binding["roleRef"]["name"]]
    return _role_rules(role)


def rules(docs: list[dict]) -> set[tuple[str, ...]]:
    """What the ServiceAccount may do cluster-wide: the ClusterRoles its ClusterRoleBindings bind."""
    return {g for b in by_kind(docs, "ClusterRoleBinding") for g in _bound(docs, b)}


def namespaced_rules(docs: list[dict]) -> dict[str, set[tuple[str, ...]]]:
    """What it may do in each namespace a RoleBinding names, beyond the cluster-wide grants."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for b in by_kind(docs, "RoleBinding"):
        out.setdefault(b["metadata"]["namespace"], set()).update(_bound(docs, b))
    return out


def _grants(group: str, resources: list[str], verbs: list[str]) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources for v in verbs}


# The calls the operator makes, and nothing more: cluster-scoped reads, and what it does in a
# model's namespace (cluster-wide without watchNamespaces, else in those namespaces only).
CLUSTER_READS = _grants("inferops.dev", ["hardwareclasses"], ["get", "list", "watch"]) | _grants(
    "apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"]
)
MODEL_RULES = (
    _grants("inferops.dev", ["inferencemodels"], ["get", "list", "watch"])
    | _grants("inferops.dev", ["inferencemodels/status"], ["patch"])
    | _grants("batch", ["jobs"], ["get", "list", "watch", "create", "patch", "delete"])
    | _grants("apps", ["deployments"], ["get", "list", "watch", "create", "patch"])
    | _grants("autoscaling", ["horizontalpodautoscalers"], ["get", "list", "watch", "create", "patch", "delete"])
    | _grants("", ["services", "configmaps"], ["get", "create", "patch"])
    | _grants("", ["pods"], ["list"])
    | _grants("", ["events"], ["create", "patch"])
    | _grants("events.k8s.io", ["events"], ["create", "patch"])
)
OPERATOR_RULES = CLUSTER_READS | MODEL_RULES
# The HardwareClasses' namespaceSelector needs the namespaces' labels (watched), in every mode.
NAMESPACE_RULES = _grants("", ["namespaces"], ["get", "list", "watch"])
# Kopf runs a manager for both webhook configuration kinds named by settings.admission.managed:
# it creates them (RBAC cannot limit create by name), then reads and patches them by name only.
WEBHOOK_KINDS = ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]
WEBHOOK_RULES = _grants("admissionregistration.k8s.io", WEBHOOK_KINDS, ["create"]) | {
    ("admissionregistration.k8s.io", r, v, "validate.inferops.dev") for r in WEBHOOK_KINDS for v in ("get", "patch")
}


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "all-on"])
def test_lint_is_clean(helm, values):
    result = run_helm(helm, "lint", "--strict", str(CHART), *set_args(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_defaults_render_operator_deployment(helm):
    docs = render(helm)
    assert sorted(d["kind"] for d in docs) == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    main = container(docs)
    assert main["image"] == "ghcr.io/inferops/operator:0.1.0"
    assert main["args"] == ["operator", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=full"]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080} in main["ports"]
    assert env_of(docs) == {
        "INFEROPS_ARTIFACT_ROOT": "s3://inferops-artifacts",
        "INFEROPS_OPTIMIZER_IMAGE": "ghcr.io/inferops/optimizer:0.1.0",
        "INFEROPS_OPTIMIZER_IMAGES": '{"tensorflow":"ghcr.io/inferops/optimizer-tensorflow:0.1.0","torch":"ghcr.io/inferops/optimizer-torch:0.1.0"}',
        "INFEROPS_TRITON_IMAGE": "nvcr.io/nvidia/tritonserver:25.10-py3",
        "INFEROPS_JOB_BACKOFF_LIMIT": "2",
        "INFEROPS_SMOKE_TEST": "true",
        "INFEROPS_ALLOW_IMAGE_OVERRIDES": "false",
        "INFEROPS_TUNING_MAX_MINUTES": "10",
        "INFEROPS_WORKER_LIMIT": "128",
        "INFEROPS_WATCH_SERVER_TIMEOUT": "300",
        "INFEROPS_RESYNC_SECONDS": "300",
    }
    assert main["resources"]["limits"]["memory"] == "512Mi"
    assert [v["name"] for v in main["volumeMounts"]] == ["tmp"]  # no storage Secret: nothing mounted
    # Kopf's identity even for one replica: without it Kopf looks the UID up in /etc/passwd.
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in main["env"]


def test_node_selector_and_tolerations_place_the_operator(helm):
    docs = render(helm, {"nodeSelector.inferops\\.dev/node": "real", "tolerations[0].key": "dedicated", "tolerations[0].operator": "Exists"})
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"inferops.dev/node": "real"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]


def test_deployment_meets_restricted_pod_security(helm):
    (deployment,) = by_kind(render(helm), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_rbac_is_exactly_what_the_operator_calls(helm):
    assert rules(render(helm)) == OPERATOR_RULES | NAMESPACE_RULES


def test_options_render_webhook_namespaces_and_classes(helm):
    docs = render(helm, ALL_ON, namespace="ops")
    # Named namespaces: cluster-wide only the cluster-scoped reads and the webhook's grants; what
    # it does to models and their children, in those namespaces alone (RoleBindings).
    assert rules(docs) == CLUSTER_READS | NAMESPACE_RULES | WEBHOOK_RULES
    assert namespaced_rules(docs) == {"ml-a": MODEL_RULES, "ml-b": MODEL_RULES}
    main = container(docs)
    assert main["args"][-2:] == ["--namespace=ml-a", "--namespace=ml-b"]
    env = env_of(docs)
    assert env["INFEROPS_WEBHOOK"] == "service:inferops-webhook.ops:9443"
    assert env["INFEROPS_STORAGE_SECRET"] == "artifact-store"
    (service,) = by_kind(docs, "Service")
    assert service["metadata"]["name"] == "inferops-webhook"
    assert service["spec"]["ports"][0]["port"] == 9443
    (deployment,) = by_kind(docs, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-cert"]["secret"]["secretName"] == "inferops-webhook-tls"
    # The operator reads report.json with the platform's keys: the Secret as read-only files.
    assert env["INFEROPS_CREDENTIALS_DIR"] == "/etc/inferops/storage"
    assert volumes["storage-credentials"]["secret"] == {"secretName": "artifact-store", "defaultMode": 0o440}
    assert {"name": "storage-credentials", "mountPath": "/etc/inferops/storage", "readOnly": True} in main["volumeMounts"]
    assert not any("envFrom" in c for c in deployment["spec"]["template"]["spec"]["containers"])
    assert {h["metadata"]["name"] for h in by_kind(docs, "HardwareClass")} == {"cpu", "nvidia-l4", "nvidia-a100"}
    classes = {h["metadata"]["name"]: h["spec"] for h in by_kind(docs, "HardwareClass")}
    assert all("namespaceSelector" not in c for c in classes.values()), "out of the box every namespace may use every class"


PEERING_RULES = _grants("kopf.dev", ["clusterkopfpeerings"], ["get", "list", "watch", "patch"])


def test_two_replicas_run_in_kopf_peering(helm):
    docs = render(helm, {"replicaCount": "2"}, namespace="ops")
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1" and peering["metadata"]["name"] == "inferops"
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    main = container(docs)
    assert main["args"][-1] == "--peering=inferops"
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in main["env"]
    assert rules(docs) == OPERATOR_RULES | NAMESPACE_RULES | PEERING_RULES
    lint = run_helm(helm, "lint", "--strict", str(CHART), "--set", "replicaCount=2")
    assert lint.returncode == 0 and "[WARNING]" not in lint.stdout, lint.stdout + lint.stderr


def test_one_replica_is_standalone_without_peering_grants(helm):
    docs = render(helm)
    assert by_kind(docs, "ClusterKopfPeering") == []
    assert not any(a.startswith("--peering") for a in container(docs)["args"])
    assert not rules(docs) & PEERING_RULES


def test_chart_ships_the_peering_crd():
    import yaml

    crd = yaml.safe_load((CHART / "crds" / "clusterkopfpeerings.kopf.dev.yaml").read_text())
    assert crd["spec"]["group"] == "kopf.dev" and crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == "ClusterKopfPeering"


def test_values_go_through_tojson(helm):
    tricky = 'x: "y"\n- z'
    docs = render(helm, {"extraEnv[0].name": "TRICKY", "extraEnv[0].value": tricky})
    assert env_of(docs)["TRICKY"] == tricky


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "-1"}, "/replicaCount"),
        ({"replicaCount": "6"}, "/replicaCount"),
        ({"replicas": "1"}, "'replicas' not allowed"),
        ({"operator.logLevel": "debug"}, "'logLevel' not allowed"),
        ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
        ({"image.digest": "latest"}, "/image/digest"),
        ({"operator.artifactRoot": "ftp://x"}, "/operator/artifactRoot"),
        ({"operator.workerLimit": "0"}, "/operator/workerLimit"),
        ({"watchNamespaces": "{Bad_NS}"}, "/watchNamespaces/0"),
        ({"webhook.enabled": "true"}, "/webhook/certSecret"),
        ({"resources.requests.cpu": "lots"}, "/resources/requests/cpu"),
        ({"hardwareClasses.classes.cpu.instanceKind": "KIND_TPU"}, "/hardwareClasses/classes/cpu/instanceKind"),
        ({"hardwareClasses.classes.cpu.allowedRecipes": "{warp-speed}"}, "/hardwareClasses/classes/cpu/allowedRecipes/0"),
    ],
)
def test_schema_refuses_bad_values(helm, values, complaint):
    result = run_helm(helm, "template", "inferops", str(CHART), "--kube-version", KUBE_VERSION, *set_args(values))
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr and complaint in result.stderr, result.stderr


def test_lint_refuses_bad_values(helm):
    result = run_helm(helm, "lint", "--strict", str(CHART), "--set", "replicaCount=-1")
    assert result.returncode != 0
    assert "/replicaCount" in result.stdout + result.stderr


def test_schema_recipes_match_the_api():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert tuple(schema["definitions"]["recipe"]["enum"]) == RECIPES


def test_image_allow_list_and_per_namespace_store_secret_reach_the_operator(helm):
    env = env_of(render(helm, {"images.allowed": "{registry.example/ml/*,ghcr.io/acme/opt:1}", "operator.tenantStorageSecret": "inferops-artifacts"}))
    assert env["INFEROPS_ALLOWED_IMAGES"] == "registry.example/ml/*,ghcr.io/acme/opt:1"
    assert env["INFEROPS_ALLOW_IMAGE_OVERRIDES"] == "false"
    assert env["INFEROPS_TENANT_STORAGE_SECRET"] == "inferops-artifacts"
    assert env_of(render(helm, {"images.allowOverrides": "true"}))["INFEROPS_ALLOW_IMAGE_OVERRIDES"] == "true"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"images.allowed": "{a b}"}, "/images/allowed/0"),
        ({"images.allowOverrides": "sometimes"}, "/images/allowOverrides"),
        ({"images.mirror": "x"}, "'mirror' not allowed"),
        ({"operator.tenantStorageSecret": "Bad_Name"}, "/operator/tenantStorageSecret"),
    ],
)
def test_schema_refuses_bad_tenant_values(helm, values, complaint):
    result = run_helm(helm, "template", "inferops", str(CHART), "--kube-version", KUBE_VERSION, *set_args(values))
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


def test_tuner_flags_reach_the_operator_as_a_json_list(helm):
    from inferops.reconcile.settings import _tune_args

    deployment = next(o for o in render(helm, {"operator.tuning.maxMinutes": "3", "operator.tuning.args": "{--duration,0.5}"}) if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["INFEROPS_TUNING_MAX_MINUTES"] == "3"
    assert _tune_args(env["INFEROPS_TUNE_ARGS"]) == ("--duration", "0.5")

"""Tenants kept apart, in the pure core (issue 14, points 1 and 4): images chosen by the admin,
the platform's keys never in a tenant's image, per-namespace store credentials, the artifact's
digest pinned in the pull step, and HardwareClass access by namespace."""

from __future__ import annotations

from dataclasses import replace

import pytest

from inferops.api.common import LabelSelector
from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.report import OptimizationReport
from inferops.reconcile.children import ModelRef, Revision, desired_job, desired_serving
from inferops.reconcile.plan import Observed, desired_state
from inferops.storage.digest import artifact_digest

from .test_reconcile import CPU, GPU, NOW, SETTINGS, cond, current_job_name, job, kinds, model, spec

PLATFORM = replace(SETTINGS, storage_secret="platform-s3")


def _pods(m, settings, hardware=GPU, report=None):
    rendered = desired_job(m, hardware, "abc", settings)
    (opt,) = rendered["spec"]["template"]["spec"]["containers"]
    serving, _ = desired_serving(m, hardware, Revision("s3://artifacts/ml/digits/abc", report), settings)
    pod = next(o for o in serving if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    (pull,) = pod["initContainers"]
    (triton,) = pod["containers"]
    return opt, pull, triton


# -- images: the admin's choice ------------------------------------------------------------


def test_a_tenant_image_is_refused_unless_the_admin_allows_it():
    tenant = model(spec(optimization={"image": "evil.example/steal:1"}, serving={"tritonImage": "evil.example/triton:1"}))
    plan = desired_state(tenant, Observed(GPU), PLATFORM, NOW)
    ready = cond(plan, "Ready")
    assert (ready["status"], ready["reason"], plan.status["phase"]) == ("False", "ImageNotAllowed", "Failed")
    assert "spec.optimization.image 'evil.example/steal:1'" in ready["message"] and "spec.serving.tritonImage" in ready["message"]
    assert kinds(plan) == [], "no Job, no Deployment runs a refused image"

    listed = replace(PLATFORM, allowed_images=("evil.example/*",))
    assert kinds(desired_state(tenant, Observed(GPU), listed, NOW)) == ["Job"]
    assert kinds(desired_state(tenant, Observed(GPU), replace(PLATFORM, allow_image_overrides=True), NOW)) == ["Job"]


def test_images_come_from_the_class_then_the_operator():
    classy = HardwareClassSpec.model_validate({**GPU.model_dump(by_alias=True), "optimizerImage": "reg.example/opt:2", "tritonImage": "reg.example/triton:2"})
    opt, pull, triton = _pods(model(), PLATFORM, classy)
    assert (opt["image"], pull["image"], triton["image"]) == ("reg.example/opt:2", "reg.example/opt:2", "reg.example/triton:2")
    opt, pull, triton = _pods(model(), PLATFORM)
    assert (opt["image"], triton["image"]) == (PLATFORM.optimizer_image, PLATFORM.triton_image)
    assert opt["envFrom"] == [{"secretRef": {"name": "platform-s3"}}], "the admin's image gets the platform's keys"


def test_an_unlisted_tenant_image_never_receives_the_platform_keys():
    tenant = model(spec(optimization={"image": "team.example/opt:1"}))
    opt, pull, _ = _pods(tenant, replace(PLATFORM, allow_image_overrides=True))
    assert (opt["image"], pull["image"]) == ("team.example/opt:1", "team.example/opt:1")
    assert opt.get("envFrom") in (None, []) and pull.get("envFrom") in (None, [])
    opt, pull, _ = _pods(tenant, replace(PLATFORM, allowed_images=("team.example/opt:*",)))
    assert opt["envFrom"] == [{"secretRef": {"name": "platform-s3"}}], "a listed image is the admin's choice"


def test_per_namespace_store_secret_replaces_the_platform_one_in_every_tenant_pod():
    settings = replace(PLATFORM, tenant_storage_secret="inferops-artifacts")
    for tenant in (model(), model(spec(optimization={"image": "team.example/opt:1"}))):
        opt, pull, _ = _pods(tenant, replace(settings, allow_image_overrides=True))
        assert opt["envFrom"] == [{"secretRef": {"name": "inferops-artifacts"}}]
        assert pull["envFrom"] == [{"secretRef": {"name": "inferops-artifacts"}}]
    opt, _, _ = _pods(model(spec(model={"credentialsSecret": "team-s3"})), settings)
    assert opt["envFrom"] == [{"secretRef": {"name": "inferops-artifacts"}}, {"prefix": "INFEROPS_SOURCE_", "secretRef": {"name": "team-s3"}}]


# -- the pull step pins what the operator read from the Job's report -----------------------


def test_pull_step_carries_the_digest_of_the_report_the_operator_read():
    report = OptimizationReport.model_validate(
        {"artifactUri": "s3://artifacts/ml/digits/abc", "modelName": "digits", "backend": "onnxruntime",
         "checksums": {"digits/1/model.onnx": "a" * 64, "digits/config.pbtxt": "b" * 64}}
    )
    _, pull, _ = _pods(model(), PLATFORM, report=report)
    assert pull["args"][pull["args"].index("--digest") + 1] == artifact_digest(report.checksums)
    assert artifact_digest(dict(reversed(list(report.checksums.items())))) == artifact_digest(report.checksums), "order does not matter"
    assert artifact_digest({**report.checksums, "digits/1/model.py": "c" * 64}) != artifact_digest(report.checksums)


# -- HardwareClass access by namespace -----------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, {"team": "b"}, True),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": ""}, False),
    ],
)
def test_label_selector_semantics(selector, labels, selected):
    assert LabelSelector.model_validate(selector).matches(labels) is selected


def _gpu_for(selector: dict) -> HardwareClassSpec:
    return HardwareClassSpec.model_validate({**GPU.model_dump(by_alias=True), "namespaceSelector": selector})


def test_a_namespace_the_class_does_not_select_gets_no_job_and_says_why():
    gpu = _gpu_for({"matchLabels": {"inferops.dev/gpu-access": "true"}})
    m = model()
    plan = desired_state(m, Observed(gpu, namespace_labels={"kubernetes.io/metadata.name": "ml"}), SETTINGS, NOW)
    resolved = cond(plan, "HardwareClassResolved")
    assert (resolved["status"], resolved["reason"]) == ("False", "HardwareClassForbidden")
    assert "namespace 'ml' may not use HardwareClass 'l4'" in resolved["message"]
    assert cond(plan, "Ready")["reason"] == "HardwareClassForbidden" and plan.status["phase"] == "Failed"
    assert kinds(plan) == []
    # Unknown labels fail closed; a labelled namespace proceeds.
    assert kinds(desired_state(m, Observed(gpu), SETTINGS, NOW)) == []
    allowed = desired_state(m, Observed(gpu, namespace_labels={"inferops.dev/gpu-access": "true"}), SETTINGS, NOW)
    assert kinds(allowed) == ["Job"] and cond(allowed, "HardwareClassResolved")["status"] == "True"
    by_name = _gpu_for({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ml"]}]})
    assert kinds(desired_state(m, Observed(by_name, namespace_labels={"kubernetes.io/metadata.name": "ml"}), SETTINGS, NOW)) == ["Job"]


def test_losing_access_keeps_what_serves_and_applies_nothing_new():
    gpu = _gpu_for({"matchLabels": {"team": "a"}})
    m = model()
    previous = {"artifactUri": "s3://artifacts/ml/digits/rev1", "endpoint": "http://digits-triton.ml.svc:8000"}
    plan = desired_state(m, Observed(gpu, jobs=[job(current_job_name(m), "Complete")], status=previous, namespace_labels={"team": "b"}), SETTINGS, NOW)
    assert kinds(plan) == [] and plan.status["endpoint"] == previous["endpoint"]


def test_a_class_without_selector_is_open_to_every_namespace():
    assert kinds(desired_state(model(spec(hardware={"class": "cpu"})), Observed(CPU, namespace_labels={}), SETTINGS, NOW)) == ["Job"]


# -- the I/O around it: namespaces from the watch's cache; the webhook's refusals ---------------


class _Kube:
    """Answers the reads of one reconcile from dicts and counts them."""

    def __init__(self, objects: dict[str, dict]):
        self.objects, self.reads = objects, []

    async def get(self, path):
        self.reads.append(path)
        return self.objects.get(path)

    async def get_hardware_class(self, name):
        return await self.get(f"class/{name}")

    async def get_owned(self, api_version, kind, namespace, name):
        return await self.get(f"{kind}/{namespace}/{name}")

    async def list_owned(self, api_version, kind, namespace, model):
        return []


def test_the_namespace_comes_from_the_watched_cache_not_a_get_per_reconcile():
    import asyncio

    from inferops.reconciler import Reconciler

    gpu = {"metadata": {"name": "l4"}, "spec": {**GPU.model_dump(by_alias=True), "namespaceSelector": {"matchLabels": {"team": "a"}}}}
    kube = _Kube({})
    reconciler = Reconciler(kube, SETTINGS)
    reconciler.cache.prime("HardwareClass", [gpu])
    reconciler.cache.prime("Namespace", [{"metadata": {"name": "ml", "labels": {"team": "a"}, "resourceVersion": "1"}}])
    observed = asyncio.run(reconciler._observe(model(), {}))
    assert observed.namespace_labels == {"kubernetes.io/metadata.name": "ml", "team": "a"}
    assert not [p for p in kube.reads if "namespaces" in p], kube.reads
    reconciler.cache.put("Namespace", {"metadata": {"name": "ml", "labels": {"team": "b"}, "resourceVersion": "2"}})
    assert asyncio.run(reconciler._observe(model(), {})).namespace_labels["team"] == "b", "a relabel, as the watch delivers it"


class _Memo:
    def __init__(self, settings, namespaces: dict[str, dict]):
        from inferops.cache import OwnedCache

        class _SyncKube:
            def _call(self, method, path):
                return namespaces.get(path.rsplit("/", 1)[-1])

        self.reconciler = type("R", (), {"settings": settings, "kube": _SyncKube(), "cache": OwnedCache()})()


def test_webhook_refuses_tenant_images_and_forbidden_classes():
    import kopf

    from inferops.handlers import validate_model

    gpu = {**GPU.model_dump(by_alias=True), "namespaceSelector": {"matchLabels": {"team": "a"}}}
    namespaces = {"ml": {"metadata": {"name": "ml", "labels": {"team": "b"}}}, "ok": {"metadata": {"name": "ok", "labels": {"team": "a"}}}}
    memo = _Memo(SETTINGS, namespaces)
    body = spec().model_dump(by_alias=True, exclude_none=True)
    with pytest.raises(kopf.AdmissionError, match="namespace 'ml' may not use HardwareClass 'l4'"):
        validate_model(spec=body, hardware_classes={"l4": [gpu]}, memo=memo, namespace="ml")
    validate_model(spec=body, hardware_classes={"l4": [gpu]}, memo=memo, namespace="ok")
    with pytest.raises(kopf.AdmissionError, match="namespace 'gone' may not use"):
        validate_model(spec=body, hardware_classes={"l4": [gpu]}, memo=memo, namespace="gone")  # unreadable: closed
    tenant = spec(optimization={"image": "evil.example/x:1"}).model_dump(by_alias=True, exclude_none=True)
    with pytest.raises(kopf.AdmissionError, match="not an allowed image"):
        validate_model(spec=tenant, hardware_classes={"l4": [gpu]}, memo=memo, namespace="ok")
    validate_model(spec=tenant, hardware_classes={"l4": [gpu]}, memo=_Memo(replace(SETTINGS, allowed_images=("evil.example/*",)), namespaces), namespace="ok")


# -- the Job's own record of what it published, against the stored report --------------------


def _pod(code: int, message: str, name: str = "optimize") -> dict:
    return {"status": {"containerStatuses": [{"name": name, "state": {"terminated": {"exitCode": code, "message": message}}}]}}


class _JobKube:
    def __init__(self, pods):
        self.pods, self.lists = pods, 0

    async def list_job_pods(self, namespace, job):
        self.lists += 1
        return self.pods


def test_a_report_rewritten_after_the_job_published_is_refused(monkeypatch):
    import asyncio

    import inferops.model_reads as reconciler_module
    from inferops.reconcile.tenancy import published_digest
    from inferops.reconciler import Reconciler

    checksums = {"digits/1/model.onnx": "a" * 64}
    stored = OptimizationReport.model_validate({"artifactUri": "s3://a/ml/d/h", "modelName": "digits", "backend": "onnxruntime", "checksums": checksums})
    monkeypatch.setattr(reconciler_module, "read_report", lambda uri, limit=0: stored)
    assert published_digest([_pod(0, "published " + artifact_digest(checksums))]) == artifact_digest(checksums)
    assert published_digest([_pod(3, "published sha256:x"), _pod(0, ""), _pod(0, "published sha256:y", name="sidecar")]) is None

    model_ref = ModelRef("d", "ml", "uid", 1, spec())

    def read(reconciler) -> tuple:
        got = asyncio.run(reconciler._report(model_ref, "s3://a/ml/d/h", True, "d-opt-h"))
        return got.report, got.error

    assert read(Reconciler(_JobKube([_pod(0, "published " + artifact_digest(checksums))]), SETTINGS)) == (stored, None)

    other = artifact_digest({"digits/1/model.onnx": "b" * 64})
    report, error = read(Reconciler(_JobKube([_pod(0, "published " + other)]), SETTINGS))
    assert report is None and error.startswith("ArtifactTampered") and other in error and "d-opt-h" in error

    # pods gone, or an optimizer image that says nothing
    assert read(Reconciler(_JobKube([]), SETTINGS)) == (stored, None)

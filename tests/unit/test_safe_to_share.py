"""The tracker's "Safe to share" defects, in the pure core: failures that say why, credentials
kept apart, name clashes refused, status replaced whole."""

from __future__ import annotations

from inferops.reconcile.children import desired_job
from inferops.reconcile.plan import JobTermination, Observed, desired_state
from inferops.reconciler import termination_of

from .test_reconcile import tuned, GPU, NOW, SETTINGS, committed, cond, current_job_name, job, model, spec


# -- (a) failures that say why ------------------------------------------------------------


def test_job_fails_at_once_on_final_exit_codes_and_keeps_a_termination_message():
    rendered = desired_job(model(), GPU, "abc", SETTINGS)
    pod = rendered["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never", "podFailurePolicy requires it"
    rules = rendered["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "optimize", "operator": "In", "values": [2, 3]}}
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules
    (container,) = pod["containers"]
    assert container["name"] == "optimize"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "INFEROPS_TERMINATION_LOG", "value": "/dev/termination-log"} in container["env"]


def _failed(termination: JobTermination | None, read: bool = True):
    m = model()
    failed = job(current_job_name(m), "Failed", "PodFailurePolicy", "Container optimize for pod ml/x failed with exit code 3 matching FailJob rule at index 0")
    return desired_state(m, Observed(GPU, jobs=[failed], termination=termination, termination_read=read), SETTINGS, NOW)


def test_a_failed_job_asks_for_its_pods_once():
    assert _failed(None, read=False).needs_termination
    assert not _failed(None, read=True).needs_termination


def test_accuracy_gate_failure_says_so_with_the_measured_drop():
    said = "accuracy gate: accuracy dropped by 0.0412 (0.9800 -> 0.9388), more than the budget 0.0100; nothing was deployed"
    plan = _failed(JobTermination(3, said))
    optimized, ready = cond(plan, "Optimized"), cond(plan, "Ready")
    assert (optimized["status"], optimized["reason"]) == ("False", "AccuracyBudgetExceeded")
    assert "dropped by 0.0412" in optimized["message"] and "not retried" in optimized["message"]
    assert (ready["status"], ready["reason"]) == ("False", "AccuracyBudgetExceeded")
    assert plan.status["phase"] == "Failed"


def test_bad_input_says_what_was_wrong():
    plan = _failed(JobTermination(2, "--tune needs a model whose inputs ... have a free first (batch) dimension"))
    assert cond(plan, "Optimized")["reason"] == "InvalidInput"
    assert "batch" in cond(plan, "Optimized")["message"]


def test_other_failures_keep_the_job_controllers_reason():
    plan = _failed(JobTermination(1, "unreachable"))
    assert cond(plan, "Optimized")["reason"] == "PodFailurePolicy"
    assert "backoffLimit" in cond(plan, "Optimized")["message"]


def test_termination_is_read_from_the_optimizer_container_of_the_last_pod():
    def pod(code: int, message: str, finished: str, name: str = "optimize") -> dict:
        return {"status": {"containerStatuses": [{"name": name, "state": {"terminated": {"exitCode": code, "message": message, "finishedAt": finished}}}]}}

    assert termination_of([]) is None
    assert termination_of([pod(0, "", "2026-01-01T00:00:01Z")]) is None
    assert termination_of([pod(3, "sidecar", "2026-01-01T00:00:09Z", name="other")]) is None
    got = termination_of([pod(1, "first try", "2026-01-01T00:00:01Z"), pod(3, "gate", "2026-01-01T00:00:05Z")])
    assert got == JobTermination(3, "gate")


# -- (b) the model's credentials and the platform's, kept apart --------------------------


def test_model_secret_reaches_only_the_job_under_its_own_prefix():
    from dataclasses import replace

    from inferops.reconcile.children import Revision, desired_serving

    settings = replace(SETTINGS, storage_secret="platform-s3")
    m = model(spec(model={"credentialsSecret": "team-s3"}))
    rendered = desired_job(m, GPU, "abc", settings)
    (container,) = rendered["spec"]["template"]["spec"]["containers"]
    # Each set under its own names: with both as plain AWS_*, the later one in envFrom wins.
    assert container["envFrom"] == [
        {"secretRef": {"name": "platform-s3"}},
        {"prefix": "INFEROPS_SOURCE_", "secretRef": {"name": "team-s3"}},
    ]
    assert {"name": "INFEROPS_SOURCE_CREDENTIALS", "value": "isolated"} in container["env"]
    serving, _ = desired_serving(m, GPU, Revision("s3://artifacts/ml/digits/abc", None), settings)
    deployment = next(o for o in serving if o["kind"] == "Deployment")
    (pull,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert pull["envFrom"] == [{"secretRef": {"name": "platform-s3"}}], "the pull reads only the artifact"


# -- (c) a child's name already taken by an object this model does not own ---------------


def test_name_taken_by_a_foreign_object_is_refused_not_applied_over():
    m = model()
    done = job(current_job_name(m), "Complete")
    observed = tuned(m, Observed(GPU, jobs=[done], report=committed(), conflicts={("ConfigMap", "digits-triton-config")}))
    plan = desired_state(m, observed, SETTINGS, NOW)
    assert [o["kind"] for o in plan.apply] == [], "not one serving object is applied while a name is taken"
    ready = cond(plan, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    assert "ConfigMap digits-triton-config" in ready["message"] and "not owned by InferenceModel digits" in ready["message"]
    assert plan.status["phase"] == "Failed" and "endpoint" not in plan.status
    # Once the name is free again, the model proceeds by itself.
    assert {"ConfigMap", "Deployment", "Service"} <= {o["kind"] for o in desired_state(m, tuned(m, Observed(GPU, jobs=[done], report=committed())), SETTINGS, NOW).apply}


# -- (d) the operator's own validation agrees with the CRD's rules ------------------------


def test_spec_refuses_what_the_job_cannot_use():
    import pytest
    from pydantic import ValidationError

    from inferops.api.inference_model import InferenceModelSpec

    for bad, expected in [
        ({"model": {"uri": "gs://b/m.onnx"}}, "gs:// is not in this build"),
        ({"model": {"uri": "pvc://claim/m.onnx"}}, "pvc:// needs a claim"),
        ({"model": {"uri": "s3://b/m.onnx"}, "optimization": {"evalData": "gs://b/e.npz"}}, "gs://"),
        ({"model": {"uri": "s3://b/m.onnx"}, "optimization": {"parameters": {"--output": "x"}}}, "parameters"),
        ({"model": {"uri": "s3://b/m.onnx"}, "optimization": {"parameters": {"a=b": "x"}}}, "parameters"),
    ]:
        with pytest.raises(ValidationError, match=expected):
            InferenceModelSpec.model_validate({**bad, "hardware": {"class": "cpu"}})
    InferenceModelSpec.model_validate({"model": {"uri": "s3://b/m.onnx"}, "optimization": {"parameters": {"studentWidth": "0.25"}}, "hardware": {"class": "cpu"}})


# -- (e) status: replaced whole, and the serving revision kept through a failure ----------


def _apply_merge_patch(target, patch):
    """RFC 7386, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply_merge_patch(out.get(key), value)
    return out


class _StatusKube:
    def __init__(self) -> None:
        self.patches: list[dict] = []

    async def patch_model_status(self, namespace, name, patch, resource_version=None) -> None:
        self.patches.append(patch)


def test_status_report_of_a_new_revision_replaces_the_old_one_whole():
    import asyncio

    from inferops.reconciler import Reconciler

    kube = _StatusKube()
    reconciler = Reconciler(kube, SETTINGS)
    old = {"artifactUri": "s3://a/1", "modelName": "digits", "backend": "onnxruntime", "notes": ["rev 1"],
           "accuracy": {"metric": "accuracy", "before": 0.9, "after": 0.89, "drop": 0.01}, "tools": {"onnx": "1.16"}}
    new = {"artifactUri": "s3://a/2", "modelName": "digits", "backend": "onnxruntime", "notes": ["rev 2"], "tools": {"onnxruntime": "1.20"}}
    stored = {"phase": "Ready", "report": old, "endpoint": "http://x", "kopf": {"progress": {}}}
    desired = {"phase": "Ready", "report": new}
    body = {"metadata": {"namespace": "ml", "name": "digits"}, "status": stored}
    asyncio.run(reconciler._write_status(body, desired))
    (patch,) = kube.patches
    after = _apply_merge_patch(stored, patch)
    assert after == {**desired, "kopf": {"progress": {}}}, "no key of revision 1 survives; Kopf's own field is left alone"
    asyncio.run(reconciler._write_status({**body, "status": after}, desired))
    assert len(kube.patches) == 1, "stored == desired: no write"


def test_failed_reoptimization_keeps_the_serving_revision():
    from .test_reconcile import deployment

    m = model()
    previous = {"artifactUri": "s3://artifacts/ml/digits/rev1", "endpoint": "http://digits-triton.ml.svc:8000",
                "report": {"artifactUri": "s3://artifacts/ml/digits/rev1", "modelName": "digits", "backend": "onnxruntime"}}
    failed = job(current_job_name(m), "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    plan = desired_state(m, Observed(GPU, jobs=[failed], deployment=deployment(2), status=previous, termination_read=True), SETTINGS, NOW)
    assert plan.status["phase"] == "Failed" and cond(plan, "Optimized")["status"] == "False"
    assert plan.status["artifactUri"] == previous["artifactUri"] and plan.status["endpoint"] == previous["endpoint"]
    assert plan.status["report"]["artifactUri"] == previous["artifactUri"]
    served = next(o for o in plan.apply if o["kind"] == "Deployment")
    assert served["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"] == previous["artifactUri"]
    assert cond(plan, "Ready")["status"] == "True", "the previous revision still serves"

"""desired_state(): what should exist for one InferenceModel and what its status should say."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.hardware_class import HardwareClassSpec
from ..api.outcomes import REASON_OF_EXIT
from ..api.report import OptimizationReport, TuningReport
from ..triton.config import ModelConfigError
from .children import ModelRef, Revision, artifact_uri, desired_job, desired_serving, endpoint, label_selector, model_signature, repository_model_name, smoke_url
from .conditions import condition, job_state, merge_conditions
from .images import image_refusals, refusal_message
from .naming import job_name, optimization_hash
from .tuning_plan import TuningOutcome, plan_tuning
from .settings import PROBE_RETRY_SECONDS, OperatorSettings


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    message: str


@dataclass(frozen=True)
class JobTermination:
    """How the optimizer container of a failed Job's pod ended: exit code and termination message."""

    exit_code: int
    message: str


@dataclass
class Observed:
    """What the handlers read from the cluster (and the artifact store) for one model."""

    hardware_class: HardwareClassSpec | None
    hardware_class_error: str | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    deployment: dict[str, Any] | None = None
    autoscaler: dict[str, Any] | None = None  # the model's HorizontalPodAutoscaler, if one exists
    report: OptimizationReport | None = None
    report_error: str | None = None
    report_missing: bool = False  # the read found no report.json: nothing is committed for this hash
    smoke: SmokeResult | None = None
    status: dict[str, Any] = field(default_factory=dict)
    termination: JobTermination | None = None  # of the current Job, once it failed
    termination_read: bool = False  # whether the failed Job's pods were looked at
    # (kind, name) of objects named like a serving child that this model does not own: applying
    # over them would take someone else's object (server-side apply with force merges into it).
    conflicts: set[tuple[str, str]] = field(default_factory=set)
    live_children: dict[str, dict[str, Any]] = field(default_factory=dict)  # owned serving objects by kind, as read
    namespace_labels: dict[str, str] | None = None  # of the model's namespace (HardwareClass namespaceSelector); None: unknown
    tuning: TuningReport | None = None  # the current tuning Job's published result, once read
    tuning_error: str | None = None
    tuning_termination: JobTermination | None = None  # of the current tuning Job, once it failed
    tuning_termination_read: bool = False


@dataclass
class Plan:
    apply: list[dict[str, Any]]
    delete_jobs: list[str]
    status: dict[str, Any]
    delete_autoscalers: list[str] = field(default_factory=list)
    job_name: str | None = None
    artifact_uri: str | None = None
    needs_report: bool = False
    needs_termination: bool = False  # the current Job failed: read why from its pods
    smoke_target: tuple[str, str, Any] | None = None  # (url, repository model name, signature)
    retry_after: float | None = None  # reconcile again then: a probe failed, and no event may come
    tuning_job_name: str | None = None
    tuning_uri: str | None = None  # where the current tuning Job publishes its TuningReport
    needs_tuning_report: bool = False
    needs_tuning_termination: bool = False  # the current tuning Job failed: read why from its pods


def _deployment_ready(deployment: dict[str, Any] | None, replicas: int) -> tuple[bool, int, int]:
    if deployment is None:
        return False, 0, 0
    status = deployment.get("status", {}) or {}
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current_generation = (status.get("observedGeneration") or 0) >= (deployment["metadata"].get("generation") or 0)
    wanted = int(deployment.get("spec", {}).get("replicas", replicas))
    return current_generation and updated >= wanted and ready >= wanted, ready, int(status.get("replicas") or 0)


def desired_state(model: ModelRef, observed: Observed, settings: OperatorSettings, now: str) -> Plan:
    previous = observed.status or {}
    status: dict[str, Any] = {
        "observedGeneration": model.generation,
        "selector": label_selector(model),
    }
    conditions: list[dict[str, Any]] = []
    plan = Plan(apply=[], delete_jobs=[], status=status)
    if observed.autoscaler is not None and model.spec.serving.autoscaling is None:
        plan.delete_autoscalers.append(observed.autoscaler["metadata"]["name"])  # replicas return to the spec's

    def finish(phase: str) -> Plan:
        status["phase"] = phase
        status["conditions"] = merge_conditions(previous.get("conditions", []), conditions, model.generation, now)
        return plan

    hardware = observed.hardware_class
    class_name = model.spec.hardware.class_name
    if hardware is None:
        reason, message = (
            ("InvalidHardwareClass", observed.hardware_class_error)
            if observed.hardware_class_error
            else ("HardwareClassNotFound", f"HardwareClass {class_name!r} does not exist; the model waits for it")
        )
        conditions.append(condition("HardwareClassResolved", False, reason, message))
        conditions.append(condition("Ready", _was_ready(previous), "HardwareClassUnavailable", message))
        _keep_serving_fields(previous, status)
        return finish("Pending")
    refused = [s for s in model.spec.optimization.steps if not hardware.allows(s)]
    if refused:
        message = f"recipe {', '.join(refused)} is not available on HardwareClass {class_name!r} ({hardware.instance_kind}); allowed: {', '.join(hardware.effective_recipes())}"
        conditions.append(condition("HardwareClassResolved", False, "RecipeNotSupported", message))
        conditions.append(condition("Ready", _was_ready(previous), "RecipeNotSupported", message))
        _keep_serving_fields(previous, status)  # nothing was applied: the previous revision serves on
        return finish("Failed")
    forbidden = _class_forbidden(model, hardware, observed.namespace_labels)
    if forbidden:
        conditions.append(condition("HardwareClassResolved", False, "HardwareClassForbidden", forbidden))
        conditions.append(condition("Ready", False, "HardwareClassForbidden", forbidden))
        _keep_serving_fields(previous, status)
        return finish("Failed")
    conditions.append(condition("HardwareClassResolved", True, "Found", f"{class_name} ({hardware.instance_kind})"))
    refused_images = image_refusals(model.spec, settings)
    if refused_images:
        conditions.append(condition("Ready", False, "ImageNotAllowed", refusal_message(refused_images, settings)))
        _keep_serving_fields(previous, status)
        return finish("Failed")

    spec_hash = optimization_hash(model.spec, hardware)
    current_job_name = job_name(model.name, spec_hash)
    plan.job_name = current_job_name
    plan.artifact_uri = artifact_uri(model, spec_hash, settings)
    status["jobName"] = current_job_name
    jobs = {j["metadata"]["name"]: j for j in observed.jobs}
    plan.delete_jobs = sorted(n for n in jobs if n != current_job_name)
    job = jobs.get(current_job_name)
    state, reason, message = job_state(job, "optimization")
    if state == "absent":
        state = _committed_instead_of_job(observed, plan)
    if state not in ("succeeded", "committed"):
        plan.apply.append(desired_job(model, hardware, spec_hash, settings))

    revision: Revision | None = None
    unavailable = False
    if state in ("succeeded", "committed"):
        if observed.report is None and observed.report_error is None:
            plan.needs_report = True
        report = observed.report
        if report is not None and not report.passed:
            drop = report.accuracy.drop if report.accuracy else None
            message = f"the optimized model broke its accuracy budget (drop {drop}); nothing was deployed"
            conditions.append(condition("Optimized", False, "AccuracyBudgetExceeded", message))
            conditions.append(condition("Ready", _was_ready(previous), "AccuracyBudgetExceeded", message))
            status["report"] = report.model_dump(mode="json", by_alias=True, exclude_none=True)
            _keep_serving_fields(previous, status)
            return finish("Failed")
        if report is None:
            # No revision is rendered without its report (default batching, the spec's signature):
            # the previous one keeps serving until the report can be read.
            unavailable, message = True, _report_unavailable(plan.artifact_uri, observed, state)
            conditions.append(condition("Optimized", False, "ReportUnavailable", message))
            plan.retry_after = PROBE_RETRY_SECONDS if observed.report_error else None
            revision = _previous_revision(previous)
        else:
            how = "JobSucceeded" if state == "succeeded" else "ArtifactCommitted"
            conditions.append(condition("Optimized", True, how, f"artifact at {plan.artifact_uri}" + (" (committed before; reused, no Job)" if how == "ArtifactCommitted" else "")))
            revision = Revision(plan.artifact_uri, report)
            status["artifactUri"] = plan.artifact_uri
            status["report"] = report.model_dump(mode="json", by_alias=True, exclude_none=True)
    elif state == "failed":
        plan.needs_termination = not observed.termination_read
        reason, message = _failure(observed.termination, reason, message, current_job_name, settings)
        conditions.append(condition("Optimized", False, reason, message))
        revision = _previous_revision(previous)  # a failed re-optimization leaves the last one serving
    else:
        conditions.append(condition("Optimized", None, reason or "JobPending", message or f"creating optimization Job {current_job_name}"))
        revision = _previous_revision(previous)
    tuning = TuningOutcome(revision)
    if state in ("succeeded", "committed") and not unavailable and revision is not None:
        tuning = plan_tuning(model, hardware, spec_hash, revision, observed, plan, conditions, settings)
        revision = tuning.revision
        if revision is None:  # tuning, or it failed under requireTuning: the last revision serves meanwhile
            revision = _previous_revision(previous)
            for key in ("artifactUri", "report"):
                status.pop(key, None)
    if tuning.blocked and revision is None:
        conditions.append(condition("Ready", _was_ready(previous), "TuningFailed", tuning.message))
        return finish("Failed")

    if revision is None:
        if unavailable:
            conditions.append(condition("Ready", False, "ReportUnavailable", message))
            return finish("Optimizing")
        if tuning.pending:
            conditions.append(condition("Ready", False, "Tuning", tuning.message))
            return finish("Optimizing")
        if state == "failed":
            conditions.append(condition("Ready", False, reason if reason in REASON_OF_EXIT.values() else "OptimizationFailed", message))
            return finish("Failed")
        conditions.append(condition("Ready", False, "Optimizing", "waiting for the optimization Job"))
        return finish("Optimizing")

    try:
        serving, batching = desired_serving(model, hardware, revision, settings)
    except ModelConfigError as exc:
        conditions.append(condition("Ready", _was_ready(previous), "InvalidModelConfig", str(exc)))
        _keep_serving_fields(previous, status)  # nothing was applied: the previous revision serves on
        return finish("Failed")
    clashes = [f"{o['kind']} {o['metadata']['name']}" for o in serving if (o["kind"], o["metadata"]["name"]) in observed.conflicts]
    if clashes:
        message = f"{', '.join(clashes)} already exist(s) in namespace {model.namespace} and is not owned by InferenceModel {model.name}; nothing was applied over it: rename the model or remove that object"
        conditions.append(condition("Ready", False, "NameConflict", message))
        status["artifactUri"] = revision.artifact_uri
        return finish("Failed")
    plan.apply.extend(serving)
    status["artifactUri"] = revision.artifact_uri
    if revision.report is not None:
        status["report"] = revision.report.model_dump(mode="json", by_alias=True, exclude_none=True)
    status["batching"] = batching.model_dump(mode="json", by_alias=True) if batching else None
    status["endpoint"] = endpoint(model)
    wanted = _wanted_replicas(model, observed.deployment)
    ready, ready_replicas, replicas = _deployment_ready(observed.deployment, wanted)
    status["readyReplicas"] = ready_replicas
    status["replicas"] = replicas

    if ready and settings.smoke_test:
        if observed.smoke is None:
            url = smoke_url(model, observed.live_children.get("Service"))
            plan.smoke_target = (url, repository_model_name(model, revision), model_signature(model.spec, revision.report))
            ready = False
            smoke_reason, smoke_message = "SmokeTestPending", "sending a smoke inference"
        elif not observed.smoke.ok:
            ready = False
            smoke_reason, smoke_message = "SmokeTestFailed", observed.smoke.message
            plan.retry_after = PROBE_RETRY_SECONDS
    if ready:
        detail = f"{ready_replicas} replica(s) ready at {status['endpoint']}"
        if observed.smoke is not None:
            detail += f"; smoke inference: {observed.smoke.message}"
        conditions.append(condition("Ready", True, "DeploymentReady", detail))
    elif observed.deployment is not None and _deployment_ready(observed.deployment, wanted)[0]:
        conditions.append(condition("Ready", False, smoke_reason, smoke_message))
    else:
        conditions.append(condition("Ready", False, "DeploymentProgressing", f"{ready_replicas} of {wanted} replica(s) ready"))
    if state in ("running", "absent") or unavailable or tuning.pending:
        return finish("Optimizing")
    if state == "failed" or tuning.blocked:
        return finish("Failed")
    return finish("Ready" if ready else "Deploying")


def invalid_spec_status(previous: dict[str, Any], generation: int, message: str, now: str) -> dict[str, Any]:
    """The status of a model whose spec the operator cannot read (it passed the CRD's schema, not
    the pydantic model): nothing is applied, so what served before still serves and stays in status."""
    status: dict[str, Any] = {"phase": "Failed", "observedGeneration": generation}
    _keep_serving_fields(previous or {}, status)
    if previous and previous.get("selector"):
        status["selector"] = previous["selector"]
    ready = condition("Ready", _was_ready(previous or {}), "InvalidSpec", message)
    status["conditions"] = merge_conditions((previous or {}).get("conditions", []), [ready], generation, now)
    return status


def _committed_instead_of_job(observed: Observed, plan: Plan) -> str:
    """No Job for this hash (never made, deleted after it succeeded, a TTL, a spec reverted to an
    earlier hash): look for a committed artifact first (once per hash: the reconciler remembers),
    and reuse it. Only when none is committed does the hash need a Job; when the store cannot say,
    no Job either (a re-run would publish nothing: artifacts are write-once)."""
    if observed.report is not None or (observed.report_error is not None and not observed.report_missing):
        return "committed"
    if not observed.report_missing:
        plan.needs_report = True
    return "absent"


def _report_unavailable(uri: str | None, observed: Observed, state: str) -> str:
    if observed.report_error is None:
        return f"reading report.json at {uri}"
    what = "the optimization Job succeeded but" if state == "succeeded" else "no Job for this spec:"
    return f"{what} its report.json at {uri} cannot be read ({observed.report_error}); the previous revision keeps serving, retried every {PROBE_RETRY_SECONDS:.0f} s"


def _class_forbidden(model: ModelRef, hardware: HardwareClassSpec, namespace_labels: dict[str, str] | None) -> str:
    """Why the model's namespace may not use its class ("" when it may). Unknown labels fail closed."""
    if hardware.namespace_selector is None or (namespace_labels is not None and hardware.admits(namespace_labels)):
        return ""
    return (
        f"namespace {model.namespace!r} may not use HardwareClass {model.spec.hardware.class_name!r}: its namespaceSelector does not select "
        + ("this namespace's labels" if namespace_labels is not None else "the namespace, whose labels could not be read")
        + "; ask the platform admin for access, or use another class"
    )


def _previous_revision(previous: dict[str, Any]) -> Revision | None:
    """What the status says is deployed, if anything: it keeps serving until a new one is ready."""
    if not previous.get("artifactUri"):
        return None
    report = previous.get("report")
    return Revision(previous["artifactUri"], OptimizationReport.model_validate(report) if report else None)


def _failure(termination: JobTermination | None, reason: str, message: str, job: str, settings: OperatorSettings) -> tuple[str, str]:
    """Reason and message of a failed Job: the optimizer's own when it exited with a final code
    (it wrote why to its termination message), else the Job controller's."""
    if termination is not None and termination.exit_code in REASON_OF_EXIT:
        said = termination.message.strip() or f"the optimizer exited with code {termination.exit_code}"
        return REASON_OF_EXIT[termination.exit_code], f"{said} (Job {job}; not retried: change the spec to try again)"
    return reason, f"{message} (Job {job}; retried up to backoffLimit {settings.job_backoff_limit}; change the spec to try again)"


def _wanted_replicas(model: ModelRef, deployment: dict[str, Any] | None) -> int:
    """The spec's replicas, or with autoscaling what the HPA last set on the Deployment."""
    autoscaling = model.spec.serving.autoscaling
    if autoscaling is None:
        return model.spec.serving.replicas
    return int(((deployment or {}).get("spec") or {}).get("replicas") or autoscaling.min_replicas)


def _was_ready(previous: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in previous.get("conditions", []) or [])


def _keep_serving_fields(previous: dict[str, Any], status: dict[str, Any]) -> None:
    for key in ("artifactUri", "report", "batching", "endpoint", "replicas", "readyReplicas", "jobName"):
        if key in previous:
            status[key] = previous[key]

"""The tuning step of the plan: for `dynamicBatching: auto`, once the optimization Job has
published, a tuning Job on the class's nodes (reconcile/tuning.py); its published choice goes
into the revision that is deployed, and into status.report.tuning.

Kept apart from plan.desired_state, which calls plan_tuning() once the artifact and its report
are known. A tuning that fails deploys with the default batching (children.choose_batching),
unless the spec says requireTuning; the failed Job stays under its name, so it is never made
again until something it depends on changes (a new tuning hash)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..api.hardware_class import HardwareClassSpec
from .children import ModelRef, Revision
from .conditions import condition, job_state
from .naming import SPEC_HASH
from .settings import OperatorSettings
from .tuning import EXIT_TUNING_FAILED, TUNING_COMPONENT, desired_tuning_job, tuning_target

if TYPE_CHECKING:
    from .plan import JobTermination, Observed, Plan


@dataclass(frozen=True)
class TuningOutcome:
    """What the plan deploys: `revision` (tuned, or with the default batching), or None while the
    tuning runs (`pending`) or after it failed under requireTuning (`blocked`)."""

    revision: Revision | None
    pending: bool = False
    blocked: bool = False
    message: str = ""


def plan_tuning(
    model: ModelRef,
    hardware: HardwareClassSpec,
    artifact_hash: str,
    revision: Revision,
    observed: "Observed",
    plan: "Plan",
    conditions: list[dict[str, Any]],
    settings: OperatorSettings,
) -> TuningOutcome:
    if model.spec.serving.dynamic_batching.mode != "auto":
        return TuningOutcome(revision)
    if plan.needs_report:
        return TuningOutcome(revision)  # a first pass: the reconciler reads the report and plans again
    if revision.report is None:
        # Nothing to tune from (no model name, backend or accelerators): served as the report
        # reading decides, with the default batching. Keep this artifact's tuning Jobs meanwhile.
        plan.delete_jobs = [n for n in plan.delete_jobs if not _tuning_job_of(observed, n, artifact_hash)]
        message = "not tuned: the optimization report is unavailable; serving with the default batching"
        conditions.append(condition("Tuned", False, "ReportUnavailable", message))
        return TuningOutcome(revision, message=message)

    target = tuning_target(model, hardware, artifact_hash, revision, settings)
    plan.tuning_job_name, plan.tuning_uri = target.job_name, target.output_uri
    plan.status["tuningJobName"] = target.job_name
    plan.delete_jobs = [n for n in plan.delete_jobs if n != target.job_name]
    job = next((j for j in observed.jobs if j["metadata"]["name"] == target.job_name), None)
    state, reason, message = job_state(job, "tuning")
    if state != "succeeded":
        plan.apply.append(desired_tuning_job(model, hardware, revision, target, settings))
    require = model.spec.serving.dynamic_batching.require_tuning

    if state in ("absent", "running"):
        message = f"tuning dynamic batching in Job {target.job_name} on {target.triton_image} (p99 objective {model.spec.serving.latency_objective_ms:g} ms, {model.spec.serving.expected_concurrency} concurrent requests)"
        conditions.append(condition("Tuned", None, "Tuning", message))
        return TuningOutcome(None, pending=True, message=message)
    if state == "failed":
        plan.needs_tuning_termination = not observed.tuning_termination_read
        message = _failure_message(observed.tuning_termination, reason, message, target.job_name)
        return _failed(revision, conditions, "TuningFailed", message, require)

    if observed.tuning is None and observed.tuning_error is None:
        plan.needs_tuning_report = True
        return TuningOutcome(None, pending=True, message=f"reading the tuning result {target.output_uri}")
    if observed.tuning is None:
        return _failed(revision, conditions, "TuningUnavailable", f"the tuning result {target.output_uri} could not be read: {observed.tuning_error}", require)
    tuning = observed.tuning
    chosen = tuning.chosen
    summary = (
        f"max batch {chosen.max_batch_size}, queue delay {chosen.max_queue_delay_microseconds} us, {chosen.instance_count} instance(s): "
        f"{tuning.throughput_per_s:.0f}/s at p99 {tuning.p99_ms:.3g} ms after {tuning.measurements} measurement(s)"
    )
    if tuning.p99_ms > tuning.latency_objective_ms:
        summary += f" (above the p99 objective of {tuning.latency_objective_ms:g} ms: no config measured met it)"
    where = ", ".join(f"{k} {v}" for k, v in (("on node", _field(tuning, "node")), ("with", _field(tuning, "image"))) if v)
    conditions.append(condition("Tuned", True, "Tuned", summary + (f" ({where})" if where else "")))
    assert revision.report is not None
    return TuningOutcome(Revision(revision.artifact_uri, revision.report.model_copy(update={"tuning": tuning})))


def _failed(revision: Revision, conditions: list[dict[str, Any]], reason: str, message: str, require: bool) -> TuningOutcome:
    if require:
        message += "; not deployed: dynamicBatching.requireTuning is set"
        conditions.append(condition("Tuned", False, reason, message))
        return TuningOutcome(None, blocked=True, message=message)
    message += "; serving with the default batching"
    conditions.append(condition("Tuned", False, reason, message))
    assert revision.report is not None
    # The optimization report carries no tuning of its own: the default batching is rendered.
    return TuningOutcome(Revision(revision.artifact_uri, revision.report.model_copy(update={"tuning": None})), message=message)


def _failure_message(termination: "JobTermination | None", reason: str, message: str, job: str) -> str:
    """The tuner's own words when it exited with its final code; the Job controller's otherwise
    (a deadline, a pod that kept crashing)."""
    if termination is not None and termination.exit_code == EXIT_TUNING_FAILED:
        said = termination.message.strip() or f"the tuner exited with code {termination.exit_code}"
        return f"{said} (Job {job}; not retried)"
    return f"{reason}: {message} (Job {job})"


def _tuning_job_of(observed: "Observed", name: str, artifact_hash: str) -> bool:
    job = next((j for j in observed.jobs if j["metadata"]["name"] == name), None)
    meta = (job or {}).get("metadata", {})
    return (meta.get("labels") or {}).get("app.kubernetes.io/component") == TUNING_COMPONENT and (meta.get("annotations") or {}).get(SPEC_HASH) == artifact_hash


def _field(tuning: Any, name: str) -> Any:
    return getattr(tuning, name, None)  # what the tuner recorded it measured on (image, node)

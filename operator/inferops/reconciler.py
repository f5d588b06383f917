"""The I/O around the pure core: read what exists, ask the core, write only the difference."""

from __future__ import annotations

import asyncio
import datetime
import logging
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .api.hardware_class import HardwareClassSpec
from .api.inference_model import InferenceModelSpec, InferenceModelStatus
from .api.report import OptimizationReport
from .kube import Kube
from .metrics import METRICS
from .reconcile.children import ModelRef
from .reconcile.conditions import condition, merge_conditions
from .reconcile.naming import serving_name
from .api.outcomes import OPTIMIZER_CONTAINER
from .reconcile.plan import JobTermination, Observed, Plan, SmokeResult, desired_state
from .reconcile.settings import FIELD_MANAGER, PROBE_RETRY_SECONDS, OperatorSettings
from .reconcile.status_patch import status_patch

log = logging.getLogger("inferops.reconcile")
STATUS_FIELDS = {f.alias or name for name, f in InferenceModelStatus.model_fields.items()}
HANDOVER_MANAGER = "inferops-replicas-handover"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


def read_report(artifact_uri: str) -> OptimizationReport:
    from .storage import fetch

    with tempfile.TemporaryDirectory() as tmp:
        path = fetch(f"{artifact_uri}/report.json", Path(tmp))
        return OptimizationReport.model_validate_json(path.read_text())


def run_smoke(url: str, model_name: str, signature: Any) -> SmokeResult:
    from .triton.probe import smoke_infer

    try:
        result = smoke_infer(url, model_name, signature)
    except Exception as exc:  # any failure is the answer: the deployment does not serve
        return SmokeResult(False, f"{type(exc).__name__}: {exc}")
    return SmokeResult(True, f"ok in {result.get('latency_ms', 0):.1f} ms")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        post_event: Callable[[dict[str, Any], str, str, str], None] | None = None,
    ):
        self.kube = kube
        self.settings = settings
        self.post_event = post_event
        self._locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: set[tuple[str, str]] = set()  # models with a reconcile queued that has not started
        self._reports: dict[str, tuple[float, OptimizationReport | None, str | None]] = {}
        self._smoke: dict[tuple[str, str, int], tuple[float, SmokeResult]] = {}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Reconcile one model; returns in how many seconds to reconcile it again even if nothing
        happens (a probe failed), or None. Calls for the same model run one at a time; a call that
        finds another already waiting its turn returns at once, since that one has read nothing yet
        and will see whatever this call was made for. (The model's Job, Deployment and own
        events arrive on separate Kopf workers and would otherwise queue a full reconcile each.)"""
        key = (namespace, name)
        if key in self._waiting:
            METRICS.coalesced()
            return None
        self._waiting.add(key)
        acquired = False
        try:
            async with self._locks[key]:
                acquired = True
                self._waiting.discard(key)
                async with METRICS.reconcile():
                    return await self._reconcile_now(namespace, name)
        finally:
            if not acquired:
                self._waiting.discard(key)

    async def _reconcile_now(self, namespace: str, name: str) -> float | None:
        body = await self.kube.get_model(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            METRICS.set_phase(namespace, name, None)
            return None  # children go with it through their owner references
        try:
            return await self._reconcile(body)
        except ApiException as exc:
            if _going_away(exc):
                log.info("%s/%s is going away (%s); nothing to do", namespace, name, exc.reason)
                return None
            raise

    async def _reconcile(self, body: dict[str, Any]) -> float | None:
        meta = body["metadata"]
        live_status = body.get("status") or {}
        try:
            spec = InferenceModelSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            message = _validation_message(exc)
            status = {
                "phase": "Failed",
                "observedGeneration": meta.get("generation", 0),
                "conditions": merge_conditions(
                    live_status.get("conditions", []), [condition("Ready", False, "InvalidSpec", message)], meta.get("generation", 0), now_iso()
                ),
            }
            await self._write_status(body, status)
            return None
        model = ModelRef(meta["name"], meta["namespace"], meta["uid"], meta.get("generation", 0), spec)
        observed = await self._observe(model, live_status)
        plan = desired_state(model, observed, self.settings, now_iso())
        if plan.needs_report:
            observed.report, observed.report_error = await self._report(plan.artifact_uri)
            plan = desired_state(model, observed, self.settings, now_iso())
        if plan.needs_termination and plan.job_name:
            observed.termination = termination_of(await self.kube.list_job_pods(model.namespace, plan.job_name))
            observed.termination_read = True
            plan = desired_state(model, observed, self.settings, now_iso())
        if plan.smoke_target:
            observed.smoke = await self._smoke_result(model, observed, plan)
            plan = desired_state(model, observed, self.settings, now_iso())
        await self._apply(model, plan, observed)
        await self._write_status(body, plan.status)
        return plan.retry_after

    async def _observe(self, model: ModelRef, live_status: dict[str, Any]) -> Observed:
        class_body = await self.kube.get_hardware_class(model.spec.hardware.class_name)
        hardware, hardware_error = None, None
        if class_body is not None:
            try:
                hardware = HardwareClassSpec.model_validate(class_body.get("spec") or {})
            except ValidationError as exc:
                hardware_error = f"HardwareClass {model.spec.hardware.class_name!r} is invalid: {_validation_message(exc)}"
        name = serving_name(model.name)
        jobs, deployment, autoscaler, configmap, service = await asyncio.gather(
            self.kube.list_owned("batch/v1", "Job", model.namespace, model.name),
            self.kube.get_owned("apps/v1", "Deployment", model.namespace, name),
            self.kube.get_owned("autoscaling/v2", "HorizontalPodAutoscaler", model.namespace, name),
            self.kube.get_owned("v1", "ConfigMap", model.namespace, f"{name}-config"),
            self.kube.get_owned("v1", "Service", model.namespace, name),
        )
        children = [o for o in (deployment, autoscaler, configmap, service) if o is not None]
        return Observed(
            hardware_class=hardware,
            hardware_class_error=hardware_error,
            jobs=[j for j in jobs if _owned_by(j, model.uid)],
            deployment=deployment if deployment and _owned_by(deployment, model.uid) else None,
            autoscaler=autoscaler if autoscaler and _owned_by(autoscaler, model.uid) else None,
            status=live_status,
            conflicts={(o["kind"], o["metadata"]["name"]) for o in children if not _owned_by(o, model.uid)},
            live_children={o["kind"]: o for o in children if _owned_by(o, model.uid)},
        )

    async def _report(self, artifact_uri: str | None) -> tuple[OptimizationReport | None, str | None]:
        assert artifact_uri
        cached = self._reports.get(artifact_uri)
        if cached and (cached[1] is not None or time.monotonic() - cached[0] < PROBE_RETRY_SECONDS):
            return cached[1], cached[2]
        try:
            report, error = await asyncio.to_thread(read_report, artifact_uri), None
        except Exception as exc:
            report, error = None, f"{type(exc).__name__}: {exc}"
        self._reports[artifact_uri] = (time.monotonic(), report, error)
        return report, error

    async def _smoke_result(self, model: ModelRef, observed: Observed, plan: Plan) -> SmokeResult:
        generation = int((observed.deployment or {}).get("metadata", {}).get("generation") or 0)
        key = (model.uid, plan.status.get("artifactUri") or "", generation)
        cached = self._smoke.get(key)
        if cached and (cached[1].ok or time.monotonic() - cached[0] < PROBE_RETRY_SECONDS):
            return cached[1]
        result = await asyncio.to_thread(run_smoke, *plan.smoke_target)
        self._smoke[key] = (time.monotonic(), result)
        return result

    async def _apply(self, model: ModelRef, plan: Plan, observed: Observed) -> None:
        for desired in plan.apply:
            live = observed.live_children.get(desired["kind"])  # saves apply_if_changed a GET
            if desired["kind"] == "Deployment" and "replicas" not in desired["spec"]:
                await self._hand_over_replicas(desired, live, plan)
            if desired["kind"] == "Job":
                live = next((j for j in observed.jobs if j["metadata"]["name"] == desired["metadata"]["name"]), None)
                if live is not None:
                    continue  # a Job's template is immutable; its name already encodes the spec
            if await self.kube.apply_if_changed(desired, live):
                log.info("applied %s %s/%s", desired["kind"], model.namespace, desired["metadata"]["name"])
        for name in plan.delete_jobs:
            log.info("retiring optimization Job %s/%s", model.namespace, name)
            await self.kube.delete_job(model.namespace, name)
        for name in plan.delete_autoscalers:
            log.info("autoscaling removed: deleting HorizontalPodAutoscaler %s/%s", model.namespace, name)
            await self.kube.delete_object("autoscaling/v2", "HorizontalPodAutoscaler", model.namespace, name)

    async def _hand_over_replicas(self, desired: dict[str, Any], live: dict[str, Any] | None, plan: Plan) -> None:
        """Before we stop applying spec.replicas, give it to a hand-over manager at its current value.

        Dropping a field we alone own resets it to its default (1): a serving outage until the HPA
        acts. This is the hand-over of the Kubernetes docs (server-side apply, transferring
        ownership); the HPA's next scale write takes the field from the hand-over manager."""
        if live is None or not _applies_replicas(live):
            return
        hpa = next(o for o in plan.apply if o["kind"] == "HorizontalPodAutoscaler")
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        replicas = min(max(int(live["spec"].get("replicas") or low), low), high)
        meta = desired["metadata"]
        await self.kube.apply_fields(
            {"apiVersion": desired["apiVersion"], "kind": desired["kind"], "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "spec": {"replicas": replicas}},
            HANDOVER_MANAGER,
        )

    async def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        live = body.get("status") or {}
        METRICS.set_phase(body["metadata"]["namespace"], body["metadata"]["name"], status.get("phase"))
        patch = status_patch(live, status, STATUS_FIELDS)
        if not patch:
            return
        meta = body["metadata"]
        await self.kube.patch_model_status(meta["namespace"], meta["name"], patch)
        old_phase, new_phase = live.get("phase"), status.get("phase")
        if new_phase != old_phase and self.post_event is not None:
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
            message = f"{old_phase or 'New'} -> {new_phase}" + (f": {ready['message']}" if ready and ready.get("message") else "")
            self.post_event(body, "Warning" if new_phase == "Failed" else "Normal", new_phase, message[:1024])


def termination_of(pods: list[dict[str, Any]]) -> JobTermination | None:
    """How the optimizer ended in the last of the Job's pods that terminated (a final exit code
    fails the Job at once, so that pod is the one that says why)."""
    ended = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") == OPTIMIZER_CONTAINER and terminated and terminated.get("exitCode"):
                ended.append((terminated.get("finishedAt") or "", int(terminated["exitCode"]), terminated.get("message") or ""))
    if not ended:
        return None
    _, code, message = max(ended)
    return JobTermination(code, message)


def _going_away(exc: ApiException) -> bool:
    """The model or its namespace was deleted while we worked: not an error."""
    return exc.status == 404 or (exc.status == 403 and "NamespaceTerminating" in (exc.body or ""))


def _applies_replicas(deployment: dict[str, Any]) -> bool:
    return any(
        entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
        for entry in deployment["metadata"].get("managedFields") or []
    )


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])

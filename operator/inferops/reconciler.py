"""The I/O around the pure core: read what exists, ask the core, write only the difference."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections import defaultdict
from typing import Any, Callable

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .api.hardware_class import HardwareClassSpec
from .api.inference_model import InferenceModelSpec, InferenceModelStatus
from .cache import OwnedCache
from .executors import IOPools
from .kube import CLASSES, NAMESPACES, Kube, list_path
from .metrics import METRICS
from .reconcile.children import ModelRef
from .reconcile.naming import serving_name
from .reconcile.plan import Observed, Plan, desired_state, invalid_spec_status
from .reconcile.settings import FIELD_MANAGER, OperatorSettings
from .reconcile.status_limits import bounded_status
from .reconcile.tenancy import namespace_labels
from .reconcile.status_patch import status_patch
from .model_reads import ModelReads, termination_of
from .reconciler_memory import ModelMemory

log = logging.getLogger("inferops.reconcile")
STATUS_FIELDS = {f.alias or name for name, f in InferenceModelStatus.model_fields.items()}
HANDOVER_MANAGER = "inferops-replicas-handover"
MODEL_KIND = "InferenceModel"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


class Reconciler(ModelReads):
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        post_event: Callable[[dict[str, Any], str, str, str], None] | None = None,
        pools: IOPools | None = None,
    ):
        self.kube = kube
        self.settings = settings
        self.post_event = post_event
        self.pools = pools  # bounded executors for report reads and smoke inferences (None: asyncio's default)
        self._locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: set[tuple[str, str]] = set()  # models with a reconcile queued that has not started
        # Report reads and smoke results per model: forgotten when the model goes, and bounded.
        self.memory = ModelMemory()
        self._gone: set[tuple[str, str]] = set()
        self.cache = OwnedCache()
        self.cache.keep(MODEL_KIND)

    async def prime_cache(self, owned_selector: str) -> None:
        """One LIST per watched kind before Kopf starts watching: from then on a cache miss
        means "absent". A kind we may not list cluster-wide stays unprimed (read per reconcile)."""
        kinds = {"Job": "batch/v1", "Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2"}
        for kind, api_version in kinds.items():
            try:
                data = await self.kube.call("GET", list_path(api_version, kind), query=[("labelSelector", owned_selector)])
            except ApiException as exc:
                log.warning("cannot list %s cluster-wide (%s): reading them per reconcile", kind, exc.reason)
                continue
            self.cache.prime(kind, data.get("items", []))
        for kind, path in (("HardwareClass", CLASSES), ("Namespace", NAMESPACES)):
            try:
                self.cache.prime(kind, (await self.kube.call("GET", path)).get("items", []))
            except ApiException as exc:
                log.warning("cannot list %ss (%s): reading them per reconcile", kind, exc.reason)

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Reconcile one model; returns in how many seconds to reconcile it again even if nothing
        happens (its smoke inference failed), or None. Calls for the same model run one at a time; a call that
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
            if key in self._gone:
                self._gone.discard(key)
                self.forget(namespace, name)  # now that the lock is released

    async def _model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The model as the watch (or our last status write) last showed it; a GET if not seen."""
        body = self.cache.get(MODEL_KIND, namespace, name)
        if body is None:
            body = await self.kube.get_model(namespace, name)
            if body is not None:
                self.cache.put(MODEL_KIND, body)
        return body

    async def _reconcile_now(self, namespace: str, name: str) -> float | None:
        body = await self._model(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            METRICS.set_phase(namespace, name, None)
            self._gone.add((namespace, name))
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
            status = invalid_spec_status(live_status, meta.get("generation", 0), _validation_message(exc), now_iso())
            await self._write_status(body, status)
            return None
        model = ModelRef(meta["name"], meta["namespace"], meta["uid"], meta.get("generation", 0), spec)
        observed = await self._observe(model, live_status)
        plan = desired_state(model, observed, self.settings, now_iso())
        if plan.needs_report:
            job_seen = any(j["metadata"]["name"] == plan.job_name for j in observed.jobs)
            read = await self._report(model, plan.artifact_uri, job_seen, plan.job_name)
            observed.report, observed.report_error, observed.report_missing = read.report, read.error, read.missing
            plan = desired_state(model, observed, self.settings, now_iso())
        if plan.needs_termination and plan.job_name:
            observed.termination = termination_of(await self.kube.list_job_pods(model.namespace, plan.job_name))
            observed.termination_read = True
            plan = desired_state(model, observed, self.settings, now_iso())
        if plan.needs_tuning_report and plan.tuning_uri:
            observed.tuning, observed.tuning_error = await self._tuning_read(model, plan.tuning_uri)
            plan = desired_state(model, observed, self.settings, now_iso())
        if plan.needs_tuning_termination and plan.tuning_job_name:
            observed.tuning_termination = await self._tuning_termination(model, observed, plan.tuning_job_name)
            observed.tuning_termination_read = True
            plan = desired_state(model, observed, self.settings, now_iso())
        if await self._unseen_children(model, plan, observed):
            plan = desired_state(model, observed, self.settings, now_iso())
        if plan.smoke_target:
            observed.smoke = await self._smoke_result(model, observed, plan)
            plan = desired_state(model, observed, self.settings, now_iso())
        jobs_seen = len(observed.jobs)
        await self._apply(model, plan, observed)
        if len(observed.jobs) > jobs_seen:
            # The Job was just created: say so now, as the reconcile its watch event brings would
            # (one status write a model fewer: "creating" then "running" was two).
            plan.status = desired_state(model, observed, self.settings, now_iso()).status
        await self._write_status(body, plan.status)
        return plan.retry_after

    async def _read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """From the cache when it knows (a hit, or a miss once the kind is primed), else a GET."""
        obj = self.cache.get(kind, namespace, name)
        if obj is not None or self.cache.primed(kind):
            return obj
        if kind in ("HardwareClass", "Namespace"):  # cluster-scoped: kept by their watches alone
            return await (self.kube.get_hardware_class(name) if kind == "HardwareClass" else self.kube.get(f"{NAMESPACES}/{name}"))
        obj = await self.kube.get_owned(api_version, kind, namespace, name)
        if obj is not None:
            self.cache.put(kind, obj)  # read once; our applies keep it current (see _apply)
        return obj

    async def _observe(self, model: ModelRef, live_status: dict[str, Any]) -> Observed:
        class_body = await self._read("", "HardwareClass", "", model.spec.hardware.class_name)
        hardware, hardware_error = None, None
        if class_body is not None:
            try:
                hardware = HardwareClassSpec.model_validate(class_body.get("spec") or {})
            except ValidationError as exc:
                hardware_error = f"HardwareClass {model.spec.hardware.class_name!r} is invalid: {_validation_message(exc)}"
        namespace = None
        if hardware is not None and hardware.namespace_selector is not None:
            try:
                namespace = await self._read("v1", "Namespace", "", model.namespace)  # from the watch's cache
            except ApiException as exc:
                if exc.status != 403:
                    raise
                log.warning("may not read namespace %s: its models cannot use a class with a namespaceSelector", model.namespace)
        name = serving_name(model.name)
        if self.cache.primed("Job"):
            jobs = self.cache.of_model("Job", model.namespace, model.name)
        else:
            jobs = await self.kube.list_owned("batch/v1", "Job", model.namespace, model.name)
        # Only the watched kinds here: a ConfigMap or Service is read when the plan wants it (_conflicts).
        deployment, autoscaler = await asyncio.gather(
            self._read("apps/v1", "Deployment", model.namespace, name),
            self._read("autoscaling/v2", "HorizontalPodAutoscaler", model.namespace, name),
        )
        children = [o for o in (deployment, autoscaler, self.cache.get("ConfigMap", model.namespace, f"{name}-config"), self.cache.get("Service", model.namespace, name)) if o is not None]
        return Observed(
            hardware_class=hardware,
            hardware_class_error=hardware_error,
            jobs=[j for j in jobs if _owned_by(j, model.uid)],
            deployment=deployment if deployment and _owned_by(deployment, model.uid) else None,
            autoscaler=autoscaler if autoscaler and _owned_by(autoscaler, model.uid) else None,
            status=live_status,
            conflicts={(o["kind"], o["metadata"]["name"]) for o in children if not _owned_by(o, model.uid)},
            live_children={o["kind"]: o for o in children if _owned_by(o, model.uid)},
            namespace_labels=namespace_labels(namespace, model.namespace),
        )

    async def _unseen_children(self, model: ModelRef, plan: Plan, observed: Observed) -> bool:
        """Serving objects the plan applies that the reconcile has not seen: read each by name
        before applying over it (a label-selected watch cannot show an object of our name that
        someone else made: the NameConflict check). Returns whether any was read."""
        api_versions = {"Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2", "ConfigMap": "v1", "Service": "v1"}
        unseen = [o for o in plan.apply if o["kind"] in api_versions and o["kind"] not in observed.live_children
                  and (o["kind"], o["metadata"]["name"]) not in observed.conflicts]
        found = await asyncio.gather(*(self.kube.get_owned(api_versions[o["kind"]], o["kind"], model.namespace, o["metadata"]["name"]) for o in unseen))
        for obj in found:
            if obj is None:
                continue
            if _owned_by(obj, model.uid):
                observed.live_children[obj["kind"]] = obj
                self.cache.put(obj["kind"], obj)
            else:
                observed.conflicts.add((obj["kind"], obj["metadata"]["name"]))
        return any(o is not None for o in found)

    def forget(self, namespace: str, name: str) -> None:
        """Everything kept for a model that is gone (its lock too, unless a reconcile holds it)."""
        self.memory.forget(namespace, name)
        lock = self._locks.get((namespace, name))
        if lock is not None and not lock.locked() and (namespace, name) not in self._waiting:
            del self._locks[(namespace, name)]

    async def _apply(self, model: ModelRef, plan: Plan, observed: Observed) -> None:
        for desired in plan.apply:
            live = observed.live_children.get(desired["kind"])  # saves apply_if_changed a GET
            if desired["kind"] == "Deployment" and "replicas" not in desired["spec"]:
                await self._hand_over_replicas(desired, live, plan)
            if desired["kind"] == "Job":
                live = next((j for j in observed.jobs if j["metadata"]["name"] == desired["metadata"]["name"]), None)
                if live is not None:
                    continue  # a Job's template is immutable; its name already encodes the spec
            # live None: _observe/_unseen_children just saw it absent (no GET again)
            applied = await self.kube.apply_if_changed(desired, live, read_live=False)
            if applied is not None:
                self.cache.put(desired["kind"], applied)  # seen before the watch echoes it
                if desired["kind"] == "Job":
                    observed.jobs.append(applied)
                log.info("applied %s %s/%s", desired["kind"], model.namespace, desired["metadata"]["name"])
        for name in plan.delete_jobs:
            log.info("retiring Job %s/%s", model.namespace, name)
            await self.kube.delete_job(model.namespace, name)
            self.cache.remove("Job", model.namespace, name)
        for name in plan.delete_autoscalers:
            log.info("autoscaling removed: deleting HorizontalPodAutoscaler %s/%s", model.namespace, name)
            await self.kube.delete_object("autoscaling/v2", "HorizontalPodAutoscaler", model.namespace, name)
            self.cache.remove("HorizontalPodAutoscaler", model.namespace, name)

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
        status = bounded_status(status)  # what a tenant's report or an error says is capped, never the write
        METRICS.set_phase(body["metadata"]["namespace"], body["metadata"]["name"], status.get("phase"))
        patch = status_patch(live, status, STATUS_FIELDS)
        if not patch:
            return
        meta = body["metadata"]
        stored = await self.kube.patch_model_status(meta["namespace"], meta["name"], patch)
        if isinstance(stored, dict) and stored.get("metadata") and self.cache.get(MODEL_KIND, meta["namespace"], meta["name"]) is not None:
            # the next reconcile diffs against what we wrote (unless its DELETED event came meanwhile)
            self.cache.put(MODEL_KIND, stored)
        old_phase, new_phase = live.get("phase"), status.get("phase")
        if new_phase != old_phase and self.post_event is not None and _worth_an_event(old_phase, new_phase):
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
            message = f"{old_phase or 'New'} -> {new_phase}" + (f": {ready['message']}" if ready and ready.get("message") else "")
            self.post_event(body, "Warning" if new_phase == "Failed" else "Normal", new_phase, message[:1024])


OUTCOMES = ("Ready", "Failed")


def _worth_an_event(old_phase: str | None, new_phase: str | None) -> bool:
    """An Event when a model reaches an outcome or leaves one; the steps on the way (New ->
    Optimizing -> Deploying) are in its status and conditions: at scale they were two of every
    model's three Events (each a write the API server keeps an hour)."""
    return old_phase in OUTCOMES or new_phase in OUTCOMES


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

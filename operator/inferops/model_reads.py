"""What the reconciler reads beyond the API server's objects: each artifact's report.json and
tuning result, why a Job's container failed, and the smoke inference against the Service. Each is
read once where the answer cannot change, retried after PROBE_RETRY_SECONDS where it can, and run
on its own bounded pool (executors.py) so a slow store or a hung target holds up no other model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .api.outcomes import OPTIMIZER_CONTAINER
from .api.report import OptimizationReport, TuningReport
from .executors import run_in
from .reconcile.children import ModelRef
from .reconcile.plan import JobTermination, Observed, Plan, SmokeResult
from .reconcile.settings import PROBE_RETRY_SECONDS, REPORT_LIMIT_BYTES
from .reconcile.tenancy import published_digest
from .reconcile.tuning import TUNER_CONTAINER
from .reconciler_memory import ReportRead
from .storage.digest import artifact_digest


def read_report(artifact_uri: str, limit: int = REPORT_LIMIT_BYTES) -> OptimizationReport:
    """report.json of a committed artifact, refused unread above `limit` (a tenant's Job writes it)."""
    from .storage import read_small

    return OptimizationReport.model_validate_json(read_small(f"{artifact_uri}/report.json", limit))


def read_tuning(uri: str, limit: int = REPORT_LIMIT_BYTES) -> TuningReport:
    """A tuning Job's published TuningReport (tuning-<hash>.json beside the artifact), capped like report.json."""
    from .storage import read_small

    return TuningReport.model_validate_json(read_small(uri, limit))


def run_smoke(url: str, model_name: str, signature: Any, timeout_s: float = 10) -> SmokeResult:
    from .triton.probe import smoke_infer

    try:
        result = smoke_infer(url, model_name, signature, timeout_s=timeout_s)
    except Exception as exc:  # any failure is the answer: the deployment does not serve
        return SmokeResult(False, f"{type(exc).__name__}: {exc}")
    return SmokeResult(True, f"ok in {result.get('latency_ms', 0):.1f} ms")


class ModelReads:
    """Mixed into the Reconciler, whose kube, settings, pools and memory it uses."""

    async def _report(self, model: ModelRef, artifact_uri: str | None, job_seen: bool, job_name: str | None = None) -> ReportRead:
        """Read once per artifact: a committed report never changes (write-once), so a read report
        is kept; a failed read is tried again after PROBE_RETRY_SECONDS; a "nothing committed" seen
        before the hash's Job existed is read again once it does."""
        assert artifact_uri
        cached = self.memory.report(model.namespace, model.name, artifact_uri)
        if cached and (cached.report is not None or (time.monotonic() - cached.at < PROBE_RETRY_SECONDS and cached.job_seen == job_seen)):
            return cached
        from .storage import AccessDenied, NotFound

        try:
            report = await run_in(self.pools and self.pools.storage, read_report, artifact_uri)
            # The Job's own word (its termination message) against a report.json rewritten since.
            mismatch = await self._published_mismatch(model.namespace, job_name, artifact_uri, report) if job_seen and job_name else None
            read = ReportRead(time.monotonic(), job_seen, None if mismatch else report, mismatch)
        except (NotFound, AccessDenied) as exc:
            # S3 answers 403 for a missing key to a reader without s3:ListBucket: for the question
            # "is anything committed?" that is "no". A Job made on it cannot overwrite anything
            # (publishing is write-once); after the Job, it is a failed read like any other.
            read = ReportRead(time.monotonic(), job_seen, None, f"{type(exc).__name__}: {exc}", missing=True)
        except Exception as exc:
            read = ReportRead(time.monotonic(), job_seen, None, f"{type(exc).__name__}: {exc}")
        self.memory.remember_report(model.namespace, model.name, artifact_uri, read)
        return read

    async def _tuning_read(self, model: ModelRef, uri: str) -> tuple[TuningReport | None, str | None]:
        """A tuning Job's published result, read once (it never changes under its hashed name); a
        failed read is tried again after PROBE_RETRY_SECONDS, at the next event."""
        cached = self.memory.tuning(model.namespace, model.name, uri)
        if cached and (cached[1] is not None or time.monotonic() - cached[0] < PROBE_RETRY_SECONDS):
            return cached[1], cached[2]
        try:
            value, error = await run_in(self.pools and self.pools.storage, read_tuning, uri), None
        except Exception as exc:
            value, error = None, f"{type(exc).__name__}: {exc}"
        self.memory.remember_tuning(model.namespace, model.name, uri, (time.monotonic(), value, error))
        return value, error

    async def _tuning_termination(self, model: ModelRef, observed: Observed, job_name: str) -> JobTermination | None:
        """Why the tuning Job failed, read from its pods once per Job: a model that serves with the
        default batching after a failed tuning is reconciled on every Deployment event."""
        job = next((j for j in observed.jobs if j["metadata"]["name"] == job_name), {})
        uid = job.get("metadata", {}).get("uid") or job_name
        known, termination = self.memory.tuning_end(model.namespace, model.name, uid)
        if not known:
            termination = termination_of(await self.kube.list_job_pods(model.namespace, job_name), TUNER_CONTAINER)
            self.memory.remember_tuning_end(model.namespace, model.name, uid, termination)
        return termination

    async def _published_mismatch(self, namespace: str, job: str, artifact_uri: str, report: OptimizationReport) -> str | None:
        """The Job's own word against the store: the optimizer writes the digest of what it
        published to its termination message, and a report.json whose checksums say otherwise
        was rewritten since. None when they agree, or when the Job's pods are gone or say nothing
        (an older optimizer image): then the report read here is what the pull step is pinned to."""
        published = published_digest(await self.kube.list_job_pods(namespace, job))
        found = artifact_digest(report.checksums)
        if published is None or published == found:
            return None
        return (
            f"ArtifactTampered: report.json at {artifact_uri} lists files with digest {found}, but optimization Job {job} "
            f"published {published}: the artifact was changed after it was published; nothing of it is deployed"
        )

    async def _smoke_result(self, model: ModelRef, observed: Observed, plan: Plan) -> SmokeResult:
        """At most one smoke inference per model at a time, answered within smoke_timeout_s: a
        target that hangs fails this model's check and holds one thread, never other models'."""
        generation = int((observed.deployment or {}).get("metadata", {}).get("generation") or 0)
        key = (plan.status.get("artifactUri") or "", generation)
        cached = self.memory.smoke(model.namespace, model.name, key)
        if cached and (cached[1].ok or time.monotonic() - cached[0] < PROBE_RETRY_SECONDS):
            return cached[1]
        running = self.memory.smoke_running(model.namespace, model.name)
        if running is not None and not running.done():
            return SmokeResult(False, "the previous smoke inference has not answered yet (the target hangs)")
        timeout = self.settings.smoke_timeout_s
        future = asyncio.ensure_future(run_in(self.pools and self.pools.smoke, run_smoke, *plan.smoke_target, timeout_s=timeout / 3))
        self.memory.set_smoke_running(model.namespace, model.name, future)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            result = SmokeResult(False, f"no answer from {plan.smoke_target[0]} within {timeout:.0f} s")
        self.memory.remember_smoke(model.namespace, model.name, key, (time.monotonic(), result))
        return result


def termination_of(pods: list[dict[str, Any]], container: str = OPTIMIZER_CONTAINER) -> JobTermination | None:
    """How `container` (the optimizer, or the tuner) ended in the last of the Job's pods that
    terminated (a final exit code fails the Job at once, so that pod is the one that says why)."""
    ended = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") == container and terminated and terminated.get("exitCode"):
                ended.append((terminated.get("finishedAt") or "", int(terminated["exitCode"]), terminated.get("message") or ""))
    if not ended:
        return None
    _, code, message = max(ended)
    return JobTermination(code, message)

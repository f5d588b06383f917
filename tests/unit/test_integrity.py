"""The tracker's "Safe to share" integrity points in the pure core and the reconciler's memory:
write-once artifacts reused instead of re-made, no revision without its report, capped status,
the serving revision kept through failures, per-model memory that goes with the model."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import replace

import pytest

from inferops.api.report import OptimizationReport, TuningPoint, TuningReport
from inferops.api.tensors import BatchingConfig
from inferops.reconcile.plan import Observed, desired_state, invalid_spec_status
from inferops.reconcile.settings import PROBE_RETRY_SECONDS
from inferops.reconcile.status_limits import MESSAGE_LIMIT, bounded_status

from .test_reconcile import tuned, CPU, GPU, NOW, SETTINGS, committed, cond, current_job_name, deployment, job, kinds, model, spec

SERVING = {
    "artifactUri": "s3://artifacts/ml/digits/rev1",
    "endpoint": "http://digits-triton.ml.svc:8000",
    "report": {"artifactUri": "s3://artifacts/ml/digits/rev1", "modelName": "digits", "backend": "onnxruntime"},
    "conditions": [{"type": "Ready", "status": "True", "reason": "DeploymentReady", "lastTransitionTime": "t0"}],
}


def served_artifact(plan) -> str:
    return next(o for o in plan.apply if o["kind"] == "Deployment")["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"]


# -- point 7: a committed artifact is reused; a Job only where none is committed ----------


def test_without_a_job_the_artifact_is_looked_for_first():
    plan = desired_state(model(), Observed(GPU), SETTINGS, NOW)
    assert plan.needs_report, "a Job is made only once the store said nothing is committed for the hash"


def test_a_job_deleted_after_success_is_not_made_again():
    m = model(generation=1)
    plan = desired_state(m, tuned(m, Observed(GPU, report=committed(), deployment=deployment(2))), SETTINGS, NOW)
    assert "Job" not in kinds(plan), "the committed artifact is reused: no Job re-publishes over it"
    assert served_artifact(plan) == f"s3://artifacts/ml/digits/{current_job_name(m).rsplit('-', 1)[1]}"
    assert cond(plan, "Optimized")["reason"] == "ArtifactCommitted"
    assert plan.status["phase"] == "Ready"


def test_a_spec_reverted_to_an_earlier_hash_reuses_its_artifact():
    m = model(spec(optimization={"recipe": "none"}), generation=3)  # revision 1's spec again
    old_rev2_job = job("digits-opt-rev2", "Complete")
    plan = desired_state(m, tuned(m, Observed(GPU, jobs=[old_rev2_job], report=committed(), deployment=deployment(2), status=SERVING)), SETTINGS, NOW)
    assert "Job" not in kinds(plan) and plan.delete_jobs == ["digits-opt-rev2"]
    assert served_artifact(plan).endswith(current_job_name(m).rsplit("-", 1)[1])


def test_only_a_hash_with_nothing_committed_gets_a_job():
    m = model()
    plan = desired_state(m, Observed(GPU, report_error="NotFound: nothing at .../report.json", report_missing=True), SETTINGS, NOW)
    assert kinds(plan) == ["Job"] and plan.status["phase"] == "Optimizing"


def test_a_store_that_cannot_say_gets_no_job_and_says_why():
    plan = desired_state(model(), Observed(GPU, report_error="Unreachable: S3 endpoint unreachable", status=SERVING, deployment=deployment(2)), SETTINGS, NOW)
    assert "Job" not in kinds(plan)
    assert cond(plan, "Optimized")["reason"] == "ReportUnavailable" and "Unreachable" in cond(plan, "Optimized")["message"]
    assert served_artifact(plan) == SERVING["artifactUri"]


# -- point 8: no revision without its report -----------------------------------------------


def test_an_unreadable_report_keeps_the_previous_revision_serving():
    m = model(spec(optimization={"recipe": "prune"}), generation=2)
    observed = Observed(GPU, jobs=[job(current_job_name(m), "Complete")], report_error="StorageError: cannot read", deployment=deployment(2), status=SERVING)
    plan = desired_state(m, observed, SETTINGS, NOW)
    optimized = cond(plan, "Optimized")
    assert (optimized["status"], optimized["reason"]) == ("False", "ReportUnavailable")
    assert "cannot read" in optimized["message"] and "previous revision keeps serving" in optimized["message"]
    assert served_artifact(plan) == SERVING["artifactUri"], "not the new artifact with default batching"
    assert plan.status["artifactUri"] == SERVING["artifactUri"] and plan.status["endpoint"] == SERVING["endpoint"]
    assert plan.status["phase"] == "Optimizing" and cond(plan, "Ready")["status"] == "True"
    assert plan.retry_after == PROBE_RETRY_SECONDS, "read again by itself: no event may come"
    observed.report, observed.report_error = committed(f"s3://artifacts/ml/digits/{current_job_name(m).rsplit('-', 1)[1]}"), None
    assert served_artifact(desired_state(m, tuned(m, observed), SETTINGS, NOW)) != SERVING["artifactUri"], "once readable (and tuned), the new one"


def test_a_first_revision_without_its_report_deploys_nothing():
    m = model()
    plan = desired_state(m, Observed(GPU, jobs=[job(current_job_name(m), "Complete")], report_error="TooLarge: 100 MB"), SETTINGS, NOW)
    assert kinds(plan) == [] and "endpoint" not in plan.status
    assert (cond(plan, "Ready")["status"], cond(plan, "Ready")["reason"]) == ("False", "ReportUnavailable")


# -- point 9: what reaches status is capped ------------------------------------------------


def test_a_huge_error_message_is_truncated_with_a_note():
    m = model()
    observed = Observed(GPU, jobs=[job(current_job_name(m), "Complete")], report_error="ValidationError: " + "x" * 200_000)
    status = bounded_status(desired_state(m, observed, SETTINGS, NOW).status)
    message = cond(type("P", (), {"status": status}), "Optimized")["message"]
    assert len(message) <= MESSAGE_LIMIT < 32768 and "truncated" in message


def test_a_long_tuning_report_is_shortened_for_status_and_says_where_the_rest_is():
    chosen = BatchingConfig(max_batch_size=8)
    points = [TuningPoint(max_batch_size=8, max_queue_delay_microseconds=i, instance_count=1, throughput_per_s=1.0, error="e" * 300) for i in range(5000)]
    report = OptimizationReport(artifact_uri="s3://a/x", model_name="digits", backend="onnxruntime", notes=["n" * 100_000] * 50,
                                checksums={f"f{i}": "0" * 64 for i in range(5000)},
                                tuning=TuningReport(chosen=chosen, throughput_per_s=1, p99_ms=1, latency_objective_ms=1, measurements=5000, grid_size=5000, points=points))
    m = model()
    observed = tuned(m, Observed(GPU, jobs=[job(current_job_name(m), "Complete")], report=report))
    observed.tuning = report.tuning  # the tuning Job's published choice, with every point it measured
    status = desired_state(m, observed, SETTINGS, NOW).status
    assert len(json.dumps(status)) > 2_000_000, "the API server would refuse this write, every time"
    bounded = bounded_status(status)
    assert len(json.dumps(bounded)) < 200_000
    assert any("tuning points" in n and "report.json at" in n for n in bounded["report"]["notes"])
    assert bounded["report"]["tuning"]["chosen"] == status["report"]["tuning"]["chosen"]
    OptimizationReport.model_validate(bounded["report"])  # still a report: the next reconcile reads it back
    assert bounded_status(bounded) == bounded, "stable: stored == desired, no write every reconcile"


# -- point 10: the serving revision stays in status through every failure ----------------


@pytest.mark.parametrize("failure", ["recipe-refused", "invalid-spec"])
def test_failures_after_a_served_revision_keep_its_artifact_and_endpoint(failure):
    if failure == "recipe-refused":
        status = desired_state(model(spec(optimization={"recipe": "tensorrt"})), Observed(CPU, status=SERVING), SETTINGS, NOW).status
    else:
        status = invalid_spec_status(SERVING, 4, "spec.serving: bad", NOW)
    assert status["phase"] == "Failed"
    assert status["artifactUri"] == SERVING["artifactUri"] and status["endpoint"] == SERVING["endpoint"]


# -- point 9/12: the reconciler's memory per model: bounded, forgotten, smoke bounded ----


class _NoKube:
    pass


def _reconciler(**settings):
    from inferops.reconciler import Reconciler

    return Reconciler(_NoKube(), replace(SETTINGS, **settings))


def test_an_oversized_report_is_refused_unread(tmp_path):
    reconciler = _reconciler()
    artifact = tmp_path / "ml" / "digits" / "h1"
    artifact.mkdir(parents=True)
    with open(artifact / "report.json", "wb") as f:
        f.truncate(100 * 1024 * 1024)
    read = asyncio.run(reconciler._report(model(), f"file://{artifact}", True))
    assert read.report is None and not read.missing
    assert "TooLarge" in read.error and "104857600 bytes" in read.error and "it was not read" in read.error


def test_what_is_kept_per_model_is_bounded_and_goes_with_the_model(tmp_path):
    reconciler = _reconciler()
    m = model()
    for i in range(10):
        asyncio.run(reconciler._report(m, f"file://{tmp_path}/rev{i}", True))
    assert reconciler.memory.entries("ml", "digits") == 4, "a few revisions per model, not every one ever seen"
    reconciler._locks[("ml", "digits")]  # a reconcile made it
    reconciler.forget("ml", "digits")
    assert reconciler.memory.entries("ml", "digits") == 0 and ("ml", "digits") not in reconciler._locks


def test_tuning_results_read_are_kept_per_model_bounded_and_go_with_the_model(tmp_path):
    reconciler = _reconciler()
    m = model()
    for i in range(10):
        value, error = asyncio.run(reconciler._tuning_read(m, f"file://{tmp_path}/rev{i}/tuning-{i}.json"))
        assert value is None and "NotFound" in error
    assert reconciler.memory.entries("ml", "digits") == 4, "a few tunings per model, not every one ever read"
    reconciler.forget("ml", "digits")
    assert reconciler.memory.entries("ml", "digits") == 0


def test_a_deleted_model_is_forgotten_when_its_reconcile_ends():
    from inferops.reconciler import Reconciler

    class GoneKube:
        async def get_model(self, namespace, name):
            return None

    reconciler = Reconciler(GoneKube(), SETTINGS)
    reconciler.memory.remember_smoke("ml", "digits", ("x", 1), (0.0, None))
    asyncio.run(reconciler.reconcile("ml", "digits"))
    assert len(reconciler.memory) == 0 and not reconciler._locks


@pytest.fixture
def hanging_server():
    """A smoke target that hangs: it answers a status line, then one byte of a header every 0.2 s
    and never ends it, so no per-read client timeout ever fires (only a deadline helps)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow")
            while not stop.wait(0.2):
                conn.sendall(b"w")
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", stop
    stop.set()
    thread.join()
    server.close()


def test_a_hanging_smoke_target_fails_its_model_in_time_and_blocks_no_other(hanging_server, tmp_path):
    from inferops.api.tensors import Signature, TensorSpec
    from inferops.reconcile.plan import Plan

    reconciler = _reconciler(smoke_timeout_s=2.0)
    signature = Signature(inputs=[TensorSpec(name="x", datatype="FP32", dims=[4])], outputs=[TensorSpec(name="y", datatype="FP32", dims=[2])])
    url, stop = hanging_server
    hung = Plan(apply=[], delete_jobs=[], status={"artifactUri": "file:///a"}, smoke_target=(url, "digits", signature))
    (tmp_path / "report.json").write_text(json.dumps({"artifactUri": "x", "modelName": "other", "backend": "onnxruntime"}))

    async def scenario():
        started = time.monotonic()
        smoke = asyncio.ensure_future(reconciler._smoke_result(model(), Observed(GPU), hung))
        await asyncio.sleep(0.2)
        other = await reconciler._report(replace(model(), name="other"), f"file://{tmp_path}", True)
        other_took = time.monotonic() - started
        result = await smoke
        took = time.monotonic() - started
        again_started = time.monotonic()
        reconciler.memory._models[("ml", "digits")].smokes.clear()  # as after PROBE_RETRY_SECONDS
        again = await reconciler._smoke_result(model(), Observed(GPU), hung)
        stop.set()  # the hung thread ends with its connection (asyncio.run waits for it)
        return other, other_took, result, took, again, time.monotonic() - again_started

    other, other_took, result, took, again, again_took = asyncio.run(scenario())
    assert other.report is not None and other_took < 1.5, "another model's read went on meanwhile"
    assert not result.ok and "within 2 s" in result.message and took < 3.5
    assert not again.ok and "has not answered yet" in again.message and again_took < 0.5, "one smoke per model in flight, never a pile"

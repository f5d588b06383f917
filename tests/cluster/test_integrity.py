"""The tracker's "Safe to share" integrity points against the real API server, Job controller and
kwok (whose optimizer Jobs publish through devcluster/kwok_artifacts.py, write-once like the
optimizer): a committed artifact is never re-made, no revision is rendered without its report,
and one tenant's oversized report.json does not stop anyone else's model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from test_operator import condition, get, names, poll, wait_phase
from test_safe_to_share import CLASS, manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def hardware_class(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=CLASS)
    yield


def artifact_dir(operator, namespace: str, name: str, body: dict) -> Path:
    from inferops.api.hardware_class import HardwareClassSpec
    from inferops.api.inference_model import InferenceModelSpec
    from inferops.reconcile.naming import optimization_hash

    spec_hash = optimization_hash(InferenceModelSpec.model_validate(body["spec"]), HardwareClassSpec.model_validate(yaml.safe_load(CLASS)["spec"]))
    return operator.artifacts / namespace / name / spec_hash


def served(cluster, namespace: str, name: str) -> str:
    return get(cluster, namespace, "deployment", f"{name}-triton")["spec"]["template"]["metadata"]["annotations"]["inferops.dev/artifact"]


def ready_at_generation(cluster, namespace: str, name: str, timeout: float = 90) -> dict:
    return poll(f"{name} Ready at its generation", lambda: (m := get(cluster, namespace, "inferencemodel", name)).get("status", {}).get("phase") == "Ready"
                and m["status"].get("observedGeneration") == m["metadata"]["generation"] and m, timeout=timeout)


def test_a_deleted_job_or_a_reverted_spec_reuses_the_committed_artifact(cluster, namespace, operator):
    rev1 = yaml.safe_load(manifest("once"))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(rev1))
    model = wait_phase(cluster, namespace, "once", "Ready")
    marker = artifact_dir(operator, namespace, "once", rev1) / "report.json"
    committed = (marker.stat().st_mtime_ns, marker.read_bytes())
    assert served(cluster, namespace, "once") == model["status"]["artifactUri"]

    cluster.kubectl("delete", "jobs", "--all", "-n", namespace)  # what a TTL or a cleanup does
    cluster.kubectl("annotate", "inferencemodel", "once", "-n", namespace, "touch=1")  # an event, for certain
    time.sleep(5)
    assert names(cluster, namespace, "jobs", "once") == [], "no Job re-made for a committed artifact"
    assert (marker.stat().st_mtime_ns, marker.read_bytes()) == committed, "the served report.json untouched"
    assert get(cluster, namespace, "inferencemodel", "once")["status"]["phase"] == "Ready"

    rev2 = yaml.safe_load(manifest("once", uri="s3://models/once/v2.onnx"))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(rev2))
    model = ready_at_generation(cluster, namespace, "once")
    assert model["status"]["artifactUri"].endswith(artifact_dir(operator, namespace, "once", rev2).name)

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(rev1))  # reverted
    model = ready_at_generation(cluster, namespace, "once")
    assert model["status"]["artifactUri"].endswith(artifact_dir(operator, namespace, "once", rev1).name)
    assert served(cluster, namespace, "once") == model["status"]["artifactUri"]
    assert model["status"]["jobName"] not in names(cluster, namespace, "jobs", "once"), "revision 1's artifact reused, no Job"
    assert condition(model, "Optimized")["reason"] == "ArtifactCommitted"
    assert (marker.stat().st_mtime_ns, marker.read_bytes()) == committed


def test_an_unreadable_report_keeps_the_previous_revision_until_it_can_be_read(cluster, namespace, operator):
    rev1 = yaml.safe_load(manifest("late"))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(rev1))
    first = wait_phase(cluster, namespace, "late", "Ready")["status"]

    rev2 = yaml.safe_load(manifest("late", uri="s3://models/late/v2.onnx"))
    marker = artifact_dir(operator, namespace, "late", rev2) / "report.json"
    marker.parent.mkdir(parents=True)
    good = json.dumps({"artifactUri": f"file://{marker.parent}", "modelName": "late", "backend": "onnxruntime", "notes": ["revision 2"]})
    marker.write_text(good[:20])  # torn: the fault
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(rev2))
    model = poll("ReportUnavailable", lambda: (m := get(cluster, namespace, "inferencemodel", "late"))["status"].get("observedGeneration") == 2
                 and condition(m, "Optimized")["reason"] == "ReportUnavailable" and m)
    assert "previous revision keeps serving" in condition(model, "Optimized")["message"]
    assert {k: model["status"].get(k) for k in ("artifactUri", "endpoint")} == {k: first[k] for k in ("artifactUri", "endpoint")}
    assert served(cluster, namespace, "late") == first["artifactUri"], "no revision rendered without its report"
    assert condition(model, "Ready")["status"] == "True" and model["status"]["phase"] != "Ready"

    marker.write_text(good)  # readable again: picked up by the operator's own retry, no event needed
    model = ready_at_generation(cluster, namespace, "late", timeout=75)
    assert model["status"]["report"]["notes"] == ["revision 2"] and served(cluster, namespace, "late") == model["status"]["artifactUri"]


def _peak_rss_kib(pid: int) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))


def test_a_100_mb_report_in_another_namespace_stops_no_other_model(cluster, namespace, operator):
    other = f"{namespace}-big"
    cluster.create_namespace(other)
    try:
        big = yaml.safe_load(manifest("big"))
        marker = artifact_dir(operator, other, "big", big) / "report.json"
        marker.parent.mkdir(parents=True)
        with open(marker, "wb") as f:
            f.truncate(100 * 1024 * 1024)
        peak = _peak_rss_kib(operator.proc.pid)
        cluster.kubectl("apply", "-n", other, "-f", "-", input=json.dumps(big))
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("small"))
        wait_phase(cluster, namespace, "small", "Ready")
        model = poll("the refusal", lambda: (m := get(cluster, other, "inferencemodel", "big")).get("status", {}).get("conditions")
                     and condition(m, "Optimized")["reason"] == "ReportUnavailable" and m)
        message = condition(model, "Optimized")["message"]
        assert "104857600 bytes, over the limit" in message and "not read" in message, message
        assert _peak_rss_kib(operator.proc.pid) - peak < 50 * 1024, "the report was not read into memory"
        assert names(cluster, other, "deployments", "big") == [] and names(cluster, other, "jobs", "big") == []
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_inferops_gc_keeps_live_models_last_revisions_and_drops_deleted_models(cluster, namespace, tmp_path):
    """The command as an admin runs it: models listed from the API server, a root of its own here."""
    import os
    import subprocess
    import sys

    root = tmp_path / "artifacts"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("kept"))
    wait_phase(cluster, namespace, "kept", "Ready")
    serving = get(cluster, namespace, "inferencemodel", "kept")["status"]["artifactUri"].rsplit("/", 1)[1]
    for model, h, hours_ago in [("kept", serving, 4), ("kept", "r1", 3), ("kept", "r2", 2.5), ("kept", "r3", 2), ("gone", "g1", 2)]:
        (root / namespace / model / h).mkdir(parents=True)
        (root / namespace / model / h / "report.json").write_text("{}")
        os.utime(root / namespace / model / h / "report.json", (time.time() - hours_ago * 3600,) * 2)
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    run = subprocess.run([sys.executable, "-m", "inferops.cli", "gc", "--root", f"file://{root}", "--keep", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    # The last two (r3, r2) and the one it serves, though older; r1 goes.
    assert sorted(p.name for p in (root / namespace / "kept").iterdir()) == sorted({serving, "r2", "r3"}), run.stdout
    assert list((root / namespace / "gone").iterdir()) == [], "a deleted model's artifacts are collected"
    assert f"deleted file://{root}/{namespace}/gone/g1" in run.stdout

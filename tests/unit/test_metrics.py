"""The operator's Prometheus collectors, read back through the exposition format and over HTTP."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferops.devcluster.cluster import free_port
from inferops.metrics import Metrics, resource_of, write_verb


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


async def _reconcile(metrics: Metrics, exc: BaseException | None = None) -> None:
    async with metrics.reconcile():
        if exc is not None:
            raise exc


def test_reconciles_are_counted_by_result_timed_and_errors_typed():
    m = Metrics()
    asyncio.run(_reconcile(m))
    asyncio.run(_reconcile(m))
    with pytest.raises(ApiException):
        asyncio.run(_reconcile(m, ApiException(status=409, reason="Conflict")))
    with pytest.raises(ValueError):
        asyncio.run(_reconcile(m, ValueError("bad")))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_reconcile(m, asyncio.CancelledError()))
    got = samples(m)
    assert got[("inferops_reconciles_total", (("result", "ok"),))] == 2
    assert got[("inferops_reconciles_total", (("result", "error"),))] == 2
    assert got[("inferops_reconciles_total", (("result", "cancelled"),))] == 1
    assert got[("inferops_reconcile_errors_total", (("type", "ApiException(409)"),))] == 1
    assert got[("inferops_reconcile_errors_total", (("type", "ValueError"),))] == 1
    assert not any(name == "inferops_reconcile_errors_total" and dict(labels)["type"] == "CancelledError" for name, labels in got)
    assert got[("inferops_reconcile_duration_seconds_count", ())] == 5
    assert got[("inferops_reconcile_duration_seconds_bucket", (("le", "+Inf"),))] == 5


def test_writes_by_resource_and_verb():
    m = Metrics()
    m.write("PATCH", "/apis/apps/v1/namespaces/ml/deployments/d-triton", "application/apply-patch+yaml")
    m.write("PATCH", "/apis/apps/v1/namespaces/ml/deployments/d-triton", "application/apply-patch+yaml")
    m.write("PATCH", "/apis/inferops.dev/v1alpha1/namespaces/ml/inferencemodels/d/status", "application/merge-patch+json")
    m.write("DELETE", "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/d-triton", "application/json")
    got = samples(m)
    assert got[("inferops_api_writes_total", (("resource", "deployments"), ("verb", "apply")))] == 2
    assert got[("inferops_api_writes_total", (("resource", "inferencemodels/status"), ("verb", "patch")))] == 1
    assert got[("inferops_api_writes_total", (("resource", "horizontalpodautoscalers"), ("verb", "delete")))] == 1


@pytest.mark.parametrize(
    "path, resource",
    [
        ("/api/v1/namespaces/ml/services/x", "services"),
        ("/apis/batch/v1/namespaces/ml/jobs?labelSelector=a", "jobs"),
        ("/apis/inferops.dev/v1alpha1/hardwareclasses/l4", "hardwareclasses"),
        ("/api/v1/namespaces/ml", "namespaces"),
    ],
)
def test_resource_of_api_paths(path, resource):
    assert resource_of(path) == resource


def test_write_verbs():
    assert [write_verb("POST", ""), write_verb("PUT", ""), write_verb("PATCH", "application/json-patch+json")] == ["create", "update", "patch"]


def test_phase_gauge_counts_each_model_once_in_its_latest_phase():
    m = Metrics()
    assert samples(m)[("inferops_models", (("phase", "Ready"),))] == 0
    m.set_phase("a", "one", "Optimizing")
    m.set_phase("a", "two", "Optimizing")
    m.set_phase("b", "one", "Ready")
    m.set_phase("a", "one", "Ready")
    got = samples(m)
    assert got[("inferops_models", (("phase", "Optimizing"),))] == 1
    assert got[("inferops_models", (("phase", "Ready"),))] == 2
    m.set_phase("b", "one", None)
    m.set_phase("a", "gone", None)  # never seen: nothing to forget
    got = samples(m)
    assert got[("inferops_models", (("phase", "Ready"),))] == 1
    assert sum(v for (name, _), v in got.items() if name == "inferops_models") == 2


def test_served_over_http_and_a_taken_port_does_not_stop_the_operator():
    m = Metrics()
    m.set_phase("a", "one", "Failed")
    port = free_port()
    server = m.serve(port, "127.0.0.1")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'inferops_models{phase="Failed"} 1.0' in body
        assert m.serve(port, "127.0.0.1") is None  # already bound: logged, not raised
    finally:
        server.shutdown()
    assert m.serve(0) is None

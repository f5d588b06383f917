"""The operator's Prometheus metrics: reconciles, their durations and errors, API writes, models per phase."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import AsyncIterator

from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

log = logging.getLogger("inferops.metrics")
PHASES = ("Pending", "Optimizing", "Deploying", "Ready", "Failed")


def error_type(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"ApiException({exc.status})"
    return type(exc).__name__


def resource_of(path: str) -> str:
    """`deployments`, `inferencemodels/status`, `hardwareclasses` from an API path."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    return "/".join(parts[0:1] + parts[2:3]) if parts else "namespaces"


def write_verb(method: str, content_type: str) -> str:
    if method == "PATCH":
        return "apply" if content_type == "application/apply-patch+yaml" else "patch"
    return {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter("inferops_reconciles", "Reconciles of InferenceModels, by result.", ["result"], registry=r)
        self.duration = Histogram(
            "inferops_reconcile_duration_seconds", "Time one reconcile takes, model lock held.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r,
        )
        self.errors = Counter("inferops_reconcile_errors", "Reconciles that raised, by error type.", ["type"], registry=r)
        self.writes = Counter("inferops_api_writes", "Writes to the Kubernetes API, by resource and verb.", ["resource", "verb"], registry=r)
        self.models = Gauge("inferops_models", "InferenceModels this operator reconciles, by phase.", ["phase"], registry=r)
        self._phases: dict[tuple[str, str], str] = {}
        for phase in PHASES:
            self.models.labels(phase).set(0)

    @contextlib.asynccontextmanager
    async def reconcile(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        result = "ok"
        try:
            yield
        except Exception as exc:
            result = "error"
            self.errors.labels(error_type(exc)).inc()
            raise
        except BaseException:  # cancelled at shutdown: not an error of the reconcile
            result = "cancelled"
            raise
        finally:
            self.duration.observe(time.perf_counter() - started)
            self.reconciles.labels(result).inc()

    def coalesced(self) -> None:
        """A reconcile request answered by one already queued for the same model."""
        self.reconciles.labels("coalesced").inc()

    def write(self, method: str, path: str, content_type: str) -> None:
        self.writes.labels(resource_of(path), write_verb(method, content_type)).inc()

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        if phase is None:
            self._phases.pop((namespace, name), None)
        else:
            self._phases[(namespace, name)] = phase
        counts = dict.fromkeys(PHASES, 0) | {p: 0 for p in self._phases.values()}
        for p in self._phases.values():
            counts[p] += 1
        for p, n in counts.items():
            self.models.labels(p).set(n)

    def serve(self, port: int, address: str = "0.0.0.0"):
        """Start the /metrics HTTP server in a thread; returns the server (None when port is 0)."""
        if not port:
            return None
        try:
            server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:  # metrics are not worth stopping the reconciles for
            log.error("metrics not served: cannot listen on %s:%d: %s", address, port, exc)
            return None
        return server


METRICS = Metrics()
ProcessCollector(registry=METRICS.registry)  # RSS, CPU and open files of the operator process

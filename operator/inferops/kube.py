"""The few Kubernetes API calls the operator makes, on the official client.

Writes go through server-side apply with one field manager, and only when the desired object
differs from what was last applied (a hash kept in an annotation): a reconcile with nothing to
change makes no write at all.
"""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .api.common import GROUP, VERSION
from .executors import run_in
from .metrics import METRICS
from .reconcile.naming import APPLIED_HASH, MODEL_LABEL, canonical_hash
from .reconcile.settings import FIELD_MANAGER

_PATHS = {
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{namespace}/jobs",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers",
}
MODELS = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/inferencemodels"
CLASSES = f"/apis/{GROUP}/{VERSION}/hardwareclasses"
NAMESPACES = "/api/v1/namespaces"


def list_path(api_version: str, kind: str) -> str:
    """All namespaces' objects of an owned kind."""
    return _PATHS[(api_version, kind)].replace("/namespaces/{namespace}", "")


def load_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


class Kube:
    def __init__(self, client: ApiClient | None = None, request_timeout: float = 30, executor: concurrent.futures.Executor | None = None):
        self.client = client or ApiClient()
        self.timeout = request_timeout
        self.executor = executor  # the operator's API pool (executors.py); asyncio's default when None

    # -- raw ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None, content_type: str = "application/json") -> Any:
        method, url, headers, body, post = self.client.param_serialize(
            method, path, query_params=query or [], header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"],
        )
        response = self.client.call_api(method, url, headers, body, post, _request_timeout=self.timeout)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return json.loads(response.data) if response.data else None

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET":
            METRICS.write(method, path, kwargs.get("content_type", "application/json"))
        return await run_in(self.executor, self._call, method, path, **kwargs)

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- typed helpers -----------------------------------------------------------------

    async def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(f"{MODELS.format(namespace=namespace)}/{name}")

    async def get_hardware_class(self, name: str) -> dict[str, Any] | None:
        return await self.get(f"{CLASSES}/{name}")

    async def list_owned(self, api_version: str, kind: str, namespace: str, model: str) -> list[dict[str, Any]]:
        path = _PATHS[(api_version, kind)].format(namespace=namespace)
        data = await self.call("GET", path, query=[("labelSelector", f"{MODEL_LABEL}={model}")])
        return data.get("items", [])

    async def list_job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The pods the Job controller made for `job` (it labels them with the Job's name)."""
        data = await self.call("GET", f"/api/v1/namespaces/{namespace}/pods", query=[("labelSelector", f"batch.kubernetes.io/job-name={job}")])
        return data.get("items", [])

    async def get_owned(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(f"{_PATHS[(api_version, kind)].format(namespace=namespace)}/{name}")

    async def apply_if_changed(self, desired: dict[str, Any], live: dict[str, Any] | None = None, *, read_live: bool = True) -> dict[str, Any] | None:
        """Server-side apply `desired` unless the live object already carries its hash. Returns
        the object as written, or None when nothing was written. read_live=False: the caller
        has just seen the object absent when `live` is None, so no GET is made for it."""
        desired = json.loads(json.dumps(desired))
        digest = canonical_hash(desired, 16)
        meta = desired["metadata"]
        path = f"{_PATHS[(desired['apiVersion'], desired['kind'])].format(namespace=meta['namespace'])}/{meta['name']}"
        if live is None and read_live:
            live = await self.get(path)
        if live is not None and (live["metadata"].get("annotations") or {}).get(APPLIED_HASH) == digest:
            return None
        meta.setdefault("annotations", {})[APPLIED_HASH] = digest
        return await self.call(
            "PATCH", path, body=desired, content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )

    async def apply_fields(self, partial: dict[str, Any], field_manager: str) -> None:
        """Server-side apply of a partial object under another field manager (ownership hand-over)."""
        meta = partial["metadata"]
        path = f"{_PATHS[(partial['apiVersion'], partial['kind'])].format(namespace=meta['namespace'])}/{meta['name']}"
        await self.call("PATCH", path, body=partial, content_type="application/apply-patch+yaml", query=[("fieldManager", field_manager), ("force", "true")])

    async def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            await self.call("DELETE", f"{_PATHS[(api_version, kind)].format(namespace=namespace)}/{name}")
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_job(self, namespace: str, name: str) -> None:
        path = f"{_PATHS[('batch/v1', 'Job')].format(namespace=namespace)}/{name}"
        try:
            await self.call("DELETE", path, body={"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_model_status(self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None) -> dict[str, Any] | None:
        """Merge-patch the status; returns the model as stored after the write."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.call(
            "PATCH", f"{MODELS.format(namespace=namespace)}/{name}/status", body=body, content_type="application/merge-patch+json",
        )

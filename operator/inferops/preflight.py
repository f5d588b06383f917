"""First-run checks of the commands that need a cluster: one line a person can act on, never a
traceback and never a process that keeps running with nothing to do.

Each check answers in seconds: a configured cluster, a reachable API server that accepts the
credentials, and the InferOps API (the CRDs) served.
"""

from __future__ import annotations

import json
import os

from .api.common import GROUP, VERSION

GET_A_CLUSTER = "start a local one with `inferops dev up --kubeconfig ~/.kube/config`, or set KUBECONFIG"
INSTALL_CRDS = "install them with `kubectl apply --server-side -f crds/` (or `helm install inferops charts/inferops`)"
RESOURCES = ("inferencemodels", "hardwareclasses")


class PreflightError(Exception):
    """What is missing, and how to get it, in one line."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kubeconfig_hint() -> str:
    kubeconfig = os.environ.get("KUBECONFIG")
    return f"KUBECONFIG={kubeconfig}" if kubeconfig else "no KUBECONFIG and ~/.kube/config"


def _load_config():
    import kubernetes
    from kubernetes.config.config_exception import ConfigException

    from .kube import load_config

    try:
        load_config()  # the same resolution as the operator's own: in-cluster, then kubeconfig
    except (ConfigException, OSError, ValueError) as exc:
        raise PreflightError(f"no usable Kubernetes cluster configured ({_kubeconfig_hint()}: {_one_line(exc)}); {GET_A_CLUSTER}") from None
    except Exception as exc:  # a malformed kubeconfig: yaml, base64, certificate errors
        raise PreflightError(f"the kubeconfig could not be read ({_kubeconfig_hint()}: {type(exc).__name__}: {_one_line(exc)}); {GET_A_CLUSTER}") from None
    config = kubernetes.client.Configuration.get_default_copy()
    config.retries = False  # one answer in seconds, not urllib3's retries of a dead address
    return config


def _get(client, path: str, timeout: float):
    """GET path; (status, body or None). Connection failures raise PreflightError."""
    import urllib3

    host = client.configuration.host
    try:
        request = client.param_serialize("GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        response = client.call_api(*request, _request_timeout=timeout)
        response.read()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PreflightError(f"cannot reach the Kubernetes API server at {host} ({_one_line(reason)}); is the cluster running? {GET_A_CLUSTER}") from None
    body = None
    if response.data:
        try:
            body = json.loads(response.data)
        except ValueError:
            body = None
    return response.status, body


def check_cluster(timeout: float = 5) -> None:
    """Raise PreflightError unless a cluster is configured, reachable, and serves the InferOps CRDs."""
    import kubernetes

    config = _load_config()
    with kubernetes.client.ApiClient(config) as client:
        host = config.host
        status, _ = _get(client, "/version", timeout)
        if status in (401, 403):
            raise PreflightError(f"the Kubernetes API server at {host} refused the credentials ({status}); check the kubeconfig's user")
        if status != 200:
            raise PreflightError(f"the Kubernetes API server at {host} answered /version with HTTP {status}")
        status, body = _get(client, f"/apis/{GROUP}/{VERSION}", timeout)
        served = {r.get("name") for r in (body or {}).get("resources", [])} if status == 200 else set()
        missing = [r for r in RESOURCES if r not in served]
        if missing:
            raise PreflightError(f"the InferOps CRDs ({', '.join(f'{r}.{GROUP}' for r in missing)}) are not installed in the cluster at {host}; {INSTALL_CRDS}")

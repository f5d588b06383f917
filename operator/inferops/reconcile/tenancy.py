"""What the reconciler reads for tenancy, reduced to what the core needs: a namespace's labels
(for a HardwareClass's namespaceSelector) and the digest an optimization Job says it published."""

from __future__ import annotations

from typing import Any

from ..api.outcomes import OPTIMIZER_CONTAINER, PUBLISHED_PREFIX


def published_digest(pods: list[dict[str, Any]]) -> str | None:
    """The digest the optimizer wrote to its termination message when it succeeded."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            message = (terminated.get("message") or "").strip()
            if status.get("name") == OPTIMIZER_CONTAINER and terminated.get("exitCode") == 0 and message.startswith(PUBLISHED_PREFIX):
                return message.removeprefix(PUBLISHED_PREFIX).split()[0]
    return None


def namespace_labels(namespace: dict[str, Any] | None, name: str) -> dict[str, str] | None:
    """A namespace's labels; the API server sets kubernetes.io/metadata.name on every one."""
    if namespace is None:
        return None
    return {"kubernetes.io/metadata.name": name, **(namespace["metadata"].get("labels") or {})}

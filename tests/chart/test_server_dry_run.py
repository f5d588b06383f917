"""Every object the chart renders is accepted by the real API server, Pod Security "restricted" included."""

from __future__ import annotations

import pytest
import yaml

from .conftest import apply_crds, render
from .test_render import ALL_ON

pytestmark = pytest.mark.cluster

RESTRICTED = ("pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted")


@pytest.fixture(scope="module")
def crds(cluster):
    apply_crds(cluster)


def _dry_run(cluster, namespace: str, docs: list[dict]):
    text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    return cluster.kubectl("apply", "--dry-run=server", "--server-side", "--field-manager=chart-test", "-n", namespace, "-f", "-", input=text, check=False)


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "all-on"])
def test_every_rendered_object_passes_server_dry_run(cluster, crds, namespace, helm, values):
    cluster.kubectl("label", "namespace", namespace, *RESTRICTED)
    if "watchNamespaces" in values:  # its RoleBindings live there: a namespace that exists
        values = {**values, "watchNamespaces": f"{{{namespace}}}"}
    docs = render(helm, values, namespace=namespace, release=f"dry-{namespace}")
    result = _dry_run(cluster, namespace, docs)
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if "(server dry run)" in line]) == len(docs), result.stdout
    assert "PodSecurity" not in result.stderr, result.stderr


def test_pod_security_warning_is_seen_when_violated(cluster, crds, namespace, helm):
    """The check above can fail: a container keeping its capabilities draws the warning."""
    cluster.kubectl("label", "namespace", namespace, *RESTRICTED)
    (deployment,) = [d for d in render(helm, namespace=namespace) if d["kind"] == "Deployment"]
    del deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
    result = _dry_run(cluster, namespace, [deployment])
    assert result.returncode == 0, result.stderr
    assert 'would violate PodSecurity "restricted:latest"' in result.stderr and "capabilities" in result.stderr

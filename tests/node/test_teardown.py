"""Stopping a cluster with a real node leaves the host exactly as it was. Its own module, so
the module-scoped node of test_real_node is gone before this one starts (one per host)."""

from __future__ import annotations

import pytest

from inferops.devcluster import hoststate
from inferops.devcluster.node import NODE_IP

from .conftest import sigterm_as_interrupt, start_real_cluster
from .test_real_node import apply, pod, wait_ready

pytestmark = [pytest.mark.node, pytest.mark.slow]


def test_teardown_leaves_the_host_as_it_was(tmp_path):
    before = hoststate.snapshot(extra_roots=[tmp_path])
    with sigterm_as_interrupt():
        _run_and_stop(tmp_path)
    assert hoststate.compare(before, hoststate.snapshot(extra_roots=[tmp_path])) == []
    # The image store goes too (GBs once the local images are in): the next start imports again.
    nodes = tmp_path / "cluster" / "nodes"
    assert [n.name for n in nodes.iterdir()] and not [n for n in nodes.iterdir() if (n / "containerd").exists()]


def _run_and_stop(tmp_path) -> None:
    before = hoststate.snapshot(extra_roots=[tmp_path])
    cluster = start_real_cluster(tmp_path / "cluster")
    try:
        node = cluster.nodes[0]
        cluster.create_namespace("teardown")
        # State that teardown must undo: a running sandbox (netns, veth, mounts, cgroups) and a
        # Service (kube-proxy chains).
        apply(cluster, "teardown", pod("web", node.images["inferops-ok"], ["serve", "8080"], {"app": "web"}))
        apply(cluster, "teardown", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        wait_ready(cluster, "teardown", "web")
        during = hoststate.compare(before, hoststate.snapshot(extra_roots=[tmp_path]))
        # The snapshot sees the node: its bridge and routes, its mounts, its chains.
        assert any(NODE_IP in d or "inferops0" in d for d in during), during
        assert any(d.startswith("mounts: new") for d in during), during
        assert any(":KUBE-SERVICES" in d for d in during), during
    finally:
        cluster.stop()

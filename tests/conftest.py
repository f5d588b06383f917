"""Shared fixtures. `cluster` is the real control plane the cluster tests run against:
the local one built from upstream sources (default), kind through pytest-kind
(`--cluster=kind`), or the cluster of the current KUBECONFIG (`--cluster=existing`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from inferops.devcluster.cluster import Cluster, LocalCluster
from prebuild import build_before_tests

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=("local", "kind", "existing"),
        default=os.environ.get("INFEROPS_TEST_CLUSTER", "local"),
        help="which Kubernetes the cluster tests use (default: the local control plane)",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    build_before_tests(session)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    mode = request.config.getoption("--cluster")
    if mode == "local":
        local = LocalCluster(tmp_path_factory.mktemp("cluster"))
        local.start()
        try:
            yield local
        finally:
            local.stop()
    elif mode == "kind":
        from pytest_kind import KindCluster

        kind = KindCluster("inferops-test")
        kind.create()
        try:
            yield Cluster(kind.kubeconfig_path)
        finally:
            kind.delete()
    else:
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        yield Cluster(kubeconfig)


@pytest.fixture
def namespace(cluster: Cluster):
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def fake_gpu_nodes(cluster: Cluster) -> None:
    if not cluster.has_fake_gpu_nodes():
        pytest.skip("needs the kwok GPU nodes of the local control plane")

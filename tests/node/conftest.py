"""A local control plane with one real node (containerd, kubelet, kube-proxy) on this host.

Outside CI a host that cannot run containers skips these tests, naming why; in CI (CI=true)
they fail instead, so a broken node never passes as "skipped"."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid

import pytest

from inferops.devcluster import local_images
from inferops.devcluster.cluster import LocalCluster
from inferops.devcluster.node import NodeError, check_host


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"real node cannot start in CI: {reason}", pytrace=False)
    pytest.skip(f"real node unavailable: {reason}")


def start_real_cluster(workdir) -> LocalCluster:
    try:
        check_host()
    except NodeError as exc:
        _unavailable(str(exc))
    cluster = LocalCluster(workdir, real_nodes=1)
    try:
        cluster.start(timeout=120)
    except NodeError as exc:  # the host refused (a failed containerd start...); cleaned up by start()
        _unavailable(str(exc))
    return cluster


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """A CI timeout or `kill` sends SIGTERM: make it unwind like Ctrl-C, so the node's
    teardown still undoes the host changes (SIGKILL cannot be caught; see hoststate)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    with sigterm_as_interrupt():
        cluster = start_real_cluster(tmp_path_factory.mktemp("real"))
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def real_namespace(real_cluster: LocalCluster):
    name = f"n-{uuid.uuid4().hex[:8]}"
    real_cluster.create_namespace(name)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def node_images(real_cluster: LocalCluster) -> dict[str, str]:
    """Image references of our static programs, imported into the node's containerd."""
    return real_cluster.nodes[0].images


@pytest.fixture(scope="module")
def built_images(real_cluster: LocalCluster) -> dict[str, str]:
    """The optimizer and CPU Triton images built here (cached), imported into the node's containerd."""
    built = local_images.build_images(local_images.NODE_TEST_IMAGES)
    for image in built.values():
        started = time.monotonic()
        real_cluster.nodes[0].import_archive(image.archive)
        print(f"{image.reference}: {image.size_bytes / 2**20:.0f} MiB, imported in {time.monotonic() - started:.1f} s")
    return {key: image.reference for key, image in built.items()}

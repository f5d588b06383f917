"""The operator under test: the real `inferops operator` process, run as a ServiceAccount with
the Helm chart's RBAC, against the session's cluster."""

from __future__ import annotations

import os

import pytest

from inferops.devcluster.cluster import LocalCluster, free_port
from inferops.devcluster.kwok_artifacts import KwokPublisher
from operator_harness import OPERATOR_USER, OperatorProcess, operator_kubeconfig


@pytest.fixture(scope="session")
def operator(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = operator_kubeconfig(cluster, workdir)
    artifacts = workdir / "artifacts"
    artifacts.mkdir()
    metrics_port = free_port()
    env = dict(
        os.environ,
        INFEROPS_METRICS_PORT=str(metrics_port),
        INFEROPS_METRICS_ADDRESS="127.0.0.1",
        KUBECONFIG=str(kubeconfig),
        INFEROPS_ARTIFACT_ROOT=f"file://{artifacts}",
        INFEROPS_SMOKE_TEST="false",  # kwok pods run nothing; the Triton tests cover the smoke inference
        INFEROPS_WEBHOOK=f"local:{free_port()}",
        INFEROPS_RESYNC_SECONDS="3600",
        INFEROPS_WATCH_SERVER_TIMEOUT="60",
    )
    proc = OperatorProcess(cluster, workdir, env)
    proc.artifacts = artifacts
    proc.user = OPERATOR_USER
    proc.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    proc.start()
    # kwok runs no optimizer: commit what it would have, so that the operator (which deploys
    # nothing without a report) sees Jobs succeed as they would on a real node.
    publisher = KwokPublisher(cluster.kubeconfig).start() if isinstance(cluster, LocalCluster) else None
    yield proc
    if publisher is not None:
        publisher.stop()
    proc.stop()
    cluster.kubectl("delete", "validatingwebhookconfiguration", "validate.inferops.dev", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "operator" in item.fixturenames:
        proc = item.funcargs.get("operator")
        if proc is not None:
            report.sections.append(("operator log (tail)", proc.tail()))

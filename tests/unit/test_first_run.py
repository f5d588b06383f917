"""A new user's first commands: no cluster, a dead API server, a cold build. Each says what is
wrong in one line, and a build never eats a start-up deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inferops.devcluster import binaries
from inferops.devcluster.cluster import LocalCluster, free_port
from prebuild import binaries_needed


def run_operator(env: dict[str, str], timeout: float = 10) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "operator"], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )
    return result, time.monotonic() - started


def assert_one_readable_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    env.update(HOME=str(home), **extra)
    return env


def test_operator_without_a_kubeconfig_says_how_to_get_a_cluster(tmp_path):
    result, took = run_operator(bare_env(tmp_path))
    assert took < 10
    assert_one_readable_line(result, "no usable Kubernetes cluster", "inferops dev up")


def test_operator_with_an_unreachable_api_server_exits_at_once(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    result, took = run_operator(bare_env(tmp_path, KUBECONFIG=str(kubeconfig)))
    assert took < 10
    assert_one_readable_line(result, "cannot reach the Kubernetes API server", "inferops dev up")


def test_operator_with_a_malformed_kubeconfig_names_it(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [\n")
    result, _ = run_operator(bare_env(tmp_path, KUBECONFIG=str(kubeconfig)))
    assert_one_readable_line(result, str(kubeconfig))


def test_a_cold_build_never_counts_against_the_clusters_start_up_timeout(monkeypatch, tmp_path):
    build_seconds = 1.5

    def slow_build(names):
        time.sleep(build_seconds)
        return {name: tmp_path / name for name in names}

    seen: dict[str, float] = {}

    def start_all(self, deadline):
        seen["left"] = deadline - time.monotonic()

    monkeypatch.setattr(binaries, "ensure_binaries", slow_build)
    monkeypatch.setattr(LocalCluster, "_start_all", start_all)
    LocalCluster(tmp_path / "c").start(timeout=2)
    assert seen["left"] > 2 - 0.5, f"the build took {build_seconds}s of the 2s start-up budget"


def test_dev_up_builds_in_the_foreground_before_its_timeout_starts(monkeypatch, tmp_path, capsys):
    from inferops.devcluster import cli

    order: list[str] = []
    monkeypatch.setattr(cli, "ensure_binaries", lambda names: order.append("build") or {})

    class Supervisor:
        def __init__(self, *a, **k):
            order.append("supervisor")

        def poll(self):
            return 1  # fails at once: enough to see what ran first

    monkeypatch.setattr(cli.subprocess, "Popen", Supervisor)
    args = cli.argparse.Namespace(action="up", kubeconfig=None, state_dir=tmp_path, timeout=5)
    assert cli.run(args) == 1
    assert order == ["build", "supervisor"]


def test_the_session_builds_what_its_tests_use_before_the_first_test():
    class Item:
        def __init__(self, *fixtures):
            self.fixturenames = fixtures

    assert binaries_needed([Item("tmp_path")], "local") == ()
    assert set(binaries_needed([Item("cluster", "namespace")], "local")) == set(binaries.CONTROL_PLANE_BINARIES)
    assert binaries_needed([Item("cluster")], "existing") == ("kubectl",)
    assert set(binaries_needed([Item("s3_server"), Item("cluster", "operator")], "kind")) == {"versitygw", "kubectl", "helm"}
    assert set(binaries.ALL_BINARIES) >= {"etcd", "kube-apiserver", "kwok", "helm", "versitygw"}


@pytest.mark.cluster
def test_operator_on_a_cluster_without_the_crds_says_how_to_install_them(tmp_path, request):
    if request.config.getoption("--cluster") != "local":
        pytest.skip("starts a local control plane of its own (without CRDs)")
    with LocalCluster(tmp_path / "bare") as bare:
        result, took = run_operator(bare_env(tmp_path, KUBECONFIG=str(bare.kubeconfig)))
    assert took < 10
    assert_one_readable_line(result, "CRDs", "inferencemodels.inferops.dev", "kubectl apply --server-side -f crds/")


def test_dev_up_without_go_says_so_in_one_line(tmp_path):
    env = bare_env(tmp_path, PATH="/usr/bin:/bin", INFEROPS_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "dev", "up", "--state-dir", str(tmp_path / "dev")],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "the Go toolchain" in result.stderr.strip().splitlines()[-1]

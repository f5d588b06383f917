"""Starting and stopping the local control plane leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def test_killed_owner_leaves_no_process(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from inferops.devcluster.cluster import LocalCluster
        c = LocalCluster({str(tmp_path / 'c')!r}).start()
        print(" ".join(map(str, c.pids)), flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 5 and all(_alive(p) for p in pids)  # etcd, apiserver, controller-manager, scheduler, kwok
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert _wait_gone(pids) == []


def test_dev_up_and_down(tmp_path):
    state = tmp_path / "state"
    kubeconfig = tmp_path / "kubeconfig"
    up = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "dev", "up", "--state-dir", str(state), "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=300,
    )
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    import json

    pids = json.loads((state / "ready.json").read_text())["pids"]
    nodes = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "dev", "status", "--state-dir", str(state)], capture_output=True, text=True
    )
    assert nodes.returncode == 0 and "running" in nodes.stdout
    down = subprocess.run([sys.executable, "-m", "inferops.cli", "dev", "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _wait_gone(pids) == []

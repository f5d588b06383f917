"""Build the upstream control-plane binaries from the pinned Go modules in gomod/.

Each module's binaries land in a cache outside the repository, keyed by that module's
go.mod/go.sum, its link flags and the Go version, so a cached set is never rebuilt and a
changed pin builds a fresh one beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GOMOD_DIR = Path(__file__).parent / "gomod"
KUBERNETES_VERSION = "v1.36.3"


@dataclass(frozen=True)
class GoModule:
    directory: str
    binaries: dict[str, str]  # output name -> Go package path
    ldflags: str = "-s -w"
    tags: str = ""  # go build -tags (comma separated)


def _kube_version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


MODULES = (
    GoModule(
        "kubernetes",
        {
            "etcd": "go.etcd.io/etcd/server/v3",
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
        _kube_version_ldflags(KUBERNETES_VERSION),
    ),
    GoModule("kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}),
    GoModule(
        "helm",
        {"helm": "helm.sh/helm/v3/cmd/helm"},
        # What `helm template` and `helm lint` assume without a cluster; the defaults say 1.20.
        "-s -w -X helm.sh/helm/v3/internal/version.version=v3.21.4"
        + "".join(f" -X helm.sh/helm/v3/pkg/{pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/{pkg}.k8sVersionMinor=36" for pkg in ("chartutil", "lint/rules")),
    ),
    GoModule("versitygw", {"versitygw": "github.com/versity/versitygw/cmd/versitygw"}),
    GoModule(
        "containerd",
        {
            "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
            "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
        },
        "-s -w -X github.com/containerd/containerd/v2/version.Version=v2.2.9",
        # Static, and without the snapshotters that need cgo or kernel features we do not use.
        tags="no_btrfs,no_devmapper,no_zfs",
    ),
    # Cluster DNS for the real node's pods (podaccess.py).
    GoModule("coredns", {"coredns": "github.com/coredns/coredns"}),
    # Our own tiny static programs (source in gomod/pause): the sandbox image's pause and
    # what test containers run.
    GoModule(
        "pause",
        {
            "inferops-pause": "inferops.dev/devcluster/pause/cmd/inferops-pause",
            "inferops-ok": "inferops.dev/devcluster/pause/cmd/inferops-ok",
        },
    ),
)
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
# A real node beside kwok's fake ones; runc and the CNI plugins come from Debian packages.
NODE_BINARIES = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "inferops-pause", "inferops-ok", "coredns")

ALL_BINARIES = tuple(name for m in MODULES for name in m.binaries)


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise RuntimeError("the Go toolchain (1.26) is needed to build the local control plane once: `go` is not on PATH (install it from go.dev or your distribution's golang package)")
    return go


def _go_version() -> str:
    return subprocess.run([_go(), "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def cache_key(module: GoModule) -> str:
    h = hashlib.sha256()
    root = GOMOD_DIR / module.directory
    for name in ("go.mod", "go.sum"):
        if (root / name).exists():  # a module without dependencies has no go.sum
            h.update((root / name).read_bytes())
    # Our own modules also carry Go source; upstream pins have none, and their keys stay as they were.
    for path in sorted(root.rglob("*.go")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    h.update(module.ldflags.encode())
    if module.tags:
        h.update(module.tags.encode())
    h.update(_go_version().encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("INFEROPS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "inferops"
    )
    return Path(base)


def module_dir(module: GoModule) -> Path:
    return cache_root() / "bin" / f"{module.directory}-{cache_key(module)}"


def _log(msg: str) -> None:
    print(f"[inferops build] {msg}", file=sys.stderr, flush=True)


def _go_binary_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package: its last path element, skipping a /vN suffix."""
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


def _build_module(module: GoModule, target: Path) -> None:
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    staging = target / f".staging-{module.directory}"
    staging.mkdir(parents=True, exist_ok=True)
    tags = ["-tags", module.tags] if module.tags else []
    cmd = [_go(), "build", "-v", "-trimpath", *tags, "-ldflags", module.ldflags, "-o", str(staging) + "/", *module.binaries.values()]
    _log(f"building {', '.join(module.binaries)} (go build in {module.directory}/; this can take many minutes cold)")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=GOMOD_DIR / module.directory, env=env, stderr=subprocess.PIPE, text=True)
    compiled, last_report, tail = 0, 0.0, []
    assert proc.stderr is not None
    for line in proc.stderr:
        tail = (tail + [line.rstrip()])[-40:]
        compiled += 1
        now = time.monotonic()
        if now - last_report > 15:
            _log(f"  {module.directory}: {compiled} packages compiled, {now - started:.0f}s, now {line.strip()}")
            last_report = now
    if proc.wait() != 0:
        raise RuntimeError(f"go build failed in {module.directory}:\n" + "\n".join(tail))
    for name, pkg in module.binaries.items():
        os.replace(staging / _go_binary_name(pkg), target / name)
    shutil.rmtree(staging, ignore_errors=True)
    _log(f"  {module.directory}: done in {time.monotonic() - started:.0f}s")


def ensure_binaries(names: tuple[str, ...] = ALL_BINARIES) -> dict[str, Path]:
    """Return the path of each named binary, building the modules that are not cached yet."""
    paths: dict[str, Path] = {}
    for module in MODULES:
        wanted = [n for n in module.binaries if n in names]
        if not wanted:
            continue
        target = module_dir(module)
        if any(not (target / n).exists() for n in module.binaries):
            target.mkdir(parents=True, exist_ok=True)
            with open(target.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same module
                if any(not (target / n).exists() for n in module.binaries):
                    _build_module(module, target)
        paths.update({n: target / n for n in wanted})
    return paths


def main() -> None:
    started = time.monotonic()
    names = tuple(sys.argv[1:]) or ALL_BINARIES
    paths = ensure_binaries(names)
    _log(f"{len(paths)} binaries ready ({time.monotonic() - started:.0f}s)")
    for name, path in paths.items():
        print(f"{name}\t{path}")


if __name__ == "__main__":
    main()

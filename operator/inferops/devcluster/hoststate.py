"""What a real node changes on the host, recorded before it starts and undone after it stops.

`snapshot()` records the host state a kubelet, containerd, kube-proxy and the CNI plugins
touch; `compare()` lists what differs (a test asserts it is empty after teardown);
`undo()` removes what appeared since a snapshot and restores the recorded sysctls. Only
what was not there before is removed: another program's chains, links or mounts are left
alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Set by the kubelet at start (setupKernelTunables), by kube-proxy, and by the CNI bridge plugin.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
)
# Written outside the directories we give the node (hard-coded in kubelet, containerd, libcni).
PATHS = (
    "/var/lib/kubelet",
    "/var/lib/kubelet/device-plugins",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/usr/libexec/kubernetes",
    "/run/inferops",  # ours (node.py): short socket and kubelet paths
    "/var/lib/inferops",
)
# Where the node's mounts land (its own directories are added by the caller). Others' mounts
# elsewhere (a debootstrap's /proc under ~/.cache...) are neither compared nor touched.
MOUNT_ROOTS = ("/run", "/var", "/sys/fs/cgroup")
# Only new mounts here (and in the node's own directories) are unmounted by undo().
NODE_MOUNT_ROOTS = ("/run/netns", "/var/run/netns", "/run/containerd", "/var/lib/kubelet", "/var/lib/cni", "/run/inferops", "/var/lib/inferops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CHAIN_PREFIXES = ("KUBE-", "CNI-")


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in map(str, roots))


def mounts(roots=None) -> list[str]:
    # mountinfo field 5 is the mount point, with spaces escaped as \040
    points = [line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return points if roots is None else [m for m in points if _under(m, roots)]


def _iptables(tool: str) -> dict[str, set[str]]:
    """Per table: chain declarations and rules of `tool`-save, without counters."""
    tables: dict[str, set[str]] = {}
    table = ""
    if not shutil.which(f"{tool}-save"):
        return tables
    for line in _run(f"{tool}-save").splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = set()
        elif line.startswith(":"):
            chain, policy = line.split()[:2]
            # A built-in chain that accepts and holds no rules is a no-op; iptables-nft lists it
            # once the table exists, and a table cannot be removed through iptables.
            if policy != "ACCEPT":
                tables[table].add(chain if policy == "-" else f"{chain} {policy}")  # no counters
        elif line.startswith("-A"):
            tables[table].add(line)
    return tables


def _cgroups() -> set[str]:
    """kubepods* directories in every hierarchy (hybrid v1 has one per controller)."""
    found = set()
    if CGROUP_ROOT.is_dir():
        for hierarchy in CGROUP_ROOT.iterdir():
            if hierarchy.is_dir():
                found.update(str(p) for p in hierarchy.glob("kubepods*"))
    return found


def _sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            pass
    return values


@dataclass
class HostState:
    mounts: list[str]
    links: set[str]
    routes: set[str]
    netns: set[str]
    iptables: dict[str, dict[str, set[str]]]
    cgroups: set[str]
    sysctls: dict[str, str]
    paths: set[str] = field(default_factory=set)
    nft_tables: set[str] = field(default_factory=set)


def snapshot(extra_roots: list[Path | str] = ()) -> HostState:
    """`extra_roots`: directories of ours (the cluster workdir) whose mounts count too."""
    return HostState(
        mounts=mounts([*MOUNT_ROOTS, *extra_roots]),
        links={line.split(":")[1].strip().split("@")[0] for line in _run("ip", "-o", "link", "show").splitlines() if ":" in line},
        routes=set(_run("ip", "route", "show", "table", "all").splitlines()),
        netns=set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set(),
        iptables={tool: _iptables(tool) for tool in ("iptables", "ip6tables")},
        cgroups=_cgroups(),
        sysctls=_sysctls(),
        paths={p for p in PATHS if os.path.lexists(p)},
        nft_tables=_nft_tables(),
    )


def _nft_tables() -> set[str]:
    """nftables tables ("ip filter", "ip6 nat"...): iptables-nft creates them on first use."""
    if not shutil.which("nft"):
        return set()
    return {line.removeprefix("table ").strip() for line in _run("nft", "list", "tables").splitlines() if line.startswith("table ")}


def _drop_empty_nft_table(table: str) -> None:
    """Delete a table that holds nothing but empty base chains (never one with rules)."""
    listing = _run("nft", "list", "table", *table.split())
    structural = ("table ", "chain ", "type ", "policy ", "}", "")
    if all(line.strip().startswith(structural) for line in listing.splitlines()):
        subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True, timeout=30)


def compare(before: HostState, after: HostState) -> list[str]:
    """Human-readable differences; empty when the host is as it was."""
    diffs = []
    for what in ("links", "routes", "netns", "cgroups", "paths", "nft_tables"):
        b, a = getattr(before, what), getattr(after, what)
        diffs += [f"{what}: new {x}" for x in sorted(a - b)] + [f"{what}: gone {x}" for x in sorted(b - a)]
    b_mounts, a_mounts = sorted(before.mounts), sorted(after.mounts)
    if b_mounts != a_mounts:
        extra = [m for m in a_mounts if a_mounts.count(m) > b_mounts.count(m)]
        gone = [m for m in b_mounts if b_mounts.count(m) > a_mounts.count(m)]
        diffs += [f"mounts: new {m}" for m in sorted(set(extra))] + [f"mounts: gone {m}" for m in sorted(set(gone))]
    for tool in ("iptables", "ip6tables"):
        for table in sorted(set(before.iptables[tool]) | set(after.iptables[tool])):
            b, a = before.iptables[tool].get(table, set()), after.iptables[tool].get(table, set())
            diffs += [f"{tool} {table}: new {x}" for x in sorted(a - b)] + [f"{tool} {table}: gone {x}" for x in sorted(b - a)]
    for name, value in before.sysctls.items():
        if after.sysctls.get(name) != value:
            diffs.append(f"sysctl {name}: {value} -> {after.sysctls.get(name)}")
    return diffs


def umount_under(prefixes: list[Path | str]) -> None:
    """Unmount every mount point under `prefixes`, deepest first (lazily if busy)."""
    roots = [str(p).rstrip("/") for p in prefixes]
    for mount in sorted(set(mounts()), key=len, reverse=True):
        if _under(mount, roots):
            for _ in range(mounts().count(mount)):  # the kubelet's root dir is mounted onto itself
                if subprocess.run(["umount", mount], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", mount], capture_output=True)


def _iptables_undo(tool: str, before: dict[str, set[str]]) -> None:
    """Delete the rules and KUBE-*/CNI-* chains that appeared since `before`, table by table."""
    script = []
    for table, entries in _iptables(tool).items():
        old = before.get(table, set())
        rules = [e for e in entries if e.startswith("-A") and e not in old]
        chains = [e[1:] for e in entries if e.startswith(":") and e not in old and e[1:].startswith(CHAIN_PREFIXES)]
        if not rules and not chains:
            continue
        script.append(f"*{table}")
        # Rules first (jumps into the chains), then empty and delete the chains.
        script += ["-D" + r[2:] for r in rules if r.split()[1] not in chains]
        script += [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains]
        script.append("COMMIT")
    if script:
        out = subprocess.run([f"{tool}-restore", "--noflush"], input="\n".join(script) + "\n", capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"{tool}-restore failed: {out.stderr.strip()}")


def undo(before: HostState, extra_mounts: list[Path | str] = ()) -> list[str]:
    """Undo what appeared since `before`; returns the errors met (teardown goes on after each)."""
    errors: list[str] = []

    def attempt(what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # keep undoing the rest; report all at the end
            errors.append(f"{what}: {exc}")

    now = snapshot()
    new_mounts = [m for m in set(now.mounts) if now.mounts.count(m) > before.mounts.count(m) and _under(m, NODE_MOUNT_ROOTS)]
    attempt("mounts", umount_under, [*extra_mounts, *new_mounts])
    for ns in sorted(now.netns - before.netns):
        attempt(f"netns {ns}", _ip, "netns", "delete", ns)
    for link in sorted(snapshot().links - before.links):
        attempt(f"link {link}", _ip, "link", "delete", link)
    for route in sorted(snapshot().routes - before.routes):
        attempt(f"route {route}", _ip, "route", "delete", *route.split())
    for tool in ("iptables", "ip6tables"):
        attempt(tool, _iptables_undo, tool, before.iptables[tool])
    for table in sorted(_nft_tables() - before.nft_tables):
        attempt(f"nft table {table}", _drop_empty_nft_table, table)
    for cgroup in sorted(_cgroups() - before.cgroups):
        attempt(f"cgroup {cgroup}", _rmdir_tree, Path(cgroup))
    for name, value in before.sysctls.items():
        if _sysctls().get(name) != value:
            attempt(f"sysctl {name}", _sysctl_path(name).write_text, value)
    for path in sorted(set(PATHS) - before.paths, key=len, reverse=True):
        if os.path.lexists(path):
            attempt(f"path {path}", _remove, path)
    return errors


def kill_shims(address: Path) -> None:
    """containerd's shims leave its process group on purpose (they outlive restarts): find the
    ones of the containerd at `address` by that address on their command line."""
    marker = str(address).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.2)


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 and "Cannot find" not in out.stderr and "No such" not in out.stderr:
        raise RuntimeError(out.stderr.strip())


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _rmdir_tree(root: Path) -> None:
    """cgroup directories go with rmdir only, children first (their files cannot be deleted)."""
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: len(w[0]), reverse=True):
        os.rmdir(dirpath)

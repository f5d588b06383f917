"""Image layers from Debian packages and Python wheels, made on this machine.

No registry and no Docker: the base layer is a Debian root filesystem from debootstrap (with
Debian's python3.11), and Python packages go in as wheels built or downloaded on the host and
installed with the host's pip into the layer's tree, so nothing inside an image build needs the
network. Every layer is an uncompressed tar cached under the binary cache, keyed by its inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

from .binaries import _log
from .images import images_dir, sha256_file

SUITE = "bookworm"
MIRROR = os.environ.get("INFEROPS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# libpython3.11: Triton's Python backend stub embeds it.
BASE_PACKAGES = ("python3", "libpython3.11", "ca-certificates", "libb64-0d")  # libb64: perf_analyzer's (perf_analyzer.py)
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"  # on Debian's python3 sys.path
# Left out of the base layer: caches, documentation, and what the runtime mounts over.
TRIMMED = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info", "var/log")
RUNTIME_MOUNTS = ("dev", "proc", "sys", "run", "tmp")


class ImageBuildError(RuntimeError):
    pass


def layers_dir() -> Path:
    return images_dir() / "layers"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dir_layer(root: Path, out: Path, skip_contents_of: tuple[str, ...] = ()) -> Path:
    """Tar `root` as a layer: owned by root, the runtime's mount points kept empty."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = info.name.removeprefix("./")
        if any(rel.startswith(f"{d}/") for d in skip_contents_of):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(root.iterdir()):
            tar.add(entry, arcname=entry.name, filter=normalize)
    os.replace(tmp, out)
    return out


def _run_logged(cmd: list[str], what: str, **kwargs) -> None:
    started, last, tail = time.monotonic(), 0.0, []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, **kwargs)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        if time.monotonic() - last > 10:
            _log(f"  {what}: {time.monotonic() - started:.0f}s, {line.strip()[:120]}")
            last = time.monotonic()
    if proc.wait() != 0:
        raise ImageBuildError(f"{what} failed ({proc.returncode}):\n" + "\n".join(tail))


def debian_base() -> Path:
    """A minimal Debian with python3 (debootstrap --variant=minbase, about 40 s once)."""
    out = layers_dir() / f"debian-{SUITE}-{_key(SUITE, BASE_PACKAGES, TRIMMED)}.tar"
    if out.exists():
        return out
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is needed to build the local images' Debian base: apt-get install debootstrap")
    layers_dir().mkdir(parents=True, exist_ok=True)
    _log(f"building the Debian {SUITE} base layer (debootstrap, {', '.join(BASE_PACKAGES)})")
    with tempfile.TemporaryDirectory(dir=layers_dir(), prefix=".debootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        _run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), MIRROR], "debootstrap")
        for rel in TRIMMED:
            for child in (root / rel).glob("*"):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        (root / "tmp").chmod(0o1777)
        dir_layer(root, out, skip_contents_of=RUNTIME_MOUNTS)
    _log(f"  base layer: {out.stat().st_size / 2**20:.0f} MiB")
    return out


def collect_wheels(requirements: list[str], folder: Path) -> list[Path]:
    """Wheels for `requirements` and everything they need, built or downloaded on the host into
    `folder` (empty: what it holds afterwards is exactly this set)."""
    folder.mkdir(parents=True, exist_ok=True)
    _log(f"collecting wheels: {' '.join(requirements)}")
    _run_logged([sys.executable, "-m", "pip", "wheel", "--quiet", "--progress-bar=off", "-w", str(folder), *requirements], "pip wheel")
    return sorted(folder.glob("*.whl"))


def wheel_layer(wheels: list[Path], name: str, prune: Callable[[Path], None] | None = None) -> Path:
    """`wheels` installed (no dependency resolution: the list is complete) into Debian's
    site-packages, their console scripts in /usr/local/bin running Debian's python3.
    `prune(site_packages)` may then remove what the image never loads (its name keys the cache)."""
    out = layers_dir() / f"{name}-{_key(sorted(sha256_file(w) for w in wheels), *([prune.__qualname__] if prune else []))}.tar"
    if out.exists():
        return out
    layers_dir().mkdir(parents=True, exist_ok=True)
    _log(f"installing {len(wheels)} wheels into the {name} layer")
    with tempfile.TemporaryDirectory(dir=layers_dir(), prefix=f".{name}-") as tmp:
        root = Path(tmp) / "root"
        site = root / SITE_PACKAGES
        _run_logged(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile", "--target", str(site), *map(str, wheels)],
            f"pip install ({name})",
        )
        scripts = site / "bin"
        if scripts.is_dir():
            bin_dir = root / "usr" / "local" / "bin"
            bin_dir.mkdir(parents=True)
            for script in scripts.iterdir():
                text = script.read_bytes()
                if text.startswith(b"#!") and b"python" in text.split(b"\n", 1)[0]:
                    text = b"#!/usr/bin/python3\n" + text.split(b"\n", 1)[1]
                (bin_dir / script.name).write_bytes(text)
                (bin_dir / script.name).chmod(0o755)
            shutil.rmtree(scripts)
        if prune is not None:
            prune(site)
        dir_layer(root, out)
    _log(f"  {name} layer: {out.stat().st_size / 2**20:.0f} MiB")
    return out


def files_layer(files: dict[str, tuple[bytes, int]], name: str) -> Path:
    """A small layer of generated files: path in the image -> (content, mode)."""
    out = layers_dir() / f"{name}-{_key(sorted((k, hashlib.sha256(v[0]).hexdigest(), v[1]) for k, v in files.items()))}.tar"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=layers_dir(), prefix=f".{name}-") as tmp:
        write_files(Path(tmp), files)
        dir_layer(Path(tmp), out)
    return out


def write_files(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Lay out `files` (path below root -> (content, mode)) under `root`."""
    for rel, (content, mode) in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)

"""NVIDIA's perf_analyzer for CPU use, from PyPI: for the optimizer image's tuner and for benches.

The manylinux1 tritonclient 2.44 wheel ships the binary in its data/bin (later wheels do not); it
needs Debian's libb64-0d and libcudart.so.12 (from the nvidia-cuda-runtime-cu12 wheel) and runs
on a CPU. Installed as a folder: bin/perf_analyzer, lib/libcudart.so.12, and a `perf_analyzer`
wrapper beside them that puts lib/ on LD_LIBRARY_PATH (Model Analyzer hands perf_analyzer the
server's environment, so point it at the wrapper too). The project's tritonclient is untouched.

    python -m inferops.devcluster.perf_analyzer [DIR]      (default ~/.cache/inferops/perf_analyzer)
    export INFEROPS_PERF_ANALYZER=DIR/perf_analyzer
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import rootfs
from .binaries import cache_root

TRITONCLIENT = "tritonclient==2.44.0"
CUDART = "nvidia-cuda-runtime-cu12==12.9.79"
BINARY_IN_WHEEL = "tritonclient-2.44.0.data/data/bin/perf_analyzer"
CUDART_IN_WHEEL = "nvidia/cuda_runtime/lib/libcudart.so.12"
IMAGE_FOLDER = "/opt/perf_analyzer"
SYSTEM_LIBRARY = "libb64.so.0d"  # Debian's libb64-0d: in the images' base, apt-get install on a host


class PerfAnalyzerUnavailable(RuntimeError):
    pass


def wrapper_script(folder: str) -> bytes:
    return (f'#!/bin/sh\nLD_LIBRARY_PATH="{folder}/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
            f'exec "{folder}/bin/perf_analyzer" "$@"\n').encode()


def download(work: Path) -> tuple[bytes, bytes]:
    """The perf_analyzer binary and libcudart.so.12, from their wheels (about 20 MB together)."""
    for requirement, platform in ((TRITONCLIENT, "manylinux1_x86_64"), (CUDART, "manylinux2014_x86_64")):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--platform", platform, "-d", str(work), requirement],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise PerfAnalyzerUnavailable(f"pip download {requirement} failed: {done.stderr.strip()[-400:]}")
    with zipfile.ZipFile(next(work.glob("tritonclient-2.44.0-*.whl"))) as wheel:
        binary = wheel.read(BINARY_IN_WHEEL)
    with zipfile.ZipFile(next(work.glob("nvidia_cuda_runtime_cu12-*.whl"))) as wheel:
        cudart = wheel.read(CUDART_IN_WHEEL)
    return binary, cudart


def install_files(folder: str) -> dict[str, tuple[bytes, int]]:
    """perf_analyzer's files relative to the folder it is installed in: (content, mode) each."""
    with tempfile.TemporaryDirectory(prefix="inferops-pa-") as tmp:
        binary, cudart = download(Path(tmp))
    return {"bin/perf_analyzer": (binary, 0o755), "lib/libcudart.so.12": (cudart, 0o644), "perf_analyzer": (wrapper_script(folder), 0o755)}


def image_files(folder: str = IMAGE_FOLDER) -> dict[str, tuple[bytes, int]]:
    """An image layer's files putting perf_analyzer on PATH (the image's base holds libb64-0d)."""
    files = {f"{folder.strip('/')}/{rel}": entry for rel, entry in install_files(folder).items()}
    files["usr/local/bin/perf_analyzer"] = files.pop(f"{folder.strip('/')}/perf_analyzer")
    return files


def image_layer() -> Path:
    """The image layer of image_files(), cached by the pinned versions (no download once built)."""
    out = rootfs.layers_dir() / f"perf-analyzer-{rootfs._key(TRITONCLIENT, CUDART, IMAGE_FOLDER)}.tar"
    if not out.exists():
        rootfs.layers_dir().mkdir(parents=True, exist_ok=True)
        rootfs.files_layer(image_files(), "perf-analyzer-files").rename(out)
    return out


def default_dir() -> Path:
    return cache_root() / "perf_analyzer"


def ensure(folder: Path | None = None) -> Path:
    """perf_analyzer installed in `folder` (once); returns its wrapper. Needs libb64-0d on the host."""
    folder = (folder or default_dir()).absolute()
    wrapper = folder / "perf_analyzer"
    if wrapper.exists():
        return wrapper
    if not any(Path(d, SYSTEM_LIBRARY).exists() for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib")):
        raise PerfAnalyzerUnavailable("perf_analyzer needs Debian's libb64-0d: apt-get install -y libb64-0d")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".perf_analyzer-") as tmp:
        partial = Path(tmp) / "out"
        rootfs.write_files(partial, install_files(str(folder)))
        version = subprocess.run([str(partial / "bin" / "perf_analyzer"), "--version"], capture_output=True, text=True,
                                 env={**os.environ, "LD_LIBRARY_PATH": str(partial / "lib")})
        if version.returncode != 0:
            raise PerfAnalyzerUnavailable(f"perf_analyzer does not run here: {(version.stdout + version.stderr).strip()[-400:]}")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return wrapper


def main() -> int:
    try:
        print(ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
    except PerfAnalyzerUnavailable as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The images a local cluster runs, one build definition each: the operator, the optimizer (also
the serving pods' pull step), its torch and tensorflow variants, and a CPU Triton server, all from
this checkout.

Each image is the Debian base, a layer of the third-party wheels it needs, and a layer with the
project's own wheel on top (so an edit of the project rebuilds only that small layer). Elsewhere
the same images build from operator/Dockerfile and operator/Dockerfile.optimizer with Docker;
the CPU Triton image exists only here (NVIDIA's images serve GPUs and the onnxruntime backend).
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import images, perf_analyzer, rootfs
from .binaries import _log
from .torch_prune import prune_torch_cuda

REPO = Path(__file__).resolve().parents[3]
USER = "65532:65532"  # the chart's and the templates' runAsUser
BASE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp"]

# The wheel's tritonserver needs its bundled libraries and a backend directory holding the Python
# backend stub built for this image's Python; the image's root filesystem belongs to root, so the
# directory is laid out in /tmp at start. Same command line as NVIDIA's images otherwise.
TRITONSERVER = b"""#!/bin/sh
set -eu
site=/usr/local/lib/python3.11/dist-packages
triton="$site/pytriton/tritonserver"
backends="${TMPDIR:-/tmp}/tritonserver-backends"
mkdir -p "$backends/python"
for f in "$triton"/backends/python/*; do ln -sf "$f" "$backends/python/"; done
ln -sf "$triton/python_backend_stubs/3.11/triton_python_backend_stub" "$backends/python/triton_python_backend_stub"
export LD_LIBRARY_PATH="$site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$triton/bin/tritonserver" --backend-directory="$backends" --cache-directory="$triton/caches" "$@"
"""


@dataclass(frozen=True)
class ImageDefinition:
    name: str  # domain-qualified: CRI would read a bare "inferops/x" as docker.io/inferops/x
    extras: tuple[str, ...]  # of the project: what pip installs is `inferops[extras]`
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    more_requirements: tuple[str, ...] = ()
    prune: Callable[[Path], None] | None = None  # trims the third-party layer's site-packages
    perf_analyzer: bool = False  # NVIDIA's perf_analyzer on PATH: the tuner measures with it


DEFINITIONS = {
    "operator": ImageDefinition("inferops.dev/operator", (), ["inferops"], ["operator", "--liveness=http://0.0.0.0:8080/healthz"]),
    # No serve extra: the tuner (`inferops tune`, in the tuning Job) drives the class's own Triton
    # image, its pod's sidecar, over HTTP, measuring with perf_analyzer (the field's instrument,
    # 18 MB); the optimization Job needs no server.
    "optimizer": ImageDefinition("inferops.dev/optimizer", ("optimize",), ["inferops"], ["optimize", "--help"], perf_analyzer=True),
    # The framework variants (the chart's operator.optimizerImages): the default stays free of both.
    # TensorFlow: tensorflow-cpu, about 1.5 GB more. torch: PyPI has only CUDA builds, whose libraries
    # torch needs to load; what it never loads on a CPU is left out (torch_prune.py), 3.1 GB remain.
    "optimizer-tensorflow": ImageDefinition("inferops.dev/optimizer-tensorflow", ("optimize", "tensorflow"), ["inferops"], ["optimize", "--help"], perf_analyzer=True),
    "optimizer-torch": ImageDefinition("inferops.dev/optimizer-torch", ("optimize", "torch"), ["inferops"], ["optimize", "--help"], perf_analyzer=True, prune=prune_torch_cuda),
    "triton-cpu": ImageDefinition(
        "inferops.dev/triton-cpu", ("serve",), ["tritonserver"], [],
        files={"usr/local/bin/tritonserver": (TRITONSERVER, 0o755)},
        more_requirements=("onnxruntime>=1.18",),  # model.py of the Python backend runs it
    ),
}


NODE_TEST_IMAGES = ("optimizer", "triton-cpu")  # what the real-node tests run


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    archive: Path
    size_bytes: int
    seconds: float


@functools.cache  # once per process: the test session's pre-build and its fixtures share it
def build_image(key: str) -> BuiltImage:
    """Build (or find cached) one image's OCI archive."""
    definition = DEFINITIONS[key]
    started = time.monotonic()
    base = rootfs.debian_base()
    extras = f"[{','.join(definition.extras)}]" if definition.extras else ""
    rootfs.layers_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=rootfs.layers_dir(), prefix=f".wheels-{key}-") as tmp:
        wheels = rootfs.collect_wheels([f"{REPO}{extras}", *definition.more_requirements], Path(tmp))
        own = [w for w in wheels if w.name.startswith("inferops-")]
        deps = rootfs.wheel_layer([w for w in wheels if w not in own], f"{key}-deps", definition.prune)
        app = rootfs.wheel_layer(own, f"{key}-inferops")
    layers = [base, deps, app]
    if definition.perf_analyzer:
        layers.append(perf_analyzer.image_layer())
    if definition.files:
        layers.append(rootfs.files_layer(definition.files, f"{key}-files"))
    config = {"Entrypoint": definition.entrypoint, "Cmd": definition.cmd, "Env": BASE_ENV, "User": USER, "WorkingDir": "/tmp"}
    tag = images.image_tag(definition.name, layers, config)
    archive = images.oci_archive(definition.name, tag, layers, config)
    _prune(images.images_dir().glob(f"{definition.name.replace('/', '_')}-*.tar"), archive)
    _prune(rootfs.layers_dir().glob(f"{key}-inferops-*.tar"), app)
    built = BuiltImage(f"{definition.name}:{tag}", archive, archive.stat().st_size, time.monotonic() - started)
    _log(f"image {built.reference}: {built.size_bytes / 2**20:.0f} MiB ({built.seconds:.0f}s)")
    return built


def _prune(paths, keep: Path, older_than_s: float = 600) -> None:
    """Each edit of the project makes a new image archive (hundreds of MiB): keep the current one,
    and drop the others once no build that may still import them can be running."""
    for path in paths:
        try:
            if path != keep and time.time() - path.stat().st_mtime > older_than_s:
                path.unlink()
        except FileNotFoundError:
            pass  # another build pruned it


# What extra each optimizer variant adds, for the chart's operator.optimizerImages.
VARIANTS = {"torch": "optimizer-torch", "tensorflow": "optimizer-tensorflow"}
DEFAULT_IMAGES = ("operator", "optimizer", "triton-cpu")  # what `inferops up` and the chart install build


def build_images(keys: tuple[str, ...] = DEFAULT_IMAGES) -> dict[str, BuiltImage]:
    return {key: build_image(key) for key in keys}


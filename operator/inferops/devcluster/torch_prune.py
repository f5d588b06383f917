"""Trim the PyPI torch wheel's CUDA payload for an image that only converts models on CPUs.

The torch wheel on PyPI is a CUDA build: libtorch_cuda.so names a dozen NVIDIA libraries as
DT_NEEDED, so `import torch` fails without them (checked: torch 2.15 with the nvidia-* wheels left
out stops at "libcublasLt.so.*[0-9] not found"), and PyPI has no CPU-only torch. What it does not
need to load is what those libraries open themselves on demand (cuDNN's engines, cusolverMg, the
NVSHMEM device parts), their headers and bitcode, and OpenAI Triton (torch.compile's GPU code
generator). This keeps the closure of DT_NEEDED from torch's own libraries and drops the rest:
2.1 GiB of nvidia-* and triton less (torch 2.15: torch + nvidia-* + triton 5.2 GB -> 3.1 GB), with
torch.export, torch.onnx.export and TorchScript working on CPU (tests/optimize/test_torch_image.py).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from .binaries import _log

DT_NEEDED, SHT_DYNAMIC = 1, 6


def needed(path: Path) -> list[str]:
    """The DT_NEEDED names of a 64-bit little-endian ELF shared object ([] for anything else)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != SHT_DYNAMIC:
            continue
        strtab = sections[link][4]
        for i in range(0, size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, offset + i)
            if tag == DT_NEEDED:
                end = data.index(b"\0", strtab + value)
                names.append(data[strtab + value : end].decode())
    return names


def prune_torch_cuda(site: Path) -> None:
    """Keep only the nvidia-* libraries torch's own libraries need to load; drop OpenAI Triton."""
    nvidia = site / "nvidia"
    if not (site / "torch").is_dir() or not nvidia.is_dir():
        return
    by_name: dict[str, Path] = {}
    for lib in nvidia.rglob("*.so*"):
        if lib.is_file() and not lib.is_symlink():
            by_name.setdefault(lib.name, lib)
    keep: set[Path] = set()
    queue = [p for p in (site / "torch").rglob("*.so*") if p.is_file()]
    while queue:
        for name in needed(queue.pop()):
            lib = by_name.get(name)
            if lib is not None and lib not in keep:
                keep.add(lib)
                queue.append(lib)
    before = _size(nvidia) + _size(site / "triton")
    for path in sorted(nvidia.rglob("*"), reverse=True):  # children before their folders
        if path.is_file() and path not in keep and not _is_python(path):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    shutil.rmtree(site / "triton", ignore_errors=True)
    _log(f"  torch image: kept {len(keep)} CUDA libraries torch loads ({', '.join(sorted(p.name for p in keep))}); "
         f"{(before - _size(nvidia)) / 2**30:.1f} GiB of nvidia-* and triton left out")


def _is_python(path: Path) -> bool:
    # The nvidia namespace package's own modules (and any other Python in it) stay importable.
    return path.suffix in (".py", ".pyi", ".typed")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) if folder.is_dir() else 0

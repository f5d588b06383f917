"""OCI image archives built from files on this machine, for a node without a registry.

`oci_archive()` lays out an OCI image (uncompressed layer blobs, a config, a manifest,
index.json, oci-layout) and tars it, ready for `ctr -n k8s.io images import`. Archives are
cached under the binary cache, keyed by a hash of their inputs, so an unchanged image is
never rebuilt and its tag (derived from the same hash) never goes stale in containerd.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from . import binaries

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"  # uncompressed: the archive never leaves the host


def images_dir() -> Path:
    return binaries.cache_root() / "images"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def layer_tar(path: Path, files: dict[str, Path | bytes], mode: int = 0o755) -> Path:
    """A reproducible layer: `files` maps a path inside the image to a host file or bytes.
    Owner root, mtime 0, so the same inputs give the same digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            content = files[name]
            data = content if isinstance(content, bytes) else Path(content).read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return path


def image_tag(name: str, layers: list[Path], config: dict) -> str:
    h = hashlib.sha256(name.encode())
    for layer in layers:
        h.update(sha256_file(layer).encode())
    h.update(json.dumps(config, sort_keys=True).encode())
    return h.hexdigest()[:16]


def oci_archive(name: str, tag: str, layers: list[Path], config: dict) -> Path:
    """An OCI image archive of `layers` (tars, bottom first) with the image `config` (the
    "config" part of an OCI image config: Entrypoint, Cmd, Env, WorkingDir, User...).
    Imported by containerd as `name:tag`."""
    key = image_tag(name, layers, config)
    out = images_dir() / f"{name.replace('/', '_')}-{tag}-{key}.tar"
    if out.exists():
        return out
    diff_ids, layer_descs, blobs = [], [], []
    for layer in layers:
        digest = sha256_file(layer)
        diff_ids.append(f"sha256:{digest}")
        layer_descs.append({"mediaType": LAYER, "digest": f"sha256:{digest}", "size": layer.stat().st_size})
        blobs.append((digest, layer))

    def blob(data: dict) -> tuple[str, bytes]:
        raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest(), raw

    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_digest, config_raw = blob(image_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": f"sha256:{config_digest}", "size": len(config_raw)},
        "layers": layer_descs,
    }
    manifest_digest, manifest_raw = blob(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_raw),
                # containerd's importer names the image after this annotation.
                "annotations": {"io.containerd.image.name": f"{name}:{tag}", "org.opencontainers.image.ref.name": tag},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    with tarfile.open(tmp, "w") as tar:

        def add_bytes(arcname: str, data: bytes) -> None:
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes(f"blobs/sha256/{config_digest}", config_raw)
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest_raw)
        for digest, layer in blobs:
            tar.add(layer, arcname=f"blobs/sha256/{digest}")
    os.replace(tmp, out)  # atomic: a concurrent builder writes the same bytes
    return out


def static_binary_image(name: str, tag: str, binary: Path, entrypoint: list[str] | None = None) -> tuple[str, Path]:
    """A one-file image holding a static binary at /NAME; returns (reference, archive)."""
    base = binary.name
    layer = layer_tar(images_dir() / "layers" / f"{base}-{sha256_file(binary)[:16]}.tar", {base: binary})
    archive = oci_archive(name, tag, [layer], {"Entrypoint": entrypoint or [f"/{base}"]})
    return f"{name}:{tag}", archive

"""Install the operator into a local cluster with its Helm chart, as a user would, but with the
images built here (local_images.py) and the local S3 (s3.py) as the artifact store.

    built = local_images.build_images(("operator", "optimizer", "triton-cpu"))
    for image in built.values():
        cluster.nodes[0].import_archive(image.archive)  # the caller imports, not install_operator
    install_operator(cluster, {key: image.reference for key, image in built.items()}, s3)

The operator then runs in the cluster as the chart's ServiceAccount, on the real node (its
pod's nodeSelector), reaching the API server through the `kubernetes` Service (podaccess.py).
Models' namespaces need their own artifact-store Secret (the Jobs and Triton pods get it, the
chart's operator.tenantStorageSecret): `tenant_storage_secret(cluster, s3, namespace)` makes
one whose keys reach only s3://artifacts/<namespace>/. The platform's (`storage_secret`, all of
the store) stays in the operator's namespace, for its report reads.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import binaries
from .node import LABELS
from .s3 import S3Server
from .s3_tenants import grant_prefix

CHART = Path(__file__).resolve().parents[3] / "charts" / "inferops"
RELEASE = "inferops"
STORAGE_SECRET = "inferops-storage"
TENANT_SECRET = "inferops-artifacts"  # in each model namespace: keys for <root>/<namespace>/ only
ARTIFACT_BUCKET = "artifacts"


@dataclass(frozen=True)
class InstalledOperator:
    release: str
    namespace: str
    service_account: str  # the chart's, the operator pod's identity
    storage_secret: str  # the platform Secret's name, in the operator's namespace and models'
    artifact_root: str
    seconds: float  # helm install until the operator pod was Ready


def storage_secret(cluster, s3: S3Server, namespace: str, name: str = STORAGE_SECRET) -> None:
    """The platform's artifact-store Secret (AWS_* keys and endpoint of `s3`), created or updated."""
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "inferops"}},
        "stringData": s3.env(),
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))


def tenant_storage_secret(cluster, s3: S3Server, namespace: str) -> S3Server:
    """The namespace's own artifact-store Secret: the keys of a user of `s3` that may read, write
    and list only s3://artifacts/<namespace>/ (s3_tenants.py). Returns the store as that user sees it."""
    if ARTIFACT_BUCKET not in {b["Name"] for b in s3.client().list_buckets().get("Buckets", [])}:
        s3.make_bucket(ARTIFACT_BUCKET)
    keys = grant_prefix(s3, ARTIFACT_BUCKET, f"{namespace}/", namespace)
    storage_secret(cluster, keys, namespace, TENANT_SECRET)
    return keys


def chart_values(images: dict[str, str], artifact_root: str) -> dict:
    repository, tag = images["operator"].rsplit(":", 1)
    return {
        # Imported into the node's containerd, never pulled: there is no registry here.
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {
            "artifactRoot": artifact_root,
            "optimizerImage": images["optimizer"],
            "tritonImage": images["triton-cpu"],
            "storageSecret": STORAGE_SECRET,
            "tenantStorageSecret": TENANT_SECRET,
            "smokeTest": True,
        },
        # The real node runs containers; kwok's fake nodes would only pretend to.
        "nodeSelector": {"inferops.dev/node": LABELS["inferops.dev/node"]},
    }


def install_operator(cluster, images: dict[str, str], s3: S3Server, namespace: str = "inferops-system", timeout: float = 300) -> InstalledOperator:
    """`helm upgrade --install` the chart into `namespace` and wait until the operator pod is Ready.

    `images`: references by key ("operator", "optimizer", "triton-cpu"), already imported into
    the node (nothing is imported here). `s3`: the artifact store; its bucket "artifacts" is
    made if missing and its keys go into the Secret inferops-storage in `namespace`, which the
    operator mounts to read reports. Raises RuntimeError with helm's output on failure."""
    helm = binaries.ensure_binaries(("helm",))["helm"]
    if ARTIFACT_BUCKET not in {b["Name"] for b in s3.client().list_buckets().get("Buckets", [])}:
        s3.make_bucket(ARTIFACT_BUCKET)
    artifact_root = f"s3://{ARTIFACT_BUCKET}"
    cluster.kubectl("create", "namespace", namespace, check=False)  # may exist: the Secret goes in first
    storage_secret(cluster, s3, namespace)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        values = Path(tmp) / "values.json"
        values.write_text(json.dumps(chart_values(images, artifact_root)))
        out = subprocess.run(
            # upgrade --install: a second `inferops up` updates the release (new image tags) in place
            [str(helm), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", RELEASE, str(CHART), "--namespace", namespace,
             "-f", str(values), "--wait", f"--timeout={int(timeout)}s"],
            capture_output=True, text=True, timeout=timeout + 60,
        )
    if out.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        raise RuntimeError(f"helm install failed ({out.returncode}):\n{out.stdout}{out.stderr}\npods:\n{pods}")
    return InstalledOperator(RELEASE, namespace, RELEASE, STORAGE_SECRET, artifact_root, time.monotonic() - started)


def uninstall_operator(cluster, namespace: str = "inferops-system", timeout: float = 120) -> None:
    helm = binaries.ensure_binaries(("helm",))["helm"]
    subprocess.run([str(helm), f"--kubeconfig={cluster.kubeconfig}", "uninstall", RELEASE, "--namespace", namespace, "--wait", f"--timeout={int(timeout)}s"],
                   capture_output=True, text=True, timeout=timeout + 30)

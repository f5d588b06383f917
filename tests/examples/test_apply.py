"""Every manifest in examples/ is accepted by the real API server, and the examples agree with
the API models and with each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inferops.api.hardware_class import HardwareClass
from inferops.api.inference_model import InferenceModel

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHART = REPO / "charts" / "inferops"
MANIFESTS = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.yaml"))


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def hardware_classes() -> dict[str, HardwareClass]:
    return {d["metadata"]["name"]: HardwareClass.model_validate({"spec": d["spec"]}) for d in docs("hardwareclasses.yaml")}


def models() -> dict[str, InferenceModel]:
    return {
        d["metadata"]["name"]: InferenceModel.model_validate({"spec": d["spec"]})
        for name in MANIFESTS
        for d in docs(name)
        if d["kind"] == "InferenceModel"
    }


def test_examples_are_there():
    assert set(MANIFESTS) >= {
        "hardwareclasses.yaml",
        "cpu-onnx-model.yaml",
        "gpu-int8-model.yaml",
        "argocd/application.yaml",
        "argocd/argocd-cm-patch.yaml",
    }


def test_models_use_example_classes_that_allow_their_recipes():
    classes = hardware_classes()
    assert set(classes) == {"cpu", "nvidia-l4", "nvidia-a100"}
    found = models()
    assert set(found) == {"digits-cpu", "minilm-l4-int8"}
    for name, model in found.items():
        hardware = classes[model.spec.hardware.class_name].spec
        assert all(hardware.allows(step) for step in model.spec.optimization.steps), name
    assert classes[found["digits-cpu"].spec.hardware.class_name].spec.instance_kind == "KIND_CPU"
    gpu = found["minilm-l4-int8"]
    assert classes[gpu.spec.hardware.class_name].spec.instance_kind == "KIND_GPU"
    assert "int8" in gpu.spec.optimization.recipe


def test_gpu_classes_select_their_product_and_tolerate_the_taint():
    for name, product in (("nvidia-l4", "NVIDIA-L4"), ("nvidia-a100", "NVIDIA-A100-SXM4-80GB")):
        spec = hardware_classes()[name].spec
        assert spec.node_selector == {"nvidia.com/gpu.product": product}
        assert [(t.key, t.operator, t.effect) for t in spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
        assert spec.resources.limits["nvidia.com/gpu"] == 1


def test_chart_sample_classes_match_the_examples():
    samples = yaml.safe_load((CHART / "values.yaml").read_text())["hardwareClasses"]["classes"]
    examples = {d["metadata"]["name"]: d["spec"] for d in docs("hardwareclasses.yaml")}
    # allowedRecipes is spelled out in the example only; everything else is the same.
    assert samples == {name: {k: v for k, v in spec.items() if k != "allowedRecipes"} for name, spec in examples.items()}


@pytest.fixture(scope="module")
def api(cluster):
    """The InferOps CRDs, the Argo CD Application stand-in (unless a real one is there) and the argocd namespace."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    created = []
    if cluster.kubectl("get", "crd", "applications.argoproj.io", check=False).returncode != 0:
        cluster.kubectl("apply", "-f", str(Path(__file__).parent / "argocd-application-crd.yaml"))
        created.append(("crd", "applications.argoproj.io"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/inferencemodels.inferops.dev", "crd/hardwareclasses.inferops.dev", "crd/applications.argoproj.io")
    if cluster.kubectl("get", "namespace", "argocd", check=False).returncode != 0:
        cluster.kubectl("create", "namespace", "argocd")
        created.append(("namespace", "argocd"))
    yield cluster
    for kind, name in reversed(created):
        cluster.kubectl("delete", kind, name, "--wait=false", check=False)


def _dry_run(cluster, namespace: str, text: str, namespaced_by_file: bool):
    where = [] if namespaced_by_file else ["-n", namespace]
    return cluster.kubectl("apply", "--dry-run=server", "--server-side", "--field-manager=examples-test", *where, "-f", "-", input=text, check=False)


@pytest.mark.cluster
@pytest.mark.parametrize("name", MANIFESTS)
def test_example_passes_server_dry_run(api, namespace, name):
    text = (EXAMPLES / name).read_text()
    has_namespace = any(d["metadata"].get("namespace") for d in docs(name))
    result = _dry_run(api, namespace, text, has_namespace)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs(name)), result.stdout


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("name", "old", "new", "complaint"),
    [
        ("cpu-onnx-model.yaml", "recipe: quantize-int8-dynamic", "recipe: quantize-int4", "unknown recipe"),
        ("gpu-int8-model.yaml", "maxBatchSize: 64", "maxBatchSize: 8", "preferredBatchSizes"),
        ("argocd/application.yaml", "syncOptions:", "syncOption:", ".spec.syncPolicy.syncOption: field not declared in schema"),
    ],
)
def test_a_broken_example_is_refused(api, namespace, name, old, new, complaint):
    """The dry runs above validate for real: the same files, broken, are refused."""
    text = (EXAMPLES / name).read_text()
    assert old in text
    has_namespace = any(d["metadata"].get("namespace") for d in docs(name))
    result = _dry_run(api, namespace, text.replace(old, new), has_namespace)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr

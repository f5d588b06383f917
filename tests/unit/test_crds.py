"""The CRDs come from the pydantic models, and the checked-in copies are never stale."""

from __future__ import annotations

from pathlib import Path

import yaml

from inferops.api.crdgen import all_crds, render_crds

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crds_match_the_models():
    for name, text in render_crds().items():
        for folder in ("crds", "charts/inferops/crds"):
            assert (REPO / folder / name).read_text() == text, f"{folder}/{name} is stale: run `inferops crds --write crds charts/inferops/crds`"


def _walk(schema, path="$"):
    yield path, schema
    for key in ("properties",):
        for name, sub in (schema.get(key) or {}).items():
            yield from _walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{path}[{key}]")


def test_schemas_are_structural():
    for crd in all_crds():
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(root):
            assert "$ref" not in node and "title" not in node, path
            if node.get("x-kubernetes-int-or-string"):
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            elif node.get("x-kubernetes-preserve-unknown-fields") is not True or "type" in node:
                assert "type" in node, f"{path} has no type"
            assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path


def test_inference_model_crd_surface():
    crd = yaml.safe_load(render_crds()["inferencemodels.inferops.dev.yaml"])
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["im"]
    assert [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")] == ["Phase", "Class", "Recipe", "Ready", "Age"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.serving.replicas"
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["serving"]["properties"]["replicas"]["minimum"] == 0
    rules = spec["properties"]["optimization"]["properties"]["recipe"]["x-kubernetes-validations"]
    assert "unknown recipe" in rules[0]["message"]


def test_readme_crd_reference_is_current():
    from inferops.api.reference import render_into

    readme = (REPO / "README.md").read_text()
    assert render_into(readme) == readme, "README's CRD reference is stale: run `python -m inferops.api.reference`"

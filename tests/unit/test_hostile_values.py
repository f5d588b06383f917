"""Hostile field values cannot alter rendered objects.

The free-form strings a user or a cluster admin controls (recipe parameters, node selector
values, toleration keys and values, the model name's artifact path, the Triton input names)
are rendered through jinja2 templates into YAML. Whatever they hold (quotes, newlines, YAML
document separators, flow syntax, jinja2 syntax, a megabyte of text), the rendered Job and
serving objects must have exactly the structure of a benign render, with the value carried
verbatim where it belongs and nowhere else."""

from __future__ import annotations

import json

import pytest

from inferops.api.hardware_class import HardwareClassSpec
from inferops.api.inference_model import InferenceModelSpec
from inferops.reconcile.children import ModelRef, Revision, desired_job, desired_serving
from inferops.reconcile.settings import OperatorSettings

SETTINGS = OperatorSettings(artifact_root="s3://artifacts", smoke_test=False, storage_secret="store-creds")

HOSTILE = {
    "quotes": "a\"b'c\\\"d",
    "newline-injection": "x\n        - --extra=1\nkind: Secret",
    "yaml-document": "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: stolen}",
    "flow-syntax": "{a: 1}, [b], &anchor *alias !!python/object:os.system",
    "jinja-expression": "{{ 7 * 7 }}{{ config }}{{ ''.__class__.__mro__ }}",
    "jinja-statement": "{% for x in range(3) %}boom{% endfor %}{# comment #}",
    "nul-and-unicode": "\u2028line\u2029sep\ttab\r\nend\u00a0",
    "huge": "A" * 1_000_000,
}


def spec_with(value: str) -> InferenceModelSpec:
    return InferenceModelSpec.model_validate(
        {
            "model": {
                "uri": "s3://models/digits.onnx",
                "credentialsSecret": "model-creds",
                "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}],
            },
            "optimization": {"recipe": "prune", "parameters": {"sparsity": value, "note": value}},
            "hardware": {"class": "cpu"},
            "serving": {"replicas": 1},
        }
    )


def hardware_with(value: str) -> HardwareClassSpec:
    return HardwareClassSpec.model_validate(
        {
            "instanceKind": "KIND_CPU",
            "nodeSelector": {"inferops.dev/pool": value},
            "tolerations": [{"key": "inferops.dev/dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "1"}},
        }
    )


def render(value: str) -> list[dict]:
    model = ModelRef("digits", "ml", "uid-1", 1, spec_with(value))
    hardware = hardware_with(value)
    job = desired_job(model, hardware, "0123456789", SETTINGS)
    serving, _ = desired_serving(model, hardware, Revision("s3://artifacts/ml/digits/0123456789", None), SETTINGS)
    return [job, *serving]


def shape(obj, path=""):
    """Every path in the object with the type found there: the structure, without the values."""
    if isinstance(obj, dict):
        out = {path: "dict"}
        for k, v in obj.items():
            out.update(shape(v, f"{path}.{k}"))
        return out
    if isinstance(obj, list):
        out = {path: f"list[{len(obj)}]"}
        for i, v in enumerate(obj):
            out.update(shape(v, f"{path}[{i}]"))
        return out
    return {path: type(obj).__name__}


def occurrences(obj, needle: str, path="") -> list[str]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in occurrences(v, needle, f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in occurrences(v, needle, f"{path}[{i}]")]
    return [path] if isinstance(obj, str) and needle in obj else []


BENIGN = render("benign-value")


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_values_render_to_the_same_structure(value):
    rendered = render(value)
    assert [o["kind"] for o in rendered] == [o["kind"] for o in BENIGN]
    for hostile, benign in zip(rendered, BENIGN):
        hostile_shape, benign_shape = shape(hostile), shape(benign)
        # Hash annotations differ in value, never in shape.
        assert hostile_shape == benign_shape, hostile["kind"]
        assert hostile["metadata"]["name"] == benign["metadata"]["name"]
        assert hostile["metadata"]["labels"] == benign["metadata"]["labels"]


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_values_land_verbatim_only_where_they_belong(value):
    job, configmap, deployment, service = render(value)[:4]
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index(f"note={value}") - 1] == "--param"
    assert pod["nodeSelector"] == {"inferops.dev/pool": value}
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"inferops.dev/pool": value}
    # Nowhere else: not in names, labels, annotations, the config.pbtxt or the Service.
    where = sorted(occurrences(job, value) + occurrences(deployment, value))
    allowed_prefixes = (".spec.template.spec.containers[0].args[", ".spec.template.spec.nodeSelector.")
    assert where and all(p.startswith(allowed_prefixes) for p in where), where
    assert occurrences(configmap, value) == [] and occurrences(service, value) == []


def test_templating_is_not_evaluated_on_values():
    job = render(HOSTILE["jinja-expression"])[0]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert any("{{ 7 * 7 }}" in a for a in args)
    assert not any("49" in a for a in args)


def test_secrets_are_referenced_never_inlined():
    job, configmap, deployment, service = render("benign-value")[:4]
    store = {"secretRef": {"name": "store-creds"}}
    assert job["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [store, {"prefix": "INFEROPS_SOURCE_", "secretRef": {"name": "model-creds"}}]
    pod = deployment["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    pulling = [c for c in containers if c.get("envFrom")]
    assert pulling and all(c["envFrom"] == [store] for c in pulling), "the pull reads only the artifact"
    text = json.dumps(render("benign-value"))
    assert "secretKeyRef" not in text and '"kind": "Secret"' not in text

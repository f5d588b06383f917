"""Generate the CustomResourceDefinitions from the pydantic models (the one source of truth).

pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no $ref, no
anyOf-for-null, every node typed, titles dropped, maps as additionalProperties.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from .common import API_VERSION, GROUP, VERSION
from .hardware_class import HardwareClassSpec
from .inference_model import InferenceModelSpec, InferenceModelStatus

_DROP = {"title", "$defs", "discriminator"}


def _resolve(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return [_resolve(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _resolve(value, defs)
        elif key == "patternProperties":
            out[key] = {pattern: _resolve(sub, defs) for pattern, sub in value.items()}
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_resolve(s, defs) for s in value]
        else:
            out[key] = value
    return _structural(out)


def _structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Fold `anyOf: [X, {type: null}]` into X with nullable, and keep only what K8s accepts."""
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if not options:
            continue
        non_null = [o for o in options if o.get("type") != "null"]
        if sorted(o.get("type") for o in non_null) == ["integer", "string"]:
            # The one union Kubernetes allows: int-or-string, string constraints at the top.
            string = next(o for o in non_null if o["type"] == "string")
            rest = {k: v for k, v in schema.items() if k != combinator}
            limits = {k: v for k, v in string.items() if k in ("pattern", "maxLength")}
            return {**rest, **limits, "anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        if len(non_null) == 1 and len(non_null) < len(options):
            merged = {**non_null[0], **{k: v for k, v in schema.items() if k != combinator}}
            merged["nullable"] = True
            if merged.get("default", "absent") is None:
                merged.pop("default")
            return merged
        if len(non_null) == 1:
            return {**non_null[0], **{k: v for k, v in schema.items() if k != combinator}}
        raise ValueError(f"union types cannot be expressed in a structural schema: {options}")
    if schema.get("default", "absent") is None:
        schema.pop("default")
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), (int, float)) and not isinstance(schema.get(bound), bool):
            schema[limit] = schema.pop(bound)
            schema[bound] = True
    names = schema.pop("propertyNames", None)
    pattern_properties = schema.pop("patternProperties", None)
    if pattern_properties:
        ((key_pattern, value_schema),) = pattern_properties.items()
        schema["additionalProperties"] = value_schema
        names = {**(names or {}), "pattern": key_pattern}
    if names and "pattern" in names:
        pattern = names["pattern"].replace("\\", "\\\\").replace("'", "\\'")
        schema.setdefault("x-kubernetes-validations", []).append(
            {"rule": f"self.all(k, k.matches('{pattern}'))", "message": f"keys must match {names['pattern']}"}
        )
        if "maxLength" in names:
            schema["x-kubernetes-validations"].append(
                {"rule": f"self.all(k, k.size() <= {names['maxLength']})", "message": f"keys must be at most {names['maxLength']} characters"}
            )
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if "properties" in schema and "type" not in schema:
        schema["type"] = "object"
    if schema.get("type") == "object" and "additionalProperties" in schema and schema["additionalProperties"] is False:
        schema.pop("additionalProperties")  # unknown fields are pruned (and refused by kubectl's field validation)
    if "pattern" in schema and schema.get("type") == "object":
        schema.pop("pattern")
    return schema


def _nullable_cleanup(schema: Any) -> Any:
    """Kubernetes drops `null` for absent optional fields anyway; nullable only matters for status."""
    if isinstance(schema, dict):
        return {k: _nullable_cleanup(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_nullable_cleanup(v) for v in schema]
    return schema


def openapi_schema(model: type[BaseModel], *, mode: str = "validation") -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)
    defs = raw.get("$defs", {})
    return _nullable_cleanup(_resolve(raw, defs))


def _with_rules(schema: dict[str, Any], path: list[str], rules: list[dict[str, str]]) -> None:
    node = schema
    for part in path:
        node = node["properties"][part]
    node.setdefault("x-kubernetes-validations", []).extend(rules)


def _meta_name_rules(max_length: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": max_length,
                "pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
            }
        },
    }


# Children are named <model>-triton, <model>-opt-<hash>: the model name must leave room for
# the suffixes and be a DNS-1035 label (Service names must start with a letter).
MODEL_NAME_MAX = 40


def inference_model_crd() -> dict[str, Any]:
    spec = openapi_schema(InferenceModelSpec)
    _with_rules(
        spec,
        ["serving"],
        [
            {
                "rule": "!has(self.autoscaling) || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",
                "message": "serving.autoscaling.minReplicas must not exceed maxReplicas",
            },
            {
                "rule": "!has(self.requestBatchSize) || !has(self.dynamicBatching) || !has(self.dynamicBatching.mode) || self.dynamicBatching.mode != 'explicit'"
                " || !has(self.dynamicBatching.maxBatchSize) || self.dynamicBatching.maxBatchSize >= self.requestBatchSize",
                "message": "dynamicBatching.maxBatchSize must be at least requestBatchSize: Triton refuses a request larger than the model's max batch size",
            },
        ],
    )
    _with_rules(
        spec,
        ["serving", "dynamicBatching"],
        [
            {
                "rule": "self.mode != 'explicit' || has(self.maxBatchSize)",
                "message": "dynamicBatching.mode explicit needs maxBatchSize",
            },
            {
                "rule": "!has(self.preferredBatchSizes) || !has(self.maxBatchSize) || self.preferredBatchSizes.all(s, s >= 1 && s <= self.maxBatchSize)",
                "message": "every preferredBatchSizes entry must be between 1 and maxBatchSize",
            },
        ],
    )
    status = openapi_schema(InferenceModelStatus, mode="serialization")
    status["x-kubernetes-preserve-unknown-fields"] = True
    return _crd(
        plural="inferencemodels",
        singular="inferencemodel",
        kind="InferenceModel",
        short_names=["im"],
        scope="Namespaced",
        spec=spec,
        status=status,
        meta=_meta_name_rules(MODEL_NAME_MAX),
        printer_columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Class", "type": "string", "jsonPath": ".spec.hardware.class"},
            {"name": "Recipe", "type": "string", "jsonPath": ".spec.optimization.recipe"},
            {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
            {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
            {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].reason", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        scale={"specReplicasPath": ".spec.serving.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"},
        categories=["inferops"],
    )


def hardware_class_crd() -> dict[str, Any]:
    spec = openapi_schema(HardwareClassSpec)
    return _crd(
        plural="hardwareclasses",
        singular="hardwareclass",
        kind="HardwareClass",
        short_names=["hwc"],
        scope="Cluster",
        spec=spec,
        status=None,
        meta=None,
        printer_columns=[
            {"name": "Kind", "type": "string", "jsonPath": ".spec.instanceKind"},
            {"name": "Selector", "type": "string", "jsonPath": ".spec.nodeSelector"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        scale=None,
        categories=["inferops"],
    )


def _crd(*, plural, singular, kind, short_names, scope, spec, status, meta, printer_columns, scale, categories) -> dict[str, Any]:
    properties: dict[str, Any] = {"spec": spec}
    if meta:
        properties["metadata"] = meta
    if status:
        properties["status"] = status
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": properties}},
        "additionalPrinterColumns": printer_columns,
    }
    subresources: dict[str, Any] = {}
    if status:
        subresources["status"] = {}
    if scale:
        subresources["scale"] = scale
    if subresources:
        version["subresources"] = subresources
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "inferops"}},
        "spec": {
            "group": GROUP,
            "names": {"plural": plural, "singular": singular, "kind": kind, "listKind": f"{kind}List", "shortNames": short_names, "categories": categories},
            "scope": scope,
            "versions": [version],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    return [inference_model_crd(), hardware_class_crd()]


HEADER = "# Generated from operator/inferops/api by `inferops crds`; do not edit.\n"


def render_crds() -> dict[str, str]:
    """File name -> YAML text, as checked in under crds/ and charts/inferops/crds/."""
    return {
        f"{crd['spec']['names']['plural']}.{GROUP}.yaml": HEADER + yaml.safe_dump(crd, sort_keys=False, width=120)
        for crd in all_crds()
    }


assert API_VERSION == f"{GROUP}/{VERSION}"

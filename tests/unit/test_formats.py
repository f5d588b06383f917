"""The model format from the spec to the Job, and the one catalogue the layers read."""

from __future__ import annotations

import json

import kopf
import pytest

from inferops.api.catalogue import FORMAT_NAMES, RECIPE_CATALOGUE
from inferops.api.inference_model import InferenceModelSpec
from inferops.api.recipes import GPU_ONLY_RECIPES, RECIPES
from inferops.handlers import validate_model
from inferops.optimize.pipeline import LOSSY, RECIPE_MODULES
from inferops.reconcile.children import desired_job

from .test_reconcile import GPU, SETTINGS, model, spec


def _args(s: dict) -> list[str]:
    return desired_job(model(s), GPU, "abc", SETTINGS)["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_job_is_told_the_format_and_the_signature_the_spec_gives():
    s = spec(model={"uri": "s3://models/digits.pt", "format": "torchscript", "inputs": [{"name": "image", "datatype": "FP32", "dims": [1, 8, 8]}]})
    args = _args(s)
    assert args[args.index("--format") + 1] == "torchscript"
    assert json.loads(args[args.index("--inputs") + 1]) == [{"name": "image", "datatype": "FP32", "dims": [1, 8, 8]}]


def test_an_unset_format_is_left_to_the_optimizer_to_read_from_the_file():
    assert InferenceModelSpec.model_validate(spec()).model.format is None
    assert "--format" not in _args(spec())


def test_the_webhook_refuses_a_format_no_build_reads():
    with pytest.raises(kopf.AdmissionError, match="already compiled"):
        validate_model(spec={"model": {"uri": "s3://m/x.plan", "format": "tensorrt-plan"}, "hardware": {"class": "gpu"}}, hardware_classes={})
    validate_model(spec={"model": {"uri": "s3://m/x.pt2", "format": "pytorch"}, "hardware": {"class": "gpu"}}, hardware_classes={})


def test_every_layer_reads_the_one_catalogue():
    assert set(RECIPES) == {r.name for r in RECIPE_CATALOGUE}
    assert GPU_ONLY_RECIPES == {"fp16", "tensorrt"}
    assert LOSSY == {r.name for r in RECIPE_CATALOGUE if r.lossy}
    assert set(RECIPE_MODULES) == set(RECIPES) - {"none"}
    assert set(FORMAT_NAMES) == {"onnx", "safetensors", "torchscript", "pytorch", "savedmodel", "keras", "tensorrt-plan"}

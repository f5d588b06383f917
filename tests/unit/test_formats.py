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


def _image(s: dict, settings=SETTINGS, hardware=GPU) -> str:
    return desired_job(model(s), hardware, "abc", settings)["spec"]["template"]["spec"]["containers"][0]["image"]


def test_the_job_runs_in_the_image_variant_the_format_needs():
    torch_image, tf_image = SETTINGS.optimizer_image_for("torch"), SETTINGS.optimizer_image_for("tensorflow")
    assert torch_image and tf_image and len({torch_image, tf_image, SETTINGS.optimizer_image}) == 3
    assert _image(spec()) == SETTINGS.optimizer_image, "ONNX: the default image, free of torch and tensorflow"
    assert _image(spec(model={"uri": "s3://m/digits", "format": "pytorch"})) == torch_image
    assert _image(spec(model={"uri": "s3://m/digits.pt2"})) == torch_image, "no format: the file name says it"
    assert _image(spec(model={"uri": "s3://m/digits.keras"})) == tf_image
    assert _image(spec(model={"uri": "s3://m/digits/", "format": "savedmodel"})) == tf_image
    # The variant goes before the class's image (without it the model cannot be read); the spec's wins.
    assert _image(spec(model={"uri": "s3://m/d.keras"}), hardware=GPU.model_copy(update={"optimizer_image": "reg/gpu-opt:1"})) == tf_image
    assert _image(spec(model={"uri": "s3://m/d.onnx"}), hardware=GPU.model_copy(update={"optimizer_image": "reg/gpu-opt:1"})) == "reg/gpu-opt:1"
    assert _image(spec(model={"uri": "s3://m/d.keras"}, optimization={"image": "reg/mine:2"})) == "reg/mine:2"


def test_the_chart_names_the_variants_and_an_empty_one_falls_back_to_the_default(monkeypatch):
    from inferops.reconcile.settings import OperatorSettings

    monkeypatch.setenv("INFEROPS_OPTIMIZER_IMAGES", '{"torch": "reg/opt-torch:9", "tensorflow": ""}')
    settings = OperatorSettings.from_env()
    assert _image(spec(model={"uri": "s3://m/d.pt2"}), settings) == "reg/opt-torch:9"
    assert _image(spec(model={"uri": "s3://m/d.keras"}), settings) == settings.optimizer_image
    monkeypatch.setenv("INFEROPS_OPTIMIZER_IMAGES", '["torch"]')
    with pytest.raises(ValueError, match="extra -> image"):
        OperatorSettings.from_env()

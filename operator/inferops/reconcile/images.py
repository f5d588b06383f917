"""Which images run a model's pods, and which of them may hold the platform's storage keys.

Images are the cluster admin's choice: the HardwareClass (cluster-scoped, made by the admin) or
the operator's settings. An image a tenant names in its InferenceModel (spec.optimization.image,
spec.serving.tritonImage) is used only where the admin listed it (INFEROPS_ALLOWED_IMAGES, the
chart's images.allowed) or allowed any (INFEROPS_ALLOW_IMAGE_OVERRIDES, images.allowOverrides);
an unlisted one is never given the platform's storage Secret (children._env_from), since it
could do anything with those keys.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..api.catalogue import format_extra
from ..api.hardware_class import HardwareClassSpec
from ..api.inference_model import InferenceModelSpec
from .settings import OperatorSettings


def image_listed(image: str, settings: OperatorSettings) -> bool:
    """Whether the admin listed the image (fnmatch patterns: `registry.example/team/*`)."""
    return any(fnmatchcase(image, pattern) for pattern in settings.allowed_images)


def spec_images(spec: InferenceModelSpec) -> list[tuple[str, str]]:
    """(field, image) of each image the tenant named."""
    named = [("spec.optimization.image", spec.optimization.image), ("spec.serving.tritonImage", spec.serving.triton_image)]
    return [(field, image) for field, image in named if image]


def image_refusals(spec: InferenceModelSpec, settings: OperatorSettings) -> list[str]:
    """The tenant-named images the admin did not allow, as `field 'image'`."""
    if settings.allow_image_overrides:
        return []
    return [f"{field} {image!r}" for field, image in spec_images(spec) if not image_listed(image, settings)]


def refusal_message(refusals: list[str], settings: OperatorSettings) -> str:
    listed = ", ".join(settings.allowed_images) or "none"
    return (
        f"{', '.join(refusals)}: not an allowed image. Images are chosen by the HardwareClass or the operator; "
        f"the platform admin allows others with the chart's images.allowed (now: {listed}). Remove the field to use the class's image."
    )


def platform_keys_allowed(spec: InferenceModelSpec, settings: OperatorSettings) -> bool:
    """Whether the pods running the optimizer image (the Job, the pull step) may hold the
    platform's storage Secret: only when the admin chose that image."""
    image = spec.optimization.image
    return image is None or image_listed(image, settings)


def optimizer_image(spec: InferenceModelSpec, hardware: HardwareClassSpec, settings: OperatorSettings) -> str:
    return spec.optimization.image or hardware.optimizer_image or settings.optimizer_image


def job_optimizer_image(spec: InferenceModelSpec, hardware: HardwareClassSpec, settings: OperatorSettings) -> str:
    """The optimization Job's image: the spec's; else the operator's variant with the extra the
    model's format needs (the spec's format, else the URI's file name: api/catalogue.py), before the
    class's image, without which the Job cannot read the model at all; else as optimizer_image."""
    variant = settings.optimizer_image_for(format_extra(spec.model.format, spec.model.uri))
    return spec.optimization.image or variant or hardware.optimizer_image or settings.optimizer_image


def triton_image(spec: InferenceModelSpec, hardware: HardwareClassSpec, settings: OperatorSettings) -> str:
    return spec.serving.triton_image or hardware.triton_image or settings.triton_image

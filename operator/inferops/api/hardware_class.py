"""HardwareClass: a cluster-scoped pool of nodes a model can be served on (like a StorageClass)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import Image, LabelSelector, Resources, Toleration
from .recipes import GPU_ONLY_RECIPES, RECIPES, Recipe
from .tensors import ApiModel

InstanceKind = Literal["KIND_GPU", "KIND_CPU"]
OnnxBackend = Literal["onnxruntime", "python"]


class HardwareClassSpec(ApiModel):
    """Where and how Triton runs for models of this class."""

    instance_kind: InstanceKind = Field(alias="instanceKind", description="Triton instance group kind on these nodes.")
    node_selector: dict[str, str] = Field(alias="nodeSelector", default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    resources: Resources = Field(default_factory=Resources, description="Requests and limits of each Triton container, e.g. nvidia.com/gpu: 1.")
    allowed_recipes: list[Recipe] | None = Field(
        alias="allowedRecipes",
        default=None,
        description="Recipes that make sense here; by default every recipe for a GPU class and every CPU recipe for a CPU class.",
    )
    triton_image: Image | None = Field(alias="tritonImage", default=None, description="Triton image on this class (else the operator's INFEROPS_TRITON_IMAGE).")
    onnx_backend: OnnxBackend = Field(
        alias="onnxBackend",
        default="onnxruntime",
        description=(
            "How this class's Triton image serves ONNX models: its native onnxruntime backend (NVIDIA's images), "
            "or the Python backend with ONNX Runtime inside (an image without native backends, such as the CPU image "
            "`inferops up` builds from the nvidia-pytriton wheel)."
        ),
    )
    optimizer_image: Image | None = Field(
        alias="optimizerImage", default=None,
        description="Image of the optimization Job and of the Triton pods' pull step on this class (else the operator's INFEROPS_OPTIMIZER_IMAGE).",
    )
    namespace_selector: LabelSelector | None = Field(
        alias="namespaceSelector",
        default=None,
        description=(
            "Namespaces whose InferenceModels may use this class, by their labels (kubernetes.io/metadata.name names one). "
            "Unset: every namespace. A model elsewhere is refused by the admission webhook where it is on, and fails with "
            "HardwareClassResolved=False/HardwareClassForbidden otherwise; nothing of it is scheduled on these nodes."
        ),
    )

    def admits(self, namespace_labels: dict[str, str]) -> bool:
        """Whether a model in a namespace with these labels may use the class."""
        return self.namespace_selector is None or self.namespace_selector.matches(namespace_labels)

    def allows(self, recipe: str) -> bool:
        if self.allowed_recipes is not None:
            return recipe in self.allowed_recipes or recipe == "none"
        return self.instance_kind == "KIND_GPU" or recipe not in GPU_ONLY_RECIPES

    def effective_recipes(self) -> list[str]:
        return [r for r in RECIPES if self.allows(r)]


class HardwareClass(ApiModel):
    spec: HardwareClassSpec

"""Pieces shared by every InferOps API object."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .tensors import ApiModel

GROUP = "inferops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Dns1123Label = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
Dns1123Subdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
Quantity = Annotated[
    int | Annotated[str, Field(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$")],
    Field(description="A Kubernetes quantity: 1, 500m, 16Gi."),
]
ResourceName = Annotated[str, Field(max_length=253, pattern=r"^([a-z0-9.-]+/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")]
Image = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\s\"'{}]+$")]


class Condition(ApiModel):
    """A condition in the Kubernetes API convention."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(alias="observedGeneration", default=None, ge=0)


class Toleration(ApiModel):
    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(alias="tolerationSeconds", default=None)


class Resources(ApiModel):
    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)


class LabelSelectorRequirement(ApiModel):
    key: str = Field(max_length=316)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, max_length=64)


class LabelSelector(ApiModel):
    """A Kubernetes LabelSelector: every matchLabels pair and every matchExpressions requirement
    must hold; an empty selector selects everything."""

    match_labels: dict[str, str] = Field(alias="matchLabels", default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(alias="matchExpressions", default_factory=list, max_length=32)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

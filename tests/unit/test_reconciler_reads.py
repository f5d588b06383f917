"""The reconciler's I/O at scale (issue "At scale"): a reconcile reads what the watches already
delivered from the cache (the model, its Jobs, its HardwareClass), applies without a GET what it
has just seen absent, writes a status only when it changes, and posts Events only for outcomes.

The Kube here records every call and answers like an API server that stores what it is sent."""

from __future__ import annotations

import copy
import itertools

import pytest

from inferops.reconcile.settings import OperatorSettings
from inferops.reconciler import MODEL_KIND, Reconciler, _worth_an_event

_versions = itertools.count(10)


def _stored(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = str(next(_versions))
    return obj


class RecordingKube:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def get_model(self, namespace, name):
        self.calls.append(("GET", f"model {name}"))
        return None

    async def get_owned(self, api_version, kind, namespace, name):
        self.calls.append(("GET", f"{kind} {name}"))
        return None

    async def apply_if_changed(self, desired, live=None, *, read_live=True):
        assert not read_live, "the reconciler knows whether it exists"
        self.calls.append(("APPLY", f"{desired['kind']} {desired['metadata']['name']}"))
        return _stored(desired)

    async def patch_model_status(self, namespace, name, patch, resource_version=None):
        self.calls.append(("STATUS", name))
        self.model["status"] = {**self.model.get("status", {}), **patch}
        self.model = _stored(self.model)
        return self.model


MODEL = {
    "apiVersion": "inferops.dev/v1alpha1",
    "kind": "InferenceModel",
    "metadata": {"name": "digits", "namespace": "ml", "uid": "uid-1", "generation": 1, "resourceVersion": "1"},
    "spec": {
        "model": {
            "uri": "s3://models/digits.onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}],
        },
        "optimization": {"recipe": "quantize-int8-dynamic"},
        "hardware": {"class": "cpu"},
        "serving": {"replicas": 1},
    },
}
CLASS = {"metadata": {"name": "cpu", "resourceVersion": "2"}, "spec": {"instanceKind": "KIND_CPU"}}


@pytest.mark.asyncio
async def test_a_new_model_costs_one_job_apply_and_one_status_write_and_no_read():
    kube = RecordingKube()
    kube.model = copy.deepcopy(MODEL)
    events: list[tuple[str, str]] = []
    reconciler = Reconciler(kube, OperatorSettings(artifact_root="s3://a", smoke_test=False), lambda body, type_, reason, message: events.append((reason, message)))
    for kind in ("Job", "Deployment", "HorizontalPodAutoscaler"):
        reconciler.cache.prime(kind, [])
    reconciler.cache.prime("HardwareClass", [CLASS])
    reconciler.cache.put(MODEL_KIND, kube.model)  # as model_event does with the watch's object

    await reconciler.reconcile("ml", "digits")
    assert [verb for verb, _ in kube.calls] == ["APPLY", "STATUS"], kube.calls
    optimized = next(c for c in kube.model["status"]["conditions"] if c["type"] == "Optimized")
    assert optimized["reason"] == "JobRunning", "the Job just created is said to run, as its own event would say"
    assert kube.model["status"]["phase"] == "Optimizing" and events == [], "no Event for a step on the way"

    # The Job's watch event (the object we applied) brings another reconcile: nothing to do.
    jobs = reconciler.cache.of_model("Job", "ml", "digits")
    assert [j["metadata"]["name"] for j in jobs] == [kube.model["status"]["jobName"]], "the cache holds what the apply returned"
    kube.calls.clear()
    await reconciler.reconcile("ml", "digits")
    assert kube.calls == [], "the status we wrote came back from the cache: no read, no write"


def test_events_for_outcomes_only():
    assert not _worth_an_event(None, "Optimizing") and not _worth_an_event("Optimizing", "Deploying")
    assert _worth_an_event("Deploying", "Ready") and _worth_an_event("Optimizing", "Failed")
    assert _worth_an_event("Ready", "Optimizing"), "a serving model that changes course is worth one"


@pytest.mark.asyncio
async def test_a_restart_reads_the_children_its_priming_list_returned():
    """The items of a LIST response carry no kind: a reconcile right after a restart, before a
    watch event replaced them, read the primed Deployment's kind and failed (KeyError 'kind')."""
    kube = RecordingKube()
    kube.model = copy.deepcopy(MODEL)
    reconciler = Reconciler(kube, OperatorSettings(artifact_root="s3://a", smoke_test=False), lambda *args: None)
    owner = [{"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "name": "digits", "uid": "uid-1", "controller": True}]
    listed = {"metadata": {"name": "digits-triton", "namespace": "ml", "resourceVersion": "5", "ownerReferences": owner,
                           "labels": {"inferops.dev/model": "digits"}}, "spec": {"replicas": 1}}
    reconciler.cache.prime("Deployment", [listed])
    for kind in ("Job", "HorizontalPodAutoscaler"):
        reconciler.cache.prime(kind, [])
    reconciler.cache.prime("HardwareClass", [CLASS])
    reconciler.cache.put(MODEL_KIND, kube.model)

    await reconciler.reconcile("ml", "digits")
    assert reconciler.cache.get("Deployment", "ml", "digits-triton")["kind"] == "Deployment"
    assert ("STATUS", "digits") in kube.calls, "the reconcile ran to its status write"

"""OwnedCache: the watch-fed view of owned objects the reconciler reads instead of GETs."""

from inferops.cache import OwnedCache


def job(name: str, model: str, rv: str, ns: str = "ns") -> dict:
    return {"kind": "Job", "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": {"inferops.dev/model": model}}}


def test_a_miss_means_absent_only_once_primed():
    cache = OwnedCache()
    assert not cache.primed("Job")
    cache.prime("Job", [job("a-1", "a", "5")])
    assert cache.primed("Job") and cache.get("Job", "ns", "a-1")["metadata"]["resourceVersion"] == "5"
    assert cache.of_model("Job", "ns", "a") == [job("a-1", "a", "5")]
    assert cache.of_model("Job", "ns", "b") == []


def test_an_older_event_does_not_replace_a_newer_apply_response():
    cache = OwnedCache()
    cache.put("Job", job("a-1", "a", "9"))
    cache.put("Job", job("a-1", "a", "7"))
    assert cache.get("Job", "ns", "a-1")["metadata"]["resourceVersion"] == "9"
    cache.remove("Job", "ns", "a-1")
    assert cache.get("Job", "ns", "a-1") is None and cache.of_model("Job", "ns", "a") == []


def test_resync_forgets_only_what_no_watch_keeps():
    cache = OwnedCache()
    cache.prime("Job", [job("a-1", "a", "1")])
    cache.put("Service", {"kind": "Service", "metadata": {"name": "a-triton", "namespace": "ns", "resourceVersion": "2"}})
    cache.forget_unwatched()
    assert cache.get("Service", "ns", "a-triton") is None and cache.get("Job", "ns", "a-1") is not None


def test_models_kept_by_their_watch_outlive_a_resync_but_a_miss_is_no_answer():
    cache = OwnedCache()
    cache.keep("InferenceModel")
    model = {"kind": "InferenceModel", "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "3"}}
    cache.put("InferenceModel", model)
    cache.forget_unwatched()
    assert cache.get("InferenceModel", "ns", "a") == model
    assert not cache.primed("InferenceModel"), "kept is not primed: a model not seen yet is read with a GET"
    # our status write's response (newer) is not replaced by the watch's older echo
    cache.put("InferenceModel", {**model, "metadata": {**model["metadata"], "resourceVersion": "5"}})
    cache.put("InferenceModel", {**model, "metadata": {**model["metadata"], "resourceVersion": "4"}})
    assert cache.get("InferenceModel", "ns", "a")["metadata"]["resourceVersion"] == "5"


def test_kept_objects_are_slimmed_to_what_the_reconciler_reads():
    from inferops.reconciler import _applies_replicas

    ours = {"manager": "inferops", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {}}}}}
    theirs = {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "a-triton", "namespace": "ns", "resourceVersion": "4", "generation": 2, "labels": {"inferops.dev/model": "a"},
                     "annotations": {"inferops.dev/applied-hash": "h"}, "ownerReferences": [{"uid": "u"}], "managedFields": [ours, theirs]},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "triton"}]}}},
        "status": {"readyReplicas": 3},
    }
    cache = OwnedCache()
    cache.put("Deployment", deployment)
    kept = cache.get("Deployment", "ns", "a-triton")
    assert kept["spec"] == {"replicas": 3} and kept["status"] == {"readyReplicas": 3}
    assert kept["metadata"]["annotations"] == {"inferops.dev/applied-hash": "h"} and kept["metadata"]["ownerReferences"] == [{"uid": "u"}]
    assert _applies_replicas(kept) and _applies_replicas(deployment)
    assert [e["manager"] for e in kept["metadata"]["managedFields"]] == ["inferops"]
    assert deployment["spec"]["template"] and len(deployment["metadata"]["managedFields"]) == 2, "the watch's object is left as it was"

    model = {"kind": "InferenceModel", "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "5", "managedFields": [theirs],
             "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "x"}}, "spec": {"a": 1}, "status": {"phase": "Ready"}}
    cache.put("InferenceModel", model)
    kept = cache.get("InferenceModel", "ns", "a")
    assert kept["metadata"]["annotations"] == {"team": "x"} and "managedFields" not in kept["metadata"]
    assert kept["spec"] == {"a": 1} and kept["status"] == {"phase": "Ready"}

    cache.put("Job", {"kind": "Job", "metadata": {"name": "a-1", "namespace": "ns", "resourceVersion": "6"}, "spec": {"backoffLimit": 2, "template": {}}, "status": {"succeeded": 1}})
    assert cache.get("Job", "ns", "a-1")["spec"] == {"backoffLimit": 2} and cache.get("Job", "ns", "a-1")["status"] == {"succeeded": 1}
    cache.put("ConfigMap", {"kind": "ConfigMap", "metadata": {"name": "a-config", "namespace": "ns", "resourceVersion": "7"}, "data": {"config.pbtxt": "x" * 1000}})
    assert "data" not in cache.get("ConfigMap", "ns", "a-config")


def test_kept_objects_share_their_keys_and_short_strings():
    import json

    cache = OwnedCache()
    for name in ("a-1", "b-1"):  # parsed separately, as two watch events are
        cache.put("Job", json.loads(json.dumps(job(name, name[0], "1") | {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})))
    a, b = cache.get("Job", "ns", "a-1"), cache.get("Job", "ns", "b-1")
    key_a = next(k for k in a["status"] if k == "conditions")
    key_b = next(k for k in b["status"] if k == "conditions")
    assert key_a is key_b and a["status"]["conditions"][0]["status"] is b["status"]["conditions"][0]["status"]

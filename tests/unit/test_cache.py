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

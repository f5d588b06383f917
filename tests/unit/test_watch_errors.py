"""Watch-stream errors a real API server cannot be made to produce on demand, injected with
KMock: a 410 Gone in the middle of a watch, 500s on the listing, slow and stalled streams.

The watch path under test is the operator's: Kopf's watcher with the settings the operator's
startup applies (handlers.configure_watching), feeding the operator's model_event handler. What
must hold: every model the server shows reaches a reconcile, nothing is lost or made up."""

from __future__ import annotations

import asyncio
import time

import kmock
import kmock as kmock_lib
import kopf
import pytest
import pytest_asyncio
from kopf._cogs.clients import auth, watching
from kopf._cogs.structs import credentials, references

from inferops import handlers
from inferops.cache import OwnedCache

MODELS = "inferops.dev/v1alpha1/inferencemodels"
RESOURCE = references.Resource(group="inferops.dev", version="v1alpha1", plural="inferencemodels", namespaced=True)


def model(name: str, rv: int) -> dict:
    return {"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": name, "namespace": "ml", "resourceVersion": str(rv)}}


def listing(rv: int, *items: dict) -> dict:
    return {"apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceModelList", "metadata": {"resourceVersion": str(rv)}, "items": list(items)}


def server_error(code: int, reason: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason}


class RecordingReconciler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.forgotten: list[tuple[str, str]] = []
        self.cache = OwnedCache()  # model_event keeps the model there for the reconcile

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))

    async def reconcile(self, namespace: str, name: str) -> None:
        self.calls.append((namespace, name))


@pytest.fixture
def settings(monkeypatch) -> kopf.OperatorSettings:
    monkeypatch.setenv("INFEROPS_WATCH_SERVER_TIMEOUT", "300")
    s = kopf.OperatorSettings()
    handlers.configure_watching(s)
    s.watching.reconnect_backoff = 0.01
    s.networking.error_backoffs = [0.05, 0.1, 0.2]  # the retry policy, sped up for the test
    return s


@pytest_asyncio.fixture
async def vault(kmock):
    store = credentials.Vault({"kmock": credentials.ConnectionInfo(server=str(kmock.url))})
    token = auth.vault_var.set(store)
    yield
    auth.vault_var.reset(token)
    await store.close()


async def drive(settings, until, timeout: float = 10.0):
    """Run the operator's watch path until `until(events, memo)` holds; return what it saw."""
    memo = kopf.Memo(reconciler=RecordingReconciler(), known_models=set())
    events: list = []

    async def consume() -> None:
        async for event in watching.infinite_watch(settings=settings, resource=RESOURCE, namespace=None):
            events.append(event)
            if isinstance(event, dict):
                meta = event["object"]["metadata"]
                await handlers.model_event(event=event, namespace=meta["namespace"], name=meta["name"], memo=memo)
            if until(events, memo):
                return

    await asyncio.wait_for(consume(), timeout)
    return events, memo


def names_of(events) -> list[tuple]:
    return [
        (e["type"], e["object"]["metadata"]["name"]) if isinstance(e, dict) else e.name
        for e in events
    ]


@pytest.mark.asyncio
@pytest.mark.kmock(cls=kmock.RawHandler)
async def test_410_gone_mid_watch_relists_and_loses_nothing(kmock, vault, settings):
    lists = kmock[f"list {MODELS}"]
    watches = kmock[f"watch {MODELS}"]
    lists[:1] << listing(10, model("a", 5))
    lists[1:] << listing(20, model("a", 5), model("b", 11), model("c", 15))
    # The first watch delivers b, then the server has compacted: 410 Gone (c was missed).
    watches[:1] << ({"type": "ADDED", "object": model("b", 11)}, {"type": "ERROR", "object": server_error(410, "Expired")})
    watches[1:] << ({"type": "MODIFIED", "object": model("c", 21)}, ...)

    events, memo = await drive(settings, lambda ev, memo: ("ml", "c") in memo.reconciler.calls and any(isinstance(e, dict) and e["type"] == "MODIFIED" for e in ev))
    assert names_of(events) == [
        (None, "a"), "LISTED", ("ADDED", "b"),  # first listing and watch, then the 410
        (None, "a"), (None, "b"), (None, "c"), "LISTED", ("MODIFIED", "c"),  # relisted: c is found
    ]
    assert len(lists) == 2
    assert watches[0].params["resourceVersion"] == "10" and watches[1].params["resourceVersion"] == "20"
    assert set(memo.reconciler.calls) == {("ml", "a"), ("ml", "b"), ("ml", "c")}
    assert memo.known_models == {("ml", "a"), ("ml", "b"), ("ml", "c")}


@pytest.mark.asyncio
@pytest.mark.kmock(cls=kmock.RawHandler)
async def test_500s_on_the_listing_are_retried(kmock, vault, settings):
    lists = kmock[f"list {MODELS}"]
    lists[:2] << 500 << server_error(500, "InternalError")
    lists[2:] << listing(30, model("a", 29))
    kmock[f"watch {MODELS}"] << ({"type": "ADDED", "object": model("b", 31)}, ...)

    events, memo = await drive(settings, lambda ev, memo: ("ml", "b") in memo.reconciler.calls)
    assert names_of(events) == [(None, "a"), "LISTED", ("ADDED", "b")]
    assert len(lists) == 3, "two 500s, then the listing that worked"
    assert memo.reconciler.calls == [("ml", "a"), ("ml", "b")]


@pytest.mark.asyncio
@pytest.mark.kmock(cls=kmock.RawHandler)
async def test_500_mid_watch_restarts_the_stream(kmock, vault, settings):
    lists = kmock[f"list {MODELS}"]
    watches = kmock[f"watch {MODELS}"]
    lists << listing(40, model("a", 39))
    # A 500 on the watch request itself: the request is retried, the stream goes on from 40.
    watches[:1] << 500 << server_error(500, "InternalError")
    watches[1:] << ({"type": "ADDED", "object": model("b", 41)}, ...)

    events, memo = await drive(settings, lambda ev, memo: ("ml", "b") in memo.reconciler.calls)
    assert names_of(events) == [(None, "a"), "LISTED", ("ADDED", "b")]
    assert [w.params.get("resourceVersion") for w in watches] == ["40", "40"]
    assert memo.reconciler.calls == [("ml", "a"), ("ml", "b")]


@pytest.mark.asyncio
@pytest.mark.kmock(cls=kmock.RawHandler)
async def test_slow_responses_are_waited_for_and_bounded(kmock, vault, settings):
    # The operator bounds every watch: the server is asked to close it, the client gives up later.
    assert settings.watching.server_timeout == 300
    assert settings.watching.client_timeout == 330
    assert settings.watching.connect_timeout is not None and settings.queueing.worker_limit == 128 and settings.queueing.idle_timeout == 0.5

    lists = kmock[f"list {MODELS}"]
    watches = kmock[f"watch {MODELS}"]
    lists << kmock_lib.headers({"Content-Type": "application/json"}) << (lambda: asyncio.sleep(1.0)) << listing(50, model("a", 49))  # a slow listing
    # A slow stream (1 s between events), then one that stalls: no bytes, no close.
    watches[:1] << (
        {"type": "ADDED", "object": model("b", 51)},
        lambda: asyncio.sleep(1.0),
        {"type": "ADDED", "object": model("c", 52)},
        ...,
    )
    watches[1:] << ({"type": "ADDED", "object": model("d", 53)}, ...)
    # Scaled down for the test: the client cuts a stalled stream after client_timeout and
    # resumes from the last resourceVersion it saw (no relisting, nothing replayed).
    settings.watching.client_timeout = 2.5

    started = time.monotonic()
    events, memo = await drive(settings, lambda ev, memo: ("ml", "d") in memo.reconciler.calls, timeout=15)
    assert names_of(events) == [(None, "a"), "LISTED", ("ADDED", "b"), ("ADDED", "c"), ("ADDED", "d")]
    assert len(lists) == 1
    assert watches[0].params["timeoutSeconds"] == "300"
    assert watches[1].params["resourceVersion"] == "52"
    assert memo.reconciler.calls == [("ml", "a"), ("ml", "b"), ("ml", "c"), ("ml", "d")]
    assert time.monotonic() - started >= 2.5, "the stalled stream was waited for until the client timeout"


@pytest.mark.asyncio
async def test_deleted_models_leave_the_resync_set():
    memo = kopf.Memo(reconciler=RecordingReconciler(), known_models=set())
    await handlers.model_event(event={"type": "ADDED", "object": model("a", 1)}, namespace="ml", name="a", memo=memo)
    await handlers.model_event(event={"type": "DELETED", "object": model("a", 2)}, namespace="ml", name="a", memo=memo)
    assert memo.known_models == set() and memo.reconciler.calls == [("ml", "a")]
    assert memo.reconciler.forgotten == [("ml", "a")], "what the operator kept for it goes with it"
    assert memo.reconciler.cache.get("InferenceModel", "ml", "a") is None, "a deleted model is not kept"


class FlakyReconciler(RecordingReconciler):
    """Fails like an API server that went away mid-reconcile, `failures` times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def reconcile(self, namespace: str, name: str) -> None:
        await super().reconcile(namespace, name)
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the API server went away")


@pytest.mark.asyncio
async def test_a_failed_reconcile_is_retried_without_another_event(monkeypatch):
    # Kopf does not retry on.event handlers: without our retry, this model would wait for
    # the next event or the resync (minutes) after one failed reconcile.
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.05, 0.1, 0.2))
    memo = kopf.Memo(reconciler=FlakyReconciler(failures=3), known_models=set(), retries={})
    with pytest.raises(ConnectionResetError):
        await handlers.model_event(event={"type": "ADDED", "object": model("a", 1)}, namespace="ml", name="a", memo=memo)
    assert list(memo.retries) == [("ml", "a")]
    started = time.monotonic()
    while memo.reconciler.failures or memo.retries:
        assert time.monotonic() - started < 5, memo.reconciler.calls
        await asyncio.sleep(0.01)
    assert memo.reconciler.calls == [("ml", "a")] * 4, "three failures, three retries, the last one succeeds"
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2 - 0.02, "each retry waited longer"

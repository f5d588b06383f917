"""Kopf handlers: thin adapters that turn watch events into reconcile calls.

The reconcile is level-based (read everything, compute, write the difference), so every
event source just names the model to look at: the model itself, the Jobs and Deployments it
owns, the HardwareClass it uses, and a periodic resync. No change-detecting handler is used,
so Kopf writes no annotations or finalizers onto the models and Argo CD sees no drift.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time

import kopf
from kubernetes.client.exceptions import ApiException

from .api.common import GROUP, VERSION
from .api.catalogue import FORMATS_BY_NAME
from .api.recipes import GPU_ONLY_RECIPES
from .executors import IOPools
from .kube import Kube, load_config
from .metrics import METRICS
from .reconcile.naming import MANAGED_BY, MODEL_LABEL
from .reconcile.settings import OperatorSettings
from .reconciler import MODEL_KIND, Reconciler

log = logging.getLogger("inferops.handlers")
RESYNC_SECONDS = float(os.environ.get("INFEROPS_RESYNC_SECONDS", "300"))
# Kopf does not retry on.event handlers: a reconcile that fails (a 500, an API server going
# away mid-way) is retried here, with a backoff, instead of waiting for the next event.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
OWNED = dict(labels={**MANAGED_BY, MODEL_LABEL: kopf.PRESENT})
# The same filter, server-side: Kopf's handler label filters apply only after it has listed and
# watched every Job and Deployment of the cluster; settings.watching.label_selectors puts it into
# the LIST and WATCH requests themselves, so other teams' objects never reach the operator.
OWNED_SELECTOR = ",".join([*(f"{k}={v}" for k, v in MANAGED_BY.items()), MODEL_LABEL])
OWNED_KINDS = {("batch", "v1", "jobs"): "Job", ("apps", "v1", "deployments"): "Deployment", ("autoscaling", "v2", "horizontalpodautoscalers"): "HorizontalPodAutoscaler"}


def _post_event(body, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)


@kopf.on.login()
def login(**kwargs) -> kopf.ConnectionInfo | None:
    """The kubernetes client's login only: with pykube-ng also installed (pytest-kind brings
    it), Kopf would log in through both, and pykube writes the CA to a file it never deletes."""
    return kopf.login_via_client(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    configure_watching(settings)
    for resource in OWNED_KINDS:
        settings.watching.label_selectors[resource] = OWNED_SELECTOR
    settings.posting.level = logging.WARNING  # Events only for state changes, which we post ourselves
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    _configure_webhook(settings, os.environ.get("INFEROPS_WEBHOOK", ""))
    _configure_peering(settings)
    load_config()
    operator_settings = OperatorSettings.from_env()
    memo.pools = IOPools(operator_settings.api_threads, operator_settings.storage_threads, operator_settings.smoke_threads)
    memo.reconciler = Reconciler(_api_client(operator_settings.api_threads, memo.pools), operator_settings, _post_event, memo.pools)
    await _wait_until_served(memo.reconciler.kube)
    await memo.reconciler.prime_cache(OWNED_SELECTOR)
    memo.known_models = set()
    memo.retries = {}
    memo.resync = asyncio.create_task(_resync_forever(memo.reconciler, memo.known_models, settings))
    memo.metrics_server = METRICS.serve(int(os.environ.get("INFEROPS_METRICS_PORT", "9090")), os.environ.get("INFEROPS_METRICS_ADDRESS", "0.0.0.0"))


def _api_client(threads: int, pools: IOPools) -> Kube:
    """The Kubernetes client on the API pool, with as many pooled connections as threads (the
    client's default is 5 a core: threads beyond it would open and drop a connection each call)."""
    import kubernetes

    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, threads)
    return Kube(kubernetes.client.ApiClient(config), executor=pools.api)


async def _wait_until_served(kube: Kube, timeout: float = 120) -> None:
    """Wait until the API server serves our resources before Kopf lists them. Right after a CRD
    is created the list answers 429 "storage is (re)initializing"; seen here once: Kopf retried
    the list and its watch then received the models' events, but no handler ran for minutes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for path in (f"/apis/{GROUP}/{VERSION}/hardwareclasses", f"/apis/{GROUP}/{VERSION}/inferencemodels"):
        while True:
            try:
                await kube.call("GET", path, query=[("limit", "1")])
                break
            except Exception as exc:
                if isinstance(exc, ApiException) and exc.status == 403:
                    break  # served; this replica may only list its own namespaces
                if loop.time() > deadline:
                    raise kopf.PermanentError(f"{path} is not served after {timeout:.0f}s: {exc}") from exc
                log.info("waiting for %s to be served: %s", path, getattr(exc, "reason", exc))
                await asyncio.sleep(1)


def configure_watching(settings: kopf.OperatorSettings) -> None:
    """Bounded watches and workers (Kopf's defaults wait forever): a stalled stream is cut
    after client_timeout and resumed from the last resourceVersion."""
    settings.watching.server_timeout = int(os.environ.get("INFEROPS_WATCH_SERVER_TIMEOUT", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    queueing = getattr(settings, "queueing", None) or settings.batching  # renamed in Kopf 1.43
    # Kopf keeps one worker per object while its events come, and each lingers idle_timeout
    # (5 s by default) after the last one; the limit counts lingering workers too, and a watch
    # that reaches it stops reading until one exits. With 16 workers, 100 models applied at once
    # waited a median 26 s (p99 59 s) for their Job: 16 slots / ~5 s each. Workers hand the work
    # to the reconciler, whose I/O is bounded by its own pools (executors.py), so a higher limit
    # and a short linger cost little: the limit now bounds memory, not throughput.
    queueing.worker_limit = int(os.environ.get("INFEROPS_WORKER_LIMIT", "128"))
    queueing.idle_timeout = float(os.environ.get("INFEROPS_WORKER_IDLE_SECONDS", "0.5"))


def _configure_webhook(settings: kopf.OperatorSettings, spec: str) -> None:
    if not spec:
        return
    mode, _, where = spec.partition(":")
    if mode == "local":
        import atexit
        import shutil
        import tempfile
        from pathlib import Path

        from .devcluster.pki import LocalPKI

        keys = Path(tempfile.mkdtemp(prefix="inferops-webhook-"))
        atexit.register(shutil.rmtree, keys, ignore_errors=True)  # a private key: not left in /tmp
        pki = LocalPKI(keys)
        serving = pki.issue("webhook", "inferops-webhook", server=True)
        settings.admission.server = kopf.WebhookServer(
            addr="127.0.0.1", host="127.0.0.1", port=int(where), cafile=str(pki.ca.cert), certfile=str(serving.cert), pkeyfile=str(serving.key)
        )
    elif mode == "service":
        host, _, port = where.rpartition(":")
        settings.admission.server = kopf.WebhookServer(
            addr="0.0.0.0", port=int(port), host=f"{host}.svc", certfile=os.environ.get("INFEROPS_WEBHOOK_CERT"), pkeyfile=os.environ.get("INFEROPS_WEBHOOK_KEY")
        )
    else:
        raise ValueError(f"INFEROPS_WEBHOOK must be local:PORT or service:NAME.NAMESPACE:PORT, not {spec!r}")
    settings.admission.managed = "validate.inferops.dev"


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    memo.resync.cancel()
    memo.pools.shutdown()
    if memo.metrics_server is not None:
        memo.metrics_server.shutdown()
        memo.metrics_server.server_close()


def _configure_peering(settings: kopf.OperatorSettings) -> None:
    """High availability with Kopf peering (`--peering=NAME`): every replica joins the
    ClusterKopfPeering NAME; the one with the highest priority acts, the others pause their
    watches. Replicas of one Deployment cannot be given distinct priorities, so each draws a
    random one (unless --priority or INFEROPS_PEERING_PRIORITY sets it): equal priorities
    would pause them all. A replica that dies stops blocking the others `lifetime` seconds
    after its last keep-alive; one that exits cleanly leaves the peering at once."""
    if settings.peering.standalone:
        return
    settings.peering.lifetime = int(os.environ.get("INFEROPS_PEERING_LIFETIME", "15"))
    if os.environ.get("INFEROPS_PEERING_PRIORITY"):
        settings.peering.priority = int(os.environ["INFEROPS_PEERING_PRIORITY"])
    elif settings.peering.priority == 0:
        settings.peering.priority = random.SystemRandom().randint(1, 2**31 - 1)
    log.info("peering %r with priority %d", settings.peering.name, settings.peering.priority)


async def _leading(kube: Kube, settings: kopf.OperatorSettings) -> bool:
    """Whether this replica is the one that acts: Kopf pauses the watches of the others, but
    not tasks of our own such as the resync. True when no live peer has a priority >= ours
    (besides ourselves)."""
    if settings.peering.standalone:
        return True
    import datetime

    body = await kube.get(f"/apis/kopf.dev/v1/clusterkopfpeerings/{settings.peering.name}")
    now = datetime.datetime.now(datetime.timezone.utc)
    rivals = 0
    for peer in ((body or {}).get("status") or {}).values():
        if not isinstance(peer, dict) or int(peer.get("priority", 0)) < settings.peering.priority:
            continue
        seen = datetime.datetime.fromisoformat(str(peer.get("lastseen")).replace("Z", "+00:00"))
        if seen + datetime.timedelta(seconds=int(peer.get("lifetime", 60))) > now:
            rivals += 1
    return rivals <= 1


async def _resync_forever(reconciler: Reconciler, known: set[tuple[str, str]], settings: kopf.OperatorSettings) -> None:
    """Safety net for anything a watch missed; a resync with nothing to change writes nothing.

    It walks the models the watch has shown (so it keeps to the watched namespaces), and only
    on the replica that leads. The walk is spread over the interval: a resync reads each model's
    ConfigMap and Service again (no watch keeps them), and 1,000 models at once were 2,000 GETs
    in a burst every interval."""
    next_at = time.monotonic() + RESYNC_SECONDS
    while True:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at = time.monotonic() + RESYNC_SECONDS
        reconciler.cache.forget_unwatched()  # the safety net reads from the API server again
        try:
            if not await _leading(reconciler.kube, settings):
                continue
        except Exception:
            log.exception("could not tell whether this replica leads; skipping this resync")
            continue
        models = sorted(known)
        pace = 0.8 * RESYNC_SECONDS / max(len(models), 1)  # done well before the next round
        for namespace, name in models:
            started = time.monotonic()
            try:
                await reconciler.reconcile(namespace, name)
            except Exception:
                log.exception("resync of %s/%s failed; trying again in %.0fs", namespace, name, RESYNC_SECONDS)
            await asyncio.sleep(max(0.0, pace - (time.monotonic() - started)))


@kopf.index(GROUP, VERSION, "inferencemodels")
def models_by_class(namespace: str, name: str, spec: kopf.Spec, **_):
    return {(spec.get("hardware") or {}).get("class"): (namespace, name)}


@kopf.index(GROUP, VERSION, "hardwareclasses")
def hardware_classes(name: str, spec: kopf.Spec, **_):
    return {name: dict(spec)}


async def _reconcile(memo: kopf.Memo, namespace: str, name: str, attempt: int = 0) -> None:
    """Reconcile; on failure schedule one retry for the model (backing off), then re-raise so
    that Kopf logs the error. One pending retry per model; each failed retry waits longer."""
    retries = memo.setdefault("retries", {})
    try:
        again = await memo.reconciler.reconcile(namespace, name)
    except Exception:
        if (namespace, name) not in retries:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            log.warning("reconcile of %s/%s failed; retrying in %.0fs", namespace, name, delay)
            retries[(namespace, name)] = asyncio.create_task(_retry_later(memo, namespace, name, attempt + 1, delay))
        raise
    if again is not None and (namespace, name) not in retries:
        # The smoke inference failed: no event may ever say it would pass now.
        retries[(namespace, name)] = asyncio.create_task(_retry_later(memo, namespace, name, 0, again))


async def _retry_later(memo: kopf.Memo, namespace: str, name: str, attempt: int, delay: float) -> None:
    await asyncio.sleep(delay)
    memo.retries.pop((namespace, name), None)
    try:
        await _reconcile(memo, namespace, name, attempt)
    except Exception:
        log.exception("retry %d of %s/%s failed", attempt, namespace, name)


@kopf.on.event(GROUP, VERSION, "inferencemodels")
async def model_event(event, namespace: str, name: str, memo: kopf.Memo, **_) -> None:
    _remember(memo, MODEL_KIND, event)  # the reconcile reads the model from here, not with a GET
    if event["type"] == "DELETED":
        memo.known_models.discard((namespace, name))
        METRICS.set_phase(namespace, name, None)
        memo.reconciler.forget(namespace, name)  # its locks, report reads and smoke results
        return
    memo.known_models.add((namespace, name))
    await _reconcile(memo, namespace, name)


def _remember(memo: kopf.Memo, kind: str, event) -> None:
    """Keep the reconciler's cache as the watch shows it, before the reconcile reads it."""
    obj = event["object"]
    if event["type"] == "DELETED":
        memo.reconciler.cache.remove(kind, obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
    else:
        memo.reconciler.cache.put(kind, obj)


@kopf.on.event("batch", "v1", "jobs", **OWNED)
async def job_event(event, namespace: str, labels, memo: kopf.Memo, **_) -> None:
    _remember(memo, "Job", event)
    await _reconcile(memo, namespace, labels[MODEL_LABEL])


@kopf.on.event("apps", "v1", "deployments", **OWNED)
async def deployment_event(event, namespace: str, labels, memo: kopf.Memo, **_) -> None:
    _remember(memo, "Deployment", event)
    await _reconcile(memo, namespace, labels[MODEL_LABEL])


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", **OWNED)
async def autoscaler_event(event, memo: kopf.Memo, **_) -> None:
    """Only kept for the reconciler to read: the HPA's own scaling is none of our business."""
    _remember(memo, "HorizontalPodAutoscaler", event)


@kopf.on.event(GROUP, VERSION, "hardwareclasses")
async def hardware_class_event(event, name: str, models_by_class: kopf.Index, memo: kopf.Memo, **_) -> None:
    _remember(memo, "HardwareClass", event)
    for namespace, model in list(models_by_class.get(name, [])):
        await _reconcile(memo, namespace, model)


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(event, name: str, memo: kopf.Memo, **_) -> None:
    """Namespaces are kept in the cache for the HardwareClasses' namespaceSelector; a change of
    labels may give or take a class from the models there, so they are looked at again."""
    before = memo.reconciler.cache.get("Namespace", "", name)
    _remember(memo, "Namespace", event)
    old_labels = ((before or {}).get("metadata") or {}).get("labels")
    if event["type"] == "DELETED" or before is None or old_labels == (event["object"]["metadata"].get("labels") or {}):
        return
    for namespace, model in sorted(memo.known_models):
        if namespace == name:
            await _reconcile(memo, namespace, model)


def _tenant_refusals(spec: kopf.Spec, namespace: str | None, memo: kopf.Memo, class_spec: dict | None) -> list[str]:
    """Images the admin did not allow, and a class the namespace may not use."""
    from .api.hardware_class import HardwareClassSpec
    from .api.inference_model import InferenceModelSpec
    from .reconcile.images import image_refusals, refusal_message
    from .reconcile.tenancy import namespace_labels

    refusals = []
    settings = memo.reconciler.settings
    try:
        parsed = InferenceModelSpec.model_validate(dict(spec))
    except Exception:
        parsed = None  # the schema's own rules answer for that
    if parsed is not None and (images := image_refusals(parsed, settings)):
        refusals.append(refusal_message(images, settings))
    try:
        hardware = HardwareClassSpec.model_validate(class_spec) if class_spec is not None else None
    except Exception:
        hardware = None  # an invalid class fails the model with its own condition
    if hardware is None:
        return refusals
    if hardware.namespace_selector is not None and namespace:
        labels = namespace_labels(_namespace_now(memo, namespace), namespace)
        if labels is None or not hardware.admits(labels):
            class_name = (spec.get("hardware") or {}).get("class")
            refusals.append(f"namespace {namespace!r} may not use HardwareClass {class_name!r} (its namespaceSelector); ask the platform admin for access, or use another class")
    return refusals


def _namespace_now(memo: kopf.Memo, name: str) -> dict | None:
    """The namespace as the API server has it now (an admission is rare; the watch may lag a
    label set a moment ago), else as the watch last showed it."""
    from .kube import NAMESPACES

    try:
        return memo.reconciler.kube._call("GET", f"{NAMESPACES}/{name}")
    except Exception as exc:
        log.warning("reading namespace %s for admission: %s; using the watched copy", name, exc)
        return memo.reconciler.cache.get("Namespace", "", name)


def validate_model(spec: kopf.Spec, hardware_classes: kopf.Index, memo: kopf.Memo | None = None, namespace: str | None = None, **_) -> None:
    """Admission: rules that span objects, which CRD schemas cannot express."""
    class_name = (spec.get("hardware") or {}).get("class")
    if memo is not None and getattr(memo, "reconciler", None) is not None:
        refusals = _tenant_refusals(spec, namespace, memo, next(iter(hardware_classes.get(class_name, [])), None))
        if refusals:
            raise kopf.AdmissionError("; ".join(refusals))
    recipe = (spec.get("optimization") or {}).get("recipe") or "none"
    fmt = FORMATS_BY_NAME.get((spec.get("model") or {}).get("format") or "")
    if fmt is not None and not fmt.supported:
        raise kopf.AdmissionError(f"model.format {fmt.name}: {fmt.unsupported_reason}")
    for class_spec in hardware_classes.get(class_name, []):
        if class_spec.get("instanceKind") == "KIND_CPU":
            gpu_only = [r for r in recipe.split(",") if r.strip() in GPU_ONLY_RECIPES]
            if gpu_only:
                raise kopf.AdmissionError(
                    f"recipe {', '.join(gpu_only)} needs a GPU, but HardwareClass {class_name!r} is KIND_CPU; "
                    "use a GPU class or drop the step"
                )


if os.environ.get("INFEROPS_WEBHOOK"):
    # Kopf refuses to start with admission handlers but no server: register only when configured.
    kopf.on.validate(GROUP, VERSION, "inferencemodels", ignore_failures=True)(validate_model)

"""Quiet at rest: once every model is Ready and nothing changes, the operator makes no API
request other than its watch streams (issue "At scale").

Counted from the API server's audit log, which records the reads of the inferops-system
ServiceAccounts (the operator fixture runs as inferops-system:inferops). A watch re-opened
after INFEROPS_WATCH_SERVER_TIMEOUT (60 s in the fixture) is a watch and allowed; a LIST made
before it (a re-list) is not: at rest a watch resumes from its last resourceVersion (kept
fresh by bookmarks), so a re-list would mean the operator forgot where it was. The session
operator's resync is 3600 s, so the configured resync does not fall into the quiet minute.
"""

from __future__ import annotations

import datetime
import json
import time
from collections import Counter

import pytest
import yaml

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

QUIET_SECONDS = 60
MODELS = 4
CLASS = """
apiVersion: inferops.dev/v1alpha1
kind: HardwareClass
metadata: {name: quiet-cpu}
spec:
  instanceKind: KIND_CPU
  nodeSelector: {inferops.dev/pool: cpu}
"""


def manifest(name: str) -> dict:
    return {
        "apiVersion": "inferops.dev/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": f"s3://models/{name}/model.onnx",
                "inputs": [{"name": "input", "datatype": "FP32", "dims": [64]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [10]}],
            },
            "optimization": {"recipe": "quantize-int8-dynamic"},
            "hardware": {"class": "quiet-cpu"},
            "serving": {"replicas": 1},
        },
    }


def _publish_report(operator, namespace: str, body: dict) -> None:
    """kwok Job pods publish nothing: write report.json where the model's Job would."""
    from inferops.api.hardware_class import HardwareClassSpec
    from inferops.api.inference_model import InferenceModelSpec
    from inferops.reconcile.naming import optimization_hash

    name = body["metadata"]["name"]
    spec_hash = optimization_hash(InferenceModelSpec.model_validate(body["spec"]), HardwareClassSpec.model_validate(yaml.safe_load(CLASS)["spec"]))
    path = operator.artifacts / namespace / name / spec_hash
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps({"artifactUri": f"file://{path}", "modelName": name, "backend": "onnxruntime"}))


def _received(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()


def by_verb_resource(events: list[dict]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for e in events:
        ref = e.get("objectRef") or {}
        what = ref.get("resource", e.get("requestURI", "?")) + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[f"{e['verb']} {what}"] += 1
    return dict(counts.most_common())


def test_no_requests_but_watches_at_rest(cluster, namespace, operator):
    cluster.kubectl("apply", "-f", "-", input=CLASS)
    try:
        bodies = [manifest(f"quiet{i}") for i in range(MODELS)]
        for body in bodies:
            _publish_report(operator, namespace, body)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": bodies}))
        for body in bodies:
            cluster.kubectl("wait", f"inferencemodel/{body['metadata']['name']}", "-n", namespace, "--for=jsonpath={.status.phase}=Ready", "--timeout=120s", timeout=130)
        # Quiet means the whole cluster: the namespaces earlier tests deleted take their models
        # and children with them, and the operator rightly looks at each as it goes.
        deadline = time.monotonic() + 180
        while cluster.kubectl("get", "namespaces", "-o", "jsonpath={.items[?(@.status.phase=='Terminating')].metadata.name}").stdout.strip():
            assert time.monotonic() < deadline, "namespaces of earlier tests are still terminating after 180 s"
            time.sleep(1)
        time.sleep(5)  # the last Ready's own events (status write, Deployment status) settle
        start = time.time()
        time.sleep(QUIET_SECONDS)
        end = time.time()
        quiet = [e for e in cluster.audit_requests(user=operator.user) if start <= _received(e) < end]
        others = [e for e in quiet if e["verb"] != "watch"]
        print(f"operator requests in a quiet {QUIET_SECONDS} s:", json.dumps(by_verb_resource(quiet)))
        assert not others, f"requests other than watches at rest: {json.dumps(by_verb_resource(others))}; e.g. {[e['requestURI'] for e in others[:5]]}"
    finally:
        cluster.kubectl("delete", "hardwareclass", "quiet-cpu", "--ignore-not-found")

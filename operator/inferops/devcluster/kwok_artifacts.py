"""What kwok cannot do: kwok plays the kubelet, so an optimization Job's pod "succeeds" without
running the optimizer, and nothing is published. The operator deploys nothing without the
artifact's report.json, so for each optimization Job on a kwok cluster this stand-in commits what
the optimizer would (a report.json with the Job's model name and signature; no model file) at the
Job's --output, through the same write-once publish. Outputs it cannot write (not file://) and the
model kwok fails on purpose (devcluster/profiles/kwok-stages.yaml) are left alone.

    python -m inferops.devcluster.kwok_artifacts --kubeconfig PATH    (runs until interrupted)
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("inferops.devcluster")
OPTIMIZER_JOBS = "app.kubernetes.io/component=optimizer,app.kubernetes.io/managed-by=inferops"
FAILS_ON_PURPOSE = {"s3://kwok/accuracy-gate-fails.onnx"}


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def stand_in_report(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(output URI, report) for an optimizer container's arguments, or None to publish nothing."""
    output, model_uri = _arg(args, "--output"), _arg(args, "--model")
    if not output or not output.startswith("file://") or model_uri in FAILS_ON_PURPOSE:
        return None
    signature = {key: json.loads(_arg(args, flag) or "[]") for key, flag in (("inputs", "--inputs"), ("outputs", "--outputs"))}
    return output, {
        "artifactUri": output,
        "modelName": _arg(args, "--model-name") or "model",
        "backend": "onnxruntime",
        "steps": [s for s in (_arg(args, "--recipe") or "none").split(",") if s != "none"],
        "signature": signature,
        "notes": ["published by the kwok stand-in for the optimizer (devcluster/kwok_artifacts.py): no model was optimized"],
    }


def publish_for(job: dict[str, Any]) -> bool:
    from inferops.storage import publish

    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    made = stand_in_report(list(containers[0].get("args") or [])) if containers else None
    if made is None:
        return False
    output, report = made
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "report.json").write_text(json.dumps(report))
        return publish(Path(tmp), output)


class KwokPublisher:
    """A thread that watches optimization Jobs (all namespaces) and publishes for each new one."""

    def __init__(self, kubeconfig: Path | str) -> None:
        self.kubeconfig = str(kubeconfig)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kwok-publisher", daemon=True)

    def start(self) -> "KwokPublisher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import kubernetes

        client = kubernetes.config.new_client_from_config(config_file=self.kubeconfig)
        batch = kubernetes.client.BatchV1Api(client)
        seen: set[str] = set()
        while not self._stop.is_set():
            try:
                for event in kubernetes.watch.Watch().stream(batch.list_job_for_all_namespaces, label_selector=OPTIMIZER_JOBS, timeout_seconds=2, _request_timeout=5):
                    job = client.sanitize_for_serialization(event["object"])
                    uid = job["metadata"]["uid"]
                    if event["type"] == "ADDED" and uid not in seen:
                        seen.add(uid)
                        publish_for(job)
                    if self._stop.is_set():
                        return
            except Exception as exc:  # the API server restarts in the fault tests: watch again
                log.debug("kwok publisher: %s; watching again", exc)
                self._stop.wait(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    publisher = KwokPublisher(parser.parse_args().kubeconfig).start()
    try:
        publisher._stop.wait()
    except KeyboardInterrupt:
        publisher.stop()


if __name__ == "__main__":
    main()

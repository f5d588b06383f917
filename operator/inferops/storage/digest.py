"""One digest for a whole artifact: sha256 over its report's per-file checksums.

The operator records it when it first reads the report of the Job that wrote the artifact, and
passes it to the Triton pods' pull step (`inferops pull --digest`), which refuses a tree whose
report lists other files or other checksums: an artifact changed after the operator saw it
(report.json rewritten to match) no longer passes, where the checksums alone would.
"""

from __future__ import annotations

import hashlib
import json

PREFIX = "sha256:"


def artifact_digest(checksums: dict[str, str]) -> str:
    canonical = json.dumps(dict(sorted(checksums.items())), separators=(",", ":"), sort_keys=True)
    return PREFIX + hashlib.sha256(canonical.encode()).hexdigest()

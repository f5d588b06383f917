"""One stderr log handler for the command-line programs, with credential values masked."""

from __future__ import annotations

import logging
import sys

from .credentials import install_log_redaction


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_inferops", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._inferops = True  # type: ignore[attr-defined]
        install_log_redaction(handler)
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""Storage credentials from the environment or a mounted Secret, and a log filter that hides them.

A Kubernetes Secret mounted as a volume at $INFEROPS_CREDENTIALS_DIR holds one file per key
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION);
a file there wins over the environment variable of the same name. The same Secret can instead
be injected with envFrom, which needs nothing from here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS_DIR_ENV = "INFEROPS_CREDENTIALS_DIR"
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def _setting(name: str) -> str | None:
    directory = os.environ.get(CREDENTIALS_DIR_ENV)
    if directory:
        f = Path(directory) / name
        if f.is_file():
            return f.read_text().strip() or None
    return os.environ.get(name) or None


@dataclass(frozen=True)
class S3Settings:
    access_key_id: str | None
    secret_access_key: str | None = None
    session_token: str | None = None
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def load(cls) -> "S3Settings":
        return cls(
            access_key_id=_setting("AWS_ACCESS_KEY_ID"),
            secret_access_key=_setting("AWS_SECRET_ACCESS_KEY"),
            session_token=_setting("AWS_SESSION_TOKEN"),
            endpoint_url=_setting("AWS_ENDPOINT_URL_S3") or _setting("AWS_ENDPOINT_URL"),
            region=_setting("AWS_REGION") or _setting("AWS_DEFAULT_REGION"),
        )

    def __repr__(self) -> str:  # never print the keys, even in a traceback's locals
        return f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, access_key_id={'***' if self.access_key_id else None})"


def secret_values() -> list[str]:
    """Every credential value currently configured, longest first (so substrings are masked whole)."""
    values = {v for k in SECRET_KEYS if (v := _setting(k)) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """Masks credential values in every record passing through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_redaction(handler: logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())

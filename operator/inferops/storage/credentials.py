"""Storage credentials from the environment or a mounted Secret, and a log filter that hides them.

A Kubernetes Secret mounted as a volume at $INFEROPS_CREDENTIALS_DIR holds one file per key
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION);
a file there wins over the environment variable of the same name. The same Secret can instead
be injected with envFrom, which needs nothing from here.

Two sets, two roles. The plain AWS_* are the platform's: they write (and `inferops pull` reads)
artifacts under the artifact root. What the user gives (spec.model.credentialsSecret) reaches
the optimization Job with the prefix INFEROPS_SOURCE_ and serves only the reads of the model,
the eval data and a distillation student (`source_settings`). Neither set stands in for the
other: the user's keys never go to the platform's endpoint, and the platform's keys never read
a URI that a tenant wrote in a spec (they could read other tenants' artifacts). In the Job
(INFEROPS_SOURCE_CREDENTIALS=isolated) a source without a Secret is read anonymously; a run by
hand without INFEROPS_SOURCE_* uses the one set of AWS_* for both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS_DIR_ENV = "INFEROPS_CREDENTIALS_DIR"
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SOURCE_PREFIX = "INFEROPS_SOURCE_"
SOURCE_MODE_ENV = "INFEROPS_SOURCE_CREDENTIALS"  # "isolated": never fall back to the platform's


def _setting(name: str, prefix: str = "") -> str | None:
    if prefix:
        return os.environ.get(prefix + name) or None
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
    # Only what is here: no signing without keys, no endpoint or keys from botocore's own
    # environment lookups (which would find the platform's AWS_*).
    isolated: bool = False

    @classmethod
    def load(cls, prefix: str = "") -> "S3Settings":
        return cls(
            access_key_id=_setting("AWS_ACCESS_KEY_ID", prefix),
            secret_access_key=_setting("AWS_SECRET_ACCESS_KEY", prefix),
            session_token=_setting("AWS_SESSION_TOKEN", prefix),
            endpoint_url=_setting("AWS_ENDPOINT_URL_S3", prefix) or _setting("AWS_ENDPOINT_URL", prefix),
            region=_setting("AWS_REGION", prefix) or _setting("AWS_DEFAULT_REGION", prefix),
            isolated=bool(prefix),
        )

    def __repr__(self) -> str:  # never print the keys, even in a traceback's locals
        return f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, access_key_id={'***' if self.access_key_id else None})"


def source_settings() -> S3Settings:
    """Credentials for reading what the spec names (model, eval data, student)."""
    if any(os.environ.get(SOURCE_PREFIX + k) for k in KEYS) or os.environ.get(SOURCE_MODE_ENV) == "isolated":
        return S3Settings.load(SOURCE_PREFIX)
    return S3Settings.load()  # a run by hand: one set of credentials for everything


def secret_values() -> list[str]:
    """Every credential value currently configured, longest first (so substrings are masked whole)."""
    values = {v for k in SECRET_KEYS for p in ("", SOURCE_PREFIX) if (v := _setting(k, p)) and len(v) >= 4}
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

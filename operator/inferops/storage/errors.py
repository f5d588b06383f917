"""Storage errors: each names the URI (with any secret part redacted) and what went wrong."""

from __future__ import annotations


class StorageError(RuntimeError):
    """Base of every storage failure; the message is safe to log and to put in a report."""


class NotFound(StorageError):
    pass


class AccessDenied(StorageError):
    pass


class Unreachable(StorageError):
    pass


class UnsupportedScheme(StorageError):
    pass


class IncompleteArtifact(StorageError):
    """A model repository without its commit marker (report.json) or with a file whose checksum differs."""


class TooLarge(StorageError):
    """An object bigger than the reader's cap: it was not read (see Backend.read_small)."""


class ArtifactTampered(IncompleteArtifact):
    """A published artifact that is no longer what the operator recorded from its Job's report."""

"""What every storage backend does: fetch a file or a tree, publish a tree atomically, list a tree."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from .errors import StorageError
from .uri import ParsedUri

# Written last when a tree is published; readers treat a tree without it as incomplete.
COMMIT_MARKER = "report.json"


def too_large(uri: object, size: int | None, limit: int) -> str:
    have = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return f"{uri} holds {have}, over the limit of {limit} bytes the operator reads; it was not read"


def staging_name(name: str) -> str:
    return f".{name or 'root'}.staging-{uuid.uuid4().hex[:12]}"


class Backend(ABC):
    def __init__(self, uri: ParsedUri) -> None:
        self.uri = uri

    @property
    def basename(self) -> str:
        return self.uri.path.rstrip("/").rsplit("/", 1)[-1] or self.uri.authority

    @abstractmethod
    def fetch(self, dest: Path) -> Path:
        """Copy the file or tree at the URI to dest/<basename> and return that path."""

    @abstractmethod
    def publish(self, src_dir: Path, marker: str = COMMIT_MARKER) -> bool:
        """Make the URI hold exactly the files of src_dir, all of them or none; `marker` goes last.

        Write-once: where a committed tree (its marker) is already at the URI, nothing is written
        or deleted and False is returned; True when this call committed the tree."""

    @abstractmethod
    def list_files(self) -> list[str]:
        """Relative paths of the files under the URI (empty when nothing is there)."""

    def read_small(self, limit: int) -> bytes:
        """The object at the URI if it holds at most `limit` bytes; TooLarge (nothing read beyond
        the cap) otherwise. For what the operator reads (report.json): a tenant's object must not
        fill its memory or disk."""
        raise StorageError(f"{self.uri}: this store cannot be read by the operator")


def tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def ordered_for_publish(src_dir: Path, marker: str) -> list[Path]:
    """Every file of the tree, the commit marker last."""
    files = tree_files(src_dir)
    return [p for p in files if p.relative_to(src_dir).as_posix() != marker] + [
        p for p in files if p.relative_to(src_dir).as_posix() == marker
    ]

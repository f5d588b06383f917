"""What every storage backend does: fetch a file or a tree, publish a tree atomically, list a tree."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from .uri import ParsedUri

# Written last when a tree is published; readers treat a tree without it as incomplete.
COMMIT_MARKER = "report.json"


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
    def publish(self, src_dir: Path, marker: str = COMMIT_MARKER) -> None:
        """Make the URI hold exactly the files of src_dir, all of them or none; `marker` goes last."""

    @abstractmethod
    def list_files(self) -> list[str]:
        """Relative paths of the files under the URI (empty when nothing is there)."""


def tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def ordered_for_publish(src_dir: Path, marker: str) -> list[Path]:
    """Every file of the tree, the commit marker last."""
    files = tree_files(src_dir)
    return [p for p in files if p.relative_to(src_dir).as_posix() != marker] + [
        p for p in files if p.relative_to(src_dir).as_posix() == marker
    ]

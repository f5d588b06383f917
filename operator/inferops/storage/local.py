"""file:// and pvc:// (a PersistentVolumeClaim mounted in the pod): plain filesystem paths.

Publishing stages the tree in a hidden sibling directory on the same filesystem and renames it
into place, so a reader sees no tree or the whole one, never a partial one. Write-once: a committed
tree (one with its report.json) is never replaced; a second publish to it changes nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .base import COMMIT_MARKER, Backend, staging_name, too_large, tree_files
from .errors import AccessDenied, NotFound, TooLarge
from .progress import Progress, log
from .uri import local_path

CHUNK = 8 * 1024 * 1024


def copy_with_progress(src: Path, dst: Path, label: str) -> None:
    size = src.stat().st_size
    progress = Progress(label, size)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            progress(len(chunk))
    if size >= CHUNK:
        progress.finish()


class LocalBackend(Backend):
    @property
    def path(self) -> Path:
        return local_path(self.uri)

    def fetch(self, dest: Path) -> Path:
        src = self.path
        try:
            if src.is_file():
                target = dest / src.name
                copy_with_progress(src, target, f"copy {self.uri}")
                return target
            if src.is_dir():
                target = dest / (src.name or "root")
                for f in tree_files(src):
                    copy_with_progress(f, target / f.relative_to(src), f"copy {f.relative_to(src)}")
                target.mkdir(parents=True, exist_ok=True)
                return target
        except PermissionError as exc:
            raise AccessDenied(f"permission denied reading {self.uri}: {exc.strerror}") from None
        raise NotFound(f"nothing at {self.uri} ({src} does not exist)")

    def publish(self, src_dir: Path, marker: str = COMMIT_MARKER) -> bool:
        final = self.path
        if (final / marker).is_file():
            log.info("%s is already committed: left as it is (artifacts are write-once)", self.uri)
            return False
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise AccessDenied(f"cannot create {final.parent}: {exc.strerror}") from None
        staging = final.parent / staging_name(final.name)
        try:
            shutil.copytree(src_dir, staging)
            _fsync_tree(staging)
            if final.exists():
                # No marker: what is there was never committed (not written by publish). Set it
                # aside; a committed tree is never moved or removed.
                os.rename(final, final.parent / staging_name(final.name + ".uncommitted"))
            try:
                os.rename(staging, final)  # fails if another publisher's tree took the name meanwhile
            except OSError:
                if (final / marker).is_file():
                    shutil.rmtree(staging, ignore_errors=True)
                    log.info("%s was committed by another publisher meanwhile: left as it is", self.uri)
                    return False
                raise
        except PermissionError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise AccessDenied(f"cannot write {self.uri}: {exc.strerror}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("published %d files to %s", len(tree_files(final)), self.uri)
        return True

    def read_small(self, limit: int) -> bytes:
        try:
            with open(self.path, "rb") as f:
                data = f.read(limit + 1)  # never more than the cap (and one byte to tell)
        except FileNotFoundError:
            raise NotFound(f"nothing at {self.uri}") from None
        except IsADirectoryError:
            raise NotFound(f"{self.uri} is a folder, not a file") from None
        except PermissionError as exc:
            raise AccessDenied(f"permission denied reading {self.uri}: {exc.strerror}") from None
        if len(data) > limit:
            size = self.path.stat().st_size
            raise TooLarge(too_large(self.uri, size, limit))
        return data

    def list_files(self) -> list[str]:
        p = self.path
        if p.is_file():
            return [p.name]
        if not p.is_dir():
            return []
        return [f.relative_to(p).as_posix() for f in tree_files(p)]


def _fsync_tree(root: Path) -> None:
    for f in tree_files(root):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())



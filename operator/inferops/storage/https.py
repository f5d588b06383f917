"""https:// (read only): one file, streamed to disk. A custom CA bundle via $INFEROPS_CA_BUNDLE."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from .base import COMMIT_MARKER, Backend
from .errors import AccessDenied, NotFound, StorageError, Unreachable
from .progress import Progress

CA_BUNDLE_ENV = "INFEROPS_CA_BUNDLE"
CHUNK = 1024 * 1024


class HttpsBackend(Backend):
    @property
    def basename(self) -> str:
        return unquote(self.uri.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]) or "download"

    def fetch(self, dest: Path) -> Path:
        context = ssl.create_default_context(cafile=os.environ.get(CA_BUNDLE_ENV) or None)
        request = urllib.request.Request(self.uri.raw, headers={"User-Agent": "inferops"})
        target = dest / self.basename
        partial = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                progress = Progress(f"download {self.uri}", size)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(partial, "wb") as out:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        progress(len(chunk))
                progress.finish()
            os.replace(partial, target)
            return target
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AccessDenied(f"cannot read {self.uri}: HTTP {exc.code}") from None
            if exc.code == 404:
                raise NotFound(f"nothing at {self.uri}: HTTP 404") from None
            raise StorageError(f"cannot read {self.uri}: HTTP {exc.code}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot read {self.uri}: {type(reason).__name__}: {reason}") from None
        finally:
            partial.unlink(missing_ok=True)

    def publish(self, src_dir: Path, marker: str = COMMIT_MARKER) -> bool:
        raise StorageError(f"https:// is read-only; write the output to s3://, pvc:// or file:// (got {self.uri})")

    def list_files(self) -> list[str]:
        return [self.basename]

"""Run the tritonserver binary that the nvidia-pytriton wheel ships, on loopback.

    with TritonServer(repository) as server:
        server.http_url  # "127.0.0.1:PORT"

The wheel's binary needs its bundled libraries on LD_LIBRARY_PATH, a python backend
directory holding the stub built for the running Python, and the stub must see this
environment's site-packages. The server's process group is always ended on exit.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..ports import free_port


def live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies awaiting their reaper do not)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


class TritonServerError(RuntimeError):
    pass


def wheel_paths() -> dict[str, Path]:
    """Where the nvidia-pytriton wheel keeps the binary, its libraries, the backend and the stubs."""
    try:
        import pytriton
    except ModuleNotFoundError as exc:
        raise TritonServerError("nvidia-pytriton is not installed: pip install 'inferops[serve]'") from exc
    package = Path(pytriton.__file__).resolve().parent
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {
        "binary": root / "bin" / "tritonserver",
        "libs": package.parent / "nvidia_pytriton.libs",
        "python_backend": root / "backends" / "python",
        "stub": root / "python_backend_stubs" / version / "triton_python_backend_stub",
        "caches": root / "caches",
    }
    missing = [f"{k}: {v}" for k, v in paths.items() if not v.exists()]
    if missing:
        raise TritonServerError(f"the nvidia-pytriton wheel lacks what tritonserver needs for Python {version}: {', '.join(missing)}")
    return paths


class TritonServer:
    """A tritonserver process bound to 127.0.0.1; a context manager that always stops it."""

    def __init__(
        self,
        repository: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        explicit_models: list[str] | None = None,
        cache_size_bytes: int = 0,
        ready_timeout_s: float = 120.0,
        log_verbose: int = 0,
        extra_args: list[str] | None = None,
    ):
        """`explicit_models`: None polls the repository at start (loads everything); a list starts in
        explicit model-control mode with those models loaded, others loadable through the API."""
        self.repository = Path(repository).resolve()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.explicit_models = explicit_models
        self.cache_size_bytes = cache_size_bytes
        self.ready_timeout_s = ready_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._log_file = None
        self._last_log = ""  # what the log said, kept once cleanup has deleted the working directory

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        assert self._workdir is not None, "server not started"
        return self._workdir / "tritonserver.log"

    def logs(self) -> str:
        if self._workdir is None or not self.log_path.exists():
            return self._last_log
        return self.log_path.read_text(errors="replace")

    def _backends_dir(self, paths: dict[str, Path]) -> Path:
        backends = self._workdir / "backends"
        python_dir = backends / "python"
        python_dir.mkdir(parents=True)
        for item in paths["python_backend"].iterdir():
            if item.is_file():
                shutil.copy2(item, python_dir / item.name)
        shutil.copy2(paths["stub"], python_dir / "triton_python_backend_stub")
        return backends

    def environment(self, paths: dict[str, Path]) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(paths["libs"]), env.get("LD_LIBRARY_PATH", "")) if p)
        # The stub embeds the system libpython, whose sys.path lacks this environment's packages.
        # Only site-packages: this interpreter's standard library may not match the stub's libpython.
        paths_in_order = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *env.get("PYTHONPATH", "").split(os.pathsep)]
        env["PYTHONPATH"] = os.pathsep.join(p for p in dict.fromkeys(paths_in_order) if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        # Keep ONNX Runtime and BLAS inside a model from starting a thread per core on their own.
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def command(self, paths: dict[str, Path], backends: Path) -> list[str]:
        args = [
            str(paths["binary"]),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={paths['caches']}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            # Time for the python backend's stubs to unload: cut short, the backend never removes
            # its /tmp/python_env_* directory. Below stop()'s grace, which ends the rest.
            "--exit-timeout-secs=8",
            f"--log-verbose={self.log_verbose}",
            "--strict-readiness=true",
        ]
        if self.explicit_models is not None:
            args.append("--model-control-mode=explicit")
            args += [f"--load-model={name}" for name in self.explicit_models]
        if self.cache_size_bytes:
            args.append(f"--cache-config=local,size={self.cache_size_bytes}")
        return args + self.extra_args

    def start(self) -> "TritonServer":
        if self.process is not None:
            raise TritonServerError("server already started")
        paths = wheel_paths()
        self._workdir = Path(tempfile.mkdtemp(prefix="inferops-triton-"))
        backends = self._backends_dir(paths)
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(paths, backends),
            env=self.environment(paths),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends the backend stubs too
        )
        atexit.register(self.cleanup)
        try:
            self.wait_ready(self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _get(self, path: str, timeout: float = 2.0) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0

    def failure_summary(self) -> str:
        """The log's error lines and unavailable models, then its tail: why a start failed."""
        lines = self.logs().splitlines()
        errors = [line for line in lines if re.match(r"^E\d{4} ", line) and "CudaDriverHelper" not in line]
        unavailable = [line.strip() for line in lines if "UNAVAILABLE" in line]
        tail = "\n".join(lines[-15:])
        return "\n".join([*errors, *unavailable, "log tail:", tail])

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise TritonServerError(f"tritonserver exited with code {self.process.returncode}:\n{self.failure_summary()}")
            if self._get("/v2/health/ready") == 200:
                return
            time.sleep(0.2)
        raise TritonServerError(f"tritonserver not ready after {timeout_s:.0f}s:\n{self.failure_summary()}")

    def stop(self, grace_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    pass
                except ProcessLookupError:
                    pass
            # Whatever is left in the group (stubs outliving the server) is ended too.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            deadline = time.monotonic() + 10
            while live_group_members(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # SIGKILL is delivered asynchronously
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def cleanup(self) -> None:
        """Stop, and delete the working directory (backends and log); `logs()` still answers."""
        self.stop()
        atexit.unregister(self.cleanup)
        if self._workdir is not None:
            self._last_log = self.logs()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

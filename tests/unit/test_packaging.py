"""The wheel carries everything InferOps needs at run time: an image installs it and nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "inferops"


def test_the_wheel_carries_the_templates_and_the_pinned_modules(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("inferops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.glob("templates/*.j2")]
    needed += [p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.glob("devcluster/gomod/**/*.go*")]
    assert len(needed) > 8
    missing = [n for n in needed if n not in names]
    assert not missing, f"not in the wheel: {missing}"

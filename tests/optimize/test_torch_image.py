"""The optimizer-torch image leaves out the CUDA payload torch never loads on a CPU
(devcluster/torch_prune.py). Checked on a copy of this environment's site-packages, the way the
image build prunes its layer: torch still imports, exports a CNN through torch.export and through
TorchScript to ONNX, and ONNX Runtime answers as torch does. (Building the whole image is a
node-layer test of its own, opt-in: tests/node/test_image_variants.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from inferops.devcluster.torch_prune import needed, prune_torch_cuda

pytestmark = [pytest.mark.torch, pytest.mark.slow]

SCRIPT = r"""
import sys
sys.path[:0] = [sys.argv[1]]
import numpy as np, onnxruntime as ort, torch
assert torch.__file__.startswith(sys.argv[1]), torch.__file__
net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3)).eval()
x = torch.randn(5, 1, 8, 8)
program = torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
torch.onnx.export(program, (), input_names=["x"], dynamo=True).save(sys.argv[2] + "/exported.onnx")
torch.onnx.export(torch.jit.script(net), (x[:2],), sys.argv[2] + "/scripted.onnx", input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
for name in ("exported", "scripted"):
    got = ort.InferenceSession(sys.argv[2] + f"/{name}.onnx").run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=1e-4, atol=1e-5)
print("ok", torch.__version__)
"""


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no second copy of gigabytes where the file system allows it
    except OSError:
        shutil.copy2(src, dst)


def test_torch_without_the_cuda_payload_it_never_loads_still_exports(torch, tmp_path):
    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "nvidia").is_dir():
        pytest.skip("this torch has no nvidia-* wheels beside it (a CPU build): nothing to prune")
    pruned = tmp_path / "site"
    pruned.mkdir()
    for entry in site.iterdir():
        if entry.name in ("nvidia", "triton"):  # what the prune changes: a copy of its own
            shutil.copytree(entry, pruned / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            (pruned / entry.name).symlink_to(entry)
    libs_before = {p.name for p in (pruned / "nvidia").rglob("*.so*")}
    prune_torch_cuda(pruned)
    kept = {p.name for p in (pruned / "nvidia").rglob("*.so*")}
    assert not (pruned / "triton").exists()
    assert kept < libs_before and "libcudnn_engines_precompiled.so.9" not in kept
    assert set(needed(site / "torch" / "lib" / "libtorch_cuda.so")) & libs_before <= kept, "what torch names to load stays"
    result = subprocess.run([sys.executable, "-S", "-c", SCRIPT, str(pruned), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.splitlines()[-1].startswith("ok "), result.stdout[-1000:] + result.stderr[-3000:]

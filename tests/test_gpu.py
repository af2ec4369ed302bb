"""The real stack on a GPU, through the GPU harness's server (benchmarks/gpu/harness.py up).

On the GPU machine: ``TRELLIS_BOX_GPU_HARNESS=<harness --work> pytest -m gpu tests/test_gpu.py``.
Everywhere else (CI) every test here is skipped, saying why: no GPU, or no harness running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from trellis_box.gpu import archcheck

# Read at import: the autouse isolation fixture clears TRELLIS_BOX_* from each test's environment.
HARNESS = Path(os.environ.get("TRELLIS_BOX_GPU_HARNESS", "/nonexistent")) / "harness.json"
WARMUP_PNG = Path(__file__).resolve().parent.parent / "src" / "trellis_box" / "data" / "warmup.png"


def _why_skip() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no GPU: nvidia-smi not found (these run on a GPU machine: pytest -m gpu)"
    if not HARNESS.is_file():
        return ("no GPU harness: start `benchmarks/gpu/harness.py up --work DIR ...` and set "
                "TRELLIS_BOX_GPU_HARNESS=DIR")
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")]

# What ComfyUI-Trellis2 @ded8950 imports from each extension (gpu-reality.md): an import check
# that passes with fewer symbols is how the wrong o_voxel fork got through once.
PACK_IMPORTS = """
import cumesh, o_voxel, nvdiffrast.torch as dr, torch
from cumesh import CuMesh, cuBVH
from cumesh.remeshing import remesh_narrow_band_dc
from o_voxel.convert import flexible_dual_grid_to_mesh, tiled_flexible_dual_grid_to_mesh, mesh_to_flexible_dual_grid
from o_voxel.postprocess import to_glb
from flex_gemm.ops.grid_sample import grid_sample_3d
from flex_gemm.ops.spconv import sparse_submanifold_conv3d, set_algorithm, set_hashmap_ratio
ctx = dr.RasterizeCudaContext()
pos = torch.tensor([[[-1, -1, 0, 1], [1, -1, 0, 1], [0, 1, 0, 1]]], dtype=torch.float32, device="cuda")
tri = torch.tensor([[0, 1, 2]], dtype=torch.int32, device="cuda")
rast, _ = dr.rasterize(ctx, pos, tri, resolution=[64, 64])
print(int((rast[..., 3] > 0).sum()))
"""


@pytest.fixture(scope="module")
def harness() -> dict[str, Any]:
    state: dict[str, Any] = json.loads(HARNESS.read_text())
    return state


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
        return body


def test_every_extension_imports_what_the_pack_uses_and_rasterizes(harness: dict[str, Any]) -> None:
    done = subprocess.run([harness["comfy_python"], "-c", PACK_IMPORTS], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    covered = int(done.stdout.strip().splitlines()[-1])
    assert 0 < covered < 64 * 64  # a triangle covers part of the frame, on the GPU


def test_installed_extensions_carry_code_for_this_gpu(harness: dict[str, Any]) -> None:
    targets = archcheck.parse_archs(harness["archs"])
    reports = archcheck.check(archcheck.installed_packages(python=harness["comfy_python"]), targets)
    assert {r.source.split()[1] for r in reports if r.has_gpu_code} >= {"cumesh", "flex_gemm", "o_voxel"}


def test_the_server_is_ready_and_reports_its_weights_mode(harness: dict[str, Any]) -> None:
    info = get_json(f"{harness['url']}/trellis-box/info")
    assert info["ready"] is True
    assert info["weights_mode"] == harness["weights_mode"]
    if harness["weights_mode"] == "stand-in":
        assert (Path(harness["comfy_root"]) / "models" / "STAND-IN-WEIGHTS").is_file()


def test_a_job_makes_a_glb_that_our_reader_and_trimesh_read(harness: dict[str, Any], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": harness["box_env"]["PYTHONPATH"]}
    done = subprocess.run([sys.executable, "-m", "trellis_box.cli.app", "generate", str(WARMUP_PNG),
                           "--server", harness["url"], "--out", str(tmp_path), "--resolution", "512",
                           "--texture-size", "1024", "--target-faces", "200000", "--json"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    [glb] = tmp_path.glob("*.glb")
    from trellis_box.batch.glb import glb_stats

    stats = glb_stats(glb)
    assert stats.faces > 1000 and stats.textures, stats
    trimesh = pytest.importorskip("trimesh")
    scene = trimesh.load(glb, force="scene")
    assert sum(len(g.faces) for g in scene.geometry.values()) == stats.faces
    if harness["weights_mode"] == "stand-in":
        # Stand-in timings mean something only on the shell's object-sized structure: a job that
        # decoded the random half-full grid instead runs minutes longer (session 10's lost run).
        log = Path(harness["serve_log"]).read_text(errors="replace")
        assert "sparse structure replaced by a shell" in log, "the stand-in shell never patched"

"""Our ComfyUI node pack: as plain Python, and running inside the stand-in ComfyUI.

GLBs for the plain tests are exported by trimesh, the library ``Trellis2ExportMesh`` uses, and
read back independently with pygltflib; the stand-in's GLBs go through Khronos gltf-validator.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.probe import object_png, of_type, recorded_graph, run, upload
from tests.comfy_standin.torch_site import ALLOCATED, PEAK_ALLOCATED, PEAK_RESERVED, RESERVED, torch_site
from tests.gltf_validator import validate_glb
from trellis_box.comfy_nodes import (
    NODE_CLASS_MAPPINGS,
    GLBOutputError,
    TrellisBoxGLBOutput,
    glb_stats,
)


def export_textured_box(path: Path, texture: tuple[int, int] = (128, 64)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box()
    uv = np.random.default_rng(0).random((len(mesh.vertices), 2))
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.new("RGB", texture, (200, 20, 20)))
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return mesh


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "output"
    directory.mkdir()
    return directory


def test_pack_imports_without_comfyui_and_without_aiohttp() -> None:
    code = ("import sys, trellis_box.comfy_nodes as pack; "
            "print(sorted(pack.NODE_CLASS_MAPPINGS), 'aiohttp' in sys.modules, 'server' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['TrellisBoxGLBOutput'] False False"


def test_importing_the_package_from_a_comfyui_root_leaves_comfyuis_server_alone(tmp_path: Path) -> None:
    # `python -m trellis_box.cli.app serve` run in the ComfyUI root (the GPU harness does) has the
    # root on sys.path: importing ComfyUI's server.py there pulled torch and a CUDA context into
    # serve itself. This server.py records that it was imported.
    (tmp_path / "server.py").write_text("import pathlib\npathlib.Path('server-imported').touch()\n")
    code = "import sys, trellis_box.cli.app; print('server' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    assert result.stdout.strip() == "False"
    assert not (tmp_path / "server-imported").exists()


def test_schema_declares_a_forced_string_input_and_an_output_node() -> None:
    node = NODE_CLASS_MAPPINGS["TrellisBoxGLBOutput"]
    assert node.INPUT_TYPES() == {"required": {"glb_path": ("STRING", {"forceInput": True})}}
    assert node.OUTPUT_NODE is True and node.RETURN_TYPES == ()
    assert callable(getattr(node, node.FUNCTION))


def test_surfaces_the_export_nodes_relative_path_with_statistics(output_dir: Path) -> None:
    glb = output_dir / "3D" / "Trellis2_00001_.glb"
    mesh = export_textured_box(glb)
    result = TrellisBoxGLBOutput(output_dir).surface("3D/Trellis2_00001_.glb")
    gltf = pygltflib.GLTF2().load(str(glb))
    primitive = gltf.meshes[0].primitives[0]
    assert result["ui"]["3d"] == [{"filename": "Trellis2_00001_.glb", "subfolder": "3D", "type": "output"}]
    assert result["ui"]["trellis_box"] == [{
        "filename": "Trellis2_00001_.glb", "subfolder": "3D", "type": "output",
        "bytes": glb.stat().st_size,
        "vertices": gltf.accessors[primitive.attributes.POSITION].count,
        "faces": gltf.accessors[primitive.indices].count // 3,
        "texture_size": [128, 64],
    }]
    assert result["ui"]["trellis_box"][0]["faces"] == len(mesh.faces)


def test_accepts_absolute_paths_and_files_at_the_top(output_dir: Path) -> None:
    export_textured_box(output_dir / "top.glb")
    result = TrellisBoxGLBOutput(output_dir).surface(str(output_dir / "top.glb"))
    assert result["ui"]["3d"] == [{"filename": "top.glb", "subfolder": "", "type": "output"}]


@pytest.mark.parametrize("given", ["../outside.glb", "/etc/passwd", "3D/../../outside.glb", "link.glb"])
def test_refuses_paths_outside_the_output_folder(output_dir: Path, given: str) -> None:
    outside = output_dir.parent / "outside.glb"
    export_textured_box(outside)
    (output_dir / "link.glb").symlink_to(outside)
    with pytest.raises(GLBOutputError) as error:
        TrellisBoxGLBOutput(output_dir).surface(given)
    message = str(error.value)
    assert f"glb_path {given!r}" in message and "outside the output folder" in message
    assert str(output_dir.resolve()) in message and "fix:" in message


def test_missing_file_is_named(output_dir: Path) -> None:
    with pytest.raises(GLBOutputError, match=r"glb_path '3D/none.glb': no file at .*3D/none.glb; fix: "):
        TrellisBoxGLBOutput(output_dir).surface("3D/none.glb")


def _glb_variants(valid: bytes) -> dict[str, tuple[bytes, str]]:
    return {
        "png": (b"\x89PNG\r\n\x1a\n" + bytes(40),
                "it does not start with the GLB magic 'glTF' (found 89504e47)"),
        "truncated": (valid[:-10], f"its header declares {len(valid):,} bytes but the file has "
                                   f"{len(valid) - 10:,} (truncated)"),
        "version 1": (valid[:4] + struct.pack("<I", 1) + valid[8:], "it is GLB version 1, not 2"),
        "tiny": (b"glTF", "it has 4 bytes, shorter than the 12-byte GLB header (truncated)"),
    }


@pytest.mark.parametrize("variant", ["png", "truncated", "version 1", "tiny"])
def test_refuses_files_that_are_not_glb(output_dir: Path, variant: str) -> None:
    export_textured_box(output_dir / "good.glb")
    data, expected = _glb_variants((output_dir / "good.glb").read_bytes())[variant]
    (output_dir / "bad.glb").write_bytes(data)
    with pytest.raises(GLBOutputError) as error:
        TrellisBoxGLBOutput(output_dir).surface("bad.glb")
    assert "glb_path 'bad.glb'" in str(error.value) and "is not a valid GLB" in str(error.value)
    assert expected in str(error.value)


def test_statistics_of_an_untextured_mesh(tmp_path: Path) -> None:
    path = tmp_path / "plain.glb"
    trimesh.creation.icosphere(subdivisions=1).export(path)
    stats = glb_stats(path)
    assert (stats.vertices, stats.faces, stats.texture_size) == (42, 80, None)


# --- inside the stand-in --------------------------------------------------------------------

async def test_glb_reaches_history_and_view_through_comfyui(comfy_standin: StartStandin,
                                                            tmp_path: Path) -> None:
    server = comfy_standin()
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        _, messages, record = await run(session, recorded_graph(seed=3))
        ref = record["outputs"]["10"]["3d"][0]
        response = await session.get("/view", params=ref)
        body = await response.read()
    executed = next(e for e in of_type(messages, "executed") if e["node"] == "10")
    assert executed["output"]["3d"] == [ref]
    assert ref["subfolder"] == "3D" and ref["type"] == "output"
    assert response.headers["Content-Type"] == "model/gltf-binary"
    downloaded = tmp_path / ref["filename"]
    downloaded.write_bytes(body)
    stats = record["outputs"]["10"]["trellis_box"][0]
    assert stats == {**ref, **glb_stats(downloaded).as_dict()}
    assert (stats["vertices"], stats["faces"]) == (24, 12)
    report = validate_glb(downloaded)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]


async def test_glb_size_follows_the_benchmark_setting(comfy_standin: StartStandin) -> None:
    server = comfy_standin(glb_bytes=400_000)
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        _, _, record = await run(session, recorded_graph())
    stats = record["outputs"]["10"]["trellis_box"][0]
    path = server.output_dir / stats["subfolder"] / stats["filename"]
    assert 360_000 <= stats["bytes"] <= 440_000
    report = validate_glb(path)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0


async def test_bad_glb_path_is_an_execution_error_naming_it(comfy_standin: StartStandin) -> None:
    server = comfy_standin()
    graph = {"1": {"class_type": "TrellisBoxGLBOutput", "inputs": {"glb_path": "../standin.log"}}}
    async with aiohttp.ClientSession(server.url) as session:
        _, messages, record = await run(session, graph)
    error = of_type(messages, "execution_error")[0]
    assert error["exception_type"].endswith("glb_output.GLBOutputError")
    assert "glb_path '../standin.log'" in error["exception_message"]
    assert "outside the output folder" in error["exception_message"]
    assert record["outputs"] == {}


@pytest.mark.parametrize("state, status, phase", [
    ({"phase": "ready", "ready": True, "profile": {"gpu_name": "NVIDIA L40S"},
      "allowed_resolutions": ["512", "1024", "1536"], "pins": {"comfyui": "a125cd8"}, "error": None},
     200, "ready"),
    ({"phase": "warming", "ready": False, "profile": None, "allowed_resolutions": [],
      "pins": {}, "error": None}, 503, "warming"),
    ("{not json", 503, "unknown"),
])
async def test_routes_report_the_state_file(comfy_standin: StartStandin, tmp_path: Path,
                                            state: Any, status: int, phase: str) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(state if isinstance(state, str) else json.dumps(state))
    server = comfy_standin(env={"TRELLIS_BOX_STATE": str(state_file)})
    async with aiohttp.ClientSession(server.url) as session:
        health = await session.get("/trellis-box/health")
        ready = await session.get("/trellis-box/ready")
        info = await (await session.get("/trellis-box/info")).json()
        ready_body = await ready.json()
    assert health.status == 200
    assert (ready.status, ready_body["phase"], info["phase"]) == (status, phase, phase)
    assert info["state_file"] == str(state_file)
    if isinstance(state, dict):
        assert {k: info[k] for k in state} == state
    else:
        assert f"state file {state_file} unreadable" in info["error"]


async def _gpu_routes(server_url: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    async with aiohttp.ClientSession(server_url) as session:
        before = await (await session.get("/trellis-box/gpu")).json()
        reset = await session.post("/trellis-box/gpu/reset-peak")
        assert reset.status == 200
        after = await (await session.get("/trellis-box/gpu")).json()
        return before, await reset.json(), after


@pytest.mark.parametrize("installed, cuda, reason", [
    (False, False, "no torch in ComfyUI's interpreter"),
    (True, False, "torch 2.7.0+cu126 sees no CUDA device"),
])
async def test_gpu_routes_say_why_without_torch_or_cuda(comfy_standin: StartStandin, tmp_path: Path,
                                                       installed: bool, cuda: bool,
                                                       reason: str) -> None:
    server = comfy_standin(env=torch_site(tmp_path, installed=installed, cuda=cuda))
    before, reset, after = await _gpu_routes(server.url)
    assert before["available"] is False and before["reason"].startswith(reason)
    assert reset == {"available": False, "reset": False, "reason": before["reason"]}
    assert after == before


async def test_gpu_routes_report_and_reset_torchs_peaks(comfy_standin: StartStandin,
                                                        tmp_path: Path) -> None:
    server = comfy_standin(env=torch_site(tmp_path, installed=True))
    before, reset, after = await _gpu_routes(server.url)
    assert before == {
        "available": True, "device_index": 0, "device_name": "NVIDIA H200",
        "torch_version": "2.7.0+cu126", "cuda_version": "12.6",
        "max_allocated_bytes": PEAK_ALLOCATED, "max_reserved_bytes": PEAK_RESERVED,
        "allocated_bytes": ALLOCATED, "reserved_bytes": RESERVED,
        "free_bytes": 120 << 30, "total_bytes": 140 << 30,
    }
    assert reset == {"available": True, "reset": True}
    assert (after["max_allocated_bytes"], after["max_reserved_bytes"]) == (ALLOCATED, RESERVED)

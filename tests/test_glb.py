"""GLB checks and statistics on real GLBs written by trimesh, cross-checked by Khronos gltf-validator."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.gltf_validator import validate_glb
from trellis_box.batch.glb import glb_stats
from trellis_box.errors import GlbInvalidError


def _textured(mesh: trimesh.Trimesh, texture_size: tuple[int, int]) -> trimesh.Trimesh:
    """``mesh`` with UVs and a PBR base-colour texture, as Trellis2ExportMesh writes them."""
    uv = np.random.default_rng(0).random((len(mesh.vertices), 2))
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.new("RGBA", texture_size, (180, 120, 60, 255)),
        metallicFactor=0.0, roughnessFactor=0.8)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh


@pytest.fixture(scope="module")
def sphere_glb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("glb") / "sphere.glb"
    _textured(trimesh.creation.icosphere(subdivisions=3), (256, 128)).export(path)
    return path


def _split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20:20 + json_length])
    bin_length = struct.unpack_from("<I", data, 20 + json_length)[0]
    start = 20 + json_length + 8
    return document, data[start:start + bin_length]


def _assemble(document: dict, binary: bytes) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = (struct.pack("<II", len(text), 0x4E4F534A) + text
            + struct.pack("<II", len(binary), 0x004E4942) + binary)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_stats_of_a_textured_glb_agree_with_trimesh_and_the_validator(sphere_glb: Path) -> None:
    stats = glb_stats(sphere_glb)
    report = validate_glb(sphere_glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    mesh = trimesh.load(sphere_glb, force="mesh")
    assert stats.faces == len(mesh.faces) == report["info"]["totalTriangleCount"] == 1280
    assert stats.vertices == report["info"]["totalVertexCount"]
    assert stats.textures == ((256, 128),)
    assert stats.max_texture_size == 256
    assert stats.materials == report["info"]["materialCount"] == 1
    assert stats.meshes == 1
    assert stats.bytes == sphere_glb.stat().st_size
    assert stats.as_dict()["textures"] == [[256, 128]]


def test_a_glb_rebuilt_by_our_test_helper_is_still_valid(sphere_glb: Path, tmp_path: Path) -> None:
    """The helper the fault tests use changes nothing by itself (so the faults are the faults)."""
    path = tmp_path / "same.glb"
    path.write_bytes(_assemble(*_split(sphere_glb)))
    assert validate_glb(path)["issues"]["numErrors"] == 0
    assert glb_stats(path).faces == 1280


def test_truncated_glb_is_refused_and_the_validator_agrees(sphere_glb: Path, tmp_path: Path) -> None:
    data = sphere_glb.read_bytes()
    path = tmp_path / "cut.glb"
    path.write_bytes(data[: len(data) // 2])
    assert validate_glb(path)["issues"]["numErrors"] > 0
    with pytest.raises(GlbInvalidError) as caught:
        glb_stats(path)
    assert str(caught.value) == (
        f"not a usable GLB: {path}\n"
        f"  its header declares {len(data):,} bytes but the file has {len(data) // 2:,} (truncated).\n"
        "  fix: generate it again; if it came from a download, download it again"
    )
    assert caught.value.facts["path"] == str(path)


def test_a_png_is_not_a_glb(tmp_path: Path) -> None:
    path = tmp_path / "image.glb"
    Image.new("RGB", (4, 4)).save(path, format="PNG")
    with pytest.raises(GlbInvalidError) as caught:
        glb_stats(path)
    assert "it does not start with the GLB magic 'glTF' (found 89504e47)" in str(caught.value)
    assert "fix: pass a binary glTF (.glb) file" in str(caught.value)


def test_an_empty_file_is_not_a_glb(tmp_path: Path) -> None:
    path = tmp_path / "empty.glb"
    path.write_bytes(b"")
    with pytest.raises(GlbInvalidError, match="found an empty file"):
        glb_stats(path)


def test_trailing_bytes_are_reported(sphere_glb: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.glb"
    path.write_bytes(sphere_glb.read_bytes() + b"\0" * 8)
    with pytest.raises(GlbInvalidError, match=r"\(trailing bytes\)"):
        glb_stats(path)


def test_glb_version_1_is_refused(sphere_glb: Path, tmp_path: Path) -> None:
    data = bytearray(sphere_glb.read_bytes())
    data[4:8] = struct.pack("<I", 1)
    path = tmp_path / "old.glb"
    path.write_bytes(bytes(data))
    with pytest.raises(GlbInvalidError, match="it is GLB version 1, not 2"):
        glb_stats(path)


def test_buffer_view_past_the_bin_chunk_is_truncation(sphere_glb: Path, tmp_path: Path) -> None:
    document, binary = _split(sphere_glb)
    path = tmp_path / "short-bin.glb"
    path.write_bytes(_assemble(document, binary[: len(binary) // 2]))
    assert validate_glb(path)["issues"]["numErrors"] > 0
    with pytest.raises(GlbInvalidError,
                       match=r"bufferView \d+ reaches byte [\d,]+ of a [\d,]+-byte BIN chunk"):
        glb_stats(path)


def test_json_chunk_that_does_not_parse(sphere_glb: Path, tmp_path: Path) -> None:
    data = bytearray(sphere_glb.read_bytes())
    data[20] = ord("!")  # first byte of the JSON text
    path = tmp_path / "garbled.glb"
    path.write_bytes(bytes(data))
    with pytest.raises(GlbInvalidError, match="its JSON chunk does not parse"):
        glb_stats(path)


def test_reference_to_a_missing_accessor(sphere_glb: Path, tmp_path: Path) -> None:
    document, binary = _split(sphere_glb)
    document["meshes"][0]["primitives"][0]["indices"] = 99
    path = tmp_path / "dangling.glb"
    path.write_bytes(_assemble(document, binary))
    assert validate_glb(path)["issues"]["numErrors"] > 0
    with pytest.raises(GlbInvalidError, match="its JSON chunk refers to something that is not there"):
        glb_stats(path)


def test_a_texture_that_does_not_decode_is_named(sphere_glb: Path, tmp_path: Path) -> None:
    document, binary = _split(sphere_glb)
    view = document["bufferViews"][document["images"][0]["bufferView"]]
    start, end = view.get("byteOffset", 0), view.get("byteOffset", 0) + view["byteLength"]
    # The PNG signature and header stay; the compressed pixels become garbage.
    damaged = binary[:start + 33] + b"\xff" * (end - start - 33) + binary[end:]
    path = tmp_path / "bad-texture.glb"
    path.write_bytes(_assemble(document, damaged))
    with pytest.raises(GlbInvalidError, match=r"texture image 0 does not decode \("):
        glb_stats(path)

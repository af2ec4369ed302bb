"""GLB structure checks and statistics (vertices, faces, textures, materials, bytes).

The container layout is checked by hand before pygltflib reads the JSON chunk: pygltflib reads a
truncated or foreign file without complaint, and "the download was cut short" must be a clear
error, not zero vertices. Full conformance is Khronos gltf-validator's job (the tests run it).
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pygltflib import GLTF2

from .errors import GlbInvalidError

_MAGIC = b"glTF"
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942
_HEADER = struct.Struct("<4sII")
_CHUNK_HEADER = struct.Struct("<II")

# Triangles per primitive mode: TRIANGLES (4), TRIANGLE_STRIP (5), TRIANGLE_FAN (6).
_TRIANGLE_MODES = {4: lambda n: n // 3, 5: lambda n: max(n - 2, 0), 6: lambda n: max(n - 2, 0)}


@dataclass(frozen=True)
class GlbStats:
    bytes: int
    vertices: int
    faces: int
    meshes: int
    materials: int
    #: (width, height) of each texture image embedded in the BIN chunk, in file order (a GLB from
    #: Trellis2ExportMesh embeds all of them; external URIs are not counted).
    textures: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    @property
    def max_texture_size(self) -> int:
        return max((max(size) for size in self.textures), default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "vertices": self.vertices,
            "faces": self.faces,
            "meshes": self.meshes,
            "materials": self.materials,
            "textures": [list(size) for size in self.textures],
            "max_texture_size": self.max_texture_size,
        }


def glb_stats(path: Path) -> GlbStats:
    """Check that ``path`` is a whole GLB 2.0 file and count what is in it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"it cannot be read ({exc.strerror or exc})", "check the path") from exc
    document, binary = _split(path, data)
    try:
        gltf = GLTF2.from_json(json.dumps(document))
    except (TypeError, ValueError, KeyError) as exc:
        raise _error(path, f"its JSON chunk is not glTF 2.0 ({exc})", _REGENERATE) from exc
    try:
        _check_views(path, gltf, binary)
        vertices, faces = _count(gltf)
        textures = tuple(_image_size(path, gltf, index, binary) for index, image in enumerate(gltf.images)
                         if image.bufferView is not None)
    except (IndexError, TypeError, AttributeError) as exc:
        # A reference to an accessor, view or image that is not there, or a missing length.
        raise _error(path, f"its JSON chunk refers to something that is not there ({exc!r})",
                     _REGENERATE) from exc
    return GlbStats(bytes=len(data), vertices=vertices, faces=faces, meshes=len(gltf.meshes),
                    materials=len(gltf.materials), textures=textures)


def _count(gltf: GLTF2) -> tuple[int, int]:
    """Vertices and triangles over every mesh primitive (each mesh once, however often used)."""
    vertices = faces = 0
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            position = primitive.attributes.POSITION
            count = gltf.accessors[position].count if position is not None else 0
            vertices += count
            corners = gltf.accessors[primitive.indices].count if primitive.indices is not None else count
            mode = 4 if primitive.mode is None else primitive.mode
            faces += _TRIANGLE_MODES.get(mode, lambda n: 0)(corners)
    return vertices, faces


_REGENERATE = "generate it again; if it came from a download, download it again"


def _split(path: Path, data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON document and the BIN chunk of a GLB, every length checked against the file."""
    if len(data) < _HEADER.size or data[:4] != _MAGIC:
        found = data[:4].hex() if data else "an empty file"
        raise _error(path, f"it does not start with the GLB magic 'glTF' (found {found})",
                     "pass a binary glTF (.glb) file; a .gltf JSON file or another format is not one")
    _, version, length = _HEADER.unpack_from(data)
    if version != 2:
        raise _error(path, f"it is GLB version {version}, not 2", "re-export it as glTF 2.0")
    if length != len(data):
        state = "truncated" if length > len(data) else "trailing bytes"
        raise _error(path, f"its header declares {length:,} bytes but the file has {len(data):,} ({state})",
                     _REGENERATE)
    chunks: list[tuple[int, bytes]] = []
    offset = _HEADER.size
    while offset < length:
        if offset + _CHUNK_HEADER.size > length:
            raise _error(path, f"a chunk header at byte {offset} runs past the end", _REGENERATE)
        size, kind = _CHUNK_HEADER.unpack_from(data, offset)
        start = offset + _CHUNK_HEADER.size
        if start + size > length:
            raise _error(path, f"a chunk at byte {offset} declares {size:,} bytes, past the end "
                         f"(truncated)", _REGENERATE)
        chunks.append((kind, data[start:start + size]))
        offset = start + size
    if not chunks or chunks[0][0] != _JSON_CHUNK:
        raise _error(path, "its first chunk is not JSON", _REGENERATE)
    try:
        document = json.loads(chunks[0][1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(path, f"its JSON chunk does not parse ({exc})", _REGENERATE) from exc
    if not isinstance(document, dict):
        raise _error(path, "its JSON chunk is not an object", _REGENERATE)
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == _BIN_CHUNK else b""
    return document, binary


def _check_views(path: Path, gltf: GLTF2, binary: bytes) -> None:
    for index, view in enumerate(gltf.bufferViews):
        end = (view.byteOffset or 0) + view.byteLength
        if view.buffer == 0 and end > len(binary):
            raise _error(path, f"bufferView {index} reaches byte {end:,} "
                         f"of a {len(binary):,}-byte BIN chunk (truncated)", _REGENERATE)


def _image_size(path: Path, gltf: GLTF2, index: int, binary: bytes) -> tuple[int, int]:
    view = gltf.bufferViews[gltf.images[index].bufferView]
    start = view.byteOffset or 0
    try:
        with Image.open(io.BytesIO(binary[start:start + view.byteLength])) as decoded:
            return decoded.size
    except (UnidentifiedImageError, OSError) as exc:
        raise _error(path, f"texture image {index} does not decode ({exc})", _REGENERATE) from exc


def _error(path: Path, fact: str, fix: str) -> GlbInvalidError:
    return GlbInvalidError(f"not a usable GLB: {path}", detail=f"{fact}.", fix=fix, path=str(path))

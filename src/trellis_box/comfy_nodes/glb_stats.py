"""GLB structure checks and mesh statistics, standard library only.

The one GLB reader of trellis-box: the output node runs it inside ComfyUI (where trellis_box is
not installed), and ``trellis_box.batch.glb`` builds its report statistics on it. Every length is
checked against the file, because "the file was cut short" must be an error, not zero vertices.
Full conformance is Khronos gltf-validator's job (the tests run it).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
_HEADER = struct.Struct("<4sII")
_CHUNK_HEADER = struct.Struct("<II")
# Triangles per primitive mode from its index (or vertex) count: TRIANGLES, STRIP, FAN.
_TRIANGLES: dict[int, Callable[[int], int]] = {
    4: lambda n: n // 3, 5: lambda n: max(n - 2, 0), 6: lambda n: max(n - 2, 0)}


def _no_triangles(n: int) -> int:  # points and lines: no faces
    return 0


REGENERATE = "generate it again; if it came from a download, download it again"


class GLBFormatError(ValueError):
    """The data is not a complete glTF 2.0 binary: ``str()`` is the fact, ``fix`` what to do."""

    def __init__(self, fact: str, fix: str = REGENERATE) -> None:
        super().__init__(fact)
        self.fix = fix


@dataclass(frozen=True)
class GLBStats:
    bytes: int
    vertices: int
    faces: int
    texture_size: list[int] | None  # [width, height] of the largest embedded image

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The glTF JSON document and the BIN chunk of a GLB, every length checked."""
    if data[:4] != GLB_MAGIC:
        found = data[:4].hex() if data else "an empty file"
        raise GLBFormatError(f"it does not start with the GLB magic 'glTF' (found {found})",
                             "pass a binary glTF (.glb) file; a .gltf JSON file or another "
                             "format is not one")
    if len(data) < _HEADER.size:
        raise GLBFormatError(f"it has {len(data)} bytes, shorter than the {_HEADER.size}-byte "
                             "GLB header (truncated)")
    _, version, length = _HEADER.unpack_from(data)
    if version != 2:
        raise GLBFormatError(f"it is GLB version {version}, not 2", "re-export it as glTF 2.0")
    if length != len(data):
        state = "truncated" if length > len(data) else "trailing bytes"
        raise GLBFormatError(f"its header declares {length:,} bytes but the file has "
                             f"{len(data):,} ({state})")
    chunks: list[tuple[int, bytes]] = []
    offset = _HEADER.size
    while offset < length:
        if offset + _CHUNK_HEADER.size > length:
            raise GLBFormatError(f"a chunk header at byte {offset} runs past the end")
        size, kind = _CHUNK_HEADER.unpack_from(data, offset)
        start = offset + _CHUNK_HEADER.size
        if start + size > length:
            raise GLBFormatError(f"a chunk at byte {offset} declares {size:,} bytes, past the "
                                 "end (truncated)")
        chunks.append((kind, data[start:start + size]))
        offset = start + size
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise GLBFormatError("its first chunk is not JSON")
    try:
        document = json.loads(chunks[0][1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise GLBFormatError(f"its JSON chunk does not parse ({e})") from e
    if not isinstance(document, dict):
        raise GLBFormatError("its JSON chunk is not an object")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN else b""
    return document, binary


def mesh_counts(document: dict[str, Any], binary: bytes) -> tuple[int, int]:
    """Vertices and triangles over every mesh primitive (each mesh once, however often used),
    after checking that every buffer view lies inside the BIN chunk."""
    try:
        for index, view in enumerate(document.get("bufferViews", [])):
            end = view.get("byteOffset", 0) + view["byteLength"]
            if view.get("buffer") == 0 and end > len(binary):
                raise GLBFormatError(f"bufferView {index} reaches byte {end:,} of a "
                                     f"{len(binary):,}-byte BIN chunk (truncated)")
        accessors = document.get("accessors", [])
        vertices = faces = 0
        for mesh in document.get("meshes", []):
            for primitive in mesh["primitives"]:
                position = primitive.get("attributes", {}).get("POSITION")
                count = int(accessors[position]["count"]) if position is not None else 0
                vertices += count
                indices = primitive.get("indices")
                corners = int(accessors[indices]["count"]) if indices is not None else count
                faces += _TRIANGLES.get(primitive.get("mode", 4), _no_triangles)(corners)
    except (KeyError, IndexError, TypeError) as e:
        raise GLBFormatError(f"its JSON chunk refers to something that is not there ({e!r})") from e
    return vertices, faces


def embedded_images(document: dict[str, Any], binary: bytes) -> list[tuple[int, bytes]]:
    """(image index, encoded bytes) of each image stored in the BIN chunk, in file order."""
    views = document.get("bufferViews", [])
    found = []
    try:
        for index, image in enumerate(document.get("images", [])):
            if image.get("bufferView") is not None:
                view = views[image["bufferView"]]
                start = view.get("byteOffset", 0)
                found.append((index, binary[start:start + view["byteLength"]]))
    except (KeyError, IndexError, TypeError) as e:
        raise GLBFormatError(f"its JSON chunk refers to something that is not there ({e!r})") from e
    return found


def image_size(blob: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG or baseline/progressive JPEG header, else ``None``."""
    if blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) >= 24:
        width, height = struct.unpack(">II", blob[16:24])
        return width, height
    if blob[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(blob):
            if blob[i] != 0xFF:
                return None
            marker, segment = blob[i + 1], struct.unpack(">H", blob[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", blob[i + 5:i + 9])
                return width, height
            i += 2 + segment
    return None


def glb_stats(path: Path) -> GLBStats:
    data = path.read_bytes()
    document, binary = parse_glb(data)
    vertices, faces = mesh_counts(document, binary)
    sizes = [size for _, blob in embedded_images(document, binary)
             if (size := image_size(blob)) is not None]
    texture = max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    return GLBStats(bytes=len(data), vertices=vertices, faces=faces,
                    texture_size=list(texture) if texture else None)

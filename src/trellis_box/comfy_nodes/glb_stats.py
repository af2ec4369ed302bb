"""GLB structure checks and mesh statistics from the file's JSON chunk (standard library only).

Reads the 12-byte header (magic ``glTF``, version 2, total length equal to the file size), the
JSON chunk, and for the texture size the PNG or JPEG header of each embedded image.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN = 4, 5, 6


class GLBFormatError(ValueError):
    """The file is not a complete glTF 2.0 binary; the message says what was found."""


@dataclass(frozen=True)
class GLBStats:
    bytes: int
    vertices: int
    faces: int
    texture_size: list[int] | None  # [width, height] of the largest embedded image

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_glb(path: Path) -> tuple[dict[str, Any], bytes]:
    """The glTF JSON and the BIN chunk of a GLB file; :class:`GLBFormatError` if it is not one."""
    data = path.read_bytes()
    if len(data) < 20:
        raise GLBFormatError(f"{len(data)} bytes, shorter than a GLB header")
    magic, version, length = data[:4], *struct.unpack_from("<II", data, 4)
    if magic != GLB_MAGIC:
        raise GLBFormatError(f"starts with {magic!r}, not the GLB magic b'glTF'")
    if version != 2:
        raise GLBFormatError(f"GLB container version {version}, expected 2")
    if length != len(data):
        raise GLBFormatError(f"header declares {length} bytes but the file has {len(data)} "
                             "(truncated or padded)")
    json_length, json_type = struct.unpack_from("<II", data, 12)
    if json_type != CHUNK_JSON or 20 + json_length > len(data):
        raise GLBFormatError("the first chunk is not a complete JSON chunk")
    try:
        gltf = json.loads(data[20:20 + json_length])
    except ValueError as e:
        raise GLBFormatError(f"the JSON chunk does not parse: {e}") from e
    binary = b""
    offset = 20 + json_length
    if offset + 8 <= len(data):
        bin_length, bin_type = struct.unpack_from("<II", data, offset)
        if bin_type == CHUNK_BIN:
            binary = data[offset + 8:offset + 8 + bin_length]
    return gltf, binary


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


def _faces(primitive: dict[str, Any], accessors: list[dict[str, Any]]) -> int:
    mode = primitive.get("mode", TRIANGLES)
    if "indices" in primitive:
        count = accessors[primitive["indices"]]["count"]
    else:
        count = accessors[primitive["attributes"]["POSITION"]]["count"]
    if mode == TRIANGLES:
        return int(count) // 3
    if mode in (TRIANGLE_STRIP, TRIANGLE_FAN):
        return max(int(count) - 2, 0)
    return 0


def glb_stats(path: Path) -> GLBStats:
    gltf, binary = read_glb(path)
    accessors = gltf.get("accessors", [])
    vertices = faces = 0
    try:
        for mesh in gltf.get("meshes", []):
            for primitive in mesh.get("primitives", []):
                vertices += int(accessors[primitive["attributes"]["POSITION"]]["count"])
                faces += _faces(primitive, accessors)
    except (KeyError, IndexError, TypeError) as e:
        raise GLBFormatError(f"a mesh primitive refers to a missing accessor ({e})") from e
    sizes = []
    views = gltf.get("bufferViews", [])
    for image in gltf.get("images", []):
        if "bufferView" in image and image["bufferView"] < len(views):
            view = views[image["bufferView"]]
            start = view.get("byteOffset", 0)
            size = image_size(binary[start:start + view["byteLength"]])
            if size:
                sizes.append(size)
    texture = max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    return GLBStats(bytes=path.stat().st_size, vertices=vertices, faces=faces,
                    texture_size=list(texture) if texture else None)

"""A textured box written as a valid glTF 2.0 binary (GLB) with the standard library and Pillow.

Stands in for the trimesh object TRELLIS.2's post-processing returns: ``export(path,
file_type="glb")`` writes positions, normals, UVs, indices and a PNG base colour texture,
everything Khronos gltf-validator checks. The texture grows to make the file about
``target_bytes`` long, for benchmarks that need realistic download sizes.
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
from dataclasses import dataclass, field

from PIL import Image

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
FLOAT, UNSIGNED_SHORT = 5126, 5123
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963

# Each face of the unit box: outward normal and the two in-plane axes spanning it.
_FACES = [
    ((1, 0, 0), (0, 0, -1), (0, 1, 0)), ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (1, 0, 0), (0, 0, -1)), ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)), ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
]


def box_geometry() -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]],
                            list[tuple[float, float]], list[int]]:
    """24 vertices (4 per face, so each face has its own normal and UVs) and 12 triangles."""
    positions, normals, uvs, indices = [], [], [], []
    for normal, u_axis, v_axis in _FACES:
        base = len(positions)
        for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            positions.append(tuple(0.5 * (n + du * u + dv * v)
                                   for n, u, v in zip(normal, u_axis, v_axis, strict=True)))
            normals.append(tuple(float(n) for n in normal))
            uvs.append(((du + 1) / 2, (1 - dv) / 2))
        indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return positions, normals, uvs, indices  # type: ignore[return-value]


def texture_png(side: int, seed: int, noisy: bool) -> bytes:
    """A square RGB texture; noise (stored uncompressed) when the file must reach a size."""
    if noisy:
        data = random.Random(seed).randbytes(side * side * 3)
        image = Image.frombytes("RGB", (side, side), data)
        compress_level = 0
    else:
        image = Image.new("RGB", (side, side))
        image.putdata([((x * 255) // side, (y * 255) // side, (seed * 37) % 256)
                       for y in range(side) for x in range(side)])
        compress_level = 6
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _pad(data: bytes, filler: bytes) -> bytes:
    return data + filler * (-len(data) % 4)


@dataclass
class TexturedBox:
    """What the post-processing node returns in place of a trimesh.Trimesh."""

    seed: int = 0
    texture_side: int = 64
    target_bytes: int = 0
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def vertex_count(self) -> int:
        return 24

    @property
    def face_count(self) -> int:
        return 12

    def texture_side_for_target(self) -> int:
        if self.target_bytes <= 0:
            return self.texture_side
        # Uncompressed PNG of noise: 3 bytes a pixel plus one filter byte a row.
        return max(8, math.isqrt(max(self.target_bytes - 2048, 0) // 3))

    def glb_bytes(self) -> bytes:
        positions, normals, uvs, indices = box_geometry()
        side = self.texture_side_for_target()
        png = texture_png(side, self.seed, noisy=self.target_bytes > 0)
        views: list[bytes] = [
            b"".join(struct.pack("<3f", *p) for p in positions),
            b"".join(struct.pack("<3f", *n) for n in normals),
            b"".join(struct.pack("<2f", *uv) for uv in uvs),
            struct.pack(f"<{len(indices)}H", *indices),
            png,
        ]
        binary = b""
        buffer_views = []
        for i, view in enumerate(views):
            entry: dict[str, object] = {"buffer": 0, "byteOffset": len(binary), "byteLength": len(view)}
            if i < 3:
                entry["target"] = ARRAY_BUFFER
            elif i == 3:
                entry["target"] = ELEMENT_ARRAY_BUFFER
            buffer_views.append(entry)
            binary += _pad(view, b"\x00")
        gltf = {
            "asset": {"version": "2.0", "generator": "trellis-box ComfyUI stand-in"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "geometry_0"}],
            "meshes": [{"primitives": [{
                "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2},
                "indices": 3, "material": 0, "mode": 4}]}],
            "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0},
                                                    "metallicFactor": 0.0, "roughnessFactor": 1.0},
                           "doubleSided": True}],
            "textures": [{"source": 0, "sampler": 0}],
            "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}],
            "images": [{"bufferView": 4, "mimeType": "image/png"}],
            "accessors": [
                {"bufferView": 0, "componentType": FLOAT, "count": len(positions), "type": "VEC3",
                 "min": [-0.5, -0.5, -0.5], "max": [0.5, 0.5, 0.5]},
                {"bufferView": 1, "componentType": FLOAT, "count": len(normals), "type": "VEC3"},
                {"bufferView": 2, "componentType": FLOAT, "count": len(uvs), "type": "VEC2"},
                {"bufferView": 3, "componentType": UNSIGNED_SHORT, "count": len(indices),
                 "type": "SCALAR"},
            ],
            "bufferViews": buffer_views,
            "buffers": [{"byteLength": len(binary)}],
        }
        json_chunk = _pad(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
        total = 12 + 8 + len(json_chunk) + 8 + len(binary)
        return b"".join([
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(json_chunk), CHUNK_JSON), json_chunk,
            struct.pack("<II", len(binary), CHUNK_BIN), binary,
        ])

    def export(self, path: object, file_type: str = "glb", **_: object) -> None:
        if file_type != "glb":
            raise NotImplementedError(f"the stand-in exports glb only, not {file_type}")
        with open(str(path), "wb") as f:
            f.write(self.glb_bytes())

"""GLB checks and statistics for reports: vertices, faces, meshes, materials, textures, bytes.

The container, buffer views and mesh references are checked by the node pack's reader
(:mod:`trellis_box.comfy_nodes.glb_stats`, the one GLB parser; standard library only, as it runs
inside ComfyUI). Here each embedded texture is also decoded, so a damaged image is an error too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from trellis_box.comfy_nodes.glb_stats import REGENERATE, GLBFormatError, embedded_images, mesh_counts, parse_glb
from trellis_box.errors import GlbInvalidError


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlbStats:
        """The inverse of :meth:`as_dict` (``max_texture_size`` is derived, so not read)."""
        return cls(int(data["bytes"]), int(data["vertices"]), int(data["faces"]),
                   int(data["meshes"]), int(data["materials"]),
                   tuple((int(w), int(h)) for w, h in data.get("textures") or ()))


def glb_stats(path: Path) -> GlbStats:
    """Check that ``path`` is a whole GLB 2.0 file and count what is in it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"it cannot be read ({exc.strerror or exc})", "check the path") from exc
    try:
        document, binary = parse_glb(data)
        vertices, faces = mesh_counts(document, binary)
        images = embedded_images(document, binary)
    except GLBFormatError as exc:
        raise _error(path, str(exc), exc.fix) from exc
    return GlbStats(bytes=len(data), vertices=vertices, faces=faces,
                    meshes=len(document.get("meshes", [])),
                    materials=len(document.get("materials", [])),
                    textures=tuple(_decoded_size(path, index, blob) for index, blob in images))


def _decoded_size(path: Path, index: int, blob: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(blob)) as decoded:
            decoded.load()
            return decoded.size
    except (UnidentifiedImageError, OSError) as exc:
        raise _error(path, f"texture image {index} does not decode ({exc})", REGENERATE) from exc


def _error(path: Path, fact: str, fix: str) -> GlbInvalidError:
    return GlbInvalidError(f"not a usable GLB: {path}", detail=f"{fact}.", fix=fix, path=str(path))

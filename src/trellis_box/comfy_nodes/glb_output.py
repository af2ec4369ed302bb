"""``TrellisBoxGLBOutput``: surface the GLB ``Trellis2ExportMesh`` wrote as a UI output.

ComfyUI lists in ``/history`` only what nodes return under ``ui``; the export node returns a
path and nothing else, so without this node the GLB is written but no client can find it. The
``3d`` entry has the shape ComfyUI's own SaveGLB uses; ``trellis_box`` adds mesh statistics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .glb_stats import GLBFormatError, glb_stats


class GLBOutputError(ValueError):
    """The path given to the node is outside the output folder, missing, or not a GLB."""


class TrellisBoxGLBOutput:
    CATEGORY = "trellis-box"
    DESCRIPTION = ("Lists a GLB written by Trellis2ExportMesh as an output, so /history names "
                   "it and /view serves it, with vertex, face and texture statistics.")
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "surface"
    OUTPUT_NODE = True

    def __init__(self, output_dir: str | os.PathLike[str] | None = None) -> None:
        if output_dir is None:
            import folder_paths  # ComfyUI's module: only there when running inside ComfyUI

            output_dir = folder_paths.get_output_directory()
        self.output_dir = Path(output_dir).resolve()

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"glb_path": ("STRING", {"forceInput": True})}}

    def resolve(self, glb_path: str) -> Path:
        """The file ``glb_path`` names: relative to the output folder (as the export node
        returns it) or absolute, and in both cases inside the output folder."""
        candidate = Path(glb_path)
        if not candidate.is_absolute():
            candidate = self.output_dir / candidate
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self.output_dir):
            raise GLBOutputError(
                f"glb_path {glb_path!r} resolves to {resolved}, outside the output folder "
                f"{self.output_dir}; fix: connect the glb_path output of Trellis2ExportMesh "
                "(it writes under the output folder)")
        if not resolved.is_file():
            raise GLBOutputError(
                f"glb_path {glb_path!r}: no file at {resolved}; fix: check that "
                "Trellis2ExportMesh ran with save_file enabled and file_format glb")
        return resolved

    def surface(self, glb_path: str) -> dict[str, Any]:
        path = self.resolve(glb_path)
        try:
            stats = glb_stats(path)
        except GLBFormatError as e:
            raise GLBOutputError(
                f"glb_path {glb_path!r}: {path} is not a valid GLB: {e}; fix: set "
                "Trellis2ExportMesh's file_format to glb") from e
        relative = path.relative_to(self.output_dir)
        subfolder = relative.parent.as_posix()
        entry = {"filename": relative.name, "subfolder": "" if subfolder == "." else subfolder,
                 "type": "output"}
        return {"ui": {"3d": [entry], "trellis_box": [{**entry, **stats.as_dict()}]}}

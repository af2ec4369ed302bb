"""The two mesh converters ComfyUI-Trellis2 imports at the first shape decode; the stand-in
generator never calls them."""

from typing import Any


def flexible_dual_grid_to_mesh(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("stand-in o_voxel: the stand-in pipeline makes its own mesh")


def tiled_flexible_dual_grid_to_mesh(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("stand-in o_voxel: the stand-in pipeline makes its own mesh")

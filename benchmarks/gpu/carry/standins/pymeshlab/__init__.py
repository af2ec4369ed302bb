"""GPU harness only: a no-op pymeshlab (the wheel is 106 MB). ComfyUI-Trellis2's ``remove_floaters``
is its one caller in the harness's workflow: the mesh passes through unchanged."""

from __future__ import annotations

from typing import Any

STAND_IN = True


class Mesh:
    def __init__(self, vertex_matrix: Any = None, face_matrix: Any = None, **_: Any) -> None:
        self._vertices, self._faces = vertex_matrix, face_matrix

    def vertex_matrix(self) -> Any:
        return self._vertices

    def face_matrix(self) -> Any:
        return self._faces


class MeshSet:
    def __init__(self) -> None:
        self._meshes: list[Mesh] = []

    def add_mesh(self, mesh: Mesh, name: str | None = None) -> None:
        self._meshes.append(mesh)

    def current_mesh(self) -> Mesh:
        return self._meshes[-1]

    def apply_filter(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

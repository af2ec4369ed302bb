"""`trellis-box workflow`: write the image-to-GLB workflow files, check a workflow file offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from trellis_box.cli._output import JsonOption, emit
from trellis_box.comfyui import workflow, workflow_editor
from trellis_box.errors import UsageError

app = typer.Typer(name="workflow", help="The image-to-GLB ComfyUI workflow: export it, check one.",
                  no_args_is_help=True)


@app.command("export")
def export(
    directory: Path = typer.Argument(Path("workflows"), help="Where to write the two files."),
    as_json: bool = JsonOption,
) -> None:
    """Write image_to_glb.api.json (API format) and image_to_glb.json (loads in the editor)."""
    written = workflow_editor.export(directory)

    def render(out: Console) -> None:
        for path in written:
            out.print(f"wrote {path}")

    emit({"written": [str(p) for p in written]}, as_json=as_json, render=render)


@app.command("check")
def check(
    path: Path = typer.Argument(..., help="A workflow file, API or editor format."),
    as_json: bool = JsonOption,
) -> None:
    """Check every input of a workflow file against the recorded node schemas, offline."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read workflow file {path}", detail=str(exc),
                         fix="pass a JSON file saved by the ComfyUI editor or `workflow export`") from exc
    info = workflow.recorded_object_info()
    is_editor = isinstance(data, dict) and "nodes" in data and "links" in data
    graph = workflow_editor.from_editor(data, info) if is_editor else data
    workflow.validate(graph, info)
    result = {"path": str(path), "format": "editor" if is_editor else "api", "nodes": len(graph), "ok": True}

    def render(out: Console) -> None:
        out.print(f"{path}: {result['format']} format, {len(graph)} nodes, every input matches the schemas")

    emit(result, as_json=as_json, render=render)


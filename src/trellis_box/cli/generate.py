"""`trellis-box generate`: images in, GLB + cutout + JSON report out, through ComfyUI's API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trellis_box.batch.engine import BatchOptions, BatchReport, Event, Outcome, run_batch
from trellis_box.cli._errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL
from trellis_box.cli._output import JsonOption, emit, err
from trellis_box.comfyui import protocol
from trellis_box.comfyui.workflow import ATTENTION_BACKENDS, RESOLUTIONS, WorkflowOptions

EXAMPLES = """\
Examples:

  trellis-box generate photos/ --server http://127.0.0.1:8188 --out glb/

  trellis-box generate chair.jpg lamp.png --out glb/ --resolution 1536 --auto-resolution

Run the same command again to resume: inputs whose GLB, cutout and report exist for the same
image content and parameters are skipped.
"""

_DEFAULTS = WorkflowOptions()

app = typer.Typer()


@app.command("generate", epilog=EXAMPLES)
def generate(
    inputs: list[Path] = typer.Argument(..., help="Image files and directories of images."),
    server: str = typer.Option("http://127.0.0.1:8188", "--server", envvar="TRELLIS_BOX_SERVER",
                               help="ComfyUI base URL."),
    out: Path = typer.Option(..., "--out", help="Directory for <name>.glb, .cutout.png, .json."),
    resolution: str = typer.Option(_DEFAULTS.resolution, "--resolution",
                                   help=f"One of {', '.join(RESOLUTIONS)}."),
    auto_resolution: bool = typer.Option(
        False, "--auto-resolution",
        help="Step down to the highest resolution the GPU holds (also after out of memory)."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Seed of every input."),
    steps: int | None = typer.Option(None, "--steps", help="Set all three step counts."),
    sparse_structure_steps: int = typer.Option(_DEFAULTS.sparse_structure_steps,
                                               "--sparse-structure-steps"),
    shape_steps: int = typer.Option(_DEFAULTS.shape_steps, "--shape-steps"),
    texture_steps: int = typer.Option(_DEFAULTS.texture_steps, "--texture-steps"),
    texture_size: int = typer.Option(_DEFAULTS.texture_size, "--texture-size"),
    target_faces: int = typer.Option(_DEFAULTS.target_face_num, "--target-faces"),
    remesh: bool = typer.Option(_DEFAULTS.remesh, "--remesh/--no-remesh",
                                help="Remesh before simplifying (the node's default)."),
    attention: str = typer.Option(_DEFAULTS.attention, "--attention",
                                  help=f"Attention backend: {', '.join(ATTENTION_BACKENDS)}."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1.0,
                                  help="Seconds one image may run on the server."),
    as_json: bool = JsonOption,
) -> int:
    """Turn images into textured GLB files through a trellis-box (or any) ComfyUI server."""
    options = WorkflowOptions(
        resolution=resolution, seed=seed,
        sparse_structure_steps=steps if steps is not None else sparse_structure_steps,
        shape_steps=steps if steps is not None else shape_steps,
        texture_steps=steps if steps is not None else texture_steps,
        texture_size=texture_size, target_face_num=target_faces, remesh=remesh,
        attention=attention)
    batch = BatchOptions(out_dir=out, workflow=options, auto_resolution=auto_resolution,
                         job_timeout=timeout)
    if as_json:
        report = asyncio.run(run_batch(server, inputs, batch))
    else:
        with _Display(err) as display:
            report = asyncio.run(run_batch(server, inputs, batch, on_event=display.on_event))
    emit(_as_data(report), as_json=as_json, render=lambda console: _render(console, report))
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if report.failed else EXIT_OK


class _Display:
    """A progress bar over the batch and a line for the image on the GPU (stderr)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                 transient=True)
        self.task = self.progress.add_task("generating", total=None)

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: Event) -> None:
        name = event.item.name
        if event.kind == "done" and event.outcome is not None:
            self.progress.advance(self.task)
            if event.outcome.error is not None:
                self.progress.console.print(f"[red]failed[/] {name}: {event.outcome.error.message}",
                                            highlight=False)
        elif isinstance(event.message, protocol.Progress):
            self.progress.update(self.task, description=f"{name}: {event.node_class} "
                                 f"step {event.message.value}/{event.message.max}")
        elif isinstance(event.message, protocol.Executing) and event.message.node:
            self.progress.update(self.task, description=f"{name}: {event.node_class}")


def _as_data(report: BatchReport) -> dict[str, Any]:
    return {
        "resolution": report.resolution,
        "interrupted": report.interrupted,
        "seconds": round(report.seconds, 3),
        "server": report.server,
        "counts": {status: sum(o.status == status for o in report.outcomes)
                   for status in ("ok", "skipped", "failed", "interrupted")},
        "items": [{
            "input": str(o.item.source),
            "name": o.item.name,
            "status": o.status,
            "glb": str(o.glb) if o.glb else None,
            "seconds": round(o.seconds, 3),
            "error": o.error.to_dict() if o.error else None,
        } for o in report.outcomes],
    }


def _server_seconds(outcome: Outcome) -> str:
    """How long the server ran this image (its own timestamps), for images run now."""
    server_ms = (outcome.report.get("timings") or {}).get("server_ms")
    return f"{server_ms / 1000:.1f}" if outcome.status == "ok" and server_ms else ""


def _render(console: Console, report: BatchReport) -> None:
    table = Table(title=f"trellis-box generate — resolution {report.resolution}")
    for column in ("input", "status", "faces", "texture", "GPU s", "result"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow"}
    for o in report.outcomes:
        stats = o.report.get("glb") or {}
        result = str(o.glb) if o.glb else (o.error.message if o.error else "not run")
        table.add_row(o.item.name, f"[{style[o.status]}]{o.status}[/]",
                      f"{stats['faces']:,}" if stats else "",
                      str(stats.get("max_texture_size") or ""),
                      _server_seconds(o), result)
    console.print(table)
    failed = report.failed
    for o in failed:
        if o.error is not None:
            console.print(f"[red]error:[/] {o.error}", highlight=False)
    summary = (f"{len(report.outcomes) - len(failed)} of {len(report.outcomes)} done "
               f"in {report.seconds:.1f} s")
    if report.interrupted:
        summary += "; interrupted: run the same command again to resume"
    console.print(summary, highlight=False)


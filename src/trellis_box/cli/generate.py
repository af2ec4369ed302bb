"""`trellis-box generate`: images in, GLB + cutout + JSON report out, through ComfyUI's API, and
report.html over the whole folder at the end."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand

from trellis_box.batch.engine import BatchOptions, BatchReport, Event, Outcome, run_batch
from trellis_box.cli._errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL
from trellis_box.cli._output import JsonOption, emit, err
from trellis_box.cli.report import report_batch
from trellis_box.comfyui import protocol, workflow
from trellis_box.errors import TrellisBoxError, WorkflowInvalidError

EXAMPLES = """\
Examples:

\b
  trellis-box generate photos/ --server http://127.0.0.1:8188 --out glb/
  trellis-box generate a.jpg --out glb/ --resolution 1536 --auto-resolution
  trellis-box generate photos/ --out glb/ --preset web --texture-size 2048

Run the same command again to resume: inputs whose GLB, cutout and report exist for the same
image content and parameters are skipped.
"""

#: One option that sets several parameters.
_SHORTHANDS: dict[str, tuple[str, ...]] = {
    "steps": ("sparse_structure_steps", "shape_steps", "texture_steps"),
}


def _flag(name: str) -> str | None:
    """The option of ``generate`` that sets parameter (or batch option) ``name``."""
    if name in ("preset", "auto_resolution"):
        return "--" + name.replace("_", "-")
    found = next((p for p in workflow.PARAMETERS if p.name == name), None)
    if found is None or found.flag is None:
        return None
    return "--" + (found.flag or found.name.replace("_", "-"))


def _preset_help() -> str:
    presets = "; ".join(
        f"{name}: " + ", ".join(f"{_flag(k) or k} {v}" for k, v in workflow.preset_values(name).items())
        for name in workflow.PRESETS)
    return f"Output size and detail ({presets}). Options given as well win."

def generate(
    inputs: list[Path] = typer.Argument(..., help="Image files and directories of images."),
    server: str = typer.Option("http://127.0.0.1:8188", "--server", envvar="TRELLIS_BOX_SERVER",
                               help="ComfyUI base URL."),
    out: Path = typer.Option(..., "--out", help="Directory for <name>.glb, .cutout.png, .json."),
    preset: str = typer.Option(workflow.DEFAULT_PRESET, "--preset",
                               metavar="|".join(workflow.PRESETS), help=_preset_help()),
    auto_resolution: bool = typer.Option(
        False, "--auto-resolution",
        help="Step down to the highest resolution the GPU holds (also after out of memory)."),
    steps: int | None = typer.Option(None, "--steps", help="Set all three step counts."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1.0,
                                  help="Seconds one image may run on the server."),
    as_json: bool = JsonOption,
    **parameters: Any,
) -> int:
    """Turn images into textured GLB files through a trellis-box (or any) ComfyUI server."""
    given = {name: value for name, value in parameters.items() if value is not None}
    shorthands = {"steps": steps}
    for shorthand, value in shorthands.items():
        if value is not None:
            given |= dict.fromkeys(_SHORTHANDS[shorthand], value)
    used = {name: shorthand for shorthand, value in shorthands.items() if value is not None
            for name in _SHORTHANDS[shorthand]}
    try:
        options = workflow.WorkflowOptions(preset=preset, **given)
        batch = BatchOptions(out_dir=out, workflow=options, auto_resolution=auto_resolution,
                             job_timeout=timeout)
        if as_json:
            report = asyncio.run(run_batch(server, inputs, batch))
        else:
            with _Display(err) as display:
                report = asyncio.run(run_batch(server, inputs, batch, on_event=display.on_event))
    except TrellisBoxError as exc:
        raise _in_flags(exc, used) from exc.__cause__
    for outcome in report.outcomes:
        if outcome.error is not None:
            _in_flags(outcome.error, used)
    emit(_as_data(report), as_json=as_json,
         render=lambda console: _render(console, report, requested=options.resolution))
    # After the batch, so thumbnails never hold up the GPU; skipped after Ctrl-C.
    report_batch(out, thumbnails=not report.interrupted, quiet=as_json)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if report.failed else EXIT_OK


def _parameter_options() -> list[inspect.Parameter]:
    """An option of ``generate`` for every parameter the table offers it under a flag."""
    preset_set = {name for values in workflow.PRESETS.values() for name in values}
    options = []
    for p in workflow.PARAMETERS:
        flag = _flag(p.name)
        if flag is None:
            continue
        from_preset = p.name in preset_set
        default = None if from_preset else p.default_value
        declaration = f"{flag}/--no-{flag[2:]}" if p.python_type is bool else flag
        values = f" {p.describe().capitalize()}." if p.choices or any(p.bounds) else ""
        option = typer.Option(
            default, declaration, help=p.help + values,
            metavar="|".join(p.choices) if p.choices else None,
            show_default="the preset's" if from_preset else True)
        annotation = p.python_type | None if from_preset else p.python_type
        options.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                         annotation=annotation))
    return options


def command() -> Callable[..., int]:
    """``generate`` with an option per parameter of :data:`workflow.PARAMETERS`, built now."""
    def run(**kwargs: Any) -> int:
        return generate(**kwargs)

    declared = [p for p in inspect.signature(generate, eval_str=True).parameters.values()
                if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = next(i for i, p in enumerate(declared) if p.name == "auto_resolution")
    fixed = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in declared]
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        fixed[:at] + _parameter_options() + fixed[at:], return_annotation=int)
    run.__doc__ = generate.__doc__
    return run


_MENTION = re.compile(r"parameter `(\w+)`")


def _in_flags(exc: TrellisBoxError, shorthands: dict[str, str]) -> TrellisBoxError:
    """``exc`` worded for this command: parameters named by the option that set them."""
    def flag(name: str) -> str | None:
        return f"--{shorthands[name]}" if name in shorthands else _flag(name)

    def speak(text: str) -> str:
        return _MENTION.sub(lambda m: flag(m.group(1)) or m.group(0), text)

    problems = exc.facts.get("problems")
    if isinstance(exc, WorkflowInvalidError) and isinstance(problems, list):
        lines: dict[tuple[str, str, str], list[str]] = {}
        for problem in problems:
            where = flag(problem.get("parameter") or "") or problem["path"]
            lines.setdefault((where, problem["fact"], speak(problem["fix"])), []).append(
                problem["path"])
        exc.detail = "\n".join(f"{where}: {fact} ({', '.join(paths)})\n  fix: {fix}"
                               for (where, fact, fix), paths in lines.items())
    if exc.fix:
        exc.fix = speak(exc.fix)
    return exc


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


def _ran_at(outcome: Outcome) -> str:
    """The resolution an input ran at (its report's), blank where it did not run."""
    return str(outcome.report.get("resolution") or "") if outcome.status in ("ok", "skipped") else ""


def _render(console: Console, report: BatchReport, *, requested: str) -> None:
    ran = sorted({r for r in map(_ran_at, report.outcomes) if r}, key=workflow.RESOLUTIONS.index)
    title = f"trellis-box generate — resolution {requested}"
    if ran and ran != [requested]:
        title += f" requested, {' and '.join(ran)} ran"
    table = Table(title=title)
    for column in ("input", "status", "resolution", "faces", "texture", "GPU s", "result"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow"}
    for o in report.outcomes:
        stats = o.report.get("glb") or {}
        result = str(o.glb) if o.glb else (o.error.message if o.error else "not run")
        table.add_row(o.item.name, f"[{style[o.status]}]{o.status}[/]", _ran_at(o),
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


class _PlainHelp(TyperCommand):
    """Help as click lays it out: rich's option table cuts long option names, the environment
    variable and the default URL at 80 columns; click's wraps the help text instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "rich_markup_mode": None})


def build_app() -> typer.Typer:
    """A Typer holding ``generate`` as the parameter table reads now (tests extend the table)."""
    built = typer.Typer()
    built.command("generate", epilog=EXAMPLES, cls=_PlainHelp)(command())
    return built


app = build_app()

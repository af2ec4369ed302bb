"""`trellis-box generate`: images in, GLB + cutout + JSON report out, through ComfyUI's API, and
report.html over the whole folder at the end."""

from __future__ import annotations

import asyncio
import inspect
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from trellis_box.batch.engine import (
    BatchOptions,
    BatchReport,
    Done,
    Event,
    Observer,
    Outcome,
    Planned,
    Queued,
    run_items,
)
from trellis_box.batch.files import Item
from trellis_box.batch.sources import locations
from trellis_box.cli._errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_TERMINATED
from trellis_box.cli._flags import errors_in_flags, flags_of, in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.cli.report import report_batch
from trellis_box.comfyui import protocol, workflow
from trellis_box.comfyui.client import Connection
from trellis_box.weights import standin

EXAMPLES = """\
Examples:

\b
  trellis-box generate photos/ --server http://127.0.0.1:8188 --out glb/
  trellis-box generate a.jpg --out glb/ --resolution 1536 --auto-resolution
  trellis-box generate photos/ --out glb/ --preset web --texture-size 2048

Run the same command again to resume: inputs whose GLB, cutout and report exist for the same
image content and parameters are skipped. Ctrl-C (exit 130) and SIGTERM (exit 143) withdraw the
prompts of this run from the server and keep every finished file.
"""

#: One option that sets several parameters.
_SHORTHANDS: dict[str, tuple[str, ...]] = {
    "steps": ("sparse_structure_steps", "shape_steps", "texture_steps"),
}


def _declared(p: workflow.Parameter) -> str | None:
    """The option ``generate`` declares for a parameter of the table (None: it offers none)."""
    return None if p.flag is None else "--" + (p.flag or p.name.replace("_", "-"))


def _preset_help() -> str:
    presets = "; ".join(
        f"{name}: " + ", ".join(f"{_declared(workflow.parameter(k)) or k} {v}"
                                for k, v in workflow.preset_values(name).items())
        for name in workflow.PRESETS)
    return f"Output size and detail ({presets}). Options given as well win."

def generate(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(..., help="Image files and directories of images, or "
                                               "s3://bucket/prefix (its images) and s3://bucket/key."),
    server: str = typer.Option("http://127.0.0.1:8188", "--server", envvar="TRELLIS_BOX_SERVER",
                               help="ComfyUI base URL."),
    out: str = typer.Option(..., "--out", help="Directory or s3://bucket/prefix for <name>.glb, "
                                               ".cutout.png, .json."),
    preset: str = typer.Option(workflow.DEFAULT_PRESET, "--preset",
                               metavar="|".join(workflow.PRESETS), help=_preset_help()),
    auto_resolution: bool = typer.Option(
        False, "--auto-resolution",
        help="Step down to the highest resolution the GPU holds (also after out of memory)."),
    steps: int | None = typer.Option(None, "--steps", help="Set all three step counts."),
    job_timeout: float = typer.Option(3600.0, "--timeout", min=1.0,
                                  help="Seconds one image may run on the server."),
    stagger: float = typer.Option(
        0.0, "--stagger", min=0.0, metavar="SECONDS",
        help="On a server with several workers, start worker k's first image k x SECONDS in, so "
             "their GPU stages take turns (measured on an H200: 10 s for 6 workers at 1024)."),
    as_json: bool = JsonOption,
    **parameters: Any,
) -> int:
    """Turn images into textured GLB files through a trellis-box (or any) ComfyUI server."""
    given = {name: value for name, value in parameters.items() if value is not None}
    shorthands = {"steps": steps}
    for shorthand, value in shorthands.items():
        if value is not None:
            given |= dict.fromkeys(_SHORTHANDS[shorthand], value)
    # A parameter a shorthand set is named by the shorthand: the option the user typed.
    flags = flags_of(ctx)
    set_by = {name: flags[shorthand] for shorthand, value in shorthands.items() if value is not None
              for name in _SHORTHANDS[shorthand]}
    with errors_in_flags(ctx, **set_by):
        options = workflow.WorkflowOptions(preset=preset, **given)
        batch = BatchOptions(out_dir=Path(out), workflow=options, auto_resolution=auto_resolution,
                             job_timeout=job_timeout, stagger_s=stagger)
        with locations(inputs, out, batch) as (items, batch), _Display(err) as display:
            report, terminated = _run(server, items, batch, display.on_event)
    if report is None:
        err.print("terminated (SIGTERM) before any image was queued", highlight=False)
        return EXIT_TERMINATED
    for outcome in report.outcomes:
        if outcome.error is not None:
            in_flags(outcome.error, flags | set_by)
    emit(_as_data(report), as_json=as_json,
         render=lambda console: _render(console, report, requested=options.resolution,
                                        terminated=terminated))
    # After the batch, so thumbnails never hold up the GPU; skipped after Ctrl-C or SIGTERM.
    report_batch(out, thumbnails=not report.interrupted, quiet=as_json)
    if report.interrupted:
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return EXIT_PARTIAL if report.failed else EXIT_OK


def _parameter_options() -> list[inspect.Parameter]:
    """An option of ``generate`` for every parameter the table offers it under a flag."""
    preset_set = {name for values in workflow.PRESETS.values() for name in values}
    options = []
    for p in workflow.PARAMETERS:
        flag = _declared(p)
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


def _run(server: str, items: list[Item], batch: BatchOptions, on_event: Observer
         ) -> tuple[BatchReport | None, bool]:
    """Run the batch; SIGTERM stops it as Ctrl-C does (our prompts withdrawn and interrupted,
    finished files kept). Returns the report (``None`` if stopped before the batch began) and
    whether SIGTERM stopped it."""
    terminated = False

    async def batch_until_terminated() -> BatchReport:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            main.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await run_items(server, items, batch, on_event=on_event)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(batch_until_terminated()), terminated
    except asyncio.CancelledError:
        if not terminated:
            raise
        return None, True


class _Display:
    """Progress on stderr. On a terminal: a bar over the batch and the image on the GPU. Anywhere
    else (a log file, CI, ``2>`` a pipe): one line per input and per node event."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self.finished = 0
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                     transient=True)
            self.task = self.progress.add_task("generating", total=None)

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_event(self, event: Event) -> None:
        if isinstance(event, Planned):
            self.total = len(event.items)
            if self.progress is not None:
                self.progress.update(self.task, total=self.total)
        elif isinstance(event, Done):
            self.finished += 1
            self._done(event.outcome)
        elif isinstance(event, Connection):
            self._connection(event)
        elif isinstance(event, Queued):
            moved = f" (taken from {event.moved_from}'s queue)" if event.moved_from else ""
            self._line(f"{event.item.name}: queued{moved}")
        elif isinstance(event.message, protocol.Progress):
            self._status(f"{event.item.name}: {event.node_class} "
                         f"step {event.message.value}/{event.message.max}", log=False)
        elif isinstance(event.message, protocol.Executing) and event.message.node:
            self._status(f"{event.item.name}: {event.node_class}")

    def _done(self, outcome: Outcome) -> None:
        count = f"{self.finished}/{self.total}"
        if self.progress is not None:
            self.progress.advance(self.task)
            if outcome.error is not None:
                self.progress.console.print(
                    styled(("failed", "red"), f" {outcome.item.name}: {outcome.error.message}"),
                    highlight=False)
            return
        took = f" in {outcome.seconds:.1f} s" if outcome.status == "ok" else ""
        why = f": {outcome.error.message}" if outcome.error is not None else ""
        self._line(f"{count} {outcome.item.name}: {outcome.status}{took}{why}")

    def _connection(self, state: Connection) -> None:
        if state.up:
            self._status(f"ComfyUI at {state.url} is reachable again")
            return
        until = time.strftime("%H:%M:%S", time.localtime((state.down_since or time.time())
                                                         + state.retry_seconds))
        text = (f"ComfyUI at {state.url} is unreachable; retrying for {state.retry_seconds:g} s "
                f"(until {until}), then the images left fail")
        self._status(text)
        if self.progress is not None:
            self.progress.console.print(styled((text, "yellow")), highlight=False)

    def _status(self, text: str, *, log: bool = True) -> None:
        """What runs now: the bar's description, or a line of the log (progress steps are
        left out of the log: dozens per image)."""
        if self.progress is not None:
            self.progress.update(self.task, description=text)
        elif log:
            self._line(text)

    def _line(self, text: str) -> None:
        if self.progress is None:
            self.console.print(text, highlight=False, soft_wrap=True)


def _stand_in(report: BatchReport) -> bool:
    """The server runs the GPU harness's random-weight stand-ins (its ``/trellis-box/info`` says so)."""
    return bool((report.server.get("trellis_box") or {}).get("weights_mode") == "stand-in")


def _as_data(report: BatchReport) -> dict[str, Any]:
    return {
        **({"label": standin.LABEL} if _stand_in(report) else {}),
        "resolution": report.resolution,
        "interrupted": report.interrupted,
        "seconds": round(report.seconds, 3),
        "server": report.server,
        "counts": {status: sum(o.status == status for o in report.outcomes)
                   for status in ("ok", "skipped", "failed", "interrupted")},
        "items": [{
            "input": o.item.where,
            "name": o.item.name,
            "status": o.status,
            "glb": str(o.glb) if o.glb else None,
            "seconds": round(o.seconds, 3),
            "error": o.error.to_dict() if o.error else None,
        } for o in report.outcomes],
    }


def _server_seconds(outcome: Outcome) -> str:
    """How long the server ran this image (its own timestamps), for images run now."""
    timings = outcome.report.timings if outcome.report else None
    server_ms = timings.server_ms if timings else None
    return f"{server_ms / 1000:.1f}" if outcome.status == "ok" and server_ms else ""


def _ran_at(outcome: Outcome) -> str:
    """The resolution an input ran at (its report's), blank where it did not run."""
    ran = outcome.report.resolution if outcome.report else None
    return str(ran or "") if outcome.status in ("ok", "skipped") else ""


def _render(console: Console, report: BatchReport, *, requested: str,
            terminated: bool = False) -> None:
    ran = sorted({r for r in map(_ran_at, report.outcomes) if r}, key=workflow.RESOLUTIONS.index)
    title = f"trellis-box generate — resolution {requested}"
    if ran and ran != [requested]:
        title += f" requested, {' and '.join(ran)} ran"
    if _stand_in(report):
        title += f" ({standin.LABEL}: random values, not the real models)"
    table = Table(title=title)
    for column in ("input", "status", "resolution", "faces", "texture", "GPU s", "result"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow"}
    for o in report.outcomes:
        stats = o.report.glb if o.report else None
        result = str(o.glb) if o.glb else (o.error.message if o.error else "not run")
        table.add_row(o.item.name, Text(o.status, style=style[o.status]), _ran_at(o),
                      f"{stats.faces:,}" if stats else "",
                      str(stats.max_texture_size or "") if stats else "",
                      _server_seconds(o), result)
    console.print(table)
    failed = report.failed
    for o in failed:
        if o.error is not None:
            console.print(styled(("error:", "red"), f" {o.error}"), highlight=False)
    summary = (f"{len(report.outcomes) - len(failed)} of {len(report.outcomes)} done "
               f"in {report.seconds:.1f} s")
    if report.interrupted:
        summary += ("; terminated (SIGTERM)" if terminated else "; interrupted") + \
            ": run the same command again to resume"
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

"""`trellis-box report DIR`: (re)build a batch's report.html, and serve it for the 3D view."""

from __future__ import annotations

import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.errors import ReportInputError, TrellisBoxError
from trellis_box.report.build import ReportResult, build_report
from trellis_box.report.serve import ReportServer
from trellis_box.report.store import LocalFolder

EXAMPLES = """\
Examples:

  trellis-box report glb/             # write glb/report.html (thumbnails for new GLBs)

  trellis-box report glb/ --serve     # and serve it on 127.0.0.1 for the 3D view

`generate` writes the same report at the end of every run.
"""

app = typer.Typer()


@app.command("report", epilog=EXAMPLES)
def report(
    directory: Path = typer.Argument(..., help="The --out folder of a generate run.",
                                     exists=True, file_okay=False),
    serve: bool = typer.Option(False, "--serve",
                               help="Serve the folder on 127.0.0.1 (the 3D view needs http)."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port for --serve (0: any free)."),
    thumbnails: bool = typer.Option(True, "--thumbnails/--no-thumbnails",
                                    help="Render missing thumbnails (needs the thumbnails extra: f3d)."),
    workers: int | None = typer.Option(None, "--workers", min=1,
                                       help="Processes rendering thumbnails (default: one a core)."),
    as_json: bool = JsonOption,
) -> int:
    """Write DIR/report.html: every input's pictures, model, figures and errors, in one page."""
    result = write_report(directory, thumbnails=thumbnails, workers=workers, quiet=as_json)
    data = {**result.as_dict(), "report": str(directory / result.page)}
    if not serve:
        emit(data, as_json=as_json, render=lambda out: _render(out, directory, result))
        return 0
    with ReportServer(directory, port) as server:
        emit({**data, "url": server.url}, as_json=as_json,
             render=lambda out: out.print(styled(f"serving {directory} at ", (server.url, "bold"),
                                                 " (Ctrl-C stops)"), highlight=False))
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def write_report(directory: Path, *, thumbnails: bool = True, workers: int | None = None,
                 quiet: bool = False) -> ReportResult:
    """Build the report with a progress bar on stderr while thumbnails render."""
    progress = Progress(TextColumn("thumbnails", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=quiet)
    task = progress.add_task("thumbnails", total=None)

    def advance(_glb: str, total: int) -> None:
        progress.update(task, total=total, advance=1)

    with progress:
        return build_report(LocalFolder(directory), folder=str(directory),
                            render_thumbnails=thumbnails, workers=workers, on_thumbnail=advance)


def report_batch(directory: Path, *, thumbnails: bool, quiet: bool) -> None:
    """The end of `generate`: the report of its folder; a problem with it is only a warning."""
    try:
        result = write_report(directory, thumbnails=thumbnails, quiet=quiet)
    except ReportInputError:
        return  # nothing finished: nothing to show
    except TrellisBoxError as exc:
        err.print(styled(("warning:", "yellow"), f" no report.html: {exc.message}"), highlight=False)
        return
    if not quiet:
        _render(err, directory, result)


def _render(out: Console, directory: Path, result: ReportResult) -> None:
    # Plain text: paths and the install hint ('trellis-box[thumbnails]') hold brackets.
    out.print(f"report: {directory / result.page} ({result.counts['inputs']} inputs, "
              f"{result.thumbnails} thumbnails)", highlight=False, markup=False)
    if result.thumbnails_note:
        out.print(f"  thumbnails: {result.thumbnails_note}", highlight=False, markup=False)
    out.print(f"  for the 3D view: trellis-box report {directory} --serve", highlight=False, markup=False)

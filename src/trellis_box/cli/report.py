"""`trellis-box report DIR|s3://bucket/prefix`: (re)build a batch's report.html next to its results,
and serve a local folder for the 3D view."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.errors import ReportInputError, TrellisBoxError
from trellis_box.report.build import ReportResult, build_report
from trellis_box.report.serve import ReportServer
from trellis_box.storage import is_remote, open_storage

EXAMPLES = """\
Examples:

  trellis-box report glb/             # write glb/report.html (thumbnails for new GLBs)

  trellis-box report glb/ --serve     # and serve it on 127.0.0.1 for the 3D view

  trellis-box report s3://bucket/glb  # upload report.html + report-files/ beside the results

`generate` writes the same report at the end of every run.
"""

app = typer.Typer()


@app.command("report", epilog=EXAMPLES)
def report(
    ctx: typer.Context,
    location: str = typer.Argument(..., metavar="DIR",
                                   help="The --out folder or s3://bucket/prefix of a generate run."),
    serve: bool = typer.Option(False, "--serve",
                               help="Serve the folder on 127.0.0.1 (the 3D view needs http); "
                                    "local folders only."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port for --serve (0: any free)."),
    thumbnails: bool = typer.Option(True, "--thumbnails/--no-thumbnails",
                                    help="Render missing thumbnails (needs the thumbnails extra: f3d)."),
    workers: int | None = typer.Option(None, "--workers", min=1,
                                       help="Processes rendering thumbnails (default: one a core)."),
    as_json: bool = JsonOption,
) -> int:
    """Write DIR/report.html: every input's pictures, model, figures and errors, in one page."""
    if serve and is_remote(location):
        raise typer.BadParameter(
            f"serves a folder of this machine, not {location}: open the report from an S3 static "
            f"website (its links are relative), or `aws s3 sync {location} DIR` and serve DIR",
            param_hint="--serve")
    if not (is_remote(location) or Path(location).is_dir()):
        raise typer.BadParameter(f"{location} is not a folder", param_hint="DIR")
    result = write_report(location, thumbnails=thumbnails, workers=workers, quiet=as_json)
    data = {**result.as_dict(), "report": open_storage(location).url(result.page)}
    if not serve:
        emit(data, as_json=as_json, render=lambda out: render_report(out, location, result))
        return 0
    with errors_in_flags(ctx):
        server = ReportServer(Path(location), port)
    with server:
        emit({**data, "url": server.url}, as_json=as_json,
             render=lambda out: out.print(styled(f"serving {location} at ", (server.url, "bold"),
                                                 " (Ctrl-C stops)"), highlight=False))
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


@contextmanager
def thumbnail_progress(*, quiet: bool) -> Iterator[Callable[[str, int], None]]:
    """A progress bar on stderr while thumbnails render; yields ``build_report``'s ``on_thumbnail``."""
    progress = Progress(TextColumn("thumbnails", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=quiet)
    task = progress.add_task("thumbnails", total=None)

    def advance(_glb: str, total: int) -> None:
        progress.update(task, total=total, advance=1)

    with progress:
        yield advance


def write_report(location: str, *, thumbnails: bool = True, workers: int | None = None,
                 quiet: bool = False) -> ReportResult:
    with thumbnail_progress(quiet=quiet) as advance:
        return build_report(open_storage(location), folder=location,
                            render_thumbnails=thumbnails, workers=workers, on_thumbnail=advance)


def report_batch(location: str, *, thumbnails: bool, quiet: bool) -> None:
    """The end of `generate`: the report of its output; a problem with it is only a warning."""
    try:
        result = write_report(location, thumbnails=thumbnails, quiet=quiet)
    except ReportInputError:
        return  # nothing finished: nothing to show
    except TrellisBoxError as exc:
        err.print(styled(("warning:", "yellow"), f" no report.html: {exc.message}"), highlight=False)
        return
    if not quiet:
        render_report(err, location, result)


def render_report(out: Console, location: str, result: ReportResult) -> None:
    """Where the page is, its counts, and how to open it for the 3D view."""
    # Plain text: paths and the install hint ('trellis-box[thumbnails]') hold brackets.
    out.print(f"report: {open_storage(location).url(result.page)} ({result.counts['inputs']} inputs, "
              f"{result.thumbnails} thumbnails)", highlight=False, markup=False)
    if result.thumbnails_note:
        out.print(f"  thumbnails: {result.thumbnails_note}", highlight=False, markup=False)
    view = (f"open it through S3 static website hosting or CloudFront (its links are relative; a "
            f"presigned URL shows the page without its files), or `aws s3 sync {location} DIR` "
            f"and `trellis-box report DIR --serve`"
            if is_remote(location) else f"trellis-box report {location} --serve")
    out.print(f"  for the 3D view: {view}", highlight=False, markup=False)

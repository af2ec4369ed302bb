"""`trellis-box models list|fetch|lock|verify`: the weights catalog, bake, lock and check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from trellis_box.cli._errors import EXIT_ERROR, EXIT_INTERRUPTED
from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, err
from trellis_box.weights.verify import human_size

if TYPE_CHECKING:
    from trellis_box.weights.catalog import Model

app = typer.Typer(name="models", help="The weights: list, fetch, lock and verify them.",
                  no_args_is_help=True)

ConfigOption = typer.Option(None, "--config", help="TOML with per-model source overrides (\\[dinov3] repo = ...).",
                            dir_okay=False)
LockOption = typer.Option(None, "--lock", dir_okay=False,
                          help="Lock to pin the fetch to, completed with what it resolves (default: read the "
                               "package's lock if one ships; the installed package is never written). The "
                               "resolved lock is always baked into the tree.")
LockOutOption = typer.Option(..., "--lock", dir_okay=False,
                             help="Where to write the lock (in a checkout: src/trellis_box/data/weights.lock.json).")
VerifyLockOption = typer.Option(None, "--lock", dir_okay=False,
                                help="Lock file to check against (default: the one fetch baked into the "
                                     "tree, else the package's weights.lock.json).")
TokenFileOption = typer.Option(None, "--token-file", help="File holding a Hugging Face token.", dir_okay=False)
# The same variable serve reads, so one setting serves both (and the not-a-root fix can name it).
RootOption = typer.Option(..., "--comfy-root", envvar="TRELLIS_BOX_COMFY_ROOT",
                          help="The ComfyUI root (the directory with main.py).")


_BYTES_COLUMNS = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn())


def _models(config: Path | None) -> tuple[Model, ...]:
    from trellis_box.weights.catalog import apply_sources, load_catalog

    return apply_sources(load_catalog(), config)


@app.command("list")
def list_(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """The catalog: each model's source, licence, gated flag and target path."""
    models = _models(config)
    data = [{"name": m.name, "title": m.title, "repo": m.pin.repo, "revision": m.pin.revision,
             "catalog_repo": m.repo, "gated": m.gated, "licence": m.licence, "licence_url": m.licence_url,
             "size": m.size, "target": m.target, "placement": m.placement, "files": list(m.files)}
            for m in models]

    def render(out: Console) -> None:
        table = Table(title="weights catalog")
        for col in ("name", "repo", "gated", "licence", "size", "target"):
            table.add_column(col, overflow="fold")
        for m in models:
            files = f"{len(m.files)} file" + ("s" if len(m.files) != 1 else "")
            table.add_row(m.name, f"{m.pin.repo}@{m.pin.revision}", "yes" if m.gated else "no",
                          m.licence, f"~{human_size(m.size)}", f"{m.target}/ ({files})")
        out.print(table)
        out.print("Licences: " + "; ".join(f"{m.title}: {m.licence_url}" for m in models), soft_wrap=True)

    emit(data, as_json=as_json, render=render)


class _RichProgress:
    """Draws fetch progress: the check of files already there, one overall bar, one bar per file in
    flight. Without a terminal (a docker build log) bars do not render, so each step gets a line."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._lines = not progress.console.is_terminal and not progress.disable
        self._overall: TaskID | None = None
        self._check: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}

    def checking(self, files: int, total: int) -> None:
        self._check = self._progress.add_task("checking files already there", total=total)
        self._say(f"checking {files} files already there ({human_size(total)}, sha256)")

    def checked(self, n: int) -> None:
        if self._check is not None:
            self._progress.advance(self._check, n)

    def retrying(self, key: str, reason: str, delay: float) -> None:
        self._progress.console.print(f"{reason}; retrying {key}" + (f" in {delay:g} s" if delay else ""),
                                     markup=False, highlight=False, soft_wrap=True)

    def planned(self, total: int, done: int) -> None:
        if self._check is not None:
            self._progress.remove_task(self._check)
            self._check = None
        self._overall = self._progress.add_task("all weights", total=total, completed=done)
        self._say(f"fetching {human_size(total - done)} ({human_size(done)} already there)")

    def started(self, key: str, size: int, done: int) -> None:
        if key in self._tasks:  # a retry: its bar starts again where the file now stands
            self._progress.remove_task(self._tasks.pop(key))
        self._tasks[key] = self._progress.add_task(key.rsplit("/", 1)[-1], total=size, completed=done)
        self._say(f"downloading {key} ({human_size(size)}" + (f", resuming at {done} bytes)" if done else ")"))

    def advanced(self, key: str, n: int) -> None:
        self._progress.advance(self._tasks[key], n)
        if self._overall is not None:
            self._progress.advance(self._overall, n)

    def finished(self, key: str) -> None:
        self._progress.remove_task(self._tasks.pop(key))
        self._say(f"checked {key}")

    def _say(self, text: str) -> None:
        if self._lines:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def fetch(
    ctx: typer.Context,
    comfy_root: Path = RootOption,
    from_dir: Path | None = typer.Option(None, "--from", help="Air-gapped source: DIR/<repo_id>/<files>.",
                                         file_okay=False),
    token_file: Path | None = TokenFileOption,
    config: Path | None = ConfigOption,
    lock_path: Path | None = LockOption,
    workers: int = typer.Option(4, "--workers", min=1, max=32, help="Parallel downloads."),
    as_json: bool = JsonOption,
) -> None:
    """Put every weight at its exact path under the ComfyUI root: checked, resumable, atomic."""
    from trellis_box.weights.fetch import fetch as run
    from trellis_box.weights.fetch import source_for
    from trellis_box.weights.lock import package_lock_path

    try:
        with errors_in_flags(ctx):
            models = _models(config)
            source = source_for(from_dir, token_file)
            with Progress(*_BYTES_COLUMNS, console=err, disable=as_json, transient=True) as progress:
                report = run(models, comfy_root, source, lock_path=lock_path,
                             progress=_RichProgress(progress), workers=workers)
    except KeyboardInterrupt:
        # typer turns Ctrl-C into a silent exit 130: say what was kept and how to go on.
        err.print("interrupted: files already downloaded are kept (partial ones in models/.trellis-box/staging); "
                  "run the same command again to resume", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None

    def render(out: Console) -> None:
        table = Table(title=f"weights under {report.root}")
        for col in ("model", "source", "commit", "downloaded", "already there", "target"):
            table.add_column(col, overflow="fold")
        for m in report.models:
            table.add_row(m.name, m.repo, (m.commit or "local")[:12], str(m.downloaded), str(m.reused),
                          str(m.target))
        out.print(table)
        out.print(f"resolved lock baked into the tree: {report.baked_lock}", soft_wrap=True)
        if report.lock_written:
            out.print(f"resolved lock written: {report.lock_written} (commit it to pin these weights)",
                      soft_wrap=True)
        elif lock_path is None and not package_lock_path().is_file():
            out.print("to pin these weights, commit that file as src/trellis_box/data/weights.lock.json "
                      "(or keep it and pass --lock FILE)", soft_wrap=True)
        for note in report.notes:
            out.print(f"note: {note}", soft_wrap=True)

    emit(report.to_dict(), as_json=as_json, render=render)


@app.command("lock")
def lock_(
    ctx: typer.Context,
    token_file: Path | None = TokenFileOption,
    config: Path | None = ConfigOption,
    lock: Path = LockOutOption,
    as_json: bool = JsonOption,
) -> None:
    """Resolve each model's revision to a commit and record every file's size and sha256."""
    from trellis_box.weights.hub import Hub, find_token, lock_models
    from trellis_box.weights.lock import lock_digest
    from trellis_box.weights.lock import write as write_lock

    path = lock
    with errors_in_flags(ctx), err.status("resolving") as status:
        resolved = lock_models(_models(config), Hub(find_token(token_file)),
                               on_file=lambda key: status.update(f"resolving {key}"))
    write_lock(path, resolved)
    data = {"lock": str(path), "digest": lock_digest(path),
            "models": {name: {"repo": m.repo, "commit": m.commit, "files": len(m.files)}
                       for name, m in resolved.models.items()}}

    def render(out: Console) -> None:
        for name, m in resolved.models.items():
            out.print(f"{name}: {m.repo}@{m.commit} ({len(m.files)} files)", soft_wrap=True)
        out.print(f"wrote {path} ({data['digest']})", soft_wrap=True)

    emit(data, as_json=as_json, render=render)


@app.command()
def verify(
    ctx: typer.Context,
    comfy_root: Path = RootOption,
    full: bool = typer.Option(False, "--full", help="Also check every sha256 against the lock."),
    lock_path: Path | None = VerifyLockOption,
    allow_stand_in: bool = typer.Option(
        False, "--allow-stand-in",
        help="Accept the GPU harness's random-weight stand-ins (for measurement only; still reported)."),
    as_json: bool = JsonOption,
) -> None:
    """Offline: is every weight present (and intact, with --full)? Non-zero exit if not."""
    from trellis_box.weights.standin import LABEL
    from trellis_box.weights.verify import verify as run

    with errors_in_flags(ctx), Progress(*_BYTES_COLUMNS, console=err, disable=as_json,
                                        transient=True) as progress:

        def hashing(total: int) -> Callable[[int], None]:
            task = progress.add_task("hashing against the lock", total=total)
            if not err.is_terminal and not as_json:
                err.print(f"hashing {human_size(total)} against the lock", markup=False, highlight=False)
            return lambda n: progress.advance(task, n)

        report = run(comfy_root, full=full, lock_path=lock_path, on_hashing=hashing,
                     allow_stand_in=allow_stand_in)

    def render(out: Console) -> None:
        if report.ok:
            out.print(f"ok: {report.summary()}", soft_wrap=True, markup=False, highlight=False)
            return
        table = Table(title=f"{len(report.problems)} problem(s) in {report.files} files")
        for col in ("problem", "path", "detail"):
            table.add_column(col, overflow="fold")
        for p in report.problems:
            table.add_row(p.kind, str(p.path), p.detail)
        out.print(table)

    emit(report.to_dict(), as_json=as_json, render=render)
    if not report.ok:
        if report.weights_mode == "stand-in" and all(p.kind == "stand-in" for p in report.problems):
            err.print(f"error: weights under {report.root} are {LABEL}, not the real models\n"
                      f"  fix: fetch the real weights and delete {report.problems[0].path}; for measurement "
                      "only, pass --allow-stand-in", soft_wrap=True, highlight=False, markup=False)
            raise typer.Exit(EXIT_ERROR)
        err.print(f"error: weights under {report.root} failed verification\n"
                  f"  fix: run `{report.repair_command()}` (it resumes and replaces damaged files), "
                  "then verify again", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(EXIT_ERROR)

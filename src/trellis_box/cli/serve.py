"""`trellis-box serve` (the container's entrypoint) and `trellis-box doctor`."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trellis_box.cli._flags import data_in_flags, errors_in_flags, flags_of, in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.serve import settings as settings_mod
from trellis_box.serve.doctor import doctor_steps
from trellis_box.serve.preflight import StepResult
from trellis_box.serve.preflight import run as run_checks
from trellis_box.serve.supervise import Server


def _log(event: str, **fields: Any) -> None:
    """One JSON line per event on stderr: what `docker logs` and log shippers read."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    record = {"ts": ts, "logger": "trellis-box", "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def _settings(comfy_root: Path | None, **overrides: Any) -> settings_mod.ServeSettings:
    env = dict(os.environ)
    if comfy_root is not None:
        # As if set in the environment: output and input then follow it unless set on their own.
        env["TRELLIS_BOX_COMFY_ROOT"] = str(comfy_root)
    loaded = settings_mod.load(env)
    return dataclasses.replace(loaded, **{k: v for k, v in overrides.items() if v is not None})


app = typer.Typer()


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Preflight, start ComfyUI, warm up, mark ready (the container's entrypoint). "
         "Arguments after -- go to ComfyUI.",
)
def serve_command(
    ctx: typer.Context,
    comfy_root: Path = typer.Option(None, "--comfy-root", help="ComfyUI root [TRELLIS_BOX_COMFY_ROOT]."),
    listen: str = typer.Option(None, "--listen", help="Address ComfyUI listens on [TRELLIS_BOX_LISTEN]."),
    port: int = typer.Option(None, "--port", help="ComfyUI's port [TRELLIS_BOX_PORT]."),
    state: Path = typer.Option(None, "--state", help="State file [TRELLIS_BOX_STATE]."),
    no_warmup: bool = typer.Option(False, "--no-warmup",
                                   help="Ready without a warm-up job [TRELLIS_BOX_WARMUP=0]."),
) -> int:
    # The library names the setting `warmup`; the option that sets it is --no-warmup.
    flags = flags_of(ctx)
    flags["warmup"] = flags["no_warmup"]

    def log(event: str, **fields: Any) -> None:
        _log(event, **data_in_flags(fields, flags))

    with errors_in_flags(ctx, warmup=flags["no_warmup"]):
        settings = _settings(comfy_root=comfy_root, listen=listen, port=port, state_path=state,
                             warmup=False if no_warmup else None)
        if ctx.args:
            settings = dataclasses.replace(settings, comfy_args=settings.comfy_args + tuple(ctx.args))
        return Server(settings, log).run()


@app.command("doctor", help="Check this machine for the image: GPU, driver, CUDA arch, weights, "
                            "node imports, and with --server a test job.")
def doctor_command(
    ctx: typer.Context,
    comfy_root: Path = typer.Option(None, "--comfy-root", help="ComfyUI root [TRELLIS_BOX_COMFY_ROOT]."),
    server: str = typer.Option(None, "--server", help="Run a test job against this ComfyUI, "
                                                      "e.g. http://127.0.0.1:8188."),
    job_timeout: float = typer.Option(900.0, "--job-timeout", help="Seconds the test job may run."),
    as_json: bool = JsonOption,
) -> int:
    settings = _settings(comfy_root=comfy_root)
    steps = doctor_steps(server, job_timeout=job_timeout)

    def progress(result: StepResult) -> None:
        if not as_json:
            err.print(styled((f"{result.name}: {_status(result)}", "dim")), highlight=False)

    _, results = run_checks(settings, steps, fail_fast=False, on_step=progress)
    flags = flags_of(ctx)
    results = [dataclasses.replace(r, detail=data_in_flags(r.detail, flags),
                                   error=in_flags(r.error, flags) if r.error else None) for r in results]
    ok = all(r.ok for r in results)
    emit({"ok": ok, "checks": [r.as_dict() for r in results]}, as_json=as_json,
         render=lambda console: _render(console, results, ok))
    return 0 if ok else 1


def _status(result: StepResult) -> str:
    return "skipped" if result.ok is None else "ok" if result.ok else "FAILED"


def _render(console: Console, results: list[StepResult], ok: bool) -> None:
    table = Table(title="trellis-box doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("detail", overflow="fold")
    for r in results:
        style = {"ok": "green", "FAILED": "bold red", "skipped": "yellow"}[_status(r)]
        table.add_row(r.name, Text(_status(r), style=style), f"{r.seconds:.2f}", r.detail)
    console.print(table)
    for r in results:
        if r.error is not None:
            console.print(styled((f"{r.name}:", "bold red"), f" {r.error}"), highlight=False,
                          soft_wrap=True)
    console.print(styled(("all checks passed", "green") if ok else ("some checks failed", "bold red")))

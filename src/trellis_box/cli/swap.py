"""`trellis-box swap NAME` and `trellis-box status`: one GPU container at a time."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from trellis_box.cli._output import JsonOption, emit, err
from trellis_box.swap.config import GpuConfig, config_path, load_gpu_config
from trellis_box.swap.docker_ops import DockerOps
from trellis_box.swap.execute import SwapResult, swap
from trellis_box.swap.status import GpuStatus, gpu_status

SWAP_EXAMPLES = """\
Examples:

  trellis-box swap comfyui-trellis2

  trellis-box swap comfyui-wan --drain-timeout 600 --lock-timeout 3600

  trellis-box swap comfyui-wan --force     # interrupt and delete the queued jobs (listed)

The containers come from --config, else $TRELLIS_BOX_GPU_CONFIG, else
/etc/trellis-box/gpu-containers.toml (see examples/gpu-containers.toml).
"""

ConfigOption = typer.Option(None, "--config", help="The GPU containers file (TOML).")


def _config(path: Path | None, lock_file: Path | None = None) -> GpuConfig:
    config = load_gpu_config(config_path(path))
    if lock_file is not None:
        config = replace(config, swap=replace(config.swap, lock_file=lock_file))
    return config


def swap_command(
    name: str = typer.Argument(..., help="Which entry (containers.NAME) of the GPU containers file to run."),
    config: Path | None = ConfigOption,
    force: bool = typer.Option(
        False, "--force",
        help="Interrupt the running job and delete the pending ones instead of waiting for "
             "them; their prompt ids are reported."),
    drain_timeout: float | None = typer.Option(
        None, "--drain-timeout", min=0.0,
        help="Seconds to wait for the running container's queue to empty "
             "(default: swap.drain_timeout)."),
    lock_timeout: float | None = typer.Option(
        None, "--lock-timeout", min=0.0,
        help="Seconds to wait for another swap to finish (default: swap.lock_timeout)."),
    lock_file: Path | None = typer.Option(None, "--lock-file",
                                          help="The swap lock file (default: swap.lock_file)."),
    as_json: bool = JsonOption,
) -> None:
    """Run NAME alone on the GPU: drain and stop the running container, start NAME, wait until
    it is ready; if it fails, start the previous one again and exit non-zero."""
    gpu_config = _config(config, lock_file)
    with _terminate_as_interrupt():
        result = swap(gpu_config, name, ops=DockerOps.from_env(), force=force,
                      lock_timeout=lock_timeout, drain_timeout=drain_timeout,
                      on_event=lambda text: err.print(f"[dim]…[/] {text}", highlight=False))
    emit(asdict(result), as_json=as_json, render=lambda console: _render_swap(console, result))


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemd, timeout, docker stop of a runner) rolls a swap back like Ctrl-C does,
    instead of ending it between stopping one container and starting the other."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _render_swap(console: Console, result: SwapResult) -> None:
    for container, prompts in result.cut_off.items():
        console.print(f"[yellow]cut off in {container}:[/] {', '.join(prompts)}", highlight=False)
    if result.noop:
        console.print(f"{result.target} is already running and ready: nothing to do",
                      highlight=False)
    else:
        console.print(f"[green]{result.target} is running and ready[/] "
                      f"({result.container_name}, {result.seconds:.1f} s)", highlight=False)


def status_command(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Which GPU container runs, whether it is ready, its queue, uptime and GPU memory."""
    report = gpu_status(_config(config), DockerOps.from_env())
    emit(_status_data(report), as_json=as_json, render=lambda c: _render_status(c, report))


def _status_data(report: GpuStatus) -> dict[str, Any]:
    data = asdict(report)
    data["holder"] = report.holders[0] if len(report.holders) == 1 else None
    return data


def _render_status(console: Console, report: GpuStatus) -> None:
    table = Table(title="GPU containers")
    for column in ("name", "container", "state", "ready", "queue", "uptime", "image"):
        table.add_column(column, overflow="fold")
    for row in report.containers:
        ready = "" if row.ready is None else (
            "[green]ready[/]" if row.ready else f"[yellow]not ready[/] ({row.ready_detail})")
        queue = (row.queue_error or "") if row.queue_running is None else (
            f"{row.queue_running} running, {row.queue_pending} pending")
        state = row.state + (" [yellow](config changed)[/]" if row.config_changed else "")
        table.add_row(row.name or "-", row.container_name, state, ready, queue,
                      _duration(row.uptime_seconds), row.image or "")
    console.print(table)
    if not report.holders:
        console.print("GPU: no container running", highlight=False)
    elif len(report.holders) == 1:
        console.print(f"GPU held by [bold]{report.holders[0]}[/]", highlight=False)
    else:
        console.print(f"[red]GPU shared by {', '.join(report.holders)}[/]: run trellis-box swap "
                      "NAME to keep one", highlight=False)
    for gpu in report.gpus or []:
        console.print(f"GPU {gpu.index} {gpu.name}: {gpu.used_mib:,} MiB of {gpu.total_mib:,} MiB "
                      "used", highlight=False)
    if report.gpu_note:
        console.print(f"[dim]{report.gpu_note}[/]", highlight=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    # One line for the command list of `trellis-box --help` (the docstring wraps mid-sentence).
    app.command("swap", epilog=SWAP_EXAMPLES,
                short_help="Run NAME alone on the GPU: drain, stop, start, wait until ready; "
                           "roll back on failure.")(swap_command)
    app.command("status")(status_command)

"""`trellis-box status`: the GPU containers of this host, or one ComfyUI server by URL."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, styled
from trellis_box.cli.swap import COMMANDS, ConfigOption, load_config
from trellis_box.swap.docker_ops import DockerOps
from trellis_box.swap.status import GpuStatus, ServerStatus, gpu_status, server_status

app = typer.Typer()


@app.command("status")
def status_command(
    ctx: typer.Context,
    config: Path | None = ConfigOption,
    url: str | None = typer.Option(
        None, "--url", metavar="URL",
        help="Ask this ComfyUI (any, e.g. http://127.0.0.1:8188) instead: reachable, version, "
             "queue, devices and memory; needs neither Docker nor the GPU containers file."),
    as_json: bool = JsonOption,
) -> None:
    """Which GPU container runs, whether it is ready, its queue, uptime and GPU memory."""
    with errors_in_flags(ctx, **COMMANDS):
        if url is not None:
            server = server_status(url)
            emit(asdict(server), as_json=as_json, render=lambda c: _render_server(c, server))
            if server.stats is None:
                raise typer.Exit(1)
            return
        report = gpu_status(load_config(config), DockerOps.from_env())
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
        ready = styled() if row.ready is None else (
            styled(("ready", "green")) if row.ready
            else styled(("not ready", "yellow"), f" ({row.ready_detail})"))
        queue = (row.queue_error or "") if row.queue_running is None else (
            f"{row.queue_running} running, {row.queue_pending} pending")
        state = styled(row.state, (" (config changed)", "yellow") if row.config_changed else "")
        table.add_row(row.name or "-", row.container_name, state, ready, queue,
                      _duration(row.uptime_seconds), row.image or "")
    console.print(table)
    if not report.holders:
        console.print("GPU: no container running", highlight=False)
    elif len(report.holders) == 1:
        console.print(styled("GPU held by ", (report.holders[0], "bold")), highlight=False)
    else:
        console.print(styled((f"GPU shared by {', '.join(report.holders)}", "red"),
                             ": run trellis-box swap NAME to keep one"), highlight=False)
    for gpu in report.gpus or []:
        console.print(f"GPU {gpu.index} {gpu.name}: {gpu.used_mib:,} MiB of {gpu.total_mib:,} MiB "
                      "used", highlight=False)
    if report.gpu_note:
        console.print(styled((report.gpu_note, "dim")), highlight=False)


def _render_server(console: Console, server: ServerStatus) -> None:
    if server.stats is None:
        what = "answers, but not as ComfyUI" if server.reachable else "not reachable"
        console.print(f"{server.url}: {what}\n  {server.error}", highlight=False, markup=False)
        return
    stats = server.stats
    console.print(f"{server.url}: ComfyUI {stats.comfyui_version or '(version not reported)'}, "
                  f"queue {stats.queue_running} running, {stats.queue_pending} pending",
                  highlight=False, markup=False)
    if stats.ram_total:
        console.print(f"RAM: {_gib(stats.ram_total - (stats.ram_free or 0))} of "
                      f"{_gib(stats.ram_total)} used", highlight=False, markup=False)
    for device in stats.devices:
        console.print(f"{device.type} {device.name}: "
                      f"{_gib(device.vram_total - device.vram_free)} of "
                      f"{_gib(device.vram_total)} used", highlight=False, markup=False)


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"

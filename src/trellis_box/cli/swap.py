"""`trellis-box swap NAME` and `trellis-box swap init-config [PATH]`: one GPU container at a time."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.swap.config import (
    DEFAULT_CONFIG,
    GpuConfig,
    config_path,
    load_gpu_config,
    with_settings,
    write_template,
)
from trellis_box.swap.docker_ops import DockerOps
from trellis_box.swap.execute import SwapResult, swap

EXAMPLES = """\
Examples:

  trellis-box swap init-config             # write the file, then edit it

  trellis-box swap comfyui-trellis2

  trellis-box swap comfyui-wan --drain-timeout 600 --lock-timeout 3600

  trellis-box swap comfyui-wan --force     # interrupt and delete the queued jobs (listed)

The containers come from --config, else $TRELLIS_BOX_GPU_CONFIG, else
/etc/trellis-box/gpu-containers.toml (`swap init-config` writes a documented template).
"""

# Commands that library fix texts name, as a user types them.
COMMANDS = {"write_template": "trellis-box swap init-config PATH"}

ConfigOption = typer.Option(None, "--config", help="The GPU containers file (TOML).")


class _RunByDefault(TyperGroup):
    """``swap NAME`` is ``swap run NAME``: the group's other commands are found by name first."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="swap", cls=_RunByDefault, no_args_is_help=True, epilog=EXAMPLES,
    help="Run NAME alone on the GPU (`swap NAME` is `swap run NAME`), or write the GPU "
         "containers file (`swap init-config`).",
    # One line for the command list of `trellis-box --help` (the help wraps mid-sentence).
    short_help="Run NAME alone on the GPU: drain, stop, start, wait until ready and settled; "
               "roll back on failure.")


def load_config(path: Path | None, **settings: Any) -> GpuConfig:
    """The file ``--config`` names (or the default one), with ``[swap]`` settings replaced."""
    return with_settings(load_gpu_config(config_path(path)), **settings)


@app.command("run", epilog=EXAMPLES,
             short_help="Run NAME alone on the GPU; roll back to the previous one on failure.")
def swap_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Which entry (containers.NAME) of the GPU containers file to run."),
    config: Path | None = ConfigOption,
    force: bool = typer.Option(
        False, "--force",
        help="Interrupt the running job and delete the pending ones instead of waiting for "
             "them; their prompt ids are reported."),
    drain_timeout: float | None = typer.Option(
        None, "--drain-timeout", min=0.0, metavar="SECONDS",
        help="Seconds to wait for the running container's queue to empty "
             "(default: swap.drain_timeout)."),
    lock_timeout: float | None = typer.Option(
        None, "--lock-timeout", min=0.0, metavar="SECONDS",
        help="Seconds to wait for another swap to finish (default: swap.lock_timeout)."),
    lock_file: Path | None = typer.Option(None, "--lock-file",
                                          help="The swap lock file (default: swap.lock_file)."),
    settle_seconds: float | None = typer.Option(
        None, "--settle-seconds", min=0.0, metavar="SECONDS",
        help="Seconds NAME must stay running and ready once it is, or the swap rolls back; "
             "0 reports success at the first ready answer (default: its settle_seconds, 10)."),
    as_json: bool = JsonOption,
) -> None:
    """Run NAME alone on the GPU: drain and stop the running container, start NAME, wait until
    it is ready and stays so; if it fails, start the previous one again and exit non-zero."""
    with errors_in_flags(ctx, **COMMANDS):
        gpu_config = load_config(config, lock_file=lock_file)
        with _terminate_as_interrupt():
            result = swap(gpu_config, name, ops=DockerOps.from_env(), force=force,
                          lock_timeout=lock_timeout, drain_timeout=drain_timeout,
                          settle_seconds=settle_seconds,
                          on_event=lambda text: err.print(styled(("…", "dim"), f" {text}"),
                                                         highlight=False))
    emit(asdict(result), as_json=as_json, render=lambda console: _render_swap(console, result))


@app.command("init-config", short_help="Write the documented template of the GPU containers "
                                       "file (default: /etc/trellis-box/gpu-containers.toml).")
def init_config_command(
    ctx: typer.Context,
    path: Path = typer.Argument(DEFAULT_CONFIG, help="Where to write it (a directory gets "
                                                     "gpu-containers.toml)."),
    overwrite: bool = typer.Option(False, "--force", help="Replace a file that exists."),
    as_json: bool = JsonOption,
) -> None:
    """Write the documented template of the GPU containers file; edit its images, ports and
    volumes, then `trellis-box status` and `trellis-box swap NAME` read it."""
    with errors_in_flags(ctx):
        written = write_template(path, overwrite=overwrite)
    emit({"written": str(written)}, as_json=as_json,
         render=lambda console: console.print(f"wrote {written}: edit it, then run "
                                              "trellis-box status", highlight=False, markup=False))


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
        console.print(styled((f"cut off in {container}:", "yellow"), f" {', '.join(prompts)}"),
                      highlight=False)
    if result.noop:
        console.print(f"{result.target} is already running and ready: nothing to do",
                      highlight=False)
    else:
        console.print(styled((f"{result.target} is running and ready", "green"),
                             f" ({result.container_name}, {result.seconds:.1f} s)"), highlight=False)

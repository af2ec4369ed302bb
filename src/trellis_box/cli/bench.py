"""`trellis-box bench`: the pipeline timed per stage on bundled photos, cold and warm."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trellis_box.bench.runner import LOW_VRAM_CHOICES, STAND_IN_LABEL, BenchOptions, BenchRun, JobRecord, run_bench
from trellis_box.bench.summary import as_data, compare_with_upstream, rows
from trellis_box.cli._errors import EXIT_OK, EXIT_PARTIAL
from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.comfyui import workflow
from trellis_box.comfyui.explain import write_failed

EXAMPLES = """\
Examples:

  trellis-box bench --server http://127.0.0.1:8188

  trellis-box bench --resolutions 1024 --images 5 --low-vram off --out bench-h200.json

The first job of each resolution is reported apart (cold); the other rows are medians of the
warm jobs. GPU busy share and device memory come from nvidia-smi on this machine: run bench
where the server runs. Jobs write their GLBs to the server's output/trellis-box-bench/.
"""

GB = 1e9
MB = 1e6


app = typer.Typer()


@app.command("bench", epilog=EXAMPLES)
def bench(
    ctx: typer.Context,
    server: str = typer.Option("http://127.0.0.1:8188", "--server", envvar="TRELLIS_BOX_SERVER",
                               help="ComfyUI base URL."),
    resolutions: str | None = typer.Option(None, "--resolutions",
                                           help=f"Comma-separated, from {', '.join(workflow.RESOLUTIONS)} "
                                                "(default: every one the server allows)."),
    images: int = typer.Option(3, "--images", min=1,
                               help="Jobs per resolution (the first is cold)."),
    preset: str = typer.Option(workflow.DEFAULT_PRESET, "--preset", metavar="|".join(workflow.PRESETS),
                               help="Output size and detail, as `generate --preset`."),
    low_vram: str = typer.Option("profile", "--low-vram",
                                 help=f"{', '.join(LOW_VRAM_CHOICES)}: profile lets the server's "
                                      "GPU profile decide."),
    seed: int | None = typer.Option(None, "--seed", help="First seed (default: random per run)."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1.0, help="Seconds one job may run."),
    gpu_index: int = typer.Option(0, "--gpu-index", help="nvidia-smi index of the server's GPU."),
    out: Path | None = typer.Option(None, "--out", help="Write the results (JSON) to this file."),
    as_json: bool = JsonOption,
) -> int:
    """Time the image-to-GLB pipeline per stage on bundled photos, cold and warm, per resolution."""
    asked = tuple(r.strip() for r in resolutions.split(",") if r.strip()) if resolutions else None
    with errors_in_flags(ctx):
        options = BenchOptions(resolutions=asked,
                               images=images, low_vram=low_vram, seed=seed, job_timeout=timeout,
                               gpu_index=gpu_index, workflow=workflow.WorkflowOptions(preset=preset))
        on_job = None if as_json else _progress_line
        run = asyncio.run(run_bench(server, options, on_job=on_job))
    data = as_data(run)
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        except OSError as exc:
            raise write_failed(out, exc) from exc
    emit(data, as_json=as_json, render=lambda console: render(console, run, out))
    return EXIT_PARTIAL if run.failed else EXIT_OK


def _progress_line(job: JobRecord) -> None:
    said = (f"{job.server_seconds:.1f} s on the server" if job.status == "ok" and job.server_seconds
            else (job.error or {}).get("message", job.status))
    err.print(f"{job.resolution} {job.phase} #{job.index} ({job.image}): {job.status}, "
              f"{said}",
              highlight=False)


def _figure(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if value is None else f"{value / scale:,.{digits}f}"


def _count(value: float | None) -> str:
    if value is None:
        return "–"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.{2 if suffix == 'M' else 0}f}{suffix}"
    return f"{value:.0f}"


def render(console: Console, run: BenchRun, out: Path | None) -> None:
    env = run.environment
    stand_in = run.stand_in_weights
    if stand_in:
        console.print(styled((f" {STAND_IN_LABEL.upper()} ", "bold black on yellow"),
                             " random-weight checkpoints: timings show the code path, not a real "
                             "object's"), highlight=False)
    title = f"trellis-box bench — {env.get('gpu_name') or 'unknown GPU'}" + \
            (f" ({STAND_IN_LABEL})" if stand_in else "")
    # Two-line headers, collapsed padding and a light box keep the table whole on an 80-column
    # terminal; the README says what each column means.
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("res", "job", "server\ns", "gen\ns", "post\ns", "export\ns", "other\ns",
                   "ovh\ns", "peak\nGB", "GLB\nMB", "faces"):
        table.add_column(column, justify="left" if column in ("res", "job") else "right",
                         no_wrap=True)
    for row in rows(run):
        f = row.figures
        peak = f["torch_peak_reserved_bytes"] or f["device_peak_used_bytes"]
        job = styled(row.phase if row.phase == "cold" else f"warm×{row.jobs}",
                     (f" ({row.failed} failed)", "red") if row.failed else "")
        table.add_row(row.resolution, job, _figure(f["server_seconds"]),
                      _figure(f["generator_seconds"]), _figure(f["post_process_seconds"]),
                      _figure(f["export_seconds"]), _figure(f["other_seconds"]),
                      _figure(f["client_overhead_seconds"], digits=2), _figure(peak, GB),
                      _figure(f["glb_bytes"], MB), _count(f["faces"]))
    console.print(table)
    for line in _footer(run):
        console.print(line, highlight=False)
    if out is not None:
        console.print(f"results: {out}", highlight=False)


def _footer(run: BenchRun) -> list[str | Text]:
    env = run.environment
    busy = run.busy
    lines: list[str | Text] = [
        "GPU busy share over the run: " + (f"{busy['busy_share']:.0%}" if busy.get("measured")
                                           else str(busy.get("reason"))),
        "CPU cores busy over the run: " + (f"{busy['cpu_cores_busy']:g} of {busy['cpu_cores']}"
                                           if busy.get("cpu_cores_busy") is not None
                                           else "not measured"),
        f"weights: {STAND_IN_LABEL if run.stand_in_weights else env.get('weights_mode')}; "
        f"preset {env['workflow']['preset']}; "
        f"low_vram {'on' if env['low_vram']['used'] else 'off'} ({env['low_vram']['requested']})",
        f"torch {env.get('torch_version')}, CUDA {env.get('cuda_version') or '?'}, "
        f"driver {env.get('driver_version_nvidia_smi') or '?'}; "
        f"trellis-box {env.get('trellis_box_version')}",
        "peak GB: torch's peak reserved memory of the job (nvidia-smi's device peak where torch's "
        f"is not reported: {env.get('torch_memory')})",
    ]
    for c in compare_with_upstream(run):
        ours = c["warm_generator_seconds"]
        lines.append(f"{c['resolution']}: warm generation {_figure(ours)} s vs upstream H100 "
                     f"{c['upstream_h100_generation_seconds']:g} s"
                     + (f" (×{c['ratio']:g})" if c["ratio"] is not None else ""))
    for job in run.failed:
        said = (job.error or {}).get("message") or job.status
        lines.append(styled((job.status, "red"),
                            f" {job.resolution} #{job.index} ({job.image}): {said}"))
    return lines

"""`trellis-box batch`: AWS Batch array jobs over S3 (submit, status, report) and the child."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from trellis_box.cli._errors import EXIT_OK, EXIT_PARTIAL
from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.cli.report import render_report, thumbnail_progress
from trellis_box.cli.serve import _log, _settings
from trellis_box.cloud import awsbatch
from trellis_box.cloud.child import run_child
from trellis_box.comfyui.workflow import DEFAULT_PRESET, PRESETS, RESOLUTIONS, WorkflowOptions
from trellis_box.errors import TrellisBoxError

EXAMPLES = """\
Examples:

  trellis-box batch submit s3://photos/in/ s3://photos/glb/ --job-queue trellis-box \\
      --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-trellis2:0.1.0 --per-shard 200

  trellis-box batch status JOB_ID

  trellis-box batch report JOB_ID --json > report.json   # and OUT/report.html

  trellis-box batch report JOB_ID --no-html              # the table only
"""

_DEFAULTS = WorkflowOptions()

app = typer.Typer(name="batch", help="Many machines: AWS Batch array jobs over S3 inputs and outputs.",
                  no_args_is_help=True)


@app.command("submit", epilog=EXAMPLES)
def submit(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(..., help="s3://bucket/prefix (its images) or s3://bucket/key."),
    out: str = typer.Argument(..., help="s3://bucket/prefix for <name>.glb, .cutout.png, .json."),
    job_queue: str = typer.Option(..., "--job-queue", help="AWS Batch job queue (deploy/aws-batch.yaml)."),
    image: str = typer.Option(..., "--image", help="The published image (trellis-box publish)."),
    shards: int | None = typer.Option(None, "--shards", help="Split the inputs into N children."),
    per_shard: int | None = typer.Option(None, "--per-shard", help="About K inputs per child."),
    instance_type: str = typer.Option("g6e.xlarge", "--instance-type",
                                      help="The compute environment's GPU instance type."),
    job_role_arn: str | None = typer.Option(None, "--job-role-arn",
                                            help="Role the children use for S3 (template output)."),
    log_group: str | None = typer.Option(None, "--log-group", help="CloudWatch log group."),
    job_name: str | None = typer.Option(None, "--job-name", help="Default: from the manifest's hash."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", metavar="|".join(PRESETS),
                               help="Output size and detail, as generate's --preset."),
    resolution: str = typer.Option(_DEFAULTS.resolution, "--resolution",
                                   help=f"One of {', '.join(RESOLUTIONS)}."),
    auto_resolution: bool = typer.Option(False, "--auto-resolution",
                                         help="Step down to what the GPU holds (also after OOM)."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Seed of every input."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1.0,
                                  help="Seconds one image may run on the server."),
    as_json: bool = JsonOption,
) -> int:
    """Submit one AWS Batch array job: each child generates its shard from S3 to S3."""
    with errors_in_flags(ctx):
        request = awsbatch.SubmitRequest(
            inputs=inputs, out=out, job_queue=job_queue, image=image, shards=shards,
            per_shard=per_shard, instance_type=instance_type,
            workflow=WorkflowOptions(preset=preset, resolution=resolution, seed=seed),
            auto_resolution=auto_resolution, job_timeout=timeout, job_role_arn=job_role_arn,
            log_group=log_group, job_name=job_name)
        done = awsbatch.submit(request)
    emit(asdict(done), as_json=as_json, render=lambda console: console.print(styled(
        "submitted ", (done.job_name, "bold"), f" ({done.job_id}): {done.inputs} inputs in {done.shards} "
        f"shard(s), job definition {done.job_definition}"
        f"{' (registered)' if done.registered_definition else ' (reused)'}\n"
        f"follow it: trellis-box batch status {done.job_id}"), highlight=False))
    return EXIT_OK


def _status_data(s: awsbatch.JobStatus) -> dict[str, Any]:
    return {"job_id": s.job_id, "job_name": s.job_name, "status": s.status, "reason": s.reason,
            "children": s.children, "inputs": s.counts, "manifest": s.manifest, "out": s.out}


def _render_status(console: Console, s: awsbatch.JobStatus) -> None:
    console.print(styled((s.job_name, "bold"), f" ({s.job_id}): {s.status}"
                         f"{f' ({s.reason})' if s.reason else ''}"), highlight=False)
    table = Table(title="children")
    for state in s.children:
        table.add_column(state.lower(), justify="right")
    table.add_row(*(str(n) for n in s.children.values()))
    console.print(table)
    c = s.counts
    console.print(f"inputs: {c['done']} done, {c['failed']} failed, {c['pending']} pending "
                  f"(reports in {s.out})", highlight=False)


@app.command("status")
def status(job_id: str = typer.Argument(..., help="The job id submit printed."),
           as_json: bool = JsonOption) -> int:
    """Children by state, and inputs done/failed/pending from the reports in the output prefix."""
    s = awsbatch.status(job_id)
    emit(_status_data(s), as_json=as_json, render=lambda console: _render_status(console, s))
    return EXIT_OK


@app.command("report", epilog=EXAMPLES)
def report(job_id: str = typer.Argument(..., help="The job id submit printed."),
           html: bool = typer.Option(True, "--html/--no-html",
                                     help="Build the job's report.html at its output prefix "
                                          "(as `trellis-box report OUT`)."),
           thumbnails: bool = typer.Option(True, "--thumbnails/--no-thumbnails",
                                           help="Render missing thumbnails (needs the thumbnails "
                                                "extra: f3d)."),
           workers: int | None = typer.Option(None, "--workers", min=1,
                                              help="Processes rendering thumbnails (default: one a core)."),
           as_json: bool = JsonOption) -> int:
    """Every input's report (from the output prefix) and the job's report.html beside them;
    exit 3 when any input failed."""
    r = awsbatch.report(job_id)
    page: awsbatch.JobPage | None = None
    failure: TrellisBoxError | None = None
    if html:
        try:
            with thumbnail_progress(quiet=as_json) as advance:
                page = awsbatch.write_page(r, thumbnails=thumbnails, workers=workers,
                                           on_thumbnail=advance)
        except TrellisBoxError as exc:  # the reports still stand (a reader may not write there)
            failure = exc
            err.print(styled(("warning:", "yellow"), f" no report.html: {exc}\n  (--no-html skips it)"),
                      highlight=False)

    def render(console: Console) -> None:
        _render_status(console, r.status)
        table = Table(title="inputs")
        for column in ("input", "status", "faces", "GPU s", "result"):
            table.add_column(column, overflow="fold")
        for name, rep in r.reports.items():
            rep = rep or {}
            stats = rep.get("glb") or {}
            server_ms = (rep.get("timings") or {}).get("server_ms")
            result = ((rep.get("files") or {}).get("glb") or (rep.get("error") or {}).get("message")
                      or "")
            table.add_row(name, rep.get("status") or "pending",
                          f"{stats['faces']:,}" if stats.get("faces") else "",
                          f"{server_ms / 1000:.1f}" if server_ms else "", str(result))
        console.print(table)
        if page is not None:
            if page.result is not None:
                render_report(console, r.status.out, page.result)
            if page.note:
                console.print(page.note, highlight=False)

    emit({**_status_data(r.status), "reports": r.reports, "html": _page_data(page, failure)},
         as_json=as_json, render=render)
    return EXIT_PARTIAL if r.status.counts["failed"] else EXIT_OK


def _page_data(page: awsbatch.JobPage | None, failure: TrellisBoxError | None) -> dict[str, Any] | None:
    if failure is not None:
        return {"report": None, "error": failure.to_dict()}
    if page is None:  # --no-html
        return None
    return {**(page.result.as_dict() if page.result else {}), "report": page.url,
            "partial": page.partial, "note": page.note}


@app.command("child")
def child(manifest: str = typer.Argument(..., help="The job's manifest (s3://.../.trellis-box/jobs/*.json).")
          ) -> int:
    """An array child (the job definition's command): serve, then this shard, then exit."""
    # Only this process talks to its ComfyUI: loopback is enough.
    return run_child(manifest, _settings(None, listen="127.0.0.1"), _log)


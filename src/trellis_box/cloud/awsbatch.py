"""``trellis-box batch``: submit one AWS Batch array job over S3 inputs, watch it, gather its reports.

Submit lists the inputs once and writes the job's manifest (:mod:`trellis_box.cloud.shard`) next
to the outputs, registers a job definition for the image unless one with the same content exists
(its name carries a hash of that content), and submits one array job whose child ``i`` runs
``trellis-box batch child MANIFEST`` on shard ``i``. Status and report read the job from Batch and
the per-input reports from the output prefix: S3 is the record of what is done. The job's
``report.html`` is the page ``trellis-box report`` builds over that prefix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from trellis_box.aws_errors import AwsService, aws_call
from trellis_box.batch.files import name_items, output_paths
from trellis_box.batch.sources import remote_images
from trellis_box.cloud.shard import Manifest, manifest_url, read_manifest, shard_count, write_manifest
from trellis_box.comfyui.workflow import WorkflowOptions
from trellis_box.errors import (
    BatchJobMissingError,
    BatchQueueMissingError,
    BatchRequestError,
    UsageError,
)
from trellis_box.gpu import profiles
from trellis_box.report.build import ReportResult, build_report
from trellis_box.storage import is_remote
from trellis_box.storage.s3 import S3Storage, parse_url, s3_client

#: The child's command in the image (ENTRYPOINT ``trellis-box``); Batch fills in the manifest.
CHILD_COMMAND = ["batch", "child", "Ref::manifest"]
#: Attempts per child: a child that broke (spot reclaim, a dead GPU) runs again and resumes.
ATTEMPTS = 3
#: With ``low_vram`` (every GPU below 80 GB) the models wait in host memory between stages: about
#: 18 GB of weights plus ComfyUI itself. Less host memory than this and the child is killed.
LOW_VRAM_HOST_MIB = 24 * 1024
#: What the host keeps for itself (OS, ECS agent, Docker): a job asking for all of an instance's
#: memory would wait in RUNNABLE for ever.
HOST_RESERVE = 0.10
BATCH_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
ENDED = ("SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class Instance:
    vcpus: int
    memory_mib: int
    #: Memory the GPU reports (GiB), below the marketing size: what the profiles are judged by.
    gpu_gib: float
    gpu: str


#: GPU instance types of one GPU that run the image (sm_86/sm_89; not the A100, see README).
INSTANCES = {
    "g6e.xlarge": Instance(4, 32 * 1024, 44.5, "L40S 48 GB"),
    "g6e.2xlarge": Instance(8, 64 * 1024, 44.5, "L40S 48 GB"),
    "g6e.4xlarge": Instance(16, 128 * 1024, 44.5, "L40S 48 GB"),
    "g5.xlarge": Instance(4, 16 * 1024, 22.0, "A10G 24 GB"),
    "g5.2xlarge": Instance(8, 32 * 1024, 22.0, "A10G 24 GB"),
    "g5.4xlarge": Instance(16, 64 * 1024, 22.0, "A10G 24 GB"),
    "g6.xlarge": Instance(4, 16 * 1024, 22.0, "L4 24 GB"),
    "g6.2xlarge": Instance(8, 32 * 1024, 22.0, "L4 24 GB"),
    "g6.4xlarge": Instance(16, 64 * 1024, 22.0, "L4 24 GB"),
}


@dataclass(frozen=True)
class SubmitRequest:
    inputs: list[str]
    out: str
    job_queue: str
    image: str
    shards: int | None = None
    per_shard: int | None = None
    instance_type: str = "g6e.xlarge"
    workflow: WorkflowOptions = WorkflowOptions()
    auto_resolution: bool = False
    job_timeout: float = 3600.0
    job_role_arn: str | None = None
    log_group: str | None = None
    job_name: str | None = None
    definition_prefix: str = "trellis-box"


@dataclass
class Submitted:
    job_id: str
    job_name: str
    job_definition: str
    registered_definition: bool
    shards: int
    inputs: int
    manifest: str


@dataclass
class JobStatus:
    job_id: str
    job_name: str
    status: str
    children: dict[str, int]
    manifest: str
    out: str
    inputs: dict[str, str]  # name -> done | failed | pending
    reason: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {state: sum(v == state for v in self.inputs.values())
                for state in ("done", "failed", "pending")}


@dataclass
class JobReport:
    status: JobStatus
    reports: dict[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass
class JobPage:
    """The job's ``report.html`` at its output prefix."""
    #: ``s3://`` URL of the page; ``None`` while no input has a report (nothing to show).
    url: str | None
    #: Some inputs of the job are not on the page yet (their child has not written them).
    partial: bool
    #: Why the page is partial, or why there is none; shown on the page too.
    note: str | None = None
    result: ReportResult | None = None


BATCH = AwsService(
    "AWS Batch", BatchRequestError,
    permissions="check that these credentials may use AWS Batch in this region (batch:Describe*, "
                "RegisterJobDefinition, SubmitJob, and iam:PassRole on the job role)",
    endpoint="AWS_ENDPOINT_URL_BATCH or AWS_ENDPOINT_URL",
    region="set AWS_REGION or AWS_DEFAULT_REGION (the region of the job queue)")


def batch_client() -> Any:
    with aws_call(BATCH, "use AWS Batch"):
        # A session per use: boto3's default session would keep the first credentials it found.
        return boto3.session.Session().client("batch")


def list_inputs(inputs: list[str]) -> list[str]:
    """Every input object, in listing order (each prefix sorted); refuses local paths (a child
    on another machine cannot read them) and an empty listing."""
    local = [i for i in inputs if not is_remote(i)]
    if local:
        raise UsageError(f"batch inputs must be in S3: {', '.join(local)}",
                         fix="upload them first (aws s3 sync photos/ s3://BUCKET/photos/) and pass "
                             "s3://BUCKET/photos/")
    urls = list(dict.fromkeys(u for given in inputs for u in remote_images(given)))
    if not urls:
        raise UsageError("no images to generate from", detail=f"looked in: {', '.join(inputs)}",
                         fix="put .png/.jpg/.webp files directly under that prefix, or name another")
    return urls


def container_resources(instance_type: str, workflow: WorkflowOptions, *, auto_resolution: bool
                        ) -> list[dict[str, str]]:
    """One GPU, the instance's vCPUs and its memory less the host's share; refuses an instance
    whose GPU cannot hold the resolution or whose memory cannot hold the parked models."""
    instance = INSTANCES.get(instance_type)
    if instance is None:
        raise UsageError(f"unknown instance type {instance_type}",
                         fix=f"use one of {', '.join(INSTANCES)} (the compute environment's type)",
                         instance_type=instance_type)
    profile = profiles.profile_for(int(instance.gpu_gib * profiles.GIB))
    profiles.choose_resolution(workflow.resolution, profile, auto_resolution=auto_resolution)
    memory = int(instance.memory_mib * (1 - HOST_RESERVE))
    if profile.low_vram and memory < LOW_VRAM_HOST_MIB:
        bigger = next(n for n, i in INSTANCES.items()
                      if i.gpu == instance.gpu and i.memory_mib * (1 - HOST_RESERVE) >= LOW_VRAM_HOST_MIB)
        raise UsageError(
            f"{instance_type} has too little memory for a child ({instance.memory_mib // 1024} GiB)",
            detail=f"on its {instance.gpu} the models wait in host memory between stages "
                   f"(low_vram): about {LOW_VRAM_HOST_MIB // 1024} GiB are needed",
            fix=f"use `instance_type` {bigger} (and the same type in the compute environment)",
            instance_type=instance_type)
    return [{"type": "GPU", "value": "1"}, {"type": "VCPU", "value": str(instance.vcpus)},
            {"type": "MEMORY", "value": str(memory)}]


def job_definition(request: SubmitRequest) -> dict[str, Any]:
    """The job definition's body; its name ends in a hash of it, so equal content is reused."""
    container: dict[str, Any] = {
        "image": request.image,
        "command": CHILD_COMMAND,
        "resourceRequirements": container_resources(request.instance_type, request.workflow,
                                                    auto_resolution=request.auto_resolution),
    }
    if request.job_role_arn:
        container["jobRoleArn"] = request.job_role_arn
    if request.log_group:
        container["logConfiguration"] = {"logDriver": "awslogs",
                                         "options": {"awslogs-group": request.log_group}}
    body = {"type": "container", "parameters": {"manifest": ""}, "containerProperties": container,
            "retryStrategy": {"attempts": ATTEMPTS}, "platformCapabilities": ["EC2"]}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return {"jobDefinitionName": f"{request.definition_prefix}-{digest}", **body}


def _check_queue(batch: Any, queue: str) -> None:
    with aws_call(BATCH, f"look up the job queue {queue}"):
        found = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    if not found:
        raise BatchQueueMissingError(
            f"AWS Batch job queue {queue} does not exist",
            detail="in the account and region of these credentials",
            fix="create it with deploy/aws-batch.yaml (output JobQueue), or check `job_queue` and "
                "AWS_REGION", queue=queue)


def _ensure_definition(batch: Any, body: dict[str, Any]) -> tuple[str, bool]:
    name = body["jobDefinitionName"]
    with aws_call(BATCH, f"look up the job definition {name}"):
        found = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
    if found:
        return str(max(found, key=lambda d: d["revision"])["jobDefinitionArn"]), False
    with aws_call(BATCH, f"register the job definition {name}"):
        return str(batch.register_job_definition(**body)["jobDefinitionArn"]), True


def _job_name(request: SubmitRequest, manifest: Manifest) -> str:
    if request.job_name:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", request.job_name):
            raise UsageError(f"{request.job_name!r} is not a valid AWS Batch job name",
                             fix="use up to 128 letters, digits, '-' and '_'")
        return request.job_name
    return "trellis-box-" + hashlib.sha256(manifest.as_json().encode()).hexdigest()[:12]


def submit(request: SubmitRequest, *, batch: Any = None) -> Submitted:
    """Check everything, write the manifest, register or reuse the definition, submit the job."""
    if not is_remote(request.out):
        raise UsageError(f"batch output must be in S3: {request.out}",
                         fix="pass s3://BUCKET/PREFIX as `out`: the children write there")
    out = S3Storage.from_url(request.out)
    body = job_definition(request)  # refuses an instance that cannot run it, before any request
    batch = batch if batch is not None else batch_client()
    _check_queue(batch, request.job_queue)
    out.check()
    inputs = list_inputs(request.inputs)
    manifest = Manifest(inputs=inputs, out=out.url().rstrip("/"),
                        shards=shard_count(len(inputs), shards=request.shards,
                                           per_shard=request.per_shard),
                        workflow=request.workflow.as_dict(),
                        auto_resolution=request.auto_resolution, job_timeout=request.job_timeout)
    name = _job_name(request, manifest)
    url = manifest_url(manifest.out, name)
    write_manifest(manifest, url)
    definition, registered = _ensure_definition(batch, body)
    job: dict[str, Any] = {"jobName": name, "jobQueue": request.job_queue,
                           "jobDefinition": definition, "parameters": {"manifest": url}}
    if manifest.shards > 1:  # an array job has 2 children at least; one shard is a plain job
        job["arrayProperties"] = {"size": manifest.shards}
    with aws_call(BATCH, f"submit {name} to {request.job_queue}"):
        job_id = str(batch.submit_job(**job)["jobId"])
    return Submitted(job_id, name, definition, registered, manifest.shards, len(inputs), url)


def _describe(batch: Any, job_id: str) -> dict[str, Any]:
    with aws_call(BATCH, f"describe job {job_id}"):
        jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
    if not jobs or not (jobs[0].get("parameters") or {}).get("manifest"):
        raise BatchJobMissingError(
            f"no trellis-box job {job_id}" if not jobs else
            f"job {job_id} was not submitted by trellis-box batch (it has no manifest parameter)",
            detail="AWS Batch keeps finished jobs for about 7 days",
            fix="pass the job id `trellis-box batch submit` printed, in the same region",
            job_id=job_id)
    job: dict[str, Any] = jobs[0]
    return job


def _children(job: dict[str, Any]) -> dict[str, int]:
    summary = (job.get("arrayProperties") or {}).get("statusSummary")
    if summary is None:  # one shard: the job is its only child
        summary = {job["status"]: 1}
    return {state: int(summary.get(state, 0)) for state in BATCH_STATES}


def _item_reports(manifest: Manifest) -> dict[str, dict[str, Any] | None]:
    """Each input's report in the output prefix, or ``None``; one from other parameters is
    ``None`` too (an earlier run's, not this job's)."""
    items = name_items([(Path(u.rsplit("/", 1)[-1]), u) for u in manifest.inputs],
                       looked_in=manifest.inputs)
    bucket, prefix = parse_url(manifest.out)
    store = S3Storage(bucket, prefix, client=s3_client())

    def one(name: str) -> dict[str, Any] | None:
        try:
            report: dict[str, Any] = json.loads(store.read(output_paths(Path(), name)["report"].name))
        except (FileNotFoundError, ValueError):
            return None
        return report if report.get("requested") == manifest.workflow else None

    with ThreadPoolExecutor(16) as pool:
        return dict(zip([i.name for i in items], pool.map(one, [i.name for i in items]), strict=True))


def _status(job: dict[str, Any], manifest: Manifest, manifest_at: str,
            reports: dict[str, dict[str, Any] | None]) -> JobStatus:
    state = {None: "pending", "ok": "done", "failed": "failed"}
    return JobStatus(
        job_id=str(job["jobId"]), job_name=str(job["jobName"]), status=str(job["status"]),
        children=_children(job), manifest=manifest_at, out=manifest.out,
        inputs={n: state.get((r or {}).get("status"), "pending") for n, r in reports.items()},
        reason=job.get("statusReason"))


def status(job_id: str, *, batch: Any = None) -> JobStatus:
    return report(job_id, batch=batch).status


def report(job_id: str, *, batch: Any = None) -> JobReport:
    job = _describe(batch if batch is not None else batch_client(), job_id)
    url = job["parameters"]["manifest"]
    manifest = read_manifest(url)
    reports = _item_reports(manifest)
    return JobReport(_status(job, manifest, url, reports), reports)


def _partial_note(s: JobStatus) -> str | None:
    pending, total = s.counts["pending"], len(s.inputs)
    if s.status not in ENDED:
        unfinished = sum(n for state, n in s.children.items() if state not in ENDED)
        return (f"partial: job {s.job_name} is {s.status} ({unfinished} of {sum(s.children.values())} "
                f"children not finished), {pending} of {total} inputs not reported yet; build the "
                f"report again when the job has ended")
    if pending:
        return (f"partial: job {s.job_name} {s.status}, but {pending} of {total} inputs have no report "
                f"of this job (their child ended without one: see its log)")
    return None


def write_page(job: JobReport, *, thumbnails: bool = True, workers: int | None = None,
               on_thumbnail: Callable[[str, int], None] | None = None) -> JobPage:
    """Build the job's ``report.html`` at its output prefix from what is there now, as
    ``trellis-box report OUT`` does (it shows every per-input report in that prefix); the page of
    a job still running, or of one that left inputs without a report, says it is partial."""
    s = job.status
    if not s.counts["done"] + s.counts["failed"]:
        return JobPage(None, partial=True,
                       note=f"no report.html yet: no input of job {s.job_name} ({s.status}) has a report")
    note = _partial_note(s)
    store = S3Storage.from_url(s.out)
    result = build_report(store, folder=s.out, render_thumbnails=thumbnails, workers=workers,
                          note=note, on_thumbnail=on_thumbnail)
    return JobPage(store.url(result.page), partial=note is not None, note=note, result=result)

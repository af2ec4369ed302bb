"""Run the real workflow on bundled photos, one job at a time, and record what each job cost.

One job at a time, unlike ``generate``: each job's peak memory, GPU busy share and client
overhead must be its own. Before each job the server's torch peak counters are reset
(``POST /trellis-box/gpu/reset-peak``); after it they are read. The first job of each
resolution is *cold* (it loads that resolution's models, or finds them loaded by an earlier
resolution or serve's warm-up); the rest are *warm*. Each job gets its own seed, so ComfyUI
cannot answer it from its cache. A job that fails is recorded with its error and the run goes
on; a server that stops answering ends the run, and the jobs left are recorded as not run.
"""

from __future__ import annotations

import asyncio
import datetime
import platform
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from trellis_box import __version__
from trellis_box.batch import glb
from trellis_box.batch.engine import server_facts
from trellis_box.bench.sampler import CpuSampler, GpuSampler
from trellis_box.comfyui import workflow
from trellis_box.comfyui.client import ComfyClient, JobResult, Timeouts
from trellis_box.errors import (
    ComfyUnreachableError,
    OutputMissingError,
    ResolutionUnsupportedError,
    TrellisBoxError,
    UsageError,
)
from trellis_box.gpu.probe import driver_version
from trellis_box.gpu.profiles import Profile
from trellis_box.weights import standin

#: What ``/trellis-box/info`` says when serve runs on random-weight stand-ins (weights/standin.py);
#: every report made against such a server carries :data:`STAND_IN_LABEL`.
STAND_IN_MODE: standin.WeightsMode = "stand-in"
STAND_IN_LABEL = standin.LABEL
#: Server output subfolder of bench jobs.
OUTPUT_SUBFOLDER = "trellis-box-bench"

#: Node class -> the stage it is reported under; every other node counts as ``other``.
STAGES: dict[str, str] = {
    "Trellis2MeshWithVoxelGenerator": "generator",
    "Trellis2PostProcessAndUnWrapAndRasterizer": "post_process",
    "Trellis2ExportMesh": "export",
}
STAGE_NAMES = ("generator", "post_process", "export", "other")
LOW_VRAM_CHOICES = ("on", "off", "profile")


def sample_images() -> list[Path]:
    """The bundled photos (our own renders of plain objects on a plain background)."""
    folder = resources.files("trellis_box").joinpath("data/bench")
    return sorted(Path(str(folder.joinpath(entry.name))) for entry in folder.iterdir()
                  if entry.name.endswith(".png"))


@dataclass(frozen=True)
class BenchOptions:
    #: None: every resolution the server's profile allows (all on a server without one).
    resolutions: tuple[str, ...] | None = None
    #: Jobs per resolution: the first cold, the rest warm.
    images: int = 3
    #: ``on``/``off`` forces the loader's low_vram; ``profile`` takes the server's GPU profile's.
    low_vram: str = "profile"
    workflow: workflow.WorkflowOptions = workflow.WorkflowOptions()
    job_timeout: float = 3600.0
    #: First seed; job ``i`` of the run uses ``seed + i``. None: a random one per run.
    seed: int | None = None
    gpu_index: int = 0
    sample_interval_s: float = 0.5

    def __post_init__(self) -> None:
        for resolution in self.resolutions or ():
            workflow.next_lower(resolution)  # raises, naming the valid ones
        if self.low_vram not in LOW_VRAM_CHOICES:
            raise UsageError(
                f"`low_vram` {self.low_vram!r} is not one of {', '.join(LOW_VRAM_CHOICES)}",
                fix="use on, off, or profile (the server's GPU profile decides)")
        if self.images < 1:
            raise UsageError(f"`images` {self.images}: at least one job per resolution",
                             fix="use `images` 2 or more to see warm jobs")


@dataclass
class JobRecord:
    resolution: str
    index: int
    image: str
    seed: int
    low_vram: bool
    status: str = "not run"  # ok | failed | not run
    error: dict[str, Any] | None = None
    prompt_id: str | None = None
    server_seconds: float | None = None
    client_seconds: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    cached_nodes: list[str] = field(default_factory=list)
    gpu: dict[str, Any] = field(default_factory=dict)
    #: CPU cores kept busy during the job (the post-process is CPU work): ``cpu_cores_busy`` of
    #: ``cpu_cores``, whole-machine, valid where the server runs on bench's machine.
    cpu: dict[str, Any] = field(default_factory=dict)
    glb: dict[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str:
        return "cold" if self.index == 0 else "warm"

    @property
    def client_overhead_seconds(self) -> float | None:
        if self.client_seconds is None or self.server_seconds is None:
            return None
        return round(self.client_seconds - self.server_seconds, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution, "index": self.index, "phase": self.phase,
            "image": self.image, "seed": self.seed, "low_vram": self.low_vram,
            "status": self.status, "error": self.error, "prompt_id": self.prompt_id,
            "server_seconds": self.server_seconds, "client_seconds": self.client_seconds,
            "client_overhead_seconds": self.client_overhead_seconds,
            "stages": self.stages, "nodes": self.nodes, "cached_nodes": self.cached_nodes,
            "gpu": self.gpu, "cpu": self.cpu, "glb": self.glb,
        }


@dataclass
class BenchRun:
    jobs: list[JobRecord]
    environment: dict[str, Any]
    #: Busy share over the whole run, or a sentence saying why it was not measured.
    busy: dict[str, Any]
    seconds: float = 0.0

    @property
    def stand_in_weights(self) -> bool:
        return self.environment.get("weights_mode") == STAND_IN_MODE

    @property
    def failed(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.status != "ok"]


Observer = Callable[[JobRecord], None]


async def run_bench(server: str, options: BenchOptions = BenchOptions(), *,
                    timeouts: Timeouts = Timeouts(), on_job: Observer | None = None) -> BenchRun:
    """Run ``options.images`` jobs per resolution; ``on_job`` sees each record as it ends."""
    images = sample_images()
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    started = time.monotonic()
    async with ComfyClient(server, timeouts=timeouts) as comfy:
        environment, profile = await _environment(comfy)
        low_vram = _low_vram(options.low_vram, profile)
        environment["low_vram"] = {"requested": options.low_vram, "used": low_vram}
        environment["workflow"] = options.workflow.as_dict()
        resolutions = _resolutions(options.resolutions, profile)
        jobs = [JobRecord(resolution, i, images[i % len(images)].name, seed + n, low_vram)
                for n, (resolution, i) in enumerate((r, i) for r in resolutions
                                                    for i in range(options.images))]
        with GpuSampler(gpu_index=options.gpu_index,
                        interval_s=options.sample_interval_s) as sampler, \
                CpuSampler(interval_s=options.sample_interval_s) as cpu, \
                tempfile.TemporaryDirectory(prefix="trellis-box-bench-") as tmp:
            first = time.monotonic()
            for job in jobs:
                try:
                    await _run_job(comfy, job, options, sampler, cpu, Path(tmp))
                except ComfyUnreachableError as exc:
                    job.status, job.error = "failed", exc.to_dict()
                    if on_job is not None:
                        on_job(job)
                    break
                except TrellisBoxError as exc:
                    job.status, job.error = "failed", exc.to_dict()
                if on_job is not None:
                    on_job(job)
            last = time.monotonic()
            whole = sampler.window(first, last)
            whole_cpu = cpu.window(first, last)
        environment["device_total_bytes_nvidia_smi"] = sampler.total_bytes
    busy: dict[str, Any] = ({"measured": True, **whole.as_dict()} if whole.samples else
                            {"measured": False,
                             "reason": sampler.reason or "not measured: no sample during the run"})
    busy.update(whole_cpu.as_dict())
    busy["note"] = ("nvidia-smi and /proc/stat on the machine bench ran on: valid when the server "
                    "runs there too")
    return BenchRun(jobs, environment, busy, time.monotonic() - started)


def _resolutions(asked: tuple[str, ...] | None, profile: Profile | None) -> tuple[str, ...]:
    """What the run measures: ``asked``, or every resolution the server's profile allows; one it
    does not allow (its GPU, or its ``TRELLIS_BOX_MAX_RESOLUTION``) is refused before any job,
    as ``generate`` refuses it."""
    if profile is None:
        return asked or workflow.RESOLUTIONS
    allowed = profile.allowed_resolutions
    above = [r for r in asked or workflow.RESOLUTIONS if r not in allowed]
    if above and (asked or not allowed):
        raise ResolutionUnsupportedError(
            f"the server does not run resolution {', '.join(above)}",
            detail=f"It allows {', '.join(allowed) or 'none'}: {profile.describe()}.",
            fix=f"use `resolutions` {','.join(allowed)}, or leave it out for every one it allows"
                if allowed else "run on a GPU with at least 24 GB (A10G, L4, L40S, A100)",
            resolutions=above, allowed_resolutions=list(allowed))
    return asked or allowed


def _low_vram(choice: str, profile: Profile | None) -> bool:
    if choice == "profile":
        return profile.low_vram if profile is not None else workflow.WorkflowOptions().low_vram
    return choice == "on"


async def _environment(comfy: ComfyClient) -> tuple[dict[str, Any], Profile | None]:
    facts, profile = await server_facts(comfy)
    info = facts.get("trellis_box") or {}
    gpu = await comfy.http.trellis_gpu()
    try:
        driver: str | None = driver_version()
    except TrellisBoxError:
        driver = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "trellis_box_version": __version__,
        "client_host": platform.node(),
        "server": facts,
        # Absent on servers from before weights modes existed: those only ran real weights.
        "weights_mode": info.get("weights_mode") or "real",
        "gpu_name": (gpu or {}).get("device_name") or (facts.get("device") or {}).get("name"),
        "driver_version_nvidia_smi": driver,
        "torch_version": (gpu or {}).get("torch_version") or facts.get("pytorch_version"),
        "cuda_version": (gpu or {}).get("cuda_version"),
        "device_total_bytes_torch": (gpu or {}).get("total_bytes"),
        "torch_memory": "reported" if (gpu or {}).get("available") else
                        (gpu or {}).get("reason") or "no /trellis-box/gpu (not our node pack)",
        "profile": {"name": profile.name, "low_vram": profile.low_vram,
                    "allowed_resolutions": list(profile.allowed_resolutions)} if profile else None,
    }, profile


async def _run_job(comfy: ComfyClient, job: JobRecord, options: BenchOptions,
                   sampler: GpuSampler, cpu: CpuSampler, tmp: Path) -> None:
    run_options = options.workflow.replace(
        resolution=job.resolution, seed=job.seed, low_vram=job.low_vram,
        glb_prefix=f"{OUTPUT_SUBFOLDER}/{job.resolution}-{job.index}",
        cutout_prefix=f"{OUTPUT_SUBFOLDER}/cutout-{job.resolution}-{job.index}")
    image = next(p for p in sample_images() if p.name == job.image)
    await comfy.http.reset_gpu_peak()
    start = time.monotonic()
    name = await comfy.http.upload_image(image)
    graph = workflow.build(run_options, name)
    result = await comfy.run(graph, timeout=options.job_timeout)
    job.prompt_id = result.prompt_id
    glbs = result.files(workflow.GLB_OUTPUT_NODE, "3d")
    if not glbs:
        raise OutputMissingError(
            f"bench job {result.prompt_id} finished without a GLB in /history",
            fix="install the trellis-box node pack in custom_nodes/ (trellis_box_nodes)",
            prompt_id=result.prompt_id)
    path = await comfy.http.download(glbs[0], tmp / f"{job.resolution}-{job.index}.glb")
    end = time.monotonic()
    job.client_seconds = round(end - start, 3)
    _timings(job, result, graph)
    job.glb = (await asyncio.to_thread(glb.glb_stats, path)).as_dict()
    path.unlink()
    torch_memory = await comfy.http.trellis_gpu() or {}
    job.gpu = {
        "torch_peak_allocated_bytes": torch_memory.get("max_allocated_bytes"),
        "torch_peak_reserved_bytes": torch_memory.get("max_reserved_bytes"),
        **sampler.window(start, end).as_dict(),
    }
    job.cpu = cpu.window(start, end).as_dict()
    job.status = "ok"


def _timings(job: JobRecord, result: JobResult, graph: dict[str, Any]) -> None:
    if result.started_ms and result.finished_ms:
        job.server_seconds = round((result.finished_ms - result.started_ms) / 1000, 3)
    job.cached_nodes = list(result.cached_nodes)
    job.stages = dict.fromkeys(STAGE_NAMES, 0.0)
    for node, seconds in result.node_seconds.items():
        class_type = str((graph.get(node) or {}).get("class_type"))
        # Stages add up the rounded node figures, so the report's numbers sum as printed.
        shown = round(seconds, 3)
        job.nodes.append({"node": node, "class_type": class_type, "seconds": shown})
        stage = STAGES.get(class_type, "other")
        job.stages[stage] = round(job.stages[stage] + shown, 3)

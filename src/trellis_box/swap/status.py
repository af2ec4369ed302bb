"""``status``: which GPU container runs, whether it is ready, its queue, uptime, GPU memory; or,
given only a URL, what a plain ComfyUI server says of itself (no Docker, no containers file)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from trellis_box.errors import ComfyResponseError, ComfyUnreachableError, GpuUnavailableError
from trellis_box.gpu.probe import nvidia_smi
from trellis_box.swap.config import GpuConfig
from trellis_box.swap.docker_ops import DockerOps, Observed
from trellis_box.swap.probes import Probes, ServerStats


@dataclass(frozen=True)
class ContainerStatus:
    name: str | None  # config entry; None for a managed container no longer in the config
    container_name: str
    state: str  # Docker's status, or "missing"
    image: str | None
    ready: bool | None  # None unless running
    ready_detail: str | None
    queue_running: int | None
    queue_pending: int | None
    queue_error: str | None
    uptime_seconds: float | None
    # The config entry changed since the container was created: the next start re-creates it.
    config_changed: bool


@dataclass(frozen=True)
class GpuMemory:
    index: int
    name: str
    used_mib: int
    total_mib: int


@dataclass(frozen=True)
class GpuStatus:
    holders: list[str]  # running GPU containers: one, or none (two means something went wrong)
    containers: list[ContainerStatus]
    gpus: list[GpuMemory] | None  # None where nvidia-smi is absent or failed
    gpu_note: str | None


@dataclass(frozen=True)
class ServerStatus:
    """One ComfyUI server given by URL, reachable or not."""

    url: str
    reachable: bool
    error: str | None
    stats: ServerStats | None


def gpu_status(config: GpuConfig, ops: DockerOps) -> GpuStatus:
    observed = {o.container_name: o for o in ops.observe(config)}
    rows: list[ContainerStatus] = []
    with Probes() as probes:
        for spec in config.containers.values():
            seen = observed.pop(spec.container_name, None)
            if seen is None:
                rows.append(ContainerStatus(spec.name, spec.container_name, "missing",
                                            spec.image, None, None, None, None, None, None,
                                            False))
            else:
                changed = seen.managed and seen.spec_digest != spec.digest()
                rows.append(_describe(probes, seen, spec.name, spec.ready_url, spec.comfy_url,
                                      changed))
        for seen in observed.values():  # managed, but its entry left the config
            rows.append(_describe(probes, seen, seen.name, seen.ready_url, seen.comfy_url,
                                  False))
    gpus, note = gpu_memory()
    return GpuStatus(holders=[r.container_name for r in rows if r.state == "running"],
                     containers=rows, gpus=gpus, gpu_note=note)


def server_status(url: str) -> ServerStatus:
    """What the ComfyUI at ``url`` says: its version, devices and memory, its queue."""
    with Probes() as probes:
        try:
            return ServerStatus(url, True, None, probes.server_stats(url))
        except (ComfyUnreachableError, ComfyResponseError) as exc:
            reached = isinstance(exc, ComfyResponseError)
            return ServerStatus(url, reached, "\n".join(filter(None, [exc.message, exc.detail])),
                                None)


def _describe(probes: Probes, seen: Observed, name: str | None, ready_url: str | None,
              comfy_url: str | None, changed: bool) -> ContainerStatus:
    ready = detail = queue_error = None
    running = pending = None
    uptime = None
    if seen.running:
        if ready_url:
            probe = probes.ready(ready_url)
            ready, detail = probe.ready, probe.detail
        if comfy_url:
            try:
                queue = probes.queue(comfy_url)
                running, pending = len(queue.running), len(queue.pending)
            except (ComfyUnreachableError, ComfyResponseError) as exc:
                queue_error = exc.message
        if seen.started_at is not None:
            uptime = (datetime.now(UTC) - seen.started_at).total_seconds()
    return ContainerStatus(name, seen.container_name, seen.status, seen.image, ready, detail,
                           running, pending, queue_error, uptime, changed)


def gpu_memory() -> tuple[list[GpuMemory] | None, str | None]:
    """Per-GPU memory from ``nvidia-smi``, or ``None`` and why not (status goes on without it)."""
    try:
        answer = nvidia_smi(["--query-gpu=index,name,memory.used,memory.total",
                             "--format=csv,noheader,nounits"])
        gpus = []
        for line in answer.splitlines():
            if line.strip():
                index, name, used, total = (part.strip() for part in line.split(","))
                gpus.append(GpuMemory(int(index), name, int(used), int(total)))
        return gpus, None
    except GpuUnavailableError as exc:
        return None, f"no GPU memory figures: {exc.message}"
    except ValueError as exc:
        return None, f"no GPU memory figures: nvidia-smi answered unreadably ({exc})"

"""A bench run condensed: cold and warm per resolution, and warm generation beside upstream's
published H100 figure. Pure functions over :class:`~trellis_box.bench.runner.BenchRun`."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any

from trellis_box.bench.reference import UPSTREAM_H100_GENERATION_S, UPSTREAM_SOURCE
from trellis_box.bench.runner import STAGE_NAMES, STAND_IN_LABEL, BenchRun, JobRecord

#: Summary figures: name -> how to read it from a job (None where the job lacks it).
METRICS: dict[str, Any] = {
    "server_seconds": lambda j: j.server_seconds,
    **{f"{stage}_seconds": (lambda j, s=stage: j.stages.get(s)) for stage in STAGE_NAMES},
    "client_seconds": lambda j: j.client_seconds,
    "client_overhead_seconds": lambda j: j.client_overhead_seconds,
    "torch_peak_reserved_bytes": lambda j: j.gpu.get("torch_peak_reserved_bytes"),
    "torch_peak_allocated_bytes": lambda j: j.gpu.get("torch_peak_allocated_bytes"),
    "device_peak_used_bytes": lambda j: j.gpu.get("device_peak_used_bytes"),
    "busy_share": lambda j: j.gpu.get("busy_share"),
    "cpu_cores_busy": lambda j: j.cpu.get("cpu_cores_busy"),
    "glb_bytes": lambda j: j.glb.get("bytes"),
    "faces": lambda j: j.glb.get("faces"),
}


@dataclass(frozen=True)
class Row:
    """One line of the table: the cold job, or the median of the warm ones, of one resolution."""

    resolution: str
    phase: str  # cold | warm
    jobs: int
    failed: int
    figures: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "phase": self.phase, "jobs": self.jobs,
                "failed": self.failed, **self.figures}


def rows(run: BenchRun) -> list[Row]:
    """Per resolution in run order: the cold row, then the warm row (medians) if it had jobs."""
    out = []
    for resolution in dict.fromkeys(j.resolution for j in run.jobs):
        jobs = [j for j in run.jobs if j.resolution == resolution]
        for phase in ("cold", "warm"):
            group = [j for j in jobs if j.phase == phase]
            if group:
                out.append(_row(resolution, phase, group))
    return out


def _row(resolution: str, phase: str, group: list[JobRecord]) -> Row:
    ok = [j for j in group if j.status == "ok"]
    figures = {}
    for name, read in METRICS.items():
        values = [v for j in ok if (v := read(j)) is not None]
        figures[name] = round(float(median(values)), 3) if values else None
    return Row(resolution, phase, len(ok), len(group) - len(ok), figures)


def compare_with_upstream(run: BenchRun) -> list[dict[str, Any]]:
    """Warm generator seconds (median) beside upstream's H100 generation figure, per resolution."""
    compared = []
    for row in rows(run):
        reference = UPSTREAM_H100_GENERATION_S.get(row.resolution)
        if row.phase != "warm" or reference is None:
            continue
        ours = row.figures.get("generator_seconds")
        compared.append({
            "resolution": row.resolution, "warm_generator_seconds": ours,
            "upstream_h100_generation_seconds": reference,
            "ratio": round(ours / reference, 2) if ours is not None else None,
            "source": UPSTREAM_SOURCE,
        })
    return compared


def as_data(run: BenchRun) -> dict[str, Any]:
    """The results document: what the command prints as JSON and writes to its results file."""
    return {
        **({"label": STAND_IN_LABEL} if run.stand_in_weights else {}),
        "weights_mode": run.environment.get("weights_mode"),
        "environment": run.environment,
        "seconds": round(run.seconds, 3),
        "busy": run.busy,
        "summary": [r.as_dict() for r in rows(run)],
        "upstream_comparison": compare_with_upstream(run),
        "counts": {"ok": sum(j.status == "ok" for j in run.jobs),
                   "failed": sum(j.status == "failed" for j in run.jobs),
                   "not run": sum(j.status == "not run" for j in run.jobs)},
        "jobs": [j.as_dict() for j in run.jobs],
    }

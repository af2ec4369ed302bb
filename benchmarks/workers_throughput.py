"""Several ComfyUI workers against one: the same batch through every worker of one
``trellis-box serve`` and through its worker 0 alone, in one run.

Both runs use the one server (its other workers sit idle during the single-worker run), each with
its own seed so no worker's cache answers; first one image per worker primes the resolution's
models on each (untimed). The inputs are ``trellis-box bench``'s bundled photos, taken in turn
(``--photos DIR`` for others): on random-weight stand-ins background removal empties some
pictures, and these are the ones known to pass. An image that fails is reported and left out of
the latency figures; the run goes on. Reported per run: wall time, per-image latency (the server's execution
time, and the client's queue-to-files time), the GPU's busy share and device memory peak
(``nvidia-smi``) and the CPU cores kept busy (``/proc/stat``), both sampled on this machine: run
it where the server runs. ``taskset -c 0-3`` on the server (not this script) limits its cores.

On the GPU machine, against a running ``serve`` (``TRELLIS_BOX_WORKERS=N``, every worker's port
published at the same number)::

    python benchmarks/workers_throughput.py --server http://127.0.0.1:8188 --images 20 \\
        --resolution 1024 [--photos DIR] [--json-out results.json]

On a CPU, against the ComfyUI stand-in (serve started here with a fake nvidia-smi, simulated node
durations; it shows the scheduling works, not GPU figures)::

    python benchmarks/workers_throughput.py --standin --workers 2 --images 8 \\
        --gen-seconds 0.5 --post-seconds 2

With the cores limited (a g6e.xlarge's 4 vCPUs), pin the server's processes and this script
(``taskset -a -p -c 0-3 PID`` for serve and each worker) and compare every worker against the
one-worker run of an earlier, unpinned run, without priming again::

    taskset -c 0-3 python benchmarks/workers_throughput.py --server http://127.0.0.1:8188 \
        --images 20 --baseline results.json --no-prime [--json-out pinned.json]

Goal (issue 13, GPU machine): busy share >= 85 %, wall <= 0.6x one worker's, per-image latency
<= 1.3x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, median
from typing import Any

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.serve_support import H200_MIB, ServeProcess, free_port, make_setup  # noqa: E402
from trellis_box.batch import engine as batch  # noqa: E402
from trellis_box.batch import images  # noqa: E402
from trellis_box.bench.runner import sample_images  # noqa: E402
from trellis_box.bench.sampler import CpuSampler, GpuSampler  # noqa: E402
from trellis_box.comfyui.client import ComfyClient  # noqa: E402
from trellis_box.comfyui.workers import worker_urls  # noqa: E402
from trellis_box.comfyui.workflow import WorkflowOptions  # noqa: E402

GOAL_BUSY, GOAL_WALL, GOAL_LATENCY = 0.85, 0.6, 1.3


@dataclass(frozen=True)
class Run:
    label: str
    workers: int
    wall_s: float
    failed: list[str]
    server_s: list[float]
    client_s: list[float]
    busy_share: float | None
    device_peak_bytes: int | None
    cpu_cores_busy: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "workers": self.workers, "wall_s": round(self.wall_s, 2),
                "server_s_mean": round(fmean(self.server_s), 2),
                "server_s_median": round(median(self.server_s), 2),
                "server_s": [round(v, 2) for v in self.server_s],
                "client_s_mean": round(fmean(self.client_s), 2),
                "client_s": [round(v, 2) for v in self.client_s], "busy_share": self.busy_share,
                "failed": self.failed,
                "device_peak_bytes": self.device_peak_bytes, "cpu_cores_busy": self.cpu_cores_busy}

    @classmethod
    def from_dict(cls, data: dict[str, Any], label: str) -> Run:
        return cls(label, data["workers"], data["wall_s"], data["failed"], data["server_s"],
                   data["client_s"], data["busy_share"], data["device_peak_bytes"],
                   data["cpu_cores_busy"])


def announce(label: str, start: float) -> batch.Observer:
    """Prints each image as it finishes, on the run's clock: a run cut off before its end (the GPU
    machine's call ran out) still leaves the figures of the images it finished."""
    def on_event(event: batch.Event) -> None:
        if isinstance(event, batch.Done):
            timings = event.outcome.report.timings if event.outcome.report else None
            what = (f"server {timings.server_ms / 1000:.1f} s" if timings and timings.server_ms is not None
                    else event.outcome.status)
            print(f"  {label}: {event.item.name} {what}, at +{time.monotonic() - start:.1f} s", flush=True)
        elif isinstance(event, batch.Queued) and event.moved_from:
            print(f"  {label}: {event.item.name} taken from {event.moved_from}'s queue by an idle worker, "
                  f"at +{time.monotonic() - start:.1f} s", flush=True)
    return on_event


async def run_once(label: str, url: str, inputs: list[Path], out: Path, options: WorkflowOptions,
                   max_workers: int, gpu: GpuSampler, cpu: CpuSampler, stagger_s: float = 0.0) -> Run:
    start = time.monotonic()
    report = await batch.run_batch(url, inputs, batch.BatchOptions(
        out, workflow=options, max_workers=max_workers, stagger_s=stagger_s), on_event=announce(label, start))
    end = time.monotonic()
    failed = [o for o in report.outcomes if o.status != "ok"]
    for outcome in failed:
        print(f"  {label}: {outcome.item.name} failed: {outcome.error}", flush=True)
    if len(failed) == len(report.outcomes):
        raise SystemExit(f"{label}: every image failed; nothing to compare")
    timings = [o.report.timings for o in report.outcomes
               if o.status == "ok" and o.report and o.report.timings]
    window = gpu.window(start, end)
    run = Run(label, max_workers, end - start, [o.item.name for o in failed],
              [t.server_ms / 1000 for t in timings if t.server_ms is not None],
              [t.client_seconds for t in timings], window.busy_share, window.peak_used_bytes,
              cpu.window(start, end).cores_busy)
    print(f"  {label}: {run.wall_s:.1f} s", flush=True)
    return run


def inputs_for(args: argparse.Namespace, folder: Path) -> list[Path]:
    """``--images`` files: the photos taken in turn, each copy under its own name and with its own
    pixels. Uploads are named by the hash of the normalised pixels (``batch.images``), so two equal
    copies are one ComfyUI input, and a worker given the copy of the photo it just made answers
    from ComfyUI's cache in 0 s (the H200 runs of 2026-12-04 had 6 and 5 such answers in 20: a PNG
    text chunk, tried first, does not survive normalising). Each copy's top-left pixel is its own
    opaque colour; the copies are checked distinct as the batch engine sees them."""
    photos = (sorted(p for p in Path(args.photos).iterdir()
                     if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
              if args.photos else sample_images())
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for i in range(args.images):
        source = photos[i % len(photos)]
        copy = folder / f"{i:02d}-{source.stem}.png"
        with Image.open(source) as image:
            marked = image.convert("RGBA")
        marked.putpixel((0, 0), (i % 256, i // 256 % 256, 255 - i % 256, 255))
        marked.save(copy)
        inputs.append(copy)
    if len({images.normalise(p).sha256 for p in inputs}) != len(inputs):
        raise SystemExit(f"the {len(inputs)} copies in {folder} are not all distinct once normalised")
    return inputs


def _shown(path: Path) -> str:
    """A path as a results file records it: relative to the repository where it lies inside."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def baseline_run(path: str, args: argparse.Namespace) -> Run:
    """The one-worker run of an earlier run's ``--json-out`` at the same resolution and preset.

    One worker runs the batch's images one after another, so its wall time is its images' times
    added up: an earlier run of fewer (or more) images is scaled to this batch's count, and the
    label says so. Its per-image times, busy share and cores are per image already."""
    earlier = json.loads(Path(path).read_text())
    same = {k: earlier.get(k) for k in ("resolution", "preset")}
    if same != {"resolution": args.resolution, "preset": args.preset}:
        raise SystemExit(f"{path}: measured {same}, not this batch: run with the same "
                         "--resolution and --preset, or without --baseline")
    single = next((r for r in earlier["runs"] if r["workers"] == 1), None)
    if single is None:
        raise SystemExit(f"{path}: has no one-worker run (it was itself run with --baseline)")
    measured = len(single["server_s"]) + len(single["failed"])
    label = f"one worker ({Path(path).name}"
    if measured != args.images:
        single = {**single, "wall_s": single["wall_s"] * args.images / measured}
        label += f", {measured} images, wall scaled to {args.images}"
    return Run.from_dict(single, label + ")")


async def measure(args: argparse.Namespace, url: str, work: Path,
                  progress: Callable[[list[Run], dict[str, Any]], None],
                  ) -> tuple[list[Run], dict[str, Any]]:
    inputs = inputs_for(args, work / "in")
    base = WorkflowOptions(resolution=args.resolution, preset=args.preset)
    runs = [baseline_run(args.baseline, args)] if args.baseline else []
    with GpuSampler(interval_s=0.5) as gpu, CpuSampler(interval_s=0.5) as cpu:
        async with ComfyClient(url) as comfy:
            info = await comfy.http.trellis_info()
            workers = len(worker_urls(url, info))
        facts = {"server": info, "cpu_cores": cpu.cores}
        if args.prime:
            # Untimed, one image per worker (slots go round): each loads the resolution's models
            # (serve's warm-up loaded 512's).
            await batch.run_batch(url, (inputs * workers)[:workers], batch.BatchOptions(
                work / "prime", workflow=base.replace(seed=1001)),
                on_event=announce("prime", time.monotonic()))
            print(f"primed {workers} workers", flush=True)
        if not runs:
            runs.append(await run_once("one worker", url, inputs, work / "one",
                                       base.replace(seed=1), 1, gpu, cpu))
            progress(runs, facts)
        used = min(workers, args.max_workers or workers)
        label = f"{used} workers" + (f", staggered {args.stagger:g} s" if args.stagger else "")
        runs.append(await run_once(label, url, inputs, work / "all", base.replace(seed=2), used, gpu, cpu,
                                   args.stagger))
    for sampler in (gpu, cpu):
        if sampler.reason:
            print(f"{type(sampler).__name__}: {sampler.reason}")
    return runs, facts


def figures(runs: list[Run], facts: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """What ``--json-out`` holds: the runs so far, and the ratios once both are in."""
    weights = (facts["server"] or {}).get("weights_mode") or "unknown"
    out: dict[str, Any] = {
        "images": args.images, "resolution": args.resolution, "preset": args.preset,
        "weights": weights, "cpu_cores": facts["cpu_cores"], "runs": [r.as_dict() for r in runs],
        "goal": {"busy_share": GOAL_BUSY, "wall_ratio": GOAL_WALL, "latency_ratio": GOAL_LATENCY},
        "server": facts["server"], "baseline": args.baseline and _shown(Path(args.baseline))}
    if len(runs) == 2:
        single, every = runs
        out["wall_ratio"] = round(every.wall_s / single.wall_s, 3)
        out["latency_ratio"] = round(fmean(every.server_s) / fmean(single.server_s), 3)
    else:
        out["partial"] = "the every-worker run did not finish"
    return out


def report(runs: list[Run], facts: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    out = figures(runs, facts, args)
    wall, latency, weights = out["wall_ratio"], out["latency_ratio"], out["weights"]
    print(f"{args.images} images at {args.resolution} ({args.preset}), weights: {weights}, "
          f"{facts['cpu_cores']} CPU cores")
    for run in runs:
        busy = "n/a" if run.busy_share is None else f"{run.busy_share:.0%}"
        peak = "n/a" if run.device_peak_bytes is None else f"{run.device_peak_bytes / 1e9:.1f} GB"
        print(f"  {run.label:<11} wall {run.wall_s:8.1f} s  per image: server "
              f"{fmean(run.server_s):6.1f} s (median {median(run.server_s):.1f}), client "
              f"{fmean(run.client_s):6.1f} s  GPU busy {busy}, device peak {peak}, "
              f"CPU cores busy {run.cpu_cores_busy}")
    print(f"  wall {wall:.2f}x one worker's (goal <= {GOAL_WALL}), per-image latency "
          f"{latency:.2f}x (goal <= {GOAL_LATENCY}), busy share goal >= {GOAL_BUSY:.0%}")
    return out


def standin_server(args: argparse.Namespace, work: Path) -> ServeProcess:
    setup = make_setup(work / "serve", memory_mib=H200_MIB)
    env = setup.environment(
        TRELLIS_BOX_WORKERS=str(args.workers), TRELLIS_BOX_WORKER_PORT=str(free_port()),
        COMFY_STANDIN_EXEC_SECONDS=str(args.gen_seconds),
        COMFY_STANDIN_POST_SECONDS=str(args.post_seconds),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                 os.environ.get("PYTHONPATH")])))
    serve = ServeProcess(setup, env=env)
    serve.wait_event("phase", timeout=300, phase="ready")
    return serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="a running trellis-box serve, e.g. http://127.0.0.1:8188")
    where.add_argument("--standin", action="store_true", help="start serve on the stand-in here")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--resolution", default="1024")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--photos", help="a folder of photos (default: bench's bundled photos)")
    parser.add_argument("--workers", type=int, default=2, help="--standin: workers serve runs")
    parser.add_argument("--gen-seconds", type=float, default=0.5, help="--standin: generator")
    parser.add_argument("--post-seconds", type=float, default=2.0, help="--standin: post-process")
    parser.add_argument("--json-out", help="write the figures here as JSON (the one-worker run "
                        "as soon as it is done)")
    parser.add_argument("--baseline", metavar="JSON", help="take the one-worker run from an "
                        "earlier --json-out at the same --resolution and --preset instead of running it "
                        "(its wall time scaled to --images)")
    parser.add_argument("--max-workers", type=int, help="feed only this many of the server's "
                        "workers in the every-worker run (a smaller design on the same server)")
    parser.add_argument("--stagger", type=float, default=0.0, metavar="SECONDS",
                        help="start worker k's first job k x SECONDS in (BatchOptions.stagger_s): "
                        "their GPU stages take turns instead of sharing the GPU in step")
    parser.add_argument("--prime", action=argparse.BooleanOptionalAction, default=True,
                        help="first one untimed image per worker, to load the resolution's models")
    args = parser.parse_args()

    def write(runs: list[Run], facts: dict[str, Any]) -> None:
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(figures(runs, facts, args), indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="workers-throughput-") as tmp:
        work = Path(tmp)
        serve = standin_server(args, work) if args.standin else None
        try:
            url = serve.url if serve is not None else args.server
            runs, facts = asyncio.run(measure(args, url, work, write))
            report(runs, facts, args)
            write(runs, facts)
        finally:
            if serve is not None:
                serve.close()


if __name__ == "__main__":
    main()

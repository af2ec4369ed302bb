"""How long the server sits idle during a batch: ``generate``'s engine against a naive loop.

Both run in the same process against the same ComfyUI stand-in (fixed execution time per job,
a GLB of realistic size), one after the other. Idle time is measured on the server side, from
the ``execution_start`` / ``execution_success`` timestamps each prompt's ``/history`` entry
carries: idle share = 1 - (sum of execution times) / (first start to last end).

    .venv/bin/python benchmarks/batch_idle.py [--jobs 20] [--exec-seconds 1.0] [--glb-mb 30]

Goal: under 1 % for ``generate``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.comfy_standin import install  # noqa: E402
from tests.comfy_standin.launcher import StandinServer  # noqa: E402
from tests.photos import object_photo  # noqa: E402
from trellis_box.batch import engine as batch  # noqa: E402
from trellis_box.batch import images  # noqa: E402
from trellis_box.comfyui import workflow  # noqa: E402
from trellis_box.comfyui.client import ComfyClient  # noqa: E402


def _start_standin(root: Path, exec_seconds: float, glb_bytes: int) -> StandinServer:
    # No trellis-box state file: resolutions are judged from /system_stats alone.
    return StandinServer(install(root), options={"exec_seconds": exec_seconds,
                                                 "glb_bytes": glb_bytes},
                         env={"TRELLIS_BOX_STATE": str(root / "no-state.json")}).start()


def _images(folder: Path, count: int, tag: int) -> list[Path]:
    """``count`` distinct images, so the server's cache never answers for a job."""
    return [object_photo(folder / f"object-{i:02d}.png", tag * 100 + i, size=256)
            for i in range(count)]


async def _idle_share(url: str, prompt_ids: list[str]) -> tuple[float, float, float]:
    """(idle share, wall seconds, busy seconds per job) over these prompts, from the server's
    own timestamps."""
    spans = []
    async with ComfyClient(url) as comfy:
        for pid in prompt_ids:
            entry = await comfy.http.history(pid) or {}
            stamps = {kind: data.get("timestamp")
                      for kind, data in (entry.get("status") or {}).get("messages", [])}
            spans.append((stamps["execution_start"], stamps["execution_success"]))
    busy = sum(end - start for start, end in spans)
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return 1 - busy / wall, wall / 1000, busy / len(spans) / 1000


async def _generate(url: str, inputs: list[Path], out: Path) -> list[str]:
    report = await batch.run_batch(url, inputs, batch.BatchOptions(out_dir=out))
    failed = [o for o in report.outcomes if o.status != "ok"]
    if failed:
        raise SystemExit(f"generate failed: {failed[0].error}")
    return [o.report.prompt_id for o in report.outcomes if o.report and o.report.prompt_id]


async def _naive(url: str, inputs: list[Path], out: Path) -> list[str]:
    """Submit one, wait for it, download it, then the next: what most scripts do."""
    out.mkdir(parents=True)
    prompt_ids = []
    async with ComfyClient(url) as comfy:
        for path in inputs:
            image = images.normalise(path)
            name = await comfy.http.upload_bytes(image.png, ".png")
            result = await comfy.run(workflow.build(workflow.WorkflowOptions(), name))
            await comfy.http.download(result.files(workflow.GLB_OUTPUT_NODE, "3d")[0],
                                 out / f"{path.stem}.glb")
            await comfy.http.download(result.files(workflow.CUTOUT_NODE, "images")[0],
                                 out / f"{path.stem}.cutout.png")
            prompt_ids.append(result.prompt_id)
    return prompt_ids


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--exec-seconds", type=float, default=1.0)
    parser.add_argument("--glb-mb", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batch-idle-") as tmp:
        work = Path(tmp)
        server = _start_standin(work / "comfy", args.exec_seconds, int(args.glb_mb * 1e6))
        url = server.url
        try:
            results = {}
            for label, runner, tag in (("generate", _generate, 1), ("naive loop", _naive, 2)):
                inputs = _images(work / f"in-{tag}", args.jobs, tag)
                ids = await runner(url, inputs, work / f"out-{tag}")
                results[label] = await _idle_share(url, ids)
        finally:
            server.stop()
    print(f"{args.jobs} jobs, {args.exec_seconds:g} s execution each, GLB {args.glb_mb:g} MB")
    for label, (idle, wall, per_job) in results.items():
        print(f"  {label:<11} server idle {idle:6.2%} of {wall:6.1f} s "
              f"(busy {per_job:.2f} s per job: execution plus writing the GLB)")
    ratio = results["naive loop"][0] / max(results["generate"][0], 1e-9)
    print(f"  naive loop idles {ratio:.0f}x longer than generate (goal for generate: < 1%)")


if __name__ == "__main__":
    asyncio.run(main())

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
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.comfy_standin import install  # noqa: E402
from trellis_box import batch, images, workflow  # noqa: E402
from trellis_box.client import ComfyClient  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_standin(root: Path, exec_seconds: float, glb_bytes: int) -> tuple[subprocess.Popen[bytes], str]:
    install(root)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(root / "main.py"), "--listen", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "COMFY_STANDIN_EXEC_SECONDS": str(exec_seconds),
             "COMFY_STANDIN_GLB_BYTES": str(glb_bytes)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


async def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with ComfyClient(url) as comfy:
        while True:
            try:
                await comfy.system_stats()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the stand-in did not start at {url}") from None
                await asyncio.sleep(0.2)


def _images(folder: Path, count: int, tag: int) -> list[Path]:
    """``count`` distinct images, so the server's cache never answers for a job."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"object-{i:02d}.png"
        Image.new("RGB", (256, 256), (i * 11 % 256, tag * 97 % 256, 90)).save(path)
        paths.append(path)
    return paths


async def _idle_share(url: str, prompt_ids: list[str]) -> tuple[float, float]:
    """(idle share, wall seconds) over these prompts, from the server's own timestamps."""
    spans = []
    async with ComfyClient(url) as comfy:
        for pid in prompt_ids:
            entry = await comfy.history(pid) or {}
            stamps = {kind: data.get("timestamp")
                      for kind, data in (entry.get("status") or {}).get("messages", [])}
            spans.append((stamps["execution_start"], stamps["execution_success"]))
    busy = sum(end - start for start, end in spans)
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return 1 - busy / wall, wall / 1000


async def _generate(url: str, inputs: list[Path], out: Path) -> list[str]:
    report = await batch.run_batch(url, inputs, batch.BatchOptions(out_dir=out))
    failed = [o for o in report.outcomes if o.status != "ok"]
    if failed:
        raise SystemExit(f"generate failed: {failed[0].error}")
    return [o.report["prompt_id"] for o in report.outcomes]


async def _naive(url: str, inputs: list[Path], out: Path) -> list[str]:
    """Submit one, wait for it, download it, then the next: what most scripts do."""
    out.mkdir(parents=True)
    prompt_ids = []
    async with ComfyClient(url) as comfy:
        for path in inputs:
            image = images.normalise(path)
            name = await comfy.upload_bytes(image.png, ".png")
            result = await comfy.run(workflow.build(workflow.WorkflowOptions(), name))
            await comfy.download(result.files(workflow.GLB_OUTPUT_NODE, "3d")[0],
                                 out / f"{path.stem}.glb")
            await comfy.download(result.files(workflow.CUTOUT_NODE, "images")[0],
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
        proc, url = _start_standin(work / "comfy", args.exec_seconds, int(args.glb_mb * 1e6))
        try:
            await _wait_up(url, proc)
            results = {}
            for label, runner, tag in (("generate", _generate, 1), ("naive loop", _naive, 2)):
                inputs = _images(work / f"in-{tag}", args.jobs, tag)
                ids = await runner(url, inputs, work / f"out-{tag}")
                results[label] = await _idle_share(url, ids)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{args.jobs} jobs, {args.exec_seconds:g} s execution each, GLB {args.glb_mb:g} MB")
    for label, (idle, wall) in results.items():
        print(f"  {label:<11} server idle {idle:6.2%} of {wall:6.1f} s")
    ratio = results["naive loop"][0] / max(results["generate"][0], 1e-9)
    print(f"  naive loop idles {ratio:.0f}x longer than generate (goal for generate: < 1%)")


if __name__ == "__main__":
    asyncio.run(main())

"""The real stack on a GPU machine with no network: extensions, ComfyUI, weights, serve, bench.

    PYTHONPATH=src python3 benchmarks/gpu/harness.py run --sources DIR --work DIR --out DIR

``up`` builds the four CUDA extensions from the sources (image/build_extensions.py; or installs
``--wheels``), lays out ComfyUI at the pin with both node packs and ours, writes stand-in weights
where no real ones are given (weights/standin.py: marked, and every report says "stand-in
weights"), and starts ``trellis-box serve`` in its own session. ``bench`` waits for ready and runs
``trellis-box bench``. ``down`` stops serve. ``run`` is all three. Each step writes what it found
to ``WORK/harness.json``, which the GPU tests (``pytest -m gpu``) read to find the server.

``--sources`` holds each upstream tree under the folder pins.toml names: ``ComfyUI``, the node packs'
``dir``s, the extensions' ``dir``s, and ``TRELLIS.2-configs`` (TRELLIS.2's ``configs/``, for the
stand-ins' architectures). Python packages the machine lacks are the caller's: ``--comfy-path`` and
``--box-path`` go on ComfyUI's and trellis-box's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from trellis_box import pins
from trellis_box.weights import standin

REPO = Path(__file__).resolve().parents[2]
SHELL_NODE = Path(__file__).resolve().parent / "standin_shell"
CONFIGS_DIR = "TRELLIS.2-configs"


def log(line: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def state_path(work: Path) -> Path:
    return work / "harness.json"


def read_state(work: Path) -> dict[str, Any]:
    path = state_path(work)
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(work: Path, **fields: Any) -> dict[str, Any]:
    state = {**read_state(work), **fields}
    state_path(work).write_text(json.dumps(state, indent=2))
    return state


def gpu_archs(python: str, env: dict[str, str]) -> str:
    """The GPU's own architecture, as CUDA_ARCHS spells it (``sm_90`` on an H200)."""
    out = subprocess.run([python, "-c", "import torch; print('sm_%d%d' % torch.cuda.get_device_capability())"],
                         capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def comfy_python(work: Path, python: str, path: list[str]) -> Path:
    """A wrapper that runs ComfyUI's interpreter with its PYTHONPATH (serve's TRELLIS_BOX_PYTHON)."""
    wrapper = work / "comfy-python"
    joined = ":".join(str(Path(p).resolve()) for p in path)
    wrapper.write_text(f'#!/bin/sh\nexport PYTHONPATH="{joined}"\nexec "{python}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def install_extensions(args: argparse.Namespace, env: dict[str, str], archs: str) -> list[str]:
    ext_out = args.work / "extensions"
    if args.wheels:
        wheels = sorted(str(w) for w in args.wheels.glob("*.whl"))
        log(f"installing {len(wheels)} prebuilt extension wheels from {args.wheels}")
    else:
        log(f"building the extensions for {archs}")
        subprocess.run([args.python, str(REPO / "image" / "build_extensions.py"), "--archs", archs,
                        "--out", str(ext_out), "--sources", str(args.sources), "--work", str(args.work / "ext-work"),
                        "--json"], env={**env, "PYTHONPATH": str(REPO / "src")}, check=True,
                       stdout=(args.out / "extensions.json").open("w"))
        wheels = sorted(str(w) for w in ext_out.glob("*.whl"))
    site = args.work / "extension-site"
    subprocess.run([args.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), *wheels], check=True)
    return [str(site)]


def lay_out_comfyui(args: argparse.Namespace, stand_in: bool) -> Path:
    p = pins.load()
    root = args.work / "comfyui"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(args.sources / "ComfyUI", root, symlinks=True)
    nodes = root / "custom_nodes"
    for pack in p.node_packs.values():
        shutil.copytree(args.sources / pack.dir, nodes / pack.dir, symlinks=True)
    shutil.copytree(REPO / "src" / "trellis_box" / "comfy_nodes", nodes / "trellis_box_nodes")
    if stand_in:
        # Random weights decode a random occupancy grid (half of 64^3); this gives the later stages
        # an object's token count. Only with stand-in weights, and only in this harness.
        shutil.copytree(SHELL_NODE, nodes / "trellis_box_standin_shell")
    return root


def up(args: argparse.Namespace) -> dict[str, Any]:
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    comfy_path = list(args.comfy_path)
    archs = args.archs or gpu_archs(args.python, {**base_env, "PYTHONPATH": ":".join(map(str, comfy_path))})
    started = time.monotonic()
    comfy_path = install_extensions(args, base_env, archs) + comfy_path
    extensions_s = time.monotonic() - started

    stand_in = args.weights is None
    root = lay_out_comfyui(args, stand_in)
    python = comfy_python(args.work, args.python, comfy_path)
    started = time.monotonic()
    if stand_in:
        log("writing stand-in weights (random values, not the real models)")
        # ComfyUI's interpreter with our src on the path too (the wrapper would replace PYTHONPATH).
        done = subprocess.run([args.python, str(REPO / "benchmarks" / "gpu" / "standin_weights.py"),
                               "--comfy-root", str(root), "--configs", str(args.sources / CONFIGS_DIR),
                               "--checkpoints", args.checkpoints, "--device", args.standin_device],
                              env={**base_env, "PYTHONPATH": ":".join([str(REPO / "src"), *map(str, comfy_path)])},
                              capture_output=True, text=True)
        (args.out / "standin-weights.json").write_text(done.stdout)
        if done.returncode != 0:
            raise SystemExit(f"stand-in weights failed:\n{done.stderr[-4000:]}")
    else:
        for sub in ("models", "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4"):
            target = root / sub
            shutil.rmtree(target, ignore_errors=True)
            target.symlink_to((args.weights / sub).resolve(), target_is_directory=True)
    weights_s = time.monotonic() - started

    caches = args.work / "cache"
    env = {**base_env,
           "PYTHONPATH": ":".join([str(REPO / "src"), *map(str, args.box_path)]),
           "TRELLIS_BOX_COMFY_ROOT": str(root), "TRELLIS_BOX_PYTHON": str(python),
           "TRELLIS_BOX_STATE": str(args.work / "state.json"), "TRELLIS_BOX_PORT": str(args.port),
           "TRELLIS_BOX_LISTEN": "127.0.0.1", "TRELLIS_BOX_CUDA_ARCHS": archs,
           "TRELLIS_BOX_COMFY_ARGS": " ".join(args.comfy_arg),
           "ATTN_BACKEND": "xformers", "SPARSE_ATTN_BACKEND": "xformers",
           "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
           "TRITON_CACHE_DIR": str(caches / "triton"),
           "FLEX_GEMM_AUTOTUNE_CACHE_PATH": str(caches / "flex_gemm" / "autotune_cache.json"),
           "HF_HOME": str(caches / "hf"), "PYTHONUNBUFFERED": "1"}
    if stand_in:
        env["TRELLIS_BOX_ALLOW_STAND_IN_WEIGHTS"] = "1"
    if args.low_vram is not None:
        env["TRELLIS_BOX_LOW_VRAM"] = args.low_vram
    env["TRELLIS_BOX_WORKERS"] = args.workers
    if args.max_resolution is not None:
        env["TRELLIS_BOX_MAX_RESOLUTION"] = args.max_resolution
    if not args.warmup:
        env["TRELLIS_BOX_WARMUP"] = "0"
    for d in ("triton", "flex_gemm", "hf"):
        (caches / d).mkdir(parents=True, exist_ok=True)
    serve_log = args.out / "serve.log"
    # Its own session: it outlives this command (the GPU machine keeps such processes between calls).
    proc = subprocess.Popen([sys.executable, "-m", "trellis_box.cli.app", "serve"], env=env, cwd=root,
                            stdout=serve_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    log(f"serve started (pid {proc.pid}), log {serve_log}")
    state = save_state(args.work, url=f"http://127.0.0.1:{args.port}", comfy_root=str(root),
                       comfy_python=str(python), box_env={k: env[k] for k in ("PYTHONPATH",)},
                       serve_pid=proc.pid, serve_log=str(serve_log), archs=archs,
                       weights_mode=standin.mode(root), label=standin.LABEL if stand_in else "",
                       seconds={"extensions": round(extensions_s, 1), "weights": round(weights_s, 1)},
                       started_at=time.time())
    return state


def wait_ready(work: Path, timeout: float) -> dict[str, Any]:
    state = read_state(work)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{state['url']}/trellis-box/ready", timeout=5) as r:
                if r.status == 200:
                    ready_s = round(time.time() - state["started_at"], 1)
                    log(f"ready {ready_s} s after serve started")
                    return save_state(work, ready_after_s=ready_s)
        except OSError:
            pass
        try:
            os.kill(state["serve_pid"], 0)
        except ProcessLookupError:
            raise SystemExit(f"serve exited before ready; see {state['serve_log']}") from None
        time.sleep(2)
    raise SystemExit(f"not ready after {timeout:.0f} s; see {state['serve_log']}")


def bench(args: argparse.Namespace) -> int:
    state = wait_ready(args.work, args.ready_timeout)
    env = {**os.environ, "PYTHONPATH": state["box_env"]["PYTHONPATH"]}
    # Without --resolutions bench runs every one the server allows (its --max-resolution too).
    asked = ["--resolutions", args.resolutions] if args.resolutions else []
    cmd = [sys.executable, "-m", "trellis_box.cli.app", "bench", "--server", state["url"], *asked,
           "--images", str(args.images), "--json", *args.bench_arg]
    log(" ".join(cmd[2:]))
    out = args.out / f"bench-{args.tag}.json"
    done = subprocess.run(cmd, env=env, stdout=out.open("w"), stderr=(args.out / f"bench-{args.tag}.log").open("w"))
    log(f"bench exited {done.returncode}; results in {out}")
    return done.returncode


def down(args: argparse.Namespace) -> int:
    state = read_state(args.work)
    pid = state.get("serve_pid")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
            log(f"stopped serve (pid {pid})")
        except ProcessLookupError:
            pass
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    for name in ("up", "bench", "down", "run"):
        s = sub.add_parser(name)
        s.add_argument("--work", type=Path, required=True, help="where ComfyUI, caches and harness.json go")
        s.add_argument("--out", type=Path, default=None, help="results and logs (default: WORK/results)")
        if name in ("up", "run"):
            s.add_argument("--sources", type=Path, required=True)
            s.add_argument("--wheels", type=Path, help="prebuilt extension wheels (skips the build)")
            s.add_argument("--weights", type=Path,
                           help="a ComfyUI root holding the real weights (default: stand-in weights)")
            s.add_argument("--checkpoints", choices=("empty", "full"), default="empty",
                           help="stand-in TRELLIS.2 checkpoints without tensors or with them (see standin_weights.py)")
            # cpu: a dry run on a machine without a GPU (fake nvidia-smi, --comfy-arg=--cpu) that
            # checks the carried packages and the packs' imports before GPU time is spent.
            s.add_argument("--standin-device", default="cuda", help="where stand-in weights are built")
            s.add_argument("--archs", help="CUDA_ARCHS to build for (default: this GPU's)")
            s.add_argument("--python", default=sys.executable, help="ComfyUI's interpreter (with torch)")
            s.add_argument("--comfy-path", action="append", default=[], type=Path)
            s.add_argument("--box-path", action="append", default=[], type=Path)
            s.add_argument("--comfy-arg", action="append", default=[], help="an extra ComfyUI argument")
            s.add_argument("--port", type=int, default=8188)
            s.add_argument("--low-vram", choices=("on", "off"),
                           help="override the VRAM profile's low_vram (TRELLIS_BOX_LOW_VRAM)")
            # 1 by default: bench's per-job device peaks must not include other workers' models.
            s.add_argument("--workers", default="1",
                           help="ComfyUI workers (TRELLIS_BOX_WORKERS: a number or auto); "
                                "benchmarks/workers_throughput.py measures more than one")
            # Stand-in models load slowly (every parameter drawn at random on the CPU): a
            # benchmark that primes each worker itself need not wait for the 512 warm-up first.
            s.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                           help="serve's warm-up job before ready (TRELLIS_BOX_WARMUP)")
            s.add_argument("--max-resolution", choices=("512", "1024", "1536"),
                           help="lower the profile's top resolution (TRELLIS_BOX_MAX_RESOLUTION): "
                                "auto then sizes workers at its peak")
        if name in ("bench", "run"):
            s.add_argument("--resolutions", help="comma-separated (default: every one the server allows)")
            s.add_argument("--images", type=int, default=2)
            s.add_argument("--tag", default="run", help="names the results files")
            s.add_argument("--ready-timeout", type=float, default=900.0)
            s.add_argument("--bench-arg", action="append", default=[], help="an extra `trellis-box bench` argument")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.out = args.out or args.work / "results"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step in ("up", "run"):
        up(args)
    if args.step == "up":
        return 0
    if args.step in ("bench", "run"):
        code = bench(args)
        if args.step == "bench":
            return code
        down(args)
        return code
    return down(args)


if __name__ == "__main__":
    sys.exit(main())

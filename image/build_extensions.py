"""Build cumesh, flex_gemm, nvdiffrast and o_voxel from their pinned sources for CUDA_ARCHS.

    python image/build_extensions.py --archs "sm_80 sm_86 sm_89 sm_90" --out DIR [--sources DIR]

Run with the interpreter that has torch (ComfyUI's) and trellis_box importable (PYTHONPATH=src):
Dockerfile.trellis2 runs it with ``--build-arg EXTENSIONS=source``, the GPU harness
(benchmarks/gpu_harness.py) with ``--sources``. Standard library only (typer is not in ComfyUI's
interpreter); the work is :mod:`trellis_box.gpu.extensions`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trellis_box.cli._flags import in_flags
from trellis_box.errors import TrellisBoxError
from trellis_box.gpu import extensions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build_extensions.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", required=True, help='target GPUs, e.g. "sm_80 sm_86 sm_89 sm_90" (CUDA_ARCHS)')
    p.add_argument("--out", required=True, type=Path, help="where the stripped wheels go")
    p.add_argument("--sources", type=Path,
                   help="a folder holding each extension's sources as pins.toml [extensions] `dir` names "
                        "them (default: clone the pinned commits)")
    p.add_argument("--work", type=Path, help="scratch folder for sources and builds (default: OUT/work)")
    p.add_argument("--jobs", type=int, help="compile jobs per extension (MAX_JOBS; default: the CPU count)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="build only these extensions")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def flags(p: argparse.ArgumentParser) -> dict[str, str]:
    """Each option by its destination, as typed: the library's texts name ``sources``, the user
    typed ``--sources``."""
    return {a.dest: a.option_strings[-1] for a in p._actions if a.option_strings}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser().error("--jobs must be at least 1")
    try:
        built = extensions.build(args.out, args.archs, sources=args.sources, work=args.work, jobs=args.jobs,
                                 only=args.only, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except TrellisBoxError as exc:
        print(f"error: {in_flags(exc, flags(parser()))}", file=sys.stderr)
        return exc.exit_code
    rows = [{"name": b.name, "wheel": str(b.wheel), "seconds": round(b.seconds, 1),
             "unstripped_bytes": b.unstripped_bytes, "bytes": b.wheel.stat().st_size} for b in built]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['wheel']}: built in {r['seconds']} s, {r['unstripped_bytes']} -> {r['bytes']} bytes")
        print(f"ok: {len(rows)} wheel(s) carry GPU code for {args.archs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lay out the folder a GPU-machine call carries (that machine has no network): the pinned sources
and the wheels its image lacks, and optionally the CUDA extensions built (the import stand-ins in
``standins/`` and the calls in ``calls/`` travel with the repository).

    PYTHONPATH=src python benchmarks/gpu/carry/prepare.py --out .gpu/dev [--sources .gpu/src] \\
        [--mirrors DIR] [--extensions sm_90 --python PYTHON_WITH_TORCH]

Sources come from ``--mirrors`` (``DIR/<owner>+<name>/repo``, bare repositories) or are cloned from
the pinned URLs into it; each is exported at its pinned commit into ``--sources``, skipping blobs a partial mirror
lacks (large files no build needs). ``--extensions`` builds the four CUDA extensions with
``image/build_extensions.py`` (a CPU machine cross-compiles: nvcc and torch from PyPI, about 30
minutes on 2 cores for sm_90) into ``OUT/ext``; otherwise the harness builds them on the GPU machine
(about 5 minutes of its time). The result stays under 64 MiB: the sources the GPU machine needs as
``src.tgz``, the rest as wheels. The calls in ``calls/`` take it from there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from trellis_box import pins

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# TRELLIS.2's published configs, the stand-in weights' architectures (not a build input, so not in
# pins.toml): microsoft/TRELLIS.2 at its training-code release.
CONFIGS = pins.Repo("https://github.com/microsoft/TRELLIS.2", "5565d240c4a494caaf9ece7a554542b76ffa36d3",
                    dir="TRELLIS.2-configs", subdir="configs")
# The GPU machine runs Python 3.12 on x86_64 with manylinux wheels.
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--no-deps",
            *[a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
              for a in ("--platform", p)]]


def mirror(repo: pins.Repo, mirrors: Path) -> Path:
    owner, name = repo.repo.rstrip("/").split("/")[-2:]
    git_dir = mirrors / f"{owner}+{name}" / "repo"
    if not git_dir.is_dir():
        subprocess.run(["git", "clone", "--bare", "--quiet", repo.repo, str(git_dir)], check=True)
    return git_dir


def export(repo: pins.Repo, mirrors: Path, dest: Path) -> list[str]:
    """``repo`` at its commit (``subdir`` of it, if set) into ``dest``; returns the blobs skipped."""
    git_dir = mirror(repo, mirrors)
    listing = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", repo.commit,
                              *([repo.subdir] if repo.subdir else [])],
                             capture_output=True, check=True).stdout.split(b"\0")
    missing = []
    for record in filter(None, listing):
        meta, raw_path = record.split(b"\t", 1)
        mode, kind, sha = meta.split()
        path = raw_path.decode()
        if kind != b"blob":
            continue  # a submodule: the extension build links CuMesh's vendored Eigen instead
        blob = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", sha], capture_output=True)
        if blob.returncode != 0:
            missing.append(path)
            continue
        target = dest / (path.removeprefix(repo.subdir + "/") if repo.subdir else path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == b"120000":
            target.symlink_to(blob.stdout.decode())
        else:
            target.write_bytes(blob.stdout)
            if mode == b"100755":
                target.chmod(0o755)
    return missing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sources", type=Path, default=Path(".gpu/src"), help="the exported sources (not carried)")
    p.add_argument("--mirrors", type=Path, default=Path(".gpu/mirrors"))
    p.add_argument("--extensions", metavar="CUDA_ARCHS", help="build the CUDA extensions for these")
    p.add_argument("--python", default=sys.executable, help="an interpreter with torch, for --extensions")
    args = p.parse_args()
    pinned = pins.load()
    src = args.sources
    shutil.rmtree(src, ignore_errors=True)
    repos = [pins.Repo(pinned.comfyui.repo, pinned.comfyui.commit, dir="ComfyUI"), CONFIGS,
             *pinned.node_packs.values(), *pinned.extensions.values()]
    for repo in repos:
        missing = export(repo, args.mirrors, src / repo.dir)
        print(f"{repo.dir}: {repo.repo} @ {repo.commit[:10]}" + (f" ({len(missing)} blobs not in the mirror)"
                                                                 if missing else ""))
    # The pack's bundled Torch270 wheels are for another torch: not carried.
    shutil.rmtree(src / pinned.node_packs["trellis2"].dir / "wheels", ignore_errors=True)
    pinned_here = {"comfy": [f"transformers=={pinned.packages['transformers']}",
                             *(f"{name}=={pinned.runtime[name]}" for name in ("trimesh", "easydict", "plyfile",
                                                                              "zstandard"))],
                   "box": [f"trimesh=={pinned.runtime['trimesh']}"]}
    for wheels, also in pinned_here.items():
        folder = args.out / f"{wheels}-wheels"
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", *PLATFORM, "-d", str(folder),
                        "-r", str(HERE / f"{wheels}-wheels.txt"), *also], check=True)
    on_gpu_machine = ["ComfyUI", CONFIGS.dir, *(pack.dir for pack in pinned.node_packs.values())]
    with tarfile.open(args.out / "src.tgz", "w:gz") as tar:
        for name in on_gpu_machine:
            tar.add(src / name, arcname=f"src/{name}")
    if args.extensions:
        subprocess.run([args.python, str(REPO / "image" / "build_extensions.py"), "--archs", args.extensions,
                        "--sources", str(src), "--out", str(args.out / "ext"), "--work", str(src.parent / "ext-work"),
                        "--json"], check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    print(f"{args.out}: the folder to carry (exclude it in .git/info/exclude); the sources stay in {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

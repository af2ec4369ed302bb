"""`trellis-box models verify --full` versus `sha256sum`, side by side on the same files.

Generates a ComfyUI root holding every catalog file (about ``--gigabytes`` in total, shaped like the
real weights: eight large TRELLIS.2 checkpoints, DINOv3, RMBG-1.4, small JSON files) plus a lock,
reads every file once so both tools start from the page cache, then times each tool over the same
files and prints both times and the ratio. Goal: verify is at least as fast as sha256sum (it hashes
files in parallel threads; sha256sum hashes one file after another).

    python benchmarks/verify_speed.py [--gigabytes 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trellis_box.weights.catalog import baked_lock_path, load_catalog
from trellis_box.weights.lock import Lock, LockedFile, LockedModel, write
from trellis_box.weights.verify import hash_files

BLOCK = 1 << 20
# Share of the total per file, roughly as in the real repositories.
WEIGHTS = {".safetensors": 10, ".pth": 1}


def generate(root: Path, total: int) -> list[Path]:
    root.mkdir()
    (root / "main.py").write_text("")
    models = load_catalog()
    shares = {(m.name, f): WEIGHTS.get(Path(f).suffix, 0) for m in models for f in m.files}
    unit = total / sum(shares.values())
    seed = bytearray(hashlib.sha256(b"trellis-box").digest() * (BLOCK // 32))
    locked, paths = {}, []
    for model in models:
        files = {}
        for name in model.files:
            path = model.file_target(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            size = int(shares[(model.name, name)] * unit) or 512
            h = hashlib.sha256()
            with path.open("wb") as out:
                for i in range(0, size, BLOCK):
                    seed[:8] = i.to_bytes(8, "little")  # every block differs
                    chunk = bytes(seed[:min(BLOCK, size - i)])
                    out.write(chunk)
                    h.update(chunk)
            files[name] = LockedFile(size=size, sha256=h.hexdigest())
            paths.append(path)
        locked[model.name] = LockedModel(repo=model.repo, revision="main", commit="0" * 40, files=files)
    write(baked_lock_path(root), Lock(locked))
    return paths


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="verify-speed-", dir=args.dir))
    try:
        root = base / "comfyui"
        paths = generate(root, int(args.gigabytes * 1e9))
        size = sum(p.stat().st_size for p in paths)
        subprocess.run(["cat", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)  # warm the cache
        trellis_box = shutil.which("trellis-box") or str(Path(sys.executable).parent / "trellis-box")
        ours = timed([trellis_box, "models", "verify", "--comfy-root", str(root), "--full"])
        theirs = timed(["sha256sum", *map(str, paths)])
        start = time.perf_counter()
        hash_files(paths, workers=1)
        one_thread = time.perf_counter() - start
        print(f"{len(paths)} files, {size / 1e9:.2f} GB")
        print(f"trellis-box models verify --full: {ours:.2f} s ({size / ours / 1e6:.0f} MB/s)")
        print(f"sha256sum:                        {theirs:.2f} s ({size / theirs / 1e6:.0f} MB/s)")
        print(f"verify's hashing on one thread:   {one_thread:.2f} s (separates parallelism from hashlib)")
        print(f"ratio sha256sum / verify: {theirs / ours:.2f} (above 1: verify is faster)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

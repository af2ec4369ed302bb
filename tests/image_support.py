"""Fixtures for the image tests: CUDA shared objects compiled by nvcc, wheels made from them.

nvcc (13.0 here) compiles for chosen GPU architectures without a GPU, so the build-time
architecture check is tested against real fatbins, never against bytes we wrote ourselves.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

NVCC = "nvcc"
KERNEL = """\
__global__ void add_one(float *x) { x[threadIdx.x] += 1.0f; }
extern "C" void launch(float *x) { add_one<<<1, 32>>>(x); }
"""


def gencode(arch: int, *, ptx: bool = False, specific: bool = False) -> str:
    """``-gencode`` for a cubin (``sm_86``) or PTX (``compute_86``) of one compute capability."""
    a = "a" if specific else ""
    code = f"compute_{arch}{a}" if ptx else f"sm_{arch}{a}"
    return f"arch=compute_{arch}{a},code={code}"


def compile_cuda_so(dest: Path, gencodes: Iterable[str]) -> Path:
    """A real CUDA shared object carrying exactly the requested cubins and PTX."""
    if shutil.which(NVCC) is None:
        pytest.fail("nvcc is missing: the architecture check is tested against nvcc output")
    src = dest.with_suffix(".cu")
    src.write_text(KERNEL)
    cmd = [NVCC, "-shared", "-Xcompiler", "-fPIC", "-o", str(dest), str(src)]
    for g in gencodes:
        cmd += ["-gencode", g]
    subprocess.run(cmd, check=True, capture_output=True)
    return dest


def compile_host_so(dest: Path) -> Path:
    """A shared object with no device code (like cumesh's ``_xatlas``)."""
    src = dest.with_suffix(".c")
    src.write_text("int host_only(void) { return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(dest), str(src)], check=True,
                   capture_output=True)
    return dest


def make_wheel(dest_dir: Path, name: str, version: str, files: dict[str, Path]) -> Path:
    """A minimal installable wheel ``<name>-<version>-py3-none-any.whl`` holding ``files``."""
    dist_info = f"{name}-{version}.dist-info"
    wheel = dest_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        for member, path in files.items():
            zf.write(path, f"{name}/{member}")
        zf.writestr(f"{dist_info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist_info}/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: trellis-box-tests\nRoot-Is-Purelib: false\n"
                    "Tag: py3-none-any\n")
        zf.writestr(f"{dist_info}/top_level.txt", f"{name}\n")
        record = [*zf.namelist(), f"{dist_info}/RECORD"]
        zf.writestr(f"{dist_info}/RECORD", "".join(f"{m},,\n" for m in record))
    return wheel

"""What ``nvidia-smi`` says about the GPU, and whether the image's compiled code runs on it.

The only place that runs ``nvidia-smi`` for serve and doctor. Failures are
:class:`GpuUnavailableError`: no tool, no driver, no device, or output it cannot read.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from trellis_box.errors import GpuUnavailableError

NVIDIA_SMI = "nvidia-smi"
GPU_QUERY = ["--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"]
MIB = 1024 * 1024

GPU_FIX = (
    "start the container with GPU access: `docker run --gpus all ...` (compose: a device\n"
    "reservation with `capabilities: [gpu]`); the host needs the NVIDIA driver and the NVIDIA\n"
    "Container Toolkit (check with `nvidia-smi` on the host)"
)


@dataclass(frozen=True)
class Gpu:
    name: str
    vram_bytes: int
    compute_cap: str
    count: int = 1

    @property
    def arch(self) -> str:
        """``8.9`` -> ``sm_89``: the name ``nvcc`` and our pins use."""
        return "sm_" + self.compute_cap.replace(".", "")

    def describe(self) -> str:
        return f"{self.name}, {self.vram_bytes / 1024**3:.1f} GiB, compute capability " \
               f"{self.compute_cap} ({self.arch})"


def nvidia_smi(args: Sequence[str]) -> str:
    """Run ``nvidia-smi`` with ``args``; its stdout, or :class:`GpuUnavailableError`."""
    exe = shutil.which(NVIDIA_SMI)
    if exe is None:
        raise GpuUnavailableError(
            f"no CUDA GPU visible: {NVIDIA_SMI} is not on PATH",
            detail="The container was started without GPU access (the NVIDIA runtime mounts\n"
                   "nvidia-smi and the driver into it), or this machine has no NVIDIA driver.",
            fix=GPU_FIX,
        )
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise GpuUnavailableError(
            f"no CUDA GPU visible: {exe} did not answer within 60 s",
            detail="The driver is busy or hung.",
            fix="check the GPU on the host with `nvidia-smi`; a hung driver needs a host reboot",
        ) from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip() or "(no output)"
        raise GpuUnavailableError(
            f"no CUDA GPU visible: {exe} failed with exit code {done.returncode}",
            detail=said,
            fix=GPU_FIX,
            exit_status=done.returncode,
        )
    return done.stdout


def parse_gpus(text: str) -> list[Gpu]:
    """Rows of ``name, memory.total [MiB], compute_cap`` as printed for :data:`GPU_QUERY`."""
    gpus = []
    for line in filter(str.strip, text.splitlines()):
        # A name may hold commas; the two numbers after it never do.
        head, _, cap = line.rpartition(",")
        name, _, mib = head.rpartition(",")
        try:
            if not name.strip() or not cap.strip().replace(".", "", 1).isdigit():
                raise ValueError(line)
            gpus.append(Gpu(name.strip(), int(float(mib)) * MIB, cap.strip()))
        except ValueError:
            raise GpuUnavailableError(
                f"{NVIDIA_SMI} printed a GPU line this check cannot read",
                detail=f"{line!r} (expected: name, memory.total in MiB, compute capability)",
                fix="update the NVIDIA driver; nvidia-smi reports compute_cap from driver 510 on",
            ) from None
    return gpus


def covering_target(arch: str, built: Sequence[str]) -> str | None:
    """The built target whose code runs on ``arch``, or None.

    Every target was checked at build time to have a cubin of the same major version with an
    equal or lower minor, or PTX of an equal or lower capability; both run on a GPU of the same
    major version and an equal or higher minor (CUDA's binary compatibility).
    """
    cc = int(arch.removeprefix("sm_"))
    return max((t for t in built if int(t.removeprefix("sm_")) // 10 == cc // 10
                and int(t.removeprefix("sm_")) <= cc), key=lambda t: int(t[3:]), default=None)


def driver_version() -> str:
    return nvidia_smi(["--query-gpu=driver_version", "--format=csv,noheader"]).splitlines()[0].strip()

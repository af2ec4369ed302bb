"""The GPU's busy share and device memory while a bench runs, sampled with ``nvidia-smi``.

One ``nvidia-smi -lms`` process prints a line per interval; a thread keeps each line with the
time it arrived. This sees the GPU of the machine bench runs on, so its figures mean something
only when the server runs there too (``trellis-box bench`` says so).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from statistics import fmean

from trellis_box.gpu.probe import MIB, NVIDIA_SMI

QUERY = "--query-gpu=utilization.gpu,memory.used,memory.total"


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    busy_percent: float
    used_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Window:
    """What the samples between two moments say; ``None`` where no sample fell in between."""

    busy_share: float | None
    peak_used_bytes: int | None
    samples: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"busy_share": self.busy_share, "device_peak_used_bytes": self.peak_used_bytes,
                "samples": self.samples}


class GpuSampler:
    """``with GpuSampler() as s: ...; s.window(t0, t1)``; ``s.reason`` says why it measures nothing."""

    def __init__(self, *, gpu_index: int = 0, interval_s: float = 0.5) -> None:
        self.gpu_index, self.interval_s = gpu_index, interval_s
        self.samples: list[Sample] = []
        self.reason: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def measuring(self) -> bool:
        return self._process is not None

    def __enter__(self) -> GpuSampler:
        exe = shutil.which(NVIDIA_SMI)
        if exe is None:
            self.reason = f"not measured: no {NVIDIA_SMI} on this machine"
            return self
        self._process = subprocess.Popen(
            [exe, QUERY, "--format=csv,noheader,nounits", "-i", str(self.gpu_index),
             "-lms", str(max(int(self.interval_s * 1000), 1))],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, name="nvidia-smi sampler", daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        assert self._reader is not None
        self._reader.join(5)
        if not self.samples:
            self.reason = f"not measured: {NVIDIA_SMI} printed no sample it could read"

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            sample = _parse(line)
            if sample is not None:
                self.samples.append(sample)

    def window(self, start: float, end: float) -> Window:
        inside = [s for s in list(self.samples) if start <= s.at <= end]
        if not inside:
            return Window(None, None, 0)
        return Window(round(fmean(s.busy_percent for s in inside) / 100, 3),
                      max(s.used_bytes for s in inside), len(inside))

    @property
    def total_bytes(self) -> int | None:
        return self.samples[-1].total_bytes if self.samples else None


def _parse(line: str) -> Sample | None:
    """``37, 20480, 143771`` (percent, MiB used, MiB total); anything else (``[N/A]``) is skipped."""
    try:
        busy, used, total = (float(part) for part in line.split(","))
    except ValueError:
        return None
    return Sample(time.monotonic(), busy, int(used * MIB), int(total * MIB))

"""The GPU's busy share and device memory while a bench runs, sampled with ``nvidia-smi``, and
the CPU cores kept busy meanwhile, read from ``/proc/stat``.

One ``nvidia-smi -lms`` process prints a line per interval; a thread keeps each line with the
time it arrived. This sees the GPU of the machine bench runs on, so its figures mean something
only when the server runs there too (``trellis-box bench`` says so). The CPU figure says why the
GPU waits: post-processing runs on the CPU, and workers that share too few cores queue there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
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


PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuWindow:
    """Busy cores on average between two moments (``cores_busy`` of ``cores``), or ``None``."""

    cores_busy: float | None
    cores: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"cpu_cores_busy": self.cores_busy, "cpu_cores": self.cores}


class CpuSampler:
    """``with CpuSampler() as c: ...; c.window(t0, t1)``: the machine's busy CPU time per second
    (all processes: run it where the server runs). ``cores`` counts the cores this process may
    use, so ``taskset -c 0-3`` reads as 4. ``reason`` says why it measures nothing."""

    def __init__(self, *, interval_s: float = 0.5, stat: Path = PROC_STAT) -> None:
        self.interval_s, self.stat = interval_s, stat
        self.cores = len(os.sched_getaffinity(0))
        #: (time.monotonic(), busy seconds since boot, summed over every core)
        self.readings: list[tuple[float, float]] = []
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        if self._busy_seconds() is None:
            self.reason = f"not measured: {self.stat} is not readable here"
            return self
        self._thread = threading.Thread(target=self._loop, name="cpu sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while True:
            busy = self._busy_seconds()
            if busy is not None:
                self.readings.append((time.monotonic(), busy))
            if self._stop.wait(self.interval_s):
                return

    def _busy_seconds(self) -> float | None:
        """The first line of /proc/stat: ``cpu user nice system idle iowait irq softirq steal ...``
        in clock ticks; busy is everything but idle and iowait (guest time is inside user)."""
        try:
            fields = self.stat.read_text().split("\n", 1)[0].split()
            ticks = [int(v) for v in fields[1:9]]
        except (OSError, ValueError, IndexError):
            return None
        if fields[0] != "cpu" or len(ticks) < 5:
            return None
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    def window(self, start: float, end: float) -> CpuWindow:
        """From the last reading at or before ``start`` to the first at or after ``end`` (read
        now if the window just ended), so a job shorter than the interval still gets a figure;
        ``None`` for a window that has not ended or with no reading to bound it."""
        readings = list(self.readings)
        if not readings:
            return CpuWindow(None, self.cores)
        if readings[-1][0] < end:
            busy = self._busy_seconds()
            if busy is not None:
                readings.append((time.monotonic(), busy))
        before = next((r for r in reversed(readings) if r[0] <= start), readings[0])
        after = next((r for r in readings if r[0] >= end), None)
        if after is None or after[0] <= before[0]:
            return CpuWindow(None, self.cores)
        return CpuWindow(round((after[1] - before[1]) / (after[0] - before[0]), 2), self.cores)

"""Test helpers for ``trellis-box serve`` and ``doctor``: a fake ``nvidia-smi`` (no GPU on CI
machines), a stand-in ComfyUI root with small weights, and serve as a child process.

The fake ``nvidia-smi`` is a POSIX sh script, so it runs on the host and in Debian test containers
alike. It answers ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` for the fields
``name``, ``memory.total`` (MiB), ``compute_cap`` and ``driver_version``, one line per GPU, the
way the real tool does; ``fail=`` makes it exit 9 with the real tool's driver error.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin import install
from trellis_box.weights.catalog import load_catalog

# What the real tool prints when the driver is not reachable (container started without --gpus).
DRIVER_ERROR = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)

L40S_MIB = 46068  # nvidia-smi's memory.total of an L40S (48 GB card)
L4_MIB = 23034  # an L4 (24 GB card)
H200_MIB = 143771  # an H200: the card whose memory holds more than one worker

_SCRIPT = """#!/bin/sh
# Fake nvidia-smi written by tests/serve_support.py (there is no GPU on this machine).
if [ -n "{fail}" ]; then
    echo "{fail}"
    exit 9
fi
fields=""
for arg in "$@"; do
    case "$arg" in
        --query-gpu=*) fields="${{arg#--query-gpu=}}" ;;
    esac
done
if [ -z "$fields" ]; then
    echo "fake nvidia-smi: only --query-gpu=... is supported" >&2
    exit 2
fi
i=0
while [ "$i" -lt {gpus} ]; do
    line=""
    old_ifs=$IFS
    IFS=,
    for field in $fields; do
        case "$field" in
            name) value="{name}" ;;
            memory.total) value="{memory_mib}" ;;
            compute_cap) value="{compute_cap}" ;;
            driver_version) value="{driver}" ;;
            *) echo "Field \\"$field\\" is not a valid field to query." >&2; exit 2 ;;
        esac
        line="${{line:+$line, }}$value"
    done
    IFS=$old_ifs
    echo "$line"
    i=$((i + 1))
done
"""


def fake_nvidia_smi_script(
    *,
    name: str = "NVIDIA L40S",
    memory_mib: int = L40S_MIB,
    compute_cap: str = "8.9",
    driver: str = "550.127.05",
    gpus: int = 1,
    fail: str = "",
) -> str:
    """The script text (for ``COPY`` into a test image); see :func:`write_fake_nvidia_smi`."""
    return _SCRIPT.format(name=name, memory_mib=memory_mib, compute_cap=compute_cap,
                          driver=driver, gpus=gpus, fail=fail)


def write_fake_nvidia_smi(bin_dir: Path, **kwargs: object) -> Path:
    """Write an executable ``nvidia-smi`` into ``bin_dir`` (put it first on PATH); return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "nvidia-smi"
    path.write_text(fake_nvidia_smi_script(**kwargs))  # type: ignore[arg-type]
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP
               | stat.S_IROTH)
    return path


# ---- a ComfyUI root for serve and doctor, and serve as a child process -------------------------

def lay_out_weights(root: Path) -> list[Path]:
    """A few bytes at every path the catalog names: enough for `verify` without a lock."""
    written = []
    for model in load_catalog():
        for name in model.files:
            path = model.file_target(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"small stand-in weight\n")
            written.append(path)
    return written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeSetup:
    """Everything serve needs outside Docker: a stand-in root with weights, a fake GPU, a home."""

    base: Path
    root: Path
    bin_dir: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, **overrides: str | None) -> dict[str, str]:
        env = {**self.env}
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def fake_gpu(self, **gpu: Any) -> None:
        """Replace the fake nvidia-smi's card (``write_fake_nvidia_smi``'s arguments)."""
        write_fake_nvidia_smi(self.bin_dir, **gpu)

    def without_gpu(self) -> dict[str, str]:
        """PATH without the fake nvidia-smi (and without any real one)."""
        return self.environment(PATH=os.pathsep.join(
            p for p in self.env["PATH"].split(os.pathsep)
            if p != str(self.bin_dir) and not (Path(p) / "nvidia-smi").exists()))


def make_setup(base: Path, **gpu: Any) -> ServeSetup:
    base.mkdir(parents=True, exist_ok=True)
    root = install(base / "comfyui")
    lay_out_weights(root)
    bin_dir = base / "bin"
    write_fake_nvidia_smi(bin_dir, **gpu)
    home = base / "home"
    home.mkdir(exist_ok=True)
    state = base / "state" / "state.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY_STANDIN_")}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "TRELLIS_BOX_STATE": str(state),
        "TRELLIS_BOX_LISTEN": "127.0.0.1",
        # The stand-in's generator takes 0.5 s by default; the warm-up need not wait for it.
        "COMFY_STANDIN_EXEC_SECONDS": "0.05",
        # serve's default (auto) sizes by the cores of the machine the tests run on; one worker
        # keeps every test the same on 2 cores and on 64. Tests of auto and of several workers
        # set it themselves.
        "TRELLIS_BOX_WORKERS": "1",
    })
    return ServeSetup(base, root, bin_dir, state, env)


@pytest.fixture
def serve_setup(tmp_path: Path) -> ServeSetup:
    return make_setup(tmp_path / "serve")


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trellis_box.cli.app", *args]


class ServeProcess:
    """``trellis-box serve`` as a child; its stderr is collected line by line as it comes."""

    def __init__(self, setup: ServeSetup, *args: str, env: dict[str, str] | None = None,
                 port: int | None = None, prefix: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        cmd = cli_command("serve", "--comfy-root", str(setup.root), "--port", str(self.port), *args)
        self.proc = subprocess.Popen([*(prefix or []), *cmd], env=env or setup.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def events(self) -> list[dict[str, Any]]:
        out = []
        with self._changed:
            lines = list(self.lines)
        for line in lines:
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("logger") == "trellis-box":
                    out.append(record)
        return out

    def wait_event(self, event: str, timeout: float = 90.0, **match: Any) -> dict[str, Any]:
        """The first event named ``event`` with fields ``match``; fails at the deadline or exit."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.events():
                if record["event"] == event and all(record.get(k) == v for k, v in match.items()):
                    return record
            with self._changed:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"serve exited ({self.proc.returncode}) before event "
                                         f"{event} {match}; its stderr:\n{self.stderr}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no event {event} {match} within {timeout} s; "
                                         f"stderr:\n{self.stderr}")
                self._changed.wait(min(left, 1.0))

    def wait_exit(self, timeout: float = 90.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve still running after {timeout} s; stderr:\n{self.stderr}") \
                from None
        self._reader.join(10)
        return code

    def comfy_pid(self) -> int | None:
        started = [e for e in self.events() if e["event"] == "comfyui_started"]
        return int(started[0]["pid"]) if started else None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def close(self) -> None:
        """Never leave a serve or its ComfyUI behind, whatever the test did."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        pid = self.comfy_pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def start_serve() -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(setup: ServeSetup, *args: str, **kwargs: Any) -> ServeProcess:
        process = ServeProcess(setup, *args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()

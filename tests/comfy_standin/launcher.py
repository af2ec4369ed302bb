"""Run a stand-in ComfyUI as a child process on loopback, the way ComfyUI itself is started.

A separate process, not a thread: ComfyUI's modules (``server``, ``folder_paths``, ``nodes``)
are process globals that custom nodes import, and a restart must lose the queue and history
exactly as a real restart does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

_LISTENING = re.compile(r"To see the GUI go to: http://127\.0\.0\.1:(\d+)")


class StandinError(RuntimeError):
    """The stand-in did not start or did not accept a change; the message quotes its log."""


class StandinServer:
    """One stand-in process: ``url``, ``root``, ``start``/``stop``/``restart``, ``set_faults``.

    ``options`` are stand-in options by field name (``exec_seconds``, ``post_seconds``, ``glb_bytes``,
    ``fail_node``, ``fail_kind``, ``fail_message``, ``fail_when``, ``drop_ws_after``,
    ``view_delay``, ``queue_reply_delay``, ``gpu_name``, ``vram_bytes``, ``startup_delay``, ``progress_steps``),
    passed as ``--standin-*`` flags.
    """

    def __init__(self, root: Path, *, options: dict[str, Any] | None = None,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 port: int = 0) -> None:
        self.root = Path(root)
        self.options = dict(options or {})
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.port = port
        self.log_path = self.root / "standin.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    def command(self) -> list[str]:
        web_root = self.root / "web"
        web_root.mkdir(exist_ok=True)
        # Relative "main.py" with the root as working directory, as ComfyUI is usually started.
        cmd = [sys.executable, "main.py", "--listen", "127.0.0.1",
               "--port", str(self.port), "--front-end-root", str(web_root),
               "--disable-auto-launch"]
        for name, value in self.options.items():
            if value is not None:
                cmd += [f"--standin-{name.replace('_', '-')}", str(value)]
        return cmd + self.extra_args

    def start(self, timeout: float = 60.0) -> StandinServer:
        if self.process is not None and self.process.poll() is None:
            raise StandinError(f"stand-in at {self.url} is already running")
        log = self.log_path.open("ab")
        offset = log.tell()
        self.process = subprocess.Popen(
            self.command(), cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_text(offset))
            if match:
                self.port = int(match.group(1))
                return self
            if self.process.poll() is not None:
                raise StandinError(f"stand-in exited with {self.process.returncode}:\n"
                                   f"{self.log_text(offset)[-4000:]}")
            time.sleep(0.05)
        self.stop()
        raise StandinError(f"stand-in did not listen within {timeout:.0f}s:\n"
                           f"{self.log_text(offset)[-4000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL): running prompts die with it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None

    def restart(self, **option_changes: Any) -> StandinServer:
        """Stop and start again on the same port and root; queue and history are lost."""
        self.stop()
        self.options.update(option_changes)
        return self.start()

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change options of the running server (``None`` restores a default)."""
        request = urllib.request.Request(
            f"{self.url}/standin/options", data=json.dumps(changes).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                current: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as e:
            raise StandinError(f"stand-in refused options {changes}: {e.read().decode()}") from e
        self.options.update(changes)
        return current

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

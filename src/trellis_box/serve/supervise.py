"""The container's entrypoint: preflight, start and supervise ComfyUI, mark it ready.

Phases (written to the state file our node pack serves, docs/interfaces.md)::

    preflight -> starting -> registering -> warming -> ready
         \\___________\\____________\\___________\\_____-> failed

- preflight: :mod:`trellis_box.serve.preflight`; a failure stops here, ComfyUI never starts.
- starting: ComfyUI runs in its own process group; serve waits until it answers on its port.
- registering: ``/object_info`` must list every node class the workflow uses. ComfyUI loads
  every custom node before it opens its port, so a class missing from the first answer is never
  coming: serve fails at once, naming the class and its pack.
- warming: the default workflow at 512 on a bundled image, with the same loader inputs as the
  default workflow, so the models it loads stay loaded for the first real request.
- ready: ``ready: true`` in the state file; then serve only supervises.

serve may be PID 1: it handles SIGTERM and SIGINT itself (the kernel drops signals PID 1 has no
handler for), forwards them to ComfyUI's process group, kills the group after
``stop_grace`` seconds, reaps every child that exits, and exits with ComfyUI's status
(128 + n when a signal ended it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from trellis_box import pins
from trellis_box.comfyui.client import ComfyClient, Timeouts
from trellis_box.comfyui.workflow import WorkflowOptions, build, recorded_object_info
from trellis_box.errors import (
    ComfyExitedError,
    ComfyStartTimeoutError,
    ComfyUnreachableError,
    NodeClassesMissingError,
    TrellisBoxError,
    WarmupFailedError,
)
from trellis_box.gpu.profiles import Profile
from trellis_box.serve.preflight import Findings, StepResult
from trellis_box.serve.preflight import run as run_preflight
from trellis_box.serve.settings import ServeSettings
from trellis_box.serve.warmup import WARMUP_SUBFOLDER, run_test_job

#: Event sink: ``emit("phase", phase="warming", ...)``; the CLI turns each into one JSON line.
Emit = Callable[..., None]
#: Work to run once ComfyUI is ready (an array child's shard); returns the exit code.
Job = Callable[[], Awaitable[int]]

POLL_SECONDS = 0.25
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Phase(StrEnum):
    PREFLIGHT = "preflight"
    STARTING = "starting"
    REGISTERING = "registering"
    WARMING = "warming"
    READY = "ready"
    FAILED = "failed"


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived before ComfyUI ran; a BaseException so no ``except Exception``
    in a check swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def required_classes() -> list[str]:
    """Every node class the workflow uses, read off the graph ``workflow.build`` makes."""
    graph = build(WorkflowOptions(), "warmup.png")
    return sorted({node["class_type"] for node in graph.values()})


# ---- the state file ----------------------------------------------------------------------------


class StateFile:
    """The JSON file our node pack's routes read; every write is whole (temp file + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict[str, Any] = {
            "phase": Phase.PREFLIGHT.value, "ready": False, "profile": None,
            "allowed_resolutions": [], "pins": dataclasses.asdict(pins.load()), "error": None,
            # "real" or "stand-in" once the weights step ran (weights/standin.py); every report reads it.
            "weights_mode": None,
        }

    def update(self, **fields: Any) -> None:
        self.state.update(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.state, fh, indent=2)
            # Readable by ComfyUI whatever our umask: it may run as another user in tests.
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def set_profile(self, gpu_name: str, profile: Profile) -> None:
        self.update(
            profile={"gpu_name": gpu_name, "vram_bytes": profile.vram_bytes,
                     "low_vram": profile.low_vram, "max_resolution": profile.max_resolution},
            allowed_resolutions=list(profile.allowed_resolutions),
        )


# ---- supervision -------------------------------------------------------------------------------


def comfy_command(settings: ServeSettings) -> list[str]:
    root = settings.comfy_root
    cmd = [settings.python, str(root / "main.py"), "--listen", settings.listen,
           "--port", str(settings.port)]
    # Only when moved: a plain ComfyUI command line stays plain.
    if settings.output_dir != root / "output":
        cmd += ["--output-directory", str(settings.output_dir)]
    if settings.input_dir != root / "input":
        cmd += ["--input-directory", str(settings.input_dir)]
    return cmd + list(settings.comfy_args)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Until ComfyUI runs, SIGTERM/SIGINT end serve at once (a running check is killed with it)."""

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """In the child before exec: SIGKILL it when serve dies, even by SIGKILL.

    In a container the runtime ends every process with PID 1; elsewhere (a shell, a test, a
    supervisor without process groups) ComfyUI would go on holding the port and the GPU.
    """
    if not sys.platform.startswith("linux"):
        return None

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # serve died before the request was in place
            os.kill(os.getpid(), signal.SIGKILL)

    return arrange


class Server:
    """One run of ``trellis-box serve``: ``Server(settings, emit).run()`` returns the exit code
    (errors before ComfyUI is ready are raised, after marking the state file ``failed``)."""

    def __init__(self, settings: ServeSettings, emit: Emit) -> None:
        self.settings = settings
        self.emit = emit
        self.state = StateFile(settings.state_path)
        self.phase = Phase.PREFLIGHT
        self._phase_started = time.monotonic()
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited: asyncio.Future[int] | None = None
        self._stop_signal: asyncio.Future[int] | None = None

    # ---- phases ----

    def _enter(self, phase: Phase, **fields: Any) -> None:
        now = time.monotonic()
        self.emit("phase_done", phase=self.phase.value,
                  duration_s=round(now - self._phase_started, 3))
        self.phase, self._phase_started = phase, now
        self.state.update(phase=phase.value, **fields)
        self.emit("phase", phase=phase.value)

    def _fail(self, error: BaseException) -> None:
        text = str(error)
        self.emit("failed", phase=self.phase.value, error=text,
                  reference=getattr(error, "reference", type(error).__name__))
        self.phase = Phase.FAILED
        with contextlib.suppress(OSError):
            self.state.update(phase=Phase.FAILED.value, ready=False, error=text)

    # ---- entry point ----

    def run(self, then: Job | None = None) -> int:
        """Serve until ComfyUI exits or a signal stops it; return the process exit code.

        With ``then``: run it once ComfyUI is ready, stop ComfyUI when it returns and exit with
        its code. ComfyUI exiting meanwhile is the worker breaking: never exit code 0.
        """
        with _stop_on_signals():
            try:
                # A restarted container must not serve the last run's "ready". If the state
                # directory is not writable, the directories step says so properly.
                with contextlib.suppress(OSError):
                    self.state.update()
                self.emit("phase", phase=Phase.PREFLIGHT.value)
                try:
                    found = self._preflight()
                except Exception as exc:  # known or not, the state must say "failed"
                    self._fail(exc)
                    raise
                return asyncio.run(self._supervise(found, then))
            except Stopped as stop:
                self.emit("stopped", signal=str(stop), phase=self.phase.value)
                return stop.exit_code

    def _preflight(self) -> Findings:
        def on_step(result: StepResult) -> None:
            self.emit("step", phase=Phase.PREFLIGHT.value, **result.as_dict())

        found, _ = run_preflight(self.settings, on_step=on_step)
        assert found.gpu is not None and found.profile is not None
        self.state.set_profile(found.gpu.name, found.profile)
        self.state.update(weights_mode=found.weights_mode)
        return found

    async def _supervise(self, found: Findings, then: Job | None = None) -> int:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()
        stop: asyncio.Future[int] = loop.create_future()
        self._exited, self._stop_signal = exited, stop
        # Handlers before the spawn: a ComfyUI that dies at once, or a stop, is still seen.
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self._on_signal, s)
        ready: asyncio.Future[None] | None = None
        try:
            self._start(found)
            ready = asyncio.ensure_future(self._become_ready(found))
            first: set[asyncio.Future[Any]] = {ready, exited, stop}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if not (stop.done() or exited.done()) and ready.exception() is not None:
                error = ready.exception()
                assert error is not None
                self._fail(error)
                await self._stop_comfy(signal.SIGTERM)
                raise error
            if then is not None and not (stop.done() or exited.done()):
                return await self._run_then(then, exited, stop)
            # Ready (or interrupted on the way): from here on, only supervise.
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                self.emit("stopping", signal=signal.Signals(stop.result()).name,
                          phase=self.phase.value)
                await self._stop_comfy(stop.result())
                # A job stopped before it ran must not look done (Batch would not retry it).
                return self._exit_code() if then is None else 128 + stop.result()
            return self._comfy_exited_by_itself()
        finally:
            if ready is not None and not ready.done():
                ready.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ready
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(s)
            if self._proc is not None and not exited.done():
                # Leaving on an unexpected error: never leave ComfyUI running behind us.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    async def _run_then(self, then: Job, exited: asyncio.Future[int], stop: asyncio.Future[int]) -> int:
        job = asyncio.ensure_future(then())
        try:
            await asyncio.wait({job, exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not job.done():
                # A stop or ComfyUI's exit: the job withdraws what it queued and keeps what it
                # finished (a retried child resumes from there).
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)
        if stop.done():
            self.emit("stopping", signal=signal.Signals(stop.result()).name, phase=self.phase.value)
            await self._stop_comfy(stop.result())
            return 128 + stop.result()
        if exited.done():
            return self._comfy_exited_by_itself() or 1
        self.emit("stopping", reason="job finished", phase=self.phase.value)
        await self._stop_comfy(signal.SIGTERM)
        return job.result()

    def _start(self, found: Findings) -> None:
        cmd = comfy_command(self.settings)
        self._enter(Phase.STARTING)
        self.emit("comfyui", command=cmd, cwd=str(self.settings.comfy_root))
        # Its own process group: a terminal's Ctrl-C reaches serve only, which forwards it once,
        # and a stop reaches every process ComfyUI started.
        self._proc = subprocess.Popen(cmd, cwd=self.settings.comfy_root, env=found.env,
                                      stdin=subprocess.DEVNULL, process_group=0,
                                      preexec_fn=_die_with_parent(os.getpid()))
        self.emit("comfyui_started", pid=self._proc.pid)

    def _on_signal(self, signum: int) -> None:
        assert self._stop_signal is not None
        if not self._stop_signal.done():
            self._stop_signal.set_result(signum)
        elif self._proc is not None:
            # A second signal while stopping: do not wait out the grace period.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def _reap(self) -> None:
        """Collect every exited child (as PID 1, orphans are ours too); note ComfyUI's status."""
        assert self._exited is not None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self._proc is not None and pid == self._proc.pid and not self._exited.done():
                self._proc.returncode = os.waitstatus_to_exitcode(status)
                self._exited.set_result(self._proc.returncode)

    async def _stop_comfy(self, signum: int) -> None:
        """Forward ``signum`` to ComfyUI's group; SIGKILL it after ``stop_grace`` seconds."""
        assert self._proc is not None and self._exited is not None
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signum)
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), self.settings.stop_grace)
            except TimeoutError:
                self.emit("killing", after_s=self.settings.stop_grace)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                await self._exited
        self.emit("comfyui_exited", status=self._exit_code())

    def _exit_code(self) -> int:
        assert self._exited is not None
        status = self._exited.result()
        return 128 - status if status < 0 else status

    def _comfy_exited_by_itself(self) -> int:
        code = self._exit_code()
        self.emit("comfyui_exited", status=code, phase=self.phase.value)
        if self.phase is Phase.READY:
            with contextlib.suppress(OSError):
                self.state.update(phase=Phase.FAILED.value, ready=False,
                                  error=f"ComfyUI exited with status {code}")
            return code
        error = ComfyExitedError(
            f"ComfyUI exited with status {code} while {self.phase.value}; it never became ready",
            detail="Its own log, above this message, says why.",
            fix="fix what ComfyUI's log reports; `trellis-box doctor` checks the GPU, weights and "
                "node packs",
            status=code, phase=self.phase.value,
        )
        self._fail(error)
        raise error

    # ---- readiness ----

    async def _become_ready(self, found: Findings) -> None:
        assert found.profile is not None
        s = self.settings
        timeouts = Timeouts(connect=5.0, request=60.0)
        async with ComfyClient(s.base_url, timeouts=timeouts) as client:
            await self._until_answering(client)
            self._enter(Phase.REGISTERING)
            await self._check_classes(client)
            if s.warmup:
                self._enter(Phase.WARMING)
                await self._warm_up(client, low_vram=found.profile.low_vram)
            else:
                self.emit("warmup_skipped", reason="disabled (--no-warmup / TRELLIS_BOX_WARMUP=0)")
        self._enter(Phase.READY, ready=True, error=None)

    async def _until_answering(self, client: ComfyClient) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.start_timeout
        while True:
            try:
                await client.http.system_stats()
                return
            except ComfyUnreachableError as exc:
                if loop.time() >= deadline:
                    raise ComfyStartTimeoutError(
                        f"ComfyUI did not answer on {self.settings.base_url} within "
                        f"{self.settings.start_timeout:g} s",
                        detail=exc.detail,
                        fix="read ComfyUI's log above; a slow disk or first start may need a larger "
                            "TRELLIS_BOX_START_TIMEOUT",
                        url=self.settings.base_url,
                    ) from exc
            await asyncio.sleep(POLL_SECONDS)

    async def _check_classes(self, client: ComfyClient) -> None:
        listed = await client.http.object_info()
        needed = required_classes()
        missing = [c for c in needed if c not in listed]
        if missing:
            recorded = recorded_object_info()
            packs = sorted({str(recorded.get(c, {}).get("python_module", "?")).removeprefix(
                "custom_nodes.") for c in missing})
            raise NodeClassesMissingError(
                f"ComfyUI lacks node classes the workflow needs: {', '.join(missing)}",
                detail=f"They come from {', '.join(packs)}. ComfyUI registers every custom node before "
                       "it opens its port, so they are not coming; look for IMPORT FAILED in its log "
                       "above.",
                fix="rebuild the image (it installs every pinned node pack), or remove a volume "
                    f"mounted over {self.settings.comfy_root / 'custom_nodes'}",
                missing=missing,
            )
        self.emit("registered", node_classes=len(needed))

    async def _warm_up(self, client: ComfyClient, *, low_vram: bool) -> None:
        started = time.monotonic()
        try:
            result = await run_test_job(client, timeout=self.settings.warmup_timeout,
                                        low_vram=low_vram)
        except WarmupFailedError:
            raise
        except TrellisBoxError as exc:
            raise WarmupFailedError(
                "warm-up job failed; the server will not report ready",
                detail=str(exc),
                fix="read ComfyUI's log above for the node's traceback, and run `trellis-box doctor` "
                    "on this machine (GPU, driver, weights, node packs)",
                note="--no-warmup (TRELLIS_BOX_WARMUP=0) starts without it; the first request then "
                     "loads the models",
                cause=exc.reference,
            ) from exc
        shutil.rmtree(self.settings.output_dir / WARMUP_SUBFOLDER, ignore_errors=True)
        self.emit("warmed", prompt_id=result.prompt_id, duration_s=round(time.monotonic() - started, 3),
                  node_seconds={k: round(v, 3) for k, v in result.node_seconds.items()})

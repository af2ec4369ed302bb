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
    #: A worker died after ready and is starting again: not ready until it is warm.
    RESTARTING = "restarting"
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
                     "low_vram": profile.low_vram, "max_resolution": profile.max_resolution,
                     "lowered_from": profile.lowered_from},
            allowed_resolutions=list(profile.allowed_resolutions),
        )


# ---- supervision -------------------------------------------------------------------------------


def comfy_command(settings: ServeSettings, *, port: int | None = None,
                  temp_dir: Path | None = None) -> list[str]:
    root = settings.comfy_root
    cmd = [settings.python, str(root / "main.py"), "--listen", settings.listen,
           "--port", str(settings.port if port is None else port)]
    # Only when moved: a plain ComfyUI command line stays plain.
    if settings.output_dir != root / "output":
        cmd += ["--output-directory", str(settings.output_dir)]
    if settings.input_dir != root / "input":
        cmd += ["--input-directory", str(settings.input_dir)]
    if temp_dir is not None:
        cmd += ["--temp-directory", str(temp_dir)]
    return cmd + list(settings.comfy_args)


@dataclasses.dataclass
class Worker:
    """One ComfyUI process of the container. Worker 0 listens on the public port."""

    index: int
    port: int
    url: str
    proc: subprocess.Popen[bytes] | None = None
    exited: asyncio.Future[int] | None = None
    ready: bool = False
    restarts: int = 0

    def temp_dir(self, settings: ServeSettings) -> Path | None:
        """ComfyUI empties its temp folder when it starts: a restarted worker must not empty
        another's. Worker 0 keeps ComfyUI's own, so a single worker's command line stays plain."""
        return settings.state_path.parent / f"worker-{self.index}" if self.index else None

    def exited_done(self) -> bool:
        return self.exited is not None and self.exited.done()

    def as_state(self) -> dict[str, Any]:
        return {"index": self.index, "port": self.port, "ready": self.ready,
                "restarts": self.restarts}


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
        self.workers: list[Worker] = []
        self._stop_signal: asyncio.Future[int] | None = None
        #: When the first stop signal came: the ``exited`` event says how long the stop took.
        self._signalled_at: float | None = None

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

    def _publish_workers(self, **fields: Any) -> None:
        with contextlib.suppress(OSError):
            self.state.update(workers=[w.as_state() for w in self.workers], **fields)

    # ---- entry point ----

    def run(self, then: Job | None = None) -> int:
        """Serve until a worker gives up or a signal stops it; return the process exit code.

        With ``then``: run it once every worker is ready, stop them when it returns and exit with
        its code. A worker exiting meanwhile is the job's server breaking: never exit code 0.
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
                code = asyncio.run(self._supervise(found, then))
            except Stopped as stop:
                self.emit("stopped", signal=str(stop), phase=self.phase.value)
                return stop.exit_code
        # The last line serve writes: a stop's length read from serve itself, whatever reaps it.
        self.emit("exited", status=code, phase=self.phase.value,
                  stop_s=None if self._signalled_at is None
                  else round(time.monotonic() - self._signalled_at, 3))
        return code

    def _preflight(self) -> Findings:
        def on_step(result: StepResult) -> None:
            self.emit("step", phase=Phase.PREFLIGHT.value, **result.as_dict())

        found, _ = run_preflight(self.settings, on_step=on_step)
        assert found.gpu is not None and found.profile is not None
        self.state.set_profile(found.gpu.name, found.profile)
        self.state.update(weights_mode=found.weights_mode)
        return found

    def _exits(self) -> set[asyncio.Future[Any]]:
        return {w.exited for w in self.workers if w.exited is not None}

    def _first_exited(self) -> Worker | None:
        return next((w for w in self.workers if w.exited is not None and w.exited.done()), None)

    async def _supervise(self, found: Findings, then: Job | None = None) -> int:
        assert found.profile is not None
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[int] = loop.create_future()
        self._stop_signal = stop
        count = found.workers
        self.workers = [Worker(i, port, self.settings.url_for(port))
                        for i, port in enumerate(self.settings.worker_ports(count))]
        self._publish_workers()
        self.emit("workers", count=count, ports=[w.port for w in self.workers],
                  requested=self.settings.workers or "auto")
        # Handlers before the spawn: a ComfyUI that dies at once, or a stop, is still seen.
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self._on_signal, s)
        ready: asyncio.Future[None] | None = None
        try:
            self._enter(Phase.STARTING)
            for worker in self.workers:
                self._start(worker, found)
            ready = asyncio.ensure_future(self._become_ready(found))
            first: set[asyncio.Future[Any]] = {ready, stop, *self._exits()}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            exited = self._first_exited()
            if not stop.done() and exited is None and ready.exception() is not None:
                error = ready.exception()
                assert error is not None
                self._fail(error)
                await self._stop_all(signal.SIGTERM)
                raise error
            if stop.done():
                return await self._stopped(stop.result(), then)
            if exited is not None:
                return await self._gave_up(exited)
            if then is not None:
                return await self._run_then(then, stop)
            return await self._keep_running(found, stop)
        finally:
            if ready is not None and not ready.done():
                ready.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ready
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(s)
            for worker in self.workers:
                if worker.proc is not None and worker.exited is not None and not worker.exited.done():
                    # Leaving on an unexpected error: never leave a ComfyUI running behind us.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(worker.proc.pid, signal.SIGKILL)
                    worker.proc.wait()

    async def _stopped(self, signum: int, then: Job | None) -> int:
        self.emit("stopping", signal=signal.Signals(signum).name, phase=self.phase.value)
        await self._stop_all(signum)
        # A job stopped before it ran must not look done (Batch would not retry it).
        return self._exit_code(self.workers[0]) if then is None else 128 + signum

    async def _keep_running(self, found: Findings, stop: asyncio.Future[int]) -> int:
        """Every worker is ready: restart one that dies (with its warm-up; readiness says
        ``restarting`` meanwhile) until it has died more than ``worker_restarts`` times."""
        restarting: dict[asyncio.Future[None], Worker] = {}
        try:
            while True:
                await asyncio.wait({stop, *self._exits(), *restarting},
                                   return_when=asyncio.FIRST_COMPLETED)
                if stop.done():
                    return await self._stopped(stop.result(), None)
                for task in [t for t in restarting if t.done()]:
                    worker = restarting.pop(task)
                    if task.exception() is not None and not worker.exited_done():
                        error = task.exception()
                        assert error is not None
                        self._fail(error)
                        await self._stop_all(signal.SIGTERM)
                        return 1
                    if not worker.exited_done():
                        worker.ready = True
                        self.emit("worker_ready", worker=worker.index)
                for worker in [w for w in self.workers if w.exited_done()]:
                    for task in [t for t, w in restarting.items() if w is worker]:
                        task.cancel()
                        restarting.pop(task)
                    code = self._exit_code(worker)
                    self.emit("comfyui_exited", status=code, worker=worker.index,
                              phase=self.phase.value)
                    if worker.restarts >= self.settings.worker_restarts:
                        return await self._gave_up(worker)
                    worker.restarts += 1
                    worker.ready = False
                    self.emit("worker_restarting", worker=worker.index, status=code,
                              restart=worker.restarts, of=self.settings.worker_restarts)
                    self._start(worker, found)
                    restarting[asyncio.ensure_future(self._worker_ready(worker, found))] = worker
                if restarting:
                    self._set_readiness(Phase.RESTARTING, ready=False,
                                        error=f"{sum(not w.ready for w in self.workers)} of "
                                              f"{len(self.workers)} workers restarting")
                else:
                    self._set_readiness(Phase.READY, ready=True, error=None)
        finally:
            for task in restarting:
                task.cancel()
            await asyncio.gather(*restarting, return_exceptions=True)

    def _set_readiness(self, phase: Phase, **fields: Any) -> None:
        if phase is not self.phase:
            # One write with the workers: whoever reads the state on seeing the phase's event
            # finds the workers that made it.
            self._enter(phase, workers=[w.as_state() for w in self.workers], **fields)
        else:
            self._publish_workers(**fields)

    async def _run_then(self, then: Job, stop: asyncio.Future[int]) -> int:
        job = asyncio.ensure_future(then())
        try:
            await asyncio.wait({job, stop, *self._exits()}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not job.done():
                # A stop or ComfyUI's exit: the job withdraws what it queued and keeps what it
                # finished (a retried child resumes from there).
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)
        if stop.done():
            return await self._stopped(stop.result(), then)
        exited = self._first_exited()
        if exited is not None:
            return await self._gave_up(exited) or 1
        self.emit("stopping", reason="job finished", phase=self.phase.value)
        await self._stop_all(signal.SIGTERM)
        return job.result()

    def _start(self, worker: Worker, found: Findings) -> None:
        temp = worker.temp_dir(self.settings)
        if temp is not None:
            temp.mkdir(parents=True, exist_ok=True)
        cmd = comfy_command(self.settings, port=worker.port, temp_dir=temp)
        self.emit("comfyui", command=cmd, cwd=str(self.settings.comfy_root), worker=worker.index)
        worker.exited = asyncio.get_running_loop().create_future()
        # Its own process group: a terminal's Ctrl-C reaches serve only, which forwards it once,
        # and a stop reaches every process ComfyUI started.
        worker.proc = subprocess.Popen(cmd, cwd=self.settings.comfy_root, env=found.env,
                                       stdin=subprocess.DEVNULL, process_group=0,
                                       preexec_fn=_die_with_parent(os.getpid()))
        self.emit("comfyui_started", pid=worker.proc.pid, worker=worker.index, port=worker.port)

    def _on_signal(self, signum: int) -> None:
        assert self._stop_signal is not None
        if not self._stop_signal.done():
            self._signalled_at = time.monotonic()
            self._stop_signal.set_result(signum)
            return
        # A second signal while stopping: do not wait out the grace period.
        for worker in self.workers:
            if worker.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(worker.proc.pid, signal.SIGKILL)

    def _reap(self) -> None:
        """Collect every exited child (as PID 1, orphans are ours too); note each worker's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for worker in self.workers:
                if (worker.proc is not None and pid == worker.proc.pid
                        and worker.exited is not None and not worker.exited.done()):
                    worker.proc.returncode = os.waitstatus_to_exitcode(status)
                    worker.exited.set_result(worker.proc.returncode)

    async def _stop_all(self, signum: int) -> None:
        """Forward ``signum`` to every worker's group at once; SIGKILL those still running after
        ``stop_grace`` seconds (all workers share the one grace: docker stop stays under 2 s)."""
        running = [w for w in self.workers
                   if w.proc is not None and w.exited is not None and not w.exited.done()]
        for worker in running:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.proc.pid, signum)
        futures = [w.exited for w in running if w.exited is not None]
        if futures:
            _, late = await asyncio.wait([asyncio.shield(f) for f in futures],
                                         timeout=self.settings.stop_grace)
            if late:
                self.emit("killing", after_s=self.settings.stop_grace)
                for worker in running:
                    assert worker.proc is not None
                    if not worker.exited_done():
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(worker.proc.pid, signal.SIGKILL)
                await asyncio.gather(*futures)
        for worker in running:
            self.emit("comfyui_exited", status=self._exit_code(worker), worker=worker.index)

    @staticmethod
    def _exit_code(worker: Worker) -> int:
        assert worker.exited is not None
        status: int = worker.exited.result()
        return 128 - status if status < 0 else status

    async def _gave_up(self, worker: Worker) -> int:
        """A worker exited on its own and is not restarted: stop the others, fail with its status."""
        code = self._exit_code(worker)
        self.emit("comfyui_exited", status=code, worker=worker.index, phase=self.phase.value)
        if self.phase in (Phase.READY, Phase.RESTARTING):
            with contextlib.suppress(OSError):
                self.state.update(phase=Phase.FAILED.value, ready=False,
                                  error=self._exit_text(worker, code))
            self.phase = Phase.FAILED
            await self._stop_all(signal.SIGTERM)
            # Never 0: the container must read unhealthy, not done.
            return code or 1
        error = ComfyExitedError(
            f"{self._exit_text(worker, code)} while {self.phase.value}; it never became ready",
            detail="Its own log, above this message, says why.",
            fix="fix what ComfyUI's log reports; `trellis-box doctor` checks the GPU, weights and "
                "node packs",
            status=code, phase=self.phase.value, worker=worker.index,
        )
        self._fail(error)
        await self._stop_all(signal.SIGTERM)
        raise error

    def _exit_text(self, worker: Worker, code: int) -> str:
        who = "ComfyUI" if len(self.workers) == 1 else f"ComfyUI worker {worker.index} (port {worker.port})"
        return f"{who} exited with status {code}"

    # ---- readiness ----

    async def _become_ready(self, found: Findings) -> None:
        """Every worker answering, registered and warm, each phase for all of them at once."""
        assert found.profile is not None
        s = self.settings
        timeouts = Timeouts(connect=5.0, request=60.0)
        async with contextlib.AsyncExitStack() as opened:
            clients = [await opened.enter_async_context(ComfyClient(w.url, timeouts=timeouts))
                       for w in self.workers]
            await asyncio.gather(*(self._until_answering(c) for c in clients))
            self._enter(Phase.REGISTERING)
            await asyncio.gather(*(self._check_classes(c) for c in clients))
            if s.warmup:
                self._enter(Phase.WARMING)
                await asyncio.gather(*(self._warm_up(c, w, low_vram=found.profile.low_vram)
                                       for c, w in zip(clients, self.workers, strict=True)))
            else:
                self.emit("warmup_skipped", reason="disabled (TRELLIS_BOX_WARMUP=0 / `warmup`)")
        for worker in self.workers:
            worker.ready = True
        self._publish_workers()
        self._enter(Phase.READY, ready=True, error=None)

    async def _worker_ready(self, worker: Worker, found: Findings) -> None:
        """One restarted worker answering, registered and warm."""
        assert found.profile is not None
        async with ComfyClient(worker.url, timeouts=Timeouts(connect=5.0, request=60.0)) as client:
            await self._until_answering(client)
            await self._check_classes(client)
            if self.settings.warmup:
                await self._warm_up(client, worker, low_vram=found.profile.low_vram)

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
                        f"ComfyUI did not answer on {client.base_url} within "
                        f"{self.settings.start_timeout:g} s",
                        detail=exc.detail,
                        fix="read ComfyUI's log above; a slow disk or first start may need a larger "
                            "TRELLIS_BOX_START_TIMEOUT",
                        url=client.base_url,
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

    async def _warm_up(self, client: ComfyClient, worker: Worker, *, low_vram: bool) -> None:
        started = time.monotonic()
        folder = f"{WARMUP_SUBFOLDER}/worker-{worker.index}"
        try:
            result = await run_test_job(client, timeout=self.settings.warmup_timeout,
                                        low_vram=low_vram, folder=folder)
        except WarmupFailedError:
            raise
        except TrellisBoxError as exc:
            raise WarmupFailedError(
                "warm-up job failed; the server will not report ready",
                detail=str(exc),
                fix="read ComfyUI's log above for the node's traceback, and run `trellis-box doctor` "
                    "on this machine (GPU, driver, weights, node packs)",
                note="TRELLIS_BOX_WARMUP=0 (`warmup`) starts without it; the first request then "
                     "loads the models",
                cause=exc.reference,
            ) from exc
        # Each worker its own folder: one worker's clean-up never races another's warm-up.
        shutil.rmtree(self.settings.output_dir / folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.settings.output_dir / WARMUP_SUBFOLDER).rmdir()
        self.emit("warmed", worker=worker.index, prompt_id=result.prompt_id,
                  duration_s=round(time.monotonic() - started, 3),
                  node_seconds={k: round(v, 3) for k, v in result.node_seconds.items()})

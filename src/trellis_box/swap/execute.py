"""``swap``: run one GPU container at a time, safely.

Observe (Docker and each running container's readiness), decide with the pure
:func:`trellis_box.swap.plan.plan`, then do each step. A failure once anything was stopped or
started rolls back (:func:`trellis_box.swap.plan.rollback`): the target is stopped and the container
that served before is started again, and the error carries the target's last log lines.

A container counts as started only once it has stayed running and ready for its settle time: one
that answers ready and dies a moment later is rolled back, never reported as a success.

Fix texts name parameters in backticks (`force`, `drain_timeout`): the CLI spells them as flags.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from trellis_box.comfyui.client import QueueState
from trellis_box.errors import (
    ComfyResponseError,
    ComfyUnreachableError,
    DrainTimeoutError,
    SwapFailedError,
    SwapRefusedError,
    TrellisBoxError,
)
from trellis_box.swap.config import ContainerSpec, GpuConfig
from trellis_box.swap.docker_ops import DockerOps, Observed
from trellis_box.swap.lock import swap_lock
from trellis_box.swap.plan import (
    ContainerState,
    Create,
    CutOff,
    Drain,
    Remove,
    Start,
    Step,
    Stop,
    SwapPlan,
    Target,
    WaitReady,
    plan,
    rollback,
)
from trellis_box.swap.probes import POLL_SECONDS, Probes, nothing_listening

LOG_LINES = 25
# How long an interrupted prompt gets to leave the queue before its container is stopped anyway.
CUT_OFF_GRACE = 30.0

EventCallback = Callable[[str], None]


@dataclass
class SwapResult:
    target: str
    container_name: str
    noop: bool
    steps: list[str] = field(default_factory=list)
    # container -> prompt ids interrupted or deleted (`force`): reported, never silent.
    cut_off: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Endpoints:
    ready_url: str
    comfy_url: str
    ready_timeout: float
    stop_timeout: float
    settle_seconds: float


def swap(config: GpuConfig, name: str, *, ops: DockerOps, force: bool = False,
         lock_timeout: float | None = None, drain_timeout: float | None = None,
         settle_seconds: float | None = None,
         on_event: EventCallback | None = None) -> SwapResult:
    """Make ``name`` the one running GPU container, ready; see the module docstring.

    ``lock_timeout`` and ``drain_timeout`` replace the file's ``[swap]`` settings,
    ``settle_seconds`` every container's for this swap (0: trust the first ready answer).
    """
    spec = config.container(name)
    wait = config.swap.lock_timeout if lock_timeout is None else lock_timeout
    with swap_lock(config.swap.lock_file, timeout=wait, purpose=f"swap to {name}"), \
            Probes() as probes:
        run = _SwapRun(config, ops, probes, on_event or (lambda _: None),
                       config.swap.drain_timeout if drain_timeout is None else drain_timeout,
                       settle_seconds)
        return run.swap(spec, force=force)


class _SwapRun:
    def __init__(self, config: GpuConfig, ops: DockerOps, probes: Probes, event: EventCallback,
                 drain_timeout: float, settle_seconds: float | None) -> None:
        self.config = config
        self.ops = ops
        self.probes = probes
        self.event = event
        self.drain_timeout = drain_timeout
        self.settle_seconds = settle_seconds
        self.observed: dict[str, Observed] = {}

    def swap(self, spec: ContainerSpec, *, force: bool) -> SwapResult:
        began = time.monotonic()
        swap_plan = self._plan(spec, force=force)
        result = SwapResult(target=spec.name, container_name=spec.container_name,
                            noop=swap_plan.noop)
        touched = False
        for step in swap_plan.steps:
            try:
                self._do(step, result)
            except (Exception, KeyboardInterrupt) as exc:
                if touched or not isinstance(step, (Drain, CutOff)):
                    self._roll_back(spec, swap_plan.previous, exc, result.cut_off)
                elif isinstance(exc, TrellisBoxError) and exc.note is None:
                    # A failed drain before anything stopped changed nothing: no rollback.
                    exc.note = "nothing was stopped; what ran before still runs"
                raise
            touched = touched or not isinstance(step, (Drain, CutOff))
            result.steps.append(_describe(step))
        result.seconds = time.monotonic() - began
        return result

    def _plan(self, spec: ContainerSpec, *, force: bool) -> SwapPlan:
        observed = self.ops.observe(self.config)
        self.observed = {o.container_name: o for o in observed}
        states = [ContainerState(
            container_name=o.container_name, running=o.running,
            ready=o.running and self.probes.ready(self._endpoints(o.container_name).ready_url).ready,
            managed=o.managed, spec_digest=o.spec_digest) for o in observed]
        target = Target(name=spec.name, container_name=spec.container_name,
                        spec_digest=spec.digest(), image_present=self.ops.image_present(spec.image))
        return plan(states, target, force=force)

    def _entry(self, container_name: str) -> ContainerSpec | None:
        return next((spec for spec in self.config.containers.values()
                     if spec.container_name == container_name), None)

    def _endpoints(self, container_name: str) -> _Endpoints:
        """Where to probe and drain a container: its config entry, else what its labels kept."""
        spec = self._entry(container_name)
        if spec is not None:
            return _Endpoints(spec.ready_url, spec.comfy_url, spec.ready_timeout,
                              spec.stop_timeout, self._settle(spec.settle_seconds))
        seen = self.observed.get(container_name)
        if seen is None or seen.ready_url is None or seen.comfy_url is None:
            raise SwapRefusedError(
                f"container {container_name} is not in {self.config.path} and has no "
                "trellis-box labels to say how to drain it",
                fix=f"add it to {self.config.path}, or stop it yourself: "
                    f"docker stop {container_name}",
                container=container_name,
            )
        return _Endpoints(seen.ready_url, seen.comfy_url, ContainerSpec.ready_timeout,
                          ContainerSpec.stop_timeout, self._settle(ContainerSpec.settle_seconds))

    def _settle(self, configured: float) -> float:
        return configured if self.settle_seconds is None else self.settle_seconds

    def _do(self, step: Step, result: SwapResult) -> None:
        self.event(_describe(step))
        match step:
            case Drain(container_name=name):
                self._drain(name)
            case CutOff(container_name=name):
                result.cut_off[name] = self._cut_off(name)
            case Stop(container_name=name):
                self.ops.stop(name, self._endpoints(name).stop_timeout)
            case Remove(container_name=name):
                self.ops.remove(name)
            case Create(name=name):
                self.ops.create(self.config.containers[name], self.config.swap.group)
            case Start(container_name=name):
                if self.ops.get(name) is None:
                    # Removed by hand since it last ran: the config says how to make it again.
                    self.ops.create(self._spec_of(name), self.config.swap.group)
                self.ops.start(name)
            case WaitReady(container_name=name):
                self._wait_ready(name)

    def _spec_of(self, container_name: str) -> ContainerSpec:
        spec = self._entry(container_name)
        if spec is not None:
            return spec
        raise SwapFailedError(
            f"container {container_name} was removed and is not in {self.config.path}",
            fix=f"add it to {self.config.path} to let swap re-create it",
            container=container_name,
        )

    def _unreadable(self, container_name: str, url: str,
                    exc: ComfyUnreachableError | ComfyResponseError) -> None:
        """Return when nothing listens on its port (so no queue exists); raise otherwise."""
        if nothing_listening(exc):
            self.event(f"{container_name} does not serve ComfyUI at {url} (connection "
                       "refused): no queue to drain")
            return
        raise SwapRefusedError(
            f"cannot read the ComfyUI queue of {container_name}",
            detail="\n".join(filter(None, [exc.message, exc.detail])),
            fix=f"check that it serves ({url}/queue) and swap again, or give `force` to stop "
                "it without draining (its jobs, if any, are cut off)",
            container=container_name,
        ) from exc

    def _drain(self, container_name: str) -> None:
        url = self._endpoints(container_name).comfy_url

        def changed(queue: QueueState) -> None:
            self.event(f"waiting for {container_name}: {len(queue.running)} running, "
                       f"{len(queue.pending)} pending")
        try:
            queue = self.probes.drain(url, timeout=self.drain_timeout, on_change=changed)
        except (ComfyUnreachableError, ComfyResponseError) as exc:
            self._unreadable(container_name, url, exc)
            return
        if queue.running or queue.pending:
            raise DrainTimeoutError(
                f"the ComfyUI queue of {container_name} did not empty within "
                f"{self.drain_timeout:g} s",
                detail=f"running: {', '.join(queue.running) or '-'}\n"
                       f"pending: {', '.join(queue.pending) or '-'}",
                fix="swap again later, allow longer (`drain_timeout`, swap.drain_timeout in "
                    f"{self.config.path}), or give `force` to interrupt and delete these jobs",
                container=container_name, running=list(queue.running),
                pending=list(queue.pending),
            )

    def _cut_off(self, container_name: str) -> list[str]:
        url = self._endpoints(container_name).comfy_url
        cut: list[str] = []
        deadline = time.monotonic() + CUT_OFF_GRACE
        while time.monotonic() < deadline:
            try:
                queue = self.probes.queue(url)
                if not queue.running and not queue.pending:
                    break
                self.probes.cut(url, queue)
            except (ComfyUnreachableError, ComfyResponseError) as exc:
                self.event(f"cannot read the queue of {container_name} ({exc.message}); "
                           "stopping it anyway (forced)")
                break
            cut += [p for p in (*queue.running, *queue.pending) if p not in cut]
            time.sleep(POLL_SECONDS)
        if cut:
            self.event(f"cut off in {container_name}: {', '.join(cut)}")
        return cut

    def _wait_ready(self, container_name: str) -> None:
        endpoints = self._endpoints(container_name)
        deadline = time.monotonic() + endpoints.ready_timeout
        while True:
            probe = self.probes.ready(endpoints.ready_url)
            if probe.ready:
                break
            self._still_running(container_name, "before it became ready")
            if time.monotonic() >= deadline:
                raise SwapFailedError(
                    f"{container_name} did not become ready within {endpoints.ready_timeout:g} s",
                    detail=f"{endpoints.ready_url} last answered: {probe.detail}",
                    fix=f"read its log (docker logs {container_name}); if it only needs longer, "
                        f"raise ready_timeout for it in {self.config.path}",
                    container=container_name,
                )
            time.sleep(POLL_SECONDS)
        if endpoints.settle_seconds > 0:
            self._watch_settle(container_name, endpoints)

    def _watch_settle(self, container_name: str, endpoints: _Endpoints) -> None:
        """Ready once is not enough: it must stay running and ready for the settle time."""
        self.event(f"{container_name} is ready; checking that it stays running and ready for "
                   f"{endpoints.settle_seconds:g} s")
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < endpoints.settle_seconds:
            time.sleep(min(POLL_SECONDS, endpoints.settle_seconds - elapsed))
            after = f"{time.monotonic() - began:.0f} s after it became ready"
            self._still_running(container_name, after)
            probe = self.probes.ready(endpoints.ready_url)
            if not probe.ready:
                raise SwapFailedError(
                    f"{container_name} stopped being ready {after}",
                    detail=f"{endpoints.ready_url} answered: {probe.detail}",
                    fix=f"read its log: docker logs {container_name}",
                    container=container_name,
                )

    def _still_running(self, container_name: str, when: str) -> None:
        state = self.ops.get(container_name)
        if state is None or not state.running:
            status = "removed" if state is None else (
                f"{state.status}, exit code {state.exit_code}")
            raise SwapFailedError(
                f"{container_name} stopped {when} ({status})",
                fix=f"read its log: docker logs {container_name}",
                container=container_name,
            )

    def _roll_back(self, spec: ContainerSpec, previous: str | None, cause: BaseException,
                   cut_off: dict[str, list[str]]) -> None:
        """Stop the target and restart what served before; raise the swap's error."""
        logs = _safe(lambda: self.ops.logs(spec.container_name, LOG_LINES), [])
        self.event(f"rolling back: {_message(cause).splitlines()[0]}")
        outcome: str
        try:
            for step in rollback(spec.container_name, previous):
                self._do(step, SwapResult(spec.name, spec.container_name, noop=False))
            outcome = (f"rolled back: {previous} is running and ready again" if previous else
                       f"stopped {spec.container_name}; no container was serving before the swap")
        except (Exception, KeyboardInterrupt) as exc:
            outcome = (f"ROLLBACK FAILED, no GPU container may be serving: {_message(exc)}\n"
                       f"fix by hand: docker start {previous}" if previous else
                       f"rollback failed: {_message(exc)}")
        if isinstance(cause, KeyboardInterrupt):
            self.event(outcome)
            return
        detail = [cause.detail] if isinstance(cause, TrellisBoxError) and cause.detail else []
        detail.append(f"last {len(logs)} log lines of {spec.container_name}:" if logs else
                      f"{spec.container_name} wrote no log lines")
        detail += [f"  | {line}" for line in logs]
        detail.append(outcome)
        detail += [f"cut off in {name} (forced): {', '.join(ids)}"
                   for name, ids in cut_off.items() if ids]
        raise SwapFailedError(
            f"swap to {spec.name} failed: {_message(cause).splitlines()[0]}",
            detail="\n".join(detail),
            fix=(cause.fix if isinstance(cause, TrellisBoxError) and cause.fix else
                 f"read the log: docker logs {spec.container_name}"),
            target=spec.name, container=spec.container_name, previous=previous,
            log=logs, cut_off=cut_off,
        ) from cause


def _describe(step: Step) -> str:
    match step:
        case Drain(container_name=name):
            return f"drain {name}"
        case CutOff(container_name=name):
            return f"interrupt and clear {name} (forced)"
        case Stop(container_name=name):
            return f"stop {name}"
        case Remove(container_name=name):
            return f"remove {name} (its config changed)"
        case Create(name=name):
            return f"create {name}"
        case Start(container_name=name):
            return f"start {name}"
        case WaitReady(container_name=name):
            return f"wait until {name} is ready"
    raise AssertionError(step)


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, TrellisBoxError) else f"{type(exc).__name__}: {exc}"


def _safe(call: Callable[[], list[str]], default: list[str]) -> list[str]:
    try:
        return call()
    except TrellisBoxError:
        return default

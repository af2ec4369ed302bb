"""Deciding a swap: pure functions from what Docker reports to the steps that reach the target.

No Docker, no HTTP, no clock: ``swap.py`` observes, calls :func:`plan`, and runs the steps. The
rules every plan keeps:

- at most one GPU container runs at any moment: every other running container is drained (or,
  with ``force``, cut off) and stopped before the target starts;
- a running container is stopped only after its ComfyUI queue is empty, unless ``force`` says to
  interrupt it, and then the cut-off prompts are reported;
- nothing is stopped when the target cannot be started at all (its image is absent, or its name is
  taken by a container trellis-box did not create);
- on failure the one container that was serving before is started again (:func:`rollback`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trellis_box.errors import SwapRefusedError


@dataclass(frozen=True)
class ContainerState:
    """One container as observed: a managed container, or one whose name the config uses."""

    container_name: str
    running: bool
    ready: bool = False
    managed: bool = True
    spec_digest: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    container_name: str
    spec_digest: str
    image_present: bool


@dataclass(frozen=True)
class Drain:
    """Wait until the container's ComfyUI queue (running and pending) is empty."""

    container_name: str


@dataclass(frozen=True)
class CutOff:
    """Interrupt the running prompt and clear the pending ones (``force``); report their ids."""

    container_name: str


@dataclass(frozen=True)
class Stop:
    container_name: str


@dataclass(frozen=True)
class Remove:
    container_name: str


@dataclass(frozen=True)
class Create:
    """Create the target's container from its config (it does not exist, or its config changed)."""

    name: str


@dataclass(frozen=True)
class Start:
    container_name: str


@dataclass(frozen=True)
class WaitReady:
    container_name: str


Step = Drain | CutOff | Stop | Remove | Create | Start | WaitReady


@dataclass(frozen=True)
class SwapPlan:
    steps: tuple[Step, ...]
    # The container to start again if the target fails: the one that was serving.
    previous: str | None

    @property
    def noop(self) -> bool:
        return not self.steps


def plan(current: Sequence[ContainerState], target: Target, *, force: bool = False) -> SwapPlan:
    """The steps from ``current`` to ``target`` running alone and ready."""
    mine = next((c for c in current if c.container_name == target.container_name), None)
    if mine is not None and not mine.managed:
        raise SwapRefusedError(
            f"container {target.container_name} exists but was not created by trellis-box",
            detail="swap manages only containers labelled io.trellis-box.managed=true; "
                   "nothing was stopped",
            fix=f"remove it (docker rm -f {target.container_name}) or choose another "
                f"container_name for {target.name} in the GPU containers file",
            container=target.container_name,
        )
    recreate = mine is None or (not mine.running and mine.spec_digest != target.spec_digest)
    if recreate and not target.image_present:
        raise SwapRefusedError(
            f"cannot create {target.container_name}: its image is not on this host",
            detail="nothing was stopped; pulling a large image while the GPU sits idle is what "
                   "this check avoids",
            fix="docker pull the image named in the GPU containers file, then swap again",
            container=target.container_name,
        )

    others = [c for c in current if c.running and c.container_name != target.container_name]
    steps: list[Step] = []
    for other in others:
        steps.append(CutOff(other.container_name) if force else Drain(other.container_name))
        steps.append(Stop(other.container_name))

    if mine is not None and mine.running:
        if not mine.ready:
            steps.append(WaitReady(mine.container_name))
    else:
        if recreate:
            if mine is not None:
                steps.append(Remove(mine.container_name))
            steps.append(Create(target.name))
        steps += [Start(target.container_name), WaitReady(target.container_name)]

    serving = [c for c in others if c.ready] or others
    return SwapPlan(steps=tuple(steps), previous=serving[0].container_name if serving else None)


def rollback(target_container: str, previous: str | None) -> tuple[Step, ...]:
    """Steps after a failed swap: stop the target, then bring back what served before."""
    steps: list[Step] = [Stop(target_container)]
    if previous is not None and previous != target_container:
        steps += [Start(previous), WaitReady(previous)]
    return tuple(steps)

"""The swap plan, with plain values: which containers are drained, stopped, created, started."""

from __future__ import annotations

import itertools

import pytest

from trellis_box.errors import SwapRefusedError
from trellis_box.swap.plan import (
    ContainerState,
    Create,
    CutOff,
    Drain,
    Remove,
    Start,
    Stop,
    Target,
    WaitReady,
    plan,
    rollback,
)

TRELLIS = Target(name="comfyui-trellis2", container_name="trellis", spec_digest="sha256:t",
                 image_present=True)


def running(name: str, *, ready: bool = True, digest: str = "sha256:x") -> ContainerState:
    return ContainerState(name, running=True, ready=ready, spec_digest=digest)


def stopped(name: str, *, digest: str = "sha256:t") -> ContainerState:
    return ContainerState(name, running=False, spec_digest=digest)


def test_target_running_and_ready_alone_is_a_noop() -> None:
    result = plan([running("trellis", digest="sha256:t"), stopped("wan")], TRELLIS)
    assert result.noop
    assert result.previous is None


def test_swap_drains_and_stops_the_running_one_before_starting_the_target() -> None:
    result = plan([running("wan"), stopped("trellis")], TRELLIS)
    assert result.steps == (Drain("wan"), Stop("wan"), Start("trellis"), WaitReady("trellis"))
    assert result.previous == "wan"


def test_force_cuts_off_instead_of_draining() -> None:
    result = plan([running("wan"), stopped("trellis")], TRELLIS, force=True)
    assert result.steps[:2] == (CutOff("wan"), Stop("wan"))
    assert Drain("wan") not in result.steps


def test_missing_target_is_created_from_the_config() -> None:
    result = plan([running("wan")], TRELLIS)
    assert result.steps == (Drain("wan"), Stop("wan"), Create("comfyui-trellis2"),
                            Start("trellis"), WaitReady("trellis"))


def test_nothing_running_starts_the_target_with_nothing_to_roll_back_to() -> None:
    result = plan([stopped("wan", digest="sha256:w"), stopped("trellis")], TRELLIS)
    assert result.steps == (Start("trellis"), WaitReady("trellis"))
    assert result.previous is None


def test_stopped_target_with_a_changed_config_is_recreated() -> None:
    result = plan([running("wan"), stopped("trellis", digest="sha256:old")], TRELLIS)
    assert result.steps[2:] == (Remove("trellis"), Create("comfyui-trellis2"), Start("trellis"),
                                WaitReady("trellis"))


def test_two_running_containers_are_both_stopped_and_the_ready_one_is_kept_for_rollback() -> None:
    result = plan([running("warming", ready=False), running("wan"), stopped("trellis")], TRELLIS)
    assert result.steps[:4] == (Drain("warming"), Stop("warming"), Drain("wan"), Stop("wan"))
    assert result.previous == "wan"


def test_target_running_beside_another_stops_the_other_and_keeps_the_target() -> None:
    result = plan([running("trellis", digest="sha256:t"), running("wan")], TRELLIS)
    assert result.steps == (Drain("wan"), Stop("wan"))


def test_target_running_but_not_ready_is_waited_for_not_restarted() -> None:
    result = plan([running("trellis", ready=False, digest="sha256:t")], TRELLIS)
    assert result.steps == (WaitReady("trellis"),)


def test_absent_image_refuses_before_anything_is_stopped() -> None:
    target = Target("comfyui-trellis2", "trellis", "sha256:t", image_present=False)
    with pytest.raises(SwapRefusedError) as info:
        plan([running("wan")], target)
    assert "cannot create trellis: its image is not on this host" in str(info.value)
    assert "nothing was stopped" in str(info.value)
    assert "fix: docker pull" in str(info.value)


def test_absent_image_does_not_matter_when_the_container_exists() -> None:
    target = Target("comfyui-trellis2", "trellis", "sha256:t", image_present=False)
    assert plan([stopped("trellis")], target).steps == (Start("trellis"), WaitReady("trellis"))


def test_a_foreign_container_with_the_target_name_is_never_touched() -> None:
    foreign = ContainerState("trellis", running=False, managed=False)
    with pytest.raises(SwapRefusedError) as info:
        plan([running("wan"), foreign], TRELLIS)
    text = str(info.value)
    assert "container trellis exists but was not created by trellis-box" in text
    assert "fix: remove it (docker rm -f trellis)" in text


def test_rollback_stops_the_target_then_restarts_and_waits_for_the_previous() -> None:
    assert rollback("trellis", "wan") == (Stop("trellis"), Start("wan"), WaitReady("wan"))
    assert rollback("trellis", None) == (Stop("trellis"),)


def test_no_plan_ever_starts_the_target_while_another_still_runs() -> None:
    """The invariant, over every mix of up to three containers: every stop follows a drain or a
    cut-off, the target starts alone, and the target ends up the one running container."""
    kinds = [None, stopped, lambda n: running(n, ready=False), running]
    for combo in itertools.product(kinds, repeat=3):
        current = [make(name) for make, name in zip(combo, ("trellis", "wan", "sdxl"), strict=True)
                   if make is not None]
        for force in (False, True):
            steps = plan(current, TRELLIS, force=force).steps
            alive = {c.container_name for c in current if c.running}
            for step in steps:
                if isinstance(step, Stop):
                    alive.discard(step.container_name)
                if isinstance(step, Start):
                    alive.add(step.container_name)
                    assert alive == {"trellis"}, (current, steps)
                if isinstance(step, Stop):
                    preceding = steps[steps.index(step) - 1]
                    assert preceding in (Drain(step.container_name), CutOff(step.container_name))
            assert alive == {"trellis"}, (current, steps)

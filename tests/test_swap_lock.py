"""The swap lock: one holder, a named refusal, a bounded wait, and no lock left by a killed swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trellis_box.errors import SwapLockedError
from trellis_box.swap.lock import swap_lock

DEADLINE = 60.0


def hold_in_child(lock: Path) -> subprocess.Popen[str]:
    """A separate process that takes the lock, says so, and sleeps until killed."""
    code = ("import sys, time\nfrom pathlib import Path\n"
            "from trellis_box.swap.lock import swap_lock\n"
            "with swap_lock(Path(sys.argv[1]), timeout=0, purpose='swap to comfyui-wan'):\n"
            "    print('held', flush=True); time.sleep(3600)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def test_second_holder_is_refused_with_the_first_ones_name(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "swap.lock"
    child = hold_in_child(lock)
    try:
        with pytest.raises(SwapLockedError) as info, swap_lock(lock, timeout=0, purpose="x"):
            pass
    finally:
        child.kill()
        child.wait()
    text = str(info.value)
    assert "another swap is running on this host" in text
    assert f"lock {lock} is held by pid {child.pid} (swap to comfyui-wan, since " in text
    assert "fix: wait for it to finish, or give `lock_timeout` to wait for it" in text


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    lock = tmp_path / "swap.lock"
    child = hold_in_child(lock)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with swap_lock(lock, timeout=0, purpose="after a crash"):
        assert b"after a crash" in lock.read_bytes()
    assert lock.read_bytes() == b""


def test_a_waiting_swap_gets_the_lock_when_the_holder_releases(tmp_path: Path) -> None:
    lock = tmp_path / "swap.lock"
    taken, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with swap_lock(lock, timeout=0, purpose="first"):
            taken.set()
            release.wait(DEADLINE)
            order.append("first done")

    holder = threading.Thread(target=first)
    holder.start()
    assert taken.wait(DEADLINE)
    threading.Timer(0.5, release.set).start()
    with swap_lock(lock, timeout=DEADLINE, purpose="second"):
        order.append("second in")
    holder.join(DEADLINE)
    assert order == ["first done", "second in"]


def test_a_bounded_wait_ends_with_the_refusal(tmp_path: Path) -> None:
    lock = tmp_path / "swap.lock"
    child = hold_in_child(lock)
    try:
        began = time.monotonic()
        with pytest.raises(SwapLockedError) as info, swap_lock(lock, timeout=0.5, purpose="x"):
            pass
        assert time.monotonic() - began >= 0.5
    finally:
        child.kill()
        child.wait()
    assert "waited 0.5 s" in str(info.value)


def test_an_unusable_lock_path_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SwapLockedError) as info, swap_lock(tmp_path / "file" / "swap.lock",
                                                           timeout=0, purpose="x"):
        pass
    text = str(info.value)
    assert f"cannot open the swap lock file {tmp_path / 'file' / 'swap.lock'}" in text
    assert "fix: set swap.lock_file in the GPU containers file (or `lock_file`)" in text

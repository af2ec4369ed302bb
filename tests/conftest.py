"""Shared test setup: an isolated environment for every test, and the service fixtures."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixture modules, one per real component: add yours here.
pytest_plugins = [
    "tests.docker_support",
    "tests.hub_mirror",
    "tests.registry_support",
    "tests.cloud_support",
    "tests.comfy_standin.fixtures",
    "tests.serve_support",
    "tests.image_support",
    "tests.browser",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# The recordings of a real ComfyUI 0.3.64 (schemas, websocket traces): the project's test data, kept
# in the repository so that a clone alone runs every test (README.md there says how they were made).
COMFY_RECORDINGS = REPO_ROOT / "tests" / "recordings" / "comfyui"

_ISOLATED_PREFIXES = ("HF_", "HUGGING_FACE_", "TRELLIS_BOX_", "AWS_")

# A shell starts a background command (`bash .ci/run &`, nohup) with SIGINT ignored, and children
# inherit an ignored signal: the Ctrl-C tests would send SIGINT to a trellis-box that cannot get
# it. A handler here is reset to the default in every child, as in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No token, no user config and no user cache leaks into a test; output is plain and wide."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    # The readiness state file defaults to /tmp: a test must never read another run's.
    monkeypatch.setenv("TRELLIS_BOX_STATE", str(home / "trellis-box-state.json"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "dumb")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (``CI=true``; ``.ci/run`` installs every component) a skipped test fails: a green
    run has run every test. Elsewhere a missing component skips with its install command
    (``tests/components.py``). The one exception is a ``gpu`` test: no CI machine has a GPU, so
    those skip there, saying why, and run on the GPU machine (``pytest -m gpu``)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail") \
            and item.get_closest_marker("gpu") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but CI=true installs every component, so this is a failure: {reason}"

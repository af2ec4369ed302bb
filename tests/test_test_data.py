"""The tests run on a clone of the repository alone: their data lives in it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import COMFY_RECORDINGS, REPO_ROOT

# A path above the repository: the workspace's shared folder beside the checkout, or the
# development machine's absolute workspace path (spelled as classes so this file names neither).
OUTSIDE = re.compile(r"[.][.]/shared|parent\s*/\s*[\"']shared[\"']|/wor[k]/")


def test_no_test_reads_data_from_outside_the_repository() -> None:
    here = Path(__file__).resolve()
    offenders = [f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}"
                 for path in sorted((REPO_ROOT / "tests").rglob("*.py")) if path != here
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if OUTSIDE.search(line)]
    assert offenders == []


def test_the_comfyui_recordings_are_in_the_repository() -> None:
    assert COMFY_RECORDINGS.is_relative_to(REPO_ROOT)
    assert len(list((COMFY_RECORDINGS / "traces").glob("*.jsonl"))) == 7
    assert (COMFY_RECORDINGS / "object_info.json").is_file()
    # The package ships the same schemas the tests were recorded with.
    assert (COMFY_RECORDINGS / "object_info.json").read_bytes() == (
        REPO_ROOT / "src/trellis_box/data/object_info.json").read_bytes()


def run_pytest_on(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """A test that needs gltf-validator, run with NODE_PATH pointing nowhere, as CI would run it or not."""
    test = tmp_path / "test_needs_the_validator.py"
    test.write_text("from tests.components import require\n\n\n"
                    "def test_needs_the_validator() -> None:\n    require('gltf-validator')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env |= {"NODE_PATH": str(tmp_path / "nowhere"), **({"CI": ci} if ci else {})}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "tests.conftest",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(test)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_component_skips_with_its_install_command_and_fails_under_ci(tmp_path: Path) -> None:
    local = run_pytest_on(tmp_path, ci=None)
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout
    assert "gltf-validator missing (gltf-validator is not under NODE_PATH=" in local.stdout
    assert "Install: apt-get install -y nodejs npm && npm install --prefix .ci-work/npm gltf-validator@" in local.stdout
    ci = run_pytest_on(tmp_path, ci="true")
    assert ci.returncode == 1, ci.stdout
    assert "1 failed" in ci.stdout
    assert "skipped, but CI=true installs every component, so this is a failure" in ci.stdout

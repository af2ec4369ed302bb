"""The tests run on a clone of the repository alone: their data lives in it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import COMFY_RECORDINGS, REPO_ROOT

# A path above the repository (the workspace's ../shared, or this machine's absolute paths).
OUTSIDE = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']|/work/")


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

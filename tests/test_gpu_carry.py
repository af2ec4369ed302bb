"""What a call to the offline GPU machine carries (``benchmarks/gpu/carry``), checked here where a
mistake costs nothing: on the GPU machine it costs a call of a 30-minute budget."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CARRY = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "carry"

# ComfyUI 0.3.64's server.py serves these folders of its frontend packages with aiohttp's
# web.static, which refuses a folder that does not exist: the worker exits at start. Git keeps no
# empty folder, so each stand-in's must hold a file (a GPU call was lost to the templates one).
STATIC_FOLDERS = [("comfyui_frontend_package", "static"), ("comfyui_workflow_templates", "templates"),
                  ("comfyui_embedded_docs", "docs")]


@pytest.mark.parametrize(("package", "folder"), STATIC_FOLDERS)
def test_the_folders_comfyui_serves_from_the_stand_ins_hold_a_file(package: str, folder: str) -> None:
    served = CARRY / "standins" / package / folder
    assert served.is_dir() and any(p.is_file() for p in served.iterdir()), (
        f"{served} must exist with a file in it (git keeps no empty folder)")


@pytest.mark.parametrize("script", sorted(p.name for p in (CARRY / "calls").glob("*.sh")))
def test_the_call_scripts_parse(script: str) -> None:
    checked = subprocess.run(["bash", "-n", str(CARRY / "calls" / script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

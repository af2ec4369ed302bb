"""`trellis-box generate` end to end against the stand-in: files, table, --json, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.launcher import StandinServer
from tests.photos import object_photo
from trellis_box.cli.app import main
from trellis_box.comfyui.client import ComfyClient

pytestmark = pytest.mark.timeout(180)


def _start(comfy_standin: StartStandin, tmp_path: Path, **options: Any) -> StandinServer:
    # A state file left in the default place by anything else must not decide resolutions.
    return comfy_standin(env={"TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")}, **options)


def _inputs(tmp_path: Path, count: int) -> Path:
    for i in range(count):
        object_photo(tmp_path / "in" / f"item-{i}.png", i)
    return tmp_path / "in"


def test_a_folder_gives_files_and_a_summary_table(comfy_standin: StartStandin, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    out = tmp_path / "out"
    code = main(["generate", str(_inputs(tmp_path, 2)), "--server", server.url, "--out", str(out),
                 "--seed", "5", "--steps", "8", "--texture-size", "1024", "--no-remesh",
                 "--attention", "flash_attn"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "trellis-box generate — resolution 1024" in printed and "2 of 2 done" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"item-{i}{ext}" for i in range(2) for ext in (".glb", ".cutout.png", ".json"))
    report = json.loads((out / "item-0.json").read_text())
    params = report["parameters"]
    assert (params["seed"], params["shape_steps"], params["texture_size"]) == (5, 8, 1024)
    # What the server ran, from its own history.
    with urllib.request.urlopen(f"{server.url}/history/{report['prompt_id']}") as resp:
        graph = json.load(resp)[report["prompt_id"]]["prompt"][2]
    assert graph["6"]["inputs"]["seed"] == 5 and graph["6"]["inputs"]["texture_steps"] == 8
    assert graph["7"]["inputs"]["remesh"] is False
    assert graph["5"]["inputs"]["backend"] == "flash_attn"


def test_json_output_and_exit_code_3_when_an_input_failed(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    inputs = _inputs(tmp_path, 1)
    (inputs / "empty.png").write_bytes(b"")
    code = main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out"),
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 3
    assert data["counts"] == {"ok": 1, "skipped": 0, "failed": 1, "interrupted": 0}
    failed, = [i for i in data["items"] if i["status"] == "failed"]
    assert failed["name"] == "empty" and failed["error"]["error"] == "image-invalid"
    assert failed["error"]["message"] == f"cannot use image {inputs / 'empty.png'}"
    ok, = [i for i in data["items"] if i["status"] == "ok"]
    assert ok["glb"] == str(tmp_path / "out" / "item-0.glb")
    # A second run has nothing left but the bad file.
    assert main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out"),
                 "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["counts"]["skipped"] == 1


def test_outputs_deleted_on_the_server_do_not_fail_the_same_job_into_a_new_out_dir(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    photo = object_photo(tmp_path / "img.png", 3)
    args = ["generate", str(photo), "--server", server.url, "--json"]
    assert main([*args, "--out", str(tmp_path / "out1")]) == 0
    for made in [*(server.output_dir / "3D").iterdir(), *(server.output_dir / "cutout").iterdir()]:
        made.unlink()  # the user cleans the server's output folder
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "out2")]) == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "out2" / "img.json").read_text())
    assert report["status"] == "ok" and report["export_rerun"]["missing"].startswith("3D/")
    assert (tmp_path / "out2" / "img.cutout.png").is_file()
    assert report["glb"]["bytes"] == (tmp_path / "out2" / "img.glb").stat().st_size


def test_a_resolution_the_gpu_cannot_hold_is_refused_with_exit_2(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, gpu_name="NVIDIA L4", vram_bytes=23_580_000_000)
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", server.url,
                 "--out", str(tmp_path / "out"), "--resolution", "1536"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: resolution 1536 does not fit on this GPU" in err
    assert "use --resolution 1024, or --auto-resolution" in err


def test_bad_parameters_fail_before_anything_is_sent(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # No server at all: the check is local.
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out"), "--texture-size", "7"])
    err = capsys.readouterr().err
    assert code == 2
    assert "prompt.7.inputs.texture_size" in err


def test_an_unreachable_server_is_exit_1_naming_the_url(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: ComfyUI at http://127.0.0.1:9 did not answer GET /system_stats" in err


def test_an_output_path_that_is_a_file_is_named(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_text("a file, not a directory")
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out")])
    assert code == 1
    assert f"error: cannot write {tmp_path / 'out'}" in capsys.readouterr().err


async def _queue_empty(url: str) -> bool:
    async with ComfyClient(url) as comfy:
        state = await comfy.queue()
    return not state.running and not state.pending


def _server_history(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/history", timeout=10) as response:
        return list(json.load(response).values())


def _wait_for(check: Any, what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_ctrl_c_stops_the_running_job_keeps_finished_ones_and_a_rerun_resumes(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=1.5)
    inputs, out = _inputs(tmp_path, 4), tmp_path / "out"
    cmd = [sys.executable, "-m", "trellis_box.cli.app", "generate", str(inputs),
           "--server", server.url, "--out", str(out)]
    env = {**os.environ, "TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(lambda: list(out.glob("*.json")), "the first finished image")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted: run the same command again to resume" in stdout
    kept = {p.stem for p in out.glob("*.glb")}
    assert kept and len(kept) < 4
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    _wait_for(lambda: asyncio.run(_queue_empty(server.url)), "an empty server queue")
    # Withdrawn, not left to run: at most the image that ended as Ctrl-C came ran to success.
    ran = _server_history(server.url)
    assert sum(h["status"]["status_str"] == "success" for h in ran) <= len(kept) + 1
    assert len(ran) < 4 or any(h["status"]["status_str"] == "error" for h in ran)
    server.set_faults(exec_seconds=0.1)
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts["skipped"] == len(kept) and counts["ok"] == 4 - len(kept)

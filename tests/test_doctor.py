"""`trellis-box doctor`: the same checks as serve's preflight, all of them, plus the driver and a
test job against a running server (the ComfyUI stand-in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin.fixtures import StartStandin
from tests.serve_support import ServeSetup, lay_out_weights, make_setup
from trellis_box.cli.app import main


def doctor(setup: ServeSetup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    for name, value in (env or setup.env).items():
        monkeypatch.setenv(name, value)
    if env is not None and "PATH" in setup.env and env.get("PATH") != setup.env["PATH"]:
        monkeypatch.setenv("PATH", env["PATH"])
    code = main(["doctor", "--json", "--comfy-root", str(setup.root), *args])
    return code, json.loads(capsys.readouterr().out)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["step"]: check for check in report["checks"]}


def test_a_good_machine_passes_every_check(serve_setup: ServeSetup, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, report = doctor(serve_setup, monkeypatch, capsys)
    assert code == 0 and report["ok"] is True
    checks = by_name(report)
    assert list(checks) == ["gpu", "driver", "cuda arch", "profile", "environment",
                            "comfyui root", "directories", "weights", "node imports",
                            "runtime packages"]
    assert all(c["status"] == "ok" for c in checks.values())
    assert checks["runtime packages"]["detail"] == (
        "transformers 4.57.1 (>=4.56,<5); o_voxel.convert (o_voxel 0.0.1) has "
        "flexible_dual_grid_to_mesh, tiled_flexible_dual_grid_to_mesh")
    assert checks["gpu"]["detail"] == "NVIDIA L40S, 45.0 GiB, compute capability 8.9 (sm_89)"
    assert checks["driver"]["detail"].startswith("driver 550.127.05")
    assert "ComfyUI-Trellis2" in checks["node imports"]["detail"]


def test_every_failure_is_reported_not_just_the_first(
        serve_setup: ServeSetup, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    weight = serve_setup.root / "models" / "microsoft" / "TRELLIS.2-4B" / "pipeline.json"
    weight.unlink()
    code, report = doctor(serve_setup, monkeypatch, capsys, env=serve_setup.without_gpu())
    assert code == 1 and report["ok"] is False
    checks = by_name(report)
    assert checks["gpu"]["status"] == "failed"
    assert checks["gpu"]["error"]["error"] == "gpu-unavailable"
    # What needs the GPU is skipped, the rest still runs.
    for name in ("driver", "cuda arch", "profile"):
        assert checks[name]["status"] == "skipped" and "needs gpu" in checks[name]["detail"]
    assert checks["weights"]["status"] == "failed"
    assert checks["weights"]["detail"] == f"weight file missing: {weight}"
    assert checks["node imports"]["status"] == "ok"


@pytest.mark.parametrize(("gpu", "step", "text"), [
    ({"compute_cap": "7.5", "name": "Tesla T4", "memory_mib": 15360}, "cuda arch",
     "GPU architecture sm_75 (Tesla T4) is not one this image was built for"),
    ({"driver": "470.82.01"}, "driver", "NVIDIA driver 470.82.01 is too old for this image"),
    ({"memory_mib": 16384, "name": "NVIDIA A4000"}, "profile",
     "GPU NVIDIA A4000 is too small for TRELLIS.2"),
])
def test_an_unsuitable_gpu_names_what_is_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        gpu: dict[str, Any], step: str, text: str) -> None:
    setup = make_setup(tmp_path / "doctor", **gpu)
    code, report = doctor(setup, monkeypatch, capsys)
    assert code == 1
    check = by_name(report)[step]
    assert check["status"] == "failed" and check["detail"] == text
    assert check["error"]["fix"]


def test_an_a100_is_not_told_to_run_on_an_a100(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The default build has no sm_80 code: the fix names the GPUs it has and how to add sm_80."""
    setup = make_setup(tmp_path / "doctor", compute_cap="8.0", name="NVIDIA A100-SXM4-40GB",
                       memory_mib=40960)
    code, report = doctor(setup, monkeypatch, capsys)
    assert code == 1
    fix = " ".join(by_name(report)["cuda arch"]["error"]["fix"].split())
    assert fix.startswith("run on a GPU this image was built for (A10G sm_86, L4/L40S sm_89, H100 sm_90)")
    assert "--build-arg CUDA_ARCHS including sm_80" in fix


def test_a_mistyped_root_is_named_and_nothing_is_created_under_it(
        serve_setup: ServeSetup, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in serve_setup.env.items():
        monkeypatch.setenv(name, value)
    wrong = serve_setup.base / "comfyiu"
    code = main(["doctor", "--json", "--comfy-root", str(wrong)])
    checks = by_name(json.loads(capsys.readouterr().out))
    assert code == 1
    assert checks["comfyui root"]["detail"] == f"not a ComfyUI root: {wrong}"
    # The library's `comfy_root` (test_catalog), as doctor's option.
    assert checks["comfyui root"]["error"]["fix"].startswith(
        "pass the directory that holds ComfyUI's main.py: --comfy-root ")
    for name in ("directories", "weights", "node imports"):
        assert checks[name]["status"] == "skipped"
    assert not wrong.exists()


def test_a_24gb_card_gets_low_vram_and_1024_at_most(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    setup = make_setup(tmp_path / "doctor", name="NVIDIA L4", memory_mib=23034)
    code, report = doctor(setup, monkeypatch, capsys, env=setup.environment(TRELLIS_BOX_WORKERS="auto"))
    assert code == 0
    # One worker: a second one's measured 1024 peak (22.5 GB) does not fit beside the first.
    assert by_name(report)["profile"]["detail"].startswith(
        "24gb-class: low_vram on, resolutions 512, 1024, 1 ComfyUI worker (auto: 0 fit in memory at "
        "1024's peak, ")


def test_test_job_against_a_running_server(
        comfy_standin: StartStandin, serve_setup: ServeSetup, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = comfy_standin(exec_seconds=0.05)
    lay_out_weights(server.root)
    code, report = doctor(serve_setup, monkeypatch, capsys, "--server", server.url)
    assert code == 0, report
    job = by_name(report)["test job"]
    assert job["status"] == "ok"
    assert job["detail"].startswith(f"{server.url}: prompt ")
    assert "made a GLB at 512" in job["detail"]

    server.set_faults(fail_node="Trellis2PostProcessAndUnWrapAndRasterizer")
    code, report = doctor(serve_setup, monkeypatch, capsys, "--server", server.url)
    assert code == 1
    job = by_name(report)["test job"]
    assert job["status"] == "failed"
    assert "Trellis2PostProcessAndUnWrapAndRasterizer" in json.dumps(job["error"])


def test_the_table_for_people_shows_failures_with_their_fix(
        serve_setup: ServeSetup, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in serve_setup.without_gpu().items():
        monkeypatch.setenv(name, value)
    code = main(["doctor", "--comfy-root", str(serve_setup.root)])
    out = capsys.readouterr().out
    assert code == 1
    assert "trellis-box doctor" in out
    assert "FAILED" in out and "skipped" in out
    assert "gpu: no CUDA GPU visible: nvidia-smi is not on PATH" in out
    assert "fix: start the container with GPU access" in out
    assert out.rstrip().endswith("some checks failed")

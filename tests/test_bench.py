"""``trellis-box bench`` against the ComfyUI stand-in: cold and warm apart, stages that add up,
failures recorded, the stand-in-weights label carried into every output, and the GPU sampler
on a fake ``nvidia-smi`` (there is no GPU here)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.launcher import StandinServer
from tests.comfy_standin.torch_site import ALLOCATED, RESERVED, torch_site
from trellis_box.bench import runner
from trellis_box.bench.reference import UPSTREAM_H100_GENERATION_S
from trellis_box.bench.runner import STAND_IN_LABEL, BenchOptions, BenchRun, run_bench, sample_images
from trellis_box.bench.sampler import CpuSampler, GpuSampler
from trellis_box.bench.summary import as_data, compare_with_upstream, rows
from trellis_box.cli.app import main
from trellis_box.cli.bench import render
from trellis_box.errors import ResolutionUnsupportedError, UsageError

pytestmark = pytest.mark.timeout(120)

GENERATOR = "Trellis2MeshWithVoxelGenerator"

# Answers the sampler's loop query (-lms) with a line per 50 ms, and the driver query once.
_FAKE_SMI = """#!/bin/sh
case "$*" in
    *driver_version*) echo "550.54.15"; exit 0 ;;
    *-lms*) while :; do echo "{busy}, 20480, 143771"; sleep 0.05; done ;;
esac
echo "fake nvidia-smi: unsupported arguments: $*" >&2
exit 2
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(_FAKE_SMI.format(busy=40))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return tool


@pytest.fixture
def no_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def _bench(server: StandinServer, **options: object) -> BenchRun:
    return asyncio.run(run_bench(server.url, BenchOptions(**options)))  # type: ignore[arg-type]


def _state(server: StandinServer, **state: object) -> None:
    document = {"phase": "ready", "ready": True, "error": None, **state}
    (server.root / "trellis-box-state.json").write_text(json.dumps(document))


def test_bundled_photos_are_distinct_pngs() -> None:
    photos = sample_images()
    assert len(photos) >= 2
    assert len({p.read_bytes() for p in photos}) == len(photos)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in photos)


def test_cold_and_warm_are_apart_and_stages_add_up(comfy_standin: StartStandin,
                                                   fake_nvidia_smi: Path, tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=0.3, env=torch_site(tmp_path, installed=False))
    run = _bench(server, resolutions=("512", "1024"), images=3, seed=7)

    assert [(j.resolution, j.phase, j.status) for j in run.jobs] == [
        ("512", "cold", "ok"), ("512", "warm", "ok"), ("512", "warm", "ok"),
        ("1024", "cold", "ok"), ("1024", "warm", "ok"), ("1024", "warm", "ok")]
    # Every job its own seed and the photos in turn: nothing is answered from ComfyUI's cache.
    assert [j.seed for j in run.jobs] == list(range(7, 13))
    assert [j.image for j in run.jobs[:3]] == [p.name for p in sample_images()[:3]]
    for job in run.jobs:
        assert GENERATOR not in job.cached_nodes
        assert sum(job.stages.values()) == pytest.approx(sum(n["seconds"] for n in job.nodes),
                                                         abs=1e-6)
        classes = {n["class_type"] for n in job.nodes}
        assert {GENERATOR, "Trellis2PostProcessAndUnWrapAndRasterizer",
                "Trellis2ExportMesh", "BRIA_RMBG_Zho"} <= classes
        # The stand-in generator sleeps exec_seconds: the stage holds at least that.
        assert job.stages["generator"] >= 0.3
        assert job.server_seconds is not None and job.client_seconds is not None
        assert job.client_seconds >= job.server_seconds
        assert job.client_overhead_seconds == round(job.client_seconds - job.server_seconds, 3)
        assert (job.glb["faces"], job.glb["vertices"]) == (12, 24) and job.glb["bytes"] > 0

    summary = rows(run)
    assert [(r.resolution, r.phase, r.jobs, r.failed) for r in summary] == [
        ("512", "cold", 1, 0), ("512", "warm", 2, 0), ("1024", "cold", 1, 0), ("1024", "warm", 2, 0)]
    cold = summary[0].figures
    assert cold["generator_seconds"] == run.jobs[0].stages["generator"]
    assert summary[1].figures["server_seconds"] == pytest.approx(
        (run.jobs[1].server_seconds + run.jobs[2].server_seconds) / 2,  # type: ignore[operator]
        abs=1e-3)  # medians are rounded to milliseconds

    # The stand-in has no torch: memory comes from the fake nvidia-smi, busy share too.
    assert run.environment["torch_memory"].startswith("no torch")
    assert run.jobs[0].gpu["torch_peak_reserved_bytes"] is None
    assert run.busy["measured"] is True and run.busy["busy_share"] == pytest.approx(0.4)
    assert run.environment["driver_version_nvidia_smi"] == "550.54.15"
    assert run.environment["device_total_bytes_nvidia_smi"] == 143771 * 1024 * 1024
    assert run.environment["weights_mode"] == "real" and not run.stand_in_weights

    comparison = compare_with_upstream(run)
    assert [c["resolution"] for c in comparison] == ["512", "1024"]
    assert comparison[1]["upstream_h100_generation_seconds"] == UPSTREAM_H100_GENERATION_S["1024"]
    assert comparison[1]["ratio"] == round(summary[3].figures["generator_seconds"] / 17.0, 2)  # type: ignore[operator]


def test_a_failing_job_is_reported_and_the_run_goes_on(comfy_standin: StartStandin,
                                                       no_nvidia_smi: None, tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=0.05, fail_node=GENERATOR,
                           fail_when="pipeline_type=1024_cascade",
                           env=torch_site(tmp_path, installed=True))
    run = _bench(server, resolutions=("1024", "512"), images=2)
    assert [(j.resolution, j.status) for j in run.jobs] == [
        ("1024", "failed"), ("1024", "failed"), ("512", "ok"), ("512", "ok")]
    error = run.jobs[0].error or {}
    assert GENERATOR in error["message"] and error["fix"]
    assert [(r.resolution, r.phase, r.jobs, r.failed) for r in rows(run)][:2] == [
        ("1024", "cold", 0, 1), ("1024", "warm", 0, 1)]
    assert rows(run)[0].figures["server_seconds"] is None
    # torch's peaks, reset before each job (the stand-in torch resets them to what it holds).
    assert run.environment["torch_memory"] == "reported"
    assert run.environment["gpu_name"] == "NVIDIA H200"
    assert (run.environment["torch_version"], run.environment["cuda_version"]) == (
        "2.7.0+cu126", "12.6")
    assert run.jobs[2].gpu["torch_peak_reserved_bytes"] == RESERVED
    assert run.jobs[2].gpu["torch_peak_allocated_bytes"] == ALLOCATED
    assert rows(run)[2].figures["torch_peak_reserved_bytes"] == RESERVED
    assert run.busy == {"measured": False, "reason": "not measured: no nvidia-smi on this machine",
                        "note": run.busy["note"], "cpu_cores": len(os.sched_getaffinity(0)),
                        "cpu_cores_busy": run.busy["cpu_cores_busy"]}
    # /proc/stat is read whatever the GPU: the stand-in's jobs kept this machine's cores busy.
    assert run.busy["cpu_cores_busy"] > 0
    assert run.jobs[2].cpu["cpu_cores_busy"] is not None
    data = as_data(run)
    assert data["counts"] == {"ok": 2, "failed": 2, "not run": 0}


def test_an_unreachable_server_ends_the_run_with_the_rest_not_run(comfy_standin: StartStandin,
                                                                  no_nvidia_smi: None) -> None:
    server = comfy_standin(exec_seconds=0.05)

    def stop_after_first(job: runner.JobRecord) -> None:
        if job.index == 0:
            server.stop()

    run = asyncio.run(run_bench(server.url, BenchOptions(resolutions=("512",), images=3),
                                on_job=stop_after_first))
    assert [j.status for j in run.jobs] == ["ok", "failed", "not run"]
    assert run.jobs[1].error and run.jobs[1].error["error"] == "comfyui-unreachable"


def test_stand_in_weights_are_labelled_in_every_output(comfy_standin: StartStandin,
                                                       no_nvidia_smi: None, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    server = comfy_standin(exec_seconds=0.05)
    _state(server, weights_mode="stand-in", allowed_resolutions=["512", "1024"],
           profile={"gpu_name": "NVIDIA H200", "vram_bytes": 150_000_000_000, "low_vram": False,
                    "max_resolution": "1024"})
    out = tmp_path / "results" / "h200.json"
    code = main(["bench", "--server", server.url, "--resolutions", "512", "--images", "2",
                 "--preset", "web", "--json", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert code == 0
    for data in (printed, saved):
        assert data["label"] == STAND_IN_LABEL and data["weights_mode"] == "stand-in"
        # low_vram "profile" (the default) takes the server's profile: off on this one.
        assert data["environment"]["low_vram"] == {"requested": "profile", "used": False}
        assert [j["low_vram"] for j in data["jobs"]] == [False, False]
        assert (data["environment"]["workflow"]["preset"],
                data["environment"]["workflow"]["target_face_num"]) == ("web", 200_000)
        assert data["environment"]["trellis_box_version"]
    assert printed["summary"] == saved["summary"]

    code = main(["bench", "--server", server.url, "--resolutions", "512", "--images", "1"])
    shown = capsys.readouterr().out
    assert code == 0
    assert STAND_IN_LABEL.upper() in shown and f"({STAND_IN_LABEL})" in shown
    assert "GPU busy share over the run: not measured: no nvidia-smi" in shown
    assert "preset balanced; low_vram off (profile)" in shown


def test_real_weights_carry_no_label(comfy_standin: StartStandin, no_nvidia_smi: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    server = comfy_standin(exec_seconds=0.05)
    run = _bench(server, resolutions=("512",), images=1)
    assert "label" not in as_data(run)
    from rich.console import Console
    console = Console(width=200, record=True)
    render(console, run, None)
    assert STAND_IN_LABEL not in console.export_text().lower()


def test_a_failed_job_makes_the_cli_exit_partial(comfy_standin: StartStandin,
                                                 no_nvidia_smi: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    server = comfy_standin(exec_seconds=0.05, fail_node=GENERATOR, fail_kind="oom",
                           fail_when="pipeline_type=1024_cascade")
    code = main(["bench", "--server", server.url, "--resolutions", "512,1024", "--images", "1"])
    shown = capsys.readouterr()
    assert code == 3
    assert "failed 1024 #0" in shown.out and "warm generation" not in shown.out
    assert "512 cold #0 (box.png): ok" in shown.err


def test_only_what_the_server_allows_is_run_and_more_is_refused_before_any_job(
        comfy_standin: StartStandin, no_nvidia_smi: None, capsys: pytest.CaptureFixture[str]) -> None:
    server = comfy_standin(exec_seconds=0.05)
    # An H200 whose serve runs with TRELLIS_BOX_MAX_RESOLUTION=1024.
    _state(server, allowed_resolutions=["512", "1024"],
           profile={"gpu_name": "NVIDIA H200", "vram_bytes": 150_754_820_096, "low_vram": False,
                    "max_resolution": "1024", "lowered_from": "1536"})
    run = _bench(server, images=1)
    assert [j.resolution for j in run.jobs] == ["512", "1024"]
    made = sorted((server.output_dir / "trellis-box-bench").iterdir())

    # The library names its parameter; the command line, its flag.
    with pytest.raises(ResolutionUnsupportedError) as info:
        _bench(server, resolutions=("1024", "1536"), images=1)
    assert info.value.fix == "use `resolutions` 512,1024, or leave it out for every one it allows"
    code = main(["bench", "--server", server.url, "--resolutions", "1024,1536", "--images", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "error: the server does not run resolution 1536" in err
    assert "lowered from 1536 by TRELLIS_BOX_MAX_RESOLUTION" in err
    assert "fix: use --resolutions 512,1024, or leave it out for every one it allows" in err
    assert sorted((server.output_dir / "trellis-box-bench").iterdir()) == made


@pytest.mark.parametrize("args, said", [
    (["--resolutions", "768"], "unknown resolution '768'"),
    (["--low-vram", "maybe"], "--low-vram 'maybe' is not one of on, off, profile"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_bad_options_are_usage_errors(args: list[str], said: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--server", "http://127.0.0.1:9", *args]) == UsageError.exit_code
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("options, said, fix", [
    ({"low_vram": "maybe"}, "`low_vram` 'maybe' is not one of on, off, profile",
     "use on, off, or profile (the server's GPU profile decides)"),
    ({"images": 0}, "`images` 0: at least one job per resolution",
     "use `images` 2 or more to see warm jobs"),
])
def test_bad_options_name_the_parameter_to_a_python_caller(options: dict[str, object], said: str,
                                                           fix: str) -> None:
    with pytest.raises(UsageError) as info:
        BenchOptions(**options)  # type: ignore[arg-type]
    assert (info.value.message, info.value.fix) == (said, fix)


def test_sampler_reads_a_window_and_says_when_it_cannot(fake_nvidia_smi: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    with GpuSampler(interval_s=0.05) as sampler:
        while len(sampler.samples) < 3:
            pass
    first, last = sampler.samples[0].at, sampler.samples[-1].at
    window = sampler.window(first, last)
    assert (window.busy_share, window.peak_used_bytes) == (0.4, 20480 * 1024 * 1024)
    assert window.samples == len(sampler.samples) and sampler.reason is None
    assert sampler.window(last + 1, last + 2).busy_share is None

    fake_nvidia_smi.write_text("#!/bin/sh\necho '[N/A], [N/A], [N/A]'\n")
    with GpuSampler() as quiet:
        pass
    assert quiet.reason == "not measured: nvidia-smi printed no sample it could read"


def test_cpu_sampler_sees_a_busy_core_and_says_when_it_cannot(tmp_path: Path) -> None:
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with CpuSampler(interval_s=0.05) as cpu:
            time.sleep(1.5)
    finally:
        burner.kill()
        burner.wait()
    first, last = cpu.readings[0][0], cpu.readings[-1][0]
    window = cpu.window(first, last)
    # The burner alone keeps one core busy; /proc/stat counts every process on the machine.
    assert window.cores_busy is not None and 0.7 <= window.cores_busy <= window.cores + 0.5
    assert cpu.reason is None and cpu.window(last + 1, last + 2).cores_busy is None

    with CpuSampler(stat=tmp_path / "missing") as blind:
        pass
    assert blind.reason == f"not measured: {tmp_path / 'missing'} is not readable here"
    assert blind.window(0, time.monotonic()).cores_busy is None

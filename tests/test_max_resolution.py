"""``TRELLIS_BOX_MAX_RESOLUTION``: a lower top resolution than the card's, applied once in
preflight's profile step and seen by everything that reads the profile (worker sizing, the state
file and ``/trellis-box/info``, the refusals of ``generate`` and ``bench``, doctor); against the stand-in with a fake
``nvidia-smi``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.photos import object_photo
from tests.serve_support import L4_MIB, ServeSetup, free_port, make_setup
from tests.test_doctor import by_name, doctor
from tests.test_serve import StartServe, get, read_state
from trellis_box.cli.app import main
from trellis_box.gpu.profiles import CORES_PER_WORKER, MAX_WORKERS

H200_MIB = 143771  # nvidia-smi's memory.total of an H200 (141 GB card)


def h200(tmp_path: Path) -> ServeSetup:
    return make_setup(tmp_path / "h200", name="NVIDIA H200", memory_mib=H200_MIB, compute_cap="9.0")


def profile_step(events: list[dict[str, object]]) -> dict[str, object]:
    return next(e for e in events if e["event"] == "step" and e["step"] == "profile")


def test_a_cap_at_1024_sizes_auto_at_1024_and_every_client_sees_it(
        tmp_path: Path, start_serve: StartServe, capsys: pytest.CaptureFixture[str]) -> None:
    setup = h200(tmp_path)
    # On a machine with 16 cores auto starts 6 workers: their ports away from serve's neighbours.
    serve = start_serve(setup, "--no-warmup", env=setup.environment(
        TRELLIS_BOX_WORKERS="auto", TRELLIS_BOX_MAX_RESOLUTION="1024",
        TRELLIS_BOX_WORKER_PORT=str(free_port())))
    serve.wait_event("phase", phase="ready")

    # Memory is planned at 1024's peak: 6 fit (3 at 1536's); the cores here then decide.
    cores = len(os.sched_getaffinity(0))
    workers = max(1, min(6, cores // CORES_PER_WORKER, MAX_WORKERS))
    assert profile_step(serve.events())["detail"] == (
        "80gb-class: low_vram off, resolutions 512, 1024 (TRELLIS_BOX_MAX_RESOLUTION), "
        f"{workers} ComfyUI worker{'s' if workers > 1 else ''} (auto: 6 fit in memory at 1024's peak, "
        f"{cores} cores allow {cores // CORES_PER_WORKER}, at most {MAX_WORKERS}, at least 1)")
    assert len(read_state(setup)["workers"]) == workers
    status, info = get(f"{serve.url}/trellis-box/info")
    assert status == 200 and info["allowed_resolutions"] == ["512", "1024"]
    assert info["profile"]["max_resolution"] == "1024" and info["profile"]["lowered_from"] == "1536"

    photo = object_photo(tmp_path / "photo.png")
    code = main(["generate", str(photo), "--server", serve.url, "--out", str(tmp_path / "out"),
                 "--resolution", "1536"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "error: resolution 1536 is above this server's limit of 1024" in err
    assert ("use --resolution 1024, or --auto-resolution to step down to it; for 1536, restart the "
            "server with TRELLIS_BOX_MAX_RESOLUTION=1536 (or unset)") in err
    assert not (tmp_path / "out" / "photo.glb").exists()
    code = main(["bench", "--server", serve.url, "--resolutions", "1536", "--images", "1"])
    assert code == 2
    assert "the server does not run resolution 1536" in capsys.readouterr().err


def test_without_the_cap_the_same_card_sizes_at_1536(tmp_path: Path, start_serve: StartServe) -> None:
    setup = h200(tmp_path)
    serve = start_serve(setup, "--no-warmup", env=setup.environment(TRELLIS_BOX_WORKERS="auto"))
    serve.wait_event("phase", phase="ready")
    detail = str(profile_step(serve.events())["detail"])
    assert detail.startswith("80gb-class: low_vram off, resolutions 512, 1024, 1536, ")
    assert "(auto: 3 fit in memory at 1536's peak, " in detail
    assert get(f"{serve.url}/trellis-box/info")[1]["profile"]["lowered_from"] is None


def test_a_cap_above_the_card_stops_preflight_naming_the_setting(
        tmp_path: Path, start_serve: StartServe) -> None:
    setup = make_setup(tmp_path / "l4", name="NVIDIA L4", memory_mib=L4_MIB)
    serve = start_serve(setup, env=setup.environment(TRELLIS_BOX_MAX_RESOLUTION="1536"))
    assert serve.wait_exit() == 2
    err = " ".join(serve.stderr.split())
    assert "error: TRELLIS_BOX_MAX_RESOLUTION=1536 is above what GPU NVIDIA L4 holds" in err
    assert "(24gb-class: highest resolution 1024); 1536 needs about 40 GB" in err
    assert ("set TRELLIS_BOX_MAX_RESOLUTION to one of 512, 1024, or unset it for the card's own "
            "limit (1024)") in err
    assert serve.comfy_pid() is None
    state = read_state(setup)
    assert state["phase"] == "failed" and "TRELLIS_BOX_MAX_RESOLUTION" in state["error"]


def test_doctor_reports_the_cap_and_refuses_one_above_the_card(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    setup = h200(tmp_path)
    code, report = doctor(setup, monkeypatch, capsys,
                          env=setup.environment(TRELLIS_BOX_MAX_RESOLUTION="512"))
    assert code == 0, json.dumps(report)
    assert by_name(report)["profile"]["detail"].startswith(
        "80gb-class: low_vram off, resolutions 512 (TRELLIS_BOX_MAX_RESOLUTION), 1 ComfyUI worker")

    l4 = make_setup(tmp_path / "l4", name="NVIDIA L4", memory_mib=L4_MIB)
    code, report = doctor(l4, monkeypatch, capsys, env=l4.environment(TRELLIS_BOX_MAX_RESOLUTION="1536"))
    profile = by_name(report)["profile"]
    assert code == 1 and profile["status"] == "failed"
    assert profile["error"]["variable"] == "TRELLIS_BOX_MAX_RESOLUTION"
    assert profile["error"]["max_resolution"] == "1024"

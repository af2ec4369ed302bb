"""`trellis-box serve` outside Docker, against the ComfyUI stand-in, with a fake nvidia-smi.

Each test starts the real command as a child process and watches its JSON event lines, the state
file and the node pack's routes. Every failure must stop serve with a clear message and a
non-zero exit, and never report ready.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.serve_support import ServeProcess, ServeSetup, make_setup
from trellis_box import pins
from trellis_box.comfyui.workflow import build
from trellis_box.errors import ConfigError
from trellis_box.serve import preflight, settings
from trellis_box.serve.supervise import StateFile, comfy_command, required_classes
from trellis_box.serve.warmup import warmup_options

StartServe = Callable[..., ServeProcess]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def read_state(setup: ServeSetup) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(setup.state.read_text())
    return state


def phases(process: ServeProcess) -> list[str]:
    return [e["phase"] for e in process.events() if e["event"] == "phase"]


def assert_never_ready(process: ServeProcess, setup: ServeSetup) -> None:
    assert "ready" not in phases(process)
    if setup.state.exists():
        state = read_state(setup)
        assert state["ready"] is False
        assert state["phase"] == "failed"


def wait_for_file(path: Path, serve: ServeProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared; stderr:\n{serve.stderr}"
        assert serve.proc.poll() is None, f"serve exited early; stderr:\n{serve.stderr}"
        time.sleep(0.05)  # polling a file written by another process: no event to wait on


def wait_until_gone(pid: int, serve: ServeProcess, timeout: float = 30.0) -> None:
    """An orphan is reaped by init, not by us: poll until it is (no event tells us)."""
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs; stderr:\n{serve.stderr}"
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes only once reaped; serve reaps its children.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


class TestReady:
    def test_reaches_ready_serves_the_routes_and_stops_on_sigterm(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        serve = start_serve(serve_setup)
        serve.wait_event("phase", phase="ready")

        state = read_state(serve_setup)
        assert state["ready"] is True and state["error"] is None
        assert state["profile"] == {"gpu_name": "NVIDIA L40S", "vram_bytes": 46068 * 1024**2,
                                    "low_vram": True, "max_resolution": "1536", "lowered_from": None}
        assert state["allowed_resolutions"] == ["512", "1024", "1536"]
        assert state["pins"]["comfyui"]["commit"] == "a125cd84b054a57729b5eecab930ca9408719832"
        assert state["weights_mode"] == "real"
        status, body = get(f"{serve.url}/trellis-box/ready")
        assert (status, body["ready"], body["phase"]) == (200, True, "ready")
        status, info = get(f"{serve.url}/trellis-box/info")
        assert status == 200 and info["allowed_resolutions"] == ["512", "1024", "1536"]

        # Every phase was logged with its duration, in order, each line a timestamped JSON record.
        assert phases(serve) == ["preflight", "starting", "registering", "warming", "ready"]
        assert all(datetime.fromisoformat(e["ts"]).tzinfo is not None for e in serve.events())
        done = [e["phase"] for e in serve.events() if e["event"] == "phase_done"]
        assert done == ["preflight", "starting", "registering", "warming"]
        steps = [e["step"] for e in serve.events() if e["event"] == "step"]
        assert steps == ["gpu", "cuda arch", "profile", "environment", "comfyui root",
                         "directories", "port", "weights", "node imports", "runtime packages"]
        assert all(e["status"] == "ok" and e["duration_s"] >= 0 for e in serve.events()
                   if e["event"] == "step")
        # The warm-up ran one prompt and cleaned up its outputs.
        warmed = serve.wait_event("warmed")
        assert warmed["prompt_id"]
        assert not (serve_setup.root / "output" / "trellis-box-warmup").exists()

        comfy = serve.comfy_pid()
        assert comfy is not None
        serve.signal(signal.SIGTERM)
        assert serve.wait_exit(30) == 128 + signal.SIGTERM
        assert process_gone(comfy)
        stopping = serve.wait_event("stopping")
        assert stopping["signal"] == "SIGTERM" and stopping["phase"] == "ready"
        # serve's last word: the status it exits with and how long the stop took by its own clock.
        exited = serve.events()[-1]
        assert exited["event"] == "exited" and exited["status"] == 128 + signal.SIGTERM
        assert exited["stop_s"] is not None and exited["stop_s"] >= 0

    def test_sigint_is_forwarded_and_its_status_returned(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        serve = start_serve(serve_setup, "--no-warmup")
        serve.wait_event("phase", phase="ready")
        assert "warming" not in phases(serve)
        assert serve.wait_event("warmup_skipped")
        comfy = serve.comfy_pid()
        assert comfy is not None
        serve.signal(signal.SIGINT)
        code = serve.wait_exit(30)
        # The stand-in, like ComfyUI, catches KeyboardInterrupt and exits 0 ("Stopped server").
        assert code == serve.wait_event("comfyui_exited")["status"] == 0
        assert process_gone(comfy)

    def test_sigterm_during_warm_up_stops_at_once_and_never_reports_ready(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        env = serve_setup.environment(COMFY_STANDIN_EXEC_SECONDS="120")
        serve = start_serve(serve_setup, env=env)
        serve.wait_event("phase", phase="warming")
        comfy = serve.comfy_pid()
        assert comfy is not None
        serve.signal(signal.SIGTERM)
        assert serve.wait_exit(30) == 128 + signal.SIGTERM
        assert process_gone(comfy)
        assert "ready" not in phases(serve)
        assert read_state(serve_setup)["ready"] is False

    def test_comfyui_ignoring_sigterm_is_killed_after_the_grace_period(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        # A custom node may install its own handler; ComfyUI loads it in its main thread.
        stubborn = serve_setup.root / "custom_nodes" / "ignores_sigterm"
        stubborn.mkdir()
        (stubborn / "__init__.py").write_text(
            "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nNODE_CLASS_MAPPINGS = {}\n")
        serve = start_serve(serve_setup, "--no-warmup",
                            env=serve_setup.environment(TRELLIS_BOX_STOP_GRACE="0.5"))
        serve.wait_event("phase", phase="ready")
        comfy = serve.comfy_pid()
        assert comfy is not None
        serve.signal(signal.SIGTERM)
        assert serve.wait_exit(30) == 128 + signal.SIGKILL
        assert serve.wait_event("killing")["after_s"] == 0.5
        assert process_gone(comfy)

    def test_comfyui_does_not_outlive_a_killed_serve(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        serve = start_serve(serve_setup, "--no-warmup")
        serve.wait_event("phase", phase="ready")
        comfy = serve.comfy_pid()
        assert comfy is not None
        serve.signal(signal.SIGKILL)
        assert serve.wait_exit(30) == -signal.SIGKILL
        wait_until_gone(comfy, serve)

    def test_comfyui_dying_after_ready_ends_serve_with_its_status(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        # No restarts left: the worker's death ends serve (the container turns unhealthy).
        serve = start_serve(serve_setup, "--no-warmup",
                            env=serve_setup.environment(TRELLIS_BOX_WORKER_RESTARTS="0"))
        serve.wait_event("phase", phase="ready")
        comfy = serve.comfy_pid()
        assert comfy is not None
        os.kill(comfy, signal.SIGKILL)
        assert serve.wait_exit(30) == 128 + signal.SIGKILL
        state = read_state(serve_setup)
        assert state["ready"] is False and state["error"] == "ComfyUI exited with status 137"


class TestRefusesToStart:
    def test_missing_weight(self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        missing = (serve_setup.root / "models" / "facebook" / "dinov3-vitl16-pretrain-lvd1689m"
                   / "model.safetensors")
        missing.unlink()
        serve = start_serve(serve_setup)
        assert serve.wait_exit() == 1
        assert f"error: weight file missing: {missing}" in serve.stderr
        assert "Trellis2LoadModel needs it at the first generation; ComfyUI was not started." \
            in serve.stderr
        assert "fix: rebuild the image, or remove that volume." in serve.stderr
        assert serve.comfy_pid() is None
        assert_never_ready(serve, serve_setup)
        assert "weight file missing" in read_state(serve_setup)["error"]

    def test_stand_in_weights_are_refused_unless_allowed_and_then_reported(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        from trellis_box.weights import standin

        marker = standin.mark(serve_setup.root)
        refused = start_serve(serve_setup)
        assert refused.wait_exit() == 1
        assert "are stand-in weights (random values), not the real models" in refused.stderr
        assert "TRELLIS_BOX_ALLOW_STAND_IN_WEIGHTS=1" in refused.stderr and refused.comfy_pid() is None

        # TRELLIS_BOX_LOW_VRAM overrides the profile's (an L40S here: on), as the GPU harness measures it.
        serve = start_serve(serve_setup, env=serve_setup.environment(TRELLIS_BOX_ALLOW_STAND_IN_WEIGHTS="1",
                                                                     TRELLIS_BOX_LOW_VRAM="0"))
        serve.wait_event("phase", phase="ready")
        [step] = [e for e in serve.events() if e.get("step") == "weights"]
        assert "STAND-IN WEIGHTS" in step["detail"], step
        status, info = get(f"{serve.url}/trellis-box/info")
        assert status == 200 and info["weights_mode"] == "stand-in"
        assert info["profile"]["low_vram"] is False
        [profile] = [e for e in serve.events() if e.get("step") == "profile"]
        assert "low_vram off (TRELLIS_BOX_LOW_VRAM)" in profile["detail"]
        marker.unlink()

    def test_node_pack_that_fails_to_import_shows_its_traceback(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        init = serve_setup.root / "custom_nodes" / "ComfyUI-Trellis2" / "__init__.py"
        init.write_text(init.read_text() + "\nimport o_voxel_missing_in_this_image\n")
        serve = start_serve(serve_setup)
        assert serve.wait_exit() == 1
        err = serve.stderr
        assert "error: node pack ComfyUI-Trellis2 failed to import; ComfyUI was not started" in err
        # The pack's own traceback, down to its file and the real exception.
        assert f'File "{init}"' in err
        assert "ModuleNotFoundError: No module named 'o_voxel_missing_in_this_image'" in err
        assert "fix: a Python package the pack imports is not installed" in err
        assert serve.comfy_pid() is None
        assert_never_ready(serve, serve_setup)

    def test_transformers_outside_the_packs_range_is_named_with_its_fix(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        # Every import check passes with transformers 5; only the first generation would fail.
        good = serve_setup.root / "transformers-4.57.1.dist-info"
        bad = serve_setup.root / "transformers-5.1.0.dist-info"
        good.rename(bad)
        (bad / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 5.1.0\n")
        serve = start_serve(serve_setup)
        assert serve.wait_exit() == 1
        err = serve.stderr
        assert ("error: transformers 5.1.0 is outside the range the node packs work with "
                "(>=4.56,<5); ComfyUI was not started") in err
        assert "'DINOv3ViTModel' object has no attribute 'layer'" in err
        assert "fix: install transformers==4.57.1 in ComfyUI's interpreter" in err
        assert serve.comfy_pid() is None
        assert_never_ready(serve, serve_setup)

    def test_warm_up_that_fails(self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        env = serve_setup.environment(COMFY_STANDIN_FAIL_NODE="Trellis2MeshWithVoxelGenerator",
                                      COMFY_STANDIN_FAIL_KIND="oom")
        serve = start_serve(serve_setup, env=env)
        assert serve.wait_exit() == 1
        err = serve.stderr
        assert "error: warm-up job failed; the server will not report ready" in err
        assert "Trellis2MeshWithVoxelGenerator" in err
        assert "TRELLIS_BOX_WARMUP=0 (--no-warmup) starts without it" in err and "`warmup`" not in err
        comfy = serve.comfy_pid()
        assert comfy is not None and process_gone(comfy)
        assert_never_ready(serve, serve_setup)
        # The state file is the library's record: the setting, by its name.
        assert "warm-up job failed" in read_state(serve_setup)["error"]
        assert "TRELLIS_BOX_WARMUP=0 (`warmup`) starts without it" in read_state(serve_setup)["error"]

    def test_no_gpu(self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        serve = start_serve(serve_setup, env=serve_setup.without_gpu())
        assert serve.wait_exit() == 1
        assert "error: no CUDA GPU visible: nvidia-smi is not on PATH" in serve.stderr
        assert "fix: start the container with GPU access: `docker run --gpus all ...`" in serve.stderr
        assert serve.comfy_pid() is None
        assert_never_ready(serve, serve_setup)

    def test_gpu_driver_not_reachable(self, tmp_path: Path, start_serve: StartServe) -> None:
        from tests.serve_support import DRIVER_ERROR

        setup = make_setup(tmp_path / "serve", fail=DRIVER_ERROR)
        serve = start_serve(setup)
        assert serve.wait_exit() == 1
        assert "failed with exit code 9" in serve.stderr
        assert "couldn't communicate with the NVIDIA driver" in serve.stderr
        assert_never_ready(serve, setup)

    def test_comfyui_exiting_before_ready_passes_its_status_on(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        # ComfyUI's interpreter imports the packs fine, then main.py exits 2 before the port opens.
        python = tmp_path / "python"
        python.write_text('#!/bin/sh\ncase "$1" in\n  */main.py) echo "main.py: cannot start" >&2; exit 2;;\n'
                          f'esac\nexec {sys.executable} "$@"\n')
        python.chmod(0o755)
        serve = start_serve(serve_setup, env={**serve_setup.env, "TRELLIS_BOX_PYTHON": str(python)})
        assert serve.wait_exit() == 2
        assert "error: ComfyUI exited with status 2 while starting; it never became ready" \
            in serve.stderr
        assert "main.py: cannot start" in serve.stderr
        assert_never_ready(serve, serve_setup)

    def test_arguments_comfyui_rejects_are_named_before_it_starts(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        # The import check parses ComfyUI's flags as ComfyUI will: no pack gets the blame.
        serve = start_serve(serve_setup, "--", "--no-such-comfyui-flag")
        assert serve.wait_exit() == 2
        assert "error: ComfyUI rejects its extra arguments: --no-such-comfyui-flag" in serve.stderr
        assert "unrecognized arguments: --no-such-comfyui-flag" in serve.stderr
        assert "fix: correct TRELLIS_BOX_COMFY_ARGS or the arguments after `--`" in serve.stderr
        assert "failed to import" not in serve.stderr
        assert serve.comfy_pid() is None
        assert_never_ready(serve, serve_setup)

    def test_port_taken_by_another_server(self, serve_setup: ServeSetup,
                                          start_serve: StartServe) -> None:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            serve = start_serve(serve_setup, port=port)
            assert serve.wait_exit() == 1
        assert f"error: port {port} on 127.0.0.1 is not free; ComfyUI was not started" in serve.stderr
        # Its log lines and its error name the flag; the library, its setting (below).
        assert "TRELLIS_BOX_PORT / --port" in serve.stderr and "`port`" not in serve.stderr
        assert serve.comfy_pid() is None
        assert_never_ready(serve, serve_setup)

    def test_sigterm_during_preflight_stops_the_import_check_at_once(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        init = serve_setup.root / "custom_nodes" / "ComfyUI-Trellis2" / "__init__.py"
        marker = serve_setup.base / "importing"
        init.write_text("import os, pathlib, threading\n"
                        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
                        "threading.Event().wait()\n")
        serve = start_serve(serve_setup)
        serve.wait_event("step", step="weights")
        wait_for_file(marker, serve)
        serve.signal(signal.SIGTERM)
        assert serve.wait_exit(30) == 128 + signal.SIGTERM
        assert serve.wait_event("stopped")["phase"] == "preflight"
        assert process_gone(int(marker.read_text()))
        assert serve.comfy_pid() is None
        assert "ready" not in phases(serve)

    def test_comfyui_that_never_answers_is_stopped_at_the_start_timeout(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        env = serve_setup.environment(COMFY_STANDIN_STARTUP_DELAY="120",
                                      TRELLIS_BOX_START_TIMEOUT="2")
        serve = start_serve(serve_setup, env=env)
        assert serve.wait_exit() == 1
        assert f"error: ComfyUI did not answer on http://127.0.0.1:{serve.port} within 2 s" \
            in serve.stderr
        assert "TRELLIS_BOX_START_TIMEOUT" in serve.stderr
        comfy = serve.comfy_pid()
        assert comfy is not None and process_gone(comfy)
        assert_never_ready(serve, serve_setup)

    def test_missing_node_class_is_named_with_its_pack(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        shutil.rmtree(serve_setup.root / "custom_nodes" / "trellis_box_nodes")
        serve = start_serve(serve_setup)
        assert serve.wait_exit() == 1
        assert "error: ComfyUI lacks node classes the workflow needs: TrellisBoxGLBOutput" \
            in serve.stderr
        assert "They come from trellis_box_nodes." in serve.stderr
        assert_never_ready(serve, serve_setup)


def test_unwritable_output_dir_says_how_to_fix_it(serve_setup: ServeSetup,
                                                  start_serve: StartServe) -> None:
    """The seed bind-mounts ./output: a host folder owned by another user than the container's."""
    output = serve_setup.root / "output"
    prefix: list[str] = []
    if os.geteuid() == 0:
        # Root writes anywhere, unless it lacks the capability to override permission bits, as a
        # container's root under a user namespace or a no-new-privileges policy can.
        owner = 1000
        shutil.chown(output, owner, owner)
        output.chmod(0o755)
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    else:
        owner = os.geteuid()
        output.chmod(0o555)
    uid = os.geteuid()
    serve = start_serve(serve_setup, prefix=prefix)
    assert serve.wait_exit() == 1
    err = serve.stderr
    assert f"error: output directory {output} is not writable by uid {uid}" in err
    assert f"Permission denied: it is owned by uid {owner}" in err
    assert f"`sudo chown -R {uid}:{os.getegid()} <host folder>`" in err
    assert f"`docker run --user {owner} ...`" in err
    assert serve.comfy_pid() is None
    assert "ready" not in phases(serve)


class TestPieces:
    def test_required_classes_come_from_the_workflow(self) -> None:
        graph = build(warmup_options(), "x.png")
        assert required_classes() == sorted({n["class_type"] for n in graph.values()})
        assert "TrellisBoxGLBOutput" in required_classes()

    def test_warm_up_is_the_default_workflow_at_512(self) -> None:
        """Same loader inputs as the default workflow, so the first request finds them loaded."""
        from trellis_box.comfyui.workflow import LOAD_MODEL_NODE, RMBG_LOADER_NODE, WorkflowOptions

        warm, default = build(warmup_options(), "a.png"), build(WorkflowOptions(), "a.png")
        for node in (LOAD_MODEL_NODE, RMBG_LOADER_NODE):
            assert warm[node] == default[node]
        unparked = build(warmup_options(low_vram=False), "a.png")
        assert unparked[LOAD_MODEL_NODE]["inputs"]["low_vram"] is False
        assert warmup_options().resolution == "512"
        assert warmup_options(seed=7).seed == 7

    def test_state_file_is_replaced_whole(self, tmp_path: Path) -> None:
        state = StateFile(tmp_path / "deep" / "state.json")
        state.update(phase="starting")
        state.update(phase="ready", ready=True)
        written = json.loads(state.path.read_text())
        assert written["phase"] == "ready" and written["ready"] is True
        assert set(written) == {"phase", "ready", "profile", "allowed_resolutions", "pins", "error", "weights_mode"}
        assert [p.name for p in state.path.parent.iterdir()] == ["state.json"]

    def test_comfy_command_passes_moved_directories_and_extra_args(self, tmp_path: Path) -> None:
        s = settings.load({"TRELLIS_BOX_COMFY_ROOT": str(tmp_path), "TRELLIS_BOX_PORT": "9000",
                           "TRELLIS_BOX_COMFY_ARGS": "--lowvram --preview-method none"})
        cmd = comfy_command(s)
        assert cmd[1:] == [str(tmp_path / "main.py"), "--listen", "0.0.0.0", "--port", "9000",
                           "--lowvram", "--preview-method", "none"]
        moved = settings.load({"TRELLIS_BOX_COMFY_ROOT": str(tmp_path),
                               "TRELLIS_BOX_OUTPUT_DIR": str(tmp_path / "out")})
        assert comfy_command(moved)[-2:] == ["--output-directory", str(tmp_path / "out")]

    @pytest.mark.parametrize(("name", "value", "expected"), [
        ("TRELLIS_BOX_PORT", "eighty", "an integer from 1 to 65535"),
        ("TRELLIS_BOX_PORT", "70000", "an integer from 1 to 65535"),
        ("TRELLIS_BOX_WARMUP", "maybe", "1 or 0"),
        ("TRELLIS_BOX_STOP_GRACE", "-1", "a number of seconds above 0"),
        ("TRELLIS_BOX_CUDA_ARCHS", "ampere", "GPU architectures such as"),
        ("TRELLIS_BOX_COMFY_ARGS", "--a 'unclosed", "arguments a shell could split"),
        ("TRELLIS_BOX_WORKERS", "0", "auto or an integer from 1 to 16"),
        ("TRELLIS_BOX_WORKERS", "many", "auto or an integer from 1 to 16"),
        ("TRELLIS_BOX_WORKER_RESTARTS", "-1", "an integer from 0 to 100"),
        ("TRELLIS_BOX_MAX_RESOLUTION", "2048", "one of 512, 1024, 1536"),
        ("TRELLIS_BOX_MAX_RESOLUTION", "1024_cascade", "one of 512, 1024, 1536"),
    ])
    def test_a_bad_setting_names_its_variable(self, name: str, value: str, expected: str) -> None:
        with pytest.raises(ConfigError) as caught:
            settings.load({name: value})
        text = str(caught.value)
        assert text.startswith(f"environment variable {name} is invalid")
        assert f"{name}={value!r}" in text and expected in text
        assert caught.value.facts["variable"] == name

    def test_a_port_in_use_names_the_variable_and_the_setting(self, tmp_path: Path) -> None:
        """The library's words; serve's own are its flags (test_port_taken_by_another_server)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            s = settings.load({"TRELLIS_BOX_COMFY_ROOT": str(tmp_path), "TRELLIS_BOX_LISTEN": "127.0.0.1",
                               "TRELLIS_BOX_PORT": str(taken.getsockname()[1])})
            _, [result] = preflight.run(s, [step for step in preflight.PREFLIGHT if step.name == "port"],
                                        fail_fast=False)
        assert result.error is not None and result.error.fix is not None
        assert result.error.fix.endswith("or choose another port: TRELLIS_BOX_PORT / `port`")

    def test_settings_defaults(self) -> None:
        s = settings.load({"HOME": "/home/u"})
        assert (s.comfy_root, s.port, s.listen, s.warmup) == (Path("/opt/comfyui"), 8188, "0.0.0.0", True)
        assert s.state_path == Path("/tmp/trellis-box/state.json")
        assert s.output_dir == Path("/opt/comfyui/output")
        assert s.cache_dirs["TRITON_CACHE_DIR"] == Path("/home/u/.triton")
        assert s.base_url == "http://127.0.0.1:8188"
        both = settings.load({"TRELLIS_BOX_LISTEN": "::1,127.0.0.1", "TRELLIS_BOX_PORT": "9"})
        assert both.listen_addresses == ("::1", "127.0.0.1")
        assert both.base_url == "http://[::1]:9"
        assert s.cuda_archs == pins.load().cuda_archs
        # auto by default: sized at start from the profile and the cores (None); the others
        # follow 8188.
        assert (s.workers, s.worker_restarts, s.worker_ports(3)) == (None, 3, [8188, 8189, 8190])
        assert settings.load({"TRELLIS_BOX_WORKERS": "auto"}).workers is None
        # The VRAM profile's own top unless lowered.
        assert s.max_resolution is None
        assert settings.load({"TRELLIS_BOX_MAX_RESOLUTION": "1024"}).max_resolution == "1024"
        moved = settings.load({"TRELLIS_BOX_WORKERS": "2", "TRELLIS_BOX_WORKER_PORT": "9100"})
        assert (moved.workers, moved.worker_ports(2), moved.url_for(9100)) == (
            2, [8188, 9100], "http://127.0.0.1:9100")

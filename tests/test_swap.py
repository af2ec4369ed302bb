"""``trellis-box swap`` and ``status`` against the real Docker engine.

Containers run the ComfyUI stand-in (our node pack and its ``/trellis-box/ready`` route included)
in a small image made from the local Debian base image, with ``--network host`` and a free port
each. Every test gets its own swap group and lock file, so it sees only its own containers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.comfy_standin import install
from tests.docker_support import buildkit_build
from tests.photos import object_photo
from trellis_box.cli.app import main
from trellis_box.comfyui.client import ComfyClient, QueueState
from trellis_box.comfyui.workflow import WorkflowOptions, build
from trellis_box.swap.config import load_gpu_config
from trellis_box.swap.docker_ops import GROUP_LABEL, MANAGED_LABEL, DockerOps
from trellis_box.swap.probes import Probes

pytestmark = pytest.mark.docker

PREFIX = f"tbswap-{uuid.uuid4().hex[:8]}"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0  # for waits on events in the tests themselves; generous for a loaded machine
READY_STATE = {"phase": "ready", "ready": True, "error": None, "profile": None,
               "allowed_resolutions": ["512", "1024"], "pins": {}}
DOCKERFILE = """\
FROM {base}
COPY comfyui /opt/comfyui
COPY ready.json /opt/trellis-box/ready.json
# What trellis-box serve writes once the models are warm: the ready route answers 200.
ENV TRELLIS_BOX_STATE=/opt/trellis-box/ready.json
ENTRYPOINT ["/usr/bin/tini", "--", "python3", "/opt/comfyui/main.py", "--listen", "127.0.0.1"]
"""


@pytest.fixture(scope="session")
def standin_image(base_image: str, docker_client: docker.DockerClient,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = tmp_path_factory.mktemp("swap-image")
    install(context / "comfyui")
    (context / "ready.json").write_text(json.dumps(READY_STATE))
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base_image))
    tag = f"{PREFIX}-comfyui:test"
    done = buildkit_build(context, tag)
    if done.returncode != 0:
        pytest.fail(f"building the stand-in image failed:\n{done.stderr[-3000:]}")
    yield tag
    docker_client.images.remove(tag, force=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bench:
    """One test's GPU group: a config file, its containers, and ways to drive and inspect them."""

    config: Path
    group: str
    ports: dict[str, int]
    client: docker.DockerClient

    def container(self, name: str) -> str:
        return f"{self.group}-{name}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def args(self, *args: str) -> list[str]:
        return [*args, "--config", str(self.config)]

    def running(self) -> set[str]:
        found = self.client.containers.list(filters={"label": f"{GROUP_LABEL}={self.group}"})
        return {c.name for c in found}

    def logs(self, name: str) -> str:
        return self.client.containers.get(self.container(name)).logs().decode()

    def swap(self, capsys: pytest.CaptureFixture[str], name: str,
             *extra: str) -> tuple[int, str, str]:
        code = main(self.args("swap", name, *extra))
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def bench(standin_image: str, docker_client: docker.DockerClient,
          tmp_path: Path) -> Iterator[Bench]:
    group = f"{PREFIX}-{uuid.uuid4().hex[:6]}"
    ports = {name: _free_port() for name in ("trellis", "wan", "broken", "stuck", "crashing",
                                                   "absent", "dying")}

    def entry(name: str, *, state: str = "", ready_timeout: float = 120,
              command: list[str] | None = None, settle: float | None = None) -> str:
        env = {"COMFY_STANDIN_EXEC_SECONDS": "2"}
        if state:
            env["TRELLIS_BOX_STATE"] = state
        command = command or ["--port", str(ports[name])]
        return (f"[containers.{name}]\n"
                f'image = "{standin_image}"\n'
                f'container_name = "{group}-{name}"\n'
                f'network = "host"\n'
                f'gpus = "none"\n'
                f"command = {json.dumps(command)}\n"
                f"environment = {_inline(env)}\n"
                f'ready_url = "http://127.0.0.1:{ports[name]}/trellis-box/ready"\n'
                f"ready_timeout = {ready_timeout}\n"
                + (f"settle_seconds = {settle}\n" if settle is not None else "")
                + "stop_timeout = 20\n")

    config = tmp_path / "gpu-containers.toml"
    config.write_text(
        f'[swap]\ngroup = "{group}"\nlock_file = "{tmp_path / "swap.lock"}"\n'
        # A short settle for every container keeps the suite quick; `dying` watches for long.
        "drain_timeout = 120\nsettle_seconds = 1\n\n"
        + entry("trellis") + entry("wan")
        # Settles for ten minutes: whatever the machine's speed, a test that ends it after its
        # first ready answer does so while the swap still watches.
        + entry("dying", settle=600)
        # No state file: the ready route answers 503 for ever (serve never got ready).
        + entry("broken", state="/nonexistent/state.json", ready_timeout=6)
        + entry("stuck", state="/nonexistent/state.json", ready_timeout=600)
        # argparse refuses the port: the process exits at once with a usage error.
        + entry("crashing", command=["--port", "not-a-port"])
        + entry("absent").replace(standin_image, f"{PREFIX}-absent:none"))
    yield Bench(config, group, ports, docker_client)
    for container in docker_client.containers.list(
            all=True, filters={"label": [f"{MANAGED_LABEL}=true", f"{GROUP_LABEL}={group}"]}):
        container.remove(force=True)


def _inline(table: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }"


def read_queue(url: str) -> QueueState:
    with Probes() as probes:
        return probes.queue(url)


def queue_jobs(url: str, count: int, tmp_path: Path) -> list[str]:
    """Queue ``count`` image-to-GLB prompts on the stand-in; return their prompt ids."""
    image = object_photo(tmp_path / "photo.png")

    async def run() -> list[str]:
        async with ComfyClient(url) as comfy:
            name = await comfy.http.upload_image(image)
            return [await comfy.queue_prompt(build(WorkflowOptions(seed=seed), name))
                    for seed in range(count)]
    prompts = asyncio.run(run())
    # The first one is running (held by hold_jobs), the rest pending, on any machine speed.
    wait_for("the first job to run", lambda: read_queue(url).running == (prompts[0],))
    return prompts


def hold_jobs(url: str) -> None:
    """Make the stand-in's generation step last an hour, in one-second steps: queued jobs stay in
    the queue until :func:`release_jobs`, whatever the machine's speed."""
    set_standin(url, exec_seconds=3600, progress_steps=3600)


def release_jobs(url: str) -> None:
    set_standin(url, exec_seconds=0.05)


def set_standin(url: str, **options: float) -> None:
    request = urllib.request.Request(f"{url}/standin/options", data=json.dumps(options).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def cli(*args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "trellis_box.cli.app", *args], text=True,
                            **popen)  # type: ignore[call-overload]


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


# ---- the tests --------------------------------------------------------------------------------

def test_swap_starts_the_target_then_swapping_again_is_a_noop(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = bench.swap(capsys, "trellis", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["noop"] is False
    assert result["steps"] == ["create trellis", f"start {bench.container('trellis')}",
                               f"wait until {bench.container('trellis')} is ready"]
    assert bench.running() == {bench.container("trellis")}

    started = bench.client.containers.get(bench.container("trellis")).attrs["State"]["StartedAt"]
    code, out, err = bench.swap(capsys, "trellis", "--json")
    assert code == 0, err
    assert json.loads(out)["noop"] is True
    after = bench.client.containers.get(bench.container("trellis")).attrs["State"]["StartedAt"]
    assert after == started

    code, out, _ = bench.swap(capsys, "trellis")
    assert "trellis is already running and ready: nothing to do" in out


def test_swap_drains_a_busy_queue_before_stopping(bench: Bench, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    hold_jobs(bench.url("trellis"))
    prompts = queue_jobs(bench.url("trellis"), 2, tmp_path)

    out, err = tmp_path / "swap.out", tmp_path / "swap.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        swapping = cli(*bench.args("swap", "wan", "--json"), stdout=stdout, stderr=stderr)
    try:
        wait_for("the swap to wait for the queue",
                 lambda: f"waiting for {bench.container('trellis')}: 1 running, 1 pending"
                 in err.read_text())
        # Still serving its jobs: nothing stopped it, nothing else started.
        assert bench.running() == {bench.container("trellis")}
        release_jobs(bench.url("trellis"))
        assert swapping.wait(timeout=DEADLINE) == 0, err.read_text()
    finally:
        if swapping.poll() is None:
            swapping.kill()
    result = json.loads(out.read_text())
    assert result["steps"][:2] == [f"drain {bench.container('trellis')}",
                                   f"stop {bench.container('trellis')}"]
    assert result["cut_off"] == {}
    assert bench.running() == {bench.container("wan")}
    # Both jobs ran to the end in the old container before it stopped.
    log = bench.logs("trellis")
    assert log.count("Prompt executed in") == len(prompts)
    assert "Processing interrupted" not in log


def test_force_interrupts_and_clears_and_reports_the_cut_jobs(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    hold_jobs(bench.url("trellis"))
    prompts = queue_jobs(bench.url("trellis"), 3, tmp_path)

    code, out, err = bench.swap(capsys, "wan", "--force", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert sorted(result["cut_off"][bench.container("trellis")]) == sorted(prompts)
    assert bench.running() == {bench.container("wan")}
    # The running job was interrupted; the two pending ones never ran.
    log = bench.logs("trellis")
    assert log.count("Processing interrupted") == 1
    assert log.count("Prompt executed in") == 1


def test_drain_timeout_stops_nothing_and_names_the_jobs(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    hold_jobs(bench.url("trellis"))
    prompts = queue_jobs(bench.url("trellis"), 3, tmp_path)
    code, _, err = bench.swap(capsys, "wan", "--drain-timeout", "0")
    assert code == 1
    assert f"the ComfyUI queue of {bench.container('trellis')} did not empty within 0 s" in err
    assert "note: nothing was stopped; what ran before still runs" in err
    # The library names parameters; the command line shows them as its flags.
    assert "allow longer (--drain-timeout SECONDS, swap.drain_timeout in" in err
    assert "or give --force to interrupt and delete these jobs" in err
    assert any(prompt in err for prompt in prompts)
    assert bench.running() == {bench.container("trellis")}


def test_target_that_never_becomes_ready_rolls_back_to_the_previous(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    code, out, err = bench.swap(capsys, "broken", "--json")
    assert code == 1
    error = json.loads(out)
    assert error["error"] == "swap-failed"
    assert error["previous"] == bench.container("trellis")
    assert f"swap to broken failed: {bench.container('broken')} did not become ready within 6 s" \
        in err
    assert "/trellis-box/ready last answered: 503: {" in err
    assert '"phase": "unknown"' in err
    assert f"last {len(error['log'])} log lines of {bench.container('broken')}:" in err
    assert any("To see the GUI go to" in line or "Starting server" in line
               for line in error["log"]), error["log"]
    assert f"rolled back: {bench.container('trellis')} is running and ready again" in err
    assert bench.running() == {bench.container("trellis")}


def _terminate_swap_to_stuck(bench: Bench, tmp_path: Path,
                             meanwhile: Callable[[], None] = lambda: None) -> str:
    """Swap from trellis to the never-ready ``stuck``, run ``meanwhile`` while it waits, then
    SIGTERM it; returns its stderr after it exited 130."""
    err = tmp_path / "swap.err"
    with err.open("w") as stderr:
        swapping = cli(*bench.args("swap", "stuck"), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for("the swap to wait for the new container",
                 lambda: f"wait until {bench.container('stuck')} is ready" in err.read_text())
        meanwhile()
        swapping.send_signal(signal.SIGTERM)
        assert swapping.wait(timeout=DEADLINE) == 130, err.read_text()
    finally:
        if swapping.poll() is None:
            swapping.kill()
    return err.read_text()


def test_terminated_swap_rolls_back_to_the_previous(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    err = _terminate_swap_to_stuck(bench, tmp_path)
    assert f"rolled back: {bench.container('trellis')} is running and ready again" in err
    assert bench.running() == {bench.container("trellis")}


def test_target_that_crashes_rolls_back_with_its_last_log_lines(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "wan")[0] == 0
    code, out, err = bench.swap(capsys, "crashing")
    assert code == 1
    assert f"{bench.container('crashing')} stopped before it became ready (exited, exit code 2)" \
        in err
    assert "argument --port: invalid int value: 'not-a-port'" in err
    assert f"rolled back: {bench.container('wan')} is running and ready again" in err
    assert bench.running() == {bench.container("wan")}


def test_container_removed_by_hand_is_created_again(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    assert bench.swap(capsys, "wan")[0] == 0
    bench.client.containers.get(bench.container("trellis")).remove(force=True)
    code, out, err = bench.swap(capsys, "trellis", "--json")
    assert code == 0, err
    assert "create trellis" in json.loads(out)["steps"]
    assert bench.running() == {bench.container("trellis")}

    # The running one removed by hand: nothing to drain, the target simply starts.
    bench.client.containers.get(bench.container("trellis")).remove(force=True)
    code, out, err = bench.swap(capsys, "wan", "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == [f"start {bench.container('wan')}",
                                        f"wait until {bench.container('wan')} is ready"]
    assert bench.running() == {bench.container("wan")}


def test_absent_image_refuses_before_stopping_anything(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    code, _, err = bench.swap(capsys, "absent")
    assert code == 1
    assert f"cannot create {bench.container('absent')}: its image is not on this host" in err
    assert "fix: docker pull" in err
    assert bench.running() == {bench.container("trellis")}


def test_changed_config_recreates_the_stopped_container(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    assert bench.swap(capsys, "wan")[0] == 0
    first_id = bench.client.containers.get(bench.container("trellis")).id
    text = bench.config.read_text()
    bench.config.write_text(text.replace('COMFY_STANDIN_EXEC_SECONDS = "2"',
                                         'COMFY_STANDIN_EXEC_SECONDS = "1"', 1))

    assert main(bench.args("status", "--json")) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["containers"]}
    assert rows["trellis"]["config_changed"] is True
    assert rows["wan"]["config_changed"] is False

    code, out, err = bench.swap(capsys, "trellis", "--json")
    assert code == 0, err
    assert f"remove {bench.container('trellis')} (its config changed)" in json.loads(out)["steps"]
    recreated = bench.client.containers.get(bench.container("trellis"))
    assert recreated.id != first_id
    assert "COMFY_STANDIN_EXEC_SECONDS=1" in recreated.attrs["Config"]["Env"]


def test_two_swaps_at_once_the_second_is_refused_or_waits(
        bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    hold_jobs(bench.url("trellis"))
    queue_jobs(bench.url("trellis"), 1, tmp_path)
    lock = tmp_path / "swap.lock"
    # The first swap holds the lock while it drains the held job.
    first = cli(*bench.args("swap", "wan"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = None
    try:
        wait_for("the first swap to take the lock",
                 lambda: lock.exists() and b"swap to wan" in lock.read_bytes())
        refused = cli(*bench.args("swap", "trellis"), stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
        _, refused_err = refused.communicate(timeout=DEADLINE)
        assert refused.returncode == 1
        assert "another swap is running on this host" in refused_err
        assert f"pid {first.pid} (swap to wan" in refused_err
        assert "--lock-timeout SECONDS" in refused_err

        waiting = cli(*bench.args("swap", "trellis", "--lock-timeout", "600"),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        release_jobs(bench.url("trellis"))
        assert first.wait(timeout=DEADLINE) == 0, first.communicate()[1]
        _, waiting_err = waiting.communicate(timeout=DEADLINE)
        assert waiting.returncode == 0, waiting_err
    finally:
        for process in (first, waiting):
            if process is not None and process.poll() is None:
                process.kill()
    # First to wan, then the waiting one back to trellis: one after the other, never together.
    assert bench.running() == {bench.container("trellis")}
    assert "Prompt executed in" in bench.logs("trellis")


def test_status_names_the_holder_its_readiness_queue_and_uptime(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    hold_jobs(bench.url("trellis"))
    queue_jobs(bench.url("trellis"), 2, tmp_path)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # nvidia-smi's answer to swap's query, as an L40S with 1.5 GiB used would give it.
    (fake_bin / "nvidia-smi").write_text("#!/bin/sh\necho '0, NVIDIA L40S, 1536, 46068'\n")
    (fake_bin / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")

    assert main(bench.args("status", "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["holder"] == bench.container("trellis")
    rows = {row["name"]: row for row in report["containers"]}
    assert rows["trellis"]["state"] == "running"
    assert rows["trellis"]["ready"] is True
    assert (rows["trellis"]["queue_running"], rows["trellis"]["queue_pending"]) == (1, 1)
    assert rows["trellis"]["uptime_seconds"] >= 0
    assert rows["wan"]["state"] == "missing"
    assert report["gpus"] == [{"index": 0, "name": "NVIDIA L40S", "used_mib": 1536,
                               "total_mib": 46068}]

    assert main(bench.args("status")) == 0
    text = capsys.readouterr().out
    assert f"GPU held by {bench.container('trellis')}" in text
    assert "GPU 0 NVIDIA L40S: 1,536 MiB of 46,068 MiB used" in text


def test_status_without_nvidia_smi_says_so(bench: Bench, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(bench.args("status")) == 0
    text = capsys.readouterr().out
    assert "GPU: no container running" in text
    assert "no GPU memory figures" in text and "nvidia-smi is not on PATH" in text


def test_container_is_created_with_every_config_field(
        standin_image: str, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    """What the engine records for a production-like entry (created only: there is no GPU)."""
    group = f"{PREFIX}-create"
    config = tmp_path / "gpu.toml"
    config.write_text(f'[swap]\ngroup = "{group}"\n'
                      "[containers.comfyui-trellis2]\n"
                      f'image = "{standin_image}"\n'
                      f'container_name = "{group}-trellis2"\n'
                      'ports = ["8188:8188", "127.0.0.1:9100:9100", "7000/udp"]\n'
                      f'volumes = ["{tmp_path}:/opt/comfyui/output", "{tmp_path}:/srv/ro:ro"]\n'
                      'environment = { TRELLIS_BOX_WARMUP = "0", THREADS = 4 }\n'
                      'ready_url = "http://127.0.0.1:8188/trellis-box/ready"\n'
                      'gpus = ["0", "1"]\n')
    spec = load_gpu_config(config).containers["comfyui-trellis2"]
    ops = DockerOps(docker_client)
    ops.create(spec, group)
    try:
        attrs = docker_client.containers.get(spec.container_name).attrs
        host = attrs["HostConfig"]
        assert host["PortBindings"] == {
            "8188/tcp": [{"HostIp": "", "HostPort": "8188"}],
            "9100/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9100"}],
            "7000/udp": [{"HostIp": "", "HostPort": ""}],
        }
        assert sorted(host["Binds"]) == sorted([f"{tmp_path}:/opt/comfyui/output",
                                                f"{tmp_path}:/srv/ro:ro"])
        assert host["DeviceRequests"][0]["DeviceIDs"] == ["0", "1"]
        assert host["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
        assert {"TRELLIS_BOX_WARMUP=0", "THREADS=4"} <= set(attrs["Config"]["Env"])
        labels = attrs["Config"]["Labels"]
        assert labels[MANAGED_LABEL] == "true"
        assert labels[GROUP_LABEL] == group
        assert labels["io.trellis-box.swap.spec-digest"] == spec.digest()
        observed = ops.observe(load_gpu_config(config))
        assert [(o.container_name, o.status, o.name) for o in observed] == [
            (spec.container_name, "created", "comfyui-trellis2")]
    finally:
        ops.remove(spec.container_name)
    assert ops.get(spec.container_name) is None


def test_unreachable_engine_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert main(["status", "--config", str(REPO_ROOT / "src" / "trellis_box" / "data" / "gpu-containers.toml")]) == 1
    err = capsys.readouterr().err
    assert "the Docker engine failed to answer" in err
    assert "fix: check that dockerd runs and this user may use it: docker info" in err


def test_two_running_by_hand_status_warns_and_swap_keeps_one(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.swap(capsys, "wan")[0] == 0
    assert bench.swap(capsys, "trellis")[0] == 0
    bench.client.containers.get(bench.container("wan")).start()  # someone's docker start
    assert bench.running() == {bench.container("trellis"), bench.container("wan")}

    assert main(bench.args("status")) == 0
    shared = capsys.readouterr().out
    assert "GPU shared by" in shared and "run trellis-box swap NAME to keep one" in shared

    code, out, err = bench.swap(capsys, "trellis", "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == [f"drain {bench.container('wan')}",
                                        f"stop {bench.container('wan')}"]
    assert bench.running() == {bench.container("trellis")}


def test_previous_removed_during_a_failing_swap_is_recreated_by_the_rollback(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.swap(capsys, "trellis")[0] == 0
    err = _terminate_swap_to_stuck(
        bench, tmp_path,
        meanwhile=lambda: bench.client.containers.get(bench.container("trellis")).remove(force=True))
    assert f"rolled back: {bench.container('trellis')} is running and ready again" in err
    assert bench.running() == {bench.container("trellis")}


def _swap_to_dying(bench: Bench, tmp_path: Path, end_it: Callable[[], None]) -> tuple[int, str]:
    """Swap from trellis to ``dying``; once it was ready and the swap watches it settle, run
    ``end_it``; returns the swap's exit code and stderr."""
    err = tmp_path / "swap.err"
    with err.open("w") as stderr:
        swapping = cli(*bench.args("swap", "dying"), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for("the swap to watch the new container settle",
                 lambda: f"{bench.container('dying')} is ready; checking that it stays running "
                         "and ready for 600 s" in err.read_text())
        end_it()
        code = swapping.wait(timeout=DEADLINE)
    finally:
        if swapping.poll() is None:
            swapping.kill()
    return code, err.read_text()


def test_target_that_dies_after_it_became_ready_rolls_back(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Issue 10 item 10: ready, then dead a moment later, once reported as a success with no
    container left running."""
    assert bench.swap(capsys, "trellis")[0] == 0
    code, err = _swap_to_dying(
        bench, tmp_path, lambda: bench.client.containers.get(bench.container("dying")).kill())
    assert code == 1, err
    assert f"swap to dying failed: {bench.container('dying')} stopped " in err
    assert "s after it became ready (exited, exit code 137)" in err
    assert f"rolled back: {bench.container('trellis')} is running and ready again" in err
    assert "is running and ready" not in err.split("rolling back")[0]
    assert bench.running() == {bench.container("trellis")}


def test_target_that_stops_being_ready_rolls_back(
        bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.swap(capsys, "wan")[0] == 0
    failed = json.dumps({**READY_STATE, "phase": "failed", "ready": False,
                         "error": "warm-up ran out of memory"})

    def fail_readiness() -> None:
        container = bench.client.containers.get(bench.container("dying"))
        done = container.exec_run(["sh", "-c", f"echo '{failed}' > /opt/trellis-box/ready.json"])
        assert done.exit_code == 0, done.output

    code, err = _swap_to_dying(bench, tmp_path, fail_readiness)
    assert code == 1, err
    assert f"{bench.container('dying')} stopped being ready " in err
    assert "/trellis-box/ready answered: 503: {" in err and "warm-up ran out of memory" in err
    assert f"rolled back: {bench.container('wan')} is running and ready again" in err
    assert bench.running() == {bench.container("wan")}


def test_settle_seconds_flag_overrides_the_file(
        bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = bench.swap(capsys, "dying", "--settle-seconds", "0")
    assert code == 0, err
    assert "checking that it stays running" not in err
    assert bench.running() == {bench.container("dying")}

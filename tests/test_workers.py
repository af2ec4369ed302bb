"""Several ComfyUI workers in one container: ``serve`` supervises them, ``generate`` feeds them
all, ``swap``/``status`` count every queue; against the stand-in with a fake nvidia-smi.

Worker sizing from the VRAM profile is pure and checked against the measured peaks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from tests.comfy_standin.fixtures import StartStandin
from tests.photos import object_photo
from tests.serve_support import H200_MIB, ServeProcess, ServeSetup, free_port
from tests.test_serve import StartServe, get, phases, process_gone, read_state
from tests.test_swap import set_standin
from trellis_box.batch import engine as batch
from trellis_box.batch.images import normalise
from trellis_box.cli.app import main
from trellis_box.comfyui.client import ComfyClient
from trellis_box.comfyui.workers import worker_urls
from trellis_box.comfyui.workflow import build
from trellis_box.errors import ConfigError
from trellis_box.gpu.profiles import (
    GIB,
    MEASURED_PEAK_BYTES,
    lowered,
    profile_for,
    workers_for,
    workers_in_memory,
)
from trellis_box.serve.preflight import worker_count
from trellis_box.serve.settings import load as load_settings
from trellis_box.serve.warmup import warmup_options
from trellis_box.swap.probes import Probes

H200_BYTES = 143771 * 1024**2
L4_BYTES = 23034 * 1024**2
L40S_BYTES = 46068 * 1024**2
H100_BYTES = 81559 * 1024**2


def two_workers(setup: ServeSetup, **extra: str) -> tuple[dict[str, str], int]:
    """serve's environment for two workers, on a card whose memory holds two at 1536."""
    setup.fake_gpu(memory_mib=H200_MIB)
    port = free_port()
    return setup.environment(TRELLIS_BOX_WORKERS="2", TRELLIS_BOX_WORKER_PORT=str(port),
                             **extra), port


def ready_two_workers(setup: ServeSetup, start_serve: StartServe, *args: str,
                      **extra: str) -> tuple[ServeProcess, list[str]]:
    """serve with two workers (``extra`` in its environment), ready; the workers' URLs."""
    env, port = two_workers(setup, **extra)
    serve = start_serve(setup, *args, env=env)
    serve.wait_event("phase", phase="ready")
    return serve, [serve.url, f"http://127.0.0.1:{port}"]


def worker_pids(serve: ServeProcess, worker: int) -> list[int]:
    return [int(e["pid"]) for e in serve.events()
            if e["event"] == "comfyui_started" and e["worker"] == worker]


def history(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/history", timeout=10) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


class TestSizing:
    def test_memory_is_planned_from_the_measured_peak_at_the_top_resolution(self) -> None:
        h200 = profile_for(H200_BYTES)
        assert h200.max_resolution == "1536"
        # (140.4 GiB - 4) / 36.4 GiB = 3 workers; each one's 1536 peak fits beside the others.
        assert workers_for(h200, 16) == 3
        assert 3 * MEASURED_PEAK_BYTES["1536"] + 4 * GIB <= H200_BYTES
        # A 24 GB and a 48 GB card keep one. Two measured workers share 4 cores well (a
        # g6e.xlarge's vCPUs: 0.48x one worker's wall time), so 4 cores allow 2, and 3 only 1.
        assert workers_for(profile_for(L4_BYTES), 16) == 1
        assert workers_for(profile_for(L40S_BYTES), 16) == 1
        assert workers_for(h200, 4) == 2
        assert workers_for(h200, 3) == 1
        assert workers_for(profile_for(8 * GIB), 64) == 1

    @pytest.mark.parametrize(("card", "vram", "top", "in_memory", "workers"), [
        ("H200", H200_BYTES, "1536", 3, 3), ("H200", H200_BYTES, "1024", 6, 6),
        ("H200", H200_BYTES, "512", 9, 6),
        ("H100 80GB", H100_BYTES, "1536", 2, 2), ("H100 80GB", H100_BYTES, "1024", 3, 3),
        ("H100 80GB", H100_BYTES, "512", 5, 5),
        ("L40S", L40S_BYTES, "1536", 1, 1), ("L40S", L40S_BYTES, "1024", 1, 1),
        ("L40S", L40S_BYTES, "512", 2, 2),
        ("L4", L4_BYTES, "1024", 0, 1), ("L4", L4_BYTES, "512", 1, 1),
    ])
    def test_a_lowered_top_resolution_sizes_at_its_own_peak(
            self, card: str, vram: int, top: str, in_memory: int, workers: int) -> None:
        """TRELLIS_BOX_MAX_RESOLUTION's profile: each worker planned at ``top``'s measured peak
        (with 16 cores, so the cores are not what limits)."""
        profile = lowered(profile_for(vram), top)
        assert profile.max_resolution == top, card
        assert workers_in_memory(profile) == in_memory, card
        assert workers_for(profile, 16) == workers, card
        # The plan holds: every planned worker's peak at top fits beside the margin.
        assert in_memory * MEASURED_PEAK_BYTES[top] + 4 * GIB <= vram < (
            (in_memory + 1) * MEASURED_PEAK_BYTES[top] + 4 * GIB), card

    @pytest.mark.parametrize(("card", "vram", "asked", "top", "fit", "lower"), [
        ("H200", H200_BYTES, 4, "1536", 3, "TRELLIS_BOX_MAX_RESOLUTION=1024 (6 fit at its peak)"),
        ("L40S", L40S_BYTES, 2, "1536", 1, "TRELLIS_BOX_MAX_RESOLUTION=512 (2 fit at its peak)"),
        ("L4", L4_BYTES, 2, "1024", 1, None),
    ])
    def test_a_count_set_by_hand_is_held_to_the_memory_plan(
            self, card: str, vram: int, asked: int, top: str, fit: int, lower: str | None) -> None:
        profile = profile_for(vram)
        with pytest.raises(ConfigError) as caught:
            worker_count(load_settings({"TRELLIS_BOX_WORKERS": str(asked)}), profile)
        error = caught.value
        assert error.facts["variable"] == "TRELLIS_BOX_WORKERS", card
        assert (error.facts["fit"], error.facts["max_resolution"]) == (fit, top), card
        assert f"{asked} workers do not fit in this GPU's memory at {top}" in str(error), card
        fix = error.fix or ""
        assert (lower in fix) if lower else ("TRELLIS_BOX_MAX_RESOLUTION" not in fix), card
        # As many as fit are taken as set; one always is (low_vram decides whether it fits).
        assert worker_count(load_settings({"TRELLIS_BOX_WORKERS": str(fit)}), profile) == (fit, "TRELLIS_BOX_WORKERS")
        if lower:
            resolution = lower.split("=")[1].split()[0]
            assert worker_count(load_settings({"TRELLIS_BOX_WORKERS": str(asked)}),
                                lowered(profile, resolution))[0] == asked

    def test_worker_urls_keep_the_given_url_first_and_swap_the_port(self) -> None:
        info = {"workers": [{"index": 0, "port": 8188}, {"index": 1, "port": 8189},
                            {"index": 2, "port": 8190}]}
        assert worker_urls("http://gpu-box:9000/", info) == [
            "http://gpu-box:9000", "http://gpu-box:8189", "http://gpu-box:8190"]
        assert worker_urls("http://127.0.0.1:8188", None) == ["http://127.0.0.1:8188"]


class TestServe:
    def test_ready_only_when_both_are_warm_and_sigterm_stops_both(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        env, port1 = two_workers(serve_setup)
        serve = start_serve(serve_setup, env=env)
        serve.wait_event("phase", phase="ready")

        names = [(e["event"], e.get("phase"), e.get("worker")) for e in serve.events()]
        ready_at = names.index(("phase", "ready", None))
        warmed = {e["worker"] for e in serve.events()[:ready_at] if e["event"] == "warmed"}
        assert warmed == {0, 1}
        state = read_state(serve_setup)
        assert state["ready"] is True
        assert state["workers"] == [
            {"index": 0, "port": serve.port, "ready": True, "restarts": 0},
            {"index": 1, "port": port1, "ready": True, "restarts": 0}]
        status, info = get(f"{serve.url}/trellis-box/info")
        assert status == 200 and [w["port"] for w in info["workers"]] == [serve.port, port1]
        assert get(f"http://127.0.0.1:{port1}/trellis-box/ready")[0] == 200
        assert not (serve_setup.root / "output" / "trellis-box-warmup").exists()

        pids = worker_pids(serve, 0) + worker_pids(serve, 1)
        assert len(pids) == 2
        serve.signal(signal.SIGTERM)
        assert serve.wait_exit(30) == 128 + signal.SIGTERM
        assert all(process_gone(pid) for pid in pids)

    def test_a_taken_worker_port_is_refused_before_any_comfyui_starts(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            taken = other.getsockname()[1]
            serve_setup.fake_gpu(memory_mib=H200_MIB)
            env = serve_setup.environment(TRELLIS_BOX_WORKERS="2",
                                          TRELLIS_BOX_WORKER_PORT=str(taken))
            serve = start_serve(serve_setup, env=env)
            assert serve.wait_exit() == 1
        assert f"error: port {taken} on 127.0.0.1 is not free; ComfyUI was not started" in serve.stderr
        assert "TRELLIS_BOX_WORKER_PORT" in serve.stderr
        assert serve.comfy_pid() is None
        profile = [e for e in serve.events() if e["event"] == "step" and e["step"] == "profile"]
        assert profile[0]["detail"].endswith("2 ComfyUI workers (TRELLIS_BOX_WORKERS)")

    def test_a_plain_client_on_the_public_port_still_runs_a_workflow(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        serve, _ = ready_two_workers(serve_setup, start_serve, "--no-warmup")

        async def run() -> Any:
            async with ComfyClient(serve.url) as client:
                name = await client.http.upload_image(object_photo(serve_setup.base / "p.png"))
                return await client.run(build(warmup_options(7, folder="plain"), name), timeout=60)

        result = asyncio.run(run())
        assert result.prompt_id in history(serve.url)
        assert list((serve_setup.root / "output" / "plain").glob("*.glb"))

    def test_a_killed_worker_is_restarted_and_readiness_drops_meanwhile(
            self, serve_setup: ServeSetup, start_serve: StartServe) -> None:
        # The restarted worker waits at import while this file exists: readiness is read then.
        hold = serve_setup.base / "hold-restart"
        hang = serve_setup.root / "custom_nodes" / "hold_on_restart"
        hang.mkdir()
        (hang / "__init__.py").write_text(
            "import pathlib, time\n"
            f"while pathlib.Path({str(hold)!r}).exists():\n    time.sleep(0.05)\n"
            "NODE_CLASS_MAPPINGS = {}\n")
        env, port1 = two_workers(serve_setup, TRELLIS_BOX_WORKER_RESTARTS="1")
        serve = start_serve(serve_setup, env=env)
        serve.wait_event("phase", phase="ready")

        hold.touch()
        first = worker_pids(serve, 1)[0]
        os.kill(first, signal.SIGKILL)
        restarting = serve.wait_event("worker_restarting", worker=1)
        assert restarting["status"] == 128 + signal.SIGKILL and restarting["restart"] == 1
        serve.wait_event("phase", phase="restarting")
        status, body = get(f"{serve.url}/trellis-box/ready")
        assert (status, body["ready"], body["phase"]) == (503, False, "restarting")
        state = read_state(serve_setup)
        assert [w["ready"] for w in state["workers"]] == [True, False]
        assert state["workers"][1]["restarts"] == 1

        hold.unlink()
        serve.wait_event("worker_ready", worker=1)
        wait_phase_count(serve, "ready", 2)
        assert get(f"{serve.url}/trellis-box/ready")[0] == 200
        # Warm again before ready: its warm-up ran once more.
        assert len([e for e in serve.events() if e["event"] == "warmed" and e["worker"] == 1]) == 2

        # It keeps dying: no restarts left, serve stops the other worker and exits non-zero.
        second = worker_pids(serve, 1)[-1]
        assert second != first
        os.kill(second, signal.SIGKILL)
        assert serve.wait_exit(30) == 128 + signal.SIGKILL
        state = read_state(serve_setup)
        assert state["ready"] is False and state["phase"] == "failed"
        assert state["error"] == (f"ComfyUI worker 1 (port {port1}) exited with status "
                                  f"{128 + signal.SIGKILL}")
        assert process_gone(worker_pids(serve, 0)[0])


def wait_phase_count(serve: ServeProcess, phase: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while phases(serve).count(phase) < count:
        assert time.monotonic() < deadline, f"phase {phase} not seen {count} times:\n{serve.stderr}"
        assert serve.proc.poll() is None, serve.stderr
        time.sleep(0.05)  # serve's stderr is read by a thread: nothing to await here


class TestClients:
    def test_generate_feeds_both_workers_and_writes_every_output_once(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        serve, urls = ready_two_workers(serve_setup, start_serve, "--no-warmup")
        inputs = [object_photo(tmp_path / "in" / f"p{i}.png", i) for i in range(6)]
        out = tmp_path / "out"

        report = asyncio.run(batch.run_batch(serve.url, inputs, batch.BatchOptions(out, depth=1)))

        assert [o.status for o in report.outcomes] == ["ok"] * 6
        assert report.server["workers"] == urls
        assert sorted(p.name for p in out.glob("*.glb")) == [f"p{i}.glb" for i in range(6)]
        ran = [set(history(url)) for url in urls]
        assert all(ran) and not (ran[0] & ran[1])
        reports = {json.loads(p.read_text())["prompt_id"] for p in out.glob("*.json")}
        assert reports == ran[0] | ran[1]

        again = asyncio.run(batch.run_batch(serve.url, inputs, batch.BatchOptions(out, depth=1)))
        assert [o.status for o in again.outcomes] == ["skipped"] * 6

    def test_status_and_drain_count_and_cut_both_queues(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        serve, urls = ready_two_workers(serve_setup, start_serve, "--no-warmup",
                                        COMFY_STANDIN_EXEC_SECONDS="120")

        async def queue_two_each() -> list[str]:
            ids = []
            for n, url in enumerate(urls):
                async with ComfyClient(url) as client:
                    name = await client.http.upload_image(object_photo(tmp_path / f"q{n}.png", n))
                    for seed in (1, 2):
                        ids.append(await client.queue_prompt(
                            build(warmup_options(seed + 10 * n), name)))
            return ids

        ids = asyncio.run(queue_two_each())
        with Probes(poll_seconds=0.05) as probes:
            queue = probes.queue(serve.url)
            assert set(queue.running) | set(queue.pending) == set(ids)
            assert len(queue.running) == 2
            stats = probes.server_stats(serve.url)
            assert (stats.queue_running, stats.queue_pending) == (2, 2)
            assert probes.drain(serve.url, timeout=0.1) == queue
            probes.cut(serve.url, queue)
            assert probes.drain(serve.url, timeout=30) == type(queue)((), ())

    def test_an_interrupted_batch_withdraws_from_both_workers_and_resumes(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        serve, urls = ready_two_workers(serve_setup, start_serve, "--no-warmup",
                                        COMFY_STANDIN_EXEC_SECONDS="1")
        inputs = [object_photo(tmp_path / "in" / f"p{i}.png", i) for i in range(8)]
        out = tmp_path / "out"

        async def interrupted() -> batch.BatchReport:
            first_done = asyncio.Event()

            def on_event(event: batch.Event) -> None:
                if isinstance(event, batch.Done) and event.outcome.status == "ok":
                    first_done.set()

            task = asyncio.create_task(batch.run_batch(serve.url, inputs, batch.BatchOptions(out),
                                                       on_event=on_event))
            await asyncio.wait_for(first_done.wait(), 60)
            task.cancel()
            return await task

        report = asyncio.run(interrupted())
        assert report.interrupted
        finished = [o.item.name for o in report.outcomes if o.status == "ok"]
        assert finished and len(finished) < 8
        with Probes(poll_seconds=0.05) as probes:
            assert probes.drain(serve.url, timeout=30) == type(probes.queue(serve.url))((), ())
        ran = [h["status"]["status_str"] for url in urls
               for h in history(url).values()]
        # Queued prompts were withdrawn from both workers and the running ones interrupted.
        assert ran.count("success") <= len(finished) + 2 and len(ran) < 8

        resumed = asyncio.run(batch.run_batch(serve.url, inputs, batch.BatchOptions(out)))
        assert sorted(o.item.name for o in resumed.outcomes if o.status == "skipped") == sorted(finished)
        assert {o.status for o in resumed.outcomes} <= {"ok", "skipped"}
        assert len(list(out.glob("*.glb"))) == 8

        one = asyncio.run(batch.run_batch(serve.url, inputs[:2], batch.BatchOptions(
            tmp_path / "one", max_workers=1)))
        assert one.server["workers"] == [serve.url]


def test_a_worker_whose_port_is_not_reachable_is_left_out_and_named(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    # A container started with only 8188 published: its info lists a worker we cannot reach.
    state = tmp_path / "state.json"
    server = comfy_standin(exec_seconds=0.05, env={"TRELLIS_BOX_STATE": str(state)})
    hidden = free_port()
    state.write_text(json.dumps({"phase": "ready", "ready": True, "workers": [
        {"index": 0, "port": server.port, "ready": True, "restarts": 0},
        {"index": 1, "port": hidden, "ready": True, "restarts": 0}]}))
    inputs = [object_photo(tmp_path / "in" / f"p{i}.png", i) for i in range(2)]

    report = asyncio.run(batch.run_batch(server.url, inputs, batch.BatchOptions(tmp_path / "out")))

    assert [o.status for o in report.outcomes] == ["ok", "ok"]
    assert report.server["workers"] == [server.url]
    assert report.server["workers_unreachable"] == [f"http://127.0.0.1:{hidden}"]
    saved = json.loads((tmp_path / "out" / "p0.json").read_text())
    assert saved["server"]["workers_unreachable"] == [f"http://127.0.0.1:{hidden}"]


class TestStagger:
    def test_a_staggered_batch_gives_each_worker_its_first_prompt_in_turn(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        # Each job outlasts the stagger, so a free worker 0 cannot explain the gap.
        serve, urls = ready_two_workers(serve_setup, start_serve, "--no-warmup",
                                        COMFY_STANDIN_EXEC_SECONDS="3")

        def queued_times(out: Path, stagger_s: float, first: int) -> dict[str, float]:
            # Photos of their own: ComfyUI would answer the other run's from its cache at once.
            inputs = [object_photo(out.parent / f"in-{out.name}" / f"p{i}.png", first + i) for i in range(2)]
            times: dict[str, float] = {}

            def on_event(event: batch.Event) -> None:
                if isinstance(event, batch.Queued):
                    times[event.item.name] = time.monotonic()
            report = asyncio.run(batch.run_batch(serve.url, inputs, batch.BatchOptions(
                out, depth=1, stagger_s=stagger_s), on_event=on_event))
            assert [o.status for o in report.outcomes] == ["ok"] * 2
            return times

        # Unstaggered, both go out at once (one to each worker, the one with most free slots).
        at_once = queued_times(tmp_path / "at-once", 0.0, 0)
        assert abs(at_once["p0"] - at_once["p1"]) < 1.0
        # Staggered by 2 s: worker 1's turn comes 2 s in, and the second input waits for it
        # rather than queueing behind the first on worker 0.
        staggered = queued_times(tmp_path / "staggered", 2.0, 2)
        assert staggered["p1"] - staggered["p0"] >= 1.9
        ran = [set(history(url)) for url in urls]
        ids = [json.loads((tmp_path / "staggered" / f"p{i}.json").read_text())["prompt_id"] for i in range(2)]
        assert ids[0] in ran[0] and ids[1] in ran[1]

    def test_generate_staggers_with_its_option(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        serve, urls = ready_two_workers(serve_setup, start_serve, "--no-warmup",
                                        COMFY_STANDIN_EXEC_SECONDS="3")
        inputs = tmp_path / "in"
        for i in range(2):
            object_photo(inputs / f"p{i}.png", 60 + i)
        code = main(["generate", str(inputs), "--server", serve.url, "--out", str(tmp_path / "out"),
                     "--stagger", "2", "--json"])
        assert code == 0

        def started_ms(url: str) -> int:
            entry, = history(url).values()
            return next(data["timestamp"] for kind, data in entry["status"]["messages"]
                        if kind == "execution_start")
        # One input each; worker 1's begins at its turn, not with worker 0's.
        assert started_ms(urls[1]) - started_ms(urls[0]) >= 1900


class TestTail:
    def test_an_idle_worker_takes_the_prompt_waiting_behind_a_busy_one(
            self, serve_setup: ServeSetup, start_serve: StartServe, tmp_path: Path) -> None:
        serve, urls = ready_two_workers(serve_setup, start_serve, "--no-warmup",
                                        COMFY_STANDIN_EXEC_SECONDS="60")
        # Both workers slow while the inputs go out: p0 runs on 0, p1 on 1, p2 queues behind p0
        # (the tie goes to the first worker). Then worker 1 speeds up and ends p1 with p2 still
        # waiting on worker 0; once p2 has moved, worker 0 speeds up too. The options act on
        # the running prompts' next progress step.
        inputs = [object_photo(tmp_path / "in" / f"p{i}.png", 40 + i) for i in range(3)]
        queued: list[batch.Queued] = []

        def on_event(event: batch.Event) -> None:
            if isinstance(event, batch.Queued):
                queued.append(event)
                if event.item.name == "p2":
                    set_standin(urls[1 if event.moved_from is None else 0], exec_seconds=0.2)
        report = asyncio.run(batch.run_batch(serve.url, inputs, batch.BatchOptions(
            tmp_path / "out", depth=1), on_event=on_event))

        assert [o.status for o in report.outcomes] == ["ok"] * 3
        prompt_of = {i: json.loads((tmp_path / "out" / f"p{i}.json").read_text())["prompt_id"]
                     for i in range(3)}
        ran = [set(history(url)) for url in urls]
        assert ran[0] == {prompt_of[0]}, "p2 must not have run on the busy worker"
        assert ran[1] == {prompt_of[1], prompt_of[2]}
        moved = [(e.item.name, e.moved_from) for e in queued if e.moved_from is not None]
        assert moved == [("p2", urls[0])]


def test_the_throughput_benchmarks_copies_are_distinct_uploads_of_the_same_photos(tmp_path: Path) -> None:
    """Equal copies would be one upload, answered from ComfyUI's cache (twice on the H200)."""
    spec = importlib.util.spec_from_file_location(
        "workers_throughput", Path(__file__).resolve().parent.parent / "benchmarks" / "workers_throughput.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    copies = bench.inputs_for(argparse.Namespace(images=7, photos=None), tmp_path)
    photos = bench.sample_images()
    assert len({normalise(p).sha256 for p in copies}) == 7 > len(photos)
    for i, copy in enumerate(copies):
        with Image.open(copy) as made, Image.open(photos[i % len(photos)]) as photo:
            bbox = ImageChops.difference(made.convert("RGB"), photo.convert("RGB")).getbbox()
        assert bbox == (0, 0, 1, 1), f"{copy.name} differs from its photo beyond one pixel: {bbox}"

"""The real client against the ComfyUI stand-in: every recorded scenario and injected fault."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin.fixtures import StartStandin
from tests.gltf_validator import validate_glb
from tests.photos import object_photo
from trellis_box.comfyui import protocol, workflow
from trellis_box.comfyui.client import ComfyClient, Timeouts
from trellis_box.comfyui.explain import execution_failure
from trellis_box.errors import (
    ComfyUnreachableError,
    ExecutionFailedError,
    JobInterruptedError,
    JobTimeoutError,
    NoObjectFoundError,
    OutOfMemoryError,
    PromptLostError,
    PromptNodeError,
    PromptRejectedError,
    PromptWithdrawnError,
    UsageError,
)

pytestmark = pytest.mark.timeout(120)

GENERATOR = "Trellis2MeshWithVoxelGenerator"
FAST = Timeouts(poll=1.0, reconnect=30.0)


async def _graph(comfy: ComfyClient, tmp_path: Path, index: int = 0, **options: Any
                 ) -> dict[str, Any]:
    name = await comfy.http.upload_image(object_photo(tmp_path / f"photo-{index}.png", index))
    return workflow.build(workflow.WorkflowOptions(**options), name)


class _Seen:
    """Messages of one prompt as they arrive, with a way to wait for one of a kind."""

    def __init__(self) -> None:
        self.messages: list[protocol.PromptMessage] = []
        self._changed = asyncio.Event()

    def __call__(self, msg: protocol.PromptMessage) -> None:
        self.messages.append(msg)
        self._changed.set()

    async def until(self, kind: type, deadline: float = 60.0) -> None:
        async def poll() -> None:
            while not any(isinstance(m, kind) for m in self.messages):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(poll(), deadline)


async def test_success_surfaces_the_glb_and_it_passes_the_khronos_validator(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Scenarios 01 and 07: the GLB appears in /history through our output node."""
    server = comfy_standin(exec_seconds=0.2, progress_steps=12)
    seen = _Seen()
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        result = await comfy.run(await _graph(comfy, tmp_path), on_message=seen)
        glb_ref, = result.files(workflow.GLB_OUTPUT_NODE, "3d")
        cutout_ref, = result.files(workflow.CUTOUT_NODE, "images")
        glb = await comfy.http.download(glb_ref, tmp_path / "out" / "chair.glb")
        cutout = await comfy.http.download(cutout_ref, tmp_path / "out" / "chair.cutout.png")
    assert glb.read_bytes()[:4] == b"glTF" and cutout.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chair.cutout.png", "chair.glb"]
    report = validate_glb(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    steps = [m for m in seen.messages if isinstance(m, protocol.Progress)]
    assert [s.value for s in steps] == list(range(1, 13)) and {s.node for s in steps} == {"6"}
    assert set(result.node_seconds) >= {workflow.GENERATE_NODE, workflow.GLB_OUTPUT_NODE}
    assert result.node_seconds[workflow.GENERATE_NODE] > 0
    assert result.started_ms and result.finished_ms and result.finished_ms >= result.started_ms


async def test_identical_resubmission_is_cached_and_still_names_the_glb(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Scenario 02: nothing runs again, outputs are replayed."""
    server = comfy_standin(exec_seconds=0.1)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        graph = await _graph(comfy, tmp_path)
        first = await comfy.run(graph)
        again = await comfy.run(graph)
    assert workflow.GENERATE_NODE in again.cached_nodes
    assert workflow.GENERATE_NODE not in again.node_seconds
    assert again.files(workflow.GLB_OUTPUT_NODE, "3d") == first.files(workflow.GLB_OUTPUT_NODE, "3d")


async def test_the_same_image_is_uploaded_once(comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = comfy_standin()
    photo = object_photo(tmp_path / "a.png")
    async with ComfyClient(server.url) as comfy:
        name = await comfy.http.upload_image(photo)
        stored = server.input_dir / name
        before = stored.stat().st_mtime_ns
        stored.touch()  # any rewrite by a second upload would move the time again
        touched = stored.stat().st_mtime_ns
        assert await comfy.http.upload_image(photo) == name
    assert name.startswith("trellis-box-") and name.endswith(".png") and before
    assert stored.stat().st_mtime_ns == touched
    assert [p.name for p in server.input_dir.iterdir()] == [name]


async def test_a_200_with_node_errors_is_a_failure_naming_node_input_and_message(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Scenario 03 (finding 2): ComfyUI answers 200 and would run the cutout anyway."""
    server = comfy_standin(exec_seconds=0.1)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        graph = await _graph(comfy, tmp_path)
        graph[workflow.GENERATE_NODE]["inputs"]["pipeline_type"] = "2048_cascade"
        with pytest.raises(PromptNodeError) as info:
            await comfy.queue_prompt(graph)
        # The next prompt still runs normally.
        ok = await comfy.run(await _graph(comfy, tmp_path, 1))
    text = str(info.value)
    assert text.startswith(f"ComfyUI rejected prompt.6.inputs.pipeline_type ({GENERATOR}): "
                           "Value not in list")
    assert "'2048_cascade' not in" in text and "answered 200" in text
    assert info.value.facts["node"] == "6" and info.value.facts["input"] == "pipeline_type"
    assert ok.files(workflow.GLB_OUTPUT_NODE, "3d")


async def test_the_partial_run_of_a_200_with_node_errors_is_stopped(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """A bad post-processing input leaves the generator (an output node) runnable: ComfyUI starts
    it at once. The client must not leave it burning the GPU for a prompt it reported failed."""
    server = comfy_standin(exec_seconds=60)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        graph = await _graph(comfy, tmp_path)
        graph[workflow.POSTPROCESS_NODE]["inputs"]["texture_size"] = 100
        with pytest.raises(PromptNodeError, match=r"prompt\.7\.inputs\.texture_size") as info:
            await comfy.queue_prompt(graph)
        prompt_id = info.value.facts["prompt_id"]

        async def settled() -> None:
            while prompt_id in await comfy.http.queue():
                await asyncio.sleep(0.1)
        await asyncio.wait_for(settled(), 30)  # the generator alone would run for 60 s
        entry = await comfy.http.history(prompt_id)
    # Withdrawn before it started (no entry), or interrupted: never run to the end.
    if entry is not None:
        kinds = [message[0] for message in entry["status"]["messages"]]
        assert "execution_interrupted" in kinds and "execution_success" not in kinds, kinds


async def test_a_400_for_a_missing_input_file_names_the_load_image_input(
        comfy_standin: StartStandin) -> None:
    server = comfy_standin()
    async with ComfyClient(server.url) as comfy:
        with pytest.raises(PromptNodeError, match=r"prompt\.1\.inputs\.image \(LoadImage\)"):
            await comfy.queue_prompt(workflow.build(workflow.WorkflowOptions(), "never-uploaded.png"))


async def test_a_400_for_an_unknown_node_class_says_the_node_pack_is_missing(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = comfy_standin(node_pack=False)
    async with ComfyClient(server.url) as comfy:
        assert await comfy.http.trellis_info() is None  # a plain ComfyUI
        with pytest.raises(PromptRejectedError) as info:
            await comfy.queue_prompt(await _graph(comfy, tmp_path))
    assert not isinstance(info.value, PromptNodeError)
    assert info.value.facts["error_type"] == "invalid_prompt"
    assert "IMPORT FAILED" in str(info.value)


async def test_out_of_memory_names_the_lower_resolution_to_try(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Scenario 04 with the recorded CUDA out-of-memory message."""
    server = comfy_standin(exec_seconds=0.1, fail_node=GENERATOR, fail_kind="oom")
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        with pytest.raises(OutOfMemoryError) as info:
            await comfy.run(await _graph(comfy, tmp_path, resolution="1024"))
    text = str(info.value)
    assert text.startswith(f"the GPU ran out of memory in node 6 ({GENERATOR}) at resolution 1024")
    assert "fix: run again at resolution 512 (parameter `resolution`)" in text
    assert info.value.facts["lower_resolution"] == "512"


async def test_another_node_error_names_node_and_exception(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=0.1, fail_node="Trellis2ExportMesh",
                           fail_message="disk full")
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        with pytest.raises(ExecutionFailedError) as info:
            await comfy.run(await _graph(comfy, tmp_path))
    assert not isinstance(info.value, OutOfMemoryError)
    assert str(info.value).startswith("node 8 (Trellis2ExportMesh) failed: ")
    assert "disk full" in str(info.value)


async def test_an_interrupt_while_running_is_reported(comfy_standin: StartStandin,
                                                      tmp_path: Path) -> None:
    """Scenario 05."""
    server = comfy_standin(exec_seconds=30)
    seen = _Seen()
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        prompt_id = await comfy.queue_prompt(await _graph(comfy, tmp_path), on_message=seen)
        await seen.until(protocol.Progress)
        await comfy.http.interrupt()
        with pytest.raises(JobInterruptedError, match=f"prompt {prompt_id} was interrupted in node 6"):
            await comfy.wait(prompt_id)


async def test_a_job_over_its_timeout_is_interrupted_on_the_server(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=60)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        prompt_id = await comfy.queue_prompt(await _graph(comfy, tmp_path))
        with pytest.raises(JobTimeoutError, match=r"ran \d+\.\d s, over its limit of 0.5 s, and was "
                                                  "interrupted") as info:
            await comfy.wait(prompt_id, timeout=0.5)
        entry = await comfy.http.history(prompt_id)
        assert (await comfy.http.queue()).running == ()
    assert entry is not None and entry["status"]["status_str"] == "error"
    # The parameter of the batch, the benchmark and doctor; generate's flag: test_generate_cli.
    assert info.value.fix == "raise the limit (`job_timeout`), or lower `resolution` or the step counts"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_a_timeout_counts_from_the_start_of_a_prompt_that_was_waiting(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """A prompt queued behind another starts while its waiter sleeps between polls: the limit
    must still end it within a second of the limit, and the error must say how long it ran."""
    server = comfy_standin(exec_seconds=2.0)
    async with ComfyClient(server.url, timeouts=Timeouts(poll=15.0)) as comfy:
        first = await comfy.queue_prompt(await _graph(comfy, tmp_path, 0))
        second = await comfy.queue_prompt(await _graph(comfy, tmp_path, 1))
        waiting = asyncio.create_task(comfy.wait(second, timeout=1.0))
        await comfy.wait(first)
        with pytest.raises(JobTimeoutError) as info:
            await waiting
        entry = await comfy.http.history(second)
    ran = info.value.facts["seconds"]
    assert 1.0 <= ran < 2.0, ran
    assert f"prompt {second} ran {ran:.1f} s, over its limit of 1 s" in str(info.value)
    assert entry is not None and entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_three_queued_prompts_each_get_their_own_result(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Scenario 06: one websocket, three prompts, messages kept apart."""
    server = comfy_standin(exec_seconds=0.2, progress_steps=4)
    seen = [_Seen() for _ in range(3)]
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        graphs = [await _graph(comfy, tmp_path, i) for i in range(3)]
        ids = [await comfy.queue_prompt(g, on_message=s) for g, s in zip(graphs, seen, strict=True)]
        state = await comfy.http.queue()
        results = await asyncio.gather(*(comfy.wait(i) for i in ids))
    assert set(ids) == set(state.running + state.pending) and len(set(ids)) == 3
    assert [r.prompt_id for r in results] == ids
    for prompt_id, s in zip(ids, seen, strict=True):
        assert {protocol.prompt_of(m) for m in s.messages} == {prompt_id}
    glbs = {r.files(workflow.GLB_OUTPUT_NODE, "3d")[0].filename for r in results}
    assert len(glbs) == 3


async def test_a_dropped_websocket_loses_no_job(comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The socket is cut (no close frame) every few messages; completions that happen while
    it is down are found through /history."""
    server = comfy_standin(exec_seconds=0.3, progress_steps=20, drop_ws_after=7)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        graphs = [await _graph(comfy, tmp_path, i) for i in range(3)]
        ids = [await comfy.queue_prompt(g) for g in graphs]
        results = await asyncio.gather(*(comfy.wait(i) for i in ids))
        reconnects = comfy.reconnects
    assert [len(r.files(workflow.GLB_OUTPUT_NODE, "3d")) for r in results] == [1, 1, 1]
    assert reconnects >= 3


async def test_jobs_that_end_while_the_websocket_is_down_are_found_through_history(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Every connection is cut right after its greeting: no prompt message ever arrives, so
    each completion can only come from reconciling through /history."""
    server = comfy_standin(exec_seconds=0.2, drop_ws_after=1)
    seen = _Seen()
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        ids = [await comfy.queue_prompt(await _graph(comfy, tmp_path, i), on_message=seen)
               for i in range(2)]
        results = await asyncio.gather(*(comfy.wait(i) for i in ids))
    assert seen.messages == []
    assert [len(r.files(workflow.GLB_OUTPUT_NODE, "3d")) for r in results] == [1, 1]
    assert results[0].started_ms and results[1].finished_ms


async def test_a_restarted_server_reports_its_prompt_lost(comfy_standin: StartStandin,
                                                          tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=30)
    seen = _Seen()
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        prompt_id = await comfy.queue_prompt(await _graph(comfy, tmp_path), on_message=seen)
        await seen.until(protocol.ExecutionStart)
        await asyncio.to_thread(server.restart, exec_seconds=0.1)
        with pytest.raises(PromptLostError, match=f"prompt {prompt_id} is gone from ComfyUI"):
            await comfy.wait(prompt_id)
        # The same client carries on with the restarted server.
        again = await comfy.run(await _graph(comfy, tmp_path, 1))
    assert again.files(workflow.GLB_OUTPUT_NODE, "3d")


async def test_a_server_that_stays_down_gives_its_prompt_up_as_unreachable(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=30)
    seen = _Seen()
    async with ComfyClient(server.url, timeouts=Timeouts(poll=0.5, reconnect=2.0)) as comfy:
        prompt_id = await comfy.queue_prompt(await _graph(comfy, tmp_path), on_message=seen)
        await seen.until(protocol.ExecutionStart)
        await asyncio.to_thread(server.stop)
        with pytest.raises(ComfyUnreachableError) as info:
            await comfy.wait(prompt_id)
    assert str(info.value).startswith(
        f"ComfyUI at {server.url} stayed unreachable for 2 s; prompt {prompt_id} is given up")
    assert info.value.facts["unreachable_since"] in str(info.value)
    assert "fix: restart the server, then run the same command again" in str(info.value)


async def test_a_slow_view_completes_and_a_stalled_one_leaves_no_partial_file(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=0.1)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        result = await comfy.run(await _graph(comfy, tmp_path))
    ref = result.files(workflow.GLB_OUTPUT_NODE, "3d")[0]
    server.set_faults(view_delay=1.5)
    out = tmp_path / "out"
    async with ComfyClient(server.url, timeouts=Timeouts(download_read=0.3)) as impatient:
        with pytest.raises(ComfyUnreachableError, match="did not answer GET /view"):
            await impatient.http.download(ref, out / "a.glb")
    assert list(out.iterdir()) == []
    async with ComfyClient(server.url) as patient:
        assert (await patient.http.download(ref, out / "a.glb")).read_bytes()[:4] == b"glTF"
    assert [p.name for p in out.iterdir()] == ["a.glb"]


async def test_queue_control_removes_only_what_it_is_asked_to(comfy_standin: StartStandin,
                                                              tmp_path: Path) -> None:
    server = comfy_standin(exec_seconds=30)
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        ids = [await comfy.queue_prompt(await _graph(comfy, tmp_path, i)) for i in range(3)]
        await comfy.http.delete_pending([ids[2]])
        after_delete = await comfy.http.queue()
        await comfy.http.clear_queue()
        after_clear = await comfy.http.queue()
        await comfy.http.interrupt(ids[0])
        with pytest.raises(JobInterruptedError):
            await comfy.wait(ids[0])
    assert after_delete.running == (ids[0],) and after_delete.pending == (ids[1],)
    assert after_clear.pending == ()


async def test_a_waiting_prompt_is_withdrawn_and_a_running_one_is_not(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """What the batch engine moves a prompt to an idle worker with: a prompt still in the queue
    comes out and never runs; one that started goes on to its result."""
    server = comfy_standin(exec_seconds=1.5)
    seen = _Seen()
    async with ComfyClient(server.url, timeouts=FAST) as comfy:
        running = await comfy.queue_prompt(await _graph(comfy, tmp_path, 0), on_message=seen)
        waiting = await comfy.queue_prompt(await _graph(comfy, tmp_path, 1))
        await seen.until(protocol.ExecutionStart)
        assert await comfy.withdraw(running) is False
        assert await comfy.withdraw(waiting) is True
        with pytest.raises(PromptWithdrawnError, match=f"prompt {waiting} was taken back"):
            await comfy.wait(waiting)
        result = await comfy.wait(running)
        assert await comfy.withdraw(running) is False  # ended: nothing to take back
        queue, gone = await comfy.http.queue(), await comfy.http.history(waiting)
    assert result.files(workflow.GLB_OUTPUT_NODE, "3d")
    assert waiting not in queue and gone is None


async def test_an_unreachable_server_is_named_with_the_fix() -> None:
    async with ComfyClient("http://127.0.0.1:9", timeouts=Timeouts(connect=2)) as comfy:
        with pytest.raises(ComfyUnreachableError) as info:
            await comfy.http.system_stats()
    assert str(info.value).startswith("ComfyUI at http://127.0.0.1:9 did not answer GET /system_stats")
    assert "fix: check that the server runs and is reachable: curl http://127.0.0.1:9/system_stats" \
        in str(info.value)


def test_out_of_memory_at_the_lowest_resolution_points_elsewhere() -> None:
    graph = workflow.build(workflow.WorkflowOptions(resolution="512"), "a.png")
    oom = protocol.ExecutionError("p", "6", GENERATOR, "torch.OutOfMemoryError",
                                  "Allocation on device")
    error = execution_failure(oom, graph)
    assert isinstance(error, OutOfMemoryError) and error.facts["lower_resolution"] is None
    assert "512 is the lowest resolution" in str(error)
    # The generator does not use the texture size: lowering it cannot help there.
    assert "texture" not in str(error) and "free GPU memory" in str(error)
    other = execution_failure(protocol.ExecutionError("p", "7", "X", "RuntimeError", "boom\nmore"),
                              graph)
    assert type(other) is ExecutionFailedError and "  boom" in str(other) and "more" not in str(other)


def test_out_of_memory_advice_follows_the_node_that_ran_out() -> None:
    graph = workflow.build(workflow.WorkflowOptions(resolution="1024"), "a.png")
    post = workflow.node_class(workflow.POSTPROCESS_NODE)
    in_post = execution_failure(protocol.ExecutionError(
        "p", workflow.POSTPROCESS_NODE, post, "torch.OutOfMemoryError", "CUDA out of memory"), graph)
    assert isinstance(in_post, OutOfMemoryError) and in_post.facts["lower_resolution"] is None
    assert in_post.fix is not None and "resolution" not in in_post.fix
    for named in ("parameter `texture_size`", "parameter `target_face_num`", "parameter `preset` web"):
        assert named in in_post.fix
    in_generator = execution_failure(protocol.ExecutionError(
        "p", workflow.GENERATE_NODE, GENERATOR, "torch.OutOfMemoryError", "CUDA out of memory"), graph)
    assert in_generator.facts["lower_resolution"] == "512"
    assert in_generator.fix == ("run again at resolution 512 (parameter `resolution`), or let it "
                                "step down by itself (parameter `auto_resolution`)")
    loader = execution_failure(protocol.ExecutionError(
        "p", "2", "BRIA_RMBG_ModelLoader_Zho", "torch.OutOfMemoryError", "out of memory"), graph)
    assert loader.fix == "free GPU memory (stop other GPU containers)"


@pytest.mark.parametrize("node, class_type, exception_type, text", [
    ("9", "SaveImage", "ValueError", "cannot write empty image"),
    ("4", "Trellis2PreProcessImage", "ValueError",
     "zero-size array to reduction operation minimum which has no identity"),
])
def test_an_empty_cutout_is_no_object_found_whichever_node_trips_on_it(
        node: str, class_type: str, exception_type: str, text: str) -> None:
    graph = workflow.build(workflow.WorkflowOptions(), "a.png")
    error = execution_failure(protocol.ExecutionError("p", node, class_type, exception_type, text),
                              graph)
    assert isinstance(error, NoObjectFoundError)
    assert error.message == ("no object found in the input image: background removal (RMBG-1.4) "
                             "left an empty cutout")
    assert f"node {node} ({class_type}) failed: {text}" in str(error)
    other = execution_failure(protocol.ExecutionError("p", "8", "Trellis2ExportMesh", "ValueError",
                                                      "cannot write empty image"), graph)
    assert not isinstance(other, NoObjectFoundError)


def test_the_client_is_imported_from_one_module() -> None:
    """``comfyui.http`` is the client's HTTP part: every other module takes its names from
    ``comfyui.client``, so a caller never has to know which of the two defines one."""
    src = Path(__file__).parent.parent / "src" / "trellis_box"
    importers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py")
                       if "trellis_box.comfyui.http" in p.read_text() and p.parent.name != "comfyui")
    assert importers == []


def test_a_server_url_without_scheme_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="server URL '127.0.0.1:8188' does not start with http://"):
        ComfyClient("127.0.0.1:8188")


def test_timeouts_refuse_zero() -> None:
    with pytest.raises(UsageError, match=r"Timeouts.poll must be > 0 \(got 0\)") as info:
        Timeouts(poll=0)
    assert "fix: give poll a positive number of seconds" in str(info.value)
    with pytest.raises(UsageError, match="or None for no limit"):
        Timeouts(job=-1)

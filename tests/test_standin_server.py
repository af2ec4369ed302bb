"""The stand-in's ComfyUI behaviour beyond the recorded scenarios, and its fault injection.

Error shapes follow ComfyUI 0.3.64's ``execution.validate_prompt`` and ``server.py``; the
recordings' README lists the ones seen on the real server (unknown class, missing input file,
``..`` in ``/view``, missing file, the upload fields).
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageDraw

from tests.comfy_standin import install
from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.launcher import StandinServer
from tests.comfy_standin.probe import object_png, of_type, recorded_graph, run, submit, upload
from tests.conftest import COMFY_RECORDINGS

GENERATOR = "Trellis2MeshWithVoxelGenerator"


def save_graph(image: str = "chair.png") -> dict[str, Any]:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t/x"}}}


@pytest.fixture(scope="module")
def shared_standin(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One stand-in for the tests that only read or add files (no faults, no restarts)."""
    root = install(tmp_path_factory.mktemp("shared"))
    server = StandinServer(root, options={"exec_seconds": 0.05},
                           env={"TRELLIS_BOX_STATE": str(root / "no-state.json")})
    server.start()
    yield server
    server.stop()


async def test_object_info_is_the_recorded_one(comfy_standin: StartStandin) -> None:
    server = comfy_standin(node_pack=False)
    recorded = json.loads((COMFY_RECORDINGS / "object_info.json").read_text(encoding="utf-8"))
    async with aiohttp.ClientSession(server.url) as session:
        info = await (await session.get("/object_info")).json()
        one = await (await session.get("/object_info/Trellis2ExportMesh")).json()
        none = await (await session.get("/object_info/NoSuchNode")).json()
    assert info == recorded
    assert one == {"Trellis2ExportMesh": recorded["Trellis2ExportMesh"]}
    assert none == {}


async def test_our_node_pack_registers_its_node_and_routes(shared_standin: StandinServer) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        info = (await (await session.get("/object_info/TrellisBoxGLBOutput")).json())["TrellisBoxGLBOutput"]
        health = await session.get("/trellis-box/health")
        api_health = await session.get("/api/trellis-box/health")
        ready = await session.get("/trellis-box/ready")
        ready_body = await ready.json()
    assert info["input"] == {"required": {"glb_path": ["STRING", {"forceInput": True}]}}
    assert info["output_node"] is True and info["output"] == []
    assert info["python_module"] == "custom_nodes.trellis_box_nodes"
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    assert api_health.status == 200  # ComfyUI mirrors every route under /api
    assert ready.status == 503 and ready_body["phase"] == "unknown"
    assert "no-state.json" in ready_body["error"]


async def test_load_image_lists_uploaded_images(shared_standin: StandinServer) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        await upload(session, "listed.png", object_png())
        info = await (await session.get("/object_info/LoadImage")).json()
    files, options = info["LoadImage"]["input"]["required"]["image"]
    assert "listed.png" in files and options == {"image_upload": True}


async def test_unknown_node_class_is_rejected_whole(shared_standin: StandinServer) -> None:
    graph = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    async with aiohttp.ClientSession(shared_standin.url) as session:
        response = await session.post("/prompt", json={"prompt": graph})
        body = await response.json()
    assert response.status == 400
    assert body == {"error": {"type": "invalid_prompt",
                              "message": "Cannot execute because node NoSuchNode does not exist.",
                              "details": "Node ID '#1'", "extra_info": {}},
                    "node_errors": {}}


async def test_missing_input_file_fails_validation_with_node_errors(shared_standin: StandinServer) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        response = await session.post("/prompt", json={"prompt": save_graph("missing.png")})
        body = await response.json()
    assert response.status == 400
    assert body["error"] == {
        "type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
        # Empty, as on ComfyUI: the failing output (SaveImage) has no error of its own.
        "details": "", "extra_info": {}}
    assert body["node_errors"] == {"1": {
        "errors": [{"type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": "image - Invalid image file: missing.png",
                    "extra_info": {"input_name": "image"}}],
        "dependent_outputs": ["2"], "class_type": "LoadImage"}}


@pytest.mark.parametrize("body, kind", [
    ({"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}}, "prompt_no_outputs"),
    ({"client_id": "x"}, "no_prompt"),
])
async def test_prompts_without_outputs_are_rejected(shared_standin: StandinServer,
                                                    body: dict[str, Any], kind: str) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        response = await session.post("/prompt", json=body)
        answer = await response.json()
    assert response.status == 400 and answer["error"]["type"] == kind and answer["node_errors"] == {}


async def test_bad_values_are_reported_per_input(shared_standin: StandinServer) -> None:
    graph = recorded_graph()
    graph["6"]["inputs"].update(seed=-1, shape_steps="many")
    del graph["6"]["inputs"]["texture_steps"]
    graph["7"]["inputs"]["texture_size"] = 100000
    async with aiohttp.ClientSession(shared_standin.url) as session:
        await upload(session, "chair.png", object_png())
        response = await session.post("/prompt", json={"prompt": graph})
        body = await response.json()
    # Trellis2LoadModel (5) and SaveImage (9) do not depend on the bad nodes: 200, partial run.
    assert response.status == 200 and body["node_errors"]
    errors = {(node, e["type"], e["extra_info"]["input_name"])
              for node, entry in body["node_errors"].items() for e in entry["errors"]}
    assert errors == {("6", "value_smaller_than_min", "seed"),
                      ("6", "invalid_input_type", "shape_steps"),
                      ("6", "required_input_missing", "texture_steps"),
                      ("7", "value_bigger_than_max", "texture_size")}
    assert sorted(body["node_errors"]["6"]["dependent_outputs"]) == ["10", "6", "7", "8"]


async def test_upload_keeps_names_reuses_duplicates_and_refuses_escapes(
        shared_standin: StandinServer) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        first = await (await upload(session, "dup.png", object_png())).json()
        same = await (await upload(session, "dup.png", object_png())).json()
        other = await (await upload(session, "dup.png", object_png(colour=(1, 2, 3)))).json()
        replaced = await (await upload(session, "dup.png", object_png(colour=(9, 9, 9)),
                                       overwrite="true")).json()
        nested = await (await upload(session, "n.png", object_png(), subfolder="batch",
                                     type="input")).json()
        escape = await upload(session, "e.png", object_png(), subfolder="../../etc")
        no_image = await session.post("/upload/image", data={"overwrite": "true"})
    assert first == same == {"name": "dup.png", "subfolder": "", "type": "input"}
    assert other == {"name": "dup (1).png", "subfolder": "", "type": "input"}
    assert replaced == {"name": "dup.png", "subfolder": "", "type": "input"}
    assert nested == {"name": "n.png", "subfolder": "batch", "type": "input"}
    assert (shared_standin.input_dir / "batch" / "n.png").is_file()
    assert escape.status == 400 and no_image.status == 400


@pytest.mark.parametrize("params, status", [
    ({"filename": "../standin.log", "type": "output"}, 400),
    ({"filename": "/etc/passwd"}, 400),
    ({"filename": "nothing.png", "type": "output"}, 404),
    ({"filename": "a.png", "subfolder": "../..", "type": "output"}, 403),
    ({"filename": "a.png", "type": "elsewhere"}, 400),
    ({"type": "output"}, 404),
])
async def test_view_refuses_escapes_and_missing_files(shared_standin: StandinServer,
                                                      params: dict[str, str], status: int) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        response = await session.get("/view", params=params)
    assert response.status == status


async def test_full_run_surfaces_glb_in_history_and_view(shared_standin: StandinServer) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        await upload(session, "chair.png", object_png())
        _, messages, record = await run(session, recorded_graph(seed=5))
        glb_ref = record["outputs"]["10"]["3d"][0]
        glb = await session.get("/view", params=glb_ref)
        cutout = await session.get("/view", params=record["outputs"]["9"]["images"][0])
        glb_bytes, cutout_bytes = await glb.read(), await cutout.read()
    assert record["status"]["status_str"] == "success"
    assert glb_ref["subfolder"] == "3D" and glb_ref["filename"].startswith("Trellis2_")
    assert glb.headers["Content-Type"] == "model/gltf-binary" and glb_bytes[:4] == b"glTF"
    assert glb_bytes == (shared_standin.output_dir / "3D" / glb_ref["filename"]).read_bytes()
    assert cutout.headers["Content-Type"] == "image/png" and cutout_bytes[:4] == b"\x89PNG"
    assert [p["value"] for p in of_type(messages, "progress")] == list(range(1, 37))
    export = [e for e in of_type(messages, "executed") if e["node"] == "8"]
    assert export == []  # Trellis2ExportMesh has no UI output, exactly as recorded


async def test_changed_upload_invalidates_the_cache(shared_standin: StandinServer) -> None:
    async with aiohttp.ClientSession(shared_standin.url) as session:
        await upload(session, "cache.png", object_png(), overwrite="true")
        graph = recorded_graph(seed=7, image="cache.png")
        _, first, _ = await run(session, graph)
        _, again, _ = await run(session, graph)
        await upload(session, "cache.png", object_png(colour=(20, 120, 20)), overwrite="true")
        _, changed, _ = await run(session, graph)
    assert of_type(first, "execution_cached")[0]["nodes"] == ["2", "5"]
    assert len(of_type(again, "execution_cached")[0]["nodes"]) == 10
    assert of_type(changed, "execution_cached")[0]["nodes"] == ["2", "5"]


async def test_queue_is_fifo_and_can_be_edited_and_interrupted(comfy_standin: StartStandin) -> None:
    server = comfy_standin(exec_seconds=30)
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        ws = await session.ws_connect("/ws?clientId=q")
        ids = [(await submit(session, recorded_graph(seed=s), "q"))["prompt_id"] for s in (1, 2, 3, 4)]
        await _wait_for(ws, lambda m: m["type"] == "progress")
        queue = await (await session.get("/queue")).json()
        await session.post("/queue", json={"delete": [ids[2]]})
        after_delete = await (await session.get("/queue")).json()
        await session.post("/queue", json={"clear": True})
        after_clear = await (await session.get("/queue")).json()
        interrupt = await session.post("/interrupt", json={"prompt_id": ids[0]})
        end = await _wait_for(ws, lambda m: m["type"] == "executing" and m["data"]["node"] is None)
        remaining = await (await session.get("/prompt")).json()
        history = await (await session.get(f"/history/{ids[0]}")).json()
        everything = await (await session.get("/history")).json()
        await session.post("/history", json={"delete": [ids[0]]})
        after_history_delete = await (await session.get("/history")).json()
        await ws.close()
    assert [item[1] for item in queue["queue_running"]] == [ids[0]]
    # Pending items come in heap order, as from ComfyUI; their numbers give the FIFO order.
    assert [item[1] for item in sorted(queue["queue_pending"])] == ids[1:]
    assert [item[0] for item in sorted(queue["queue_pending"])] == [1, 2, 3]
    assert queue["queue_pending"][0][3] == {"client_id": "q"}
    assert [item[1] for item in sorted(after_delete["queue_pending"])] == [ids[1], ids[3]]
    assert after_clear["queue_pending"] == [] and len(after_clear["queue_running"]) == 1
    assert interrupt.status == 200 and end["data"]["prompt_id"] == ids[0]
    assert remaining == {"exec_info": {"queue_remaining": 0}}
    status = history[ids[0]]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert status["messages"][-1][0] == "execution_interrupted"
    assert status["messages"][-1][1]["node_id"] == "6"
    assert list(everything) == [ids[0]] and after_history_delete == {}


async def _wait_for(ws: aiohttp.ClientWebSocketResponse, predicate: Any) -> dict[str, Any]:
    while True:
        message = await ws.receive(timeout=60)
        assert message.type == aiohttp.WSMsgType.TEXT, f"websocket ended: {message}"
        data: dict[str, Any] = json.loads(message.data)
        if predicate(data):
            return data


async def test_out_of_memory_fault_looks_like_torch(comfy_standin: StartStandin) -> None:
    server = comfy_standin(fail_node=GENERATOR, fail_kind="oom", fail_when="pipeline_type=1536_cascade")
    graph = recorded_graph()
    graph["6"]["inputs"]["pipeline_type"] = "1536_cascade"
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        _, messages, record = await run(session, graph)
        graph["6"]["inputs"]["pipeline_type"] = "1024_cascade"
        _, _, fine = await run(session, graph)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "6" and error["node_type"] == GENERATOR
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"].startswith("CUDA out of memory. Tried to allocate")
    assert "This error means you ran out of memory on your GPU." in error["exception_message"]
    assert error["current_inputs"]["pipeline_type"] == ["1536_cascade"]
    assert sorted(error["executed"]) == ["1", "2", "3", "4", "5", "9"]
    assert record["status"]["status_str"] == "error" and "10" not in record["outputs"]
    assert fine["status"]["status_str"] == "success"


async def test_faults_change_on_a_running_server(comfy_standin: StartStandin) -> None:
    server = comfy_standin()
    assert server.set_faults(fail_node="Trellis2ExportMesh", fail_message="disk full")["fail_node"] \
        == "Trellis2ExportMesh"
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        _, messages, _ = await run(session, recorded_graph())
        refused = await session.post("/standin/options", json={"no_such_option": 1})
    error = of_type(messages, "execution_error")[0]
    assert (error["node_id"], error["exception_type"], error["exception_message"]) == \
        ("8", "RuntimeError", "disk full\n")
    assert refused.status == 400 and "no_such_option" in (await refused.json())["error"]


@pytest.mark.parametrize("loader, output", [
    ("LoadImage", 0), ("Trellis2LoadImageWithTransparency", 0),
])
async def test_rgb_image_into_preprocessing_fails_like_upstream(
        shared_standin: StandinServer, loader: str, output: int) -> None:
    """Upstream issue #190: the preprocessing node indexes the alpha channel."""
    graph = {"1": {"class_type": loader, "inputs": {"image": "rgba.png"}},
             "4": {"class_type": "Trellis2PreProcessImage", "inputs": {"image": ["1", output]}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}}}
    async with aiohttp.ClientSession(shared_standin.url) as session:
        await upload(session, "rgba.png", _cutout_png(), overwrite="true")
        _, messages, _ = await run(session, graph)
    error = of_type(messages, "execution_error")[0]
    assert (error["node_id"], error["exception_type"], error["exception_message"]) == \
        ("4", "IndexError", "index 3 is out of bounds for axis 2 with size 3\n")


async def test_image_with_alpha_output_feeds_preprocessing(shared_standin: StandinServer) -> None:
    graph = {"1": {"class_type": "Trellis2LoadImageWithTransparency", "inputs": {"image": "rgba.png"}},
             "4": {"class_type": "Trellis2PreProcessImage", "inputs": {"image": ["1", 2]}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "a/x"}}}
    async with aiohttp.ClientSession(shared_standin.url) as session:
        await upload(session, "rgba.png", _cutout_png(), overwrite="true")
        listed = await (await session.get("/object_info/Trellis2LoadImageWithTransparency")).json()
        _, _, record = await run(session, graph)
    saved = record["outputs"]["9"]["images"][0]
    assert "rgba.png" in listed["Trellis2LoadImageWithTransparency"]["input"]["required"]["image"][0]
    with Image.open(shared_standin.output_dir / saved["subfolder"] / saved["filename"]) as cutout:
        # Cropped to the opaque square and premultiplied onto black, as upstream does.
        assert cutout.mode == "RGB" and cutout.size == (100, 100)


def _cutout_png() -> bytes:
    image = Image.new("RGBA", (200, 160), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((40, 30, 140, 130), fill=(200, 50, 50, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_missing_rmbg_weights_fail_at_execution(comfy_standin: StartStandin) -> None:
    server = comfy_standin(rmbg_weights=False)
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        _, messages, _ = await run(session, recorded_graph())
    error = of_type(messages, "execution_error")[0]
    assert (error["node_id"], error["exception_type"]) == ("2", "FileNotFoundError")
    assert "RMBG-1.4/model.pth" in error["exception_message"]


async def test_dropped_websocket_and_reconnect(comfy_standin: StartStandin) -> None:
    server = comfy_standin(drop_ws_after=8, exec_seconds=3)
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        ws = await session.ws_connect("/ws?clientId=drop")
        prompt_id = (await submit(session, recorded_graph(), "drop"))["prompt_id"]
        received = []
        while True:
            message = await ws.receive(timeout=30)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            received.append(json.loads(message.data))
        server.set_faults(drop_ws_after=None)
        again = await session.ws_connect("/ws?clientId=drop")
        hello = json.loads((await again.receive(timeout=30)).data)
        executing = await _wait_for(again, lambda m: m["type"] == "executing")
        end = await _wait_for(again, lambda m: m["type"] == "executing" and m["data"]["node"] is None)
        await again.close()
    assert len(received) == 8
    assert hello["type"] == "status" and hello["data"]["sid"] == "drop"
    # Reconnecting while its prompt runs, the client is told which node is executing.
    assert executing["data"]["node"] is not None
    assert end["data"]["prompt_id"] == prompt_id


async def test_slow_view_delays_the_answer(comfy_standin: StartStandin) -> None:
    server = comfy_standin(view_delay=5)
    async with aiohttp.ClientSession(server.url) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.get("/view", params={"filename": "x.png"},
                              timeout=aiohttp.ClientTimeout(total=0.5))
        server.set_faults(view_delay=None)
        response = await session.get("/view", params={"filename": "x.png"})
    assert response.status == 404


async def test_reported_gpu_from_variables_and_flags(comfy_standin: StartStandin) -> None:
    server = comfy_standin(env={"COMFY_STANDIN_GPU_NAME": "NVIDIA L40S",
                                "COMFY_STANDIN_STARTUP_DELAY": "0.2",
                                "COMFY_STANDIN_VRAM_BYTES": "1"},
                           vram_bytes=48 * 1024**3)  # the flag wins over the variable
    async with aiohttp.ClientSession(server.url) as session:
        stats = await (await session.get("/system_stats")).json()
        options = await (await session.get("/standin/options")).json()
    assert (options["startup_delay"], options["vram_bytes"]) == (0.2, 48 * 1024**3)
    device = stats["devices"][0]
    assert device["name"] == "cuda:0 NVIDIA L40S : cudaMallocAsync"
    assert (device["type"], device["index"], device["vram_total"]) == ("cuda", 0, 48 * 1024**3)
    assert stats["system"]["comfyui_version"] == "0.3.64"


async def test_failed_custom_node_import_is_logged_and_skipped(comfy_standin: StartStandin,
                                                               tmp_path: Path) -> None:
    root = install(tmp_path / "comfy")
    broken = root / "custom_nodes" / "broken_pack"
    broken.mkdir()
    (broken / "__init__.py").write_text("import no_such_module_for_the_stand_in\n")
    server = comfy_standin(root=root)
    async with aiohttp.ClientSession(server.url) as session:
        info = await (await session.get("/object_info")).json()
    log = server.log_text()
    assert "(IMPORT FAILED)" in log and "broken_pack" in log
    assert "ModuleNotFoundError: No module named 'no_such_module_for_the_stand_in'" in log
    assert "Trellis2ExportMesh" in info and "TrellisBoxGLBOutput" in info


async def test_restart_loses_queue_and_history_but_keeps_files(comfy_standin: StartStandin) -> None:
    server = comfy_standin()
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        prompt_id, _, record = await run(session, recorded_graph())
    url = server.url
    await asyncio.to_thread(server.restart)
    async with aiohttp.ClientSession(server.url) as session:
        history = await (await session.get(f"/history/{prompt_id}")).json()
        again = await submit(session, recorded_graph(), "after")
    glb = record["outputs"]["10"]["3d"][0]
    assert server.url == url and history == {}
    assert again["number"] == 0
    assert (server.output_dir / glb["subfolder"] / glb["filename"]).is_file()


async def test_directory_flags(comfy_standin: StartStandin, tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "input").mkdir(parents=True)
    out = tmp_path / "elsewhere"
    server = comfy_standin(extra_args=["--base-directory", str(base), "--output-directory", str(out)])
    async with aiohttp.ClientSession(server.url) as session:
        await upload(session, "chair.png", object_png())
        info = await (await session.get("/object_info")).json()
        _, _, record = await run(session, save_graph())
    saved = record["outputs"]["2"]["images"][0]
    assert (base / "input" / "chair.png").is_file()
    assert (out / saved["subfolder"] / saved["filename"]).is_file()
    # custom_nodes come from the base directory too: none there, core nodes only.
    assert "Trellis2ExportMesh" not in info and "SaveImage" in info

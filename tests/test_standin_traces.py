"""Replay every recorded ComfyUI scenario against the stand-in and compare what comes back.

The recordings (``tests/recordings/comfyui/traces``) were made one after another on one server, then
07 on a restarted one; the replay does the same on one stand-in root, so queue numbers, cache
hits and output file names line up with the recording. Compared per scenario: each HTTP
answer's status, content type and JSON (prompt ids mapped, volatile machine facts by shape), and
the websocket messages of each prompt in order with their key fields. Two freedoms of the real
server are normalised, because its order depends on Python's hash seed: the order in which
cached output nodes are replayed, and where ``status`` broadcasts fall between three queued
prompts. The number of generator progress steps before an interrupt depends on timing.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageDraw

from tests.comfy_standin import install
from tests.comfy_standin.launcher import StandinServer
from tests.conftest import COMFY_RECORDINGS

TRACES = COMFY_RECORDINGS / "traces"
SCENARIOS = ["01_success", "02_resubmit_identical_cached", "03_validation_error",
             "04_execution_error", "05_interrupt", "06_three_queued",
             "07_success_with_glb_ui_output"]
GENERATOR = "Trellis2MeshWithVoxelGenerator"
# How 04 was provoked on the recording machine (its README: the generator raised this).
RECORDED_FAULT = {"fail_node": GENERATOR, "fail_when": "seed=666", "fail_kind": "error",
                  "fail_message": "CUDA out of memory. Tried to allocate 2.00 GiB (recorder-simulated)"}
# Scenario 07's output node was the recorder's stand-in for ours.
RECORDER_NODE = {"RecGLBOutput": "TrellisBoxGLBOutput"}
STEP_SECONDS = 0.01
INTERRUPT_STEP_SECONDS = 0.2


def load(name: str) -> list[dict[str, Any]]:
    with (TRACES / f"{name}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def chair_png() -> bytes:
    image = Image.new("RGB", (320, 320), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 60, 220, 180), fill=(150, 90, 40))
    draw.rectangle((100, 180, 220, 200), fill=(120, 70, 30))
    for x in (100, 205):
        draw.rectangle((x, 200, x + 15, 290), fill=(90, 50, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Replay:
    """The stand-in the scenarios share, and what each scenario's replay observed."""

    def __init__(self, server: StandinServer) -> None:
        self.server = server
        self.results: dict[str, dict[str, Any]] = {}

    async def ensure(self, name: str) -> dict[str, Any]:
        for earlier in SCENARIOS[: SCENARIOS.index(name) + 1]:
            if earlier not in self.results:
                if earlier.startswith("07"):
                    await asyncio.to_thread(self.server.restart)
                self.results[earlier] = await replay(self.server, earlier)
        return self.results[name]


@pytest.fixture(scope="module")
def replayer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    root = install(tmp_path_factory.mktemp("replay"))
    server = StandinServer(root, options={"exec_seconds": 36 * STEP_SECONDS})
    server.start()
    yield Replay(server)
    server.stop()


async def replay(server: StandinServer, name: str) -> dict[str, Any]:
    """Send the scenario's requests in the recorded order; collect answers and messages."""
    events = load(name)
    posts = [e for e in events if e["kind"] == "http" and e["path"] == "/prompt"]
    client_id = posts[0]["request_json"]["client_id"]
    answers: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    prompt_ids: list[str] = []
    async with aiohttp.ClientSession(server.url) as session:
        ws = await session.ws_connect(f"/ws?clientId={client_id}")
        if name.startswith("04"):
            server.set_faults(**RECORDED_FAULT)
        if name.startswith("05"):
            server.set_faults(exec_seconds=36 * INTERRUPT_STEP_SECONDS)
        finished: set[str] = set()
        for event in events:
            if event["kind"] != "http":
                continue
            if event["path"].startswith("/history/"):
                await _receive_until(ws, messages, lambda: len(finished) == len(posts), finished)
            answers.append(await _request(session, event, prompt_ids, answers))
            if event["path"] == "/prompt" and name.startswith("05"):
                await _receive_until(ws, messages, lambda: _progress_reached(messages, 12), finished)
        await ws.close()
        server.set_faults(**{key: None for key in RECORDED_FAULT},
                          exec_seconds=36 * STEP_SECONDS)
    return {"answers": answers, "messages": messages, "prompt_ids": prompt_ids}


def _progress_reached(messages: list[dict[str, Any]], step: int) -> bool:
    return any(m["type"] == "progress" and m["data"]["value"] >= step for m in messages)


async def _receive_until(ws: aiohttp.ClientWebSocketResponse, messages: list[dict[str, Any]],
                         done: Any, finished: set[str]) -> None:
    while not done():
        message = await ws.receive(timeout=60)
        assert message.type == aiohttp.WSMsgType.TEXT, f"websocket ended: {message}"
        data = json.loads(message.data)
        messages.append(data)
        if data["type"] == "executing" and data["data"]["node"] is None:
            finished.add(data["data"]["prompt_id"])


async def _request(session: aiohttp.ClientSession, event: dict[str, Any], prompt_ids: list[str],
                   answers: list[dict[str, Any]]) -> dict[str, Any]:
    path = event["path"]
    if path == "/upload/image":
        form = aiohttp.FormData()
        form.add_field("image", chair_png(), filename="chair.png", content_type="image/png")
        response = await session.post(path, data=form)
    elif path == "/prompt":
        body = json.loads(json.dumps(event["request_json"]))
        for node in body["prompt"].values():
            node["class_type"] = RECORDER_NODE.get(node["class_type"], node["class_type"])
        response = await session.post(path, json=body)
    elif path.startswith("/history/"):
        recorded_id = path.rsplit("/", 1)[1]
        response = await session.get(f"/history/{_map_id(recorded_id, prompt_ids)}")
    elif path == "/view":
        response = await session.get(path, params=_next_view(answers))
    elif path == "/interrupt":
        response = await session.post(path, json=event.get("request_json", {}))
    else:
        response = await session.request(event["method"], path)
    body_bytes = await response.read()
    answer: dict[str, Any] = {"path": path, "status": response.status,
                              "content_type": response.headers.get("Content-Type", ""),
                              "bytes": body_bytes}
    if response.content_type == "application/json":
        answer["json"] = json.loads(body_bytes)
        if path == "/prompt" and response.status == 200:
            prompt_ids.append(answer["json"]["prompt_id"])
    return answer


_RECORDED_IDS: dict[str, list[str]] = {}


def _map_id(recorded_id: str, prompt_ids: list[str]) -> str:
    for name in SCENARIOS:
        ids = _RECORDED_IDS.setdefault(name, [
            e["response_json"]["prompt_id"] for e in load(name)
            if e["kind"] == "http" and e["path"] == "/prompt" and e["status"] == 200])
        if recorded_id in ids:
            return prompt_ids[ids.index(recorded_id)]
    raise AssertionError(f"prompt id {recorded_id} is not in any recording")


def _next_view(answers: list[dict[str, Any]]) -> dict[str, str]:
    """The file the recorded client fetched: outputs of the histories read so far, in order."""
    refs = []
    for answer in answers:
        if answer["path"].startswith("/history/") and "json" in answer:
            for record in answer["json"].values():
                for output in record["outputs"].values():
                    refs += output.get("images", []) + output.get("3d", [])
    fetched = sum(1 for a in answers if a["path"] == "/view")
    ref = refs[fetched]
    return {"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]}


# --- normalisation ------------------------------------------------------------------------

def _messages_by_prompt(messages: list[dict[str, Any]], order: list[str]) -> list[list[dict[str, Any]]]:
    by_prompt: dict[str, list[dict[str, Any]]] = {pid: [] for pid in order}
    for message in messages:
        pid = message["data"].get("prompt_id")
        if pid is not None:
            by_prompt[pid].append(message)
    return [by_prompt[pid] for pid in order]


def _shape(message: dict[str, Any], scenario: str) -> Any:
    """A message reduced to what must match: type and key fields (ids, nodes, values, outputs)."""
    kind, data = message["type"], message["data"]
    if kind == "progress_state":
        return [kind, {node: [s["state"], s["value"], s["max"], type(s["value"]).__name__,
                              sorted(s)] for node, s in data["nodes"].items()}]
    if kind == "executed":
        output = data["output"]
        if scenario.startswith("07") and output and "3d" in output:
            output = {"3d": output["3d"]}  # our node adds "trellis_box" statistics
        return [kind, data["node"], data["display_node"], output, sorted(data)]
    if kind == "execution_error":
        return [kind, data["node_id"], data["node_type"], data["executed"],
                data["exception_type"], data["exception_message"],
                sorted(data["current_outputs"]), sorted(data["current_inputs"]),
                isinstance(data["traceback"], list) and bool(data["traceback"]), sorted(data)]
    if kind in ("execution_start", "execution_success", "execution_interrupted",
                "execution_cached"):
        assert isinstance(data["timestamp"], int)
        return [kind, {k: v for k, v in data.items() if k not in ("timestamp", "prompt_id")}]
    return [kind, {k: v for k, v in data.items() if k != "prompt_id"}]


def _normalised(sequence: list[dict[str, Any]], scenario: str) -> list[Any]:
    shapes = [_shape(m, scenario) for m in sequence]
    out: list[Any] = []
    i = 0
    while i < len(shapes):
        kind = shapes[i][0]
        if kind == "execution_cached":
            # Replayed cached outputs: order follows the server's set order, so compare the
            # executed messages as a set and the progress state they end with.
            out.append(shapes[i])
            j = i + 1
            block = []
            while j < len(shapes) and shapes[j][0] in ("executed", "progress_state") \
                    and _is_replay(sequence, i, j):
                block.append(shapes[j])
                j += 1
            executed = sorted(json.dumps(s) for s in block if s[0] == "executed")
            last_state = [s for s in block if s[0] == "progress_state"][-1:]
            out.append(["cached replay", executed, last_state])
            i = j
        elif kind == "progress":
            j = i
            while j < len(shapes) and shapes[j][0] in ("progress", "progress_state") and \
                    (shapes[j][0] == "progress" or shapes[j][1][GENERATOR_NODE][0] == "running"):
                j += 1
            steps = [s[1]["value"] for s in shapes[i:j] if s[0] == "progress"]
            assert steps == list(range(1, len(steps) + 1)), steps
            out.append(["progress run", "interrupted" if scenario.startswith("05") else len(steps),
                        shapes[i][1]["max"], shapes[i][1]["node"]])
            i = j
        else:
            out.append(shapes[i])
            i += 1
    return out


GENERATOR_NODE = "6"


def _is_replay(sequence: list[dict[str, Any]], start: int, index: int) -> bool:
    """Still in the cached block: no node has started running since execution_cached."""
    return not any(m["type"] == "executing" for m in sequence[start:index + 1])


def _without_status(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] != "status"]


# --- the tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_websocket_messages_match_the_recording(replayer: Replay, scenario: str) -> None:
    result = await replayer.ensure(scenario)
    events = load(scenario)
    recorded = [e["msg"] for e in events if e["kind"] == "ws"]
    recorded_ids = [e["response_json"]["prompt_id"] for e in events
                    if e["kind"] == "http" and e["path"] == "/prompt" and e["status"] == 200]
    ours = result["messages"]

    assert ours[0] == {"type": "status", "data": {
        "status": {"exec_info": {"queue_remaining": 0}}, "sid": recorded[0]["data"]["sid"]}}
    statuses = [m for m in ours if m["type"] == "status"]
    recorded_statuses = [m for m in recorded if m["type"] == "status"]
    assert len(statuses) == len(recorded_statuses)
    assert statuses[-1] == recorded_statuses[-1]
    if not scenario.startswith("06"):
        assert statuses == recorded_statuses

    ours_by_prompt = _messages_by_prompt(_without_status(ours), result["prompt_ids"])
    recorded_by_prompt = _messages_by_prompt(_without_status(recorded), recorded_ids)
    for mine, theirs in zip(ours_by_prompt, recorded_by_prompt, strict=True):
        assert _normalised(mine, scenario) == _normalised(theirs, scenario)
        assert mine[-1] == {"type": "executing", "data": {"node": None,
                                                          "prompt_id": mine[-1]["data"]["prompt_id"]}}


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_http_answers_match_the_recording(replayer: Replay, scenario: str) -> None:
    result = await replayer.ensure(scenario)
    recorded = [e for e in load(scenario) if e["kind"] == "http"]
    ours = result["answers"]
    assert [a["path"] for a in ours] == [e["path"] for e in recorded]
    id_map = dict(zip((e["response_json"]["prompt_id"] for e in recorded
                       if e["path"] == "/prompt" and e["status"] == 200), result["prompt_ids"],
                      strict=True))
    for answer, event in zip(ours, recorded, strict=True):
        where = f"{scenario} {event['method']} {event['path']}"
        assert answer["status"] == event["status"], where
        assert answer["content_type"] == event["content_type"], where
        if "response_json" in event:
            _compare_json(answer["json"], event["response_json"], id_map, where)
        elif "response_bytes" in event:
            head = bytes.fromhex(event["response_head"])
            if event["content_type"] == "model/gltf-binary":
                assert answer["bytes"][:8] == head[:8], where  # magic and version; sizes differ
            else:
                assert answer["bytes"][:len(head)] == head, where
            assert (len(answer["bytes"]) == 0) == (event["response_bytes"] == 0), where


def _compare_json(ours: Any, recorded: Any, id_map: dict[str, str], where: str) -> None:
    if "system" in recorded:  # /system_stats: this machine's facts, the recording's shape
        assert sorted(ours) == sorted(recorded)
        assert sorted(ours["system"]) == sorted(recorded["system"])
        assert ours["system"]["comfyui_version"] == recorded["system"]["comfyui_version"]
        assert [sorted(d) for d in ours["devices"]] == [sorted(d) for d in recorded["devices"]]
        assert ours["devices"][0]["name"] == recorded["devices"][0]["name"]
        return
    ours_renamed = {v: k for k, v in id_map.items()}
    assert _canonical(ours, ours_renamed) == _canonical(recorded, RECORDER_NODE), where


def _object_repr(value: Any) -> Any:
    """Objects in error reports are their repr (a tensor there, Pillow images here)."""
    if isinstance(value, str) and value.startswith(("<", "[<", "tensor(")):
        return "<object>"
    return value


def _canonical(value: Any, rename: dict[str, str]) -> Any:
    """Prompt ids renamed to the recorded ones, timestamps and volatile lists made comparable."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key = rename.get(key, key)
            if key == "timestamp":
                item = "<timestamp>"
            elif key == "traceback":
                item = "<traceback>" if item else item
            elif key in ("current_outputs", "dependent_outputs", "executed"):
                item = sorted(item)
            elif key == "trellis_box":
                continue
            elif key == "current_inputs":
                item = {name: [_object_repr(v) for v in values] for name, values in item.items()}
            out[key] = _canonical(item, rename)
        return out
    if isinstance(value, list):
        items = [_canonical(v, rename) for v in value]
        # History's outputs-to-execute list: a set on the real server.
        if len(items) == 5 and isinstance(items[4], list) and isinstance(items[2], dict) \
                and all(isinstance(x, str) for x in items[4]):
            items[4] = sorted(items[4])
        return items
    if isinstance(value, str):
        return rename.get(value, value)
    return value

"""Every websocket message in the real recordings parses into its type; nothing else raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import COMFY_RECORDINGS
from trellis_box.comfyui import protocol

TRACES = sorted((COMFY_RECORDINGS / "traces").glob("*.jsonl"))


def _ws_messages(trace: Path) -> list[dict]:
    lines = (json.loads(line) for line in trace.read_text().splitlines() if line.strip())
    return [rec["msg"] for rec in lines if rec["kind"] == "ws"]


def test_the_recordings_are_there() -> None:
    assert len(TRACES) == 7, f"expected the 7 recorded traces under {COMFY_RECORDINGS}/traces"


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.stem)
def test_every_recorded_message_parses_to_a_known_type(trace: Path) -> None:
    for raw in _ws_messages(trace):
        msg = protocol.parse(json.dumps(raw))
        assert not isinstance(msg, protocol.Unknown), raw
        if "prompt_id" in raw["data"]:
            assert protocol.prompt_of(msg) == raw["data"]["prompt_id"]


def test_the_parser_covers_every_type_the_recordings_contain() -> None:
    seen = {raw["type"] for trace in TRACES for raw in _ws_messages(trace)}
    assert seen == {
        "status", "execution_start", "execution_cached", "executing", "progress",
        "progress_state", "executed", "execution_success", "execution_error",
        "execution_interrupted",
    }


def test_the_end_of_a_prompt_is_executing_with_node_null() -> None:
    last = _ws_messages(COMFY_RECORDINGS / "traces" / "01_success.jsonl")[-1]
    msg = protocol.parse(last)
    assert msg == protocol.Executing(prompt_id="57ade4f0-734b-426c-8807-95ee7397d514", node=None)


def test_execution_error_keeps_node_and_exception() -> None:
    raw = next(m for m in _ws_messages(COMFY_RECORDINGS / "traces" / "04_execution_error.jsonl")
               if m["type"] == "execution_error")
    msg = protocol.parse(raw)
    assert isinstance(msg, protocol.ExecutionError)
    assert (msg.node_id, msg.node_type, msg.exception_type) == (
        "6", "Trellis2MeshWithVoxelGenerator", "RuntimeError")
    assert msg.exception_message.startswith("CUDA out of memory")
    assert msg.traceback and "execution.py" in msg.traceback[0]


def test_cached_nodes_and_null_outputs_of_a_resubmission() -> None:
    msgs = [protocol.parse(m) for m in
            _ws_messages(COMFY_RECORDINGS / "traces" / "02_resubmit_identical_cached.jsonl")]
    cached = next(m for m in msgs if isinstance(m, protocol.ExecutionCached))
    assert cached.nodes == ("1", "2", "3", "4", "5", "6", "7", "8", "9")
    executed = {m.node: m.output for m in msgs if isinstance(m, protocol.Executed)}
    assert executed["8"] is None
    assert executed["9"] == {"images": [{"filename": "Trellis2_00001_.png", "subfolder": "cutout",
                                         "type": "output"}]}


def test_progress_carries_step_and_node() -> None:
    msgs = [protocol.parse(m) for m in
            _ws_messages(COMFY_RECORDINGS / "traces" / "01_success.jsonl")]
    steps = [m for m in msgs if isinstance(m, protocol.Progress)]
    assert (steps[0].node, steps[0].value, steps[-1].value, steps[-1].max) == ("6", 1, 36, 36)
    states = [m for m in msgs if isinstance(m, protocol.ProgressState)]
    assert states[0].nodes["5"] == protocol.NodeState(0.0, 1.0, "running")


@pytest.mark.parametrize("frame", [
    '{"type": "crystools.monitor", "data": {"gpus": []}}',
    '{"type": "executing", "data": "not an object"}',
    '{"type": "progress", "data": {"node": "6"}}',
    '{"data": {}}',
    "not json at all",
    "[1, 2]",
    b"\x00\x00\x00\x01\x89PNG",
])
def test_unknown_or_malformed_frames_come_back_as_unknown(frame: str | bytes) -> None:
    msg = protocol.parse(frame)
    assert isinstance(msg, protocol.Unknown)
    assert protocol.prompt_of(msg) is None

"""ComfyUI's websocket messages as typed values, and one :func:`parse` for every text frame.

The types are the ones seen on ComfyUI 0.3.64 (``tests/recordings/comfyui/traces``). Newer servers add
types; :func:`parse` never raises and returns :class:`Unknown` for anything it does not know or
cannot read, so a client keeps following its prompts whatever the server sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Status:
    """Queue length broadcast; the first one after connecting carries the session id."""

    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    """Nodes whose results ComfyUI reuses from its cache: they will not run."""

    prompt_id: str
    nodes: tuple[str, ...] = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Executing:
    """A node starts; ``node is None`` means the prompt is finished (the only end signal)."""

    prompt_id: str | None
    node: str | None


@dataclass(frozen=True)
class Progress:
    """Step ``value`` of ``max`` inside one node (e.g. sampler steps)."""

    prompt_id: str | None
    node: str | None
    value: int
    max: int


@dataclass(frozen=True)
class NodeState:
    value: float
    max: float
    state: str


@dataclass(frozen=True)
class ProgressState:
    """Per-node progress snapshot for the whole prompt (newer servers; a superset of Progress)."""

    prompt_id: str
    nodes: dict[str, NodeState] = field(default_factory=dict)


@dataclass(frozen=True)
class Executed:
    """A node finished; ``output`` is its UI output (``None`` for nodes without one)."""

    prompt_id: str
    node: str
    output: dict[str, Any] | None


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None


@dataclass(frozen=True)
class Unknown:
    """A message this client does not know, or one it could not read; callers ignore it."""

    type: str
    data: Any = None


Message = (
    Status | ExecutionStart | ExecutionCached | Executing | Progress | ProgressState | Executed
    | ExecutionSuccess | ExecutionError | ExecutionInterrupted | Unknown
)

# The messages that belong to one prompt (everything but Status and Unknown).
PromptMessage = (
    ExecutionStart | ExecutionCached | Executing | Progress | ProgressState | Executed
    | ExecutionSuccess | ExecutionError | ExecutionInterrupted
)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _status(d: dict[str, Any]) -> Status:
    return Status(int(d["status"]["exec_info"]["queue_remaining"]), _opt_str(d.get("sid")))


def _node_states(nodes: dict[str, Any]) -> dict[str, NodeState]:
    return {str(k): NodeState(float(v["value"]), float(v["max"]), str(v["state"]))
            for k, v in nodes.items()}


_PARSERS: dict[str, Any] = {
    "status": _status,
    "execution_start": lambda d: ExecutionStart(str(d["prompt_id"]), d.get("timestamp")),
    "execution_cached": lambda d: ExecutionCached(
        str(d["prompt_id"]), tuple(str(n) for n in d.get("nodes") or ()), d.get("timestamp")),
    "executing": lambda d: Executing(_opt_str(d.get("prompt_id")), _opt_str(d.get("node"))),
    "progress": lambda d: Progress(_opt_str(d.get("prompt_id")), _opt_str(d.get("node")),
                                   int(d["value"]), int(d["max"])),
    "progress_state": lambda d: ProgressState(str(d["prompt_id"]), _node_states(d["nodes"])),
    "executed": lambda d: Executed(str(d["prompt_id"]), str(d["node"]), d.get("output")),
    "execution_success": lambda d: ExecutionSuccess(str(d["prompt_id"]), d.get("timestamp")),
    "execution_error": lambda d: ExecutionError(
        str(d["prompt_id"]), _opt_str(d.get("node_id")), _opt_str(d.get("node_type")),
        str(d.get("exception_type") or "Exception"), str(d.get("exception_message") or ""),
        tuple(str(line) for line in d.get("traceback") or ())),
    "execution_interrupted": lambda d: ExecutionInterrupted(
        str(d["prompt_id"]), _opt_str(d.get("node_id")), _opt_str(d.get("node_type"))),
}


def parse(frame: str | bytes | dict[str, Any]) -> Message:
    """Turn one websocket text frame (or its decoded JSON) into a message; never raises.

    Binary frames (preview images) and anything malformed come back as :class:`Unknown`.
    """
    if isinstance(frame, bytes):
        return Unknown("binary")
    if isinstance(frame, str):
        try:
            frame = json.loads(frame)
        except ValueError:
            return Unknown("malformed", frame)
    if not isinstance(frame, dict):
        return Unknown("malformed", frame)
    kind, data = frame.get("type"), frame.get("data")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None or not isinstance(data, dict):
        return Unknown(str(kind), data)
    try:
        return parser(data)  # type: ignore[no-any-return]
    except (KeyError, TypeError, ValueError, AttributeError):
        # A known type whose shape changed upstream: ignored like an unknown one.
        return Unknown(str(kind), data)


def prompt_of(message: Message) -> str | None:
    """The prompt a message belongs to, or ``None`` for broadcasts and unknown messages."""
    if isinstance(message, (Status, Unknown)):
        return None
    return message.prompt_id

"""Per-node progress of the running prompt, and what the worker is doing right now."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Publish = Callable[..., None]  # (event, data, sid=None): thread-safe, see hub.Hub.publish


class ProgressBoard:
    """Every change is sent whole as a ``progress_state`` message (ComfyUI 0.3.64's shape)."""

    def __init__(self, publish: Publish, prompt_id: str, client_id: str | None) -> None:
        self._publish = publish
        self._prompt_id = prompt_id
        self._client_id = client_id
        self._nodes: dict[str, dict[str, Any]] = {}

    def started(self, node_id: str) -> None:
        self._set(node_id, "running", 0.0, 1.0)

    def advanced(self, node_id: str, value: float, maximum: float) -> None:
        self._set(node_id, "running", value, maximum)

    def finished(self, node_id: str) -> None:
        # A node that never started (cached) reports the integers 1/1, as recorded.
        maximum = self._nodes.get(node_id, {}).get("max", 1)
        self._set(node_id, "finished", maximum, maximum)

    def _set(self, node_id: str, state: str, value: float, maximum: float) -> None:
        self._nodes[node_id] = {
            "value": value, "max": maximum, "state": state, "node_id": node_id,
            "prompt_id": self._prompt_id, "display_node_id": node_id,
            "parent_node_id": None, "real_node_id": node_id}
        self._publish("progress_state", {"prompt_id": self._prompt_id, "nodes": dict(self._nodes)},
                      self._client_id)


@dataclasses.dataclass
class Activity:
    """Written by the executor thread, read by the websocket handler (a client reconnecting
    mid-prompt is told the running node) and by the progress-bar hook."""

    client_id: str | None = None
    prompt_id: str | None = None
    node_id: str | None = None
    board: ProgressBoard | None = None

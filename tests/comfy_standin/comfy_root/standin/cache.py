"""Results of earlier runs, reused when a node and everything it depends on are unchanged.

ComfyUI 0.3.64's default ("classic") cache: only entries the current prompt can use survive its
start, so resubmitting an identical prompt runs nothing, and an unchanged branch of an edited
prompt is not run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from standin import registry
from standin.graph import Prompt, class_of, is_link

log = logging.getLogger("standin.cache")


def _changed_token(prompt: Prompt, node_id: str) -> Any:
    """What the node's ``IS_CHANGED`` says about its constant inputs (``False`` without one)."""
    is_changed = getattr(class_of(prompt, node_id), "IS_CHANGED", None)
    if is_changed is None:
        return False
    constants = {k: v for k, v in prompt[node_id]["inputs"].items() if not is_link(v)}
    try:
        return [is_changed(**constants)]
    except Exception as e:
        log.warning("IS_CHANGED of node %s raised %r; it will run again", node_id, e)
        return f"never-equal-{uuid.uuid4()}"


def _unique_per_node(node_class: registry.NodeClass) -> bool:
    """Nodes whose result depends on which node they are never share a cache entry."""
    hidden = registry.inputs_of(node_class).get("hidden", {})
    return getattr(node_class, "NOT_IDEMPOTENT", False) or "UNIQUE_ID" in hidden.values()


def signatures(prompt: Prompt) -> dict[str, str]:
    """Node id -> digest of its type, IS_CHANGED token, constants and (recursively) its sources."""
    done: dict[str, str] = {}

    def sign(node_id: str) -> str:
        if node_id not in done:
            node = prompt[node_id]
            parts: list[Any] = [node["class_type"], _changed_token(prompt, node_id)]
            if _unique_per_node(class_of(prompt, node_id)):
                parts.append(node_id)
            for name in sorted(node["inputs"]):
                value = node["inputs"][name]
                linked = is_link(value)
                parts.append([name, ["link", sign(value[0]), value[1]] if linked else value])
            text = json.dumps(parts, sort_keys=True, default=repr)
            done[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return done[node_id]

    return {node_id: sign(node_id) for node_id in prompt}


class ResultCache:
    """Values by signature; ``use_for`` binds the node ids of one prompt and prunes the rest."""

    def __init__(self) -> None:
        self._by_signature: dict[str, Any] = {}
        self._signature_of: dict[str, str] = {}

    def use_for(self, signature_of: dict[str, str]) -> None:
        self._signature_of = signature_of
        wanted = set(signature_of.values())
        self._by_signature = {s: v for s, v in self._by_signature.items() if s in wanted}

    def get(self, node_id: str) -> Any:
        signature = self._signature_of.get(node_id)
        return None if signature is None else self._by_signature.get(signature)

    def put(self, node_id: str, value: Any) -> None:
        self._by_signature[self._signature_of[node_id]] = value

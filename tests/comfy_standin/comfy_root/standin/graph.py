"""An API-format prompt read as a graph: ``{"<id>": {"class_type": ..., "inputs": {...}}}``,
where an input is a constant or a link ``["<source id>", <output slot>]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from standin import registry

Prompt = dict[str, dict[str, Any]]


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int))


def class_of(prompt: Prompt, node_id: str) -> registry.NodeClass:
    return registry.NODE_CLASSES[prompt[node_id]["class_type"]]


def links_into(prompt: Prompt, node_id: str) -> Iterator[tuple[str, str, int]]:
    """(input name, source node, source slot) for each linked input, in input order."""
    for name, value in prompt[node_id]["inputs"].items():
        if is_link(value):
            yield name, value[0], value[1]


def upstream_of(prompt: Prompt, node_id: str) -> set[str]:
    """Every node ``node_id`` depends on, directly or not (validation reports dangling links)."""
    found: set[str] = set()
    todo = [node_id]
    while todo:
        current = todo.pop()
        if current not in prompt:
            continue
        for _, source, _ in links_into(prompt, current):
            if source not in found:
                found.add(source)
                todo.append(source)
    return found


def outputs_in_run_order(prompt: Prompt, outputs: set[str]) -> list[str]:
    """Output nodes with fewer dependencies first, then by numeric id.

    ComfyUI iterates a ``set`` here, so its order varies with the hash seed; this fixed order
    reproduces the node order of every recorded trace (the cutout is saved before the generator
    starts).
    """
    def rank(node_id: str) -> tuple[int, int, str]:
        return len(upstream_of(prompt, node_id)), int(node_id) if node_id.isdigit() else 0, node_id

    return sorted(outputs, key=rank)

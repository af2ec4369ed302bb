"""Which node of a prompt runs next.

The nodes needed by the requested outputs run once each, sources before consumers; among the
nodes that are ready, ComfyUI 0.3.64 prefers an output node, then a node feeding an output,
then one two steps from an output, so results reach the client as early as possible. The
recorded traces pin this order.
"""

from __future__ import annotations

from collections.abc import Callable

from standin import registry
from standin.graph import Prompt, class_of, links_into


class RunPlan:
    def __init__(self, prompt: Prompt, outputs: list[str],
                 is_cached: Callable[[str], bool]) -> None:
        self._prompt = prompt
        # Node -> sources it still waits for; dict order is the order nodes were discovered.
        self._waiting: dict[str, set[str]] = {}
        # Node -> nodes consuming its outputs.
        self._consumers: dict[str, dict[str, None]] = {}
        for output in outputs:
            self._discover(output, is_cached)

    def _discover(self, start: str, is_cached: Callable[[str], bool]) -> None:
        # Depth-first with an explicit stack, as ComfyUI walks it: discovery order decides ties.
        edges: list[tuple[str, str]] = []
        stack = [start]
        while stack:
            node_id = stack.pop()
            if node_id in self._waiting:
                continue
            self._waiting[node_id] = set()
            self._consumers.setdefault(node_id, {})
            for _, source, _ in links_into(self._prompt, node_id):
                if not is_cached(source):  # a cached source's result is already there
                    stack.append(source)
                    edges.append((source, node_id))
        for source, consumer in edges:
            self._consumers[source][consumer] = None
            self._waiting[consumer].add(source)

    def done(self) -> bool:
        return not self._waiting

    def next_node(self) -> str:
        ready = [node_id for node_id, sources in self._waiting.items() if not sources]
        for distance in range(3):
            for node_id in ready:
                if self._output_within(node_id, distance):
                    return node_id
        return ready[0]

    def _output_within(self, node_id: str, steps: int) -> bool:
        if registry.is_output(class_of(self._prompt, node_id)):
            return True
        consumers = self._consumers[node_id]
        return steps > 0 and any(self._output_within(c, steps - 1) for c in consumers)

    def finished(self, node_id: str) -> None:
        del self._waiting[node_id]
        for consumer in self._consumers.pop(node_id):
            self._waiting[consumer].discard(node_id)

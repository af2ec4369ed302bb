"""The prompt queue and the history of finished prompts, owned by the event loop.

One worker takes jobs in order of their number (``front`` submissions get negative numbers and
jump ahead), so no locks are needed: every method runs on the loop. ``/queue`` and ``/history``
show a job as ComfyUI 0.3.64 does, as the list ``[number, prompt_id, prompt, extra_data,
outputs_to_execute]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
from collections.abc import Callable
from typing import Any

from standin.executor import Outcome
from standin.graph import Prompt

# ComfyUI forgets the oldest prompt beyond this many.
HISTORY_LIMIT = 10000


@dataclasses.dataclass(order=True)
class Job:
    number: float
    prompt_id: str
    prompt: Prompt = dataclasses.field(compare=False)
    extra_data: dict[str, Any] = dataclasses.field(compare=False)
    outputs: list[str] = dataclasses.field(compare=False)

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class JobQueue:
    """``changed`` is called after every change of what is pending or running (a ``status``)."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self._changed = changed
        self._pending: list[Job] = []  # a heap
        self._running: Job | None = None
        self._arrived = asyncio.Event()
        self._history: dict[str, dict[str, Any]] = {}

    # --- the queue ---

    def submit(self, job: Job) -> None:
        heapq.heappush(self._pending, job)
        self._arrived.set()
        self._changed()

    async def take(self) -> Job:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        self._running = heapq.heappop(self._pending)
        self._changed()
        return self._running

    def finish(self, job: Job, outcome: Outcome) -> None:
        self._running = None
        if len(self._history) > HISTORY_LIMIT:
            del self._history[next(iter(self._history))]
        self._history[job.prompt_id] = {
            "prompt": job.as_list(),
            "outputs": outcome.outputs,
            "status": {"status_str": "success" if outcome.success else "error",
                       "completed": outcome.success, "messages": outcome.messages},
            "meta": outcome.meta,
        }
        self._changed()

    def running(self) -> Job | None:
        return self._running

    def snapshot(self) -> dict[str, list[list[Any]]]:
        """``GET /queue``; pending jobs in heap order, as ComfyUI lists them."""
        running = [] if self._running is None else [self._running.as_list()]
        return {"queue_running": running, "queue_pending": [job.as_list() for job in self._pending]}

    def remaining(self) -> int:
        return len(self._pending) + (0 if self._running is None else 1)

    def clear(self) -> None:
        self._pending.clear()
        self._changed()

    def cancel(self, prompt_id: str) -> None:
        index = next((i for i, job in enumerate(self._pending) if job.prompt_id == prompt_id), None)
        if index is None:
            return
        # Removing from the middle breaks the heap order; ComfyUI heapifies as well, so the
        # pending list /queue shows stays in the same order as the real server's.
        del self._pending[index]
        heapq.heapify(self._pending)
        self._changed()

    # --- the history ---

    def history(self, prompt_id: str) -> dict[str, Any]:
        return {prompt_id: self._history[prompt_id]} if prompt_id in self._history else {}

    def history_page(self, max_items: int | None, offset: int) -> dict[str, Any]:
        """The newest ``max_items`` entries unless ``offset`` (from the oldest) is given."""
        ids = list(self._history)
        if offset < 0:
            offset = max(0, len(ids) - max_items) if max_items is not None else 0
        chosen = ids[offset:] if max_items is None else ids[offset:offset + max_items]
        return {prompt_id: self._history[prompt_id] for prompt_id in chosen}

    def forget(self, prompt_id: str) -> None:
        self._history.pop(prompt_id, None)

    def forget_all(self) -> None:
        self._history.clear()

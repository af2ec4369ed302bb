"""ComfyUI's failure messages turned into plain errors that say what to do next."""

from __future__ import annotations

from typing import Any

from . import profiles, protocol, workflow
from .errors import ExecutionFailedError, JobInterruptedError, OutOfMemoryError

_OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda error: out of memory")


def resolution_of(graph: dict[str, Any]) -> str | None:
    """Our resolution name (``"1024"``) of a graph built by :mod:`trellis_box.workflow`."""
    node = graph.get(workflow.GENERATE_NODE) or {}
    pipeline_type = (node.get("inputs") or {}).get("pipeline_type")
    return next((r for r, p in workflow.PIPELINE_TYPES.items() if p == pipeline_type), None)


def is_out_of_memory(msg: protocol.ExecutionError) -> bool:
    text = f"{msg.exception_type} {msg.exception_message}".lower()
    return any(marker in text for marker in _OOM_MARKERS)


def execution_failure(msg: protocol.ExecutionError, graph: dict[str, Any]) -> ExecutionFailedError:
    where = f"node {msg.node_id} ({msg.node_type})"
    first_line = msg.exception_message.strip().splitlines()[0] if msg.exception_message.strip() else ""
    facts = {"prompt_id": msg.prompt_id, "node": msg.node_id, "class_type": msg.node_type,
             "exception_type": msg.exception_type}
    if is_out_of_memory(msg):
        current = resolution_of(graph)
        lower = profiles.next_lower(current) if current else None
        fix = (f"run again with --resolution {lower} (or --auto-resolution)" if lower else
               "free GPU memory (stop other GPU containers) or lower --texture-size; "
               "512 is the lowest resolution")
        return OutOfMemoryError(
            f"the GPU ran out of memory in {where} at resolution {current or 'unknown'}",
            detail=first_line or None, fix=fix, resolution=current, lower_resolution=lower,
            **facts)
    return ExecutionFailedError(
        f"{where} failed: {msg.exception_type}",
        detail=first_line or None,
        fix="read the server log around this prompt; the traceback is in "
            f"/history/{msg.prompt_id}",
        **facts)


def interrupted(msg: protocol.ExecutionInterrupted) -> JobInterruptedError:
    return JobInterruptedError(
        f"prompt {msg.prompt_id} was interrupted in node {msg.node_id} ({msg.node_type})",
        detail="someone (or a timeout) sent POST /interrupt while it ran",
        fix="run the same command again: finished outputs are kept and skipped",
        prompt_id=msg.prompt_id, node=msg.node_id)

"""ComfyUI's failure messages turned into plain errors that say what to do next."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trellis_box.comfyui import protocol, workflow
from trellis_box.errors import (
    ComfyUnreachableError,
    ExecutionFailedError,
    JobInterruptedError,
    NoObjectFoundError,
    OutOfMemoryError,
    OutputWriteError,
    PromptLostError,
    PromptNodeError,
    PromptRejectedError,
)

_OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda error: out of memory")

#: How the pinned nodes fail on an empty cutout (read in their source): RMBG-1.4 stretches its
#: mask between its own minimum and maximum, so a picture without an object keeps a speck or
#: nothing; Trellis2PreProcessImage then takes the minimum of no pixels, or crops to 0 x 0 and
#: SaveImage (Pillow) refuses the empty cutout.
_EMPTY_CUTOUT = {workflow.PREPROCESS_NODE: "zero-size array",
                 workflow.CUTOUT_NODE: "cannot write empty image"}


def resolution_of(graph: dict[str, Any]) -> str | None:
    """Our resolution name (``"1024"``) of a graph built by :mod:`trellis_box.comfyui.workflow`."""
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
    marker = _EMPTY_CUTOUT.get(msg.node_id or "")
    if marker is not None and marker in msg.exception_message:
        return no_object(msg.prompt_id, msg.node_id or "", msg.node_type or "", first_line)
    if is_out_of_memory(msg):
        current = resolution_of(graph)
        lower, fix = _out_of_memory_fix(msg.node_type, current)
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


_FREE_GPU = "free GPU memory (stop other GPU containers)"


def _out_of_memory_fix(node_type: str | None, resolution: str | None) -> tuple[str | None, str]:
    """The lower resolution to retry at (generator only) and the fix, for the node class that
    ran out: each node's memory grows with its own parameters."""
    mention = workflow.mention
    if node_type == workflow.node_class(workflow.GENERATE_NODE):
        lower = workflow.next_lower(resolution) if resolution else None
        if lower:
            return lower, (f"run again at resolution {lower} ({mention('resolution')}), or let it "
                           f"step down by itself ({mention('auto_resolution')})")
        return None, f"{_FREE_GPU}; 512 is the lowest resolution"
    if node_type == workflow.node_class(workflow.POSTPROCESS_NODE):
        return None, (f"lower the texture size ({mention('texture_size')}) or the face count "
                      f"({mention('target_face_num')}), or use a lighter preset "
                      f"({mention('preset')} web); or {_FREE_GPU}")
    return None, _FREE_GPU


def no_object(prompt_id: str, node: str, class_type: str, cause: str, *,
              source: str | None = None) -> NoObjectFoundError:
    """Background removal found nothing in ``source`` (the input file, where known)."""
    return NoObjectFoundError(
        f"no object found in {source or 'the input image'}: background removal (RMBG-1.4) "
        "left an empty cutout",
        detail=f"so node {node} ({class_type}) failed: {cause}",
        fix="use a photo of one object that stands out from a plain background and fills a good "
            "part of the frame, in focus; crop away other things. A blank or plain picture has "
            "nothing to turn into a mesh",
        prompt_id=prompt_id, node=node, class_type=class_type, cause=cause, input=source)


def interrupted(msg: protocol.ExecutionInterrupted) -> JobInterruptedError:
    return JobInterruptedError(
        f"prompt {msg.prompt_id} was interrupted in node {msg.node_id} ({msg.node_type})",
        detail="someone (or a timeout) sent POST /interrupt while it ran",
        fix="run the same command again: finished outputs are kept and skipped",
        prompt_id=msg.prompt_id, node=msg.node_id)


def lost(prompt_id: str, base_url: str) -> PromptLostError:
    return PromptLostError(
        f"prompt {prompt_id} is gone from ComfyUI at {base_url}",
        detail="it is neither queued nor running nor in /history: the server restarted "
               "or its history was cleared",
        fix="queue it again (trellis-box generate does this once by itself)",
        prompt_id=prompt_id)


def rejected(error: dict[str, Any], node_errors: dict[str, Any], graph: dict[str, Any], *,
              prompt_id: str | None = None) -> PromptRejectedError:
    """Turn ComfyUI's ``error`` / ``node_errors`` into one typed error naming node and input."""
    for node_id, entry in sorted(node_errors.items()):
        for err in entry.get("errors") or [{}]:
            input_name = (err.get("extra_info") or {}).get("input_name")
            class_type = entry.get("class_type") or graph.get(node_id, {}).get("class_type")
            where = f"prompt.{node_id}.inputs.{input_name}" if input_name else f"prompt.{node_id}"
            return PromptNodeError(
                f"ComfyUI rejected {where} ({class_type}): {err.get('message', 'invalid')}",
                detail=err.get("details") or None,
                fix="correct that input; if the graph came from trellis-box, the server's nodes "
                    "differ from the pinned ones (compare GET /object_info with the pins)",
                note="ComfyUI answered 200 and would have run the rest of the graph without "
                     "a GLB" if prompt_id else None,
                node=node_id, class_type=class_type, input=input_name, prompt_id=prompt_id)
    return PromptRejectedError(
        f"ComfyUI rejected the prompt: {error.get('message') or error.get('type') or 'invalid'}",
        detail=error.get("details") or None,
        fix="a node class is missing on the server: check its custom nodes loaded "
            "(the server log lists IMPORT FAILED)" if error.get("type") == "invalid_prompt"
        else "check the graph against GET /object_info",
        error_type=error.get("type"))


def given_up(base_url: str, seconds: float, since: float, *,
             prompt_id: str | None = None) -> ComfyUnreachableError:
    """The end of an outage: every prompt and every wait of it fails with this, at one moment."""
    # Unreachable, not lost: queueing the prompt again cannot help while the server is away.
    down_since = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    what = f"prompt {prompt_id} is given up" if prompt_id else "nothing more is sent to it"
    return ComfyUnreachableError(
        f"ComfyUI at {base_url} stayed unreachable for {seconds:g} s; {what}",
        detail=f"unreachable since {down_since}",
        fix="restart the server, then run the same command again: finished outputs are kept "
            "and skipped",
        prompt_id=prompt_id, unreachable_since=down_since)


def write_failed(path: Path, exc: OSError) -> OutputWriteError:
    return OutputWriteError(
        f"cannot write {path}",
        detail=f"{exc.strerror or exc}",
        fix="free disk space or make the output directory writable, then run the same command "
            "again: finished outputs are kept and skipped",
        path=str(path))

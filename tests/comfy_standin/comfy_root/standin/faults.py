"""The failure chosen with ``--standin-fail-*``, raised as the node itself would raise it."""

from __future__ import annotations

from typing import Any

import comfy.model_management as mm

from standin import options

# A real CUDA allocation failure's text (from a 24 GB card), used unless a message is given.
CUDA_OOM_TEXT = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                 "23.55 GiB of which 1.21 GiB is free. Of the allocated memory 20.98 GiB is "
                 "allocated by PyTorch, and 1.02 GiB is reserved by PyTorch but unallocated.")


def raise_if_chosen(class_type: str, arguments: dict[str, Any]) -> None:
    chosen = options.current
    if not chosen.should_fail(class_type, arguments):
        return
    if chosen.fail_kind == "oom":
        raise mm.OutOfMemoryError(chosen.fail_message or CUDA_OOM_TEXT)
    raise RuntimeError(chosen.fail_message or f"{class_type} failed (stand-in fault)")

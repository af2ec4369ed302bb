"""Interrupt flag and the out-of-memory exception, as ``comfy.model_management`` exposes them."""

from __future__ import annotations

import threading

_interrupt_lock = threading.RLock()
_interrupt_processing = False


class InterruptProcessingException(Exception):
    pass


class OutOfMemoryError(RuntimeError):
    """What torch raises on a CUDA allocation failure; reported as ``torch.OutOfMemoryError``."""


# ComfyUI reports exception types as module + qualified name; the real class lives in torch.
OutOfMemoryError.__module__ = "torch"
OOM_EXCEPTION = OutOfMemoryError


def interrupt_current_processing(value: bool = True) -> None:
    global _interrupt_processing
    with _interrupt_lock:
        _interrupt_processing = value


def processing_interrupted() -> bool:
    with _interrupt_lock:
        return _interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    global _interrupt_processing
    with _interrupt_lock:
        if _interrupt_processing:
            _interrupt_processing = False
            raise InterruptProcessingException()


def unload_all_models() -> None:
    """Nothing is loaded in the stand-in; kept because nodes and the OOM path call it."""


def soft_empty_cache() -> None:
    """See :func:`unload_all_models`."""

"""A parameter the shipped table lacks: tests add this one row to show that a new parameter is a
one-place change."""

from __future__ import annotations

import pytest

from trellis_box.comfyui import workflow

FLOATERS = workflow.Parameter("remove_floaters", workflow.POSTPROCESS_NODE, "remove_floaters",
                              "Drop small pieces apart from the object.")


def add_floaters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Extend the table by that row; nothing else changes."""
    monkeypatch.setattr(workflow, "PARAMETERS", (*workflow.PARAMETERS, FLOATERS))

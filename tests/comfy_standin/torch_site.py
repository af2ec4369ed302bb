"""A torch stand-in for the node pack's ``/trellis-box/gpu`` routes (no GPU and no torch here).

``torch_site(tmp_path, installed=...)`` writes a ``torch`` package into a site directory and
returns the environment that puts it on the stand-in's path: either one that raises ImportError
(torch absent, whatever the test machine has), or one whose ``torch.cuda`` keeps its counters in
a dict, resetting the peaks the way torch does (to the current figures), as measured on an H200
with torch 2.11 (the reset works from another thread than the one that allocated).
"""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30
ALLOCATED, RESERVED, PEAK_ALLOCATED, PEAK_RESERVED = 3 * GIB, 4 * GIB, 19 * GIB, 20 * GIB

_FAKE_TORCH = f'''
import types
__version__ = "2.7.0+cu126"
version = types.SimpleNamespace(cuda="12.6")
_mem = {{"allocated": {ALLOCATED}, "reserved": {RESERVED}, "max_allocated": {PEAK_ALLOCATED},
        "max_reserved": {PEAK_RESERVED}}}
def _reset(device):
    assert device == 0
    _mem["max_allocated"], _mem["max_reserved"] = _mem["allocated"], _mem["reserved"]
cuda = types.SimpleNamespace(
    is_available=lambda: AVAILABLE,
    current_device=lambda: 0,
    get_device_name=lambda d: "NVIDIA H200",
    mem_get_info=lambda d: (120 << 30, 140 << 30),
    memory_allocated=lambda d: _mem["allocated"],
    memory_reserved=lambda d: _mem["reserved"],
    max_memory_allocated=lambda d: _mem["max_allocated"],
    max_memory_reserved=lambda d: _mem["max_reserved"],
    reset_peak_memory_stats=_reset,
)
'''


def torch_site(base: Path, *, installed: bool, cuda: bool = True) -> dict[str, str]:
    site = base / "torch-site"
    (site / "torch").mkdir(parents=True)
    body = (_FAKE_TORCH.replace("AVAILABLE", str(cuda)) if installed
            else "raise ImportError('No module named torch (hidden by the test)')\n")
    (site / "torch" / "__init__.py").write_text(body)
    return {"PYTHONPATH": str(site)}

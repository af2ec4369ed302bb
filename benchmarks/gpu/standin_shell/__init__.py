"""GPU harness only, stand-in weights only: an object-like sparse structure instead of noise.

With random weights TRELLIS.2's sparse-structure decoder marks about half of its 64^3 grid as
occupied; a real object occupies a thin shell of some 15 k voxels, and every later stage's cost
follows that count. This ComfyUI custom node (the harness installs it only beside stand-in weights,
never in the image) replaces the decoder's output with a sphere shell of that size, so that timings
and memory measured on stand-in weights follow a real object's token counts. It patches the class
ComfyUI-Trellis2 loaded, at the first prompt (custom nodes load in no fixed order).
"""

import os
import sys

import folder_paths
import server
import torch

MARKER = os.path.join(folder_paths.models_dir, "STAND-IN-WEIGHTS")
# Radius and half-thickness in voxels of a 64^3 grid: 4*pi*22.4^2 * 2.4 ~ 15 k voxels.
RADIUS, HALF_THICKNESS = 22.4 / 64, 1.2 / 64
NODE_CLASS_MAPPINGS: dict = {}


def shell_like(decoded: torch.Tensor) -> torch.Tensor:
    """Logits of the same shape (``[B, 1, R, R, R]``): positive on the shell, negative elsewhere."""
    r = decoded.shape[-1]
    axis = (torch.arange(r, device=decoded.device, dtype=torch.float32) - (r - 1) / 2) / r
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    on_shell = ((x * x + y * y + z * z).sqrt() - RADIUS).abs() < HALF_THICKNESS
    logits = torch.where(on_shell, 1.0, -1.0).to(decoded.dtype)
    return logits.expand_as(decoded).contiguous()


def patch() -> int:
    patched = 0
    for name, module in list(sys.modules.items()):
        # ``trellis2.models`` imports its model modules lazily, at a job's first model load (after
        # this prompt hook has run): asking the package for the class loads the decoder's module now.
        # Looking only for an already-loaded ``sparse_structure_vae`` missed it on every first job.
        cls = getattr(module, "SparseStructureDecoder", None) if name.endswith("trellis2.models") else None
        if cls is None or getattr(cls, "_trellis_box_shell", False):
            continue
        original = cls.forward

        def forward(self, x, _original=original):
            return shell_like(_original(self, x))

        cls.forward = forward
        cls._trellis_box_shell = True
        patched += 1
    return patched


def on_prompt(json_data):
    if patch():
        print("[trellis_box_standin_shell] stand-in weights: sparse structure replaced by a shell", flush=True)
    return json_data


if os.path.exists(MARKER):
    server.PromptServer.instance.add_on_prompt_handler(on_prompt)

"""The warm-up job: the default workflow at 512 on a bundled photo.

serve runs it before it reports ready, so the models are loaded when the first request comes;
doctor runs it against a running server as a test job.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from trellis_box.comfyui.client import ComfyClient, JobResult
from trellis_box.comfyui.workflow import GLB_OUTPUT_NODE, WorkflowOptions, build
from trellis_box.errors import WarmupFailedError

WARMUP_RESOLUTION = "512"
#: Output subfolder of warm-up and doctor jobs, removed after a warm-up: not the user's files.
WARMUP_SUBFOLDER = "trellis-box-warmup"


def warmup_image() -> Path:
    """The bundled warm-up photo: an object on a plain background."""
    return Path(str(resources.files("trellis_box").joinpath("data/warmup.png")))


def warmup_options(seed: int = 0, *, low_vram: bool = True,
                   folder: str = WARMUP_SUBFOLDER) -> WorkflowOptions:
    """The default workflow at 512 with the GPU profile's ``low_vram``, as ``generate`` sends it.
    Every other input is the default's, the model loaders' included, so the models the warm-up
    loads are the ones the first default request finds."""
    return WorkflowOptions(resolution=WARMUP_RESOLUTION, seed=seed, low_vram=low_vram,
                           glb_prefix=f"{folder}/warmup", cutout_prefix=f"{folder}/cutout")


async def run_test_job(client: ComfyClient, *, timeout: float, seed: int = 0,
                       low_vram: bool = True, folder: str = WARMUP_SUBFOLDER) -> JobResult:
    """Upload the bundled image and run the warm-up workflow; the client's errors pass through.

    A job that ends without a GLB in ``/history`` is a failure too: that is what users ask for.
    ComfyUI answers a prompt it has run before from its cache without running a node, so a
    check against a server that may have run it already needs a fresh ``seed``. ``folder``:
    the output subfolder (serve gives each worker its own).
    """
    name = await client.http.upload_image(warmup_image())
    result = await client.run(build(warmup_options(seed, low_vram=low_vram, folder=folder), name), timeout=timeout)
    if not result.files(GLB_OUTPUT_NODE, "3d"):
        raise WarmupFailedError(
            f"test job {result.prompt_id} finished without a GLB",
            detail=f"Node {GLB_OUTPUT_NODE} (TrellisBoxGLBOutput) reported no 3d output in /history.",
            fix="check that the trellis_box_nodes pack is installed in custom_nodes/ and loaded",
            prompt_id=result.prompt_id,
        )
    return result

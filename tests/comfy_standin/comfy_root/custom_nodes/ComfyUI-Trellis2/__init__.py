"""Stand-in for visualbruno/ComfyUI-Trellis2 (pinned ded89500): recorded schemas, CPU behaviour.

What clients can observe is kept: the preprocessing node needs an RGBA image and fails on RGB
with the real IndexError (upstream issue #190); the generator reports progress steps and takes
the configured time; post-processing takes ``post_seconds`` and returns a mesh object; the export node writes
``output/3D/Trellis2_NNNNN_.glb`` and returns the path relative to the output folder with no
UI output, so the GLB never reaches ``/history`` on its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import folder_paths
import nodes
from comfy.utils import ProgressBar
from PIL import Image, ImageOps, ImageSequence
from standin import options
from standin.schema import display_name, recorded, recorded_object_info

from .standin_mesh import TexturedBox

PACK = "custom_nodes.ComfyUI-Trellis2"


class StandinPipeline:
    """The loaded TRELLIS.2 pipeline: only its settings."""

    def __init__(self, modelname: str, backend: str, device: str, low_vram: bool) -> None:
        self.modelname, self.backend, self.device, self.low_vram = modelname, backend, device, low_vram


class MeshWithVoxel:
    """The generator's output: what post-processing needs to build the textured mesh."""

    def __init__(self, seed: int, pipeline_type: str, image_size: tuple[int, int]) -> None:
        self.seed, self.pipeline_type, self.image_size = seed, pipeline_type, image_size


@recorded("Trellis2LoadModel")
class StandinLoadModel:
    FUNCTION = "loadmodel"

    def loadmodel(self, modelname: str, backend: str, device: str, low_vram: bool,
                  keep_models_loaded: bool) -> tuple[StandinPipeline]:
        return (StandinPipeline(modelname, backend, device, low_vram),)


@recorded("Trellis2LoadImageWithTransparency")
class StandinLoadImageWithAlpha:
    """LoadImage plus the frames as stored (``image_with_alpha`` keeps RGBA)."""

    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # Lists the input folder like LoadImage, but without VALIDATE_INPUTS: only files at
        # the top of the input folder pass validation.
        return nodes.LoadImage.INPUT_TYPES()

    def load_image(self, image: str) -> tuple[list[Image.Image], list[Image.Image], list[Image.Image]]:
        images, masks = nodes.LoadImage().load_image(image)
        with Image.open(folder_paths.get_annotated_filepath(image)) as opened:
            originals = [ImageOps.exif_transpose(frame).copy()
                         for frame in ImageSequence.Iterator(opened)]
        return images, masks, originals


@recorded("Trellis2PreProcessImage")
class StandinPreProcess:
    FUNCTION = "process"

    def process(self, image: list[Image.Image]) -> tuple[list[Image.Image]]:
        return ([self.preprocess_image(image[0])],)

    def preprocess_image(self, source: Image.Image) -> Image.Image:
        if source.mode != "RGBA":
            # Upstream indexes channel 3 of the numpy array; an RGB image has only 3 channels.
            raise IndexError(f"index 3 is out of bounds for axis 2 with size {len(source.getbands())}")
        scale = min(1, 2048 / max(source.size))
        if scale < 1:
            source = source.resize((int(source.width * scale), int(source.height * scale)),
                                   Image.Resampling.LANCZOS)
        opaque = source.getchannel("A").point(lambda a: 255 if a > 0.8 * 255 else 0)
        bbox = opaque.getbbox()
        if bbox is None:
            raise ValueError("zero-size array to reduction operation minimum which has no identity")
        left, top, right, bottom = bbox[0], bbox[1], bbox[2] - 1, bbox[3] - 1
        center = ((left + right) / 2, (top + bottom) / 2)
        size = max(right - left, bottom - top)
        crop = (center[0] - size // 2, center[1] - size // 2,
                center[0] + size // 2, center[1] + size // 2)
        cropped = source.crop(tuple(int(v) for v in crop))
        # Premultiplied alpha onto black, as upstream does: RGB out.
        black = Image.new("RGBA", cropped.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, cropped).convert("RGB")


@recorded("Trellis2MeshWithVoxelGenerator")
class StandinGenerator:
    """Progress steps as recorded (36 by default, ``progress_steps``). The pinned upstream node
    itself counts 5 stages (4 without texture), so clients must read ``max`` from the messages."""

    FUNCTION = "process"

    def process(self, pipeline: StandinPipeline, image: list[Image.Image], seed: int,
                pipeline_type: str, sparse_structure_steps: int, shape_steps: int,
                texture_steps: int, max_num_tokens: int, max_views: int,
                sparse_structure_resolution: int, generate_texture_slat: bool,
                use_tiled_decoder: bool) -> tuple[MeshWithVoxel]:
        timing = options.current
        steps = max(1, timing.progress_steps)
        pbar = ProgressBar(steps)
        for _ in range(steps):
            time.sleep(timing.exec_seconds / steps)
            pbar.update(1)
        return (MeshWithVoxel(seed, pipeline_type, image[0].size),)


@recorded("Trellis2PostProcessAndUnWrapAndRasterizer")
class StandinPostProcess:
    FUNCTION = "process"

    def process(self, mesh: MeshWithVoxel, texture_size: int, **settings: Any
                ) -> tuple[TexturedBox, list[Image.Image], list[Image.Image]]:
        if options.current.post_seconds > 0:
            time.sleep(options.current.post_seconds)
        box = TexturedBox(seed=mesh.seed, texture_side=min(texture_size, 64),
                          target_bytes=options.current.glb_bytes,
                          metadata={"pipeline_type": mesh.pipeline_type, **settings})
        side = box.texture_side_for_target()
        base_color = Image.new("RGB", (side, side), (128, 128, 128))
        metallic_roughness = Image.new("RGB", (side, side), (0, 255, 0))
        return (box, [base_color], [metallic_roughness])


@recorded("Trellis2ExportMesh")
class StandinExportMesh:
    FUNCTION = "process"

    def process(self, trimesh: TexturedBox, filename_prefix: str, file_format: str,
                save_file: bool = True) -> tuple[str]:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory())
        name = f"{filename}_{counter:05}_.{file_format}" if save_file else f"hy3dtemp_.{file_format}"
        output_path = Path(folder, name)
        output_path.parent.mkdir(exist_ok=True)
        trimesh.export(output_path, file_type=file_format, include_normals=True)
        return (str(Path(subfolder) / name),)


def _not_simulated(name: str) -> type:
    """Recorded classes the TRELLIS.2 image-to-GLB workflow does not use: listed, not run."""

    def process(self: Any, **inputs: Any) -> tuple[Any, ...]:
        raise NotImplementedError(f"the ComfyUI stand-in does not simulate {name}")

    attributes = {"FUNCTION": "process", "process": process}
    return recorded(name)(type(f"NotSimulated_{name}", (), attributes))


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "Trellis2LoadModel": StandinLoadModel,
    "Trellis2LoadImageWithTransparency": StandinLoadImageWithAlpha,
    "Trellis2PreProcessImage": StandinPreProcess,
    "Trellis2MeshWithVoxelGenerator": StandinGenerator,
    "Trellis2PostProcessAndUnWrapAndRasterizer": StandinPostProcess,
    "Trellis2ExportMesh": StandinExportMesh,
}
for _name, _info in recorded_object_info().items():
    if _info["python_module"] == PACK and _name not in NODE_CLASS_MAPPINGS:
        NODE_CLASS_MAPPINGS[_name] = _not_simulated(_name)
NODE_DISPLAY_NAME_MAPPINGS = {name: display_name(name) for name in NODE_CLASS_MAPPINGS}

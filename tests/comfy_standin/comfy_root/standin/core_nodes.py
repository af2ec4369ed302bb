"""The core node types the recorded workflows use, working on Pillow images.

Images travel as lists of Pillow images (a batch), masks as lists of mode ``L`` images; the
stand-in has no numpy or torch. Schemas come from the recording (``standin.schema``); only
behaviour is written here. ``nodes`` re-exports these classes under ComfyUI's names.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
from typing import Any, ClassVar

import folder_paths
from comfy.cli_args import args
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from standin import registry
from standin.schema import display_name, recorded

Batch = list[Image.Image]


class _PngWriter:
    """Writes a batch as ``<prefix>_NNNNN_.png`` and reports it as UI ``images``.

    The attributes are the ones ComfyUI's SaveImage has, for packs that subclass these nodes.
    """

    FUNCTION = "save_images"
    type = "output"
    prefix_append = ""
    compress_level = 4

    def __init__(self) -> None:
        self.output_dir = self._folder()

    def _folder(self) -> str:
        return folder_paths.get_output_directory()

    def save_images(self, images: Batch, filename_prefix: str = "ComfyUI", prompt: Any = None,
                    extra_pnginfo: Any = None) -> dict[str, Any]:
        folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix + self.prefix_append, self.output_dir, images[0].width,
            images[0].height)
        saved = []
        for index, image in enumerate(images):
            name = f"{stem.replace('%batch_num%', str(index))}_{counter + index:05}_.png"
            image.save(os.path.join(folder, name), pnginfo=self._metadata(prompt, extra_pnginfo),
                       compress_level=self.compress_level)
            saved.append({"filename": name, "subfolder": subfolder, "type": self.type})
        return {"ui": {"images": saved}}

    @staticmethod
    def _metadata(prompt: Any, extra_pnginfo: Any) -> PngInfo | None:
        """The workflow travels inside the PNG unless ``--disable-metadata``."""
        if args.disable_metadata:
            return None
        info = PngInfo()
        if prompt is not None:
            info.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            info.add_text(key, json.dumps(value))
        return info


@recorded("SaveImage")
class SaveImage(_PngWriter):
    pass


@recorded("PreviewImage")
class PreviewImage(_PngWriter):
    """Into the temp folder, fast compression, a random suffix so previews never collide."""

    type = "temp"
    compress_level = 1

    def _folder(self) -> str:
        return folder_paths.get_temp_directory()

    def __init__(self) -> None:
        super().__init__()
        self.prefix_append = "_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))


def _image_files(folder: str) -> list[str]:
    names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
    return sorted(folder_paths.filter_files_content_types(names, ["image"]))


def _mask_of(frame: Image.Image) -> Image.Image:
    """ComfyUI's mask is 1 where the image is transparent; 64x64 zeros without alpha."""
    if "A" in frame.getbands():
        return ImageOps.invert(frame.getchannel("A"))
    if frame.mode == "P" and "transparency" in frame.info:
        return ImageOps.invert(frame.convert("RGBA").getchannel("A"))
    return Image.new("L", (64, 64), 0)


@recorded("LoadImage")
class LoadImage:
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # The choices are the input folder's images at the moment of asking (upload targets).
        choices = _image_files(folder_paths.get_input_directory())
        return {"required": {"image": (choices, {"image_upload": True})}}

    def load_image(self, image: str) -> tuple[Batch, Batch]:
        source = Image.open(folder_paths.get_annotated_filepath(image))
        images: Batch = []
        masks: Batch = []
        for raw in ImageSequence.Iterator(source):
            frame = ImageOps.exif_transpose(raw)
            if frame.mode == "I":  # 16-bit greyscale: scale to 8 bits before RGB
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if images and rgb.size != images[0].size:
                continue  # a batch has one size; odd-sized frames are dropped
            images.append(rgb)
            masks.append(_mask_of(frame))
        if source.format == "MPO":  # stereo photos: the second frame is not part of the image
            return images[:1], masks[:1]
        return images, masks

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        # The file's content, so replacing an uploaded image under its name reruns the prompt.
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        if folder_paths.exists_annotated_filepath(image):
            return True
        return f"Invalid image file: {image}"  # clients show this text


@recorded("ImageScale")
class ImageScale:
    FUNCTION = "upscale"
    _RESAMPLE: ClassVar[dict[str, Image.Resampling]] = {
        "nearest-exact": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
        "area": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS}

    def upscale(self, image: Batch, upscale_method: str, width: int, height: int,
                crop: str) -> tuple[Batch]:
        scaled = []
        for item in image:
            w = width or max(1, round(item.width * height / item.height))
            h = height or max(1, round(item.height * width / item.width))
            if crop == "center":
                item = ImageOps.fit(item, (w, h), method=self._RESAMPLE[upscale_method])
            else:
                item = item.resize((w, h), self._RESAMPLE[upscale_method])
            scaled.append(item)
        return (scaled,)


@recorded("SaveGLB")
class SaveGLB:
    FUNCTION = "save"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_hunyuan3d"

    def save(self, mesh: Any, filename_prefix: str, prompt: Any = None,
             extra_pnginfo: Any = None) -> dict[str, Any]:
        folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory())
        name = f"{stem}_{counter:05}_.glb"
        mesh.export(os.path.join(folder, name), file_type="glb")
        return {"ui": {"3d": [{"filename": name, "subfolder": subfolder, "type": "output"}]}}


@recorded("Preview3D")
class Preview3D:
    FUNCTION = "process"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_load_3d"

    def process(self, model_file: str, camera_info: Any = None) -> dict[str, Any]:
        return {"ui": {"result": [model_file, camera_info]}}


CORE = {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage,
        "ImageScale": ImageScale, "SaveGLB": SaveGLB, "Preview3D": Preview3D}


def register() -> None:
    registry.NODE_CLASSES.update(CORE)
    registry.DISPLAY_NAMES.update({name: display_name(name) for name in CORE})

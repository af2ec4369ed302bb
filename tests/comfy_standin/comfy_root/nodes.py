"""Core nodes and the custom node loader, as ComfyUI's ``nodes.py`` provides them.

Images travel as lists of Pillow images (a batch), masks as lists of mode ``L`` images; the
stand-in has no numpy or torch. Schemas come from the recording (``standin_schema``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import random
import sys
import time
import traceback
from typing import Any, ClassVar

from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

import comfy.model_management
import folder_paths
import standin_schema
from comfy.cli_args import args


def interrupt_processing(value: bool = True) -> None:
    comfy.model_management.interrupt_current_processing(value)


def before_node_execution() -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()


@standin_schema.recorded("SaveImage")
class SaveImage:
    FUNCTION = "save_images"

    def __init__(self) -> None:
        self.output_dir = folder_paths.get_output_directory()
        self.type = "output"
        self.prefix_append = ""
        self.compress_level = 4

    def save_images(self, images: list[Image.Image], filename_prefix: str = "ComfyUI",
                    prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        filename_prefix += self.prefix_append
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, self.output_dir, images[0].width, images[0].height)
        results = []
        for batch_number, image in enumerate(images):
            metadata = None
            if not args.disable_metadata:
                metadata = PngInfo()
                if prompt is not None:
                    metadata.add_text("prompt", json.dumps(prompt))
                for key, value in (extra_pnginfo or {}).items():
                    metadata.add_text(key, json.dumps(value))
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            image.save(os.path.join(folder, name), pnginfo=metadata,
                       compress_level=self.compress_level)
            results.append({"filename": name, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


@standin_schema.recorded("PreviewImage")
class PreviewImage(SaveImage):

    def __init__(self) -> None:
        self.output_dir = folder_paths.get_temp_directory()
        self.type = "temp"
        self.prefix_append = "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz")
                                                for _ in range(5))
        self.compress_level = 1


@standin_schema.recorded("LoadImage")
class LoadImage:
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        input_dir = folder_paths.get_input_directory()
        files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
        files = folder_paths.filter_files_content_types(files, ["image"])
        return {"required": {"image": (sorted(files), {"image_upload": True})}}

    def load_image(self, image: str) -> tuple[list[Image.Image], list[Image.Image]]:
        path = folder_paths.get_annotated_filepath(image)
        opened = Image.open(path)
        images: list[Image.Image] = []
        masks: list[Image.Image] = []
        for frame in ImageSequence.Iterator(opened):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if images and rgb.size != images[0].size:
                continue
            if "A" in frame.getbands():
                mask = ImageOps.invert(frame.getchannel("A"))
            elif frame.mode == "P" and "transparency" in frame.info:
                mask = ImageOps.invert(frame.convert("RGBA").getchannel("A"))
            else:
                mask = Image.new("L", (64, 64), 0)
            images.append(rgb)
            masks.append(mask)
        if opened.format == "MPO":
            images, masks = images[:1], masks[:1]
        return images, masks

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).digest().hex()

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        if not folder_paths.exists_annotated_filepath(image):
            return f"Invalid image file: {image}"
        return True


@standin_schema.recorded("ImageScale")
class ImageScale:
    FUNCTION = "upscale"
    _RESAMPLE: ClassVar[dict[str, Image.Resampling]] = {
        "nearest-exact": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
        "area": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS}

    def upscale(self, image: list[Image.Image], upscale_method: str, width: int, height: int,
                crop: str) -> tuple[list[Image.Image]]:
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


@standin_schema.recorded("SaveGLB")
class SaveGLB:
    FUNCTION = "save"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_hunyuan3d"

    def save(self, mesh: Any, filename_prefix: str, prompt: Any = None,
             extra_pnginfo: Any = None) -> dict[str, Any]:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory())
        name = f"{filename}_{counter:05}_.glb"
        mesh.export(os.path.join(folder, name), file_type="glb")
        return {"ui": {"3d": [{"filename": name, "subfolder": subfolder, "type": "output"}]}}


@standin_schema.recorded("Preview3D")
class Preview3D:
    FUNCTION = "process"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_load_3d"

    def process(self, model_file: str, camera_info: Any = None) -> dict[str, Any]:
        return {"ui": {"result": [model_file, camera_info]}}


NODE_CLASS_MAPPINGS: dict[str, Any] = {  # node classes are duck-typed, as in ComfyUI
    "LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage,
    "ImageScale": ImageScale, "SaveGLB": SaveGLB, "Preview3D": Preview3D,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    name: standin_schema.display_name(name) for name in NODE_CLASS_MAPPINGS
}
LOADED_MODULE_DIRS: dict[str, str] = {}


def load_custom_node(module_path: str, ignore: set[str], module_parent: str = "custom_nodes") -> bool:
    """Import one custom node module or package and register its classes, like ComfyUI."""
    module_name = os.path.basename(module_path)
    if os.path.isfile(module_path):
        module_name = os.path.splitext(module_name)[0]
        sys_module_name = os.path.splitext(module_path)[0]
        init_file, module_dir = module_path, os.path.dirname(module_path)
    else:
        sys_module_name = module_path.replace(".", "_x_")
        init_file, module_dir = os.path.join(module_path, "__init__.py"), module_path
    try:
        spec = importlib.util.spec_from_file_location(sys_module_name, init_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys_module_name] = module
        spec.loader.exec_module(module)
        LOADED_MODULE_DIRS[module_name] = os.path.abspath(module_dir)
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if mappings is None:
            logging.warning(f"Skip {module_path} module for custom nodes due to the lack of "
                            "NODE_CLASS_MAPPINGS or NODES_LIST (need one).")
            return False
        for name, node_cls in mappings.items():
            if name not in ignore:
                NODE_CLASS_MAPPINGS[name] = node_cls
                node_cls.RELATIVE_PYTHON_MODULE = f"{module_parent}.{module_name}"
        NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
        return True
    except Exception as e:
        logging.warning(traceback.format_exc())
        logging.warning(f"Cannot import {module_path} module for custom nodes: {e}")
        return False


def init_extra_nodes(init_custom_nodes: bool = True) -> None:
    base_node_names = set(NODE_CLASS_MAPPINGS)
    import_times = []
    for custom_node_path in folder_paths.get_folder_paths("custom_nodes"):
        if not os.path.isdir(custom_node_path):
            continue
        for possible_module in sorted(os.listdir(os.path.realpath(custom_node_path))):
            module_path = os.path.join(custom_node_path, possible_module)
            if possible_module == "__pycache__" or module_path.endswith(".disabled"):
                continue
            if os.path.isfile(module_path) and os.path.splitext(module_path)[1] != ".py":
                continue
            if not init_custom_nodes and possible_module not in args.whitelist_custom_nodes:
                logging.info(f"Skipping {possible_module} due to disable_all_custom_nodes and "
                             "whitelist_custom_nodes")
                continue
            started = time.perf_counter()
            success = load_custom_node(module_path, base_node_names)
            import_times.append((time.perf_counter() - started, module_path, success))
    if import_times:
        logging.info("\nImport times for custom nodes:")
        for seconds, path, success in sorted(import_times):
            logging.info("{:6.1f} seconds{}: {}".format(seconds, "" if success else " (IMPORT FAILED)", path))
        logging.info("")

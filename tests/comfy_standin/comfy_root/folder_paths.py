"""``folder_paths``: where the server keeps its files, under the names custom nodes call.

The root is ``--base-directory`` or this file's folder; ``standin.app`` applies
``--output-directory`` and the other folder flags through the setters at start-up.
"""

from __future__ import annotations

import mimetypes
import os
import time

from comfy.cli_args import args

base_path = os.path.abspath(args.base_directory or os.path.dirname(os.path.realpath(__file__)))
models_dir = os.path.join(base_path, "models")
supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
# Kind of model or extension -> (folders searched in order, file extensions that count).
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {
    "checkpoints": ([os.path.join(models_dir, "checkpoints")], supported_pt_extensions),
    "custom_nodes": ([os.path.join(base_path, "custom_nodes")], set()),
}

_folders = {kind: os.path.join(base_path, kind) for kind in ("output", "input", "temp", "user")}
# The suffix of an annotated name ("cutout.png [output]") -> its folder kind.
_ANNOTATIONS = {"[output]": "output", "[input]": "input", "[temp]": "temp"}


def set_output_directory(path: str) -> None:
    _folders["output"] = path


def set_input_directory(path: str) -> None:
    _folders["input"] = path


def set_temp_directory(path: str) -> None:
    _folders["temp"] = path


def set_user_directory(path: str) -> None:
    _folders["user"] = path


def get_output_directory() -> str:
    return _folders["output"]


def get_input_directory() -> str:
    return _folders["input"]


def get_temp_directory() -> str:
    return _folders["temp"]


def get_user_directory() -> str:
    return _folders["user"]


def get_directory_by_type(type_name: str) -> str | None:
    """``output``, ``input`` or ``temp`` (the ``type`` of a file reference); else None."""
    return _folders.get(type_name) if type_name != "user" else None


def filter_files_content_types(files: list[str], content_types: list[str]) -> list[str]:
    """Keep files whose MIME type's major part is one of ``content_types`` (e.g. ``image``)."""
    def major(name: str) -> str:
        return (mimetypes.guess_type(name, strict=False)[0] or "").split("/")[0]

    return [name for name in files if major(name) in content_types]


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """Split ``"x.png [output]"`` into ``("x.png", <output folder>)``; plain names get None."""
    for suffix, kind in _ANNOTATIONS.items():
        if name.endswith(suffix):
            # The character before the suffix goes too, whatever it is, as in ComfyUI.
            return name[:-len(suffix) - 1], _folders[kind]
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    plain, folder = annotated_filepath(name)
    return os.path.join(folder or default_dir or _folders["input"], plain)


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def add_model_folder_path(folder_name: str, full_folder_path: str,
                          is_default: bool = False) -> None:
    """Register a folder for a kind of model; ``is_default`` puts it first in the search."""
    folders, _ = folder_names_and_paths.setdefault(folder_name, ([], set()))
    if full_folder_path in folders:
        folders.remove(full_folder_path)
    folders.insert(0 if is_default else len(folders), full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[folder_name][0])


def _expand_placeholders(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    values = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02}",
              "day": f"{now.tm_mday:02}", "hour": f"{now.tm_hour:02}",
              "minute": f"{now.tm_min:02}", "second": f"{now.tm_sec:02}"}
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0,
                        image_height: int = 0) -> tuple[str, str, int, str, str]:
    """(folder, file stem, next counter, subfolder, prefix) for a new ``<stem>_NNNNN_`` file.

    The counter continues after the highest one already in the folder, as in ComfyUI, so files
    from earlier runs are never overwritten.
    """
    filename_prefix = _expand_placeholders(filename_prefix, image_width, image_height)
    subfolder, stem = os.path.split(os.path.normpath(filename_prefix))
    folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(folder))) != output_dir:
        # The first line is ComfyUI's; clients see it in execution_error.
        raise Exception("**** ERROR: Saving image outside the output folder is not allowed."
                        f"\n folder: {os.path.abspath(folder)}\n output folder: {output_dir}")
    os.makedirs(folder, exist_ok=True)
    used = [0]
    for name in os.listdir(folder):
        number = name[len(stem) + 1:].split("_")[0] if name.startswith(stem + "_") else ""
        if number.isdigit():
            used.append(int(number))
    return folder, stem, max(used) + 1, subfolder, filename_prefix

"""Where ComfyUI keeps its files: ``folder_paths`` as custom nodes use it (0.3.64 semantics).

The root is ``--base-directory`` or this file's directory; ``--output-directory`` and
``--input-directory`` override their parts (``main.py`` applies them).
"""

from __future__ import annotations

import mimetypes
import os
import time

from comfy.cli_args import args

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

if args.base_directory:
    base_path = os.path.abspath(args.base_directory)
else:
    base_path = os.path.dirname(os.path.realpath(__file__))

models_dir = os.path.join(base_path, "models")
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {
    "checkpoints": ([os.path.join(models_dir, "checkpoints")], supported_pt_extensions),
    "custom_nodes": ([os.path.join(base_path, "custom_nodes")], set()),
}

output_directory = os.path.join(base_path, "output")
temp_directory = os.path.join(base_path, "temp")
input_directory = os.path.join(base_path, "input")
user_directory = os.path.join(base_path, "user")


def set_output_directory(output_dir: str) -> None:
    global output_directory
    output_directory = output_dir


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def set_input_directory(input_dir: str) -> None:
    global input_directory
    input_directory = input_dir


def set_user_directory(user_dir: str) -> None:
    global user_directory
    user_directory = user_dir


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_input_directory() -> str:
    return input_directory


def get_user_directory() -> str:
    return user_directory


def get_directory_by_type(type_name: str) -> str | None:
    return {"output": get_output_directory, "temp": get_temp_directory,
            "input": get_input_directory}.get(type_name, lambda: None)()


def filter_files_content_types(files: list[str], content_types: list[str]) -> list[str]:
    """Keep files whose MIME type's major part is one of ``content_types`` (e.g. ``image``)."""
    kept = []
    for name in files:
        mime = mimetypes.guess_type(name, strict=False)[0] or ""
        if mime.split("/")[0] in content_types:
            kept.append(name)
    return kept


def annotated_filepath(name: str) -> tuple[str, str | None]:
    for suffix, directory in (("[output]", get_output_directory), ("[input]", get_input_directory),
                              ("[temp]", get_temp_directory)):
        if name.endswith(suffix):
            # ComfyUI strips the suffix and the space before it ("x.png [output]").
            return name[: -len(suffix) - 1], directory()
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    paths, _ = folder_names_and_paths.setdefault(folder_name, ([], set()))
    if full_folder_path in paths:
        paths.remove(full_folder_path)
    if is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[folder_name][0])


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0,
                        image_height: int = 0) -> tuple[str, str, int, str, str]:
    """Folder, base name, next free counter, subfolder and prefix for a new output file.

    The counter continues after the highest ``<name>_NNNNN_`` already in the folder, as in
    ComfyUI, so files from earlier runs are never overwritten.
    """
    if "%" in filename_prefix:
        now = time.localtime()
        for key, value in (("%width%", image_width), ("%height%", image_height),
                           ("%year%", now.tm_year), ("%month%", f"{now.tm_mon:02}"),
                           ("%day%", f"{now.tm_mday:02}"), ("%hour%", f"{now.tm_hour:02}"),
                           ("%minute%", f"{now.tm_min:02}"), ("%second%", f"{now.tm_sec:02}")):
            filename_prefix = filename_prefix.replace(key, str(value))
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    common = os.path.commonpath((output_dir, os.path.abspath(full_output_folder)))
    if common != output_dir:
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {os.path.abspath(full_output_folder)}"
            f"\n         output_dir: {output_dir}"
            f"\n         commonpath: {common}")
    try:
        existing = os.listdir(full_output_folder)
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        existing = []
    counters = [0]
    for name in existing:
        if name.startswith(filename + "_"):
            digits = name[len(filename) + 1:].split("_")[0]
            if digits.isdigit():
                counters.append(int(digits))
    return full_output_folder, filename, max(counters) + 1, subfolder, filename_prefix

"""The image-to-GLB graph in ComfyUI's API format, and its check against the node schemas.

The graph; node ids are stable (the client finds outputs by them)::

    id  class                                      links from  options
    1   LoadImage                                              image_name
    2   BRIA_RMBG_ModelLoader_Zho
    3   BRIA_RMBG_Zho (RGBA cutout)                2, 1
    4   Trellis2PreProcessImage (crop onto black)  3
    5   Trellis2LoadModel                                      attention, low_vram
    6   Trellis2MeshWithVoxelGenerator             5, 4        resolution, seed, *_steps
    7   Trellis2PostProcessAndUnWrapAndRasterizer  6           texture_size, target_face_num, remesh
    8   Trellis2ExportMesh                         7           glb_prefix
    9   SaveImage                                  4           cutout_prefix
    10  TrellisBoxGLBOutput                        8

Nodes 1–9 are exactly what the recorded runs sent (``shared/comfyui/traces/01_success.jsonl``).
Node 10 is ours: ``Trellis2ExportMesh`` writes the GLB but reports no UI output, so without it the
GLB never appears in ``/history``.

``validate`` checks every input locally, the way ComfyUI's ``validate_inputs`` would, because
ComfyUI answers a prompt with a bad input with 200 and quietly runs the rest of the graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from trellis_box.errors import ResolutionUnsupportedError, WorkflowInvalidError

LOAD_IMAGE_NODE = "1"
RMBG_LOADER_NODE = "2"
RMBG_NODE = "3"
PREPROCESS_NODE = "4"
LOAD_MODEL_NODE = "5"
GENERATE_NODE = "6"
POSTPROCESS_NODE = "7"
EXPORT_NODE = "8"
#: ``SaveImage`` of the preprocessed cutout: the object cropped onto black, exactly what TRELLIS.2 saw.
CUTOUT_NODE = "9"
#: Our output node; its ``ui["3d"]`` entry in ``/history`` names the GLB.
GLB_OUTPUT_NODE = "10"

GLB_OUTPUT_CLASS = "TrellisBoxGLBOutput"

#: Our resolution names -> the generator's ``pipeline_type``. Our 1024 is the node's default,
#: ``1024_cascade``; the non-cascade ``1024`` is not offered.
PIPELINE_TYPES: dict[str, str] = {"512": "512", "1024": "1024_cascade", "1536": "1536_cascade"}
RESOLUTIONS: tuple[str, ...] = tuple(PIPELINE_TYPES)


def next_lower(resolution: str) -> str | None:
    """The next rung down the out-of-memory fallback ladder, or None at the bottom."""
    if resolution not in RESOLUTIONS:
        raise ResolutionUnsupportedError(
            f"unknown resolution {resolution!r}", detail=f"TRELLIS.2 runs at {', '.join(RESOLUTIONS)}.",
            fix=f"use one of {', '.join(RESOLUTIONS)}", resolution=resolution)
    index = RESOLUTIONS.index(resolution)
    return RESOLUTIONS[index - 1] if index > 0 else None

ATTENTION_BACKENDS: tuple[str, ...] = ("xformers", "flash_attn")

#: (node class, input name) -> the ``WorkflowOptions`` field that sets it; error messages name it.
OPTION_INPUTS: dict[tuple[str, str], str] = {
    ("LoadImage", "image"): "image_name",
    ("Trellis2LoadModel", "backend"): "attention",
    ("Trellis2LoadModel", "low_vram"): "low_vram",
    ("Trellis2MeshWithVoxelGenerator", "seed"): "seed",
    ("Trellis2MeshWithVoxelGenerator", "pipeline_type"): "resolution",
    ("Trellis2MeshWithVoxelGenerator", "sparse_structure_steps"): "sparse_structure_steps",
    ("Trellis2MeshWithVoxelGenerator", "shape_steps"): "shape_steps",
    ("Trellis2MeshWithVoxelGenerator", "texture_steps"): "texture_steps",
    ("Trellis2PostProcessAndUnWrapAndRasterizer", "texture_size"): "texture_size",
    ("Trellis2PostProcessAndUnWrapAndRasterizer", "remesh"): "remesh",
    ("Trellis2PostProcessAndUnWrapAndRasterizer", "target_face_num"): "target_face_num",
    ("Trellis2ExportMesh", "filename_prefix"): "glb_prefix",
    ("SaveImage", "filename_prefix"): "cutout_prefix",
}


@dataclass(frozen=True)
class WorkflowOptions:
    """What a user may vary. Defaults are the pinned nodes' own (``data/object_info.json``);
    ``tests/test_workflow.py`` proves they agree."""

    resolution: str = "1024"
    seed: int = 0
    sparse_structure_steps: int = 12
    shape_steps: int = 12
    texture_steps: int = 12
    texture_size: int = 2048
    target_face_num: int = 2_000_000
    remesh: bool = True
    low_vram: bool = True
    attention: str = "xformers"
    glb_prefix: str = "3D/Trellis2"
    cutout_prefix: str = "cutout/Trellis2"

    def __post_init__(self) -> None:
        # The two choices that are ours rather than a node's; ranges are checked by ``validate``.
        if self.resolution not in PIPELINE_TYPES:
            raise WorkflowInvalidError(
                f"unknown resolution {self.resolution!r}",
                detail=f"TRELLIS.2 runs at {', '.join(RESOLUTIONS)}.",
                fix=f"use one of {', '.join(RESOLUTIONS)} (option `resolution`)",
                field="resolution",
            )
        if self.attention not in ATTENTION_BACKENDS:
            raise WorkflowInvalidError(
                f"unknown attention backend {self.attention!r}",
                detail=f"Trellis2LoadModel offers {', '.join(ATTENTION_BACKENDS)}.",
                fix=f"use one of {', '.join(ATTENTION_BACKENDS)} (option `attention`)",
                field="attention",
            )

    @property
    def pipeline_type(self) -> str:
        return PIPELINE_TYPES[self.resolution]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build(options: WorkflowOptions, image_name: str) -> dict[str, Any]:
    """The API-format graph for ``image_name`` (a file in ComfyUI's input folder).

    Inputs not in ``options`` are the recorded run's (traces 01/07), in each node's input order.
    One differs from its node default on purpose: ``dual_contouring_resolution`` "Auto" derives the
    grid from the mesh and so suits every pipeline type (the default "512" undersamples 1536).
    """
    o = options
    return {
        LOAD_IMAGE_NODE: {"class_type": "LoadImage", "inputs": {"image": image_name}},
        RMBG_LOADER_NODE: {"class_type": "BRIA_RMBG_ModelLoader_Zho", "inputs": {}},
        RMBG_NODE: {
            "class_type": "BRIA_RMBG_Zho",
            "inputs": {"rmbgmodel": [RMBG_LOADER_NODE, 0], "image": [LOAD_IMAGE_NODE, 0]},
        },
        PREPROCESS_NODE: {"class_type": "Trellis2PreProcessImage", "inputs": {"image": [RMBG_NODE, 0]}},
        LOAD_MODEL_NODE: {
            "class_type": "Trellis2LoadModel",
            "inputs": {"modelname": "TRELLIS.2-4B", "backend": o.attention, "device": "cuda",
                       "low_vram": o.low_vram, "keep_models_loaded": True},
        },
        GENERATE_NODE: {
            "class_type": "Trellis2MeshWithVoxelGenerator",
            "inputs": {
                "pipeline": [LOAD_MODEL_NODE, 0], "image": [PREPROCESS_NODE, 0], "seed": o.seed,
                "pipeline_type": o.pipeline_type, "sparse_structure_steps": o.sparse_structure_steps,
                "shape_steps": o.shape_steps, "texture_steps": o.texture_steps, "max_num_tokens": 49152,
                "max_views": 4, "sparse_structure_resolution": 32, "generate_texture_slat": True,
                "use_tiled_decoder": True,
            },
        },
        POSTPROCESS_NODE: {
            "class_type": "Trellis2PostProcessAndUnWrapAndRasterizer",
            "inputs": {
                "mesh": [GENERATE_NODE, 0], "mesh_cluster_threshold_cone_half_angle_rad": 90.0,
                "mesh_cluster_refine_iterations": 0, "mesh_cluster_global_iterations": 1,
                "mesh_cluster_smooth_strength": 1, "texture_size": o.texture_size, "remesh": o.remesh,
                "remesh_band": 1.0, "remesh_project": 0.0, "target_face_num": o.target_face_num,
                "simplify_method": "Cumesh", "fill_holes": True, "fill_holes_max_perimeter": 0.03,
                "texture_alpha_mode": "OPAQUE", "dual_contouring_resolution": "Auto",
                "double_side_material": True, "remove_floaters": True,
            },
        },
        EXPORT_NODE: {
            "class_type": "Trellis2ExportMesh",
            "inputs": {"trimesh": [POSTPROCESS_NODE, 0], "filename_prefix": o.glb_prefix,
                       "file_format": "glb", "save_file": True},
        },
        CUTOUT_NODE: {
            "class_type": "SaveImage",
            "inputs": {"images": [PREPROCESS_NODE, 0], "filename_prefix": o.cutout_prefix},
        },
        GLB_OUTPUT_NODE: {"class_type": GLB_OUTPUT_CLASS, "inputs": {"glb_path": [EXPORT_NODE, 0]}},
    }


# --- schemas -----------------------------------------------------------------------------------


def recorded_object_info() -> dict[str, Any]:
    """The pinned nodes' ``/object_info`` as recorded from a real server, plus our own nodes."""
    text = resources.files("trellis_box").joinpath("data/object_info.json").read_text("utf-8")
    info: dict[str, Any] = json.loads(text)
    info.update(our_node_schemas())
    return info


def our_node_schemas() -> dict[str, Any]:
    """``/object_info`` entries for our node pack, derived from the classes as ComfyUI does."""
    from trellis_box import comfy_nodes

    display = getattr(comfy_nodes, "NODE_DISPLAY_NAME_MAPPINGS", {})
    return {
        name: node_schema(name, cls, display.get(name, name))
        for name, cls in comfy_nodes.NODE_CLASS_MAPPINGS.items()
    }


def node_schema(name: str, cls: type, display_name: str) -> dict[str, Any]:
    """One ``/object_info`` entry, the shape ComfyUI's ``server.node_info`` builds."""
    inputs = cls.INPUT_TYPES()  # type: ignore[attr-defined]
    outputs = list(getattr(cls, "RETURN_TYPES", ()))
    entry = {
        "input": inputs,
        "input_order": {section: list(names) for section, names in inputs.items()},
        "output": outputs,
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(cls, "RETURN_NAMES", outputs)),
        "name": name,
        "display_name": display_name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": "custom_nodes.trellis_box_nodes",
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    # Round-trip through JSON so tuples become lists, as a server's answer would have them.
    result: dict[str, Any] = json.loads(json.dumps(entry))
    return result


# --- validation --------------------------------------------------------------------------------

#: Input types ComfyUI shows as widgets (values typed in the prompt, not links).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})


@dataclass(frozen=True)
class Problem:
    """One input that breaks its schema: where, which rule, what was seen and the fix."""

    path: str
    rule: str
    fact: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.fact} (rule: {self.rule})\n  fix: {self.fix}"


def validate(graph: dict[str, Any], object_info: dict[str, Any]) -> None:
    """Raise :class:`WorkflowInvalidError` listing every problem ``check`` finds."""
    problems = check(graph, object_info)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise WorkflowInvalidError(
            f"workflow does not match the node schemas: {count}; nothing was sent to ComfyUI",
            detail="\n".join(str(p) for p in problems),
            fix="correct each input named above",
            problems=[asdict(p) for p in problems],
        )


def check(graph: dict[str, Any], object_info: dict[str, Any]) -> list[Problem]:
    """Every problem in ``graph`` against ``object_info``, in node order; empty when it is valid."""
    if not isinstance(graph, dict) or not graph:
        return [Problem("prompt", "shape", "the graph is empty or not an object",
                        "pass the API-format graph: {node id: {class_type, inputs}}")]
    problems: list[Problem] = []
    for node_id, node in graph.items():
        problems += _check_node(str(node_id), node, graph, object_info)
    if not any(object_info.get(_class_of(n), {}).get("output_node") for n in graph.values()):
        problems.append(Problem("prompt", "outputs", "no node in the graph is an output node",
                                f"add an output node such as {GLB_OUTPUT_CLASS} or SaveImage"))
    return problems


def _class_of(node: Any) -> str:
    return node.get("class_type", "") if isinstance(node, dict) else ""


def _check_node(node_id: str, node: Any, graph: dict[str, Any], info: dict[str, Any]) -> list[Problem]:
    where = f"prompt.{node_id}"
    if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
        return [Problem(where, "shape", "the node is not {class_type, inputs: {...}}",
                        "give the node a class_type and an inputs object")]
    class_type = node.get("class_type")
    schema = info.get(class_type) if isinstance(class_type, str) else None
    if schema is None or not isinstance(class_type, str):
        return [Problem(f"{where}.class_type", "known-class",
                        f"{class_type!r} is not a node class the server knows",
                        "install the node pack that provides it, or use a class listed in /object_info")]
    sections = schema["input"]
    specs = dict(ordered_inputs(schema))
    problems = []
    for name in sections.get("required", {}):
        if name not in node["inputs"]:
            problems.append(Problem(f"{where}.inputs.{name}", "required",
                                    f"required input of {class_type} is missing",
                                    _fix(class_type, name, _describe(specs[name]))))
    for name, value in node["inputs"].items():
        path = f"{where}.inputs.{name}"
        if name not in specs:
            problems.append(Problem(path, "known-input", f"{class_type} has no input {name!r}",
                                    f"remove it; {class_type} takes {', '.join(specs) or 'no inputs'}"))
        elif is_link(value):
            problems += _check_link(path, value, specs[name], graph, info)
        else:
            problems += _check_value(path, class_type, name, value, specs[name])
    return problems


def ordered_inputs(schema: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """A node's inputs as (name, spec): required then optional, each in the node's own order."""
    sections = schema["input"]
    order = schema.get("input_order") or {k: list(v) for k, v in sections.items()}
    return [(name, sections[section][name])
            for section in ("required", "optional") for name in order.get(section, [])]


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _check_link(path: str, value: list[Any], spec: list[Any], graph: dict[str, Any],
                info: dict[str, Any]) -> list[Problem]:
    source_id, slot = value
    wanted = input_type(spec)
    source = graph.get(source_id)
    if source is None:
        return [Problem(path, "link-target", f"links to node {source_id!r}, which is not in the graph",
                        f"link to an existing node's output of type {wanted}")]
    outputs = info.get(_class_of(source), {}).get("output")
    if outputs is None:
        return []  # the source node's own problem is reported where it is
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < len(outputs):
        return [Problem(path, "link-slot",
                        f"output slot {slot!r} of node {source_id} ({_class_of(source)}) does not exist",
                        f"use a slot between 0 and {len(outputs) - 1}")]
    given = outputs[slot]
    if "*" not in (given, wanted) and given != wanted:
        return [Problem(path, "link-type",
                        f"node {source_id} output {slot} is {given}, this input takes {wanted}",
                        f"link an output of type {wanted}")]
    return []


def input_type(spec: list[Any]) -> str:
    kind = spec[0]
    return "COMBO" if isinstance(kind, list) else str(kind)


def _check_value(path: str, class_type: str, name: str, value: Any, spec: list[Any]) -> list[Problem]:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    fix_range = _describe(spec)
    if isinstance(kind, list):
        # An upload input lists the server's input folder at the moment /object_info was asked
        # (emptied in the recording): a file uploaded since is valid though not in that list.
        if options.get("image_upload") or not kind:
            ok = isinstance(value, str) and value != ""
            return [] if ok else [Problem(path, "type", f"{value!r} is not a file name",
                                          _fix(class_type, name, "name an uploaded file"))]
        if value not in kind:
            return [Problem(path, "options", f"{value!r} is not one of {kind}",
                            _fix(class_type, name, fix_range))]
        return []
    if kind not in WIDGET_TYPES:
        return [Problem(path, "link-required", f"{kind} input given the value {value!r}",
                        f"link it to a node output of type {kind}: [\"<node id>\", <slot>]")]
    if not _has_type(kind, value):
        return [Problem(path, "type", f"{value!r} is not {_ARTICLE[kind]}",
                        _fix(class_type, name, fix_range))]
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            return [Problem(path, "min", f"{value!r} is below the minimum {options['min']}",
                            _fix(class_type, name, fix_range))]
        if "max" in options and value > options["max"]:
            return [Problem(path, "max", f"{value!r} is above the maximum {options['max']}",
                            _fix(class_type, name, fix_range))]
    return []


_ARTICLE = {"INT": "an integer", "FLOAT": "a number", "STRING": "a string", "BOOLEAN": "true or false"}


def _has_type(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return kind == "BOOLEAN"
    return {
        "INT": isinstance(value, int),
        "FLOAT": isinstance(value, (int, float)),
        "STRING": isinstance(value, str),
        "BOOLEAN": False,
    }[kind]


def _describe(spec: list[Any]) -> str:
    """What a valid value looks like, for a fix line."""
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    if isinstance(kind, list):
        return "name an uploaded file" if options.get("image_upload") or not kind else f"use one of {kind}"
    if kind not in WIDGET_TYPES:
        return f"link it to a node output of type {kind}"
    if "min" in options and "max" in options:
        return f"use {_ARTICLE[kind]} between {options['min']} and {options['max']}"
    if "min" in options:
        return f"use {_ARTICLE[kind]} of at least {options['min']}"
    if "max" in options:
        return f"use {_ARTICLE[kind]} of at most {options['max']}"
    return f"use {_ARTICLE[kind]}"


#: Options ``trellis-box generate`` sets by a flag of another name or spelling: most people meet
#: these errors through that command.
_GENERATE_FLAGS = {
    "seed": "--seed", "resolution": "--resolution", "sparse_structure_steps": "--sparse-structure-steps",
    "shape_steps": "--shape-steps", "texture_steps": "--texture-steps", "texture_size": "--texture-size",
    "target_face_num": "--target-faces", "remesh": "--remesh/--no-remesh", "attention": "--attention",
}


def _fix(class_type: str, name: str, text: str) -> str:
    option = OPTION_INPUTS.get((class_type, name))
    if option is None:
        return text
    if option == "resolution":
        text = f"use one of {', '.join(RESOLUTIONS)}"
    flag = _GENERATE_FLAGS.get(option)
    return f"{text} (generate {flag}, option `{option}`)" if flag else f"{text} (option `{option}`)"

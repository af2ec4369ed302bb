"""The image-to-GLB graph in ComfyUI's API format, its parameters, and its check against the
node schemas.

The graph; node ids are stable (the client finds outputs by them)::

    id  class                                      links from
    1   LoadImage                                  (the image name)
    2   BRIA_RMBG_ModelLoader_Zho
    3   BRIA_RMBG_Zho (RGBA cutout)                2, 1
    4   Trellis2PreProcessImage (crop onto black)  3
    5   Trellis2LoadModel
    6   Trellis2MeshWithVoxelGenerator             5, 4
    7   Trellis2PostProcessAndUnWrapAndRasterizer  6
    8   Trellis2ExportMesh                         7
    9   SaveImage                                  4
    10  TrellisBoxGLBOutput                        8

Nodes 1–9 are exactly what the recorded runs sent (``tests/recordings/comfyui/traces/01_success.jsonl``).
Node 10 is ours: ``Trellis2ExportMesh`` writes the GLB but reports no UI output, so without it the
GLB never appears in ``/history``.

What a user may vary is :data:`PARAMETERS`, one row per parameter: the node input it sets, its
help, and (from the recorded schemas) its type, default and range. The graph, ``generate``'s
options, validation, fix hints and the resume key all derive from that table, so a new parameter
is one new row. :data:`PRESETS` are named sets of post-process values.

``validate`` checks every input locally, the way ComfyUI's ``validate_inputs`` would, because
ComfyUI answers a prompt with a bad input with 200 and quietly runs the rest of the graph.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cache
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


#: Fills an input that a row of :data:`PARAMETERS` sets. Every other input is a fixed value: the
#: recorded run's (traces 01/07), in each node's input order. One differs from its node default
#: on purpose: ``dual_contouring_resolution`` "Auto" derives the grid from the mesh and so suits
#: every pipeline type (the default "512" undersamples 1536).
SET = object()

_GRAPH: dict[str, dict[str, Any]] = {
    LOAD_IMAGE_NODE: {"class_type": "LoadImage", "inputs": {"image": SET}},
    RMBG_LOADER_NODE: {"class_type": "BRIA_RMBG_ModelLoader_Zho", "inputs": {}},
    RMBG_NODE: {
        "class_type": "BRIA_RMBG_Zho",
        "inputs": {"rmbgmodel": [RMBG_LOADER_NODE, 0], "image": [LOAD_IMAGE_NODE, 0]},
    },
    PREPROCESS_NODE: {"class_type": "Trellis2PreProcessImage", "inputs": {"image": [RMBG_NODE, 0]}},
    LOAD_MODEL_NODE: {
        "class_type": "Trellis2LoadModel",
        "inputs": {"modelname": "TRELLIS.2-4B", "backend": SET, "device": "cuda",
                   "low_vram": SET, "keep_models_loaded": True},
    },
    GENERATE_NODE: {
        "class_type": "Trellis2MeshWithVoxelGenerator",
        "inputs": {
            "pipeline": [LOAD_MODEL_NODE, 0], "image": [PREPROCESS_NODE, 0], "seed": SET,
            "pipeline_type": SET, "sparse_structure_steps": SET, "shape_steps": SET,
            "texture_steps": SET, "max_num_tokens": 49152, "max_views": 4,
            "sparse_structure_resolution": 32, "generate_texture_slat": True,
            "use_tiled_decoder": True,
        },
    },
    POSTPROCESS_NODE: {
        "class_type": "Trellis2PostProcessAndUnWrapAndRasterizer",
        "inputs": {
            "mesh": [GENERATE_NODE, 0], "mesh_cluster_threshold_cone_half_angle_rad": 90.0,
            "mesh_cluster_refine_iterations": 0, "mesh_cluster_global_iterations": 1,
            "mesh_cluster_smooth_strength": 1, "texture_size": SET, "remesh": SET,
            "remesh_band": 1.0, "remesh_project": 0.0, "target_face_num": SET,
            "simplify_method": "Cumesh", "fill_holes": True, "fill_holes_max_perimeter": 0.03,
            "texture_alpha_mode": "OPAQUE", "dual_contouring_resolution": "Auto",
            "double_side_material": True, "remove_floaters": True,
        },
    },
    EXPORT_NODE: {
        "class_type": "Trellis2ExportMesh",
        "inputs": {"trimesh": [POSTPROCESS_NODE, 0], "filename_prefix": SET,
                   "file_format": "glb", "save_file": True},
    },
    CUTOUT_NODE: {
        "class_type": "SaveImage",
        "inputs": {"images": [PREPROCESS_NODE, 0], "filename_prefix": SET},
    },
    GLB_OUTPUT_NODE: {"class_type": GLB_OUTPUT_CLASS, "inputs": {"glb_path": [EXPORT_NODE, 0]}},
}

#: The one input that is not a parameter: which uploaded file to load, given to :func:`build`.
_IMAGE_INPUT = (LOAD_IMAGE_NODE, "image")

_PYTHON_TYPES: dict[str, type] = {"INT": int, "FLOAT": float, "BOOLEAN": bool, "STRING": str,
                                  "COMBO": str}


@dataclass(frozen=True)
class Parameter:
    """One input of the graph a user may set: the only place it is declared.

    Type, default and range come from the node's recorded schema unless given here. ``flag`` is
    the name ``generate`` offers it under (cli/ adds the dashes): ``""`` means the parameter's
    own name, ``None`` that the command does not offer it.
    """

    name: str
    node: str
    input: str
    help: str
    flag: str | None = ""
    #: Our default where it is not the node's (None: the node's).
    default: Any = None
    #: Our value -> the node's, where they differ (our resolution names).
    node_values: Mapping[str, str] | None = None

    @property
    def class_type(self) -> str:
        return node_class(self.node)

    @property
    def spec(self) -> list[Any]:
        """The node input's recorded schema entry: ``[type or choices, {default, min, max...}]``."""
        return dict(ordered_inputs(_schemas()[self.class_type]))[self.input]

    @property
    def kind(self) -> str:
        return input_type(self.spec)

    @property
    def python_type(self) -> type:
        return _PYTHON_TYPES[self.kind]

    @property
    def choices(self) -> tuple[str, ...] | None:
        """Our values for a choice input (in the node's order), None for any other."""
        kind = self.spec[0]
        if not isinstance(kind, list):
            return None
        if self.node_values is not None:
            return tuple(ours for ours, theirs in self.node_values.items() if theirs in kind)
        return tuple(str(k) for k in kind)

    @property
    def bounds(self) -> tuple[Any, Any]:
        """The recorded (min, max), each None where the node sets none."""
        options = _spec_options(self.spec)
        return options.get("min"), options.get("max")

    @property
    def default_value(self) -> Any:
        if self.default is not None:
            return self.default
        node_default = _spec_options(self.spec).get("default")
        if self.node_values is not None:
            return next(ours for ours, theirs in self.node_values.items() if theirs == node_default)
        return node_default

    def to_node(self, value: Any) -> Any:
        return self.node_values[value] if self.node_values is not None else value

    def describe(self) -> str:
        """The valid values in words, for help texts and fixes."""
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        low, high = self.bounds
        if low is not None and high is not None:
            return f"{low} to {high}"
        if low is not None:
            return f"at least {low}"
        return f"at most {high}" if high is not None else _ARTICLE[self.kind]


#: Every parameter of the graph. A row for another node input (``remove_floaters``, say) is all
#: it takes to offer it: the graph, ``generate``'s option and help, validation, fix hints and the
#: resume key (which counts only values other than the default) follow.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("resolution", GENERATE_NODE, "pipeline_type",
              "Generation resolution: higher is finer, slower and needs more GPU memory.",
              node_values=PIPELINE_TYPES),
    Parameter("seed", GENERATE_NODE, "seed", "Seed of every input."),
    Parameter("sparse_structure_steps", GENERATE_NODE, "sparse_structure_steps",
              "Sampling steps of the sparse structure stage."),
    Parameter("shape_steps", GENERATE_NODE, "shape_steps", "Sampling steps of the shape stage."),
    Parameter("texture_steps", GENERATE_NODE, "texture_steps",
              "Sampling steps of the texture stage."),
    Parameter("texture_size", POSTPROCESS_NODE, "texture_size",
              "Edge of the baked texture in pixels."),
    Parameter("target_face_num", POSTPROCESS_NODE, "target_face_num",
              "Faces the mesh is simplified to.", flag="target-faces"),
    Parameter("remesh", POSTPROCESS_NODE, "remesh", "Remesh before simplifying."),
    # The GPU profile decides it on a trellis-box server (the warm-up loaded the models with it).
    Parameter("low_vram", LOAD_MODEL_NODE, "low_vram", "Offload models between stages.",
              flag=None),
    Parameter("attention", LOAD_MODEL_NODE, "backend", "Attention backend."),
    Parameter("glb_prefix", EXPORT_NODE, "filename_prefix",
              "Where on the server the GLB is written.", flag=None),
    Parameter("cutout_prefix", CUTOUT_NODE, "filename_prefix",
              "Where on the server the cutout is written.", flag=None, default="cutout/Trellis2"),
)

#: Named post-process values; ``max`` is the nodes' own defaults (a real H200 made a 131 MB,
#: 1.9 M-face GLB with them); upstream's own app decimates to 500 k faces, as ``balanced`` does.
PRESETS: dict[str, dict[str, Any]] = {
    "web": {"target_face_num": 200_000, "texture_size": 1024},
    "balanced": {"target_face_num": 500_000, "texture_size": 2048},
    "max": {},
}
DEFAULT_PRESET = "balanced"


def node_class(node_id: str) -> str:
    """The class of one of our graph's nodes."""
    return str(_GRAPH[node_id]["class_type"])


def parameter(name: str) -> Parameter:
    return next(p for p in PARAMETERS if p.name == name)


def mention(name: str) -> str:
    """How library texts name a parameter; cli/ turns each mention into its flag."""
    return f"parameter `{name}`"


def preset_values(preset: str) -> dict[str, Any]:
    """Every value a preset sets, the nodes' defaults spelled out for ``max``."""
    touched = sorted({n for values in PRESETS.values() for n in values},
                     key=[p.name for p in PARAMETERS].index)
    return {n: PRESETS[preset].get(n, parameter(n).default_value) for n in touched}


class WorkflowOptions:
    """A value for every parameter: its default, then the preset's, then those given.

    Parameters read as attributes (``options.seed``) or by name (``options["seed"]``).
    """

    __slots__ = ("preset", "_values")

    def __init__(self, *, preset: str = DEFAULT_PRESET, **values: Any) -> None:
        if preset not in PRESETS:
            raise WorkflowInvalidError(
                f"unknown preset {preset!r}", detail=f"presets: {', '.join(PRESETS)}.",
                fix=f"use one of {', '.join(PRESETS)} ({mention('preset')})", field="preset")
        known = {p.name: p for p in PARAMETERS}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise WorkflowInvalidError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                detail=f"parameters: {', '.join(known)}.", fix="use the names listed above",
                field=unknown[0])
        merged = {p.name: p.default_value for p in PARAMETERS} | PRESETS[preset] | values
        for name, value in merged.items():
            choices = known[name].choices
            if choices is not None and value not in choices:
                raise WorkflowInvalidError(
                    f"unknown {name} {value!r}",
                    detail=f"{name} sets {known[name].class_type}'s {known[name].input}; "
                           f"it is one of {', '.join(choices)}.",
                    fix=f"use one of {', '.join(choices)} ({mention(name)})", field=name)
        object.__setattr__(self, "preset", preset)
        object.__setattr__(self, "_values", merged)

    preset: str
    _values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        # Private names are never parameters; copy and pickle ask for them before _values exists.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("WorkflowOptions is immutable: use replace()")

    # Immutable: a copy may be the same object.
    def __copy__(self) -> WorkflowOptions:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> WorkflowOptions:
        return self

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, WorkflowOptions) and (self.preset, self._values)
                == (other.preset, other._values))

    def __hash__(self) -> int:
        return hash((self.preset, json.dumps(self._values, sort_keys=True)))

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.non_default().items())
        return f"WorkflowOptions(preset={self.preset!r}{', ' if given else ''}{given})"

    def replace(self, **changes: Any) -> WorkflowOptions:
        return WorkflowOptions(preset=self.preset, **(self._values | changes))

    @property
    def pipeline_type(self) -> str:
        return PIPELINE_TYPES[self.resolution]

    def as_dict(self) -> dict[str, Any]:
        """The preset and every parameter's value, for reports."""
        return {"preset": self.preset, **self._values}

    def non_default(self) -> dict[str, Any]:
        """The parameters whose value is not the default: what makes this run differ."""
        return {p.name: self._values[p.name] for p in PARAMETERS
                if self._values[p.name] != p.default_value}


def build(options: WorkflowOptions, image_name: str) -> dict[str, Any]:
    """The API-format graph for ``image_name`` (a file in ComfyUI's input folder)."""
    graph = copy.deepcopy(_GRAPH)
    node, name = _IMAGE_INPUT
    graph[node]["inputs"][name] = image_name
    for p in PARAMETERS:
        graph[p.node]["inputs"][p.input] = p.to_node(options[p.name])
    return graph


# --- schemas -----------------------------------------------------------------------------------


def recorded_object_info() -> dict[str, Any]:
    """The pinned nodes' ``/object_info`` as recorded from a real server, plus our own nodes."""
    result: dict[str, Any] = json.loads(json.dumps(_schemas()))  # a copy the caller may change
    return result


@cache
def _schemas() -> dict[str, Any]:
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
    #: The parameter that sets this input, where one does.
    parameter: str | None = None

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
            found = parameter_of(class_type, name)
            problems += [replace(p, parameter=found.name if found else None)
                         for p in _check_value(path, class_type, name, value, specs[name])]
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


def _fix(class_type: str, name: str, text: str) -> str:
    found = parameter_of(class_type, name)
    if found is None:
        return text
    if found.node_values is not None:  # the node's values are not ours
        text = f"use one of {', '.join(found.choices or ())}"
    return f"{text} ({mention(found.name)})"


def _spec_options(spec: list[Any]) -> dict[str, Any]:
    options: dict[str, Any] = (spec[1] if len(spec) > 1 else {}) or {}
    return options


def parameter_of(class_type: str, input_name: str) -> Parameter | None:
    """The parameter that sets ``input_name`` of a ``class_type`` node, if one does."""
    return next((p for p in PARAMETERS if (p.class_type, p.input) == (class_type, input_name)),
                None)

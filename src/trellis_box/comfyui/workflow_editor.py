"""ComfyUI's editor (UI) workflow format, converted to and from the API format.

The editor format is what the ComfyUI web editor saves and loads (LiteGraph serialisation,
``version: 0.4``): nodes with ids, positions and sizes, socket inputs and outputs carrying link
ids, ``widgets_values`` in schema order, and a ``links`` table of
``[id, from_node, from_slot, to_node, to_slot, type]``. Two frontend conventions matter for the
values list: an INT input named ``seed`` (or flagged ``control_after_generate``) is followed by its
"control after generate" value, and an ``image_upload`` input by the upload widget's value
``"image"``. Neither reaches the API format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trellis_box import pins
from trellis_box.comfyui import workflow
from trellis_box.errors import WorkflowInvalidError

API_FILE = "image_to_glb.api.json"
EDITOR_FILE = "image_to_glb.json"

#: Where each node of the built graph sits in the editor: (x, y, width, height).
_LAYOUT: dict[str, tuple[int, int, int, int]] = {
    workflow.LOAD_IMAGE_NODE: (40, 80, 320, 340),
    workflow.RMBG_LOADER_NODE: (40, 480, 320, 60),
    workflow.RMBG_NODE: (420, 80, 280, 50),
    workflow.PREPROCESS_NODE: (420, 200, 280, 30),
    workflow.CUTOUT_NODE: (420, 300, 320, 320),
    workflow.LOAD_MODEL_NODE: (420, 680, 320, 180),
    workflow.GENERATE_NODE: (800, 80, 360, 330),
    workflow.POSTPROCESS_NODE: (1220, 80, 420, 420),
    workflow.EXPORT_NODE: (1700, 80, 320, 110),
    workflow.GLB_OUTPUT_NODE: (1700, 260, 320, 60),
}
_DEFAULT_BOX = (40, 40, 320, 120)

# The "control after generate" value we save: a checked-in workflow must not change its seed.
_SEED_CONTROL = "fixed"
_UPLOAD_WIDGET_VALUE = "image"
_MUTED_MODES = (2, 4)  # LiteGraph NEVER and BYPASS: the frontend leaves these out of a prompt
#: Frontend-only nodes (comments on the canvas): never part of a prompt.
_NOTE_TYPES = ("Note", "MarkdownNote")


def _options(spec: list[Any]) -> dict[str, Any]:
    return (spec[1] if len(spec) > 1 else {}) or {}


def _is_widget(spec: list[Any]) -> bool:
    kind = spec[0]
    return (isinstance(kind, list) or kind in workflow.WIDGET_TYPES) and not _options(spec).get("forceInput")


def _extra_widget_value(name: str, spec: list[Any]) -> list[Any]:
    """The values the frontend saves after this widget's own value (never sent to the API)."""
    options = _options(spec)
    if spec[0] == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed")):
        return [_SEED_CONTROL]
    if options.get("image_upload"):
        return [_UPLOAD_WIDGET_VALUE]
    return []


def _placeholder(spec: list[Any]) -> Any:
    """A linked widget's saved value: its default, as the frontend keeps it."""
    kind, options = spec[0], _options(spec)
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def _properties(schema: dict[str, Any], class_type: str) -> dict[str, Any]:
    """``Node name for S&R`` plus where the node comes from, so ComfyUI-Manager can install a
    missing pack at the pinned commit."""
    props: dict[str, Any] = {"Node name for S&R": class_type}
    module = schema.get("python_module", "")
    p = pins.load()
    if module in ("nodes",) or module.startswith("comfy_extras."):
        props.update({"cnr_id": "comfy-core", "ver": p.comfyui.version})
    for pack in p.node_packs.values():
        if module == f"custom_nodes.{pack.dir}":
            props.update({"aux_id": pack.repo.removeprefix("https://github.com/"), "ver": pack.commit})
    return props


def _execution_order(graph: dict[str, Any]) -> list[str]:
    """Node ids, every node after the nodes it links from; ties broken by numeric id."""
    remaining = sorted(graph, key=int)
    done: list[str] = []
    while remaining:
        ready = next(n for n in remaining if all(
            v[0] in done for v in graph[n]["inputs"].values() if workflow.is_link(v)))
        done.append(ready)
        remaining.remove(ready)
    return done


def to_editor(graph: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """The editor-format workflow for an API-format ``graph`` (validated first)."""
    workflow.validate(graph, object_info)
    ids = sorted(graph, key=int)
    nodes: dict[str, dict[str, Any]] = {}
    links: list[list[Any]] = []
    order = _execution_order(graph)
    for node_id in ids:
        class_type = graph[node_id]["class_type"]
        schema = object_info[class_type]
        x, y, w, h = _LAYOUT.get(node_id, _DEFAULT_BOX)
        nodes[node_id] = {
            "id": int(node_id),
            "type": class_type,
            "pos": [x, y],
            "size": [w, h],
            "flags": {},
            "order": order.index(node_id),
            "mode": 0,
            "inputs": [],
            "outputs": [
                {"name": name, "type": kind, "links": None, "slot_index": slot}
                for slot, (name, kind) in enumerate(zip(schema["output_name"], schema["output"], strict=True))
            ],
            "properties": _properties(schema, class_type),
            "widgets_values": [],
        }
    for node_id in ids:
        node, values = nodes[node_id], graph[node_id]["inputs"]
        sockets, widget_sockets = [], []
        for name, spec in workflow.ordered_inputs(object_info[node["type"]]):
            value = values.get(name)
            linked = workflow.is_link(value)
            if _is_widget(spec):
                node["widgets_values"] += [_placeholder(spec) if linked or name not in values else value,
                                           *_extra_widget_value(name, spec)]
                if linked:
                    widget_sockets.append((name, spec, value))
            else:
                sockets.append((name, spec, value if linked else None))
        for name, spec, value in sockets + widget_sockets:
            entry: dict[str, Any] = {"name": name, "type": workflow.input_type(spec), "link": None}
            if _is_widget(spec):
                entry["widget"] = {"name": name}
            if value is not None:
                link_id = len(links) + 1
                source, slot = value
                links.append([link_id, int(source), slot, int(node_id), len(node["inputs"]), entry["type"]])
                entry["link"] = link_id
                output = nodes[source]["outputs"][slot]
                output["links"] = [*(output["links"] or []), link_id]
            node["inputs"].append(entry)
    return {
        "last_node_id": max(int(i) for i in ids),
        "last_link_id": len(links),
        "nodes": list(nodes.values()),
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
        "version": 0.4,
    }


def from_editor(editor: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """The API-format graph the ComfyUI editor would queue for ``editor``."""
    try:
        link_sources = {link[0]: (str(link[1]), link[2]) for link in editor["links"]}
        nodes = sorted(editor["nodes"], key=lambda n: int(n["id"]))
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise WorkflowInvalidError(
            "not an editor-format workflow",
            detail=f"expected `nodes` and `links` lists as the ComfyUI editor saves them ({exc!r}).",
            fix="save the workflow from the editor (Workflow > Save), or pass an API-format file",
        ) from exc
    graph: dict[str, Any] = {}
    for node in nodes:
        if node.get("mode", 0) in _MUTED_MODES or node.get("type") in _NOTE_TYPES:
            continue
        node_id, class_type = str(node["id"]), node["type"]
        schema = object_info.get(class_type)
        if schema is None:
            raise WorkflowInvalidError(
                f"editor node {node_id} is a {class_type!r}, which the server does not know",
                fix="install the node pack that provides it, or remove the node",
                node=node_id,
            )
        socket_links = {i["name"]: link_sources[i["link"]]
                        for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs: dict[str, Any] = {}
        for name, spec in workflow.ordered_inputs(schema):
            if _is_widget(spec) and values:
                value = values.pop(0)
                del values[:len(_extra_widget_value(name, spec))]
                inputs[name] = value
            if name in socket_links:
                inputs[name] = list(socket_links[name])
        graph[node_id] = {"class_type": class_type, "inputs": inputs}
    return graph


def render(data: dict[str, Any]) -> str:
    """The checked-in text of a workflow file: stable key order, two-space indent."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def export(directory: Path, options: workflow.WorkflowOptions | None = None,
           image_name: str = "example.png") -> list[Path]:
    """Write the API and editor files for ``options`` into ``directory``; return their paths."""
    info = workflow.recorded_object_info()
    graph = workflow.build(options or workflow.WorkflowOptions(), image_name)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in ((API_FILE, graph), (EDITOR_FILE, to_editor(graph, info))):
        path = directory / name
        path.write_text(render(data), encoding="utf-8")
        written.append(path)
    return written

"""The image-to-GLB graph: built, checked against the recorded schemas, and in the editor format."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin.fixtures import StartStandin
from tests.conftest import COMFY_RECORDINGS, REPO_ROOT
from tests.extra_parameter import FLOATERS, add_floaters
from tests.gltf_validator import validate_glb
from tests.litegraph_editor import load_and_save
from trellis_box import comfy_nodes
from trellis_box.batch import glb, images
from trellis_box.cli.app import main
from trellis_box.comfyui import workflow, workflow_editor
from trellis_box.comfyui.client import ComfyClient
from trellis_box.comfyui.workflow import WorkflowOptions, build, check, recorded_object_info, validate
from trellis_box.errors import WorkflowInvalidError

TRACES = COMFY_RECORDINGS / "traces"
WORKFLOWS = REPO_ROOT / "workflows"


def _recorded_prompt(trace: str) -> dict[str, Any]:
    """The /prompt exchange of a recorded run: ``request_json`` and ``response_json``."""
    for line in (TRACES / trace).read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "http" and record["path"] == "/prompt":
            return record
    raise AssertionError(f"{trace} has no /prompt request")


def _sent_prompt(trace: str) -> dict[str, Any]:
    return _recorded_prompt(trace)["request_json"]["prompt"]


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return recorded_object_info()


@pytest.fixture
def graph() -> dict[str, Any]:
    return build(WorkflowOptions(), "chair.png")


def _problems(graph: dict[str, Any], info: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.path, p.rule) for p in check(graph, info)]


# --- schemas and defaults ----------------------------------------------------------------------


def test_shipped_schemas_are_the_recording() -> None:
    shipped = REPO_ROOT / "src" / "trellis_box" / "data" / "object_info.json"
    recorded = COMFY_RECORDINGS / "object_info.json"
    assert json.loads(shipped.read_text()) == json.loads(recorded.read_text())


def test_our_output_node_schema_is_derived_from_its_class(info: dict[str, Any]) -> None:
    cls = comfy_nodes.NODE_CLASS_MAPPINGS[workflow.GLB_OUTPUT_CLASS]
    entry = info[workflow.GLB_OUTPUT_CLASS]
    assert entry["input"] == json.loads(json.dumps(cls.INPUT_TYPES()))
    assert entry["input"]["required"]["glb_path"][0] == "STRING"
    assert entry["output_node"] is True


def test_parameter_defaults_are_the_recorded_node_defaults(info: dict[str, Any]) -> None:
    """``max`` is the nodes' own defaults: every parameter in the graph it builds holds the
    recorded schema's default, but the cutout prefix (the node's is "ComfyUI")."""
    built = build(WorkflowOptions(preset="max"), "chair.png")
    checked = []
    for p in workflow.PARAMETERS:
        node = built[p.node]
        spec = dict(workflow.ordered_inputs(info[node["class_type"]]))[p.input]
        if p.name != "cutout_prefix":
            assert node["inputs"][p.input] == spec[1]["default"], p.name
            checked.append(p.name)
    assert len(checked) == len(workflow.PARAMETERS) - 1 == 11


def test_every_preset_value_is_a_parameter_and_max_is_the_node_defaults() -> None:
    assert workflow.preset_values("max") == {"texture_size": 2048, "target_face_num": 2_000_000}
    assert workflow.preset_values("web") == {"texture_size": 1024, "target_face_num": 200_000}
    assert workflow.preset_values("balanced") == {"texture_size": 2048, "target_face_num": 500_000}
    assert WorkflowOptions().preset == workflow.DEFAULT_PRESET == "balanced"
    assert WorkflowOptions(preset="web", texture_size=4096).as_dict() == {
        **WorkflowOptions().as_dict(), "preset": "web", "texture_size": 4096,
        "target_face_num": 200_000}


def test_a_new_parameter_is_one_row_of_the_table(info: dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph and validation pick up a row for an input the table did not offer;
    ``tests/test_generate_cli.py`` shows the option, its help and the resume key do too."""
    default_graph = build(WorkflowOptions(), "a.png")
    add_floaters(monkeypatch)
    assert FLOATERS.kind == "BOOLEAN" and FLOATERS.default_value is True  # from the schema
    assert build(WorkflowOptions(), "a.png") == default_graph
    built = build(WorkflowOptions(remove_floaters=False), "a.png")
    assert built[workflow.POSTPROCESS_NODE]["inputs"]["remove_floaters"] is False
    assert list(built[workflow.POSTPROCESS_NODE]["inputs"]) == list(
        default_graph[workflow.POSTPROCESS_NODE]["inputs"])  # the node's input order is kept
    (problem,) = check(build(WorkflowOptions(remove_floaters=1), "a.png"), info)
    assert (problem.path, problem.parameter, problem.fix) == (
        "prompt.7.inputs.remove_floaters", "remove_floaters",
        "use true or false (parameter `remove_floaters`)")
    assert WorkflowOptions(remove_floaters=False).as_dict()["remove_floaters"] is False


def test_every_parameter_sets_an_input_of_the_graph_and_every_such_input_has_one() -> None:
    graph = build(WorkflowOptions(), "a.png")
    rows = {(p.node, p.input) for p in workflow.PARAMETERS}
    assert len(rows) == len(workflow.PARAMETERS)  # no input set twice
    assert all(p.input in graph[p.node]["inputs"] for p in workflow.PARAMETERS)
    marked = {(node_id, name) for node_id, node in workflow._GRAPH.items()
              for name, value in node["inputs"].items() if value is workflow.SET}
    assert marked == rows | {(workflow.LOAD_IMAGE_NODE, "image")}


@pytest.mark.parametrize(("trace", "seed"),
                         [("01_success.jsonl", 1), ("07_success_with_glb_ui_output.jsonl", 21)])
def test_graph_is_what_the_recorded_runs_sent(trace: str, seed: int) -> None:
    """Nodes 1-9 as recorded from a real ComfyUI; node 10 of trace 07 was a recording-only
    stand-in (RecGLBOutput) with the same input as ours."""
    options = WorkflowOptions(seed=seed, target_face_num=1_000_000, low_vram=False)
    built = build(options, "chair.png")
    sent = _sent_prompt(trace)
    if workflow.GLB_OUTPUT_NODE in sent:
        assert sent[workflow.GLB_OUTPUT_NODE]["class_type"] == "RecGLBOutput"
        sent[workflow.GLB_OUTPUT_NODE]["class_type"] = workflow.GLB_OUTPUT_CLASS
    else:
        del built[workflow.GLB_OUTPUT_NODE]
    assert json.dumps(built) == json.dumps(sent)  # same nodes, same values, same input order


def test_node_ids_name_the_outputs_the_client_reads(graph: dict[str, Any]) -> None:
    assert graph[workflow.GLB_OUTPUT_NODE]["class_type"] == "TrellisBoxGLBOutput"
    assert graph[workflow.GLB_OUTPUT_NODE]["inputs"]["glb_path"] == [workflow.EXPORT_NODE, 0]
    assert graph[workflow.CUTOUT_NODE]["class_type"] == "SaveImage"
    assert graph[workflow.CUTOUT_NODE]["inputs"]["filename_prefix"] == "cutout/Trellis2"
    assert graph[workflow.LOAD_IMAGE_NODE]["inputs"]["image"] == "chair.png"


@pytest.mark.parametrize(("resolution", "pipeline_type"),
                         [("512", "512"), ("1024", "1024_cascade"), ("1536", "1536_cascade")])
@pytest.mark.parametrize("attention", ["xformers", "flash_attn"])
def test_every_resolution_and_backend_builds_a_valid_graph(
        info: dict[str, Any], resolution: str, pipeline_type: str, attention: str) -> None:
    options = WorkflowOptions(resolution=resolution, attention=attention, seed=2**31 - 1, remesh=False,
                              low_vram=False, texture_size=4096, target_face_num=300_000,
                              glb_prefix="jobs/abc", cutout_prefix="jobs/abc-cutout")
    built = build(options, "x.png")
    validate(built, info)
    generator, loader = built[workflow.GENERATE_NODE]["inputs"], built[workflow.LOAD_MODEL_NODE]["inputs"]
    assert generator["pipeline_type"] == pipeline_type
    assert (loader["backend"], loader["low_vram"], generator["seed"]) == (attention, False, 2**31 - 1)
    post = built[workflow.POSTPROCESS_NODE]["inputs"]
    assert (post["texture_size"], post["target_face_num"], post["remesh"]) == (4096, 300_000, False)
    assert built[workflow.EXPORT_NODE]["inputs"]["filename_prefix"] == "jobs/abc"


def test_options_refuse_an_unknown_resolution_and_backend() -> None:
    with pytest.raises(WorkflowInvalidError) as caught:
        WorkflowOptions(resolution="1024_cascade")
    assert str(caught.value) == (
        "unknown resolution '1024_cascade'\n"
        "  resolution sets Trellis2MeshWithVoxelGenerator's pipeline_type; it is one of 512, 1024, 1536.\n"
        "  fix: use one of 512, 1024, 1536 (parameter `resolution`)"
    )
    with pytest.raises(WorkflowInvalidError, match="unknown attention 'sdpa'"):
        WorkflowOptions(attention="sdpa")
    with pytest.raises(WorkflowInvalidError, match="unknown preset 'tiny'"):
        WorkflowOptions(preset="tiny")
    with pytest.raises(WorkflowInvalidError, match="unknown parameter colour"):
        WorkflowOptions(colour="red")
    options = WorkflowOptions(seed=5)
    assert copy.deepcopy(options) == options and options.replace(seed=6).seed == 6
    assert options.seed == 5  # immutable: replace made a new one


# --- validation --------------------------------------------------------------------------------


def test_recorded_invalid_prompt_fails_locally_on_the_input_comfyui_flagged(info: dict[str, Any]) -> None:
    """Trace 03: real ComfyUI answered 200 with node_errors for pipeline_type and ran the rest."""
    sent = _sent_prompt("03_validation_error.jsonl")
    flagged = _recorded_prompt("03_validation_error.jsonl")["response_json"]["node_errors"]
    ((node_id, errors),) = flagged.items()
    name = errors["errors"][0]["extra_info"]["input_name"]
    assert _problems(sent, info) == [(f"prompt.{node_id}.inputs.{name}", "options")]
    with pytest.raises(WorkflowInvalidError) as caught:
        validate(sent, info)
    assert str(caught.value) == (
        "workflow does not match the node schemas: 1 problem; nothing was sent to ComfyUI\n"
        "  prompt.6.inputs.pipeline_type: '2048_cascade' is not one of "
        "['512', '1024', '1024_cascade', '1536_cascade'] (rule: options)\n"
        "    fix: use one of 512, 1024, 1536 (parameter `resolution`)\n"
        "  fix: correct each input named above"
    )
    assert caught.value.exit_code == 2
    assert caught.value.to_dict()["problems"][0]["path"] == "prompt.6.inputs.pipeline_type"


@pytest.mark.parametrize(("node", "name", "value", "rule", "fact", "fix"), [
    ("6", "seed", -1, "min", "-1 is below the minimum 0",
     "use an integer between 0 and 2147483647 (parameter `seed`)"),
    ("6", "seed", 2**31, "max", "2147483648 is above the maximum 2147483647",
     "use an integer between 0 and 2147483647 (parameter `seed`)"),
    ("6", "shape_steps", 12.5, "type", "12.5 is not an integer",
     "use an integer between 1 and 100 (parameter `shape_steps`)"),
    ("6", "texture_steps", True, "type", "True is not an integer",
     "use an integer between 1 and 100 (parameter `texture_steps`)"),
    ("7", "texture_size", 256, "min", "256 is below the minimum 512",
     "use an integer between 512 and 16384 (parameter `texture_size`)"),
    ("7", "target_face_num", 0, "min", "0 is below the minimum 1",
     "use an integer between 1 and 16000000 (parameter `target_face_num`)"),
    ("7", "remesh", 1, "type", "1 is not true or false",
     "use true or false (parameter `remesh`)"),
    ("7", "remesh_band", "wide", "type", "'wide' is not a number", "use a number"),
    ("7", "fill_holes_max_perimeter", 100.0, "max", "100.0 is above the maximum 99.999",
     "use a number between 0.001 and 99.999"),
    ("5", "backend", "sdpa", "options", "'sdpa' is not one of ['flash_attn', 'xformers']",
     "use one of ['flash_attn', 'xformers'] (parameter `attention`)"),
    ("8", "filename_prefix", 7, "type", "7 is not a string", "use a string (parameter `glb_prefix`)"),
    ("1", "image", "", "type", "'' is not a file name", "name an uploaded file"),
    ("4", "image", "photo.png", "link-required", "IMAGE input given the value 'photo.png'",
     'link it to a node output of type IMAGE: ["<node id>", <slot>]'),
])
def test_each_value_rule_names_the_input_the_fact_and_the_fix(
        info: dict[str, Any], graph: dict[str, Any],
        node: str, name: str, value: Any, rule: str, fact: str, fix: str) -> None:
    graph[node]["inputs"][name] = value
    (problem,) = check(graph, info)
    assert (problem.path, problem.rule, problem.fact, problem.fix) == (
        f"prompt.{node}.inputs.{name}", rule, fact, fix)


def test_upload_input_accepts_a_file_the_server_did_not_list_yet(
        info: dict[str, Any], graph: dict[str, Any]) -> None:
    """A live /object_info lists the input folder as it was; the image is uploaded after that."""
    live = copy.deepcopy(info)
    live["LoadImage"]["input"]["required"]["image"][0] = ["older.png"]
    assert check(graph, live) == []


def test_missing_required_input(info: dict[str, Any], graph: dict[str, Any]) -> None:
    del graph["8"]["inputs"]["file_format"]
    (problem,) = check(graph, info)
    assert str(problem) == ("prompt.8.inputs.file_format: required input of Trellis2ExportMesh is missing "
                            "(rule: required)\n  fix: use one of ['glb', 'obj', 'ply', 'stl', '3mf', 'dae']")


def test_optional_input_may_be_left_out(info: dict[str, Any], graph: dict[str, Any]) -> None:
    del graph["8"]["inputs"]["save_file"]
    assert check(graph, info) == []


def test_unknown_input_is_a_typo_comfyui_would_ignore(info: dict[str, Any], graph: dict[str, Any]) -> None:
    graph["5"]["inputs"]["lowvram"] = True
    (problem,) = check(graph, info)
    assert (problem.path, problem.rule) == ("prompt.5.inputs.lowvram", "known-input")
    assert problem.fix == ("remove it; Trellis2LoadModel takes modelname, backend, device, low_vram, "
                           "keep_models_loaded")


def test_unknown_class(info: dict[str, Any], graph: dict[str, Any]) -> None:
    graph["11"] = {"class_type": "Trellis2Nope", "inputs": {}}
    assert _problems(graph, info) == [("prompt.11.class_type", "known-class")]


@pytest.mark.parametrize(("link", "rule", "fact"), [
    (["99", 0], "link-target", "links to node '99', which is not in the graph"),
    (["4", 1], "link-slot", "output slot 1 of node 4 (Trellis2PreProcessImage) does not exist"),
    (["5", 0], "link-type", "node 5 output 0 is TRELLIS2PIPELINE, this input takes IMAGE"),
])
def test_links_are_checked(
        info: dict[str, Any], graph: dict[str, Any], link: list[Any], rule: str, fact: str) -> None:
    graph["6"]["inputs"]["image"] = link
    (problem,) = check(graph, info)
    assert (problem.path, problem.rule, problem.fact) == ("prompt.6.inputs.image", rule, fact)


def test_a_graph_without_output_nodes_is_refused(info: dict[str, Any]) -> None:
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}
    assert _problems(graph, info) == [("prompt", "outputs")]
    assert _problems({}, info) == [("prompt", "shape")]


def test_every_problem_is_reported_at_once(info: dict[str, Any], graph: dict[str, Any]) -> None:
    graph["6"]["inputs"]["seed"] = -5
    graph["7"]["inputs"]["texture_size"] = 99_999
    del graph["8"]["inputs"]["trimesh"]
    assert _problems(graph, info) == [
        ("prompt.6.inputs.seed", "min"),
        ("prompt.7.inputs.texture_size", "max"),
        ("prompt.8.inputs.trimesh", "required"),
    ]


# --- checked-in files and the editor format ----------------------------------------------------


def test_checked_in_api_file_is_what_the_builder_produces() -> None:
    expected = workflow_editor.render(build(WorkflowOptions(), "example.png"))
    assert (WORKFLOWS / workflow_editor.API_FILE).read_text() == expected, \
        "regenerate with `trellis-box workflow export workflows`"


def test_checked_in_editor_file_is_the_converted_graph(info: dict[str, Any]) -> None:
    editor = workflow_editor.to_editor(build(WorkflowOptions(), "example.png"), info)
    expected = workflow_editor.render(editor)
    assert (WORKFLOWS / workflow_editor.EDITOR_FILE).read_text() == expected, \
        "regenerate with `trellis-box workflow export workflows`"


def test_editor_file_converts_back_to_the_api_file(info: dict[str, Any]) -> None:
    editor = json.loads((WORKFLOWS / workflow_editor.EDITOR_FILE).read_text())
    api = json.loads((WORKFLOWS / workflow_editor.API_FILE).read_text())
    assert workflow_editor.from_editor(editor, info) == api
    validate(api, info)


def test_editor_file_follows_the_frontend_format(info: dict[str, Any]) -> None:
    """What ComfyUI_frontend's workflow schema (zod) requires, and what LiteGraph relies on when it
    reconnects links: each link is named by its source output and by its target input, with the
    same type."""
    editor = json.loads((WORKFLOWS / workflow_editor.EDITOR_FILE).read_text())
    assert editor["version"] == 0.4
    nodes = {n["id"]: n for n in editor["nodes"]}
    assert editor["last_node_id"] == max(nodes) == 10
    assert editor["last_link_id"] == max(link[0] for link in editor["links"]) == len(editor["links"])
    for node in nodes.values():
        assert {"id", "type", "pos", "size", "flags", "order", "mode", "properties"} <= node.keys()
        assert len(node["pos"]) == 2 and len(node["size"]) == 2
        assert node["properties"]["Node name for S&R"] == node["type"]
    assert sorted(n["order"] for n in nodes.values()) == list(range(len(nodes)))
    for link_id, source, slot, target, target_slot, kind in editor["links"]:
        output = nodes[source]["outputs"][slot]
        target_input = nodes[target]["inputs"][target_slot]
        assert link_id in output["links"] and target_input["link"] == link_id
        assert output["type"] == target_input["type"] == kind
        assert nodes[source]["order"] < nodes[target]["order"]


def test_editor_file_loads_in_litegraph_unchanged(info: dict[str, Any], tmp_path: Path) -> None:
    """LiteGraph (the editor's graph library) reads every link, socket and widget value of the
    checked-in file and saves the same graph back, without a warning."""
    saved, stderr = load_and_save(WORKFLOWS / workflow_editor.EDITOR_FILE, info, tmp_path)
    ours = json.loads((WORKFLOWS / workflow_editor.EDITOR_FILE).read_text())
    assert stderr == ""
    assert (saved["last_node_id"], saved["last_link_id"]) == (ours["last_node_id"], ours["last_link_id"])
    assert saved["links"] == ours["links"]
    by_id = {n["id"]: n for n in saved["nodes"]}
    assert sorted(by_id) == sorted(n["id"] for n in ours["nodes"])
    for node in ours["nodes"]:
        loaded = by_id[node["id"]]
        assert loaded["type"] == node["type"]
        assert [(i["name"], i["type"], i["link"]) for i in loaded.get("inputs", [])] == \
            [(i["name"], i["type"], i["link"]) for i in node["inputs"]]
        assert [(o["name"], o["type"], o["links"]) for o in loaded.get("outputs", [])] == \
            [(o["name"], o["type"], o["links"]) for o in node["outputs"]]
        assert loaded.get("widgets_values", []) == node["widgets_values"], node["type"]


def test_editor_widget_values_follow_schema_order_with_frontend_extras() -> None:
    editor = json.loads((WORKFLOWS / workflow_editor.EDITOR_FILE).read_text())
    nodes = {n["id"]: n for n in editor["nodes"]}
    assert nodes[1]["widgets_values"] == ["example.png", "image"]  # the upload widget's value
    assert nodes[5]["widgets_values"] == ["TRELLIS.2-4B", "xformers", "cuda", True, True]
    # seed, then the "control after generate" value, then the rest in schema order
    assert nodes[6]["widgets_values"] == [0, "fixed", "1024_cascade", 12, 12, 12, 49152, 4, 32, True, True]
    assert nodes[8]["widgets_values"] == ["3D/Trellis2", "glb", True]  # optional save_file last


def test_muted_bypassed_and_note_nodes_are_left_out(info: dict[str, Any]) -> None:
    editor = workflow_editor.to_editor(build(WorkflowOptions(), "a.png"), info)
    for node in editor["nodes"]:
        if node["id"] == 9:
            node["mode"] = 4
    editor["nodes"].append({"id": 11, "type": "Note", "pos": [0, 0], "size": [200, 80], "flags": {},
                            "order": 10, "mode": 0, "properties": {}, "widgets_values": ["why"]})
    graph = workflow_editor.from_editor(copy.deepcopy(editor), info)
    assert workflow.CUTOUT_NODE not in graph and workflow.GLB_OUTPUT_NODE in graph
    assert "11" not in graph


def test_editor_conversion_refuses_what_is_not_an_editor_file(info: dict[str, Any]) -> None:
    with pytest.raises(WorkflowInvalidError) as caught:
        workflow_editor.from_editor({"nodes": "nope"}, info)
    assert str(caught.value).startswith("not an editor-format workflow")


# --- the command ---------------------------------------------------------------------------------


def test_export_command_writes_the_checked_in_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "export", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == [
        str(tmp_path / workflow_editor.API_FILE), str(tmp_path / workflow_editor.EDITOR_FILE)]
    for name in (workflow_editor.API_FILE, workflow_editor.EDITOR_FILE):
        assert (tmp_path / name).read_text() == (WORKFLOWS / name).read_text()


@pytest.mark.parametrize("name", [workflow_editor.API_FILE, workflow_editor.EDITOR_FILE])
def test_check_command_accepts_both_checked_in_formats(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "check", str(WORKFLOWS / name), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["nodes"] == 10


def test_check_command_reports_a_bad_input_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api = json.loads((WORKFLOWS / workflow_editor.API_FILE).read_text())
    api["6"]["inputs"]["pipeline_type"] = "2048_cascade"
    path = tmp_path / "bad.api.json"
    path.write_text(json.dumps(api))
    assert main(["workflow", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "prompt.6.inputs.pipeline_type: '2048_cascade' is not one of" in err
    assert "fix: use one of 512, 1024, 1536 (parameter `resolution`)" in err


# --- against the ComfyUI stand-in -----------------------------------------------------------------


async def test_checked_in_api_workflow_surfaces_the_glb(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The checked-in file, with an uploaded image, runs end to end: the server's own
    /object_info accepts it (read before the upload, so the image is not in LoadImage's list yet,
    and still valid), our output node puts the GLB in /history, and the GLB passes Khronos
    gltf-validator."""
    from PIL import Image

    server = comfy_standin(exec_seconds=0.05)
    photo = Image.new("RGB", (64, 48), (255, 255, 255))
    photo.paste((90, 140, 200), (16, 8, 48, 40))  # an object on a plain background
    photo.save(tmp_path / "photo.png")
    image = images.normalise(tmp_path / "photo.png")
    graph = json.loads((WORKFLOWS / workflow_editor.API_FILE).read_text())
    async with ComfyClient(server.url) as comfy:
        live = await comfy.http.object_info()
        # What the server derives from our class is what we derive from it offline.
        assert live[workflow.GLB_OUTPUT_CLASS] == recorded_object_info()[workflow.GLB_OUTPUT_CLASS]
        graph[workflow.LOAD_IMAGE_NODE]["inputs"]["image"] = await comfy.http.upload_bytes(image.png, ".png")
        validate(graph, live)
        result = await comfy.run(graph, timeout=120)
        (glb_ref,) = result.files(workflow.GLB_OUTPUT_NODE, "3d")
        (cutout_ref,) = result.files(workflow.CUTOUT_NODE, "images")
        await comfy.http.download(glb_ref, tmp_path / "out.glb")
        await comfy.http.download(cutout_ref, tmp_path / "out.cutout.png")
    assert glb_ref.filename.endswith(".glb")
    assert glb.glb_stats(tmp_path / "out.glb").faces > 0
    assert validate_glb(tmp_path / "out.glb")["issues"]["numErrors"] == 0
    assert Image.open(tmp_path / "out.cutout.png").format == "PNG"

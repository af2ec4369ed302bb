"""The batch engine's pure decisions: input expansion, names, resume keys, finished reports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.cloud_support import Aws, HeldRequest
from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.launcher import StandinServer
from tests.extra_parameter import add_floaters
from tests.gltf_validator import validate_glb
from tests.photos import object_photo
from trellis_box.batch import engine as batch
from trellis_box.batch import files as batch_files
from trellis_box.batch.report import JobReport
from trellis_box.comfyui import protocol, workflow
from trellis_box.comfyui.client import ComfyClient, Connection, Timeouts
from trellis_box.comfyui.workflow import GLB_OUTPUT_NODE, LOAD_MODEL_NODE, WorkflowOptions, build
from trellis_box.errors import (
    ComfyUnreachableError,
    ImageInputError,
    NoObjectFoundError,
    OutOfMemoryError,
    OutputGoneError,
    PromptNodeError,
    ResolutionUnsupportedError,
    UsageError,
)
from trellis_box.serve.warmup import warmup_options
from trellis_box.storage.local import LocalStorage
from trellis_box.storage.s3 import S3Storage

pytestmark = pytest.mark.timeout(120)


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def test_directories_expand_to_their_images_in_order(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "b.png")
    _png(tmp_path / "in" / "a.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    items = batch_files.plan([tmp_path / "in"])
    assert [i.name for i in items] == ["a", "b"]


def test_our_cutouts_are_not_inputs_when_the_output_is_the_input_folder(tmp_path: Path) -> None:
    _png(tmp_path / "chair.png")
    _png(tmp_path / "chair.cutout.png")
    assert [i.name for i in batch_files.plan([tmp_path], out_dir=tmp_path)] == ["chair"]
    assert len(batch_files.plan([tmp_path], out_dir=tmp_path / "elsewhere")) == 2


def test_an_input_named_twice_runs_once(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png")
    assert len(batch_files.plan([a, tmp_path / "." / "a.png", tmp_path])) == 1


def test_same_stem_in_two_places_gets_two_stable_names(tmp_path: Path) -> None:
    one, two = _png(tmp_path / "x" / "chair.png"), _png(tmp_path / "y" / "chair.jpg")
    first = [i.name for i in batch_files.plan([one, two])]
    assert len(set(first)) == 2 and all(n.startswith("chair-") for n in first)
    # Stable from run to run and whatever the order, so resume finds its reports.
    assert sorted(first) == sorted(i.name for i in batch_files.plan([two, one]))


def test_nothing_to_do_is_a_usage_error_naming_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images to generate from") as info:
        batch_files.plan([tmp_path / "empty"])
    assert str(tmp_path / "empty") in str(info.value)


def test_a_missing_file_is_kept_so_it_gets_its_own_error(tmp_path: Path) -> None:
    items = batch_files.plan([tmp_path / "gone.png"])
    assert [i.name for i in items] == ["gone"]


def test_the_key_changes_with_the_image_and_with_any_parameter() -> None:
    base = batch_files.job_key("aa", WorkflowOptions())
    assert base == batch_files.job_key("aa", WorkflowOptions())
    assert base != batch_files.job_key("bb", WorkflowOptions())
    assert base != batch_files.job_key("aa", WorkflowOptions(seed=1))
    assert base != batch_files.job_key("aa", WorkflowOptions(texture_size=1024))
    # A preset only names values: the same values are the same job.
    assert batch_files.job_key("aa", WorkflowOptions(preset="web")) == batch_files.job_key(
        "aa", WorkflowOptions(preset="max", texture_size=1024, target_face_num=200_000))


#: The defaults version 2 keys are made against. Changing one changes what every earlier key
#: means: bump ``KEY_VERSION`` with it (and this table). New parameters need no entry.
KEY_V2_DEFAULTS = {
    "resolution": "1024", "seed": 0, "sparse_structure_steps": 12, "shape_steps": 12,
    "texture_steps": 12, "texture_size": 2048, "target_face_num": 2_000_000, "remesh": True,
    "low_vram": True, "attention": "xformers", "glb_prefix": "3D/Trellis2",
    "cutout_prefix": "cutout/Trellis2",
}


def test_the_defaults_a_key_is_made_against_do_not_change_within_a_key_version() -> None:
    assert batch_files.KEY_VERSION == 2
    defaults = {p.name: p.default_value for p in workflow.PARAMETERS}
    assert {name: defaults[name] for name in KEY_V2_DEFAULTS} == KEY_V2_DEFAULTS


def test_a_parameter_added_at_its_default_keeps_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[dict[str, Any]] = [{}, {"preset": "max"}, {"seed": 7, "resolution": "512"}]
    before = [batch_files.job_key("aa", WorkflowOptions(**run)) for run in runs]
    add_floaters(monkeypatch)
    assert [batch_files.job_key("aa", WorkflowOptions(**run)) for run in runs] == before
    assert batch_files.job_key("aa", WorkflowOptions(remove_floaters=True)) == before[0]
    assert batch_files.job_key("aa", WorkflowOptions(remove_floaters=False)) != before[0]


def test_reports_with_version_1_keys_stay_done_for_the_same_run(tmp_path: Path) -> None:
    """Version 1 (before ``key_version``) hashed every parameter; its outputs are kept for the
    same values and re-run for any other."""
    options = WorkflowOptions(preset="max", seed=3)
    v1 = "sha256:" + hashlib.sha256(json.dumps(
        {"image": "aa", "options": {k: v for k, v in options.as_dict().items() if k != "preset"}},
        sort_keys=True).encode()).hexdigest()
    assert batch_files.legacy_key_v1("aa", options) == v1
    (tmp_path / "a.json").write_text(json.dumps({**OLD_OK_REPORT, "key": v1}))
    (tmp_path / "a.glb").write_bytes(b"glTF")
    (tmp_path / "a.cutout.png").write_bytes(b"png")
    key = batch_files.job_key("aa", options)
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", key, v1) is not None
    other = WorkflowOptions(preset="max", seed=4)
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", batch_files.job_key("aa", other),
                                       batch_files.legacy_key_v1("aa", other)) is None


#: An ok report and a failed one exactly as trellis-box 0.x wrote them before reports were typed:
#: resume must keep reading them, and a report written now has the same shape.
OLD_OK_REPORT: dict[str, Any] = {
    "trellis_box_version": "0.1.0", "status": "ok", "key": "sha256:k",
    "input": {"path": "/in/a.png", "sha256": "ab", "width": 32, "height": 32, "mode": "RGB",
              "changes": ["RGBA converted to RGB"]},
    "parameters": {"resolution": "1024", "seed": 0}, "resolution": "512", "low_vram": True,
    "seed": 0, "server": {"url": "http://127.0.0.1:8188", "comfyui_version": "0.3.64"},
    "prompt_id": "p-1",
    "timings": {"client_seconds": 3.5, "server_ms": 3000,
                "nodes": [{"node": "6", "class_type": "Trellis2MeshWithVoxelGenerator",
                           "seconds": 2.9}],
                "cached_nodes": ["2"]},
    "glb": {"bytes": 4, "vertices": 8, "faces": 12, "meshes": 1, "materials": 1,
            "textures": [[64, 64]], "max_texture_size": 64},
    "files": {"glb": "/out/a.glb", "cutout": "/out/a.cutout.png"},
    "export_rerun": {"missing": "3D/Trellis2_00001_.glb", "stale_prompt_id": "p-0"},
}
OLD_FAILED_REPORT: dict[str, Any] = {
    "trellis_box_version": "0.1.0", "status": "failed", "key": None, "input": {"path": "/in/b.png"},
    "parameters": {"resolution": "1024"}, "server": {"url": "http://127.0.0.1:8188"},
    "prompt_id": None, "error": {"error": "image-invalid", "message": "cannot use image /in/b.png"},
}


#: As written since key version 2: what ran in ``parameters``, the request beside it.
V2_OK_REPORT: dict[str, Any] = {
    **{k: v for k, v in OLD_OK_REPORT.items() if k not in ("key", "input", "parameters")},
    "key": "sha256:k2", "key_version": 2, "input": OLD_OK_REPORT["input"],
    "parameters": {"resolution": "512", "seed": 0},
    "requested": {"resolution": "1024", "seed": 0},
}
V2_OK_REPORT = {k: V2_OK_REPORT[k] for k in (
    "trellis_box_version", "status", "key", "key_version", "input", "parameters", "requested",
    "resolution", "low_vram", "seed", "server", "prompt_id", "timings", "glb", "files",
    "export_rerun")}


@pytest.mark.parametrize("data", [OLD_OK_REPORT, OLD_FAILED_REPORT, V2_OK_REPORT],
                         ids=["ok", "failed", "ok-v2"])
def test_a_report_reads_back_and_writes_the_format_resume_has_always_read(
        data: dict[str, Any]) -> None:
    report = JobReport.from_json(data)
    assert report.to_json() == data
    assert list(report.to_json()) == list(data)  # same keys, same order


def test_a_report_counts_as_finished_only_with_its_files_and_the_same_key(tmp_path: Path) -> None:
    report = {**OLD_OK_REPORT, "key": "sha256:k"}
    (tmp_path / "a.json").write_text(json.dumps(report))
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:k") is None  # no GLB yet
    (tmp_path / "a.glb").write_bytes(b"glTF")
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:k") is None  # no cutout yet
    (tmp_path / "a.cutout.png").write_bytes(b"png")
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:k") == JobReport.from_json(report)
    (tmp_path / "a.glb").write_bytes(b"glT")  # cut short since the report was written
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:k") is None
    (tmp_path / "a.glb").write_bytes(b"glTF")
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:other") is None
    (tmp_path / "a.json").write_text(json.dumps({**report, "status": "failed"}))
    assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:k") is None
    for broken in ("{truncated", "[]", json.dumps({**report, "glb": {"bytes": 4}})):
        (tmp_path / "a.json").write_text(broken)
        assert batch_files.finished_report(LocalStorage(tmp_path), "a", "sha256:k") is None


# --- against the stand-in ------------------------------------------------------------------------

FAST = Timeouts(poll=1.0, reconnect=30.0)
GENERATOR = "Trellis2MeshWithVoxelGenerator"


def _start(comfy_standin: StartStandin, tmp_path: Path, **options: Any) -> StandinServer:
    """A stand-in whose node pack reads a state file of this test only (none unless given):
    a state file left in the default place by anything else must not decide resolutions."""
    env = options.pop("env", {"TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")})
    return comfy_standin(env=env, **options)


def _photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    return [object_photo(folder / f"object-{i}.png", i) for i in range(start, start + count)]


async def _eventually(check: Callable[[], Awaitable[bool]], deadline: float = 30.0) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), deadline)


async def _queue_empty(url: str) -> bool:
    async with ComfyClient(url) as comfy:
        state = await comfy.http.queue()
    return not state.running and not state.pending


def _opts(out: Path, **kwargs: Any) -> batch.BatchOptions:
    flow = kwargs.pop("workflow", WorkflowOptions())
    return batch.BatchOptions(out_dir=out, workflow=flow, **kwargs)


async def test_a_folder_becomes_glb_cutout_and_report_per_image(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, progress_steps=6)
    _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out), timeouts=FAST)
    assert [o.status for o in report.outcomes] == ["ok"] * 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"object-{i}{ext}" for i in range(3) for ext in (".glb", ".cutout.png", ".json"))
    data = json.loads((out / "object-0.json").read_text())
    assert data["status"] == "ok" and data["key"].startswith("sha256:")
    assert data["parameters"] == WorkflowOptions().as_dict() and data["seed"] == 0
    assert data["resolution"] == "1024"
    assert data["server"]["comfyui_version"] == "0.3.64" and data["server"]["url"] == server.url
    # Client-side times of websocket arrivals: present for every node that ran, never negative.
    classes = {n["class_type"]: n["seconds"] for n in data["timings"]["nodes"]}
    assert {GENERATOR, "TrellisBoxGLBOutput"} <= set(classes), classes
    assert min(classes.values()) >= 0
    assert sum(classes.values()) <= data["timings"]["client_seconds"] + 0.01
    assert data["glb"]["faces"] > 0
    assert data["glb"]["bytes"] == (out / "object-0.glb").stat().st_size
    assert data["input"]["sha256"] and data["input"]["path"].endswith("object-0.png")
    issues = validate_glb(out / "object-1.glb")["issues"]
    assert issues["numErrors"] == 0, issues["messages"]


async def test_two_prompts_wait_behind_the_running_one_and_never_more(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The GPU never waits for an upload: while one image runs, two more are queued."""
    server = _start(comfy_standin, tmp_path, exec_seconds=1.5)
    _photos(tmp_path / "in", 6)
    seen: list[tuple[int, int]] = []
    finished = asyncio.Event()

    async def sample_queue() -> None:
        async with ComfyClient(server.url) as comfy:
            while not finished.is_set():
                state = await comfy.http.queue()
                seen.append((len(state.running), len(state.pending)))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(finished.wait(), 0.05)

    sampler = asyncio.create_task(sample_queue())
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=FAST)
    finished.set()
    await sampler
    assert [o.status for o in report.outcomes] == ["ok"] * 6
    assert (1, 2) in seen, seen
    assert max(pending for _, pending in seen) == 2, seen


async def test_a_bad_image_among_good_ones_fails_alone(comfy_standin: StartStandin,
                                                       tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    good = _photos(tmp_path / "in", 2)
    truncated = tmp_path / "in" / "broken.png"
    truncated.write_bytes(good[0].read_bytes()[:60])
    (tmp_path / "in" / "notes.jpg").write_text("not an image")
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=FAST)
    status = {o.item.name: o.status for o in report.outcomes}
    assert status == {"broken": "failed", "notes": "failed", "object-0": "ok", "object-1": "ok"}
    errors = {o.item.name: o.error for o in report.outcomes if o.error}
    assert isinstance(errors["notes"], ImageInputError)
    assert str(errors["notes"]).startswith(f"cannot use image {tmp_path / 'in' / 'notes.jpg'}")
    failed = json.loads((tmp_path / "out" / "broken.json").read_text())
    assert failed["status"] == "failed" and failed["error"]["error"] == "image-invalid"
    assert not (tmp_path / "out" / "broken.glb").exists()


async def test_a_picture_without_an_object_is_said_to_have_none(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The pinned nodes fail on an empty cutout in SaveImage ("cannot write empty image"); the
    error must name the input and say that no object was found in it, and what to try."""
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    _photos(tmp_path / "in", 1)
    blank = _png(tmp_path / "in" / "wall.png", (200, 200, 200))
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=FAST)
    assert [o.status for o in report.outcomes] == ["ok", "failed"]
    error = report.outcomes[1].error
    assert isinstance(error, NoObjectFoundError), error
    assert error.message.startswith(f"no object found in {blank}: background removal")
    assert "node 9 (SaveImage) failed: cannot write empty image" in str(error)
    assert "fix: use a photo of one object that stands out from a plain background" in str(error)
    written = json.loads((tmp_path / "out" / "wall.json").read_text())
    assert written["error"]["error"] == "no-object-found" and written["error"]["input"] == str(blank)


async def test_node_errors_fail_each_image_and_the_batch_goes_on(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """Finding 2: a server whose generator takes seeds up to 5 answers seed 7 with 200 and
    node_errors; each image is a failure (not the cutout-only success ComfyUI reports)."""
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    server.stop()
    schema_file = server.root / "standin_object_info.json"
    schema = json.loads(schema_file.read_text())
    schema[GENERATOR]["input"]["required"]["seed"][1]["max"] = 5
    schema_file.write_text(json.dumps(schema))
    server.start()
    _photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    report = await batch.run_batch(server.url, [tmp_path / "in"],
                                   _opts(out, workflow=WorkflowOptions(seed=7)), timeouts=FAST)
    assert [o.status for o in report.outcomes] == ["failed", "failed"]
    for o in report.outcomes:
        assert isinstance(o.error, PromptNodeError)
        assert str(o.error).startswith(f"ComfyUI rejected prompt.6.inputs.seed ({GENERATOR})")
    assert not list(out.glob("*.glb"))
    await _eventually(lambda: _queue_empty(server.url))
    again = await batch.run_batch(server.url, [tmp_path / "in"],
                                  _opts(out, workflow=WorkflowOptions(seed=3)), timeouts=FAST)
    assert [o.status for o in again.outcomes] == ["ok", "ok"]


async def test_a_rerun_skips_what_is_done_and_redoes_what_changed(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    _photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    await batch.run_batch(server.url, [tmp_path / "in"], _opts(out), timeouts=FAST)
    made = len(list((server.output_dir / "3D").iterdir()))
    again = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out), timeouts=FAST)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert len(list((server.output_dir / "3D").iterdir())) == made  # nothing ran
    object_photo(tmp_path / "in" / "object-1.png", 9)  # new content under the same name
    changed = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out), timeouts=FAST)
    assert [o.status for o in changed.outcomes] == ["skipped", "ok"]
    reseeded = await batch.run_batch(server.url, [tmp_path / "in"],
                                     _opts(out, workflow=WorkflowOptions(seed=4)), timeouts=FAST)
    assert [o.status for o in reseeded.outcomes] == ["ok", "ok"]
    assert json.loads((out / "object-0.json").read_text())["seed"] == 4


async def test_an_interrupted_batch_keeps_what_finished_and_resumes(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=1.0)
    _photos(tmp_path / "in", 5)
    out = tmp_path / "out"
    first_done = asyncio.Event()

    def on_event(event: batch.Event) -> None:
        if isinstance(event, batch.Done) and event.outcome.status == "ok":
            first_done.set()

    task = asyncio.create_task(batch.run_batch(server.url, [tmp_path / "in"], _opts(out),
                                               timeouts=FAST, on_event=on_event))
    await asyncio.wait_for(first_done.wait(), 60)
    task.cancel()
    report = await task
    assert report.interrupted
    finished = [o.item.name for o in report.outcomes if o.status == "ok"]
    assert finished and len(finished) < 5
    assert {o.status for o in report.outcomes} <= {"ok", "interrupted"}
    await _eventually(lambda: _queue_empty(server.url))
    with urllib.request.urlopen(f"{server.url}/history", timeout=10) as response:
        ran = [h["status"]["status_str"] for h in json.load(response).values()]
    # Our queued prompts were withdrawn and the running one interrupted, not left to run.
    assert ran.count("success") <= len(finished) + 1 and len(ran) < 5
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    server.set_faults(exec_seconds=0.1)
    resumed = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out), timeouts=FAST)
    assert sorted(o.item.name for o in resumed.outcomes if o.status == "skipped") == sorted(finished)
    assert all(o.status in ("ok", "skipped") for o in resumed.outcomes)
    assert len(list(out.glob("*.glb"))) == 5


async def test_a_cancel_while_a_prompt_is_being_queued_withdraws_that_prompt_too(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The server has queued the prompt, its answer (the prompt's id) is on its way: a cancel
    then must not leave that prompt to run for nobody."""
    server = _start(comfy_standin, tmp_path, exec_seconds=60, queue_reply_delay=2.0)
    _photos(tmp_path / "in", 1)

    async def queued() -> bool:
        assert not task.done(), task.result()
        return not await _queue_empty(server.url)

    task = asyncio.create_task(batch.run_batch(server.url, [tmp_path / "in"],
                                               _opts(tmp_path / "out"), timeouts=FAST))
    await _eventually(queued)
    task.cancel()
    report = await task
    assert report.interrupted
    assert [o.status for o in report.outcomes] == ["interrupted"]
    await _eventually(lambda: _queue_empty(server.url), deadline=10)


@dataclass
class _HeldUpload:
    server: StandinServer
    bucket: str
    relay: HeldRequest
    #: The file whose upload the relay holds.
    name: str
    task: asyncio.Task[batch.BatchReport]

    async def cancel_then_let_through(self) -> batch.BatchReport:
        """Cancel the run: our prompts go at once, with the upload still held, and the run
        waits for that upload. Then let it through: the run's report."""
        self.task.cancel()
        await _eventually(lambda: _queue_empty(self.server.url), deadline=15)
        assert not self.task.done(), (
            f"the run ended before the upload of {self.name} did: "
            f"{[(o.item.name, o.status) for o in self.task.result().outcomes]}")
        self.relay.let_through()
        return await self.task

    async def resume(self, tmp_path: Path) -> dict[str, str]:
        """A second run to the same prefix, as resume: each input's status."""
        resumed = await batch.run_batch(
            self.server.url, [tmp_path / "in"],
            _opts(tmp_path / "staging-2", outputs=S3Storage(self.bucket, "out")), timeouts=FAST)
        return {o.item.name: o.status for o in resumed.outcomes}


@contextlib.asynccontextmanager
async def _upload_held(aws: Aws, comfy_standin: StartStandin, tmp_path: Path, *, inputs: int,
                       exec_seconds: float, once_done: set[str],
                       name: str = "object-1.glb") -> AsyncIterator[_HeldUpload]:
    """A batch of ``inputs`` images (and whatever else ``in/`` holds) to ``s3://BUCKET/out``,
    running, with the upload of ``out/<name>`` held by a relay in front of moto and the inputs of
    ``once_done`` ended ok."""
    server = _start(comfy_standin, tmp_path, exec_seconds=exec_seconds)
    _photos(tmp_path / "in", inputs)
    bucket = aws.bucket()
    done: set[str] = set()

    def on_event(event: batch.Event) -> None:
        if isinstance(event, batch.Done) and event.outcome.status == "ok":
            done.add(event.item.name)

    async def held() -> bool:
        assert not relay.ran_out.is_set(), (
            f"the upload of {name} was held until the relay gave up (ok so far: {sorted(done)}): "
            "the batch waited for it instead of going on (a blocked event loop, or inputs queued "
            "behind it)")
        assert not task.done(), task.result()
        return done == once_done and relay.holding.is_set()

    with HeldRequest(aws.endpoint_url, f"PUT /{bucket}/out/{name} ".encode()) as relay:
        outputs = S3Storage(bucket, "out", client=Aws(relay.url).client("s3"))
        task = asyncio.create_task(batch.run_batch(
            server.url, [tmp_path / "in"], _opts(tmp_path / "staging", outputs=outputs),
            timeouts=FAST, on_event=on_event))
        # Longer than the relay's hold: a blocked loop runs this check again once the hold ends.
        await _eventually(held, deadline=45)
        yield _HeldUpload(server, bucket, relay, name, task)


async def test_an_upload_to_s3_that_fails_after_a_cancel_leaves_its_input_to_redo(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # One attempt: boto3 would retry the dropped upload four more times (each dropped too).
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    async with _upload_held(aws, comfy_standin, tmp_path, inputs=3, exec_seconds=0.1,
                            once_done={"object-0", "object-2"}) as held:
        # task.cancel() cancels, before it returns, the job's wait on its upload: the job sees
        # the cancel before the upload fails.
        held.task.cancel()
        held.relay.drop()
        report = await held.task
    assert report.interrupted
    assert {o.item.name: o.status for o in report.outcomes} == {
        "object-0": "ok", "object-1": "interrupted", "object-2": "ok"}
    # Nothing of it in the store: not the GLB whose upload broke, nor the files after it.
    assert aws.keys(held.bucket, "out/object-1") == []
    assert await held.resume(tmp_path) == {
        "object-0": "skipped", "object-1": "ok", "object-2": "skipped"}
    assert json.loads(aws.get(f"s3://{held.bucket}/out/object-1.json"))["status"] == "ok"


async def test_an_upload_to_s3_in_flight_at_a_cancel_lands_and_our_prompts_go_meanwhile(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The upload thread cannot be stopped: its input is done, in the run's report as in the
    store, however many inputs are cancelled with it. Our prompts are withdrawn without waiting
    for it (SIGTERM from docker stop or AWS Batch kills after a grace period)."""
    async with _upload_held(aws, comfy_standin, tmp_path, inputs=4, exec_seconds=2.0,
                            once_done={"object-0"}) as held:
        # object-2 runs, object-3 waits: now a step a second, so neither ends unless withdrawn.
        held.server.set_faults(exec_seconds=36.0)
        report = await held.cancel_then_let_through()
    assert report.interrupted
    assert {o.item.name: o.status for o in report.outcomes} == {
        "object-0": "ok", "object-1": "ok", "object-2": "interrupted", "object-3": "interrupted"}
    assert aws.keys(held.bucket, "out/object-1") == [
        f"out/object-1{ext}" for ext in (".cutout.png", ".glb", ".json")]
    landed = json.loads(aws.get(f"s3://{held.bucket}/out/object-1.json"))
    assert len(aws.get(f"s3://{held.bucket}/out/object-1.glb")) == landed["glb"]["bytes"]  # whole
    with urllib.request.urlopen(f"{held.server.url}/history", timeout=10) as response:
        ran = [h["status"]["status_str"] for h in json.load(response).values()]
    assert ran.count("success") == 2, ran
    held.server.set_faults(exec_seconds=0.1)
    assert await held.resume(tmp_path) == {
        "object-0": "skipped", "object-1": "skipped", "object-2": "ok", "object-3": "ok"}


def _not_an_image(folder: Path) -> None:
    """``in/broken.png``: it fails at its check, before anything is queued, and sorts first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.png").write_bytes(b"not an image")


async def test_a_failed_inputs_report_upload_held_in_s3_stops_no_other_input(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path) -> None:
    _not_an_image(tmp_path / "in")
    async with _upload_held(aws, comfy_standin, tmp_path, inputs=2, exec_seconds=0.1,
                            once_done={"object-0", "object-1"}, name="broken.json") as held:
        assert aws.keys(held.bucket, "out/broken") == []
        held.relay.let_through()
        report = await held.task
    assert {o.item.name: o.status for o in report.outcomes} == {
        "broken": "failed", "object-0": "ok", "object-1": "ok"}
    landed = json.loads(aws.get(f"s3://{held.bucket}/out/broken.json"))
    assert landed["status"] == "failed" and landed["error"]["error"] == "image-invalid"


async def test_inputs_that_failed_on_the_server_free_their_slots_before_their_reports_land(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path) -> None:
    """A failed input's report may take long to reach the output storage: the worker it ran on
    takes the next input meanwhile. Every report upload is held here; with the slots (two per
    worker) waiting on them, only two of the four inputs would ever reach the server."""
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, fail_node=GENERATOR)
    _photos(tmp_path / "in", 4)
    bucket = aws.bucket()
    with HeldRequest(aws.endpoint_url, f"PUT /{bucket}/out/object-".encode()) as relay:
        outputs = S3Storage(bucket, "out", client=Aws(relay.url).client("s3"))
        task = asyncio.create_task(batch.run_batch(
            server.url, [tmp_path / "in"], _opts(tmp_path / "staging", outputs=outputs),
            timeouts=FAST))

        async def all_ran() -> bool:
            assert not relay.ran_out.is_set(), "inputs waited for the held report uploads"
            with urllib.request.urlopen(f"{server.url}/history", timeout=10) as response:
                return len(json.load(response)) == 4

        await _eventually(all_ran, deadline=15)
        assert aws.keys(bucket, "out/") == [] and not task.done()
        relay.let_through()
        report = await task
    assert [o.status for o in report.outcomes] == ["failed"] * 4
    assert len(aws.keys(bucket, "out/")) == 4


async def test_a_cancel_during_a_failed_inputs_report_upload_withdraws_at_once_and_lets_it_land(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path) -> None:
    """As for a finished input's files: our prompts go without waiting for the upload, the run
    waits for it, and its report in the run says what the bucket says."""
    _not_an_image(tmp_path / "in")
    async with _upload_held(aws, comfy_standin, tmp_path, inputs=3, exec_seconds=36.0,
                            once_done=set(), name="broken.json") as held:
        async def all_queued() -> bool:
            assert not held.relay.ran_out.is_set(), "the images waited for broken's report upload"
            async with ComfyClient(held.server.url) as comfy:
                state = await comfy.http.queue()
            return len(state.running) + len(state.pending) == 3

        await _eventually(all_queued)
        report = await held.cancel_then_let_through()
    assert report.interrupted
    assert {o.item.name: o.status for o in report.outcomes} == {
        "broken": "failed", "object-0": "interrupted", "object-1": "interrupted",
        "object-2": "interrupted"}
    assert json.loads(aws.get(f"s3://{held.bucket}/out/broken.json"))["status"] == "failed"
    assert aws.keys(held.bucket, "out/object") == []
    held.server.set_faults(exec_seconds=0.1)
    assert await held.resume(tmp_path) == {
        "broken": "failed", "object-0": "ok", "object-1": "ok", "object-2": "ok"}


async def test_a_server_restart_mid_batch_loses_no_image(comfy_standin: StartStandin,
                                                         tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.5)
    _photos(tmp_path / "in", 4)
    first_done = asyncio.Event()

    def on_event(event: batch.Event) -> None:
        if isinstance(event, batch.Done):
            first_done.set()

    async def restart_after_first() -> None:
        await first_done.wait()
        await asyncio.to_thread(server.restart)

    restarter = asyncio.create_task(restart_after_first())
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=FAST, on_event=on_event)
    await restarter
    assert [o.status for o in report.outcomes] == ["ok"] * 4, [str(o.error) for o in report.failed]
    assert len(list((tmp_path / "out").glob("*.glb"))) == 4


async def test_a_server_that_stays_down_fails_the_rest_at_one_deadline(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """In flight or not yet sent, every input fails when the one outage deadline passes (not the
    ones in flight after it and the rest after a second full wait), and the outage is told."""
    server = _start(comfy_standin, tmp_path, exec_seconds=1.0)
    _photos(tmp_path / "in", 5)
    first_done = asyncio.Event()
    states: list[Connection] = []

    def on_event(event: batch.Event) -> None:
        if isinstance(event, batch.Done):
            first_done.set()
        elif isinstance(event, Connection):
            states.append(event)

    async def stop_after_first() -> None:
        await first_done.wait()
        await asyncio.to_thread(server.stop)

    stopper = asyncio.create_task(stop_after_first())
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=Timeouts(poll=0.5, reconnect=2.0), on_event=on_event)
    await stopper
    statuses = [o.status for o in report.outcomes]
    assert statuses[0] == "ok" and statuses[1:] == ["failed"] * 4, statuses
    assert all(isinstance(o.error, ComfyUnreachableError) for o in report.failed)
    # One outage, one deadline: every error names the same moment it began.
    since = {o.error.facts.get("unreachable_since") for o in report.failed if o.error}
    assert len(since) == 1 and None not in since, since
    last = report.outcomes[-1].error
    assert last is not None and server.url in str(last) and "stayed unreachable for 2 s" in str(last)
    assert states[0].up is False and states[0].retry_seconds == 2.0 and states[0].url == server.url


async def test_a_dropping_websocket_and_a_slow_view_lose_nothing(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.2, progress_steps=10,
                    drop_ws_after=9, view_delay=0.5)
    _photos(tmp_path / "in", 3)
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=FAST)
    assert [o.status for o in report.outcomes] == ["ok"] * 3


async def test_out_of_memory_steps_down_with_auto_resolution(comfy_standin: StartStandin,
                                                             tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, fail_node=GENERATOR, fail_kind="oom",
                           fail_when="pipeline_type=1024_cascade")
    _photos(tmp_path / "in", 1)
    out = tmp_path / "out"
    plain = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out), timeouts=FAST)
    error = plain.outcomes[0].error
    assert isinstance(error, OutOfMemoryError) and "resolution 512 (parameter `resolution`)" in str(error)
    auto = await batch.run_batch(server.url, [tmp_path / "in"],
                                 _opts(out, auto_resolution=True), timeouts=FAST)
    assert auto.outcomes[0].status == "ok"
    data = json.loads((out / "object-0.json").read_text())
    # The parameters are what ran; the request (which the key is made of) is kept beside them.
    assert data["resolution"] == "512" and data["parameters"]["resolution"] == "512"
    assert data["requested"]["resolution"] == "1024"


async def test_a_24gb_gpu_refuses_1536_or_steps_down(comfy_standin: StartStandin,
                                                     tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, gpu_name="NVIDIA A10G",
                    vram_bytes=23_609_475_072)
    _photos(tmp_path / "in", 1)
    out = tmp_path / "out"
    with pytest.raises(ResolutionUnsupportedError, match="resolution 1536 does not fit") as info:
        await batch.run_batch(server.url, [tmp_path / "in"],
                              _opts(out, workflow=WorkflowOptions(resolution="1536")),
                              timeouts=FAST)
    assert "fix: use `resolution` 1024, or `auto_resolution`" in str(info.value)
    assert list(server.input_dir.iterdir()) == []  # refused before any upload
    report = await batch.run_batch(server.url, [tmp_path / "in"],
                                   _opts(out, workflow=WorkflowOptions(resolution="1536"),
                                         auto_resolution=True), timeouts=FAST)
    assert report.resolution == "1024" and report.outcomes[0].status == "ok"


async def test_the_container_state_decides_the_allowed_resolutions(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "phase": "ready", "ready": True, "allowed_resolutions": ["512"], "error": None,
        "profile": {"gpu_name": "tiny", "vram_bytes": 1, "low_vram": True, "max_resolution": "512"},
    }))
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1,
                    env={"TRELLIS_BOX_STATE": str(state)})
    _photos(tmp_path / "in", 1)
    with pytest.raises(ResolutionUnsupportedError, match="fix: use `resolution` 512"):
        await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                              timeouts=FAST)


async def test_low_vram_follows_the_container_profile(comfy_standin: StartStandin,
                                                      tmp_path: Path) -> None:
    """The warm-up loads the models with the profile's low_vram; generate must send the same, or
    ComfyUI loads them again for the first image."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "phase": "ready", "ready": True, "allowed_resolutions": ["512", "1024", "1536"],
        "error": None, "profile": {"gpu_name": "H100", "vram_bytes": 85_024_112_640,
                                   "low_vram": False, "max_resolution": "1536"},
    }))
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, env={"TRELLIS_BOX_STATE": str(state)})
    _photos(tmp_path / "in", 1)
    report = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out"),
                                   timeouts=FAST)
    assert report.outcomes[0].status == "ok"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/history") as resp:
            history = await resp.json()
    (entry,) = history.values()
    sent = entry["prompt"][2]
    assert sent[LOAD_MODEL_NODE]["inputs"]["low_vram"] is False
    assert sent[LOAD_MODEL_NODE] == build(warmup_options(low_vram=False), "x.png")[LOAD_MODEL_NODE]
    data = json.loads((tmp_path / "out" / "object-0.json").read_text())
    assert data["parameters"]["low_vram"] is False and data["low_vram"] is False  # what ran
    assert data["requested"]["low_vram"] is True


def _delete_server_files(server: StandinServer, refs: list[dict[str, Any]]) -> list[str]:
    gone = []
    for ref in refs:
        path = server.output_dir / ref.get("subfolder", "") / ref["filename"]
        if path.is_file():
            path.unlink()
            gone.append(ref["filename"])
    return gone


async def test_a_glb_deleted_on_the_server_is_exported_again_for_a_new_out_dir(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    _photos(tmp_path / "in", 1)
    first = await batch.run_batch(server.url, [tmp_path / "in"], _opts(tmp_path / "out1"),
                                  timeouts=FAST)
    assert [o.status for o in first.outcomes] == ["ok"]
    stale = sorted(p.name for p in (server.output_dir / "3D").iterdir())
    for glb_file in (server.output_dir / "3D").iterdir():
        glb_file.unlink()  # a user cleaning the server's output folder
    # The identical prompt is answered from ComfyUI's cache, naming the deleted GLB again.
    out2 = tmp_path / "out2"
    second = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out2), timeouts=FAST)
    assert [o.status for o in second.outcomes] == ["ok"], second.outcomes[0].error
    data = json.loads((out2 / "object-0.json").read_text())
    assert data["export_rerun"]["missing"] == f"3D/{stale[0]}"
    stale_prompt = data["export_rerun"]["stale_prompt_id"]
    assert stale_prompt and stale_prompt != data["prompt_id"]
    # The re-export wrote under a name of its own, beside nothing of the first run.
    assert [p.name for p in (server.output_dir / "3D").iterdir()] == [
        f"Trellis2-{stale_prompt.replace('-', '')[:8]}_00001_.glb"]
    # Only the export and save nodes ran again: the generator came from the cache.
    assert "6" in data["timings"]["cached_nodes"]
    assert data["glb"]["bytes"] == (out2 / "object-0.glb").stat().st_size
    assert (out2 / "object-0.cutout.png").is_file()
    # The key is the requested job's: the fresh export names do not make a re-run miss.
    assert first.outcomes[0].report is not None and data["key"] == first.outcomes[0].report.key
    issues = validate_glb(out2 / "object-0.glb")["issues"]
    assert issues["numErrors"] == 0, issues["messages"]


async def test_a_glb_that_vanishes_again_on_the_rerun_fails_alone_and_names_the_file(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    photos = _photos(tmp_path / "in", 2)
    # ComfyUI's cache keeps the last prompt only: object-0 is the one answered from it.
    first = await batch.run_batch(server.url, photos[:1], _opts(tmp_path / "out1"),
                                  timeouts=FAST)
    assert [o.status for o in first.outcomes] == ["ok"]
    for glb_file in (server.output_dir / "3D").iterdir():
        glb_file.unlink()
    deleted: list[str] = []

    def clean_again(event: batch.Event) -> None:
        # A cleaner racing the job: object-0's re-exported GLB is gone before it is downloaded.
        if not isinstance(event, batch.NodeEvent):
            return
        msg = event.message
        if (event.item.name == "object-0" and isinstance(msg, protocol.Executed)
                and msg.node == GLB_OUTPUT_NODE):
            deleted.extend(_delete_server_files(server, (msg.output or {}).get("3d") or []))

    out2 = tmp_path / "out2"
    second = await batch.run_batch(server.url, [tmp_path / "in"], _opts(out2), timeouts=FAST,
                                   on_event=clean_again)
    assert [o.status for o in second.outcomes] == ["failed", "ok"]
    assert len(deleted) == 1 and deleted[0].startswith("Trellis2-")  # the re-export's own name
    error = second.outcomes[0].error
    assert isinstance(error, OutputGoneError)
    assert f"no longer has 3D/{deleted[0]}" in error.message
    assert "fix:" in str(error) and "output" in (error.fix or "")
    report = json.loads((out2 / "object-0.json").read_text())
    assert report["status"] == "failed" and report["error"]["error"] == "output-gone"
    assert "export_rerun" not in json.loads((out2 / "object-1.json").read_text())

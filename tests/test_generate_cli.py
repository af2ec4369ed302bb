"""`trellis-box generate` end to end against the stand-in: files, table, --json, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.launcher import StandinServer
from tests.extra_parameter import add_floaters
from tests.photos import object_photo
from trellis_box.cli import generate as generate_cli
from trellis_box.cli.app import main
from trellis_box.comfyui.client import ComfyClient

pytestmark = pytest.mark.timeout(180)

GENERATOR = "Trellis2MeshWithVoxelGenerator"
POSTPROCESS = "Trellis2PostProcessAndUnWrapAndRasterizer"


def _start(comfy_standin: StartStandin, tmp_path: Path, **options: Any) -> StandinServer:
    # A state file left in the default place by anything else must not decide resolutions.
    return comfy_standin(env={"TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")}, **options)


def _inputs(tmp_path: Path, count: int) -> Path:
    for i in range(count):
        object_photo(tmp_path / "in" / f"item-{i}.png", i)
    return tmp_path / "in"


def test_a_folder_gives_files_and_a_summary_table(comfy_standin: StartStandin, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    out = tmp_path / "out"
    code = main(["generate", str(_inputs(tmp_path, 2)), "--server", server.url, "--out", str(out),
                 "--seed", "5", "--steps", "8", "--texture-size", "1024", "--no-remesh",
                 "--attention", "flash_attn"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "trellis-box generate — resolution 1024" in printed and "2 of 2 done" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"item-{i}{ext}" for i in range(2) for ext in (".glb", ".cutout.png", ".json")]
        + ["report.html", "report-files"])
    assert 'data-name="item-' not in (out / "report.html").read_text()  # drawn by its script
    assert '"name":"item-1"' in (out / "report.html").read_text()
    report = json.loads((out / "item-0.json").read_text())
    params = report["parameters"]
    assert (params["seed"], params["shape_steps"], params["texture_size"]) == (5, 8, 1024)
    # What the server ran, from its own history.
    with urllib.request.urlopen(f"{server.url}/history/{report['prompt_id']}") as resp:
        graph = json.load(resp)[report["prompt_id"]]["prompt"][2]
    assert graph["6"]["inputs"]["seed"] == 5 and graph["6"]["inputs"]["texture_steps"] == 8
    assert graph["7"]["inputs"]["remesh"] is False
    assert graph["5"]["inputs"]["backend"] == "flash_attn"


def test_json_output_and_exit_code_3_when_an_input_failed(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    inputs = _inputs(tmp_path, 1)
    (inputs / "empty.png").write_bytes(b"")
    code = main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out"),
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 3
    assert data["counts"] == {"ok": 1, "skipped": 0, "failed": 1, "interrupted": 0}
    failed, = [i for i in data["items"] if i["status"] == "failed"]
    assert failed["name"] == "empty" and failed["error"]["error"] == "image-invalid"
    assert failed["error"]["message"] == f"cannot use image {inputs / 'empty.png'}"
    ok, = [i for i in data["items"] if i["status"] == "ok"]
    assert ok["glb"] == str(tmp_path / "out" / "item-0.glb")
    # A second run has nothing left but the bad file.
    assert main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out"),
                 "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["counts"]["skipped"] == 1


def test_outputs_deleted_on_the_server_do_not_fail_the_same_job_into_a_new_out_dir(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    photo = object_photo(tmp_path / "img.png", 3)
    args = ["generate", str(photo), "--server", server.url, "--json"]
    assert main([*args, "--out", str(tmp_path / "out1")]) == 0
    for made in [*(server.output_dir / "3D").iterdir(), *(server.output_dir / "cutout").iterdir()]:
        made.unlink()  # the user cleans the server's output folder
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "out2")]) == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "out2" / "img.json").read_text())
    assert report["status"] == "ok" and report["export_rerun"]["missing"].startswith("3D/")
    assert (tmp_path / "out2" / "img.cutout.png").is_file()
    assert report["glb"]["bytes"] == (tmp_path / "out2" / "img.glb").stat().st_size


def test_a_resolution_the_gpu_cannot_hold_is_refused_with_exit_2(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, gpu_name="NVIDIA L4", vram_bytes=23_580_000_000)
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", server.url,
                 "--out", str(tmp_path / "out"), "--resolution", "1536"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: resolution 1536 does not fit on this GPU" in err
    assert "use --resolution 1024, or --auto-resolution to step down to what fits" in err
    assert "`" not in err


def test_an_input_over_its_time_limit_names_the_flag_that_raises_it(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=30)
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", server.url,
                 "--out", str(tmp_path / "out"), "--timeout", "1"])
    out = capsys.readouterr()
    assert code == 3, out.err
    said = " ".join((out.out + out.err).split())
    assert "over its limit of 1 s, and was interrupted" in said
    assert "fix: raise the limit (--timeout), or lower --resolution or the step counts" in said
    assert "`" not in said


def test_bad_parameters_fail_before_anything_is_sent(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # No server at all: the check is local.
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out"), "--texture-size", "7"])
    err = capsys.readouterr().err
    assert code == 2
    assert "prompt.7.inputs.texture_size" in err


def test_an_unreachable_server_is_exit_1_naming_the_url(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: ComfyUI at http://127.0.0.1:9 did not answer GET /system_stats" in err


def test_an_output_path_that_is_a_file_is_named(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_text("a file, not a directory")
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out")])
    assert code == 1
    assert f"error: cannot write {tmp_path / 'out'}" in capsys.readouterr().err


async def _queue_empty(url: str) -> bool:
    async with ComfyClient(url) as comfy:
        state = await comfy.http.queue()
    return not state.running and not state.pending


def _server_history(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/history", timeout=10) as response:
        return list(json.load(response).values())


def _wait_for(check: Any, what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_ctrl_c_stops_the_running_job_keeps_finished_ones_and_a_rerun_resumes(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=1.5)
    inputs, out = _inputs(tmp_path, 4), tmp_path / "out"
    cmd = [sys.executable, "-m", "trellis_box.cli.app", "generate", str(inputs),
           "--server", server.url, "--out", str(out)]
    env = {**os.environ, "TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(lambda: list(out.glob("*.json")), "the first finished image")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted: run the same command again to resume" in stdout
    kept = {p.stem for p in out.glob("*.glb")}
    assert kept and len(kept) < 4
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    _wait_for(lambda: asyncio.run(_queue_empty(server.url)), "an empty server queue")
    # Withdrawn, not left to run: at most the image that ended as Ctrl-C came ran to success.
    ran = _server_history(server.url)
    assert sum(h["status"]["status_str"] == "success" for h in ran) <= len(kept) + 1
    assert len(ran) < 4 or any(h["status"]["status_str"] == "error" for h in ran)
    server.set_faults(exec_seconds=0.1)
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts["skipped"] == len(kept) and counts["ok"] == 4 - len(kept)


# --- parameters, presets and help ---------------------------------------------------------------


def _server_graph(server: StandinServer, report: dict[str, Any]) -> dict[str, Any]:
    """What the server ran for a report, from its own history."""
    with urllib.request.urlopen(f"{server.url}/history/{report['prompt_id']}") as resp:
        graph: dict[str, Any] = json.load(resp)[report["prompt_id"]]["prompt"][2]
    return graph


def test_a_parameter_added_to_the_table_is_an_option_with_help_and_keeps_earlier_outputs(
        comfy_standin: StartStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    args = ["generate", str(_inputs(tmp_path, 1)), "--server", server.url,
            "--out", str(tmp_path / "out"), "--json"]
    assert main(args) == 0  # made before the parameter exists
    capsys.readouterr()
    add_floaters(monkeypatch)
    app = generate_cli.build_app()  # the command, built from the extended table
    assert app(args=args[1:], standalone_mode=False) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["skipped"] == 1  # its key still holds
    assert app(args=[*args[1:], "--no-remove-floaters"], standalone_mode=False) == 0
    report = json.loads((tmp_path / "out" / "item-0.json").read_text())
    assert report["parameters"]["remove_floaters"] is False
    assert _server_graph(server, report)["7"]["inputs"]["remove_floaters"] is False
    capsys.readouterr()
    app(args=["--help"], standalone_mode=False, prog_name="trellis-box generate")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--remove-floaters / --no-remove-floaters Drop small pieces apart from the object." \
        in help_text


def test_steps_out_of_range_is_named_by_the_steps_option(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", "http://127.0.0.1:9",
                 "--out", str(tmp_path / "out"), "--steps", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--steps: 0 is below the minimum 1" in err
    assert "fix: use an integer between 1 and 100 (--steps)" in err
    assert "--shape-steps" not in err and "--sparse-structure-steps" not in err
    assert "parameter `" not in err  # the command speaks of its options


def test_help_fits_80_columns_without_cutting_a_name() -> None:
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "trellis_box.cli.app", "generate", "--help"],
                          capture_output=True, text=True, env=env, timeout=60, check=True)
    assert max(map(len, done.stdout.splitlines())) <= 80, done.stdout
    assert "…" not in done.stdout
    for whole in ("--sparse-structure-steps", "--target-faces", "--remesh / --no-remesh",
                  "--auto-resolution", "--preset web|balanced|max", "TRELLIS_BOX_SERVER",
                  "http://127.0.0.1:8188", "--texture-size"):
        assert whole in done.stdout, whole


def test_a_step_down_shows_the_resolution_that_ran(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, fail_node=GENERATOR,
                    fail_kind="oom", fail_when="pipeline_type=1024_cascade")
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", server.url,
                 "--out", str(tmp_path / "out"), "--auto-resolution"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "trellis-box generate — resolution 1024 requested, 512 ran" in printed
    (row,) = [line for line in printed.splitlines() if "item-0" in line]
    assert "│ 512" in row


def test_out_of_memory_after_generation_points_at_texture_faces_and_preset(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1, fail_node=POSTPROCESS,
                    fail_kind="oom")
    code = main(["generate", str(_inputs(tmp_path, 1)), "--server", server.url,
                 "--out", str(tmp_path / "out"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 3
    fix = data["items"][0]["error"]["fix"]
    assert fix.startswith("lower the texture size (--texture-size) or the face count "
                          "(--target-faces), or use a lighter preset (--preset web)")
    assert "--resolution" not in fix


def test_presets_set_the_post_process_and_options_given_win(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    args = ["generate", str(_inputs(tmp_path, 1)), "--server", server.url, "--json"]
    ran = {}
    for preset, extra in (("web", []), ("balanced", []), ("max", []),
                          ("web", ["--texture-size", "4096"])):
        out = tmp_path / f"out-{preset}-{len(extra)}"
        assert main([*args, "--out", str(out), "--preset", preset, *extra]) == 0
        report = json.loads((out / "item-0.json").read_text())
        post = _server_graph(server, report)["7"]["inputs"]
        assert report["parameters"]["preset"] == preset
        assert (report["parameters"]["texture_size"], report["parameters"]["target_face_num"]) \
            == (post["texture_size"], post["target_face_num"])
        ran[(preset, len(extra))] = (post["texture_size"], post["target_face_num"])
    assert ran == {("web", 0): (1024, 200_000), ("balanced", 0): (2048, 500_000),
                   ("max", 0): (2048, 2_000_000), ("web", 2): (4096, 200_000)}


def test_brackets_in_file_names_are_shown_as_they_are(
        comfy_standin: StartStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Rich markup would take `[v2]` for a style and `[red]` for red: names are data."""
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    object_photo(tmp_path / "in" / "cup [v2].png", 1)
    (tmp_path / "in" / "[red]x.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)  # a short --out keeps the result column on one line
    code = main(["generate", "in", "--server", server.url, "--out", "out"])
    printed = capsys.readouterr()
    assert code == 3, printed.err
    assert "cup [v2]" in printed.out and "out/cup [v2].glb" in printed.out
    assert "[red]x" in printed.out and "  [red]x.png: it is " in printed.out
    assert "\x1b[" not in printed.out + printed.err  # nothing was styled by a file name
    assert "cup [v2]: ok" in printed.err


def test_no_console_of_the_cli_reads_markup() -> None:
    """Every console and progress column of the CLI prints text as it is; styles only come from
    `styled()`, so no command can lose a bracket of a file name or a fix text."""
    cli = Path(__file__).parent.parent / "src" / "trellis_box" / "cli"
    for source in cli.glob("*.py"):
        text = source.read_text()
        for made in ("Console(", "TextColumn("):
            for call in text.split(made)[1:]:
                assert "markup=False" in call.split(")")[0], f"{source.name}: {made}{call[:60]}"


def test_doctor_keeps_the_brackets_of_its_fix_texts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from trellis_box.cli import _output
    from trellis_box.cli import serve as serve_cli
    from trellis_box.errors import GpuUnavailableError
    from trellis_box.gpu import probe
    from trellis_box.serve.preflight import StepResult

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    with pytest.raises(GpuUnavailableError) as info:
        probe.nvidia_smi([])
    serve_cli._render(_output.out, [StepResult("gpu", False, 0.0, "[none]", info.value)], False)
    printed = capsys.readouterr().out
    assert "capabilities: [gpu]" in printed and "[none]" in printed


def _display(terminal: bool) -> tuple[Any, Any]:
    import io

    from rich.console import Console

    from trellis_box.cli.generate import _Display

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=terminal, width=200, markup=False)
    return _Display(console), stream


def test_progress_counts_against_every_input_known() -> None:
    from rich.progress import MofNCompleteColumn

    from trellis_box.batch import engine
    from trellis_box.batch.files import Item

    display, _ = _display(terminal=True)
    items = tuple(Item(Path(f"{n}.png"), n) for n in ("a", "b", "c"))
    with display:
        display.on_event(engine.Planned(items))
        display.on_event(engine.Done(engine.Outcome(items[0], "ok")))
    assert display.progress is not None
    task, = display.progress.tasks
    assert MofNCompleteColumn().render(task).plain == "1/3"


def test_a_prompt_moved_to_an_idle_worker_says_from_where() -> None:
    from trellis_box.batch import engine
    from trellis_box.batch.files import Item

    display, stream = _display(terminal=False)
    item = Item(Path("a.png"), "a")
    display.on_event(engine.Queued(item))
    display.on_event(engine.Queued(item, moved_from="http://127.0.0.1:8189"))
    lines = stream.getvalue().splitlines()
    assert lines == ["a: queued", "a: queued (taken from http://127.0.0.1:8189's queue)"]


def test_off_a_terminal_each_input_and_node_gets_a_line(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    code = main(["generate", str(_inputs(tmp_path, 2)), "--server", server.url,
                 "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 0
    assert "item-0: queued" in lines and "item-0: Trellis2MeshWithVoxelGenerator" in lines
    done = [line for line in lines if line.endswith(" s") and ": ok in " in line]
    assert [line.split(" ")[0] for line in done] == ["1/2", "2/2"], lines


def test_an_unreachable_server_is_said_with_how_long_it_is_retried() -> None:
    from trellis_box.comfyui.client import Connection

    display, stream = _display(terminal=False)
    display.on_event(Connection("http://127.0.0.1:9", up=False, retry_seconds=300,
                                down_since=time.time()))
    display.on_event(Connection("http://127.0.0.1:9", up=True))
    said = stream.getvalue().splitlines()
    assert said[0].startswith("ComfyUI at http://127.0.0.1:9 is unreachable; retrying for 300 s")
    assert said[1] == "ComfyUI at http://127.0.0.1:9 is reachable again"


def test_sigterm_withdraws_our_prompts_like_ctrl_c_and_exits_143(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """`timeout`, systemd, Kubernetes and AWS Batch stop a process with SIGTERM: the running
    prompt must not go on burning the GPU for a client that is gone."""
    server = _start(comfy_standin, tmp_path, exec_seconds=60)
    inputs, out = _inputs(tmp_path, 3), tmp_path / "out"
    cmd = [sys.executable, "-m", "trellis_box.cli.app", "generate", str(inputs),
           "--server", server.url, "--out", str(out)]
    env = {**os.environ, "TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(lambda: any(h["status"]["status_str"] for h in _server_history(server.url))
                  or not asyncio.run(_queue_empty(server.url)), "our prompt running")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM): run the same command again to resume" in stdout
    # Withdrawn from the queue, and the running one interrupted rather than left to run its 60 s.
    _wait_for(lambda: asyncio.run(_queue_empty(server.url)), "an empty server queue", 20.0)
    ran = _server_history(server.url)
    assert ran and all(h["status"]["messages"][-1][0] == "execution_interrupted" for h in ran)
    assert not list(out.glob("*.glb"))


def test_the_readme_command_that_posts_the_checked_in_workflow_runs_it(
        comfy_standin: StartStandin, tmp_path: Path) -> None:
    """The README's commands, as written but for the server's port, queue the checked-in graph
    on a server that answers a bare graph as ComfyUI 0.3.64 does (400 no_prompt)."""
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- example: post-workflow -->\n```bash\n", 1)[1].split("```", 1)[0]
    server = _start(comfy_standin, tmp_path, exec_seconds=0.1)
    object_photo(tmp_path / "photo.png", 2)
    (tmp_path / "workflows").symlink_to(root / "workflows")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c",
                           block.replace("http://127.0.0.1:8188", server.url)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    decoder, text, answers = json.JSONDecoder(), done.stdout.strip(), []
    while text:  # curl prints each answer without a newline after it
        answer, end = decoder.raw_decode(text)
        answers.append(answer)
        text = text[end:].strip()
    uploaded, answer = answers
    assert uploaded["name"] == "photo.png"
    assert answer["node_errors"] == {}, answer
    prompt_id = answer["prompt_id"]

    def finished() -> bool:
        with urllib.request.urlopen(f"{server.url}/history/{prompt_id}", timeout=10) as resp:
            return bool(json.load(resp))
    _wait_for(finished, "the queued graph to run")
    with urllib.request.urlopen(f"{server.url}/history/{prompt_id}", timeout=10) as resp:
        entry = json.load(resp)[prompt_id]
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["10"]["3d"][0]["filename"].endswith(".glb")
    # What the README warns about: the file as it is, unwrapped, is refused.
    bare = urllib.request.Request(f"{server.url}/prompt", method="POST",
                                  data=(root / "workflows" / "image_to_glb.api.json").read_bytes())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bare, timeout=10)
    assert refused.value.code == 400
    assert json.load(refused.value)["error"]["type"] == "no_prompt"


def test_a_server_on_stand_in_weights_is_named_in_the_summary_and_the_json(
        comfy_standin: StartStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The GPU harness's random weights (its /trellis-box/info says so) are never passed off as real."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"phase": "ready", "ready": True, "profile": None,
                                 "allowed_resolutions": ["512", "1024", "1536"], "weights_mode": "stand-in"}))
    server = comfy_standin(env={"TRELLIS_BOX_STATE": str(state)}, exec_seconds=0.1)
    inputs = _inputs(tmp_path, 1)
    assert main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out")]) == 0
    assert "(stand-in weights: random values, not the real models)" in " ".join(capsys.readouterr().out.split())
    assert main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out2"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["label"] == "stand-in weights" and data["server"]["trellis_box"]["weights_mode"] == "stand-in"
    # A server on real weights gets no label.
    state.write_text(json.dumps({**json.loads(state.read_text()), "weights_mode": "real"}))
    assert main(["generate", str(inputs), "--server", server.url, "--out", str(tmp_path / "out3"), "--json"]) == 0
    assert "label" not in json.loads(capsys.readouterr().out)

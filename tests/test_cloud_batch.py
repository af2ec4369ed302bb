"""`trellis-box batch`: sharding, submit/status/report against moto's Batch, S3 and IAM, and the
array child as the real command (serve in-process on the ComfyUI stand-in, S3 on moto)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud_support import Aws
from tests.comfy_standin.fixtures import StartStandin
from tests.photos import object_photo
from tests.registry_support import REGION
from tests.serve_support import cli_command, free_port, make_setup
from trellis_box.cli.app import main
from trellis_box.cloud import awsbatch
from trellis_box.cloud import shard as shard_mod
from trellis_box.cloud.child import Shard, run_shard
from trellis_box.errors import ShardError, UsageError

pytestmark = pytest.mark.timeout(300)


# --- sharding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("total", [1, 2, 5, 7, 100, 101])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_every_input_is_in_exactly_one_shard(total: int, shards: int) -> None:
    shards = min(shards, total)
    items = list(range(total))
    parts = [shard_mod.select(items, shards, i) for i in range(shards)]
    assert [x for part in parts for x in part] == items  # in order, none twice, none left out
    assert max(map(len, parts)) - min(map(len, parts)) <= 1 and all(parts)


def test_shard_counts_from_either_option() -> None:
    assert shard_mod.shard_count(10, shards=4) == 4
    assert shard_mod.shard_count(10, per_shard=3) == 4
    assert shard_mod.shard_count(3, shards=8) == 3  # never a child without inputs
    # The library names its parameters (the command line its flags and arguments:
    # test_bad_input_gets_a_clear_error).
    with pytest.raises(UsageError, match="either `shards` or `per_shard`"):
        shard_mod.shard_count(10, shards=2, per_shard=2)
    with pytest.raises(UsageError, match="more than an AWS Batch array job holds") as info:
        shard_mod.shard_count(20_001, per_shard=1)
    assert info.value.fix == "pass `per_shard` 3 or more"
    with pytest.raises(ShardError, match="outside 0..2"):
        shard_mod.bounds(10, 3, 3)


def test_a_local_output_is_refused_naming_the_parameter(tmp_path: Path) -> None:
    request = awsbatch.SubmitRequest(inputs=["s3://bucket/in/"], out=str(tmp_path), job_queue="q",
                                     image="i")
    with pytest.raises(UsageError, match="batch output must be in S3") as info:
        awsbatch.submit(request)
    assert info.value.fix == "pass s3://BUCKET/PREFIX as `out`: the children write there"


# --- submit, status, report against moto ---------------------------------------------------------

def _photos(folder: Path, count: int) -> Path:
    for i in range(count):
        object_photo(folder / f"item-{i}.png", i)
    return folder


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main([*args, "--json"])
    printed = capsys.readouterr().out
    return code, json.loads(printed) if printed.strip() else None


@pytest.fixture
def s3_inputs(aws: Aws, tmp_path: Path) -> tuple[str, Path]:
    """A bucket with five photos under in/ and one file that is not an image (a bad one)."""
    bucket = aws.bucket()
    photos = _photos(tmp_path / "photos", 4)
    (photos / "item-9.png").write_bytes(b"")  # an image file that is not an image
    aws.upload_folder(photos, f"s3://{bucket}/in")
    return bucket, photos


def test_submit_registers_once_and_status_and_report_follow_the_reports(
        aws: Aws, s3_inputs: tuple[str, Path], comfy_standin: StartStandin,
        capsys: pytest.CaptureFixture[str]) -> None:
    bucket, _ = s3_inputs
    queue = aws.job_queue()
    args = ["batch", "submit", f"s3://{bucket}/in/", f"s3://{bucket}/out", "--job-queue", queue,
            "--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-trellis2:0.1.0",
            "--per-shard", "2", "--resolution", "1536"]
    code, sub = _json(capsys, *args)
    assert code == 0, sub
    assert (sub["inputs"], sub["shards"], sub["registered_definition"]) == (5, 3, True)
    batch = aws.client("batch")
    [definition] = batch.describe_job_definitions(jobDefinitionName=sub["job_definition"].split("/")[-1]
                                                  .split(":")[0])["jobDefinitions"]
    container = definition["containerProperties"]
    assert container["command"] == ["batch", "child", "Ref::manifest"]
    resources = {r["type"]: r["value"] for r in container["resourceRequirements"]}
    assert resources == {"GPU": "1", "VCPU": "4", "MEMORY": str(int(32 * 1024 * 0.9))}
    assert definition["retryStrategy"]["attempts"] == 3
    [job] = batch.describe_jobs(jobs=[sub["job_id"]])["jobs"]
    assert job["arrayProperties"]["size"] == 3 and job["jobQueue"].endswith(queue)
    manifest = json.loads(aws.get(job["parameters"]["manifest"]))
    assert manifest["inputs"] == [f"s3://{bucket}/in/item-{i}.png" for i in (0, 1, 2, 3, 9)]
    assert manifest["workflow"]["resolution"] == "1536" and manifest["shards"] == 3

    # The same image and sizes again: the definition is reused, not registered twice.
    code, again = _json(capsys, *args[:-2], "--job-name", "second")
    assert (code, again["registered_definition"], again["job_definition"]) == (0, False, sub["job_definition"])

    # moto finishes the children without running them: nothing is done yet.
    code, status = _json(capsys, "batch", "status", sub["job_id"])
    assert code == 0
    assert status["children"]["SUCCEEDED"] == 3
    assert status["inputs"] == {"done": 0, "failed": 0, "pending": 5}
    code, report = _json(capsys, "batch", "report", sub["job_id"])
    assert (code, report["html"]["report"]) == (0, None)
    assert "no input of job" in report["html"]["note"] and "out/report.html" not in aws.keys(bucket)

    # The children's work, each shard by the code a child runs (serve left out here).
    server = comfy_standin(env={"TRELLIS_BOX_STATE": "/nonexistent/state.json"}, exec_seconds=0.05)
    read = shard_mod.read_manifest(job["parameters"]["manifest"])
    assert [asyncio.run(run_shard(server.url, Shard(read, i))) for i in range(3)] == [0, 0, 0]
    code, status = _json(capsys, "batch", "status", sub["job_id"])
    assert status["inputs"] == {"done": 4, "failed": 1, "pending": 0}
    code, report = _json(capsys, "batch", "report", sub["job_id"], "--no-html")
    assert code == 3  # an input failed
    assert report["reports"]["item-9"]["error"]["error"] == "image-invalid"
    assert report["reports"]["item-0"]["files"]["glb"] == f"s3://{bucket}/out/item-0.glb"
    assert report["html"] is None and "out/report.html" not in aws.keys(bucket)

    # The job's page, beside its results: every input, the failed one with its error.
    code, report = _json(capsys, "batch", "report", sub["job_id"], "--no-thumbnails")
    assert code == 3
    page = f"s3://{bucket}/out/report.html"
    assert (report["html"]["report"], report["html"]["partial"], report["html"]["note"]) == (page, False, None)
    assert report["html"]["counts"] == {"inputs": 5, "ok": 4, "failed": 1}
    assert f"(skipped; `trellis-box report s3://{bucket}/out" in report["html"]["thumbnails_note"]
    data = _page_data(aws, page)
    entries = {e["name"]: e for e in data["entries"]}
    assert set(entries) == set(report["reports"]) == {"item-0", "item-1", "item-2", "item-3", "item-9"}
    assert entries["item-9"]["status"] == "failed" and entries["item-9"]["error"] == {
        k: report["reports"]["item-9"]["error"].get(k) for k in ("error", "message", "detail", "fix", "note")}
    assert entries["item-0"]["glb"] == "item-0.glb" and f"out/{entries['item-0']['cutout']}" in aws.keys(bucket)
    assert data["note"] is None and data["dir"] == f"s3://{bucket}/out"

    main(["batch", "report", sub["job_id"], "--no-thumbnails"])
    table = capsys.readouterr().out
    assert "4 done, 1 failed, 0 pending" in table and "item-9" in table
    assert f"({sub['job_id']}): SUCCEEDED" in table and "[bold]" not in table  # a style, not text
    assert f"report: {page} (5 inputs, 0 thumbnails)" in table
    assert f"aws s3 sync s3://{bucket}/out DIR" in table and "static website" in table


def _page_data(aws: Aws, url: str) -> Any:
    html = aws.get(url).decode()
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert found, html[:500]
    return json.loads(found.group(1))


def _running(job_id: str, *children: int) -> None:
    """Put a job and some of its children back in RUNNING. moto's Batch without Docker ends every
    job at submit; a real one runs for hours, and a report is asked for meanwhile."""
    from moto.batch.models import batch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    jobs = batch_backends[DEFAULT_ACCOUNT_ID][REGION]._jobs
    for key in (job_id, *(f"{job_id}:{i}" for i in children)):
        jobs[key].status = "RUNNING"


def test_the_report_of_a_running_job_is_partial_and_says_so(
        aws: Aws, s3_inputs: tuple[str, Path], comfy_standin: StartStandin,
        capsys: pytest.CaptureFixture[str]) -> None:
    bucket, _ = s3_inputs
    code, sub = _json(capsys, "batch", "submit", f"s3://{bucket}/in/", f"s3://{bucket}/out",
                      "--job-queue", aws.job_queue(), "--image", "registry.example/trellis:1", "--shards", "3")
    assert code == 0, sub
    _running(sub["job_id"], 2)
    server = comfy_standin(env={"TRELLIS_BOX_STATE": "/nonexistent/state.json"}, exec_seconds=0.05)
    read = shard_mod.read_manifest(sub["manifest"])
    assert [asyncio.run(run_shard(server.url, Shard(read, i))) for i in (0, 1)] == [0, 0]

    code, report = _json(capsys, "batch", "report", sub["job_id"], "--no-thumbnails")
    assert code == 0  # the failing input (item-9, the last shard's) has not run yet
    assert report["status"] == "RUNNING" and report["children"]["RUNNING"] == 1
    html = report["html"]
    assert html["report"] == f"s3://{bucket}/out/report.html" and html["partial"] is True
    assert "is RUNNING (1 of 3 children not finished), 1 of 5 inputs not reported yet" in html["note"]
    data = _page_data(aws, html["report"])
    assert sorted(e["name"] for e in data["entries"]) == ["item-0", "item-1", "item-2", "item-3"]
    assert data["note"] == html["note"]  # the page itself says it is partial
    main(["batch", "report", sub["job_id"], "--no-thumbnails"])
    assert html["note"] in capsys.readouterr().out.replace("\n", "")


def test_bad_input_gets_a_clear_error(aws: Aws, s3_inputs: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bucket, _ = s3_inputs
    queue = aws.job_queue()

    def submit(inputs: str, out: str, queue: str, *extra: str) -> tuple[int, str]:
        code = main(["batch", "submit", inputs, out, "--job-queue", queue, "--image", "img:1",
                     "--shards", "2", *extra])
        return code, capsys.readouterr().err

    code, err = submit(f"s3://{bucket}/in/", f"s3://{bucket}/out", "no-such-queue")
    assert code == 2 and "AWS Batch job queue no-such-queue does not exist" in err
    assert "or check --job-queue and AWS_REGION" in err
    code, err = submit(f"s3://{bucket}/in/", "s3://no-such-bucket-tb/out", queue)
    assert code == 2 and "S3 bucket no-such-bucket-tb does not exist" in err
    code, err = submit(f"s3://{bucket}/nothing-here/", f"s3://{bucket}/out", queue)
    assert code == 2 and "no images to generate from" in err and "nothing-here" in err
    code, err = submit(f"s3://{bucket}/in/", f"s3://{bucket}/out", queue, "--instance-type", "g6.xlarge")
    assert code == 2 and "too little memory" in err and "use --instance-type g6.2xlarge" in err
    code, err = submit(f"s3://{bucket}/in/", f"s3://{bucket}/out", queue, "--instance-type", "g5.2xlarge",
                       "--resolution", "1536")
    assert code == 2 and "resolution 1536 does not fit" in err
    assert "fix: use --resolution 1024, or --auto-resolution to step down to what fits" in err
    code, err = submit(str(tmp_path), f"s3://{bucket}/out", queue)
    assert code == 2 and "batch inputs must be in S3" in err and "aws s3 sync" in err
    code, err = submit(f"s3://{bucket}/in/", str(tmp_path / "out"), queue)
    assert code == 2 and "batch output must be in S3" in err
    assert "fix: pass s3://BUCKET/PREFIX as OUT: the children write there" in err
    code, err = submit(f"s3://{bucket}/in/", f"s3://{bucket}/out", queue, "--per-shard", "2")
    assert code == 2 and "error: give either --shards or --per-shard" in err
    assert "fix: --shards N splits the inputs into N children; --per-shard K gives" in err
    assert "`" not in err
    assert main(["batch", "status", "no-such-job"]) == 2
    assert "no trellis-box job no-such-job" in capsys.readouterr().err
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, err = submit(f"s3://{bucket}/in/", f"s3://{bucket}/out", queue)
    assert code == 1 and "no AWS credentials" in err and "testing" not in err


# --- the child: the real command, serve in-process on the stand-in -------------------------------

class Child:
    """``trellis-box batch child MANIFEST`` as a process; its JSON event lines as they come."""

    def __init__(self, env: dict[str, str], manifest: str) -> None:
        self.proc = subprocess.Popen(cli_command("batch", "child", manifest), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def read(self) -> Iterator[dict[str, Any]]:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("{"):
                event = json.loads(line)
                self.events.append(event)
                yield event

    def finish(self) -> int:
        for _ in self.read():
            pass
        return self.proc.wait(60)

    def inputs(self) -> dict[str, str]:
        return {e["name"]: e["status"] for e in self.events if e["event"] == "input"}


@pytest.fixture
def child_env(aws: Aws, tmp_path: Path) -> Iterator[Any]:
    started: list[Child] = []

    def start(manifest: str, index: int, **env: str) -> Child:
        # A ComfyUI root each, as each child has its own container. After `aws`: the AWS
        # settings are in the environment make_setup copies.
        setup = make_setup(tmp_path / f"serve-{len(started)}")
        child = Child(setup.environment(TRELLIS_BOX_COMFY_ROOT=str(setup.root),
                                        TRELLIS_BOX_PORT=str(free_port()),
                                        AWS_BATCH_JOB_ARRAY_INDEX=str(index), **env), manifest)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()


def _manifest(aws: Aws, bucket: str, inputs: list[str], shards: int) -> str:
    url = f"s3://{bucket}/out/.trellis-box/jobs/test.json"
    shard_mod.write_manifest(shard_mod.Manifest(inputs=inputs, out=f"s3://{bucket}/out", shards=shards), url)
    return url


def test_children_make_every_output_once_byte_identical_to_a_local_run(
        aws: Aws, s3_inputs: tuple[str, Path], child_env: Any, comfy_standin: StartStandin,
        tmp_path: Path) -> None:
    bucket, photos = s3_inputs
    names = ["item-0", "item-1", "item-2", "item-3", "item-9"]
    manifest = _manifest(aws, bucket, [f"s3://{bucket}/in/{n}.png" for n in names], shards=2)
    children = [child_env(manifest, i) for i in range(2)]
    codes = [c.finish() for c in children]
    assert codes == [0, 0], [c.lines[-5:] for c in children]
    # Shard 0 holds three inputs, shard 1 two; the bad file is one failed input, not a broken child.
    assert [c.inputs() for c in children] == [
        {"item-0": "ok", "item-1": "ok", "item-2": "ok"}, {"item-3": "ok", "item-9": "failed"}]
    assert all(any(e["event"] == "phase" and e["phase"] == "ready" for e in c.events) for c in children)
    ok = names[:4]
    assert aws.keys(bucket, "out/item") == sorted(
        [f"out/{n}{ext}" for n in ok for ext in (".glb", ".cutout.png", ".json")] + ["out/item-9.json"])

    server = comfy_standin(env={"TRELLIS_BOX_STATE": str(tmp_path / "none.json")}, exec_seconds=0.05)
    assert main(["generate", str(photos), "--server", server.url, "--out", str(tmp_path / "local"),
                 "--json"]) == 3
    for n in ok:
        for ext in (".glb", ".cutout.png"):
            assert aws.get(f"s3://{bucket}/out/{n}{ext}") == (tmp_path / "local" / f"{n}{ext}").read_bytes()


def test_a_child_killed_mid_shard_resumes_when_retried(
        aws: Aws, s3_inputs: tuple[str, Path], child_env: Any) -> None:
    bucket, _ = s3_inputs
    names = ["item-0", "item-1", "item-2", "item-3"]
    manifest = _manifest(aws, bucket, [f"s3://{bucket}/in/{n}.png" for n in names], shards=1)
    first = child_env(manifest, 0, COMFY_STANDIN_EXEC_SECONDS="1.0")
    for event in first.read():
        if event["event"] == "input" and event["status"] == "ok":
            break
    # Like a reclaimed spot instance: no warning, no clean-up.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    done_before = set(first.inputs())
    assert done_before and len(done_before) < len(names)

    retry = child_env(manifest, 0)
    assert retry.finish() == 0, retry.lines[-5:]
    statuses = retry.inputs()
    assert {n for n, s in statuses.items() if s == "skipped"} == done_before
    assert {n for n, s in statuses.items() if s == "ok"} == set(names) - done_before
    assert all(json.loads(aws.get(f"s3://{bucket}/out/{n}.json"))["status"] == "ok" for n in names)


def test_a_child_whose_comfyui_dies_exits_non_zero(
        aws: Aws, s3_inputs: tuple[str, Path], child_env: Any) -> None:
    bucket, _ = s3_inputs
    manifest = _manifest(aws, bucket, [f"s3://{bucket}/in/item-{i}.png" for i in range(4)], shards=1)
    child = child_env(manifest, 0, COMFY_STANDIN_EXEC_SECONDS="1.0")
    for event in child.read():
        if event["event"] == "comfyui_started":
            comfy = int(event["pid"])
        if event["event"] == "input":
            os.killpg(comfy, signal.SIGKILL)
            break
    assert child.finish() != 0
    assert any(e["event"] == "comfyui_exited" for e in child.events)


def test_a_child_without_its_index_or_manifest_says_why(
        aws: Aws, s3_inputs: tuple[str, Path], child_env: Any) -> None:
    bucket, _ = s3_inputs
    manifest = _manifest(aws, bucket, [f"s3://{bucket}/in/item-{i}.png" for i in range(4)], shards=2)
    child = child_env(manifest, 5)
    assert child.finish() == 1
    assert "shard index 5 is outside 0..1" in "".join(child.lines)
    child = child_env(f"s3://{bucket}/out/.trellis-box/jobs/missing.json", 0)
    assert child.finish() == 1
    assert "manifest" in "".join(child.lines) and "does not exist" in "".join(child.lines)


def test_a_child_stopped_before_its_shard_ran_is_not_done(
        aws: Aws, s3_inputs: tuple[str, Path], child_env: Any) -> None:
    """Batch stops a child with SIGTERM (terminate, spot reclaim): exit 0 would mark it done."""
    bucket, _ = s3_inputs
    manifest = _manifest(aws, bucket, [f"s3://{bucket}/in/item-{i}.png" for i in range(4)], shards=1)
    child = child_env(manifest, 0, COMFY_STANDIN_EXEC_SECONDS="5")  # a long warm-up
    for event in child.read():
        if event["event"] == "phase" and event["phase"] == "warming":
            child.proc.send_signal(signal.SIGTERM)
            break
    assert child.finish() == 128 + signal.SIGTERM
    assert not child.inputs() and aws.keys(bucket, "out/item") == []

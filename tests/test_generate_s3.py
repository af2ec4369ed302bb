"""`trellis-box generate` from S3 to S3 (moto's server) against the stand-in: the same files as a
local run, resume against S3, the report uploaded last, clear errors for bad locations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cloud_support import Aws
from tests.comfy_standin.fixtures import StartStandin
from tests.comfy_standin.launcher import StandinServer
from tests.photos import object_photo
from trellis_box.cli.app import main

pytestmark = pytest.mark.timeout(180)


def _start(comfy_standin: StartStandin, tmp_path: Path) -> StandinServer:
    return comfy_standin(env={"TRELLIS_BOX_STATE": str(tmp_path / "no-state.json")}, exec_seconds=0.05)


def _photos(folder: Path, count: int) -> Path:
    for i in range(count):
        object_photo(folder / f"item-{i}.png", i)
    return folder


def _generate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["generate", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_s3_in_and_out_gives_the_files_of_a_local_run_and_resumes(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path)
    photos = _photos(tmp_path / "photos", 3)
    bucket = aws.bucket()
    aws.upload_folder(photos, f"s3://{bucket}/in")
    aws.put(f"s3://{bucket}/in/notes.txt", b"not an image")

    code, local = _generate(capsys, str(photos), "--server", server.url, "--out", str(tmp_path / "local"))
    assert code == 0, local
    code, remote = _generate(capsys, f"s3://{bucket}/in/", "--server", server.url,
                             "--out", f"s3://{bucket}/out")
    assert code == 0, remote
    assert remote["counts"]["ok"] == 3
    names = [f"item-{i}" for i in range(3)]
    results = sorted(f"out/{n}{ext}" for n in names for ext in (".glb", ".cutout.png", ".json"))
    assert [k for k in aws.keys(bucket, "out/") if not k.startswith("out/report")] == results
    # report.html at the end, as for a folder, its input previews read from the S3 inputs.
    assert b'id="report-data"' in aws.get(f"s3://{bucket}/out/report.html")
    assert any(k.startswith("out/report-files/inputs/item-0.") for k in aws.keys(bucket, "out/"))
    for n in names:
        for ext in (".glb", ".cutout.png"):
            assert aws.get(f"s3://{bucket}/out/{n}{ext}") == (tmp_path / "local" / f"{n}{ext}").read_bytes()
        report = json.loads(aws.get(f"s3://{bucket}/out/{n}.json"))
        assert report["status"] == "ok"
        assert report["input"]["path"] == f"s3://{bucket}/in/{n}.png"
        assert report["files"]["glb"] == f"s3://{bucket}/out/{n}.glb"
    assert [i["glb"] for i in remote["items"]] == [f"s3://{bucket}/out/{n}.glb" for n in names]
    assert not Path("s3:").exists()  # nothing (report.html) went to a local folder named like the URL

    # A result whose report never arrived (killed between the GLB and the report) is not done.
    aws.client("s3").delete_object(Bucket=bucket, Key="out/item-1.json")
    code, again = _generate(capsys, f"s3://{bucket}/in/", "--server", server.url,
                            "--out", f"s3://{bucket}/out")
    assert code == 0
    assert {i["name"]: i["status"] for i in again["items"]} == {
        "item-0": "skipped", "item-1": "ok", "item-2": "skipped"}


def test_one_s3_object_and_a_local_folder_together(
        aws: Aws, comfy_standin: StartStandin, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = _start(comfy_standin, tmp_path)
    bucket = aws.bucket()
    aws.put(f"s3://{bucket}/one/chair.png", object_photo(tmp_path / "chair.png", 7).read_bytes())
    code, data = _generate(capsys, f"s3://{bucket}/one/chair.png", str(_photos(tmp_path / "p", 1)),
                           "--server", server.url, "--out", str(tmp_path / "out"))
    assert code == 0, data
    assert sorted(p.name for p in (tmp_path / "out").glob("*.glb")) == ["chair.glb", "item-0.glb"]


def test_an_empty_input_prefix_is_a_usage_error(aws: Aws, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bucket = aws.bucket()
    aws.put(f"s3://{bucket}/in/readme.txt", b"no images here")
    code = main(["generate", f"s3://{bucket}/in/", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no images to generate from" in err and f"s3://{bucket}/in/" in err


def test_an_output_bucket_that_does_not_exist_fails_before_any_work(
        aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(_photos(tmp_path / "p", 1)), "--out", "s3://no-such-bucket-tb/out"])
    assert code == 2
    assert "S3 bucket no-such-bucket-tb does not exist" in capsys.readouterr().err


def test_no_credentials_for_s3_inputs(aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    bucket = aws.bucket()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code = main(["generate", f"s3://{bucket}/in/", "--out", str(tmp_path / "out")])
    assert code == 1
    assert f"no AWS credentials to list s3://{bucket}/in" in capsys.readouterr().err


def test_a_local_batch_never_reads_the_aws_configuration(
        comfy_standin: StartStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Local in, local out: a broken AWS config file (or no boto3 at all) is none of its business.
    broken = tmp_path / "aws-config"
    broken.write_text("[default\nregion = \n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(broken))
    server = _start(comfy_standin, tmp_path)
    code, data = _generate(capsys, str(_photos(tmp_path / "p", 1)), "--server", server.url,
                           "--out", str(tmp_path / "out"))
    assert code == 0, data
    assert [p.name for p in (tmp_path / "out").glob("*.glb")] == ["item-0.glb"]

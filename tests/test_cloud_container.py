"""The image runs an array child: the job definition's command on the image's entrypoint, S3 on
moto's server at 127.0.0.1 (``--network host``), ComfyUI the stand-in baked into the test image."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cloud_support import Aws
from tests.docker_support import docker_cli
from tests.image_support import BuiltImage
from tests.photos import object_photo
from tests.registry_support import REGION
from tests.serve_support import free_port
from trellis_box.cloud import awsbatch
from trellis_box.cloud.shard import Manifest, write_manifest

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_the_image_runs_the_job_definitions_command_as_an_array_child(
        aws: Aws, final_image: BuiltImage, tmp_path: Path) -> None:
    bucket = aws.bucket()
    for i in range(3):
        aws.put(f"s3://{bucket}/in/item-{i}.png", object_photo(tmp_path / f"item-{i}.png", i).read_bytes())
    manifest = f"s3://{bucket}/out/.trellis-box/jobs/container.json"
    write_manifest(Manifest(inputs=[f"s3://{bucket}/in/item-{i}.png" for i in range(3)],
                            out=f"s3://{bucket}/out", shards=2), manifest)
    # What AWS Batch runs: the definition's command, its parameter filled in.
    command = [manifest if arg == "Ref::manifest" else arg for arg in awsbatch.CHILD_COMMAND]
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": aws.endpoint_url,
           "AWS_BATCH_JOB_ARRAY_INDEX": "1", "TRELLIS_BOX_PORT": str(free_port()),
           "COMFY_STANDIN_EXEC_SECONDS": "0.05"}
    name = f"trellis-box-test-cloud-child-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([docker_cli(), "run", "--rm", "--name", name, "--network", "host",
                           *(f"--env={k}={v}" for k, v in env.items()), final_image.tag, *command],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [e["phase"] for e in events if e["event"] == "phase"][-1] == "ready"
    assert [(e["name"], e["status"]) for e in events if e["event"] == "input"] == [("item-2", "ok")]
    # Shard 1 of 2 over three inputs is the last one alone; shard 0's are not this child's.
    assert aws.keys(bucket, "out/item") == [f"out/item-2{ext}" for ext in (".cutout.png", ".glb", ".json")]
    report = json.loads(aws.get(f"s3://{bucket}/out/item-2.json"))
    assert report["status"] == "ok" and report["input"]["path"] == f"s3://{bucket}/in/item-2.png"
    assert "testing" not in done.stderr  # no credential in any log line

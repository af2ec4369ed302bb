"""AWS on loopback for the storage and cloud tests: the moto server the publish tests start
(``ecr_api``), here for S3, IAM and Batch too, reached the standard way (``AWS_ENDPOINT_URL``).

Batch runs without Docker (moto's ``use_docker: False``): a submitted job is accepted, validated
and marked SUCCEEDED without running a container; the children themselves are run by the tests.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.registry_support import REGION, EcrApi


@dataclass(frozen=True)
class Aws:
    endpoint_url: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, prefix: str = "tb") -> str:
        """A new, empty bucket of this test (the server lives for the whole session)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client("s3").create_bucket(Bucket=name)
        return name

    def put(self, url: str, data: bytes) -> None:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=data)

    def upload_folder(self, folder: Path, url: str) -> None:
        for path in sorted(folder.iterdir()):
            self.put(f"{url.rstrip('/')}/{path.name}", path.read_bytes())

    def get(self, url: str) -> bytes:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        body: bytes = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def job_queue(self) -> str:
        """An enabled job queue on an unmanaged compute environment (moto needs its role)."""
        tag = uuid.uuid4().hex[:10]
        role = self.client("iam").create_role(
            RoleName=f"batch-service-{tag}", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "batch.amazonaws.com"}}]}),
        )["Role"]["Arn"]
        batch = self.client("batch")
        env = batch.create_compute_environment(computeEnvironmentName=f"gpu-{tag}", type="UNMANAGED",
                                               state="ENABLED", serviceRole=role)
        name = f"queue-{tag}"
        batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1, computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}])
        return name


@pytest.fixture
def aws(aws_env: EcrApi, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Test credentials (``aws_env``) and every service at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.endpoint_url)
    request = urllib.request.Request(f"{aws_env.endpoint_url}/moto-api/config", method="POST",
                                     data=json.dumps({"batch": {"use_docker": False}}).encode())
    urllib.request.urlopen(request, timeout=30).close()
    return Aws(aws_env.endpoint_url)

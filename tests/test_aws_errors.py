"""The shared botocore mapper (``aws_errors``): what every AWS service of ours gets without saying
it, through a real boto3 client: no credentials, credentials that do not load, no region, an
endpoint on a closed loopback port, and moto's S3 answering a code the service's table lacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from tests.cloud_support import Aws
from tests.registry_support import REGION, EcrApi
from tests.serve_support import free_port
from trellis_box.aws_errors import AwsService, Refusal, aws_call
from trellis_box.errors import AwsCredentialsMissingError, StorageMissingError, StorageRequestError

SERVICE = AwsService("Test Store", StorageRequestError, permissions="grant s3:GetObject on the bucket",
                     endpoint="AWS_ENDPOINT_URL_S3", region="set AWS_REGION (the bucket's region)")
SECRET = "wJalrXUtnFEMI-not-to-be-printed"


def _client(endpoint_url: str, region: str | None = REGION) -> Any:
    # One attempt: a refused connection is not retried for seconds.
    return boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url,
                                          config=botocore.config.Config(retries={"total_max_attempts": 1}))


def test_no_credentials_name_the_service_and_never_the_secret(
        aws_env: EcrApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # a secret alone is no credentials
    with pytest.raises(AwsCredentialsMissingError) as info, aws_call(SERVICE, "list s3://b/in", url="s3://b/in"):
        _client(aws_env.endpoint_url).list_objects_v2(Bucket="b")
    text = str(info.value)
    assert text.startswith("no AWS credentials to list s3://b/in\n"), text
    assert "Test Store" in text and "fix: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in text
    assert info.value.facts == {"url": "s3://b/in"}

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsCredentialsMissingError) as info, aws_call(SERVICE, "list s3://b/in"):
        _client(aws_env.endpoint_url).list_objects_v2(Bucket="b")
    text = str(info.value) + str(info.value.to_dict())
    assert "missing: AWS_SECRET_ACCESS_KEY" in text and "AKIAEXAMPLEKEYID" not in text and SECRET not in text


def test_credentials_that_do_not_load_name_the_source(
        aws_env: EcrApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[profile broken]\ncredential_process = /bin/false\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "broken")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsCredentialsMissingError) as info, aws_call(SERVICE, "read s3://b/k"):
        _client(aws_env.endpoint_url).get_object(Bucket="b", Key="k")
    assert "the AWS credentials to read s3://b/k could not be loaded" in str(info.value)
    assert "custom-process" in str(info.value) and "credential_process" in str(info.value.fix)


def test_no_region_gives_the_service_fix(aws_env: EcrApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(AwsCredentialsMissingError, match="no AWS region to open the queue") as info, \
            aws_call(SERVICE, "open the queue"):
        boto3.session.Session().client("sqs")
    assert info.value.fix == SERVICE.region


def test_unreachable_endpoint_is_named_with_its_password_masked(aws_env: EcrApi) -> None:
    port = free_port()
    with pytest.raises(StorageRequestError) as info, aws_call(SERVICE, "list s3://b/in", url="s3://b/in"):
        _client(f"http://user:{SECRET}@127.0.0.1:{port}").list_objects_v2(Bucket="b")
    text = str(info.value)
    assert text.startswith("cannot reach Test Store to list s3://b/in\n"), text
    assert f"http://***@127.0.0.1:{port}" in text and SECRET not in text
    assert "fix: check the network path to Test Store, or the endpoint in AWS_ENDPOINT_URL_S3" in text
    assert info.value.facts == {"url": "s3://b/in"}


def test_a_code_the_table_lacks_is_a_refusal_with_the_code(aws: Aws) -> None:
    bucket = aws.bucket()
    action = f"read s3://{bucket}/absent.glb"
    with pytest.raises(StorageRequestError) as info, aws_call(SERVICE, action):
        _client(aws.endpoint_url).get_object(Bucket=bucket, Key="absent.glb")
    assert info.value.message == f"Test Store refused to {action} (NoSuchKey)"
    assert info.value.detail and "does not exist" in info.value.detail
    assert info.value.fix == SERVICE.permissions and info.value.facts == {"code": "NoSuchKey"}

    # The same answer, named in the call's table: its message, fix and error class.
    gone = Refusal("absent.glb was never written", fix="generate it first", error=StorageMissingError,
                   facts={"key": "absent.glb"})
    with pytest.raises(StorageMissingError) as missing, aws_call(SERVICE, action, {"NoSuchKey": gone}, url="u"):
        _client(aws.endpoint_url).get_object(Bucket=bucket, Key="absent.glb")
    assert missing.value.message == "absent.glb was never written" and missing.value.fix == "generate it first"
    assert missing.value.detail and missing.value.detail.startswith(f"Test Store answered NoSuchKey to: {action}")
    assert missing.value.facts == {"url": "u", "key": "absent.glb", "code": "NoSuchKey"}


@pytest.mark.parametrize(("code", "status", "fix"), [
    ("InvalidAccessKeyId", 403, "check the AWS credentials: they are unknown or expired"),
    ("ExpiredTokenException", 400, "check the AWS credentials: they are unknown or expired"),
    ("ThrottlingException", 400, "run it again later: Test Store is throttling or failing requests"),
    ("InternalError", 500, "run it again later: Test Store is throttling or failing requests"),
    ("AccessDenied", 403, SERVICE.permissions),
])
def test_refusals_that_are_not_about_permissions_say_so(code: str, status: int, fix: str) -> None:
    # moto accepts any credentials and never throttles: botocore's error, as its parser builds it.
    answer: Any = {"Error": {"Code": code, "Message": "said"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    with pytest.raises(StorageRequestError) as info, aws_call(SERVICE, "list s3://b/"):
        raise botocore.exceptions.ClientError(answer, "ListObjectsV2")
    assert info.value.message == f"Test Store refused to list s3://b/ ({code})"
    assert info.value.fix and info.value.fix.startswith(fix)

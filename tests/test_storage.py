"""The storage protocol on a folder and on S3 (moto's server on loopback, through boto3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from tests.cloud_support import Aws
from trellis_box.errors import AwsCredentialsMissingError, StorageMissingError
from trellis_box.storage import Storage, open_storage
from trellis_box.storage.local import LocalStorage
from trellis_box.storage.s3 import S3Storage

MIB = 1024**2


def _roundtrip(store: Storage, tmp_path: Path) -> None:
    assert store.list() == [] and store.size("a.glb") is None and not store.exists("a.glb")
    source = tmp_path / "src.bin"
    source.write_bytes(b"glTF" * 10)
    store.write("b.glb", source)
    store.write("a.glb", source)
    assert store.list() == ["a.glb", "b.glb"]
    assert store.read("a.glb") == b"glTF" * 10 and store.size("a.glb") == 40 and store.exists("a.glb")
    with pytest.raises(FileNotFoundError):
        store.read("missing.json")
    # What the report needs: deeper names, bytes written whole, times to tell stale, a local copy.
    assert store.modified("missing.png") is None
    store.write_bytes("report-files/thumbnails/a.png", b"\x89PNG")
    assert store.list("report-files/thumbnails/") == ["a.png"] and store.list("nowhere/") == []
    assert store.list() == ["a.glb", "b.glb"]  # a folder below is not in the listing
    made, source = store.modified("report-files/thumbnails/a.png"), store.modified("a.glb")
    assert made is not None and source is not None and made >= source
    with store.local_copy("a.glb") as copy:
        assert copy.read_bytes() == b"glTF" * 10


def test_a_folder_lists_reads_and_writes_whole(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "out")
    assert isinstance(store, LocalStorage)
    _roundtrip(store, tmp_path)
    assert store.url("a.glb") == str(tmp_path / "out" / "a.glb")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.glb", "b.glb", "report-files"]  # no temp left


def test_an_s3_prefix_lists_only_its_own_objects(aws: Aws, tmp_path: Path) -> None:
    bucket = aws.bucket()
    store = open_storage(f"s3://{bucket}/glb/")
    assert isinstance(store, S3Storage) and store.url("a.glb") == f"s3://{bucket}/glb/a.glb"
    _roundtrip(store, tmp_path)
    aws.put(f"s3://{bucket}/glb/.trellis-box/jobs/x.json", b"{}")  # a deeper "folder"
    aws.put(f"s3://{bucket}/glb-other/c.glb", b"x")  # a sibling prefix
    assert store.list() == ["a.glb", "b.glb"]
    # Browsers open what S3 serves by its type: report.html must not arrive as a download.
    types = {key: aws.client("s3").head_object(Bucket=bucket, Key=f"glb/{key}")["ContentType"]
             for key in ("a.glb", "report-files/thumbnails/a.png")}
    assert types == {"a.glb": "model/gltf-binary", "report-files/thumbnails/a.png": "image/png"}


def test_a_large_glb_goes_up_in_parts(aws: Aws, tmp_path: Path) -> None:
    bucket = aws.bucket()
    five = 5 * MIB  # S3's smallest part
    store = S3Storage(bucket, "big", transfer=TransferConfig(multipart_threshold=five,
                                                            multipart_chunksize=five))
    data = bytes(range(256)) * (12 * MIB // 256)
    (tmp_path / "big.glb").write_bytes(data)
    store.write("big.glb", tmp_path / "big.glb")
    head = aws.client("s3").head_object(Bucket=bucket, Key="big/big.glb")
    # A multipart object's ETag names its part count; a single PUT's is a plain MD5.
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
    assert aws.get(f"s3://{bucket}/big/big.glb") == data


def test_a_missing_bucket_is_named(aws: Aws, tmp_path: Path) -> None:
    store = open_storage("s3://no-such-bucket-tb/in/")
    with pytest.raises(StorageMissingError, match="S3 bucket no-such-bucket-tb does not exist") as info:
        store.list()
    assert "aws s3 mb s3://no-such-bucket-tb" in str(info.value)
    assert isinstance(store, S3Storage)
    with pytest.raises(StorageMissingError, match="does not exist"):
        store.check()
    # upload_file wraps the refusal in its own S3UploadFailedError: still named, still ours.
    glb = tmp_path / "a.glb"
    glb.write_bytes(b"glTF")
    with pytest.raises(StorageMissingError, match="S3 bucket no-such-bucket-tb does not exist"):
        store.write("a.glb", glb)
    with pytest.raises(StorageMissingError, match="names no S3 bucket"):
        open_storage("s3:///key")


def test_no_credentials_say_how_to_give_them(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = aws.bucket()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsCredentialsMissingError, match=f"no AWS credentials to list s3://{bucket}/in") as info:
        open_storage(f"s3://{bucket}/in").list()
    assert "AWS_ACCESS_KEY_ID" in str(info.value)

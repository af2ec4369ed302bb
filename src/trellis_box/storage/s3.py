"""An S3 prefix as storage, through boto3.

Credentials, region and endpoint come the standard AWS way (environment, profile, instance
role; ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for another endpoint). A PutObject is
atomic: an object appears whole or not at all; files above the multipart threshold go up in parts
(boto3's transfer manager), which S3 also assembles only when every part is there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig

from trellis_box.aws_errors import AwsService, Refusal, aws_call
from trellis_box.errors import StorageMissingError, StorageRequestError
from trellis_box.storage.base import S3_SCHEME, content_type

#: Above this a file goes up in parts of this size (GLBs at 1536 and 4k textures reach 100 MB+).
MULTIPART_BYTES = 64 * 1024**2
S3 = AwsService("S3", StorageRequestError,
                permissions="check that these credentials may use this bucket (s3:ListBucket, s3:GetObject, "
                            "s3:PutObject)",
                endpoint="AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL")


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``; refuses a URL without a bucket."""
    bucket, _, prefix = url.removeprefix(S3_SCHEME).partition("/")
    if not url.startswith(S3_SCHEME) or not bucket:
        raise StorageMissingError(f"{url!r} names no S3 bucket",
                                  fix="write S3 locations as s3://BUCKET/PREFIX", url=url)
    return bucket, prefix.strip("/")


def s3_client() -> Any:
    with aws_call(S3, "use S3"):
        # A session per use: boto3's default session would keep the first credentials it found.
        return boto3.session.Session().client("s3")


class S3Storage:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None,
                 transfer: TransferConfig | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client if client is not None else s3_client()
        self.transfer = transfer or TransferConfig(multipart_threshold=MULTIPART_BYTES,
                                                   multipart_chunksize=MULTIPART_BYTES)

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        bucket, prefix = parse_url(url)
        return cls(bucket, prefix)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str = "") -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key(name)}"

    def _errors(self, action: str, name: str = "", *, missing_bucket: tuple[str, ...] = ("NoSuchBucket",)
                ) -> AbstractContextManager[None]:
        url = self.url(name)
        missing = Refusal(f"S3 bucket {self.bucket} does not exist",
                          fix=f"check the bucket name in {url}, or create it: aws s3 mb s3://{self.bucket}",
                          error=StorageMissingError, facts={"bucket": self.bucket})
        return aws_call(S3, f"{action} {url}", dict.fromkeys(missing_bucket, missing), url=url)

    def list(self, folder: str = "") -> list[str]:
        base = f"{self.prefix}/{folder}" if self.prefix else folder
        names: list[str] = []
        with self._errors("list", folder):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/")
            for page in pages:
                names += [o["Key"][len(base):] for o in page.get("Contents", [])]
        return sorted(n for n in names if n)

    def read(self, name: str) -> bytes:
        try:
            with self._errors("read", name):
                body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
                return body
        except StorageRequestError as exc:
            if exc.facts.get("code") == "NoSuchKey":
                raise FileNotFoundError(self.url(name)) from exc
            raise

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            with self._errors("look up", name):
                head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except StorageRequestError as exc:
            # HEAD has no body: a missing key is a bare 404 (403 without s3:ListBucket).
            if exc.facts.get("code") in ("404", "NoSuchKey"):
                return None
            raise
        return head

    def size(self, name: str) -> int | None:
        head = self._head(name)
        return None if head is None else int(head["ContentLength"])

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def modified(self, name: str) -> float | None:
        head = self._head(name)
        return None if head is None else float(head["LastModified"].timestamp())

    def write(self, name: str, source: Path) -> None:
        with self._errors("upload", name):
            self.client.upload_file(os.fspath(source), self.bucket, self.key(name),
                                    ExtraArgs={"ContentType": content_type(name)},
                                    Config=self.transfer)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self._errors("upload", name):
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data,
                                   ContentType=content_type(name))

    @contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="trellis-box-s3-") as folder:
            path = Path(folder) / Path(name).name
            with self._errors("download", name):
                self.client.download_file(self.bucket, self.key(name), os.fspath(path),
                                          Config=self.transfer)
            yield path

    def check(self) -> None:
        """Fail now, clearly, when the bucket is missing or not ours (before any work)."""
        # HEAD has no body to say NoSuchBucket: a missing bucket is a bare 404.
        with self._errors("open", missing_bucket=("NoSuchBucket", "404")):
            self.client.head_bucket(Bucket=self.bucket)

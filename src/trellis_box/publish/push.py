"""``publish``: tag an image with its version, git commit and weights-lock digest; push it to ECR.

The registry password comes from ECR's ``GetAuthorizationToken`` through boto3 (no AWS CLI), is
handed to the Docker engine for the login and the push, and is never printed or written to disk.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import docker
import docker.errors

from trellis_box.aws_errors import AwsService, Refusal, aws_call
from trellis_box.docker_engine import engine_call
from trellis_box.errors import (
    EcrRepositoryMissingError,
    EcrRequestError,
    PublishImageError,
    PushFailedError,
    RegistryLoginRefusedError,
    RegistryUnreachableError,
)

VERSION_LABEL = "org.opencontainers.image.version"
REVISION_LABEL = "org.opencontainers.image.revision"
LOCK_DIGEST_LABEL = "io.trellis-box.weights.lock-digest"

_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
ECR = AwsService(
    "ECR", EcrRequestError,
    permissions="check that these credentials may use ECR in this region (ecr:GetAuthorizationToken, "
                "DescribeRepositories, CreateRepository, and the push actions)",
    endpoint="`ecr_endpoint_url` or AWS_ENDPOINT_URL_ECR",
    region="pass `region` us-west-2, or set AWS_REGION or AWS_DEFAULT_REGION, or region in ~/.aws/config")
# How the engine words a registry's refusal, as opposed to not reaching it. Whole words: the
# message names the registry's port, and port 44039 is not a 403.
_REFUSAL = re.compile(r"\b(?:401|403|unauthorized|denied|authentication required)\b", re.IGNORECASE)


@dataclass(frozen=True)
class PublishRequest:
    image: str
    repository: str
    region: str | None = None
    # Each overrides the image label of the same meaning.
    version: str | None = None
    revision: str | None = None
    lock_digest: str | None = None
    extra_tags: tuple[str, ...] = ()
    create_repository: bool = False
    # Push to this host[:port] instead of the registry ECR names (VPC endpoints, tests).
    registry: str | None = None
    ecr_endpoint_url: str | None = None


@dataclass(frozen=True)
class PushProgress:
    tag: str
    layer: str
    status: str
    current: int | None
    total: int | None


@dataclass
class PublishResult:
    image: str
    repository_uri: str  # where the image went: registry host / repository
    tags: list[str]
    digest: str
    created_repository: bool
    labels: dict[str, str] = field(default_factory=dict)


ProgressCallback = Callable[[PushProgress], None]


def image_tags(labels: Mapping[str, str], *, image: str, version: str | None = None,
               revision: str | None = None, lock_digest: str | None = None,
               extra: tuple[str, ...] = ()) -> list[str]:
    """The tags for an image: ``<version>``, ``git-<commit:12>``, ``weights-<lock:12>``, extras."""
    version = version or _label(labels, VERSION_LABEL, image, "`version` 0.1.0")
    revision = revision or _label(labels, REVISION_LABEL, image, "`revision` $(git rev-parse HEAD)")
    lock_digest = lock_digest or _label(labels, LOCK_DIGEST_LABEL, image,
                                        "`lock_digest` $(python -c 'from trellis_box.weights.lock import "
                                        "lock_digest; print(lock_digest())')")
    lock = lock_digest.removeprefix("sha256:")
    tags = [_tag(version), _tag(f"git-{revision[:12]}"), _tag(f"weights-{lock[:12]}")]
    for tag in extra:
        if _tag(tag) != tag:
            raise PublishImageError(
                f"{tag!r} is not a valid image tag",
                fix="use letters, digits, '_', '.' and '-' (at most 128, not starting with . or -)",
                tag=tag,
            )
        tags.append(tag)
    return list(dict.fromkeys(tags))


def _label(labels: Mapping[str, str], key: str, image: str, option: str) -> str:
    value = labels.get(key)
    if not value:
        raise PublishImageError(
            f"image {image} has no label {key}",
            detail="publish makes a tag from it and will not guess",
            fix=f"rebuild with Dockerfile.trellis2 (it sets the label), or pass {option}",
            image=image, label=key,
        )
    return value


def _tag(value: str) -> str:
    tag = _TAG_CHARS.sub("-", value)[:128]
    return tag if tag[:1] not in (".", "-", "") else f"v{tag}"[:128]


def publish(request: PublishRequest, *, client: docker.DockerClient,
            on_progress: ProgressCallback | None = None) -> PublishResult:
    image = _local_image(client, request.image)
    labels = image.labels or {}
    tags = image_tags(labels, image=request.image, version=request.version,
                      revision=request.revision, lock_digest=request.lock_digest,
                      extra=request.extra_tags)
    ecr = _ecr_client(request)
    created = _ensure_repository(ecr, request)
    username, password, endpoint = _authorization(ecr)
    host = _host(request.registry or endpoint)
    target = f"{host}/{request.repository}"
    _login(client, host, username, password)

    digests: set[str] = set()
    for tag in tags:
        with engine_call(f"tag {request.image} as {target}:{tag}"):
            image.tag(target, tag)
        digests.add(_push(client, target, tag, username, password, on_progress))
    if len(digests) != 1:
        raise PushFailedError(
            f"the tags of {target} were pushed with different digests",
            detail=", ".join(sorted(digests)),
            fix="publish again; if it repeats, the registry rewrote a manifest",
        )
    return PublishResult(
        image=request.image, repository_uri=target, tags=tags, digest=digests.pop(),
        created_repository=created,
        labels={k: labels[k] for k in (VERSION_LABEL, REVISION_LABEL, LOCK_DIGEST_LABEL)
                if k in labels},
    )


def _host(registry: str) -> str:
    """``https://1234.dkr.ecr.us-west-2.amazonaws.com`` or a bare ``host:port`` -> ``host:port``."""
    return urlsplit(registry).netloc if "://" in registry else registry.rstrip("/")


def _local_image(client: docker.DockerClient, ref: str) -> Any:
    with engine_call(f"inspect {ref}"):
        try:
            return client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise PublishImageError(
                f"image {ref} is not on this host",
                fix="build it first (docker build -f Dockerfile.trellis2 -t "
                    "comfyui-trellis2:latest .) or name another image",
                image=ref,
            ) from None


def _ecr_client(request: PublishRequest) -> Any:
    with aws_call(ECR, "publish to ECR"):
        # A session per publish: boto3's default session would keep the first credentials found.
        return boto3.session.Session().client("ecr", region_name=request.region,
                                              endpoint_url=request.ecr_endpoint_url)


def _ensure_repository(ecr: Any, request: PublishRequest) -> bool:
    """True when this call created the repository."""
    missing = Refusal(
        f"ECR repository {request.repository} does not exist",
        fix=f"pass `create_repository`, or create it: aws ecr create-repository "
            f"--repository-name {request.repository}",
        error=EcrRepositoryMissingError, facts={"repository": request.repository})
    try:
        with aws_call(ECR, f"look up the repository {request.repository}",
                      {"RepositoryNotFoundException": missing}):
            ecr.describe_repositories(repositoryNames=[request.repository])
        return False
    except EcrRepositoryMissingError:
        if not request.create_repository:
            raise
    with aws_call(ECR, f"create the repository {request.repository}"):
        ecr.create_repository(repositoryName=request.repository,
                              imageScanningConfiguration={"scanOnPush": True})
    return True


def _authorization(ecr: Any) -> tuple[str, str, str]:
    with aws_call(ECR, "get a registry token"):
        data = ecr.get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return username, password, data["proxyEndpoint"]


def _login(client: docker.DockerClient, host: str, username: str, password: str) -> None:
    try:
        client.login(username=username, password=password, registry=host, reauth=True)
    except docker.errors.APIError as exc:
        said = str(exc.explanation or exc)
        if not _REFUSAL.search(said):
            raise RegistryUnreachableError(
                f"the Docker engine could not reach registry {host}",
                detail=f"the engine said: {said}",
                fix="check the engine's DNS and network path to the registry (proxy settings of "
                    "dockerd), or pass `registry` with an endpoint it can reach",
                registry=host,
            ) from exc
        raise RegistryLoginRefusedError(
            f"registry {host} refused the ECR login",
            detail=f"the engine said: {said}",
            fix="check that the registry belongs to the account and region of the credentials "
                "(or that `registry` points at that account's ECR endpoint)",
            registry=host,
        ) from exc


def _push(client: docker.DockerClient, target: str, tag: str, username: str, password: str,
          on_progress: ProgressCallback | None) -> str:
    digest = None
    with engine_call(f"push {target}:{tag}"):
        stream = client.api.push(target, tag=tag, stream=True, decode=True,
                                 auth_config={"username": username, "password": password})
        for event in stream:
            if "error" in event:
                raise PushFailedError(
                    f"push of {target}:{tag} failed",
                    detail=(event.get("errorDetail") or {}).get("message") or event["error"],
                    fix="check the repository's permissions and the registry's free space, then "
                        "publish again (layers already pushed are skipped)",
                    target=f"{target}:{tag}",
                )
            aux = event.get("aux") or {}
            if aux.get("Digest"):
                digest = str(aux["Digest"])
            if on_progress is not None and "id" in event:
                detail = event.get("progressDetail") or {}
                on_progress(PushProgress(tag=tag, layer=event["id"], status=event.get("status", ""),
                                         current=detail.get("current"), total=detail.get("total")))
    if digest is None:
        raise PushFailedError(f"push of {target}:{tag} ended without a digest",
                              fix="publish again; check the engine's log (journalctl -u docker)")
    return digest

"""``trellis-box publish`` against a real registry (Debian's docker-registry) and ECR (moto server).

The registry accepts only the credentials in moto's ECR token, so each push proves the login.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.registry_support import EcrApi, Registry, start_registry, stop_registry
from trellis_box.cli.app import main
from trellis_box.errors import PublishImageError
from trellis_box.publish.push import image_tags

REVISION = "0123456789abcdef0123456789abcdef01234567"
LOCK = "sha256:" + "ab" * 32
LABELS = {
    "org.opencontainers.image.version": "0.1.0",
    "org.opencontainers.image.revision": REVISION,
    "io.trellis-box.weights.lock-digest": LOCK,
}
EXPECTED_TAGS = ["0.1.0", "git-0123456789ab", "weights-abababababab"]


# ---- tags, pure -----------------------------------------------------------------------------

def test_tags_come_from_version_commit_and_lock_labels() -> None:
    assert image_tags(LABELS, image="i") == EXPECTED_TAGS
    assert image_tags(LABELS, image="i", extra=("latest",)) == [*EXPECTED_TAGS, "latest"]


def test_options_override_labels_and_odd_characters_become_dashes() -> None:
    tags = image_tags({}, image="i", version="1.0+cu126", revision="abc-dirty",
                      lock_digest="unlocked")
    assert tags == ["1.0-cu126", "git-abc-dirty", "weights-unlocked"]


def test_missing_label_names_it_and_the_parameter() -> None:
    labels = {k: v for k, v in LABELS.items() if k != "org.opencontainers.image.revision"}
    with pytest.raises(PublishImageError) as info:
        image_tags(labels, image="comfyui-trellis2:latest")
    text = str(info.value)
    assert "image comfyui-trellis2:latest has no label org.opencontainers.image.revision" in text
    # The library names its parameter; the command line, its flag
    # (test_missing_label_on_the_command_line_names_the_flag).
    assert "or pass `revision` $(git rev-parse HEAD)" in text


def test_invalid_extra_tag_is_refused() -> None:
    with pytest.raises(PublishImageError) as info:
        image_tags(LABELS, image="i", extra=("new build",))
    assert "'new build' is not a valid image tag" in str(info.value)


# ---- against the registry and ECR ------------------------------------------------------------

def _image(client: docker.DockerClient, labels: dict[str, str]) -> Iterator[str]:
    """A one-file image with ``labels``, made locally (no base image needed)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = f"trellis-box publish test {uuid.uuid4()}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    ref = f"tbpub-{uuid.uuid4().hex[:10]}/comfyui-trellis2:latest"
    client.api.import_image_from_data(
        buffer.getvalue(), repository=ref.split(":")[0], tag="latest",
        changes=[f"LABEL {k}={v}" for k, v in labels.items()])
    image_id = client.images.get(ref).id
    yield ref
    client.images.remove(image_id, force=True)


@pytest.fixture
def labelled_image(docker_client: docker.DockerClient) -> Iterator[str]:
    yield from _image(docker_client, LABELS)


@pytest.fixture
def image_without_revision(docker_client: docker.DockerClient) -> Iterator[str]:
    yield from _image(docker_client, {k: v for k, v in LABELS.items()
                                      if k != "org.opencontainers.image.revision"})


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def repo_name() -> str:
    return f"tb-{uuid.uuid4().hex[:10]}/comfyui-trellis2"


@pytest.mark.docker
def test_publish_pushes_every_tag_with_one_digest(
        aws_env: EcrApi, registry: Registry, labelled_image: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    repository = repo_name()
    # Written as a URL, as ECR's proxyEndpoint is.
    code, out, err = run_cli(capsys, "publish", labelled_image, "--repository", repository,
                             "--create-repository", "--registry", f"http://{registry.host}",
                             "--tag", "latest", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tags"] == [*EXPECTED_TAGS, "latest"]
    assert result["repository_uri"] == f"{registry.host}/{repository}"
    assert result["created_repository"] is True
    assert registry.tags(repository) == sorted([*EXPECTED_TAGS, "latest"])
    for tag in result["tags"]:
        assert registry.manifest_digest(repository, tag) == result["digest"]
    assert result["digest"].startswith("sha256:")
    described = aws_env.client().describe_repositories(repositoryNames=[repository])
    assert described["repositories"][0]["repositoryName"] == repository
    assert registry.password not in out + err


@pytest.mark.docker
def test_publish_again_to_an_existing_repository_keeps_the_digest(
        aws_env: EcrApi, registry: Registry, labelled_image: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    repository = repo_name()
    aws_env.client().create_repository(repositoryName=repository)
    first = run_cli(capsys, "publish", labelled_image, "--repository", repository,
                    "--registry", registry.host, "--json")
    # For a person this time: the tags and the digest on stdout.
    second = run_cli(capsys, "publish", labelled_image, "--repository", repository,
                     "--registry", registry.host, "--revision", "f" * 40)
    assert first[0] == 0 and second[0] == 0, first[2] + second[2]
    pushed = json.loads(first[1])
    assert pushed["created_repository"] is False
    assert f"pushed {registry.host}/{repository}:git-ffffffffffff" in second[1]
    assert f"digest {pushed['digest']}" in second[1]
    assert "git-ffffffffffff" in registry.tags(repository)
    assert "git-0123456789ab" in registry.tags(repository)


@pytest.mark.docker
def test_missing_repository_is_an_error_without_create_repository(
        aws_env: EcrApi, registry: Registry, labelled_image: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    repository = repo_name()
    code, out, err = run_cli(capsys, "publish", labelled_image, "--repository", repository,
                             "--registry", registry.host)
    assert code == 1
    assert f"ECR repository {repository} does not exist" in err
    # Our flag, as the command line spells the library's `create_repository`; the AWS CLI's own.
    assert "fix: pass --create-repository, or create it: aws ecr create-repository " \
        f"--repository-name {repository}" in err
    with pytest.raises(Exception, match="RepositoryNotFoundException"):
        aws_env.client().describe_repositories(repositoryNames=[repository])


@pytest.mark.docker
def test_missing_label_on_the_command_line_names_the_flag(
        aws_env: EcrApi, image_without_revision: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "publish", image_without_revision, "--repository", repo_name())
    assert code == 2
    assert f"image {image_without_revision} has no label org.opencontainers.image.revision" in err
    assert "or pass --revision $(git rev-parse HEAD)" in err
    assert "`" not in err


@pytest.mark.docker
def test_missing_aws_credentials_say_how_to_provide_them(
        aws_env: EcrApi, registry: Registry, labelled_image: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run_cli(capsys, "publish", labelled_image, "--repository", repo_name(),
                             "--registry", registry.host, "--json")
    assert code == 1
    assert json.loads(out)["error"] == "aws-credentials-missing"
    assert "no AWS credentials to look up the repository" in err
    assert "fix: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE" in err


@pytest.mark.docker
def test_refused_login_names_the_registry(
        aws_env: EcrApi, labelled_image: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    username, password = aws_env.registry_credentials()
    other = start_registry(tmp_path / "other-registry", username, password + "-not-this-one")
    try:
        code, out, err = run_cli(capsys, "publish", labelled_image, "--repository", repo_name(),
                                 "--create-repository", "--registry", other.host)
    finally:
        stop_registry(other)
    assert code == 1
    assert f"registry {other.host} refused the ECR login" in err
    assert "401 Unauthorized" in err
    assert password not in out + err


@pytest.mark.docker
def test_absent_local_image_is_named(aws_env: EcrApi, capsys: pytest.CaptureFixture[str],
                                     docker_client: docker.DockerClient) -> None:
    code, _, err = run_cli(capsys, "publish", "tb-absent/none:0", "--repository", "x")
    assert code == 2
    assert "image tb-absent/none:0 is not on this host" in err


@pytest.mark.docker
def test_unreachable_registry_is_not_called_a_refusal(
        aws_env: EcrApi, labelled_image: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A port whose digits hold a 403: the engine's message names it, and it is no refusal.
    closed = _closed_port(range(40300, 40400))
    code, _, err = run_cli(capsys, "publish", labelled_image, "--repository", repo_name(),
                           "--create-repository", "--registry", f"127.0.0.1:{closed}")
    assert code == 1
    assert f"the Docker engine could not reach registry 127.0.0.1:{closed}" in err
    assert "connection refused" in err
    assert "refused the ECR login" not in err


def _closed_port(candidates: range | None = None) -> int:
    """A loopback port nothing listens on (bound, then released): any, or the first of
    ``candidates`` that is free."""
    for port in candidates or [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise AssertionError(f"no free port in {candidates}")

"""`trellis-box publish`: tag the image with version, commit and weights lock; push it to ECR."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit, err, styled
from trellis_box.docker_engine import docker_client
from trellis_box.publish.push import PublishRequest, PublishResult, PushProgress, publish

EXAMPLES = """\
Examples:

  trellis-box publish comfyui-trellis2:latest --region us-west-2 --tag latest

  trellis-box publish comfyui-trellis2:latest --repository team/comfyui-trellis2 \\
      --create-repository

Credentials: boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an
instance role). Tags: <version>, git-<commit>, weights-<lock digest>, from the image's labels
org.opencontainers.image.version, org.opencontainers.image.revision and
io.trellis-box.weights.lock-digest (or the options below).
"""

app = typer.Typer()


# One line for the command list of `trellis-box --help` (the docstring wraps mid-sentence).
@app.command("publish", epilog=EXAMPLES,
             short_help="Tag IMAGE with version, commit and weights lock; push it to ECR.")
def publish_command(
    ctx: typer.Context,
    image: str = typer.Argument("comfyui-trellis2:latest", help="The local image to publish."),
    repository: str | None = typer.Option(
        None, "--repository", help="ECR repository name (default: the image's name)."),
    region: str | None = typer.Option(
        None, "--region", envvar="AWS_REGION",
        help="AWS region (default: boto3's, AWS_DEFAULT_REGION or ~/.aws/config)."),
    tag: list[str] = typer.Option([], "--tag", help="Another tag to push, e.g. latest."),
    create_repository: bool = typer.Option(False, "--create-repository",
                                           help="Create the repository if it does not exist."),
    version: str | None = typer.Option(None, "--version",
                                       help="Override the image's version label."),
    revision: str | None = typer.Option(None, "--revision",
                                        help="Override the image's git commit label."),
    lock_digest: str | None = typer.Option(None, "--lock-digest",
                                           help="Override the image's weights-lock digest label."),
    registry: str | None = typer.Option(
        None, "--registry",
        help="Push to this HOST[:PORT] instead of the registry ECR names (e.g. a VPC endpoint); "
             "the token still comes from ECR."),
    ecr_endpoint_url: str | None = typer.Option(
        None, "--ecr-endpoint-url", envvar="AWS_ENDPOINT_URL_ECR",
        help="The ECR API endpoint (e.g. a VPC endpoint)."),
    as_json: bool = JsonOption,
) -> None:
    """Tag IMAGE with its version, git commit and weights-lock digest, push it to ECR and print
    the pushed digest."""
    request = PublishRequest(
        image=image,
        repository=repository or image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0],
        region=region, version=version, revision=revision, lock_digest=lock_digest,
        extra_tags=tuple(tag), create_repository=create_repository, registry=registry,
        ecr_endpoint_url=ecr_endpoint_url)
    with errors_in_flags(ctx):
        # A push of a multi-GB layer is one API call: minutes, not the default seconds.
        client = docker_client(timeout=600)
        if as_json:
            result = publish(request, client=client)
        else:
            with _PushDisplay(err) as display:
                result = publish(request, client=client, on_progress=display.on_progress)
    emit(asdict(result), as_json=as_json, render=lambda console: _render(console, result))


class _PushDisplay:
    """One bar per layer, bytes pushed of its size (stderr)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                 console=console, transient=True)
        self.layers: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> _PushDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_progress(self, event: PushProgress) -> None:
        key = (event.tag, event.layer)
        if key not in self.layers:
            self.layers[key] = self.progress.add_task(f"{event.tag} {event.layer}", total=None)
        task = self.layers[key]
        self.progress.update(task, description=f"{event.tag} {event.layer} {event.status.lower()}",
                             total=event.total, completed=event.current or 0)
        if event.status in ("Pushed", "Layer already exists") or event.status.startswith("Mounted"):
            self.progress.update(task, total=1, completed=1)


def _render(console: Console, result: PublishResult) -> None:
    if result.created_repository:
        console.print(f"created repository {result.repository_uri}", highlight=False)
    for tag in result.tags:
        console.print(f"pushed {result.repository_uri}:{tag}", highlight=False)
    console.print(styled("digest ", (result.digest, "bold")), highlight=False)


"""Dockerfile.trellis2 built for real on a stand-in upstream stack, with a real Docker engine.

One build per session (``final_image``): weights from an olah Hub mirror with a fake token as a
BuildKit secret, our package, our node pack, the architecture check. Only the CUDA base, torch,
ComfyUI and the node packs are stand-ins (tests/image_support.py); what a GPU machine alone can
prove is listed in the README.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.docker_support import docker_cli
from tests.hub_mirror import HubMirror
from tests.image_support import FINAL_IMAGE, BuiltImage, container_logs, steps, wait_for
from trellis_box import __version__, pins
from trellis_box.weights.lock import lock_digest

pytestmark = pytest.mark.docker


def test_weights_stage_fetches_every_weight_through_the_mirror_with_the_secret(
        final_image: BuiltImage, hub_mirror: HubMirror) -> None:
    weights = {name: lines for name, lines in steps(final_image.output).items()
               if name.startswith("[weights ")}
    fetch = [lines for name, lines in weights.items() if "models fetch" in name]
    assert fetch and not any("CACHED" in line for line in fetch[0]), weights.keys()
    # The gated DINOv3 was served: only with the token, which came in as the secret.
    gated = [r for r in final_image.hub_requests if "dinov3" in r.path and "/resolve/" in r.path]
    assert gated and all(r.authorized and r.status in (200, 206) for r in gated)


def test_the_token_is_in_no_layer_history_entry_or_config(
        final_image: BuiltImage, hub_mirror: HubMirror, tmp_path: Path) -> None:
    token = hub_mirror.token.encode()
    saved = tmp_path / "image.tar"
    subprocess.run([docker_cli(), "save", "-o", str(saved), final_image.tag], check=True)
    # Proof the scan reads both configs and layers: a pin (config label) and a weight's bytes
    # (a layer) are found by the same scan that must not find the token.
    weight = hub_mirror.content("microsoft/TRELLIS-image-large",
                                "ckpts/ss_dec_conv3d_16l8_fp16.json")
    found = _scan_image_archive(saved, [token, pins.load().comfyui.commit.encode(), weight])
    assert found[pins.load().comfyui.commit.encode()] and found[weight]
    assert not found[token], f"token found in {found[token]}"

    history = subprocess.run([docker_cli(), "history", "--no-trunc", "--format",
                              "{{.CreatedBy}}", final_image.tag],
                             capture_output=True, text=True, check=True).stdout
    assert "trellis_box.cli.archcheck" in history
    assert hub_mirror.token not in history
    inspect = subprocess.run([docker_cli(), "inspect", final_image.tag], capture_output=True,
                             text=True, check=True).stdout
    assert hub_mirror.token not in inspect and "HF_TOKEN" not in inspect

    # Not even the stage that used it keeps it (exported here from the build cache).
    weights_tag = final_image.tag + "-weights-stage"
    done = final_image.rebuild(weights_tag, final_image.context, "--target=weights")
    assert done.returncode == 0, done.stderr[-3000:]
    stage = tmp_path / "weights-stage.tar"
    subprocess.run([docker_cli(), "save", "-o", str(stage), weights_tag], check=True)
    found = _scan_image_archive(stage, [token, weight])
    assert found[weight] and not found[token], found[token]


def _scan_image_archive(path: Path, needles: list[bytes]) -> dict[bytes, list[str]]:
    """Where each needle occurs: every member of ``docker save`` output, layers opened file by file."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}

    def look(data: bytes, where: str) -> None:
        for n in needles:
            if n in data:
                found[n].append(where)

    with tarfile.open(path) as outer:
        for member in outer:
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            look(data, member.name)
            if member.name.endswith(".tar") or _is_tar(data):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for entry in layer:
                        if entry.isfile():
                            look(layer.extractfile(entry).read(),  # type: ignore[union-attr]
                                 f"{member.name}:{entry.name}")
    return found


def _is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"


def test_labels_carry_the_pins_the_version_and_the_lock_digest(final_image: BuiltImage,
                                                               docker_client: docker.DockerClient) -> None:
    config = docker_client.images.get(final_image.tag).attrs["Config"]
    labels = config["Labels"]
    p = pins.load()
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["io.trellis-box.weights.lock-digest"] == lock_digest()
    assert labels["io.trellis-box.pins.comfyui"] == p.comfyui.commit
    assert labels["io.trellis-box.pins.trellis2-nodes"] == p.node_packs["trellis2"].commit
    assert labels["io.trellis-box.pins.rmbg-nodes"] == p.node_packs["rmbg"].commit
    assert labels["io.trellis-box.pins.torch"] == p.packages["torch"]
    assert labels["io.trellis-box.pins.cuda-archs"] == " ".join(p.cuda_archs)
    assert labels["io.trellis-box.pins.base-image"] == p.base_image
    # A stand-in build says so: nobody can mistake it for the real stack.
    assert labels["io.trellis-box.stack"] == final_image.build_args["STACK_IMAGE"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert {k: env.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                    "PYTORCH_CUDA_ALLOC_CONF")} == {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert env["ATTN_BACKEND"] and env["SPARSE_ATTN_BACKEND"]
    assert "HF_TOKEN" not in env and "HF_ENDPOINT" not in env
    assert config["User"] == "1000:1000"
    assert (config["Entrypoint"], config["Cmd"]) == (["trellis-box"], ["serve"])
    assert "/opt/comfyui/output" in config["Volumes"]
    assert "/trellis-box/ready" in " ".join(config["Healthcheck"]["Test"])


@pytest.fixture
def running(final_image: BuiltImage, docker_client: docker.DockerClient,
            tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The image started the way a user would, but with no network at all."""
    output = tmp_path / "output"
    output.mkdir()
    os.chown(output, 1000, 1000)  # the container's user, as the README tells users to do
    name = f"trellis-box-test-image-{uuid.uuid4().hex[:8]}"
    subprocess.run([docker_cli(), "run", "-d", "--name", name, "--network", "none",
                    "-v", f"{output}:/opt/comfyui/output", final_image.tag],
                   check=True, capture_output=True)
    try:
        yield name, output
    finally:
        subprocess.run([docker_cli(), "rm", "-f", name], capture_output=True)


def _exec(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker_cli(), "exec", name, *cmd], capture_output=True, text=True)


def _get(name: str, path: str) -> tuple[int, str]:
    """GET from inside the container: with --network none nothing outside can reach it."""
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:8188{path}', timeout=5)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n")
    done = _exec(name, "/opt/venv/bin/python", "-c", code)
    if done.returncode != 0:
        return 0, done.stderr
    status, _, body = done.stdout.partition("\n")
    return int(status), body


def test_container_runs_offline_as_non_root_becomes_ready_writes_output_and_stops_fast(
        running: tuple[str, Path], docker_client: docker.DockerClient) -> None:
    name, output = running
    container = docker_client.containers.get(name)

    def healthy() -> bool:
        container.reload()
        if container.status != "running":
            pytest.fail(f"container stopped ({container.status}):\n{container_logs(docker_client, name)}")
        health: str | None = container.attrs["State"].get("Health", {}).get("Status")
        return health == "healthy"

    # The image's own HEALTHCHECK (ready endpoint) turning healthy is the readiness event.
    wait_for(healthy, timeout=240,
             what=lambda: f"{name} healthy\n{container_logs(docker_client, name)}")
    assert container.attrs["NetworkSettings"]["Networks"].keys() == {"none"}

    assert _get(name, "/trellis-box/health")[0] == 200
    status, body = _get(name, "/trellis-box/ready")
    assert status == 200, body
    info_status, info = _get(name, "/trellis-box/info")
    assert info_status == 200 and json.loads(info)["ready"] is True

    # One real job through the pipeline with our own client, inside the container (nothing
    # outside can reach it): the GLB lands in the mounted output folder, written as uid 1000.
    photo = _exec(name, "/opt/trellis-box/bin/python", "-c",
                  "import importlib.resources as r; print(r.files('trellis_box') / 'data' / 'warmup.png')")
    job = _exec(name, "trellis-box", "generate", photo.stdout.strip(), "--out", "/tmp/out",
                "--resolution", "512", "--json")
    assert job.returncode == 0, job.stdout + job.stderr
    glbs = list(output.rglob("*.glb"))
    assert glbs and all(p.stat().st_uid == 1000 for p in glbs), list(output.rglob("*"))
    assert glbs[0].read_bytes()[:4] == b"glTF"

    top = container.top(ps_args="-o pid,uid,args")
    uids = {line[1] for line in top["Processes"]}
    assert uids == {"1000"}, top  # serve, ComfyUI and the job: none as root

    # An explicit requirement of the issue, not a speed goal: `docker stop` must not fall through
    # to its 10 s SIGKILL, which is what an unhandled SIGTERM in PID 1 costs. Anything under 2 s
    # means the signal was handled; the margin below 10 s keeps a slow CI machine from flaking.
    started = time.monotonic()
    subprocess.run([docker_cli(), "stop", "-t", "10", name], check=True, capture_output=True)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"docker stop took {elapsed:.1f} s\n{container_logs(docker_client, name)}"
    container.reload()
    assert container.attrs["State"]["OOMKilled"] is False


def test_rebuild_after_a_code_change_reuses_the_weights(
        final_image: BuiltImage, hub_mirror: HubMirror,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # From the first build's context, not the working tree: only the change below may differ.
    context = tmp_path_factory.mktemp("changed") / "context"
    shutil.copytree(final_image.context, context)
    # Changes a user makes all the time: serve code, the node pack, a tool setting in pyproject.
    for changed in ("src/trellis_box/serve/supervise.py", "src/trellis_box/comfy_nodes/__init__.py"):
        with (context / changed).open("a") as f:
            f.write("\n# a code change\n")
    with (context / "pyproject.toml").open("a") as f:
        f.write("\n[tool.coverage.run]\nbranch = true\n")
    before = len(hub_mirror.requests)
    done = final_image.rebuild(FINAL_IMAGE + "-changed", context)
    assert done.returncode == 0, done.stderr[-4000:]
    grouped = steps(done.stderr)
    weights = {n: lines for n, lines in grouped.items() if n.startswith("[weights ")}
    assert weights and all(any("CACHED" in line for line in lines) for lines in weights.values()), weights
    node_pack = [lines for n, lines in grouped.items() if "comfy_nodes" in n and n.startswith("[final")]
    assert node_pack and not any("CACHED" in line for line in node_pack[0])  # the change was seen
    assert len(hub_mirror.requests) == before  # not one request to the Hub


def test_rebuild_after_a_models_code_change_reruns_the_fetch_and_downloads_nothing(
        final_image: BuiltImage, hub_mirror: HubMirror,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """errors.py changes in almost every release and the fetch imports it: the weights stage runs
    again, but finds every file the first build verified in the builder's cache mount."""
    context = tmp_path_factory.mktemp("models-changed") / "context"
    shutil.copytree(final_image.context, context)
    with (context / "src/trellis_box/errors.py").open("a") as f:
        f.write("\n# a change to the models code\n")
    tag = FINAL_IMAGE + "-models-changed"
    before = len(hub_mirror.requests)
    done = final_image.rebuild(tag, context)
    assert done.returncode == 0, done.stderr[-4000:]
    fetch = [lines for n, lines in steps(done.stderr).items()
             if n.startswith("[weights ") and "models fetch" in n]
    assert fetch and not any("CACHED" in line for line in fetch[0])  # the fetch did run
    seen = hub_mirror.requests[before:]
    # ... against the mirror, with the token (the gated repository's access check) ...
    assert any("dinov3" in r.path and r.authorized for r in seen), seen
    downloads = [r for r in seen if r.method == "GET" and "/resolve/" in r.path
                 and r.status in (200, 206)]
    assert downloads == []  # ... and fetched not one file
    verify = subprocess.run([docker_cli(), "run", "--rm", "--network=none", "--entrypoint=trellis-box",
                             tag, "models", "verify", "--comfy-root", "/opt/comfyui", "--full"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_extension_without_a_target_gpu_fails_the_build_naming_it(
        final_image: BuiltImage) -> None:
    """The stand-in wheels carry sm_80..sm_90; asking for sm_120 as well must stop the build."""
    archs = " ".join(pins.load().cuda_archs) + " sm_120"
    done = final_image.rebuild(FINAL_IMAGE + "-sm120", final_image.context,
                               f"--build-arg=CUDA_ARCHS={archs}")
    assert done.returncode != 0
    assert "4 compiled extension(s) lack GPU code for sm_120" in done.stderr
    for wheel in ("cumesh", "flex_gemm", "nvdiffrast", "o_voxel"):
        assert f"wheel {wheel} 0.0.1: {wheel}/_C.so" in done.stderr
    assert "wheel cumesh 0.0.1: cumesh/_host.so" not in done.stderr  # host code needs no GPU


def test_a_refused_token_stops_the_weights_stage_and_is_never_printed(
        final_image: BuiltImage) -> None:
    """The likeliest real failure (DINOv3 access not granted yet) must read clearly in the log."""
    wrong = "hf_not_granted_" + uuid.uuid4().hex
    # A secret is not part of BuildKit's cache key: the same endpoint would reuse the cached
    # weights. The same mirror under another name is a cache miss.
    endpoint = final_image.build_args["HF_ENDPOINT"].replace("127.0.0.1", "localhost")
    done = final_image.rebuild(FINAL_IMAGE + "-refused", final_image.context, "--target=weights",
                               f"--build-arg=HF_ENDPOINT={endpoint}", env={"HF_TOKEN": wrong})
    assert done.returncode != 0
    assert "facebook/dinov3-vitl16-pretrain-lvd1689m" in done.stderr
    assert wrong not in done.stderr


def test_weight_sources_reach_the_weights_fetch(final_image: BuiltImage, hub_mirror: HubMirror) -> None:
    """--build-arg WEIGHT_SOURCES is `models fetch --config` (a DINOv3 copy while access is
    pending); here RMBG-1.4 from a revision only the override names."""
    content = b"RMBG-1.4 from the overridden revision " * 64
    commit = hub_mirror.add_revision("briaai/RMBG-1.4", "t-sources-" + uuid.uuid4().hex[:8],
                                     {"model.pth": content})
    tag = FINAL_IMAGE + "-sources"
    # A cache mount of its own: the session's would keep this RMBG-1.4 for the tests after this one.
    cache_id = final_image.build_args["WEIGHTS_CACHE_ID"] + "-sources"
    done = final_image.rebuild(tag, final_image.context, "--target=weights",
                               f'--build-arg=WEIGHT_SOURCES=rmbg = {{ revision = "{commit}" }}',
                               f"--build-arg=WEIGHTS_CACHE_ID={cache_id}")
    assert done.returncode == 0, done.stderr[-4000:]
    baked = subprocess.run([docker_cli(), "run", "--rm", "--network=none", "--entrypoint=cat", tag,
                            "/weights/comfyui/custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth"],
                           capture_output=True, check=True).stdout
    assert baked == content

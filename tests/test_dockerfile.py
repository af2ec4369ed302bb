"""Dockerfile.trellis2, compose.yaml and .dockerignore, read as text: lint, pins, token, wiring."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from trellis_box import __version__, pins
from trellis_box.weights.lock import lock_digest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.trellis2"

# Build args that are not upstream pins, and what their defaults must be.
NON_PIN_ARGS = {
    "TRELLIS_BOX_VERSION": __version__,
    "WEIGHTS_LOCK_DIGEST": lock_digest(),
    "HF_ENDPOINT": "https://huggingface.co",
    "WEIGHT_SOURCES": "",
    "WEIGHTS_CACHE_ID": "trellis-box-weights",
    "VCS_REF": "",
    "EXTENSIONS": "prebuilt",
}
# The two upstream parts CI swaps for stand-ins: their defaults are stages of this file.
SWAPPABLE = ("PYTHON_IMAGE", "STACK_IMAGE")


@dataclass(frozen=True)
class Instruction:
    stage: str  # "" before the first FROM
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined, each tagged with its stage name."""
    out, stage, pending = [], "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        out.append(Instruction(stage, keyword.upper(), args.strip()))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def arg_defaults(found: list[Instruction]) -> dict[str, set[str]]:
    defaults: dict[str, set[str]] = {}
    for ins in found:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            defaults.setdefault(name, set()).add(shlex.split(value)[0] if value else "")
    return defaults


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_build_arg_default_equals_the_pin_file(dockerfile: list[Instruction]) -> None:
    defaults = arg_defaults(dockerfile)
    expected = {**pins.load().build_args(), **NON_PIN_ARGS}
    stages = {i.args.split(" AS ")[-1] for i in dockerfile if i.keyword == "FROM" and " AS " in i.args}
    for name in SWAPPABLE:
        assert defaults.pop(name) <= stages, f"{name} must default to a stage of the Dockerfile"
    mismatched = {n: (v, expected.get(n)) for n, v in defaults.items() if v != {expected.get(n)}}
    assert not mismatched, f"ARG default -> (Dockerfile, pins.toml): {mismatched}"
    assert not set(expected) - set(defaults), "pins with no ARG in the Dockerfile"


def test_the_token_only_ever_arrives_as_a_secret_in_the_weights_stage(
        dockerfile: list[Instruction]) -> None:
    assert not [i for i in dockerfile if i.keyword in ("ARG", "ENV", "LABEL") and "TOKEN" in i.args]
    mounts = [i for i in dockerfile if "id=hf_token" in i.args]
    assert [(i.stage, i.keyword) for i in mounts] == [("weights", "RUN")]
    assert "--mount=type=secret,id=hf_token" in mounts[0].args and "models fetch" in mounts[0].args
    # The final stage takes files from the weights stage, never the stage itself as its base.
    assert [i.args for i in dockerfile if i.keyword == "FROM" and i.args.startswith("weights")] == []


def test_final_stage_runs_offline_non_root_with_health_check_and_serve(
        dockerfile: list[Instruction]) -> None:
    final = [i for i in dockerfile if i.stage == "final"]
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    for setting in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "ATTN_BACKEND=",
                    "SPARSE_ATTN_BACKEND=", "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
                    "TRITON_CACHE_DIR=", "FLEX_GEMM_AUTOTUNE_CACHE_PATH="):
        assert setting in env
    assert [i.args for i in final if i.keyword == "USER"] == ["1000:1000"]
    assert [json.loads(i.args) for i in final if i.keyword == "ENTRYPOINT"] == [["trellis-box"]]
    assert [json.loads(i.args) for i in final if i.keyword == "CMD"] == [["serve"]]
    assert any("/trellis-box/ready" in i.args for i in final if i.keyword == "HEALTHCHECK")
    assert [i.stage for i in dockerfile if "trellis_box.cli.archcheck" in i.args] == ["final"]


def test_the_real_base_installs_what_later_stages_run(dockerfile: list[Instruction]) -> None:
    """CI builds on Debian stand-ins, so a tool missing from Rocky Linux would only show on a GPU
    machine: every such tool's package is installed by the stage the real stack starts from."""
    dnf = " ".join(i.args for i in dockerfile if i.stage == "python-base" and "dnf install" in i.args)
    final = " ".join(i.args for i in dockerfile if i.stage == "final" and i.keyword == "RUN")
    for tool, package in (("useradd", "shadow-utils"), ("git ", "git-core")):
        if tool in final or tool in " ".join(i.args for i in dockerfile if i.stage == "upstream-stack"):
            assert package in dnf.split(), f"{tool} runs, but python-base does not install {package}"
    # Triton compiles its launcher with the system compiler and Python's headers at run time.
    assert {"gcc", '"python${PYTHON_VERSION}-devel"'} <= set(dnf.split())


def test_compose_builds_with_the_secret_reserves_the_gpu_and_uses_the_health_check(
        dockerfile: list[Instruction]) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    [service] = compose["services"].values()
    assert service["build"]["dockerfile"] == "Dockerfile.trellis2"
    assert service["build"]["secrets"] == ["hf_token"]
    assert compose["secrets"]["hf_token"] == {"environment": "HF_TOKEN"}
    args = service["build"]["args"]
    assert not any("TOKEN" in name for name in args)
    assert args["CUDA_ARCHS"] == "${CUDA_ARCHS:-" + " ".join(pins.load().cuda_archs) + "}"
    assert args["EXTENSIONS"] == "${EXTENSIONS:-prebuilt}"
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert "8188:8188" in service["ports"]
    assert any(v.endswith(":/opt/comfyui/output") for v in service["volumes"])
    [healthcheck] = [i.args for i in dockerfile if i.keyword == "HEALTHCHECK"]
    image_test = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert service["healthcheck"]["test"] == ["CMD", *image_test]


def test_dockerignore_admits_exactly_what_the_dockerfile_copies(
        dockerfile: list[Instruction]) -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    assert patterns[patterns.index("*") + 1:][0].startswith("!"), "deny everything, then admit"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for ins in dockerfile:
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            *srcs, _ = [a for a in shlex.split(ins.args) if not a.startswith("--")]
            sources.update(srcs)
    for src in sources:
        assert any(src == a or src.startswith(a + "/") for a in admitted), src
        assert (ROOT / src).exists(), src
    assert not any(a in (".git", ".venv", "tests") for a in admitted)


def test_readme_names_the_pinned_commits() -> None:
    readme = (ROOT / "README.md").read_text()
    p = pins.load()
    for repo in (p.comfyui, *p.node_packs.values()):
        assert repo.commit in readme, f"README does not name {repo.repo} @ {repo.commit}"
    assert re.search(r"docker compose up -d --build", readme)


def test_the_weights_stage_sees_the_models_code_and_not_the_rest(tmp_path: Path) -> None:
    """image/weights_closure.py: what decides whether a code change re-downloads the weights."""
    import runpy
    import shutil

    closure = runpy.run_path(str(ROOT / "image" / "weights_closure.py"))
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    closure["main"](src, ROOT / "pyproject.toml", tmp_path / "out")
    kept = {str(p.relative_to(tmp_path / "out" / "src" / "trellis_box"))
            for p in (tmp_path / "out" / "src").rglob("*") if p.is_file()}
    assert (tmp_path / "out" / "pyproject.toml").is_file()
    assert {"cli/app.py", "cli/models.py", "weights/fetch.py", "weights/verify.py", "weights/hub.py",
            "weights/lock.py", "weights/catalog.py", "data/catalog.toml", "data/pins.toml"} <= kept
    assert not kept & {"serve/supervise.py", "comfyui/client.py", "batch/engine.py", "comfyui/workflow.py",
                       "gpu/archcheck.py", "comfy_nodes/__init__.py", "data/object_info.json"}
    # The kept tree works: `trellis-box models --help` from it alone, no other module needed.
    done = subprocess.run([sys.executable, "-c", "import os, trellis_box; "
                           "assert trellis_box.__file__.startswith(os.getcwd()), trellis_box.__file__; "
                           "from trellis_box.cli.app import main; "
                           "raise SystemExit(main(['models', 'verify', '--help']))"],
                          cwd=tmp_path / "out" / "src", capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "out" / "src")})
    assert done.returncode == 0 and "--full" in done.stdout, done.stderr


def test_the_weights_stage_sees_only_the_packaging_part_of_pyproject() -> None:
    """A test extra or a tool setting must not re-download the weights; a dependency must."""
    import runpy
    import tomllib

    cut = runpy.run_path(str(ROOT / "image" / "weights_closure.py"))["packaging_part"]
    text = (ROOT / "pyproject.toml").read_text()
    kept = tomllib.loads(cut(text))
    full = tomllib.loads(text)
    assert kept["project"]["dependencies"] == full["project"]["dependencies"]
    assert kept["project"]["scripts"] == full["project"]["scripts"]
    assert kept["build-system"] == full["build-system"]
    assert kept["tool"] == {"setuptools": full["tool"]["setuptools"]}
    assert "optional-dependencies" not in kept["project"]
    edited = text.replace('"pytest>=8",', '"pytest>=8.1",') + "\n[tool.ruff]\nline-length = 110\n"
    assert edited != text and cut(edited) == cut(text)
    assert cut(text.replace('"rich>=13",', '"rich>=14",')) != cut(text)


def test_the_source_build_runs_the_build_script_with_the_pins_and_every_module_it_imports(
        dockerfile: list[Instruction]) -> None:
    """EXTENSIONS=source: the stage copies exactly the script's import closure and pins.toml, so
    the clone URLs and commits come from the pin file, and runs it for the image's CUDA_ARCHS."""
    import ast

    stack = [i for i in dockerfile if i.stage == "upstream-stack"]
    copied = set()
    for ins in stack:
        if ins.keyword == "COPY":
            *srcs, dest = shlex.split(ins.args)
            copied |= {(s, dest) for s in srcs}
    needed, todo = set(), [ROOT / "image" / "build_extensions.py"]
    while todo:
        path = todo.pop()
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("trellis_box"):
                    for module in (name, *(f"{name}.{a.name}" for a in getattr(node, "names", []))):
                        for candidate in (ROOT / "src" / (module.replace(".", "/") + ".py"),
                                          ROOT / "src" / module.replace(".", "/") / "__init__.py"):
                            rel = str(candidate.relative_to(ROOT))
                            if candidate.is_file() and rel not in needed:
                                needed.add(rel)
                                todo.append(candidate)
    needed |= {"src/trellis_box/__init__.py", "src/trellis_box/data/pins.toml"}
    in_image = {src: dest for src, dest in copied}
    for src in needed:
        assert src in in_image, f"{src} is imported by the build script but not copied"
        rel = src.removeprefix("src/")
        assert in_image[src] == "/opt/extension-build/" + rel.rsplit("/", 1)[0] + "/", (src, in_image[src])
    assert in_image["image/build_extensions.py"] == "/opt/extension-build/"
    [build] = [i.args for i in stack if i.keyword == "RUN" and "build_extensions.py" in i.args]
    assert 'prebuilt)' in build and 'source)' in build
    assert '--archs "${CUDA_ARCHS}"' in build and "PYTHONPATH=/opt/extension-build" in build
    assert "${EXTENSION_BUILD_PACKAGES}" in build
    declared = {i.args for i in stack if i.keyword == "ARG"}
    assert {"EXTENSIONS", "CUDA_ARCHS", "EXTENSION_BUILD_PACKAGES"} <= declared

"""The preflight checks one by one: GPU parsing, node-pack imports the way ComfyUI loads them,
the environment ComfyUI gets, writable directories, and how weight problems are worded."""

from __future__ import annotations

import os
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

from tests.hub_mirror import make_comfy_root
from tests.serve_support import ServeSetup, make_setup
from trellis_box.errors import GpuUnavailableError, NodeImportError, RuntimePackageError, TrellisBoxError
from trellis_box.gpu.probe import Gpu, covering_target, parse_gpus
from trellis_box.serve import settings
from trellis_box.serve.node_imports import import_packs, node_pack_dirs
from trellis_box.serve.preflight import (
    PREFLIGHT,
    StepResult,
    check_writable,
    comfy_environment,
    run,
    weights_error,
)
from trellis_box.serve.runtime_packages import check_runtime_packages
from trellis_box.weights import catalog
from trellis_box.weights.verify import verify


class TestGpu:
    def test_parses_nvidia_smi_rows(self) -> None:
        gpus = parse_gpus("NVIDIA L40S, 46068, 8.9\nNVIDIA A100-SXM4-40GB, 40960, 8.0\n\n")
        assert gpus == [Gpu("NVIDIA L40S", 46068 * 1024**2, "8.9"),
                        Gpu("NVIDIA A100-SXM4-40GB", 40960 * 1024**2, "8.0")]
        assert gpus[1].arch == "sm_80"

    def test_a_name_with_a_comma_is_kept_whole(self) -> None:
        assert parse_gpus("Acme, Inc. Accelerator, 24576, 8.6")[0].name == "Acme, Inc. Accelerator"

    @pytest.mark.parametrize("line", ["NVIDIA L40S, [N/A], 8.9", "NVIDIA L40S, 46068, [N/A]",
                                      "garbage"])
    def test_an_unreadable_row_is_an_error_quoting_it(self, line: str) -> None:
        with pytest.raises(GpuUnavailableError) as caught:
            parse_gpus(line)
        assert str(caught.value).startswith("nvidia-smi printed a GPU line this check cannot read")
        assert repr(line) in str(caught.value)

    def test_several_gpus_use_the_first_and_say_so(self, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        setup = make_setup(tmp_path / "s", gpus=2)
        monkeypatch.setenv("PATH", setup.env["PATH"])
        found, results = run(settings.load(setup.env), PREFLIGHT[:3])
        assert found.gpu is not None and found.gpu.count == 2
        assert results[0].detail.endswith("(+1 more; ComfyUI uses the first)")
        assert found.profile is not None and found.profile.max_resolution == "1536"


@pytest.mark.parametrize(("arch", "built", "covered"), [
    ("sm_89", ("sm_80", "sm_86", "sm_89", "sm_90"), "sm_89"),
    ("sm_87", ("sm_80", "sm_86", "sm_90"), "sm_86"),   # same major, higher minor: runs
    ("sm_80", ("sm_86", "sm_89"), None),                # lower minor: does not
    ("sm_100", ("sm_80", "sm_90"), None),               # another major: does not
    ("sm_75", ("sm_80",), None),
])
def test_which_built_architecture_runs_on_a_gpu(arch: str, built: tuple[str, ...],
                                                covered: str | None) -> None:
    assert covering_target(arch, built) == covered


def pack(root: Path, name: str, body: str) -> Path:
    directory = root / "custom_nodes" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "__init__.py").write_text(textwrap.dedent(body))
    return directory


def check(root: Path, *packs: Path, timeout: float = 60.0) -> dict[str, list[str]]:
    return import_packs(root, list(packs), python=sys.executable, env=dict(os.environ),
                        timeout=timeout)


class TestNodeImports:
    def test_packs_import_with_comfyuis_modules_and_relative_imports(
            self, serve_setup: ServeSetup) -> None:
        root = serve_setup.root
        classes = check(root, *node_pack_dirs(root))
        assert set(classes) == {"ComfyUI-Trellis2", "ComfyUI-BRIA_AI-RMBG"}
        assert "Trellis2LoadModel" in classes["ComfyUI-Trellis2"]
        assert classes["ComfyUI-BRIA_AI-RMBG"] == ["BRIA_RMBG_ModelLoader_Zho", "BRIA_RMBG_Zho"]

    def test_a_pack_reading_comfyuis_command_line_at_import_still_loads(
            self, serve_setup: ServeSetup) -> None:
        # The stand-in's comfy.cli_args parses sys.argv at import, as ComfyUI's does when main.py
        # enabled it: the check must not hand it its own arguments.
        p = pack(serve_setup.root, "ArgsPack", """
            from comfy.cli_args import args
            import folder_paths
            from .helper import NAME
            NODE_CLASS_MAPPINGS = {NAME: object}
            """)
        (p / "helper.py").write_text("NAME = 'ArgsNode'\n")
        assert check(serve_setup.root, p) == {"ArgsPack": ["ArgsNode"]}

    def test_packs_see_the_flags_comfyui_runs_with(self, serve_setup: ServeSetup) -> None:
        # Real ComfyUI picks its device when comfy.model_management is imported (the Trellis2 pack
        # imports it): with --cpu in TRELLIS_BOX_COMFY_ARGS it must not look for a CUDA driver.
        p = pack(serve_setup.root, "DevicePack", """
            from comfy.cli_args import args
            if not args.cpu:
                raise RuntimeError("Found no NVIDIA driver on your system.")
            NODE_CLASS_MAPPINGS = {"DeviceNode": object}
            """)
        classes = import_packs(serve_setup.root, [p], python=sys.executable, env=dict(os.environ),
                               timeout=60.0, comfy_args=["--cpu"])
        assert classes == {"DevicePack": ["DeviceNode"]}
        with pytest.raises(NodeImportError, match="Found no NVIDIA driver"):
            check(serve_setup.root, p)

    def test_an_exception_at_import_fails_with_the_packs_own_traceback(
            self, serve_setup: ServeSetup) -> None:
        p = pack(serve_setup.root, "Broken.Pack", """
            import os

            def load():
                raise RuntimeError("cumesh: CUDA kernel image missing for sm_89")

            load()
            """)
        with pytest.raises(NodeImportError) as caught:
            check(serve_setup.root, p)
        text = str(caught.value)
        assert text.startswith("node pack Broken.Pack failed to import; ComfyUI was not started")
        assert "ComfyUI would have logged IMPORT FAILED and served without its nodes." in text
        assert f'File "{p / "__init__.py"}", line 7, in <module>' in text
        assert 'raise RuntimeError("cumesh: CUDA kernel image missing for sm_89")' in text
        assert "fix: fix the error the traceback ends with" in text
        assert caught.value.facts["exception"] == \
            "RuntimeError: cumesh: CUDA kernel image missing for sm_89"

    def test_an_abi_mismatch_points_at_the_torch_build(self, serve_setup: ServeSetup) -> None:
        p = pack(serve_setup.root, "AbiPack", """
            raise ImportError("/opt/venv/lib/python3.12/site-packages/o_voxel/_C.so: "
                              "undefined symbol: _ZNK3c107SymBool14guard_or_falseEPKcl")
            """)
        with pytest.raises(NodeImportError) as caught:
            check(serve_setup.root, p)
        assert "fix: a compiled extension does not match the installed torch" in str(caught.value)

    def test_a_pack_that_kills_the_interpreter_is_named(self, serve_setup: ServeSetup) -> None:
        good = node_pack_dirs(serve_setup.root)[0]
        crash = pack(serve_setup.root, "CrashPack", """
            import os, signal, sys
            sys.stderr.write("loading libcumesh.so\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)
            """)
        with pytest.raises(NodeImportError) as caught:
            check(serve_setup.root, good, crash)
        text = str(caught.value)
        assert text.startswith("node pack CrashPack failed to import")
        assert f"the interpreter died with exit code {-11}" in text
        assert "loading libcumesh.so" in text

    def test_a_pack_that_hangs_is_stopped_and_named(self, serve_setup: ServeSetup) -> None:
        p = pack(serve_setup.root, "HangPack", """
            import threading
            threading.Event().wait()
            """)
        with pytest.raises(NodeImportError) as caught:
            check(serve_setup.root, p, timeout=3)
        assert str(caught.value).startswith("node pack HangPack did not finish importing within 3 s")

    def test_a_missing_pack_directory(self, serve_setup: ServeSetup) -> None:
        gone = serve_setup.root / "custom_nodes" / "ComfyUI-Trellis2"
        for path in sorted(gone.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        with pytest.raises(NodeImportError) as caught:
            check(serve_setup.root, *node_pack_dirs(serve_setup.root))
        assert str(caught.value).startswith(
            f"node pack ComfyUI-Trellis2 is missing: {gone / '__init__.py'} does not exist")


class TestEnvironment:
    def test_comfyui_always_runs_offline_and_says_what_it_overrode(self) -> None:
        env, overridden = comfy_environment({"HF_HUB_OFFLINE": "0", "PATH": "/bin"})
        assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
        assert env["PATH"] == "/bin"
        assert overridden == ["HF_HUB_OFFLINE=0"]

    def test_attention_backends_default_to_the_workflows_and_keep_a_choice(self) -> None:
        env, _ = comfy_environment({})
        assert env["ATTN_BACKEND"] == env["SPARSE_ATTN_BACKEND"] == "xformers"
        env, _ = comfy_environment({"ATTN_BACKEND": "flash_attn"})
        assert env["ATTN_BACKEND"] == env["SPARSE_ATTN_BACKEND"] == "flash_attn"


    def test_a_missing_comfyui_interpreter_names_its_variable(self, serve_setup: ServeSetup) -> None:
        env = {**serve_setup.env, "TRELLIS_BOX_PYTHON": str(serve_setup.base / "no-python")}
        environment = next(step for step in PREFLIGHT if step.name == "environment")
        _, results = run(settings.load(env), [environment], fail_fast=False)
        error = results[0].error
        assert error is not None and error.facts["variable"] == "TRELLIS_BOX_PYTHON"
        assert str(error).startswith(
            f"ComfyUI's Python interpreter {serve_setup.base / 'no-python'} is not an executable file")


class TestDirectories:
    def test_a_missing_directory_is_created(self, tmp_path: Path) -> None:
        assert check_writable("output directory", tmp_path / "a" / "b") is None
        assert (tmp_path / "a" / "b").is_dir()
        assert list((tmp_path / "a" / "b").iterdir()) == []

    def test_a_file_in_the_way_is_reported(self, tmp_path: Path) -> None:
        (tmp_path / "output").write_text("not a directory")
        problem = check_writable("output directory", tmp_path / "output" / "3D")
        assert problem is not None
        assert str(problem).startswith(f"output directory {tmp_path / 'output' / '3D'}: Not a directory")


class TestWeights:
    def test_problems_name_the_node_that_needs_the_file(self, serve_setup: ServeSetup) -> None:
        root = serve_setup.root
        rmbg = root / "custom_nodes" / "ComfyUI-BRIA_AI-RMBG" / "RMBG-1.4" / "model.pth"
        config = root / "models" / "facebook" / "dinov3-vitl16-pretrain-lvd1689m" / "config.json"
        rmbg.unlink()
        config.unlink()
        error = weights_error(verify(root))
        text = str(error)
        assert text.startswith(f"weight file missing: {config} (and 1 more problem)")
        assert "BRIA_RMBG_ModelLoader_Zho and Trellis2LoadModel need it at the first generation; " \
               "ComfyUI was not started." in text
        assert f"volume mounted on {root / 'models'} hides it" in text
        assert f"missing: {rmbg}" in text
        assert [p["path"] for p in error.facts["problems"]] == [str(config), str(rmbg)]

    def test_a_model_added_to_the_catalog_names_its_loader_without_a_code_change(
            self, tmp_path: Path) -> None:
        """One new ``[[model]]`` table is the whole change: preflight names its node."""
        shipped = resources.files("trellis_box").joinpath("data/catalog.toml").read_text()
        models = catalog.parse(shipped + textwrap.dedent("""
            [[model]]
            name = "upscaler"
            title = "An upscaler"
            repo = "example/upscaler"
            revision = "main"
            target = "models/upscale_models"
            placement = "files"
            loader = "UpscaleModelLoader"
            gated = false
            licence = "MIT"
            licence_url = "https://example.invalid/licence"
            size = 1000
            files = ["x4.pth"]
        """))
        root = make_comfy_root(tmp_path / "comfy")
        for model in models[:-1]:  # every shipped weight in place; the new one missing
            for file in model.files:
                model.file_target(root, file).parent.mkdir(parents=True, exist_ok=True)
                model.file_target(root, file).write_bytes(b"w")
        text = str(weights_error(verify(root, models=models), models))
        assert text.startswith(f"weight file missing: {root / 'models/upscale_models/x4.pth'}")
        assert "UpscaleModelLoader needs it at the first generation" in text

    def test_a_catalog_model_without_a_loader_is_refused_naming_it(self) -> None:
        shipped = resources.files("trellis_box").joinpath("data/catalog.toml").read_text()
        with pytest.raises(ValueError, match="catalog model rmbg: no loader"):
            catalog.parse(shipped.replace('loader = "BRIA_RMBG_ModelLoader_Zho"\n', ""))


def test_fail_fast_reports_the_failed_step_then_raises(serve_setup: ServeSetup,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", serve_setup.without_gpu()["PATH"])
    seen: list[StepResult] = []
    with pytest.raises(TrellisBoxError) as caught:
        run(settings.load(serve_setup.env), on_step=seen.append)
    assert [r.name for r in seen] == ["gpu"]
    assert seen[0].ok is False and seen[0].error is caught.value
    assert seen[0].as_dict()["status"] == "failed"


class TestRuntimePackages:
    """Packages only a job exercises, checked in ComfyUI's interpreter with stand-in packages in
    a temporary site directory (PYTHONPATH), in a ComfyUI root that holds none of its own."""

    @staticmethod
    def site(tmp_path: Path, *, transformers: str | None = "4.57.1",
             o_voxel: str | None = "def flexible_dual_grid_to_mesh(): pass\n"
                                   "def tiled_flexible_dual_grid_to_mesh(): pass\n") -> dict[str, str]:
        site = tmp_path / "site"
        site.mkdir()
        if transformers is not None:
            info = site / f"transformers-{transformers}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(
                f"Metadata-Version: 2.1\nName: transformers\nVersion: {transformers}\n")
        if o_voxel is not None:
            (site / "o_voxel").mkdir()
            (site / "o_voxel" / "__init__.py").write_text("")
            (site / "o_voxel" / "convert.py").write_text(o_voxel)
            info = site / "o_voxel-0.0.1.dist-info"
            info.mkdir()
            (info / "METADATA").write_text("Metadata-Version: 2.1\nName: o_voxel\nVersion: 0.0.1\n")
        (tmp_path / "comfyui").mkdir()
        return {**os.environ, "PYTHONPATH": str(site)}

    @staticmethod
    def check(tmp_path: Path, env: dict[str, str], timeout: float = 60.0) -> list[str]:
        return check_runtime_packages(tmp_path / "comfyui", python=sys.executable, env=env,
                                      timeout=timeout)

    def test_good_packages_pass_and_say_what_was_found(self, tmp_path: Path) -> None:
        assert self.check(tmp_path, self.site(tmp_path)) == [
            "transformers 4.57.1 (>=4.56,<5)",
            "o_voxel.convert (o_voxel 0.0.1) has flexible_dual_grid_to_mesh, "
            "tiled_flexible_dual_grid_to_mesh"]

    def test_transformers_5_names_the_version_the_range_and_the_fix(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimePackageError) as caught:
            self.check(tmp_path, self.site(tmp_path, transformers="5.1.0"))
        text = str(caught.value)
        assert text.startswith("transformers 5.1.0 is outside the range the node packs work with "
                               "(>=4.56,<5); ComfyUI was not started")
        assert f"Found in {sys.executable} at {tmp_path / 'site'}" in text
        assert "'DINOv3ViTModel' object has no attribute 'layer'" in text
        assert f"fix: install transformers==4.57.1 in ComfyUI's interpreter: `{sys.executable} -m " \
               "pip install 'transformers==4.57.1'`" in text
        assert caught.value.facts == {"package": "transformers", "version": "5.1.0",
                                      "range": ">=4.56,<5"}

    @pytest.mark.parametrize("version", ["4.55.4", "not-a-version"])
    def test_too_old_or_unreadable_versions_fail_too(self, tmp_path: Path, version: str) -> None:
        with pytest.raises(RuntimePackageError, match=f"transformers {version} is outside"):
            self.check(tmp_path, self.site(tmp_path, transformers=version))

    def test_missing_transformers_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimePackageError) as caught:
            self.check(tmp_path, self.site(tmp_path, transformers=None))
        assert str(caught.value).startswith("transformers is not installed in ComfyUI's interpreter")
        assert caught.value.facts["version"] is None

    def test_an_o_voxel_without_the_tiled_converter_is_refused(self, tmp_path: Path) -> None:
        # microsoft/TRELLIS.2's o-voxel: builds and imports, lacks the tiled converter.
        env = self.site(tmp_path, o_voxel="def flexible_dual_grid_to_mesh(): pass\n")
        with pytest.raises(RuntimePackageError) as caught:
            self.check(tmp_path, env)
        text = str(caught.value)
        convert = tmp_path / "site" / "o_voxel" / "convert.py"
        assert text.startswith(f"o_voxel.convert (o_voxel 0.0.1, {convert}) lacks "
                               "tiled_flexible_dual_grid_to_mesh; ComfyUI was not started")
        assert "ComfyUI-Trellis2 imports them at the first shape decode" in text
        assert "fix: install o_voxel built from visualbruno/TRELLIS.2's o-voxel/" in text
        assert caught.value.facts["missing"] == ["tiled_flexible_dual_grid_to_mesh"]

    def test_an_o_voxel_that_cannot_be_imported_quotes_its_error(self, tmp_path: Path) -> None:
        env = self.site(tmp_path, o_voxel="raise ImportError('libcumesh.so: cannot open shared "
                                          "object file')\n")
        with pytest.raises(RuntimePackageError) as caught:
            self.check(tmp_path, env)
        assert str(caught.value).startswith("o_voxel.convert cannot be imported in ComfyUI's "
                                            "interpreter; ComfyUI was not started")
        assert "ImportError: libcumesh.so: cannot open shared object file" in str(caught.value)

    def test_an_o_voxel_that_kills_the_interpreter_is_named(self, tmp_path: Path) -> None:
        env = self.site(tmp_path, o_voxel="import os\nos.abort()\n")
        with pytest.raises(RuntimePackageError,
                           match=r"o_voxel.convert killed the interpreter \(exit code -6\)"):
            self.check(tmp_path, env)

    def test_the_stand_in_root_carries_what_the_image_has(self, serve_setup: ServeSetup) -> None:
        lines = check_runtime_packages(serve_setup.root, python=sys.executable,
                                       env=dict(os.environ), timeout=60.0)
        assert lines[0] == "transformers 4.57.1 (>=4.56,<5)"

"""image/build_extensions.py: the pinned sources, Eigen, parallel wheels, stripping, the arch check.

The real extensions need torch and nvcc (the GPU harness builds them: tests/test_gpu.py); here the
same code builds four small C extensions laid out as the pins name them, with debug info to strip.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.image_support import compile_cuda_so, gencode
from trellis_box import pins
from trellis_box.errors import ConfigError, ExtensionBuildError, MissingGpuCodeError
from trellis_box.gpu import archcheck, extensions

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "image" / "build_extensions.py"


def script() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT))


def fake_sources(root: Path, *, broken: str = "", gpu_so: Path | None = None) -> Path:
    """Each pinned extension as a small C extension in the folder pins.toml names, compiled with -g.

    cumesh vendors ``Eigen/Dense`` and leaves its include dir empty; o_voxel's includes Eigen from
    its own ``third_party/eigen``: both compile only once the build has linked Eigen in.
    """
    for name, repo in pins.load().extensions.items():
        tree = root / repo.dir
        (tree / name).mkdir(parents=True)
        (tree / name / "__init__.py").write_text("")
        include = extensions.EIGEN_INCLUDES.get(name)
        uses_eigen = '#include <Eigen/Dense>\nint eigen_version = EIGEN_MARK;\n' if include else ""
        (tree / "ext.c").write_text(
            uses_eigen + ("#error broken on purpose\n" if name == broken else "")
            + '#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "_C"};\n'
            "PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&m); }\n")
        includes = f"include_dirs=['{include}']," if include else ""
        data = ""
        if gpu_so is not None and name == "flex_gemm":
            (tree / name / "kernels.so").write_bytes(gpu_so.read_bytes())
            data = f"package_data={{'{name}': ['kernels.so']}},"
        (tree / "setup.py").write_text(
            "from setuptools import setup, Extension\n"
            f"setup(name='{name}', version='0.0.1', packages=['{name}'], {data}\n"
            f"      ext_modules=[Extension('{name}._C', ['ext.c'], {includes} extra_compile_args=['-g'])])\n")
        if include:
            (tree / include).mkdir(parents=True)
    (root / "CuMesh" / "Eigen").mkdir()
    (root / "CuMesh" / "Eigen" / "Dense").write_text("#define EIGEN_MARK 3\n")
    return root


def debug_sections(wheel: Path, tmp: Path) -> list[str]:
    found = []
    with zipfile.ZipFile(wheel) as zf:
        for member in (n for n in zf.namelist() if n.endswith(".so")):
            so = tmp / Path(member).name
            so.write_bytes(zf.read(member))
            headers = subprocess.run(["readelf", "-S", str(so)], capture_output=True, text=True, check=True)
            found += [f"{member}: .debug_info" for line in headers.stdout.splitlines() if ".debug_info" in line]
    return found


def test_the_extensions_are_pinned_at_full_commits_and_are_the_ones_the_arch_check_reads() -> None:
    ext = pins.load().extensions
    assert set(ext) == set(archcheck.EXTENSION_PACKAGES)
    for repo in ext.values():
        assert repo.repo.startswith("https://github.com/") and len(repo.commit) == 40 and int(repo.commit, 16) >= 0
    # The forks that work (gpu-reality.md): visualbruno's o-voxel has tiled_flexible_dual_grid_to_mesh.
    assert ext["o_voxel"].repo.endswith("visualbruno/TRELLIS.2") and ext["o_voxel"].subdir == "o-voxel"
    assert ext["nvdiffrast"].version == "0.4.0"
    assert set(pins.load().extension_build_packages) == {"ninja", "wheel"}


def test_the_arch_list_torch_builds_for_follows_cuda_archs() -> None:
    assert extensions.torch_arch_list(archcheck.parse_archs("sm_80 sm_86 sm_89 sm_90")) == "8.0;8.6;8.9;9.0"
    env = extensions.build_env((80,), 3)
    assert (env["TORCH_CUDA_ARCH_LIST"], env["MAX_JOBS"], env["BUILD_TARGET"]) == ("8.0", "3", "cuda")


def test_builds_every_pinned_extension_from_a_sources_folder_stripped_and_checked(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path / "src")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--archs", "sm_80", "--out", str(out),
                           "--sources", str(sources), "--jobs", "1", "--json"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                               "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    import json

    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(rows) == set(pins.load().extensions)
    for name, row in rows.items():
        wheel = Path(row["wheel"])
        assert wheel.parent == out and wheel.name.startswith(f"{name}-0.0.1-")
        assert row["bytes"] < row["unstripped_bytes"], row
        assert debug_sections(wheel, tmp_path) == []
        # `wheel unpack` checks every RECORD hash: the repacked wheel is consistent.
        subprocess.run([sys.executable, "-m", "wheel", "unpack", "-d", str(tmp_path / "check"), str(wheel)],
                       check=True, capture_output=True)
    # The sources folder is left as it was given: the build ran in a copy.
    assert not list(sources.rglob("build")) and not (sources / "o-voxel" / "third_party" / "eigen" / "Eigen").exists()
    assert "building cumesh, flex_gemm, nvdiffrast, o_voxel for sm_80" in done.stderr


def test_a_wheel_without_code_for_a_target_fails_the_build(tmp_path: Path) -> None:
    sm86 = compile_cuda_so(tmp_path / "sm86.so", [gencode(86)])
    sources = fake_sources(tmp_path / "src", gpu_so=sm86)
    with pytest.raises(MissingGpuCodeError, match="sm_80") as caught:
        extensions.build(tmp_path / "out", "sm_80 sm_86", sources=sources, jobs=1, only=["flex_gemm"])
    assert "flex_gemm/kernels.so" in str(caught.value)
    # and for the architecture it carries, the same wheel passes
    [built] = extensions.build(tmp_path / "out86", "sm_86", sources=sources, jobs=1, only=["flex_gemm"])
    assert archcheck.check([built.wheel], (86,))[1].codes


def test_a_failed_build_names_the_extension_and_shows_its_log(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path / "src", broken="nvdiffrast")
    with pytest.raises(ExtensionBuildError) as caught:
        extensions.build(tmp_path / "out", "sm_90", sources=sources, jobs=1)
    assert caught.value.facts["extensions"] == ["nvdiffrast"]
    assert "broken on purpose" in str(caught.value) and "nvdiffrast.log" in str(caught.value)


def test_missing_sources_name_the_folder_the_pins_expect(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path / "src")
    (sources / "FlexGEMM" / "setup.py").unlink()
    with pytest.raises(ExtensionBuildError, match="no flex_gemm sources") as caught:
        extensions.build(tmp_path / "out", "sm_90", sources=sources)
    assert "FlexGEMM" in str(caught.value) and pins.load().extensions["flex_gemm"].commit in str(caught.value)
    # The library names its parameter; the script, its flag (test_the_script_names_its_flags).
    assert caught.value.fix.endswith("or leave out `sources` to clone it")


def test_the_script_names_its_flags_without_typer(tmp_path: Path) -> None:
    """Through cli/_flags.py, in an interpreter where typer cannot be imported (ComfyUI's)."""
    sources = fake_sources(tmp_path / "src")
    (sources / "FlexGEMM" / "setup.py").unlink()
    run = ("import runpy, sys; sys.modules['typer'] = None; "
           f"sys.argv = ['build_extensions.py', '--archs', 'sm_90', '--out', {str(tmp_path / 'out')!r}, "
           f"'--sources', {str(sources)!r}]; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 1, done.stderr
    assert "error: no flex_gemm sources in" in done.stderr
    assert "or leave out --sources to clone it" in done.stderr and "`" not in done.stderr


def git_repo(path: Path, files: Path, subdir: str = "") -> str:
    """A repository holding ``files`` (under ``subdir``) at its first commit and something else after."""
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    files.rename(path / subdir) if subdir else [f.rename(path / f.name) for f in files.iterdir()]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "pinned"], check=True)
    pinned = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
    (path / subdir / "setup.py").write_text("raise SystemExit('a later commit')\n")
    subprocess.run([*git, "commit", "-qam", "later"], check=True)
    return pinned.strip()


def test_without_sources_it_clones_the_pinned_commits_and_takes_the_subdir(tmp_path: Path) -> None:
    made = fake_sources(tmp_path / "made")
    chosen = {}
    for name, subdir in (("cumesh", ""), ("o_voxel", "o-voxel")):
        pin = pins.load().extensions[name]
        commit = git_repo(tmp_path / name, made / pin.dir, subdir)
        chosen[name] = pins.Repo(repo=f"file://{tmp_path / name}", commit=commit, dir=pin.dir, subdir=pin.subdir)
    trees = extensions.prepare_sources(tmp_path / "work", None, chosen)
    for tree in trees.values():
        assert "setup(name=" in (tree / "setup.py").read_text()  # the pinned commit, not the later one
    assert trees["o_voxel"] == tmp_path / "work" / "o-voxel"
    for name, include in extensions.EIGEN_INCLUDES.items():
        assert (trees[name] / include / "Eigen" / "Dense").read_text() == "#define EIGEN_MARK 3\n"
    with pytest.raises(ExtensionBuildError, match="cannot get"):
        extensions.clone(f"file://{tmp_path / 'cumesh'}", "0" * 40, tmp_path / "bad")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--out", "x"], "--archs"),
    (["--archs", "sm_90"], "--out"),
    (["--archs", "sm_90", "--out", "x", "--jobs", "0"], "--jobs must be at least 1"),
])
def test_arguments_are_checked_before_any_build(argv: list[str], fragment: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        script()["main"](argv)
    assert caught.value.code == 2 and fragment in capsys.readouterr().err


def test_bad_archs_and_unknown_extensions_exit_with_the_error(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    main = script()["main"]
    assert main(["--archs", "80", "--out", str(tmp_path)]) == ConfigError.exit_code
    assert "not of the form sm_NN: 80" in capsys.readouterr().err
    assert main(["--archs", "sm_90", "--out", str(tmp_path), "--only", "xformers"]) == 1
    assert "unknown extension(s): xformers" in capsys.readouterr().err

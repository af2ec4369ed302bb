"""The build-time GPU architecture check reads real nvcc output and names what is missing."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.image_support import compile_cuda_so, compile_host_so, gencode, make_wheel
from trellis_box.errors import (
    ConfigError,
    ExtensionNotFoundError,
    MissingGpuCodeError,
    UnreadableExtensionError,
)
from trellis_box.gpu import archcheck
from trellis_box.gpu.archcheck import GpuCode

TARGETS = archcheck.parse_archs("sm_80 sm_86 sm_89 sm_90")

# Each variant is one nvcc invocation; the names say what the .so carries.
VARIANTS = {
    "every_target": [gencode(80), gencode(86), gencode(89), gencode(90)],
    # What the research found in the Torch270 flex_gemm wheel: sm_86 cubin + sm_86 PTX.
    "sm86_and_ptx86": [gencode(86), gencode(86, ptx=True)],
    "ptx80_only": [gencode(80, ptx=True)],
    "sm120_only": [gencode(120), gencode(120, ptx=True)],
    "sm90a_only": [gencode(90, specific=True)],
}
# Relocatable device code puts a second fatbin in __nv_relfatbin.
RDC = [gencode(80), gencode(90, ptx=True)]


@pytest.fixture(scope="module")
def sos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("cuda")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {n: pool.submit(compile_cuda_so, out / f"{n}.so", g) for n, g in VARIANTS.items()}
        rdc = pool.submit(compile_cuda_so, out / "rdc.so", RDC, "-rdc=true")
        built = {n: f.result() for n, f in futures.items()}
        built["rdc"] = rdc.result()
    built["host_only"] = compile_host_so(out / "host_only.so")
    return built


def test_reads_the_cubins_and_ptx_nvcc_embedded(sos: dict[str, Path]) -> None:
    assert archcheck.fatbin_codes(sos["sm86_and_ptx86"].read_bytes()) == (
        GpuCode(86, "cubin"), GpuCode(86, "ptx"))
    assert archcheck.fatbin_codes(sos["every_target"].read_bytes()) == tuple(
        GpuCode(a, "cubin") for a in (80, 86, 89, 90))
    assert archcheck.fatbin_codes(sos["sm90a_only"].read_bytes()) == (
        GpuCode(90, "cubin", arch_specific=True),)
    assert archcheck.fatbin_codes(sos["rdc"].read_bytes()) == (
        GpuCode(80, "cubin"), GpuCode(90, "ptx"))


def test_an_extension_with_every_target_passes(sos: dict[str, Path]) -> None:
    [report] = archcheck.check([sos["every_target"]], TARGETS)
    assert report.missing == () and report.has_gpu_code


def test_lower_ptx_counts_because_the_driver_jit_compiles_it(sos: dict[str, Path]) -> None:
    [report] = archcheck.check([sos["ptx80_only"]], TARGETS)
    assert report.missing == ()


def test_cubin_runs_on_later_minor_versions_ptx_covers_later_majors(sos: dict[str, Path]) -> None:
    """sm_86 cubin runs on 8.6 and 8.9, compute_86 PTX JITs for 9.0: only the A100 (8.0) is left."""
    [report] = archcheck.scan([sos["sm86_and_ptx86"]], TARGETS)
    assert report.missing == ("sm_80",)


def test_newer_or_arch_specific_code_does_not_run_on_older_gpus(sos: dict[str, Path]) -> None:
    [sm120] = archcheck.scan([sos["sm120_only"]], TARGETS)
    assert sm120.missing == ("sm_80", "sm_86", "sm_89", "sm_90")
    with pytest.raises(MissingGpuCodeError) as caught:
        archcheck.check([sos["sm120_only"]], TARGETS)
    # Nothing to narrow the targets to: the fix names only the rebuild.
    assert "CUDA_ARCHS" not in str(caught.value) and '8.9 9.0+PTX")' in str(caught.value)
    with pytest.raises(MissingGpuCodeError) as caught:
        archcheck.check([sos["sm120_only"]], (*TARGETS, 120))
    assert caught.value.facts["missing"] == ["sm_80", "sm_86", "sm_89", "sm_90"]  # targets' order
    assert '--build-arg CUDA_ARCHS="sm_120"' in str(caught.value)
    [sm90a] = archcheck.scan([sos["sm90a_only"]], TARGETS)
    assert sm90a.missing == ("sm_80", "sm_86", "sm_89")


def test_a_host_only_extension_needs_no_gpu_code(sos: dict[str, Path]) -> None:
    [report] = archcheck.check([sos["host_only"]], TARGETS)
    assert report.codes == () and report.missing == ()


def test_a_wheel_without_a_target_fails_naming_wheel_member_and_arch(
        sos: dict[str, Path], tmp_path: Path) -> None:
    good = make_wheel(tmp_path, "cumesh", "0.0.1", {"_C.so": sos["every_target"],
                                                   "_xatlas.so": sos["host_only"]})
    bad = make_wheel(tmp_path, "flex_gemm", "0.0.1", {"kernels/_C.so": sos["sm86_and_ptx86"]})
    with pytest.raises(MissingGpuCodeError) as caught:
        archcheck.check([good, bad], TARGETS)
    text = str(caught.value)
    assert text.startswith("1 compiled extension(s) lack GPU code for sm_80: "
                           "flex_gemm-0.0.1-py3-none-any.whl")
    assert ("flex_gemm-0.0.1-py3-none-any.whl: flex_gemm/kernels/_C.so\n"
            "    has sm_86 cubin, compute_86 PTX; cannot run on sm_80") in text
    assert 'fix: use wheels built for every target (TORCH_CUDA_ARCH_LIST="8.0 8.6 8.9 9.0+PTX")' in text
    assert '--build-arg CUDA_ARCHS="sm_86 sm_89 sm_90"' in text
    assert "cumesh" not in text
    assert caught.value.facts["missing"] == ["sm_80"]


def test_installed_packages_are_found_without_import_and_named_by_wheel(
        sos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    pkg = site / "o_voxel"
    (pkg / "lib").mkdir(parents=True)
    # Importing the package would fail: the check must not import it (o_voxel imports torch).
    (pkg / "__init__.py").write_text("raise ImportError('imported')\n")
    shutil.copy(sos["sm120_only"], pkg / "lib" / "libovoxel.so.12")
    dist = site / "o_voxel-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: o_voxel\nVersion: 0.0.1\n")
    (dist / "top_level.txt").write_text("o_voxel\n")
    monkeypatch.syspath_prepend(str(site))
    dirs = archcheck.installed_packages(["o_voxel"])
    assert dirs == [pkg]
    with pytest.raises(MissingGpuCodeError) as caught:
        archcheck.check(dirs, TARGETS)
    assert "wheel o_voxel 0.0.1: o_voxel/lib/libovoxel.so.12" in str(caught.value)


def test_a_missing_extension_package_is_named() -> None:
    with pytest.raises(ExtensionNotFoundError) as caught:
        archcheck.installed_packages(["no_such_cuda_ext"])
    assert str(caught.value).startswith("CUDA extension package(s) not installed: no_such_cuda_ext")
    assert "pip --no-deps" in str(caught.value)


def test_an_interpreter_that_cannot_list_packages_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trellis_box.cli import archcheck as cli

    python = str(tmp_path / "no-python")
    with pytest.raises(ExtensionNotFoundError) as caught:
        archcheck.installed_packages(["o_voxel"], python=python)
    # The library names its parameter; the command line, its flag.
    assert str(caught.value).startswith(f"cannot list the packages of the Python at {python}")
    assert caught.value.fix == "pass `python` the interpreter ComfyUI runs with, e.g. /opt/venv/bin/python"
    assert cli.main(["--python", python, "--archs", "sm_86"]) == 1
    err = capsys.readouterr().err
    assert "fix: pass --python the interpreter ComfyUI runs with" in err and "`" not in err


def test_damaged_files_are_reported_not_passed(sos: dict[str, Path], tmp_path: Path) -> None:
    not_elf = tmp_path / "readme.so"
    not_elf.write_text("not an ELF file")
    with pytest.raises(UnreadableExtensionError, match="not a 64-bit little-endian ELF file"):
        archcheck.scan([not_elf], TARGETS)
    truncated = tmp_path / "cut.so"
    data = sos["every_target"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableExtensionError) as caught:
        archcheck.scan([truncated], TARGETS)
    assert str(caught.value).startswith("cannot read the GPU code in cut.so")
    with pytest.raises(UnreadableExtensionError, match="no such wheel, .so or directory"):
        archcheck.scan([tmp_path / "absent.whl"], TARGETS)


def test_architecture_lists_are_validated() -> None:
    assert archcheck.parse_archs("sm_80, sm_90") == (80, 90)
    with pytest.raises(ConfigError) as caught:
        archcheck.parse_archs("sm_80 8.6")
    assert "not of the form sm_NN: 8.6" in str(caught.value)


def test_cli_finds_packages_through_another_interpreter_and_fails_the_build(
        sos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What the image build runs: ComfyUI's venv is not ours, so packages are found via --python."""
    import sys

    from trellis_box.cli import archcheck as cli

    site = tmp_path / "comfy-site"
    for name, so in (("cumesh", "every_target"), ("flex_gemm", "sm86_and_ptx86"),
                     ("nvdiffrast", "ptx80_only"), ("o_voxel", "host_only")):
        (site / name).mkdir(parents=True)
        shutil.copy(sos[so], site / name / "_C.so")
        dist = site / f"{name}-0.0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (dist / "top_level.txt").write_text(f"{name}\n")
    monkeypatch.setenv("PYTHONPATH", str(site))  # seen by the child interpreter only

    code = cli.main(["--python", sys.executable, "--archs", "sm_86 sm_89 sm_90"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "wheel flex_gemm 0.0.1" in out.out and "ok: every extension runs on every target" in out.out

    code = cli.main(["--python", sys.executable, "--archs", "sm_80 sm_86"])
    out = capsys.readouterr()
    assert code == 1
    assert "lack GPU code for sm_80: wheel flex_gemm 0.0.1" in out.err
    assert "wheel cumesh" not in out.err

    code = cli.main(["--python", sys.executable, "--archs", "sm_86", "/no/such.whl"])
    assert code == 1 and "no such wheel, .so or directory: /no/such.whl" in capsys.readouterr().err


def test_cli_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    # Rich takes "[default: ...]" for markup and drops it unless escaped.
    from trellis_box.cli import archcheck as cli

    assert cli.main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "[default: pins.toml]" in shown
    assert "[default: the installed cumesh, flex_gemm" in shown

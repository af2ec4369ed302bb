"""The catalog holds the brief's facts exactly; overrides and ComfyUI roots are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hub_mirror import make_comfy_root
from trellis_box.comfyui.workflow import recorded_object_info
from trellis_box.errors import NotAComfyRoot, SourceConfigError
from trellis_box.weights.catalog import apply_sources, comfy_root, load_catalog

TRELLIS_CKPTS = ["ss_flow_img_dit_1_3B_64_bf16", "slat_flow_img2shape_dit_1_3B_512_bf16",
                 "slat_flow_img2shape_dit_1_3B_1024_bf16", "slat_flow_imgshape2tex_dit_1_3B_512_bf16",
                 "slat_flow_imgshape2tex_dit_1_3B_1024_bf16", "shape_dec_next_dc_f16c32_fp16",
                 "tex_dec_next_dc_f16c32_fp16", "shape_enc_next_dc_f16c32_fp16"]


def by_name() -> dict:
    return {m.name: m for m in load_catalog()}


def test_every_file_lands_where_its_node_reads_it(tmp_path: Path) -> None:
    root = tmp_path
    targets = {str(m.file_target(root, f).relative_to(root)) for m in load_catalog() for f in m.files}
    expected = {"models/microsoft/TRELLIS.2-4B/pipeline.json",
                "models/microsoft/TRELLIS.2-4B/texturing_pipeline.json",
                *(f"models/microsoft/TRELLIS.2-4B/ckpts/{n}.{ext}" for n in TRELLIS_CKPTS
                  for ext in ("json", "safetensors")),
                "models/microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16.json",
                "models/microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16.safetensors",
                "models/facebook/dinov3-vitl16-pretrain-lvd1689m/config.json",
                "models/facebook/dinov3-vitl16-pretrain-lvd1689m/model.safetensors",
                "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth"}
    assert targets == expected


def test_sources_gating_and_licences() -> None:
    models = by_name()
    assert {n: (m.repo, m.gated) for n, m in models.items()} == {
        "trellis2": ("microsoft/TRELLIS.2-4B", False),
        "ss-decoder": ("microsoft/TRELLIS-image-large", False),
        "dinov3": ("facebook/dinov3-vitl16-pretrain-lvd1689m", True),
        "rmbg": ("briaai/RMBG-1.4", False),
    }
    assert "non-commercial" in models["rmbg"].licence
    assert models["dinov3"].licence == "DINOv3 License"
    assert models["trellis2"].licence == models["ss-decoder"].licence == "MIT"
    assert models["rmbg"].size == 176_524_411
    assert 15e9 <= models["trellis2"].size <= 18e9
    # The node pack owns RMBG-1.4/ (it ships a placeholder there): only the file may be replaced.
    assert models["rmbg"].placement == "files"
    assert {models[n].placement for n in ("trellis2", "ss-decoder", "dinov3")} == {"directory"}


def test_a_source_override_changes_only_where_files_come_from(tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    config.write_text('[dinov3]\nrepo = "PIA-SPACE-LAB/dinov3-vitl-pretrain-lvd1689m"\n'
                      'endpoint = "http://127.0.0.1:1"\n')
    models = {m.name: m for m in apply_sources(load_catalog(), config)}
    dino = models["dinov3"]
    assert (dino.pin.repo, dino.pin.revision, dino.pin.endpoint) == (
        "PIA-SPACE-LAB/dinov3-vitl-pretrain-lvd1689m", "main", "http://127.0.0.1:1")
    assert dino.overridden and dino.target == by_name()["dinov3"].target
    assert not models["trellis2"].overridden


@pytest.mark.parametrize(("text", "fact"), [
    ('[dinov4]\nrepo = "x/y"\n', "unknown model 'dinov4'"),
    ('[dinov3]\nbranch = "main"\n', "unknown keys: branch"),
    ('[dinov3\n', "cannot read the source config"),
])
def test_a_bad_source_config_names_the_entry(tmp_path: Path, text: str, fact: str) -> None:
    config = tmp_path / "sources.toml"
    config.write_text(text)
    with pytest.raises(SourceConfigError) as caught:
        apply_sources(load_catalog(), config)
    assert fact in str(caught.value)
    assert str(config) in str(caught.value)


def test_a_comfy_root_is_a_directory_with_main_py(tmp_path: Path) -> None:
    root = make_comfy_root(tmp_path / "comfyui")
    assert comfy_root(root) == root.resolve()
    with pytest.raises(NotAComfyRoot) as caught:
        comfy_root(root / "custom_nodes")
    assert f"it looks like the custom_nodes/ folder of {root}" in str(caught.value)


def test_each_model_names_a_loader_node_the_pinned_packs_have() -> None:
    classes = recorded_object_info()
    assert {m.name: m.loader for m in load_catalog()} == {
        "trellis2": "Trellis2LoadModel", "ss-decoder": "Trellis2LoadModel",
        "dinov3": "Trellis2LoadModel", "rmbg": "BRIA_RMBG_ModelLoader_Zho"}
    assert all(m.loader in classes for m in load_catalog())


def test_a_missing_root_suggests_a_real_one_never_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor on a machine without the image fails on /opt/comfyui: the fix must not repeat it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    absent = tmp_path / "opt" / "comfyui"
    with pytest.raises(NotAComfyRoot) as caught:
        comfy_root(absent)
    # The library names its parameter; models, serve and doctor their flag (test_verify, test_serve).
    assert f"`comfy_root` {absent}" not in str(caught.value)
    assert "`comfy_root` DIR (or TRELLIS_BOX_COMFY_ROOT)" in str(caught.value)
    real = make_comfy_root(tmp_path / "ComfyUI")
    with pytest.raises(NotAComfyRoot) as caught:
        comfy_root(absent)
    assert caught.value.fix == f"pass the directory that holds ComfyUI's main.py: `comfy_root` {real}"

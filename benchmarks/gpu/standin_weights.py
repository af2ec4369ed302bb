"""Random-weight stand-ins for every catalog file, marked as stand-in weights (weights/standin.py).

    PYTHONPATH=src python benchmarks/gpu/standin_weights.py --comfy-root DIR --configs TRELLIS2_CONFIGS
        [--checkpoints empty|full] [--device cuda]

For a GPU machine that cannot have the real weights (no network, gated DINOv3). Runs with ComfyUI's
interpreter (torch, transformers 4.x, safetensors) and the packs already in ``custom_nodes/``.
Architectures come from TRELLIS.2's published configs (``configs/gen/*.json``: the flow models'
``models.denoiser``, in bfloat16; ``configs/scvae/*_ft_512.json``: the decoders and the encoder);
the sparse-structure decoder is TRELLIS-image-large's.

``--checkpoints empty`` (the default) writes TRELLIS.2's ``.safetensors`` with no tensors: the pack
loads every model with ``load_state_dict(..., strict=False)``, so each keeps its own random
initialisation, which is what ``full`` would save. ``full`` builds each model on the device and saves
its state dict (16 GB). DINOv3 and RMBG-1.4 are always written in full (transformers and torch.load
need their tensors). Nothing is overwritten: a real weight already in place stays, and the marker
goes down only if any stand-in was written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from trellis_box.weights import standin
from trellis_box.weights.catalog import load_catalog

# checkpoint -> (config under TRELLIS.2's configs/, the model's key in it)
TRELLIS_CHECKPOINTS = {
    "ss_flow_img_dit_1_3B_64_bf16": ("gen/ss_flow_img_dit_1_3B_64_bf16.json", "denoiser"),
    "slat_flow_img2shape_dit_1_3B_512_bf16": ("gen/slat_flow_img2shape_dit_1_3B_512_bf16.json", "denoiser"),
    "slat_flow_img2shape_dit_1_3B_1024_bf16": ("gen/slat_flow_img2shape_dit_1_3B_512_bf16_ft1024.json", "denoiser"),
    "slat_flow_imgshape2tex_dit_1_3B_512_bf16": ("gen/slat_flow_imgshape2tex_dit_1_3B_512_bf16.json", "denoiser"),
    "slat_flow_imgshape2tex_dit_1_3B_1024_bf16": (
        "gen/slat_flow_imgshape2tex_dit_1_3B_512_bf16_ft1024.json", "denoiser"),
    "shape_dec_next_dc_f16c32_fp16": ("scvae/shape_vae_next_dc_f16c32_fp16_ft_512.json", "decoder"),
    "tex_dec_next_dc_f16c32_fp16": ("scvae/tex_vae_next_dc_f16c32_fp16_ft_512.json", "decoder"),
    "shape_enc_next_dc_f16c32_fp16": ("scvae/shape_vae_next_dc_f16c32_fp16_ft_512.json", "encoder"),
}
SS_DECODER = {"name": "SparseStructureDecoder", "args": {
    "out_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "num_res_blocks_middle": 2,
    "channels": [512, 128, 32], "use_fp16": True}}
# pipeline.json's model keys (what Trellis2LoadModel reads) -> checkpoint
PIPELINE_MODELS = {
    "sparse_structure_flow_model": "ss_flow_img_dit_1_3B_64_bf16",
    "sparse_structure_decoder": "ss_dec_conv3d_16l8_fp16",  # the pack replaces this path with its own
    "shape_slat_flow_model_512": "slat_flow_img2shape_dit_1_3B_512_bf16",
    "shape_slat_flow_model_1024": "slat_flow_img2shape_dit_1_3B_1024_bf16",
    "tex_slat_flow_model_512": "slat_flow_imgshape2tex_dit_1_3B_512_bf16",
    "tex_slat_flow_model_1024": "slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
    "shape_slat_decoder": "shape_dec_next_dc_f16c32_fp16",
    "tex_slat_decoder": "tex_dec_next_dc_f16c32_fp16",
}
# TRELLIS.2's published sampler settings (12 Euler steps with guidance intervals).
SAMPLERS = {
    "sparse_structure_sampler": (7.5, 0.7, [0.6, 1.0], 5.0),
    "shape_slat_sampler": (7.5, 0.5, [0.6, 1.0], 3.0),
    "tex_slat_sampler": (1.0, 0.0, [0.6, 0.9], 3.0),
}
DINOV3 = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
          "patch_size": 16, "num_register_tokens": 4}
#: The seed the RMBG-1.4 stand-in is drawn from (see rmbg() below: why it is fixed, how it was chosen).
RMBG_SEED = 5


def find_key(tree: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a config (the normalisations sit in dataset args)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def model_configs(configs: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for ckpt, (file, key) in TRELLIS_CHECKPOINTS.items():
        model = json.loads((configs / file).read_text())["models"][key]
        if key == "denoiser":
            model["args"]["dtype"] = "bfloat16"
        out[ckpt] = model
    return out


def pipeline_json(configs: Path) -> dict[str, Any]:
    shape = json.loads((configs / TRELLIS_CHECKPOINTS["slat_flow_img2shape_dit_1_3B_512_bf16"][0]).read_text())
    tex = json.loads((configs / TRELLIS_CHECKPOINTS["slat_flow_imgshape2tex_dit_1_3B_512_bf16"][0]).read_text())
    samplers = {name: {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                       "params": {"steps": 12, "guidance_strength": g, "guidance_rescale": r,
                                  "guidance_interval": i, "rescale_t": t}}
                for name, (g, r, i, t) in SAMPLERS.items()}
    return {"name": "Trellis2ImageTo3DPipeline", "args": {
        "models": {k: f"ckpts/{v}" for k, v in PIPELINE_MODELS.items()},
        **samplers,
        "shape_slat_normalization": find_key(shape, "normalization"),
        "tex_slat_normalization": find_key(tex, "pbr_slat_normalization"),
        "image_cond_model": {"name": "DinoV3FeatureExtractor",
                             "args": {"model_name": "facebook/dinov3-vitl16-pretrain-lvd1689m"}},
        "low_vram": False,
        "default_pipeline_type": "1024_cascade",
    }}


def write(root: Path, configs: Path, *, checkpoints: str, device: str,
          only: set[str] | None = None) -> dict[str, float]:
    """Write every missing catalog file (or only those named); checkpoint or group -> seconds it took."""
    import torch
    from safetensors.torch import save_file

    targets = {m.name: m.target_dir(root) for m in load_catalog()}
    seconds: dict[str, float] = {}
    wrote = False

    def timed(what: str, path: Path, make: Any) -> None:
        nonlocal wrote
        if path.exists() or (only is not None and what not in only):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        make(path)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds[what] = round(time.perf_counter() - started, 2)
        wrote = True

    def checkpoint(config: dict[str, Any]) -> Any:
        def make(path: Path) -> None:
            path.with_suffix(".json").write_text(json.dumps(config, indent=2))
            if checkpoints == "empty":
                save_file({}, str(path), metadata={"format": "pt"})
                return
            import trellis2.models as models

            with torch.device(device):
                model = getattr(models, config["name"])(**config["args"])
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            del model
        return make

    trellis = targets["trellis2"]
    for ckpt, config in model_configs(configs).items():
        timed(ckpt, trellis / "ckpts" / f"{ckpt}.safetensors", checkpoint(config))
    timed("ss_dec_conv3d_16l8_fp16", targets["ss-decoder"] / "ckpts" / "ss_dec_conv3d_16l8_fp16.safetensors",
          checkpoint(SS_DECODER))
    for name in ("pipeline.json", "texturing_pipeline.json"):
        timed(name, trellis / name, lambda p: p.write_text(json.dumps(pipeline_json(configs), indent=2)))

    def dinov3(path: Path) -> None:
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        with torch.device(device):
            model = DINOv3ViTModel(DINOv3ViTConfig(**DINOV3))
        model.save_pretrained(str(path.parent))

    timed("dinov3", targets["dinov3"] / "model.safetensors", dinov3)

    def rmbg(path: Path) -> None:
        sys.path.insert(0, str(path.parent.parent))
        from briarmbg import BriaRMBG  # the RMBG pack's own network

        # Built on the CPU from a fixed seed: with many random weights the network's mask peaks in a
        # point, and the Trellis2 pack's crop (pixels above 0.8 of the maximum) comes out empty;
        # this seed keeps 65-80 % of every bundled picture (warm-up and bench photos) above it.
        torch.manual_seed(RMBG_SEED)
        torch.save(BriaRMBG().state_dict(), str(path))

    timed("rmbg", targets["rmbg"] / "model.pth", rmbg)
    if wrote:
        standin.mark(root)
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfy-root", required=True, type=Path)
    p.add_argument("--configs", required=True, type=Path, help="TRELLIS.2's configs/ folder")
    p.add_argument("--checkpoints", choices=("empty", "full"), default="empty")
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", nargs="+", help="write only these checkpoints (or dinov3, rmbg, pipeline.json)")
    p.add_argument("--into", type=Path, help="write under this root instead (the code still comes from --comfy-root)")
    args = p.parse_args(argv)
    # trellis2 (the pack's package) imports ComfyUI's folder_paths: both go on the path.
    sys.path[:0] = [str(args.comfy_root / "custom_nodes" / "ComfyUI-Trellis2"), str(args.comfy_root)]
    started = time.perf_counter()
    into = args.into or args.comfy_root
    seconds = write(into, args.configs, checkpoints=args.checkpoints, device=args.device,
                    only=set(args.only) if args.only else None)
    print(json.dumps({"weights_mode": standin.mode(into), "label": standin.LABEL,
                      "checkpoints": args.checkpoints, "seconds": seconds,
                      "total_s": round(time.perf_counter() - started, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

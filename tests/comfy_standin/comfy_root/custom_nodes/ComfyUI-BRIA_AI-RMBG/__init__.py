"""Stand-in for ZHO-ZHO-ZHO/ComfyUI-BRIA_AI-RMBG (pinned 827fcd63): recorded schemas.

The loader needs ``RMBG-1.4/model.pth`` next to this file, as upstream does (a missing file is
the same FileNotFoundError at execution time). The matting network is replaced by a colour key:
pixels close to the top-left corner's colour become transparent. The output is RGBA, as
upstream's, which is what TRELLIS.2's preprocessing needs. A picture without an object keeps one
opaque pixel, as upstream's min-max stretched mask does.
"""

from __future__ import annotations

import os

from PIL import Image, ImageChops
from standin.schema import display_name, recorded

MODEL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RMBG-1.4", "model.pth")
BACKGROUND_TOLERANCE = 24


class StandinRMBGModel:
    def __init__(self, path: str) -> None:
        self.path = path


@recorded("BRIA_RMBG_ModelLoader_Zho")
class StandinRMBGLoader:
    FUNCTION = "load_model"

    def load_model(self) -> list[StandinRMBGModel]:
        if not os.path.isfile(MODEL_PATH):
            raise FileNotFoundError(2, "No such file or directory", MODEL_PATH)
        return [StandinRMBGModel(MODEL_PATH)]


@recorded("BRIA_RMBG_Zho")
class StandinRMBG:
    FUNCTION = "remove_background"

    def remove_background(self, rmbgmodel: StandinRMBGModel, image: list[Image.Image]
                          ) -> tuple[list[Image.Image], list[Image.Image]]:
        images, masks = [], []
        for source in image:
            rgb = source.convert("RGB")
            background = Image.new("RGB", rgb.size, rgb.getpixel((0, 0)))
            distance = ImageChops.difference(rgb, background).convert("L")
            mask = distance.point(lambda d: 255 if d > BACKGROUND_TOLERANCE else 0)
            if mask.getbbox() is None:
                # Upstream stretches the network's mask between its own minimum and maximum, so
                # a picture without an object still keeps its strongest speck fully opaque:
                # TRELLIS.2's preprocessing then crops to 0 x 0 and SaveImage fails on it.
                strongest = distance.getextrema()[1]
                speck = distance.point(lambda d, top=strongest: 255 if d == top else 0).getbbox()
                mask.putpixel(speck[:2] if speck else (0, 0), 255)
            cutout = Image.new("RGBA", rgb.size, (0, 0, 0, 0))
            cutout.paste(rgb, mask=mask)
            images.append(cutout)
            masks.append(mask)
        return images, masks


NODE_CLASS_MAPPINGS = {
    "BRIA_RMBG_ModelLoader_Zho": StandinRMBGLoader,
    "BRIA_RMBG_Zho": StandinRMBG,
}
NODE_DISPLAY_NAME_MAPPINGS = {name: display_name(name) for name in NODE_CLASS_MAPPINGS}

"""Input image checks and normalisation, on real files written by Pillow (and two written by hand)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from trellis_box.batch.images import MAX_PIXELS, normalise
from trellis_box.errors import ImageInputError


def _decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` but carries no pixels: what a bomb looks like
    to everything that reads only the header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_transparency_is_flattened_onto_white_not_onto_the_hidden_colour(tmp_path: Path) -> None:
    """A real ComfyUI's LoadImage drops alpha and keeps the colour under it: green hidden under
    the transparent area ended up in the cutout. White is what the background remover expects."""
    source = Image.new("RGBA", (40, 30), (10, 20, 30, 255))
    source.putpixel((0, 0), (0, 255, 0, 0))      # hidden green, fully transparent
    source.putpixel((1, 0), (0, 0, 0, 128))      # half-transparent black edge
    source.save(tmp_path / "a.png")
    result = normalise(tmp_path / "a.png")
    assert (result.mode, result.width, result.height) == ("RGB", 40, 30)
    assert result.changes == ("transparency flattened onto white (ComfyUI's LoadImage ignores alpha)",)
    decoded = _decoded(result.png)
    assert decoded.format == "PNG" and decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0)) in {(127, 127, 127), (128, 128, 128)}
    assert decoded.getpixel((5, 5)) == (10, 20, 30)


def test_an_opaque_rgba_png_is_not_changed(tmp_path: Path) -> None:
    Image.new("RGBA", (8, 8), (10, 20, 30, 255)).save(tmp_path / "opaque.png")
    result = normalise(tmp_path / "opaque.png")
    assert (result.mode, result.changes) == ("RGB", ())
    assert _decoded(result.png).getpixel((3, 3)) == (10, 20, 30)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored sideways with orientation 6 (rotate 90° clockwise to view)."""
    stored = Image.new("RGB", (60, 20), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    result = normalise(tmp_path / "phone.jpg")
    assert (result.width, result.height) == (20, 60)
    assert "EXIF orientation 6 applied" in result.changes
    red, green, blue = _decoded(result.png).getpixel((10, 2))  # the left edge is now on top
    assert red > 200 and green < 60 and blue < 60


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "print.jpg")
    result = normalise(tmp_path / "print.jpg")
    assert result.mode == "RGB"
    assert "CMYK converted to RGB" in result.changes
    red, green, blue = _decoded(result.png).getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode.startswith("I")
    result = normalise(tmp_path / "depth.png")
    assert result.mode == "RGB"
    assert _decoded(result.png).getpixel((3, 3)) == (156, 156, 156)  # 40000 / 256, not white
    assert any("16-bit greyscale" in change for change in result.changes)


def test_palette_transparency_is_flattened_onto_white(tmp_path: Path) -> None:
    image = Image.new("P", (10, 10), 1)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.save(tmp_path / "sprite.png", transparency=0)
    result = normalise(tmp_path / "sprite.png")
    assert result.mode == "RGB"
    decoded = _decoded(result.png)
    assert decoded.getpixel((0, 0)) == (255, 255, 255)   # the transparent black is not black
    assert decoded.getpixel((5, 5)) == (0, 200, 0)


@pytest.mark.parametrize(("mode", "expected"), [("L", "RGB"), ("LA", "RGB"), ("1", "RGB")])
def test_greyscale_modes_are_converted(tmp_path: Path, mode: str, expected: str) -> None:
    Image.new(mode, (12, 12)).save(tmp_path / "grey.png")
    result = normalise(tmp_path / "grey.png")
    assert result.mode == expected
    assert _decoded(result.png).mode == expected


def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "spin.gif", save_all=True, append_images=frames[1:])
    result = normalise(tmp_path / "spin.gif")
    assert "animated image: used the first of 3 frames" in result.changes
    assert _decoded(result.png).convert("RGB").getpixel((4, 4)) == (255, 0, 0)


def test_large_image_is_downscaled_to_2048(tmp_path: Path) -> None:
    Image.new("RGB", (3000, 1000), (1, 2, 3)).save(tmp_path / "wide.png")
    result = normalise(tmp_path / "wide.png")
    assert (result.width, result.height) == (2048, 683)
    assert "downscaled from 3000 x 1000 to 2048 x 683" in result.changes


def test_large_jpeg_is_decoded_small_and_downscaled_to_2048(tmp_path: Path) -> None:
    Image.new("RGB", (6000, 4500), (200, 100, 50)).save(tmp_path / "camera.jpg", quality=90)
    result = normalise(tmp_path / "camera.jpg")
    assert (result.width, result.height) == (2048, 1536)
    assert "downscaled from 6000 x 4500 to 2048 x 1536" in result.changes
    red, green, blue = _decoded(result.png).getpixel((1000, 700))
    assert abs(red - 200) < 6 and abs(green - 100) < 6 and abs(blue - 50) < 6


def test_hash_follows_pixels_not_file_metadata(tmp_path: Path) -> None:
    image = Image.new("RGB", (20, 20), (9, 9, 9))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "shot on a Tuesday")
    image.save(tmp_path / "plain.png")
    image.save(tmp_path / "tagged.png", pnginfo=info)
    image.putpixel((1, 1), (10, 9, 9))
    image.save(tmp_path / "changed.png")
    plain, tagged, changed = (normalise(tmp_path / n) for n in ("plain.png", "tagged.png", "changed.png"))
    assert plain.sha256 == tagged.sha256
    assert plain.sha256 != changed.sha256
    assert len(plain.sha256) == 64


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    """9000 x 9000 declared: over our 8192 x 8192 limit, under Pillow's own bomb error."""
    path = _png_header_only(tmp_path / "huge.png", 9000, 9000)
    assert MAX_PIXELS < 9000 * 9000
    with pytest.raises(ImageInputError) as caught:
        normalise(path)
    assert str(caught.value) == (
        f"cannot use image {path}\n"
        "  huge.png: it has 9000 x 9000 = 81,000,000 pixels, over the limit of 67,108,864.\n"
        "  fix: downscale it to at most 2048 pixels on its longer side"
    )
    assert caught.value.facts["path"] == str(path)


def test_pillow_decompression_bomb_error_becomes_ours(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ImageInputError) as caught:
        normalise(path)
    # Its size, not only that it is too large; and the limit that refused it.
    assert ("bomb.png: it has 400,000,000 pixels, over the limit of 67,108,864 (Pillow refuses "
            "over 178,956,970 as a decompression bomb)." in str(caught.value))
    assert "fix: downscale it to at most 2048 pixels on its longer side" in str(caught.value)


def test_an_empty_file_is_called_empty(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError) as caught:
        normalise(path)
    assert str(caught.value) == (
        f"cannot use image {path}\n"
        "  photo.jpg: it is empty (0 bytes).\n"
        "  fix: copy or export it again: an interrupted copy or download leaves an empty file"
    )


def test_not_an_image_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels")
    with pytest.raises(ImageInputError) as caught:
        normalise(path)
    assert str(caught.value) == (
        f"cannot use image {path}\n"
        "  notes.png: it is not an image format Pillow can decode.\n"
        "  fix: convert it to PNG or JPEG"
    )


def test_truncated_png_is_reported_as_damaged(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError) as caught:
        normalise(tmp_path / "cut.png")
    assert "cut.png: it is truncated or damaged" in str(caught.value)
    assert "fix: re-export or re-download the file" in str(caught.value)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError) as caught:
        normalise(tmp_path / "gone.jpg")
    assert "gone.jpg: it does not exist." in str(caught.value)

"""Input images checked and normalised before upload: one clear error per bad file.

What ComfyUI's ``LoadImage`` and the RMBG node would otherwise do silently: ignore EXIF orientation
(the mesh comes out lying on its side), clip 16-bit greys to white, and drop transparency while
keeping whatever colours lie under it (seen on a real ComfyUI 0.3.64: a colour hidden under the
transparent area ends up in the cutout). The result is an 8-bit RGB PNG, transparency flattened
onto white, at most ``MAX_SIDE`` pixels on its longer side, and a hash of its pixels for upload
names and resume keys.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from trellis_box.errors import ImageInputError

#: Pixels above which an image is refused before it is decoded (a decompression bomb, or a scan
#: far larger than the pipeline can use): 8192 x 8192.
MAX_PIXELS = 8192 * 8192
#: ``Trellis2PreProcessImage`` shrinks the longer side to 2048 (LANCZOS) before it crops; doing it
#: here gives the same input to TRELLIS.2 and uploads a fraction of the bytes.
MAX_SIDE = 2048

_GREY_16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class NormalisedImage:
    source: Path
    png: bytes
    #: sha256 of mode, size and pixels: stable across Pillow and zlib versions, unlike the PNG bytes.
    sha256: str
    width: int
    height: int
    mode: str
    #: What was changed, for the per-image report ("EXIF orientation applied", ...).
    changes: tuple[str, ...]


def normalise(path: Path, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> NormalisedImage:
    """Decode ``path`` and return it as a normalised PNG, or raise :class:`ImageInputError`."""
    changes: list[str] = []
    try:
        if path.stat().st_size == 0:
            raise _error(path, "it is empty (0 bytes)",
                         "copy or export it again: an interrupted copy or download leaves an "
                         "empty file")
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            _check_pixels(path, image.size, max_pixels)
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                image.seek(0)
                changes.append(f"animated image: used the first of {frames} frames")
            # A JPEG can decode straight at 1/2, 1/4 or 1/8 scale: a 48 MP photo then costs a
            # fraction of the time and memory, and still ends at least max_side on its longer side.
            stored_size = image.size
            image.draft(image.mode, (max_side, max_side))
            image.load()
            result = _normalise(image, changes, max_side, stored_size)
    except ImageInputError:
        raise
    except FileNotFoundError as exc:
        raise _error(path, "it does not exist", "check the path") from exc
    except PermissionError as exc:
        raise _error(path, "it cannot be read (permission denied)", "make it readable for this user") from exc
    except IsADirectoryError as exc:
        raise _error(path, "it is a directory", "pass the directory itself to read the images in it") from exc
    except Image.DecompressionBombError as exc:
        # Pillow refuses before our own check can see the size; its message has the count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow opens"
        raise _error(path, f"it has {size}, over the limit of {max_pixels:,} (Pillow refuses "
                     f"over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} as a decompression bomb)",
                     f"downscale it to at most {MAX_SIDE} pixels on its longer side") from exc
    except UnidentifiedImageError as exc:
        raise _error(path, "it is not an image format Pillow can decode",
                     "convert it to PNG or JPEG") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _error(path, f"it is truncated or damaged ({exc})",
                     "re-export or re-download the file") from exc
    buffer = io.BytesIO()
    result.save(buffer, format="PNG")
    digest = hashlib.sha256(f"{result.mode} {result.width}x{result.height}\n".encode())
    digest.update(result.tobytes())
    return NormalisedImage(path, buffer.getvalue(), digest.hexdigest(), result.width, result.height,
                           result.mode, tuple(changes))


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise _error(path, f"it has {width} x {height} = {width * height:,} pixels, over the limit "
                     f"of {max_pixels:,}", f"downscale it to at most {MAX_SIDE} pixels on its longer side")
    if width < 1 or height < 1:
        raise _error(path, f"it has no pixels ({width} x {height})", "re-export the file")


def _normalise(image: Image.Image, changes: list[str], max_side: int,
               stored_size: tuple[int, int]) -> Image.Image:
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
        changes.append(f"EXIF orientation {orientation} applied")
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        pass
    elif mode in _GREY_16:
        # convert("L") would clip every value above 255 to white: scale 16 bits down to 8 first.
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L").convert("RGB")
        changes.append(f"16-bit greyscale ({mode}) scaled to 8-bit RGB")
    elif mode == "P":
        target = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(target)
        changes.append(f"palette converted to {target}")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
        changes.append(f"{mode} converted to RGBA")
    else:
        # CMYK, L, 1, YCbCr, LAB, HSV, F: no alpha to keep.
        image = image.convert("RGB")
        changes.append(f"{mode} converted to RGB")
    if image.mode == "RGBA":
        image = _flatten(image, changes)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if image.size not in (stored_size, stored_size[::-1]):
        width, height = stored_size
        changes.append(f"downscaled from {width} x {height} to {image.width} x {image.height}")
    return image


def _flatten(image: Image.Image, changes: list[str]) -> Image.Image:
    """RGB with any transparency composited onto white.

    ``LoadImage`` would drop the alpha channel and keep the colours stored under transparent
    pixels (often black, or leftovers of an edit), which the background remover then takes for
    part of the object; on white it separates the object cleanly."""
    alpha = image.getchannel("A")
    lowest, _ = alpha.getextrema()  # one band: (min, max) as numbers
    if lowest < 255:  # type: ignore[operator]
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image.convert("RGB"), mask=alpha)
        changes.append("transparency flattened onto white (ComfyUI's LoadImage ignores alpha)")
        return flat
    return image.convert("RGB")


def _error(path: Path, fact: str, fix: str) -> ImageInputError:
    return ImageInputError(f"cannot use image {path}", detail=f"{path.name}: {fact}.", fix=fix,
                           path=str(path))

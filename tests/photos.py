"""Input photos for the client, batch and generate tests: an object on a plain background.

The stand-in's background removal keys out the top-left corner's colour, as a studio photo
would be cut out; a plain image would leave nothing for TRELLIS.2 to see.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def object_photo(path: Path, index: int = 0, *, size: int = 96) -> Path:
    """A distinct object per ``index`` (colour and shape differ), saved where the suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    colour = ((index * 53) % 200, (index * 97 + 40) % 200, (index * 31 + 80) % 200)
    margin = size // 6 + index % 5
    ImageDraw.Draw(image).ellipse((margin, margin + 3, size - margin, size - margin), fill=colour)
    image.save(path)
    return path

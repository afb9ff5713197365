"""Read a source image as the JPEG bytes a record stores.

RGB JPEGs (baseline or progressive) pass through byte for byte. Anything else that decodes,
grayscale or CMYK JPEGs and PNGs saved under a ``.JPEG`` name, is re-encoded to RGB JPEG at
quality 100 without chroma subsampling (a mean pixel error under 1: these files are few, so
their size does not matter), and every reader (TF, PIL,
browsers) sees three channels. A truncated or corrupt image, or one that is not 64x64, raises
:class:`BadImage` naming its path.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

from dataset_service.errors import BadImage
from shard_format.schema import IMAGE_SIZE

REENCODE_QUALITY = 100
_EXPECTED_SIZE = (IMAGE_SIZE, IMAGE_SIZE)
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class JpegImage:
    data: bytes
    re_encoded: bool


def _decode(data: bytes) -> Image.Image:
    """Open and decode every pixel: that is what finds a truncated JPEG. ``verify()`` adds
    checksum checks for other formats (PNG CRCs) but does nothing for JPEG, so only they get it.
    """
    image = Image.open(io.BytesIO(data))
    if image.format != "JPEG":
        image.verify()
        image = Image.open(io.BytesIO(data))  # verify() leaves the image unusable
    image.load()
    return image


def to_rgb_jpeg(data: bytes, path: str) -> JpegImage:
    """``data`` as RGB JPEG bytes; ``path`` only names the image in errors."""
    # Truncated files must fail, not decode as grey padding.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image = _decode(data)
        if image.size != _EXPECTED_SIZE:
            raise BadImage(path, f"image is {image.size[0]}x{image.size[1]}, expected 64x64")
        if image.format == "JPEG" and image.mode == "RGB":
            return JpegImage(data, re_encoded=False)
        rgb = image.convert("RGB")
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(path, "cannot decode image: not a JPEG or another known format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # PIL names its file object by repr: no memory address in a message (or the metadata).
        message = _OBJECT_REPR.sub("the data", str(exc))
        raise BadImage(path, f"cannot decode image: {message}") from None
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=REENCODE_QUALITY, subsampling=0)
    return JpegImage(buf.getvalue(), re_encoded=True)


def load_jpeg(path: Path | str) -> JpegImage:
    """Read ``path`` and return its RGB JPEG bytes (see :func:`to_rgb_jpeg`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImage(str(path), f"cannot read image: {exc.strerror or exc}") from None
    return to_rgb_jpeg(data, str(path))

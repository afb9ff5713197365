"""Read a source image as the JPEG bytes a record stores.

- A 64x64 RGB JPEG (baseline or progressive) passes through byte for byte. It is checked the
  fast way: libjpeg-turbo (``simplejpeg``) reads the header (size, colour space), then decodes
  the whole image in strict mode; every coefficient of every component is entropy-decoded (only
  the luma plane is reconstructed), so a truncated or corrupt stream, or one that makes libjpeg
  warn, does not pass.
- A clean greyscale JPEG is re-encoded to RGB by libjpeg-turbo (decode, then encode).
- Anything else is judged by a full decode with Pillow, which gives the verdict and the message:
  CMYK JPEGs, PNGs saved under a ``.JPEG`` name, and JPEGs that only warn are re-encoded (or, when
  Pillow reads them as RGB JPEGs, passed through); a truncated or corrupt image, or one that is
  not 64x64, raises :class:`BadImage` naming its path.

Re-encoding is at quality 100 without chroma subsampling (a mean pixel error under 1: these
files are few, so their size does not matter), so every reader (TF, PIL, browsers) sees three
channels.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import simplejpeg
from PIL import Image, ImageFile, UnidentifiedImageError

from dataset_service.errors import BadImage
from shard_format.schema import IMAGE_SIZE

REENCODE_QUALITY = 100
_EXPECTED_SIZE = (IMAGE_SIZE, IMAGE_SIZE)
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
#: Colour spaces libjpeg reports for what Pillow opens as an RGB JPEG.
_RGB_SPACES = frozenset({"YCbCr", "RGB"})


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


def is_clean_rgb_jpeg(data: bytes) -> bool:
    """True when ``data`` is a 64x64 RGB JPEG whose whole stream decodes without a warning."""
    try:
        height, width, space, _ = simplejpeg.decode_jpeg_header(data)
        if (width, height) != _EXPECTED_SIZE or space not in _RGB_SPACES:
            return False
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError:
        return False
    return True


def _grey_as_rgb(data: bytes) -> bytes | None:
    """A clean 64x64 greyscale JPEG re-encoded as RGB (libjpeg-turbo both ways: a quarter of
    Pillow's time, and these are about 2 % of the images), or None for anything else."""
    try:
        height, width, space, _ = simplejpeg.decode_jpeg_header(data)
        if (width, height) != _EXPECTED_SIZE or space != "Gray":
            return None
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None
    return simplejpeg.encode_jpeg(rgb, quality=REENCODE_QUALITY, colorsubsampling="444")


def to_rgb_jpeg(data: bytes, path: str) -> JpegImage:
    """``data`` as RGB JPEG bytes; ``path`` only names the image in errors."""
    if is_clean_rgb_jpeg(data):
        return JpegImage(data, re_encoded=False)
    grey = _grey_as_rgb(data)
    if grey is not None:
        return JpegImage(grey, re_encoded=True)
    return _judged_by_pillow(data, path)


def _judged_by_pillow(data: bytes, path: str) -> JpegImage:
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

"""Any image Pillow reads -> the model's input: uint8 RGB, 64x64 (no Keras, no TensorFlow).

The rule, the same for every caller (the classify CLI, the HTTP endpoint):

1. the EXIF orientation is applied (a phone photo is classified the way it is shown);
2. the image is converted to RGB: greyscale is repeated over the three channels, CMYK and
   palette images are converted by Pillow, and transparent pixels are composited on white;
3. the largest centred square is cropped and resized to 64x64 with Pillow's antialiasing
   bicubic filter (``ImageOps.fit``), so the aspect ratio is kept, as in Tiny ImageNet's own
   64x64 images (taken from centred ImageNet crops).

An image already 64x64 RGB passes through unchanged. Images over :data:`MAX_PIXELS` are refused
before they are decoded (a small file can expand to gigabytes).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shard_format.schema import IMAGE_SIZE

#: The largest image decoded, in pixels (about 7000x7000).
MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """A file that is not a usable image; the message says why, for a person."""


def to_model_input(image: Image.Image) -> np.ndarray:
    """``image`` as the model's input: ``uint8 [64, 64, 3]`` (the rule of the module docstring)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = ImageOps.fit(image, (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def load_image(data: bytes) -> np.ndarray:
    """Decode ``data`` (any format Pillow reads) into the model's input, or :class:`ImageError`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{width}x{height} pixels is more than the {MAX_PIXELS:,} this service decodes"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
            return to_model_input(image)
    except UnidentifiedImageError:
        raise ImageError("not an image (no format Pillow reads)") from None
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise ImageError(f"unreadable image: {exc}") from None

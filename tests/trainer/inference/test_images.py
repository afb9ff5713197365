"""Any image Pillow reads becomes the model's 64x64 uint8 RGB input, by the documented rule; a
file that is not a usable image gets an error that says why."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from trainer_service.inference import images
from trainer_service.inference.images import ImageError, load_image


def encode(image: Image.Image, format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (height, width, 1)),
                          np.broadcast_to(y, (height, width, 1)),
                          np.full((height, width, 1), 60, np.float32)], axis=-1)  # fmt: skip
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def test_a_64x64_rgb_png_passes_through_unchanged():
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels, "RGB"), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize(
    ("mode", "format"),
    [("L", "PNG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("P", "GIF"), ("RGB", "WEBP"), ("I;16", "PNG"),
     ("1", "BMP"), ("RGB", "TIFF")],
)  # fmt: skip
def test_every_mode_and_format_becomes_rgb_64x64(mode, format):
    image = gradient(120, 90).convert(mode)
    out = load_image(encode(image, format))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16", "1"):  # grey: the three channels are equal
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_the_largest_centred_square_is_kept():
    # 300x100: left third red, middle third green, right third blue -> only green survives.
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100, 0] = wide[:, 100:200, 1] = wide[:, 200:, 2] = 255
    out = load_image(encode(Image.fromarray(wide), "PNG")).astype(int)
    assert out[:, 2:-2, 1].min() > 200 and out[:, 2:-2, [0, 2]].max() < 50


def test_transparent_pixels_are_composited_on_white():
    rgba = np.zeros((64, 64, 4), np.uint8)  # transparent black everywhere ...
    rgba[:32, :, :] = [255, 0, 0, 255]  # ... but an opaque red top half
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out[:32] == [255, 0, 0]).all() and (out[32:] == [255, 255, 255]).all()


def test_the_exif_orientation_is_applied():
    tall = np.zeros((128, 64, 3), np.uint8)
    tall[:64] = [255, 0, 0]  # red on top, blue below ...
    tall[64:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6  # ... stored rotated: viewers turn it 90 degrees clockwise
    out = load_image(encode(Image.fromarray(tall), "PNG", exif=exif)).astype(int)
    # shown upright it is 128 wide, 64 tall: red on the right half, blue on the left
    assert out[:, 40:, 0].mean() > 200 and out[:, :24, 2].mean() > 200


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not an image"),
        (b"this is a text file\n", "not an image"),
        (encode(gradient(64, 64), "JPEG")[:200], "unreadable image"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_a_file_that_is_not_a_usable_image_says_why(data, reason):
    with pytest.raises(ImageError, match=reason):
        load_image(data)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    data = encode(gradient(101, 100), "PNG")
    with pytest.raises(ImageError, match="101x100 pixels is more than"):
        load_image(data)
    assert load_image(encode(gradient(100, 100), "PNG")).shape == (64, 64, 3)

import io

import numpy as np
import pytest
from PIL import Image

from dataset_service.errors import BadImage
from dataset_service.images import is_clean_rgb_jpeg, to_rgb_jpeg

_YY, _XX = np.mgrid[0:64, 0:64]
# Smooth colours (JPEG-friendly, so re-encoding errors stay small) with a little texture.
PIXELS = np.stack([_XX * 4, _YY * 4, 128 + 60 * np.sin(_XX / 5.0)], axis=-1).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("progressive", [False, True])
def test_rgb_jpeg_passes_through_byte_for_byte(progressive):
    data = _encode(Image.fromarray(PIXELS), "JPEG", quality=80, progressive=progressive)
    out = to_rgb_jpeg(data, "x.JPEG")
    assert out.data == data and not out.re_encoded


@pytest.mark.parametrize(
    "make",
    [
        lambda: _encode(Image.fromarray(PIXELS).convert("L"), "JPEG"),
        lambda: _encode(Image.fromarray(PIXELS).convert("CMYK"), "JPEG"),
        lambda: _encode(Image.fromarray(PIXELS), "PNG"),
    ],
    ids=["grayscale", "cmyk", "png"],
)
def test_other_images_are_re_encoded_to_rgb_jpeg(make):
    data = make()
    out = to_rgb_jpeg(data, "x.JPEG")
    assert out.re_encoded and out.data != data
    image = _decoded(out.data)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64))
    source = np.asarray(_decoded(data).convert("RGB")).astype(int)
    assert np.abs(np.asarray(image).astype(int) - source).mean() < 3


def test_truncated_jpeg_fails_with_its_path():
    data = _encode(Image.fromarray(PIXELS), "JPEG", quality=90)
    path = "train/n1/images/cut.JPEG"
    with pytest.raises(BadImage, match=f"{path}: cannot decode image") as info:
        to_rgb_jpeg(data[: len(data) // 2], path)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not an image", "cannot decode"),
        (b"", "cannot decode"),
        (
            _encode(Image.fromarray(np.zeros((32, 48, 3), np.uint8)), "JPEG"),
            "48x32, expected 64x64",
        ),
    ],
)
def test_undecodable_or_wrong_size_images_fail(data, reason):
    with pytest.raises(BadImage, match=reason):
        to_rgb_jpeg(data, "bad.JPEG")


def test_bad_image_pickles_with_its_path():
    import pickle

    error = pickle.loads(pickle.dumps(BadImage("a/b.JPEG", "truncated")))
    assert (str(error), error.path, error.reason) == (
        "a/b.JPEG: truncated",
        "a/b.JPEG",
        "truncated",
    )


def test_png_with_a_bad_checksum_fails():
    data = bytearray(_encode(Image.fromarray(PIXELS), "PNG"))
    data[60] ^= 0xFF  # inside the first chunk's data: its CRC no longer matches
    with pytest.raises(BadImage, match="cannot decode"):
        to_rgb_jpeg(bytes(data), "bad.JPEG")


def test_undecodable_image_messages_name_no_memory_address():
    for data in (b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40):
        with pytest.raises(BadImage) as caught:
            to_rgb_jpeg(data, "train/n1/images/n1_0.JPEG")
        assert "0x" not in str(caught.value) and "object at" not in str(caught.value)
        assert str(caught.value).startswith("train/n1/images/n1_0.JPEG: cannot decode image")


def test_a_png_named_jpeg_is_re_encoded_within_one_grey_level():
    noisy = PIXELS.astype(int) + np.random.default_rng(0).integers(-20, 20, PIXELS.shape)
    original = np.clip(noisy, 0, 255).astype(np.uint8)
    out = to_rgb_jpeg(_encode(Image.fromarray(original), "PNG"), "x.JPEG")
    assert out.re_encoded and _decoded(out.data).format == "JPEG"
    error = np.abs(np.asarray(_decoded(out.data), dtype=int) - original.astype(int)).mean()
    assert error <= 1.0


def _corrupt_scan(data: bytes) -> bytes:
    """``data`` with bytes in the middle of its entropy-coded scan replaced."""
    corrupt = bytearray(data)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 40] = bytes(b ^ 0x5A for b in corrupt[middle : middle + 40])
    return bytes(corrupt)


def test_the_fast_check_passes_what_pillow_passes_and_fails_what_it_fails():
    rng = np.random.default_rng(1)
    good = [
        _encode(Image.fromarray(PIXELS), "JPEG", quality=q, progressive=p)
        for q in (50, 95)
        for p in (False, True)
    ]
    noisy = rng.integers(0, 256, PIXELS.shape, dtype=np.uint8)
    good.append(_encode(Image.fromarray(noisy), "JPEG", quality=75))
    for data in good:
        assert is_clean_rgb_jpeg(data)
        assert to_rgb_jpeg(data, "x.JPEG").data == data
    for data in [d[: len(d) * 2 // 3] for d in good]:  # truncated
        assert not is_clean_rgb_jpeg(data)
        with pytest.raises(BadImage, match="cannot decode"):
            to_rgb_jpeg(data, "x.JPEG")
    for data in [_corrupt_scan(d) for d in good]:
        # Whatever Pillow's full decode says about a corrupt stream, the service says too.
        assert not is_clean_rgb_jpeg(data)
        try:
            _decoded(data)
        except OSError:
            with pytest.raises(BadImage, match="cannot decode"):
                to_rgb_jpeg(data, "x.JPEG")
        else:
            assert to_rgb_jpeg(data, "x.JPEG").data == data


def test_grey_cmyk_and_wrong_size_never_take_the_fast_path():
    for data in (
        _encode(Image.fromarray(PIXELS).convert("L"), "JPEG"),
        _encode(Image.fromarray(PIXELS).convert("CMYK"), "JPEG"),
        _encode(Image.fromarray(np.zeros((64, 32, 3), np.uint8)), "JPEG"),
        _encode(Image.fromarray(PIXELS), "PNG"),
    ):
        assert not is_clean_rgb_jpeg(data)

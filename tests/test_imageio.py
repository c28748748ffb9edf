"""Every kind of input image, good and bad."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.errors import ImageError
from visage.media.images import load_image


def _encoded(pil: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 64, dtype=np.float64)
    pixels = np.stack([np.add.outer(gradient, gradient) / 2, np.tile(gradient, (64, 1)),
                       rng.uniform(0, 255, (64, 64))], axis=2)
    return pixels.astype(np.uint8)


def test_path_bytes_array_and_pil_agree(tmp_path, photo):
    path = tmp_path / "p.png"
    PILImage.fromarray(photo).save(path)
    results = [load_image(path), load_image(path.read_bytes()), load_image(photo), load_image(PILImage.fromarray(photo))]
    for img in results:
        assert img.pixels.dtype == np.uint8 and img.pixels.shape == (64, 64, 3)
        np.testing.assert_array_equal(img.pixels, photo)
    assert results[0].name == str(path)
    assert results[0].sha256 == results[1].sha256  # the file's hash, however it arrives


def test_exif_orientation_is_honoured(tmp_path, photo):
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:10] = 255  # white band at the top of the stored pixels
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    data = _encoded(PILImage.fromarray(tall), "JPEG", exif=exif, quality=95)
    img = load_image(data)
    assert img.pixels.shape == (20, 40, 3)  # displayed landscape
    assert img.pixels[:, -10:].mean() > 200 and img.pixels[:, :10].mean() < 50  # band now on the right


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "1", "LA", "F"])
def test_modes_convert_to_rgb(mode, photo):
    pil = PILImage.fromarray(photo)
    if mode == "I;16":
        converted = PILImage.fromarray(photo[:, :, 0].astype(np.uint16) * 257)
    elif mode == "F":
        converted = PILImage.fromarray(photo[:, :, 0].astype(np.float32) / 255.0)
    else:
        converted = pil.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16", "F") else "PNG"
    img = load_image(_encoded(converted, fmt))
    assert img.pixels.shape == (64, 64, 3) and img.pixels.dtype == np.uint8
    if mode in ("L", "I;16", "F"):
        expected = photo[:, :, 0] if mode != "L" else np.asarray(pil.convert("L"))
        assert np.abs(img.pixels[:, :, 0].astype(int) - expected).max() <= 1


def test_transparent_pixels_become_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)
    img = load_image(_encoded(PILImage.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(img.pixels[0, 0]) == (255, 0, 0) and tuple(img.pixels[0, 7]) == (255, 255, 255)


def test_arrays_of_other_types():
    assert load_image(np.full((4, 4), 65535, np.uint16)).pixels.max() == 255
    assert load_image(np.full((4, 4, 3), 0.5, np.float32)).pixels[0, 0, 0] == 128
    assert load_image(np.zeros((4, 4, 1), np.uint8)).pixels.shape == (4, 4, 3)


@pytest.mark.parametrize("source, message", [
    (b"", "empty"),
    (b"this is plainly text, not pixels", "not an image"),
    (np.zeros((3, 3, 7), np.uint8), "not a grey, RGB or RGBA"),
    (np.zeros((0, 5, 3), np.uint8), "no pixels"),
    (np.array([[np.nan]], np.float32), "NaN"),
    (12345, "cannot use an object"),
])
def test_bad_inputs_raise_clear_errors(source, message):
    with pytest.raises(ImageError, match=message):
        load_image(source)


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_truncated_and_corrupt_files(tmp_path, photo):
    jpeg = _encoded(PILImage.fromarray(photo), "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: image data is truncated or corrupt"):
        load_image(cut)
    png = bytearray(_encoded(PILImage.fromarray(photo), "PNG"))
    png[60:80] = b"\x00" * 20  # smash the middle of the first chunk
    with pytest.raises(ImageError, match="corrupt"):
        load_image(bytes(png), name="smashed.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, at 144 MP
@pytest.mark.parametrize("side", [12_000, pytest.param(30_000, marks=pytest.mark.slow)])
def test_decompression_bomb_is_refused_before_decoding(side):
    # A 1-bit PNG that claims side × side pixels compresses to a few kB.
    bomb = _encoded(PILImage.new("1", (side, side)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match=r"bomb\.png: image is too large"):
        load_image(bomb, name="bomb.png", max_pixels=100_000_000)

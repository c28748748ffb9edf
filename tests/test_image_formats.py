"""Which encoded formats load_image accepts, and that a refused or oversized file is never decoded."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.cli import main
from visage.errors import ImageError
from visage.media.images import ACCEPTED_FORMATS, load_image


def _encoded(pil: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, fmt, **kw)
    return buf.getvalue()


def _colour_card(width: int = 12, height: int = 10) -> PILImage.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (200, 30, 60)
    pixels[:, width // 2 :] = (20, 160, 240)
    return PILImage.fromarray(pixels)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height grey pixels, followed by one tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def _ico_holding(png: bytes) -> bytes:
    """An ICO whose one directory entry says 256×256 (width and height bytes 0) and holds ``png``."""
    directory = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), len(directory) + 16)
    return directory + entry + png


def forbid_decoding(monkeypatch) -> None:
    """From now on, fail the test if any image is decoded (call it once the test's files are written)."""

    def refuse_to_decode(self, *args, **kwargs):
        raise AssertionError(f"{self.format} image of {self.size} was decoded")

    monkeypatch.setattr(PILImage.Image, "load", refuse_to_decode)


# --- accepted formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, options", [
    ("JPEG", {"quality": 95, "subsampling": 0}), ("PNG", {}), ("WEBP", {"lossless": True}),
    ("BMP", {}), ("TIFF", {}), ("GIF", {}),
])
def test_each_accepted_format_loads_at_its_size(fmt, options):
    card = _colour_card()
    img = load_image(_encoded(card, fmt, **options), name=f"card.{fmt.lower()}")
    assert (img.width, img.height) == (12, 10)
    error = np.abs(img.pixels.astype(int) - np.asarray(card))
    if fmt == "JPEG":  # lossy: it rings at the edge between the two colours
        assert error.mean() < 4
    else:
        assert error.max() == 0


def test_a_phone_mpo_is_read_as_its_first_picture():
    data = _encoded(_colour_card(12, 10), "MPO", save_all=True, append_images=[_colour_card(30, 20)])
    assert PILImage.open(io.BytesIO(data)).format == "MPO"
    img = load_image(data)
    assert (img.width, img.height) == (12, 10)


def test_a_multi_page_tiff_is_read_as_its_first_page():
    data = _encoded(_colour_card(12, 10), "TIFF", save_all=True, append_images=[_colour_card(40, 30)])
    assert PILImage.open(io.BytesIO(data)).n_frames == 2
    img = load_image(data, max_pixels=12 * 10)  # the second, larger page is never decoded
    assert (img.width, img.height) == (12, 10)


def test_an_animated_gif_is_read_as_its_first_frame():
    frames = [_colour_card(), PILImage.new("RGB", (12, 10), "white")]
    data = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert PILImage.open(io.BytesIO(data)).n_frames == 2
    img = load_image(data)
    assert (img.width, img.height) == (12, 10)
    assert tuple(img.pixels[0, 0]) != (255, 255, 255)


def test_a_gif_whose_screen_is_smaller_than_its_first_frame_is_measured_by_the_frame(monkeypatch):
    gif = bytearray(_encoded(PILImage.new("L", (400, 300)), "GIF"))
    gif[6:10] = struct.pack("<HH", 10, 10)  # the logical screen claims 10×10
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"liar\.gif: image is too large: 400×300 pixels"):
        load_image(bytes(gif), name="liar.gif", max_pixels=10_000)


# --- refused formats ----------------------------------------------------------------------------


def test_an_ico_holding_a_huge_png_is_refused_quickly_without_decoding(monkeypatch, tmp_path):
    path = tmp_path / "favicon.ico"
    path.write_bytes(_ico_holding(_encoded(PILImage.new("1", (6000, 6000)), "PNG")))
    assert path.stat().st_size < 10_000
    monkeypatch.setenv("VISAGE_MAX_PIXELS", "1000000")
    forbid_decoding(monkeypatch)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ImageError, match=r"favicon\.ico: ICO images are not accepted \(accepted: JPEG, PNG"):
            load_image(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5  # decoding 36 MP would take longer, and 36 MB or more
    assert peak < 2_000_000


@pytest.mark.parametrize("fmt", ["ICNS", "EPS", "PPM", "TGA"])
def test_other_formats_pillow_writes_are_refused_by_name(fmt, monkeypatch):
    data = _encoded(PILImage.new("RGB", (16, 16), "red"), fmt)
    forbid_decoding(monkeypatch)
    # TGA has no signature: its first bytes pass for a CUR file's, and the name is a guess.
    expected = f"{fmt} images are not accepted" if fmt != "TGA" else "images are not accepted"
    with pytest.raises(ImageError, match=rf"^upload: .*{expected} \(accepted: JPEG, PNG, WEBP, BMP, TIFF, GIF\)$"):
        load_image(data, name="upload")


def test_a_photoshop_file_is_refused_by_its_signature_alone(monkeypatch):
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 20_000, 20_000, 8, 3)
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"layers\.psd: PSD images are not accepted"):
        load_image(header + b"\x00" * 64, name="layers.psd")


def test_a_truncated_header_of_an_accepted_format_is_called_corrupt():
    with pytest.raises(ImageError, match=r"cut\.png: image data is corrupt \(not a readable PNG header\)"):
        load_image(b"\x89PNG\r\n\x1a\n\x00\x00", name="cut.png")


@pytest.mark.filterwarnings("ignore:Image was not the expected size")  # Pillow, on the ICO's lying entry
def test_a_pil_image_opened_from_a_refused_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "icon.ico"
    path.write_bytes(_ico_holding(_encoded(PILImage.new("1", (600, 600)), "PNG")))
    with PILImage.open(path) as lazy:
        forbid_decoding(monkeypatch)
        with pytest.raises(ImageError, match="ICO images are not accepted"):
            load_image(lazy, name="icon.ico")


def test_the_cli_exits_2_naming_the_file_and_the_format(tmp_path, capsys):
    path = tmp_path / "favicon.ico"
    path.write_bytes(_ico_holding(_encoded(PILImage.new("1", (600, 600)), "PNG")))
    code = main(["detect", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: ICO images are not accepted" in err


# --- sizes checked before decoding --------------------------------------------------------------


def test_a_png_whose_header_claims_too_many_pixels_is_refused_before_decoding(monkeypatch):
    bomb = _png_claiming(10_000, 8_000)  # under Pillow's own limit, which would warn first
    assert len(bomb) < 100
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"claim\.png: image is too large: 10000×8000 pixels \(80 MP\), "
                                         r"over the 12 MP limit$"):
        load_image(bomb, name="claim.png", max_pixels=12_000_000)


def test_the_limit_from_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("VISAGE_MAX_PIXELS", "4000")
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"100×100 pixels \(0.01 MP\), over the 0.004 MP limit \(VISAGE_MAX_PIXELS"):
        load_image(_png_claiming(100, 100), name="small.png")


def test_pillow_bomb_limit_applies_and_its_warning_is_not_silenced(monkeypatch):
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    with pytest.warns(PILImage.DecompressionBombWarning):
        assert load_image(_encoded(_colour_card(40, 40), "PNG")).width == 40  # over 1000, under 2 × 1000
    with pytest.raises(ImageError, match=r"big\.png: image is too large to decode safely"):
        load_image(_encoded(_colour_card(50, 50), "PNG"), name="big.png")  # over 2 × 1000: Pillow's error
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        with pytest.raises(ImageError, match=r"warned\.png: image is too large to decode safely"):
            load_image(_encoded(_colour_card(40, 40), "PNG"), name="warned.png")


def test_the_accepted_formats_are_the_documented_ones():
    assert set(ACCEPTED_FORMATS) == {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"}

"""Load and validate images: paths, bytes, numpy arrays and PIL images become RGB uint8 arrays.

Every failure is an :class:`~visage.errors.ImageError` whose message names the input. Folders of
images are listed by :func:`list_images`, by the one set of file name endings :data:`IMAGE_SUFFIXES`.

Encoded images are untrusted. Only the formats in :data:`ACCEPTED_FORMATS` are opened at all, and
an image's size is checked against the pixel limit from its header, before any pixel is decoded:
for these formats the header size is the size decoding allocates. Only the first frame of an
animated GIF or WebP, or the first page of a TIFF, is decoded.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

from .. import config
from ..errors import ImageError, VisageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, PILImage.Image, "Image"]

#: The Pillow formats :func:`load_image` decodes; any other is refused before it is parsed beyond
#: its first bytes. Formats such as ICO, ICNS, PSD or EPS are left out because a face service has
#: no need of them and their headers do not bound what decoding allocates (an ICO may hold a PNG
#: far larger than its directory says). MPO is what Pillow calls a phone's multi-picture JPEG.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")

#: File name endings read as images when a folder is listed (lower case), one for each of the
#: :data:`ACCEPTED_FORMATS`.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded image: ``pixels`` is an (H, W, 3) uint8 RGB array, upright as displayed."""

    pixels: np.ndarray
    name: str
    sha256: str = field(repr=False)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
) -> Image:
    """Decode ``source`` once and return an :class:`Image` (RGB uint8, EXIF orientation applied).

    ``source`` may be a path, the encoded bytes of a file, a numpy array (grey, RGB or RGBA;
    uint8, uint16 or float in [0, 1]), a PIL image, or an :class:`Image` (returned as is).
    ``max_pixels`` defaults to :func:`visage.config.max_pixels` (``$VISAGE_MAX_PIXELS``). Encoded
    images must be in one of the :data:`ACCEPTED_FORMATS`, and are measured before they are decoded.
    Pillow's own bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) applies as well: an image over twice
    it is refused, and one over it draws Pillow's ``DecompressionBombWarning``.
    Raises :class:`ImageError` naming the input when it cannot be used.
    """
    if isinstance(source, Image):
        return source
    if max_pixels is None:
        max_pixels = config.max_pixels()
    if isinstance(source, np.ndarray):
        label = name or "<array>"
        pixels = _array_to_rgb(source, label)
        _check_pixels(pixels.shape[1], pixels.shape[0], label, max_pixels)
        return Image(pixels, label, hashlib.sha256(pixels.tobytes()).hexdigest())
    if isinstance(source, PILImage.Image):
        label = name or "<PIL image>"
        if isinstance(source, ImageFile.ImageFile):
            _check_before_decoding(source, label, max_pixels)  # opened from a file: maybe not decoded yet
        else:
            _check_pixels(source.width, source.height, label, max_pixels)
        pixels = _pil_to_rgb(ImageOps.exif_transpose(source), label)
        return Image(pixels, label, hashlib.sha256(pixels.tobytes()).hexdigest())
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        data = _read_file(path, label)
    else:
        raise ImageError(f"cannot use an object of type {type(source).__name__} as an image")
    return _decode(data, label, max_pixels)


def source_label(source: ImageSource) -> str:
    """How reports name ``source``: its path, or the name of an :class:`Image`, or its type."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or type(source).__name__


def _read_file(path: Path, label: str) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageError(f"{label}: is a directory, not an image")
    max_bytes = config.max_bytes()
    if size > max_bytes:
        raise ImageError(f"{label}: file is {size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None


def _decode(data: bytes, label: str, max_pixels: int) -> Image:
    if not data:
        raise ImageError(f"{label}: file is empty")
    try:
        # Lazy: Image.open parses the header only. Nothing is decoded before the checks pass.
        pil = PILImage.open(io.BytesIO(data), formats=_openers())
        _check_before_decoding(pil, label, max_pixels)
        pil.load()
    except ImageError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        # Pillow's own limit (the warning is raised when warnings are errors, as under -W error).
        raise ImageError(f"{label}: image is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(_unaccepted_message(data, label)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated or corrupt" if "truncated" in str(exc) or isinstance(exc, OSError) else "corrupt"
        raise ImageError(f"{label}: image data is {reason} ({exc})") from None
    pixels = _pil_to_rgb(ImageOps.exif_transpose(pil), label)
    return Image(pixels, label, hashlib.sha256(data).hexdigest())


def _check_before_decoding(pil: ImageFile.ImageFile, label: str, max_pixels: int) -> None:
    """Refuse ``pil``, opened but not yet decoded, unless its format is accepted and it fits the limit.

    The first frame is the only one decoded, and for the accepted formats its size is known once
    the header is read (Pillow widens a GIF's canvas to its first frame's extent when it opens it).
    """
    if pil.format not in ACCEPTED_FORMATS:
        raise ImageError(f"{label}: {pil.format or 'this'} images are not accepted ({_accepted_list()})")
    _check_pixels(pil.width, pil.height, label, max_pixels)


@functools.cache
def _openers() -> tuple[str, ...]:
    """The accepted formats Pillow has an opener for (MPO has none: Pillow's JPEG opener returns it)."""
    PILImage.init()
    return tuple(fmt for fmt in ACCEPTED_FORMATS if fmt in PILImage.OPEN)


def _unaccepted_message(data: bytes, label: str) -> str:
    """Why ``data`` was not opened: in a format visage does not accept (named, if Pillow knows it), or no image."""
    fmt = _sniff_format(data)
    if fmt is None:
        return f"{label}: not an image file, or a format visage cannot read ({_accepted_list()})"
    if fmt in ACCEPTED_FORMATS:  # recognised by its first bytes, yet its header did not parse
        return f"{label}: image data is corrupt (not a readable {fmt} header)"
    return f"{label}: {fmt} images are not accepted ({_accepted_list()})"


def _sniff_format(data: bytes) -> str | None:
    """The Pillow format whose signature ``data`` starts with, judged by its first 16 bytes only.

    Only each plugin's cheap signature test runs: a refused format's parser never sees the data.
    """
    PILImage.init()
    prefix = data[:16]
    for fmt in PILImage.ID:
        accept = PILImage.OPEN[fmt][1]
        try:
            verdict = accept(prefix) if accept is not None else False
        except (IndexError, SyntaxError, TypeError, ValueError, struct.error):  # odd bytes: no match
            continue
        if verdict and not isinstance(verdict, str):  # a string is Pillow's "recognised, unsupported"
            return fmt
    return None


def _accepted_list() -> str:
    return "accepted: " + ", ".join(f for f in ACCEPTED_FORMATS if f != "MPO")


def _check_pixels(width: int, height: int, label: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{label}: image is too large: {width}×{height} pixels ({_megapixels(width * height)}), "
            f"over the {_megapixels(max_pixels)} limit{_limit_hint(max_pixels)}"
        )


def _limit_hint(max_pixels: int) -> str:
    # The server passes a limit of its own; only the library's default is VISAGE_MAX_PIXELS.
    try:
        from_env = max_pixels == config.max_pixels()
    except VisageError:
        from_env = False
    return " (VISAGE_MAX_PIXELS; set it to raise the limit)" if from_env else ""


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP" if pixels >= 10_000_000 else f"{pixels / 1e6:.2g} MP"


def _pil_to_rgb(pil: PILImage.Image, label: str) -> np.ndarray:
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(pil), label)
    if mode == "P":
        pil = pil.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = pil.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = PILImage.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(pil.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    """Grey, RGB or RGBA arrays of uint8, uint16, int or float → (H, W, 3) uint8."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"{label}: array of shape {array.shape} is not a grey, RGB or RGBA image")
    if array.size == 0:
        raise ImageError(f"{label}: image has no pixels (shape {array.shape})")
    if array.dtype == np.uint8:
        scaled = array
    elif array.dtype == bool:
        scaled = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(f"{label}: float image holds NaN or infinite values")
        top = 255.0 if array.max() > 1.0 else 1.0
        scaled = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        top = 65535 if array.max() > 255 else 255
        scaled = np.clip(array.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"{label}: cannot use pixels of type {array.dtype}")
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    elif scaled.shape[2] == 4:
        alpha = scaled[:, :, 3:4].astype(np.float32) / 255.0
        scaled = (scaled[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(scaled)


def _walk_files(root: Path) -> list[Path]:
    """Every file below ``root``, through links to folders too; a folder reached twice (by a link
    loop or two links to it) is listed once."""
    seen: set[str] = set()
    found: list[Path] = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        found += [Path(folder) / name for name in names]
    return found


def list_images(
    folder: str | os.PathLike,
    *,
    recursive: bool = False,
    suffixes: Collection[str] = IMAGE_SUFFIXES,
    required: bool = False,
) -> list[Path]:
    """The files in ``folder`` whose name ends in one of ``suffixes`` (any case), sorted by path.

    ``recursive`` also lists the sub-folders' files, following links to folders (a data set put
    together from links is common) but entering each real folder once. ``suffixes`` (lower case,
    with the dot) may widen the set, e.g. ``IMAGE_SUFFIXES | {".npy"}``. Raises
    :class:`VisageError` when ``folder`` is not a folder, and, when ``required``, when it holds no
    such file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise VisageError(f"{root}: not a folder")
    candidates = _walk_files(root) if recursive else root.iterdir()
    files = sorted(p for p in candidates if p.suffix.lower() in suffixes and p.is_file())
    if required and not files:
        raise VisageError(f"{root}: holds no images ({', '.join(sorted(suffixes))})")
    return files

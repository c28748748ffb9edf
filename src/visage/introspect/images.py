"""Image sets for introspection: a folder of photos, or the aligned face chips found in them.

Both give fixed-size RGB uint8 images in batches for the single pass, and can give any one image
again later by its item number, so only the few images whose patches are shown are decoded twice.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ..config import DEFAULT_DETECTOR
from ..errors import ImageError, VisageError
from ..media.images import list_images as _list_folder
from ..media.images import load_image


def list_images(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The image files in a folder (recursively, sorted: :func:`visage.media.images.list_images`),
    the one file given, or the given list of files.

    Raises VisageError when the folder does not exist or holds no image.
    """
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.exists():
            raise VisageError(f"{folder}: no such folder")
        if folder.is_file():
            return [folder]
        return _list_folder(folder, recursive=True, required=True)
    files = [Path(p) for p in source]
    if not files:
        raise VisageError("no images given")
    return files


def square_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size`` and crop the centre square: (size, size, 3) uint8."""
    h, w = pixels.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    pil = PILImage.fromarray(pixels)
    if (nh, nw) != (h, w):
        pil = pil.resize((nw, nh), PILImage.Resampling.BILINEAR if scale > 1 else PILImage.Resampling.LANCZOS)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.uint8)


class FolderImages:
    """Every image file of a folder, each resized and centre-cropped to ``size``×``size``.

    Files that cannot be read are skipped with a warning naming them; their names are kept in
    :attr:`skipped`.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike], size: int = 224):
        self.files = list_images(source)
        self.size = int(size)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.files)

    def label(self, item: int) -> str:
        return self.files[item].name

    def load(self, item: int) -> np.ndarray:
        """The image ``item`` as the network saw it: (size, size, 3) uint8."""
        return square_resize(load_image(self.files[item]).pixels, self.size)

    def batches(self, batch_size: int, progress=None) -> Iterator[tuple[list[int], np.ndarray]]:
        """Batches of (item numbers, images (B, size, size, 3) uint8); ``progress`` is ticked per file."""
        return _batched(self._items(progress), batch_size)

    def _items(self, progress) -> Iterator[tuple[int, np.ndarray]]:
        for item in range(len(self.files)):
            try:
                pixels = self.load(item)
            except ImageError as exc:
                self._skip(str(exc))
            else:
                yield item, pixels
            if progress is not None:
                progress.update(1)

    def _skip(self, why: str) -> None:
        self.skipped.append(why)
        warnings.warn(f"skipped {why}", stacklevel=3)


class FaceChips:
    """The aligned chips of every face found in a folder of photos, made by a face encoder.

    Item numbers count chips in the order they are found; :meth:`load` finds a chip again by
    detecting the faces of its photo once more.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike], encoder, detector: str = DEFAULT_DETECTOR):
        from .targets import chip_size

        self.files = list_images(source)
        self.encoder = encoder
        self.detector = detector
        self.size = chip_size(encoder)[0]
        self.skipped: list[str] = []
        self._where: list[tuple[int, int]] = []  # item → (file number, face number)

    def __len__(self) -> int:
        return len(self.files)

    def label(self, item: int) -> str:
        file_index, face = self._where[item]
        return f"{self.files[file_index].name} face {face}"

    def _chips(self, file_index: int) -> np.ndarray:
        from ..pipeline import detect

        image = load_image(self.files[file_index])
        faces = detect(image, detector=self.detector, landmarks68=False)
        return self.encoder.chips(image, faces)

    def load(self, item: int) -> np.ndarray:
        file_index, face = self._where[item]
        return self._chips(file_index)[face]

    def batches(self, batch_size: int, progress=None) -> Iterator[tuple[list[int], np.ndarray]]:
        return _batched(self._items(progress), batch_size)

    def _items(self, progress) -> Iterator[tuple[int, np.ndarray]]:
        self._where.clear()
        for file_index, path in enumerate(self.files):
            chips: np.ndarray | list[np.ndarray]
            try:
                chips = self._chips(file_index)
            except ImageError as exc:
                self.skipped.append(str(exc))
                warnings.warn(f"skipped {exc}", stacklevel=3)
                chips = []
            else:
                if len(chips) == 0:
                    self.skipped.append(f"{path}: no face found")
            for face, chip in enumerate(chips):
                self._where.append((file_index, face))
                yield len(self._where) - 1, chip
            if progress is not None:
                progress.update(1)


def _batched(items: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    ids: list[int] = []
    pixels: list[np.ndarray] = []
    for item, image in items:
        ids.append(item)
        pixels.append(image)
        if len(ids) == batch_size:
            yield ids, np.stack(pixels)
            ids, pixels = [], []
    if ids:
        yield ids, np.stack(pixels)
